//! The real server over HTTP with a real client (hyper's): KServe v2 endpoints, JSON and
//! binary tensors, Triton's error statuses, and every bad-input case, on port 0.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use serde_json::{Value, json};

fn url(s: &lrai::RunningServer, path: &str) -> String {
    format!("http://{}{}", s.http_addr, path)
}

async fn get(s: &lrai::RunningServer, path: &str) -> (u16, Value) {
    let r = common::get(&url(s, path)).await;
    let text = r.text();
    (
        r.status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn status_of(s: &lrai::RunningServer, path: &str) -> u16 {
    common::get(&url(s, path)).await.status
}

async fn metrics_text(s: &lrai::RunningServer) -> String {
    common::get(&format!("http://{}/metrics", s.metrics_addr))
        .await
        .text()
}

async fn post(
    s: &lrai::RunningServer,
    path: &str,
    body: Vec<u8>,
    header_len: Option<usize>,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let headers: Vec<(&str, String)> = header_len
        .map(|n| ("Inference-Header-Content-Length", n.to_string()))
        .into_iter()
        .collect();
    let r = common::http("POST", &url(s, path), &headers, body).await;
    (r.status, r.headers, r.body)
}

async fn post_json(s: &lrai::RunningServer, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, bytes) = post(s, path, serde_json::to_vec(body).unwrap(), None).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn digits_request(rows: usize) -> Value {
    json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 64], "data": vec![0.5f32; rows * 64]}]})
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_config_and_index() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    assert_eq!(status_of(&s, "/v2/health/live").await, 200);
    // `broken` never loads, so the server as a whole is not ready; the good models are.
    assert_eq!(status_of(&s, "/v2/health/ready").await, 503);
    assert_eq!(status_of(&s, "/v2/models/digits_mlp/ready").await, 200);
    assert_eq!(
        status_of(&s, "/v2/models/digits_mlp/versions/1/ready").await,
        200
    );
    assert_eq!(status_of(&s, "/v2/models/broken/ready").await, 503);

    let (st, meta) = get(&s, "/v2").await;
    assert_eq!(st, 200);
    assert_eq!(meta["name"], "lrai");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );

    let (st, m) = get(&s, "/v2/models/digits_mlp").await;
    assert_eq!(st, 200);
    assert_eq!(
        m["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 64]})
    );
    assert_eq!(m["versions"], json!(["1"]));
    let (st, c) = get(&s, "/v2/models/digits_mlp/config").await;
    assert_eq!(st, 200);
    assert_eq!(c["max_batch_size"], 64);
    assert_eq!(c["input"][0]["dims"], json!([64]));
    assert_eq!(c["input"][0]["data_type"], "TYPE_FP32");

    let (st, index) = post_json(&s, "/v2/repository/index", &json!({})).await;
    assert_eq!(st, 200);
    let broken = index
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "broken")
        .unwrap();
    assert_eq!(broken["state"], "UNAVAILABLE");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("not a valid ONNX model"),
        "{broken}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infers_with_json_and_binary_tensors() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let (st, out) = post_json(&s, "/v2/models/digits_mlp/infer", &digits_request(3)).await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["model_name"], "digits_mlp");
    assert_eq!(out["outputs"][0]["shape"], json!([3, 10]));
    assert_eq!(out["outputs"][0]["data"].as_array().unwrap().len(), 30);
    let json_logits: Vec<f32> = serde_json::from_value(out["outputs"][0]["data"].clone()).unwrap();

    // Binary input and binary output: JSON head + raw little-endian floats.
    let head = serde_json::to_vec(&json!({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 64], "parameters": {"binary_data_size": 3 * 64 * 4}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]
    }))
    .unwrap();
    let mut body = head.clone();
    for _ in 0..3 * 64 {
        body.extend_from_slice(&0.5f32.to_le_bytes());
    }
    let (st, headers, bytes) = post(
        &s,
        "/v2/models/digits_mlp/versions/1/infer",
        body,
        Some(head.len()),
    )
    .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&bytes));
    let json_len: usize = headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 120);
    let bin: Vec<f32> = bytes[json_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        bin, json_logits,
        "JSON and binary paths give the same numbers"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_right_status() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |c| c.http_max_body_bytes = 64 * 1024).await;
    let infer = "/v2/models/digits_mlp/infer";
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": vec![0.0; 64]}]}),
            400,
            "unexpected inference input 'pixels' for model 'digits_mlp'",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 64], "data": vec![0; 64]}]}),
            400,
            "expected datatype FP32, got INT64",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [64], "data": vec![0.0; 64]}]}),
            400,
            "max_batch_size 64",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": vec![0.0; 63]}]}),
            400,
            "63",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP16", "shape": [1, 64], "data": vec![0.0; 64]}]}),
            400,
            "FP16",
        ),
        (json!({"inputs": []}), 400, "needs input 'input'"),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": vec![0.0; 64]}], "outputs": [{"name": "probs"}]}),
            400,
            "unexpected inference output 'probs' for model 'digits_mlp'",
        ),
    ];
    for (body, status, needle) in cases {
        let (st, out) = post_json(&s, infer, &body).await;
        assert_eq!(st, status, "{body} -> {out}");
        assert!(error_of(&out).contains(needle), "{needle:?} not in {out}");
    }
    let (st, out) = post_json(&s, "/v2/models/nope/infer", &digits_request(1)).await;
    assert_eq!(
        (st, error_of(&out)),
        (
            404,
            "Request for unknown model: 'nope' is not found (models: broken, digits_mlp, fake)"
        )
    );
    let (st, out) = post_json(
        &s,
        "/v2/models/digits_mlp/versions/7/infer",
        &digits_request(1),
    )
    .await;
    assert_eq!(st, 404, "{out}");
    let (st, out) = post_json(&s, "/v2/models/broken/infer", &digits_request(1)).await;
    assert_eq!(st, 503, "{out}");
    assert!(error_of(&out).contains("not ready"), "{out}");

    let (st, _, body) = post(&s, infer, b"{\"inputs\": [".to_vec(), None).await;
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st, 400);
    assert!(error_of(&out).contains("line 1"), "{out}");

    // Binary sizes that don't add up: the header promises 256 bytes, 100 follow.
    let head = serde_json::to_vec(&json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "parameters": {"binary_data_size": 256}}]})).unwrap();
    let mut body = head.clone();
    body.extend_from_slice(&[0u8; 100]);
    let (st, _, bytes) = post(&s, infer, body, Some(head.len())).await;
    let out: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(st, 400, "{out}");
    assert!(error_of(&out).contains("256"), "{out}");

    // Larger than the 64 KiB limit set above.
    let big = digits_request(64);
    let mut bytes = serde_json::to_vec(&big).unwrap();
    bytes.resize(70 * 1024, b' ');
    let (st, _, body) = post(&s, infer, bytes, None).await;
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st, 413, "{out}");
    assert!(error_of(&out).contains("65536"), "{out}");

    let (st, out) = get(&s, "/v2/nothing/here").await;
    assert_eq!(st, 404, "{out}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_model_fails_its_requests_and_everything_else_keeps_serving() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let fake = |v: f32| json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [v]}]});
    let (st, out) = post_json(&s, "/v2/models/fake/infer", &fake(-1.0)).await;
    assert_eq!(st, 500, "{out}");
    assert!(error_of(&out).contains("crashed"), "{out}");
    let (st, out) = post_json(&s, "/v2/models/digits_mlp/infer", &digits_request(1)).await;
    assert_eq!(st, 200, "{out}");
    let (st, out) = post_json(&s, "/v2/models/fake/infer", &fake(2.0)).await;
    assert_eq!(st, 200, "the instance was restarted: {out}");
    assert_eq!(out["outputs"][0]["data"], json!([4.0]));
    let (_, stats) = get(&s, "/v2/models/fake/stats").await;
    let m = &stats["model_stats"][0];
    assert_eq!(m["inference_stats"]["success"]["count"], 1);
    assert_eq!(m["inference_stats"]["fail"]["count"], 1);
    let text = metrics_text(&s).await;
    assert!(
        text.contains("lrai_instance_restarts_total{model=\"fake\",version=\"1\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "nv_inference_request_failure{model=\"fake\",reason=\"BACKEND\",version=\"1\"} 1"
    ));
    s.shutdown().await;
}

/// Polls /metrics (bounded) until the model has `n` requests in flight.
async fn wait_inflight(s: &lrai::RunningServer, model: &str, n: usize) {
    let needle = format!("lrai_inflight_requests{{model=\"{model}\",version=\"1\"}} {n}");
    for _ in 0..1000 {
        let text = metrics_text(s).await;
        if text.contains(&needle) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("{model} never had {n} requests in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_answers_503_with_a_retry_hint() {
    let repo = tempfile::tempdir().unwrap();
    common::copy_example(
        repo.path(),
        "digits_mlp",
        "fake",
        Some(&format!(
            "{}\n",
            r#"
max_batch_size: 1
parameters { key: "lrai.backend" value: { string_value: "fake" } }
dynamic_batching { default_queue_policy { max_queue_size: 1 } }
"#
        )),
    );
    let s = common::start(repo.path(), |_| {}).await;
    let target = url(&s, "/v2/models/fake/infer");
    let send = move |v: f32| {
        let body =
            json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [v]}]});
        let target = target.clone();
        tokio::spawn(async move {
            common::http("POST", &target, &[], serde_json::to_vec(&body).unwrap()).await
        })
    };
    // One request holds the instance (sleeps 300 ms), one waits in the queue of size 1,
    // and of five more sent at once, those that find the queue full are refused at once.
    let first = send(1300.0);
    wait_inflight(&s, "fake", 1).await;
    let others: Vec<_> = (0..5).map(|_| send(1.0)).collect();
    let mut statuses = Vec::new();
    let mut rejected = None;
    for o in others {
        let r = o.await.unwrap();
        statuses.push(r.status);
        if r.status == 503 && rejected.is_none() {
            rejected = Some(r);
        }
    }
    let r = rejected.unwrap_or_else(|| panic!("a full queue must answer 503; got {statuses:?}"));
    assert_eq!(r.headers["retry-after"], "1");
    let out: Value = r.json();
    assert!(error_of(&out).contains("max_queue_size 1"), "{out}");
    assert_eq!(first.await.unwrap().status, 200);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_and_load_through_the_repository_api() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |c| c.model_control_mode = "explicit".into()).await;
    let (st, _, _) = post(
        &s,
        "/v2/repository/models/digits_mlp/unload",
        Vec::new(),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = post_json(&s, "/v2/models/digits_mlp/infer", &digits_request(1)).await;
    assert_eq!(st, 404);
    let (st, _, _) = post(
        &s,
        "/v2/repository/models/digits_mlp/load",
        Vec::new(),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = post_json(&s, "/v2/models/digits_mlp/infer", &digits_request(1)).await;
    assert_eq!(st, 200);
    let (st, _, body) = post(&s, "/v2/repository/models/ghost/load", Vec::new(), None).await;
    assert_eq!(st, 404, "{}", String::from_utf8_lossy(&body));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let body =
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1200.0]}]});
    let target = url(&s, "/v2/models/fake/infer");
    let pending = tokio::spawn(async move {
        common::http("POST", &target, &[], serde_json::to_vec(&body).unwrap()).await
    });
    // The request must be in the server before shutdown starts.
    wait_inflight(&s, "fake", 1).await;
    s.shutdown().await;
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_a_latency_objective_batches_adaptively_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
name: "mlp_slo"
max_batch_size: 16
dynamic_batching { max_queue_delay_microseconds: 100 }
parameters { key: "lrai.slo_p95_ms" value: { string_value: "50" } }
"#;
    common::copy_example(dir.path(), "digits_mlp", "mlp_slo", Some(config));
    let bad = r#"
name: "bad_slo"
max_batch_size: 16
parameters { key: "lrai.slo_p95_ms" value: { string_value: "soon" } }
"#;
    common::copy_example(dir.path(), "digits_mlp", "bad_slo", Some(bad));
    let s = common::start(dir.path(), |_| {}).await;
    // A malformed objective is a load error that names the parameter.
    let (_, index) = post_json(&s, "/v2/repository/index", &json!({})).await;
    let bad_entry = index
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bad_slo")
        .cloned()
        .unwrap();
    assert_eq!(bad_entry["state"], "UNAVAILABLE", "{bad_entry}");
    assert!(
        bad_entry["reason"]
            .as_str()
            .unwrap()
            .contains("lrai.slo_p95_ms"),
        "{bad_entry}"
    );
    // Enough requests (bounded) to close a window (256 completions), answered correctly.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = s.http_addr;
        tasks.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&digits_request(1)).unwrap();
            let mut ok = 0;
            for _ in 0..40 {
                let r = common::http(
                    "POST",
                    &format!("http://{addr}/v2/models/mlp_slo/infer"),
                    &[],
                    body.clone(),
                )
                .await;
                if r.status == 200 && r.json()["outputs"][0]["shape"] == json!([1, 10]) {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 320);
    let (status, stats) = get(&s, "/v2/models/mlp_slo/stats").await;
    assert_eq!(status, 200);
    let a = &stats["model_stats"][0]["lrai_adaptive"];
    assert_eq!(a["slo_p95_us"], json!(50_000), "{stats}");
    assert!(a["mode"] == "adaptive" || a["mode"] == "static", "{a}");
    assert!(a["max_batch_size"].as_u64().unwrap() <= 16, "{a}");
    assert!(
        a["cost_model"]["us_per_input_element"].as_f64().is_some(),
        "{a}"
    );
    let text = metrics_text(&s).await;
    assert!(
        text.contains("lrai_batcher_max_queue_delay_us{model=\"mlp_slo\",version=\"1\"}"),
        "{text}"
    );
    assert!(text.contains("lrai_slo_attainment{model=\"mlp_slo\",version=\"1\"}"));
    s.shutdown().await;
}
