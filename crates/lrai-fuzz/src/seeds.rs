//! Valid inputs per target, built from the committed example models and fixtures so the
//! fuzzers start from what real clients send.

use lrai_core::Tensor;
use prost::Message;

const CONFIGS: [&str; 4] = [
    include_str!("../../../examples/models/digits_mlp/config.pbtxt"),
    include_str!("../../../examples/models/digits_cnn/config.pbtxt"),
    include_str!("../../../tests/fixtures/ensemble/repo/ens_pipeline/config.pbtxt"),
    r#"name: "w" max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 3 ] reshape: { shape: [ ] } } ]
output [ { name: "y" data_type: TYPE_INT64 dims: [ 1 ] label_filename: "labels.txt" } ]
version_policy: { specific: { versions: [ 1, 3 ] } }
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100 }
parameters { key: "lrai.backend" value: { string_value: "tract" } }
model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true } } } ]
"#,
];

const PROPERTY: &str = include_str!("../../lrai-verify/tests/fixtures/acasxu/vnnlib/prop_1.vnnlib");

const MODELS: [&[u8]; 2] = [
    include_bytes!("../../../examples/models/digits_mlp/1/model.onnx"),
    include_bytes!("../../../examples/models/digits_mlp_int8/1/model.onnx"),
];

pub(crate) fn http() -> Vec<Vec<u8>> {
    [
        r#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.5, 1, -2.5e3, 0]}]}"#,
        r#"{"id": "7", "inputs": [{"name": "a", "datatype": "INT64", "shape": [2], "data": [9007199254740993, -1]}, {"name": "b", "datatype": "BYTES", "shape": [1], "data": ["h\u00e9"]}], "outputs": [{"name": "y", "parameters": {"classification": 2}}]}"#,
        r#"{"inputs": [{"name": "x", "datatype": "BOOL", "shape": [2, 1], "data": [[true], [false]]}], "parameters": {"priority": 1, "timeout": 100}}"#,
        r#"{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": ["NaN"]}]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(crate) fn binary() -> Vec<Vec<u8>> {
    let header = r#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}], "outputs": [{"name": "y", "parameters": {"binary_data": true}}]}"#;
    let len = u16::try_from(header.len()).unwrap_or(u16::MAX);
    let mut seed = len.to_le_bytes().to_vec();
    seed.extend_from_slice(header.as_bytes());
    seed.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
    vec![seed]
}

pub(crate) fn raw() -> Vec<Vec<u8>> {
    vec![
        vec![1, 0, 0, 128, 63],
        vec![40, 1, 2, 3, 4, 5, 6, 7, 8],
        vec![255; 17],
    ]
}

pub(crate) fn grpc() -> Vec<Vec<u8>> {
    use lrai_protocol::pb::model_infer_request::InferInputTensor;
    let input = |name: &str, datatype: &str, shape: Vec<i64>| InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        ..Default::default()
    };
    let raw = lrai_protocol::pb::ModelInferRequest {
        model_name: "digits_mlp".into(),
        inputs: vec![input("input", "FP32", vec![1, 2])],
        raw_input_contents: vec![vec![0, 0, 128, 63, 0, 0, 0, 64].into()],
        ..Default::default()
    };
    let mut typed = raw.clone();
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(lrai_protocol::pb::InferTensorContents {
        fp32_contents: vec![1.0, 2.0],
        ..Default::default()
    });
    let mut bytes = raw.clone();
    bytes.inputs = vec![input("s", "BYTES", vec![2])];
    bytes.raw_input_contents = vec![vec![1, 0, 0, 0, b'a', 0, 0, 0, 0].into()];
    [raw, typed, bytes]
        .iter()
        .map(Message::encode_to_vec)
        .collect()
}

pub(crate) fn configs() -> Vec<Vec<u8>> {
    CONFIGS.iter().map(|s| s.as_bytes().to_vec()).collect()
}

pub(crate) fn vnnlib() -> Vec<Vec<u8>> {
    vec![PROPERTY.as_bytes().to_vec()]
}

pub(crate) fn npy() -> Vec<Vec<u8>> {
    let tensors = [
        Tensor::from_vec(vec![2, 2], vec![1.0f32, -2.0, 3.5, 0.0]),
        Tensor::from_vec(vec![3], vec![1i64, i64::MAX, i64::MIN]),
        Tensor::from_vec(vec![0, 4], Vec::<u8>::new()),
    ];
    tensors
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|t| lrai_core::npy::encode_npy(&t).ok())
        .chain(std::iter::once(b"\x93NUMPY\x01\x00".to_vec()))
        .collect()
}

pub(crate) fn onnx() -> Vec<Vec<u8>> {
    MODELS.iter().map(|m| m.to_vec()).collect()
}

/// The fixed key the audit seeds are signed with (a test key, never a real one).
pub(crate) fn audit_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

/// A log of three entries with a signed head after the second and the third.
pub(crate) fn audit() -> Vec<Vec<u8>> {
    use ed25519_dalek::Signer;
    use lrai_audit::{AdminAction, Entry, Event, TreeHead, merkle};
    let key = audit_key();
    let mut log = Vec::new();
    let mut leaves = Vec::new();
    let mut seeds = Vec::new();
    for (index, action) in [
        AdminAction::Load,
        AdminAction::Rollback,
        AdminAction::Unload,
    ]
    .into_iter()
    .enumerate()
    {
        let entry = Entry {
            index: index as u64,
            time_ms: 1_765_000_000_000 + index as u64,
            event: Event::Admin {
                action,
                model: "digits_mlp".into(),
                caller: "ci@127.0.0.1:5000".into(),
                outcome: "ok".into(),
            },
        };
        let line = entry.to_line();
        leaves.push(merkle::leaf_hash(&line));
        log.extend_from_slice(&line);
        log.push(b'\n');
        if index >= 1 {
            let root = merkle::root(&leaves);
            let size = leaves.len() as u64;
            let time_ms = 1_765_000_000_100 + size;
            let sig = key.sign(&TreeHead::signed_bytes(size, time_ms, &root));
            let head = serde_json::json!({"head": {"size": size, "time_ms": time_ms,
                "root": hex(&root), "signature": hex(&sig.to_bytes())}});
            log.extend_from_slice(head.to_string().as_bytes());
            log.push(b'\n');
            seeds.push(log.clone());
        }
    }
    seeds
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
