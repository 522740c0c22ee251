//! The one edge mapping: every error a request can meet becomes an HTTP status, a gRPC
//! code and a `{"error": "..."}` body, following Triton's table (NOT_FOUND→404,
//! UNAVAILABLE→503, INTERNAL→500, UNSUPPORTED→501, everything else→400). Matches are
//! exhaustive, so a new error variant does not compile until someone picks its status.

use axum::http::StatusCode;
use lrai_monitor::{FailureReason, RequestStatus};
use lrai_repo::{BackendError, ExecError, RepoError, SchedError};

use crate::ProtocolError;

/// Everything a request to the server can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The request is malformed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Repository, model, input or scheduling error.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The body is larger than the configured limit.
    #[error(
        "request body is larger than the limit of {limit} bytes; raise --http-max-body-bytes or send less"
    )]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// A header holds a bad value.
    #[error("header '{name}': {reason}")]
    Header {
        /// Header name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Raw binary requests need a model with exactly one input (Triton's wording first).
    #[error(
        "Raw request must only have 1 input (found 1) to be deduced but got {inputs} inputs in \
         '{model}' model configuration; a raw binary request (Inference-Header-Content-Length: \
         0) carries one input's data, so send a JSON request or use the binary tensor extension"
    )]
    RawBinaryInputs {
        /// Model name.
        model: String,
        /// Its inputs.
        inputs: usize,
    },
    /// A requested output the model doesn't have (Triton's wording: core `src/model.cc`).
    #[error(
        "unexpected inference output '{output}' for model '{model}' (its outputs: {available})"
    )]
    UnknownOutput {
        /// Model name.
        model: String,
        /// Requested name.
        output: String,
        /// Outputs, comma-separated.
        available: String,
    },
    /// Route not served.
    #[error("not found: {0}")]
    NoRoute(String),
    /// A request body that isn't the expected JSON.
    #[error("malformed request body: {0}")]
    BadJson(String),
    /// The server is shutting down.
    #[error("the server is shutting down; retry on another replica")]
    ShuttingDown,
    /// A load request carrying a config override or model files: refused by design, as
    /// uploading code or configuration through an API is how inference servers were taken
    /// over (TorchServe's ShellTorch, CVE-2023-43654).
    #[error(
        "load parameters ({keys}) are refused: LRAI takes no config override or file upload \
         through the load API; put the files and config.pbtxt in the model repository and \
         load again"
    )]
    LoadParameters {
        /// The parameter names, comma-separated.
        keys: String,
    },
    /// A rollout can't start, or there is none.
    #[error(transparent)]
    Rollout(#[from] lrai_repo::rollout::RolloutError),
    /// An admin action that the audit log could not record (the action itself ran).
    #[error("the action ran but the audit log could not record it: {0}")]
    Audit(String),
}

/// Triton's status classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 400 / INVALID_ARGUMENT.
    Invalid,
    /// 404 / NOT_FOUND.
    NotFound,
    /// 503 / UNAVAILABLE.
    Unavailable,
    /// 500 / INTERNAL.
    Internal,
    /// 501 / UNIMPLEMENTED.
    Unsupported,
    /// 413 / RESOURCE_EXHAUSTED.
    TooLarge,
}

fn protocol_class(e: &ProtocolError) -> Class {
    match e {
        ProtocolError::Unsupported { .. } => Class::Unsupported,
        ProtocolError::Json { .. }
        | ProtocolError::TrailingData { .. }
        | ProtocolError::MissingField { .. }
        | ProtocolError::UnknownDatatype { .. }
        | ProtocolError::HalfInJson { .. }
        | ProtocolError::JsonDepth { .. }
        | ProtocolError::ElementCount { .. }
        | ProtocolError::TooManyElements { .. }
        | ProtocolError::BadShape { .. }
        | ProtocolError::BinarySize { .. }
        | ProtocolError::BinaryTotal { .. }
        | ProtocolError::BinaryWithoutHeader { .. }
        | ProtocolError::HeaderLength { .. }
        | ProtocolError::ConflictingData { .. }
        | ProtocolError::NoData { .. }
        | ProtocolError::RawCount { .. }
        | ProtocolError::ContentsField { .. }
        | ProtocolError::HalfInContents { .. }
        | ProtocolError::ValueRange { .. }
        | ProtocolError::Tensor { .. }
        | ProtocolError::RawShape { .. }
        | ProtocolError::RawBytesShape { .. }
        | ProtocolError::RawSize { .. }
        | ProtocolError::DuplicateTensor { .. }
        | ProtocolError::BadParameter { .. }
        | ProtocolError::ReservedParameter { .. }
        | ProtocolError::UnknownOutput { .. }
        | ProtocolError::BadClassification { .. }
        | ProtocolError::ClassificationType { .. }
        | ProtocolError::ClassificationTooLarge { .. }
        | ProtocolError::NonUtf8Bytes { .. } => Class::Invalid,
    }
}

fn exec_class(e: &ExecError) -> Class {
    match e {
        ExecError::Backend(_) | ExecError::InstanceCrashed { .. } | ExecError::Split { .. } => {
            Class::Internal
        }
        ExecError::ShuttingDown { .. } => Class::Unavailable,
    }
}

fn sched_class(e: &SchedError) -> Class {
    match e {
        SchedError::QueueFull { .. }
        | SchedError::Timeout { .. }
        | SchedError::Unmeetable { .. }
        | SchedError::NotServing { .. } => Class::Unavailable,
        SchedError::BadPriority { .. } | SchedError::BatchDim { .. } => Class::Invalid,
        SchedError::Exec(e) => exec_class(e),
    }
}

fn backend_class(e: &BackendError) -> Class {
    match e {
        BackendError::ModelFile { .. }
        | BackendError::UnsupportedType { .. }
        | BackendError::UnsupportedOperator { .. }
        | BackendError::UnsupportedDataType { .. }
        | BackendError::Load { .. }
        | BackendError::MissingInput { .. }
        | BackendError::UnknownInput { .. }
        | BackendError::InputDataType { .. }
        | BackendError::InputShape { .. }
        | BackendError::InputValue { .. }
        | BackendError::NotCompiled { .. }
        | BackendError::OrtNotFound { .. }
        | BackendError::OrtInit { .. }
        | BackendError::ExecutionProvider { .. }
        | BackendError::Tensor(_) => Class::Invalid,
        BackendError::Run { .. } => Class::Internal,
    }
}

fn repo_class(e: &RepoError) -> Class {
    match e {
        RepoError::ModelNotFound { .. } | RepoError::VersionNotFound { .. } => Class::NotFound,
        RepoError::ModelUnavailable { .. } | RepoError::ControlDisabled { .. } => {
            Class::Unavailable
        }
        RepoError::Io(_) | RepoError::LoadPanicked { .. } => Class::Internal,
        RepoError::Backend { source, .. } => backend_class(source),
        RepoError::Sched(e) => sched_class(e),
        // A failing step answers as that step's model would.
        RepoError::EnsembleStep { source, .. } => repo_class(source),
        RepoError::Syntax { .. }
        | RepoError::InvalidModelName { .. }
        | RepoError::FieldType { .. }
        | RepoError::DuplicateField { .. }
        | RepoError::OneofConflict { .. }
        | RepoError::MissingField { .. }
        | RepoError::Invalid { .. }
        | RepoError::NameMismatch { .. }
        | RepoError::DuplicateTensor { .. }
        | RepoError::UnsupportedPlatform { .. }
        | RepoError::InvalidParameter { .. }
        | RepoError::ConfigFile { .. }
        | RepoError::NotInModel { .. }
        | RepoError::MissingInput { .. }
        | RepoError::DataTypeMismatch { .. }
        | RepoError::ShapeMismatch { .. }
        | RepoError::NotBatchable { .. }
        | RepoError::UnknownRank { .. }
        | RepoError::Repository { .. }
        | RepoError::BadVersion { .. }
        | RepoError::ModelFiles { .. }
        | RepoError::BackendUnavailable { .. }
        | RepoError::Warmup { .. }
        | RepoError::Prepare { .. }
        | RepoError::NoPreviousVersion { .. }
        | RepoError::RollbackTarget { .. }
        | RepoError::InputUnknown { .. }
        | RepoError::InputMissing { .. }
        | RepoError::InputDataType { .. }
        | RepoError::InputValue { .. }
        | RepoError::InputShape { .. }
        | RepoError::Ensemble { .. } => Class::Invalid,
    }
}

fn rollout_class(e: &lrai_repo::rollout::RolloutError) -> Class {
    use lrai_repo::rollout::RolloutError;
    match e {
        RolloutError::Repo(e) => repo_class(e),
        RolloutError::NoRollout { .. } => Class::NotFound,
        RolloutError::Spec { .. }
        | RolloutError::NoSuchVersion { .. }
        | RolloutError::CandidateIsBaseline { .. }
        | RolloutError::CandidateLoad { .. }
        | RolloutError::Incompatible { .. }
        | RolloutError::InProgress { .. } => Class::Invalid,
    }
}

impl ServerError {
    /// The status class.
    pub fn class(&self) -> Class {
        match self {
            ServerError::Protocol(e) => protocol_class(e),
            ServerError::Repo(e) => repo_class(e),
            ServerError::BodyTooLarge { .. } => Class::TooLarge,
            ServerError::NoRoute(_) => Class::NotFound,
            ServerError::ShuttingDown => Class::Unavailable,
            ServerError::Rollout(e) => rollout_class(e),
            ServerError::Audit(_) => Class::Internal,
            ServerError::Body(_)
            | ServerError::Header { .. }
            | ServerError::RawBinaryInputs { .. }
            | ServerError::UnknownOutput { .. }
            | ServerError::LoadParameters { .. }
            | ServerError::BadJson(_) => Class::Invalid,
        }
    }

    /// The HTTP status.
    pub fn http_status(&self) -> StatusCode {
        match self.class() {
            Class::Invalid => StatusCode::BAD_REQUEST,
            Class::NotFound => StatusCode::NOT_FOUND,
            Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Class::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Class::Unsupported => StatusCode::NOT_IMPLEMENTED,
            Class::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The gRPC status.
    pub fn grpc_status(&self) -> tonic::Status {
        let code = match self.class() {
            Class::Invalid => tonic::Code::InvalidArgument,
            Class::NotFound => tonic::Code::NotFound,
            Class::Unavailable => tonic::Code::Unavailable,
            Class::Internal => tonic::Code::Internal,
            Class::Unsupported => tonic::Code::Unimplemented,
            Class::TooLarge => tonic::Code::ResourceExhausted,
        };
        tonic::Status::new(code, self.to_string())
    }

    /// Whether a client should retry later (adds `Retry-After`).
    pub fn retryable(&self) -> bool {
        let ServerError::Repo(e) = self else {
            return false;
        };
        let mut e: &RepoError = e;
        while let RepoError::EnsembleStep { source, .. } = e {
            e = source;
        }
        matches!(e, RepoError::Sched(SchedError::QueueFull { .. }))
    }

    /// The metric labels for this failure.
    pub fn metric_labels(&self) -> (RequestStatus, FailureReason) {
        let status = match self.class() {
            Class::NotFound => RequestStatus::NotFound,
            Class::Unavailable => RequestStatus::Unavailable,
            Class::Internal => RequestStatus::ServerError,
            Class::Invalid | Class::Unsupported | Class::TooLarge => RequestStatus::ClientError,
        };
        let reason = match self {
            ServerError::Repo(e) => repo_reason(e),
            ServerError::ShuttingDown => FailureReason::Canceled,
            _ => FailureReason::Rejected,
        };
        (status, reason)
    }
}

fn repo_reason(e: &RepoError) -> FailureReason {
    match e {
        RepoError::Sched(SchedError::Exec(_)) => FailureReason::Backend,
        RepoError::Sched(SchedError::NotServing { .. }) => FailureReason::Canceled,
        RepoError::EnsembleStep { source, .. } => repo_reason(source),
        _ => FailureReason::Rejected,
    }
}

/// Result with [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
