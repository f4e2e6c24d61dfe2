//! Backend conformance: every fixture model, run through every engine this process has (tract
//! always; ONNX Runtime on CPU when its library loads; on CUDA when the CUDA execution provider
//! works), answers what onnxruntime answered when the fixtures were made
//! (tests/fixtures/expected.json), within an absolute 1e-4 on every float output and exactly on
//! integer outputs. Signatures (input and output names, element types, shapes with their
//! dimension names) must be identical across engines.
//!
//! ONNX Runtime comes from `ORT_DYLIB_PATH` (the crate built with `--features ort`). Without it
//! the ONNX Runtime part prints `SKIPPED: ...` to stderr, unless `MAAS_REQUIRE_ORT=1` makes that
//! a failure; `MAAS_REQUIRE_CUDA=1` does the same for CUDA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use maas_serving::{
    BackendChoice, BackendKind, Backends, Dim, ElementType, GraphOptimization, LoadedModel,
    ModelSignature, OrtSettings, ServingError, Tensor, TensorData,
};
use serde_json::Value;

/// Largest absolute difference accepted between a backend's float output and the reference.
const TOLERANCE: f64 = 1e-4;

/// Fixture name, and the shape of one instance (the batch axis comes first).
const FIXTURES: [(&str, &[usize]); 5] = [
    ("iris_logreg", &[4]),
    ("iris_logreg_v2", &[4]),
    ("iris_rf", &[4]),
    ("house_linreg", &[3]),
    ("cnn_mnist", &[1, 28, 28]),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(format!("{name}.onnx"))).unwrap()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// The process's engines, probed once with the default settings (ORT_DYLIB_PATH).
fn backends() -> &'static Backends {
    static BACKENDS: OnceLock<Backends> = OnceLock::new();
    BACKENDS.get_or_init(|| Backends::new(&OrtSettings::default()))
}

/// Every engine this process can run, tract first; what is missing is reported once (or, when
/// required, fails the test).
fn engines() -> Vec<BackendChoice> {
    let backends = backends();
    let mut engines = vec![BackendChoice::Tract];
    match backends.ort_unavailable() {
        None => engines.push(BackendChoice::OrtCpu),
        Some(why) if required("MAAS_REQUIRE_ORT") => {
            panic!("MAAS_REQUIRE_ORT=1 but ONNX Runtime is unavailable: {why}")
        }
        Some(why) => skipped(format!(
            "ort-cpu and ort-cuda conformance, ONNX Runtime is unavailable: {why}"
        )),
    }
    match backends.cuda_unavailable() {
        None => engines.push(BackendChoice::OrtCuda),
        Some(why) if required("MAAS_REQUIRE_CUDA") => {
            panic!("MAAS_REQUIRE_CUDA=1 but CUDA is unavailable: {why}")
        }
        Some(_) if backends.ort_unavailable().is_some() => {}
        Some(why) => skipped(format!("ort-cuda conformance, CUDA is unavailable: {why}")),
    }
    engines
}

/// Says once, on the real stderr (the test harness captures `eprintln!`), what was not tested.
fn skipped(what: String) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap();
    if !said.contains(&what) {
        let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
        said.push(what);
    }
}

fn load(choice: BackendChoice, bytes: &[u8]) -> std::sync::Arc<dyn LoadedModel> {
    load_with(backends(), choice, bytes)
}

fn load_with(
    backends: &Backends,
    choice: BackendChoice,
    bytes: &[u8],
) -> std::sync::Arc<dyn LoadedModel> {
    let loaded = backends
        .load(choice, bytes)
        .unwrap_or_else(|e| panic!("{choice}: {e}"));
    let kind = match choice {
        BackendChoice::Tract => BackendKind::Tract,
        BackendChoice::OrtCpu => BackendKind::OrtCpu,
        BackendChoice::OrtCuda => BackendKind::OrtCuda,
        BackendChoice::Auto => unreachable!("tests name their engine"),
    };
    assert_eq!(loaded.backend, kind);
    assert_eq!(
        loaded.note, None,
        "{choice}: an explicit choice never falls back"
    );
    loaded.model
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn run_case(
    backends: &Backends,
    choice: BackendChoice,
    name: &str,
    case: &Value,
    instance_shape: &[usize],
) {
    let model = load_with(backends, choice, &fixture(name));
    let inputs = case["inputs"].as_array().unwrap();
    let data: Vec<f32> = inputs.iter().flat_map(floats).map(|x| x as f32).collect();
    let mut shape = vec![inputs.len()];
    shape.extend_from_slice(instance_shape);
    let outputs = model
        .infer(vec![Tensor::new(shape, TensorData::Float32(data)).unwrap()])
        .unwrap();
    let signature = model.signature();
    assert_eq!(outputs.len(), signature.outputs.len());
    for (spec, tensor) in signature.outputs.iter().zip(&outputs) {
        let want = &case["outputs"][&spec.name];
        assert!(
            !want.is_null(),
            "{choice}/{name}: no reference for output {}",
            spec.name
        );
        assert_eq!(tensor.data.element_type(), spec.element_type);
        assert_eq!(tensor.shape[0], inputs.len(), "{choice}/{name}: batch axis");
        let (got, exact): (Vec<f64>, bool) = match &tensor.data {
            TensorData::Float32(v) => (v.iter().map(|x| f64::from(*x)).collect(), false),
            TensorData::Int64(v) => (v.iter().map(|x| *x as f64).collect(), true),
            other => panic!("{choice}/{name}: unexpected output type {other:?}"),
        };
        let want = floats(want);
        assert_eq!(
            got.len(),
            want.len(),
            "{choice}/{name}/{}: length",
            spec.name
        );
        let tolerance = if exact { 0.0 } else { TOLERANCE };
        for (ix, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tolerance,
                "{choice}/{name}/{}[{ix}]: got {g}, want {w}",
                spec.name
            );
        }
    }
}

#[test]
fn every_backend_matches_onnxruntime_on_every_fixture() {
    let expected = expected();
    for choice in engines() {
        for (name, instance) in FIXTURES {
            run_case(backends(), choice, name, &expected[name], instance);
        }
    }
}

#[test]
fn onnx_runtime_answers_the_same_under_every_session_setting() {
    if !engines().contains(&BackendChoice::OrtCpu) {
        return;
    }
    let expected = expected();
    for graph_optimization_level in [
        GraphOptimization::Disable,
        GraphOptimization::Basic,
        GraphOptimization::Extended,
        GraphOptimization::All,
    ] {
        let backends = Backends::new(&OrtSettings {
            intra_op_threads: 1,
            inter_op_threads: 2,
            graph_optimization_level,
            ..OrtSettings::default()
        });
        assert_eq!(backends.ort_unavailable(), None);
        for (name, instance) in FIXTURES {
            run_case(
                &backends,
                BackendChoice::OrtCpu,
                name,
                &expected[name],
                instance,
            );
        }
    }
}

#[test]
fn every_backend_shows_the_same_signature() {
    let engines = engines();
    for (name, _) in FIXTURES {
        let bytes = fixture(name);
        let tract: ModelSignature = load(BackendChoice::Tract, &bytes).signature().clone();
        for output in &tract.outputs {
            assert!(output.has_dynamic_batch(), "{name}/{}", output.name);
        }
        for &choice in &engines[1..] {
            let other = load(choice, &bytes).signature().clone();
            assert_eq!(other, tract, "{name}: {choice} and tract disagree");
        }
    }
}

#[test]
fn signatures_show_the_symbolic_batch() {
    for choice in engines() {
        let model = load(choice, &fixture("iris_logreg"));
        let sig = model.signature();
        assert_eq!(sig.inputs.len(), 1);
        assert_eq!(sig.inputs[0].name, "float_input");
        assert_eq!(sig.inputs[0].element_type, ElementType::Float32);
        assert_eq!(
            sig.inputs[0].shape,
            vec![Dim::Symbolic("N".into()), Dim::Fixed(4)]
        );
        let names: Vec<&str> = sig.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["label", "probabilities"], "{choice}");
        assert_eq!(sig.outputs[0].element_type, ElementType::Int64);
        assert_eq!(sig.outputs[0].shape, vec![Dim::Symbolic("N".into())]);
        assert_eq!(sig.outputs[1].shape[1], Dim::Fixed(3));
    }
}

#[test]
fn garbage_and_truncated_files_are_refused_cleanly() {
    let bytes = fixture("cnn_mnist");
    for choice in engines() {
        for garbage in [&b""[..], b"definitely not a protobuf \xff\xfe"] {
            let err = backends().load(choice, garbage).unwrap_err();
            assert!(
                matches!(err, ServingError::InvalidModel(_)),
                "{choice}: {err}"
            );
        }
        for cut in [10, bytes.len() / 3, bytes.len() - 7] {
            let err = backends().load(choice, &bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, ServingError::InvalidModel(_)),
                "{choice}: truncated at {cut}: {err}"
            );
        }
    }
}

#[test]
fn an_unknown_operator_is_an_invalid_model() {
    // The same bytes with one op type renamed (same length, so the protobuf stays valid).
    let bytes = fixture("cnn_mnist");
    let at = bytes.windows(7).position(|w| w == b"Softmax").unwrap();
    let mut renamed = bytes.clone();
    renamed[at..at + 7].copy_from_slice(b"Softmix");
    for choice in engines() {
        let err = backends().load(choice, &renamed).unwrap_err();
        assert!(
            matches!(err, ServingError::InvalidModel(_)),
            "{choice}: {err}"
        );
    }
}

#[test]
fn a_wrong_input_type_or_count_is_invalid_input() {
    for choice in engines() {
        let model = load(choice, &fixture("iris_logreg"));
        let doubles = Tensor::new(vec![1, 4], TensorData::Float64(vec![0.5; 4])).unwrap();
        let err = model.infer(vec![doubles]).unwrap_err();
        assert!(
            matches!(&err, ServingError::InvalidInput(m) if m.contains("float32")),
            "{choice}: {err}"
        );
        let err = model.infer(vec![]).unwrap_err();
        assert!(
            matches!(err, ServingError::InvalidInput(_)),
            "{choice}: {err}"
        );
    }
}

#[test]
fn a_batch_answers_what_single_rows_answer() {
    let rows: Vec<[f32; 4]> = vec![
        [5.1, 3.5, 1.4, 0.2],
        [6.7, 3.0, 5.2, 2.3],
        [5.9, 3.0, 4.2, 1.5],
    ];
    for choice in engines() {
        let model = load(choice, &fixture("iris_rf"));
        let batch = Tensor::new(vec![3, 4], TensorData::Float32(rows.concat())).unwrap();
        let together = model.infer(vec![batch]).unwrap();
        let TensorData::Int64(all) = &together[0].data else {
            panic!()
        };
        for (ix, row) in rows.iter().enumerate() {
            let one = model
                .infer(vec![Tensor::new(
                    vec![1, 4],
                    TensorData::Float32(row.to_vec()),
                )
                .unwrap()])
                .unwrap();
            let TensorData::Int64(single) = &one[0].data else {
                panic!()
            };
            assert_eq!(all[ix], single[0], "{choice}: row {ix}");
        }
    }
}

#[test]
fn one_loaded_model_answers_from_several_threads() {
    for choice in engines() {
        let model = load(choice, &fixture("iris_logreg"));
        let reference = model
            .infer(vec![Tensor::new(
                vec![1, 4],
                TensorData::Float32(vec![5.1, 3.5, 1.4, 0.2]),
            )
            .unwrap()])
            .unwrap();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let got = model
                            .infer(vec![Tensor::new(
                                vec![1, 4],
                                TensorData::Float32(vec![5.1, 3.5, 1.4, 0.2]),
                            )
                            .unwrap()])
                            .unwrap();
                        assert_eq!(got, reference, "{choice}");
                    }
                });
            }
        });
    }
}

// Choosing an engine. A library path that does not exist never touches the process's ONNX
// Runtime (nor does a second path once one library is loaded), so these hold whichever tests
// run first.

fn missing_library() -> OrtSettings {
    OrtSettings {
        dylib_path: Some("/nonexistent/maas-test/libonnxruntime.so.1.31.1".into()),
        ..OrtSettings::default()
    }
}

#[test]
fn a_bad_library_path_is_reported_with_the_path() {
    let backends = Backends::new(&missing_library());
    let why = backends
        .ort_unavailable()
        .expect("a missing library loaded");
    if cfg!(feature = "ort") {
        assert!(
            why.contains("/nonexistent/maas-test/libonnxruntime.so.1.31.1"),
            "{why}"
        );
    }
    assert!(!backends.cuda_available());
}

#[test]
fn auto_without_onnx_runtime_is_tract_and_says_why() {
    let loaded = Backends::new(&missing_library())
        .load(BackendChoice::Auto, &fixture("iris_logreg"))
        .unwrap();
    assert_eq!(loaded.backend, BackendKind::Tract);
    assert_eq!(loaded.execution_provider, "cpu");
    let note = loaded.note.expect("a fallback says why");
    assert!(note.starts_with("ONNX Runtime unavailable: "), "{note}");
    assert!(note.ends_with("; using tract"), "{note}");
}

#[test]
fn explicit_onnx_runtime_without_it_is_backend_unavailable() {
    let backends = Backends::new(&missing_library());
    for choice in [BackendChoice::OrtCpu, BackendChoice::OrtCuda] {
        let err = backends.load(choice, &fixture("iris_logreg")).unwrap_err();
        let ServingError::BackendUnavailable(why) = &err else {
            panic!("{choice}: {err:?}")
        };
        assert!(why.contains(choice.as_str()), "{why}");
        if cfg!(feature = "ort") {
            assert!(why.contains("/nonexistent/maas-test/"), "{why}");
        }
    }
    let err = backends.load(BackendChoice::OrtCuda, b"").unwrap_err();
    assert!(err.to_string().contains("CUDA"), "{err}");
}

#[test]
fn explicit_cuda_without_cuda_is_backend_unavailable() {
    let backends = backends();
    if backends.cuda_available() {
        skipped("explicit_cuda_without_cuda, this machine has CUDA".into());
        return;
    }
    let err = backends
        .load(BackendChoice::OrtCuda, &fixture("iris_logreg"))
        .unwrap_err();
    let ServingError::BackendUnavailable(why) = &err else {
        panic!("{err:?}")
    };
    assert!(why.contains("CUDA"), "{why}");
}

#[test]
fn auto_takes_the_best_engine_available() {
    let backends = backends();
    let loaded = backends
        .load(BackendChoice::Auto, &fixture("iris_logreg"))
        .unwrap();
    match (backends.ort_unavailable(), backends.cuda_unavailable()) {
        (Some(_), _) => assert_eq!(loaded.backend, BackendKind::Tract),
        (None, Some(why)) => {
            assert_eq!(loaded.backend, BackendKind::OrtCpu);
            assert_eq!(loaded.execution_provider, "cpu");
            assert_eq!(
                loaded.note.as_deref(),
                Some(format!("CUDA unavailable: {why}; using ort-cpu").as_str())
            );
        }
        (None, None) => {
            assert_eq!(loaded.backend, BackendKind::OrtCuda);
            assert_eq!(loaded.execution_provider, "cuda:0");
            assert_eq!(loaded.note, None);
        }
    }
}
