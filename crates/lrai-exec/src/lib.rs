//! The execution layer: each model instance is an actor with its own named OS thread
//! that owns a backend [`Session`], takes [`Batch`]es from a bounded channel, and answers
//! every request of the batch on its own oneshot. Inference never runs on the async
//! runtime.
//!
//! A supervisor loop on the same thread catches a backend panic (`catch_unwind`, which is
//! why no profile sets `panic = "abort"`), fails only the requests of that batch with a
//! clear error, and rebuilds the session with exponential backoff; other instances and
//! models keep serving. Three batches failing in a row also count as a broken session.
//!
//! The scheduler (`lrai-sched`) sits above: each instance reports itself idle through the
//! scheduler's [`IdleNotifier`] (a channel send), and the scheduler hands it a batch. What the instance learns (outputs, timings) goes back on
//! the oneshots, never as a call upward.

use std::sync::Arc;
use std::time::Duration;

use lrai_backend::{BackendError, Session};
use lrai_core::Tensor;
use lrai_monitor::{BatchReason, BatchTimings, ModelMetrics};
use tokio::sync::{mpsc, oneshot, watch};

mod instance;

pub use instance::InstanceState;

/// How an instance says it is idle: sends its index on the scheduler's channel; returns
/// false when the scheduler is gone (the instance then stops).
pub type IdleNotifier = Arc<dyn Fn(usize) -> bool + Send + Sync>;

/// Builds a fresh session (used to restart an instance).
pub type SessionFactory = Arc<dyn Fn() -> Result<Arc<dyn Session>, BackendError> + Send + Sync>;

/// Errors a request can get from the execution layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The backend failed on this batch.
    #[error("{0}")]
    Backend(String),
    /// The instance panicked while running this request's batch; it is being restarted.
    #[error(
        "instance {instance} of model '{model}' crashed while running this request ({message}); it is being restarted, retry the request"
    )]
    InstanceCrashed {
        /// Model name.
        model: String,
        /// Instance index.
        instance: usize,
        /// The panic message.
        message: String,
    },
    /// Outputs could not be split back per request.
    #[error("model '{model}': {reason}")]
    Split {
        /// Model name.
        model: String,
        /// Why.
        reason: String,
    },
    /// The instance went away before answering (shutdown).
    #[error("model '{model}' is shutting down; the request was not run")]
    ShuttingDown {
        /// Model name.
        model: String,
    },
}

/// Result with [`ExecError`].
pub type Result<T, E = ExecError> = std::result::Result<T, E>;

/// What one request gets back.
#[derive(Debug)]
pub struct JobOutput {
    /// Outputs for this request's rows, in the session's output order.
    pub outputs: Vec<(String, Tensor)>,
    /// Timings of the batch it ran in.
    pub timings: BatchTimings,
    /// Rows in that batch.
    pub batch_rows: usize,
    /// The job's `padded_len`, handed back.
    pub padded_len: Option<usize>,
}

/// One request inside a batch. `E` is the error type of the layer that queued it (it
/// converts from [`ExecError`]), so that layer's own failures (timeouts) travel on the
/// same channel without an extra hop.
#[derive(Debug)]
pub struct Job<E = ExecError> {
    /// The request's inputs (already checked against the model).
    pub inputs: Vec<(String, Tensor)>,
    /// Rows this request adds along axis 0 (1 for models that don't batch).
    pub rows: usize,
    /// Where the answer goes.
    pub reply: oneshot::Sender<std::result::Result<JobOutput, E>>,
    /// The request's span, entered on the instance thread.
    pub span: tracing::Span,
    /// Length its variable axis was padded to so it could share the batch (set by the
    /// scheduler, handed back in [`JobOutput::padded_len`] so the padding can be cut off).
    pub padded_len: Option<usize>,
}

/// Requests to run together.
#[derive(Debug)]
pub struct Batch<E = ExecError> {
    /// The requests, in the order their rows are concatenated.
    pub jobs: Vec<Job<E>>,
    /// Why the batcher sent it.
    pub reason: BatchReason,
}

impl<E> Batch<E> {
    /// Total rows.
    pub fn rows(&self) -> usize {
        self.jobs.iter().map(|j| j.rows).sum()
    }
}

/// How instances are built and restarted.
#[derive(Clone)]
pub struct InstanceSpec {
    /// Model name (thread names, errors, logs).
    pub model: String,
    /// Makes a new session for a restart.
    pub factory: SessionFactory,
    /// Whether requests' inputs are concatenated along axis 0 (`max_batch_size > 0`).
    pub batching: bool,
    /// First restart delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest restart delay.
    pub max_backoff: Duration,
    /// Metrics of the model version.
    pub metrics: Arc<ModelMetrics>,
}

impl std::fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSpec")
            .field("model", &self.model)
            .field("batching", &self.batching)
            .finish_non_exhaustive()
    }
}

/// Error types a [`Job`] can carry.
pub trait ReplyError: From<ExecError> + Send + std::fmt::Debug + 'static {}
impl<T: From<ExecError> + Send + std::fmt::Debug + 'static> ReplyError for T {}

/// The instances of one model version.
#[derive(Debug)]
pub struct InstancePool<E = ExecError> {
    senders: Vec<mpsc::Sender<Batch<E>>>,
    states: Vec<watch::Receiver<InstanceState>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl<E: ReplyError> InstancePool<E> {
    /// Starts one actor per initial session (each already built by the caller, so a model
    /// that cannot load fails before any thread starts).
    ///
    /// # Errors
    /// An I/O error if a thread cannot be spawned.
    pub fn start(
        spec: &InstanceSpec,
        sessions: Vec<Arc<dyn Session>>,
        idle: &IdleNotifier,
    ) -> std::io::Result<InstancePool<E>> {
        let n = sessions.len();
        let mut senders = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (id, session) in sessions.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(1);
            let (state_tx, state_rx) = watch::channel(InstanceState::Starting);
            let actor = instance::Actor {
                id,
                spec: spec.clone(),
                rx,
                idle: Arc::clone(idle),
                state: state_tx,
            };
            // Linux keeps 15 bytes of a thread name: the distinguishing part goes first.
            let name = format!("x{id}-{}", spec.model);
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || actor.run(session))?;
            senders.push(tx);
            states.push(state_rx);
            threads.push(handle);
        }
        Ok(InstancePool {
            senders,
            states,
            threads,
        })
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// True when the pool has no instances.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Current state of every instance.
    pub fn states(&self) -> Vec<InstanceState> {
        self.states.iter().map(|s| s.borrow().clone()).collect()
    }

    /// Hands a batch to an instance that reported idle.
    ///
    /// # Errors
    /// Gives the batch back when the instance has stopped.
    pub fn dispatch(&self, instance: usize, batch: Batch<E>) -> std::result::Result<(), Batch<E>> {
        match self.senders.get(instance) {
            Some(tx) => tx.try_send(batch).map_err(|e| match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            }),
            None => Err(batch),
        }
    }

    /// Stops the instances after their current batch and waits for their threads.
    pub fn shutdown(self) {
        drop(self.senders);
        for t in self.threads {
            // A thread that panicked outside catch_unwind has already reported; nothing to add.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
