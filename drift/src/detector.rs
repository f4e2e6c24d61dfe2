//! The detector seam: what one update reports, the trait every detector implements, and the
//! small pieces of state the ports share (the non-finite input counter, river's running mean).

use serde::{Deserialize, Serialize};

/// What a detector concluded after one value.
///
/// `drift` is river's `drift_detected` after the update; `warning` is `warning_detected` (only the
/// HDDM detectors ever warn). A skipped (non-finite) value yields `Signal::NONE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signal {
    pub drift: bool,
    pub warning: bool,
}

impl Signal {
    /// Neither drift nor warning.
    pub const NONE: Signal = Signal {
        drift: false,
        warning: false,
    };
}

/// A streaming drift detector fed one value at a time.
///
/// After an update that flags drift, the next finite value first resets the detector's state
/// (river's behaviour), so a detector keeps watching after a change without outside help.
pub trait DriftDetector {
    /// Feed one value. Non-finite values (NaN, ±∞) are not fed: they return [`Signal::NONE`],
    /// leave the state untouched and are counted by [`DriftDetector::skipped`].
    fn update(&mut self, x: f64) -> Signal;

    /// Return to the freshly built state, including the skipped counter.
    fn reset(&mut self);

    /// How many non-finite values were skipped since the detector was built or last reset.
    fn skipped(&self) -> u64;
}

/// Keeps non-finite values away from the detectors and counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SkipCounter(u64);

impl SkipCounter {
    /// Whether `x` may be fed to a detector; counts it when not.
    pub(crate) fn admit(&mut self, x: f64) -> bool {
        if x.is_finite() {
            true
        } else {
            self.0 += 1;
            false
        }
    }

    pub(crate) fn count(self) -> u64 {
        self.0
    }
}

/// river's `stats.Mean` (unit weights), with its exact operation order: the port must round
/// the same way to flag the same indices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RunningMean {
    pub(crate) n: f64,
    pub(crate) mean: f64,
}

impl RunningMean {
    pub(crate) fn update(&mut self, x: f64) {
        self.n += 1.0;
        self.mean += (1.0 / self.n) * (x - self.mean);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_counter_admits_only_finite_values() {
        let mut skips = SkipCounter::default();
        assert!(skips.admit(0.0));
        assert!(skips.admit(-1e300));
        assert!(!skips.admit(f64::NAN));
        assert!(!skips.admit(f64::INFINITY));
        assert!(!skips.admit(f64::NEG_INFINITY));
        assert_eq!(skips.count(), 3);
    }

    #[test]
    fn running_mean_matches_the_plain_mean_on_small_integers() {
        let mut mean = RunningMean::default();
        for x in [1.0, 2.0, 3.0, 4.0] {
            mean.update(x);
        }
        assert_eq!(mean.n, 4.0);
        assert_eq!(mean.mean, 2.5);
    }
}

/// Where a detector fired over a run of values: 0-based positions of drifts and warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub drift: Vec<usize>,
    pub warnings: Vec<usize>,
}

/// Feed `values` to `detector` in order and collect where it fired.
pub fn flags<D: DriftDetector + ?Sized>(
    detector: &mut D,
    values: impl IntoIterator<Item = f64>,
) -> Flags {
    let mut out = Flags::default();
    for (ix, x) in values.into_iter().enumerate() {
        let signal = detector.update(x);
        if signal.drift {
            out.drift.push(ix);
        }
        if signal.warning {
            out.warnings.push(ix);
        }
    }
    out
}
