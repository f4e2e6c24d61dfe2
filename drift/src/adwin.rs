//! ADWIN (ADaptive WINdowing, Bifet & Gavaldà 2007), ported from river 0.26's `drift.ADWIN`
//! (its Rust core `rust_src/adwin.rs`, BSD-3-Clause) with the same operation order, so the same
//! stream flags drift at the same indices.
//!
//! The window is kept as exponential histograms: row `i` holds summaries (sum and variance) of
//! `2^i` values each, oldest first; a row holding `max_buckets + 1` summaries merges its two
//! oldest into row `i + 1`. Every `clock` values (once the window is longer than
//! `grace_period`) every cut point between summaries is tested; a cut whose sub-window means
//! differ by more than the Hoeffding-style bound drops the oldest summary and the scan restarts.
//! As in river, the update *after* a drift starts again from an empty window.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::config::ParamSpec;
use crate::detector::{DriftDetector, Signal, SkipCounter};
use crate::error::DriftError;

const SCOPE: &str = "adwin";
const DELTA: ParamSpec = ParamSpec::new(SCOPE, "delta", "a number in (0, 1)");
const CLOCK: ParamSpec = ParamSpec::new(SCOPE, "clock", "an integer >= 1");
const MAX_BUCKETS: ParamSpec = ParamSpec::new(SCOPE, "max_buckets", "an integer >= 2");
const MIN_WINDOW_LENGTH: ParamSpec = ParamSpec::new(SCOPE, "min_window_length", "an integer >= 1");
const GRACE_PERIOD: ParamSpec = ParamSpec::new(SCOPE, "grace_period", "an integer >= 0");
const NAMES: &str = "delta, clock, max_buckets, min_window_length, grace_period";

/// ADWIN's parameters, named and defaulted as in river's `drift.ADWIN`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdwinParams {
    /// Significance of the cut test, in (0, 1). Default 0.002.
    pub delta: f64,
    /// Test for a cut every `clock` values, ≥ 1. Default 32.
    pub clock: u32,
    /// Summaries kept per size before two merge, ≥ 2. Default 5. (river accepts 1, then
    /// panics once a drift empties a row.)
    pub max_buckets: usize,
    /// Smallest sub-window on either side of a cut, ≥ 1. Default 5.
    pub min_window_length: u64,
    /// No test until the window holds more than this many values. Default 10.
    pub grace_period: u64,
}

impl Default for AdwinParams {
    fn default() -> Self {
        AdwinParams {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

impl AdwinParams {
    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<(), DriftError> {
        DELTA.open(self.delta, 0.0, 1.0)?;
        CLOCK.ensure(self.clock >= 1, self.clock)?;
        MAX_BUCKETS.ensure(self.max_buckets >= 2, self.max_buckets)?;
        MIN_WINDOW_LENGTH.ensure(self.min_window_length >= 1, self.min_window_length)
    }

    pub(crate) fn set(&mut self, key: &str, raw: &str) -> Result<(), DriftError> {
        match key {
            "delta" => self.delta = DELTA.parse_f64(raw)?,
            "clock" => self.clock = CLOCK.parse_int(raw)?,
            "max_buckets" => self.max_buckets = MAX_BUCKETS.parse_int(raw)?,
            "min_window_length" => self.min_window_length = MIN_WINDOW_LENGTH.parse_int(raw)?,
            "grace_period" => self.grace_period = GRACE_PERIOD.parse_int(raw)?,
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

/// The ADWIN detector. Never warns.
#[derive(Debug, Clone)]
pub struct Adwin {
    params: AdwinParams,
    window: Window,
    drift: bool,
    skips: SkipCounter,
}

impl Default for Adwin {
    fn default() -> Self {
        Adwin::from_valid(AdwinParams::default())
    }
}

impl Adwin {
    /// A fresh detector; fails when a parameter is out of range.
    pub fn new(params: AdwinParams) -> Result<Self, DriftError> {
        params.validate()?;
        Ok(Adwin::from_valid(params))
    }

    fn from_valid(params: AdwinParams) -> Self {
        Adwin {
            params,
            window: Window::new(),
            drift: false,
            skips: SkipCounter::default(),
        }
    }

    pub fn params(&self) -> &AdwinParams {
        &self.params
    }

    /// Number of values in the current window.
    pub fn width(&self) -> u64 {
        // The width is a count of values, always a whole number well below 2^53.
        self.window.width as u64
    }

    /// Mean of the current window (0 when empty).
    pub fn estimation(&self) -> f64 {
        if self.window.width == 0.0 {
            0.0
        } else {
            self.window.total / self.window.width
        }
    }
}

impl DriftDetector for Adwin {
    fn update(&mut self, x: f64) -> Signal {
        if !self.skips.admit(x) {
            return Signal::NONE;
        }
        if self.drift {
            // river rebuilds the whole helper on the update after a drift.
            self.window = Window::new();
        }
        self.drift = self.window.update(x, &self.params);
        Signal {
            drift: self.drift,
            warning: false,
        }
    }

    fn reset(&mut self) {
        *self = Adwin::from_valid(self.params.clone());
    }

    fn skipped(&self) -> u64 {
        self.skips.count()
    }
}

/// Sum and variance of `2^row` consecutive values.
#[derive(Debug, Clone, Copy)]
struct Summary {
    total: f64,
    variance: f64,
}

/// river's `AdaptiveWindowing`: the bucketed window and its running statistics. Counts are kept
/// as f64 as river does, since they enter the arithmetic directly.
#[derive(Debug, Clone)]
struct Window {
    /// `rows[i]`: summaries of `2^i` values, oldest first; `rows.last()` holds the oldest data.
    rows: Vec<VecDeque<Summary>>,
    total: f64,
    variance: f64,
    width: f64,
    tick: u64,
}

/// Values summarised by one summary of row `row`: `2^row`, exact in f64.
fn row_size(row: usize) -> f64 {
    2f64.powi(i32::try_from(row).unwrap_or(i32::MAX))
}

impl Window {
    fn new() -> Self {
        Window {
            rows: vec![VecDeque::new()],
            total: 0.0,
            variance: 0.0,
            width: 0.0,
            tick: 0,
        }
    }

    fn update(&mut self, value: f64, params: &AdwinParams) -> bool {
        self.insert(value, params.max_buckets);
        self.detect_change(params)
    }

    fn insert(&mut self, value: f64, max_buckets: usize) {
        if self.rows.is_empty() {
            self.rows.push(VecDeque::new());
        }
        self.rows[0].push_back(Summary {
            total: value,
            variance: 0.0,
        });
        self.width += 1.0;
        let mut incremental_variance = 0.0;
        if self.width > 1.0 {
            let delta = value - self.total / (self.width - 1.0);
            incremental_variance = (self.width - 1.0) * delta * delta / self.width;
        }
        self.variance += incremental_variance;
        self.total += value;
        self.compress(max_buckets);
    }

    /// Merge the two oldest summaries of every full row into the next row, cascading.
    fn compress(&mut self, max_buckets: usize) {
        let mut row = 0;
        while row < self.rows.len() && self.rows[row].len() == max_buckets + 1 {
            let (Some(first), Some(second)) =
                (self.rows[row].pop_front(), self.rows[row].pop_front())
            else {
                break;
            };
            let n = row_size(row);
            let mu1 = first.total / n;
            let mu2 = second.total / n;
            let merged = Summary {
                total: first.total + second.total,
                variance: first.variance + second.variance + n * 0.5 * (mu1 - mu2) * (mu1 - mu2),
            };
            if row + 1 == self.rows.len() {
                self.rows.push(VecDeque::new());
            }
            self.rows[row + 1].push_back(merged);
            if self.rows[row + 1].len() <= max_buckets {
                break;
            }
            row += 1;
        }
    }

    /// Drop the oldest summary and take its values out of the statistics.
    fn drop_oldest(&mut self) {
        let Some(last) = self.rows.len().checked_sub(1) else {
            return;
        };
        let Some(oldest) = self.rows[last].pop_front() else {
            return;
        };
        let n = row_size(last);
        let mu = oldest.total / n;
        self.width -= n;
        self.total -= oldest.total;
        let mu_window = self.total / self.width;
        self.variance -= oldest.variance
            + n * self.width * (mu - mu_window) * (mu - mu_window) / (n + self.width);
        if self.rows[last].is_empty() {
            self.rows.pop();
        }
    }

    fn detect_change(&mut self, params: &AdwinParams) -> bool {
        let mut change_detected = false;
        self.tick += 1;
        // Counts compare as f64, as in river.
        let grace_period = params.grace_period as f64;
        let min_length = params.min_window_length as f64;
        if !self.tick.is_multiple_of(u64::from(params.clock)) || self.width <= grace_period {
            return false;
        }
        let mut reduce_width = true;
        while reduce_width {
            reduce_width = false;
            let (mut n0, mut n1) = (0.0_f64, self.width);
            let (mut u0, mut u1) = (0.0_f64, self.total);
            'scan: for row in (0..self.rows.len()).rev() {
                let size = row_size(row);
                let len = self.rows[row].len();
                for k in 0..len {
                    let total = self.rows[row][k].total;
                    n0 += size;
                    n1 -= size;
                    u0 += total;
                    u1 -= total;
                    if row == 0 && k == len - 1 {
                        break 'scan;
                    }
                    let delta_mean = (u0 / n0) - (u1 / n1);
                    if n1 >= min_length
                        && n0 >= min_length
                        && self.cut_exceeds_bound(n0, n1, delta_mean, params)
                    {
                        reduce_width = true;
                        change_detected = true;
                        if self.width > 0.0 {
                            self.drop_oldest();
                            break 'scan;
                        }
                    }
                }
            }
        }
        change_detected
    }

    fn cut_exceeds_bound(&self, n0: f64, n1: f64, delta_mean: f64, params: &AdwinParams) -> bool {
        let min_length = params.min_window_length as f64;
        let delta_prime = (2.0 * self.width.ln() / params.delta).ln();
        let m_recip = 1.0 / (n0 - min_length + 1.0) + 1.0 / (n1 - min_length + 1.0);
        let epsilon = (2.0 * m_recip * (self.variance / self.width) * delta_prime).sqrt()
            + 2.0 / 3.0 * delta_prime * m_recip;
        delta_mean.abs() > epsilon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn river_doc_stream() -> Vec<f64> {
        // Not river's random.Random stream, but the same shape: 0/1 noise then a jump to 4..8.
        (0..2000)
            .map(|i| {
                if i < 1000 {
                    f64::from(i * 7 % 3 == 0)
                } else {
                    f64::from(4 + (i * 13 % 4) as u8)
                }
            })
            .collect()
    }

    fn drift_indices(detector: &mut impl DriftDetector, stream: &[f64]) -> Vec<usize> {
        stream
            .iter()
            .enumerate()
            .filter_map(|(i, &x)| detector.update(x).drift.then_some(i))
            .collect()
    }

    #[test]
    fn detects_a_jump_on_a_clock_tick() {
        let mut adwin = Adwin::default();
        let drifts = drift_indices(&mut adwin, &river_doc_stream());
        assert_eq!(drifts.len(), 1, "{drifts:?}");
        assert!(drifts[0] > 1000 && (drifts[0] + 1) % 32 == 0, "{drifts:?}");
    }

    #[test]
    fn constant_stream_never_drifts() {
        let mut adwin = Adwin::default();
        assert!(drift_indices(&mut adwin, &[3.0; 5000]).is_empty());
        assert_eq!(adwin.width(), 5000);
        assert_eq!(adwin.estimation(), 3.0);
    }

    #[test]
    fn window_restarts_after_a_drift() {
        let mut adwin = Adwin::default();
        let stream = river_doc_stream();
        let drift_at = drift_indices(&mut adwin, &stream)[0];
        let mut again = Adwin::default();
        for &x in &stream[..=drift_at] {
            again.update(x);
        }
        assert!(again.width() > 1);
        again.update(5.0);
        assert_eq!(
            again.width(),
            1,
            "the update after a drift starts a new window"
        );
    }

    #[test]
    fn non_finite_values_are_skipped_without_advancing_the_clock() {
        let stream = river_doc_stream();
        let mut plain = Adwin::default();
        let expected = drift_indices(&mut plain, &stream);
        let mut noisy = Adwin::default();
        let mut got = Vec::new();
        for (fed, &x) in stream.iter().enumerate() {
            assert_eq!(noisy.update(f64::NAN), Signal::NONE);
            if noisy.update(x).drift {
                got.push(fed);
            }
        }
        noisy.update(f64::INFINITY);
        assert_eq!(got, expected);
        assert_eq!(noisy.skipped(), stream.len() as u64 + 1);
    }

    #[test]
    fn reset_returns_to_a_fresh_detector() {
        let stream = river_doc_stream();
        let mut adwin = Adwin::default();
        for &x in &stream[..1500] {
            adwin.update(x);
        }
        adwin.update(f64::NAN);
        adwin.reset();
        assert_eq!(adwin.width(), 0);
        assert_eq!(adwin.skipped(), 0);
        let mut fresh = Adwin::default();
        assert_eq!(
            drift_indices(&mut adwin, &stream),
            drift_indices(&mut fresh, &stream)
        );
    }

    #[test]
    fn invalid_parameters_are_named() {
        let err = Adwin::new(AdwinParams {
            clock: 0,
            ..AdwinParams::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid adwin parameter `clock` = 0: expected an integer >= 1"
        );
        let err = Adwin::new(AdwinParams {
            delta: 1.5,
            ..AdwinParams::default()
        })
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("`delta` = 1.5: expected a number in (0, 1)"));
    }
}
