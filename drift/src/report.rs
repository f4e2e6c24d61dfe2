//! Table drift reports, the seed's semantics: for each feature, stream the baseline values and
//! then the new values through a fresh detector and report the new-row indices where drift was
//! flagged. Optional min/max scaling by the baseline (for the HDDM detectors) and a mean
//! deviation check against training statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detector::{flags, Flags};

use crate::config::{DetectorConfig, ParamSpec};
use crate::detector::DriftDetector;
use crate::error::DriftError;

/// The seed's `DEVIATION_THRESHOLD`: how many standard errors the new mean may stray.
pub const DEFAULT_DEVIATION_THRESHOLD: f64 = 1.9;

const DEVIATION_THRESHOLD: ParamSpec =
    ParamSpec::new("deviation", "threshold", "a finite number > 0");

/// Rows of numbers under named columns. Rows all have one value per column; non-finite values
/// (missing cells) are allowed and skipped by the detectors and statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    columns: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl FeatureTable {
    /// A table; fails on a repeated column name or a row of the wrong length.
    pub fn new(columns: Vec<String>, rows: Vec<Vec<f64>>) -> Result<Self, DriftError> {
        for (i, name) in columns.iter().enumerate() {
            if columns[..i].contains(name) {
                return Err(DriftError::DuplicateColumn(name.clone()));
            }
        }
        if let Some((row, values)) = rows
            .iter()
            .enumerate()
            .find(|(_, values)| values.len() != columns.len())
        {
            return Err(DriftError::RaggedRow {
                row,
                expected: columns.len(),
                found: values.len(),
            });
        }
        Ok(FeatureTable { columns, rows })
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn rows(&self) -> &[Vec<f64>] {
        &self.rows
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The values of the named column, top to bottom.
    pub fn column(&self, name: &str) -> Option<impl Iterator<Item = f64> + '_> {
        let index = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(move |row| row[index]))
    }

    /// Statistics of every column that holds at least one finite value.
    pub fn stats(&self) -> BTreeMap<String, FeatureStats> {
        self.columns
            .iter()
            .filter_map(|name| {
                let stats = FeatureStats::from_values(self.column(name)?)?;
                Some((name.clone(), stats))
            })
            .collect()
    }
}

/// Summary of one feature's finite values. `std` is the sample standard deviation (n - 1 in
/// the denominator, as pandas' `std()`), 0 for a single value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl FeatureStats {
    /// Statistics of the finite values; `None` when there are none.
    pub fn from_values(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let finite: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        let count = finite.len();
        if count == 0 {
            return None;
        }
        let n = count as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let std = if count > 1 {
            (finite.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(FeatureStats {
            count: count as u64,
            mean,
            std,
            min,
            max,
        })
    }

    /// The mean and standard deviation, as the deviation check takes them.
    pub fn moments(&self) -> FeatureMoments {
        FeatureMoments {
            mean: self.mean,
            std: self.std,
        }
    }
}

/// A feature's training mean and standard deviation (the seed's model metadata).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureMoments {
    pub mean: f64,
    pub std: f64,
}

/// Whether values are scaled into [0, 1] by the baseline's min and max before detection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// Scale for the detectors that assume [0, 1] (HDDM_A, HDDM_W), not for the others.
    #[default]
    Auto,
    /// Always scale.
    MinMax,
    /// Never scale.
    Off,
}

/// The mean deviation check: flag a feature when
/// `|mean(new) - mean_train| > threshold * std_train / sqrt(n_new)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviationOptions {
    /// Standard errors allowed, > 0. Default [`DEFAULT_DEVIATION_THRESHOLD`].
    pub threshold: f64,
    /// Training statistics per feature; every feature of the new rows needs one.
    pub training: BTreeMap<String, FeatureMoments>,
}

impl DeviationOptions {
    /// The check with the default threshold.
    pub fn new(training: BTreeMap<String, FeatureMoments>) -> Self {
        DeviationOptions {
            threshold: DEFAULT_DEVIATION_THRESHOLD,
            training,
        }
    }
}

/// What [`drift_report`] runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportOptions {
    pub detector: DetectorConfig,
    pub scaling: Scaling,
    /// `None`: no deviation check.
    pub deviation: Option<DeviationOptions>,
}

/// The deviation check's result for one feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeviationCheck {
    /// Finite values among the new rows.
    pub new_count: u64,
    /// Their mean; `None` when there are none.
    pub new_mean: Option<f64>,
    pub train_mean: f64,
    pub train_std: f64,
    /// `(new_mean - train_mean) / (train_std / sqrt(new_count))`; `None` when there are no new
    /// values or the training std is 0.
    pub z_score: Option<f64>,
    /// Whether the deviation exceeds the threshold (with a training std of 0, any difference).
    pub flagged: bool,
}

/// A table drift report. Maps are keyed by feature name and hold only the features with
/// something to report; row indices are 0-based positions among the new rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Whether values were min/max scaled by the baseline before detection.
    pub scaled: bool,
    /// New rows where the detector flagged drift, per feature (the seed's `{feature: [rows]}`).
    pub drift: BTreeMap<String, Vec<usize>>,
    /// New rows where the detector flagged a warning (HDDM detectors only).
    pub warnings: BTreeMap<String, Vec<usize>>,
    /// Non-finite values (baseline and new) the detector skipped, per feature.
    pub skipped: BTreeMap<String, u64>,
    /// The deviation check per feature, when it was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviation: Option<BTreeMap<String, DeviationCheck>>,
}

impl DriftReport {
    /// Whether any feature drifted or deviated.
    pub fn has_drift(&self) -> bool {
        !self.drift.is_empty()
            || self
                .deviation
                .as_ref()
                .is_some_and(|checks| checks.values().any(|c| c.flagged))
    }
}

/// Compare `new` with `baseline`, feature by feature (every column of `new`, found by name in
/// `baseline`; extra baseline columns are ignored).
pub fn drift_report(
    baseline: &FeatureTable,
    new: &FeatureTable,
    options: &ReportOptions,
) -> Result<DriftReport, DriftError> {
    options.detector.validate()?;
    if let Some(deviation) = &options.deviation {
        validate_deviation(deviation, new)?;
    }
    let scaled = match options.scaling {
        Scaling::Auto => options.detector.expects_unit_interval(),
        Scaling::MinMax => true,
        Scaling::Off => false,
    };
    let mut report = DriftReport {
        scaled,
        deviation: options.deviation.as_ref().map(|_| BTreeMap::new()),
        ..DriftReport::default()
    };
    for feature in new.columns() {
        let base = baseline
            .column(feature)
            .ok_or_else(|| DriftError::MissingBaselineColumn(feature.clone()))?;
        let base: Vec<f64> = base.collect();
        let fresh: Vec<f64> = new.column(feature).into_iter().flatten().collect();
        let scale = if scaled {
            let stats = FeatureStats::from_values(base.iter().copied())
                .ok_or_else(|| DriftError::EmptyBaselineColumn(feature.clone()))?;
            Some(MinMax {
                min: stats.min,
                max: stats.max,
            })
        } else {
            None
        };
        let scale = |x: f64| scale.map_or(x, |s| s.apply(x));

        let mut detector = options.detector.build()?;
        for &x in &base {
            detector.update(scale(x));
        }
        let Flags { drift, warnings } = flags(&mut detector, fresh.iter().map(|&x| scale(x)));
        if !drift.is_empty() {
            report.drift.insert(feature.clone(), drift);
        }
        if !warnings.is_empty() {
            report.warnings.insert(feature.clone(), warnings);
        }
        if detector.skipped() > 0 {
            report.skipped.insert(feature.clone(), detector.skipped());
        }
        if let (Some(options), Some(checks)) = (&options.deviation, &mut report.deviation) {
            if let Some(training) = options.training.get(feature) {
                checks.insert(
                    feature.clone(),
                    deviation_check(&fresh, *training, options.threshold),
                );
            }
        }
    }
    Ok(report)
}

/// The deviation check alone: per feature of `new`, its mean against the training statistics.
pub fn deviation_report(
    new: &FeatureTable,
    options: &DeviationOptions,
) -> Result<BTreeMap<String, DeviationCheck>, DriftError> {
    validate_deviation(options, new)?;
    let mut checks = BTreeMap::new();
    for feature in new.columns() {
        if let Some(training) = options.training.get(feature) {
            let values: Vec<f64> = new.column(feature).into_iter().flatten().collect();
            checks.insert(
                feature.clone(),
                deviation_check(&values, *training, options.threshold),
            );
        }
    }
    Ok(checks)
}

fn validate_deviation(options: &DeviationOptions, new: &FeatureTable) -> Result<(), DriftError> {
    DEVIATION_THRESHOLD.ensure(
        options.threshold.is_finite() && options.threshold > 0.0,
        options.threshold,
    )?;
    for feature in new.columns() {
        let training = options
            .training
            .get(feature)
            .ok_or_else(|| DriftError::MissingTrainingStats(feature.clone()))?;
        let invalid = |detail| DriftError::InvalidTrainingStats {
            feature: feature.clone(),
            detail,
        };
        if !training.mean.is_finite() {
            return Err(invalid("the mean must be finite"));
        }
        if !(training.std.is_finite() && training.std >= 0.0) {
            return Err(invalid("the standard deviation must be finite and >= 0"));
        }
    }
    Ok(())
}

fn deviation_check(values: &[f64], training: FeatureMoments, threshold: f64) -> DeviationCheck {
    let stats = FeatureStats::from_values(values.iter().copied());
    let (new_count, new_mean) = stats.map_or((0, None), |s| (s.count, Some(s.mean)));
    let root_n = (new_count as f64).sqrt();
    let (z_score, flagged) = match new_mean {
        Some(mean) => {
            let diff = mean - training.mean;
            let z = (training.std > 0.0).then(|| diff / (training.std / root_n));
            (z, diff.abs() > threshold * training.std / root_n)
        }
        None => (None, false),
    };
    DeviationCheck {
        new_count,
        new_mean,
        train_mean: training.mean,
        train_std: training.std,
        z_score,
        flagged,
    }
}

/// Maps values into [0, 1] by a baseline range, clipping outside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinMax {
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl MinMax {
    pub(crate) fn apply(self, x: f64) -> f64 {
        if !x.is_finite() {
            // Left as is so the detector skips and counts it.
            return x;
        }
        if self.max > self.min {
            ((x - self.min) / (self.max - self.min)).clamp(0.0, 1.0)
        } else if x > self.max {
            // A constant baseline sits in the middle; any move away reaches an end.
            1.0
        } else if x < self.min {
            0.0
        } else {
            0.5
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adwin::AdwinParams;
    use crate::config::Detector;
    use crate::hddm_a::HddmAParams;
    use crate::page_hinkley::PageHinkleyParams;

    fn table(columns: &[&str], rows: Vec<Vec<f64>>) -> FeatureTable {
        FeatureTable::new(columns.iter().map(|c| c.to_string()).collect(), rows).unwrap()
    }

    /// Baseline of 50 rows near 0; 300 new rows where `a` jumps to 10 from row 100 and `b` stays.
    fn shifted() -> (FeatureTable, FeatureTable) {
        let wobble = |i: usize| ((i * 37 % 11) as f64 - 5.0) / 10.0;
        let baseline = table(
            &["a", "b"],
            (0..50).map(|i| vec![wobble(i), wobble(i + 3)]).collect(),
        );
        let new = table(
            &["b", "a"],
            (0..300)
                .map(|i| vec![wobble(i + 7), wobble(i) + if i >= 100 { 10.0 } else { 0.0 }])
                .collect(),
        );
        (baseline, new)
    }

    fn options(detector: DetectorConfig) -> ReportOptions {
        ReportOptions {
            detector,
            ..ReportOptions::default()
        }
    }

    #[test]
    fn table_rejects_ragged_rows_and_duplicate_columns() {
        let columns = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            FeatureTable::new(columns.clone(), vec![vec![1.0, 2.0], vec![1.0]]),
            Err(DriftError::RaggedRow {
                row: 1,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            FeatureTable::new(vec!["a".into(), "a".into()], vec![]),
            Err(DriftError::DuplicateColumn("a".into()))
        );
    }

    #[test]
    fn feature_stats_use_the_sample_std_and_skip_non_finite_values() {
        let stats =
            FeatureStats::from_values([1.0, f64::NAN, 2.0, 3.0, 4.0, f64::INFINITY]).unwrap();
        assert_eq!(stats.count, 4);
        assert_eq!(stats.mean, 2.5);
        assert!((stats.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!((stats.min, stats.max), (1.0, 4.0));
        assert_eq!(FeatureStats::from_values([7.0]).unwrap().std, 0.0);
        assert_eq!(FeatureStats::from_values([f64::NAN]), None);
        let t = table(
            &["x", "gone"],
            vec![vec![1.0, f64::NAN], vec![3.0, f64::NAN]],
        );
        let stats = t.stats();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats["x"].mean, 2.0);
    }

    #[test]
    fn report_matches_streaming_baseline_then_new_through_a_fresh_detector() {
        let (baseline, new) = shifted();
        let config = DetectorConfig::Adwin(AdwinParams {
            clock: 1,
            ..AdwinParams::default()
        });
        let report = drift_report(&baseline, &new, &options(config.clone())).unwrap();
        assert!(!report.scaled);
        let mut detector: Detector = config.build().unwrap();
        let expected: Vec<usize> = baseline
            .column("a")
            .unwrap()
            .chain(new.column("a").unwrap())
            .enumerate()
            .filter_map(|(i, x)| detector.update(x).drift.then_some(i))
            .filter_map(|i| i.checked_sub(baseline.len()))
            .collect();
        assert!(!expected.is_empty());
        assert!(expected[0] >= 100);
        assert_eq!(report.drift.get("a"), Some(&expected));
        assert!(!report.drift.contains_key("b"), "{report:?}");
        assert!(report.has_drift());
    }

    #[test]
    fn rows_keep_their_position_when_values_are_missing() {
        // Rows of NaN inserted at new-row positions 0 and 10 are skipped, yet still counted as
        // rows: every later drift index moves by the number of gaps before it.
        let (baseline, new) = shifted();
        let config = DetectorConfig::PageHinkley(PageHinkleyParams::default());
        let clean = drift_report(&baseline, &new, &options(config.clone())).unwrap();
        let mut rows: Vec<Vec<f64>> = new
            .rows()
            .iter()
            .map(|r| vec![r[0], r[1], f64::NAN])
            .collect();
        rows.insert(0, vec![f64::NAN; 3]);
        rows.insert(10, vec![f64::NAN; 3]);
        let with_gaps = table(&["b", "a", "c"], rows);
        let mut base_rows: Vec<Vec<f64>> = baseline
            .rows()
            .iter()
            .map(|r| vec![r[0], r[1], 1.0])
            .collect();
        base_rows.push(vec![f64::NAN, f64::NAN, 1.0]);
        let base = table(&["a", "b", "c"], base_rows);
        let report = drift_report(&base, &with_gaps, &options(config)).unwrap();
        let shifted_rows: Vec<usize> = clean.drift["a"]
            .iter()
            .map(|&row| if row < 9 { row + 1 } else { row + 2 })
            .collect();
        assert!(!shifted_rows.is_empty());
        assert_eq!(report.drift["a"], shifted_rows);
        assert_eq!(report.drift.get("b"), clean.drift.get("b"));
        assert_eq!(report.skipped.get("a"), Some(&3));
        assert_eq!(report.skipped.get("c"), Some(&302));
    }

    #[test]
    fn hddm_scales_by_the_baseline_range_by_default() {
        let (baseline, new) = shifted();
        let hddm = DetectorConfig::HddmA(HddmAParams::default());
        let report = drift_report(&baseline, &new, &options(hddm.clone())).unwrap();
        assert!(report.scaled);
        let first = report.drift["a"][0];
        assert!(first >= 100, "{report:?}");

        // The same thing by hand: scale by the baseline's min/max, clip, feed a fresh detector.
        let stats = baseline.stats();
        let (lo, hi) = (stats["a"].min, stats["a"].max);
        let scale = |x: f64| ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
        let mut detector = hddm.build().unwrap();
        let flagged: Vec<usize> = baseline
            .column("a")
            .unwrap()
            .chain(new.column("a").unwrap())
            .map(scale)
            .enumerate()
            .filter_map(|(i, x)| detector.update(x).drift.then_some(i))
            .filter_map(|i| i.checked_sub(baseline.len()))
            .collect();
        assert_eq!(report.drift["a"], flagged);

        let unscaled = ReportOptions {
            scaling: Scaling::Off,
            ..options(hddm)
        };
        let report = drift_report(&baseline, &new, &unscaled).unwrap();
        assert!(!report.scaled);
        let forced = ReportOptions {
            scaling: Scaling::MinMax,
            ..options(DetectorConfig::Adwin(AdwinParams::default()))
        };
        assert!(drift_report(&baseline, &new, &forced).unwrap().scaled);
    }

    #[test]
    fn min_max_scaling_clips_and_centres_a_constant_baseline() {
        let range = MinMax { min: 2.0, max: 4.0 };
        assert_eq!(range.apply(3.0), 0.5);
        assert_eq!(range.apply(10.0), 1.0);
        assert_eq!(range.apply(-10.0), 0.0);
        assert!(range.apply(f64::NAN).is_nan());
        let flat = MinMax { min: 2.0, max: 2.0 };
        assert_eq!(
            (flat.apply(2.0), flat.apply(2.1), flat.apply(1.9)),
            (0.5, 1.0, 0.0)
        );
    }

    #[test]
    fn scaling_needs_a_finite_baseline_value() {
        let baseline = table(&["a"], vec![vec![f64::NAN]]);
        let new = table(&["a"], vec![vec![0.5]]);
        assert_eq!(
            drift_report(&baseline, &new, &ReportOptions::default()),
            Err(DriftError::EmptyBaselineColumn("a".into()))
        );
    }

    #[test]
    fn new_features_must_exist_in_the_baseline() {
        let baseline = table(&["a"], vec![vec![1.0]]);
        let new = table(&["a", "z"], vec![vec![1.0, 2.0]]);
        assert_eq!(
            drift_report(&baseline, &new, &ReportOptions::default()),
            Err(DriftError::MissingBaselineColumn("z".into()))
        );
    }

    #[test]
    fn deviation_check_flags_a_mean_beyond_threshold_standard_errors() {
        // 4 new values with mean 1.0: the standard error with std 1 is 0.5, so 1.9 * 0.5 = 0.95.
        let baseline = table(&["near", "far", "flat"], vec![vec![0.0, 0.0, 0.0]]);
        let new = table(
            &["near", "far", "flat"],
            vec![
                vec![0.9, 0.5, 3.0],
                vec![0.9, 1.5, 3.0],
                vec![0.9, 0.5, 3.0],
                vec![0.9, 1.5, f64::NAN],
            ],
        );
        let training = BTreeMap::from([
            (
                "near".to_string(),
                FeatureMoments {
                    mean: 0.0,
                    std: 1.0,
                },
            ),
            (
                "far".to_string(),
                FeatureMoments {
                    mean: 0.0,
                    std: 1.0,
                },
            ),
            (
                "flat".to_string(),
                FeatureMoments {
                    mean: 3.0,
                    std: 0.0,
                },
            ),
        ]);
        let opts = ReportOptions {
            detector: DetectorConfig::PageHinkley(PageHinkleyParams::default()),
            scaling: Scaling::Off,
            deviation: Some(DeviationOptions::new(training.clone())),
        };
        let report = drift_report(&baseline, &new, &opts).unwrap();
        let checks = report.deviation.as_ref().unwrap();
        let near = checks["near"];
        assert!(!near.flagged);
        assert_eq!(near.new_count, 4);
        assert!((near.new_mean.unwrap() - 0.9).abs() < 1e-12);
        assert!((near.z_score.unwrap() - 1.8).abs() < 1e-12);
        let far = checks["far"];
        assert!(far.flagged);
        assert_eq!(far.new_mean, Some(1.0));
        assert_eq!(far.z_score, Some(2.0));
        assert_eq!((far.train_mean, far.train_std), (0.0, 1.0));
        let flat = checks["flat"];
        assert_eq!(
            (flat.new_count, flat.z_score, flat.flagged),
            (3, None, false)
        );
        assert!(report.has_drift());

        let strict = ReportOptions {
            deviation: Some(DeviationOptions {
                threshold: 1.7,
                training,
            }),
            ..opts.clone()
        };
        assert!(
            drift_report(&baseline, &new, &strict)
                .unwrap()
                .deviation
                .unwrap()["near"]
                .flagged
        );
    }

    #[test]
    fn deviation_check_validates_its_inputs() {
        let baseline = table(&["a"], vec![vec![0.0]]);
        let new = table(&["a"], vec![vec![1.0]]);
        let with = |threshold: f64, training: BTreeMap<String, FeatureMoments>| ReportOptions {
            deviation: Some(DeviationOptions {
                threshold,
                training,
            }),
            ..ReportOptions::default()
        };
        let ok = BTreeMap::from([(
            "a".to_string(),
            FeatureMoments {
                mean: 0.0,
                std: 1.0,
            },
        )]);
        assert!(matches!(
            drift_report(&baseline, &new, &with(0.0, ok.clone())),
            Err(DriftError::InvalidParameter {
                scope: "deviation",
                name: "threshold",
                ..
            })
        ));
        assert_eq!(
            drift_report(&baseline, &new, &with(1.9, BTreeMap::new())),
            Err(DriftError::MissingTrainingStats("a".into()))
        );
        let bad = BTreeMap::from([(
            "a".to_string(),
            FeatureMoments {
                mean: 0.0,
                std: -1.0,
            },
        )]);
        assert!(matches!(
            drift_report(&baseline, &new, &with(1.9, bad)),
            Err(DriftError::InvalidTrainingStats { .. })
        ));
    }

    #[test]
    fn report_serializes_as_feature_maps() {
        let (baseline, new) = shifted();
        let report = drift_report(
            &baseline,
            &new,
            &options(DetectorConfig::PageHinkley(PageHinkleyParams::default())),
        )
        .unwrap();
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["drift"]["a"].is_array());
        assert!(json.get("deviation").is_none());
        let back: DriftReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
