//! Backend conformance: every fixture model, run through each backend, answers what
//! onnxruntime answered when the fixtures were made (tests/fixtures/expected.json).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use maas_serving::{Backend, Dim, ElementType, Tensor, TensorData, TractBackend};
use serde_json::Value;

/// Largest absolute difference accepted between a backend's float output and the reference.
const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn backends() -> Vec<Box<dyn Backend>> {
    vec![Box::new(TractBackend)]
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn run_case(backend: &dyn Backend, name: &str, case: &Value, instance_shape: &[usize]) {
    let bytes = std::fs::read(fixtures().join(format!("{name}.onnx"))).unwrap();
    let model = backend
        .load(&bytes)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs = case["inputs"].as_array().unwrap();
    let data: Vec<f32> = inputs.iter().flat_map(floats).map(|x| x as f32).collect();
    let mut shape = vec![inputs.len()];
    shape.extend_from_slice(instance_shape);
    let outputs = model
        .infer(vec![Tensor::new(shape, TensorData::Float32(data)).unwrap()])
        .unwrap();
    let signature = model.signature();
    for (spec, tensor) in signature.outputs.iter().zip(&outputs) {
        let want = &case["outputs"][&spec.name];
        assert!(
            !want.is_null(),
            "{name}: no reference for output {}",
            spec.name
        );
        let got: Vec<f64> = match &tensor.data {
            TensorData::Float32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::Int64(v) => v.iter().map(|x| *x as f64).collect(),
            other => panic!("{name}: unexpected output type {other:?}"),
        };
        let want = floats(want);
        assert_eq!(got.len(), want.len(), "{name}/{}: length", spec.name);
        for (ix, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= TOLERANCE,
                "{name}/{}[{ix}]: got {g}, want {w}",
                spec.name
            );
        }
    }
}

#[test]
fn every_backend_matches_onnxruntime_on_every_fixture() {
    let expected = expected();
    for backend in backends() {
        run_case(&*backend, "iris_logreg", &expected["iris_logreg"], &[4]);
        run_case(
            &*backend,
            "iris_logreg_v2",
            &expected["iris_logreg_v2"],
            &[4],
        );
        run_case(&*backend, "iris_rf", &expected["iris_rf"], &[4]);
        run_case(&*backend, "house_linreg", &expected["house_linreg"], &[3]);
        run_case(&*backend, "cnn_mnist", &expected["cnn_mnist"], &[1, 28, 28]);
    }
}

#[test]
fn signatures_show_the_symbolic_batch() {
    let bytes = std::fs::read(fixtures().join("iris_logreg.onnx")).unwrap();
    let model = TractBackend.load(&bytes).unwrap();
    let sig = model.signature();
    assert_eq!(sig.inputs.len(), 1);
    assert_eq!(sig.inputs[0].name, "float_input");
    assert_eq!(sig.inputs[0].element_type, ElementType::Float32);
    assert_eq!(
        sig.inputs[0].shape,
        vec![Dim::Symbolic("N".into()), Dim::Fixed(4)]
    );
    let names: Vec<&str> = sig.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label", "probabilities"]);
    assert_eq!(sig.outputs[0].element_type, ElementType::Int64);
    assert_eq!(sig.outputs[1].shape[1], Dim::Fixed(3));
}

#[test]
fn garbage_and_truncated_files_are_refused_cleanly() {
    assert!(TractBackend.load(b"").is_err());
    assert!(TractBackend
        .load(b"definitely not a protobuf \xff\xfe")
        .is_err());
    let bytes = std::fs::read(fixtures().join("cnn_mnist.onnx")).unwrap();
    for cut in [10, bytes.len() / 3, bytes.len() - 7] {
        assert!(
            TractBackend.load(&bytes[..cut]).is_err(),
            "truncated at {cut} loaded"
        );
    }
}

#[test]
fn a_batch_answers_what_single_rows_answer() {
    let bytes = std::fs::read(fixtures().join("iris_rf.onnx")).unwrap();
    let model = TractBackend.load(&bytes).unwrap();
    let rows: Vec<[f32; 4]> = vec![
        [5.1, 3.5, 1.4, 0.2],
        [6.7, 3.0, 5.2, 2.3],
        [5.9, 3.0, 4.2, 1.5],
    ];
    let batch = Tensor::new(vec![3, 4], TensorData::Float32(rows.concat())).unwrap();
    let together = model.infer(vec![batch]).unwrap();
    for (ix, row) in rows.iter().enumerate() {
        let one = model
            .infer(vec![Tensor::new(
                vec![1, 4],
                TensorData::Float32(row.to_vec()),
            )
            .unwrap()])
            .unwrap();
        let TensorData::Int64(all) = &together[0].data else {
            panic!()
        };
        let TensorData::Int64(single) = &one[0].data else {
            panic!()
        };
        assert_eq!(all[ix], single[0]);
    }
}
