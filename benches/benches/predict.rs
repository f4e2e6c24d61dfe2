//! In-process inference: the ceiling that every HTTP route is measured against, per engine
//! (tract; ONNX Runtime on CPU with its default threads and with one intra-op thread).
//!
//! `ORT_DYLIB_PATH=.../libonnxruntime.so.1.31.x cargo bench -p maas-benches --bench predict`
//! (without ORT_DYLIB_PATH the ONNX Runtime benches are skipped with a notice)

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use maas_serving::{
    Backend, BackendChoice, Backends, OrtSettings, Tensor, TensorData, TractBackend,
};
use serde_json::json;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bench_models(c: &mut Criterion) {
    let ort_one_thread = OrtSettings {
        intra_op_threads: 1,
        ..OrtSettings::default()
    };
    let mut engines = vec![(
        "tract",
        Backends::new(&OrtSettings::default()),
        BackendChoice::Tract,
    )];
    let ort = Backends::new(&OrtSettings::default());
    match ort.ort_unavailable() {
        None => {
            engines.push(("ort-cpu", ort, BackendChoice::OrtCpu));
            engines.push((
                "ort-cpu-1thread",
                Backends::new(&ort_one_thread),
                BackendChoice::OrtCpu,
            ));
        }
        Some(why) => println!("SKIPPED: ort-cpu benches, ONNX Runtime is unavailable: {why}"),
    }
    for (group_name, backends, choice) in &engines {
        let mut group = c.benchmark_group(*group_name);
        for (name, file, instance, batch) in [
            ("iris_logreg/1", "iris_logreg.onnx", vec![4], 1),
            ("iris_rf/1", "iris_rf.onnx", vec![4], 1),
            ("iris_logreg/100", "iris_logreg.onnx", vec![4], 100),
            ("cnn_mnist/1", "cnn_mnist.onnx", vec![1, 28, 28], 1),
            ("cnn_mnist/32", "cnn_mnist.onnx", vec![1, 28, 28], 32),
        ] {
            let model = backends
                .load(*choice, &fixture(file))
                .unwrap_or_else(|e| panic!("{group_name}/{file}: {e}"))
                .model;
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
