//! How one version is served: the options a deploy sends, the server's defaults for what it left
//! out, and their resolution into a backend, an instance count and a batching queue's limits.
//! The store keeps the options as sent; every load resolves them again against the defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::batching::BatchConfig;
use crate::{BackendChoice, ServingError};

/// How one version is served, as a deploy asks for it (field `serving`, JSON). Every field is
/// optional; a missing one takes the server's `[serving]` default when the version loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServingOptions {
    /// `tract`, `ort-cpu`, `ort-cuda` or `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "auto")]
    pub backend: Option<BackendChoice>,
    /// Model instances (threads with their own session), 1 to 64. On ONNX Runtime each
    /// instance's session runs max(1, cores / instances) intra-op threads and executes
    /// operators sequentially, unless `serving.ort.intra_op_threads` / `inter_op_threads` set
    /// other values, so the instances never oversubscribe the cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<usize>,
    /// Most rows run together (1 to 4096; 1 turns batching off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<usize>,
    /// How long a request may wait for others to join its batch, in microseconds (at most 1 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_us: Option<u64>,
    /// Most requests waiting (1 to 1,000,000); more are refused with 429.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<usize>,
    /// Longest wait in the queue, in milliseconds (1 to 600,000); longer is answered 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_timeout_ms: Option<u64>,
    /// A request expected to compute within this many microseconds runs on the HTTP worker that
    /// received it when the queue is idle, with no hand-off to an instance thread (0 to 1 s;
    /// 0 always queues). The expectation is a moving average of the version's past runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_max_us: Option<u64>,
}

impl ServingOptions {
    /// These options with every field `patch` sets replaced.
    pub fn patched(&self, patch: &ServingOptions) -> ServingOptions {
        ServingOptions {
            backend: patch.backend.or(self.backend),
            instances: patch.instances.or(self.instances),
            max_batch_size: patch.max_batch_size.or(self.max_batch_size),
            max_queue_delay_us: patch.max_queue_delay_us.or(self.max_queue_delay_us),
            queue_capacity: patch.queue_capacity.or(self.queue_capacity),
            queue_timeout_ms: patch.queue_timeout_ms.or(self.queue_timeout_ms),
            inline_max_us: patch.inline_max_us.or(self.inline_max_us),
        }
    }
}

/// The server-wide values of the options a deploy leaves out (`[serving]` in the settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingDefaults {
    pub backend: BackendChoice,
    pub instances: usize,
    pub max_batch_size: usize,
    pub max_queue_delay_us: u64,
    pub queue_capacity: usize,
    pub queue_timeout_ms: u64,
    pub inline_max_us: u64,
}

/// How a version is served once its options meet the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedServing {
    pub backend: BackendChoice,
    pub instances: usize,
    pub batch: BatchConfig,
}

impl ServingOptions {
    /// Fill the gaps from the server's defaults and check every limit.
    pub fn resolve(&self, defaults: &ServingDefaults) -> Result<ResolvedServing, ServingError> {
        fn within<T: PartialOrd + std::fmt::Display + Copy>(
            name: &str,
            value: T,
            low: T,
            high: T,
        ) -> Result<T, ServingError> {
            if value < low || value > high {
                return Err(ServingError::InvalidOptions(format!(
                    "`{name}` must be between {low} and {high}, got {value}"
                )));
            }
            Ok(value)
        }
        let instances = within(
            "instances",
            self.instances.unwrap_or(defaults.instances),
            1,
            64,
        )?;
        let max_batch_size = within(
            "max_batch_size",
            self.max_batch_size.unwrap_or(defaults.max_batch_size),
            1,
            4096,
        )?;
        let delay = within(
            "max_queue_delay_us",
            self.max_queue_delay_us
                .unwrap_or(defaults.max_queue_delay_us),
            0,
            1_000_000,
        )?;
        let queue_capacity = within(
            "queue_capacity",
            self.queue_capacity.unwrap_or(defaults.queue_capacity),
            1,
            1_000_000,
        )?;
        let timeout = within(
            "queue_timeout_ms",
            self.queue_timeout_ms.unwrap_or(defaults.queue_timeout_ms),
            1,
            600_000,
        )?;
        let inline_max = within(
            "inline_max_us",
            self.inline_max_us.unwrap_or(defaults.inline_max_us),
            0,
            1_000_000,
        )?;
        Ok(ResolvedServing {
            backend: self.backend.unwrap_or(defaults.backend),
            instances,
            batch: BatchConfig {
                max_batch_size,
                max_queue_delay: Duration::from_micros(delay),
                queue_capacity,
                queue_timeout: Duration::from_millis(timeout),
                inline_max: Duration::from_micros(inline_max),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ServingDefaults {
        ServingDefaults {
            backend: BackendChoice::Tract,
            instances: 1,
            max_batch_size: 32,
            max_queue_delay_us: 0,
            queue_capacity: 1024,
            queue_timeout_ms: 5000,
            inline_max_us: 200,
        }
    }

    #[test]
    fn gaps_take_the_defaults_and_limits_hold() {
        let resolved = ServingOptions {
            instances: Some(2),
            ..ServingOptions::default()
        }
        .resolve(&defaults())
        .unwrap();
        assert_eq!(resolved.instances, 2);
        assert_eq!(resolved.batch.max_batch_size, 32);
        assert_eq!(resolved.batch.queue_timeout, Duration::from_millis(5000));
        let err = ServingOptions {
            max_batch_size: Some(0),
            ..ServingOptions::default()
        }
        .resolve(&defaults())
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("`max_batch_size` must be between 1 and 4096"));
    }

    #[test]
    fn a_patch_replaces_only_what_it_sets() {
        let stored = ServingOptions {
            instances: Some(2),
            queue_capacity: Some(10),
            ..ServingOptions::default()
        };
        let patched = stored.patched(&ServingOptions {
            queue_capacity: Some(20),
            ..ServingOptions::default()
        });
        assert_eq!(patched.instances, Some(2));
        assert_eq!(patched.queue_capacity, Some(20));
    }
}
