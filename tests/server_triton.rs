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
    let s = common::start(repo.path(), |_| {}).await;
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
        // LRAI answers a negative dimension with 400 where Triton (for -1 in JSON) answers
        // 500: it is the request that is wrong (docs/protocol.md).
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
