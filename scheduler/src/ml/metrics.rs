//! Scores of predictions against the truth, defined as scikit-learn defines them (macro averages
//! over the labels present in the truth or the predictions, 0 where a ratio is 0/0).

/// Regression scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RegressionScores {
    pub rmse: f64,
    pub mae: f64,
    /// 1 - SS_res / SS_tot; with a constant truth, 1 for a perfect fit and 0 otherwise.
    pub r2: f64,
}

pub(crate) fn regression(truth: &[f64], predicted: &[f64]) -> RegressionScores {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let (mut squared, mut absolute, mut total) = (0.0, 0.0, 0.0);
    for (t, p) in truth.iter().zip(predicted) {
        squared += (t - p) * (t - p);
        absolute += (t - p).abs();
        total += (t - mean) * (t - mean);
    }
    let r2 = if total > 0.0 {
        1.0 - squared / total
    } else if squared == 0.0 {
        1.0
    } else {
        0.0
    };
    RegressionScores {
        rmse: (squared / n).sqrt(),
        mae: absolute / n,
        r2,
    }
}

/// Classification scores and the confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassificationScores {
    pub accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    /// Row and column names of the confusion matrix.
    pub labels: Vec<String>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// `labels` orders the confusion matrix; labels met in the data but not listed are appended in
/// sorted order.
pub(crate) fn classification(
    truth: &[String],
    predicted: &[String],
    labels: &[String],
) -> ClassificationScores {
    let mut labels = labels.to_vec();
    let mut extra: Vec<String> = truth
        .iter()
        .chain(predicted)
        .filter(|l| !labels.contains(l))
        .cloned()
        .collect();
    extra.sort();
    extra.dedup();
    labels.extend(extra);

    let index = |l: &String| labels.iter().position(|x| x == l).unwrap_or(0);
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (t, p) in truth.iter().zip(predicted) {
        confusion[index(t)][index(p)] += 1;
    }
    let n = truth.len();
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();

    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (mut precision, mut recall, mut f1, mut present) = (0.0, 0.0, 0.0, 0usize);
    for i in 0..k {
        let tp = confusion[i][i];
        let actual: u64 = confusion[i].iter().sum();
        let predicted: u64 = confusion.iter().map(|row| row[i]).sum();
        if actual == 0 && predicted == 0 {
            continue;
        }
        present += 1;
        precision += ratio(tp, predicted);
        recall += ratio(tp, actual);
        f1 += ratio(2 * tp, actual + predicted);
    }
    let macro_mean = |sum: f64| {
        if present == 0 {
            0.0
        } else {
            sum / present as f64
        }
    };
    ClassificationScores {
        accuracy: ratio(correct, n as u64),
        precision_macro: macro_mean(precision),
        recall_macro: macro_mean(recall),
        f1_macro: macro_mean(f1),
        labels,
        confusion,
    }
}

/// Mean silhouette coefficient of rows (`x` row-major, `f` values a row) in clusters `labels`
/// (Euclidean distance). None unless there are between 2 and n - 1 clusters.
pub(crate) fn silhouette(x: &[f64], f: usize, labels: &[usize]) -> Option<f64> {
    let n = labels.len();
    let k = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut sizes = vec![0usize; k];
    for &l in labels {
        sizes[l] += 1;
    }
    let clusters = sizes.iter().filter(|&&s| s > 0).count();
    if clusters < 2 || clusters >= n {
        return None;
    }
    let row = |i: usize| &x[i * f..(i + 1) * f];
    let mut total = 0.0;
    for i in 0..n {
        let mut sums = vec![0.0; k];
        for j in 0..n {
            if i != j {
                let d: f64 = row(i)
                    .iter()
                    .zip(row(j))
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
                sums[labels[j]] += d;
            }
        }
        let own = labels[i];
        if sizes[own] <= 1 {
            continue; // a lone point scores 0
        }
        let a = sums[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        let s = if a.max(b) > 0.0 {
            (b - a) / a.max(b)
        } else {
            0.0
        };
        total += s;
    }
    Some(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn regression_scores_by_hand() {
        // errors 1, -1, 0, 2: squared 6, absolute 4; truth mean 2.5, SS_tot 5
        let s = regression(&[1.0, 2.0, 3.0, 4.0], &[0.0, 3.0, 3.0, 2.0]);
        assert!(close(s.rmse, (6.0f64 / 4.0).sqrt()));
        assert!(close(s.mae, 1.0));
        assert!(close(s.r2, 1.0 - 6.0 / 5.0));
        assert_eq!(regression(&[2.0, 2.0], &[2.0, 2.0]).r2, 1.0);
        assert_eq!(regression(&[2.0, 2.0], &[1.0, 2.0]).r2, 0.0);
    }

    #[test]
    fn classification_scores_by_hand() {
        let truth = strings(&["a", "b", "b", "b", "c", "a"]);
        let predicted = strings(&["a", "a", "b", "b", "c", "c"]);
        let s = classification(&truth, &predicted, &strings(&["a", "b", "c"]));
        assert_eq!(
            s.confusion,
            vec![vec![1, 0, 1], vec![1, 2, 0], vec![0, 0, 1]]
        );
        assert!(close(s.accuracy, 4.0 / 6.0));
        assert!(close(s.precision_macro, (0.5 + 1.0 + 0.5) / 3.0));
        assert!(close(s.recall_macro, (0.5 + 2.0 / 3.0 + 1.0) / 3.0));
        assert!(close(s.f1_macro, (0.5 + 0.8 + 2.0 / 3.0) / 3.0));
    }

    #[test]
    fn labels_never_seen_are_appended_and_absent_ones_skipped() {
        let truth = strings(&["a", "z"]);
        let predicted = strings(&["a", "a"]);
        let s = classification(&truth, &predicted, &strings(&["a", "b"]));
        assert_eq!(s.labels, strings(&["a", "b", "z"]));
        // macro over a and z only: precision (0.5 + 0) / 2, recall (1 + 0) / 2
        assert!(close(s.precision_macro, 0.25));
        assert!(close(s.recall_macro, 0.5));
    }

    #[test]
    fn silhouette_by_hand() {
        // clusters {0, 1} and {10}: point 0: a = 1, b = 10 → 0.9; point 1: a = 1, b = 9 → 8/9;
        // point 10 is alone → 0
        let s = silhouette(&[0.0, 1.0, 10.0], 1, &[0, 0, 1]).unwrap();
        assert!(close(s, (0.9 + 8.0 / 9.0) / 3.0));
        assert_eq!(silhouette(&[0.0, 1.0], 1, &[0, 0]), None);
    }
}
