//! tract: the embedded pure-Rust backend.
//!
//! tract is fast only on plans optimised for concrete shapes (runtime-probe.md: a
//! symbolic mobilenet plan is 8× slower), and it cannot analyse some exports with every
//! dim symbolic (MiniLM's `Flatten` over `batch × sequence`). So a session keeps the
//! parsed model and compiles one plan per concrete set of input shapes, with the facts
//! set *before* analysis, in a bounded LRU cache. A model whose non-batch dims keep
//! changing (sequence length) would compile a plan per length; after
//! [`PARTIAL_AFTER`] shapes for the same batch size, the session builds one plan with
//! only the batch concrete and the other symbols free, and uses it for that batch.
//!
//! Other probe findings handled here:
//! - quantizer-written `value_info` contradicts concrete facts, so it is ignored;
//! - tract's batched convolutions cost about twice as much per sample as batch-1 runs
//!   (mobilenet b8 671 ms vs 8 × 43 ms), so models with `Conv` run batches as batch-1
//!   slices through the batch-1 plan when every input and output is batched on axis 0.
//!
//! Intra-op threads come from a per-session rayon pool entered with
//! `multithread_tract_scope`, so sessions don't share tract's global executor setting.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lrai_core::{DataType, Dim, Tensor as LTensor, TensorSpec};
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable, TDim,
    TValue, TVec, Tensor as TTensor, TypedSimplePlan, TypedSimpleState, tract_ndarray,
};

use crate::{
    Backend, BackendError, BackendKind, ModelSource, NamedTensors, Result, Session, SessionOptions,
    check_inputs,
};

/// Concrete plans built for one batch size before a batch-concrete, otherwise symbolic
/// plan is built for it.
pub const PARTIAL_AFTER: usize = 4;

/// A marker in plan keys for a dim left symbolic.
const FREE: usize = usize::MAX;

/// The tract backend.
pub struct TractBackend {
    onnx: tract_onnx::Onnx,
}

impl std::fmt::Debug for TractBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TractBackend")
    }
}

impl Default for TractBackend {
    fn default() -> Self {
        TractBackend::new()
    }
}

impl TractBackend {
    /// Creates the backend (cheap: builds tract's operator table).
    pub fn new() -> TractBackend {
        TractBackend {
            onnx: tract_onnx::onnx().with_ignore_value_info(true),
        }
    }

    /// The first node whose operator tract does not implement, as (op, node).
    fn unsupported_op(&self, source: &ModelSource) -> Option<(String, String)> {
        let graph = source.proto().graph.as_ref()?;
        lrai_onnx::all_nodes(graph).into_iter().find_map(|n| {
            let op = n.op_type.clone().unwrap_or_default();
            if self.onnx.op_register.0.contains_key(&op) {
                return None;
            }
            let node = n
                .name
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| n.output.first().cloned())
                .unwrap_or_default();
            let op = match n.domain.as_deref() {
                None | Some("" | "ai.onnx") => op,
                Some(d) => format!("{d}.{op}"),
            };
            Some((op, node))
        })
    }
}

fn load_err(model: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Load {
        model: model.to_string(),
        backend: BackendKind::Tract,
        detail: format!("{e:#}"),
    }
}

fn run_err(model: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Run {
        model: model.to_string(),
        backend: BackendKind::Tract,
        detail: format!("{e:#}"),
    }
}

fn datum_type(dtype: DataType) -> Option<DatumType> {
    Some(match dtype {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F16 => DatumType::F16,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::Bytes => DatumType::String,
        DataType::BF16 => return None,
    })
}

impl Backend for TractBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tract
    }

    fn load(&self, source: &ModelSource, options: &SessionOptions) -> Result<Arc<dyn Session>> {
        let name = source.name().to_string();
        let (inputs, outputs) = source.io_specs()?;
        if let Some((op, node)) = self.unsupported_op(source) {
            return Err(BackendError::UnsupportedOperator {
                model: name,
                backend: BackendKind::Tract,
                op,
                node,
            });
        }
        for spec in inputs.iter().chain(&outputs) {
            if datum_type(spec.dtype).is_none() {
                return Err(BackendError::UnsupportedDataType {
                    model: name,
                    backend: BackendKind::Tract,
                    tensor: spec.name.clone(),
                    dtype: spec.dtype,
                });
            }
        }
        let base = match source.path() {
            // From the path so external data files next to the model are found.
            Some(p) => self.onnx.model_for_path(p),
            None => self.onnx.model_for_read(&mut source.bytes().as_ref()),
        }
        .map_err(|e| load_err(&name, e))?;
        let threads = options.intra_threads();
        let executor = if threads > 1 {
            Executor::multithread_with_name(threads, &format!("tract-{name}"))
        } else {
            Executor::SingleThread
        };
        let split_batch = batch_splittable(source, &inputs, &outputs);
        let session = TractSession {
            name,
            inputs,
            outputs,
            base,
            executor,
            split_batch,
            cache: Mutex::new(Cache {
                entries: Vec::new(),
                clock: 0,
                capacity: options.max_cached_plans.max(1),
            }),
        };
        // Build the batch-1 plan now, so a model tract cannot analyse fails at load.
        let shapes: Vec<Vec<usize>> = session
            .inputs
            .iter()
            .map(|s| {
                lrai_core::shape::concretize(s.dims.as_deref().unwrap_or(&[]), &BTreeMap::new(), 1)
            })
            .collect();
        session.plan_for(&shapes).map_err(|e| match e {
            BackendError::Run { model, detail, .. } => BackendError::Load {
                model,
                backend: BackendKind::Tract,
                detail,
            },
            other => other,
        })?;
        tracing::debug!(model = %session.name, split_batch, threads, "tract session ready");
        Ok(Arc::new(session))
    }
}

/// Conv models whose inputs and outputs all share one symbolic axis 0.
fn batch_splittable(source: &ModelSource, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> bool {
    let has_conv = source.proto().graph.as_ref().is_some_and(|g| {
        lrai_onnx::all_nodes(g)
            .iter()
            .any(|n| matches!(n.op_type.as_deref(), Some("Conv" | "ConvTranspose")))
    });
    let axis0 = |s: &TensorSpec| match s.dims.as_deref().and_then(<[Dim]>::first) {
        Some(Dim::Symbol(name)) => Some(name.clone()),
        _ => None,
    };
    let Some(first) = inputs.first().and_then(axis0) else {
        return false;
    };
    has_conv
        && inputs
            .iter()
            .chain(outputs)
            .all(|s| axis0(s).as_deref() == Some(first.as_str()))
}

struct CachedPlan {
    plan: Arc<TypedSimplePlan>,
    /// Idle run states, reused so a run doesn't rebuild its state.
    states: Mutex<Vec<TypedSimpleState>>,
}

struct Entry {
    key: Vec<Vec<usize>>,
    plan: Arc<CachedPlan>,
    last_used: u64,
}

struct Cache {
    entries: Vec<Entry>,
    clock: u64,
    capacity: usize,
}

impl Cache {
    fn get(&mut self, key: &[Vec<usize>]) -> Option<Arc<CachedPlan>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.iter_mut().find(|e| e.key == key).map(|e| {
            e.last_used = clock;
            Arc::clone(&e.plan)
        })
    }

    fn insert(&mut self, key: Vec<Vec<usize>>, plan: Arc<CachedPlan>) {
        self.clock += 1;
        if self.entries.len() >= self.capacity
            && let Some(i) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
        {
            self.entries.swap_remove(i);
        }
        self.entries.push(Entry {
            key,
            plan,
            last_used: self.clock,
        });
    }

    /// Concrete plans already built whose axis-0 sizes equal `key`'s.
    fn same_batch(&self, key: &[Vec<usize>]) -> usize {
        let axis0 = |k: &[Vec<usize>]| k.iter().map(|s| s.first().copied()).collect::<Vec<_>>();
        let want = axis0(key);
        self.entries
            .iter()
            .filter(|e| !e.key.iter().flatten().any(|&d| d == FREE) && axis0(&e.key) == want)
            .count()
    }
}

struct TractSession {
    name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    base: InferenceModel,
    executor: Executor,
    split_batch: bool,
    cache: Mutex<Cache>,
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
    /// The key of the batch-concrete plan: non-axis-0 symbolic dims marked free.
    fn partial_key(&self, shapes: &[Vec<usize>]) -> Option<Vec<Vec<usize>>> {
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
                        if axis > 0 && matches!(dim, Some(Dim::Symbol(_))) {
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

    fn plan_for(&self, shapes: &[Vec<usize>]) -> Result<Arc<CachedPlan>> {
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
        let cached = Arc::new(CachedPlan {
            plan,
            states: Mutex::new(Vec::new()),
        });
        self.cache
            .lock()
            .expect("tract plan cache lock poisoned")
            .insert(key, Arc::clone(&cached));
        Ok(cached)
    }

    /// Compiles a plan for `key` (FREE entries stay symbolic).
    fn build_plan(&self, key: &[Vec<usize>]) -> Result<Arc<TypedSimplePlan>> {
        let started = std::time::Instant::now();
        let mut model = self.base.clone();
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

    fn run_once(&self, inputs: &[&LTensor]) -> Result<Vec<LTensor>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let cached = self.plan_for(&shapes)?;
        let values: TVec<TValue> = inputs
            .iter()
            .map(|t| {
                to_tract(t)
                    .map(TValue::from)
                    .map_err(|e| run_err(&self.name, e))
            })
            .collect::<Result<_>>()?;
        let state = cached
            .states
            .lock()
            .expect("tract state pool lock poisoned")
            .pop();
        let mut state = match state {
            Some(s) => s,
            None => cached.plan.spawn().map_err(|e| run_err(&self.name, e))?,
        };
        // tract can panic on inputs it doesn't validate (e.g. OneHot with out-of-range
        // indices). Catch it here so a bad input is an error, not a crash; the state that
        // panicked is dropped, the plan is immutable and stays usable.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            multithread_tract_scope(self.executor.clone(), || state.run(values))
        }));
        let outs = match result {
            Ok(r) => r.map_err(|e| run_err(&self.name, e))?,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                return Err(run_err(&self.name, format!("tract panicked: {msg}")));
            }
        };
        cached
            .states
            .lock()
            .expect("tract state pool lock poisoned")
            .push(state);
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

fn to_tract(t: &LTensor) -> conv::Result<TTensor> {
    let shape = t.shape();
    macro_rules! pod {
        ($t:ty) => {
            TTensor::from_shape::<$t>(shape, &t.as_slice::<$t>()?)?
        };
    }
    Ok(match t.dtype() {
        DataType::Bool => TTensor::from_shape::<bool>(shape, &t.to_bools()?)?,
        DataType::U8 => pod!(u8),
        DataType::U16 => pod!(u16),
        DataType::U32 => pod!(u32),
        DataType::U64 => pod!(u64),
        DataType::I8 => pod!(i8),
        DataType::I16 => pod!(i16),
        DataType::I32 => pod!(i32),
        DataType::I64 => pod!(i64),
        DataType::F16 => pod!(half::f16),
        DataType::F32 => pod!(f32),
        DataType::F64 => pod!(f64),
        DataType::BF16 => return Err(conv::Error("tract does not support BF16".into())),
        DataType::Bytes => {
            let strings = t
                .byte_strings()?
                .into_iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>();
            tract_ndarray::ArrayD::from_shape_vec(shape, strings)
                .map_err(|e| conv::Error(e.to_string()))?
                .into()
        }
    })
}

fn from_tract(v: &TTensor, spec: &TensorSpec) -> conv::Result<LTensor> {
    let shape = v.shape().to_vec();
    macro_rules! pod {
        ($t:ty) => {{
            let view = v.to_plain_array_view::<$t>()?;
            LTensor::from_vec::<$t>(shape, view.iter().copied().collect())?
        }};
    }
    Ok(match v.datum_type() {
        DatumType::Bool => {
            let view = v.to_plain_array_view::<bool>()?;
            LTensor::from_bools(shape, &view.iter().copied().collect::<Vec<_>>())?
        }
        DatumType::U8 => pod!(u8),
        DatumType::U16 => pod!(u16),
        DatumType::U32 => pod!(u32),
        DatumType::U64 => pod!(u64),
        DatumType::I8 => pod!(i8),
        DatumType::I16 => pod!(i16),
        DatumType::I32 => pod!(i32),
        DatumType::I64 => pod!(i64),
        DatumType::F16 => pod!(half::f16),
        DatumType::F32 => pod!(f32),
        DatumType::F64 => pod!(f64),
        DatumType::TDim => {
            let cast = v.cast_to::<i64>()?;
            let view = cast.to_plain_array_view::<i64>()?;
            LTensor::from_vec::<i64>(shape, view.iter().copied().collect())?
        }
        DatumType::String => {
            let view = v.to_plain_array_view::<String>()?;
            let items: Vec<&String> = view.iter().collect();
            LTensor::from_byte_strings(shape, &items)?
        }
        other => {
            return Err(conv::Error(format!(
                "output '{}' has tract type {other:?}, which LRAI cannot return",
                spec.name
            )));
        }
    })
}

/// A tiny error type for output conversion: tract's errors are `anyhow` and ours are
/// `CoreError`; both are rendered into the `Run` error's detail.
mod conv {
    #[derive(Debug)]
    pub(super) struct Error(pub(super) String);
    pub(super) type Result<T> = std::result::Result<T, Error>;
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl From<tract_onnx::prelude::TractError> for Error {
        fn from(e: tract_onnx::prelude::TractError) -> Self {
            Error(format!("{e:#}"))
        }
    }
    impl From<lrai_core::CoreError> for Error {
        fn from(e: lrai_core::CoreError) -> Self {
            Error(e.to_string())
        }
    }
}
