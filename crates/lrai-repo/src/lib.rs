//! The model repository: Triton's on-disk layout (`<repo>/<model>/config.pbtxt` next to
//! `<model>/<version>/model.onnx`), so existing Triton repositories are served unchanged.
//!
//! - [`config`]: a hand-written parser for protobuf text format, the typed
//!   [`config::ModelConfig`] with Triton's field names and validation rules,
//!   auto-complete from the model's declared inputs and outputs (what Triton's ONNX
//!   Runtime backend does when `config.pbtxt` is missing or partial), and the
//!   Triton-shaped JSON that `GET /v2/models/{m}/config` returns. It doesn't log:
//!   warnings come back as [`config::ConfigWarning`] values.
//! - [`Repository`]: the table of models (READY / LOADING / UNAVAILABLE with the
//!   reason), startup loading, control modes, load/unload/reload with atomic swaps
//!   (`apply`: only changed versions are rebuilt, the old ones serve until the new ones
//!   are warm, then drain), the poller (`poll`), rollback, and which version answers an
//!   unversioned request (`versions`). `docs/lifecycle.md` has the rules.
//! - loading (`loader`): versions by policy, one backend session per instance, warm-up,
//!   then the `lrai-exec` pool and `lrai-sched` scheduler; a version is READY only after.
//! - ensembles (`ensemble`): Triton's `platform: "ensemble"`, a DAG of models whose steps
//!   run on their own models' handles (`docs/ensembles.md`).
//! - [`rollout`]: canary, A/B and shadow rollouts between two versions of a model, with
//!   gates and automatic rollback.
//! - [`ModelHandle`]: what the protocol layer talks to: metadata, input checks (the same
//!   for HTTP and gRPC), `infer`.

use std::path::PathBuf;

use lrai_core::{DataType, Dim};

mod apply;
mod backends;
pub mod config;
mod ensemble;
mod handle;
mod labels;
mod loader;
mod mlflow;
mod poll;
mod prepare;
mod repository;
mod reshape;
pub mod rollout;
mod scan;
mod versions;
mod warmup;

pub use handle::{ModelHandle, TensorMeta};
pub use labels::OutputLabels;
// The errors a request can come back with, so the protocol layer can map each to a status.
pub use apply::Rollback;
pub use backends::Backends;
pub use loader::LoadSettings;
pub use lrai_backend::BackendError;
pub use lrai_exec::ExecError;
pub use lrai_sched::SchedError;
pub use poll::PollPass;
pub use prepare::{ModelPrep, PrepRequest, Prepared};
pub use repository::{ControlMode, IndexEntry, RepoConfig, Repository, VersionState};
pub use versions::Routing;

use config::{Pos, TensorRole};

/// Errors reading, validating and completing model configurations.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The text is not protobuf text format.
    #[error("{pos}: expected {expected}, found {found}")]
    Syntax {
        /// Where the problem is.
        pos: Pos,
        /// What the parser expected there.
        expected: String,
        /// What it found instead.
        found: String,
    },
    /// A field holds a value of the wrong kind (a string where a number belongs, an
    /// unknown enum name, a number out of range).
    #[error("{pos}: field '{field}' expects {expected}, found {found}")]
    FieldType {
        /// Where the value is.
        pos: Pos,
        /// Field path, e.g. `input[0].data_type`.
        field: String,
        /// What the field accepts.
        expected: String,
        /// The value given.
        found: String,
    },
    /// A non-repeated field is given more than once.
    #[error("{pos}: field '{field}' is given again (first at {first}); it is not a repeated field")]
    DuplicateField {
        /// Where the second occurrence is.
        pos: Pos,
        /// Field path.
        field: String,
        /// Where the first occurrence is.
        first: Pos,
    },
    /// Two members of one protobuf `oneof` are set.
    #[error("{pos}: field '{field}' conflicts with '{other}' (line {}): only one of them may be set", other_pos.line)]
    OneofConflict {
        /// Where the second member is.
        pos: Pos,
        /// Field path of the second member.
        field: String,
        /// Field path of the member set first.
        other: String,
        /// Where the first member is.
        other_pos: Pos,
    },
    /// A field Triton requires is missing.
    #[error("model '{model}': {field} is required")]
    MissingField {
        /// Model name.
        model: String,
        /// What is missing, e.g. `input 'x' data_type`.
        field: String,
    },
    /// A value breaks a validation rule.
    #[error("model '{model}': {field} = {value}: {rule}")]
    Invalid {
        /// Model name.
        model: String,
        /// The field, e.g. `max_batch_size` or `input 'x' dims`.
        field: String,
        /// The value given, as written in config.pbtxt.
        value: String,
        /// The rule it breaks.
        rule: String,
    },
    /// `name` in config.pbtxt differs from the model's directory name.
    #[error(
        "config.pbtxt names the model '{name}' but its directory is '{dir}'; they must match \
         (as in Triton): rename one, or remove the name field"
    )]
    NameMismatch {
        /// The name in config.pbtxt.
        name: String,
        /// The directory name.
        dir: String,
    },
    /// Two inputs (or two outputs) share a name.
    #[error("model '{model}': {role} '{name}' is listed twice")]
    DuplicateTensor {
        /// Model name.
        model: String,
        /// Input or output.
        role: TensorRole,
        /// The repeated name.
        name: String,
    },
    /// The platform or backend is not ONNX.
    #[error(
        "model '{model}': platform '{platform}', backend '{backend}' is not something LRAI \
         serves; it serves ONNX models (platform \"onnxruntime_onnx\", backend \"onnxruntime\", \
         or neither)"
    )]
    UnsupportedPlatform {
        /// Model name.
        model: String,
        /// `platform` as given.
        platform: String,
        /// `backend` as given.
        backend: String,
    },
    /// An `lrai.*` parameter has a value LRAI does not know.
    #[error(
        "model '{model}': parameter '{key}' = \"{value}\": expected one of {}",
        allowed.join(", ")
    )]
    InvalidParameter {
        /// Model name.
        model: String,
        /// The parameter key.
        key: String,
        /// The value given.
        value: String,
        /// The values LRAI accepts.
        allowed: &'static [&'static str],
    },
    /// A config file failed to read or validate; the source says why.
    #[error("invalid model configuration '{}'", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<RepoError>,
    },
    /// config.pbtxt lists a tensor the model does not have.
    #[error(
        "config.pbtxt lists {role} '{name}', but model '{model}' has no such {role} (its {role}s: {})",
        declared.join(", ")
    )]
    NotInModel {
        /// Model name.
        model: String,
        /// Input or output.
        role: TensorRole,
        /// The name in config.pbtxt.
        name: String,
        /// The names the model declares.
        declared: Vec<String>,
    },
    /// The model has an input that config.pbtxt does not list.
    #[error(
        "model '{model}' has input '{name}', which config.pbtxt does not list; list every \
         input, or leave out the input section and LRAI fills it from the model"
    )]
    MissingInput {
        /// Model name.
        model: String,
        /// The unlisted input.
        name: String,
    },
    /// config.pbtxt and the model disagree on a tensor's datatype.
    #[error(
        "{role} '{name}' of model '{model}': config.pbtxt says {}, the model declares {}",
        config::datatype_to_config(*configured),
        config::datatype_to_config(*declared)
    )]
    DataTypeMismatch {
        /// Model name.
        model: String,
        /// Input or output.
        role: TensorRole,
        /// Tensor name.
        name: String,
        /// The datatype in config.pbtxt.
        configured: DataType,
        /// The datatype the model declares.
        declared: DataType,
    },
    /// config.pbtxt dims (with the implicit batch dimension) do not fit the model's shape.
    #[error("{}", config::shape_mismatch_text(self))]
    ShapeMismatch {
        /// Model name.
        model: String,
        /// Input or output.
        role: TensorRole,
        /// Tensor name.
        name: String,
        /// `dims` (or `reshape`) as written in config.pbtxt, without the batch dimension.
        dims: Vec<i64>,
        /// True when `dims` is the tensor's `reshape`.
        reshape: bool,
        /// The effective max_batch_size (0: no implicit batch dimension).
        max_batch_size: u32,
        /// The shape the model declares.
        declared: Vec<Dim>,
    },
    /// max_batch_size > 0 but a tensor has no variable first dimension.
    #[error(
        "model '{model}' has max_batch_size {max_batch_size}, but {role} '{name}' declares {}: \
         without a variable first dimension the model cannot batch; set max_batch_size: 0 \
         (or leave it out) and write full shapes in dims",
        lrai_core::format_dims(declared)
    )]
    NotBatchable {
        /// Model name.
        model: String,
        /// The configured max_batch_size.
        max_batch_size: u32,
        /// Input or output.
        role: TensorRole,
        /// Tensor name.
        name: String,
        /// The shape the model declares.
        declared: Vec<Dim>,
    },
    /// A tensor has neither config.pbtxt dims nor a declared rank to fill them from.
    #[error(
        "{role} '{name}' of model '{model}' has no declared shape; write its dims in config.pbtxt"
    )]
    UnknownRank {
        /// Model name.
        model: String,
        /// Input or output.
        role: TensorRole,
        /// Tensor name.
        name: String,
    },
    /// File I/O (the message names the path: fs-err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The repository directory can't be read.
    #[error("model repository '{}': {reason}", path.display())]
    Repository {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No such model (Triton's wording first: core `src/model_repository_manager/`).
    #[error("Request for unknown model: '{name}' is not found (models: {available})")]
    ModelNotFound {
        /// Requested name.
        name: String,
        /// Models in the table, comma-separated.
        available: String,
    },
    /// A model name the repository API refuses: empty, or a path rather than a name
    /// (Triton's wording: `ValidateModelName` in core `src/model_repository_manager/`).
    #[error("{}", invalid_model_name_text(name))]
    InvalidModelName {
        /// The name given.
        name: String,
    },
    /// The version is not a number (Triton's wording: server `src/common.cc`).
    #[error(
        "failed to get model version from specified version string '{version}' for model \
         '{name}', version should be an integral value > 0"
    )]
    BadVersion {
        /// Model name.
        name: String,
        /// Given version.
        version: String,
    },
    /// No such READY version (Triton's wording first).
    #[error(
        "Request for unknown model: '{name}' version {version} is not found (ready versions: \
         {ready})"
    )]
    VersionNotFound {
        /// Model name.
        name: String,
        /// Requested version.
        version: u64,
        /// READY versions, comma-separated.
        ready: String,
    },
    /// The model is in the table but has no READY version (Triton's wording first).
    #[error("Request for unknown model: '{name}' has no available versions (not ready: {reason})")]
    ModelUnavailable {
        /// Model name.
        name: String,
        /// Why (load error, loading).
        reason: String,
    },
    /// Model files are missing or misplaced.
    #[error("model '{model}': {reason}")]
    ModelFiles {
        /// Model name.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend could not load the model.
    #[error("model '{model}' version {version}: {source}")]
    Backend {
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// The backend's error.
        #[source]
        source: lrai_backend::BackendError,
    },
    /// The model asks for a backend that isn't available.
    #[error(
        "model '{model}' asks for backend '{backend}' (parameter lrai.backend), which is not available: {reason}"
    )]
    BackendUnavailable {
        /// Model name.
        model: String,
        /// Requested backend.
        backend: String,
        /// Why.
        reason: String,
    },
    /// Warm-up failed.
    #[error("model '{model}' version {version} failed its warm-up: {reason}")]
    Warmup {
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// Why.
        reason: String,
    },
    /// The model could not be prepared for serving (quantize-at-load).
    #[error("model '{model}' version {version}: {reason}")]
    Prepare {
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// Why, and what to change.
        reason: String,
    },
    /// Loading panicked (a bug in a backend).
    #[error("model '{model}' version {version}: loading crashed: {reason}")]
    LoadPanicked {
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// The panic.
        reason: String,
    },
    /// The repository API is off in this control mode (Triton's wording first: core
    /// `src/model_repository_manager/`).
    #[error(
        "explicit model load / unload is not allowed if polling is enabled (the server runs \
         with --model-control-mode {mode}); restart it with --model-control-mode explicit to \
         load, unload or roll back models through the API"
    )]
    ControlDisabled {
        /// The mode the server runs in (`none` or `poll`).
        mode: &'static str,
    },
    /// A rollback found no version that served before the one serving now.
    #[error(
        "model '{name}' has no previous version to roll back to: version {serving} serves \
         and no other version has served unversioned requests since the model was loaded"
    )]
    NoPreviousVersion {
        /// Model name.
        name: String,
        /// The version serving now.
        serving: u64,
    },
    /// The version a rollback would return to can't serve; nothing changed.
    #[error(
        "cannot roll model '{name}' back to version {version}: {reason}; version {serving} \
         keeps serving"
    )]
    RollbackTarget {
        /// Model name.
        name: String,
        /// The previous version.
        version: u64,
        /// The version serving now.
        serving: u64,
        /// Why it can't serve.
        reason: String,
    },
    /// A request names an input the model doesn't have (Triton's wording: core
    /// `src/model.cc`).
    #[error("unexpected inference input '{input}' for model '{model}' (its inputs: {expected})")]
    InputUnknown {
        /// Model name.
        model: String,
        /// Given name.
        input: String,
        /// Inputs, comma-separated.
        expected: String,
    },
    /// A request lacks a required input.
    #[error(
        "model '{model}' needs input '{input}', which the request does not give (inputs: {expected})"
    )]
    InputMissing {
        /// Model name.
        model: String,
        /// Missing input.
        input: String,
        /// Inputs, comma-separated.
        expected: String,
    },
    /// A request input has the wrong datatype.
    #[error("input '{input}' of model '{model}': expected datatype {expected}, got {got}")]
    InputDataType {
        /// Model name.
        model: String,
        /// Input.
        input: String,
        /// Configured datatype.
        expected: DataType,
        /// Given datatype.
        got: DataType,
    },
    /// A request input has the wrong shape.
    #[error(
        "unexpected shape for input '{input}' of model '{model}': expected {expected}, got {}: {why}",
        lrai_core::format_shape(got)
    )]
    InputShape {
        /// Model name.
        model: String,
        /// Input.
        input: String,
        /// Expected shape with -1 for free dims.
        expected: String,
        /// Given shape.
        got: Vec<usize>,
        /// Why it doesn't fit.
        why: String,
    },
    /// A request input's values the model's backend can't take (tract: BYTES that are
    /// not UTF-8), refused before the request is queued.
    #[error("input '{input}' of model '{model}': {detail}")]
    InputValue {
        /// Model name.
        model: String,
        /// Input.
        input: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The scheduler or execution layer failed the request.
    #[error(transparent)]
    Sched(#[from] lrai_sched::SchedError),
    /// An ensemble's configuration or its steps' models don't fit together (a cycle, an
    /// unknown step model, an unmapped tensor, mismatched datatypes or shapes).
    #[error("ensemble '{ensemble}': {reason}")]
    Ensemble {
        /// The ensemble's name.
        ensemble: String,
        /// What is wrong, naming the step, the model and the tensor.
        reason: String,
    },
    /// A step of an ensemble failed while serving a request.
    #[error("ensemble '{ensemble}' step {step} (model '{model}'): {source}")]
    EnsembleStep {
        /// The ensemble's name.
        ensemble: String,
        /// The step's index in `ensemble_scheduling.step`.
        step: usize,
        /// The step's model.
        model: String,
        /// The step model's error.
        #[source]
        source: Box<RepoError>,
    },
}

fn invalid_model_name_text(name: &str) -> String {
    if name.trim().is_empty() {
        "Model name cannot be empty. Please enter a valid name to deploy.".to_string()
    } else {
        let why = lrai_core::confine::invalid_name_reason(name).unwrap_or("it is not a name");
        format!(
            "invalid model name '{}', model name must not contain path traversal \
             characters ({why}; a model is a directory directly under the repository: no \
             '/', '\\', leading '.' or control characters, at most 255 bytes)",
            name.escape_debug()
        )
    }
}

/// Result with [`RepoError`].
pub type Result<T, E = RepoError> = std::result::Result<T, E>;
