//! config.pbtxt parsing: the example repository, a large Triton config with every field LRAI
//! reads plus ones it only warns about, and one test per validation rule.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;

use lrai_core::DataType;
use lrai_repo::RepoError;
use lrai_repo::config::{
    ConfigWarning, InputFormat, InstanceKind, ModelConfig, TimeoutAction, VersionPolicy, WarmupData,
};

fn parse(text: &str) -> (ModelConfig, Vec<ConfigWarning>) {
    ModelConfig::from_text(text, "m").unwrap()
}

fn error(text: &str) -> String {
    ModelConfig::from_text(text, "m").unwrap_err().to_string()
}

#[test]
fn parses_every_example_model_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let mut seen = 0;
    for entry in fs_err::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let file = dir.join("config.pbtxt");
        if !file.exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap();
        let (c, warnings) = ModelConfig::from_file(&file, name).unwrap();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        assert_eq!(c.name, name);
        assert_eq!(c.platform, "onnxruntime_onnx");
        assert!(c.max_batch_size.unwrap() > 0);
        assert_eq!(c.input.len(), 1);
        assert_eq!(c.output[0].name, "logits");
        assert_eq!(c.instance_group[0].kind, InstanceKind::Cpu);
        assert!(
            c.dynamic_batching.is_some(),
            "{name}: examples batch dynamically"
        );
        seen += 1;
    }
    assert!(
        seen >= 4,
        "found only {seen} example configs under {}",
        root.display()
    );
}

/// A config in the style of real Triton repositories: comments, both list forms, `<>`,
/// enum numbers, settings LRAI does not implement, and a typo.
const LARGE: &str = r#"
# ResNet-style classifier, as exported for Triton.
name: "m"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 32
version_policy: { specific: { versions: [1, 3] } }
input [
  {
    name: "images"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
  },
  {
    name: "scale"
    data_type: 11            # TYPE_FP32 by enum number
    dims: 1
    reshape: { shape: [ ] }
    optional: true
  }
]
input {
  name: "ids"
  data_type: TYPE_STRING
  dims: -1
  allow_ragged_batch: true
  is_non_linear_format_io: false
}
output [
  {
    name: "probs"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  }
]
output < name: 'feat' data_type: TYPE_FP16 dims: [ 2048, 1, 1 ] reshape: < shape: 2048 > >
batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "n" data_type: TYPE_INT32 source_input: "ids" } ]
dynamic_batching {
  preferred_batch_size: [ 8, 16 ]
  preferred_batch_size: 32
  max_queue_delay_microseconds: 100
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy {
    timeout_action: DELAY
    default_timeout_microseconds: 50000
    allow_timeout_override: true
    max_queue_size: 64
  }
  priority_queue_policy {
    key: 1
    value: { max_queue_size: 8, timeout_action: REJECT }
  }
  priority_queue_policy [ { key: 2 value { default_timeout_microseconds: 1000 } } ]
}
instance_group [
  { count: 2, kind: KIND_GPU, gpus: [ 0, 1 ], rate_limiter { resources [ { name: "R1" count: 4 } ] } },
  { name: "cpu", count: 1, kind: KIND_CPU; }
]
default_model_filename: "resnet.onnx"
parameters { key: "intra_op_thread_count" value: { string_value: "4" } }
parameters [
  { key: "lrai.backend" value { string_value: "tract" } },
  { key: "lrai.bakend" value { string_value: "ort" } }
]
optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } }
response_cache { enable: true }
model_transaction_policy { decoupled: false }
model_warmup [
  {
    name: "zeros"
    batch_size: 8
    inputs { key: "images" value: { data_type: TYPE_FP32 dims: [3, 224, 224] zero_data: true } }
    inputs { key: "ids" value: { data_type: TYPE_STRING dims: [ 4 ] input_data_file: "ids.bin" } }
    count: 2
  }
]
max_batch_sise: 8
"#;

#[test]
fn parses_a_large_triton_config() {
    let (c, warnings) = parse(LARGE);
    assert_eq!(c.max_batch_size, Some(32));
    assert_eq!(
        c.version_policy,
        VersionPolicy::Specific {
            versions: vec![1, 3]
        }
    );
    let names: Vec<&str> = c.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["images", "scale", "ids"]);
    assert_eq!(c.input[0].format, InputFormat::Nchw);
    assert_eq!(c.input[0].dims, vec![3, 224, 224]);
    assert_eq!(c.input[1].data_type, DataType::F32);
    assert_eq!(c.input[1].reshape, Some(vec![]));
    assert!(c.input[1].optional);
    assert_eq!(c.input[2].data_type, DataType::Bytes);
    assert!(c.input[2].allow_ragged_batch);
    assert_eq!(c.output[0].label_filename.as_deref(), Some("labels.txt"));
    assert_eq!(c.output[1].data_type, DataType::F16);
    assert_eq!(c.output[1].reshape, Some(vec![2048]));

    let db = c.dynamic_batching.as_ref().unwrap();
    assert_eq!(db.preferred_batch_size, vec![8, 16, 32]);
    assert_eq!(db.max_queue_delay().as_micros(), 100);
    assert_eq!(db.default_priority_level, 2);
    let default = db.default_queue_policy.as_ref().unwrap();
    assert_eq!(default.timeout_action, TimeoutAction::Delay);
    assert_eq!(default.default_timeout().unwrap().as_millis(), 50);
    assert!(default.allow_timeout_override);
    assert_eq!(db.queue_policy(1).max_queue_size, 8);
    assert_eq!(db.queue_policy(2).default_timeout_microseconds, 1000);

    assert_eq!(c.instance_group.len(), 2);
    assert_eq!(c.instance_group[0].kind, InstanceKind::Gpu);
    assert_eq!(c.instance_group[0].count, 2);
    assert_eq!(c.instance_group[0].gpus, vec![0, 1]);
    assert_eq!(c.instance_group[1].name, "cpu");
    assert_eq!(c.default_model_filename, "resnet.onnx");
    assert_eq!(c.parameter("intra_op_thread_count"), Some("4"));
    assert_eq!(c.parameter("lrai.backend"), Some("tract"));

    let w = &c.model_warmup[0];
    assert_eq!((w.name.as_str(), w.batch_size, w.count), ("zeros", 8, 2));
    assert_eq!(w.inputs["images"].data, WarmupData::Zero);
    assert_eq!(w.inputs["ids"].data, WarmupData::File("ids.bin".into()));

    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    let known: Vec<&str> = lrai_repo::config::LRAI_PARAMETERS
        .iter()
        .map(|p| p.key)
        .collect();
    let unknown_parameter = format!(
        "line 66, column 3: unknown LRAI parameter 'lrai.bakend'; it is ignored (known: {}); \
         did you mean 'lrai.backend'?",
        known.join(", ")
    );
    assert_eq!(
        text,
        [
            "line 28, column 3: 'input[2].is_non_linear_format_io' is a Triton setting LRAI does \
             not implement; it is ignored",
            "line 39, column 1: 'batch_input' is a Triton setting LRAI does not implement; it is \
             ignored",
            "line 59, column 47: 'instance_group[0].rate_limiter' is a Triton setting LRAI does \
             not implement; it is ignored",
            unknown_parameter.as_str(),
            "line 68, column 1: 'optimization' is a Triton setting LRAI does not implement; it is \
             ignored",
            "line 69, column 1: 'response_cache' is a Triton setting LRAI does not implement; it \
             is ignored",
            "line 70, column 1: 'model_transaction_policy' is a Triton setting LRAI does not \
             implement; it is ignored",
            "line 80, column 1: unknown field 'max_batch_sise' (not in Triton's model \
             configuration); it is ignored; did you mean 'max_batch_size'?",
        ]
    );
}

#[test]
fn warns_once_per_unsupported_field_and_about_nested_unknowns() {
    let (_, warnings) = parse(
        "sequence_batching { max_sequence_idle_microseconds: 5000000 }\n\
         batch_output { target_name: \"a\" }\nbatch_output { target_name: \"b\" }\n\
         input { name: \"x\" data_type: TYPE_FP32 dims: 1 colour: \"red\" }",
    );
    let fields: Vec<String> = warnings
        .iter()
        .map(|w| match w {
            ConfigWarning::Unsupported { field, .. }
            | ConfigWarning::UnknownField { field, .. } => field.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        fields,
        ["sequence_batching", "batch_output", "input[0].colour"]
    );
}

#[test]
fn reports_schema_errors_with_positions() {
    assert_eq!(
        error("max_batch_size: \"8\""),
        "line 1, column 17: field 'max_batch_size' expects an integer (int32), found \"8\""
    );
    assert_eq!(
        error("input { name: \"x\" data_type: FLOAT dims: 1 }"),
        "line 1, column 30: field 'input[0].data_type' expects a datatype (TYPE_BOOL, \
         TYPE_UINT8..TYPE_UINT64, TYPE_INT8..TYPE_INT64, TYPE_FP16, TYPE_BF16, TYPE_FP32, \
         TYPE_FP64, TYPE_STRING), found FLOAT"
    );
    assert_eq!(
        error("max_batch_size: 8\nmax_batch_size: 16"),
        "line 2, column 1: field 'max_batch_size' is given again (first at line 1, column 1); \
         it is not a repeated field"
    );
    assert_eq!(
        error("dynamic_batching { }\nsequence_batching { }"),
        "line 2, column 1: field 'sequence_batching' conflicts with 'dynamic_batching' (line 1): \
         only one of them may be set"
    );
    assert_eq!(
        error("instance_group { kind: KIND_TPU }"),
        "line 1, column 24: field 'instance_group[0].kind' expects one of KIND_AUTO, KIND_GPU, \
         KIND_CPU, KIND_MODEL, found KIND_TPU"
    );
    assert_eq!(
        error("dynamic_batching { max_queue_delay_microseconds: -5 }"),
        "line 1, column 50: field 'dynamic_batching.max_queue_delay_microseconds' expects an \
         integer (uint64) in the range of uint64, found -5"
    );
    assert_eq!(
        error(
            "model_warmup { inputs { key: \"x\" value { data_type: TYPE_FP32 zero_data: true \
               random_data: true } } }"
        ),
        "line 1, column 79: field 'model_warmup[0].inputs['x'].random_data' conflicts with \
         'model_warmup[0].inputs['x'].zero_data' (line 1): only one of them may be set"
    );
    assert_eq!(
        error("input { name: \"x\" dims: 1 }"),
        "model 'm': input 'x' data_type is required"
    );
    assert_eq!(
        error("version_policy: 1"),
        "line 1, column 17: field 'version_policy' expects a message in { }, found 1"
    );
}

#[test]
fn rejects_negative_max_batch_size() {
    assert_eq!(
        error("max_batch_size: -1"),
        "model 'm': max_batch_size = -1: must be >= 0 (0: the model does not batch)"
    );
}

#[test]
fn rejects_dims_below_minus_one_and_zero() {
    let text = |dims: &str| format!("input {{ name: \"x\" data_type: TYPE_FP32 dims: {dims} }}");
    assert_eq!(
        error(&text("[ -2, 64 ]")),
        "model 'm': input 'x' dims = [-2,64]: each dimension must be >= 1, or -1 for a variable size"
    );
    assert!(error(&text("[ 0 ]")).contains("input 'x' dims = [0]"));
    assert_eq!(
        error("output { name: \"y\" data_type: TYPE_FP32 }"),
        "model 'm': output 'y' dims is required"
    );
    assert_eq!(
        error("output { name: \"y\" data_type: TYPE_FP32 dims: 4 reshape { shape: [ 3 ] } }"),
        "model 'm': output 'y' reshape = [3]: has different size for dims and reshape: dims \
         [4] hold 4 elements, reshape 3"
    );
    assert_eq!(
        error("max_batch_size: 0 input { name: \"x\" data_type: TYPE_FP32 dims: 1 reshape { } }"),
        "model 'm': input 'x' reshape = []: cannot have empty reshape for non-batching model as \
         scalar tensors are not supported (Triton's rule): for a scalar, leave reshape out and \
         give dims [1], or set max_batch_size > 0"
    );
    assert_eq!(
        error("input { name: \"x\" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 224, 224 ] }"),
        "model 'm': input 'x' dims = [224,224]: FORMAT_NHWC needs exactly 3 dims"
    );
}

#[test]
fn rejects_preferred_batch_size_above_max_batch_size() {
    assert_eq!(
        error("max_batch_size: 8 dynamic_batching { preferred_batch_size: [ 4, 16 ] }"),
        "model 'm': dynamic_batching.preferred_batch_size = [4,16]: each size must be <= \
         max_batch_size 8"
    );
    assert_eq!(
        error("max_batch_size: 0 dynamic_batching { preferred_batch_size: 4 }"),
        "model 'm': dynamic_batching.preferred_batch_size = [4]: preferred batch sizes need \
         max_batch_size > 0; this model does not batch"
    );
    assert_eq!(
        error("max_batch_size: 8 dynamic_batching { preferred_batch_size: 0 }"),
        "model 'm': dynamic_batching.preferred_batch_size = 0: each size must be >= 1"
    );
}

#[test]
fn rejects_instance_count_below_one_and_gpus_on_cpu() {
    assert_eq!(
        error("instance_group [ { count: 0 } ]"),
        "model 'm': instance_group[0].count = 0: an instance group needs count >= 1"
    );
    assert_eq!(
        error("instance_group [ { name: \"g\" kind: KIND_CPU gpus: 0 } ]"),
        "model 'm': instance_group 'g' gpus = [0]: a KIND_CPU group cannot list GPUs"
    );
}

#[test]
fn rejects_duplicate_tensor_names() {
    let t = "input { name: \"x\" data_type: TYPE_FP32 dims: 1 }";
    assert_eq!(
        error(&format!("{t} {t}")),
        "model 'm': input 'x' is listed twice"
    );
    let o = "output { name: \"x\" data_type: TYPE_FP32 dims: 1 }";
    assert_eq!(
        error(&format!("{o} {o}")),
        "model 'm': output 'x' is listed twice"
    );
    // An input and an output may share a name.
    parse(&format!("{t} {o}"));
}

#[test]
fn rejects_bad_priority_levels() {
    assert_eq!(
        error(
            "max_batch_size: 8 dynamic_batching { priority_levels: 2 default_priority_level: 3 }"
        ),
        "model 'm': dynamic_batching.default_priority_level = 3: must be in 1..=2 \
         (priority_levels 2; 1 is highest)"
    );
    assert_eq!(
        error("max_batch_size: 8 dynamic_batching { default_priority_level: 1 }"),
        "model 'm': dynamic_batching.default_priority_level = 1: must be <= priority_levels 0: \
         set priority_levels to use priorities"
    );
    assert_eq!(
        error(
            "max_batch_size: 8 dynamic_batching { priority_levels: 2 default_priority_level: 1 \
             priority_queue_policy { key: 3 value { } } }"
        ),
        "model 'm': dynamic_batching.priority_queue_policy key = 3: priority levels are 1..=2 \
         (priority_levels 2)"
    );
    assert_eq!(
        error(
            "max_batch_size: 8 dynamic_batching { preserve_ordering: true priority_levels: 2 \
             default_priority_level: 1 }"
        ),
        "model 'm': dynamic_batching.priority_levels = 2: preserve_ordering allows at most one \
         priority level"
    );
    assert!(
        error(
            "max_batch_size: 8 dynamic_batching { preserve_ordering: true default_queue_policy \
             { timeout_action: DELAY default_timeout_microseconds: 10 } }"
        )
        .contains("preserve_ordering cannot keep order when timed-out requests are delayed")
    );
}

#[test]
fn takes_the_directory_name_and_rejects_another() {
    let (c, _) = ModelConfig::from_text("max_batch_size: 1", "resnet").unwrap();
    assert_eq!(c.name, "resnet");
    let err = ModelConfig::from_text("name: \"resnet50\"", "resnet").unwrap_err();
    assert!(matches!(err, RepoError::NameMismatch { .. }));
    assert_eq!(
        err.to_string(),
        "config.pbtxt names the model 'resnet50' but its directory is 'resnet'; they must match \
         (as in Triton): rename one, or remove the name field"
    );
}

#[test]
fn rejects_other_platforms() {
    assert_eq!(
        error("platform: \"tensorrt_plan\""),
        "model 'm': platform 'tensorrt_plan', backend '' is not something LRAI serves; it \
         serves ONNX models (platform \"onnxruntime_onnx\", backend \"onnxruntime\", or neither)"
    );
    assert!(error("backend: \"python\"").contains("backend 'python'"));
}

#[test]
fn rejects_version_policies_that_select_nothing() {
    assert_eq!(
        error("version_policy { latest { } }"),
        "model 'm': version_policy.latest.num_versions = 0: must be >= 1"
    );
    assert_eq!(
        error("version_policy { specific { } }"),
        "model 'm': version_policy.specific.versions = []: must list at least one version"
    );
    let (c, _) = parse("version_policy { all { } }");
    assert_eq!(c.version_policy, VersionPolicy::All);
    let (c, _) = parse("");
    assert_eq!(c.version_policy, VersionPolicy::Latest { num_versions: 1 });
}

#[test]
fn rejects_warmup_batch_above_max_batch_size() {
    assert_eq!(
        error("max_batch_size: 4 model_warmup { name: \"w\" batch_size: 8 }"),
        "model 'm': model_warmup 'w' batch_size = 8: must be <= max_batch_size 4 (1 for a \
         model that does not batch)"
    );
    assert_eq!(
        error("model_warmup { batch_size: 0 }"),
        "model 'm': model_warmup[0].batch_size = 0: must be >= 1"
    );
}

#[test]
fn names_the_file_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.pbtxt");
    fs_err::write(&path, "name: \"m\"\nmax_batch_size: -4\n").unwrap();
    let err = ModelConfig::from_file(&path, "m").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid model configuration '{}'", path.display())
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(
        source,
        "model 'm': max_batch_size = -4: must be >= 0 (0: the model does not batch)"
    );
    let missing = ModelConfig::from_file(&dir.path().join("nope.pbtxt"), "m").unwrap_err();
    assert!(missing.to_string().contains("nope.pbtxt"), "{missing}");
}

#[test]
fn quantize_parameters_are_known_and_checked() {
    let param = |k: &str, v: &str| {
        format!("parameters {{ key: \"{k}\" value: {{ string_value: \"{v}\" }} }}\n")
    };
    let ok = param("lrai.quantize", "static")
        + &param("lrai.quantize_calibration", "calib.npz")
        + &param("lrai.quantize_eval", "test.npz")
        + &param("lrai.quantize_max_drop", "0.02")
        + &param("lrai.quantize_method", "percentile")
        + &param("lrai.quantize_metric", "cosine");
    let (c, warnings) = parse(&ok);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.parameter("lrai.quantize"), Some("static"));
    let e = error(&param("lrai.quantize", "int4"));
    assert!(e.contains("static, dynamic, fp16"), "{e}");
    let e = error(&(param("lrai.quantize", "static") + &param("lrai.quantize_max_drop", "1%")));
    assert!(
        e.contains("lrai.quantize_max_drop") && e.contains("0 to 1"),
        "{e}"
    );
    let e = error(&param("lrai.quantize_method", "kl"));
    assert!(e.contains("minmax, percentile, entropy"), "{e}");
}
