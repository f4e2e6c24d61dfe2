//! JSON bodies whose errors a person can act on. `Json<T>` reads the body as actix's `web::Json`
//! does (content type, the route's size limit and syntax errors through its `JsonConfig`), then
//! builds `T` with the path of every value tracked, so a value that does not fit is reported as
//! "`serving.instances`: got the string "x", expected a non-negative integer" rather than in
//! serde's words ("invalid type … expected usize"), which name Rust types, not fields.

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::error::{ErrorKind, ServiceError};

/// A JSON body deserialized into `T`, with field-naming errors.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            Ok(Json(from_value(value)?))
        })
    }
}

/// A body that must be a JSON object: serde also builds a struct from a list of its fields in
/// order, which turns a bare list sent by mistake into a confusing error about its first item.
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Fields(std::marker::PhantomData))
            .map(Object)
    }
}

/// Build `T` from parsed JSON; a value that does not fit is `invalid_request`, naming its field.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ServiceError> {
    serde_path_to_error::deserialize::<_, Object<T>>(value)
        .map(|o| o.0)
        .map_err(|e| {
            let path = e.path().to_string();
            ServiceError::new(ErrorKind::InvalidRequest, describe(e.inner(), &path))
        })
}

/// Parse a body given as bytes in one pass (routes whose body is optional, and the V2 codec): JSON
/// that does not parse is `invalid_json`, a value that does not fit `invalid_request`.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    // Tracking the path costs a wrapper around every value (half of a V2 infer's parsing); a body
    // that parses needs no path, so the tracked parse runs only to word the error of one that
    // does not, and fails at the same place.
    if let Ok(value) = serde_json::from_slice::<Object<T>>(body) {
        return Ok(value.0);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, Object<T>>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            ServiceError::new(ErrorKind::InvalidRequest, describe(&inner, &path))
        } else {
            not_json(&inner)
        }
    })?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value.0)
}

/// JSON that does not parse: empty, or broken at a place it names.
pub fn not_json(e: &serde_json::Error) -> ServiceError {
    let message = if e.is_eof() && e.line() == 1 && e.column() == 0 {
        "the body is empty; send a JSON object".to_owned()
    } else {
        format!("the body is not valid JSON: {}", syntax(e))
    };
    ServiceError::new(ErrorKind::InvalidJson, message)
}

/// A syntax error in words, with where it is.
pub fn syntax(e: &serde_json::Error) -> String {
    let what = strip_position(&e.to_string());
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// serde's message about a value that does not fit, in words: the field's path first (`.` is the
/// whole body), types as JSON names them, and no Rust type names.
pub fn describe(e: &serde_json::Error, path: &str) -> String {
    let message = strip_position(&e.to_string());
    let words = reword(&message);
    if path.is_empty() || path == "." {
        format!("the body: {words}")
    } else {
        format!("`{path}`: {words}")
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// serde's phrases, rewritten; anything else (our own messages) passes unchanged.
fn reword(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, expected) = split_expected(rest);
        return match expected {
            Some(list) => format!(
                "unknown field {}; the fields are {}",
                quote(field),
                list_of(list)
            ),
            None => format!(
                "unknown field {}; this object takes no fields",
                quote(field)
            ),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (value, expected) = split_expected(rest);
        return match expected {
            Some(list) => format!("unknown value {}; use {}", quote(value), list_of(list)),
            None => format!("unknown value {}", quote(value)),
        };
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("the field {} is required", quote(field));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.split_once(", expected ") {
                return format!("got {}, expected {}", json_value(got), json_type(expected));
            }
        }
    }
    message.to_owned()
}

/// "`a`, expected one of `b`, `c`" → ("`a`", Some("`b`, `c`")); "`a`, there are no fields" →
/// ("`a`", None).
fn split_expected(rest: &str) -> (&str, Option<&str>) {
    if let Some((head, list)) = rest.split_once(", expected ") {
        let list = list.strip_prefix("one of ").unwrap_or(list);
        return (head, (!list.is_empty()).then_some(list));
    }
    (rest.split(',').next().unwrap_or(rest), None)
}

fn quote(token: &str) -> String {
    format!("'{}'", token.trim().trim_matches('`'))
}

fn list_of(list: &str) -> String {
    list.split(", ")
        .map(|t| t.trim().trim_matches('`'))
        .collect::<Vec<_>>()
        .join(", ")
}

/// serde's description of the value it got, as JSON names it.
fn json_value(got: &str) -> String {
    let inner = |s: &str| s.trim_matches('`').to_owned();
    if let Some(v) = got.strip_prefix("string ") {
        return format!("the string {v}");
    }
    for prefix in ["integer ", "floating point "] {
        if let Some(v) = got.strip_prefix(prefix) {
            return format!("the number {}", inner(v));
        }
    }
    if let Some(v) = got.strip_prefix("boolean ") {
        return inner(v);
    }
    match got {
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        "null" | "unit value" => "null".into(),
        other => other.into(),
    }
}

/// serde's description of what it wanted, as JSON names it.
fn json_type(expected: &str) -> String {
    let unsigned = ["u8", "u16", "u32", "u64", "u128", "usize"];
    let signed = ["i8", "i16", "i32", "i64", "i128", "isize"];
    if unsigned.contains(&expected) {
        return "a non-negative integer".into();
    }
    if signed.contains(&expected) {
        return "an integer".into();
    }
    if expected == "f32" || expected == "f64" {
        return "a number".into();
    }
    if expected.starts_with("struct ") || expected == "a map" {
        return "a JSON object".into();
    }
    if expected.starts_with("a sequence") || expected.starts_with("tuple") {
        return "a list".into();
    }
    if expected == "a boolean" {
        return "true or false".into();
    }
    if expected.starts_with("enum ") {
        return "one of the allowed values".into();
    }
    expected.to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        instances: usize,
        ratio: Option<f64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        serving: Option<Inner>,
        flag: Option<bool>,
    }

    fn message(body: &str) -> String {
        from_slice::<Outer>(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn errors_name_the_field_in_json_words() {
        assert_eq!(
            message(r#"{"name": "a", "serving": {"instances": "x"}}"#),
            "`serving.instances`: got the string \"x\", expected a non-negative integer"
        );
        assert_eq!(
            message(r#"{"name": "a", "serving": {"instances": -1}}"#),
            "`serving.instances`: got the number -1, expected a non-negative integer"
        );
        assert_eq!(
            message(r#"{"name": "a", "foo": 1}"#),
            "`foo`: unknown field 'foo'; the fields are name, serving, flag"
        );
        assert_eq!(
            message(r#"{"serving": null}"#),
            "the body: the field 'name' is required"
        );
        assert_eq!(
            message(r#"[1, 2]"#),
            "the body: got a list, expected a JSON object"
        );
        assert_eq!(
            message(r#"{"name": "a", "serving": "adwin"}"#),
            "`serving`: got the string \"adwin\", expected a JSON object"
        );
        assert_eq!(
            message(r#"{"name": "a", "flag": 3}"#),
            "`flag`: got the number 3, expected true or false"
        );
        let syntax = from_slice::<Outer>(b"{\"name\": ").unwrap_err();
        assert_eq!(syntax.kind, ErrorKind::InvalidJson);
        assert!(syntax.message.contains("line 1"), "{}", syntax.message);
    }

    #[test]
    fn messages_of_our_own_pass_unchanged() {
        assert_eq!(reword("`x` must be positive"), "`x` must be positive");
    }
}
