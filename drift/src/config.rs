//! Detector configuration: the serde-tagged [`DetectorConfig`], the constructor from river's
//! parameter names as text, validation helpers shared by the parameter structs, and the
//! [`Detector`] enum a config builds.

use serde::{Deserialize, Serialize};

use crate::adwin::{Adwin, AdwinParams};
use crate::detector::{DriftDetector, Signal};
use crate::error::DriftError;
use crate::hddm_a::{HddmA, HddmAParams};
use crate::hddm_w::{HddmW, HddmWParams};
use crate::page_hinkley::{PageHinkley, PageHinkleyParams};

/// Which detector to run, with its parameters. Serialized with a `detector` tag and river's
/// parameter names, every parameter optional:
/// `{"detector": "adwin", "delta": 0.01, "clock": 1}`.
///
/// Deserializing does not validate; [`DetectorConfig::validate`] and [`DetectorConfig::build`] do.
/// It takes the detector's name in any case and with the seed's spellings (`ADWIN`,
/// `Page Hinkley`, `HDDM` for HDDM_A), and a bare name stands for the detector with river's
/// defaults: `"adwin"` is `{"detector": "adwin"}`.
/// The default is HDDM_A, the seed's default detector ("HDDM").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "detector", rename_all = "snake_case")]
pub enum DetectorConfig {
    Adwin(AdwinParams),
    PageHinkley(PageHinkleyParams),
    HddmA(HddmAParams),
    HddmW(HddmWParams),
}

/// A detector's name as maas writes it (`adwin`, `page_hinkley`, `hddm_a`, `hddm_w`), from any
/// case and the seed's spellings: `ADWIN`, `Page Hinkley`, `PageHinkley`, `HDDM` (HDDM_A),
/// `HDDM-W`.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    let folded: String = name
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    match folded.as_str() {
        "adwin" => Some("adwin"),
        "pagehinkley" | "ph" => Some("page_hinkley"),
        "hddm" | "hddma" => Some("hddm_a"),
        "hddmw" => Some("hddm_w"),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for DetectorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        const EXPECTED: &str = "a detector: a name (adwin, page_hinkley, hddm_a, hddm_w) or an \
                                object like {\"detector\": \"adwin\", \"delta\": 0.002}";
        let (name, params) = match Value::deserialize(d)? {
            Value::String(name) => (name, serde_json::Map::new()),
            Value::Object(mut map) => match map.remove("detector") {
                Some(Value::String(name)) => (name, map),
                Some(_) => {
                    return Err(D::Error::custom(
                        "`detector` must be a name, such as \"adwin\"",
                    ))
                }
                None => return Err(D::Error::custom(
                    "the detector object needs `detector`: adwin, page_hinkley, hddm_a or hddm_w",
                )),
            },
            _ => return Err(D::Error::custom(format!("expected {EXPECTED}"))),
        };
        let params = Value::Object(params);
        let params_error = |e: serde_json::Error| D::Error::custom(format!("{name}: {e}"));
        match canonical_name(&name) {
            Some("adwin") => AdwinParams::deserialize(params)
                .map(DetectorConfig::Adwin)
                .map_err(params_error),
            Some("page_hinkley") => PageHinkleyParams::deserialize(params)
                .map(DetectorConfig::PageHinkley)
                .map_err(params_error),
            Some("hddm_a") => HddmAParams::deserialize(params)
                .map(DetectorConfig::HddmA)
                .map_err(params_error),
            Some("hddm_w") => HddmWParams::deserialize(params)
                .map(DetectorConfig::HddmW)
                .map_err(params_error),
            _ => Err(D::Error::custom(format!(
                "unknown detector '{}': use adwin, page_hinkley, hddm_a or hddm_w (ADWIN, Page \
                 Hinkley and HDDM, the seed's names, work too)",
                name.chars().take(64).collect::<String>()
            ))),
        }
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig::HddmA(HddmAParams::default())
    }
}

impl DetectorConfig {
    /// The detector names [`DetectorConfig::from_params`] accepts.
    pub const NAMES: [&'static str; 4] = ["adwin", "page_hinkley", "hddm_a", "hddm_w"];

    /// Build a validated config from a detector name (`adwin`, `page_hinkley`, `hddm_a`,
    /// `hddm_w`) and `(key, value)` pairs using river's parameter names, values as text
    /// (`"0.01"`, `"32"`, `"true"`, `"up"`). Missing parameters keep river's defaults.
    pub fn from_params<I, K, V>(detector: &str, params: I) -> Result<Self, DriftError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = match canonical_name(detector) {
            Some("adwin") => DetectorConfig::Adwin(AdwinParams::default()),
            Some("page_hinkley") => DetectorConfig::PageHinkley(PageHinkleyParams::default()),
            Some("hddm_a") => DetectorConfig::HddmA(HddmAParams::default()),
            Some("hddm_w") => DetectorConfig::HddmW(HddmWParams::default()),
            _ => return Err(DriftError::UnknownDetector(detector.to_owned())),
        };
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in params {
            let (key, value) = (key.as_ref(), value.as_ref());
            if seen.iter().any(|s| s == key) {
                return Err(DriftError::DuplicateParameter {
                    detector: config.name(),
                    name: key.to_owned(),
                });
            }
            seen.push(key.to_owned());
            match &mut config {
                DetectorConfig::Adwin(p) => p.set(key, value)?,
                DetectorConfig::PageHinkley(p) => p.set(key, value)?,
                DetectorConfig::HddmA(p) => p.set(key, value)?,
                DetectorConfig::HddmW(p) => p.set(key, value)?,
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The detector's name as [`DetectorConfig::from_params`] takes it.
    pub fn name(&self) -> &'static str {
        match self {
            DetectorConfig::Adwin(_) => "adwin",
            DetectorConfig::PageHinkley(_) => "page_hinkley",
            DetectorConfig::HddmA(_) => "hddm_a",
            DetectorConfig::HddmW(_) => "hddm_w",
        }
    }

    /// Whether the detector assumes values in [0, 1] (the HDDM detectors, built for error bits).
    pub fn expects_unit_interval(&self) -> bool {
        matches!(self, DetectorConfig::HddmA(_) | DetectorConfig::HddmW(_))
    }

    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<(), DriftError> {
        match self {
            DetectorConfig::Adwin(p) => p.validate(),
            DetectorConfig::PageHinkley(p) => p.validate(),
            DetectorConfig::HddmA(p) => p.validate(),
            DetectorConfig::HddmW(p) => p.validate(),
        }
    }

    /// A fresh detector with these parameters.
    pub fn build(&self) -> Result<Detector, DriftError> {
        Ok(match self {
            DetectorConfig::Adwin(p) => Detector::Adwin(Adwin::new(p.clone())?),
            DetectorConfig::PageHinkley(p) => Detector::PageHinkley(PageHinkley::new(p.clone())?),
            DetectorConfig::HddmA(p) => Detector::HddmA(HddmA::new(p.clone())?),
            DetectorConfig::HddmW(p) => Detector::HddmW(HddmW::new(p.clone())?),
        })
    }
}

/// Any of the four detectors, chosen at run time (what [`DetectorConfig::build`] returns).
#[derive(Debug, Clone)]
pub enum Detector {
    Adwin(Adwin),
    PageHinkley(PageHinkley),
    HddmA(HddmA),
    HddmW(HddmW),
}

impl Detector {
    fn inner(&mut self) -> &mut dyn DriftDetector {
        match self {
            Detector::Adwin(d) => d,
            Detector::PageHinkley(d) => d,
            Detector::HddmA(d) => d,
            Detector::HddmW(d) => d,
        }
    }
}

impl DriftDetector for Detector {
    fn update(&mut self, x: f64) -> Signal {
        self.inner().update(x)
    }

    fn reset(&mut self) {
        self.inner().reset();
    }

    fn skipped(&self) -> u64 {
        match self {
            Detector::Adwin(d) => d.skipped(),
            Detector::PageHinkley(d) => d.skipped(),
            Detector::HddmA(d) => d.skipped(),
            Detector::HddmW(d) => d.skipped(),
        }
    }
}

/// One parameter: who owns it, its river name and its allowed range in words. Parse failures
/// and range failures report the same text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamSpec {
    pub(crate) scope: &'static str,
    pub(crate) name: &'static str,
    pub(crate) allowed: &'static str,
}

impl ParamSpec {
    pub(crate) const fn new(
        scope: &'static str,
        name: &'static str,
        allowed: &'static str,
    ) -> Self {
        ParamSpec {
            scope,
            name,
            allowed,
        }
    }

    pub(crate) fn invalid(&self, value: impl ToString) -> DriftError {
        DriftError::InvalidParameter {
            scope: self.scope,
            name: self.name,
            value: value.to_string(),
            allowed: self.allowed,
        }
    }

    /// `Ok` when `ok`, else the error naming this parameter and `value`.
    pub(crate) fn ensure(&self, ok: bool, value: impl ToString) -> Result<(), DriftError> {
        if ok {
            Ok(())
        } else {
            Err(self.invalid(value))
        }
    }

    /// Check `value` lies in the open interval (`low`, `high`).
    pub(crate) fn open(&self, value: f64, low: f64, high: f64) -> Result<(), DriftError> {
        self.ensure(value > low && value < high, value)
    }

    pub(crate) fn parse_f64(&self, raw: &str) -> Result<f64, DriftError> {
        raw.trim().parse::<f64>().map_err(|_| self.invalid(raw))
    }

    pub(crate) fn parse_int<T: std::str::FromStr>(&self, raw: &str) -> Result<T, DriftError> {
        raw.trim().parse::<T>().map_err(|_| self.invalid(raw))
    }

    pub(crate) fn parse_bool(&self, raw: &str) -> Result<bool, DriftError> {
        let trimmed = raw.trim();
        if trimmed.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if trimmed.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.invalid(raw))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_hinkley::PageHinkleyMode;

    #[test]
    fn from_params_keeps_river_defaults_for_missing_keys() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            DetectorConfig::from_params("adwin", none).unwrap(),
            DetectorConfig::Adwin(AdwinParams::default())
        );
        let config =
            DetectorConfig::from_params("page_hinkley", [("mode", "up"), ("threshold", "20")])
                .unwrap();
        let DetectorConfig::PageHinkley(p) = config else {
            panic!("wrong variant");
        };
        assert_eq!(p.mode, PageHinkleyMode::Up);
        assert_eq!(p.threshold, 20.0);
        assert_eq!(p.min_instances, 30);
    }

    #[test]
    fn from_params_rejects_unknown_names_and_keys() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            DetectorConfig::from_params("kswin", none),
            Err(DriftError::UnknownDetector("kswin".into()))
        );
        let err = DetectorConfig::from_params("adwin", [("lambda_val", "0.1")]).unwrap_err();
        assert!(matches!(
            err,
            DriftError::UnknownParameter { detector: "adwin", ref name, .. } if name == "lambda_val"
        ));
        assert!(err.to_string().contains("min_window_length"), "{err}");
        let err = DetectorConfig::from_params(
            "hddm_a",
            [("two_sided_test", "true"), ("two_sided_test", "false")],
        )
        .unwrap_err();
        assert!(matches!(err, DriftError::DuplicateParameter { .. }));
    }

    #[test]
    fn from_params_reports_unparsable_values_with_the_allowed_range() {
        let err = DetectorConfig::from_params("adwin", [("clock", "often")]).unwrap_err();
        assert_eq!(
            err,
            DriftError::InvalidParameter {
                scope: "adwin",
                name: "clock",
                value: "often".into(),
                allowed: "an integer >= 1",
            }
        );
        let err = DetectorConfig::from_params("hddm_w", [("two_sided_test", "yes")]).unwrap_err();
        assert!(err.to_string().contains("two_sided_test"), "{err}");
        let err = DetectorConfig::from_params("page_hinkley", [("mode", "sideways")]).unwrap_err();
        assert!(err.to_string().contains("up, down or both"), "{err}");
    }

    #[test]
    fn from_params_validates_ranges() {
        for (detector, key, value) in [
            ("adwin", "delta", "0"),
            ("adwin", "delta", "1"),
            ("adwin", "delta", "NaN"),
            ("adwin", "clock", "0"),
            ("adwin", "max_buckets", "1"),
            ("adwin", "min_window_length", "0"),
            ("adwin", "grace_period", "-1"),
            ("page_hinkley", "delta", "-0.1"),
            ("page_hinkley", "threshold", "0"),
            ("page_hinkley", "threshold", "inf"),
            ("page_hinkley", "alpha", "0"),
            ("page_hinkley", "alpha", "1.5"),
            ("page_hinkley", "min_instances", "2.5"),
            ("hddm_a", "drift_confidence", "1"),
            ("hddm_a", "warning_confidence", "0"),
            ("hddm_w", "lambda_val", "0"),
            ("hddm_w", "lambda_val", "1.01"),
            ("hddm_w", "drift_confidence", "-0.5"),
        ] {
            let err = DetectorConfig::from_params(detector, [(key, value)]).unwrap_err();
            match &err {
                DriftError::InvalidParameter { scope, name, .. } => {
                    assert_eq!((*scope, *name), (detector, key), "{err}");
                }
                other => panic!("{detector} {key}={value}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn the_seeds_spellings_and_bare_names_are_accepted() {
        for (text, name) in [
            (r#"{"detector": "ADWIN"}"#, "adwin"),
            (
                r#"{"detector": "Page Hinkley", "threshold": 20}"#,
                "page_hinkley",
            ),
            (r#"{"detector": "HDDM"}"#, "hddm_a"),
            (r#"{"detector": "hddm-w"}"#, "hddm_w"),
            (r#""adwin""#, "adwin"),
            (r#""PageHinkley""#, "page_hinkley"),
        ] {
            let config: DetectorConfig = serde_json::from_str(text).unwrap();
            assert_eq!(config.name(), name, "{text}");
        }
        let err = serde_json::from_str::<DetectorConfig>(r#"{"detector": "kswin"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown detector 'kswin'"),
            "{err}"
        );
        let err = serde_json::from_str::<DetectorConfig>("[1, 2]").unwrap_err();
        assert!(err.to_string().contains("a name (adwin"), "{err}");
        assert_eq!(
            DetectorConfig::from_params("Page Hinkley", [("threshold", "20")])
                .unwrap()
                .name(),
            "page_hinkley"
        );
    }

    #[test]
    fn serde_config_is_tagged_with_river_names() {
        let config: DetectorConfig =
            serde_json::from_str(r#"{"detector":"hddm_w","lambda_val":0.1,"two_sided_test":true}"#)
                .unwrap();
        assert_eq!(
            config,
            DetectorConfig::HddmW(HddmWParams {
                lambda_val: 0.1,
                two_sided_test: true,
                ..HddmWParams::default()
            })
        );
        let config: DetectorConfig =
            serde_json::from_str(r#"{"detector":"page_hinkley","mode":"down","threshold":20}"#)
                .unwrap();
        assert_eq!(config.name(), "page_hinkley");
        let json = serde_json::to_value(DetectorConfig::Adwin(AdwinParams::default())).unwrap();
        assert_eq!(json["detector"], "adwin");
        assert_eq!(json["clock"], 32);
        assert!(
            serde_json::from_str::<DetectorConfig>(r#"{"detector":"adwin","lambda":1}"#).is_err()
        );
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"detector":"ddm"}"#).is_err());
    }

    #[test]
    fn build_rejects_an_invalid_deserialized_config() {
        let config: DetectorConfig =
            serde_json::from_str(r#"{"detector":"adwin","delta":2.0}"#).unwrap();
        assert!(matches!(
            config.build(),
            Err(DriftError::InvalidParameter { name: "delta", .. })
        ));
    }

    #[test]
    fn built_detector_dispatches_and_counts_skips() {
        for name in DetectorConfig::NAMES {
            let none: [(&str, &str); 0] = [];
            let mut detector = DetectorConfig::from_params(name, none)
                .unwrap()
                .build()
                .unwrap();
            assert_eq!(detector.update(f64::NAN), Signal::NONE);
            detector.update(0.5);
            assert_eq!(detector.skipped(), 1);
            detector.reset();
            assert_eq!(detector.skipped(), 0);
        }
    }
}
