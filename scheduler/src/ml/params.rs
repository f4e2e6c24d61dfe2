//! A task's parameters as the runner hands them over (JSON values after `${VAR}` substitution),
//! read with the coercions people expect: numbers written as strings, lists written as JSON
//! arrays, JSON array strings (what `${FEATURES}` expands to) or comma-separated strings.
//!
//! An empty string or `null` counts as not given, so that an unset variable falls back to the
//! default. A parameter the kind does not know is an error naming it: a typo must never be
//! silently ignored.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{MlError, TaskDir};

/// The parameters of one task, checked against the names its kind accepts.
pub(crate) struct Params<'a> {
    kind: &'static str,
    values: &'a Map<String, Value>,
    workdir: &'a TaskDir<'a>,
}

impl<'a> Params<'a> {
    /// Refuses any parameter not in `valid`.
    pub(crate) fn new(
        kind: &'static str,
        values: &'a Map<String, Value>,
        valid: &[&str],
        workdir: &'a TaskDir<'a>,
    ) -> Result<Self, MlError> {
        let unknown: Vec<String> = values
            .keys()
            .filter(|k| !valid.contains(&k.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(MlError::UnknownParams {
                kind: kind.to_owned(),
                unknown,
                valid: valid.iter().map(|v| (*v).to_owned()).collect(),
            });
        }
        Ok(Params {
            kind,
            values,
            workdir,
        })
    }

    /// Names of the parameters that were given (not empty).
    pub(crate) fn given(&self) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(|(_, v)| !is_absent(v))
            .map(|(k, _)| k.as_str())
    }

    pub(crate) fn invalid(&self, param: &str, reason: impl Into<String>) -> MlError {
        MlError::InvalidParam {
            kind: self.kind.to_owned(),
            param: param.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn missing(&self, param: &str) -> MlError {
        MlError::MissingParam {
            kind: self.kind.to_owned(),
            param: param.to_owned(),
        }
    }

    fn value(&self, name: &str) -> Option<&'a Value> {
        self.values.get(name).filter(|v| !is_absent(v))
    }

    /// A scalar as text: strings as they are, numbers and booleans as JSON writes them.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, MlError> {
        match self.value(name) {
            None => Ok(None),
            // Trimmed, unless it is all blanks (a tab or a space as a delimiter).
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(s.clone())),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(other) => Err(self.invalid(name, format!("expected a string, got {other}"))),
        }
    }

    pub(crate) fn required_string(&self, name: &str) -> Result<String, MlError> {
        self.string(name)?.ok_or_else(|| self.missing(name))
    }

    /// A file to read; a relative path is taken from the task's folder. Checked against the
    /// task's read policy.
    pub(crate) fn path(&self, name: &str) -> Result<Option<PathBuf>, MlError> {
        self.string(name)?.map(|p| self.resolve(&p)).transpose()
    }

    pub(crate) fn required_path(&self, name: &str) -> Result<PathBuf, MlError> {
        self.path(name)?.ok_or_else(|| self.missing(name))
    }

    /// A file to read, from the task's folder when relative, if the task may read it.
    pub(crate) fn resolve(&self, path: &str) -> Result<PathBuf, MlError> {
        let path = Path::new(path.trim());
        let path = if path.is_absolute() {
            path.to_owned()
        } else {
            self.workdir.join(path)
        };
        Ok(self.workdir.reads.check(&path)?)
    }

    pub(crate) fn number(&self, name: &str) -> Result<Option<f64>, MlError> {
        let number = match self.value(name) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match number {
            Some(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(self.invalid(name, format!("expected a number, got {}", self.shown(name)))),
        }
    }

    /// A number strictly between 0 and 1.
    pub(crate) fn fraction(&self, name: &str, default: f64) -> Result<f64, MlError> {
        let value = self.number(name)?.unwrap_or(default);
        if value > 0.0 && value < 1.0 {
            Ok(value)
        } else {
            Err(self.invalid(
                name,
                format!("expected a fraction between 0 and 1 (exclusive), got {value}"),
            ))
        }
    }

    /// A positive number.
    pub(crate) fn positive(&self, name: &str, default: f64) -> Result<f64, MlError> {
        let value = self.number(name)?.unwrap_or(default);
        if value > 0.0 {
            Ok(value)
        } else {
            Err(self.invalid(name, format!("expected a positive number, got {value}")))
        }
    }

    /// A non-negative whole number ("5", 5 and 5.0 are all 5).
    pub(crate) fn integer(&self, name: &str) -> Result<Option<u64>, MlError> {
        let Some(n) = self.number(name)? else {
            return Ok(None);
        };
        if n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64 {
            Ok(Some(n as u64))
        } else {
            Err(self.invalid(
                name,
                format!(
                    "expected a whole number of at least 0, got {}",
                    self.shown(name)
                ),
            ))
        }
    }

    /// A whole number of at least `min`.
    pub(crate) fn count(&self, name: &str, default: usize, min: usize) -> Result<usize, MlError> {
        let value = self
            .integer(name)?
            .map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if value >= min {
            Ok(value)
        } else {
            Err(self.invalid(
                name,
                format!("expected a whole number of at least {min}, got {value}"),
            ))
        }
    }

    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, MlError> {
        let parsed = match self.value(name) {
            None => return Ok(None),
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Some(true),
                "false" | "no" | "0" => Some(false),
                _ => None,
            },
            Some(Value::Number(n)) => match n.as_f64() {
                Some(1.0) => Some(true),
                Some(0.0) => Some(false),
                _ => None,
            },
            Some(_) => None,
        };
        parsed.map(Some).ok_or_else(|| {
            self.invalid(
                name,
                format!("expected true or false, got {}", self.shown(name)),
            )
        })
    }

    /// One of `choices`.
    pub(crate) fn choice(
        &self,
        name: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, MlError> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        let text = text.trim();
        choices
            .iter()
            .find(|c| **c == text)
            .copied()
            .map(Some)
            .ok_or_else(|| {
                self.invalid(
                    name,
                    format!("'{text}' is not one of {}", choices.join(", ")),
                )
            })
    }

    /// A list of strings: a JSON array, a string holding a JSON array, or a comma-separated
    /// string. Items are trimmed; empty items are dropped.
    pub(crate) fn list(&self, name: &str) -> Result<Option<Vec<String>>, MlError> {
        let items = match self.value(name) {
            None => return Ok(None),
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Value>(s) {
                    Ok(Value::Array(items)) => items,
                    _ => {
                        return Err(self.invalid(
                            name,
                            format!("'{s}' starts like a JSON array but is not one"),
                        ))
                    }
                }
            }
            Some(Value::String(s)) => s.split(',').map(|i| Value::String(i.into())).collect(),
            Some(other) => {
                return Err(self.invalid(name, format!("expected a list, got {other}")));
            }
        };
        let mut list = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) if s.trim().is_empty() => {}
                Value::String(s) => list.push(s.trim().to_owned()),
                v @ (Value::Number(_) | Value::Bool(_)) => list.push(v.to_string()),
                other => {
                    return Err(
                        self.invalid(name, format!("list items must be strings, got {other}"))
                    )
                }
            }
        }
        Ok(Some(list))
    }

    fn shown(&self, name: &str) -> String {
        self.values
            .get(name)
            .map_or_else(String::new, Value::to_string)
    }
}

fn is_absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::ReadPolicy;
    use serde_json::json;

    static NO_READS: ReadPolicy = ReadPolicy {
        roots: Vec::new(),
        closed: Vec::new(),
        job_dir: None,
    };

    fn w() -> TaskDir<'static> {
        TaskDir {
            path: Path::new("/w"),
            reads: &NO_READS,
        }
    }

    fn params(values: Value) -> Map<String, Value> {
        match values {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn unknown_parameters_are_named() {
        let values = params(json!({"trian": "x", "label": "y"}));
        let err = Params::new("split", &values, &["data", "label"], &w())
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("'trian'"), "{text}");
        assert!(text.contains("data, label"), "{text}");
    }

    #[test]
    fn numbers_lists_and_booleans_are_coerced() {
        let values = params(json!({
            "a": "0.8", "b": 3, "c": "[\"x\", \"y\"]", "d": "p, q,", "e": ["m", 1],
            "f": "yes", "g": "", "h": null, "i": "5", "j": 2.5
        }));
        let all = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let dir = w();
        let p = Params::new("t", &values, &all, &dir).unwrap();
        assert_eq!(p.number("a").unwrap(), Some(0.8));
        assert_eq!(p.integer("b").unwrap(), Some(3));
        assert_eq!(p.list("c").unwrap().unwrap(), ["x", "y"]);
        assert_eq!(p.list("d").unwrap().unwrap(), ["p", "q"]);
        assert_eq!(p.list("e").unwrap().unwrap(), ["m", "1"]);
        assert_eq!(p.boolean("f").unwrap(), Some(true));
        assert_eq!(p.string("g").unwrap(), None);
        assert_eq!(p.number("h").unwrap(), None);
        assert_eq!(p.count("i", 1, 1).unwrap(), 5);
        assert!(p.integer("j").unwrap_err().to_string().contains("'j'"));
        assert_eq!(p.given().count(), 8);
    }

    #[test]
    fn relative_paths_are_taken_from_the_task_folder() {
        let top = tempfile::tempdir().unwrap();
        let job = top.path().join("job");
        let open = top.path().join("open");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::create_dir_all(&open).unwrap();
        std::fs::write(job.join("in.csv"), "x").unwrap();
        std::fs::write(open.join("x.csv"), "x").unwrap();
        std::fs::write(top.path().join("secret"), "x").unwrap();
        let reads = ReadPolicy {
            roots: vec![open.canonicalize().unwrap()],
            closed: Vec::new(),
            job_dir: Some(job.canonicalize().unwrap()),
        };
        let dir = TaskDir {
            path: &job,
            reads: &reads,
        };
        let other = open.join("x.csv").display().to_string();
        let values = params(json!({"data": "in.csv", "other": other, "up": "../secret"}));
        let p = Params::new("t", &values, &["data", "other", "up"], &dir).unwrap();
        assert_eq!(
            p.required_path("data").unwrap(),
            job.join("in.csv").canonicalize().unwrap()
        );
        assert_eq!(
            p.required_path("other").unwrap(),
            open.join("x.csv").canonicalize().unwrap()
        );
        assert!(matches!(p.required_path("up"), Err(MlError::Unreadable(_))));
        assert!(p
            .required_path("missing")
            .unwrap_err()
            .to_string()
            .contains("'missing' is required"));
    }

    #[test]
    fn a_choice_lists_the_valid_ones() {
        let values = params(json!({"scale": "zscore"}));
        let dir = w();
        let p = Params::new("preprocess", &values, &["scale"], &dir).unwrap();
        let err = p.choice("scale", &["none", "standard"]).unwrap_err();
        assert!(err.to_string().contains("none, standard"), "{err}");
    }
}
