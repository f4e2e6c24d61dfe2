//! Linear regression's arithmetic that linfa does not do as scikit-learn does: ridge in closed
//! form, and centering so that a penalised fit leaves the intercept unpenalised.

use ndarray::{Array1, Array2};

use super::params::Params;
use super::MlError;

/// A number of at least 0.
pub(super) fn non_negative(p: &Params, name: &str, default: f64) -> Result<f64, MlError> {
    let value = p.number(name)?.unwrap_or(default);
    if value >= 0.0 {
        Ok(value)
    } else {
        Err(p.invalid(
            name,
            format!("expected a number of at least 0, got {value}"),
        ))
    }
}

/// Training data centered on its means when an intercept is fitted, so that a penalised fit
/// leaves the intercept unpenalised: `intercept = mean(y) - mean(x) · weights`. A constant
/// column is centered to exact zeros, so it gets weight 0.
pub(super) struct Centered {
    pub x: Array2<f64>,
    pub y: Array1<f64>,
    x_mean: Array1<f64>,
    y_mean: f64,
}

impl Centered {
    pub fn new(mut x: Array2<f64>, mut y: Array1<f64>, with_intercept: bool) -> Centered {
        let mut x_mean = Array1::zeros(x.ncols());
        let mut y_mean = 0.0;
        if with_intercept {
            for (mut column, mean) in x.columns_mut().into_iter().zip(x_mean.iter_mut()) {
                let first = column.first().copied().unwrap_or(0.0);
                if column.iter().all(|&v| v == first) {
                    *mean = first;
                    column.fill(0.0);
                } else {
                    *mean = column.mean().unwrap_or(0.0);
                    column -= *mean;
                }
            }
            y_mean = y.mean().unwrap_or(0.0);
            y -= y_mean;
        }
        Centered {
            x,
            y,
            x_mean,
            y_mean,
        }
    }

    pub fn intercept(&self, weights: &Array1<f64>) -> f64 {
        self.y_mean - self.x_mean.dot(weights)
    }
}

/// Ridge weights in closed form, as scikit-learn's `Ridge` defines them: the `w` minimising
/// `‖y - Xw‖² + alpha ‖w‖²` on the centered data, i.e. `(X'X + alpha I) w = X'y`. Columns
/// that are all zero (constant ones, centered) get weight 0, the exact answer for alpha > 0 and
/// the least-norm one for alpha 0. The system is scaled to a unit diagonal before its
/// Cholesky factorisation, for accuracy with features of very different magnitudes. None when
/// alpha is 0 and the features are collinear.
pub(super) fn ridge_weights(data: &Centered, alpha: f64) -> Option<Array1<f64>> {
    let gram = data.x.t().dot(&data.x);
    let xty = data.x.t().dot(&data.y);
    let active: Vec<usize> = (0..gram.nrows()).filter(|&j| gram[(j, j)] > 0.0).collect();
    let d: Vec<f64> = active
        .iter()
        .map(|&j| gram[(j, j)].sqrt().recip())
        .collect();
    let k = active.len();
    let system = Array2::from_shape_fn((k, k), |(r, c)| {
        let ridge = if r == c { alpha } else { 0.0 };
        (gram[(active[r], active[c])] + ridge) * d[r] * d[c]
    });
    let rhs = Array1::from_shape_fn(k, |r| xty[active[r]] * d[r]);
    // With alpha 0 the scaled matrix is a correlation matrix: a pivot this small means the
    // features are collinear to working precision.
    let min_pivot = if alpha > 0.0 { 0.0 } else { 1e-10 };
    let v = cholesky_solve(system, rhs, min_pivot)?;
    let mut weights = Array1::zeros(gram.nrows());
    for (r, &j) in active.iter().enumerate() {
        weights[j] = v[r] * d[r];
    }
    Some(weights)
}

/// Solve `a x = b` for a symmetric positive definite `a` by Cholesky factorisation; None when
/// a pivot is not above `min_pivot`.
fn cholesky_solve(mut a: Array2<f64>, mut b: Array1<f64>, min_pivot: f64) -> Option<Array1<f64>> {
    let n = a.nrows();
    // The lower triangle of `a` becomes L, with a = L L'.
    for j in 0..n {
        let pivot = a[(j, j)] - (0..j).map(|k| a[(j, k)] * a[(j, k)]).sum::<f64>();
        if pivot.is_nan() || pivot <= min_pivot {
            return None;
        }
        let l = pivot.sqrt();
        a[(j, j)] = l;
        for i in j + 1..n {
            let s = a[(i, j)] - (0..j).map(|k| a[(i, k)] * a[(j, k)]).sum::<f64>();
            a[(i, j)] = s / l;
        }
    }
    for i in 0..n {
        let s = b[i] - (0..i).map(|k| a[(i, k)] * b[k]).sum::<f64>();
        b[i] = s / a[(i, i)];
    }
    for i in (0..n).rev() {
        let s = b[i] - (i + 1..n).map(|k| a[(k, i)] * b[k]).sum::<f64>();
        b[i] = s / a[(i, i)];
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_and_refuses_singular_systems() {
        let a = ndarray::array![[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]];
        let x = ndarray::array![1.0, -2.0, 0.5];
        let b = a.dot(&x);
        let solved = cholesky_solve(a, b, 0.0).unwrap();
        for (s, e) in solved.iter().zip(&x) {
            assert!((s - e).abs() < 1e-12, "{solved} != {x}");
        }
        let singular = ndarray::array![[1.0, 1.0], [1.0, 1.0]];
        assert!(cholesky_solve(singular, ndarray::array![1.0, 1.0], 1e-10).is_none());
    }
}
