//! Drift detectors: elements per second over 1,000,000 elements, and the drift cost inside a
//! 100-row, 10-feature predict. River's numbers come from `benches/river_bench.py` (same streams).
//!
//! `cargo bench -p maas-benches --bench drift`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use maas_drift::{drift_report, DetectorConfig, DriftDetector, FeatureTable, ReportOptions};

const N: usize = 1_000_000;

/// The stream river_bench.py builds: uniform noise in [0, 1) from a 64-bit LCG, whose mean moves
/// from 0.3 to 0.7 halfway (values stay in [0, 1] so every detector sees the same data).
pub fn stream(n: usize) -> Vec<f64> {
    let mut state: u64 = 42;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let mean = if i < n / 2 { 0.3 } else { 0.7 };
            (mean + (u - 0.5) * 0.4).clamp(0.0, 1.0)
        })
        .collect()
}

fn detectors(c: &mut Criterion) {
    let data = stream(N);
    let mut group = c.benchmark_group("detector_1m");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    for name in DetectorConfig::NAMES {
        let config = DetectorConfig::from_params(name, Vec::<(&str, &str)>::new())
            .unwrap_or_else(|e| panic!("{e}"));
        group.bench_function(name, |b| {
            b.iter_batched(
                || config.build().unwrap_or_else(|e| panic!("{e}")),
                |mut detector| {
                    let mut drifts = 0u32;
                    for &x in &data {
                        drifts += u32::from(detector.update(x).drift);
                    }
                    drifts
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn predict_cost(c: &mut Criterion) {
    let columns: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let values = stream(150 * 10);
    let rows = |from: usize, n: usize| {
        values[from * 10..(from + n) * 10]
            .chunks(10)
            .map(<[f64]>::to_vec)
            .collect()
    };
    let baseline =
        FeatureTable::new(columns.clone(), rows(0, 50)).unwrap_or_else(|e| panic!("{e}"));
    let new = FeatureTable::new(columns, rows(50, 100)).unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("predict_100x10");
    // Throughput in new rows: the report also replays the 50 baseline rows.
    group.throughput(Throughput::Elements(100));
    for name in ["hddm_a", "adwin"] {
        let options = ReportOptions {
            detector: DetectorConfig::from_params(name, Vec::<(&str, &str)>::new())
                .unwrap_or_else(|e| panic!("{e}")),
            ..ReportOptions::default()
        };
        group.bench_function(name, |b| b.iter(|| drift_report(&baseline, &new, &options)));
    }
    group.finish();
}

criterion_group!(benches, detectors, predict_cost);
criterion_main!(benches);
