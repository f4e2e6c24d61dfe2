//! What the ML integration tests share: a job folder whose tasks run the built-in kinds, and
//! the check that every engine serves an exported model as the Rust model predicts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use maas_scheduler::ml::{run_builtin, Predictions, TaskDir, TaskOutput, TrainedModel};
use maas_scheduler::sandbox::ReadPolicy;
use maas_serving::{BackendChoice, Backends, Dim, OrtSettings, Tensor, TensorData};
use serde_json::{json, Map, Value};

/// Largest relative difference accepted between a served regression value and Rust's.
pub const RELATIVE: f64 = 1e-4;

pub fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("params must be an object, got {other}"),
    }
}

/// A job folder; each task gets its own subfolder, as the runner gives it.
pub struct Job {
    root: tempfile::TempDir,
    pub reads: ReadPolicy,
}

impl Default for Job {
    fn default() -> Job {
        Job::new()
    }
}

impl Job {
    pub fn new() -> Job {
        // These tests read files from anywhere (the read policy has tests of its own).
        Job {
            root: tempfile::tempdir().unwrap(),
            reads: ReadPolicy {
                roots: vec![PathBuf::from("/")],
                ..ReadPolicy::default()
            },
        }
    }

    pub fn folder(&self, task: &str) -> PathBuf {
        let dir = self.root.path().join(task);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub fn dir<'a>(&'a self, path: &'a Path) -> TaskDir<'a> {
        TaskDir {
            path,
            reads: &self.reads,
        }
    }

    pub fn run(&self, task: &str, kind: &str, values: Value) -> TaskOutput {
        run_builtin(kind, &params(values), &self.folder(task), &self.reads)
            .unwrap_or_else(|e| panic!("{task} ({kind}): {e}"))
    }

    pub fn fail(&self, task: &str, kind: &str, values: Value) -> String {
        match run_builtin(kind, &params(values), &self.folder(task), &self.reads) {
            Ok(out) => panic!("{task} ({kind}) should fail, exported {:?}", out.variables),
            Err(e) => e.to_string(),
        }
    }

    /// load_dataset then a seeded split: (TRAIN, TEST, LABEL).
    pub fn split(&self, dataset: &str, stratify: bool) -> (String, String, String) {
        let data = self.run("load", "load_dataset", json!({ "name": dataset }));
        let split = self.run(
            "split",
            "split",
            json!({
                "data": data.variables["DATA"], "label": data.variables["LABEL"],
                "train_size": "0.8", "seed": 7, "stratify": stratify
            }),
        );
        let v = &split.variables;
        (v["TRAIN"].clone(), v["TEST"].clone(), v["LABEL"].clone())
    }
}

/// Feature columns (all but `label`) of a numeric CSV, row-major.
pub fn features(path: &str, label: &str) -> (Vec<String>, Vec<f64>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let keep: Vec<usize> = (0..header.len()).filter(|&i| header[i] != label).collect();
    let mut values = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        for &i in &keep {
            values.push(record[i].parse::<f64>().unwrap());
        }
    }
    (keep.iter().map(|&i| header[i].clone()).collect(), values)
}

pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

pub fn backends() -> &'static Backends {
    static BACKENDS: OnceLock<Backends> = OnceLock::new();
    BACKENDS.get_or_init(|| Backends::new(&OrtSettings::default()))
}

/// tract, and ONNX Runtime on CPU when it loads (said once on stderr when it does not).
pub fn engines() -> Vec<BackendChoice> {
    let mut engines = vec![BackendChoice::Tract];
    match backends().ort_unavailable() {
        None => engines.push(BackendChoice::OrtCpu),
        Some(why) if required("MAAS_REQUIRE_ORT") => {
            panic!("MAAS_REQUIRE_ORT=1 but ONNX Runtime is unavailable: {why}")
        }
        Some(why) => {
            static SAID: OnceLock<()> = OnceLock::new();
            SAID.get_or_init(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: ONNX Runtime checks of exported models, ONNX Runtime is \
                     unavailable: {why}"
                );
            });
        }
    }
    engines
}

/// Serve `rows` (row-major, `f` a row) through one engine; outputs by name.
pub fn serve(engine: BackendChoice, onnx: &[u8], rows: &[f64], f: usize) -> Vec<(String, Tensor)> {
    let loaded = backends()
        .load(engine, onnx)
        .unwrap_or_else(|e| panic!("{engine} cannot load the exported model: {e}"));
    let model = loaded.model;
    let signature = model.signature().clone();
    assert_eq!(signature.inputs.len(), 1);
    let input = &signature.inputs[0];
    assert_eq!(input.name, "input");
    assert_eq!(input.shape, vec![Dim::Symbolic("N".into()), Dim::Fixed(f)]);
    let n = rows.len() / f;
    let x = Tensor::new(
        vec![n, f],
        TensorData::Float32(rows.iter().map(|&v| v as f32).collect()),
    )
    .unwrap();
    let outputs = model
        .infer(vec![x])
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    signature
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .zip(outputs)
        .collect()
}

pub fn output<'a>(outputs: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &outputs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .1
}

pub fn int64s(t: &Tensor) -> Vec<usize> {
    match &t.data {
        TensorData::Int64(v) => v.iter().map(|&i| usize::try_from(i).unwrap()).collect(),
        other => panic!("expected int64, got {:?}", other.element_type()),
    }
}

pub fn float32s(t: &Tensor) -> Vec<f32> {
    match &t.data {
        TensorData::Float32(v) => v.clone(),
        other => panic!("expected float32, got {:?}", other.element_type()),
    }
}

/// Train with `train_params` through run_builtin and through TrainedModel, check both agree,
/// then check every engine serves the Rust model's predictions on `test` (raw features).
pub fn check_served(
    job: &Job,
    task: &str,
    train_params: Value,
    test: &str,
    label: &str,
) -> TaskOutput {
    let out = job.run(task, "train", train_params.clone());
    let model = TrainedModel::fit(&params(train_params), &job.dir(&job.folder(task))).unwrap();
    let bytes = model.to_onnx().unwrap();
    // linfa grows trees with hash-ordered class counts, so two fits of a tree may differ;
    // everything else is reproducible to the byte.
    if !model.algorithm().ends_with("tree") && !model.algorithm().ends_with("forest") {
        let written = std::fs::read(&out.variables["MODEL"]).unwrap();
        assert!(written == bytes, "{task}: training is deterministic");
    }
    let features_json: Vec<String> = serde_json::from_str(&out.variables["FEATURES"]).unwrap();
    assert_eq!(features_json, model.features());

    let (names, rows) = features(test, label);
    assert_eq!(names, model.features());
    let f = names.len();
    let n = rows.len() / f;
    let expected = model.predict(&rows).unwrap();
    for engine in engines() {
        let outputs = serve(engine, &bytes, &rows, f);
        match &expected {
            Predictions::Labels(labels) => {
                assert_eq!(labels.len(), n);
                let served = int64s(output(&outputs, "label"));
                assert_eq!(&served, labels, "{engine}: {task} labels");
                let second = if model.classes().is_empty() {
                    "distances"
                } else {
                    "probabilities"
                };
                let scores = output(&outputs, second);
                assert_eq!(scores.shape[0], n);
                if second == "probabilities" {
                    assert_eq!(scores.shape[1], model.classes().len());
                    for row in float32s(scores).chunks(model.classes().len()) {
                        let sum: f32 = row.iter().sum();
                        assert!(
                            (sum - 1.0).abs() < 1e-4,
                            "{engine}: probabilities sum {sum}"
                        );
                    }
                }
            }
            Predictions::Values(values) => {
                let served = output(&outputs, "variable");
                assert_eq!(served.shape, vec![n, 1]);
                for (s, e) in float32s(served).iter().zip(values) {
                    let relative = (f64::from(*s) - e).abs() / e.abs().max(1e-12);
                    assert!(relative <= RELATIVE, "{engine}: served {s}, Rust {e}");
                }
            }
        }
    }
    out
}
