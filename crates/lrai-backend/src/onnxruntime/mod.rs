//! ONNX Runtime through `ort` with `load-dynamic`: the library is `dlopen`ed at run time
//! from the path [`crate::locate_onnxruntime`] found, so the build links nothing and
//! downloads nothing.
//!
//! ONNX Runtime is initialised once per process (the `ort` environment is global), so a
//! second backend asking for another library path is an error rather than a silent
//! mix. `ort::Session::run` takes `&mut self` (some ORT internals are not thread-safe),
//! so the session sits behind a `Mutex`; the execution layer gives each instance its
//! own session, which keeps that lock uncontended.
//!
//! Inputs are passed as views over the tensor's own bytes when they are aligned (no
//! copy); outputs are copied once out of ORT's buffers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use lrai_core::{DataType, Tensor as LTensor, TensorSpec};
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session as OrtSession, SessionInputValue};
use ort::value::{DynValue, Tensor as OTensor, TensorElementType, TensorRef, ValueType};

mod strings;

use crate::guard::{Stage, contain};

use crate::{
    Backend, BackendError, BackendKind, ExecutionProvider, ModelSource, NamedTensors,
    OptimizationLevel, Result, Session, SessionOptions, check_inputs,
};

static ENVIRONMENT: OnceLock<std::result::Result<(PathBuf, Environment), String>> = OnceLock::new();

/// The ONNX Runtime backend.
#[derive(Clone)]
pub struct OrtBackend {
    library: PathBuf,
    env: &'static Environment,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend")
            .field("library", &self.library)
            .finish()
    }
}

fn init_environment(path: &Path) -> std::result::Result<(PathBuf, Environment), String> {
    // A foreign or broken library must not take the process down: catch what the loader may raise.
    let attempt = std::panic::catch_unwind(|| -> std::result::Result<Environment, String> {
        ort::init_from(path)
            .map_err(|e| e.to_string())?
            .with_name("lrai")
            .build()
            .map_err(|e| e.to_string())
    });
    match attempt {
        Ok(Ok(env)) => Ok((path.to_path_buf(), env)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            Err("the library panicked while loading (is it ONNX Runtime 1.31 or newer?)".into())
        }
    }
}

impl OrtBackend {
    /// Loads ONNX Runtime from `library` (once per process).
    ///
    /// # Errors
    /// [`BackendError::OrtInit`] when the library cannot be loaded, is too old, or a
    /// different library was already loaded in this process.
    pub fn new(library: &Path) -> Result<OrtBackend> {
        match ENVIRONMENT.get_or_init(|| init_environment(library)) {
            Ok((loaded, env)) if loaded == library => Ok(OrtBackend {
                library: loaded.clone(),
                env,
            }),
            Ok((loaded, _)) => Err(BackendError::OrtInit {
                path: library.to_path_buf(),
                detail: format!(
                    "ONNX Runtime is already loaded from '{}' in this process",
                    loaded.display()
                ),
            }),
            Err(detail) => Err(BackendError::OrtInit {
                path: library.to_path_buf(),
                detail: detail.clone(),
            }),
        }
    }

    /// The library this backend runs.
    pub fn library(&self) -> &Path {
        &self.library
    }
}

fn load_err(model: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Load {
        model: model.to_string(),
        backend: BackendKind::OnnxRuntime,
        detail: e.to_string(),
    }
}

fn run_err(model: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Run {
        model: model.to_string(),
        backend: BackendKind::OnnxRuntime,
        detail: e.to_string(),
    }
}

/// Turns ORT's unknown-operator messages ("Could not find an implementation for Foo(17)
/// node with name 'n'", "com.x:Foo(-1) is not a registered function/op") into the same
/// error tract gives, with the node looked up in the model when ORT doesn't name it.
fn classify_load_error(source: &ModelSource, message: &str) -> BackendError {
    let model = source.name();
    const UNREGISTERED: &str = " is not a registered function/op";
    if let Some(end) = message.find(UNREGISTERED) {
        let head = &message[..end];
        let qualified = head.rsplit([' ', '\n']).next().unwrap_or(head);
        let qualified = qualified.split('(').next().unwrap_or(qualified);
        let (domain, op) = qualified.rsplit_once(':').unwrap_or(("", qualified));
        let node = source
            .proto()
            .graph
            .as_ref()
            .and_then(|g| {
                lrai_onnx::all_nodes(g)
                    .into_iter()
                    .find(|n| n.op_type.as_deref() == Some(op))
                    .and_then(|n| n.name.clone())
            })
            .unwrap_or_default();
        return BackendError::UnsupportedOperator {
            model: model.to_string(),
            backend: BackendKind::OnnxRuntime,
            op: if domain.is_empty() {
                op.to_string()
            } else {
                format!("{domain}.{op}")
            },
            node,
        };
    }
    const MARK: &str = "Could not find an implementation for ";
    if let Some(rest) = message.find(MARK).map(|i| &message[i + MARK.len()..]) {
        let op = rest.split('(').next().unwrap_or(rest).trim().to_string();
        let node = rest
            .split("node with name '")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap_or("")
            .to_string();
        return BackendError::UnsupportedOperator {
            model: model.to_string(),
            backend: BackendKind::OnnxRuntime,
            op,
            node,
        };
    }
    load_err(model, message)
}

fn register_providers(
    mut builder: SessionBuilder,
    providers: &[ExecutionProvider],
) -> Result<SessionBuilder> {
    for &p in providers {
        let unavailable = |detail: String| BackendError::ExecutionProvider {
            provider: p,
            detail,
        };
        let dispatch = match p {
            ExecutionProvider::Cpu => continue,
            ExecutionProvider::Cuda { device_id } => {
                if !ep::CUDA::is_available().unwrap_or(false) {
                    return Err(unavailable("this ONNX Runtime library was built without CUDA; install onnxruntime-gpu and pass its library with --ort-lib".into()));
                }
                ep::CUDA::default().with_device_id(device_id).build()
            }
            ExecutionProvider::TensorRt { device_id } => {
                if !ep::TensorRT::is_available().unwrap_or(false) {
                    return Err(unavailable("this ONNX Runtime library was built without TensorRT; install onnxruntime-gpu with TensorRT and pass its library with --ort-lib".into()));
                }
                ep::TensorRT::default().with_device_id(device_id).build()
            }
        };
        builder = builder
            .with_execution_providers([dispatch.error_on_failure()])
            .map_err(|e| unavailable(e.to_string()))?;
    }
    Ok(builder)
}

impl Backend for OrtBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::OnnxRuntime
    }

    fn load(&self, source: &ModelSource, options: &SessionOptions) -> Result<Arc<dyn Session>> {
        contain(source.name(), BackendKind::OnnxRuntime, Stage::Load, || {
            self.load_unguarded(source, options)
        })
    }
}

impl OrtBackend {
    fn load_unguarded(
        &self,
        source: &ModelSource,
        options: &SessionOptions,
    ) -> Result<Arc<dyn Session>> {
        let name = source.name().to_string();
        let (inputs, outputs) = source.io_specs()?;
        let level = match options.optimization {
            OptimizationLevel::Disabled => GraphOptimizationLevel::Disable,
            OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
            OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
            OptimizationLevel::All => GraphOptimizationLevel::All,
        };
        let builder = OrtSession::builder(self.env)
            .map_err(|e| load_err(&name, e))?
            .with_optimization_level(level)
            .map_err(|e| load_err(&name, e))?
            .with_intra_threads(options.intra_threads())
            .map_err(|e| load_err(&name, e))?
            .with_inter_threads(options.inter_op_threads.unwrap_or(1).max(1))
            .map_err(|e| load_err(&name, e))?;
        let builder = match options.spin {
            Some(spin) => builder
                .with_intra_op_spinning(spin)
                .and_then(|b| b.with_inter_op_spinning(spin))
                .map_err(|e| load_err(&name, e))?,
            None => builder,
        };
        let mut builder = register_providers(builder, &options.execution_providers)?;
        let session = match source.path() {
            // From the path so external data files next to the model are found.
            Some(p) => builder.commit_from_file(p),
            None => builder.commit_from_memory(source.bytes()),
        }
        .map_err(|e| classify_load_error(source, &e.to_string()))?;
        tracing::debug!(model = %name, "onnxruntime session ready");
        Ok(Arc::new(OrtSessionImpl {
            name,
            inputs,
            outputs,
            session: Mutex::new(session),
        }))
    }
}

struct OrtSessionImpl {
    name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    session: Mutex<OrtSession>,
}

impl std::fmt::Debug for OrtSessionImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtSession")
            .field("model", &self.name)
            .finish_non_exhaustive()
    }
}

/// Views (or, when misaligned, copies) a tensor as an ORT input.
fn to_ort(t: &LTensor) -> ort::Result<SessionInputValue<'_>> {
    let shape = t.shape().to_vec();
    Ok(match t.dtype() {
        DataType::Bool => {
            let bools = t.to_bools().map_err(|e| ort::Error::new(e.to_string()))?;
            OTensor::from_array((shape, bools))?.into()
        }
        DataType::Bytes => {
            let elements = t
                .byte_strings()
                .map_err(|e| ort::Error::new(e.to_string()))?;
            strings::string_tensor(&shape, &elements)?.into()
        }
        other => lrai_core::dispatch_element!(other,
            T => match t.as_slice::<T>() {
                Ok(std::borrow::Cow::Borrowed(view)) => TensorRef::from_array_view((shape, view))?.into(),
                Ok(std::borrow::Cow::Owned(copy)) => OTensor::from_array((shape, copy))?.into(),
                // dtype was checked against the spec; as_slice cannot disagree with it.
                Err(e) => return Err(ort::Error::new(e.to_string())),
            },
            bytes => return Err(ort::Error::new("BYTES handled above"))),
    })
}

fn from_ort(value: &DynValue, spec: &TensorSpec) -> std::result::Result<LTensor, String> {
    let ValueType::Tensor {
        ty,
        shape: declared,
        ..
    } = value.dtype()
    else {
        return Err(format!(
            "output '{}' is not a tensor ({:?}); LRAI returns tensors only",
            spec.name,
            value.dtype()
        ));
    };
    let to_shape =
        |s: &[i64]| -> Vec<usize> { s.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect() };
    macro_rules! pod {
        ($t:ty) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            LTensor::from_slice::<$t>(to_shape(shape), data).map_err(|e| e.to_string())?
        }};
    }
    Ok(match ty {
        TensorElementType::Bool => {
            let (shape, data) = value
                .try_extract_tensor::<bool>()
                .map_err(|e| e.to_string())?;
            LTensor::from_bools(to_shape(shape), data).map_err(|e| e.to_string())?
        }
        TensorElementType::Uint8 => pod!(u8),
        TensorElementType::Uint16 => pod!(u16),
        TensorElementType::Uint32 => pod!(u32),
        TensorElementType::Uint64 => pod!(u64),
        TensorElementType::Int8 => pod!(i8),
        TensorElementType::Int16 => pod!(i16),
        TensorElementType::Int32 => pod!(i32),
        TensorElementType::Int64 => pod!(i64),
        TensorElementType::Float16 => pod!(half::f16),
        TensorElementType::Bfloat16 => pod!(half::bf16),
        TensorElementType::Float32 => pod!(f32),
        TensorElementType::Float64 => pod!(f64),
        TensorElementType::String => {
            let shape = to_shape(declared);
            let count = lrai_core::shape::element_count(&shape).unwrap_or(0);
            let data = strings::string_elements(value, count).map_err(|e| e.to_string())?;
            LTensor::from_byte_strings(shape, &data).map_err(|e| e.to_string())?
        }
        other => {
            return Err(format!(
                "output '{}' has ONNX Runtime type {other:?}, which LRAI cannot return",
                spec.name
            ));
        }
    })
}

impl Session for OrtSessionImpl {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> BackendKind {
        BackendKind::OnnxRuntime
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: &[(String, LTensor)]) -> Result<NamedTensors> {
        contain(&self.name, BackendKind::OnnxRuntime, Stage::Run, || {
            self.run_unguarded(inputs)
        })
    }
}

impl OrtSessionImpl {
    fn run_unguarded(&self, inputs: &[(String, LTensor)]) -> Result<NamedTensors> {
        let ordered = check_inputs(&self.name, &self.inputs, inputs)?;
        let values: Vec<(&str, SessionInputValue<'_>)> = self
            .inputs
            .iter()
            .zip(ordered)
            .map(|(spec, t)| to_ort(t).map(|v| (spec.name.as_str(), v)))
            .collect::<ort::Result<_>>()
            .map_err(|e| run_err(&self.name, e))?;
        // A panic inside a previous run would poison the lock; the session itself is
        // still usable, so keep serving.
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(values).map_err(|e| run_err(&self.name, e))?;
        self.outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(spec.name.as_str()).ok_or_else(|| {
                    run_err(
                        &self.name,
                        format!("output '{}' missing from results", spec.name),
                    )
                })?;
                let t = from_ort(value, spec).map_err(|e| run_err(&self.name, e))?;
                Ok((spec.name.clone(), t))
            })
            .collect()
    }
}
