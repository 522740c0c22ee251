//! The model configuration as Triton's JSON, what `GET /v2/models/{m}/config` returns and
//! what `tritonclient`'s `get_model_config` and `perf_analyzer` read.
//!
//! Triton prints its protobuf with `preserving_proto_field_name` and
//! `always_print_primitive_fields`, then turns the int64/uint64 fields protobuf writes as
//! strings back into numbers (`ModelConfigToJson` in triton-inference-server/core
//! `src/model_config_utils.cc`). So: snake_case names, enums by name, every scalar and
//! list present even when default, unset sub-messages absent, all numbers as JSON
//! numbers, map keys as strings (`priority_queue_policy` has `"1"`).

use serde_json::{Map, Value, json};

use super::model::{
    DynamicBatching, EnsembleScheduling, InstanceGroup, ModelConfig, ModelInput, ModelOutput,
    ModelWarmup, QueuePolicy, VersionPolicy, WarmupData, datatype_to_config,
};

impl ModelConfig {
    /// Triton's JSON for this configuration (normally the completed one).
    ///
    /// Like Triton's normalised config, an empty `preferred_batch_size` is shown as
    /// `[max_batch_size]`. Fields LRAI does not implement are shown with their defaults
    /// (`batch_input: []`, `runtime: ""`) or, for sub-messages, left out.
    pub fn to_triton_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "platform": self.platform,
            "backend": self.backend,
            "runtime": "",
            "version_policy": version_policy(&self.version_policy),
            "max_batch_size": self.max_batch(),
            "input": self.input.iter().map(input).collect::<Vec<_>>(),
            "output": self.output.iter().map(output).collect::<Vec<_>>(),
            "batch_input": [],
            "batch_output": [],
            "instance_group": self.instance_group.iter().map(instance_group).collect::<Vec<_>>(),
            "default_model_filename": self.default_model_filename,
            "cc_model_filenames": {},
            "metric_tags": {},
            "parameters": self
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), json!({ "string_value": v })))
                .collect::<Map<_, _>>(),
            "model_warmup": self.model_warmup.iter().map(warmup).collect::<Vec<_>>(),
        });
        if let (Some(db), Some(obj)) = (&self.dynamic_batching, v.as_object_mut()) {
            obj.insert(
                "dynamic_batching".to_string(),
                dynamic_batching(db, self.max_batch()),
            );
        }
        if let (Some(e), Some(obj)) = (&self.ensemble_scheduling, v.as_object_mut()) {
            obj.insert("ensemble_scheduling".to_string(), ensemble(e));
        }
        v
    }
}

fn ensemble(e: &EnsembleScheduling) -> Value {
    json!({
        "step": e.step.iter().map(|s| json!({
            "model_name": s.model_name,
            "model_version": s.model_version,
            "input_map": s.input_map,
            "output_map": s.output_map,
            "model_namespace": "",
        })).collect::<Vec<_>>(),
        "max_inflight_requests": 0,
    })
}

fn version_policy(p: &VersionPolicy) -> Value {
    match p {
        VersionPolicy::Latest { num_versions } => {
            json!({ "latest": { "num_versions": num_versions } })
        }
        VersionPolicy::All => json!({ "all": {} }),
        VersionPolicy::Specific { versions } => json!({ "specific": { "versions": versions } }),
    }
}

fn input(i: &ModelInput) -> Value {
    let mut v = json!({
        "name": i.name,
        "data_type": datatype_to_config(i.data_type),
        "format": i.format.as_config(),
        "dims": i.dims,
        "is_shape_tensor": i.is_shape_tensor,
        "allow_ragged_batch": i.allow_ragged_batch,
        "optional": i.optional,
        "is_non_linear_format_io": false,
    });
    if let (Some(r), Some(obj)) = (&i.reshape, v.as_object_mut()) {
        obj.insert("reshape".to_string(), json!({ "shape": r }));
    }
    v
}

fn output(o: &ModelOutput) -> Value {
    let mut v = json!({
        "name": o.name,
        "data_type": datatype_to_config(o.data_type),
        "dims": o.dims,
        "label_filename": o.label_filename.as_deref().unwrap_or(""),
        "is_shape_tensor": o.is_shape_tensor,
        "is_non_linear_format_io": false,
    });
    if let (Some(r), Some(obj)) = (&o.reshape, v.as_object_mut()) {
        obj.insert("reshape".to_string(), json!({ "shape": r }));
    }
    v
}

fn queue_policy(q: &QueuePolicy) -> Value {
    json!({
        "timeout_action": q.timeout_action.as_config(),
        "default_timeout_microseconds": q.default_timeout_microseconds,
        "allow_timeout_override": q.allow_timeout_override,
        "max_queue_size": q.max_queue_size,
    })
}

fn dynamic_batching(db: &DynamicBatching, max_batch_size: u32) -> Value {
    let preferred = if db.preferred_batch_size.is_empty() && max_batch_size > 0 {
        vec![max_batch_size]
    } else {
        db.preferred_batch_size.clone()
    };
    let mut v = json!({
        "preferred_batch_size": preferred,
        "max_queue_delay_microseconds": db.max_queue_delay_microseconds,
        "preserve_ordering": db.preserve_ordering,
        "priority_levels": db.priority_levels,
        "default_priority_level": db.default_priority_level,
        "priority_queue_policy": db
            .priority_queue_policy
            .iter()
            .map(|(level, q)| (level.to_string(), queue_policy(q)))
            .collect::<Map<_, _>>(),
    });
    if let (Some(q), Some(obj)) = (&db.default_queue_policy, v.as_object_mut()) {
        obj.insert("default_queue_policy".to_string(), queue_policy(q));
    }
    v
}

fn instance_group(g: &InstanceGroup) -> Value {
    json!({
        "name": g.name,
        "kind": g.kind.as_config(),
        "count": g.count,
        "gpus": g.gpus,
        "secondary_devices": [],
        "profile": [],
        "passive": false,
        "host_policy": "",
    })
}

fn warmup(w: &ModelWarmup) -> Value {
    let inputs: Map<String, Value> = w
        .inputs
        .iter()
        .map(|(name, i)| {
            let mut v = json!({
                "data_type": datatype_to_config(i.data_type),
                "dims": i.dims,
            });
            if let Some(obj) = v.as_object_mut() {
                let (key, value) = match &i.data {
                    WarmupData::Zero => ("zero_data", json!(true)),
                    WarmupData::Random => ("random_data", json!(true)),
                    WarmupData::File(f) => ("input_data_file", json!(f)),
                };
                obj.insert(key.to_string(), value);
            }
            (name.clone(), v)
        })
        .collect();
    json!({
        "name": w.name,
        "batch_size": w.batch_size,
        "inputs": inputs,
        "count": w.count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InstanceKind, TimeoutAction};
    use lrai_core::DataType;

    #[test]
    fn matches_tritons_shape() {
        let mut group = InstanceGroup::new(InstanceKind::Cpu);
        group.name = "m_0".into();
        let mut db = DynamicBatching {
            max_queue_delay_microseconds: 500,
            priority_levels: 2,
            default_priority_level: 1,
            ..DynamicBatching::default()
        };
        db.priority_queue_policy.insert(
            2,
            QueuePolicy {
                timeout_action: TimeoutAction::Delay,
                default_timeout_microseconds: 100,
                ..QueuePolicy::default()
            },
        );
        let mut out = ModelOutput::new("y", DataType::Bytes, vec![-1]);
        out.reshape = Some(vec![-1]);
        let c = ModelConfig {
            platform: "onnxruntime_onnx".into(),
            backend: "onnxruntime".into(),
            max_batch_size: Some(8),
            input: vec![ModelInput::new("x", DataType::F32, vec![64])],
            output: vec![out],
            dynamic_batching: Some(db),
            instance_group: vec![group],
            parameters: [("lrai.backend".to_string(), "tract".to_string())].into(),
            ..ModelConfig::named("m")
        };
        let expected = json!({
            "name": "m",
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "runtime": "",
            "version_policy": { "latest": { "num_versions": 1 } },
            "max_batch_size": 8,
            "input": [{
                "name": "x", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [64],
                "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false,
                "is_non_linear_format_io": false
            }],
            "output": [{
                "name": "y", "data_type": "TYPE_STRING", "dims": [-1],
                "reshape": { "shape": [-1] }, "label_filename": "", "is_shape_tensor": false,
                "is_non_linear_format_io": false
            }],
            "batch_input": [],
            "batch_output": [],
            "dynamic_batching": {
                "preferred_batch_size": [8],
                "max_queue_delay_microseconds": 500,
                "preserve_ordering": false,
                "priority_levels": 2,
                "default_priority_level": 1,
                "priority_queue_policy": {
                    "2": {
                        "timeout_action": "DELAY", "default_timeout_microseconds": 100,
                        "allow_timeout_override": false, "max_queue_size": 0
                    }
                }
            },
            "instance_group": [{
                "name": "m_0", "kind": "KIND_CPU", "count": 1, "gpus": [],
                "secondary_devices": [], "profile": [], "passive": false, "host_policy": ""
            }],
            "default_model_filename": "model.onnx",
            "cc_model_filenames": {},
            "metric_tags": {},
            "parameters": { "lrai.backend": { "string_value": "tract" } },
            "model_warmup": []
        });
        assert_eq!(c.to_triton_json(), expected);
    }
}
