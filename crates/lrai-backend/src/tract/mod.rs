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

use std::sync::{Arc, Mutex};

use lrai_core::{DataType, Dim, TensorSpec};
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::{DatumType, Framework, InferenceModel, TractResult};

use crate::guard::{Stage, contain};
use crate::{Backend, BackendError, BackendKind, ModelSource, Result, Session, SessionOptions};

mod cache;
mod convert;
mod gaps;
mod session;
mod specialize;

use cache::Cache;
use session::TractSession;
use specialize::Specializer;

/// A parsed model: tract's model when it parses as is, and what builds per-plan models
/// for models that need concrete shapes first.
struct Parsed {
    base: Option<InferenceModel>,
    specializer: Option<Specializer>,
}

/// Concrete plans built for one batch size before a batch-concrete, otherwise symbolic
/// plan is built for it.
pub const PARTIAL_AFTER: usize = 4;

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

    /// Parses the model into tract's inference model, after the rewrites that keep tract
    /// from getting it wrong ([`lrai_onnx::simplify`]). A model that needs concrete shapes
    /// before tract can analyse it also gets a [`Specializer`]; its parse may then fail
    /// (an axes-less opset-11 `Squeeze`) without failing the load.
    fn parse(&self, source: &ModelSource) -> Result<Parsed> {
        let name = source.name();
        let prepared = lrai_onnx::simplify::prepare_for_tract(source.proto()).unwrap_or_else(|e| {
            tracing::warn!(model = %name, error = %e, "tract preparation skipped");
            None
        });
        let dir = source
            .path()
            .and_then(|p| p.parent())
            .and_then(|d| d.to_str())
            .map(str::to_string);
        let model = prepared.as_ref().map_or(source.proto(), |p| &p.model);
        // Checked after the rewrites, which replace some ops tract lacks (`Loop`).
        if let Some((op, node)) = self.unsupported_op(model) {
            return Err(BackendError::UnsupportedOperator {
                model: name.to_string(),
                backend: BackendKind::Tract,
                op,
                node,
            });
        }
        let specializer = Specializer::for_model(&self.onnx, model, dir.clone());
        if let Some(prepared) = &prepared {
            for note in &prepared.notes {
                tracing::info!(model = %name, "{note}");
            }
        }
        let base = match &prepared {
            None => match source.path() {
                // From the path so external data files next to the model are found.
                Some(p) => self.onnx.model_for_path(p),
                None => self.onnx.model_for_read(&mut source.bytes().as_ref()),
            },
            Some(prepared) => self.parse_proto(&prepared.model, dir.as_deref()),
        }
        .map_err(|e| load_err(name, e));
        match (base, &specializer) {
            (Ok(base), _) => Ok(Parsed {
                base: Some(base),
                specializer,
            }),
            (Err(e), Some(_)) => {
                tracing::debug!(model = %name, error = %e, "parsed per plan only");
                Ok(Parsed {
                    base: None,
                    specializer,
                })
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Parses a model held as LRAI's protobuf types (tract has its own: via bytes).
    fn parse_proto(
        &self,
        model: &lrai_onnx::ModelProto,
        dir: Option<&str>,
    ) -> TractResult<InferenceModel> {
        let bytes = lrai_onnx::encode_model(model);
        let proto = self.onnx.proto_model_for_read(&mut bytes.as_slice())?;
        let parsed = self.onnx.parse(&proto, dir)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(tract_onnx::prelude::TractError::msg(format!(
                "unresolved inputs at top level: {:?}",
                parsed.unresolved_inputs
            )));
        }
        Ok(parsed.model)
    }

    /// The first node tract does not implement or would get wrong ([`gaps`]), as
    /// (what, node).
    fn unsupported_op(&self, model: &lrai_onnx::ModelProto) -> Option<(String, String)> {
        let graph = model.graph.as_ref()?;
        let known = |op: &str| self.onnx.op_register.0.contains_key(op);
        lrai_onnx::all_nodes(graph).into_iter().find_map(|n| {
            let why = gaps::refusal(n, known)?;
            let node = n
                .name
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| n.output.first().cloned())
                .unwrap_or_default();
            Some((why, node))
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

pub(super) fn run_err(model: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Run {
        model: model.to_string(),
        backend: BackendKind::Tract,
        detail: format!("{e:#}"),
    }
}

pub(super) fn datum_type(dtype: DataType) -> Option<DatumType> {
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
        let parsed = contain(&name, BackendKind::Tract, Stage::Load, || {
            self.parse(source)
        })?;
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
            base: parsed.base,
            specializer: parsed.specializer,
            executor,
            split_batch,
            cache: Mutex::new(Cache::new(options.max_cached_plans)),
        };
        session.check_plan_at_load()?;
        tracing::debug!(model = %session.name, split_batch, threads, "tract session ready");
        Ok(Arc::new(session))
    }
}

/// Ops whose every output depends on every row of their input, whatever their
/// attributes: a model with one can't be run row by row (DynamicQuantizeLinear takes one
/// scale over the whole batch: split, each row gets its own, and the answer changes).
const MIXES_ROWS: &[&str] = &["DynamicQuantizeLinear", "DynamicQuantizeMatMul"];

/// Conv models whose inputs and outputs all share one symbolic axis 0, and that have no
/// op mixing rows.
fn batch_splittable(source: &ModelSource, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> bool {
    let ops = |pred: &dyn Fn(&str) -> bool| {
        source.proto().graph.as_ref().is_some_and(|g| {
            lrai_onnx::all_nodes(g)
                .iter()
                .any(|n| pred(n.op_type.as_deref().unwrap_or("")))
        })
    };
    let has_conv =
        ops(&|op| matches!(op, "Conv" | "ConvTranspose")) && !ops(&|op| MIXES_ROWS.contains(&op));
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
