//! Quantize-at-load through the real server: `lrai.quantize*` parameters in config.pbtxt,
//! the cache next to the model file, the report in config and statistics, cache reuse
//! on reload, re-quantization when the parameters change, and a bad calibration file
//! failing only its own model.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::Path;

use serde_json::{Value, json};

const QUANT_CONFIG: &str = r#"
name: "digits_q"
max_batch_size: 64
dynamic_batching { }
parameters { key: "lrai.quantize" value: { string_value: "static" } }
parameters { key: "lrai.quantize_calibration" value: { string_value: "calib.npz" } }
parameters { key: "lrai.quantize_eval" value: { string_value: "eval.npz" } }
parameters { key: "lrai.quantize_max_drop" value: { string_value: "0.02" } }
"#;

const BAD_CONFIG: &str = r#"
max_batch_size: 64
parameters { key: "lrai.quantize" value: { string_value: "static" } }
parameters { key: "lrai.quantize_calibration" value: { string_value: "missing.npz" } }
"#;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

fn quant_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_example(dir.path(), "digits_mlp", "digits_mlp", None);
    common::copy_example(dir.path(), "digits_mlp", "digits_q", Some(QUANT_CONFIG));
    fs_err::copy(
        fixture("digits_calib.npz"),
        dir.path().join("digits_q/calib.npz"),
    )
    .unwrap();
    fs_err::copy(
        fixture("digits_test.npz"),
        dir.path().join("digits_q/eval.npz"),
    )
    .unwrap();
    common::copy_example(dir.path(), "digits_mlp", "digits_bad", Some(BAD_CONFIG));
    dir
}

fn url(s: &lrai::RunningServer, path: &str) -> String {
    format!("http://{}{}", s.http_addr, path)
}

async fn get(s: &lrai::RunningServer, path: &str) -> Value {
    let r = common::get(&url(s, path)).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

async fn post(s: &lrai::RunningServer, path: &str, body: &Value) -> (u16, Value) {
    let r = common::http(
        "POST",
        &url(s, path),
        &[],
        serde_json::to_vec(body).unwrap(),
    )
    .await;
    (r.status, r.json())
}

/// Logits of the first rows of the evaluation set.
async fn logits(s: &lrai::RunningServer, model: &str, rows: usize) -> Vec<f64> {
    let x = lrai_core::npy::read_npz(&fixture("digits_test.npz"))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "x_flat")
        .unwrap()
        .1
        .to_vec::<f32>()
        .unwrap();
    let body = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 64], "data": x[..rows * 64]}]});
    let (st, out) = post(s, &format!("/v2/models/{model}/infer"), &body).await;
    assert_eq!(st, 200, "{out}");
    out["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

async fn reload(s: &lrai::RunningServer, model: &str) {
    let (st, out) = post(
        s,
        &format!("/v2/repository/models/{model}/load"),
        &json!({}),
    )
    .await;
    assert_eq!(st, 200, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantize_at_load_serves_caches_and_reports() {
    let repo = quant_repo();
    let s = common::start(repo.path(), |c| c.model_control_mode = "explicit".into()).await;
    let cached = repo.path().join("digits_q/1/model.lrai-static.onnx");
    let report = repo.path().join("digits_q/1/model.lrai-static.json");
    assert!(cached.is_file() && report.is_file(), "cache files appear");
    let float_size = fs_err::metadata(repo.path().join("digits_q/1/model.onnx"))
        .unwrap()
        .len();
    assert!(fs_err::metadata(&cached).unwrap().len() < float_size);

    // Close to the float model: same class on (nearly) every row, small logit error.
    let rows = 32;
    let (f, q) = (
        logits(&s, "digits_mlp", rows).await,
        logits(&s, "digits_q", rows).await,
    );
    assert_eq!(f.len(), q.len());
    let agree = f
        .chunks(10)
        .zip(q.chunks(10))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    assert!(agree >= rows - 1, "top-1 agreement {agree}/{rows}");
    let dot: f64 = f.iter().zip(&q).map(|(a, b)| a * b).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cosine = dot / (norm(&f) * norm(&q));
    assert!(cosine > 0.99, "cosine {cosine}");

    // The report: in the config (JSON field and parameter) and in the statistics.
    let config = get(&s, "/v2/models/digits_q/config").await;
    let summary = config["lrai_quantization"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("static int8"), "{config}");
    assert_eq!(config["lrai_quantization"]["cache"], "created");
    assert_eq!(
        config["parameters"]["lrai.quantization_summary"]["string_value"],
        summary
    );
    let stats = get(&s, "/v2/models/digits_q/stats").await;
    assert_eq!(
        stats["model_stats"][0]["lrai_quantization"]["summary"],
        summary
    );
    let plain = get(&s, "/v2/models/digits_mlp/stats").await;
    assert!(plain["model_stats"][0].get("lrai_quantization").is_none());

    // A bad calibration file fails only its own model, and says which file.
    let (_, index) = post(&s, "/v2/repository/index", &json!({})).await;
    let bad = index
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "digits_bad")
        .unwrap();
    assert_eq!(bad["state"], "UNAVAILABLE");
    let reason = bad["reason"].as_str().unwrap();
    assert!(
        reason.contains("quantize-at-load") && reason.contains("missing.npz"),
        "{reason}"
    );

    // Reload after an edit that doesn't touch quantization (a load with no change on disk
    // keeps the loaded version as it is): the cache is reused, not rewritten.
    let modified = fs_err::metadata(&cached).unwrap().modified().unwrap();
    let config_path = repo.path().join("digits_q/config.pbtxt");
    let text = fs_err::read_to_string(&config_path).unwrap();
    fs_err::write(&config_path, format!("{text}\n# edited\n")).unwrap();
    reload(&s, "digits_q").await;
    let config = get(&s, "/v2/models/digits_q/config").await;
    assert_eq!(config["lrai_quantization"]["cache"], "reused", "{config}");
    assert_eq!(
        fs_err::metadata(&cached).unwrap().modified().unwrap(),
        modified
    );
    assert_eq!(logits(&s, "digits_q", rows).await, q);

    // Changed parameters: quantized again.
    let changed = QUANT_CONFIG.replace("\"0.02\"", "\"0.03\"");
    fs_err::write(repo.path().join("digits_q/config.pbtxt"), changed).unwrap();
    reload(&s, "digits_q").await;
    let config = get(&s, "/v2/models/digits_q/config").await;
    assert_eq!(config["lrai_quantization"]["cache"], "created", "{config}");
    s.shutdown().await;
}
