//! The engine contract: a [`Backend`] loads a model into a [`Session`], which reports its
//! inputs and outputs (with symbolic dims such as `batch`) and runs named tensors to named
//! tensors. Everything here is synchronous; the execution layer (`lrai-exec`) puts each
//! session on its own thread.
//!
//! Two implementations, each behind a feature (both on by default):
//! - `tract` ([`tract::TractBackend`]): pure Rust, embedded, needs nothing installed. It
//!   compiles one optimised plan per concrete input shape (a symbolic plan is up to 8×
//!   slower, see runtime-probe.md) and keeps them in a bounded cache.
//! - `onnxruntime` ([`onnxruntime::OrtBackend`]): ONNX Runtime loaded at run time from
//!   `libonnxruntime.so` (found by [`locate_onnxruntime`]); nothing is linked at build time.
//!
//! [`create_backend`] turns `--backend tract|onnxruntime|auto` into one of them.
//! Input checking ([`check_inputs`]) is shared so both backends reject bad input with
//! the same words.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use lrai_core::{CoreError, DataType, Tensor, TensorSpec, format_shape, shape::match_dims};
use lrai_onnx::{ModelProto, OnnxError};

pub mod guard;
mod locate;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tract")]
pub mod tract;

pub use locate::{OrtCandidate, locate_onnxruntime};

/// Which engine runs a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// tract, the embedded pure-Rust engine.
    Tract,
    /// ONNX Runtime.
    OnnxRuntime,
}

impl BackendKind {
    /// The name used on the command line and in config (`tract`, `onnxruntime`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::OnnxRuntime => "onnxruntime",
        }
    }

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        self.as_str()
    }

    /// Why this backend can't take `t`'s values whatever the model, or `None`: tract
    /// holds strings as Rust `String`s, so its BYTES elements must be UTF-8 (replacing
    /// bytes would change the request silently). The server asks before it queues a
    /// request, so such a request never fails a batch it would have shared.
    pub fn refuses_values(self, t: &Tensor) -> Option<String> {
        if self != BackendKind::Tract || t.dtype() != DataType::Bytes {
            return None;
        }
        let elements = t.byte_strings().ok()?;
        let i = elements
            .iter()
            .position(|e| std::str::from_utf8(e).is_err())?;
        Some(format!(
            "element {i} of a BYTES input is not valid UTF-8, which tract's string tensors \
             require; use the onnxruntime backend for binary strings"
        ))
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for: a backend, or `auto` (ONNX Runtime when its library is
/// found, tract otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// ONNX Runtime if found, else tract.
    #[default]
    Auto,
    /// Exactly this backend.
    Only(BackendKind),
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "tract" => Ok(BackendChoice::Only(BackendKind::Tract)),
            "onnxruntime" | "ort" => Ok(BackendChoice::Only(BackendKind::OnnxRuntime)),
            other => Err(format!(
                "unknown backend '{other}': expected tract, onnxruntime or auto"
            )),
        }
    }
}

/// ONNX Runtime graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizationLevel {
    /// No graph rewrites.
    Disabled,
    /// Constant folding and redundant-node removal.
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, including layout optimisations (ONNX Runtime's default).
    #[default]
    All,
}

impl std::str::FromStr for OptimizationLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disabled" | "none" => Ok(OptimizationLevel::Disabled),
            "basic" => Ok(OptimizationLevel::Basic),
            "extended" => Ok(OptimizationLevel::Extended),
            "all" => Ok(OptimizationLevel::All),
            other => Err(format!(
                "unknown optimization level '{other}': expected disabled, basic, extended or all"
            )),
        }
    }
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProvider {
    /// The default CPU provider.
    Cpu,
    /// NVIDIA CUDA on the given device.
    Cuda {
        /// GPU index.
        device_id: i32,
    },
    /// NVIDIA TensorRT on the given device.
    TensorRt {
        /// GPU index.
        device_id: i32,
    },
}

impl std::str::FromStr for ExecutionProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, dev) = s.split_once(':').unwrap_or((s, "0"));
        let device_id = dev
            .parse()
            .map_err(|_| format!("bad device id '{dev}' in execution provider '{s}'"))?;
        match name.to_ascii_lowercase().as_str() {
            "cpu" => Ok(ExecutionProvider::Cpu),
            "cuda" => Ok(ExecutionProvider::Cuda { device_id }),
            "tensorrt" | "trt" => Ok(ExecutionProvider::TensorRt { device_id }),
            _ => Err(format!(
                "unknown execution provider '{s}': expected cpu, cuda[:N] or tensorrt[:N]"
            )),
        }
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionProvider::Cpu => f.write_str("cpu"),
            ExecutionProvider::Cuda { device_id } => write!(f, "cuda:{device_id}"),
            ExecutionProvider::TensorRt { device_id } => write!(f, "tensorrt:{device_id}"),
        }
    }
}

/// How a session is built.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Threads inside one operator; `None` = the number of available cores.
    pub intra_op_threads: Option<usize>,
    /// Threads running independent operators (ONNX Runtime only); `None` = 1.
    pub inter_op_threads: Option<usize>,
    /// Graph optimisation level (ONNX Runtime only; tract always optimises).
    pub optimization: OptimizationLevel,
    /// Execution providers in priority order (ONNX Runtime only); empty = CPU.
    pub execution_providers: Vec<ExecutionProvider>,
    /// Most optimised plans tract keeps per session (one per concrete input shape).
    pub max_cached_plans: usize,
    /// Whether ONNX Runtime's intra-op threads spin while waiting for work; `None` keeps
    /// ONNX Runtime's default (spinning). A server turns it off: idle spinning threads
    /// steal the cores that network I/O and other models need.
    pub spin: Option<bool>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            intra_op_threads: None,
            inter_op_threads: None,
            optimization: OptimizationLevel::All,
            execution_providers: Vec::new(),
            max_cached_plans: 16,
            spin: None,
        }
    }
}

impl SessionOptions {
    /// The intra-op thread count to use.
    pub fn intra_threads(&self) -> usize {
        self.intra_op_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1)
    }
}

/// A decoded model and where it came from. Decoding happens once, here, so a missing,
/// truncated or non-ONNX file is reported the same way whichever backend loads it.
#[derive(Debug, Clone)]
pub struct ModelSource {
    name: String,
    path: Option<PathBuf>,
    bytes: Bytes,
    proto: Arc<ModelProto>,
}

impl ModelSource {
    /// Reads and decodes a model file; the model is named after the file stem.
    ///
    /// # Errors
    /// [`BackendError::ModelFile`] when the file is missing, truncated or not ONNX.
    pub fn from_path(path: &Path) -> Result<ModelSource> {
        let name = model_name_for(path);
        let bytes = fs_err::read(path).map_err(|e| BackendError::ModelFile {
            source: OnnxError::Io(e),
        })?;
        let proto = lrai_onnx::decode_model(&path.display().to_string(), &bytes)
            .map_err(|source| BackendError::ModelFile { source })?;
        Ok(ModelSource {
            name,
            path: Some(path.to_path_buf()),
            bytes: Bytes::from(bytes),
            proto: Arc::new(proto),
        })
    }

    /// Decodes a model held in memory.
    ///
    /// # Errors
    /// [`BackendError::ModelFile`] when the bytes are not ONNX.
    pub fn from_bytes(name: &str, bytes: Bytes) -> Result<ModelSource> {
        let proto = lrai_onnx::decode_model(name, &bytes)
            .map_err(|source| BackendError::ModelFile { source })?;
        Ok(ModelSource {
            name: name.to_string(),
            path: None,
            bytes,
            proto: Arc::new(proto),
        })
    }

    /// Renames the model (errors and logs use this name).
    #[must_use]
    pub fn with_name(mut self, name: &str) -> ModelSource {
        self.name = name.to_string();
        self
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was read from, if any (external data is resolved next to it).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The encoded model.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The decoded model.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// Inputs and outputs as declared by the graph.
    ///
    /// # Errors
    /// [`BackendError::UnsupportedType`] when an input or output has a type LRAI cannot hold.
    pub fn io_specs(&self) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
        let graph = self
            .proto
            .graph
            .as_ref()
            .ok_or_else(|| BackendError::ModelFile {
                source: OnnxError::NoGraph {
                    name: self.name.clone(),
                },
            })?;
        let conv = |infos: Vec<lrai_onnx::IoInfo>, role| {
            infos
                .into_iter()
                .map(|i| {
                    i.to_spec(role).map_err(|_| BackendError::UnsupportedType {
                        model: self.name.clone(),
                        role,
                        tensor: i.name.clone(),
                        type_name: i.type_name(),
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        Ok((
            conv(lrai_onnx::graph_inputs(graph), "input")?,
            conv(lrai_onnx::graph_outputs(graph), "output")?,
        ))
    }
}

/// A model's name from its path: the file stem, or for Triton's `<name>/<version>/model.onnx`
/// layout, `<name>`.
fn model_name_for(path: &Path) -> String {
    let stem = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let version_dir = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|v| v.to_str());
    let model_dir = path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name);
    match (stem.as_str(), version_dir, model_dir) {
        ("model", Some(v), Some(m)) if v.parse::<u64>().is_ok() => m.to_string_lossy().into_owned(),
        _ => stem,
    }
}

/// Named tensors, in the order that matters to the caller.
pub type NamedTensors = Vec<(String, Tensor)>;

/// An engine that turns models into sessions.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Which engine this is.
    fn kind(&self) -> BackendKind;

    /// Builds a session for a model.
    ///
    /// # Errors
    /// [`BackendError::UnsupportedOperator`], [`BackendError::UnsupportedType`] or
    /// [`BackendError::Load`] when the engine cannot take the model.
    fn load(&self, model: &ModelSource, options: &SessionOptions) -> Result<Arc<dyn Session>>;
}

/// A loaded model, ready to run any batch size it allows. `Send + Sync`: one session
/// may be shared by threads (each backend serialises what must be serialised).
pub trait Session: Send + Sync + fmt::Debug {
    /// The model's name.
    fn model_name(&self) -> &str;
    /// The engine running it.
    fn backend(&self) -> BackendKind;
    /// Declared inputs.
    fn inputs(&self) -> &[TensorSpec];
    /// Declared outputs.
    fn outputs(&self) -> &[TensorSpec];
    /// Runs the model. Inputs are matched by name; outputs come back in declared order.
    ///
    /// # Errors
    /// Input errors ([`BackendError::MissingInput`], [`BackendError::UnknownInput`],
    /// [`BackendError::InputDataType`], [`BackendError::InputShape`]) before anything
    /// runs, and [`BackendError::Run`] when the engine fails.
    fn run(&self, inputs: &[(String, Tensor)]) -> Result<NamedTensors>;
}

/// Errors from locating, loading and running backends.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model file is missing, truncated or not ONNX.
    #[error(transparent)]
    ModelFile {
        /// What went wrong reading it.
        source: OnnxError,
    },
    /// An input or output type LRAI cannot hold.
    #[error(
        "{role} '{tensor}' of model '{model}' has ONNX type {type_name}, which LRAI does not support"
    )]
    UnsupportedType {
        /// Model name.
        model: String,
        /// `input` or `output`.
        role: &'static str,
        /// Tensor name.
        tensor: String,
        /// ONNX type name.
        type_name: String,
    },
    /// The backend has no implementation of an operator.
    #[error(
        "model '{model}' cannot run on {backend}: unsupported operator '{op}' at node '{node}'"
    )]
    UnsupportedOperator {
        /// Model name.
        model: String,
        /// Backend.
        backend: BackendKind,
        /// Operator type (with its domain when not the default).
        op: String,
        /// Node name.
        node: String,
    },
    /// A datatype the backend cannot take.
    #[error(
        "model '{model}' cannot run on {backend}: {backend} does not support datatype {dtype} (tensor '{tensor}')"
    )]
    UnsupportedDataType {
        /// Model name.
        model: String,
        /// Backend.
        backend: BackendKind,
        /// Tensor name.
        tensor: String,
        /// Datatype.
        dtype: DataType,
    },
    /// The engine failed to build a session (message rendered from its error chain).
    #[error("{backend} failed to load model '{model}': {detail}")]
    Load {
        /// Model name.
        model: String,
        /// Backend.
        backend: BackendKind,
        /// The engine's error chain.
        detail: String,
    },
    /// A required input was not given.
    #[error("model '{model}' needs input '{input}', which was not given (inputs: {expected})")]
    MissingInput {
        /// Model name.
        model: String,
        /// The missing input.
        input: String,
        /// All input names, comma-separated.
        expected: String,
    },
    /// An input the model does not have.
    #[error("model '{model}' has no input '{input}' (inputs: {expected})")]
    UnknownInput {
        /// Model name.
        model: String,
        /// The given name.
        input: String,
        /// All input names, comma-separated.
        expected: String,
    },
    /// An input has the wrong datatype.
    #[error("input '{input}' of model '{model}': expected datatype {expected}, got {got}")]
    InputDataType {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// Declared datatype.
        expected: DataType,
        /// Given datatype.
        got: DataType,
    },
    /// An input has the wrong shape.
    #[error(
        "input '{input}' of model '{model}': expected shape {expected}, got {}: {reason}",
        format_shape(got)
    )]
    InputShape {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// Declared dims, as text.
        expected: String,
        /// Given shape.
        got: Vec<usize>,
        /// What does not fit.
        reason: lrai_core::ShapeMismatch,
    },
    /// An input's values the backend can't take ([`BackendKind::refuses_values`]).
    #[error("input '{input}' of model '{model}': {detail}")]
    InputValue {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The engine failed while running.
    #[error("{backend} failed to run model '{model}': {detail}")]
    Run {
        /// Model name.
        model: String,
        /// Backend.
        backend: BackendKind,
        /// The engine's error chain.
        detail: String,
    },
    /// The backend was not compiled into this binary.
    #[error("backend '{backend}' is not compiled into this binary; rebuild with `--features {}`", backend.feature())]
    NotCompiled {
        /// Backend.
        backend: BackendKind,
    },
    /// No ONNX Runtime library was found.
    #[error(
        "ONNX Runtime library not found ({tried}); pass --ort-lib PATH, set LRAI_ORT_LIB, or run: pip install onnxruntime==1.31.1"
    )]
    OrtNotFound {
        /// Where it was looked for.
        tried: String,
    },
    /// The ONNX Runtime library could not be initialised.
    #[error("cannot initialise ONNX Runtime from '{}': {detail}", path.display())]
    OrtInit {
        /// Library path.
        path: PathBuf,
        /// The loader's error.
        detail: String,
    },
    /// An execution provider was asked for and cannot be used.
    #[error("execution provider '{provider}' is not available: {detail}")]
    ExecutionProvider {
        /// Provider.
        provider: ExecutionProvider,
        /// Why, and what to install.
        detail: String,
    },
    /// Tensor conversion failed.
    #[error(transparent)]
    Tensor(#[from] CoreError),
}

/// Result with [`BackendError`].
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Checks named inputs against declared specs by ONNX Runtime's rules (names, datatypes,
/// ranks and fixed sizes; a declared scalar takes any shape; free dims take any size) and
/// returns them in declared order.
///
/// # Errors
/// The first problem found, naming the input, what was expected and what came.
pub fn check_inputs<'a>(
    model: &str,
    specs: &[TensorSpec],
    inputs: &'a [(String, Tensor)],
) -> Result<Vec<&'a Tensor>> {
    check_inputs_with_warnings(model, specs, inputs).map(|(ordered, _)| ordered)
}

/// [`check_inputs`], also returning what ONNX Runtime accepts but looks wrong: a named
/// symbolic dim (`batch`) with different sizes in different places of one request. The
/// CLI prints these; the backends run the request, as ONNX Runtime does.
///
/// # Errors
/// As [`check_inputs`].
pub fn check_inputs_with_warnings<'a>(
    model: &str,
    specs: &[TensorSpec],
    inputs: &'a [(String, Tensor)],
) -> Result<(Vec<&'a Tensor>, Vec<String>)> {
    let names = || {
        specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some((name, _)) = inputs
        .iter()
        .find(|(n, _)| !specs.iter().any(|s| &s.name == n))
    {
        return Err(BackendError::UnknownInput {
            model: model.to_string(),
            input: name.clone(),
            expected: names(),
        });
    }
    let mut bindings = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut ordered = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some((_, t)) = inputs.iter().find(|(n, _)| *n == spec.name) else {
            return Err(BackendError::MissingInput {
                model: model.to_string(),
                input: spec.name.clone(),
                expected: names(),
            });
        };
        if t.dtype() != spec.dtype {
            return Err(BackendError::InputDataType {
                model: model.to_string(),
                input: spec.name.clone(),
                expected: spec.dtype,
                got: t.dtype(),
            });
        }
        if let Some(dims) = &spec.dims {
            let mut found = Vec::new();
            match_dims(dims, t.shape(), &mut bindings, &mut found).map_err(|reason| {
                BackendError::InputShape {
                    model: model.to_string(),
                    input: spec.name.clone(),
                    expected: spec.dims_text(),
                    got: t.shape().to_vec(),
                    reason,
                }
            })?;
            warnings.extend(found.into_iter().map(|reason| {
                format!(
                    "input '{}' of model '{model}' (declared {}, got {}): {reason}; running it anyway, as ONNX Runtime does",
                    spec.name,
                    spec.dims_text(),
                    format_shape(t.shape())
                )
            }));
        }
        ordered.push(t);
    }
    Ok((ordered, warnings))
}

/// Where to look for ONNX Runtime, and which backend was asked for.
#[derive(Debug, Clone, Default)]
pub struct BackendConfig {
    /// `--backend`.
    pub choice: BackendChoice,
    /// Explicit library locations in priority order (flag, env vars), each with the
    /// name of where it came from.
    pub ort_candidates: Vec<OrtCandidate>,
    /// Python interpreter asked where a pip-installed `onnxruntime` lives; `None` skips it.
    pub python: Option<String>,
}

/// Creates the backend the config asks for.
///
/// # Errors
/// [`BackendError::NotCompiled`] for a backend left out of the build,
/// [`BackendError::OrtNotFound`]/[`BackendError::OrtInit`] when ONNX Runtime is asked
/// for explicitly and cannot be used.
pub fn create_backend(config: &BackendConfig) -> Result<Arc<dyn Backend>> {
    match config.choice {
        BackendChoice::Only(kind) => create_kind(kind, config),
        BackendChoice::Auto => match create_kind(BackendKind::OnnxRuntime, config) {
            Ok(b) => {
                tracing::info!(backend = "onnxruntime", "backend chosen (auto)");
                Ok(b)
            }
            Err(e) => {
                tracing::info!(backend = "tract", reason = %e, "backend chosen (auto): ONNX Runtime unavailable");
                create_kind(BackendKind::Tract, config)
            }
        },
    }
}

/// A session and, when `auto` had to fall back, why.
#[derive(Debug)]
pub struct Loaded {
    /// The loaded session.
    pub session: Arc<dyn Session>,
    /// Set when `auto`'s first choice could not load the model and the other backend did.
    pub fallback: Option<String>,
}

/// Loads `source` on the backend `config` asks for. With `auto`, the first choice is
/// ONNX Runtime when its library is found; when that backend can't load this model and
/// the other one can, the other one runs it and [`Loaded::fallback`] says why.
///
/// # Errors
/// As [`create_backend`] and [`Backend::load`]; with `auto`, the first choice's error
/// when neither backend loads the model.
pub fn load_model(
    config: &BackendConfig,
    source: &ModelSource,
    options: &SessionOptions,
) -> Result<Loaded> {
    let first = create_backend(config)?;
    let first_error = match first.load(source, options) {
        Ok(session) => {
            return Ok(Loaded {
                session,
                fallback: None,
            });
        }
        Err(e) if config.choice == BackendChoice::Auto => e,
        Err(e) => return Err(e),
    };
    let other = match first.kind() {
        BackendKind::Tract => BackendKind::OnnxRuntime,
        BackendKind::OnnxRuntime => BackendKind::Tract,
    };
    let Ok(second) = create_kind(other, config) else {
        return Err(first_error);
    };
    match second.load(source, options) {
        Ok(session) => {
            let why = format!(
                "auto: {} cannot load model '{}' ({first_error}); running it on {other}",
                first.kind(),
                source.name()
            );
            tracing::warn!(model = %source.name(), backend = %other, "{why}");
            Ok(Loaded {
                session,
                fallback: Some(why),
            })
        }
        Err(_) => Err(first_error),
    }
}

/// Creates one specific backend.
///
/// # Errors
/// As [`create_backend`].
pub fn create_kind(kind: BackendKind, config: &BackendConfig) -> Result<Arc<dyn Backend>> {
    match kind {
        BackendKind::Tract => {
            #[cfg(feature = "tract")]
            {
                Ok(Arc::new(tract::TractBackend::new()))
            }
            #[cfg(not(feature = "tract"))]
            {
                Err(BackendError::NotCompiled { backend: kind })
            }
        }
        BackendKind::OnnxRuntime => {
            #[cfg(feature = "onnxruntime")]
            {
                let path = locate_onnxruntime(&config.ort_candidates, config.python.as_deref())?;
                Ok(Arc::new(onnxruntime::OrtBackend::new(&path)?))
            }
            #[cfg(not(feature = "onnxruntime"))]
            {
                let _ = config;
                Err(BackendError::NotCompiled { backend: kind })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_core::Dim;

    fn spec(name: &str, dtype: DataType, dims: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            dims: Some(dims),
        }
    }

    #[test]
    fn check_inputs_names_the_problem() {
        let specs = vec![
            spec(
                "ids",
                DataType::I64,
                vec![Dim::Symbol("batch".into()), Dim::Symbol("seq".into())],
            ),
            spec(
                "mask",
                DataType::I64,
                vec![Dim::Symbol("batch".into()), Dim::Symbol("seq".into())],
            ),
        ];
        let ids = Tensor::from_vec(vec![2, 3], vec![0i64; 6]).unwrap();
        let bad_mask = Tensor::from_vec(vec![2, 4], vec![0i64; 8]).unwrap();
        let f32_mask = Tensor::from_vec(vec![2, 3], vec![0f32; 6]).unwrap();

        let err = check_inputs("m", &specs, &[("ids".into(), ids.clone())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model 'm' needs input 'mask', which was not given (inputs: ids, mask)"
        );

        let inputs = vec![("ids".into(), ids.clone()), ("mask".into(), f32_mask)];
        let err = check_inputs("m", &specs, &inputs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'mask' of model 'm': expected datatype INT64, got FP32"
        );

        // ONNX Runtime runs a shared symbol that disagrees, so LRAI only warns.
        let inputs = vec![("ids".into(), ids.clone()), ("mask".into(), bad_mask)];
        let (ordered, warnings) = check_inputs_with_warnings("m", &specs, &inputs).unwrap();
        assert_eq!(ordered.len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("declared [batch,seq], got [2,4]")
                && warnings[0].contains("'seq') must equal 3"),
            "{warnings:?}"
        );

        let rank3 = Tensor::from_vec(vec![2, 3, 1], vec![0i64; 6]).unwrap();
        let inputs = vec![("ids".into(), ids.clone()), ("mask".into(), rank3)];
        let err = check_inputs("m", &specs, &inputs).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected shape [batch,seq], got [2,3,1]: expected 2 dimensions, got 3"),
            "{err}"
        );

        let inputs = vec![("idz".into(), ids)];
        let err = check_inputs("m", &specs, &inputs).unwrap_err();
        assert!(matches!(err, BackendError::UnknownInput { .. }));
    }

    #[test]
    fn parses_choices_and_providers() {
        assert_eq!("auto".parse::<BackendChoice>(), Ok(BackendChoice::Auto));
        assert!("torch".parse::<BackendChoice>().is_err());
        assert_eq!(
            "cuda:1".parse::<ExecutionProvider>(),
            Ok(ExecutionProvider::Cuda { device_id: 1 })
        );
        assert_eq!(
            "TensorRT".parse::<ExecutionProvider>(),
            Ok(ExecutionProvider::TensorRt { device_id: 0 })
        );
    }
}
