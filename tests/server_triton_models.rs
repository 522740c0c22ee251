//! Triton's model semantics through the real server, on every backend (tract always,
//! ONNX Runtime where its library is found; `LRAI_REQUIRE_ORT=1` makes a missing one a
//! failure): config.pbtxt `reshape` with an inferred -1, outputs returned in the config's
//! dims, scalars sent as `[batch, 1]`, and a warm-up that never makes a model that serves
//! real inputs UNAVAILABLE. The models are `tests/fixtures/triton/` (made by
//! `scripts/make-triton-fixtures.py`).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};

use lrai::RunningServer;
use lrai_backend::{BackendChoice, BackendKind};
use serde_json::{Value, json};

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/triton")
        .join(file)
}

/// `<repo>/<name>/1/model.onnx` from a fixture, with `config` as config.pbtxt if given.
fn add_model(repo: &Path, name: &str, file: &str, config: Option<&str>) {
    let dir = repo.join(name).join("1");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::copy(fixture(file), dir.join("model.onnx")).unwrap();
    if let Some(c) = config {
        fs_err::write(repo.join(name).join("config.pbtxt"), c).unwrap();
    }
}

/// The server on `repo` with `kind` as its only backend; `None` (said loudly) when ONNX
/// Runtime is asked for and not found, unless `LRAI_REQUIRE_ORT` is set.
async fn start_on(repo: &Path, kind: BackendKind) -> Option<RunningServer> {
    let mut config = lrai::config::ServeConfig::for_tests(repo);
    config.backend.backend = BackendChoice::Only(kind);
    config.backend.ort_lib = std::env::var_os("LRAI_ORT_LIB").map(PathBuf::from);
    match lrai::serve(config).await {
        Ok(s) => {
            s.wait_loaded().await;
            Some(s)
        }
        Err(e) if kind == BackendKind::OnnxRuntime => {
            assert!(
                std::env::var_os("LRAI_REQUIRE_ORT").is_none(),
                "LRAI_REQUIRE_ORT is set but the server can't use ONNX Runtime: {e:#}"
            );
            eprintln!("SKIPPED on onnxruntime (set LRAI_ORT_LIB to run it): {e:#}");
            None
        }
        Err(e) => panic!("the server did not start on {kind:?}: {e:#}"),
    }
}

const BACKENDS: [BackendKind; 2] = [BackendKind::Tract, BackendKind::OnnxRuntime];

async fn get(s: &RunningServer, path: &str) -> (u16, Value) {
    let r = common::get(&format!("http://{}{path}", s.http_addr)).await;
    (r.status, r.json())
}

async fn infer(s: &RunningServer, model: &str, body: &Value) -> (u16, Value) {
    let r = common::http(
        "POST",
        &format!("http://{}/v2/models/{model}/infer", s.http_addr),
        &[],
        serde_json::to_vec(body).unwrap(),
    )
    .await;
    (r.status, r.json())
}

/// The one output of a response: (shape, data as f64).
fn output(v: &Value, name: &str) -> (Vec<u64>, Vec<f64>) {
    let o = v["outputs"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no output '{name}' in {v}"));
    let shape = o["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .collect();
    let data = o["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    (shape, data)
}

/// Whether `model` is READY, and its state and reason from the repository index.
async fn readiness(s: &RunningServer, model: &str) -> (bool, String) {
    let (ready, _) = get(s, &format!("/v2/models/{model}/ready")).await;
    let r = common::http(
        "POST",
        &format!("http://{}/v2/repository/index", s.http_addr),
        &[],
        b"{}".to_vec(),
    )
    .await;
    let entry = r
        .json()
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == model).cloned())
        .unwrap_or(Value::Null);
    (ready == 200, entry.to_string())
}

const RESHAPE_CONFIG: &str = r#"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] reshape: { shape: [ 8, -1, 1, 6 ] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] reshape: { shape: [ 8, -1, 1, 6 ] } } ]
dynamic_batching { }
"#;

const SCALAR_CONFIG: &str = r#"
max_batch_size: 4
input [ { name: "s" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } } ]
"#;

/// y = 2x through `dims [2,4,-1,6]` / `reshape [8,-1,1,6]`: the request and the answer
/// are shaped by dims, with the -1 taken from the request.
async fn check_reshape(s: &RunningServer, kind: BackendKind, rows: usize, len: usize) -> Vec<f64> {
    let shape = [rows, 2, 4, len, 6];
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
    let body = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": x}]});
    let (st, v) = infer(s, "reshape_var", &body).await;
    assert_eq!(st, 200, "[{kind:?}] {v}");
    let (got_shape, y) = output(&v, "y");
    assert_eq!(got_shape, shape.map(|d| d as u64), "[{kind:?}]");
    let want: Vec<f64> = x.iter().map(|&v| 2.0 * f64::from(v)).collect();
    assert_eq!(y, want, "[{kind:?}] rows {rows}, L {len}");
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshape_infers_the_variable_size_and_answers_in_the_config_dims() {
    let repo = tempfile::tempdir().unwrap();
    add_model(
        repo.path(),
        "reshape_var",
        "reshape_var.onnx",
        Some(RESHAPE_CONFIG),
    );
    for kind in BACKENDS {
        let Some(s) = start_on(repo.path(), kind).await else {
            continue;
        };
        let (ready, why) = readiness(&s, "reshape_var").await;
        assert!(ready, "[{kind:?}] {why}");
        let (_, meta) = get(&s, "/v2/models/reshape_var").await;
        assert_eq!(meta["inputs"][0]["shape"], json!([-1, 2, 4, -1, 6]));
        assert_eq!(meta["outputs"][0]["shape"], json!([-1, 2, 4, -1, 6]));
        // The same requests again, interleaved with others of another length and batch:
        // the same answers every time.
        let first = check_reshape(&s, kind, 1, 5).await;
        let other = check_reshape(&s, kind, 3, 2).await;
        for _ in 0..3 {
            assert_eq!(check_reshape(&s, kind, 1, 5).await, first, "[{kind:?}]");
            assert_eq!(check_reshape(&s, kind, 3, 2).await, other, "[{kind:?}]");
        }
        // Still refused: a shape that does not fit dims.
        let body = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8, 5, 1, 6], "data": vec![0.0f32; 240]}]});
        let (st, v) = infer(&s, "reshape_var", &body).await;
        assert_eq!(st, 400, "[{kind:?}] {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("expected [-1,2,4,-1,6]"),
            "[{kind:?}] {v}"
        );
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_reshape_takes_one_value_per_row_as_triton_clients_send_it() {
    let repo = tempfile::tempdir().unwrap();
    add_model(
        repo.path(),
        "scalar_row",
        "scalar_row.onnx",
        Some(SCALAR_CONFIG),
    );
    // Without config.pbtxt the completed config says the same (dims [1], reshape []).
    add_model(repo.path(), "scalar_row_auto", "scalar_row.onnx", None);
    for kind in BACKENDS {
        let Some(s) = start_on(repo.path(), kind).await else {
            continue;
        };
        for model in ["scalar_row", "scalar_row_auto"] {
            let (ready, why) = readiness(&s, model).await;
            assert!(ready, "[{kind:?}] {model}: {why}");
            let (_, cfg) = get(&s, &format!("/v2/models/{model}/config")).await;
            assert_eq!(cfg["input"][0]["reshape"], json!({"shape": []}), "{cfg}");
            for _ in 0..3 {
                let body = json!({"inputs": [{"name": "s", "datatype": "FP32", "shape": [3, 1], "data": [1.5, -2.0, 0.25]}]});
                let (st, v) = infer(&s, model, &body).await;
                assert_eq!(st, 200, "[{kind:?}] {model}: {v}");
                assert_eq!(
                    output(&v, "y"),
                    (vec![3, 1], vec![2.5, -1.0, 1.25]),
                    "[{kind:?}] {model}"
                );
            }
        }
        s.shutdown().await;
    }
}
