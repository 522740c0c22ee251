//! Ensembles: Triton's `platform: "ensemble"`, a DAG of other models connected by tensor
//! names (`ensemble_scheduling { step [ { model_name, model_version, input_map,
//! output_map } ] }`), run inside the server.
//!
//! - [`plan`]: the DAG from the config alone, checked as Triton checks it (one producer
//!   per tensor, no cycle, every input used, every output produced);
//! - [`check`]: the DAG against the step models' effective configs when it loads (names,
//!   datatypes, shapes, batch sizes);
//! - [`load`]: building the ensemble's handle, and the start-up order that loads step
//!   models before the ensembles that use them;
//! - here: running a request. Each step goes through its model's own [`ModelHandle`]
//!   (input checks, queue, batcher), so ensemble steps batch with the model's other
//!   traffic. Step models are looked up per request in the live model table, so a version
//!   swap of a step model takes effect in the ensemble at once, and an ensemble whose step
//!   model is unloaded reports itself not ready with the reason. Tensors pass between
//!   steps as the same `Bytes`-backed tensors (a reference count, no re-encoding); steps
//!   whose inputs are ready run concurrently; an error names the failing step.

pub(crate) mod check;
pub(crate) mod load;
pub(crate) mod plan;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lrai_core::Tensor;
use lrai_exec::JobOutput;
use lrai_monitor::{BatchTimings, ModelMetrics};
use tokio::task::JoinSet;

use crate::handle::ModelHandle;
use crate::repository::ModelLookup;
use crate::{RepoError, Result};
use plan::Plan;

/// How deep ensembles may nest in ensembles; deeper means a cycle made by reloading one.
const MAX_NESTING: usize = 8;

/// A loaded ensemble: its checked DAG and where to find its step models.
#[derive(Debug)]
pub(crate) struct Ensemble {
    name: String,
    plan: Arc<Plan>,
    models: ModelLookup,
    /// Ensemble output names, in config order.
    outputs: Vec<String>,
    /// The ensemble's own statistics (its steps' queue and compute times add up here).
    metrics: Arc<ModelMetrics>,
}

/// A finished step: its outputs, the time it took and its batch's compute times.
struct StepDone {
    outputs: Vec<(String, Tensor)>,
    took: Duration,
    timings: BatchTimings,
}

type StepResult = (usize, Result<StepDone>);
type StepFuture = Pin<Box<dyn Future<Output = StepResult> + Send>>;

/// The per-request settings every step gets.
struct StepRequest {
    priority: Option<u32>,
    timeout: Option<Duration>,
    span: tracing::Span,
}

impl Ensemble {
    fn step_error(&self, step: usize, source: RepoError) -> RepoError {
        RepoError::EnsembleStep {
            ensemble: self.name.clone(),
            step,
            model: self.plan.steps[step].model.clone(),
            source: Box::new(source),
        }
    }

    fn step_handle(&self, step: usize) -> Result<Arc<ModelHandle>> {
        let s = &self.plan.steps[step];
        let version = s.version.map(|v| v.to_string());
        self.models.get(&s.model, version.as_deref())
    }

    /// Why the ensemble can't serve now (a step model not ready), or `None`.
    pub(crate) fn unready_reason(&self, depth: usize) -> Option<String> {
        if depth > MAX_NESTING {
            return Some(format!(
                "ensembles nest more than {MAX_NESTING} deep through '{}'; an ensemble that \
                 runs itself through others is a cycle",
                self.name
            ));
        }
        for (i, s) in self.plan.steps.iter().enumerate() {
            let why = match self.step_handle(i) {
                Err(e) => e.to_string(),
                Ok(h) => match h.unready_reason_at(depth + 1) {
                    Some(r) => r,
                    None => continue,
                },
            };
            return Some(format!("{} is not ready: {why}", s.label(i)));
        }
        None
    }

    /// Runs the DAG on checked ensemble inputs.
    ///
    /// # Errors
    /// [`RepoError::EnsembleStep`] naming the first step that failed, with its error.
    pub(crate) async fn infer(
        &self,
        inputs: Vec<(String, Tensor)>,
        priority: Option<u32>,
        timeout: Option<Duration>,
        span: tracing::Span,
    ) -> Result<JobOutput> {
        let req = StepRequest {
            priority,
            timeout,
            span,
        };
        let rows = inputs
            .first()
            .map_or(1, |(_, t)| t.shape().first().copied().unwrap_or(1));
        let mut values: HashMap<String, Tensor> = inputs.into_iter().collect();
        let mut waiting: Vec<usize> = self.plan.steps.iter().map(|s| s.after.len()).collect();
        // Dropping the set (on an error, or when the caller goes away) aborts the steps
        // still running; their queued requests are then dropped as abandoned.
        let mut running: JoinSet<StepResult> = JoinSet::new();
        for i in (0..self.plan.steps.len()).filter(|&i| waiting[i] == 0) {
            running.spawn(self.start(i, &values, &req)?);
        }
        while let Some(joined) = running.join_next().await {
            // A task only fails to join if it panicked; which step is then unknown.
            let (i, result) = joined.map_err(|e| RepoError::Ensemble {
                ensemble: self.name.clone(),
                reason: format!("a step's task failed: {e}"),
            })?;
            let done = result.map_err(|e| self.step_error(i, e))?;
            let waited = done.took.saturating_sub(done.timings.total());
            self.metrics.ensemble_step_done(waited, done.timings);
            let step = &self.plan.steps[i];
            for (name, tensor) in done.outputs {
                if let Some((_, t)) = step.outputs.iter().find(|(o, _)| *o == name) {
                    values.insert(t.clone(), tensor);
                }
            }
            for &n in &self.plan.next[i] {
                waiting[n] -= 1;
                if waiting[n] == 0 {
                    running.spawn(self.start(n, &values, &req)?);
                }
            }
        }
        let outputs = self
            .outputs
            .iter()
            .map(|name| {
                values
                    .remove(name)
                    .map(|t| (name.clone(), t))
                    .ok_or_else(|| RepoError::Ensemble {
                        ensemble: self.name.clone(),
                        reason: format!("no step produced ensemble output '{name}'"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JobOutput {
            outputs,
            timings: BatchTimings::default(),
            batch_rows: rows,
            padded_len: None,
        })
    }

    /// The future that runs step `i` on its model's handle, with its inputs taken from
    /// `values` (clones share the tensors' bytes).
    fn start(
        &self,
        i: usize,
        values: &HashMap<String, Tensor>,
        req: &StepRequest,
    ) -> Result<StepFuture> {
        let step = &self.plan.steps[i];
        let handle = self.step_handle(i).map_err(|e| self.step_error(i, e))?;
        let mut inputs = Vec::with_capacity(step.inputs.len());
        for (input, tensor) in &step.inputs {
            let value = values.get(tensor).cloned().ok_or_else(|| {
                self.step_error(
                    i,
                    RepoError::Ensemble {
                        ensemble: self.name.clone(),
                        reason: format!("ensemble tensor '{tensor}' was not produced"),
                    },
                )
            })?;
            inputs.push((input.clone(), value));
        }
        let span = tracing::debug_span!(parent: &req.span, "ensemble_step", step = i, model = %step.model, version = handle.version());
        let (priority, timeout) = (req.priority, req.timeout);
        Ok(Box::pin(async move {
            let started = Instant::now();
            let result = match handle.check_inputs(inputs) {
                Ok(inputs) => handle
                    .infer(inputs, priority, timeout, span)
                    .await
                    .map(|o| StepDone {
                        outputs: o.outputs,
                        took: started.elapsed(),
                        timings: o.timings,
                    }),
                Err(e) => Err(e),
            };
            (i, result)
        }))
    }
}
