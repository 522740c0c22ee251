//! Model configuration: `config.pbtxt` in Triton's schema.
//!
//! The path from file to served model:
//! 1. [`text`] parses protobuf text format into a generic tree with line/column positions;
//! 2. [`ModelConfig::from_text`] / [`ModelConfig::from_file`] type it against Triton's
//!    `model_config.proto` and [`ModelConfig::validate`] it; fields LRAI does not
//!    implement (`sequence_batching`, `optimization`, …) and unknown fields come back as
//!    [`ConfigWarning`]s, not errors, so the caller can log them and load anyway;
//! 3. [`complete()`] merges the parsed config (or none) with the tensors the ONNX model
//!    declares, as Triton's ONNX Runtime backend does, into the effective config;
//! 4. [`ModelConfig::to_triton_json`] renders it for `GET /v2/models/{m}/config`, and
//!    [`ModelConfig::to_pbtxt`] writes it back as text.
//!
//! Wire spellings (`TYPE_FP32`, `KIND_CPU`) are converted here and nowhere else.

mod complete;
mod decode;
mod json;
mod model;
mod print;
mod read;
mod schema;
pub mod text;
mod validate;
mod warning;

pub(crate) use complete::shape_mismatch_text;
pub use complete::{CompleteOptions, DEFAULT_MAX_BATCH_SIZE, complete};
pub use model::{
    DEFAULT_MODEL_FILENAME, DynamicBatching, ENSEMBLE_PLATFORM, EnsembleScheduling, EnsembleStep,
    InputFormat, InstanceGroup, InstanceKind, ModelConfig, ModelInput, ModelOutput, ModelWarmup,
    ONNX_BACKEND, ONNX_PLATFORM, QueuePolicy, TensorRole, TimeoutAction, VersionPolicy, WarmupData,
    WarmupInput, datatype_from_config, datatype_from_config_number, datatype_to_config,
    format_config_dims,
};
pub use text::Pos;
pub use warning::{
    ConfigWarning, LRAI_PARAMETERS, LraiParameter, QUANTIZATION_SUMMARY, lrai_parameter,
};
