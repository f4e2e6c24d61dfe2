//! The fuzz targets: one function per parser that reads untrusted input, each calling the code
//! the server itself runs on that input. The cargo-fuzz crate (`fuzz/`) and the stable replay
//! test (`tests/fuzz_corpora.rs`) both call these, so a corpus replays on stable exactly as it
//! was fuzzed.
//!
//! Every function takes any bytes and must return without panicking or aborting: errors are the
//! expected answer to bad input, a panic is a bug. See `fuzz/README.md`.

use std::sync::OnceLock;

use actix_web::web::Bytes;
use futures_util::StreamExt;
use maas_serving::{
    io, Backend, Dim, ElementType, ModelSignature, Tensor, TensorSpec, TractBackend,
};
use serde_json::{Map, Value};

use crate::http::api::PredictRequest;
use crate::http::routes::v2::{parse_request, InferInput, InferRequest, BINARY_HEADER};
use crate::services::auth::jwt::{AuthSettings, JwtKeys};
use crate::services::baseline::{build_record, BaselineUpload};
use crate::services::error::{ErrorKind, ServiceError};
use crate::services::open_inference::bind_inputs;

/// An ONNX upload: read its signature and load it with tract, as a deploy does.
pub fn onnx(data: &[u8]) {
    let _ = TractBackend.load(data);
}

/// A drift CSV, as a deploy's `baseline` or `training_data` field, against a model whose feature
/// count is free (any width fits) and one that names its features.
pub fn csv(data: &[u8]) {
    let free = signature(vec![spec("x", ElementType::Float32, &[None, None])]);
    let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    for (training, label) in [(false, None), (true, Some("label"))] {
        let upload = || BaselineUpload {
            baseline_csv: (!training).then(|| data.to_vec()),
            training_csv: training.then(|| data.to_vec()),
            label_column: label.map(String::from),
            ..BaselineUpload::default()
        };
        let _ = build_record(upload(), &free, None);
        let _ = build_record(upload(), &free, Some(&names));
    }
}

/// A JSON predict body: v1 (`instances` with an optional `shape`, or `records`) and the Open
/// Inference Protocol's JSON (`inputs` with `data`), against models of each element type.
pub fn json_tensor(data: &[u8]) {
    if let Ok(body) = crate::http::json::from_slice::<PredictRequest>(data) {
        v1_tensors(&body);
    }
    // Valid header names and values: building the request cannot fail.
    let request = actix_web::test::TestRequest::post()
        .insert_header(("content-type", "application/json"))
        .to_http_request();
    if let Ok((infer, binary)) = parse_request(&request, data) {
        v2_tensors(&infer, &binary);
    }
}

/// An Open Inference Protocol body with the binary tensor extension. The first two bytes (little
/// endian) are the `Inference-Header-Content-Length`, the rest is the body: that many bytes of
/// JSON, then the raw tensor data.
pub fn v2_binary(data: &[u8]) {
    let Some((length, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let length = u16::from_le_bytes(*length);
    let request = actix_web::test::TestRequest::post()
        .insert_header(("content-type", "application/octet-stream"))
        .insert_header((BINARY_HEADER, length.to_string()))
        .to_http_request();
    if let Ok((infer, binary)) = parse_request(&request, body) {
        v2_tensors(&infer, &binary);
    }
}

/// The boundary of [`multipart`]'s form bodies.
pub const MULTIPART_BOUNDARY: &str = "maas-fuzz-boundary";

/// A `multipart/form-data` body (boundary [`MULTIPART_BOUNDARY`]) read as the deploy route reads
/// its form: every field's name, file name and bytes to the end, fed in small chunks so that
/// boundaries fall across them.
///
/// The whole body is in memory, so a poll that answers `Pending` will never be woken: that is
/// the parser stalling on a complete body (a request that would hang until its client gives up,
/// see `fuzz/regressions/multipart/known/`). The target stops there instead of hanging, so the
/// fuzzer keeps exploring.
pub fn multipart(data: &[u8]) {
    use futures_util::FutureExt;

    let mut headers = actix_web::http::header::HeaderMap::new();
    let Ok(content_type) = actix_web::http::header::HeaderValue::from_str(&format!(
        "multipart/form-data; boundary={MULTIPART_BOUNDARY}"
    )) else {
        return;
    };
    headers.insert(actix_web::http::header::CONTENT_TYPE, content_type);
    let chunks: Vec<Result<Bytes, actix_web::error::PayloadError>> = data
        .chunks(61)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut form = actix_multipart::Multipart::new(&headers, futures_util::stream::iter(chunks));
    while let Some(Some(field)) = form.next().now_or_never() {
        let Ok(mut field) = field else { return };
        let _name = field.name().map(str::to_owned);
        let _file = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(str::to_owned);
        let mut size = 0usize;
        while let Some(Some(chunk)) = field.next().now_or_never() {
            let Ok(chunk) = chunk else { return };
            size += chunk.len();
        }
        std::hint::black_box(size);
    }
}

/// A workflow definition (YAML or JSON), as `POST /v1/jobs` and `POST /v1/workflows` parse it,
/// with the checks a job runs before it starts.
pub fn workflow(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(workflow) = maas_scheduler::workflow::Workflow::parse(text) else {
        return;
    };
    let _ = workflow.order();
    for task in &workflow.tasks {
        let _ = workflow.ancestors(&task.name);
    }
}

/// The HS256 secret of [`jwt`]'s keys (32 bytes); `fuzz/corpus/jwt` holds a token it signed.
pub const JWT_SECRET: &[u8; 32] = b"maas-fuzz-target-fixed-hs256-key";

/// A bearer token verified against a fixed HS256 key with the server's validation (issuer and
/// audience `maas`), twice: the second call goes through the cache of verified tokens.
pub fn jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Some(keys) = jwt_keys() else { return };
    let _ = keys.verify(token);
    let _ = keys.verify(token);
}

fn jwt_keys() -> Option<&'static JwtKeys> {
    static KEYS: OnceLock<Option<JwtKeys>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("maas-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let file = dir.join("jwt-secret");
        std::fs::write(&file, hex::encode(JWT_SECRET)).ok()?;
        let settings = AuthSettings {
            jwt_secret_file: Some(file),
            ..AuthSettings::default()
        };
        JwtKeys::load(&settings, &dir).ok()
    })
    .as_ref()
}

fn spec(name: &str, element_type: ElementType, shape: &[Option<usize>]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        element_type,
        shape: shape
            .iter()
            .enumerate()
            .map(|(axis, d)| match d {
                Some(n) => Dim::Fixed(*n),
                None if axis == 0 => Dim::Symbolic("N".into()),
                None => Dim::Symbolic(format!("d{axis}")),
            })
            .collect(),
    }
}

fn signature(inputs: Vec<TensorSpec>) -> ModelSignature {
    ModelSignature {
        inputs,
        outputs: vec![spec("label", ElementType::Int64, &[None])],
    }
}

/// One input of each element type and of a few shapes: the models a request is decoded for.
fn model_inputs() -> &'static [TensorSpec] {
    static INPUTS: OnceLock<Vec<TensorSpec>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        vec![
            spec("float_input", ElementType::Float32, &[None, Some(4)]),
            spec(
                "image",
                ElementType::Float32,
                &[None, Some(1), Some(28), Some(28)],
            ),
            spec("x64", ElementType::Float64, &[None, None]),
            spec("ids", ElementType::Int64, &[None]),
            spec("counts", ElementType::Int32, &[None, Some(2)]),
            spec("flags", ElementType::Bool, &[None, Some(2)]),
            spec("text", ElementType::String, &[None, Some(1)]),
        ]
    })
}

/// The v1 codec's decoding, against every model input.
fn v1_tensors(body: &PredictRequest) {
    let features: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    for spec in model_inputs() {
        if let Some(instances) = &body.instances {
            let _ = io::instances_tensor(spec, instances, body.shape.as_deref());
        }
        if let Some(records) = &body.records {
            let _ = io::records_tensor(spec, Some(&features), records);
        }
    }
}

/// The V2 codec's decoding: binary ranges taken from the tail in request order, then each input
/// bound to the model's by name, against single-input models of each type and one that takes
/// them all.
fn v2_tensors(request: &InferRequest, binary: &[u8]) {
    let Ok(ranges) = binary_ranges(&request.inputs, binary.len()) else {
        return;
    };
    let names: Vec<&str> = request.inputs.iter().map(|i| i.name.as_str()).collect();
    let requested = || request.outputs.iter().flatten().map(|o| o.name.as_str());
    let decode = |ix: usize, spec: &TensorSpec| -> Result<Tensor, ServiceError> {
        let input = &request.inputs[ix];
        let tensor = match (&ranges[ix], &input.data) {
            (Some(range), _) => io::v2_tensor_from_bytes(
                spec,
                &input.datatype,
                &input.shape,
                &binary[range.clone()],
            ),
            (None, Some(data)) => io::v2_tensor(spec, &input.datatype, &input.shape, data),
            (None, None) => return Err(ServiceError::new(ErrorKind::InvalidInput, "no data")),
        };
        Ok(tensor?)
    };
    for one in model_inputs() {
        let _ = bind_inputs(&signature(vec![one.clone()]), &names, requested(), decode);
    }
    let _ = bind_inputs(
        &signature(model_inputs().to_vec()),
        &names,
        requested(),
        decode,
    );
}

/// Where each input's binary data lies in the tail (as the V2 codec splits it): `binary_data_size`
/// bytes each, in request order, the whole tail used.
fn binary_ranges(
    inputs: &[InferInput],
    len: usize,
) -> Result<Vec<Option<std::ops::Range<usize>>>, ()> {
    let mut ranges = Vec::with_capacity(inputs.len());
    let mut at = 0usize;
    for input in inputs {
        let size = input
            .parameters
            .as_ref()
            .and_then(|p: &Map<String, Value>| p.get("binary_data_size"))
            .and_then(Value::as_u64);
        match size {
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                let end = at.checked_add(n).filter(|&e| e <= len).ok_or(())?;
                ranges.push(Some(at..end));
                at = end;
            }
            None => ranges.push(None),
        }
    }
    if at == len {
        Ok(ranges)
    } else {
        Err(())
    }
}
