//! The JSON bodies of KServe v2 and of the Triton extensions, other than inference
//! itself (that is [`crate::infer`]), with Triton's field names: `tritonclient` and
//! `perf_analyzer` parse these. Each type that has a gRPC twin converts into it, so
//! the server fills one struct and answers both protocols from it.

use std::collections::BTreeMap;

use lrai_core::TensorSpec;
use serde::{Deserialize, Serialize};

use crate::infer::Parameters;
use crate::pb;

/// `GET v2`: server metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    /// Server name.
    pub name: String,
    /// Server version.
    pub version: String,
    /// Extensions served (`binary_tensor_data`, `statistics`, ...).
    pub extensions: Vec<String>,
}

impl From<ServerMetadata> for pb::ServerMetadataResponse {
    fn from(m: ServerMetadata) -> Self {
        pb::ServerMetadataResponse {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }
    }
}

/// A tensor in model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// KServe datatype (`"FP32"`).
    pub datatype: String,
    /// Dimensions; -1 for a variable one.
    pub shape: Vec<i64>,
}

impl From<&TensorSpec> for TensorMetadata {
    /// Free dims become -1; a spec of unknown rank gets an empty shape.
    fn from(spec: &TensorSpec) -> Self {
        TensorMetadata {
            name: spec.name.clone(),
            datatype: spec.dtype.as_kserve().to_string(),
            shape: spec
                .dims
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(lrai_core::Dim::to_kserve)
                .collect(),
        }
    }
}

impl From<TensorMetadata> for pb::model_metadata_response::TensorMetadata {
    fn from(t: TensorMetadata) -> Self {
        pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
        }
    }
}

/// `GET v2/models/{name}[/versions/{version}]`: model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Versions available, as strings (`["1", "2"]`).
    pub versions: Vec<String>,
    /// Triton platform string (`"onnxruntime_onnx"`).
    pub platform: String,
    /// Inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Outputs.
    pub outputs: Vec<TensorMetadata>,
}

impl From<ModelMetadata> for pb::ModelMetadataResponse {
    fn from(m: ModelMetadata) -> Self {
        pb::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: m.inputs.into_iter().map(Into::into).collect(),
            outputs: m.outputs.into_iter().map(Into::into).collect(),
        }
    }
}

/// Every error response body: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

impl ErrorBody {
    /// An error body with this message.
    pub fn new(message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: message.into(),
        }
    }
}

/// `POST v2/repository/index` request body (which may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryIndexRequest {
    /// Only models ready for inference.
    #[serde(default)]
    pub ready: bool,
}

/// One entry of the repository index (the response is a JSON array of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryIndexEntry {
    /// Model name.
    pub name: String,
    /// Version; absent for a model with no version loaded or found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `READY`, `UNAVAILABLE`, `LOADING`, `UNLOADING`.
    #[serde(default)]
    pub state: String,
    /// Why the model is in this state; empty when there is nothing to say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl From<RepositoryIndexEntry> for pb::repository_index_response::ModelIndex {
    fn from(e: RepositoryIndexEntry) -> Self {
        pb::repository_index_response::ModelIndex {
            name: e.name,
            version: e.version.unwrap_or_default(),
            state: e.state,
            reason: e.reason,
        }
    }
}

/// `POST v2/repository/models/{name}/load` and `.../unload` request body (may be
/// empty). Load: `config` (a JSON model configuration as a string) and
/// `file:<version>/<name>` (base64 file contents); unload: `unload_dependents`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepositoryModelRequest {
    /// The parameters.
    #[serde(default)]
    pub parameters: Parameters,
}

/// A cumulative count and duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticDuration {
    /// How many times.
    pub count: u64,
    /// Total nanoseconds.
    pub ns: u64,
}

impl From<StatisticDuration> for pb::StatisticDuration {
    fn from(d: StatisticDuration) -> Self {
        pb::StatisticDuration {
            count: d.count,
            ns: d.ns,
        }
    }
}

/// Per-model request statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferStatistics {
    /// Successful requests and their total end-to-end time (cache hits included).
    pub success: StatisticDuration,
    /// Failed requests and their total time.
    pub fail: StatisticDuration,
    /// Time requests waited in queues (cache hits included).
    pub queue: StatisticDuration,
    /// Time preparing inputs (excludes cache hits).
    pub compute_input: StatisticDuration,
    /// Time running the model (excludes cache hits).
    pub compute_infer: StatisticDuration,
    /// Time extracting outputs (excludes cache hits).
    pub compute_output: StatisticDuration,
    /// Response cache hits and lookup time.
    pub cache_hit: StatisticDuration,
    /// Response cache misses and lookup/insert time.
    pub cache_miss: StatisticDuration,
}

impl From<InferStatistics> for pb::InferStatistics {
    fn from(s: InferStatistics) -> Self {
        pb::InferStatistics {
            success: Some(s.success.into()),
            fail: Some(s.fail.into()),
            queue: Some(s.queue.into()),
            compute_input: Some(s.compute_input.into()),
            compute_infer: Some(s.compute_infer.into()),
            compute_output: Some(s.compute_output.into()),
            cache_hit: Some(s.cache_hit.into()),
            cache_miss: Some(s.cache_miss.into()),
        }
    }
}

/// Statistics of decoupled responses (LRAI has none; kept for the wire shape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferResponseStatistics {
    /// Time computing responses.
    pub compute_infer: StatisticDuration,
    /// Time extracting outputs.
    pub compute_output: StatisticDuration,
    /// Successful responses.
    pub success: StatisticDuration,
    /// Failed responses.
    pub fail: StatisticDuration,
    /// Empty responses.
    pub empty_response: StatisticDuration,
    /// Cancellations.
    pub cancel: StatisticDuration,
}

impl From<InferResponseStatistics> for pb::InferResponseStatistics {
    fn from(s: InferResponseStatistics) -> Self {
        pb::InferResponseStatistics {
            compute_infer: Some(s.compute_infer.into()),
            compute_output: Some(s.compute_output.into()),
            success: Some(s.success.into()),
            fail: Some(s.fail.into()),
            empty_response: Some(s.empty_response.into()),
            cancel: Some(s.cancel.into()),
        }
    }
}

/// Statistics of the model executions at one batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferBatchStatistics {
    /// The batch size.
    pub batch_size: u64,
    /// Input preparation at this size (count = executions).
    pub compute_input: StatisticDuration,
    /// Model execution at this size.
    pub compute_infer: StatisticDuration,
    /// Output extraction at this size.
    pub compute_output: StatisticDuration,
}

impl From<InferBatchStatistics> for pb::InferBatchStatistics {
    fn from(s: InferBatchStatistics) -> Self {
        pb::InferBatchStatistics {
            batch_size: s.batch_size,
            compute_input: Some(s.compute_input.into()),
            compute_infer: Some(s.compute_infer.into()),
            compute_output: Some(s.compute_output.into()),
        }
    }
}

/// Memory a loaded model holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// `CPU`, `CPU_PINNED` or `GPU`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Device id.
    pub id: i64,
    /// Bytes.
    pub byte_size: u64,
}

impl From<MemoryUsage> for pb::MemoryUsage {
    fn from(m: MemoryUsage) -> Self {
        pb::MemoryUsage {
            r#type: m.kind,
            id: m.id,
            byte_size: m.byte_size,
        }
    }
}

/// Statistics of one model version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatistics {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Last inference, milliseconds since the epoch; 0 if none yet.
    pub last_inference: u64,
    /// Inferences (a batch of n counts n; cache hits excluded).
    pub inference_count: u64,
    /// Model executions (one per batch run; cache hits excluded).
    pub execution_count: u64,
    /// Request statistics.
    pub inference_stats: InferStatistics,
    /// Decoupled response statistics, by response index (empty for LRAI).
    #[serde(default)]
    pub response_stats: BTreeMap<String, InferResponseStatistics>,
    /// Execution statistics per batch size.
    #[serde(default)]
    pub batch_stats: Vec<InferBatchStatistics>,
    /// Memory held.
    #[serde(default)]
    pub memory_usage: Vec<MemoryUsage>,
    /// LRAI: the adaptive batcher's settings, cost model and SLO attainment (models with
    /// `lrai.slo_p95_ms` only; HTTP only, gRPC's message has no room for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lrai_adaptive: Option<serde_json::Value>,
    /// LRAI: what quantize-at-load did (models with `lrai.quantize` only; HTTP only; gRPC
    /// clients see the summary in the config's parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lrai_quantization: Option<serde_json::Value>,
}

impl From<ModelStatistics> for pb::ModelStatistics {
    fn from(s: ModelStatistics) -> Self {
        pb::ModelStatistics {
            name: s.name,
            version: s.version,
            last_inference: s.last_inference,
            inference_count: s.inference_count,
            execution_count: s.execution_count,
            inference_stats: Some(s.inference_stats.into()),
            batch_stats: s.batch_stats.into_iter().map(Into::into).collect(),
            memory_usage: s.memory_usage.into_iter().map(Into::into).collect(),
            response_stats: s
                .response_stats
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
        }
    }
}

/// `GET v2/models[/{name}[/versions/{version}]]/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatisticsResponse {
    /// One entry per model version.
    pub model_stats: Vec<ModelStatistics>,
}

impl From<ModelStatisticsResponse> for pb::ModelStatisticsResponse {
    fn from(r: ModelStatisticsResponse) -> Self {
        pb::ModelStatisticsResponse {
            model_stats: r.model_stats.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_core::{DataType, Dim};
    use serde_json::json;

    #[test]
    fn statistics_use_tritons_field_names() {
        let stats = ModelStatisticsResponse {
            model_stats: vec![ModelStatistics {
                name: "m".into(),
                version: "1".into(),
                last_inference: 5,
                inference_count: 3,
                execution_count: 2,
                inference_stats: InferStatistics {
                    success: StatisticDuration { count: 3, ns: 30 },
                    ..InferStatistics::default()
                },
                batch_stats: vec![InferBatchStatistics {
                    batch_size: 2,
                    compute_infer: StatisticDuration { count: 1, ns: 9 },
                    ..InferBatchStatistics::default()
                }],
                memory_usage: vec![MemoryUsage {
                    kind: "CPU".into(),
                    id: 0,
                    byte_size: 64,
                }],
                ..ModelStatistics::default()
            }],
        };
        let v = serde_json::to_value(&stats).unwrap();
        let m = &v["model_stats"][0];
        assert_eq!(m["version"], json!("1"));
        assert_eq!(
            m["inference_stats"]["success"],
            json!({"count": 3, "ns": 30})
        );
        for k in [
            "fail",
            "queue",
            "compute_input",
            "compute_infer",
            "compute_output",
            "cache_hit",
            "cache_miss",
        ] {
            assert_eq!(m["inference_stats"][k], json!({"count": 0, "ns": 0}), "{k}");
        }
        assert_eq!(m["batch_stats"][0]["batch_size"], json!(2));
        assert_eq!(m["batch_stats"][0]["compute_infer"]["ns"], json!(9));
        assert_eq!(m["memory_usage"][0]["type"], json!("CPU"));
        assert_eq!(m["response_stats"], json!({}));
        let back: ModelStatisticsResponse = serde_json::from_value(v).unwrap();
        assert_eq!(back, stats);
        let pb: pb::ModelStatisticsResponse = stats.into();
        assert_eq!(pb.model_stats[0].batch_stats[0].batch_size, 2);
    }

    #[test]
    fn metadata_and_index_match_triton_shapes() {
        let spec = TensorSpec {
            name: "x".into(),
            dtype: DataType::F32,
            dims: Some(vec![Dim::Symbol("batch".into()), Dim::Fixed(64)]),
        };
        let meta = ModelMetadata {
            name: "digits".into(),
            versions: vec!["1".into()],
            platform: "onnxruntime_onnx".into(),
            inputs: vec![TensorMetadata::from(&spec)],
            outputs: vec![],
        };
        assert_eq!(
            serde_json::to_value(&meta).unwrap(),
            json!({"name": "digits", "versions": ["1"], "platform": "onnxruntime_onnx",
                   "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}], "outputs": []})
        );
        let entries = vec![
            RepositoryIndexEntry {
                name: "a".into(),
                version: Some("1".into()),
                state: "READY".into(),
                reason: String::new(),
            },
            RepositoryIndexEntry {
                name: "b".into(),
                version: None,
                state: "UNAVAILABLE".into(),
                reason: "unloaded".into(),
            },
        ];
        assert_eq!(
            serde_json::to_value(&entries).unwrap(),
            json!([{"name": "a", "version": "1", "state": "READY"},
                   {"name": "b", "state": "UNAVAILABLE", "reason": "unloaded"}])
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("boom")).unwrap(),
            r#"{"error":"boom"}"#
        );
    }

    #[test]
    fn repository_requests_accept_empty_objects() {
        let r: RepositoryIndexRequest = serde_json::from_str("{}").unwrap();
        assert!(!r.ready);
        let l: RepositoryModelRequest =
            serde_json::from_str(r#"{"parameters": {"config": "{}", "unload_dependents": true}}"#)
                .unwrap();
        assert_eq!(l.parameters.len(), 2);
    }
}
