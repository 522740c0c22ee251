//! The typed model configuration: the part of Triton's `ModelConfig` that LRAI implements,
//! with Triton's field names (`max_queue_delay_microseconds` stays a raw number; helpers
//! give `Duration`s).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use lrai_core::DataType;

/// The default `default_model_filename` for ONNX models.
pub const DEFAULT_MODEL_FILENAME: &str = "model.onnx";
/// Triton's platform name for ONNX models.
pub const ONNX_PLATFORM: &str = "onnxruntime_onnx";
/// Triton's backend name for ONNX models.
pub const ONNX_BACKEND: &str = "onnxruntime";
/// Triton's platform name for ensembles (a DAG of other models, no model file).
pub const ENSEMBLE_PLATFORM: &str = "ensemble";

/// A model configuration (`config.pbtxt`), as parsed or as completed.
///
/// Parsed, it says what the file says (`max_batch_size` is `None` when the file leaves it
/// out); completed by [`complete`](super::complete()), it is the effective configuration the
/// server runs with and shows at `GET /v2/models/{m}/config`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Model name; equal to the model's directory name.
    pub name: String,
    /// `platform`; empty or `onnxruntime_onnx`.
    pub platform: String,
    /// `backend`; empty or `onnxruntime`.
    pub backend: String,
    /// Which versions to serve.
    pub version_policy: VersionPolicy,
    /// Rows per batch; 0 means the model does not batch and `dims` are full shapes. When
    /// greater than 0 every input and output has an implicit leading batch dimension that
    /// `dims` leave out. `None`: not given (auto-complete decides).
    pub max_batch_size: Option<u32>,
    /// Inputs, in config order.
    pub input: Vec<ModelInput>,
    /// Outputs, in config order.
    pub output: Vec<ModelOutput>,
    /// The dynamic batcher; `None` runs requests one at a time, in arrival order.
    pub dynamic_batching: Option<DynamicBatching>,
    /// Instance groups; empty means one default group.
    pub instance_group: Vec<InstanceGroup>,
    /// The model file inside each version directory.
    pub default_model_filename: String,
    /// `parameters` (key to `string_value`); LRAI's own keys start with `lrai.`.
    pub parameters: BTreeMap<String, String>,
    /// Warm-up requests run before the model is ready.
    pub model_warmup: Vec<ModelWarmup>,
    /// The steps of an ensemble (`platform: "ensemble"`); `None` for ONNX models.
    pub ensemble_scheduling: Option<EnsembleScheduling>,
}

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        ModelConfig {
            name: String::new(),
            platform: String::new(),
            backend: String::new(),
            version_policy: VersionPolicy::default(),
            max_batch_size: None,
            input: Vec::new(),
            output: Vec::new(),
            dynamic_batching: None,
            instance_group: Vec::new(),
            default_model_filename: DEFAULT_MODEL_FILENAME.to_string(),
            parameters: BTreeMap::new(),
            model_warmup: Vec::new(),
            ensemble_scheduling: None,
        }
    }
}

impl ModelConfig {
    /// An empty configuration for `name`, as if `config.pbtxt` were absent.
    pub fn named(name: &str) -> ModelConfig {
        ModelConfig {
            name: name.to_string(),
            ..ModelConfig::default()
        }
    }

    /// `max_batch_size`, with "not given" read as 0 (Triton's proto3 default).
    pub fn max_batch(&self) -> u32 {
        self.max_batch_size.unwrap_or(0)
    }

    /// True when requests carry an implicit leading batch dimension.
    pub fn batches(&self) -> bool {
        self.max_batch() > 0
    }

    /// The value of a `parameters` key.
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters.get(key).map(String::as_str)
    }

    /// A duration parameter given in milliseconds (validated when the config loads).
    fn millis(&self, key: &str) -> Option<std::time::Duration> {
        let ms = self.parameter(key)?.trim().parse::<f64>().ok()?;
        (ms.is_finite() && ms > 0.0).then(|| std::time::Duration::from_secs_f64(ms / 1e3))
    }

    /// The latency objective that turns on adaptive batching (`lrai.slo_p95_ms`), unless
    /// `lrai.batcher` is `static` or the model does not batch.
    pub fn slo(&self) -> Option<std::time::Duration> {
        if self.parameter("lrai.batcher") == Some("static") || self.max_batch() == 0 {
            return None;
        }
        self.millis("lrai.slo_p95_ms")
    }

    /// Sequence-length buckets (`lrai.pad_buckets`, on axis `lrai.pad_axis`, default 1),
    /// for models that ignore padding through an attention mask; batching models only.
    pub fn padding(&self) -> Option<lrai_sched::Padding> {
        if self.max_batch() == 0 {
            return None;
        }
        let axis = self
            .parameter("lrai.pad_axis")
            .and_then(|a| a.trim().parse::<usize>().ok())
            .unwrap_or(1);
        lrai_sched::Padding::parse(axis, self.parameter("lrai.pad_buckets")?)
    }

    /// `lrai.adaptive_max_delay_ms`.
    pub fn adaptive_max_delay(&self) -> Option<std::time::Duration> {
        self.millis("lrai.adaptive_max_delay_ms")
    }

    /// The input with this name.
    pub fn input(&self, name: &str) -> Option<&ModelInput> {
        self.input.iter().find(|i| i.name == name)
    }

    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<&ModelOutput> {
        self.output.iter().find(|o| o.name == name)
    }

    /// True for an ensemble (`platform: "ensemble"`).
    pub fn is_ensemble(&self) -> bool {
        self.platform == ENSEMBLE_PLATFORM
    }
}

/// `ensemble_scheduling`: the steps of an ensemble, connected by tensor names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnsembleScheduling {
    /// The steps, in config order (the order says nothing about when they run).
    pub step: Vec<EnsembleStep>,
}

/// One `ensemble_scheduling.step`: a model run on ensemble tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleStep {
    /// The model this step runs.
    pub model_name: String,
    /// Its version; -1 (the default) is whichever version serves unversioned requests.
    pub model_version: i64,
    /// The step model's input name -> the ensemble tensor it takes.
    pub input_map: BTreeMap<String, String>,
    /// The step model's output name -> the ensemble tensor it produces.
    pub output_map: BTreeMap<String, String>,
}

impl EnsembleStep {
    /// A step running the latest version of `model_name`, with empty maps.
    pub fn new(model_name: &str) -> EnsembleStep {
        EnsembleStep {
            model_name: model_name.to_string(),
            model_version: -1,
            input_map: BTreeMap::new(),
            output_map: BTreeMap::new(),
        }
    }
}

/// Which versions of a model to serve (`version_policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The `num_versions` highest versions.
    Latest {
        /// How many; at least 1.
        num_versions: u32,
    },
    /// Every version found.
    All,
    /// Exactly these versions.
    Specific {
        /// Version numbers.
        versions: Vec<i64>,
    },
}

impl Default for VersionPolicy {
    /// Triton's default: the latest version only.
    fn default() -> VersionPolicy {
        VersionPolicy::Latest { num_versions: 1 }
    }
}

/// Whether a tensor is an input or an output (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorRole {
    /// A model input.
    Input,
    /// A model output.
    Output,
}

impl fmt::Display for TensorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TensorRole::Input => "input",
            TensorRole::Output => "output",
        })
    }
}

/// Input layout hint (`format`); informational for ONNX models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InputFormat {
    /// `FORMAT_NONE`.
    #[default]
    None,
    /// `FORMAT_NHWC`: dims are `[h, w, c]`.
    Nhwc,
    /// `FORMAT_NCHW`: dims are `[c, h, w]`.
    Nchw,
}

impl InputFormat {
    /// The config.pbtxt spelling.
    pub fn as_config(self) -> &'static str {
        match self {
            InputFormat::None => "FORMAT_NONE",
            InputFormat::Nhwc => "FORMAT_NHWC",
            InputFormat::Nchw => "FORMAT_NCHW",
        }
    }
}

/// One `input` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub data_type: DataType,
    /// Layout hint.
    pub format: InputFormat,
    /// Shape without the batch dimension when max_batch_size > 0; -1 is a variable size.
    pub dims: Vec<i64>,
    /// The shape the model sees instead of `dims` (same element count); `Some(vec![])`
    /// makes a `[1]` input a scalar.
    pub reshape: Option<Vec<i64>>,
    /// TensorRT shape tensor; always false for ONNX (validation rejects true).
    pub is_shape_tensor: bool,
    /// Requests in one batch may differ in this input's shape.
    pub allow_ragged_batch: bool,
    /// Requests may leave this input out.
    pub optional: bool,
}

impl ModelInput {
    /// An input with default settings.
    pub fn new(name: &str, data_type: DataType, dims: Vec<i64>) -> ModelInput {
        ModelInput {
            name: name.to_string(),
            data_type,
            format: InputFormat::None,
            dims,
            reshape: None,
            is_shape_tensor: false,
            allow_ragged_batch: false,
            optional: false,
        }
    }
}

/// One `output` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub data_type: DataType,
    /// Shape without the batch dimension when max_batch_size > 0; -1 is a variable size.
    pub dims: Vec<i64>,
    /// The shape the model produces, when it differs from `dims` (same element count).
    pub reshape: Option<Vec<i64>>,
    /// Class labels for the classification extension, relative to the model directory.
    pub label_filename: Option<String>,
    /// TensorRT shape tensor; always false for ONNX (validation rejects true).
    pub is_shape_tensor: bool,
}

impl ModelOutput {
    /// An output with default settings.
    pub fn new(name: &str, data_type: DataType, dims: Vec<i64>) -> ModelOutput {
        ModelOutput {
            name: name.to_string(),
            data_type,
            dims,
            reshape: None,
            label_filename: None,
            is_shape_tensor: false,
        }
    }
}

/// `dynamic_batching`: how queued requests are combined into batches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicBatching {
    /// Batch sizes to aim for (each 1..=max_batch_size). Empty: aim for max_batch_size.
    pub preferred_batch_size: Vec<u32>,
    /// How long the oldest request may wait for a fuller batch; 0 sends a batch as soon as
    /// an instance is idle.
    pub max_queue_delay_microseconds: u64,
    /// Responses leave in request order.
    pub preserve_ordering: bool,
    /// Number of priority levels (1 is highest); 0 disables priorities.
    pub priority_levels: u64,
    /// Priority of requests that name none (1..=priority_levels when levels are on).
    pub default_priority_level: u64,
    /// Queue policy for every level without its own.
    pub default_queue_policy: Option<QueuePolicy>,
    /// Queue policy per priority level.
    pub priority_queue_policy: BTreeMap<u64, QueuePolicy>,
}

impl DynamicBatching {
    /// `max_queue_delay_microseconds` as a `Duration`.
    pub fn max_queue_delay(&self) -> Duration {
        Duration::from_micros(self.max_queue_delay_microseconds)
    }

    /// The queue policy for a priority level (the level's own, else the default one).
    pub fn queue_policy(&self, level: u64) -> QueuePolicy {
        self.priority_queue_policy
            .get(&level)
            .or(self.default_queue_policy.as_ref())
            .cloned()
            .unwrap_or_default()
    }
}

/// `ModelQueuePolicy`: limits on one priority level's queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePolicy {
    /// What happens to a request whose timeout passes while queued.
    pub timeout_action: TimeoutAction,
    /// Queue timeout for requests that set none; 0: no timeout.
    pub default_timeout_microseconds: u64,
    /// Requests may set a shorter timeout of their own.
    pub allow_timeout_override: bool,
    /// Most requests queued at this level; 0: no limit beyond the server's.
    pub max_queue_size: u32,
}

impl QueuePolicy {
    /// The default queue timeout; `None` when there is none.
    pub fn default_timeout(&self) -> Option<Duration> {
        (self.default_timeout_microseconds > 0)
            .then(|| Duration::from_micros(self.default_timeout_microseconds))
    }
}

/// `timeout_action` of a queue policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeoutAction {
    /// `REJECT`: fail the request.
    #[default]
    Reject,
    /// `DELAY`: keep it, after requests that have not timed out.
    Delay,
}

impl TimeoutAction {
    /// The config.pbtxt spelling.
    pub fn as_config(self) -> &'static str {
        match self {
            TimeoutAction::Reject => "REJECT",
            TimeoutAction::Delay => "DELAY",
        }
    }
}

/// One `instance_group` entry: `count` copies of the model on one kind of device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceGroup {
    /// Group name; auto-complete names unnamed groups `<model>_<index>`.
    pub name: String,
    /// Device kind.
    pub kind: InstanceKind,
    /// Instances per device (per listed GPU for `KIND_GPU`); at least 1.
    pub count: u32,
    /// GPU ids for `KIND_GPU` (empty: every GPU).
    pub gpus: Vec<i32>,
}

impl InstanceGroup {
    /// An unnamed group of one instance of `kind`.
    pub fn new(kind: InstanceKind) -> InstanceGroup {
        InstanceGroup {
            name: String::new(),
            kind,
            count: 1,
            gpus: Vec::new(),
        }
    }
}

/// `kind` of an instance group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InstanceKind {
    /// `KIND_AUTO`: GPU when one is available, else CPU (resolved when loading).
    #[default]
    Auto,
    /// `KIND_GPU`.
    Gpu,
    /// `KIND_CPU`.
    Cpu,
    /// `KIND_MODEL`: the model places itself.
    Model,
}

impl InstanceKind {
    /// The config.pbtxt spelling.
    pub fn as_config(self) -> &'static str {
        match self {
            InstanceKind::Auto => "KIND_AUTO",
            InstanceKind::Gpu => "KIND_GPU",
            InstanceKind::Cpu => "KIND_CPU",
            InstanceKind::Model => "KIND_MODEL",
        }
    }
}

/// One `model_warmup` entry: a request run `count` times before the model is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelWarmup {
    /// Name, for logs.
    pub name: String,
    /// Rows in the warm-up request (1 for models that do not batch).
    pub batch_size: u32,
    /// The request's inputs by name.
    pub inputs: BTreeMap<String, WarmupInput>,
    /// Extra runs; Triton runs a sample `count` times, at least once.
    pub count: u32,
}

/// One input of a warm-up request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmupInput {
    /// Element type.
    pub data_type: DataType,
    /// Shape without the batch dimension.
    pub dims: Vec<i64>,
    /// Where the values come from.
    pub data: WarmupData,
}

/// The values of a warm-up input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmupData {
    /// `zero_data`: all zeros.
    Zero,
    /// `random_data`: random values.
    Random,
    /// `input_data_file`: raw bytes from this file under the model's `warmup/` directory.
    File(String),
}

/// The Triton model-config spellings of datatypes, with their enum numbers.
const DATATYPES: [(&str, i32, DataType); 14] = [
    ("TYPE_BOOL", 1, DataType::Bool),
    ("TYPE_UINT8", 2, DataType::U8),
    ("TYPE_UINT16", 3, DataType::U16),
    ("TYPE_UINT32", 4, DataType::U32),
    ("TYPE_UINT64", 5, DataType::U64),
    ("TYPE_INT8", 6, DataType::I8),
    ("TYPE_INT16", 7, DataType::I16),
    ("TYPE_INT32", 8, DataType::I32),
    ("TYPE_INT64", 9, DataType::I64),
    ("TYPE_FP16", 10, DataType::F16),
    ("TYPE_FP32", 11, DataType::F32),
    ("TYPE_FP64", 12, DataType::F64),
    ("TYPE_STRING", 13, DataType::Bytes),
    ("TYPE_BF16", 14, DataType::BF16),
];

/// Reads a config.pbtxt datatype (`TYPE_FP32`; `TYPE_STRING` is BYTES).
pub fn datatype_from_config(name: &str) -> Option<DataType> {
    DATATYPES.iter().find(|d| d.0 == name).map(|d| d.2)
}

/// Reads a datatype given by its enum number (`11` is `TYPE_FP32`).
pub fn datatype_from_config_number(number: i64) -> Option<DataType> {
    DATATYPES
        .iter()
        .find(|d| i64::from(d.1) == number)
        .map(|d| d.2)
}

/// The config.pbtxt spelling of a datatype (`TYPE_FP32`; BYTES is `TYPE_STRING`).
pub fn datatype_to_config(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "TYPE_BOOL",
        DataType::U8 => "TYPE_UINT8",
        DataType::U16 => "TYPE_UINT16",
        DataType::U32 => "TYPE_UINT32",
        DataType::U64 => "TYPE_UINT64",
        DataType::I8 => "TYPE_INT8",
        DataType::I16 => "TYPE_INT16",
        DataType::I32 => "TYPE_INT32",
        DataType::I64 => "TYPE_INT64",
        DataType::F16 => "TYPE_FP16",
        DataType::BF16 => "TYPE_BF16",
        DataType::F32 => "TYPE_FP32",
        DataType::F64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
    }
}

/// Formats config dims as `[-1,64]`.
pub fn format_config_dims(dims: &[i64]) -> String {
    let inner: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(datatype_from_config(datatype_to_config(d)), Some(d));
        }
        assert_eq!(datatype_from_config("TYPE_STRING"), Some(DataType::Bytes));
        assert_eq!(datatype_from_config_number(11), Some(DataType::F32));
        assert_eq!(datatype_from_config("TYPE_INVALID"), None);
        assert_eq!(datatype_from_config_number(0), None);
    }

    #[test]
    fn queue_policy_falls_back_to_default() {
        let mut db = DynamicBatching {
            default_queue_policy: Some(QueuePolicy {
                max_queue_size: 8,
                ..QueuePolicy::default()
            }),
            ..DynamicBatching::default()
        };
        db.priority_queue_policy.insert(
            1,
            QueuePolicy {
                default_timeout_microseconds: 5,
                ..QueuePolicy::default()
            },
        );
        assert_eq!(db.queue_policy(2).max_queue_size, 8);
        assert_eq!(
            db.queue_policy(1).default_timeout(),
            Some(Duration::from_micros(5))
        );
    }
}
