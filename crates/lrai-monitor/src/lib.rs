//! Observing every layer: the Prometheus [`Metrics`] registry with per-model handles
//! ([`ModelMetrics`], resolved once when a model version loads so the hot path is atomic
//! adds), Triton-shaped statistics snapshots, and the process's log setup ([`logging`]).
//!
//! Metric names: Triton's `nv_inference_*` (exact names, labels `model`/`version`, µs
//! counters) so existing dashboards work, plus LRAI's own `lrai_*` histograms with
//! explicit buckets (latencies geometric ×1.5 from 10 µs, batch sizes powers of two), so
//! percentiles can be computed across replicas. Labels are bounded: model, version,
//! protocol, reason, status class. Drift and fairness statistics will live here too.

pub mod logging;
mod metrics;
mod rollout;
mod stats;

pub use metrics::{
    AdaptiveStatus, BatchReason, BatchTimings, FailureReason, FallbackReason, Metrics,
    ModelMetrics, Protocol, RequestStatus,
};
pub use rollout::RolloutMetrics;
pub use stats::{BatchStat, Duration as StatDuration, ModelStatsSnapshot};

/// Errors from the monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A metric could not be registered or rendered.
    #[error("metrics registry: {0}")]
    Prometheus(#[from] prometheus::Error),
    /// The log filter does not parse.
    #[error("log filter '{filter}' does not parse: {reason}")]
    LogFilter {
        /// The filter given.
        filter: String,
        /// Why.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(String),
}

/// Result with [`MonitorError`].
pub type Result<T, E = MonitorError> = std::result::Result<T, E>;
