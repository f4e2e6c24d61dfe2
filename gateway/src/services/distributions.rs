//! What a person needs to judge a drift: per feature, the baseline's values against the values a
//! version scored recently, as histograms over the same bins and a few quantiles.
//!
//! The recent values are a bounded window kept in memory ([`RecentValues`]): the last
//! [`RECENT_ROWS`] rows per version that went through a drift check on this replica (the
//! inference pipeline hands them over after the model answered). The summaries themselves
//! ([`distribution`], [`edges`], [`histogram`], [`quantile`]) are pure functions.

use std::collections::{HashMap, VecDeque};

use maas_drift::FeatureTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::services::error::{ErrorKind, ServiceError};
use crate::services::models::ModelService;

/// Rows kept per version.
pub const RECENT_ROWS: usize = 1000;
/// Histogram bins when the caller names none.
pub const DEFAULT_BINS: usize = 20;
/// The most bins a caller may ask for.
pub const MAX_BINS: usize = 200;

/// A model name and version number.
type VersionKey = (String, u64);

/// The last rows each version scored with a drift check, oldest first.
pub struct RecentValues {
    capacity: usize,
    windows: Mutex<HashMap<VersionKey, Window>>,
}

struct Window {
    columns: Vec<String>,
    rows: VecDeque<Vec<f64>>,
    /// Rows seen since this replica started (or since the columns changed).
    seen: u64,
}

/// A copy of one version's window.
#[derive(Debug, Clone, Default)]
pub struct RecentSnapshot {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
    pub seen: u64,
}

impl Default for RecentValues {
    fn default() -> Self {
        RecentValues::new(RECENT_ROWS)
    }
}

impl RecentValues {
    pub fn new(capacity: usize) -> Self {
        RecentValues {
            capacity: capacity.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// How many rows a version's window holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Remember the rows a version just scored. A table under other columns than before (a new
    /// baseline) starts the window again, so values are never compared under the wrong name.
    pub fn observe(&self, model: &str, version: u64, table: &FeatureTable) {
        let mut windows = self.windows.lock();
        let window = windows
            .entry((model.to_owned(), version))
            .or_insert_with(|| Window {
                columns: table.columns().to_vec(),
                rows: VecDeque::new(),
                seen: 0,
            });
        if window.columns != table.columns() {
            window.columns = table.columns().to_vec();
            window.rows.clear();
            window.seen = 0;
        }
        let skip = table.len().saturating_sub(self.capacity);
        for row in &table.rows()[skip..] {
            if window.rows.len() == self.capacity {
                window.rows.pop_front();
            }
            window.rows.push_back(row.clone());
        }
        window.seen += table.len() as u64;
    }

    pub fn snapshot(&self, model: &str, version: u64) -> RecentSnapshot {
        self.windows
            .lock()
            .get(&(model.to_owned(), version))
            .map(|w| RecentSnapshot {
                columns: w.columns.clone(),
                rows: w.rows.iter().cloned().collect(),
                seen: w.seen,
            })
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// API shapes

/// The 5th, 25th, 50th, 75th and 95th percentiles (linear interpolation between the two nearest
/// values, as numpy's default); null when there is no value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quantiles {
    pub p5: Option<f64>,
    pub p25: Option<f64>,
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p95: Option<f64>,
}

/// One side of the comparison (the baseline, or the recent values) for one feature.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValueSummary {
    /// Values counted in the histogram (finite ones).
    pub count: u64,
    /// Missing or non-finite values, left out of everything else.
    pub missing: u64,
    /// Values per bin: `counts[i]` lies in `[edges[i], edges[i+1])`, the last bin closed.
    pub counts: Vec<u64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub quantiles: Quantiles,
}

/// A feature's baseline against its recent values, over the same bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureDistribution {
    pub feature: String,
    /// `bins + 1` increasing bin edges spanning both the baseline's and the recent values; empty
    /// when neither has a finite value.
    pub edges: Vec<f64>,
    pub baseline: ValueSummary,
    pub recent: ValueSummary,
}

/// The answer of `GET /v1/models/{name}/versions/{version}/drift/distribution`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftDistribution {
    pub model: String,
    pub version: u64,
    /// Bins per histogram.
    pub bins: usize,
    /// Rows in the version's drift baseline.
    pub baseline_rows: usize,
    /// Rows in the recent window (at most `window`); 0 before the first drift-checked predict.
    pub recent_rows: usize,
    /// Rows this replica has scored with a drift check since it started (the window holds the
    /// last `window` of them).
    pub recent_seen: u64,
    /// The most rows the recent window keeps.
    pub window: usize,
    /// One entry per baseline column, in the model's feature order.
    pub features: Vec<FeatureDistribution>,
}

// ---------------------------------------------------------------------------------------------
// The service side

/// A version's baseline against the rows it scored recently on this replica. 404 when the
/// model, the version or its baseline does not exist.
pub async fn version_distribution(
    models: &ModelService,
    recent: &RecentValues,
    model: &str,
    version: u64,
    bins: Option<usize>,
) -> Result<DriftDistribution, ServiceError> {
    let bins = bins.unwrap_or(DEFAULT_BINS);
    if bins == 0 || bins > MAX_BINS {
        return Err(ServiceError::new(
            ErrorKind::InvalidArgument,
            format!("`bins` must be between 1 and {MAX_BINS}, not {bins}"),
        ));
    }
    // Unknown model or version: their own 404s.
    models.version(model, version).await?;
    let baseline = models.version_drift(model, version).await?.ok_or_else(|| {
        ServiceError::new(
            ErrorKind::BaselineNotFound,
            format!(
                "version {version} of '{model}' has no drift baseline; deploy it with `baseline` or \
                 `training_data`, or PUT /v1/models/{model}/versions/{version}/baseline"
            ),
        )
    })?;
    let snapshot = recent.snapshot(model, version);
    let recent_rows = if snapshot.columns == baseline.columns {
        snapshot.rows
    } else {
        // Scored under another baseline's columns: not comparable with this one.
        Vec::new()
    };
    Ok(DriftDistribution {
        model: model.to_owned(),
        version,
        bins,
        baseline_rows: baseline.baseline.len(),
        recent_rows: recent_rows.len(),
        recent_seen: snapshot.seen,
        window: recent.capacity(),
        features: distribution(
            &baseline.columns,
            baseline.baseline.rows(),
            &recent_rows,
            bins,
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// The summaries (pure)

/// Per column, the baseline's and the recent rows' summaries over the same `bins` bins.
pub fn distribution(
    columns: &[String],
    baseline: &[Vec<f64>],
    recent: &[Vec<f64>],
    bins: usize,
) -> Vec<FeatureDistribution> {
    let column = |rows: &[Vec<f64>], i: usize| -> Vec<f64> {
        rows.iter()
            .map(|r| r.get(i).copied().unwrap_or(f64::NAN))
            .collect()
    };
    columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (base, new) = (column(baseline, i), column(recent, i));
            let edges = edges(base.iter().chain(&new).copied(), bins);
            FeatureDistribution {
                feature: name.clone(),
                baseline: summarize(&base, &edges),
                recent: summarize(&new, &edges),
                edges,
            }
        })
        .collect()
}

/// `bins + 1` evenly spaced edges from the smallest to the largest finite value; a single
/// value gets a bin of width 1 around it; no finite value, no edges.
pub fn edges(values: impl Iterator<Item = f64>, bins: usize) -> Vec<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() || bins == 0 {
        return Vec::new();
    }
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let width = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..bins).map(|i| lo + width * i as f64).collect();
    // The last edge is the largest value itself, not a sum that rounding moved.
    edges.push(hi);
    edges
}

/// Finite values per bin of `edges` (`[e_i, e_i+1)`, the last bin closed); values outside the
/// edges and non-finite ones are not counted.
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let bins = edges.len().saturating_sub(1);
    let mut counts = vec![0u64; bins];
    if bins == 0 {
        return counts;
    }
    let (lo, hi) = (edges[0], edges[bins]);
    for &v in values {
        if !v.is_finite() || v < lo || v > hi {
            continue;
        }
        // The first edge above v, minus one; the top edge belongs to the last bin.
        let bin = edges
            .partition_point(|e| *e <= v)
            .saturating_sub(1)
            .min(bins - 1);
        counts[bin] += 1;
    }
    counts
}

/// The `q`-quantile (0 ≤ q ≤ 1) of sorted values, interpolated linearly between the two nearest
/// ranks; `None` when there are none.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = q.clamp(0.0, 1.0) * last as f64;
    let below = rank.floor() as usize;
    let above = (below + 1).min(last);
    let fraction = rank - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * fraction)
}

/// One side's summary over `edges`.
pub fn summarize(values: &[f64], edges: &[f64]) -> ValueSummary {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f64::total_cmp);
    let count = finite.len();
    let q = |p: f64| quantile(&finite, p);
    ValueSummary {
        count: count as u64,
        missing: (values.len() - count) as u64,
        counts: histogram(&finite, edges),
        min: finite.first().copied(),
        max: finite.last().copied(),
        mean: (count > 0).then(|| finite.iter().sum::<f64>() / count as f64),
        quantiles: Quantiles {
            p5: q(0.05),
            p25: q(0.25),
            p50: q(0.5),
            p75: q(0.75),
            p95: q(0.95),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn edges_span_every_finite_value_with_the_top_one_exact() {
        let e = edges([3.0, f64::NAN, 1.0, 2.0, f64::INFINITY].into_iter(), 4);
        assert_eq!(e.len(), 5);
        assert!(close(e[0], 1.0) && close(e[1], 1.5) && close(e[2], 2.0));
        assert_eq!(e[4], 3.0);
        // One distinct value: a bin of width one around it.
        assert_eq!(edges([2.0, 2.0].into_iter(), 2), vec![1.5, 2.0, 2.5]);
        // Nothing finite: no edges, and empty histograms.
        assert!(edges([f64::NAN].into_iter(), 3).is_empty());
        assert!(histogram(&[1.0], &[]).is_empty());
    }

    #[test]
    fn histogram_bins_are_half_open_and_the_last_is_closed() {
        let edges = [0.0, 1.0, 2.0, 3.0];
        let counts = histogram(&[0.0, 0.5, 1.0, 2.999, 3.0, -0.1, 3.1, f64::NAN], &edges);
        assert_eq!(counts, vec![2, 1, 2]);
    }

    #[test]
    fn quantiles_interpolate_linearly_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&sorted, 0.5), Some(3.0));
        assert_eq!(quantile(&sorted, 0.25), Some(2.0));
        assert!(close(quantile(&sorted, 0.05).unwrap(), 1.2));
        assert!(close(quantile(&sorted, 0.95).unwrap(), 4.8));
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn baseline_and_recent_share_bins_that_cover_both() {
        let columns = vec!["a".to_owned(), "b".to_owned()];
        let baseline = vec![vec![1.0, 0.0], vec![2.0, f64::NAN], vec![3.0, 1.0]];
        let recent = vec![vec![9.0, 1.0], vec![10.0, 1.0]];
        let d = distribution(&columns, &baseline, &recent, 3);
        assert_eq!(d.len(), 2);
        let a = &d[0];
        assert_eq!(a.feature, "a");
        assert_eq!(a.edges, vec![1.0, 4.0, 7.0, 10.0]);
        assert_eq!(a.baseline.counts, vec![3, 0, 0]);
        assert_eq!(a.recent.counts, vec![0, 0, 2]);
        assert_eq!(a.recent.quantiles.p50, Some(9.5));
        assert_eq!(a.baseline.mean, Some(2.0));
        let b = &d[1];
        assert_eq!((b.baseline.count, b.baseline.missing), (2, 1));
        assert_eq!(b.baseline.counts.iter().sum::<u64>(), 2);
        assert_eq!(b.recent.counts.iter().sum::<u64>(), 2);
    }

    #[test]
    fn no_recent_rows_is_an_empty_side_with_the_baseline_bins() {
        let d = distribution(&["a".to_owned()], &[vec![1.0], vec![2.0]], &[], 2);
        assert_eq!(d[0].recent.count, 0);
        assert_eq!(d[0].recent.counts, vec![0, 0]);
        assert_eq!(d[0].recent.quantiles, Quantiles::default());
        assert_eq!(d[0].recent.mean, None);
    }

    #[test]
    fn the_window_keeps_the_last_rows_and_restarts_on_new_columns() {
        let recent = RecentValues::new(3);
        let table = |cols: &[&str], rows: Vec<Vec<f64>>| {
            FeatureTable::new(cols.iter().map(|c| (*c).to_owned()).collect(), rows).unwrap()
        };
        recent.observe("m", 1, &table(&["x"], vec![vec![1.0], vec![2.0]]));
        recent.observe("m", 1, &table(&["x"], vec![vec![3.0], vec![4.0]]));
        let s = recent.snapshot("m", 1);
        assert_eq!(s.rows, vec![vec![2.0], vec![3.0], vec![4.0]]);
        assert_eq!(s.seen, 4);
        // More rows than the window at once: only the last ones.
        recent.observe(
            "m",
            1,
            &table(&["x"], (0..5).map(|i| vec![f64::from(i)]).collect()),
        );
        assert_eq!(
            recent.snapshot("m", 1).rows,
            vec![vec![2.0], vec![3.0], vec![4.0]]
        );
        recent.observe("m", 1, &table(&["y"], vec![vec![8.0]]));
        let s = recent.snapshot("m", 1);
        assert_eq!(
            (s.columns, s.rows, s.seen),
            (vec!["y".to_owned()], vec![vec![8.0]], 1)
        );
        assert!(recent.snapshot("m", 2).rows.is_empty());
    }
}
