//! JSON Web Tokens: one algorithm, pinned; `exp`, `iss`, `aud` and `sub` required; a small leeway.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use super::client_address::TrustedProxies;

/// `[auth]` in the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// How long an access token from `POST /v1/auth/token` lives, in seconds.
    pub token_ttl_secs: u64,
    /// HS256 (a shared secret), RS256 or ES256 (PEM key files).
    pub jwt_algorithm: JwtAlgorithm,
    /// HS256 secret file (hex); generated with mode 0600 on first start. Defaults to
    /// `<data_dir>/jwt-secret`. Replicas must share it.
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM private key for RS256/ES256.
    pub jwt_private_key: Option<PathBuf>,
    /// PEM public key for RS256/ES256.
    pub jwt_public_key: Option<PathBuf>,
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_secs: u64,
    /// Require a token (viewer or above) for `GET /metrics`.
    pub protect_metrics: bool,
    /// Failed logins of a user name, from one address or from all together, before its next
    /// attempts must wait (1 s, doubling; see `services::auth::limiter`).
    pub login_max_failures: u32,
    /// Failed logins from one client address, for any user names, before its next attempts must
    /// wait.
    pub login_address_max_failures: u32,
    /// The longest wait after failed logins from one address, in seconds. Failures from other
    /// addresses make a user name wait 10 s at most.
    pub login_max_backoff_secs: u64,
    /// How long failed logins are remembered after the last one, in seconds.
    pub login_window_secs: u64,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client; from
    /// any other peer the header is ignored. Empty: the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
    /// How long a user or API key read from the store is trusted, in milliseconds (0: read on
    /// every request). Changes made through this process take effect at once; changes made by
    /// another replica or the offline CLI within this delay.
    pub cache_ttl_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_ttl_secs: 3600,
            jwt_algorithm: JwtAlgorithm::Hs256,
            jwt_secret_file: None,
            jwt_private_key: None,
            jwt_public_key: None,
            issuer: "maas".into(),
            audience: "maas".into(),
            leeway_secs: 30,
            protect_metrics: false,
            login_max_failures: 5,
            login_address_max_failures: 20,
            login_max_backoff_secs: 60,
            login_window_secs: 300,
            trusted_proxies: TrustedProxies::default(),
            cache_ttl_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// The user's credentials generation when the token was issued; a password or role change
    /// moves it on, and the token is refused from then on. Tokens from before it existed have
    /// none, which reads as 0: the generation of every user that existed then.
    #[serde(default)]
    pub gen: i64,
}

pub struct JwtKeys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    verified: VerifiedTokens,
}

/// Tokens whose signature and claims already checked out, so a client that sends the same bearer
/// on every request pays for the signature once. Entries are found by a keyed hash of the token's
/// signature (SipHash with this process's random keys: its value reveals nothing about the token) and
/// confirmed with a constant-time comparison of the whole token. Only the expiry is checked
/// again on a hit; everything else in a token is fixed once it is signed, and the user's current
/// state is checked by the caller on every request.
struct VerifiedTokens {
    hasher: std::collections::hash_map::RandomState,
    entries: parking_lot::Mutex<std::collections::HashMap<u64, VerifiedToken>>,
}

/// A verified token (kept whole, for the comparison) and its claims.
type VerifiedToken = (Box<str>, std::sync::Arc<Claims>);

/// Tokens remembered at most; a full cache is emptied rather than scanned.
const VERIFIED_CAPACITY: usize = 10_000;

impl VerifiedTokens {
    fn new() -> Self {
        VerifiedTokens {
            hasher: std::collections::hash_map::RandomState::new(),
            entries: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn get(&self, key: u64, token: &str) -> Option<std::sync::Arc<Claims>> {
        let entries = self.entries.lock();
        let (known, claims) = entries.get(&key)?;
        same_bytes(known.as_bytes(), token.as_bytes()).then(|| claims.clone())
    }

    fn insert(&self, key: u64, token: &str, claims: std::sync::Arc<Claims>) {
        let mut entries = self.entries.lock();
        if entries.len() >= VERIFIED_CAPACITY {
            entries.clear();
        }
        entries.insert(key, (token.into(), claims));
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

/// The HS256 secret: configured, or generated on first start and kept with mode 0600.
fn hs256_secret(settings: &AuthSettings, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = settings
        .jwt_secret_file
        .clone()
        .unwrap_or_else(|| data_dir.join("jwt-secret"));
    if path.exists() {
        let text = String::from_utf8(read(&path)?)?;
        let secret = hex::decode(text.trim())
            .map_err(|_| anyhow::anyhow!("{} must hold a hex secret", path.display()))?;
        if secret.len() < 32 {
            anyhow::bail!(
                "{} holds {} bytes; the HS256 secret needs at least 32",
                path.display(),
                secret.len()
            );
        }
        return Ok(secret);
    }
    let mut secret = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(&path, hex::encode(&secret).as_bytes())?;
    tracing::info!(path = %path.display(), "generated a new JWT signing secret");
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes)?;
    Ok(())
}

impl JwtKeys {
    pub fn load(settings: &AuthSettings, data_dir: &Path) -> anyhow::Result<JwtKeys> {
        let pem = |which: &Option<std::path::PathBuf>, name: &str| -> anyhow::Result<Vec<u8>> {
            let path = which.as_ref().ok_or_else(|| {
                anyhow::anyhow!("auth.{name} is required for {:?}", settings.jwt_algorithm)
            })?;
            read(path)
        };
        let (algorithm, encoding, decoding) = match settings.jwt_algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = hs256_secret(settings, data_dir)?;
                (
                    Algorithm::HS256,
                    EncodingKey::from_secret(&secret),
                    DecodingKey::from_secret(&secret),
                )
            }
            JwtAlgorithm::Rs256 => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&pem(&settings.jwt_private_key, "jwt_private_key")?)?,
                DecodingKey::from_rsa_pem(&pem(&settings.jwt_public_key, "jwt_public_key")?)?,
            ),
            JwtAlgorithm::Es256 => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(&pem(&settings.jwt_private_key, "jwt_private_key")?)?,
                DecodingKey::from_ec_pem(&pem(&settings.jwt_public_key, "jwt_public_key")?)?,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        // A token whose `nbf` (not before) is still ahead is refused, as one already expired is.
        validation.validate_nbf = true;
        Ok(JwtKeys {
            algorithm,
            encoding,
            decoding,
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl_secs: settings.token_ttl_secs,
            verified: VerifiedTokens::new(),
        })
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    pub fn issue(&self, username: &str, role: &str, generation: i64) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: username.to_owned(),
            role: role.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + i64::try_from(self.ttl_secs).unwrap_or(i64::MAX / 2),
            gen: generation,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(self.algorithm),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a valid token; the error says why it is not, for the log, never the client.
    pub fn verify(
        &self,
        token: &str,
    ) -> Result<std::sync::Arc<Claims>, jsonwebtoken::errors::Error> {
        use std::hash::BuildHasher;
        // The signature (the part after the last '.') already differs between any two tokens;
        // hashing it alone costs a seventh of hashing the whole token.
        let signature = token.rsplit('.').next().unwrap_or(token);
        let key = self.verified.hasher.hash_one(signature);
        if let Some(claims) = self.verified.get(key, token) {
            let now = jsonwebtoken::get_current_timestamp();
            let leeway = self.validation.leeway;
            if u64::try_from(claims.exp).map_or(true, |exp| exp.saturating_add(leeway) < now) {
                return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
            }
            return Ok(claims);
        }
        let claims = std::sync::Arc::new(
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims,
        );
        self.verified.insert(key, token, claims.clone());
        Ok(claims)
    }
}

/// Whether two byte strings are equal, in time that depends only on their length: eight bytes
/// at a time, every difference folded into one word before the single comparison. (`subtle`'s
/// byte-wise comparison cost ~4,000 instructions per request for a 300-byte token.)
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Whole words by a fixed-size load (a copy of a slice whose length is not known at compile
    // time is a `memcpy` call per word), then the tail.
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a_words
        .remainder()
        .iter()
        .zip(b_words.remainder())
        .fold(0u64, |acc, (x, y)| acc | u64::from(x ^ y));
    let diff = a_words
        .zip(b_words)
        .fold(tail, |acc, (x, y)| acc | (word(x) ^ word(y)));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dir: &Path) -> JwtKeys {
        JwtKeys::load(&AuthSettings::default(), dir).unwrap()
    }

    #[test]
    fn same_bytes_is_equality() {
        let text = b"eyJhbGciOiJIUzI1NiJ9.payload.signature-of-odd-length";
        for len in 0..text.len() {
            let a = &text[..len];
            assert!(same_bytes(a, a));
            for i in 0..len {
                let mut b = a.to_vec();
                b[i] ^= 0x20;
                assert!(!same_bytes(a, &b), "{len} {i}");
            }
            assert!(!same_bytes(a, &text[..len + 1]));
        }
    }

    #[test]
    fn secret_is_generated_once_with_mode_0600_and_tokens_verify() {
        let dir = tempfile::tempdir().unwrap();
        let a = keys(dir.path());
        let token = a.issue("alice", "viewer", 7).unwrap();
        let b = keys(dir.path());
        let claims = b.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice", "the secret survives a restart");
        assert_eq!(claims.gen, 7);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert!(
            keys(other.path()).verify(&token).is_err(),
            "another secret rejects it"
        );
    }

    #[test]
    fn alg_none_and_tampering_are_rejected() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path());
        let token = k.issue("bob", "viewer", 0).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = "admin".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        );
        assert!(k.verify(&tampered).is_err());
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(k.verify(&none).is_err());
    }
}
