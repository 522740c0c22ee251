//! Triton's field names per message (for "did you mean" suggestions), the fields LRAI
//! parses but does not implement, and the enum spellings with their numbers.

use super::model::{InputFormat, InstanceKind, TimeoutAction};
/// Top-level fields of Triton's `ModelConfig` that LRAI parses but ignores.
pub(crate) const UNSUPPORTED_TOP: &[&str] = &[
    "runtime",
    "batch_input",
    "batch_output",
    "optimization",
    "sequence_batching",
    "cc_model_filenames",
    "metric_tags",
    "model_operations",
    "model_transaction_policy",
    "model_repository_agents",
    "response_cache",
    "model_metrics",
];

pub(crate) const MODEL_CONFIG_FIELDS: &[&str] = &[
    "name",
    "platform",
    "backend",
    "runtime",
    "version_policy",
    "max_batch_size",
    "input",
    "output",
    "batch_input",
    "batch_output",
    "optimization",
    "dynamic_batching",
    "sequence_batching",
    "ensemble_scheduling",
    "instance_group",
    "default_model_filename",
    "cc_model_filenames",
    "metric_tags",
    "parameters",
    "model_warmup",
    "model_operations",
    "model_transaction_policy",
    "model_repository_agents",
    "response_cache",
    "model_metrics",
];
pub(crate) const SCHEDULING: &[&str] = &[
    "dynamic_batching",
    "sequence_batching",
    "ensemble_scheduling",
];
pub(crate) const INPUT_FIELDS: &[&str] = &[
    "name",
    "data_type",
    "format",
    "dims",
    "reshape",
    "is_shape_tensor",
    "allow_ragged_batch",
    "optional",
    "is_non_linear_format_io",
];
pub(crate) const OUTPUT_FIELDS: &[&str] = &[
    "name",
    "data_type",
    "dims",
    "reshape",
    "label_filename",
    "is_shape_tensor",
    "is_non_linear_format_io",
];
pub(crate) const VERSION_POLICY_FIELDS: &[&str] = &["latest", "all", "specific"];
pub(crate) const DYNAMIC_BATCHING_FIELDS: &[&str] = &[
    "preferred_batch_size",
    "max_queue_delay_microseconds",
    "preserve_ordering",
    "priority_levels",
    "default_priority_level",
    "default_queue_policy",
    "priority_queue_policy",
];
pub(crate) const QUEUE_POLICY_FIELDS: &[&str] = &[
    "timeout_action",
    "default_timeout_microseconds",
    "allow_timeout_override",
    "max_queue_size",
];
pub(crate) const INSTANCE_GROUP_FIELDS: &[&str] = &[
    "name",
    "kind",
    "count",
    "rate_limiter",
    "gpus",
    "secondary_devices",
    "profile",
    "passive",
    "host_policy",
];
pub(crate) const UNSUPPORTED_INSTANCE_GROUP: &[&str] = &[
    "rate_limiter",
    "secondary_devices",
    "profile",
    "passive",
    "host_policy",
];
pub(crate) const WARMUP_FIELDS: &[&str] = &["name", "batch_size", "inputs", "count"];
pub(crate) const WARMUP_INPUT_FIELDS: &[&str] = &[
    "data_type",
    "dims",
    "zero_data",
    "random_data",
    "input_data_file",
];
pub(crate) const WARMUP_DATA: &[&str] = &["zero_data", "random_data", "input_data_file"];
pub(crate) const ENSEMBLE_FIELDS: &[&str] = &["step", "max_inflight_requests"];
pub(crate) const ENSEMBLE_STEP_FIELDS: &[&str] = &[
    "model_name",
    "model_version",
    "input_map",
    "output_map",
    "model_namespace",
];
pub(crate) const MAP_ENTRY_FIELDS: &[&str] = &["key", "value"];
pub(crate) const PARAMETER_FIELDS: &[&str] = &["string_value"];

pub(crate) const INPUT_FORMATS: &[(&str, i64, InputFormat)] = &[
    ("FORMAT_NONE", 0, InputFormat::None),
    ("FORMAT_NHWC", 1, InputFormat::Nhwc),
    ("FORMAT_NCHW", 2, InputFormat::Nchw),
];
pub(crate) const INSTANCE_KINDS: &[(&str, i64, InstanceKind)] = &[
    ("KIND_AUTO", 0, InstanceKind::Auto),
    ("KIND_GPU", 1, InstanceKind::Gpu),
    ("KIND_CPU", 2, InstanceKind::Cpu),
    ("KIND_MODEL", 3, InstanceKind::Model),
];
pub(crate) const TIMEOUT_ACTIONS: &[(&str, i64, TimeoutAction)] = &[
    ("REJECT", 0, TimeoutAction::Reject),
    ("DELAY", 1, TimeoutAction::Delay),
];
