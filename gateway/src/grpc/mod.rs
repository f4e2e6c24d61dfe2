//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, the service
//! tritonclient.grpc, perf_analyzer and KServe's SDK speak), served beside HTTP by the same
//! process: same tokens and roles, same certificate, same limits, and the one inference pipeline.
//!
//! This layer only translates: protobuf in, a [`crate::services`] call, protobuf or a gRPC status
//! out. It runs on a tokio runtime of its own (the HTTP server's workers are single-threaded
//! actix runtimes), with as many threads as the HTTP server has workers.

mod codec;
mod service;
mod status;

use std::net::SocketAddr;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::server::AppData;
use crate::settings::Settings;

/// The protocol's messages and service, generated from `proto/grpc_service.proto` by build.rs.
#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");

    /// The compiled descriptor of `proto/grpc_service.proto` (a `FileDescriptorSet`).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/grpc_service_descriptor.bin"));
}

/// A running gRPC server: stop it with [`GrpcServer::stop`].
pub struct GrpcServer {
    pub address: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl GrpcServer {
    /// Stop accepting, let the calls in flight finish (for up to 10 s), and join the threads.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Bind `server.grpc_bind` and serve it; `None` when gRPC is off. A bind that fails is a startup
/// error, as the HTTP one is.
///
/// As actix does for HTTP, each of `server.workers` threads runs a single-threaded runtime that
/// accepts on the one listening socket and keeps each connection, its streams and their work on
/// that thread: no hand-off between threads inside a call (measured in benches/README.md).
pub fn start(settings: &Settings, data: &AppData) -> anyhow::Result<Option<GrpcServer>> {
    let bind = settings.server.grpc_bind.trim();
    if bind.is_empty() {
        return Ok(None);
    }
    let listener = std::net::TcpListener::bind(bind)
        .map_err(|e| anyhow::anyhow!("cannot listen for gRPC on {bind}: {e}"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let tls = match (&settings.server.tls_cert, &settings.server.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            };
            Some(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)))
        }
        _ => None,
    };
    let limit = usize::try_from(settings.limits.max_predict_bytes).unwrap_or(usize::MAX);
    let service = service::InferenceService::new(data);
    let workers = match settings.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    for ix in 0..workers {
        let mut builder = Server::builder().tcp_nodelay(true);
        if let Some(tls) = tls.clone() {
            builder = builder
                .tls_config(tls)
                .map_err(|e| anyhow::anyhow!("the gRPC server cannot use the certificate: {e}"))?;
        }
        let router = builder.layer(status::MessageTooLargeLayer).add_service(
            proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(service.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        let listener = listener.try_clone()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("maas-grpc-{ix}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let incoming = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => TcpIncoming::from(l).with_nodelay(Some(true)),
                        Err(e) => {
                            tracing::error!(error = %e, "the gRPC listener could not start");
                            return;
                        }
                    };
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    if let Err(e) = router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                    {
                        tracing::error!(error = %e, "the gRPC server stopped");
                    }
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(10));
            })?;
        threads.push(thread);
    }
    Ok(Some(GrpcServer {
        address,
        stop,
        threads,
    }))
}
