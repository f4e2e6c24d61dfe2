//! Typed, layered configuration: defaults < TOML file < `MAAS__SECTION__KEY` environment <
//! command-line flags. Unknown keys are refused at every layer, and the result is validated
//! before anything starts.

pub use crate::services::auth::jwt::{AuthSettings, JwtAlgorithm};
pub use crate::services::telemetry::TracingSettings;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
pub use maas_serving::{BackendChoice, OrtSettings};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub limits: LimitSettings,
    pub serving: ServingSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub drift: DriftGatewaySettings,
    pub predictions: crate::services::predictions::PredictionLogSettings,
    pub scheduler: crate::services::jobs::SchedulerSettings,
    pub tracing: TracingSettings,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on; port 0 picks a free port.
    pub bind: String,
    /// Address and port of the Open Inference Protocol's gRPC service (port 0 picks a free
    /// port); empty turns gRPC off. It shares the HTTP server's certificate, tokens and limits.
    pub grpc_bind: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// PEM certificate chain; with `tls_key`, serve HTTPS (rustls).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Most HTTP connections open at once; one more is answered 503 `too_many_connections` and
    /// closed. 0: as many as the file descriptor limit allows (each takes two), with some kept
    /// for the store, model files and logs.
    pub max_connections: usize,
    /// A request body must arrive within this many seconds, or the request is answered 408
    /// `body_timeout` and its connection closed (a client trickling bytes holds nothing long).
    pub body_timeout_secs: u64,
    /// The same for multipart uploads (model files and CSVs), which may be large.
    pub upload_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".into(),
            grpc_bind: "127.0.0.1:8081".into(),
            workers: 0,
            tls_cert: None,
            tls_key: None,
            max_connections: 0,
            body_timeout_secs: 30,
            upload_timeout_secs: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Folder for the SQLite database and the artifacts when they are not set on their own.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `<data_dir>/maas.db`.
    pub database_url: Option<String>,
    /// Where model files live; defaults to `<data_dir>/artifacts`. Replicas sharing a database
    /// must share this folder too.
    pub artifact_dir: Option<PathBuf>,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            data_dir: PathBuf::from("./maas-data"),
            database_url: None,
            artifact_dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest model upload or download, in bytes.
    pub max_model_bytes: u64,
    /// Largest predict body, in bytes.
    pub max_predict_bytes: u64,
    /// Largest body of any other JSON route, in bytes.
    pub max_json_bytes: u64,
    /// Folders that `file://` URLs in deploy forms may read below; empty (the default) turns
    /// `file://` off.
    pub allow_file_urls: Vec<PathBuf>,
    /// Most nodes in a model's graph, subgraphs included.
    pub max_graph_nodes: usize,
    /// Most memory loading a model may take, as estimated from its file before loading: its
    /// constants, and the tensors they size (`ConstantOfShape`, `Expand`, ...).
    pub max_load_bytes: u64,
    /// Longest a model's load and test inference may take, in seconds.
    pub load_timeout_secs: u64,
    /// Networks (CIDR, such as `10.0.0.0/8` or `127.0.0.1/32`) that URLs in deploy forms may reach
    /// besides public addresses; loopback, private and link-local addresses are refused otherwise.
    pub allow_url_networks: Vec<String>,
}

impl LimitSettings {
    /// What loading one model may cost.
    pub fn load_limits(&self) -> maas_serving::LoadLimits {
        maas_serving::LoadLimits {
            max_graph_nodes: self.max_graph_nodes,
            max_load_bytes: self.max_load_bytes,
        }
    }

    /// Where URLs given by users may lead.
    pub fn url_policy(&self) -> anyhow::Result<crate::services::fetch::UrlPolicy> {
        let networks = self
            .allow_url_networks
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "limits.allow_url_networks: '{n}' is not a network such as 10.0.0.0/8 or an address"
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(crate::services::fetch::UrlPolicy {
            file_roots: self.allow_file_urls.clone(),
            networks,
        })
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_model_bytes: 512 * MIB,
            max_predict_bytes: 16 * MIB,
            max_json_bytes: MIB,
            allow_file_urls: Vec::new(),
            allow_url_networks: Vec::new(),
            max_graph_nodes: maas_serving::LoadLimits::default().max_graph_nodes,
            max_load_bytes: maas_serving::LoadLimits::default().max_load_bytes,
            load_timeout_secs: crate::services::models::DEFAULT_LOAD_TIMEOUT.as_secs(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingSettings {
    /// Inference backend of versions deployed without one: `tract`, `ort-cpu`, `ort-cuda` or
    /// `auto` (ONNX Runtime when its library loads, else tract).
    pub backend: BackendChoice,
    /// Model instances (threads, each with its own session) per version.
    pub instances: usize,
    /// Most rows joined into one run; 1 turns dynamic batching off.
    pub max_batch_size: usize,
    /// How long a request may wait for others to join its batch, in microseconds (0: never).
    pub max_queue_delay_us: u64,
    /// Most requests waiting per version; more are refused with 429.
    pub queue_capacity: usize,
    /// Longest wait in the queue before a request is answered 503, in milliseconds.
    pub queue_timeout_ms: u64,
    /// A request expected to compute within this many microseconds runs on the HTTP worker that
    /// received it when its version's queue is idle (0: always queue).
    pub inline_max_us: u64,
    /// How often to pick up deploys made by other replicas sharing the store, in milliseconds.
    pub sync_interval_ms: u64,
    /// Time limit for fetching a `model_url`, in seconds.
    pub model_url_timeout_secs: u64,
    /// ONNX Runtime: where its library is and how its sessions run.
    pub ort: OrtSettings,
}

impl ServingSettings {
    /// The values a deploy's missing serving options take.
    pub fn defaults(&self) -> maas_serving::ServingDefaults {
        maas_serving::ServingDefaults {
            backend: self.backend,
            instances: self.instances,
            max_batch_size: self.max_batch_size,
            max_queue_delay_us: self.max_queue_delay_us,
            queue_capacity: self.queue_capacity,
            queue_timeout_ms: self.queue_timeout_ms,
            inline_max_us: self.inline_max_us,
        }
    }
}

impl Default for ServingSettings {
    fn default() -> Self {
        ServingSettings {
            backend: BackendChoice::Tract,
            instances: 1,
            max_batch_size: 32,
            max_queue_delay_us: 0,
            queue_capacity: 1024,
            queue_timeout_ms: 5000,
            inline_max_us: maas_serving::batching::DEFAULT_INLINE_MAX.as_micros() as u64,
            ort: OrtSettings::default(),
            sync_interval_ms: 2000,
            model_url_timeout_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter: `info`, `debug`, `maas=debug,actix_web=warn`, …
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftGatewaySettings {
    /// Where drift notifications go when a version names no webhook of its own.
    pub webhook_url: Option<String>,
}

/// Values given on the command line; each one set overrides every other layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub grpc_bind: Option<String>,
    pub database_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Settings {
    /// Build the settings from every layer and validate them.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("MAAS__").split("__"));
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(("storage.data_dir", dir));
        }
        if let Some(bind) = &overrides.bind {
            figment = figment.merge(("server.bind", bind));
        }
        if let Some(bind) = &overrides.grpc_bind {
            figment = figment.merge(("server.grpc_bind", bind));
        }
        if let Some(url) = &overrides.database_url {
            figment = figment.merge(("storage.database_url", url));
        }
        if let Some(path) = &overrides.tls_cert {
            figment = figment.merge(("server.tls_cert", path));
        }
        if let Some(path) = &overrides.tls_key {
            figment = figment.merge(("server.tls_key", path));
        }
        let settings: Settings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.server.bind.parse::<SocketAddr>().map_err(|e| {
            anyhow::anyhow!("server.bind '{}' is not ADDR:PORT ({e})", self.server.bind)
        })?;
        if !self.server.grpc_bind.is_empty() {
            self.server.grpc_bind.parse::<SocketAddr>().map_err(|e| {
                anyhow::anyhow!(
                    "server.grpc_bind '{}' is not ADDR:PORT ({e}); leave it empty to turn gRPC off",
                    self.server.grpc_bind
                )
            })?;
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            let parsed = url::Url::parse(endpoint).map_err(|e| {
                anyhow::anyhow!("tracing.otlp_endpoint '{endpoint}' is not a URL ({e})")
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!(
                    "tracing.otlp_endpoint must be an http:// or https:// URL of an OTLP/HTTP collector, such as http://127.0.0.1:4318"
                );
            }
        }
        if let Some(url) = &self.storage.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                anyhow::bail!(
                    "storage.database_url must start with sqlite:, postgres:// or postgresql://"
                );
            }
        }
        if self.limits.max_model_bytes == 0
            || self.limits.max_predict_bytes == 0
            || self.limits.max_json_bytes == 0
            || self.limits.max_graph_nodes == 0
            || self.limits.max_load_bytes == 0
            || self.limits.load_timeout_secs == 0
        {
            anyhow::bail!("limits must be positive");
        }
        self.limits.url_policy()?;
        for root in &self.limits.allow_file_urls {
            if !root.is_absolute() {
                anyhow::bail!(
                    "limits.allow_file_urls: '{}' is not an absolute path",
                    root.display()
                );
            }
        }
        if self.server.body_timeout_secs == 0 || self.server.upload_timeout_secs == 0 {
            anyhow::bail!(
                "server.body_timeout_secs and server.upload_timeout_secs must be positive"
            );
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            anyhow::bail!("server.tls_cert and server.tls_key go together");
        }
        if self.auth.token_ttl_secs == 0
            || self.auth.login_max_failures == 0
            || self.auth.login_address_max_failures == 0
            || self.auth.login_max_backoff_secs == 0
            || self.auth.login_window_secs == 0
        {
            anyhow::bail!("auth.token_ttl_secs, auth.login_max_failures, auth.login_address_max_failures, auth.login_max_backoff_secs and auth.login_window_secs must be positive");
        }
        if self.auth.login_max_backoff_secs > self.auth.login_window_secs {
            anyhow::bail!(
                "auth.login_max_backoff_secs ({}) must not exceed auth.login_window_secs ({}): failures are forgotten after the window",
                self.auth.login_max_backoff_secs,
                self.auth.login_window_secs
            );
        }
        if let Some(url) = &self.drift.webhook_url {
            let parsed =
                url::Url::parse(url).map_err(|e| anyhow::anyhow!("drift.webhook_url: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("drift.webhook_url must be an http or https URL");
            }
        }
        if self.serving.sync_interval_ms < 100 {
            anyhow::bail!("serving.sync_interval_ms must be at least 100");
        }
        self.scheduler.validate()?;
        maas_serving::ServingOptions::default()
            .resolve(&self.serving.defaults())
            .map_err(|e| anyhow::anyhow!("serving: {e}"))?;
        Ok(())
    }

    pub fn artifact_dir(&self) -> PathBuf {
        self.storage
            .artifact_dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("artifacts"))
    }

    /// The database URL, with the default SQLite file under the data folder.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.storage.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.storage.data_dir)?;
        let dir = std::fs::canonicalize(&self.storage.data_dir)?;
        Ok(format!(
            "sqlite://{}?mode=rwc",
            dir.join("maas.db").display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert_eq!(s.limits.max_model_bytes, 512 * MIB);
        assert_eq!(s.limits.max_predict_bytes, 16 * MIB);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn layers_apply_in_order_and_unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("maas.toml", "[server]\nbind = \"127.0.0.1:9000\"\nworkers = 3\n[limits]\nmax_predict_bytes = 10\n")?;
            jail.set_env("MAAS__SERVER__BIND", "127.0.0.1:9001");
            let flags = Overrides {
                bind: Some("127.0.0.1:9002".into()),
                ..Overrides::default()
            };
            let s = Settings::load(Some(Path::new("maas.toml")), &Overrides::default()).unwrap();
            assert_eq!(s.server.bind, "127.0.0.1:9001");
            assert_eq!(s.server.workers, 3);
            assert_eq!(s.limits.max_predict_bytes, 10);
            let s = Settings::load(Some(Path::new("maas.toml")), &flags).unwrap();
            assert_eq!(s.server.bind, "127.0.0.1:9002");

            jail.create_file("bad.toml", "[server]\nbindd = \"x\"\n")?;
            let err =
                Settings::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("bindd"), "{err}");
            jail.set_env("MAAS__SERVER__NOPE", "1");
            assert!(Settings::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_example_config_is_valid_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/maas.example.toml");
        let from_file: Settings = Figment::from(Toml::file_exact(&path)).extract().unwrap();
        from_file.validate().unwrap();
        assert_eq!(
            from_file,
            Settings::default(),
            "deploy/maas.example.toml lists the defaults"
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        let mut s = Settings::default();
        s.server.bind = "localhost".into();
        assert!(s.validate().is_err());
        let mut s = Settings::default();
        s.storage.database_url = Some("mysql://x".into());
        assert!(s.validate().is_err());
        let mut s = Settings::default();
        s.auth.login_max_backoff_secs = s.auth.login_window_secs + 1;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("auth.login_max_backoff_secs"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn trusted_proxies_come_as_a_list_or_one_string_and_bad_ones_are_named() {
        use crate::services::auth::client_address::TrustedProxies;
        figment::Jail::expect_with(|jail| {
            let proxies = |list: &[&str]| TrustedProxies::parse(list.iter().copied()).unwrap();
            jail.set_env("MAAS__AUTH__TRUSTED_PROXIES", "127.0.0.1");
            let s = Settings::load(None, &Overrides::default()).unwrap();
            assert_eq!(s.auth.trusted_proxies, proxies(&["127.0.0.1"]));
            jail.set_env("MAAS__AUTH__TRUSTED_PROXIES", "10.0.0.0/8, ::1");
            let s = Settings::load(None, &Overrides::default()).unwrap();
            assert_eq!(s.auth.trusted_proxies, proxies(&["10.0.0.0/8", "::1"]));
            jail.set_env("MAAS__AUTH__TRUSTED_PROXIES", "[\"10.0.0.0/8\", \"::1\"]");
            let s = Settings::load(None, &Overrides::default()).unwrap();
            assert_eq!(s.auth.trusted_proxies, proxies(&["10.0.0.0/8", "::1"]));
            jail.create_file("maas.toml", "[auth]\ntrusted_proxies = [\"192.0.2.1\"]\n")?;
            jail.set_env("MAAS__AUTH__TRUSTED_PROXIES", "");
            let s = Settings::load(Some(Path::new("maas.toml")), &Overrides::default()).unwrap();
            assert!(
                s.auth.trusted_proxies.is_empty(),
                "the environment wins, even empty"
            );
            jail.set_env("MAAS__AUTH__TRUSTED_PROXIES", "proxy.local");
            let err = Settings::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("'proxy.local' is not an IP address"), "{err}");
            Ok(())
        });
    }
}
