//! [`QuantError`]: every way quantization can fail, each saying what to do about it.

use std::path::PathBuf;

/// Errors from reading data, rewriting graphs and evaluating candidates.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The model already holds quantized operators or integer weights.
    #[error(
        "model '{model}' is already quantized (it has {what}); quantize the original float32 model instead"
    )]
    AlreadyQuantized {
        /// Model name.
        model: String,
        /// The operator or tensor that gave it away.
        what: String,
    },
    /// Something about the model's structure that the quantizer cannot handle.
    #[error("model '{model}': {reason}")]
    Model {
        /// Model name.
        model: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Nothing in the model can be quantized in the chosen mode.
    #[error("model '{model}' has nothing to quantize in {mode} mode ({hint})")]
    NothingToQuantize {
        /// Model name.
        model: String,
        /// The mode asked for.
        mode: String,
        /// What would work instead.
        hint: String,
    },
    /// A calibration or evaluation file does not fit the model.
    #[error("{role} data '{}': {reason}", path.display())]
    Data {
        /// `calibration` or `eval`.
        role: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What does not fit, and how to fix it.
        reason: String,
    },
    /// An option that cannot work with the others.
    #[error("{0}")]
    Options(String),
    /// Running a model (float, candidate or calibration) failed.
    #[error("{stage}: {source}")]
    Backend {
        /// What was being run.
        stage: String,
        /// The backend's error.
        #[source]
        source: lrai_backend::BackendError,
    },
    /// Tensor or `.npy` handling failed.
    #[error(transparent)]
    Core(#[from] lrai_core::CoreError),
    /// Reading or writing a model failed.
    #[error(transparent)]
    Onnx(#[from] lrai_onnx::OnnxError),
    /// File I/O (the message names the path: fs-err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl QuantError {
    /// Wraps a backend error with the stage it happened in.
    pub fn backend(stage: impl Into<String>, source: lrai_backend::BackendError) -> QuantError {
        QuantError::Backend {
            stage: stage.into(),
            source,
        }
    }
}

/// Result with [`QuantError`].
pub type Result<T, E = QuantError> = std::result::Result<T, E>;
