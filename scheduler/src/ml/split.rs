//! `split`: a seeded shuffle of the rows into a training and a test table.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::params::Params;
use super::table::{class_name, Table};
use super::{artifacts_dir, MlError, TaskDir, TaskOutput};

pub(crate) const PARAMS: &[&str] = &["data", "label", "train_size", "seed", "stratify"];

pub(crate) const DEFAULT_SEED: u64 = 42;

pub(crate) fn run(values: &Map<String, Value>, workdir: &TaskDir) -> Result<TaskOutput, MlError> {
    let p = Params::new("split", values, PARAMS, workdir)?;
    let data = p.required_path("data")?;
    let label = p.required_string("label")?;
    let train_size = p.fraction("train_size", 0.8)?;
    let seed = p.integer("seed")?.unwrap_or(DEFAULT_SEED);
    let stratify = p.boolean("stratify")?.unwrap_or(false);

    let table = Table::read(&data)?;
    let label_ix = table.column(&label)?;
    table.require_rows(2)?;
    let strata: Vec<String> = if stratify {
        table.class_names(label_ix)?
    } else {
        vec![String::new(); table.rows.len()]
    };
    let (train, test) = split_rows(&strata, train_size, seed);

    let dir = artifacts_dir(workdir)?;
    let (train_path, test_path) = (dir.join("train.csv"), dir.join("test.csv"));
    table.subset(&train).write(&train_path)?;
    table.subset(&test).write(&test_path)?;

    let mut out = TaskOutput::default();
    out.export_path("TRAIN", &train_path);
    out.export_path("TEST", &test_path);
    out.export("LABEL", &label);
    out.metric("train_rows", train.len());
    out.metric("test_rows", test.len());
    out.metric("stratified", stratify);
    Ok(out)
}

/// Row indices of the training and the test part. Rows are grouped by stratum (one stratum
/// for all when not stratifying); each group is shuffled and cut at `train_size` (rounded, and
/// so that both parts get a row when the group has two), then each part is shuffled again so
/// that strata are interleaved. The same strata, fraction and seed give the same split.
fn split_rows(strata: &[String], train_size: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (row, stratum) in strata.iter().enumerate() {
        groups.entry(class_name(stratum)).or_default().push(row);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for rows in groups.values_mut() {
        shuffle(rows, &mut rng);
        let n = rows.len();
        let mut cut = (n as f64 * train_size).round() as usize;
        if n >= 2 {
            cut = cut.clamp(1, n - 1);
        }
        train.extend_from_slice(&rows[..cut]);
        test.extend_from_slice(&rows[cut..]);
    }
    shuffle(&mut train, &mut rng);
    shuffle(&mut test, &mut rng);
    (train, test)
}

/// Fisher-Yates, written out so that the order depends only on the generator's stream.
fn shuffle(rows: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..rows.len()).rev() {
        let j = rng.gen_range(0..=i);
        rows.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_split() {
        let strata = vec![String::new(); 50];
        let a = split_rows(&strata, 0.8, 7);
        assert_eq!(a, split_rows(&strata, 0.8, 7));
        assert_ne!(a, split_rows(&strata, 0.8, 8));
        assert_eq!((a.0.len(), a.1.len()), (40, 10));
        let mut all: Vec<usize> = a.0.iter().chain(&a.1).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn stratifying_keeps_class_proportions() {
        let strata: Vec<String> = (0..30).map(|i| format!("c{}", i % 3)).collect();
        let (train, test) = split_rows(&strata, 0.8, 1);
        for class in ["c0", "c1", "c2"] {
            let n = train.iter().filter(|&&r| strata[r] == class).count();
            assert_eq!(n, 8, "{class}");
        }
        assert_eq!(test.len(), 6);
    }

    #[test]
    fn both_parts_get_a_row() {
        let strata = vec![String::new(); 2];
        let (train, test) = split_rows(&strata, 0.99, 1);
        assert_eq!((train.len(), test.len()), (1, 1));
    }
}
