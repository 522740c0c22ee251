//! Rollouts through the real server with a real HTTP client: a canary whose candidate
//! answers with permuted logits rolls back by itself at its first step, a fine one is
//! promoted, shadow compares without answering from the candidate, A/B from config is
//! sticky per caller, and bad rollouts change nothing. Answers are checked against ONNX
//! Runtime's outputs for the same inputs (tests/fixtures/refs, scripts/make-fixtures.py);
//! the candidates come from scripts/make-rollout-fixtures.py.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_possible_truncation
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{copy_example, get, http, start};
use lrai_backend::BackendKind;
use serde_json::{Value, json};

/// How long a test waits for a rollout to reach a state before failing.
const PATIENCE: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rollout")
        .join(name)
}

/// ONNX Runtime's inputs and outputs for four digits (one row each).
fn references() -> Vec<(Vec<f32>, Vec<f32>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/refs/digits_mlp/b4");
    let x = &lrai_core::npy::read_npz(&dir.join("inputs.npz")).unwrap()[0].1;
    let y = &lrai_core::npy::read_npz(&dir.join("outputs.npz")).unwrap()[0].1;
    let (x, y) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    x.chunks(64)
        .zip(y.chunks(10))
        .map(|(a, b)| (a.to_vec(), b.to_vec()))
        .collect()
}

/// A repository with digits_mlp version 1 only; `candidate` is added as version 2 after
/// the server started (a new version dropped into the repository).
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_example(dir.path(), "digits_mlp", "digits_mlp", None);
    dir
}

fn add_version(repo: &Path, version: u64, model: &Path) {
    let d = repo.join("digits_mlp").join(version.to_string());
    fs_err::create_dir_all(&d).unwrap();
    fs_err::copy(model, d.join("model.onnx")).unwrap();
}

fn url(s: &lrai::RunningServer, path: &str) -> String {
    format!("http://{}{path}", s.http_addr)
}

async fn post_json(url: &str, body: &Value) -> common::Resp {
    http(
        "POST",
        url,
        &[("content-type", "application/json".into())],
        body.to_string().into_bytes(),
    )
    .await
}

/// One inference; returns (status, version that answered, logits).
async fn infer(
    s: &lrai::RunningServer,
    version: Option<&str>,
    x: &[f32],
    key: Option<&str>,
) -> (u16, String, Vec<f32>) {
    let path = match version {
        Some(v) => format!("/v2/models/digits_mlp/versions/{v}/infer"),
        None => "/v2/models/digits_mlp/infer".to_string(),
    };
    let body =
        json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x}]});
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(k) = key {
        headers.push(("x-lrai-route-key", k.to_string()));
    }
    let r = http(
        "POST",
        &url(s, &path),
        &headers,
        body.to_string().into_bytes(),
    )
    .await;
    let j = r.json();
    let version = j["model_version"].as_str().unwrap_or("").to_string();
    let logits = j["outputs"][0]["data"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .unwrap_or_default();
    (r.status, version, logits)
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 + 1e-4 * y.abs())
}

async fn rollout_status(s: &lrai::RunningServer) -> Value {
    get(&url(s, "/v2/repository/models/digits_mlp/rollout"))
        .await
        .json()
}

/// Traffic until the rollout leaves `progressing` (or `max` requests): every answer
/// checked. Returns answers per version while it progressed.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    failed: u64,
    by_candidate: u64,
    wrong_from_baseline: u64,
}

async fn drive_until_done(s: &lrai::RunningServer, max: u64) -> (Tally, Value) {
    let refs = references();
    let mut t = Tally::default();
    let deadline = Instant::now() + PATIENCE;
    for i in 0..max {
        let (x, y) = &refs[usize::try_from(i).unwrap() % refs.len()];
        let (status, version, logits) = infer(s, None, x, None).await;
        t.sent += 1;
        if status != 200 {
            t.failed += 1;
        } else if version == "2" {
            t.by_candidate += 1;
        } else if !close(&logits, y) {
            t.wrong_from_baseline += 1;
        }
        if i % 10 == 9 {
            let st = rollout_status(s).await;
            if st["state"] != "progressing" || Instant::now() > deadline {
                return (t, st);
            }
        }
    }
    let st = rollout_status(s).await;
    (t, st)
}

async fn metrics_text(s: &lrai::RunningServer) -> String {
    get(&format!("http://{}/metrics", s.metrics_addr))
        .await
        .text()
}

/// Rollouts change what serves: the servers here allow it (the default, `none`, doesn't).
fn explicit(c: &mut lrai::config::ServeConfig) {
    c.model_control_mode = "explicit".into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_permuted_logits_rolls_back_at_its_first_step_on_tract() {
    canary_with_permuted_logits_rolls_back(BackendKind::Tract).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_permuted_logits_rolls_back_at_its_first_step_on_onnxruntime() {
    canary_with_permuted_logits_rolls_back(BackendKind::OnnxRuntime).await;
}

async fn canary_with_permuted_logits_rolls_back(kind: BackendKind) {
    let dir = repo();
    let Some(s) = common::start_on(dir.path(), kind, explicit).await else {
        return;
    };
    add_version(dir.path(), 2, &fixture("digits_mlp_permuted.onnx"));
    let body = json!({"candidate": "2", "mode": "canary", "steps": [10, 50, 100], "step_requests": 100,
        "gates": {"max_error_rate": 0.01, "max_p99_ratio": 2.0, "min_agreement": 0.99}});
    let r = post_json(&url(&s, "/v2/repository/models/digits_mlp/rollout"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["weight"], 10.0);
    assert_eq!(r.json()["baseline"], "1");

    // A request that names the candidate gets it while the rollout runs.
    let refs = references();
    let (status, version, logits) = infer(&s, Some("2"), &refs[0].0, None).await;
    assert_eq!((status, version.as_str()), (200, "2"));
    assert!(
        !close(&logits, &refs[0].1),
        "the candidate's logits are permuted"
    );

    let (t, st) = drive_until_done(&s, 2000).await;
    println!("{t:?}\n{st:#}");
    assert_eq!(st["state"], "rolled_back", "{st:#}");
    assert_eq!(st["step"], 1, "rolled back at the first step: {st:#}");
    assert_eq!(st["weight"], 0.0);
    assert_eq!(st["gates"]["min_agreement"]["ok"], false);
    assert!(st["gates"]["min_agreement"]["value"].as_f64().unwrap() < 0.5);
    assert!(
        st["reason"].as_str().unwrap().contains("min_agreement"),
        "{st:#}"
    );
    assert_eq!(t.failed, 0, "no request failed: {t:?}");
    assert_eq!(
        t.wrong_from_baseline, 0,
        "the baseline answered as ONNX Runtime: {t:?}"
    );
    let candidate = st["requests"]["candidate"].as_u64().unwrap();
    let total = candidate + st["requests"]["baseline"].as_u64().unwrap();
    assert!(
        candidate > 0,
        "the candidate served some of the first step: {st:#}"
    );
    assert!(
        candidate as f64 <= 0.10 * total as f64,
        "the candidate answered {candidate} of {total}, more than the first step's 10%"
    );

    // After the rollback every unversioned request is the baseline's, and right.
    for (x, y) in &refs {
        let (status, version, logits) = infer(&s, None, x, None).await;
        assert_eq!((status, version.as_str()), (200, "1"));
        assert!(close(&logits, y));
    }
    let m = metrics_text(&s).await;
    assert!(
        m.contains(r#"lrai_rollout_outcomes_total{model="digits_mlp",outcome="rolled_back"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"lrai_rollout_gate_ok{gate="min_agreement",model="digits_mlp"} 0"#));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_canary_is_promoted() {
    let dir = repo();
    let s = start(dir.path(), explicit).await;
    add_version(dir.path(), 2, &fixture("digits_mlp_fine.onnx"));
    // Generous latency ratio: identical models on a shared machine must not fail on noise.
    let body = json!({"candidate": 2, "steps": [20, 100], "step_requests": 60, "threshold": 2,
        "gates": {"max_error_rate": 0.0, "max_p99_ratio": 100.0, "min_agreement": 1.0, "max_abs_diff": 1e-4}});
    let r = post_json(&url(&s, "/v2/repository/models/digits_mlp/rollout"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (t, st) = drive_until_done(&s, 3000).await;
    println!("{t:?}\n{st:#}");
    assert_eq!(st["state"], "promoted", "{st:#}");
    assert_eq!(st["weight"], 100.0);
    assert_eq!(t.failed, 0);
    assert_eq!(t.wrong_from_baseline, 0);
    assert!(st["gates"]["min_agreement"]["value"].as_f64().unwrap() >= 1.0);
    // The candidate serves unversioned requests, answering as ONNX Runtime does.
    for (x, y) in references() {
        let (status, version, logits) = infer(&s, None, &x, None).await;
        assert_eq!((status, version.as_str()), (200, "2"));
        assert!(close(&logits, &y));
    }
    assert_eq!(
        ready_versions(&s).await,
        vec!["2"],
        "the baseline was replaced"
    );
    assert!(
        metrics_text(&s)
            .await
            .contains(r#"lrai_rollout_outcomes_total{model="digits_mlp",outcome="promoted"} 1"#)
    );
    s.shutdown().await;
}

/// The READY versions of digits_mlp in the repository index.
async fn ready_versions(s: &lrai::RunningServer) -> Vec<String> {
    let index = post_json(&url(s, "/v2/repository/index"), &json!({}))
        .await
        .json();
    index
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "digits_mlp" && e["state"] == "READY")
        .map(|e| e["version"].as_str().unwrap().to_string())
        .collect()
}

/// At promotion `version_policy` applies again: a policy that names only version 1
/// keeps it loaded beside the promoted version 2, which serves pinned (as a rollback's
/// target) until the next load of the model, when the policy alone decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_applies_the_version_policy_again() {
    let dir = repo();
    let config_path = dir.path().join("digits_mlp/config.pbtxt");
    let config = fs_err::read_to_string(&config_path).unwrap();
    fs_err::write(
        &config_path,
        format!("{config}\nversion_policy: {{ specific: {{ versions: [1] }} }}\n"),
    )
    .unwrap();
    let s = start(dir.path(), explicit).await;
    add_version(dir.path(), 2, &fixture("digits_mlp_fine.onnx"));
    let body = json!({"candidate": "2", "steps": [100], "step_requests": 40,
        "gates": {"max_error_rate": 0.0, "max_p99_ratio": 100.0, "min_agreement": 1.0}});
    let r = post_json(&url(&s, "/v2/repository/models/digits_mlp/rollout"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (t, st) = drive_until_done(&s, 2000).await;
    assert_eq!(st["state"], "promoted", "{st:#}");
    assert_eq!(t.failed, 0);
    assert_eq!(ready_versions(&s).await, vec!["1", "2"]);
    let (x, y) = &references()[0];
    let (status, version, logits) = infer(&s, None, x, None).await;
    assert_eq!(
        (status, version.as_str()),
        (200, "2"),
        "the promoted version serves"
    );
    assert!(close(&logits, y));
    let (status, version, _) = infer(&s, Some("1"), x, None).await;
    assert_eq!((status, version.as_str()), (200, "1"));
    let r = post_json(
        &url(&s, "/v2/repository/models/digits_mlp/load"),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        ready_versions(&s).await,
        vec!["1"],
        "the policy decides again"
    );
    let (status, version, _) = infer(&s, None, x, None).await;
    assert_eq!((status, version.as_str()), (200, "1"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_compares_nearly_every_request_and_answers_from_the_baseline() {
    let dir = repo();
    let s = start(dir.path(), explicit).await;
    add_version(dir.path(), 2, &fixture("digits_mlp_fine.onnx"));
    let body = json!({"candidate": "2", "mode": "shadow", "sample_rate": 1.0, "step_requests": 50,
        "gates": {"min_agreement": 0.99, "min_cosine": 0.999}});
    let r = post_json(&url(&s, "/v2/repository/models/digits_mlp/rollout"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refs = references();
    let n = 200u64;
    for i in 0..n {
        let (x, y) = &refs[usize::try_from(i).unwrap() % refs.len()];
        let (status, version, logits) = infer(&s, None, x, None).await;
        assert_eq!(
            (status, version.as_str()),
            (200, "1"),
            "shadow answers from the baseline"
        );
        assert!(close(&logits, y));
    }
    // Mirrors run off the served path; give the last ones time to land.
    let deadline = Instant::now() + PATIENCE;
    let st = loop {
        let st = rollout_status(&s).await;
        if st["compared"].as_u64().unwrap() >= n || Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("{st:#}");
    assert_eq!(st["state"], "progressing");
    assert!(
        st["compared"].as_u64().unwrap() as f64 >= 0.95 * n as f64,
        "{st:#}"
    );
    assert_eq!(
        st["requests"]["candidate"], 0,
        "the candidate answered nobody"
    );
    assert!(st["windows"].as_u64().unwrap() >= 3);
    assert_eq!(st["gates"]["min_agreement"]["value"], 1.0);
    assert!(st["gates"]["min_cosine"]["ok"].as_bool().unwrap());
    let r = http(
        "DELETE",
        &url(&s, "/v2/repository/models/digits_mlp/rollout"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "aborted");
    let reason = r.json()["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("DELETE /v2/repository/models/digits_mlp/rollout"),
        "{reason}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_from_config_is_sticky_per_caller() {
    let dir = tempfile::tempdir().unwrap();
    let config = fs_err::read_to_string(common::examples().join("digits_mlp/config.pbtxt"))
        .unwrap()
        + "version_policy: { specific: { versions: [1] } }\n"
        + r#"parameters { key: "lrai.rollout" value: { string_value: "{\"candidate\": \"2\", \"mode\": \"ab\", \"weight\": 50, \"step_requests\": 1000000}" } }"#;
    copy_example(dir.path(), "digits_mlp", "digits_mlp", Some(&config));
    add_version(dir.path(), 2, &fixture("digits_mlp_fine.onnx"));
    let s = start(dir.path(), explicit).await;
    let deadline = Instant::now() + PATIENCE;
    let st = loop {
        let st = rollout_status(&s).await;
        if st["state"] == "progressing" || Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(st["mode"], "ab", "{st:#}");
    assert_eq!(st["weight"], 50.0);
    let x = &references()[0].0;
    let mut seen = std::collections::BTreeMap::new();
    for caller in 0..40 {
        let key = format!("caller-{caller}");
        let (_, first, _) = infer(&s, None, x, Some(&key)).await;
        for _ in 0..5 {
            let (status, v, _) = infer(&s, None, x, Some(&key)).await;
            assert_eq!(status, 200);
            assert_eq!(v, first, "caller {key} moved between arms");
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both arms have callers: {seen:?}");
    s.shutdown().await;
}

/// Asserts the model still serves version 1 correctly, with no rollout running.
async fn still_serving_v1(s: &lrai::RunningServer) {
    let (x, y) = &references()[1];
    let (status, version, logits) = infer(s, None, x, None).await;
    assert_eq!((status, version.as_str()), (200, "1"));
    assert!(close(&logits, y));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rollouts_are_refused_and_change_nothing() {
    let dir = repo();
    let s = start(dir.path(), explicit).await;
    fs_err::create_dir_all(dir.path().join("digits_mlp/3")).unwrap();
    fs_err::write(dir.path().join("digits_mlp/3/model.onnx"), b"not onnx").unwrap();
    add_version(dir.path(), 4, &fixture("digits_mlp_fine.onnx"));
    let post = |body: Value| {
        let u = url(&s, "/v2/repository/models/digits_mlp/rollout");
        async move { post_json(&u, &body).await }
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"candidate": "9"}),
            400,
            "no directory 'digits_mlp/9'",
        ),
        (
            json!({"candidate": "3"}),
            400,
            "version 3: it failed to load",
        ),
        (json!({"candidate": "1"}), 400, "it is the baseline"),
        (
            json!({"candidate": "4", "steps": [10, 5, 100]}),
            400,
            "'steps[1]': steps must increase",
        ),
        (
            json!({"candidate": "4", "steps": [10, 50]}),
            400,
            "last step must be 100",
        ),
        (
            json!({"candidate": "4", "steps": [0, 100]}),
            400,
            "'steps[0]'",
        ),
        (json!({"candidate": "4", "mode": "ab"}), 400, "'weight'"),
        (
            json!({"candidate": "4", "gates": {"max_latency": 2}}),
            400,
            "'gates.max_latency': unknown gate",
        ),
        (json!({"candidate": "4", "mode": "blue"}), 400, "'mode'"),
    ];
    for (body, status, text) in cases {
        let r = post(body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(text), "{body}: {}", r.text());
        assert_eq!(
            get(&url(&s, "/v2/repository/models/digits_mlp/rollout"))
                .await
                .status,
            404
        );
        still_serving_v1(&s).await;
    }
    let r = http(
        "POST",
        &url(&s, "/v2/repository/models/digits_mlp/rollout"),
        &[],
        b"{".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post_json(
        &url(&s, "/v2/repository/models/nope/rollout"),
        &json!({"candidate": "2"}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // One rollout at a time; the repository API leaves the model alone meanwhile.
    let ok = json!({"candidate": "4", "mode": "ab", "weight": 10, "step_requests": 1000000});
    assert_eq!(post(ok.clone()).await.status, 200);
    let r = post(ok).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("already has a rollout in progress"),
        "{}",
        r.text()
    );
    let r = post_json(
        &url(&s, "/v2/repository/models/digits_mlp/load"),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("rollout in progress"), "{}", r.text());
    let r = http(
        "DELETE",
        &url(&s, "/v2/repository/models/digits_mlp/rollout"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.json()["state"], "aborted");
    still_serving_v1(&s).await;
    // Version 4 was the rollout's own: it stopped with it.
    let deadline = Instant::now() + PATIENCE;
    while infer(&s, Some("4"), &references()[0].0, None).await.0 != 404 {
        assert!(Instant::now() < deadline, "version 4 still answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_mode_none_refuses_rollout_changes() {
    let dir = repo();
    add_version(dir.path(), 2, &fixture("digits_mlp_fine.onnx"));
    let s = start(dir.path(), |c| c.model_control_mode = "none".into()).await;
    let r = post_json(
        &url(&s, "/v2/repository/models/digits_mlp/rollout"),
        &json!({"candidate": "1"}),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("is not allowed") && r.text().contains("--model-control-mode none"),
        "{}",
        r.text()
    );
    let r = http(
        "DELETE",
        &url(&s, "/v2/repository/models/digits_mlp/rollout"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    s.shutdown().await;
}

/// One gRPC inference of digits_mlp (typed contents); returns the version that answered.
async fn grpc_infer(s: &lrai::RunningServer, x: &[f32], key: &str) -> String {
    use lrai_protocol::pb;
    use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let req = pb::ModelInferRequest {
        model_name: "digits_mlp".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            contents: Some(pb::InferTensorContents {
                fp32_contents: x.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut req = tonic::Request::new(req);
    req.metadata_mut()
        .insert("x-lrai-route-key", key.parse().unwrap());
    c.model_infer(req).await.unwrap().into_inner().model_version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_follow_the_split_and_stick_by_metadata() {
    let dir = repo();
    let s = start(dir.path(), explicit).await;
    add_version(dir.path(), 2, &fixture("digits_mlp_fine.onnx"));
    let body = json!({"candidate": "2", "mode": "ab", "weight": 50, "step_requests": 1000000});
    let r = post_json(&url(&s, "/v2/repository/models/digits_mlp/rollout"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let x = &references()[2].0;
    let mut seen = std::collections::BTreeMap::new();
    for caller in 0..30 {
        let key = format!("grpc-caller-{caller}");
        let first = grpc_infer(&s, x, &key).await;
        for _ in 0..3 {
            assert_eq!(grpc_infer(&s, x, &key).await, first, "caller {key} moved");
        }
        // The same key over HTTP lands on the same arm: one hash for both protocols.
        assert_eq!(infer(&s, None, x, Some(&key)).await.1, first);
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both arms have callers: {seen:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_replaced_under_the_rollout_aborts_it_without_failing_requests() {
    let dir = repo();
    let s = start(dir.path(), explicit).await;
    add_version(dir.path(), 2, &fixture("digits_mlp_fine.onnx"));
    let body = json!({"candidate": "2", "mode": "ab", "weight": 50, "step_requests": 1000000});
    let r = post_json(&url(&s, "/v2/repository/models/digits_mlp/rollout"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Requests keep coming while the repository reloads the model underneath (what a
    // poll of the directory does): latest { 1 } now means version 2, a new load of it.
    let traffic = {
        let addr = s.http_addr;
        tokio::spawn(async move {
            let refs = references();
            let mut failed = Vec::new();
            for i in 0..400 {
                let (x, y) = &refs[i % refs.len()];
                let body = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x}]});
                let r =
                    post_json(&format!("http://{addr}/v2/models/digits_mlp/infer"), &body).await;
                let j = r.json();
                let logits: Vec<f32> = j["outputs"][0]["data"]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_f64().unwrap() as f32).collect())
                    .unwrap_or_default();
                if r.status != 200 || !close(&logits, y) {
                    failed.push((i, r.status, r.text()));
                }
            }
            failed
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.repository().load_model("digits_mlp").await.unwrap();
    let failed = traffic.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let deadline = Instant::now() + PATIENCE;
    let st = loop {
        let st = rollout_status(&s).await;
        if st["state"] != "progressing" || Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(st["state"], "aborted", "{st:#}");
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("was replaced or unloaded"),
        "{st:#}"
    );
    let (status, version, _) = infer(&s, None, &references()[0].0, None).await;
    assert_eq!((status, version.as_str()), (200, "2"));
    s.shutdown().await;
}
