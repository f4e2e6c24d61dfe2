//! Streaming drift detectors and table drift reports for maas.
//!
//! Pure and synchronous: no I/O, no async. The gateway feeds it the rows it scores.
//!
//! # Detectors
//!
//! Four detectors, ported from river 0.26 with the same defaults, the same arithmetic order and
//! so the same flags at the same indices (checked by `tests/reference.rs` against
//! `reference/cases.json`, which `reference/make_reference.py` generates with river itself):
//!
//! | name (`DetectorConfig::from_params`) | type | river | warns |
//! |---|---|---|---|
//! | `adwin` | [`Adwin`] | `drift.ADWIN` | no |
//! | `page_hinkley` | [`PageHinkley`] | `drift.PageHinkley` | no |
//! | `hddm_a` | [`HddmA`] | `drift.binary.HDDMA` | yes |
//! | `hddm_w` | [`HddmW`] | `drift.binary.HDDMW` | yes |
//!
//! Each implements [`DriftDetector`]: `update(x)` returns a [`Signal`] (river's
//! `drift_detected` / `warning_detected` after that update). As in river, the update after a
//! drift first resets the detector's state, so it goes on watching from a clean slate.
//!
//! **Non-finite input.** NaN and ±∞ are not fed to the detector: `update` returns
//! [`Signal::NONE`], the state and the detector's position in the stream do not move, and the
//! value is counted by [`DriftDetector::skipped`]. (river would propagate NaN into its sums.)
//!
//! **HDDM input range.** HDDM_A and HDDM_W are built for error bits (1 = error, 0 = correct) or
//! other values in [0, 1]; their bounds assume that range. They accept any finite value and
//! compute exactly as river does, but outside [0, 1] the confidences mean nothing: scale first
//! (the table report does so by default, see [`Scaling`]).
//!
//! **Parameters** use river's names and defaults, one struct per detector ([`AdwinParams`],
//! [`PageHinkleyParams`], [`HddmAParams`], [`HddmWParams`]), validated on construction; an
//! invalid one is a [`DriftError::InvalidParameter`] naming the parameter and its allowed range.
//! [`DetectorConfig`] is the serde-tagged choice of detector (`{"detector": "adwin", ...}`).
//!
//! # Table reports
//!
//! [`drift_report`] keeps the seed's semantics: for each feature, the baseline values and then
//! the new values go through a fresh detector, and the report lists the new-row indices (0-based,
//! counted in the new rows) where drift was flagged, as `{feature: [rows]}`. Options scale each
//! feature into [0, 1] by the baseline's min/max and add a mean deviation check against training
//! statistics (`DEVIATION_THRESHOLD`, 1.9 by default).

mod adwin;
mod config;
mod detector;
mod error;
mod hddm_a;
mod hddm_w;
mod monitor;
mod page_hinkley;
mod report;

pub use adwin::{Adwin, AdwinParams};
pub use config::{Detector, DetectorConfig};
pub use detector::{flags, DriftDetector, Flags, Signal};
pub use error::DriftError;
pub use hddm_a::{HddmA, HddmAParams};
pub use hddm_w::{HddmW, HddmWParams};
pub use monitor::{BatchSignals, ContinuousMonitor};
pub use page_hinkley::{PageHinkley, PageHinkleyMode, PageHinkleyParams};
pub use report::{
    deviation_report, drift_report, DeviationCheck, DeviationOptions, DriftReport, FeatureMoments,
    FeatureStats, FeatureTable, ReportOptions, Scaling, DEFAULT_DEVIATION_THRESHOLD,
};
