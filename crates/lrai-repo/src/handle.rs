//! A ready model version: its effective configuration, metadata, metrics and scheduler.
//! The protocol layer gets one from the [`crate::Repository`], checks a request against
//! it once ([`ModelHandle::check_inputs`], the same code for HTTP and gRPC), and calls
//! [`ModelHandle::infer`].

use std::sync::Arc;
use std::time::Duration;

use lrai_backend::BackendKind;
use lrai_core::{DataType, Tensor};
use lrai_exec::JobOutput;
use lrai_monitor::ModelMetrics;
use lrai_sched::{Request, Scheduler};

use crate::config::ModelConfig;
use crate::{RepoError, Result};

/// One declared tensor as KServe metadata shows it: batch dim included as -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// Name.
    pub name: String,
    /// Datatype.
    pub datatype: DataType,
    /// Shape with -1 for free dims (and for the batch dim when the model batches).
    pub shape: Vec<i64>,
}

/// What runs a handle's requests.
#[derive(Debug)]
pub(crate) enum Runner {
    /// An ONNX model's batcher and instances.
    Scheduler(Scheduler),
    /// An ensemble: each step runs on its own model's handle.
    Ensemble(crate::ensemble::Ensemble),
}

/// A loaded, warmed-up model version (or a loaded ensemble).
#[derive(Debug)]
pub struct ModelHandle {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) config: Arc<ModelConfig>,
    pub(crate) inputs: Vec<TensorMeta>,
    pub(crate) outputs: Vec<TensorMeta>,
    /// `None` for an ensemble, whose steps run on their own models' backends.
    pub(crate) backend: Option<BackendKind>,
    pub(crate) runner: Runner,
    pub(crate) metrics: Arc<ModelMetrics>,
    /// What quantize-at-load did, when the config asked for it.
    pub(crate) prepared: Option<crate::Prepared>,
    /// Class labels of the outputs with a `label_filename`, read at load.
    pub(crate) labels: crate::OutputLabels,
}

impl ModelHandle {
    /// Model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Version number.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The effective configuration (config.pbtxt completed from the model).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The quantize-at-load result this version serves, if any.
    pub fn prepared(&self) -> Option<&crate::Prepared> {
        self.prepared.as_ref()
    }

    /// Class labels of the outputs that have a `label_filename` (the classification
    /// extension), read once at load.
    pub fn labels(&self) -> &crate::OutputLabels {
        &self.labels
    }

    /// Inputs as KServe metadata shows them.
    pub fn inputs(&self) -> &[TensorMeta] {
        &self.inputs
    }

    /// Outputs as KServe metadata shows them.
    pub fn outputs(&self) -> &[TensorMeta] {
        &self.outputs
    }

    /// The engine running it; `None` for an ensemble.
    pub fn backend(&self) -> Option<BackendKind> {
        self.backend
    }

    /// Why this handle can't serve now although it is loaded: for an ensemble, a step
    /// model that is not ready. `None` when it can serve.
    pub fn unready_reason(&self) -> Option<String> {
        self.unready_reason_at(0)
    }

    pub(crate) fn unready_reason_at(&self, depth: usize) -> Option<String> {
        match &self.runner {
            Runner::Scheduler(_) => None,
            Runner::Ensemble(e) => e.unready_reason(depth),
        }
    }

    /// Its metric handles and statistics.
    pub fn metrics(&self) -> &Arc<ModelMetrics> {
        &self.metrics
    }

    /// Rows per request allowed (0 = the model does not batch).
    pub fn max_batch_size(&self) -> usize {
        usize::try_from(self.config.max_batch()).unwrap_or(0)
    }

    /// Requests waiting in its queue.
    pub fn queued(&self) -> usize {
        match &self.runner {
            Runner::Scheduler(s) => s.queued(),
            // Its requests wait in the step models' queues.
            Runner::Ensemble(_) => 0,
        }
    }

    /// Checks request inputs against the configuration: every input present (unless
    /// optional), no unknown ones, datatypes equal, shapes fit `dims` with the batch
    /// dimension first when the model batches. Applies `reshape` where configured.
    ///
    /// # Errors
    /// [`RepoError::InputUnknown`], [`RepoError::InputMissing`],
    /// [`RepoError::InputDataType`], [`RepoError::InputValue`], [`RepoError::InputShape`].
    pub fn check_inputs(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        let cfg = &self.config;
        let names = || {
            cfg.input
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, _) in &inputs {
            if cfg.input(name).is_none() {
                return Err(RepoError::InputUnknown {
                    model: self.name.clone(),
                    input: name.clone(),
                    expected: names(),
                });
            }
        }
        for spec in &cfg.input {
            if !spec.optional && !inputs.iter().any(|(n, _)| *n == spec.name) {
                return Err(RepoError::InputMissing {
                    model: self.name.clone(),
                    input: spec.name.clone(),
                    expected: names(),
                });
            }
        }
        let max_batch = self.max_batch_size();
        let mut batch: Option<usize> = None;
        let mut out = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let Some(spec) = cfg.input(&name) else {
                continue;
            };
            if tensor.dtype() != spec.data_type {
                return Err(RepoError::InputDataType {
                    model: self.name.clone(),
                    input: name,
                    expected: spec.data_type,
                    got: tensor.dtype(),
                });
            }
            if let Some(detail) = self.backend.and_then(|b| b.refuses_values(&tensor)) {
                return Err(RepoError::InputValue {
                    model: self.name.clone(),
                    input: name,
                    detail,
                });
            }
            let shape = tensor.shape().to_vec();
            let shape_err = |why: String| RepoError::InputShape {
                model: self.name.clone(),
                input: name.clone(),
                expected: self.expected_shape_text(&spec.dims),
                got: shape.clone(),
                why,
            };
            let inner = if max_batch > 0 {
                let Some((&rows, rest)) = shape.split_first() else {
                    return Err(shape_err(format!(
                        "the model batches (max_batch_size {max_batch}), so the first dimension is the batch size"
                    )));
                };
                if rows == 0 || rows > max_batch {
                    return Err(shape_err(format!(
                        "batch size {rows} is outside 1..={max_batch} (max_batch_size)"
                    )));
                }
                if let Some(b) = batch.filter(|b| *b != rows) {
                    return Err(shape_err(format!(
                        "batch size {rows} differs from {b} in another input of this request"
                    )));
                }
                batch = Some(rows);
                rest.to_vec()
            } else {
                shape.clone()
            };
            let fits = inner.len() == spec.dims.len()
                && inner
                    .iter()
                    .zip(&spec.dims)
                    .all(|(&g, &d)| d < 0 || usize::try_from(d).is_ok_and(|d| d == g));
            if !fits {
                let why = if max_batch > 0 && shape.len() == spec.dims.len() {
                    format!(
                        "the model batches (max_batch_size {max_batch}): put the batch size first, e.g. [1,{}]",
                        spec.dims
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                } else {
                    "dimensions differ".to_string()
                };
                return Err(shape_err(why));
            }
            let tensor = crate::reshape::input_to_model(cfg, &name, tensor)
                .map_err(|e| shape_err(format!("reshape from the config: {e}")))?;
            out.push((name, tensor));
        }
        Ok(out)
    }

    fn expected_shape_text(&self, dims: &[i64]) -> String {
        let mut all: Vec<i64> = Vec::with_capacity(dims.len() + 1);
        if self.max_batch_size() > 0 {
            all.push(-1);
        }
        all.extend_from_slice(dims);
        format!(
            "[{}]",
            all.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    /// Runs a request through the scheduler.
    ///
    /// # Errors
    /// [`RepoError::Sched`] with the scheduler's or execution layer's error.
    pub async fn infer(
        &self,
        inputs: Vec<(String, Tensor)>,
        priority: Option<u32>,
        timeout: Option<Duration>,
        span: tracing::Span,
    ) -> Result<JobOutput> {
        let mut out = match &self.runner {
            Runner::Scheduler(scheduler) => {
                // Padding (lrai.pad_buckets) happens in the scheduler, per batch.
                let req = Request {
                    inputs,
                    priority,
                    timeout,
                    span,
                };
                scheduler.infer(req).await?
            }
            Runner::Ensemble(e) => e.infer(inputs, priority, timeout, span).await?,
        };
        out.outputs = self.outputs_to_client(out.outputs)?;
        Ok(out)
    }

    /// Outputs shaped by the config's `dims` again where it has a `reshape` (Triton).
    fn outputs_to_client(&self, outputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        outputs
            .into_iter()
            .map(|(name, t)| {
                let t =
                    crate::reshape::output_to_client(&self.config, &name, t).map_err(|reason| {
                        RepoError::Sched(lrai_sched::SchedError::Exec(
                            lrai_exec::ExecError::Split {
                                model: self.name.clone(),
                                reason,
                            },
                        ))
                    })?;
                Ok((name, t))
            })
            .collect()
    }

    /// Stops accepting requests and waits until the queued ones ran and the instances stopped.
    pub async fn shutdown(&self) {
        // An ensemble owns no queue or instances: its steps finish on their own handles.
        if let Runner::Scheduler(s) = &self.runner {
            s.close();
            s.join().await;
        }
    }
}

/// The KServe metadata shape for config dims.
pub(crate) fn meta_shape(dims: &[i64], batching: bool) -> Vec<i64> {
    let mut v = Vec::with_capacity(dims.len() + 1);
    if batching {
        v.push(-1);
    }
    v.extend_from_slice(dims);
    v
}
