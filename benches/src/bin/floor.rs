//! The floor for the HTTP benchmarks: the least a Rust server can do per single-row iris request.
//!
//! A bare actix-web program that parses the same JSON bodies maas takes (v1 `instances` and the
//! Open Inference Protocol's JSON tensors), computes the same logistic regression as the
//! `iris_logreg.onnx` fixture (its coefficients, softmax, argmax) and answers in the same shapes.
//! No auth, no metrics, no request ids, no queue: what is left is actix-web, serde and the
//! arithmetic, so `maas / floor` is what maas's own machinery costs. See benches/README.md.
//!
//!     cargo build --release -p maas-benches --bin floor
//!     target/release/floor 127.0.0.1:18090 [workers]

use actix_web::{web, App, HttpServer};
use serde::{Deserialize, Serialize};

/// `iris_logreg.onnx`'s `LinearClassifier` (the float32 values as the ONNX file prints them) (row-major, one row of 4 per class) and intercepts.
#[allow(clippy::excessive_precision)]
const COEFFICIENTS: [[f32; 4]; 3] = [
    [-0.423_596_6, 0.969_559_55, -2.517_173_3, -1.076_267],
    [0.539_025_4, -0.319_598_8, -0.207_208_25, -0.943_755_2],
    [-0.115_412_265, -0.649_959_7, 2.724_383_1, 2.020_023_3],
];
const INTERCEPTS: [f32; 3] = [9.839_426, 2.205_959_4, -12.045_38];

/// Label and class probabilities of one row: linear scores, softmax (the graph's L1 normalizer
/// after it changes nothing), argmax.
fn classify(row: &[f32]) -> (i64, [f32; 3]) {
    let mut scores = [0f32; 3];
    for (class, score) in scores.iter_mut().enumerate() {
        *score = INTERCEPTS[class]
            + COEFFICIENTS[class]
                .iter()
                .zip(row)
                .map(|(c, x)| c * x)
                .sum::<f32>();
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for score in &mut scores {
        *score = (*score - max).exp();
        total += *score;
    }
    for score in &mut scores {
        *score /= total;
    }
    let mut label = 0;
    for class in 1..3 {
        if scores[class] > scores[label] {
            label = class;
        }
    }
    (label as i64, scores)
}

#[derive(Deserialize)]
struct PredictRequest {
    instances: Vec<Vec<f32>>,
}

#[derive(Serialize)]
struct PredictResponse {
    model: &'static str,
    version: u64,
    predictions: Vec<i64>,
    probabilities: Vec<[f32; 3]>,
}

async fn predict(body: web::Json<PredictRequest>) -> web::Json<PredictResponse> {
    let mut predictions = Vec::with_capacity(body.instances.len());
    let mut probabilities = Vec::with_capacity(body.instances.len());
    for row in &body.instances {
        let (label, p) = classify(row);
        predictions.push(label);
        probabilities.push(p);
    }
    web::Json(PredictResponse {
        model: "iris",
        version: 1,
        predictions,
        probabilities,
    })
}

#[derive(Deserialize)]
struct InferRequest {
    inputs: Vec<InferInput>,
}

#[derive(Deserialize)]
struct InferInput {
    #[allow(dead_code)]
    name: String,
    shape: Vec<usize>,
    #[allow(dead_code)]
    datatype: String,
    data: Vec<f32>,
}

#[derive(Serialize)]
struct InferResponse {
    model_name: &'static str,
    model_version: &'static str,
    outputs: Vec<InferOutput>,
}

#[derive(Serialize)]
struct InferOutput {
    name: &'static str,
    shape: Vec<usize>,
    datatype: &'static str,
    data: OutputData,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutputData {
    Labels(Vec<i64>),
    Probabilities(Vec<f32>),
}

async fn infer(
    body: web::Json<InferRequest>,
) -> Result<web::Json<InferResponse>, actix_web::Error> {
    let Some(input) = body.inputs.first() else {
        return Err(actix_web::error::ErrorBadRequest("no input"));
    };
    let rows = input.shape.first().copied().unwrap_or(0);
    if input.shape.len() != 2 || input.shape[1] != 4 || input.data.len() != rows * 4 {
        return Err(actix_web::error::ErrorBadRequest("shape"));
    }
    let mut labels = Vec::with_capacity(rows);
    let mut probabilities = Vec::with_capacity(rows * 3);
    for row in input.data.chunks_exact(4) {
        let (label, p) = classify(row);
        labels.push(label);
        probabilities.extend_from_slice(&p);
    }
    Ok(web::Json(InferResponse {
        model_name: "iris",
        model_version: "1",
        outputs: vec![
            InferOutput {
                name: "label",
                shape: vec![rows],
                datatype: "INT64",
                data: OutputData::Labels(labels),
            },
            InferOutput {
                name: "probabilities",
                shape: vec![rows, 3],
                datatype: "FP32",
                data: OutputData::Probabilities(probabilities),
            },
        ],
    }))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    // maas's default: one HTTP worker per core.
    let workers = args
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    actix_web::rt::System::new().block_on(
        HttpServer::new(|| {
            App::new()
                .route("/v1/models/iris/predict", web::post().to(predict))
                .route("/v2/models/iris/infer", web::post().to(infer))
        })
        .workers(workers)
        .bind(bind)?
        .run(),
    )
}
