//! Properties: the parser and decoder never panic, and a printed config reads back equal.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;

use lrai_core::{DataType, Dim, TensorSpec};
use lrai_repo::config::{
    CompleteOptions, DynamicBatching, InputFormat, InstanceGroup, InstanceKind, ModelConfig,
    ModelInput, ModelOutput, ModelWarmup, QueuePolicy, TimeoutAction, VersionPolicy, WarmupData,
    WarmupInput, complete, text,
};
use proptest::prelude::*;

/// Pieces of config.pbtxt syntax, so random documents get past the lexer often.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("<".to_string()),
        Just(">".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        Just(";".to_string()),
        Just("-".to_string()),
        Just("\n".to_string()),
        Just("# c\n".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        prop::sample::select(vec![
            "name",
            "input",
            "output",
            "dims",
            "data_type",
            "max_batch_size",
            "reshape",
            "shape",
            "dynamic_batching",
            "preferred_batch_size",
            "priority_queue_policy",
            "key",
            "value",
            "instance_group",
            "count",
            "kind",
            "gpus",
            "parameters",
            "string_value",
            "model_warmup",
            "inputs",
            "zero_data",
            "input_data_file",
            "version_policy",
            "latest",
            "specific",
            "versions",
            "TYPE_FP32",
            "TYPE_STRING",
            "KIND_CPU",
            "true",
            "DELAY",
            "sequence_batching",
            "optimization",
            "priority_levels",
            "default_priority_level",
        ])
        .prop_map(str::to_string),
        "-?[0-9]{1,20}",
        "0[xX][0-9a-fA-F]{0,3}",
        "\"([^\"\\\\\n]|\\\\[ntx0-7uU'\"])*\"?",
        "'[a-z]*'?",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..80).prop_map(|t| t.join(" "))
}

proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_text(s in any::<String>()) {
        if let Err(e) = text::parse(&s) {
            let _ = e.to_string();
        }
        if let Err(e) = ModelConfig::from_text(&s, "m") {
            let _ = e.to_string();
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..400)) {
        let s = String::from_utf8_lossy(&b);
        let _ = ModelConfig::from_text(&s, "m");
    }

    #[test]
    fn decoder_never_panics_on_token_soup(s in soup()) {
        match ModelConfig::from_text(&s, "m") {
            Ok((_, warnings)) => {
                let _: Vec<String> = warnings.iter().map(ToString::to_string).collect();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn printed_configs_read_back_equal(c in model_config()) {
        prop_assume!(c.validate().is_ok());
        let text = c.to_pbtxt();
        let (back, warnings) = ModelConfig::from_text(&text, &c.name)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert!(warnings.is_empty(), "{warnings:?}\n{text}");
        prop_assert_eq!(back, c, "{}", text);
    }

    #[test]
    fn complete_never_panics_and_its_result_validates(
        c in proptest::option::of(model_config()),
        inputs in prop::collection::vec(tensor_spec(), 0..3),
        outputs in prop::collection::vec(tensor_spec(), 0..3),
        default_mbs in 0u32..9,
    ) {
        let options = CompleteOptions { default_max_batch_size: default_mbs };
        let result = complete(c, "m", &inputs, &outputs, &options);
        if let Err(e) = &result {
            let _ = e.to_string();
        }
        if let Ok((effective, _)) = result {
            prop_assert!(effective.validate().is_ok());
            prop_assert!(effective.max_batch_size.is_some());
            prop_assert!(!effective.instance_group.is_empty());
            let json = effective.to_triton_json();
            prop_assert_eq!(json["name"].as_str(), Some(effective.name.as_str()));
        }
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,8}",
        "\\PC{1,6}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn dtype() -> impl Strategy<Value = DataType> {
    prop::sample::select(DataType::ALL.to_vec())
}

fn dims() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(prop_oneof![Just(-1i64), 1i64..300], 1..5)
}

fn tensor_spec() -> impl Strategy<Value = TensorSpec> {
    let dim = prop_oneof![
        (1usize..5).prop_map(Dim::Fixed),
        Just(Dim::Any),
        Just(Dim::Symbol("batch".into())),
    ];
    (
        prop::sample::select(vec!["x", "y", "z"]),
        dtype(),
        proptest::option::weighted(0.9, prop::collection::vec(dim, 0..4)),
    )
        .prop_map(|(name, dtype, dims)| TensorSpec {
            name: name.to_string(),
            dtype,
            dims,
        })
}

fn input() -> impl Strategy<Value = ModelInput> {
    (
        name(),
        dtype(),
        prop::sample::select(vec![
            InputFormat::None,
            InputFormat::Nchw,
            InputFormat::Nhwc,
        ]),
        dims(),
        any::<bool>(),
        any::<(bool, bool)>(),
    )
        .prop_map(|(name, dtype, format, dims, reshape, (ragged, optional))| {
            let mut i = ModelInput::new(&name, dtype, dims.clone());
            i.format = if dims.len() == 3 {
                format
            } else {
                InputFormat::None
            };
            i.reshape = reshape.then_some(dims);
            i.allow_ragged_batch = ragged;
            i.optional = optional;
            i
        })
}

fn output() -> impl Strategy<Value = ModelOutput> {
    (name(), dtype(), dims(), proptest::option::of(name())).prop_map(
        |(name, dtype, dims, label)| {
            let mut o = ModelOutput::new(&name, dtype, dims);
            o.label_filename = label;
            o
        },
    )
}

fn queue_policy() -> impl Strategy<Value = QueuePolicy> {
    (any::<bool>(), any::<u64>(), any::<bool>(), any::<u32>()).prop_map(
        |(delay, timeout, allow, size)| QueuePolicy {
            timeout_action: if delay {
                TimeoutAction::Delay
            } else {
                TimeoutAction::Reject
            },
            default_timeout_microseconds: timeout,
            allow_timeout_override: allow,
            max_queue_size: size,
        },
    )
}

fn dynamic_batching(mbs: Option<u32>) -> impl Strategy<Value = DynamicBatching> {
    let max = mbs.filter(|m| *m > 0).unwrap_or(1);
    let preferred_len = if mbs.is_some_and(|m| m > 0) {
        0..4usize
    } else {
        0..1
    };
    (
        prop::collection::vec(1..=max, preferred_len),
        any::<u64>(),
        any::<bool>(),
        0u64..4,
        proptest::option::of(queue_policy()),
        prop::collection::vec(queue_policy(), 0..3),
    )
        .prop_map(|(preferred, delay, ordering, levels, default, per_level)| {
            let priority_queue_policy: BTreeMap<u64, QueuePolicy> = per_level
                .into_iter()
                .enumerate()
                .filter_map(|(i, q)| {
                    let level = u64::try_from(i).ok()? + 1;
                    (level <= levels).then_some((level, q))
                })
                .collect();
            DynamicBatching {
                preferred_batch_size: preferred,
                max_queue_delay_microseconds: delay,
                preserve_ordering: ordering,
                priority_levels: levels,
                default_priority_level: levels.min(1),
                default_queue_policy: default,
                priority_queue_policy,
            }
        })
}

fn instance_group() -> impl Strategy<Value = InstanceGroup> {
    (
        prop_oneof![Just(String::new()), name()],
        prop::sample::select(vec![
            InstanceKind::Auto,
            InstanceKind::Cpu,
            InstanceKind::Gpu,
            InstanceKind::Model,
        ]),
        1u32..9,
        prop::collection::vec(0i32..8, 0..3),
    )
        .prop_map(|(name, kind, count, gpus)| InstanceGroup {
            name,
            kind,
            count,
            gpus: if matches!(kind, InstanceKind::Gpu | InstanceKind::Auto) {
                gpus
            } else {
                Vec::new()
            },
        })
}

fn warmup() -> impl Strategy<Value = ModelWarmup> {
    let data = prop_oneof![
        Just(WarmupData::Zero),
        Just(WarmupData::Random),
        any::<String>().prop_map(WarmupData::File),
    ];
    let input = (dtype(), prop::collection::vec(1i64..9, 0..4), data).prop_map(
        |(data_type, dims, data)| WarmupInput {
            data_type,
            dims,
            data,
        },
    );
    (
        any::<String>(),
        prop::collection::btree_map(name(), input, 0..3),
        any::<u32>(),
    )
        .prop_map(|(name, inputs, count)| ModelWarmup {
            name,
            batch_size: 1,
            inputs,
            count,
        })
}

fn version_policy() -> impl Strategy<Value = VersionPolicy> {
    prop_oneof![
        (1u32..5).prop_map(|num_versions| VersionPolicy::Latest { num_versions }),
        Just(VersionPolicy::All),
        prop::collection::vec(0i64..1_000_000_000_000, 1..4)
            .prop_map(|versions| VersionPolicy::Specific { versions }),
    ]
}

fn model_config() -> impl Strategy<Value = ModelConfig> {
    let mbs = prop_oneof![Just(None), Just(Some(0u32)), (1u32..128).prop_map(Some)];
    mbs.prop_flat_map(|mbs| {
        (
            (
                name(),
                prop::sample::select(vec!["", "onnxruntime_onnx"]),
                prop::sample::select(vec!["", "onnxruntime"]),
                version_policy(),
            ),
            prop::collection::vec(input(), 0..3),
            prop::collection::vec(output(), 0..3),
            proptest::option::of(dynamic_batching(mbs)),
            prop::collection::vec(instance_group(), 0..3),
            name(),
            prop::collection::btree_map("[a-z_.]{0,10}", any::<String>(), 0..3),
            prop::collection::vec(warmup(), 0..2),
        )
            .prop_map(
                move |(
                    (name, platform, backend, version_policy),
                    mut input,
                    mut output,
                    dynamic_batching,
                    instance_group,
                    default_model_filename,
                    parameters,
                    model_warmup,
                )| {
                    dedup_names(&mut input, |i| &mut i.name);
                    dedup_names(&mut output, |o| &mut o.name);
                    if mbs == Some(0) {
                        for i in &mut input {
                            i.reshape = i.reshape.take().filter(|r| !r.is_empty());
                        }
                    }
                    ModelConfig {
                        name,
                        platform: platform.to_string(),
                        backend: backend.to_string(),
                        version_policy,
                        max_batch_size: mbs,
                        input,
                        output,
                        dynamic_batching,
                        instance_group,
                        default_model_filename,
                        parameters: parameters
                            .into_iter()
                            .filter(|(k, _)| !k.starts_with("lrai."))
                            .collect(),
                        model_warmup,
                        ensemble_scheduling: None,
                    }
                },
            )
    })
}

fn dedup_names<T>(items: &mut [T], name: impl Fn(&mut T) -> &mut String) {
    for (i, item) in items.iter_mut().enumerate() {
        name(item).push_str(&format!("_{i}"));
    }
}
