//! The inference pipeline: the one path every protocol's request takes.
//!
//! decode → resolve the version → queue and backend → drift → prediction log → metrics → encode.
//!
//! A protocol (v1 JSON, the Open Inference Protocol's JSON and binary forms, later gRPC) is a
//! [`Codec`] and nothing else: it turns its request into tensors once the version is known, and
//! the tensors that come back into its answer. Everything between — which version answers, the
//! queue, the drift checks (per request and continuous), the prediction log, the metrics — happens
//! here, once, the same way for every protocol.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use maas_drift::DetectorConfig;
use maas_serving::batching::ClientProbe;
use maas_serving::{ServedVersion, Tensor};
use opentelemetry::KeyValue;
use serde_json::{json, Value};

use crate::services::distributions::RecentValues;
use crate::services::drift::{DriftResult, DriftService};
use crate::services::error::{ErrorKind, ServiceError};
use crate::services::metrics::Metrics;
use crate::services::models::ModelService;
use crate::services::predictions::{Pending, PredictionLog};

/// One protocol's request and answer shapes.
pub trait Codec {
    /// What the protocol sends back.
    type Answer;

    /// Bind the request to the version that will answer: its tensors in the model's input
    /// order, checked against the signature. With `log`, also the inputs as the prediction log
    /// keeps them.
    fn decode(
        &mut self,
        served: &ServedVersion,
        log: bool,
    ) -> Result<(Vec<Tensor>, Option<Value>), ServiceError>;

    /// The answer, from the model's outputs (in its output order) and the drift check when one
    /// ran. With `log`, also the outputs as the prediction log keeps them.
    fn encode(
        self,
        served: &ServedVersion,
        outputs: Vec<Tensor>,
        drift: Option<DriftResult>,
        log: bool,
    ) -> Result<(Self::Answer, Option<Value>), ServiceError>;
}

/// The protocol a request came in by, as `maas_predictions_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// maas's own JSON (`/v1/models/{name}/predict`).
    RestV1,
    /// The Open Inference Protocol over REST (`/v2`).
    RestV2,
    /// The Open Inference Protocol over gRPC.
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::RestV1 => "v1",
            Protocol::RestV2 => "v2",
            Protocol::Grpc => "grpc",
        }
    }
}

/// One inference request, whatever its protocol.
pub struct Call<C> {
    pub model: String,
    /// The version asked for; `None`: the model's default (its newest deployed version).
    pub version: Option<u64>,
    pub codec: C,
    /// A drift check this request asks for; without one the version's settings decide.
    pub drift: Option<DetectorConfig>,
    /// Save this request in the prediction log; `None`: the model's setting.
    pub save: Option<bool>,
    /// Who asks, for the prediction log.
    pub actor: String,
    /// Whether the caller is still there, asked before compute.
    pub client: Option<ClientProbe>,
    pub protocol: Protocol,
}

/// An answer and the version that gave it.
pub struct Answered<A> {
    pub model: String,
    pub version: u64,
    pub answer: A,
}

/// Runs [`Call`]s.
pub struct Inference {
    models: Arc<ModelService>,
    drift: Arc<DriftService>,
    /// The last rows each version scored with a drift check, for the distribution view.
    pub recent: RecentValues,
    predictions: PredictionLog,
    metrics: Arc<Metrics>,
}

impl Inference {
    pub fn new(
        models: Arc<ModelService>,
        drift: Arc<DriftService>,
        predictions: PredictionLog,
        metrics: Arc<Metrics>,
    ) -> Self {
        Inference {
            models,
            drift,
            recent: RecentValues::default(),
            predictions,
            metrics,
        }
    }

    pub async fn run<C: Codec>(&self, call: Call<C>) -> Result<Answered<C::Answer>, ServiceError> {
        let received = Instant::now();
        let served = self.models.resolve(&call.model, call.version).await?;
        let started = Instant::now();
        let protocol = call.protocol;
        let result = self.run_resolved(&served, call, received).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind.prediction_outcome(),
        };
        self.metrics.observe_prediction(
            &served.model,
            served.version,
            protocol.as_str(),
            outcome,
            started.elapsed().as_secs_f64(),
        );
        Ok(Answered {
            model: served.model.clone(),
            version: served.version,
            answer: result?,
        })
    }

    async fn run_resolved<C: Codec>(
        &self,
        served: &Arc<ServedVersion>,
        call: Call<C>,
        received: Instant,
    ) -> Result<C::Answer, ServiceError> {
        let Call {
            mut codec,
            drift,
            save,
            actor,
            client,
            ..
        } = call;
        let save = save.unwrap_or_else(|| self.models.logs_predictions(&served.model));
        let plan = self
            .drift
            .plan(&served.model, served.version, drift)
            .await?;
        let trace = crate::services::telemetry::current();
        let clock = || trace.is_recording().then(SystemTime::now);
        let attributes = |rows: Option<usize>| {
            let mut a = vec![
                KeyValue::new("maas.model", served.model.clone()),
                KeyValue::new("maas.version", served.version as i64),
            ];
            if let Some(rows) = rows {
                a.push(KeyValue::new("maas.rows", rows as i64));
            }
            a
        };
        let began = clock();
        let (inputs, logged_inputs) = codec.decode(served, save)?;
        if let Some(began) = began {
            trace.phase("decode", began, SystemTime::now(), attributes(None));
        }
        let rows = match &plan {
            Some(plan) => match inputs.as_slice() {
                [tensor] => Some(DriftService::table(plan, tensor)?),
                _ => {
                    return Err(ServiceError::new(
                        ErrorKind::InvalidInput,
                        "drift detection needs a model with one input of shape [N, features]",
                    ))
                }
            },
            None => None,
        };
        let queued = clock();
        let done = self.models.queue(served, inputs, client).await?;
        if let Some(queued) = queued {
            let started = queued + done.queue_wait;
            trace.phase("queue", queued, started, attributes(None));
            trace.phase(
                "compute",
                started,
                started + done.compute,
                attributes(Some(done.batch_rows)),
            );
        }
        let outputs = done.outputs;
        let drift_began = clock();
        let drift = match (&plan, &rows) {
            (Some(plan), Some(rows)) => {
                let result = DriftService::evaluate(plan, rows)?;
                self.recent.observe(&served.model, served.version, rows);
                self.drift
                    .record(plan, &served.model, served.version, &result);
                Some(result)
            }
            _ => None,
        };
        if let (Some(began), Some(d)) = (drift_began, &drift) {
            let mut a = attributes(None);
            a.push(KeyValue::new("maas.drift.detector", d.detector.clone()));
            trace.phase("drift", began, SystemTime::now(), a);
        }
        let logged_drift = match (&drift, save) {
            (Some(d), true) => Some(
                json!({"detector": d.detector, "features": d.features, "deviation": d.deviation}),
            ),
            _ => None,
        };
        let began = clock();
        let (answer, logged_outputs) = codec.encode(served, outputs, drift, save)?;
        if let Some(began) = began {
            trace.phase("encode", began, SystemTime::now(), attributes(None));
        }
        if let (Some(inputs), Some(outputs)) = (logged_inputs, logged_outputs) {
            self.predictions.log(Pending {
                model: served.model.clone(),
                version: served.version,
                at_us: chrono::Utc::now().timestamp_micros(),
                actor,
                request_id: crate::store::audit::current().request_id,
                latency_us: u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX),
                inputs,
                outputs,
                drift: logged_drift,
            });
        }
        Ok(answer)
    }
}
