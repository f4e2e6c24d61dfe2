//! In-process inference: the ceiling that every HTTP route is measured against.
//!
//! `cargo bench -p maas-benches --bench predict`

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use maas_serving::{Backend, Tensor, TensorData, TractBackend};
use serde_json::json;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bench_models(c: &mut Criterion) {
    let mut group = c.benchmark_group("tract");
    for (name, file, instance, batch) in [
        ("iris_logreg/1", "iris_logreg.onnx", vec![4], 1),
        ("iris_rf/1", "iris_rf.onnx", vec![4], 1),
        ("iris_logreg/100", "iris_logreg.onnx", vec![4], 100),
        ("cnn_mnist/1", "cnn_mnist.onnx", vec![1, 28, 28], 1),
        ("cnn_mnist/32", "cnn_mnist.onnx", vec![1, 28, 28], 32),
    ] {
        let model = TractBackend
            .load(&fixture(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut shape = vec![batch];
        shape.extend(instance);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.5).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    vec![
                        Tensor::new(shape.clone(), TensorData::Float32(data.clone()))
                            .unwrap_or_else(|e| panic!("{e}")),
                    ]
                },
                |inputs| model.infer(inputs),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_json_to_tensor(c: &mut Criterion) {
    let model = TractBackend
        .load(&fixture("iris_logreg.onnx"))
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = &model.signature().inputs[0];
    let one = json!([[5.1, 3.5, 1.4, 0.2]]);
    let hundred = serde_json::Value::Array((0..100).map(|_| json!([5.1, 3.5, 1.4, 0.2])).collect());
    let mut group = c.benchmark_group("json_to_tensor");
    group.bench_function("iris/1", |b| {
        b.iter(|| maas_serving::io::instances_tensor(spec, &one, None))
    });
    group.bench_function("iris/100", |b| {
        b.iter(|| maas_serving::io::instances_tensor(spec, &hundred, None))
    });
    group.finish();
}

criterion_group!(benches, bench_models, bench_json_to_tensor);
criterion_main!(benches);
