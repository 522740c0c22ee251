//! Auto-complete against declared model tensors, and the Triton JSON of the result.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;

use lrai_core::{DataType, Dim, TensorSpec};
use lrai_repo::RepoError;
use lrai_repo::config::{
    CompleteOptions, ConfigWarning, DynamicBatching, InstanceKind, ModelConfig, complete,
};
use serde_json::json;

fn spec(name: &str, dtype: DataType, dims: Vec<Dim>) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        dims: Some(dims),
    }
}

fn batch() -> Dim {
    Dim::Symbol("batch".into())
}

fn fixed(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|d| Dim::Fixed(*d)).collect()
}

/// An MLP: [batch,64] -> [batch,10].
fn mlp() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    (
        vec![spec("input", DataType::F32, vec![batch(), Dim::Fixed(64)])],
        vec![spec("logits", DataType::F32, vec![batch(), Dim::Fixed(10)])],
    )
}

fn run(
    config: Option<&str>,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<ModelConfig, RepoError> {
    let parsed = config.map(|text| ModelConfig::from_text(text, "m").unwrap().0);
    complete(parsed, "m", inputs, outputs, &CompleteOptions::default()).map(|(c, _)| c)
}

#[test]
fn fills_a_batchable_model_without_config() {
    let (inputs, outputs) = mlp();
    let c = run(None, &inputs, &outputs).unwrap();
    assert_eq!(c.name, "m");
    assert_eq!(
        (c.platform.as_str(), c.backend.as_str()),
        ("onnxruntime_onnx", "onnxruntime")
    );
    assert_eq!(c.max_batch_size, Some(4));
    assert_eq!(c.input[0].dims, vec![64]);
    assert_eq!(c.output[0].dims, vec![10]);
    assert_eq!(c.dynamic_batching, Some(DynamicBatching::default()));
    assert_eq!(c.instance_group.len(), 1);
    assert_eq!(c.instance_group[0].name, "m");
    assert_eq!(c.instance_group[0].kind, InstanceKind::Auto);
    assert_eq!(c.instance_group[0].count, 1);
    let j = c.to_triton_json();
    assert_eq!(j["max_batch_size"], json!(4));
    assert_eq!(j["input"][0]["dims"], json!([64]));
    assert_eq!(j["input"][0]["data_type"], json!("TYPE_FP32"));
    assert_eq!(j["dynamic_batching"]["preferred_batch_size"], json!([4]));
    assert_eq!(
        j["dynamic_batching"]["max_queue_delay_microseconds"],
        json!(0)
    );
}

#[test]
fn keeps_a_fixed_batch_model_unbatched() {
    let inputs = vec![spec("input", DataType::F32, fixed(&[1, 3, 224, 224]))];
    let outputs = vec![spec("logits", DataType::F32, fixed(&[1, 1000]))];
    let c = run(None, &inputs, &outputs).unwrap();
    assert_eq!(c.max_batch_size, Some(0));
    assert_eq!(c.input[0].dims, vec![1, 3, 224, 224]);
    assert_eq!(c.output[0].dims, vec![1, 1000]);
    assert_eq!(c.dynamic_batching, None);
    assert!(c.to_triton_json().get("dynamic_batching").is_none());
}

#[test]
fn a_single_fixed_output_stops_batching() {
    let inputs = vec![spec("x", DataType::F32, vec![batch(), Dim::Fixed(4)])];
    let outputs = vec![
        spec("y", DataType::F32, vec![batch(), Dim::Fixed(2)]),
        spec("stats", DataType::F32, fixed(&[2])),
    ];
    let c = run(None, &inputs, &outputs).unwrap();
    assert_eq!(c.max_batch_size, Some(0));
    assert_eq!(c.input[0].dims, vec![-1, 4]);
}

#[test]
fn free_inner_dims_become_minus_one() {
    let inputs = vec![spec(
        "ids",
        DataType::I64,
        vec![batch(), Dim::Symbol("seq".into())],
    )];
    let outputs = vec![spec(
        "emb",
        DataType::F32,
        vec![Dim::Any, Dim::Any, Dim::Fixed(384)],
    )];
    let c = run(None, &inputs, &outputs).unwrap();
    assert_eq!(c.input[0].dims, vec![-1]);
    assert_eq!(c.output[0].dims, vec![-1, 384]);
}

#[test]
fn explains_wrong_dims_with_the_implicit_batch_dimension() {
    let inputs = vec![spec("input", DataType::F32, vec![batch(), Dim::Fixed(63)])];
    let outputs = vec![spec("logits", DataType::F32, vec![batch(), Dim::Fixed(10)])];
    let config = "max_batch_size: 8
        input { name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] }
        output { name: \"logits\" data_type: TYPE_FP32 dims: [ 10 ] }";
    let err = run(Some(config), &inputs, &outputs).unwrap_err();
    assert!(matches!(err, RepoError::ShapeMismatch { .. }));
    assert_eq!(
        err.to_string(),
        "input 'input' of model 'm': config dims [64] with max_batch_size 8 mean [-1,64]; the \
         model declares [batch,63]; dimension 1: config 64, model 63"
    );
}

#[test]
fn explains_a_batch_dimension_written_into_dims() {
    let (inputs, outputs) = mlp();
    let config = "max_batch_size: 8
        input { name: \"input\" data_type: TYPE_FP32 dims: [ -1, 64 ] }
        output { name: \"logits\" data_type: TYPE_FP32 dims: [ 10 ] }";
    assert_eq!(
        run(Some(config), &inputs, &outputs)
            .unwrap_err()
            .to_string(),
        "input 'input' of model 'm': config dims [-1,64] with max_batch_size 8 mean [-1,-1,64]; \
         the model declares [batch,64]; leave the batch dimension out of dims when \
         max_batch_size > 0 (dims: [64] would match)"
    );
}

#[test]
fn explains_max_batch_size_on_a_model_that_cannot_batch() {
    let inputs = vec![spec("input", DataType::F32, fixed(&[1, 3, 224, 224]))];
    let outputs = vec![spec("logits", DataType::F32, fixed(&[1, 1000]))];
    let expected = "model 'm' has max_batch_size 8, but input 'input' declares [1,3,224,224]: \
                    without a variable first dimension the model cannot batch; set \
                    max_batch_size: 0 (or leave it out) and write full shapes in dims";
    // When filling from the model...
    assert_eq!(
        run(Some("max_batch_size: 8"), &inputs, &outputs)
            .unwrap_err()
            .to_string(),
        expected
    );
    // ...and when checking listed tensors.
    let config = "max_batch_size: 8
        input { name: \"input\" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }
        output { name: \"logits\" data_type: TYPE_FP32 dims: [ 1000 ] }";
    assert_eq!(
        run(Some(config), &inputs, &outputs)
            .unwrap_err()
            .to_string(),
        expected
    );
}

#[test]
fn listed_tensors_turn_auto_batching_off_as_in_triton() {
    let (inputs, outputs) = mlp();
    let config = "input { name: \"input\" data_type: TYPE_FP32 dims: [ -1, 64 ] }
        output { name: \"logits\" data_type: TYPE_FP32 dims: [ -1, 10 ] }";
    let c = run(Some(config), &inputs, &outputs).unwrap();
    assert_eq!(c.max_batch_size, Some(0));
    assert_eq!(c.dynamic_batching, None);
}

#[test]
fn fills_outputs_when_only_inputs_are_listed() {
    let (inputs, outputs) = mlp();
    let config = "input { name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] }";
    let c = run(Some(config), &inputs, &outputs).unwrap();
    assert_eq!(c.max_batch_size, Some(4));
    assert_eq!(c.output[0].name, "logits");
    assert_eq!(c.output[0].dims, vec![10]);
}

#[test]
fn keeps_an_explicit_max_batch_size_of_zero() {
    let (inputs, outputs) = mlp();
    let c = run(Some("max_batch_size: 0"), &inputs, &outputs).unwrap();
    assert_eq!(c.max_batch_size, Some(0));
    assert_eq!(c.input[0].dims, vec![-1, 64]);
    assert_eq!(c.dynamic_batching, None);
}

#[test]
fn default_max_batch_size_is_an_option() {
    let (inputs, outputs) = mlp();
    let options = CompleteOptions {
        default_max_batch_size: 64,
    };
    let (c, _) = complete(None, "m", &inputs, &outputs, &options).unwrap();
    assert_eq!(c.max_batch_size, Some(64));
    let options = CompleteOptions {
        default_max_batch_size: 0,
    };
    let (c, _) = complete(None, "m", &inputs, &outputs, &options).unwrap();
    assert_eq!(c.max_batch_size, Some(0));
    assert_eq!(c.input[0].dims, vec![-1, 64]);
}

#[test]
fn checks_names_and_datatypes_of_listed_tensors() {
    let (inputs, outputs) = mlp();
    let listed = |input: &str, dtype: &str| {
        format!(
            "max_batch_size: 8 input {{ name: \"{input}\" data_type: {dtype} dims: 64 }}
             output {{ name: \"logits\" data_type: TYPE_FP32 dims: 10 }}"
        )
    };
    assert_eq!(
        run(Some(&listed("inputs", "TYPE_FP32")), &inputs, &outputs)
            .unwrap_err()
            .to_string(),
        "config.pbtxt lists input 'inputs', but model 'm' has no such input (its inputs: input)"
    );
    assert_eq!(
        run(Some(&listed("input", "TYPE_FP16")), &inputs, &outputs)
            .unwrap_err()
            .to_string(),
        "input 'input' of model 'm': config.pbtxt says TYPE_FP16, the model declares TYPE_FP32"
    );
    let two_inputs = vec![
        inputs[0].clone(),
        spec("mask", DataType::Bool, vec![batch(), Dim::Fixed(64)]),
    ];
    assert_eq!(
        run(Some(&listed("input", "TYPE_FP32")), &two_inputs, &outputs)
            .unwrap_err()
            .to_string(),
        "model 'm' has input 'mask', which config.pbtxt does not list; list every input, or \
         leave out the input section and LRAI fills it from the model"
    );
}

#[test]
fn allows_a_subset_of_outputs() {
    let (inputs, mut outputs) = mlp();
    outputs.push(spec("probs", DataType::F32, vec![batch(), Dim::Fixed(10)]));
    let config = "max_batch_size: 8 input { name: \"input\" data_type: TYPE_FP32 dims: 64 }
        output { name: \"probs\" data_type: TYPE_FP32 dims: 10 }";
    let c = run(Some(config), &inputs, &outputs).unwrap();
    assert_eq!(c.output.len(), 1);
}

#[test]
fn checks_reshape_instead_of_dims() {
    let inputs = vec![spec(
        "input",
        DataType::F32,
        vec![batch(), Dim::Fixed(1), Dim::Fixed(8), Dim::Fixed(8)],
    )];
    let outputs = vec![spec("logits", DataType::F32, vec![batch(), Dim::Fixed(10)])];
    let config = "max_batch_size: 8
        input { name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] reshape { shape: [ 1, 8, 8 ] } }
        output { name: \"logits\" data_type: TYPE_FP32 dims: [ 10 ] }";
    run(Some(config), &inputs, &outputs).unwrap();
    let wrong = config.replace(
        "dims: [ 64 ] reshape { shape: [ 1, 8, 8 ] }",
        "dims: [ 64 ] reshape { shape: [ 8, 8, 1 ] }",
    );
    assert_eq!(
        run(Some(&wrong), &inputs, &outputs)
            .unwrap_err()
            .to_string(),
        "input 'input' of model 'm': config reshape [8,8,1] with max_batch_size 8 mean \
         [-1,8,8,1]; the model declares [batch,1,8,8]; dimension 1: config 8, model 1, \
         dimension 3: config 1, model 8"
    );
}

#[test]
fn names_instance_groups_and_checks_warmup_inputs() {
    let (inputs, outputs) = mlp();
    let c = run(
        Some("instance_group [ { count: 2 kind: KIND_CPU }, { name: \"gpu\" kind: KIND_GPU } ]"),
        &inputs,
        &outputs,
    )
    .unwrap();
    let names: Vec<&str> = c.instance_group.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["m_0", "gpu"]);
    let warmup = "model_warmup { batch_size: 1 inputs { key: \"image\" value { data_type: TYPE_FP32 \
                  dims: 64 random_data: true } } }";
    assert_eq!(
        run(Some(warmup), &inputs, &outputs)
            .unwrap_err()
            .to_string(),
        "config.pbtxt lists input 'image', but model 'm' has no such input (its inputs: input)"
    );
}

#[test]
fn warns_about_dynamic_batching_without_batching() {
    let (inputs, outputs) = mlp();
    let parsed = ModelConfig::from_text("max_batch_size: 0 dynamic_batching { }", "m")
        .unwrap()
        .0;
    let (_, warnings) = complete(
        Some(parsed),
        "m",
        &inputs,
        &outputs,
        &CompleteOptions::default(),
    )
    .unwrap();
    assert_eq!(
        warnings,
        [ConfigWarning::DynamicBatchingWithoutBatching { model: "m".into() }]
    );
}

#[test]
fn needs_a_rank_to_fill_dims() {
    let inputs = vec![TensorSpec {
        name: "x".into(),
        dtype: DataType::F32,
        dims: None,
    }];
    let (_, outputs) = mlp();
    assert_eq!(
        run(None, &inputs, &outputs).unwrap_err().to_string(),
        "input 'x' of model 'm' has no declared shape; write its dims in config.pbtxt"
    );
}

#[test]
fn completes_the_example_configs_to_tritons_json() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/digits_mlp/config.pbtxt");
    let (parsed, _) = ModelConfig::from_file(&file, "digits_mlp").unwrap();
    let (inputs, outputs) = mlp();
    let (c, warnings) = complete(
        Some(parsed),
        "digits_mlp",
        &inputs,
        &outputs,
        &CompleteOptions::default(),
    )
    .unwrap();
    assert!(warnings.is_empty());
    assert_eq!(
        c.to_triton_json(),
        json!({
            "name": "digits_mlp",
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "runtime": "",
            "version_policy": { "latest": { "num_versions": 1 } },
            "max_batch_size": 64,
            "input": [{
                "name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NONE",
                "dims": [64], "is_shape_tensor": false, "allow_ragged_batch": false,
                "optional": false, "is_non_linear_format_io": false
            }],
            "output": [{
                "name": "logits", "data_type": "TYPE_FP32", "dims": [10], "label_filename": "",
                "is_shape_tensor": false, "is_non_linear_format_io": false
            }],
            "batch_input": [],
            "batch_output": [],
            "dynamic_batching": {
                "preferred_batch_size": [64],
                "max_queue_delay_microseconds": 0,
                "preserve_ordering": false,
                "priority_levels": 0,
                "default_priority_level": 0,
                "priority_queue_policy": {}
            },
            "instance_group": [{
                "name": "digits_mlp_0", "kind": "KIND_CPU", "count": 1, "gpus": [],
                "secondary_devices": [], "profile": [], "passive": false, "host_policy": ""
            }],
            "default_model_filename": "model.onnx",
            "cc_model_filenames": {},
            "metric_tags": {},
            "parameters": {},
            "model_warmup": []
        })
    );
}
