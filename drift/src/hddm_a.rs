//! HDDM_A (Frías-Blanco et al. 2014, moving-average test with Hoeffding bounds), ported from
//! river 0.26's `drift.binary.HDDMA` with the same operation order.
//!
//! Built for error bits (1 = error, 0 = correct) or other values in [0, 1]: the bounds assume
//! that range. Other finite values are accepted and computed on exactly as river does, but the
//! confidences then mean nothing. After a drift the next update starts from scratch.

use serde::{Deserialize, Serialize};

use crate::config::ParamSpec;
use crate::detector::{DriftDetector, RunningMean, Signal, SkipCounter};
use crate::error::DriftError;

const SCOPE: &str = "hddm_a";
const DRIFT_CONFIDENCE: ParamSpec = ParamSpec::new(SCOPE, "drift_confidence", "a number in (0, 1)");
const WARNING_CONFIDENCE: ParamSpec =
    ParamSpec::new(SCOPE, "warning_confidence", "a number in (0, 1)");
const TWO_SIDED_TEST: ParamSpec = ParamSpec::new(SCOPE, "two_sided_test", "true or false");
const NAMES: &str = "drift_confidence, warning_confidence, two_sided_test";

/// HDDM_A's parameters, named and defaulted as in river's `drift.binary.HDDMA`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HddmAParams {
    /// Confidence of the drift test, in (0, 1). Default 0.001.
    pub drift_confidence: f64,
    /// Confidence of the warning test, in (0, 1). Default 0.005.
    pub warning_confidence: f64,
    /// Also watch decreases of the mean. Default false (increases only).
    pub two_sided_test: bool,
}

impl Default for HddmAParams {
    fn default() -> Self {
        HddmAParams {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            two_sided_test: false,
        }
    }
}

impl HddmAParams {
    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<(), DriftError> {
        DRIFT_CONFIDENCE.open(self.drift_confidence, 0.0, 1.0)?;
        WARNING_CONFIDENCE.open(self.warning_confidence, 0.0, 1.0)
    }

    pub(crate) fn set(&mut self, key: &str, raw: &str) -> Result<(), DriftError> {
        match key {
            "drift_confidence" => self.drift_confidence = DRIFT_CONFIDENCE.parse_f64(raw)?,
            "warning_confidence" => self.warning_confidence = WARNING_CONFIDENCE.parse_f64(raw)?,
            "two_sided_test" => self.two_sided_test = TWO_SIDED_TEST.parse_bool(raw)?,
            other => {
                return Err(DriftError::UnknownParameter {
                    detector: SCOPE,
                    name: other.to_owned(),
                    allowed: NAMES,
                })
            }
        }
        Ok(())
    }
}

/// The HDDM_A detector: flags drift and warnings.
#[derive(Debug, Clone)]
pub struct HddmA {
    params: HddmAParams,
    state: State,
    last: Signal,
    skips: SkipCounter,
}

impl Default for HddmA {
    fn default() -> Self {
        HddmA::from_valid(HddmAParams::default())
    }
}

impl HddmA {
    /// A fresh detector; fails when a parameter is out of range.
    pub fn new(params: HddmAParams) -> Result<Self, DriftError> {
        params.validate()?;
        Ok(HddmA::from_valid(params))
    }

    fn from_valid(params: HddmAParams) -> Self {
        HddmA {
            params,
            state: State::default(),
            last: Signal::NONE,
            skips: SkipCounter::default(),
        }
    }

    pub fn params(&self) -> &HddmAParams {
        &self.params
    }

    fn hoeffding_bound(&self, n: f64) -> f64 {
        (1.0 / (2.0 * n) * (1.0 / self.params.drift_confidence).ln()).sqrt()
    }

    /// Whether the global mean rose above the minimum cut point.
    fn mean_increased(&self, confidence: f64) -> bool {
        let (z, x_min) = (&self.state.z, &self.state.x_min);
        if x_min.n == z.n {
            return false;
        }
        let m = (z.n - x_min.n) / x_min.n * (1.0 / z.n);
        let eps = (m / 2.0 * (2.0 / confidence).ln()).sqrt();
        z.mean - x_min.mean >= eps
    }

    /// Whether the global mean fell below the maximum cut point.
    fn mean_decreased(&self, confidence: f64) -> bool {
        let (z, x_max) = (&self.state.z, &self.state.x_max);
        if x_max.n == z.n {
            return false;
        }
        let m = (z.n - x_max.n) / x_max.n * (1.0 / z.n);
        let eps = (m / 2.0 * (2.0 / confidence).ln()).sqrt();
        x_max.mean - z.mean >= eps
    }
}

impl DriftDetector for HddmA {
    fn update(&mut self, x: f64) -> Signal {
        if !self.skips.admit(x) {
            return Signal::NONE;
        }
        if self.last.drift {
            self.state = State::default();
        }
        let s = &mut self.state;
        s.z.update(x);
        if s.x_min.n == 0.0 {
            s.x_min = s.z;
        }
        if s.x_max.n == 0.0 {
            s.x_max = s.z;
        }
        let z = s.z;
        let (x_min_n, x_max_n) = (s.x_min.n, s.x_max.n);

        let eps_z = self.hoeffding_bound(z.n);
        let eps_x = self.hoeffding_bound(x_min_n);
        if self.state.x_min.mean + eps_x >= z.mean + eps_z {
            self.state.x_min = z;
        }
        let eps_x = self.hoeffding_bound(x_max_n);
        if self.state.x_max.mean - eps_x <= z.mean - eps_z {
            self.state.x_max = z;
        }

        let (drift, warning) = (self.params.drift_confidence, self.params.warning_confidence);
        let mut signal = if self.mean_increased(drift) {
            Signal {
                drift: true,
                warning: false,
            }
        } else if self.mean_increased(warning) {
            Signal {
                drift: false,
                warning: true,
            }
        } else {
            Signal::NONE
        };
        if self.params.two_sided_test {
            // river sets the flags without clearing the other one: a warning from the increase
            // test may stand beside a drift from the decrease test.
            if self.mean_decreased(drift) {
                signal.drift = true;
            } else if self.mean_decreased(warning) {
                signal.warning = true;
            }
        }
        self.last = signal;
        signal
    }

    fn reset(&mut self) {
        *self = HddmA::from_valid(self.params.clone());
    }

    fn skipped(&self) -> u64 {
        self.skips.count()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    /// Cut point for tracking increases.
    x_min: RunningMean,
    /// Cut point for tracking decreases.
    x_max: RunningMean,
    /// Global mean.
    z: RunningMean,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Error bits with rate 0.1 then 0.5, from a fixed pattern.
    fn error_bits() -> Vec<f64> {
        (0..2000)
            .map(|i| {
                let every = if i < 1000 { 10 } else { 2 };
                f64::from(i % every == 0)
            })
            .collect()
    }

    fn signals(detector: &mut HddmA, stream: &[f64]) -> (Vec<usize>, Vec<usize>) {
        let f = crate::flags(detector, stream.iter().copied());
        (f.drift, f.warnings)
    }

    #[test]
    fn flags_an_error_rate_increase_after_warning() {
        let (drifts, warnings) = signals(&mut HddmA::default(), &error_bits());
        assert!(!drifts.is_empty());
        assert!(drifts[0] >= 1000, "{drifts:?}");
        assert!(warnings.iter().any(|&w| w < drifts[0]), "{warnings:?}");
    }

    #[test]
    fn one_sided_test_ignores_a_decrease() {
        let mut stream = error_bits();
        stream.reverse();
        let (drifts, _) = signals(&mut HddmA::default(), &stream);
        assert!(drifts.iter().all(|&d| d < 1000), "{drifts:?}");
        let mut two_sided = HddmA::new(HddmAParams {
            two_sided_test: true,
            ..HddmAParams::default()
        })
        .unwrap();
        let (drifts, _) = signals(&mut two_sided, &stream);
        assert!(drifts.iter().any(|&d| d >= 1000), "{drifts:?}");
    }

    #[test]
    fn nan_is_skipped_and_reset_is_fresh() {
        let stream = error_bits();
        let expected = signals(&mut HddmA::default(), &stream);
        let mut hddm = HddmA::default();
        let mut with_nan = Vec::new();
        for &x in &stream {
            with_nan.push(f64::NAN);
            with_nan.push(x);
        }
        let (drifts, warnings) = signals(&mut hddm, &with_nan);
        let halve = |v: Vec<usize>| v.into_iter().map(|i| i / 2).collect::<Vec<_>>();
        assert_eq!((halve(drifts), halve(warnings)), expected);
        assert_eq!(hddm.skipped(), 2000);
        hddm.reset();
        assert_eq!(hddm.skipped(), 0);
        assert_eq!(signals(&mut hddm, &stream), expected);
    }
}
