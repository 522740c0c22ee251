//! A loaded model on tract: the parsed model, a cache of plans compiled per concrete
//! input shapes, and runs that each get a fresh run state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lrai_core::shape::concretize;
use lrai_core::{Dim, Tensor as LTensor, TensorSpec};
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::{
    InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable, TDim, TValue, TVec,
    TypedSimplePlan,
};

use super::cache::{Cache, FREE};
use super::convert::{from_tract, to_tract};
use super::specialize::Specializer;
use super::{PARTIAL_AFTER, datum_type, run_err};
use crate::guard::{Stage, contain};
use crate::{BackendError, BackendKind, NamedTensors, Result, Session, check_inputs};

pub(super) struct TractSession {
    pub(super) name: String,
    pub(super) inputs: Vec<TensorSpec>,
    pub(super) outputs: Vec<TensorSpec>,
    /// tract's model as parsed once; `None` when only per-plan models parse.
    pub(super) base: Option<InferenceModel>,
    /// Builds per-plan models for models that need concrete shapes first.
    pub(super) specializer: Option<Specializer>,
    pub(super) executor: Executor,
    pub(super) split_batch: bool,
    pub(super) cache: Mutex<Cache>,
}

impl std::fmt::Debug for TractSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractSession")
            .field("model", &self.name)
            .field("split_batch", &self.split_batch)
            .finish_non_exhaustive()
    }
}

impl TractSession {
    /// Builds the plan for the model's declared shapes, free dims at 1, so that a model
    /// tract cannot analyse fails at load. When free dims were invented, a failure may be
    /// the invented sizes' fault (a detector whose concat needs sizes divisible by 32, a
    /// strided Conv whose output is empty at length 1): then the model still loads,
    /// and plans are compiled for the shapes requests bring.
    pub(super) fn check_plan_at_load(&self) -> Result<()> {
        let invented = self.inputs.iter().any(|s| {
            s.dims
                .as_deref()
                .is_none_or(|d| d.iter().any(|d| d.fixed().is_none()))
        });
        let zeros: Vec<LTensor> = self
            .inputs
            .iter()
            .map(|s| {
                let shape = concretize(s.dims.as_deref().unwrap_or(&[]), &BTreeMap::new(), 1);
                LTensor::zeros(s.dtype, shape)
            })
            .collect::<std::result::Result<_, _>>()?;
        let invented = invented
            || self
                .specializer
                .as_ref()
                .is_some_and(|sp| !sp.pinned.is_empty());
        let shapes = self.plan_key(&zeros.iter().collect::<Vec<_>>());
        match self.plan_for(&shapes) {
            Ok(_) => Ok(()),
            Err(e) if invented => {
                tracing::warn!(model = %self.name, shapes = ?shapes, error = %e, "tract cannot plan this model with its free dims at 1; plans will be compiled for the shapes requests bring");
                Ok(())
            }
            Err(BackendError::Run { model, detail, .. }) => Err(BackendError::Load {
                model,
                backend: BackendKind::Tract,
                detail,
            }),
            Err(other) => Err(other),
        }
    }

    /// tract's model for a plan key: per-plan specialised when the model needs it and the
    /// key is concrete, else the model parsed at load.
    fn model_for(&self, key: &[Vec<usize>]) -> Result<InferenceModel> {
        let concrete = !key.iter().flatten().any(|&d| d == FREE);
        match (&self.specializer, &self.base) {
            (Some(sp), _) if concrete => sp
                .model_for(&self.inputs, key)
                .map_err(|e| run_err(&self.name, e)),
            (_, Some(base)) => Ok(base.clone()),
            (_, None) => Err(run_err(
                &self.name,
                "this model is planned only for concrete input shapes",
            )),
        }
    }

    /// The key of the batch-concrete plan: non-axis-0 symbolic dims marked free.
    fn partial_key(&self, shapes: &[Vec<usize>]) -> Option<Vec<Vec<usize>>> {
        // Specialised models are answered per concrete shape: no symbolic plans.
        if self.specializer.is_some() {
            return None;
        }
        let mut any_free = false;
        let key = self
            .inputs
            .iter()
            .zip(shapes)
            .map(|(spec, shape)| {
                shape
                    .iter()
                    .enumerate()
                    .map(|(axis, &v)| {
                        let dim = spec.dims.as_ref().and_then(|d| d.get(axis));
                        if axis > 0 && matches!(dim, Some(Dim::Symbol(_) | Dim::Any)) {
                            any_free = true;
                            FREE
                        } else {
                            v
                        }
                    })
                    .collect()
            })
            .collect();
        any_free.then_some(key)
    }

    pub(super) fn plan_for(&self, shapes: &[Vec<usize>]) -> Result<Arc<TypedSimplePlan>> {
        let partial = self.partial_key(shapes);
        {
            let mut cache = self.cache.lock().expect("tract plan cache lock poisoned");
            if let Some(p) = cache.get(shapes) {
                return Ok(p);
            }
            if let Some(pk) = &partial
                && let Some(p) = cache.get(pk)
            {
                return Ok(p);
            }
        }
        // Built outside the lock: plans take 0.1–0.6 s and other shapes may be served meanwhile.
        let use_partial = partial.is_some() && {
            let cache = self.cache.lock().expect("tract plan cache lock poisoned");
            cache.same_batch(shapes) >= PARTIAL_AFTER
        };
        let (key, plan) = match (use_partial, partial) {
            (true, Some(pk)) => match self.build_plan(&pk) {
                Ok(plan) => (pk, plan),
                Err(e) => {
                    tracing::debug!(model = %self.name, error = %e, "batch-concrete plan failed; compiling a concrete one");
                    (shapes.to_vec(), self.build_plan(shapes)?)
                }
            },
            _ => (shapes.to_vec(), self.build_plan(shapes)?),
        };
        self.cache
            .lock()
            .expect("tract plan cache lock poisoned")
            .insert(key, Arc::clone(&plan));
        Ok(plan)
    }

    /// Compiles a plan for `key` (FREE entries stay symbolic); a panic in tract's
    /// analysis or optimiser becomes an error.
    fn build_plan(&self, key: &[Vec<usize>]) -> Result<Arc<TypedSimplePlan>> {
        contain(&self.name, BackendKind::Tract, Stage::Plan, || {
            self.build_plan_unguarded(key)
        })
    }

    fn build_plan_unguarded(&self, key: &[Vec<usize>]) -> Result<Arc<TypedSimplePlan>> {
        let started = std::time::Instant::now();
        let mut model = self.model_for(key)?;
        for (i, (spec, shape)) in self.inputs.iter().zip(key).enumerate() {
            let dt = datum_type(spec.dtype).ok_or_else(|| BackendError::UnsupportedDataType {
                model: self.name.clone(),
                backend: BackendKind::Tract,
                tensor: spec.name.clone(),
                dtype: spec.dtype,
            })?;
            let dims: Vec<TDim> = shape
                .iter()
                .enumerate()
                .map(|(axis, &v)| {
                    if v == FREE {
                        match spec.dims.as_ref().and_then(|d| d.get(axis)) {
                            Some(Dim::Symbol(s)) => TDim::from(model.symbols.sym(s)),
                            _ => TDim::from(model.symbols.sym(&format!("lrai_free_{i}_{axis}"))),
                        }
                    } else {
                        TDim::from(v)
                    }
                })
                .collect();
            let shape: tract_onnx::tract_hir::infer::ShapeFactoid = dims.into_iter().collect();
            model
                .set_input_fact(i, InferenceFact::dt_shape(dt, shape))
                .map_err(|e| run_err(&self.name, e))?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| run_err(&self.name, e))?;
        tracing::debug!(model = %self.name, shapes = ?key, ms = started.elapsed().as_millis(), "tract plan compiled");
        Ok(plan)
    }

    /// The plan cache key of a request: its input shapes, then the bytes of each input
    /// whose value the plan is specialised to ([`Specializer::pinned`]).
    fn plan_key(&self, inputs: &[&LTensor]) -> Vec<Vec<usize>> {
        let mut key: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        if let Some(sp) = &self.specializer {
            for name in &sp.pinned {
                let bytes = self
                    .inputs
                    .iter()
                    .position(|s| &s.name == name)
                    .and_then(|i| inputs.get(i))
                    .map(|t| t.data().iter().map(|&b| usize::from(b)).collect())
                    .unwrap_or_default();
                key.push(bytes);
            }
        }
        key
    }

    fn run_once(&self, inputs: &[&LTensor]) -> Result<Vec<LTensor>> {
        let shapes = self.plan_key(inputs);
        let plan = self.plan_for(&shapes)?;
        for (t, spec) in inputs.iter().zip(&self.inputs) {
            if let Some(detail) = BackendKind::Tract.refuses_values(t) {
                return Err(BackendError::InputValue {
                    model: self.name.clone(),
                    input: spec.name.clone(),
                    detail,
                });
            }
        }
        let values: TVec<TValue> = inputs
            .iter()
            .map(|t| {
                to_tract(t)
                    .map(TValue::from)
                    .map_err(|e| run_err(&self.name, e))
            })
            .collect::<Result<_>>()?;
        // A fresh state per run: nothing one request leaves in a state (Scan's hidden
        // state, resolved symbols, scratch) can reach the next. tract can also panic on
        // inputs it doesn't validate (OneHot with out-of-range indices): contained, the
        // plan is immutable and stays usable.
        let outs = contain(&self.name, BackendKind::Tract, Stage::Run, || {
            let mut state = plan.spawn().map_err(|e| run_err(&self.name, e))?;
            multithread_tract_scope(self.executor.clone(), || state.run(values))
                .map_err(|e| run_err(&self.name, e))
        })?;
        outs.iter()
            .zip(&self.outputs)
            .map(|(v, spec)| from_tract(v, spec).map_err(|e| run_err(&self.name, e)))
            .collect()
    }
}

impl Session for TractSession {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> BackendKind {
        BackendKind::Tract
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: &[(String, LTensor)]) -> Result<NamedTensors> {
        let ordered = check_inputs(&self.name, &self.inputs, inputs)?;
        let batch = ordered
            .first()
            .and_then(|t| t.shape().first())
            .copied()
            .unwrap_or(0);
        let outputs = if self.split_batch && batch > 1 {
            let rows = vec![1; batch];
            let parts: Vec<Vec<LTensor>> = ordered
                .iter()
                .map(|t| lrai_core::split(t, &rows))
                .collect::<std::result::Result<_, _>>()?;
            let mut per_output: Vec<Vec<LTensor>> =
                vec![Vec::with_capacity(batch); self.outputs.len()];
            for row in 0..batch {
                let row_inputs: Vec<&LTensor> = parts.iter().map(|p| &p[row]).collect();
                for (slot, out) in per_output.iter_mut().zip(self.run_once(&row_inputs)?) {
                    slot.push(out);
                }
            }
            per_output
                .iter()
                .map(|parts| lrai_core::concat(&parts.iter().collect::<Vec<_>>()))
                .collect::<std::result::Result<Vec<_>, _>>()?
        } else {
            self.run_once(&ordered)?
        };
        Ok(self
            .outputs
            .iter()
            .map(|s| s.name.clone())
            .zip(outputs)
            .collect())
    }
}
