//! The effective model configuration as Triton's `ModelConfig` protobuf (gRPC
//! `ModelConfig`); the HTTP twin is `ModelConfig::to_triton_json` in lrai-repo.

use lrai_core::DataType;
use lrai_repo::config::{
    InputFormat, InstanceKind, ModelConfig, QueuePolicy, TimeoutAction, VersionPolicy, WarmupData,
};

use crate::pb;

fn dtype(d: DataType) -> i32 {
    let t = match d {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::U8 => pb::DataType::TypeUint8,
        DataType::U16 => pb::DataType::TypeUint16,
        DataType::U32 => pb::DataType::TypeUint32,
        DataType::U64 => pb::DataType::TypeUint64,
        DataType::I8 => pb::DataType::TypeInt8,
        DataType::I16 => pb::DataType::TypeInt16,
        DataType::I32 => pb::DataType::TypeInt32,
        DataType::I64 => pb::DataType::TypeInt64,
        DataType::F16 => pb::DataType::TypeFp16,
        DataType::BF16 => pb::DataType::TypeBf16,
        DataType::F32 => pb::DataType::TypeFp32,
        DataType::F64 => pb::DataType::TypeFp64,
        DataType::Bytes => pb::DataType::TypeString,
    };
    t as i32
}

fn queue_policy(q: &QueuePolicy) -> pb::ModelQueuePolicy {
    pb::ModelQueuePolicy {
        timeout_action: match q.timeout_action {
            TimeoutAction::Reject => pb::model_queue_policy::TimeoutAction::Reject as i32,
            TimeoutAction::Delay => pb::model_queue_policy::TimeoutAction::Delay as i32,
        },
        default_timeout_microseconds: q.default_timeout_microseconds,
        allow_timeout_override: q.allow_timeout_override,
        max_queue_size: q.max_queue_size,
    }
}

/// `dynamic_batching` or, for an ensemble, `ensemble_scheduling`.
fn scheduling(c: &ModelConfig) -> Option<pb::model_config::SchedulingChoice> {
    if let Some(e) = &c.ensemble_scheduling {
        let steps = e
            .step
            .iter()
            .map(|s| pb::model_ensembling::Step {
                model_name: s.model_name.clone(),
                model_version: s.model_version,
                input_map: s.input_map.clone().into_iter().collect(),
                output_map: s.output_map.clone().into_iter().collect(),
                ..Default::default()
            })
            .collect();
        return Some(pb::model_config::SchedulingChoice::EnsembleScheduling(
            pb::ModelEnsembling {
                step: steps,
                ..Default::default()
            },
        ));
    }
    c.dynamic_batching.as_ref().map(|d| {
        pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
            preferred_batch_size: d
                .preferred_batch_size
                .iter()
                .map(|&s| i32::try_from(s).unwrap_or(i32::MAX))
                .collect(),
            max_queue_delay_microseconds: d.max_queue_delay_microseconds,
            preserve_ordering: d.preserve_ordering,
            priority_levels: d.priority_levels,
            default_priority_level: d.default_priority_level,
            default_queue_policy: d.default_queue_policy.as_ref().map(queue_policy),
            priority_queue_policy: d
                .priority_queue_policy
                .iter()
                .map(|(k, v)| (*k, queue_policy(v)))
                .collect(),
        })
    })
}

/// Converts the effective config.
pub(crate) fn to_pb(c: &ModelConfig) -> pb::ModelConfig {
    use pb::model_version_policy::PolicyChoice;
    let version_policy = match &c.version_policy {
        VersionPolicy::Latest { num_versions } => {
            PolicyChoice::Latest(pb::model_version_policy::Latest {
                num_versions: *num_versions,
            })
        }
        VersionPolicy::All => PolicyChoice::All(pb::model_version_policy::All {}),
        VersionPolicy::Specific { versions } => {
            PolicyChoice::Specific(pb::model_version_policy::Specific {
                versions: versions.clone(),
            })
        }
    };
    let reshape = |r: &Option<Vec<i64>>| {
        r.as_ref()
            .map(|s| pb::ModelTensorReshape { shape: s.clone() })
    };
    pb::ModelConfig {
        name: c.name.clone(),
        platform: c.platform.clone(),
        backend: c.backend.clone(),
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(version_policy),
        }),
        max_batch_size: i32::try_from(c.max_batch()).unwrap_or(i32::MAX),
        input: c
            .input
            .iter()
            .map(|i| pb::ModelInput {
                name: i.name.clone(),
                data_type: dtype(i.data_type),
                format: match i.format {
                    InputFormat::None => pb::model_input::Format::None as i32,
                    InputFormat::Nhwc => pb::model_input::Format::Nhwc as i32,
                    InputFormat::Nchw => pb::model_input::Format::Nchw as i32,
                },
                dims: i.dims.clone(),
                reshape: reshape(&i.reshape),
                is_shape_tensor: i.is_shape_tensor,
                allow_ragged_batch: i.allow_ragged_batch,
                optional: i.optional,
                ..Default::default()
            })
            .collect(),
        output: c
            .output
            .iter()
            .map(|o| pb::ModelOutput {
                name: o.name.clone(),
                data_type: dtype(o.data_type),
                dims: o.dims.clone(),
                reshape: reshape(&o.reshape),
                label_filename: o.label_filename.clone().unwrap_or_default(),
                is_shape_tensor: o.is_shape_tensor,
                ..Default::default()
            })
            .collect(),
        instance_group: c
            .instance_group
            .iter()
            .map(|g| pb::ModelInstanceGroup {
                name: g.name.clone(),
                kind: match g.kind {
                    // LRAI runs on the CPU unless a GPU provider is configured.
                    InstanceKind::Auto | InstanceKind::Cpu => {
                        pb::model_instance_group::Kind::Cpu as i32
                    }
                    InstanceKind::Gpu => pb::model_instance_group::Kind::Gpu as i32,
                    InstanceKind::Model => pb::model_instance_group::Kind::Model as i32,
                },
                count: i32::try_from(g.count).unwrap_or(i32::MAX),
                gpus: g.gpus.clone(),
                ..Default::default()
            })
            .collect(),
        default_model_filename: c.default_model_filename.clone(),
        scheduling_choice: scheduling(c),
        parameters: c
            .parameters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    pb::ModelParameter {
                        string_value: v.clone(),
                    },
                )
            })
            .collect(),
        model_warmup: c
            .model_warmup
            .iter()
            .map(|w| pb::ModelWarmup {
                name: w.name.clone(),
                batch_size: w.batch_size,
                count: w.count,
                inputs: w
                    .inputs
                    .iter()
                    .map(|(k, i)| {
                        use pb::model_warmup::input::InputDataType as D;
                        let data = match &i.data {
                            WarmupData::Zero => D::ZeroData(true),
                            WarmupData::Random => D::RandomData(true),
                            WarmupData::File(f) => D::InputDataFile(f.clone()),
                        };
                        (
                            k.clone(),
                            pb::model_warmup::Input {
                                data_type: dtype(i.data_type),
                                dims: i.dims.clone(),
                                input_data_type: Some(data),
                            },
                        )
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}
