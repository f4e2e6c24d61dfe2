//! What saving a predict costs the request that asks for it: building the log record from the
//! request and the answer, and one insert into the prediction log's bounded queue (the writer
//! task and the store are off the request path; here a thread drains the queue instead).
//!
//! `cargo bench -p maas-gateway --bench prediction_log`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use maas_gateway::services::metrics::Metrics;
use maas_gateway::services::predictions::{Pending, PredictionLog};
use serde_json::json;

fn record(rows: usize) -> Pending {
    let instances: Vec<_> = (0..rows).map(|_| json!([5.1, 3.5, 1.4, 0.2])).collect();
    let predictions: Vec<_> = (0..rows).map(|_| json!("setosa")).collect();
    let probabilities: Vec<_> = (0..rows).map(|_| json!([0.97, 0.02, 0.01])).collect();
    Pending {
        model: "iris".into(),
        version: 1,
        at_us: 0,
        actor: "admin".into(),
        request_id: "0123456789abcdef0123456789abcdef".into(),
        latency_us: 100,
        inputs: json!({"instances": instances, "records": null, "shape": null}),
        outputs: json!({"predictions": predictions, "probabilities": probabilities, "outputs": {}}),
        drift: None,
    }
}

fn bench(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::new().unwrap());
    let (log, mut records) = PredictionLog::detached(1 << 16, metrics);
    std::thread::spawn(move || while records.blocking_recv().is_some() {});
    let mut group = c.benchmark_group("prediction_log");
    group.bench_function("queue_insert", |b| {
        b.iter_batched(
            || record(1),
            |r| log.log(r),
            criterion::BatchSize::SmallInput,
        )
    });
    for rows in [1, 100] {
        group.bench_function(format!("build_and_insert/{rows}"), |b| {
            b.iter(|| log.log(record(rows)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
