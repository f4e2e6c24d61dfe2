//! A version's drift baseline, built from what a deploy or a baseline update sends: baseline
//! rows used as they are, or training data sampled down to `baseline_size` rows, with the
//! per-feature training statistics the deviation check compares against (computed from the
//! training rows, or given directly as `training_stats`, the seed's MODEL_METADATA).

use std::collections::BTreeMap;

use maas_drift::{FeatureStats, FeatureTable};
use maas_serving::{Dim, ModelSignature};
use maas_table::NumericTable;
use serde_json::Value;

use crate::services::drift::DriftSettings;
use crate::services::error::{ErrorKind, ServiceError};
use crate::store::drift::DriftRecord;

/// Rows sampled from `training_data` when `baseline_size` is not given (the seed's
/// DRIFT_DETECTION_WINDOW_SIZE); fewer when the data has fewer.
pub const DEFAULT_BASELINE_SIZE: usize = 50;
/// Largest uploaded baseline, in rows.
const MAX_BASELINE_ROWS: usize = 10_000;
/// The seed of the baseline sample, so that the same training data gives the same baseline.
const SAMPLE_SEED: u64 = 0x6d61_6173_5f64_7266;
/// How `training_stats` looks, for messages.
const STATS_SHAPE: &str = "{\"feature\": {\"mean\": 5.8, \"std\": 0.8}, ...} or the seed's \
                           [[means...], [stds...]] in feature order";

/// What a deploy or a baseline update sends for drift.
#[derive(Debug, Default)]
pub struct BaselineUpload {
    /// Baseline rows as CSV, used as they are.
    pub baseline_csv: Option<Vec<u8>>,
    /// Training data as CSV: `baseline_size` rows are sampled, statistics come from all rows.
    pub training_csv: Option<Vec<u8>>,
    pub baseline_size: Option<usize>,
    /// A column of `training_data`/`baseline` to drop (the label).
    pub label_column: Option<String>,
    /// Training mean and std per feature, given directly (JSON, see [`STATS_SHAPE`]); they go
    /// with a `baseline`, whose own statistics they replace in the deviation check.
    pub training_stats: Option<Value>,
    pub settings: Option<DriftSettings>,
}

impl BaselineUpload {
    pub fn is_empty(&self) -> bool {
        self.baseline_csv.is_none()
            && self.training_csv.is_none()
            && self.training_stats.is_none()
            && self.settings.is_none()
    }
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorKind::InvalidArgument, message)
}

/// Read a drift CSV with the rules every CSV reader of maas follows (`maas-table`): the header
/// is optional, `label` (a column that may hold class names) is left out before any number is
/// read, and a missing value becomes NaN, which the detectors and the statistics skip.
fn read_numbers(
    bytes: &[u8],
    what: &str,
    label: Option<&str>,
) -> Result<(bool, NumericTable), ServiceError> {
    let refused = |e: maas_table::TableError| invalid(format!("{what}: {e}"));
    let table = maas_table::Table::parse(bytes).map_err(refused)?;
    let numbers = table.numbers(label).map_err(refused)?;
    if numbers.rows.is_empty() {
        return Err(invalid(format!("{what} has no data rows")));
    }
    Ok((table.has_header(), numbers))
}

/// Fisher–Yates on the first `n` positions with a fixed-seed xorshift: the same training data
/// always gives the same baseline.
fn sample(rows: Vec<Vec<f64>>, n: usize) -> Vec<Vec<f64>> {
    if rows.len() <= n {
        return rows;
    }
    let mut rows = rows;
    let mut state = SAMPLE_SEED;
    for i in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = i + (state % (rows.len() - i) as u64) as usize;
        rows.swap(i, j);
    }
    rows.truncate(n);
    rows
}

/// The features a drift check sees: `[N, F]` input, F known.
fn feature_count(signature: &ModelSignature) -> Result<Option<usize>, ServiceError> {
    match signature.inputs.as_slice() {
        [input] if input.shape.len() == 2 => Ok(match input.shape[1] {
            Dim::Fixed(n) => Some(n),
            Dim::Symbolic(_) => None,
        }),
        _ => Err(invalid(
            "drift detection needs a model with one input of shape [N, features]",
        )),
    }
}

/// `training_stats` read against the baseline's columns: every feature gets a finite mean and
/// a finite std > 0, and no other name is given. The count is 0 (no rows stand behind them) and
/// the range is the baseline's (what the HDDM detectors scale by).
fn given_stats(
    given: &Value,
    columns: &[String],
    baseline: &BTreeMap<String, FeatureStats>,
) -> Result<BTreeMap<String, FeatureStats>, ServiceError> {
    let number = |v: Option<&Value>, at: &str| -> Result<f64, ServiceError> {
        v.and_then(Value::as_f64)
            .filter(|x| x.is_finite())
            .ok_or_else(|| invalid(format!("training_stats: {at} must be a finite number")))
    };
    let moments: Vec<(f64, f64)> = match given {
        Value::Object(by_name) => {
            if let Some(unknown) = by_name.keys().find(|k| !columns.contains(k)) {
                return Err(invalid(format!(
                    "training_stats names '{unknown}', which is not a feature of the model (features: {})",
                    columns.join(", ")
                )));
            }
            columns
                .iter()
                .map(|name| {
                    let Some(Value::Object(entry)) = by_name.get(name) else {
                        return Err(invalid(format!(
                            "training_stats has no {{\"mean\": .., \"std\": ..}} for '{name}'; give every feature: {STATS_SHAPE}"
                        )));
                    };
                    if let Some(extra) = entry.keys().find(|k| *k != "mean" && *k != "std") {
                        return Err(invalid(format!(
                            "training_stats.{name} has '{extra}'; give only `mean` and `std`"
                        )));
                    }
                    Ok((
                        number(entry.get("mean"), &format!("{name}.mean"))?,
                        number(entry.get("std"), &format!("{name}.std"))?,
                    ))
                })
                .collect::<Result<_, ServiceError>>()?
        }
        Value::Array(pair) => {
            let [Value::Array(means), Value::Array(stds)] = pair.as_slice() else {
                return Err(invalid(format!(
                    "training_stats as an array is [[means...], [stds...]]; give {STATS_SHAPE}"
                )));
            };
            if means.len() != columns.len() || stds.len() != columns.len() {
                return Err(invalid(format!(
                    "training_stats has {} means and {} stds but the model takes {} features ({})",
                    means.len(),
                    stds.len(),
                    columns.len(),
                    columns.join(", ")
                )));
            }
            columns
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    Ok((
                        number(means.get(i), &format!("the mean of '{name}'"))?,
                        number(stds.get(i), &format!("the std of '{name}'"))?,
                    ))
                })
                .collect::<Result<_, ServiceError>>()?
        }
        _ => return Err(invalid(format!("training_stats must be {STATS_SHAPE}"))),
    };
    let mut stats = BTreeMap::new();
    for (name, (mean, std)) in columns.iter().zip(moments) {
        if std <= 0.0 {
            return Err(invalid(format!(
                "training_stats: the std of '{name}' must be greater than 0, got {std}"
            )));
        }
        let range = baseline.get(name);
        stats.insert(
            name.clone(),
            FeatureStats {
                count: 0,
                mean,
                std,
                min: range.map_or(mean, |r| r.min),
                max: range.map_or(mean, |r| r.max),
            },
        );
    }
    Ok(stats)
}

/// [`build_record`] on a blocking thread: a CSV may be hundreds of megabytes, and parsing it
/// must not hold an HTTP worker (every request queued on that worker would wait).
pub async fn build_record_off_worker(
    upload: BaselineUpload,
    signature: &ModelSignature,
    feature_names: Option<&[String]>,
) -> Result<Option<DriftRecord>, ServiceError> {
    if upload.is_empty() {
        return Ok(None);
    }
    let signature = signature.clone();
    let feature_names = feature_names.map(<[String]>::to_vec);
    crate::services::off_worker(move || build_record(upload, &signature, feature_names.as_deref()))
        .await?
}

/// Turn an upload into what the store keeps, checking it against the model.
pub fn build_record(
    upload: BaselineUpload,
    signature: &ModelSignature,
    feature_names: Option<&[String]>,
) -> Result<Option<DriftRecord>, ServiceError> {
    if upload.is_empty() {
        return Ok(None);
    }
    let (bytes, from_training, what) =
        match (upload.baseline_csv, upload.training_csv) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "send either `baseline` or `training_data`, not both",
                ))
            }
            (None, None) => return Err(invalid(
                "drift settings and training statistics need a `baseline` or `training_data` CSV \
                 (or its `baseline_url` or `training_data_url`)",
            )),
            (Some(b), None) => (b, false, "baseline"),
            (None, Some(t)) => (t, true, "training_data"),
        };
    if upload.baseline_size.is_some() && !from_training {
        return Err(invalid("`baseline_size` applies to `training_data`"));
    }
    if upload.training_stats.is_some() && from_training {
        return Err(invalid(
            "`training_stats` goes with a `baseline`; with `training_data` the statistics come from its rows",
        ));
    }
    let settings = upload.settings.unwrap_or_default();
    settings.validate()?;
    let features = feature_count(signature)?;
    let (has_header, mut data) = read_numbers(&bytes, what, upload.label_column.as_deref())?;
    let width = data.columns.len();
    if let Some(n) = features {
        if n != width {
            return Err(invalid(format!(
                "{what} has {width} feature columns but the model takes {n}"
            )));
        }
    }
    // Column names: the deploy's feature names (matched by name when the CSV has a header),
    // else the CSV's (its header, or f0, f1, … without one).
    match feature_names {
        Some(names) if has_header => {
            let order: Vec<usize> = names
                .iter()
                .map(|n| {
                    data.columns
                        .iter()
                        .position(|h| h == n)
                        .ok_or_else(|| invalid(format!("{what} has no column '{n}'")))
                })
                .collect::<Result<_, _>>()?;
            for row in &mut data.rows {
                *row = order.iter().map(|&i| row[i]).collect();
            }
            data.columns = names.to_vec();
        }
        Some(names) => {
            if names.len() != width {
                return Err(invalid(format!(
                    "{what} has {width} columns but feature_names has {}",
                    names.len()
                )));
            }
            data.columns = names.to_vec();
        }
        None => {}
    }
    // Missing values are skipped, but every column needs a value: the deviation check takes its
    // statistics, and the HDDM detectors its range.
    data.require_values()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let NumericTable { columns, rows } = data;
    let stats_table = FeatureTable::new(columns.clone(), rows.clone())
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let mut stats = stats_table.stats();
    if let Some(given) = &upload.training_stats {
        stats = given_stats(given, &columns, &stats)?;
    }
    let baseline_rows = if from_training {
        let available = rows.len();
        let n = match upload.baseline_size {
            Some(0) => return Err(invalid("`baseline_size` must be at least 1")),
            Some(n) if n > available => {
                return Err(invalid(format!(
                    "`baseline_size` is {n} but training_data has only {available} rows; \
                     send a baseline_size of at most {available}"
                )))
            }
            Some(n) => n,
            None => DEFAULT_BASELINE_SIZE.min(available),
        };
        let sampled = NumericTable {
            columns: columns.clone(),
            rows: sample(rows, n),
        };
        sampled.require_values().map_err(|e| {
            invalid(format!(
                "the {n} rows sampled from training_data: {e}; send a larger baseline_size"
            ))
        })?;
        sampled.rows
    } else {
        if rows.len() > MAX_BASELINE_ROWS {
            return Err(invalid(format!("a baseline holds at most {MAX_BASELINE_ROWS} rows; send training_data to sample one")));
        }
        rows
    };
    let json = |v: serde_json::Value| v.to_string();
    Ok(Some(DriftRecord {
        columns: json(serde_json::json!(columns)),
        rows: json(serde_json::json!(baseline_rows)),
        stats: serde_json::to_string(&stats)
            .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?,
        source: if from_training {
            "training_data".into()
        } else {
            "baseline".into()
        },
        settings: serde_json::to_string(&settings)
            .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?,
        updated_at: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use maas_serving::{ElementType, TensorSpec};
    use serde_json::json;

    fn signature(features: usize) -> ModelSignature {
        ModelSignature {
            inputs: vec![TensorSpec {
                name: "x".into(),
                element_type: ElementType::Float32,
                shape: vec![Dim::Symbolic("N".into()), Dim::Fixed(features)],
            }],
            outputs: vec![],
        }
    }

    fn upload(csv: &str, training: bool) -> BaselineUpload {
        let bytes = Some(csv.as_bytes().to_vec());
        if training {
            BaselineUpload {
                training_csv: bytes,
                ..BaselineUpload::default()
            }
        } else {
            BaselineUpload {
                baseline_csv: bytes,
                ..BaselineUpload::default()
            }
        }
    }

    #[test]
    fn header_feature_names_and_label_column() {
        let csv = "b,label,a\n1,0,2\n3,1,4\n";
        let mut up = upload(csv, false);
        up.label_column = Some("label".into());
        let names = vec!["a".to_string(), "b".to_string()];
        let record = build_record(up, &signature(2), Some(&names))
            .unwrap()
            .unwrap();
        assert_eq!(record.columns, r#"["a","b"]"#);
        assert_eq!(record.rows, "[[2.0,1.0],[4.0,3.0]]");
        assert_eq!(record.source, "baseline");
    }

    #[test]
    fn training_data_is_sampled_with_a_fixed_seed_and_stats_use_every_row() {
        let csv: String = (0..500).map(|i| format!("{i},{}\n", i * 2)).collect();
        let mut up = upload(&csv, true);
        up.baseline_size = Some(20);
        let a = build_record(up, &signature(2), None).unwrap().unwrap();
        let mut again = upload(&csv, true);
        again.baseline_size = Some(20);
        let b = build_record(again, &signature(2), None).unwrap().unwrap();
        assert_eq!(a.rows, b.rows, "same data, same sample");
        let rows: Vec<Vec<f64>> = serde_json::from_str(&a.rows).unwrap();
        assert_eq!(rows.len(), 20);
        let stats: BTreeMap<String, FeatureStats> = serde_json::from_str(&a.stats).unwrap();
        assert_eq!(stats["f0"].count, 500);
        assert!((stats["f0"].mean - 249.5).abs() < 1e-9);
    }

    #[test]
    fn a_baseline_size_over_the_rows_is_refused_and_the_default_takes_what_there_is() {
        let csv: String = (0..30).map(|i| format!("{i},{}\n", i * 2)).collect();
        let mut up = upload(&csv, true);
        up.baseline_size = Some(31);
        let message = build_record(up, &signature(2), None).unwrap_err().message;
        assert_eq!(
            message,
            "`baseline_size` is 31 but training_data has only 30 rows; send a baseline_size of at most 30"
        );
        let record = build_record(upload(&csv, true), &signature(2), None)
            .unwrap()
            .unwrap();
        let rows: Vec<Vec<f64>> = serde_json::from_str(&record.rows).unwrap();
        assert_eq!(
            rows.len(),
            30,
            "fewer rows than the default of 50: all of them"
        );
    }

    #[test]
    fn training_stats_given_directly_replace_the_baselines_own() {
        let csv = "a,b\n1,10\n3,30\n";
        for given in [
            json!({"a": {"mean": 5.0, "std": 2.0}, "b": {"mean": 50, "std": 0.5}}),
            json!([[5.0, 50], [2.0, 0.5]]),
        ] {
            let mut up = upload(csv, false);
            up.training_stats = Some(given);
            let record = build_record(up, &signature(2), None).unwrap().unwrap();
            let stats: BTreeMap<String, FeatureStats> =
                serde_json::from_str(&record.stats).unwrap();
            assert_eq!(
                (stats["a"].mean, stats["a"].std, stats["a"].count),
                (5.0, 2.0, 0)
            );
            assert_eq!((stats["b"].min, stats["b"].max), (10.0, 30.0));
        }
        let err = |given: Value| {
            let mut up = upload(csv, false);
            up.training_stats = Some(given);
            build_record(up, &signature(2), None).unwrap_err().message
        };
        assert!(err(json!({"a": {"mean": 1, "std": 1}}))
            .contains("no {\"mean\": .., \"std\": ..} for 'b'"));
        assert!(
            err(json!({"a": {"mean": 1, "std": 1}, "b": {"mean": 1, "std": 1}, "c": {}}))
                .contains("names 'c', which is not a feature")
        );
        assert!(
            err(json!({"a": {"mean": 1, "std": 0}, "b": {"mean": 1, "std": 1}}))
                .contains("the std of 'a' must be greater than 0")
        );
        assert!(
            err(json!({"a": {"mean": "x", "std": 1}, "b": {"mean": 1, "std": 1}}))
                .contains("a.mean must be a finite number")
        );
        assert!(err(json!([[1.0], [1.0]])).contains("1 means and 1 stds but the model takes 2"));
        assert!(err(json!("mean")).contains("training_stats must be"));
        let mut with_training = upload(csv, true);
        with_training.training_stats = Some(json!([[1, 1], [1, 1]]));
        assert!(build_record(with_training, &signature(2), None)
            .unwrap_err()
            .message
            .contains("goes with a `baseline`"));
    }

    #[test]
    fn bad_uploads_are_refused_with_reasons() {
        let err = |up: BaselineUpload, features: usize| {
            build_record(up, &signature(features), None)
                .unwrap_err()
                .message
        };
        assert!(err(upload("1,2,3\n", false), 2).contains("3 feature columns"));
        assert!(err(upload("a,b\n", false), 2).contains("no data rows"));
        let text = err(upload("1,2\n3,x\n", false), 2);
        assert!(
            text.contains("baseline: line 2, column 'f1': not a number"),
            "{text}"
        );
        assert!(err(upload("1,2\n3\n", false), 2).contains("columns"));
        let text = err(upload("a,b\n1,\n2,NA\n", false), 2);
        assert_eq!(
            text,
            "baseline: column 'b' has no value: every cell is missing"
        );
        let mut headerless = upload("1,2,0\n", false);
        headerless.label_column = Some("label".into());
        assert!(err(headerless, 2).contains("no header row"));
        let mut both = upload("1,2\n", false);
        both.training_csv = Some(b"1,2\n".to_vec());
        assert!(err(both, 2).contains("not both"));
        let settings_only = BaselineUpload {
            settings: Some(DriftSettings::default()),
            ..BaselineUpload::default()
        };
        assert!(err(settings_only, 2).contains("need a `baseline`"));
    }
}
