//! Triton's request semantics through the real server (HTTP with hyper's client, gRPC
//! with tonic's): raw binary requests, JSON nesting limits, Triton's error wording, and
//! the classification extension.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use lrai_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use lrai_onnx::pb::{self as onnx, TensorShapeProto, TypeProto};
use lrai_onnx::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

fn url(s: &lrai::RunningServer, path: &str) -> String {
    format!("http://{}{}", s.http_addr, path)
}

/// POSTs `body`; `header_len` is the Inference-Header-Content-Length header.
async fn post(
    s: &lrai::RunningServer,
    path: &str,
    body: Vec<u8>,
    header_len: Option<usize>,
) -> common::Resp {
    let headers: Vec<(&str, String)> = header_len
        .map(|n| ("Inference-Header-Content-Length", n.to_string()))
        .into_iter()
        .collect();
    common::http("POST", &url(s, path), &headers, body).await
}

async fn grpc_client(s: &lrai::RunningServer) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap()
}

fn error_of(r: &common::Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// The JSON head and the binary rest of a response with binary outputs.
fn split_binary(r: &common::Resp) -> (Value, Vec<u8>) {
    let n: usize = r.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (
        serde_json::from_slice(&r.body[..n]).unwrap(),
        r.body[n..].to_vec(),
    )
}

/// A STRING tensor of shape [N, 1].
fn string_value(name: &str) -> ValueInfoProto {
    let dims = [
        dimension::Value::DimParam("N".into()),
        dimension::Value::DimValue(1),
    ];
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(onnx::type_proto::Value::TensorType(
                onnx::type_proto::Tensor {
                    elem_type: Some(onnx::tensor_proto::DataType::String as i32),
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .into_iter()
                            .map(|v| Dimension {
                                value: Some(v),
                                ..Dimension::default()
                            })
                            .collect(),
                    }),
                },
            )),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// `text` STRING [N,1] -> Identity -> `echo`.
fn write_string_echo(path: &Path) {
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![onnx::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            name: Some("string_echo".into()),
            node: vec![NodeProto {
                op_type: Some("Identity".into()),
                input: vec!["text".into()],
                output: vec!["echo".into()],
                ..NodeProto::default()
            }],
            input: vec![string_value("text")],
            output: vec![string_value("echo")],
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    };
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    lrai_onnx::save_model(path, &model).unwrap();
}

/// The standard repository plus two BYTES models over the same string echo: `text_echo`
/// (dims [1], batching: raw requests qualify) and `text_any` (dims [-1,1]: they don't).
fn repo() -> tempfile::TempDir {
    let dir = common::standard_repo();
    for (name, config) in [
        (
            "text_echo",
            "max_batch_size: 4\n\
             input [ { name: \"text\" data_type: TYPE_STRING dims: [ 1 ] } ]\n\
             output [ { name: \"echo\" data_type: TYPE_STRING dims: [ 1 ] } ]\n",
        ),
        (
            "text_any",
            "max_batch_size: 0\n\
             input [ { name: \"text\" data_type: TYPE_STRING dims: [ -1, 1 ] } ]\n\
             output [ { name: \"echo\" data_type: TYPE_STRING dims: [ -1, 1 ] } ]\n",
        ),
    ] {
        write_string_echo(&dir.path().join(name).join("1/model.onnx"));
        fs_err::write(dir.path().join(name).join("config.pbtxt"), config).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_binary_requests_follow_tritons_rules() {
    let repo = repo();
    let s = common::start(repo.path(), |_| {}).await;

    // BYTES [1]: the whole body is the one element, with no length prefix, even when it
    // starts with bytes that look like one.
    let text = b"\x02\x00\x00\x00hi\nthere \xc3\xa9".to_vec();
    let r = post(&s, "/v2/models/text_echo/infer", text.clone(), Some(0)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (head, rest) = split_binary(&r);
    let out = &head["outputs"][0];
    assert_eq!(out["name"], "echo");
    assert_eq!(out["datatype"], "BYTES");
    assert_eq!(out["shape"], json!([1, 1]));
    assert_eq!(out["parameters"]["binary_data_size"], json!(text.len() + 4));
    let mut want = u32::try_from(text.len()).unwrap().to_le_bytes().to_vec();
    want.extend_from_slice(&text);
    assert_eq!(rest, want);

    // A BYTES input whose dims allow more than one element does not qualify.
    let r = post(&s, "/v2/models/text_any/infer", text, Some(0)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        error_of(&r),
        "For BYTE datatype raw input 'text', the model must have input shape [1] (its dims are \
         [-1,1]); send a JSON request or use the binary tensor extension"
    );

    // Fixed-size data: the bytes fill the shape (batch 1) or the request is refused.
    let x: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let r = post(&s, "/v2/models/digits_mlp/infer", x.clone(), Some(0)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(split_binary(&r).0["outputs"][0]["shape"], json!([1, 10]));
    let r = post(
        &s,
        "/v2/models/digits_mlp/infer",
        x[..100].to_vec(),
        Some(0),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        error_of(&r),
        "input byte size mismatch for input 'input' for model 'digits_mlp'. Expected 256, got \
         100 (raw binary request: FP32 with dims [64])"
    );
    s.shutdown().await;
}

/// `values` inside `levels` nested arrays.
fn nested(levels: usize, values: &[f32]) -> String {
    let inner: Vec<String> = values.iter().map(ToString::to_string).collect();
    format!(
        "{}{}{}",
        "[".repeat(levels),
        inner.join(","),
        "]".repeat(levels)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_data_nests_up_to_tritons_limit() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let values: Vec<f32> = (0..64).map(|i| i as f32 / 4.0).collect();
    let body = |levels| {
        format!(
            r#"{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": {}}}]}}"#,
            nested(levels, &values)
        )
        .into_bytes()
    };
    let path = "/v2/models/digits_mlp/infer";
    let flat = post(&s, path, body(1), None).await;
    assert_eq!(flat.status, 200, "{}", flat.text());
    // 99 arrays: the values sit at depth 99, the deepest Triton reads; same answer.
    let deep = post(&s, path, body(99), None).await;
    assert_eq!(deep.status, 200, "{}", deep.text());
    assert_eq!(deep.json()["outputs"], flat.json()["outputs"]);
    // 100 arrays: refused with Triton's message, before anything runs.
    let r = post(&s, path, body(100), None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        error_of(&r),
        "JSON nesting depth exceeds maximum allowed limit (100) in the data of input 'input'; \
         send the values as a flat array in row-major order"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_start_with_tritons_wording() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |c| c.model_control_mode = "explicit".into()).await;
    let ok_input =
        json!([{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": vec![0.5f32; 64]}]);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v2/models/nope/infer",
            json!({"inputs": ok_input}),
            404,
            "Request for unknown model: 'nope' is not found (models: broken, digits_mlp, fake)",
        ),
        (
            "/v2/models/digits_mlp/versions/7/infer",
            json!({"inputs": ok_input}),
            404,
            "Request for unknown model: 'digits_mlp' version 7 is not found (ready versions: 1)",
        ),
        (
            "/v2/models/digits_mlp/versions/latest/infer",
            json!({"inputs": ok_input}),
            400,
            "failed to get model version from specified version string 'latest' for model \
             'digits_mlp', version should be an integral value > 0",
        ),
        (
            "/v2/models/broken/infer",
            json!({"inputs": ok_input}),
            503,
            "Request for unknown model: 'broken' has no available versions (not ready: ",
        ),
        (
            "/v2/models/digits_mlp/infer",
            json!({"inputs": ok_input, "outputs": [{"name": "probs"}]}),
            400,
            "unexpected inference output 'probs' for model 'digits_mlp' (its outputs: logits)",
        ),
        (
            "/v2/models/digits_mlp/infer",
            json!({"inputs": ok_input, "outputs": [{"name": "logits"}, {"name": "logits"}]}),
            400,
            "output 'logits' already exists in request; name each tensor once",
        ),
        (
            "/v2/models/digits_mlp/infer",
            json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": vec![0.5f32; 64]}]}),
            400,
            "unexpected inference input 'pixels' for model 'digits_mlp' (its inputs: input)",
        ),
        (
            "/v2/models/digits_mlp/infer",
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [4294967296u64, 4294967296u64], "data": []}]}),
            400,
            "invalid shape for input 'input': shape [4294967296,4294967296] causes total element \
             count to exceed maximum size of 9223372036854775807",
        ),
        // LRAI answers every negative dimension with 400, where Triton's answer varies by
        // path, up to a 500: it is the request that is wrong (docs/protocol.md).
        (
            "/v2/models/digits_mlp/infer",
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64], "data": []}]}),
            400,
            "invalid shape for input 'input': shape [-1,64] contains one or more invalid \
             dimensions (dimensions must be non-negative)",
        ),
    ];
    for (path, body, status, want) in cases {
        let r = post(&s, path, serde_json::to_vec(&body).unwrap(), None).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let e = error_of(&r);
        assert!(e.starts_with(want), "{path}:\n got  {e}\n want {want}");
    }

    // Model names the repository API refuses, as Triton's ValidateModelName does.
    let mut c = grpc_client(&s).await;
    for (name, want) in [
        (
            "../digits_mlp",
            "invalid model name '../digits_mlp', model name must not contain path traversal \
             characters",
        ),
        (
            "a/b",
            "invalid model name 'a/b', model name must not contain",
        ),
        (
            " ",
            "Model name cannot be empty. Please enter a valid name to deploy.",
        ),
    ] {
        let e = c
            .repository_model_load(pb::RepositoryModelLoadRequest {
                model_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name:?}: {e:?}");
        assert!(e.message().starts_with(want), "{name:?}: {}", e.message());
    }
    // The same wording over gRPC inference.
    let e = c
        .model_infer(pb::ModelInferRequest {
            model_name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(
        e.message()
            .starts_with("Request for unknown model: 'nope' is not found"),
        "{}",
        e.message()
    );
    s.shutdown().await;
}

const DIGIT_LABELS: &str = "zero\none\ntwo\nthree\nfour\n\nsix\nseven\neight\nnine\n";

/// digits_mlp with labels (the line for 5 left empty), and unbatched with the same labels.
fn labelled_repo() -> tempfile::TempDir {
    let dir = repo();
    for (name, batch, dims) in [("digits_labelled", 8, "10"), ("digits_whole", 0, "1, 10")] {
        let in_dims = if batch == 0 { "1, 64" } else { "64" };
        common::copy_example(
            dir.path(),
            "digits_mlp",
            name,
            Some(&format!(
                "max_batch_size: {batch}\n\
                 input [ {{ name: \"input\" data_type: TYPE_FP32 dims: [ {in_dims} ] }} ]\n\
                 output [ {{ name: \"logits\" data_type: TYPE_FP32 dims: [ {dims} ] \
                 label_filename: \"labels.txt\" }} ]\n"
            )),
        );
        fs_err::write(dir.path().join(name).join("labels.txt"), DIGIT_LABELS).unwrap();
    }
    dir
}

/// The top `k` of each row of `logits` as Triton writes them.
fn expected_classes(logits: &[f32], row: usize, k: usize) -> Vec<String> {
    let labels: Vec<&str> = DIGIT_LABELS.lines().collect();
    let mut out = Vec::new();
    for values in logits.chunks(row) {
        let mut order: Vec<usize> = (0..row).collect();
        order.sort_by(|&a, &b| values[b].partial_cmp(&values[a]).unwrap());
        for &i in order.iter().take(k) {
            let label = labels.get(i % 10).copied().unwrap_or_default();
            let mut s = format!("{:.6}:{i}", f64::from(values[i]));
            if !label.is_empty() {
                s = format!("{s}:{label}");
            }
            out.push(s);
        }
    }
    out
}

fn digits_input(rows: usize) -> (Vec<f32>, Value) {
    let x: Vec<f32> = (0..rows * 64).map(|i| (i % 17) as f32 / 2.0).collect();
    let shape = if rows == 0 {
        vec![1, 64]
    } else {
        vec![rows, 64]
    };
    let input = json!([{"name": "input", "datatype": "FP32", "shape": shape, "data": x}]);
    (x, input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_returns_tritons_top_classes() {
    let repo = labelled_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let (_, input) = digits_input(3);
    let path = "/v2/models/digits_labelled/infer";
    let plain = post(
        &s,
        path,
        serde_json::to_vec(&json!({"inputs": input})).unwrap(),
        None,
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let logits: Vec<f32> =
        serde_json::from_value(plain.json()["outputs"][0]["data"].clone()).unwrap();

    // JSON output: strings in `data`, shape [batch, k].
    let body = json!({"inputs": input, "outputs": [{"name": "logits", "parameters": {"classification": 4}}]});
    let r = post(&s, path, serde_json::to_vec(&body).unwrap(), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = &r.json()["outputs"][0];
    assert_eq!(out["datatype"], "BYTES");
    assert_eq!(out["shape"], json!([3, 4]));
    let got: Vec<String> = serde_json::from_value(out["data"].clone()).unwrap();
    assert_eq!(got, expected_classes(&logits, 10, 4));
    assert!(
        got.iter().any(|c| c.matches(':').count() == 2),
        "labels: {got:?}"
    );

    // Binary output; more classes than there are gives all 10.
    let body = json!({"inputs": input, "outputs": [{"name": "logits", "parameters": {"classification": 25, "binary_data": true}}]});
    let r = post(&s, path, serde_json::to_vec(&body).unwrap(), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (head, rest) = split_binary(&r);
    assert_eq!(head["outputs"][0]["shape"], json!([3, 10]));
    let t = lrai_core::Tensor::new(lrai_core::DataType::Bytes, vec![3, 10], rest.into()).unwrap();
    let got: Vec<String> = t
        .byte_strings()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(got, expected_classes(&logits, 10, 10));

    // gRPC: parameters["classification"] as int64_param, the same strings.
    let mut c = grpc_client(&s).await;
    let mut wanted = pb::model_infer_request::InferRequestedOutputTensor {
        name: "logits".into(),
        ..Default::default()
    };
    wanted.parameters.insert(
        "classification".into(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(2)),
        },
    );
    let (x, _) = digits_input(3);
    let resp = c
        .model_infer(pb::ModelInferRequest {
            model_name: "digits_labelled".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![3, 64],
                ..Default::default()
            }],
            outputs: vec![wanted],
            raw_input_contents: vec![
                x.iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>()
                    .into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.outputs[0].datatype, "BYTES");
    assert_eq!(resp.outputs[0].shape, vec![3, 2]);
    let t = lrai_core::Tensor::new(
        lrai_core::DataType::Bytes,
        vec![3, 2],
        resp.raw_output_contents[0].clone(),
    )
    .unwrap();
    let got: Vec<String> = t
        .byte_strings()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(got, expected_classes(&logits, 10, 2));

    // A model that doesn't batch (dims [1,10]): the whole output, flattened, shape [k].
    let (_, input) = digits_input(1);
    let path = "/v2/models/digits_whole/infer";
    let plain = post(
        &s,
        path,
        serde_json::to_vec(&json!({"inputs": input})).unwrap(),
        None,
    )
    .await;
    let logits: Vec<f32> =
        serde_json::from_value(plain.json()["outputs"][0]["data"].clone()).unwrap();
    let body = json!({"inputs": input, "outputs": [{"name": "logits", "parameters": {"classification": 3}}]});
    let r = post(&s, path, serde_json::to_vec(&body).unwrap(), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outputs"][0]["shape"], json!([3]));
    let got: Vec<String> = serde_json::from_value(r.json()["outputs"][0]["data"].clone()).unwrap();
    assert_eq!(got, expected_classes(&logits, 10, 3));

    // Refused: a BYTES output (before anything runs), and a bad count.
    let body = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["a"]}],
                      "outputs": [{"name": "echo", "parameters": {"classification": 1}}]});
    let r = post(
        &s,
        "/v2/models/text_echo/infer",
        serde_json::to_vec(&body).unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        error_of(&r)
            .starts_with("class result not available for output due to unsupported type 'BYTES'"),
        "{}",
        r.text()
    );
    let body = json!({"inputs": input, "outputs": [{"name": "logits", "parameters": {"classification": -2}}]});
    let r = post(&s, path, serde_json::to_vec(&body).unwrap(), None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        error_of(&r).starts_with("Unable to set 'classification'"),
        "{}",
        r.text()
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_files_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = |file: &str| {
        format!(
            "max_batch_size: 8\n\
             input [ {{ name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] }} ]\n\
             output [ {{ name: \"logits\" data_type: TYPE_FP32 dims: [ 10 ] label_filename: \"{file}\" }} ]\n"
        )
    };
    common::copy_example(dir.path(), "digits_mlp", "digits_mlp", None);
    for (name, file) in [
        ("outside", "../digits_mlp/config.pbtxt"),
        ("missing", "nope.txt"),
        ("linked", "labels.txt"),
    ] {
        common::copy_example(dir.path(), "digits_mlp", name, Some(&config(file)));
    }
    // A link that leads out of the model's directory is outside too.
    std::os::unix::fs::symlink(
        dir.path().join("digits_mlp/config.pbtxt"),
        dir.path().join("linked/labels.txt"),
    )
    .unwrap();
    let s = common::start(dir.path(), |_| {}).await;
    let r = post(&s, "/v2/repository/index", b"{}".to_vec(), None).await;
    let index = r.json();
    let reason = |model: &str| {
        index
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == model)
            .map(|e| {
                (
                    e["state"].clone(),
                    e["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .unwrap()
    };
    let (state, why) = reason("outside");
    assert_eq!(state, "UNAVAILABLE");
    assert!(
        why.contains(
            "label file path '../digits_mlp/config.pbtxt' for output 'logits' in model \
             'outside' is outside model directory"
        ),
        "{why}"
    );
    let (state, why) = reason("linked");
    assert_eq!(state, "UNAVAILABLE");
    assert!(
        why.contains("label file path 'labels.txt'") && why.contains("outside"),
        "{why}"
    );
    let (state, why) = reason("missing");
    assert_eq!(state, "UNAVAILABLE");
    assert!(
        why.contains(
            "failed to open text file for read 'nope.txt' (label_filename of output 'logits')"
        ),
        "{why}"
    );
    assert!(
        !why.contains(&dir.path().display().to_string()),
        "no server paths: {why}"
    );
    assert_eq!(reason("digits_mlp").0, "READY");
    s.shutdown().await;
}
