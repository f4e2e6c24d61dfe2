//! HDDM_W (Frías-Blanco et al. 2014, weighted moving-average test with McDiarmid bounds),
//! ported from river 0.26's `drift.binary.HDDMW` with the same operation order.
//!
//! Built for error bits (1 = error, 0 = correct) or other values in [0, 1]: the bounds assume
//! that range. Other finite values are accepted and computed on exactly as river does, but the
//! confidences then mean nothing. After a drift the next update starts from scratch.

use serde::{Deserialize, Serialize};

use crate::config::ParamSpec;
use crate::detector::{DriftDetector, Signal, SkipCounter};
use crate::error::DriftError;

const SCOPE: &str = "hddm_w";
const DRIFT_CONFIDENCE: ParamSpec = ParamSpec::new(SCOPE, "drift_confidence", "a number in (0, 1)");
const WARNING_CONFIDENCE: ParamSpec =
    ParamSpec::new(SCOPE, "warning_confidence", "a number in (0, 1)");
const LAMBDA_VAL: ParamSpec = ParamSpec::new(SCOPE, "lambda_val", "a number in (0, 1]");
const TWO_SIDED_TEST: ParamSpec = ParamSpec::new(SCOPE, "two_sided_test", "true or false");
const NAMES: &str = "drift_confidence, warning_confidence, lambda_val, two_sided_test";

/// HDDM_W's parameters, named and defaulted as in river's `drift.binary.HDDMW`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HddmWParams {
    /// Confidence of the drift test, in (0, 1). Default 0.001.
    pub drift_confidence: f64,
    /// Confidence of the warning test, in (0, 1). Default 0.005.
    pub warning_confidence: f64,
    /// Weight of the newest value in the moving average, in (0, 1]. Default 0.05.
    pub lambda_val: f64,
    /// Also watch decreases of the mean. Default false (increases only).
    pub two_sided_test: bool,
}

impl Default for HddmWParams {
    fn default() -> Self {
        HddmWParams {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            lambda_val: 0.05,
            two_sided_test: false,
        }
    }
}

impl HddmWParams {
    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<(), DriftError> {
        DRIFT_CONFIDENCE.open(self.drift_confidence, 0.0, 1.0)?;
        WARNING_CONFIDENCE.open(self.warning_confidence, 0.0, 1.0)?;
        LAMBDA_VAL.ensure(
            self.lambda_val > 0.0 && self.lambda_val <= 1.0,
            self.lambda_val,
        )
    }

    pub(crate) fn set(&mut self, key: &str, raw: &str) -> Result<(), DriftError> {
        match key {
            "drift_confidence" => self.drift_confidence = DRIFT_CONFIDENCE.parse_f64(raw)?,
            "warning_confidence" => self.warning_confidence = WARNING_CONFIDENCE.parse_f64(raw)?,
            "lambda_val" => self.lambda_val = LAMBDA_VAL.parse_f64(raw)?,
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

/// The HDDM_W detector: flags drift and warnings.
#[derive(Debug, Clone)]
pub struct HddmW {
    params: HddmWParams,
    weights: Weights,
    state: State,
    last: Signal,
    skips: SkipCounter,
}

impl Default for HddmW {
    fn default() -> Self {
        HddmW::from_valid(HddmWParams::default())
    }
}

impl HddmW {
    /// A fresh detector; fails when a parameter is out of range.
    pub fn new(params: HddmWParams) -> Result<Self, DriftError> {
        params.validate()?;
        Ok(HddmW::from_valid(params))
    }

    fn from_valid(params: HddmWParams) -> Self {
        HddmW {
            weights: Weights::new(params.lambda_val),
            params,
            state: State::default(),
            last: Signal::NONE,
            skips: SkipCounter::default(),
        }
    }

    pub fn params(&self) -> &HddmWParams {
        &self.params
    }
}

impl DriftDetector for HddmW {
    fn update(&mut self, x: f64) -> Signal {
        if !self.skips.admit(x) {
            return Signal::NONE;
        }
        if self.last.drift {
            self.state = State::default();
        }
        let w = &self.weights;
        let (drift, warning) = (self.params.drift_confidence, self.params.warning_confidence);
        let s = &mut self.state;
        s.total.update(x, w);

        let eps = mcdiarmid_bound(s.total.ibc, drift);
        if s.total.ewma + eps < s.incr_cutpoint {
            s.incr_cutpoint = s.total.ewma + eps;
            s.s1_incr = s.total;
            s.s2_incr = Sample::default();
        } else {
            s.s2_incr.update(x, w);
        }
        let mut signal = if mean_changed(&s.s1_incr, &s.s2_incr, drift) {
            Signal {
                drift: true,
                warning: false,
            }
        } else if mean_changed(&s.s1_incr, &s.s2_incr, warning) {
            Signal {
                drift: false,
                warning: true,
            }
        } else {
            Signal::NONE
        };

        let eps = mcdiarmid_bound(s.total.ibc, drift);
        if s.total.ewma - eps > s.decr_cutpoint {
            s.decr_cutpoint = s.total.ewma - eps;
            s.s1_decr = s.total;
            s.s2_decr = Sample::default();
        } else {
            s.s2_decr.update(x, w);
        }
        if self.params.two_sided_test {
            // As in river: set, never clear, so a warning may stand beside a drift.
            if mean_changed(&s.s2_decr, &s.s1_decr, drift) {
                signal.drift = true;
            } else if mean_changed(&s.s2_decr, &s.s1_decr, warning) {
                signal.warning = true;
            }
        }
        self.last = signal;
        signal
    }

    fn reset(&mut self) {
        *self = HddmW::from_valid(self.params.clone());
    }

    fn skipped(&self) -> u64 {
        self.skips.count()
    }
}

fn mcdiarmid_bound(ibc: f64, confidence: f64) -> f64 {
    (ibc * (1.0 / confidence).ln() / 2.0).sqrt()
}

/// Whether `after`'s weighted mean exceeds `before`'s by more than the McDiarmid bound.
fn mean_changed(before: &Sample, after: &Sample, confidence: f64) -> bool {
    if !(before.initialized && after.initialized) {
        return false;
    }
    let bound = mcdiarmid_bound(before.ibc + after.ibc, confidence);
    after.ewma - before.ewma > bound
}

/// The constants river's `SampleInfo` derives from `lambda_val`.
#[derive(Debug, Clone, Copy)]
struct Weights {
    lambda: f64,
    one_minus_lambda: f64,
    lambda_sq: f64,
    one_minus_lambda_sq: f64,
}

impl Weights {
    fn new(lambda: f64) -> Self {
        Weights {
            lambda,
            one_minus_lambda: 1.0 - lambda,
            lambda_sq: lambda * lambda,
            // river computes `(1 - lambd) ** 2`, which is libm's pow; for about one lambda in a
            // thousand it differs from the product in the last bit. black_box keeps LLVM from
            // rewriting pow(x, 2.0) into x * x so the port rounds as river does.
            one_minus_lambda_sq: (1.0 - lambda).powf(std::hint::black_box(2.0)),
        }
    }
}

/// river's `SampleInfo`: an exponentially weighted mean and its independent bound condition.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ewma: f64,
    initialized: bool,
    ibc: f64,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            ewma: 0.0,
            initialized: false,
            ibc: 1.0,
        }
    }
}

impl Sample {
    fn update(&mut self, x: f64, w: &Weights) {
        self.ewma = if self.initialized {
            w.lambda * x + w.one_minus_lambda * self.ewma
        } else {
            x
        };
        self.initialized = true;
        self.ibc = w.lambda_sq + w.one_minus_lambda_sq * self.ibc;
    }
}

#[derive(Debug, Clone, Copy)]
struct State {
    total: Sample,
    s1_incr: Sample,
    s2_incr: Sample,
    s1_decr: Sample,
    s2_decr: Sample,
    incr_cutpoint: f64,
    decr_cutpoint: f64,
}

impl Default for State {
    fn default() -> Self {
        State {
            total: Sample::default(),
            s1_incr: Sample::default(),
            s2_incr: Sample::default(),
            s1_decr: Sample::default(),
            s2_decr: Sample::default(),
            incr_cutpoint: f64::INFINITY,
            decr_cutpoint: f64::NEG_INFINITY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_bits() -> Vec<f64> {
        (0..2000)
            .map(|i| {
                let every = if i < 1000 { 10 } else { 2 };
                f64::from(i % every == 0)
            })
            .collect()
    }

    fn signals(detector: &mut HddmW, stream: &[f64]) -> (Vec<usize>, Vec<usize>) {
        let f = crate::flags(detector, stream.iter().copied());
        (f.drift, f.warnings)
    }

    #[test]
    fn flags_an_error_rate_increase() {
        let (drifts, _) = signals(&mut HddmW::default(), &error_bits());
        assert!(drifts.iter().any(|&d| d >= 1000), "{drifts:?}");
    }

    #[test]
    fn squared_weight_rounds_like_python_pow() {
        // Python: (1 - 0.10378146764427269) ** 2 == 0.8032076577378539, one ulp below the product.
        let w = Weights::new(0.10378146764427269);
        assert_eq!(w.one_minus_lambda_sq, 0.8032076577378539);
        assert_ne!(
            w.one_minus_lambda_sq,
            w.one_minus_lambda * w.one_minus_lambda
        );
    }

    #[test]
    fn nan_is_skipped_and_reset_is_fresh() {
        let stream = error_bits();
        let expected = signals(&mut HddmW::default(), &stream);
        let mut hddm = HddmW::default();
        for &x in &stream[..500] {
            hddm.update(x);
        }
        assert_eq!(hddm.update(f64::NEG_INFINITY), Signal::NONE);
        assert_eq!(hddm.skipped(), 1);
        hddm.reset();
        assert_eq!(hddm.skipped(), 0);
        assert_eq!(signals(&mut hddm, &stream), expected);
    }
}
