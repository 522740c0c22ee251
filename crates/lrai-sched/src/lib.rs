//! The scheduler: one bounded queue per model version (one lane per priority level) and
//! a batcher task that forms batches with Triton's dynamic-batching semantics
//! ([`policy`]) and hands them to idle instances of the `lrai-exec` pool.
//!
//! Admission is a counter checked before anything is queued: a full queue answers
//! [`SchedError::QueueFull`] at once (503 / UNAVAILABLE upstream) instead of growing
//! memory. Requests carry deadlines; expired ones are answered with
//! [`SchedError::Timeout`] without being computed, and requests whose client has gone
//! are dropped before batching. With a latency objective the [`adaptive`] controller
//! chooses batch size and queue delay instead, and hands back to the static policy when
//! its estimates stop being trustworthy.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use lrai_core::Tensor;

pub mod adaptive;
pub mod pad;
pub mod policy;
mod queue;
mod scheduler;

pub use adaptive::{AdaptiveConfig, Controller, CostModel};
pub use pad::{Padded, Padding};
pub use policy::{BatchPolicy, Candidate, Decision, decide};
pub use scheduler::Scheduler;

/// What to do with a request whose timeout expires in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeoutAction {
    /// Answer it with a timeout error (Triton's default).
    #[default]
    Reject,
    /// Keep it, behind everything else.
    Delay,
}

/// Queue policy of one priority level (Triton's `ModelQueuePolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Action on timeout.
    pub timeout_action: TimeoutAction,
    /// Timeout applied when the request gives none; `None` = no timeout.
    pub default_timeout: Option<Duration>,
    /// Whether a request's own `timeout` parameter is honoured.
    pub allow_timeout_override: bool,
    /// Most requests waiting at this level (always bounded).
    pub max_queue_size: usize,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            timeout_action: TimeoutAction::Reject,
            default_timeout: None,
            allow_timeout_override: true,
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
        }
    }
}

/// Queue bound used when the config sets none (Triton's 0 means unbounded; LRAI never
/// queues without a bound).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1024;

/// Everything the scheduler of one model version needs.
#[derive(Debug, Clone)]
pub struct SchedConfig {
    /// Model name (errors, logs).
    pub model: String,
    /// Batch formation.
    pub policy: BatchPolicy,
    /// Priority level used when a request gives none (1-based; lower is served first).
    pub default_priority: u32,
    /// One queue policy per priority level; its length is the number of levels (≥ 1).
    pub levels: Vec<QueuePolicy>,
    /// A latency objective: batching adapts to it (and falls back to `policy`); `None`
    /// = `policy` exactly.
    pub adaptive: Option<AdaptiveConfig>,
    /// Sequence-length buckets (`lrai.pad_buckets`): requests in one bucket share
    /// batches, padded to the batch's longest; `None` = exact shapes only.
    pub padding: Option<Padding>,
}

impl SchedConfig {
    /// One level with the default queue policy.
    pub fn simple(model: &str, policy: BatchPolicy) -> SchedConfig {
        SchedConfig {
            model: model.to_string(),
            policy,
            default_priority: 1,
            levels: vec![QueuePolicy::default()],
            adaptive: None,
            padding: None,
        }
    }
}

/// One inference request as the scheduler sees it: inputs already checked against the
/// model (names, datatypes, shapes).
#[derive(Debug)]
pub struct Request {
    /// Inputs by name.
    pub inputs: Vec<(String, Tensor)>,
    /// Requested priority level (1-based); `None` or 0 = the model's default.
    pub priority: Option<u32>,
    /// Requested timeout; used only when the queue policy allows overrides.
    pub timeout: Option<Duration>,
    /// The request's span.
    pub span: tracing::Span,
}

/// Errors a request can get from the scheduler.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchedError {
    /// The queue is at its bound.
    #[error(
        "model '{model}' is overloaded: {waiting} requests are already queued at priority {priority} (max_queue_size {limit}); retry after a short backoff"
    )]
    QueueFull {
        /// Model name.
        model: String,
        /// Priority level.
        priority: u32,
        /// Requests waiting.
        waiting: usize,
        /// The bound.
        limit: usize,
    },
    /// The request waited longer than its timeout.
    #[error(
        "request to model '{model}' timed out after {waited_us} µs in the queue (timeout {timeout_us} µs); raise the timeout or reduce the load"
    )]
    Timeout {
        /// Model name.
        model: String,
        /// Time waited.
        waited_us: u64,
        /// Its timeout.
        timeout_us: u64,
    },
    /// The request cannot finish before its deadline even if it ran alone now.
    #[error(
        "request to model '{model}' cannot finish before its deadline ({left_us} µs left, running it alone takes about {needed_us} µs); it was not computed: raise the timeout or reduce the load"
    )]
    Unmeetable {
        /// Model name.
        model: String,
        /// Time left until the deadline.
        left_us: u64,
        /// Predicted run time.
        needed_us: u64,
    },
    /// A priority outside the configured levels.
    #[error(
        "model '{model}' has priority levels 1..={levels}; priority {given} is not one of them"
    )]
    BadPriority {
        /// Model name.
        model: String,
        /// Levels.
        levels: usize,
        /// Given priority.
        given: u32,
    },
    /// Batched inputs disagree on axis 0, or a request exceeds max_batch_size.
    #[error("model '{model}': {reason}")]
    BatchDim {
        /// Model name.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// The model is shutting down or has no running instance.
    #[error("model '{model}' is not serving (unloading or shutting down); retry later")]
    NotServing {
        /// Model name.
        model: String,
    },
    /// The execution layer failed the request.
    #[error(transparent)]
    Exec(#[from] lrai_exec::ExecError),
}

/// Result with [`SchedError`].
pub type Result<T, E = SchedError> = std::result::Result<T, E>;

/// Rows this request adds and the key of its non-batch shapes.
/// Rows, shape-group key and (for paddable requests) length on the padded axis. With
/// padding, the key has the bucket in place of that length.
fn batch_key(
    config: &SchedConfig,
    inputs: &[(String, Tensor)],
) -> Result<(usize, u64, Option<usize>)> {
    let mut parts: Vec<(&str, lrai_core::DataType, &[usize])> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.dtype(), t.shape()))
        .collect();
    parts.sort_by(|a, b| a.0.cmp(b.0));
    let batching = config.policy.max_batch_size > 0;
    let padded = config
        .padding
        .as_ref()
        .filter(|_| batching)
        .and_then(|p| Some((p.axis, p.paddable_len(inputs)?, p)))
        .and_then(|(axis, len, p)| Some((axis, len, p.bucket(len)?)));
    let mut hasher = DefaultHasher::new();
    let mut rows: Option<usize> = None;
    for (name, dtype, shape) in &parts {
        name.hash(&mut hasher);
        dtype.hash(&mut hasher);
        if batching {
            let Some((&first, rest)) = shape.split_first() else {
                return Err(SchedError::BatchDim {
                    model: config.model.clone(),
                    reason: format!(
                        "input '{name}' is a scalar, but the model batches along axis 0"
                    ),
                });
            };
            match padded {
                Some((axis, _, bucket)) if axis >= 1 && axis <= rest.len() => {
                    let mut dims = rest.to_vec();
                    dims[axis - 1] = bucket;
                    dims.hash(&mut hasher);
                }
                _ => rest.hash(&mut hasher),
            }
            match rows {
                Some(r) if r != first => {
                    return Err(SchedError::BatchDim {
                        model: config.model.clone(),
                        reason: format!(
                            "inputs disagree on the batch dimension ({r} vs {first} rows for '{name}')"
                        ),
                    });
                }
                _ => rows = Some(first),
            }
        } else {
            shape.hash(&mut hasher);
        }
    }
    let rows = if batching { rows.unwrap_or(1) } else { 1 };
    if batching && rows > config.policy.max_batch_size {
        return Err(SchedError::BatchDim {
            model: config.model.clone(),
            reason: format!(
                "a request of {rows} rows exceeds max_batch_size {}",
                config.policy.max_batch_size
            ),
        });
    }
    Ok((rows, hasher.finish(), padded.map(|p| p.1)))
}

#[cfg(test)]
mod tests;
