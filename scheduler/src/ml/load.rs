//! `load_csv` and `load_dataset`: bring a table into the workflow as `artifacts/data.csv`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::params::Params;
use super::table::Table;
use super::{artifacts_dir, MlError, TaskDir, TaskOutput};

/// How long fetching a CSV over http(s) may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The datasets compiled into the binary: name, label column, CSV text.
const DATASETS: [(&str, &str, &str); 2] = [
    ("iris", "species", include_str!("../../datasets/iris.csv")),
    (
        "house_prices",
        "price",
        include_str!("../../datasets/house_prices.csv"),
    ),
];

pub(crate) const LOAD_CSV_PARAMS: &[&str] = &["path", "delimiter", "label", "columns"];
pub(crate) const LOAD_DATASET_PARAMS: &[&str] = &["name"];

pub(crate) fn load_csv(
    values: &Map<String, Value>,
    workdir: &TaskDir,
) -> Result<TaskOutput, MlError> {
    let p = Params::new("load_csv", values, LOAD_CSV_PARAMS, workdir)?;
    let source = p.required_string("path")?;
    let label = p.required_string("label")?;
    let delimiter = delimiter(&p)?;
    let columns = p.list("columns")?;

    let table = if is_url(&source) {
        let bytes = fetch(source.trim())?;
        Table::parse(Path::new(source.trim()), &bytes, delimiter)?
    } else {
        Table::read_delimited(&p.resolve(&source)?, delimiter)?
    };
    table.column(&label)?;
    let table = match columns {
        Some(columns) => keep_columns(&table, &columns, &label)?,
        None => table,
    };
    table.require_rows(1)?;
    write_data(&table, &label, workdir)
}

pub(crate) fn load_dataset(
    values: &Map<String, Value>,
    workdir: &TaskDir,
) -> Result<TaskOutput, MlError> {
    let p = Params::new("load_dataset", values, LOAD_DATASET_PARAMS, workdir)?;
    let name = p.required_string("name")?;
    let (_, label, text) = DATASETS
        .iter()
        .find(|(n, _, _)| *n == name.trim())
        .ok_or_else(|| {
            let names: Vec<&str> = DATASETS.iter().map(|(n, _, _)| *n).collect();
            p.invalid(
                "name",
                format!(
                    "no built-in dataset '{name}'; the datasets are {}",
                    names.join(", ")
                ),
            )
        })?;
    let table = Table::parse(Path::new(&format!("dataset {name}")), text.as_bytes(), b',')?;
    write_data(&table, label, workdir)
}

fn write_data(table: &Table, label: &str, workdir: &TaskDir) -> Result<TaskOutput, MlError> {
    let path = artifacts_dir(workdir)?.join("data.csv");
    table.write(&path)?;
    let mut out = TaskOutput::default();
    out.export_path("DATA", &path);
    out.export("LABEL", label);
    out.metric("rows", table.rows.len());
    out.metric("columns", table.header.len());
    Ok(out)
}

fn delimiter(p: &Params) -> Result<u8, MlError> {
    let Some(text) = p.string("delimiter")? else {
        return Ok(b',');
    };
    match text.as_str() {
        "tab" | "\\t" => Ok(b'\t'),
        "space" => Ok(b' '),
        t if t.len() == 1 && t.is_ascii() => Ok(t.as_bytes()[0]),
        t => Err(p.invalid(
            "delimiter",
            format!("expected one ASCII character (or 'tab'), got '{t}'"),
        )),
    }
}

fn is_url(source: &str) -> bool {
    let s = source.trim().to_ascii_lowercase();
    s.starts_with("http://") || s.starts_with("https://")
}

/// GET a URL. On a thread of its own: reqwest's blocking client panics when called from
/// inside an async runtime, and callers of this module may be in one.
fn fetch(url: &str) -> Result<Vec<u8>, MlError> {
    let owned = url.to_owned();
    std::thread::spawn(move || fetch_here(&owned))
        .join()
        .unwrap_or_else(|_| {
            Err(MlError::Fetch {
                url: url.to_owned(),
                reason: "the download thread panicked".into(),
            })
        })
}

fn fetch_here(url: &str) -> Result<Vec<u8>, MlError> {
    let error = |reason: String| MlError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| error(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .map_err(|e| error(format!("{e:#}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(error(format!("the server answered {status}")));
    }
    Ok(response
        .bytes()
        .map_err(|e| error(format!("{e:#}")))?
        .to_vec())
}

/// Keep `columns` in that order, and the label (where it was, if not listed).
fn keep_columns(table: &Table, columns: &[String], label: &str) -> Result<Table, MlError> {
    let mut keep = Vec::with_capacity(columns.len() + 1);
    for name in columns {
        let ix = table.column(name)?;
        if !keep.contains(&ix) {
            keep.push(ix);
        }
    }
    let label_ix = table.column(label)?;
    if !keep.contains(&label_ix) {
        keep.push(label_ix);
    }
    Ok(Table {
        path: table.path.clone(),
        header: keep.iter().map(|&i| table.header[i].clone()).collect(),
        rows: table
            .rows
            .iter()
            .map(|row| keep.iter().map(|&i| row[i].clone()).collect())
            .collect(),
        lines: table.lines.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_datasets_parse() {
        for (name, label, text) in DATASETS {
            let t = Table::parse(Path::new(name), text.as_bytes(), b',').unwrap();
            assert!(t.column(label).is_ok(), "{name}");
            let features: Vec<usize> = (0..t.header.len())
                .filter(|&i| t.header[i] != label)
                .collect();
            t.features(&features).unwrap();
        }
    }

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("https://example.org/x.csv"));
        assert!(is_url(" HTTP://example.org/x.csv"));
        assert!(!is_url("data/http.csv"));
    }
}
