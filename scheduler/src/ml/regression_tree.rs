//! Regression trees and forests (CART): linfa-trees grows classification trees only.
//!
//! A node splits on the feature and threshold that reduce the squared error the most (what
//! scikit-learn's `DecisionTreeRegressor` does with `criterion="squared_error"`); a leaf
//! predicts the mean of its rows. Thresholds are midpoints between neighbouring distinct
//! values, and `x < threshold` goes left, as in the classification trees. A forest grows each
//! tree on a bootstrap sample of the rows and draws the features a split may use at each node
//! (`feature_fraction` of them), then averages its trees.
//!
//! Everything is a function of the data and the seed: candidates are tried in feature order
//! and a tie keeps the first, so the same seed grows the same forest.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ndarray::{Array2, ArrayView1};

use super::onnx::{Tree, TreeNode};
use super::params::Params;
use super::split::DEFAULT_SEED;
use super::train::float32_boundary;
use super::MlError;

/// How a tree grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GrowthLimits {
    /// Levels below the root; None: until the leaves are pure or too small to split.
    pub max_depth: Option<usize>,
    /// Rows a node needs to be split.
    pub min_samples_split: usize,
    /// Rows each side of a split needs.
    pub min_samples_leaf: usize,
}

impl Default for GrowthLimits {
    fn default() -> Self {
        GrowthLimits {
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
        }
    }
}

/// A node of a fitted regression tree; nodes are numbered from the root (0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RegressionNode {
    /// `x[feature] < threshold` goes to `left`, anything else (NaN too) to `right`.
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        value: f64,
    },
}

/// A fitted regression tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegressionTree {
    pub nodes: Vec<RegressionNode>,
}

impl RegressionTree {
    /// Grow a tree on the rows `rows` of `x` (repeats allowed: a bootstrap sample), trying
    /// `features_per_split` features at each node (all of them when it is the feature count).
    pub(crate) fn fit(
        x: &Array2<f64>,
        y: &[f64],
        rows: Vec<usize>,
        limits: GrowthLimits,
        features_per_split: usize,
        rng: &mut ChaCha8Rng,
    ) -> RegressionTree {
        let mut tree = RegressionTree { nodes: Vec::new() };
        let mut grower = Grower {
            x,
            y,
            limits,
            features_per_split: features_per_split.clamp(1, x.ncols().max(1)),
            rng,
        };
        grower.grow(&mut tree, rows, 0);
        tree
    }

    pub(crate) fn predict_row(&self, row: ArrayView1<f64>) -> f64 {
        let mut at = 0;
        loop {
            match self.nodes.get(at) {
                Some(RegressionNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                }) => {
                    at = if row[*feature] < *threshold {
                        *left
                    } else {
                        *right
                    };
                }
                Some(RegressionNode::Leaf { value }) => return *value,
                None => return 0.0,
            }
        }
    }
}

struct Grower<'a> {
    x: &'a Array2<f64>,
    y: &'a [f64],
    limits: GrowthLimits,
    features_per_split: usize,
    rng: &'a mut ChaCha8Rng,
}

/// The best split found at a node.
struct Split {
    feature: usize,
    threshold: f64,
    /// Squared error of the two sides together.
    error: f64,
}

impl Grower<'_> {
    /// Grow the subtree of `rows` as node `tree.nodes.len()`, returning its index.
    fn grow(&mut self, tree: &mut RegressionTree, rows: Vec<usize>, depth: usize) -> usize {
        let at = tree.nodes.len();
        let n = rows.len() as f64;
        let (sum, sum_sq) = rows.iter().fold((0.0, 0.0), |(s, q), &r| {
            (s + self.y[r], q + self.y[r] * self.y[r])
        });
        let mean = if rows.is_empty() { 0.0 } else { sum / n };
        tree.nodes.push(RegressionNode::Leaf { value: mean });
        let error = sum_sq - sum * sum / n.max(1.0);
        let may_split = rows.len() >= self.limits.min_samples_split
            && rows.len() >= 2 * self.limits.min_samples_leaf
            && self.limits.max_depth.is_none_or(|d| depth < d)
            // A pure node (up to rounding) has nothing to gain.
            && error > 1e-12 * sum_sq.max(1.0);
        if !may_split {
            return at;
        }
        let Some(split) = self.best_split(&rows) else {
            return at;
        };
        if split.error >= error {
            return at;
        }
        let (left_rows, right_rows): (Vec<usize>, Vec<usize>) = rows
            .iter()
            .partition(|&&r| self.x[(r, split.feature)] < split.threshold);
        let left = self.grow(tree, left_rows, depth + 1);
        let right = self.grow(tree, right_rows, depth + 1);
        tree.nodes[at] = RegressionNode::Split {
            feature: split.feature,
            threshold: split.threshold,
            left,
            right,
        };
        at
    }

    fn candidate_features(&mut self) -> Vec<usize> {
        let all: Vec<usize> = (0..self.x.ncols()).collect();
        if self.features_per_split >= all.len() {
            return all;
        }
        let mut chosen: Vec<usize> = all
            .choose_multiple(self.rng, self.features_per_split)
            .copied()
            .collect();
        chosen.sort_unstable();
        chosen
    }

    fn best_split(&mut self, rows: &[usize]) -> Option<Split> {
        let min_leaf = self.limits.min_samples_leaf.max(1);
        let total: f64 = rows.iter().map(|&r| self.y[r]).sum();
        let total_sq: f64 = rows.iter().map(|&r| self.y[r] * self.y[r]).sum();
        let n = rows.len();
        let mut best: Option<Split> = None;
        let mut sorted = rows.to_vec();
        for feature in self.candidate_features() {
            let value = |r: usize| self.x[(r, feature)];
            sorted.sort_by(|&a, &b| value(a).total_cmp(&value(b)));
            let (mut left_sum, mut left_sq) = (0.0, 0.0);
            for i in 0..n - 1 {
                let r = sorted[i];
                left_sum += self.y[r];
                left_sq += self.y[r] * self.y[r];
                let (here, next) = (value(r), value(sorted[i + 1]));
                let left_n = i + 1;
                // Only between distinct values, and never on NaN (it always goes right).
                if here >= next || next.is_nan() || left_n < min_leaf || n - left_n < min_leaf {
                    continue;
                }
                let right_n = (n - left_n) as f64;
                let right_sum = total - left_sum;
                let right_sq = total_sq - left_sq;
                let error = (left_sq - left_sum * left_sum / left_n as f64)
                    + (right_sq - right_sum * right_sum / right_n);
                if best.as_ref().is_none_or(|b| error < b.error) {
                    let mut threshold = here + (next - here) / 2.0;
                    // Two neighbouring floats: the midpoint rounds onto `here`.
                    if threshold <= here {
                        threshold = next;
                    }
                    best = Some(Split {
                        feature,
                        threshold,
                        error,
                    });
                }
            }
        }
        best
    }
}

/// How a forest is grown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ForestSettings {
    pub trees: usize,
    pub limits: GrowthLimits,
    /// Bootstrap sample size as a fraction of the rows.
    pub sample_fraction: f64,
    /// Share of the features a split may use, drawn at each node.
    pub feature_fraction: f64,
    pub seed: u64,
}

/// Grow a forest: each tree on its own bootstrap sample.
pub(crate) fn fit_forest(
    x: &Array2<f64>,
    y: &[f64],
    settings: &ForestSettings,
) -> Vec<RegressionTree> {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let n = x.nrows();
    let sample = ((n as f64 * settings.sample_fraction).round() as usize).max(1);
    let per_split = ((x.ncols() as f64 * settings.feature_fraction).ceil() as usize).max(1);
    (0..settings.trees)
        .map(|_| {
            let rows: Vec<usize> = (0..sample).map(|_| rng.gen_range(0..n.max(1))).collect();
            RegressionTree::fit(x, y, rows, settings.limits, per_split, &mut rng)
        })
        .collect()
}

/// The mean of the trees' predictions for each row.
pub(crate) fn predict_forest(trees: &[RegressionTree], x: &Array2<f64>) -> Vec<f64> {
    x.rows()
        .into_iter()
        .map(|row| {
            let sum: f64 = trees.iter().map(|t| t.predict_row(row)).sum();
            sum / trees.len().max(1) as f64
        })
        .collect()
}

/// Fit a `decision_tree` (one tree, every row and feature) or a `random_forest` regressor from
/// a train task's parameters.
pub(crate) fn fit_from_params(
    p: &Params,
    algorithm: &str,
    x: &Array2<f64>,
    y: &[f64],
) -> Result<Vec<RegressionTree>, MlError> {
    // Only the one criterion: a classification criterion here is a mistake worth naming.
    p.choice("criterion", &["squared_error"])?;
    let max_depth = match p.integer("max_depth")? {
        Some(0) => return Err(p.invalid("max_depth", "expected at least 1")),
        Some(d) => Some(usize::try_from(d).unwrap_or(usize::MAX)),
        None => None,
    };
    let limits = GrowthLimits {
        max_depth,
        min_samples_split: p.count("min_samples_split", 2, 2)?,
        min_samples_leaf: p.count("min_samples_leaf", 1, 1)?,
    };
    if algorithm != "random_forest" {
        let mut rng = ChaCha8Rng::seed_from_u64(DEFAULT_SEED);
        let rows = (0..x.nrows()).collect();
        return Ok(vec![RegressionTree::fit(
            x,
            y,
            rows,
            limits,
            x.ncols(),
            &mut rng,
        )]);
    }
    let feature_fraction = p.number("feature_fraction")?.unwrap_or(1.0);
    if feature_fraction <= 0.0 || feature_fraction > 1.0 {
        return Err(p.invalid(
            "feature_fraction",
            format!("expected a fraction in (0, 1], got {feature_fraction}"),
        ));
    }
    let settings = ForestSettings {
        trees: p.count("n_trees", 100, 1)?,
        limits,
        sample_fraction: p.positive("sample_fraction", 1.0)?,
        feature_fraction,
        seed: p.integer("seed")?.unwrap_or(DEFAULT_SEED),
    };
    Ok(fit_forest(x, y, &settings))
}

/// A fitted tree as the ONNX graph's numbered nodes over the raw features: each threshold
/// becomes the float32 boundary of its split on the unscaled input, as for classification
/// trees, so the graph decides every float32 row as the Rust tree does on the scaled one.
pub(crate) fn to_graph_tree(tree: &RegressionTree, scaling: Option<&(Vec<f64>, Vec<f64>)>) -> Tree {
    let nodes = tree
        .nodes
        .iter()
        .map(|node| match *node {
            RegressionNode::Split {
                feature,
                threshold,
                left,
                right,
            } => {
                let (offset, divisor) =
                    scaling.map_or((0.0, 1.0), |(o, d)| (o[feature], d[feature]));
                TreeNode::Split {
                    feature,
                    threshold: f64::from(float32_boundary(threshold, offset, divisor)),
                    left,
                    right,
                }
            }
            RegressionNode::Leaf { value } => TreeNode::Value { value },
        })
        .collect();
    Tree { nodes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn single(x: &Array2<f64>, y: &[f64], limits: GrowthLimits) -> RegressionTree {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        RegressionTree::fit(x, y, (0..y.len()).collect(), limits, x.ncols(), &mut rng)
    }

    #[test]
    fn a_step_is_split_at_the_midpoint_and_leaves_hold_means() {
        let x = array![[1.0, 9.0], [2.0, 9.0], [3.0, 9.0], [4.0, 9.0]];
        let y = [10.0, 12.0, 30.0, 32.0];
        let tree = single(
            &x,
            &y,
            GrowthLimits {
                max_depth: Some(1),
                ..GrowthLimits::default()
            },
        );
        assert_eq!(
            tree.nodes,
            vec![
                RegressionNode::Split {
                    feature: 0,
                    threshold: 2.5,
                    left: 1,
                    right: 2
                },
                RegressionNode::Leaf { value: 11.0 },
                RegressionNode::Leaf { value: 31.0 },
            ]
        );
        assert_eq!(tree.predict_row(array![2.4, 0.0].view()), 11.0);
        assert_eq!(tree.predict_row(array![2.5, 0.0].view()), 31.0);
        assert_eq!(tree.predict_row(array![f64::NAN, 0.0].view()), 31.0);
    }

    #[test]
    fn a_full_tree_fits_its_training_rows_and_limits_hold() {
        let x = Array2::from_shape_fn((40, 2), |(r, c)| ((r * 7 + c * 3) % 11) as f64 + r as f64);
        let y: Vec<f64> = (0..40).map(|r| (r as f64 * 0.37).sin() * 5.0).collect();
        let full = single(&x, &y, GrowthLimits::default());
        for (r, row) in x.rows().into_iter().enumerate() {
            assert!((full.predict_row(row) - y[r]).abs() < 1e-9);
        }
        let limited = single(
            &x,
            &y,
            GrowthLimits {
                max_depth: None,
                min_samples_split: 2,
                min_samples_leaf: 5,
            },
        );
        // Every leaf holds at least 5 rows.
        let mut counts = vec![0usize; limited.nodes.len()];
        for row in x.rows() {
            let mut at = 0;
            while let RegressionNode::Split {
                feature,
                threshold,
                left,
                right,
            } = limited.nodes[at]
            {
                at = if row[feature] < threshold {
                    left
                } else {
                    right
                };
            }
            counts[at] += 1;
        }
        for (i, node) in limited.nodes.iter().enumerate() {
            if matches!(node, RegressionNode::Leaf { .. }) {
                assert!(counts[i] >= 5, "leaf {i} has {} rows", counts[i]);
            }
        }
    }

    #[test]
    fn a_constant_target_is_one_leaf() {
        let x = array![[1.0], [2.0], [3.0]];
        let tree = single(&x, &[4.0, 4.0, 4.0], GrowthLimits::default());
        assert_eq!(tree.nodes, vec![RegressionNode::Leaf { value: 4.0 }]);
    }

    #[test]
    fn forests_are_a_function_of_their_seed() {
        let x = Array2::from_shape_fn((60, 3), |(r, c)| ((r * (c + 3)) % 17) as f64);
        let y: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| 2.0 * r[0] - r[1] + 0.5 * r[2])
            .collect();
        let settings = ForestSettings {
            trees: 10,
            limits: GrowthLimits::default(),
            sample_fraction: 1.0,
            feature_fraction: 0.5,
            seed: 7,
        };
        let a = fit_forest(&x, &y, &settings);
        let b = fit_forest(&x, &y, &settings);
        assert_eq!(a, b);
        let c = fit_forest(
            &x,
            &y,
            &ForestSettings {
                seed: 8,
                ..settings
            },
        );
        assert_ne!(a, c);
        // The forest explains most of the variance of a linear target.
        let predicted = predict_forest(&a, &x);
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let total: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
        let residual: f64 = y.iter().zip(&predicted).map(|(v, p)| (v - p).powi(2)).sum();
        assert!(1.0 - residual / total > 0.8, "{}", 1.0 - residual / total);
    }
}
