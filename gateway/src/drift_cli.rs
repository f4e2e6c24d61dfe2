//! `maas drift`: the server's drift detectors on files, offline.
//!
//! `maas drift stream --detector D [--param key=value]... FILE` prints
//! `{"drifts": [...], "warnings": [...]}` with 0-based element indices;
//! `maas drift table --detector D --baseline BASELINE.csv NEW.csv` prints `{"features": {...}}`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use maas_drift::{drift_report, DetectorConfig, FeatureTable, ReportOptions};
use maas_table::NumericTable;
use serde_json::json;

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(subcommand)]
    command: DriftCommand,
}

#[derive(Debug, Args)]
struct DetectorArgs {
    /// adwin, page_hinkley, hddm_a or hddm_w.
    #[arg(long)]
    detector: String,
    /// A detector parameter with river's name, e.g. `--param delta=0.01` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
}

impl DetectorArgs {
    fn config(&self) -> anyhow::Result<DetectorConfig> {
        let pairs = self
            .params
            .iter()
            .map(|p| {
                p.split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--param '{p}' is not KEY=VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(DetectorConfig::from_params(&self.detector, pairs)?)
    }
}

#[derive(Debug, Subcommand)]
enum DriftCommand {
    /// One number per line (a first line that is not a number is a header; a missing value,
    /// empty or NA, is skipped and keeps its index; `-` reads stdin).
    Stream {
        #[command(flatten)]
        detector: DetectorArgs,
        file: PathBuf,
    },
    /// The server's table report: per feature, the new-row indices where drift was flagged
    /// (baseline rows first, then the new rows, through a fresh detector). Files are read as the
    /// server reads a baseline: a missing value (empty, NA, NaN, ...) is skipped, and every
    /// baseline column needs at least one value.
    Table {
        #[command(flatten)]
        detector: DetectorArgs,
        /// Baseline rows, CSV with a header row of feature names (without one, the columns are
        /// f0, f1, ...).
        #[arg(long)]
        baseline: PathBuf,
        /// New rows, CSV with the same columns.
        new: PathBuf,
    },
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A CSV file as numbers, read as the server reads a baseline (`maas-table`'s rules): header
/// optional, a missing value is NaN, which the detectors skip and count.
fn numbers(bytes: &[u8], name: &str) -> anyhow::Result<NumericTable> {
    maas_table::Table::parse(bytes)
        .and_then(|table| table.numbers(None))
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// The values of a one-column file. Every data row keeps its index, missing ones included.
fn stream_values(bytes: &[u8], name: &str) -> anyhow::Result<Vec<f64>> {
    let table = numbers(bytes, name)?;
    if table.columns.len() != 1 {
        anyhow::bail!(
            "{name}: one value per line expected, but it has {} columns",
            table.columns.len()
        );
    }
    Ok(table.rows.into_iter().flatten().collect())
}

/// Which file of `drift table` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Baseline,
    New,
}

fn table(path: &Path, role: Role) -> anyhow::Result<FeatureTable> {
    let name = path.display().to_string();
    let table = numbers(&read(path)?, &name)?;
    if role == Role::Baseline {
        // As the server refuses such a baseline: nothing to compare the column with.
        table
            .require_values()
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    FeatureTable::new(table.columns, table.rows).with_context(|| name)
}

pub fn run(args: DriftArgs) -> anyhow::Result<()> {
    let output = match args.command {
        DriftCommand::Stream { detector, file } => {
            let mut d = detector.config()?.build()?;
            let values = stream_values(&read(&file)?, &file.display().to_string())?;
            let found = maas_drift::flags(&mut d, values);
            json!({ "drifts": found.drift, "warnings": found.warnings })
        }
        DriftCommand::Table {
            detector,
            baseline,
            new,
        } => {
            let options = ReportOptions {
                detector: detector.config()?,
                ..ReportOptions::default()
            };
            let (baseline, new) = (table(&baseline, Role::Baseline)?, table(&new, Role::New)?);
            if baseline.columns() != new.columns() {
                anyhow::bail!(
                    "the baseline has columns {:?} but the new rows have {:?}",
                    baseline.columns(),
                    new.columns()
                );
            }
            let report = drift_report(&baseline, &new, &options)?;
            json!({ "features": report.drift })
        }
    };
    println!("{output}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_files_keep_indices_and_skip_a_header() {
        assert_eq!(
            stream_values(b"value\n1\n2\n\n3\n", "f").unwrap(),
            vec![1.0, 2.0, 3.0]
        );
        let with_nan = stream_values(b"1\nnan\n\n,\nNA\n3\n", "f").unwrap_err();
        assert!(
            with_nan.to_string().contains("line 4 has 2 fields"),
            "{with_nan}"
        );
        let with_nan = stream_values(b"1\nnan\n\nNA\n3\n", "f").unwrap();
        assert!(with_nan[1].is_nan() && with_nan[2].is_nan() && with_nan.len() == 4);
        assert_eq!(stream_values(b"\n\nvalue\n1\n", "f").unwrap(), vec![1.0]);
        let err = stream_values(b"1\nsecret\n", "f").unwrap_err().to_string();
        assert!(err.contains("line 2") && !err.contains("secret"), "{err}");
        assert!(stream_values(b"1,2\n", "f")
            .unwrap_err()
            .to_string()
            .contains("one value per line"));
    }
}
