//! Credentials out of URLs before they are stored, shown or logged: a `model_url` may carry
//! `user:password@` or a signed query (`?token=…`, S3's `X-Amz-Signature=…`), and the URL is
//! kept as the version's `source` and in the audit trail, which viewers read.

/// Query parameter names (lowercase) whose values are secrets, matched as substrings.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "signature",
    "sig",
    "credential",
    "auth",
    "session",
];

/// The URL with its user info and token-like query values replaced by `REDACTED`; text that
/// is not a URL comes back unchanged.
pub fn url(text: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(text) else {
        return text.to_owned();
    };
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("REDACTED");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("REDACTED"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let name = k.to_ascii_lowercase();
                let secret = SECRET_PARAMS.iter().any(|s| name.contains(s));
                let value = if secret {
                    "REDACTED".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            url("https://alice:hunter2@models.example/m.onnx?version=3&access_token=abc"),
            "https://REDACTED:REDACTED@models.example/m.onnx?version=3&access_token=REDACTED"
        );
        let s3 = url(
            "https://b.s3.example/m.onnx?X-Amz-Credential=AKIA&X-Amz-Signature=ff&X-Amz-Expires=60",
        );
        assert!(!s3.contains("AKIA") && !s3.contains("=ff"), "{s3}");
        assert!(s3.contains("X-Amz-Expires=60"), "{s3}");
        assert_eq!(url("upload:iris.onnx"), "upload:iris.onnx");
        assert_eq!(url("file:///srv/m.onnx"), "file:///srv/m.onnx");
        assert_eq!(url("job:123"), "job:123");
    }
}
