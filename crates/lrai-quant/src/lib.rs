//! LRAI's quantizer: rewrites a float32 ONNX model into INT8 (static QDQ or dynamic) or
//! FP16, measures what that cost on evaluation data, and keeps the most sensitive
//! layers in float until an accuracy budget holds — overall and for every group.
//!
//! The pieces, in the order [`quantize`] uses them:
//! - [`data`]: `.npz` / `.npy` samples bound to model inputs, with labels and groups;
//! - `qdq` (static), `dynamic` and `fp16`: the graph rewrites, each a pure function of
//!   the model, calibrated ranges and the set of layers kept float;
//! - [`calibrate`]: ranges by min-max, percentile or entropy;
//! - [`eval`]: accuracy, agreement, cosine, per group;
//! - `search`: per-layer sensitivity and the fallback that meets the budget;
//! - [`report`]: the JSON report and the printed table;
//! - [`serving`]: quantize-at-load for the server, cached next to the model.
//!
//! Models run on `lrai-backend` sessions (ONNX Runtime or tract). This crate writes no
//! files and prints nothing: the CLI (`src/cmd/quantize.rs`) and the repository loader
//! do that with what [`quantize`] returns.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use lrai_backend::{Backend, SessionOptions};

pub mod calibrate;
pub mod data;
mod dynamic;
mod error;
pub mod eval;
mod fp16;
mod graph;
mod latency;
pub mod params;
mod plan;
mod qdq;
mod quantizer;
pub mod report;
pub mod serving;

pub use calibrate::CalibrationMethod;
pub use error::{QuantError, Result};
pub use eval::Metric;
pub use params::ActivationType;
pub use plan::{Layer, Plan, check_not_quantized};
pub use quantizer::{Outcome, quantize, quantize_model};
pub use report::Report;

/// Progress messages (calibration batches, sensitivity steps) for the caller to show.
pub type Progress<'a> = dyn Fn(&str) + 'a;

/// Which rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Activations quantized with calibrated scales (QDQ); for conv nets.
    #[default]
    Static,
    /// Activations quantized at run time; for MatMul-heavy models (transformers, MLPs).
    Dynamic,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "static" => Ok(Mode::Static),
            "dynamic" => Ok(Mode::Dynamic),
            other => Err(format!(
                "unknown mode '{other}': expected static or dynamic"
            )),
        }
    }
}

/// The number format of the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 8-bit integers.
    #[default]
    Int8,
    /// IEEE half precision (for GPU backends); inputs and outputs stay float32.
    Fp16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "int8" => Ok(Precision::Int8),
            "fp16" | "float16" => Ok(Precision::Fp16),
            other => Err(format!(
                "unknown precision '{other}': expected int8 or fp16"
            )),
        }
    }
}

/// Everything [`quantize`] needs besides the model and the backends.
#[derive(Debug, Clone)]
pub struct QuantizeConfig {
    /// Static or dynamic (int8 only).
    pub mode: Mode,
    /// int8 or fp16.
    pub precision: Precision,
    /// Calibration samples (`.npz` or directory of `.npy`); static mode needs them.
    pub calibration: Option<PathBuf>,
    /// How activation ranges are chosen.
    pub method: CalibrationMethod,
    /// Most calibration samples used (the first ones).
    pub calibration_samples: usize,
    /// Evaluation samples with optional `labels` and `group`.
    pub eval: Option<PathBuf>,
    /// Most evaluation samples used (the first ones); `None` = all.
    pub eval_samples: Option<usize>,
    /// Output compared; `None` = the first output.
    pub eval_output: Option<String>,
    /// What the budget is measured in.
    pub metric: Metric,
    /// Largest allowed drop of the metric (absolute), overall and per group.
    pub max_accuracy_drop: f64,
    /// Activation integer type (static mode; dynamic mode is always u8).
    pub activation_type: ActivationType,
    /// 7-bit weights (ONNX Runtime's advice for x86 without VNNI).
    pub reduce_range: bool,
    /// Dynamic mode: also quantize MatMuls of two activations (attention scores).
    pub activation_matmuls: bool,
    /// Layers (node names) the user wants kept float.
    pub keep_float: Vec<String>,
    /// Measure every layer's sensitivity even when full quantization meets the budget.
    pub always_rank: bool,
    /// Rows per run for calibration and evaluation.
    pub batch_size: usize,
    /// Batch sizes to time each backend at; empty = no timing.
    pub latency_batches: Vec<usize>,
    /// Timed runs per measurement (after 2 warm-up runs).
    pub latency_runs: usize,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        QuantizeConfig {
            mode: Mode::Static,
            precision: Precision::Int8,
            calibration: None,
            method: CalibrationMethod::MinMax,
            calibration_samples: 256,
            eval: None,
            eval_samples: None,
            eval_output: None,
            metric: Metric::Auto,
            max_accuracy_drop: 0.01,
            activation_type: ActivationType::U8,
            reduce_range: default_reduce_range(),
            activation_matmuls: false,
            keep_float: Vec::new(),
            always_rank: false,
            batch_size: 32,
            latency_batches: vec![1],
            latency_runs: 20,
        }
    }
}

/// 7-bit weights unless this CPU has VNNI: without VNNI, ONNX Runtime's u8×s8 kernels
/// sum pairs of products in int16 and can saturate with full 8-bit weights.
pub fn default_reduce_range() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The backends quantization runs on.
#[derive(Debug, Clone)]
pub struct Engines {
    /// Runs calibration and evaluation.
    pub primary: Arc<dyn Backend>,
    /// Each one times the float and quantized models (and must load the result).
    pub timing: Vec<Arc<dyn Backend>>,
    /// Session options for all of them.
    pub options: SessionOptions,
}

pub(crate) fn layer_set(layers: &[String]) -> HashSet<String> {
    layers.iter().cloned().collect()
}
