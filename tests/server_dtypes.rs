//! Every datatype through every conversion of the server, on every backend (tract always,
//! ONNX Runtime where its library is found; `LRAI_REQUIRE_ORT=1` makes a missing one a
//! failure): request → tensor → backend → response over HTTP JSON, HTTP binary tensors,
//! gRPC raw and typed contents, batched and not, with values at the edges of each range.
//! The model is `tests/fixtures/backend/dtypes_identity` (one Identity per datatype) in a
//! Triton layout, so every response must equal its request byte for byte. Requests are
//! written and responses read by hand (`wire_values`), not with LRAI's codecs, and each
//! runs several times, concurrently with others that carry different values.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;
mod wire_values;

use std::path::{Path, PathBuf};

use lrai::RunningServer;
use lrai_backend::BackendKind;
use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::task::JoinSet;
use wire_values::{Values, binary_strings, edge_values};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backend")
        .join(case)
        .join("model.onnx")
}

/// `dtypes_identity` cut down to the datatypes in `keep` (suffixes such as `int64`).
fn identity_subset(keep: &[&str]) -> lrai_onnx::ModelProto {
    let mut m = lrai_onnx::load_model(&fixture("dtypes_identity")).unwrap();
    let g = m.graph.as_mut().unwrap();
    let kept = |name: &str| keep.contains(&&name[2..]);
    g.input
        .retain(|i| kept(i.name.as_deref().unwrap_or_default()));
    g.output
        .retain(|o| kept(o.name.as_deref().unwrap_or_default()));
    g.node.retain(|n| kept(n.input[0].as_str()));
    m
}

fn config_type(datatype: &str) -> String {
    match datatype {
        "BYTES" => "TYPE_STRING".into(),
        "FP16" | "FP32" | "FP64" | "BF16" => format!("TYPE_{datatype}"),
        other => format!("TYPE_{other}"),
    }
}

/// config.pbtxt for `names` with their datatypes: one free dim each without batching;
/// with batching one value per row (`dims [1]`, `reshape []`, as Triton writes scalars).
fn config(model: &str, io: &[(&str, &str)], batch: bool) -> String {
    let tensor = |prefix: &str, (name, dt): &(&str, &str)| {
        let shape = if batch {
            "dims: [ 1 ] reshape: { shape: [ ] }"
        } else {
            "dims: [ -1 ]"
        };
        format!(
            "  {{ name: \"{prefix}_{name}\" data_type: {} {shape} }}",
            config_type(dt)
        )
    };
    let list = |prefix: &str| {
        io.iter()
            .map(|t| tensor(prefix, t))
            .collect::<Vec<_>>()
            .join(",\n")
    };
    let batching = if batch {
        "max_batch_size: 32\ndynamic_batching { max_queue_delay_microseconds: 20000 }\n"
    } else {
        "max_batch_size: 0\n"
    };
    format!(
        "name: \"{model}\"\n{batching}input [\n{}\n]\noutput [\n{}\n]\n",
        list("x"),
        list("y")
    )
}

fn add_model(repo: &Path, name: &str, model: &lrai_onnx::ModelProto, config: &str) {
    let dir = repo.join(name).join("1");
    fs_err::create_dir_all(&dir).unwrap();
    lrai_onnx::save_model(&dir.join("model.onnx"), model).unwrap();
    fs_err::write(repo.join(name).join("config.pbtxt"), config).unwrap();
}

/// The repository: `dtypes` (every datatype), `dtypes_typed` (all but FP16, which typed
/// gRPC contents can't carry), `dtypes_batch` (every datatype, dynamic batching) and
/// `bf16` (BF16 Identity).
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let io = |skip: &str| -> Vec<(&'static str, &'static str)> {
        edge_values()
            .iter()
            .filter(|(n, _)| *n != skip)
            .map(|(n, v)| (*n, v.datatype()))
            .collect()
    };
    let names =
        |io: &[(&'static str, &'static str)]| io.iter().map(|(n, _)| *n).collect::<Vec<_>>();
    let every = io("");
    let typed = io("float16");
    add_model(
        dir.path(),
        "dtypes",
        &identity_subset(&names(&every)),
        &config("dtypes", &every, false),
    );
    add_model(
        dir.path(),
        "dtypes_typed",
        &identity_subset(&names(&typed)),
        &config("dtypes_typed", &typed, false),
    );
    add_model(
        dir.path(),
        "dtypes_batch",
        &identity_subset(&names(&every)),
        &config("dtypes_batch", &every, true),
    );
    let bf16 = lrai_onnx::load_model(&fixture("bf16_identity")).unwrap();
    let bf16_config = "name: \"bf16\"\nmax_batch_size: 0\n\
        input [ { name: \"x\" data_type: TYPE_BF16 dims: [ -1 ] } ]\n\
        output [ { name: \"y\" data_type: TYPE_BF16 dims: [ -1 ] } ]\n";
    add_model(dir.path(), "bf16", &bf16, bf16_config);
    dir
}

const BACKENDS: [BackendKind; 2] = [BackendKind::Tract, BackendKind::OnnxRuntime];

/// How a request travels.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    /// HTTP, inputs and outputs in JSON (FP16/BF16 inputs binary: JSON may not carry them).
    Json,
    /// HTTP, inputs and outputs as binary tensor data.
    Binary,
    /// HTTP, JSON inputs (as above), binary outputs.
    JsonIn,
    /// HTTP, binary inputs, JSON outputs.
    JsonOut,
    /// gRPC `raw_input_contents`.
    GrpcRaw,
    /// gRPC typed `contents`.
    GrpcTyped,
}

const ALL_WIRES: [Wire; 6] = [
    Wire::Json,
    Wire::Binary,
    Wire::JsonIn,
    Wire::JsonOut,
    Wire::GrpcRaw,
    Wire::GrpcTyped,
];

/// One input (or output): name, values, shape.
#[derive(Debug, Clone)]
struct Named {
    name: String,
    values: Values,
    shape: Vec<usize>,
}

/// The server's answer: outputs, or (HTTP status or gRPC code, message).
type Answer = Result<Vec<(String, String, Vec<usize>, Vec<u8>)>, (i64, String)>;

#[derive(Deserialize)]
struct HttpOut {
    name: String,
    datatype: String,
    shape: Vec<usize>,
    #[serde(default)]
    parameters: serde_json::Map<String, serde_json::Value>,
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct HttpResp {
    outputs: Vec<HttpOut>,
}

fn binary_input(wire: Wire, v: &Values) -> bool {
    match wire {
        Wire::Binary | Wire::JsonOut => true,
        _ => matches!(v, Values::F16(_) | Values::BF16(_)),
    }
}

async fn http_infer(s: &RunningServer, model: &str, wire: Wire, inputs: &[Named]) -> Answer {
    let mut tensors = Vec::new();
    let mut binary = Vec::new();
    for i in inputs {
        let head = format!(
            "\"name\":\"{}\",\"datatype\":\"{}\",\"shape\":{:?}",
            i.name,
            i.values.datatype(),
            i.shape
        );
        if binary_input(wire, &i.values) {
            let bytes = i.values.wire();
            tensors.push(format!(
                "{{{head},\"parameters\":{{\"binary_data_size\":{}}}}}",
                bytes.len()
            ));
            binary.extend(bytes);
        } else {
            tensors.push(format!("{{{head},\"data\":{}}}", i.values.json()));
        }
    }
    let binary_out = matches!(wire, Wire::Binary | Wire::JsonIn);
    let json = format!(
        "{{\"parameters\":{{\"binary_data_output\":{binary_out}}},\"inputs\":[{}]}}",
        tensors.join(",")
    );
    let mut headers = Vec::new();
    if !binary.is_empty() {
        headers.push(("Inference-Header-Content-Length", json.len().to_string()));
    }
    let mut body = json.into_bytes();
    body.extend(binary);
    let url = format!("http://{}/v2/models/{model}/infer", s.http_addr);
    let r = common::http("POST", &url, &headers, body).await;
    if r.status != 200 {
        return Err((i64::from(r.status), r.text()));
    }
    let json_len = r
        .headers
        .get("inference-header-content-length")
        .map_or(r.body.len(), |v| v.to_str().unwrap().parse().unwrap());
    let head = std::str::from_utf8(&r.body[..json_len]).unwrap();
    let doc: HttpResp = serde_json::from_str(&wire_values::quote_bare_tokens(head))
        .unwrap_or_else(|e| panic!("{e}: {head}"));
    let mut at = json_len;
    let mut outs = Vec::new();
    for o in doc.outputs {
        let bytes = match (&o.data, o.parameters.get("binary_data_size")) {
            (Some(text), None) => Values::from_json(&o.datatype, text.get()).wire(),
            (None, Some(n)) => {
                let n = usize::try_from(n.as_u64().unwrap()).unwrap();
                at += n;
                r.body[at - n..at].to_vec()
            }
            _ => panic!("output '{}' has neither data nor binary data", o.name),
        };
        outs.push((o.name, o.datatype, o.shape, bytes));
    }
    assert_eq!(at, r.body.len(), "bytes left after the binary outputs");
    Ok(outs)
}

async fn grpc_infer(s: &RunningServer, model: &str, wire: Wire, inputs: &[Named]) -> Answer {
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let mut req = pb::ModelInferRequest {
        model_name: model.into(),
        ..Default::default()
    };
    for i in inputs {
        req.inputs.push(pb::model_infer_request::InferInputTensor {
            name: i.name.clone(),
            datatype: i.values.datatype().into(),
            shape: i.shape.iter().map(|&d| i64::try_from(d).unwrap()).collect(),
            contents: (wire == Wire::GrpcTyped).then(|| i.values.contents()),
            ..Default::default()
        });
        if wire == Wire::GrpcRaw {
            req.raw_input_contents.push(i.values.wire().into());
        }
    }
    let resp = c
        .model_infer(req)
        .await
        .map_err(|st| (i64::from(st.code() as i32), st.message().to_string()))?
        .into_inner();
    assert_eq!(resp.outputs.len(), resp.raw_output_contents.len());
    Ok(resp
        .outputs
        .into_iter()
        .zip(resp.raw_output_contents)
        .map(|(o, raw)| {
            let shape = o
                .shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap())
                .collect();
            (o.name, o.datatype, shape, raw.to_vec())
        })
        .collect())
}

async fn infer(s: &RunningServer, model: &str, wire: Wire, inputs: &[Named]) -> Answer {
    match wire {
        Wire::GrpcRaw | Wire::GrpcTyped => grpc_infer(s, model, wire, inputs).await,
        _ => http_infer(s, model, wire, inputs).await,
    }
}

/// Asserts that every input came back, as `y_*` for `x_*`, with its datatype, shape and
/// bytes.
fn assert_echoed(what: &str, inputs: &[Named], answer: &Answer) {
    let outs = answer
        .as_ref()
        .unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
    assert_eq!(outs.len(), inputs.len(), "{what}: outputs");
    for i in inputs {
        let want = format!("y{}", &i.name[1..]);
        let (_, dt, shape, bytes) = outs
            .iter()
            .find(|(n, ..)| *n == want)
            .unwrap_or_else(|| panic!("{what}: no output '{want}'"));
        assert_eq!(dt, i.values.datatype(), "{what} {want}: datatype");
        assert_eq!(shape, &i.shape, "{what} {want}: shape");
        if *bytes != i.values.wire() {
            panic!(
                "{what} {want}: values differ\n sent {:?}\n  got {:?}",
                i.values,
                Values::from_wire(dt, bytes)
            );
        }
    }
}

fn named(values: &[(&'static str, Values)], batch: bool) -> Vec<Named> {
    values
        .iter()
        .map(|(n, v)| Named {
            name: format!("x_{n}"),
            values: v.clone(),
            shape: if batch {
                vec![v.len(), 1]
            } else {
                vec![v.len()]
            },
        })
        .collect()
}

/// The edge values and a second set (the same reversed), so that a response carrying
/// another request's values shows.
fn two_sets(skip: &str) -> [Vec<(&'static str, Values)>; 2] {
    let a: Vec<_> = edge_values()
        .into_iter()
        .filter(|(n, _)| *n != skip)
        .collect();
    let b = a.iter().map(|(n, v)| (*n, v.reversed())).collect();
    [a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_datatype_comes_back_exactly_on_every_wire() {
    let repo = repo();
    for kind in BACKENDS {
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
            continue;
        };
        let s = std::sync::Arc::new(s);
        let sets = [two_sets(""), two_sets("float16")];
        // Three rounds; in each, every set on every wire at once, so requests interleave.
        for round in 0..3 {
            let mut tasks = JoinSet::new();
            for wire in ALL_WIRES {
                // Typed contents have no field for FP16: that model goes without it.
                let (model, set) = if wire == Wire::GrpcTyped {
                    ("dtypes_typed", &sets[1])
                } else {
                    ("dtypes", &sets[0])
                };
                for (k, values) in set.iter().enumerate() {
                    let inputs = named(values, false);
                    let s = s.clone();
                    let what = format!("{kind:?} {model} {wire:?} set {k} round {round}");
                    tasks.spawn(async move {
                        let answer = infer(&s, model, wire, &inputs).await;
                        assert_echoed(&what, &inputs, &answer);
                    });
                }
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
        std::sync::Arc::into_inner(s).unwrap().shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_requests_of_every_datatype_split_back_exactly() {
    let repo = repo();
    for kind in BACKENDS {
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
            continue;
        };
        let s = std::sync::Arc::new(s);
        let sets = two_sets("");
        // 24 requests at once, 1 to 8 rows each, from both sets, over four wires: the
        // batcher joins them into batches of up to 32 rows and splits the outputs back.
        // Six more carry BYTES that aren't UTF-8: tract refuses each of them alone, and
        // the requests they would have shared a batch with are answered.
        let mut tasks = JoinSet::new();
        for i in 24..30usize {
            // At least two rows: element 1 is the first that is not UTF-8.
            let rows = 2 + i % 7;
            let values: Vec<_> = sets[0]
                .iter()
                .map(|(n, v)| match v {
                    Values::Bytes(_) => (*n, binary_strings().head(rows)),
                    other => (*n, other.head(rows)),
                })
                .collect();
            let inputs = named(&values, true);
            let wire = [Wire::Binary, Wire::GrpcRaw][i % 2];
            let s = s.clone();
            tasks.spawn(async move {
                let answer = infer(&s, "dtypes_batch", wire, &inputs).await;
                let what = format!("{kind:?} binary strings {i} {wire:?}");
                if kind == BackendKind::Tract {
                    let (status, msg) = answer.unwrap_err();
                    assert!(status == 400 || status == 3, "{what}: {status} {msg}");
                    assert!(msg.contains("is not valid UTF-8"), "{what}: {msg}");
                } else {
                    assert_echoed(&what, &inputs, &answer);
                }
            });
        }
        for i in 0..24usize {
            let rows = 1 + i % 8;
            let values: Vec<_> = sets[i % 2]
                .iter()
                .map(|(n, v)| (*n, v.head(rows)))
                .collect();
            let inputs = named(&values, true);
            let wire = [Wire::Binary, Wire::GrpcRaw, Wire::Json, Wire::JsonOut][i % 4];
            let s = s.clone();
            tasks.spawn(async move {
                let answer = infer(&s, "dtypes_batch", wire, &inputs).await;
                assert_echoed(
                    &format!("{kind:?} batch request {i} {wire:?}"),
                    &inputs,
                    &answer,
                );
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        std::sync::Arc::into_inner(s).unwrap().shutdown().await;
    }
}

/// The `dtypes` inputs with `strings` as the BYTES input.
fn with_strings(strings: &Values, skip: &str) -> Vec<Named> {
    let values: Vec<_> = edge_values()
        .into_iter()
        .filter(|(n, _)| *n != skip)
        .map(|(n, v)| match v {
            Values::Bytes(_) => (n, strings.clone()),
            other => (n, other),
        })
        .collect();
    named(&values, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_strings_pass_onnx_runtime_exactly_and_tract_refuses_them_with_400() {
    let repo = repo();
    let strings = binary_strings();
    for kind in BACKENDS {
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
            continue;
        };
        for _ in 0..2 {
            for wire in [Wire::Binary, Wire::GrpcRaw, Wire::GrpcTyped, Wire::JsonOut] {
                let (model, skip) = if wire == Wire::GrpcTyped {
                    ("dtypes_typed", "float16")
                } else {
                    ("dtypes", "")
                };
                let inputs = with_strings(&strings, skip);
                let answer = infer(&s, model, wire, &inputs).await;
                let what = format!("{kind:?} {wire:?}");
                match (kind, wire) {
                    // JSON can't carry them back: a clear error, not altered bytes.
                    (BackendKind::OnnxRuntime, Wire::JsonOut) => {
                        let (status, msg) = answer.unwrap_err();
                        assert_eq!(status, 400, "{what}: {msg}");
                        assert!(
                            msg.contains("output 'y_string'")
                                && msg.contains("not valid UTF-8, which JSON cannot carry"),
                            "{what}: {msg}"
                        );
                    }
                    (BackendKind::OnnxRuntime, _) => assert_echoed(&what, &inputs, &answer),
                    (BackendKind::Tract, _) => {
                        let (status, msg) = answer.unwrap_err();
                        // 400 over HTTP, INVALID_ARGUMENT (3) over gRPC.
                        let invalid = if matches!(wire, Wire::GrpcRaw | Wire::GrpcTyped) {
                            3
                        } else {
                            400
                        };
                        assert_eq!(status, invalid, "{what}: {msg}");
                        assert!(
                            msg.contains("x_string")
                                && msg.contains("element 1 of a BYTES input is not valid UTF-8"),
                            "{what}: {msg}"
                        );
                    }
                }
            }
            // The same model still answers UTF-8 strings with NULs.
            let utf8 = edge_values()
                .into_iter()
                .find(|(n, _)| *n == "string")
                .unwrap();
            let inputs = with_strings(&utf8.1, "");
            assert_echoed(
                &format!("{kind:?} after"),
                &inputs,
                &infer(&s, "dtypes", Wire::Binary, &inputs).await,
            );
        }
        s.shutdown().await;
    }
}

fn bf16_values() -> Values {
    use lrai_core::half::bf16;
    Values::BF16(vec![
        bf16::from_f32(1.0),
        bf16::NEG_ZERO,
        bf16::MAX,
        bf16::MIN,
        bf16::from_bits(1), // smallest subnormal, about 9.2e-41
        bf16::INFINITY,
        bf16::NEG_INFINITY,
        bf16::NAN,
        bf16::from_f32(0.1),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bf16_passes_onnx_runtime_and_tract_refuses_the_model() {
    let repo = repo();
    let x = vec![Named {
        name: "x".into(),
        values: bf16_values(),
        shape: vec![9],
    }];
    for kind in BACKENDS {
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
            continue;
        };
        match kind {
            BackendKind::OnnxRuntime => {
                for wire in [Wire::Binary, Wire::JsonOut, Wire::JsonIn, Wire::GrpcRaw] {
                    for _ in 0..2 {
                        let answer = infer(&s, "bf16", wire, &x).await;
                        assert_echoed(&format!("bf16 {wire:?}"), &x, &answer);
                    }
                }
                // Neither JSON data nor typed contents may carry BF16 (as in Triton).
                let url = format!("http://{}/v2/models/bf16/infer", s.http_addr);
                let body =
                    r#"{"inputs":[{"name":"x","datatype":"BF16","shape":[1],"data":[1.0]}]}"#;
                let r = common::http("POST", &url, &[], body.into()).await;
                assert_eq!(r.status, 400, "{}", r.text());
                assert!(
                    r.text()
                        .contains("receiving BF16 data via JSON is not supported"),
                    "{}",
                    r.text()
                );
                let (code, msg) = infer(&s, "bf16", Wire::GrpcTyped, &x).await.unwrap_err();
                assert_eq!(code, 3, "{msg}");
                assert!(msg.contains("BF16 has no typed contents field"), "{msg}");
            }
            BackendKind::Tract => {
                let url = format!("http://{}/v2/repository/index", s.http_addr);
                let index = common::http("POST", &url, &[], b"{}".to_vec()).await.json();
                let entry = index
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == "bf16")
                    .unwrap();
                assert_eq!(entry["state"], "UNAVAILABLE", "{entry}");
                let reason = entry["reason"].as_str().unwrap();
                assert!(
                    reason.contains("tract does not support datatype BF16"),
                    "{reason}"
                );
                let (status, msg) = infer(&s, "bf16", Wire::Binary, &x).await.unwrap_err();
                assert_eq!(status, 503, "{msg}");
                // The other models serve.
                let inputs = named(&two_sets("")[0], false);
                assert_echoed(
                    "tract beside bf16",
                    &inputs,
                    &infer(&s, "dtypes", Wire::Binary, &inputs).await,
                );
            }
        }
        s.shutdown().await;
    }
}
