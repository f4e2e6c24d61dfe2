//! `maas drift`: the server's drift detectors on files, offline.
//!
//! `maas drift stream --detector D [--param key=value]... FILE` prints
//! `{"drifts": [...], "warnings": [...]}` with 0-based element indices;
//! `maas drift table --detector D --baseline BASELINE.csv NEW.csv` prints `{"features": {...}}`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use maas_drift::{drift_report, DetectorConfig, FeatureTable, ReportOptions};
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
    /// One number per line (a first line that is not a number is a header; `-` reads stdin).
    Stream {
        #[command(flatten)]
        detector: DetectorArgs,
        file: PathBuf,
    },
    /// The server's table report: per feature, the new-row indices where drift was flagged
    /// (baseline rows first, then the new rows, through a fresh detector; empty cells are missing).
    Table {
        #[command(flatten)]
        detector: DetectorArgs,
        /// Baseline rows, CSV with a header row of feature names.
        #[arg(long)]
        baseline: PathBuf,
        /// New rows, CSV with the same columns.
        new: PathBuf,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        return Ok(std::io::read_to_string(std::io::stdin())?);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The values of a one-column file. Every data line keeps its index; `nan` and `inf` are fed
/// as they are, and the detectors skip and count them. The first non-empty line may be a header.
fn stream_values(text: &str, name: &str) -> anyhow::Result<Vec<f64>> {
    let mut values = Vec::new();
    let mut first = true;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<f64>() {
            Ok(x) => values.push(x),
            Err(_) if first => {}
            Err(_) => anyhow::bail!("{name}: line {} is '{line}', not a number", n + 1),
        }
        first = false;
    }
    Ok(values)
}

fn table(path: &Path) -> anyhow::Result<FeatureTable> {
    let text = read(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: data row {}", path.display(), n + 1))?;
        let row = record
            .iter()
            .enumerate()
            .map(|(col, cell)| {
                // An empty cell is a missing value: the detectors skip NaN and count it.
                if cell.is_empty() {
                    return Ok(f64::NAN);
                }
                cell.parse::<f64>().map_err(|_| {
                    anyhow::anyhow!(
                        "{}: data row {} column '{}' is '{cell}', not a number",
                        path.display(),
                        n + 1,
                        columns.get(col).map_or("?", String::as_str)
                    )
                })
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        rows.push(row);
    }
    FeatureTable::new(columns, rows).with_context(|| format!("{}", path.display()))
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
            let (baseline, new) = (table(&baseline)?, table(&new)?);
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
            stream_values("value\n1\n2\n\n3\n", "f").unwrap(),
            vec![1.0, 2.0, 3.0]
        );
        let with_nan = stream_values("1\nnan\n3\n", "f").unwrap();
        assert!(with_nan[1].is_nan() && with_nan.len() == 3);
        assert_eq!(stream_values("\n\nvalue\n1\n", "f").unwrap(), vec![1.0]);
        assert!(stream_values("1\nx\n", "f")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
    }
}
