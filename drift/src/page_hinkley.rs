//! Page-Hinkley test (Page 1954), ported from river 0.26's `drift.PageHinkley` with the same
//! operation order: a CUSUM of deviations from the running mean with a forgetting factor,
//! flagging when the cumulative sum rises (`up`), falls (`down`) or either (`both`) more than
//! `threshold` away from its extreme. After a drift the next update starts from scratch.

use serde::{Deserialize, Serialize};

use crate::config::ParamSpec;
use crate::detector::{DriftDetector, RunningMean, Signal, SkipCounter};
use crate::error::DriftError;

const SCOPE: &str = "page_hinkley";
const MIN_INSTANCES: ParamSpec = ParamSpec::new(SCOPE, "min_instances", "an integer >= 0");
const DELTA: ParamSpec = ParamSpec::new(SCOPE, "delta", "a finite number >= 0");
const THRESHOLD: ParamSpec = ParamSpec::new(SCOPE, "threshold", "a finite number > 0");
const ALPHA: ParamSpec = ParamSpec::new(SCOPE, "alpha", "a number in (0, 1]");
const MODE: ParamSpec = ParamSpec::new(SCOPE, "mode", "up, down or both");
const NAMES: &str = "min_instances, delta, threshold, alpha, mode";

/// Which direction of change Page-Hinkley watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageHinkleyMode {
    /// Increases of the mean.
    Up,
    /// Decreases of the mean.
    Down,
    /// Either direction (river's default).
    #[default]
    Both,
}

/// Page-Hinkley's parameters, named and defaulted as in river's `drift.PageHinkley`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageHinkleyParams {
    /// No drift is flagged before this many values. Default 30.
    pub min_instances: u64,
    /// Magnitude of change tolerated per value, ≥ 0. Default 0.005.
    pub delta: f64,
    /// Detection threshold (lambda), > 0. Default 50.
    pub threshold: f64,
    /// Forgetting factor of the cumulative sums, in (0, 1]. Default `1 - 0.0001`.
    pub alpha: f64,
    /// Direction watched. Default `both`.
    pub mode: PageHinkleyMode,
}

impl Default for PageHinkleyParams {
    fn default() -> Self {
        PageHinkleyParams {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0 - 0.0001,
            mode: PageHinkleyMode::Both,
        }
    }
}

impl PageHinkleyParams {
    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<(), DriftError> {
        DELTA.ensure(self.delta.is_finite() && self.delta >= 0.0, self.delta)?;
        THRESHOLD.ensure(
            self.threshold.is_finite() && self.threshold > 0.0,
            self.threshold,
        )?;
        ALPHA.ensure(self.alpha > 0.0 && self.alpha <= 1.0, self.alpha)
    }

    pub(crate) fn set(&mut self, key: &str, raw: &str) -> Result<(), DriftError> {
        match key {
            "min_instances" => self.min_instances = MIN_INSTANCES.parse_int(raw)?,
            "delta" => self.delta = DELTA.parse_f64(raw)?,
            "threshold" => self.threshold = THRESHOLD.parse_f64(raw)?,
            "alpha" => self.alpha = ALPHA.parse_f64(raw)?,
            "mode" => {
                self.mode = match raw.trim() {
                    "up" => PageHinkleyMode::Up,
                    "down" => PageHinkleyMode::Down,
                    "both" => PageHinkleyMode::Both,
                    _ => return Err(MODE.invalid(raw)),
                }
            }
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

/// The Page-Hinkley detector. Never warns.
#[derive(Debug, Clone)]
pub struct PageHinkley {
    params: PageHinkleyParams,
    state: State,
    drift: bool,
    skips: SkipCounter,
}

impl Default for PageHinkley {
    fn default() -> Self {
        PageHinkley::from_valid(PageHinkleyParams::default())
    }
}

impl PageHinkley {
    /// A fresh detector; fails when a parameter is out of range.
    pub fn new(params: PageHinkleyParams) -> Result<Self, DriftError> {
        params.validate()?;
        Ok(PageHinkley::from_valid(params))
    }

    fn from_valid(params: PageHinkleyParams) -> Self {
        PageHinkley {
            params,
            state: State::default(),
            drift: false,
            skips: SkipCounter::default(),
        }
    }

    pub fn params(&self) -> &PageHinkleyParams {
        &self.params
    }
}

impl DriftDetector for PageHinkley {
    fn update(&mut self, x: f64) -> Signal {
        if !self.skips.admit(x) {
            return Signal::NONE;
        }
        if self.drift {
            self.state = State::default();
            self.drift = false;
        }
        let p = &self.params;
        let s = &mut self.state;
        s.mean.update(x);
        let dev = x - s.mean.mean;
        s.sum_increase = p.alpha * s.sum_increase + dev - p.delta;
        s.sum_decrease = p.alpha * s.sum_decrease + dev + p.delta;
        if s.sum_increase < s.min_increase {
            s.min_increase = s.sum_increase;
        }
        if s.sum_decrease > s.max_decrease {
            s.max_decrease = s.sum_decrease;
        }
        // river compares the float count with the integer min_instances.
        if s.mean.n >= p.min_instances as f64 {
            let increase = s.sum_increase - s.min_increase;
            let decrease = s.max_decrease - s.sum_decrease;
            self.drift = match p.mode {
                PageHinkleyMode::Up => increase > p.threshold,
                PageHinkleyMode::Down => decrease > p.threshold,
                PageHinkleyMode::Both => increase > p.threshold || decrease > p.threshold,
            };
        }
        Signal {
            drift: self.drift,
            warning: false,
        }
    }

    fn reset(&mut self) {
        *self = PageHinkley::from_valid(self.params.clone());
    }

    fn skipped(&self) -> u64 {
        self.skips.count()
    }
}

#[derive(Debug, Clone, Copy)]
struct State {
    mean: RunningMean,
    sum_increase: f64,
    sum_decrease: f64,
    min_increase: f64,
    max_decrease: f64,
}

impl Default for State {
    fn default() -> Self {
        State {
            mean: RunningMean::default(),
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: f64::INFINITY,
            // river starts the maximum at -1, not -inf; kept for identical flags.
            max_decrease: -1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: usize, at: usize, low: f64, high: f64) -> Vec<f64> {
        (0..n).map(|i| if i < at { low } else { high }).collect()
    }

    fn drifts(detector: &mut PageHinkley, stream: &[f64]) -> Vec<usize> {
        stream
            .iter()
            .enumerate()
            .filter_map(|(i, &x)| detector.update(x).drift.then_some(i))
            .collect()
    }

    fn with_mode(mode: PageHinkleyMode) -> PageHinkley {
        PageHinkley::new(PageHinkleyParams {
            mode,
            ..PageHinkleyParams::default()
        })
        .unwrap()
    }

    #[test]
    fn modes_watch_their_direction() {
        let up = step(400, 200, 0.0, 5.0);
        let down = step(400, 200, 5.0, 0.0);
        assert!(!drifts(&mut with_mode(PageHinkleyMode::Up), &up).is_empty());
        assert!(drifts(&mut with_mode(PageHinkleyMode::Up), &down).is_empty());
        assert!(!drifts(&mut with_mode(PageHinkleyMode::Down), &down).is_empty());
        assert!(drifts(&mut with_mode(PageHinkleyMode::Down), &up).is_empty());
        assert!(!drifts(&mut PageHinkley::default(), &up).is_empty());
        assert!(!drifts(&mut PageHinkley::default(), &down).is_empty());
    }

    #[test]
    fn nothing_is_flagged_before_min_instances() {
        let mut ph = PageHinkley::default();
        let stream = step(29, 1, 0.0, 1e9);
        assert!(drifts(&mut ph, &stream).is_empty());
        assert!(ph.update(1e9).drift, "the 30th value may flag");
    }

    #[test]
    fn state_restarts_after_a_drift() {
        // Huge constant jumps flag at every 30th value: each drift starts a new count.
        let mut ph = PageHinkley::default();
        let stream: Vec<f64> = (0..120)
            .map(|i| if i % 2 == 0 { 0.0 } else { 1e9 })
            .collect();
        assert_eq!(drifts(&mut ph, &stream), vec![29, 59, 89, 119]);
    }

    #[test]
    fn nan_is_skipped_and_reset_is_fresh() {
        let stream = step(400, 200, 0.0, 5.0);
        let expected = drifts(&mut PageHinkley::default(), &stream);
        let mut ph = PageHinkley::default();
        let mut got = Vec::new();
        for (i, &x) in stream.iter().enumerate() {
            ph.update(f64::NAN);
            if ph.update(x).drift {
                got.push(i);
            }
        }
        assert_eq!(got, expected);
        assert_eq!(ph.skipped(), 400);
        ph.reset();
        assert_eq!(ph.skipped(), 0);
        assert_eq!(drifts(&mut ph, &stream), expected);
    }
}
