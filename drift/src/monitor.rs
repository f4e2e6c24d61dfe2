//! Continuous drift monitoring: one detector per feature that lives across many small batches,
//! so drift spread over many requests is found. Each detector is primed with the baseline, as
//! the table report does, and then fed every new row in arrival order.
//!
//! Memory stays bounded: Page-Hinkley and the HDDM detectors keep a fixed number of sums, and
//! ADWIN keeps at most `max_buckets` buckets per power of two of its window.

use std::collections::BTreeMap;

use crate::detector::{flags, Flags};
use crate::report::MinMax;
use crate::{
    Detector, DriftDetector, DriftError, FeatureStats, FeatureTable, ReportOptions, Scaling,
};

struct FeatureMonitor {
    name: String,
    detector: Detector,
    scale: Option<MinMax>,
}

/// Persistent per-feature detectors for one model version.
pub struct ContinuousMonitor {
    features: Vec<FeatureMonitor>,
    rows_seen: u64,
}

/// What one batch did to the monitor: new-row indices (within the batch) per feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSignals {
    pub drift: BTreeMap<String, Vec<usize>>,
    pub warnings: BTreeMap<String, Vec<usize>>,
}

impl ContinuousMonitor {
    /// Detectors for every baseline column, primed with the baseline's values.
    pub fn new(baseline: &FeatureTable, options: &ReportOptions) -> Result<Self, DriftError> {
        options.detector.validate()?;
        let scaled = match options.scaling {
            Scaling::Auto => options.detector.expects_unit_interval(),
            Scaling::MinMax => true,
            Scaling::Off => false,
        };
        let mut features = Vec::with_capacity(baseline.columns().len());
        for name in baseline.columns() {
            let values: Vec<f64> = baseline.column(name).into_iter().flatten().collect();
            let scale = if scaled {
                let stats = FeatureStats::from_values(values.iter().copied())
                    .ok_or_else(|| DriftError::EmptyBaselineColumn(name.clone()))?;
                Some(MinMax {
                    min: stats.min,
                    max: stats.max,
                })
            } else {
                None
            };
            let mut detector = options.detector.build()?;
            for &x in &values {
                detector.update(scale.map_or(x, |s| s.apply(x)));
            }
            features.push(FeatureMonitor {
                name: name.clone(),
                detector,
                scale,
            });
        }
        Ok(ContinuousMonitor {
            features,
            rows_seen: 0,
        })
    }

    /// Feed a batch (its columns found by name) and report where detectors fired.
    pub fn update(&mut self, batch: &FeatureTable) -> Result<BatchSignals, DriftError> {
        let mut signals = BatchSignals::default();
        for feature in &mut self.features {
            let Some(values) = batch.column(&feature.name) else {
                return Err(DriftError::MissingBaselineColumn(feature.name.clone()));
            };
            let scale = feature.scale;
            let Flags { drift, warnings } = flags(
                &mut feature.detector,
                values.map(|x| scale.map_or(x, |s| s.apply(x))),
            );
            if !drift.is_empty() {
                signals.drift.insert(feature.name.clone(), drift);
            }
            if !warnings.is_empty() {
                signals.warnings.insert(feature.name.clone(), warnings);
            }
        }
        self.rows_seen += batch.len() as u64;
        Ok(signals)
    }

    /// Rows fed since the monitor was created.
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{drift_report, DetectorConfig};

    fn table(rows: Vec<Vec<f64>>) -> FeatureTable {
        FeatureTable::new(vec!["a".into(), "b".into()], rows).unwrap()
    }

    fn noise(i: usize) -> f64 {
        // A fixed, cheap pseudo-random sequence in [0, 1).
        ((i as f64 * 12.9898).sin() * 43758.5453).fract().abs()
    }

    #[test]
    fn one_batch_matches_the_table_report() {
        let baseline = table((0..50).map(|i| vec![noise(i), noise(i + 1000)]).collect());
        let new = table(
            (0..200)
                .map(|i| {
                    vec![
                        noise(i + 50) + if i > 100 { 3.0 } else { 0.0 },
                        noise(i + 2000),
                    ]
                })
                .collect(),
        );
        for detector in [
            DetectorConfig::default(),
            DetectorConfig::from_params("adwin", Vec::<(&str, &str)>::new()).unwrap(),
        ] {
            let options = ReportOptions {
                detector,
                ..ReportOptions::default()
            };
            let report = drift_report(&baseline, &new, &options).unwrap();
            let mut monitor = ContinuousMonitor::new(&baseline, &options).unwrap();
            let signals = monitor.update(&new).unwrap();
            assert_eq!(signals.drift, report.drift);
            assert_eq!(signals.warnings, report.warnings);
        }
    }

    #[test]
    fn drift_spread_over_small_batches_is_found() {
        let baseline = table((0..50).map(|i| vec![noise(i), noise(i + 1000)]).collect());
        let options = ReportOptions {
            detector: DetectorConfig::from_params("adwin", Vec::<(&str, &str)>::new()).unwrap(),
            ..ReportOptions::default()
        };
        let mut monitor = ContinuousMonitor::new(&baseline, &options).unwrap();
        let mut found = false;
        for batch in 0..100 {
            // Two rows a request; feature a drifts slowly upwards from batch 20 on.
            let shift = if batch >= 20 {
                (batch - 20) as f64 * 0.05
            } else {
                0.0
            };
            let rows = (0..2)
                .map(|r| vec![noise(batch * 2 + r) + shift, noise(batch * 2 + r + 5000)])
                .collect();
            let signals = monitor.update(&table(rows)).unwrap();
            assert!(
                !signals.drift.contains_key("b"),
                "the stable feature never drifts"
            );
            found |= signals.drift.contains_key("a");
        }
        assert!(found, "the slow drift of a is found across requests");
        assert_eq!(monitor.rows_seen(), 200);
        // Every single request alone is too small for the table report to see it.
        let small = table(vec![
            vec![noise(1) + 1.0, noise(2)],
            vec![noise(3) + 1.0, noise(4)],
        ]);
        assert!(drift_report(&baseline, &small, &options)
            .unwrap()
            .drift
            .is_empty());
    }
}
