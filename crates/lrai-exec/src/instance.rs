//! One instance actor: the thread body, batch execution, and the supervisor loop that
//! rebuilds the session after a panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lrai_backend::Session;
use lrai_core::Tensor;
use lrai_monitor::BatchTimings;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{Batch, ExecError, InstanceSpec, JobOutput, ReplyError, Result};

/// Consecutive failed batches after which a session is considered broken and rebuilt.
const FAILURES_BEFORE_RESTART: u32 = 3;

/// What an instance is doing, published on a `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    /// Thread started, session not yet serving.
    Starting,
    /// Serving.
    Ready,
    /// Rebuilding its session after a failure.
    Restarting {
        /// Restart attempt (1-based) since the last healthy batch.
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// Stopped (shutdown).
    Stopped,
}

pub(crate) struct Actor<E> {
    pub(crate) id: usize,
    pub(crate) spec: InstanceSpec,
    pub(crate) rx: mpsc::Receiver<Batch<E>>,
    pub(crate) idle: crate::IdleNotifier,
    pub(crate) state: watch::Sender<InstanceState>,
}

/// Why a session must be rebuilt.
enum Broken {
    Panicked(String),
    Failing(String),
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".into())
}

impl<E: ReplyError> Actor<E> {
    pub(crate) fn run(mut self, first: Arc<dyn Session>) {
        let mut session = Some(first);
        let mut attempt = 0u32;
        loop {
            let current = match session.take() {
                Some(s) => s,
                None => match self.rebuild(attempt) {
                    Some(s) => s,
                    None => break,
                },
            };
            let _ = self.state.send(InstanceState::Ready);
            match self.serve(&current, &mut attempt) {
                None => break,
                Some(Broken::Panicked(msg) | Broken::Failing(msg)) => {
                    self.spec.metrics.instance_restarted();
                    attempt += 1;
                    tracing::warn!(model = %self.spec.model, instance = self.id, attempt, reason = %msg, "instance restarting");
                    let _ = self.state.send(InstanceState::Restarting {
                        attempt,
                        reason: msg,
                    });
                }
            }
        }
        let _ = self.state.send(InstanceState::Stopped);
    }

    /// Builds a new session after `attempt` failures, waiting the backoff first; `None`
    /// when the pool shut down meanwhile.
    fn rebuild(&mut self, attempt: u32) -> Option<Arc<dyn Session>> {
        let mut attempt = attempt.max(1);
        loop {
            let factor = 1u32 << (attempt - 1).min(16);
            let delay = self
                .spec
                .min_backoff
                .saturating_mul(factor)
                .min(self.spec.max_backoff);
            if self.wait_or_closed(delay) {
                return None;
            }
            match (self.spec.factory)() {
                Ok(s) => {
                    tracing::info!(model = %self.spec.model, instance = self.id, attempt, "instance restarted");
                    return Some(s);
                }
                Err(e) => {
                    tracing::error!(model = %self.spec.model, instance = self.id, attempt, error = %e, "instance could not be rebuilt");
                    attempt += 1;
                    let _ = self.state.send(InstanceState::Restarting {
                        attempt,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// Sleeps for `delay`, or returns true early when the pool was dropped.
    fn wait_or_closed(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.rx.is_closed() {
                return true;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        self.rx.is_closed()
    }

    /// Serves batches until shutdown (`None`) or until the session is broken.
    fn serve(&mut self, session: &Arc<dyn Session>, attempt: &mut u32) -> Option<Broken> {
        let mut failures = 0u32;
        loop {
            if !(self.idle)(self.id) {
                return None;
            }
            let batch = self.rx.blocking_recv()?;
            match self.execute(session, batch) {
                Ok(()) => {
                    failures = 0;
                    *attempt = 0;
                }
                Err(Broken::Failing(msg)) => {
                    failures += 1;
                    if failures >= FAILURES_BEFORE_RESTART {
                        return Some(Broken::Failing(format!(
                            "{failures} batches failed in a row; last: {msg}"
                        )));
                    }
                }
                Err(panicked) => return Some(panicked),
            }
        }
    }

    /// Runs one batch and answers every request in it.
    fn execute(
        &self,
        session: &Arc<dyn Session>,
        batch: Batch<E>,
    ) -> std::result::Result<(), Broken> {
        let rows: Vec<usize> = batch.jobs.iter().map(|j| j.rows).collect();
        let total_rows: usize = rows.iter().sum();
        let mut replies = Vec::with_capacity(batch.jobs.len());
        let mut parts = Vec::with_capacity(batch.jobs.len());
        let mut spans = Vec::with_capacity(batch.jobs.len());
        for job in batch.jobs {
            replies.push((job.reply, job.padded_len));
            parts.push(job.inputs);
            spans.push(job.span);
        }
        let span = tracing::debug_span!("batch", model = %self.spec.model, instance = self.id, size = total_rows, reason = batch.reason.as_str());
        for s in &spans {
            span.follows_from(s);
        }
        let _entered = span.enter();
        let batching = self.spec.batching;
        let model = self.spec.model.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_batch(session.as_ref(), parts, &rows, batching, &model)
        }));
        match outcome {
            Ok(Ok((per_job, timings))) => {
                self.spec
                    .metrics
                    .batch_executed(total_rows, replies.len(), batch.reason, timings);
                for ((reply, padded_len), outputs) in replies.into_iter().zip(per_job) {
                    // The client may have gone; nothing to do then.
                    let _ = reply.send(Ok(JobOutput {
                        outputs,
                        timings,
                        batch_rows: total_rows,
                        padded_len,
                    }));
                }
                Ok(())
            }
            Ok(Err(e)) => {
                let msg = e.to_string();
                answer_all(replies, &e);
                match e {
                    ExecError::Backend(_) => Err(Broken::Failing(msg)),
                    // A split problem is the model's shape, not a broken session.
                    _ => Ok(()),
                }
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                tracing::error!(model = %self.spec.model, instance = self.id, panic = %message, "backend panicked");
                let e = ExecError::InstanceCrashed {
                    model: self.spec.model.clone(),
                    instance: self.id,
                    message: message.clone(),
                };
                answer_all(replies, &e);
                Err(Broken::Panicked(message))
            }
        }
    }
}

type Reply<E> = oneshot::Sender<std::result::Result<JobOutput, E>>;

fn answer_all<E: ReplyError>(replies: Vec<(Reply<E>, Option<usize>)>, e: &ExecError) {
    for (r, _) in replies {
        let _ = r.send(Err(E::from(e.clone())));
    }
}

type PerJob = Vec<Vec<(String, Tensor)>>;

/// Concatenates the jobs' inputs (one copy), runs the session, splits outputs per job
/// (slices of the output buffers, no copy).
fn run_batch(
    session: &dyn Session,
    mut parts: Vec<Vec<(String, Tensor)>>,
    rows: &[usize],
    batching: bool,
    model: &str,
) -> Result<(PerJob, BatchTimings)> {
    let t0 = Instant::now();
    let inputs = if parts.len() == 1 || !batching {
        // One request: its tensors go to the backend as they are.
        parts.swap_remove(0)
    } else {
        let names: Vec<String> = parts[0].iter().map(|(n, _)| n.clone()).collect();
        names
            .into_iter()
            .map(|name| {
                let pieces: Vec<&Tensor> = parts
                    .iter()
                    .filter_map(|p| p.iter().find(|(n, _)| *n == name).map(|(_, t)| t))
                    .collect();
                lrai_core::concat(&pieces)
                    .map(|t| (name.clone(), t))
                    .map_err(|e| ExecError::Split {
                        model: model.to_string(),
                        reason: format!("input '{name}': {e}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?
    };
    let t1 = Instant::now();
    let outputs = session
        .run(&inputs)
        .map_err(|e| ExecError::Backend(e.to_string()))?;
    let t2 = Instant::now();
    let per_job = if rows.len() == 1 {
        vec![outputs]
    } else {
        let mut per_job: PerJob = vec![Vec::with_capacity(outputs.len()); rows.len()];
        for (name, t) in outputs {
            let pieces = lrai_core::split(&t, rows).map_err(|e| ExecError::Split {
                model: model.to_string(),
                reason: format!(
                    "output '{name}' cannot be split back into the batch's requests: {e}"
                ),
            })?;
            for (slot, piece) in per_job.iter_mut().zip(pieces) {
                slot.push((name.clone(), piece));
            }
        }
        per_job
    };
    let t3 = Instant::now();
    Ok((
        per_job,
        BatchTimings {
            compute_input: t1 - t0,
            compute_infer: t2 - t1,
            compute_output: t3 - t2,
        },
    ))
}
