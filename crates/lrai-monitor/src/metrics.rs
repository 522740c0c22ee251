//! The registry and per-model handles.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::Result;
use crate::stats::{BatchStats, ModelStatsSnapshot, StatCounters};

/// Which front end a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/REST (JSON or binary tensors).
    Http,
    /// gRPC.
    Grpc,
}

impl Protocol {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// How a request ended, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Answered.
    Ok,
    /// Rejected as malformed or invalid (HTTP 4xx other than 404).
    ClientError,
    /// Unknown model or version.
    NotFound,
    /// Overloaded, timed out or not ready (503).
    Unavailable,
    /// Failed inside the server or backend (500).
    ServerError,
}

impl RequestStatus {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Ok => "ok",
            RequestStatus::ClientError => "client_error",
            RequestStatus::NotFound => "not_found",
            RequestStatus::Unavailable => "unavailable",
            RequestStatus::ServerError => "server_error",
        }
    }
}

/// Triton's `reason` label on `nv_inference_request_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Refused before running (queue full, timeout, bad input).
    Rejected,
    /// The client went away.
    Canceled,
    /// The backend failed or panicked.
    Backend,
    /// Anything else.
    Other,
}

impl FailureReason {
    /// Label value (Triton's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Rejected => "REJECTED",
            FailureReason::Canceled => "CANCELED",
            FailureReason::Backend => "BACKEND",
            FailureReason::Other => "OTHER",
        }
    }
}

/// Why the batcher sent a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchReason {
    /// `max_batch_size` rows reached.
    Full,
    /// A preferred batch size could be formed.
    Preferred,
    /// The oldest request waited `max_queue_delay_microseconds`.
    Delay,
    /// An instance was idle and no delay was configured (or batching is off).
    Idle,
    /// The adaptive controller decided.
    Adaptive,
}

impl BatchReason {
    /// Every reason, for pre-touching label sets.
    pub const ALL: [BatchReason; 5] = [
        BatchReason::Full,
        BatchReason::Preferred,
        BatchReason::Delay,
        BatchReason::Idle,
        BatchReason::Adaptive,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchReason::Full => "full",
            BatchReason::Preferred => "preferred",
            BatchReason::Delay => "delay",
            BatchReason::Idle => "idle",
            BatchReason::Adaptive => "adaptive",
        }
    }
}

/// Latency buckets: geometric ×1.5 from 10 µs (39 buckets, up to ~49 s).
fn latency_buckets() -> Vec<f64> {
    let mut v = Vec::with_capacity(39);
    let mut b = 10e-6;
    for _ in 0..39 {
        v.push(b);
        b *= 1.5;
    }
    v
}

/// Batch-size buckets: powers of two up to 1024.
fn batch_buckets() -> Vec<f64> {
    (0..=10).map(|p| f64::from(1u32 << p)).collect()
}

/// Every metric family, registered once.
#[derive(Clone)]
struct Families {
    nv_success: IntCounterVec,
    nv_failure: IntCounterVec,
    nv_count: IntCounterVec,
    nv_exec_count: IntCounterVec,
    nv_request_us: IntCounterVec,
    nv_queue_us: IntCounterVec,
    nv_compute_input_us: IntCounterVec,
    nv_compute_infer_us: IntCounterVec,
    nv_compute_output_us: IntCounterVec,
    nv_pending: IntGaugeVec,
    request_seconds: HistogramVec,
    requests_total: IntCounterVec,
    queue_seconds: HistogramVec,
    compute_seconds: HistogramVec,
    batch_size: HistogramVec,
    batches_total: IntCounterVec,
    queue_depth: IntGaugeVec,
    inflight: IntGaugeVec,
    restarts: IntCounterVec,
    load_seconds: HistogramVec,
    batcher_adaptive: IntGaugeVec,
    batcher_max_batch: IntGaugeVec,
    batcher_delay_us: IntGaugeVec,
    slo_attainment: GaugeVec,
    cost_prediction_error: GaugeVec,
    batcher_fallbacks: IntCounterVec,
    batcher_given_up: IntCounterVec,
}

/// The process's metric registry. Cloning shares it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    f: Arc<Families>,
    rollout: crate::rollout::RolloutFamilies,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const MV: &[&str] = &["model", "version"];

impl Metrics {
    /// Creates and registers every family.
    ///
    /// # Errors
    /// [`crate::MonitorError::Prometheus`] when registration fails (a bug: names are fixed).
    pub fn new() -> Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let fgauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram =
            |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| -> Result<HistogramVec> {
                let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let f = Families {
            nv_success: counter(
                "nv_inference_request_success",
                "Number of successful inference requests, all batch sizes",
                MV,
            )?,
            nv_failure: counter(
                "nv_inference_request_failure",
                "Number of failed inference requests, all batch sizes",
                &["model", "version", "reason"],
            )?,
            nv_count: counter(
                "nv_inference_count",
                "Number of inferences performed (a batch of n counts n)",
                MV,
            )?,
            nv_exec_count: counter(
                "nv_inference_exec_count",
                "Number of model executions performed (batches)",
                MV,
            )?,
            nv_request_us: counter(
                "nv_inference_request_duration_us",
                "Cumulative inference request duration in microseconds",
                MV,
            )?,
            nv_queue_us: counter(
                "nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds",
                MV,
            )?,
            nv_compute_input_us: counter(
                "nv_inference_compute_input_duration_us",
                "Cumulative compute input duration in microseconds",
                MV,
            )?,
            nv_compute_infer_us: counter(
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute inference duration in microseconds",
                MV,
            )?,
            nv_compute_output_us: counter(
                "nv_inference_compute_output_duration_us",
                "Cumulative inference compute output duration in microseconds",
                MV,
            )?,
            nv_pending: gauge(
                "nv_inference_pending_request_count",
                "Instantaneous number of pending requests awaiting execution",
                MV,
            )?,
            request_seconds: histogram(
                "lrai_request_duration_seconds",
                "End-to-end request duration as the server saw it",
                &["model", "version", "protocol"],
                latency_buckets(),
            )?,
            requests_total: counter(
                "lrai_requests_total",
                "Inference requests by protocol and outcome",
                &["model", "version", "protocol", "status"],
            )?,
            queue_seconds: histogram(
                "lrai_queue_duration_seconds",
                "Time a request waited in the scheduler queue",
                MV,
                latency_buckets(),
            )?,
            compute_seconds: histogram(
                "lrai_compute_duration_seconds",
                "Time one batch spent in the backend (input copy, run, output split)",
                MV,
                latency_buckets(),
            )?,
            batch_size: histogram(
                "lrai_batch_size",
                "Rows per executed batch",
                MV,
                batch_buckets(),
            )?,
            batches_total: counter(
                "lrai_batches_total",
                "Batches sent, by the reason the batcher sent them",
                &["model", "version", "reason"],
            )?,
            queue_depth: gauge(
                "lrai_queue_depth",
                "Requests waiting in the scheduler queue",
                MV,
            )?,
            inflight: gauge(
                "lrai_inflight_requests",
                "Requests accepted and not yet answered",
                MV,
            )?,
            restarts: counter(
                "lrai_instance_restarts_total",
                "Model instances restarted by their supervisor",
                MV,
            )?,
            load_seconds: histogram(
                "lrai_model_load_duration_seconds",
                "Time to load a model version (sessions, warm-up) until READY",
                MV,
                latency_buckets(),
            )?,
            batcher_adaptive: gauge(
                "lrai_batcher_adaptive",
                "1 while the adaptive controller drives batching, 0 while the model runs its static settings (models with an SLO only)",
                MV,
            )?,
            batcher_max_batch: gauge(
                "lrai_batcher_max_batch_size",
                "Largest batch (rows) the batcher forms now",
                MV,
            )?,
            batcher_delay_us: gauge(
                "lrai_batcher_max_queue_delay_us",
                "Longest the oldest request may wait for a bigger batch now, in microseconds",
                MV,
            )?,
            slo_attainment: fgauge(
                "lrai_slo_attainment",
                "Fraction of requests within the latency objective over the last window",
                MV,
            )?,
            cost_prediction_error: fgauge(
                "lrai_cost_model_error",
                "Median relative error of the batch cost model's predictions over the last window",
                MV,
            )?,
            batcher_fallbacks: counter(
                "lrai_batcher_fallbacks_total",
                "Times the adaptive controller handed batching back to the static settings, by reason",
                &["model", "version", "reason"],
            )?,
            batcher_given_up: counter(
                "lrai_batcher_late_requests_total",
                "Requests the adaptive batcher moved behind the others because they could no longer meet the objective without making more requests late (they still run)",
                MV,
            )?,
        };
        let rollout = crate::rollout::RolloutFamilies::register(&registry)?;
        Ok(Metrics {
            registry,
            f: Arc::new(f),
            rollout,
        })
    }

    /// The `lrai_rollout_*` handles of one model.
    pub fn rollout(&self, model: &str) -> crate::rollout::RolloutMetrics {
        self.rollout.model(model)
    }

    /// Resolves the handles of one model version (and touches its label sets, so the
    /// series exist in `/metrics` before the first request).
    pub fn model(&self, model: &str, version: &str) -> Arc<ModelMetrics> {
        let f = &self.f;
        let mv = [model, version];
        let per_protocol = |p: Protocol| {
            let status = |s: RequestStatus| {
                f.requests_total
                    .with_label_values(&[model, version, p.as_str(), s.as_str()])
            };
            ProtocolHandles {
                duration: f
                    .request_seconds
                    .with_label_values(&[model, version, p.as_str()]),
                ok: status(RequestStatus::Ok),
                client_error: status(RequestStatus::ClientError),
                not_found: status(RequestStatus::NotFound),
                unavailable: status(RequestStatus::Unavailable),
                server_error: status(RequestStatus::ServerError),
            }
        };
        let failure = |r: FailureReason| {
            f.nv_failure
                .with_label_values(&[model, version, r.as_str()])
        };
        let batches = |r: BatchReason| {
            f.batches_total
                .with_label_values(&[model, version, r.as_str()])
        };
        Arc::new(ModelMetrics {
            model: model.to_string(),
            version: version.to_string(),
            nv_success: f.nv_success.with_label_values(&mv),
            nv_fail_rejected: failure(FailureReason::Rejected),
            nv_fail_canceled: failure(FailureReason::Canceled),
            nv_fail_backend: failure(FailureReason::Backend),
            nv_fail_other: failure(FailureReason::Other),
            nv_count: f.nv_count.with_label_values(&mv),
            nv_exec_count: f.nv_exec_count.with_label_values(&mv),
            nv_request_us: f.nv_request_us.with_label_values(&mv),
            nv_queue_us: f.nv_queue_us.with_label_values(&mv),
            nv_compute_input_us: f.nv_compute_input_us.with_label_values(&mv),
            nv_compute_infer_us: f.nv_compute_infer_us.with_label_values(&mv),
            nv_compute_output_us: f.nv_compute_output_us.with_label_values(&mv),
            nv_pending: f.nv_pending.with_label_values(&mv),
            http: per_protocol(Protocol::Http),
            grpc: per_protocol(Protocol::Grpc),
            queue_seconds: f.queue_seconds.with_label_values(&mv),
            compute_seconds: f.compute_seconds.with_label_values(&mv),
            batch_size: f.batch_size.with_label_values(&mv),
            batches: BatchReason::ALL.map(batches),
            queue_depth: f.queue_depth.with_label_values(&mv),
            inflight: f.inflight.with_label_values(&mv),
            restarts: f.restarts.with_label_values(&mv),
            load_seconds: f.load_seconds.with_label_values(&mv),
            adaptive: AdaptiveHandles {
                on: f.batcher_adaptive.with_label_values(&mv),
                max_batch: f.batcher_max_batch.with_label_values(&mv),
                delay_us: f.batcher_delay_us.with_label_values(&mv),
                attainment: f.slo_attainment.with_label_values(&mv),
                error: f.cost_prediction_error.with_label_values(&mv),
                fallbacks: f.batcher_fallbacks.clone(),
                given_up: f.batcher_given_up.with_label_values(&mv),
                status: std::sync::Mutex::new(None),
            },
            stats: StatCounters::default(),
            batch_stats: BatchStats::default(),
        })
    }

    /// Removes a model version's series (after unload), so `/metrics` stops showing it.
    pub fn forget(&self, model: &str, version: &str) {
        let f = &self.f;
        let mv = [model, version];
        for c in [
            &f.nv_success,
            &f.nv_count,
            &f.nv_exec_count,
            &f.nv_request_us,
            &f.nv_queue_us,
            &f.nv_compute_input_us,
            &f.nv_compute_infer_us,
            &f.nv_compute_output_us,
            &f.restarts,
            &f.batcher_given_up,
        ] {
            let _ = c.remove_label_values(&mv);
        }
        for g in [
            &f.nv_pending,
            &f.queue_depth,
            &f.inflight,
            &f.batcher_adaptive,
            &f.batcher_max_batch,
            &f.batcher_delay_us,
        ] {
            let _ = g.remove_label_values(&mv);
        }
        for g in [&f.slo_attainment, &f.cost_prediction_error] {
            let _ = g.remove_label_values(&mv);
        }
        for r in FallbackReason::ALL {
            let _ = f
                .batcher_fallbacks
                .remove_label_values(&[model, version, r.as_str()]);
        }
        for h in [
            &f.queue_seconds,
            &f.compute_seconds,
            &f.batch_size,
            &f.load_seconds,
        ] {
            let _ = h.remove_label_values(&mv);
        }
        for r in [
            FailureReason::Rejected,
            FailureReason::Canceled,
            FailureReason::Backend,
            FailureReason::Other,
        ] {
            let _ = f
                .nv_failure
                .remove_label_values(&[model, version, r.as_str()]);
        }
        for r in BatchReason::ALL {
            let _ = f
                .batches_total
                .remove_label_values(&[model, version, r.as_str()]);
        }
        for p in [Protocol::Http, Protocol::Grpc] {
            let _ = f
                .request_seconds
                .remove_label_values(&[model, version, p.as_str()]);
            for s in [
                RequestStatus::Ok,
                RequestStatus::ClientError,
                RequestStatus::NotFound,
                RequestStatus::Unavailable,
                RequestStatus::ServerError,
            ] {
                let _ =
                    f.requests_total
                        .remove_label_values(&[model, version, p.as_str(), s.as_str()]);
            }
        }
    }

    /// Renders everything in the Prometheus text format.
    ///
    /// # Errors
    /// [`crate::MonitorError::Prometheus`] if encoding fails.
    pub fn render(&self) -> Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[derive(Clone)]
struct ProtocolHandles {
    duration: Histogram,
    ok: IntCounter,
    client_error: IntCounter,
    not_found: IntCounter,
    unavailable: IntCounter,
    server_error: IntCounter,
}

/// The resolved metric handles and statistics of one model version. Every method is a
/// few atomic operations.
pub struct ModelMetrics {
    model: String,
    version: String,
    nv_success: IntCounter,
    nv_fail_rejected: IntCounter,
    nv_fail_canceled: IntCounter,
    nv_fail_backend: IntCounter,
    nv_fail_other: IntCounter,
    nv_count: IntCounter,
    nv_exec_count: IntCounter,
    nv_request_us: IntCounter,
    nv_queue_us: IntCounter,
    nv_compute_input_us: IntCounter,
    nv_compute_infer_us: IntCounter,
    nv_compute_output_us: IntCounter,
    nv_pending: IntGauge,
    http: ProtocolHandles,
    grpc: ProtocolHandles,
    queue_seconds: Histogram,
    compute_seconds: Histogram,
    batch_size: Histogram,
    batches: [IntCounter; 5],
    queue_depth: IntGauge,
    inflight: IntGauge,
    restarts: IntCounter,
    load_seconds: Histogram,
    adaptive: AdaptiveHandles,
    stats: StatCounters,
    batch_stats: BatchStats,
}

/// The adaptive controller's gauges; the status itself changes once per window, so a
/// mutex is fine.
struct AdaptiveHandles {
    on: IntGauge,
    max_batch: IntGauge,
    delay_us: IntGauge,
    attainment: Gauge,
    error: Gauge,
    fallbacks: IntCounterVec,
    given_up: IntCounter,
    status: std::sync::Mutex<Option<AdaptiveStatus>>,
}

/// Why the adaptive controller handed batching back to the static settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The cost model's predictions diverged from observed batch times.
    Prediction,
    /// SLO attainment collapsed under adaptive settings.
    Slo,
    /// The controller produced invalid settings or stopped dispatching.
    Stalled,
}

impl FallbackReason {
    /// Every reason.
    pub const ALL: [FallbackReason; 3] = [
        FallbackReason::Prediction,
        FallbackReason::Slo,
        FallbackReason::Stalled,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Prediction => "prediction",
            FallbackReason::Slo => "slo",
            FallbackReason::Stalled => "stalled",
        }
    }
}

/// What the adaptive controller is doing, for the statistics endpoint and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveStatus {
    /// `adaptive`, or `static` while fallen back.
    pub mode: &'static str,
    /// Why it fell back (static mode only).
    pub fallback_reason: Option<FallbackReason>,
    /// The objective: p95 end-to-end server latency.
    pub slo: Duration,
    /// Current largest batch in rows.
    pub max_batch_size: usize,
    /// Current longest wait for the oldest request.
    pub max_queue_delay: Duration,
    /// Cost model: fixed cost per batch, µs.
    pub cost_fixed_us: f64,
    /// Cost model: µs per input element (rows × elements per row).
    pub cost_per_element_us: f64,
    /// Median relative prediction error over the last window.
    pub prediction_error: f64,
    /// Fraction of requests within the SLO over the last window.
    pub attainment: f64,
    /// p95 latency of the last window.
    pub window_p95: Duration,
    /// Requests completed in the last window.
    pub window_requests: u64,
    /// Observed arrival rate, requests per second.
    pub arrival_rate: f64,
    /// Requests moved behind the others in the last window because they could no
    /// longer meet the SLO (they run when nothing on time waits).
    pub window_demoted: u64,
    /// Times it fell back so far.
    pub fallbacks: u64,
}

impl std::fmt::Debug for ModelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelMetrics({} v{})", self.model, self.version)
    }
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Timings of one executed batch, measured on the instance thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchTimings {
    /// Copying inputs into the batch buffer (and into the engine's tensors).
    pub compute_input: Duration,
    /// The backend run.
    pub compute_infer: Duration,
    /// Splitting outputs back per request.
    pub compute_output: Duration,
}

impl BatchTimings {
    /// The whole compute time.
    pub fn total(&self) -> Duration {
        self.compute_input + self.compute_infer + self.compute_output
    }
}

impl ModelMetrics {
    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The version label.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A request was accepted by the scheduler (queued).
    pub fn request_queued(&self) {
        self.nv_pending.inc();
        self.queue_depth.inc();
    }

    /// A queued request left the queue (into a batch, or dropped).
    pub fn request_dequeued(&self, waited: Duration) {
        self.nv_pending.dec();
        self.queue_depth.dec();
        self.queue_seconds.observe(waited.as_secs_f64());
        self.nv_queue_us.inc_by(us(waited));
        self.stats.queue.add(waited);
    }

    /// One step of an ensemble request finished on its model: its queue wait and compute
    /// times count in the ensemble's statistics as well, as Triton aggregates an
    /// ensemble's composing models (perf_analyzer reads the ensemble's queue count).
    pub fn ensemble_step_done(&self, waited: Duration, t: BatchTimings) {
        self.stats.queue.add(waited);
        self.stats.compute_input.add(t.compute_input);
        self.stats.compute_infer.add(t.compute_infer);
        self.stats.compute_output.add(t.compute_output);
    }

    /// A request entered / left the server (in-flight gauge).
    pub fn inflight_delta(&self, delta: i64) {
        self.inflight.add(delta);
    }

    /// One batch ran: `rows` rows from `requests` requests, sent for `reason`.
    pub fn batch_executed(
        &self,
        rows: usize,
        requests: usize,
        reason: BatchReason,
        t: BatchTimings,
    ) {
        let rows_u64 = rows as u64;
        self.nv_exec_count.inc();
        self.nv_count.inc_by(rows_u64);
        #[allow(clippy::cast_precision_loss)]
        self.batch_size.observe(rows as f64);
        self.batches[BatchReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0)]
        .inc();
        self.compute_seconds.observe(t.total().as_secs_f64());
        // Triton accumulates a batch's compute time once per request in it.
        let n = requests as u64;
        self.nv_compute_input_us
            .inc_by(us(t.compute_input).saturating_mul(n));
        self.nv_compute_infer_us
            .inc_by(us(t.compute_infer).saturating_mul(n));
        self.nv_compute_output_us
            .inc_by(us(t.compute_output).saturating_mul(n));
        self.stats.compute_input.add_n(t.compute_input, n);
        self.stats.compute_infer.add_n(t.compute_infer, n);
        self.stats.compute_output.add_n(t.compute_output, n);
        self.stats
            .inference_count
            .fetch_add(rows_u64, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .execution_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.batch_stats.record(rows, t);
    }

    /// A request finished in the server (any outcome), as seen by the front end.
    pub fn request_done(
        &self,
        protocol: Protocol,
        status: RequestStatus,
        failure: Option<FailureReason>,
        took: Duration,
    ) {
        let h = match protocol {
            Protocol::Http => &self.http,
            Protocol::Grpc => &self.grpc,
        };
        h.duration.observe(took.as_secs_f64());
        match status {
            RequestStatus::Ok => h.ok.inc(),
            RequestStatus::ClientError => h.client_error.inc(),
            RequestStatus::NotFound => h.not_found.inc(),
            RequestStatus::Unavailable => h.unavailable.inc(),
            RequestStatus::ServerError => h.server_error.inc(),
        }
        match failure {
            None => {
                self.nv_success.inc();
                self.nv_request_us.inc_by(us(took));
                self.stats.success.add(took);
                self.stats.touch_last_inference();
            }
            Some(reason) => {
                match reason {
                    FailureReason::Rejected => self.nv_fail_rejected.inc(),
                    FailureReason::Canceled => self.nv_fail_canceled.inc(),
                    FailureReason::Backend => self.nv_fail_backend.inc(),
                    FailureReason::Other => self.nv_fail_other.inc(),
                }
                self.stats.fail.add(took);
            }
        }
    }

    /// An instance was restarted by its supervisor.
    pub fn instance_restarted(&self) {
        self.restarts.inc();
        self.stats
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The version finished loading.
    pub fn loaded(&self, took: Duration) {
        self.load_seconds.observe(took.as_secs_f64());
    }

    /// The adaptive controller published a new status (once per window).
    pub fn adaptive_update(&self, status: AdaptiveStatus) {
        let a = &self.adaptive;
        a.on.set(i64::from(status.mode == "adaptive"));
        a.max_batch
            .set(i64::try_from(status.max_batch_size).unwrap_or(i64::MAX));
        a.delay_us
            .set(i64::try_from(us(status.max_queue_delay)).unwrap_or(i64::MAX));
        a.attainment.set(status.attainment);
        a.error.set(status.prediction_error);
        a.given_up.inc_by(status.window_demoted);
        *a.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// The adaptive controller fell back to static settings.
    pub fn adaptive_fallback(&self, reason: FallbackReason) {
        self.adaptive
            .fallbacks
            .with_label_values(&[&self.model, &self.version, reason.as_str()])
            .inc();
    }

    /// The adaptive controller's last status (models with an SLO only).
    pub fn adaptive_status(&self) -> Option<AdaptiveStatus> {
        self.adaptive
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Statistics in Triton's shape.
    pub fn snapshot(&self) -> ModelStatsSnapshot {
        self.stats
            .snapshot(&self.model, &self.version, &self.batch_stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_triton_names_and_histograms_after_touch() {
        let m = Metrics::new().unwrap();
        let mm = m.model("digits_mlp", "1");
        let text = m.render().unwrap();
        assert!(
            text.contains("nv_inference_request_success{model=\"digits_mlp\",version=\"1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("lrai_batch_size_bucket{model=\"digits_mlp\",version=\"1\",le=\"64\"} 0")
        );
        mm.batch_executed(
            3,
            2,
            BatchReason::Delay,
            BatchTimings {
                compute_infer: Duration::from_micros(250),
                ..Default::default()
            },
        );
        mm.request_done(
            Protocol::Grpc,
            RequestStatus::Ok,
            None,
            Duration::from_millis(2),
        );
        let text = m.render().unwrap();
        assert!(text.contains("nv_inference_count{model=\"digits_mlp\",version=\"1\"} 3"));
        assert!(text.contains("nv_inference_exec_count{model=\"digits_mlp\",version=\"1\"} 1"));
        assert!(text.contains(
            "nv_inference_compute_infer_duration_us{model=\"digits_mlp\",version=\"1\"} 500"
        ));
        assert!(
            text.contains(
                "lrai_batches_total{model=\"digits_mlp\",reason=\"delay\",version=\"1\"} 1"
            )
        );
        assert!(text.contains("lrai_requests_total{model=\"digits_mlp\",protocol=\"grpc\",status=\"ok\",version=\"1\"} 1"));
        let s = mm.snapshot();
        assert_eq!(s.inference_count, 3);
        assert_eq!(s.batch_stats.len(), 1);
        assert_eq!(s.batch_stats[0].batch_size, 3);
        m.forget("digits_mlp", "1");
        assert!(!m.render().unwrap().contains("digits_mlp"));
    }

    #[test]
    fn latency_buckets_are_geometric_from_10us() {
        let b = latency_buckets();
        assert!((b[0] - 10e-6).abs() < 1e-12);
        assert!((b[1] / b[0] - 1.5).abs() < 1e-9);
        assert!(*b.last().unwrap() > 30.0);
    }
}
