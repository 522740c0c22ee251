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
use lrai_backend::BackendKind;
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

/// What tract can't load yet, as (model file, what its load error says, why): backend
/// defects, asserted so that a fix shows up here (then delete the entry).
/// Models tract refuses for a known defect, with what the refusal says and why. Empty
/// since issue 14's fixes (the load-time plan no longer invents 1 for free dims).
const TRACT_DEFECTS: [(&str, &str, &str); 0] = [];

/// Asserts `model` (made from `file`) is READY, or on tract refused for a listed defect;
/// true when it serves.
async fn serves(s: &RunningServer, kind: BackendKind, model: &str, file: &str) -> bool {
    let (ready, why) = readiness(s, model).await;
    let defect = TRACT_DEFECTS.iter().find(|d| d.0 == file);
    if let (BackendKind::Tract, Some((_, says, reason))) = (kind, defect) {
        assert!(
            !ready && why.contains("UNAVAILABLE") && why.contains(says),
            "[{kind:?}] {model}: expected the known tract defect ({reason}); got {why}"
        );
        eprintln!("[{kind:?}] {model}: expected failure, {reason}");
        return false;
    }
    assert!(ready, "[{kind:?}] {model}: {why}");
    true
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
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
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
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
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

/// ONNX Runtime's reference for upsample_concat (`images_<case>` -> `features_<case>`).
fn upsample_reference(case: &str) -> (lrai_core::Tensor, lrai_core::Tensor) {
    let arrays = lrai_core::npy::read_npz(&fixture("upsample_concat.npz")).unwrap();
    let get = |name: String| {
        arrays
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{name} missing from upsample_concat.npz"))
    };
    (
        get(format!("images_{case}")),
        get(format!("features_{case}")),
    )
}

/// Runs upsample_concat on both reference cases and compares with ONNX Runtime's
/// outputs (|got - want| <= 1e-4 + 1e-3 |want|).
async fn check_upsample(s: &RunningServer, kind: BackendKind, model: &str) {
    for case in ["b1", "b2", "b1"] {
        let (x, want) = upsample_reference(case);
        let body = json!({"inputs": [{"name": "images", "datatype": "FP32", "shape": x.shape(), "data": x.to_vec::<f32>().unwrap()}]});
        let (st, v) = infer(s, model, &body).await;
        assert_eq!(st, 200, "[{kind:?}] {model} {case}: {v}");
        let (shape, got) = output(&v, "features");
        let want_shape: Vec<u64> = want.shape().iter().map(|&d| d as u64).collect();
        assert_eq!(shape, want_shape, "[{kind:?}] {model} {case}");
        let want = want.to_f64_vec().unwrap();
        let bad = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| (*g - *w).abs() > 1e-4 + 1e-3 * w.abs())
            .count();
        assert_eq!(bad, 0, "[{kind:?}] {model} {case}: {bad} elements off");
    }
}

/// A neck over free H and W whose Concat needs them even: 1x1, as the old implicit
/// warm-up invented, fails; the configured 3x3 fails too; 8x8 runs.
fn upsample_config(dims: &str, warmup: &str) -> String {
    format!(
        "max_batch_size: 4\n\
         input [ {{ name: \"images\" data_type: TYPE_FP32 dims: {dims} }} ]\n\
         output [ {{ name: \"features\" data_type: TYPE_FP32 dims: [ 6, -1, -1 ] }} ]\n\
         {warmup}"
    )
}

fn warmup_entry(name: &str, dims: &str, data: &str) -> String {
    format!(
        "model_warmup [ {{ name: \"{name}\" batch_size: 2 count: 2 inputs {{ key: \"images\" \
         value {{ data_type: TYPE_FP32 dims: {dims} {data} }} }} }} ]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_implicit_warm_up_never_makes_a_model_that_serves_unavailable() {
    let repo = tempfile::tempdir().unwrap();
    // Free spatial dims, no config: no shape to warm up with, so none is invented.
    add_model(repo.path(), "upsample_auto", "upsample_concat.onnx", None);
    // Concrete dims the model can't run: the warm-up fails, is logged, and is skipped.
    let odd = upsample_config("[ 3, 3, 3 ]", "");
    add_model(
        repo.path(),
        "upsample_odd",
        "upsample_concat.onnx",
        Some(&odd),
    );
    // Concrete dims it runs: warmed up, and serves.
    let even = upsample_config("[ 3, 8, 8 ]", "");
    add_model(
        repo.path(),
        "upsample_8x8",
        "upsample_concat.onnx",
        Some(&even),
    );
    // A model that parses strings: empty strings would fail its Cast.
    add_model(repo.path(), "string_cast", "string_cast.onnx", None);
    for kind in BACKENDS {
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
            continue;
        };
        let mut upsample = true;
        for model in ["upsample_auto", "upsample_odd", "upsample_8x8"] {
            upsample &= serves(&s, kind, model, "upsample_concat.onnx").await;
        }
        if upsample {
            check_upsample(&s, kind, "upsample_auto").await;
            let (x, _) = upsample_reference("b1");
            let body = json!({"inputs": [{"name": "images", "datatype": "FP32", "shape": x.shape(), "data": x.to_vec::<f32>().unwrap()}]});
            let (st, _) = infer(&s, "upsample_8x8", &body).await;
            assert_eq!(st, 200, "[{kind:?}] upsample_8x8");
            // The odd model answers what the backend says about its only shape.
            let odd_body = json!({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 3, 3], "data": vec![0.5f32; 27]}]});
            let (st, v) = infer(&s, "upsample_odd", &odd_body).await;
            assert!(
                st >= 400,
                "[{kind:?}] upsample_odd ran an impossible Concat: {v}"
            );
        }
        check_string_cast(&s, kind).await;
        s.shutdown().await;
    }
}

/// string_cast parses "12", "-3", ... into INT32.
async fn check_string_cast(s: &RunningServer, kind: BackendKind) {
    if !serves(s, kind, "string_cast", "string_cast.onnx").await {
        return;
    }
    for _ in 0..3 {
        let body = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 2], "data": ["12", "-3", "7", "2147483647"]}]});
        let (st, v) = infer(s, "string_cast", &body).await;
        assert_eq!(st, 200, "[{kind:?}] {v}");
        assert_eq!(
            output(&v, "n"),
            (vec![2, 2], vec![12.0, -3.0, 7.0, 2_147_483_647.0])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_warmup_entries_run_as_in_triton_and_a_failing_one_refuses_the_model() {
    let repo = tempfile::tempdir().unwrap();
    let zero = warmup_entry("even", "[ 3, 8, 8 ]", "zero_data: true");
    let ok = upsample_config("[ 3, -1, -1 ]", &zero);
    add_model(repo.path(), "warm_ok", "upsample_concat.onnx", Some(&ok));
    let random = warmup_entry("random", "[ 3, 4, 6 ]", "random_data: true");
    let ok = upsample_config("[ 3, -1, -1 ]", &random);
    add_model(
        repo.path(),
        "warm_random",
        "upsample_concat.onnx",
        Some(&ok),
    );
    // One row of 3x2x2 floats from a file, repeated for the sample's 2 rows.
    let file = warmup_entry("file", "[ 3, 2, 2 ]", "input_data_file: \"row.bin\"");
    let ok = upsample_config("[ 3, -1, -1 ]", &file);
    add_model(repo.path(), "warm_file", "upsample_concat.onnx", Some(&ok));
    let row: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    fs_err::create_dir_all(repo.path().join("warm_file/warmup")).unwrap();
    fs_err::write(repo.path().join("warm_file/warmup/row.bin"), row).unwrap();
    // Explicit samples the model can't run: refused, as Triton refuses it.
    let odd = warmup_entry("odd", "[ 3, 3, 3 ]", "zero_data: true");
    let bad = upsample_config("[ 3, -1, -1 ]", &odd);
    add_model(
        repo.path(),
        "warm_fails",
        "upsample_concat.onnx",
        Some(&bad),
    );
    let escape = warmup_entry(
        "escape",
        "[ 3, 2, 2 ]",
        "input_data_file: \"../config.pbtxt\"",
    );
    let bad = upsample_config("[ 3, -1, -1 ]", &escape);
    add_model(
        repo.path(),
        "warm_escape",
        "upsample_concat.onnx",
        Some(&bad),
    );
    let wrong = warmup_entry("wrong", "[ 4, 8, 8 ]", "zero_data: true");
    let bad = upsample_config("[ 3, -1, -1 ]", &wrong);
    add_model(
        repo.path(),
        "warm_wrong_dims",
        "upsample_concat.onnx",
        Some(&bad),
    );
    for kind in BACKENDS {
        let Some(s) = common::start_on(repo.path(), kind, |_| {}).await else {
            continue;
        };
        for model in ["warm_ok", "warm_random", "warm_file"] {
            if serves(&s, kind, model, "upsample_concat.onnx").await {
                check_upsample(&s, kind, model).await;
            }
        }
        for (model, says) in [
            ("warm_fails", "failed to run warmup sample 'odd'"),
            ("warm_escape", "inside the model's warmup/ directory"),
            (
                "warm_wrong_dims",
                "unexpected shape [4,8,8]: the config's dims are [3,-1,-1]",
            ),
        ] {
            let (ready, why) = readiness(&s, model).await;
            assert!(!ready, "[{kind:?}] {model} should be refused");
            assert!(
                why.contains("UNAVAILABLE") && why.contains(says),
                "[{kind:?}] {model}: {why}"
            );
        }
        s.shutdown().await;
    }
}
