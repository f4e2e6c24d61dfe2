//! `preprocess`: fit a feature transform on the training table and apply it to both tables.
//!
//! The transform has two halves, and which half lives where is the design:
//!
//! - **In the written CSVs** (the model's input format): columns dropped, missing values filled
//!   or their rows dropped, categorical columns one-hot encoded into `column=category` columns
//!   of 0/1. A served model takes exactly these columns, so the test CSV written here is also
//!   the holdout that `evaluate` scores a served model on.
//! - **In `preprocess.json` only**: the scaling (`standard` or `minmax`) of each numeric feature,
//!   as `(x - offset) / divisor`. `train` applies it before fitting and bakes it into the ONNX
//!   graph, so the served model takes unscaled values and callers never scale by hand.
//!
//! Everything is fitted on the training table only.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::params::Params;
use super::table::{class_name, format_number, sort_classes, Cell, Table};
use super::{artifacts_dir, MlError, TaskDir, TaskOutput};

pub(crate) const PARAMS: &[&str] = &[
    "train", "test", "label", "drop", "missing", "scale", "encode",
];

const MISSING: &[&str] = &["drop", "mean", "median", "zero"];
const SCALE: &[&str] = &["none", "standard", "minmax"];

/// The fitted transform, as written to `preprocess.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// The label column, kept unchanged.
    pub label: String,
    /// Columns removed.
    pub dropped: Vec<String>,
    /// How missing values were handled: drop, mean, median or zero.
    pub missing: String,
    /// How numeric features are scaled: none, standard or minmax.
    pub scale: String,
    /// The output features, in the order of the written CSVs' columns (label excluded).
    pub features: Vec<FeatureTransform>,
}

/// How one output feature is computed from the input table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureTransform {
    /// Its column name in the written CSVs, which is also the model's input name.
    pub name: String,
    /// The input column it is computed from.
    pub source: String,
    /// One-hot features: 1 when the source holds this category, else 0 (unknown categories and
    /// missing values are 0 in every column of the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Numeric features: what a missing value was replaced with (missing = mean, median, zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<f64>,
    /// The model sees `(x - offset) / divisor`; applied by `train`, not in the CSVs.
    pub offset: f64,
    pub divisor: f64,
}

impl Preprocess {
    pub fn read(path: &Path) -> Result<Preprocess, MlError> {
        let text = std::fs::read_to_string(path).map_err(|e| MlError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            MlError::data(
                path,
                format!("not a preprocess.json written by the preprocess task: {e}"),
            )
        })
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }

    /// True when some feature is scaled.
    pub fn scales(&self) -> bool {
        self.features
            .iter()
            .any(|f| f.offset != 0.0 || f.divisor != 1.0)
    }
}

/// What kind of column each input column is.
#[derive(Debug, Clone, PartialEq)]
enum Role {
    Dropped,
    Label,
    Numeric,
    OneHot(Vec<String>),
}

pub(crate) fn run(values: &Map<String, Value>, workdir: &TaskDir) -> Result<TaskOutput, MlError> {
    let p = Params::new("preprocess", values, PARAMS, workdir)?;
    let train_path = p.required_path("train")?;
    let test_path = p.required_path("test")?;
    let label = p.required_string("label")?;
    let drop = p.list("drop")?.unwrap_or_default();
    let encode = p.list("encode")?.unwrap_or_default();
    let missing = p.choice("missing", MISSING)?.unwrap_or("drop");
    let scale = p.choice("scale", SCALE)?.unwrap_or("none");

    let train = Table::read(&train_path)?;
    let test = Table::read(&test_path)?;
    let label_ix = train.column(&label)?;
    if test.header != train.header {
        return Err(MlError::data(
            &test.path,
            format!(
                "its columns ({}) differ from those of {} ({}); preprocess needs the two parts \
                 of one split",
                test.header.join(", "),
                train.path.display(),
                train.header.join(", ")
            ),
        ));
    }
    for name in &drop {
        if train.column(name)? == label_ix {
            return Err(p.invalid("drop", format!("'{name}' is the label column")));
        }
    }
    for name in &encode {
        if train.column(name)? == label_ix {
            return Err(p.invalid("encode", format!("'{name}' is the label column")));
        }
        if drop.contains(name) {
            return Err(p.invalid("encode", format!("'{name}' is also dropped")));
        }
    }

    let mut roles: Vec<Role> = train
        .header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if i == label_ix {
                Role::Label
            } else if drop.contains(name) {
                Role::Dropped
            } else if encode.contains(name) {
                Role::OneHot(Vec::new())
            } else {
                Role::Numeric
            }
        })
        .collect();

    let (train_rows, train_dropped) = kept_rows(&train, &roles, missing)?;
    let (test_rows, test_dropped) = kept_rows(&test, &roles, missing)?;
    if train_rows.is_empty() {
        return Err(MlError::data(
            &train.path,
            "no row is left after dropping rows with missing values; use missing=mean, median \
             or zero, or drop the emptiest columns",
        ));
    }

    // Fit on the training rows: categories, fill values, scaling.
    let mut features = Vec::new();
    for (c, role) in roles.iter_mut().enumerate() {
        let source = &train.header[c];
        match role {
            Role::Label | Role::Dropped => {}
            Role::OneHot(categories) => {
                let mut seen: BTreeSet<String> = BTreeSet::new();
                for &r in &train_rows {
                    if Cell::of(&train.rows[r][c]) != Cell::Missing {
                        seen.insert(class_name(&train.rows[r][c]));
                    }
                }
                *categories = seen.into_iter().collect();
                sort_classes(categories);
                for category in categories.iter() {
                    features.push(FeatureTransform {
                        name: format!("{source}={category}"),
                        source: source.clone(),
                        category: Some(category.clone()),
                        fill: None,
                        offset: 0.0,
                        divisor: 1.0,
                    });
                }
            }
            Role::Numeric => {
                let observed: Vec<f64> = train_rows
                    .iter()
                    .filter_map(|&r| match Cell::of(&train.rows[r][c]) {
                        Cell::Number(n) => Some(n),
                        _ => None,
                    })
                    .collect();
                if observed.is_empty() {
                    return Err(MlError::data(
                        &train.path,
                        format!("column '{source}' has no value; drop it"),
                    ));
                }
                let fill = match missing {
                    "mean" => Some(mean(&observed)),
                    "median" => Some(median(&observed)),
                    "zero" => Some(0.0),
                    _ => None,
                };
                // Scaling is fitted on the values the model will see, fills included.
                let n_missing = train_rows.len() - observed.len();
                let mut seen = observed;
                seen.extend(std::iter::repeat_n(fill.unwrap_or(0.0), n_missing));
                let (offset, divisor) = scaling(scale, &seen);
                features.push(FeatureTransform {
                    name: source.clone(),
                    source: source.clone(),
                    category: None,
                    fill,
                    offset,
                    divisor,
                });
            }
        }
    }

    let transform = Preprocess {
        label: label.clone(),
        dropped: drop.clone(),
        missing: missing.to_owned(),
        scale: scale.to_owned(),
        features,
    };
    let header = output_header(&train, &roles, &transform)?;
    let train_out = apply(&train, &train_rows, &roles, &transform, header.clone())?;
    let test_out = apply(&test, &test_rows, &roles, &transform, header)?;

    let dir = artifacts_dir(workdir)?;
    let (train_file, test_file, json_file) = (
        dir.join("train.csv"),
        dir.join("test.csv"),
        dir.join("preprocess.json"),
    );
    train_out.write(&train_file)?;
    test_out.write(&test_file)?;
    let json = serde_json::to_string_pretty(&transform)
        .map_err(|e| MlError::data(&json_file, format!("cannot encode the transform: {e}")))?;
    std::fs::write(&json_file, json + "\n").map_err(|e| MlError::io(&json_file, e))?;

    let mut out = TaskOutput::default();
    out.export_path("TRAIN", &train_file);
    out.export_path("TEST", &test_file);
    out.export("LABEL", &label);
    out.export_path("PREPROCESS", &json_file);
    out.metric("train_rows", train_rows.len());
    out.metric("test_rows", test_rows.len());
    out.metric("train_rows_dropped", train_dropped);
    out.metric("test_rows_dropped", test_dropped);
    out.metric("features", transform.features.len());
    Ok(out)
}

/// Rows that stay: never those without a label; with missing=drop, not those missing any
/// feature either. Numeric columns must hold numbers.
fn kept_rows(table: &Table, roles: &[Role], missing: &str) -> Result<(Vec<usize>, usize), MlError> {
    let mut kept = Vec::with_capacity(table.rows.len());
    for (r, row) in table.rows.iter().enumerate() {
        let mut keep = true;
        for (c, role) in roles.iter().enumerate() {
            match (role, Cell::of(&row[c])) {
                (Role::Dropped, _) => {}
                (Role::Label, Cell::Missing) => keep = false,
                (Role::Numeric | Role::OneHot(_), Cell::Missing) if missing == "drop" => {
                    keep = false
                }
                (Role::Numeric, Cell::Text(_)) => {
                    return Err(table.bad_value(
                        r,
                        c,
                        "text where a number belongs; list the column in `encode` to one-hot \
                         encode it, or in `drop`"
                            .to_owned(),
                    ))
                }
                _ => {}
            }
        }
        if keep {
            kept.push(r);
        }
    }
    let dropped = table.rows.len() - kept.len();
    Ok((kept, dropped))
}

fn output_header(
    table: &Table,
    roles: &[Role],
    transform: &Preprocess,
) -> Result<Vec<String>, MlError> {
    let mut header = Vec::new();
    let mut features = transform.features.iter();
    for (c, role) in roles.iter().enumerate() {
        match role {
            Role::Dropped => {}
            Role::Label => header.push(table.header[c].clone()),
            Role::Numeric => header.extend(features.next().map(|f| f.name.clone())),
            Role::OneHot(categories) => header.extend(
                features
                    .by_ref()
                    .take(categories.len())
                    .map(|f| f.name.clone()),
            ),
        }
    }
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            return Err(MlError::data(
                &table.path,
                format!(
                    "one-hot encoding makes a column '{name}' that already exists; rename or \
                     drop the existing column"
                ),
            ));
        }
    }
    Ok(header)
}

/// The output table: filled numbers, one-hot columns, the label as it was. Not scaled.
fn apply(
    table: &Table,
    rows: &[usize],
    roles: &[Role],
    transform: &Preprocess,
    header: Vec<String>,
) -> Result<Table, MlError> {
    let mut out_rows = Vec::with_capacity(rows.len());
    for &r in rows {
        let row = &table.rows[r];
        let mut out = Vec::with_capacity(header.len());
        let mut features = transform.features.iter();
        for (c, role) in roles.iter().enumerate() {
            match role {
                Role::Dropped => {}
                Role::Label => out.push(row[c].trim().to_owned()),
                Role::Numeric => {
                    let fill = features.next().and_then(|f| f.fill);
                    let value = match (Cell::of(&row[c]), fill) {
                        (Cell::Number(n), _) => n,
                        (_, Some(fill)) => fill,
                        (_, None) => {
                            return Err(table.bad_value(r, c, "missing value".into()));
                        }
                    };
                    out.push(format_number(value));
                }
                Role::OneHot(categories) => {
                    let value = match Cell::of(&row[c]) {
                        Cell::Missing => None,
                        _ => Some(class_name(&row[c])),
                    };
                    for category in categories {
                        features.next();
                        let hot = value.as_deref() == Some(category.as_str());
                        out.push(if hot { "1" } else { "0" }.to_owned());
                    }
                }
            }
        }
        out_rows.push(out);
    }
    Ok(Table {
        path: table.path.clone(),
        header,
        rows: out_rows,
        lines: rows.iter().map(|&r| table.line(r)).collect(),
    })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `(offset, divisor)` for one feature; a constant feature is only shifted.
fn scaling(scale: &str, values: &[f64]) -> (f64, f64) {
    let (offset, divisor) = match scale {
        "standard" => {
            let m = mean(values);
            let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / values.len() as f64;
            (m, var.sqrt())
        }
        "minmax" => {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (min, max - min)
        }
        _ => (0.0, 1.0),
    };
    if divisor > 0.0 && divisor.is_finite() {
        (offset, divisor)
    } else {
        (offset, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(scaling("standard", &[1.0, 3.0]), (2.0, 1.0));
        assert_eq!(scaling("minmax", &[1.0, 5.0, 3.0]), (1.0, 4.0));
        assert_eq!(scaling("standard", &[2.0, 2.0]), (2.0, 1.0));
        assert_eq!(scaling("none", &[2.0, 7.0]), (0.0, 1.0));
    }
}
