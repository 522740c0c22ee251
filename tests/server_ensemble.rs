//! Ensembles (`platform: "ensemble"`) through the real server, on every backend (tract
//! always, ONNX Runtime where its library is found; `LRAI_REQUIRE_ORT=1` makes a missing
//! one a failure). The repository is `tests/fixtures/ensemble/repo` (made by
//! `scripts/make-ensemble-fixtures.py`): `ens_pipeline` runs `ens_pre`, then `ens_clf` and
//! `ens_score` side by side; its outputs are checked against ONNX Runtime run on the steps
//! one after another in Python (`reference.json`), many times, interleaved with direct
//! requests to the step models. Broken ensembles next to it fail to load with the reason
//! in the index while everything else serves; an ensemble whose step model is unloaded is
//! not ready, says why, and serves again when the model is back.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lrai::RunningServer;
use lrai_backend::BackendKind;
use serde_json::{Value, json};

const BACKENDS: [BackendKind; 2] = [BackendKind::Tract, BackendKind::OnnxRuntime];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ensemble")
}

fn copy_tree(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The pipeline's config renamed to `name`, with `edits` (from, to) applied.
fn pipeline_variant(repo: &Path, name: &str, edits: &[(String, String)]) {
    let mut text =
        fs_err::read_to_string(fixtures().join("repo/ens_pipeline/config.pbtxt")).unwrap();
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "'{from}' is not in the pipeline config"
        );
        text = text.replace(from.as_str(), to);
    }
    text = text.replace("name: \"ens_pipeline\"", &format!("name: \"{name}\""));
    fs_err::create_dir_all(repo.join(name).join("1")).unwrap();
    fs_err::write(repo.join(name).join("config.pbtxt"), text).unwrap();
}

const RAW_IN: &str = "input [ { name: \"RAW\" data_type: TYPE_FP32 dims: [ 4 ] } ]";
const PRE_IN: &str = "input_map { key: \"raw\" value: \"RAW\" }";
const SCORE_OUT: &str = "output_map { key: \"s\" value: \"SCORE\" }";

/// A broken ensemble: the pipeline config with `edits` (from, to), and what the index must say.
struct Broken {
    name: &'static str,
    edits: Vec<(String, String)>,
    reason: &'static str,
}

fn broken() -> Vec<Broken> {
    let case = |name, from: &str, to: String, reason| Broken {
        name,
        edits: vec![(from.to_string(), to)],
        reason,
    };
    vec![
        case(
            "bad_cycle",
            PRE_IN,
            "input_map { key: \"raw\" value: \"PROBS\" }".into(),
            "the steps form a cycle",
        ),
        case(
            "bad_unknown",
            "model_name: \"ens_score\"",
            "model_name: \"nope\"".into(),
            "step 2 (model 'nope') names a model that is not in the repository",
        ),
        case(
            "bad_dtype",
            RAW_IN,
            RAW_IN.replace("TYPE_FP32", "TYPE_INT32"),
            "ensemble tensor 'RAW' has two datatypes",
        ),
        case(
            "bad_shape",
            RAW_IN,
            RAW_IN.replace("[ 4 ]", "[ 5 ]"),
            "ensemble tensor 'RAW' has incompatible shapes",
        ),
        case(
            "bad_unmapped",
            SCORE_OUT,
            "output_map { key: \"s\" value: \"SCORE2\" }".into(),
            "ensemble output 'SCORE' is not produced by any step",
        ),
        case(
            "bad_twice",
            SCORE_OUT,
            "output_map { key: \"s\" value: \"PROBS\" }".into(),
            "ensemble tensor 'PROBS' is produced twice",
        ),
        case(
            "bad_names",
            "input_map { key: \"x\" value: \"FEAT\" }",
            "input_map { key: \"nope\" value: \"FEAT\" }".into(),
            "step 1 (model 'ens_clf') has no input 'nope'",
        ),
    ]
}

/// An ensemble of the pipeline ensemble. Its name sorts before `ens_pipeline`, so it only
/// loads if ensembles load after their steps.
const NESTED: &str = r#"
name: "ens_nested"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "P" data_type: TYPE_FP32 dims: [ 3 ] }, { name: "S" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling { step [ {
  model_name: "ens_pipeline"
  input_map { key: "RAW" value: "IN" }
  output_map { key: "PROBS" value: "P" }
  output_map { key: "SCORE" value: "S" }
} ] }
"#;

/// The fixture repository, plus `ens_nested`, `ens_var` (RAW dims [-1], so a wrong width
/// passes the ensemble and fails in a step) and, with `with_broken`, the broken ensembles.
fn repository(with_broken: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("repo"), dir.path());
    fs_err::create_dir_all(dir.path().join("ens_nested/1")).unwrap();
    fs_err::write(dir.path().join("ens_nested/config.pbtxt"), NESTED).unwrap();
    pipeline_variant(
        dir.path(),
        "ens_var",
        &[(RAW_IN.to_string(), RAW_IN.replace("[ 4 ]", "[ -1 ]"))],
    );
    if with_broken {
        for b in broken() {
            pipeline_variant(dir.path(), b.name, &b.edits);
        }
    }
    dir
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    let r = if method == "GET" {
        common::get(&url).await
    } else {
        common::http(method, &url, &[], serde_json::to_vec(body).unwrap()).await
    };
    (r.status, r.json())
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn infer_body(name: &str, data: &[Vec<f64>]) -> Value {
    let flat: Vec<f64> = data.iter().flatten().copied().collect();
    json!({"inputs": [{"name": name, "datatype": "FP32", "shape": [data.len(), data[0].len()], "data": flat}]})
}

/// Asserts output `name` of `resp` equals `want` (|got - want| <= 1e-5 + 1e-4 |want|).
fn assert_output(resp: &Value, name: &str, want: &[Vec<f64>], what: &str) {
    let o = resp["outputs"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("{what}: no output '{name}' in {resp}"));
    let shape: Vec<usize> = serde_json::from_value(o["shape"].clone()).unwrap();
    assert_eq!(
        shape,
        vec![want.len(), want[0].len()],
        "{what}: shape of {name}"
    );
    let got: Vec<f64> = serde_json::from_value(o["data"].clone()).unwrap();
    for (g, w) in got.iter().zip(want.iter().flatten()) {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "{what}: {name} = {got:?}, ONNX Runtime step by step gives {want:?}"
        );
    }
}

fn cases() -> Vec<Value> {
    let text = fs_err::read_to_string(fixtures().join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// The ensemble, ens_clf and ens_pre, each `rounds` times over every case, all at once.
async fn interleaved(addr: SocketAddr, rounds: usize, what: &str) {
    let mut tasks = Vec::new();
    for (model, input) in [
        ("ens_pipeline", "RAW"),
        ("ens_clf", "x"),
        ("ens_pre", "raw"),
    ] {
        let what = format!("{what}, {model}");
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                for (i, case) in cases().iter().enumerate() {
                    let data = rows(&case[if input == "x" { "feat" } else { "raw" }]);
                    let path = format!("/v2/models/{model}/infer");
                    let (status, resp) = call(addr, "POST", &path, &infer_body(input, &data)).await;
                    let what = format!("{what}, round {round}, case {i}");
                    assert_eq!(status, 200, "{what}: {resp}");
                    match model {
                        "ens_pipeline" => {
                            assert_output(&resp, "PROBS", &rows(&case["probs"]), &what);
                            assert_output(&resp, "SCORE", &rows(&case["score"]), &what);
                        }
                        "ens_clf" => assert_output(&resp, "probs", &rows(&case["probs"]), &what),
                        _ => assert_output(&resp, "feat", &rows(&case["feat"]), &what),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ensemble_answers_as_onnx_runtime_step_by_step_on_every_backend() {
    for kind in BACKENDS {
        let repo = repository(false);
        let Some(s) = common::start_on(repo.path(), kind, |c| {
            c.model_control_mode = "explicit".into()
        })
        .await
        else {
            continue;
        };
        let (status, ready) = call(s.http_addr, "GET", "/v2/health/ready", &Value::Null).await;
        assert_eq!(status, 200, "{kind:?}: {ready}");
        interleaved(s.http_addr, 15, &format!("{kind:?}")).await;
        for (i, case) in cases().iter().enumerate() {
            let body = infer_body("IN", &rows(&case["raw"]));
            let (status, resp) =
                call(s.http_addr, "POST", "/v2/models/ens_nested/infer", &body).await;
            let what = format!("{kind:?}, ens_nested, case {i}");
            assert_eq!(status, 200, "{what}: {resp}");
            assert_output(&resp, "P", &rows(&case["probs"]), &what);
            assert_output(&resp, "S", &rows(&case["score"]), &what);
        }
        s.shutdown().await;
    }
}

#[tokio::test]
async fn metadata_and_config_show_the_ensemble_as_triton_does() {
    let repo = repository(false);
    let s = common::start_on(repo.path(), BackendKind::Tract, |c| {
        c.model_control_mode = "explicit".into()
    })
    .await
    .unwrap();
    let (status, meta) = call(s.http_addr, "GET", "/v2/models/ens_pipeline", &Value::Null).await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["platform"], "ensemble");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(
        meta["inputs"],
        json!([{"name": "RAW", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(
        meta["outputs"],
        json!([
            {"name": "PROBS", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "SCORE", "datatype": "FP32", "shape": [-1, 1]}
        ])
    );
    let (status, config) = call(
        s.http_addr,
        "GET",
        "/v2/models/ens_pipeline/config",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["platform"], "ensemble");
    assert_eq!(config["max_batch_size"], 8);
    let steps = config["ensemble_scheduling"]["step"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{config}");
    assert_eq!(steps[2]["model_name"], "ens_score");
    assert_eq!(steps[2]["model_version"], -1);
    assert_eq!(steps[2]["input_map"], json!({"a": "RAW", "b": "FEAT"}));
    assert_eq!(steps[2]["output_map"], json!({"s": "SCORE"}));
    assert!(config.get("dynamic_batching").is_none(), "{config}");

    // Statistics: the ensemble's queue count grows by one per step run (Triton aggregates
    // its composing models; perf_analyzer finds the ensemble's version by it).
    let case = &cases()[0];
    let body = infer_body("RAW", &rows(&case["raw"]));
    for _ in 0..2 {
        let (status, resp) =
            call(s.http_addr, "POST", "/v2/models/ens_pipeline/infer", &body).await;
        assert_eq!(status, 200, "{resp}");
    }
    let (status, stats) = call(
        s.http_addr,
        "GET",
        "/v2/models/ens_pipeline/stats",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    let st = &stats["model_stats"][0]["inference_stats"];
    assert_eq!(st["success"]["count"], 2, "{stats}");
    assert_eq!(st["queue"]["count"], 6, "{stats}");
    assert_eq!(st["compute_infer"]["count"], 6, "{stats}");
    s.shutdown().await;
}

async fn index_entry(s: &RunningServer, model: &str) -> Value {
    let (_, index) = call(s.http_addr, "POST", "/v2/repository/index", &json!({})).await;
    index
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == model).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_ensembles_say_why_and_the_rest_serves() {
    let repo = repository(true);
    let s = common::start_on(repo.path(), BackendKind::Tract, |c| {
        c.model_control_mode = "explicit".into()
    })
    .await
    .unwrap();
    for Broken { name, reason, .. } in broken() {
        let entry = index_entry(&s, name).await;
        assert_eq!(entry["state"], "UNAVAILABLE", "{name}: {entry}");
        let text = entry["reason"].as_str().unwrap_or_default();
        assert!(
            text.contains(&format!("ensemble '{name}'")) && text.contains(reason),
            "{name}: expected '{reason}' in {entry}"
        );
        let (status, _) = call(
            s.http_addr,
            "GET",
            &format!("/v2/models/{name}/ready"),
            &Value::Null,
        )
        .await;
        assert_ne!(status, 200, "{name} must not be ready");
    }
    interleaved(s.http_addr, 2, "next to broken ensembles").await;

    // A width the ensemble allows (-1) but its first step doesn't: the error names the step.
    let body = infer_body("RAW", &[vec![1.0, 2.0, 3.0, 4.0, 5.0]]);
    let (status, err) = call(s.http_addr, "POST", "/v2/models/ens_var/infer", &body).await;
    assert_eq!(status, 400, "{err}");
    let text = err["error"].as_str().unwrap();
    assert!(
        text.starts_with("ensemble 'ens_var' step 0 (model 'ens_pre'): ")
            && text.contains("input 'raw'"),
        "{text}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_is_not_ready_while_a_step_model_is_unloaded() {
    let repo = repository(false);
    let s = common::start_on(repo.path(), BackendKind::Tract, |c| {
        c.model_control_mode = "explicit".into()
    })
    .await
    .unwrap();
    let (status, err) = call(
        s.http_addr,
        "POST",
        "/v2/repository/models/ens_score/unload",
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{err}");
    let (status, _) = call(
        s.http_addr,
        "GET",
        "/v2/models/ens_pipeline/ready",
        &Value::Null,
    )
    .await;
    assert_ne!(status, 200);
    let entry = index_entry(&s, "ens_pipeline").await;
    assert_eq!(entry["state"], "UNAVAILABLE", "{entry}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("step 2 (model 'ens_score') is not ready"),
        "{entry}"
    );
    let (status, _) = call(s.http_addr, "GET", "/v2/health/ready", &Value::Null).await;
    assert_ne!(
        status, 200,
        "the server is not ready while an ensemble isn't"
    );
    let case = &cases()[1];
    let body = infer_body("RAW", &rows(&case["raw"]));
    let (status, err) = call(s.http_addr, "POST", "/v2/models/ens_pipeline/infer", &body).await;
    assert_eq!(status, 503, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("'ens_score'"),
        "{err}"
    );
    // The other step models keep serving.
    let body_clf = infer_body("x", &rows(&case["feat"]));
    let (status, resp) = call(s.http_addr, "POST", "/v2/models/ens_clf/infer", &body_clf).await;
    assert_eq!(status, 200, "{resp}");
    assert_output(&resp, "probs", &rows(&case["probs"]), "ens_clf alone");

    let (status, err) = call(
        s.http_addr,
        "POST",
        "/v2/repository/models/ens_score/load",
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{err}");
    let (status, resp) = call(s.http_addr, "POST", "/v2/models/ens_pipeline/infer", &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_output(
        &resp,
        "SCORE",
        &rows(&case["score"]),
        "after reloading ens_score",
    );
    let entry = index_entry(&s, "ens_pipeline").await;
    assert_eq!(entry["state"], "READY", "{entry}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_an_ensemble_through_the_api_loads_its_step_models() {
    let repo = repository(false);
    let s = common::start_on(repo.path(), BackendKind::Tract, |c| {
        c.model_control_mode = "explicit".into()
    })
    .await
    .unwrap();
    let unload = "/v2/repository/models/ens_score/unload";
    let (status, err) = call(s.http_addr, "POST", unload, &json!({})).await;
    assert_eq!(status, 200, "{err}");
    assert_ne!(index_entry(&s, "ens_score").await["state"], "READY");
    let load = "/v2/repository/models/ens_pipeline/load";
    let (status, err) = call(s.http_addr, "POST", load, &json!({})).await;
    assert_eq!(status, 200, "{err}");
    let entry = index_entry(&s, "ens_score").await;
    assert_eq!(entry["state"], "READY", "{entry}");
    let case = &cases()[1];
    let body = infer_body("RAW", &rows(&case["raw"]));
    let (status, resp) = call(s.http_addr, "POST", "/v2/models/ens_pipeline/infer", &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_output(
        &resp,
        "SCORE",
        &rows(&case["score"]),
        "after loading the ensemble",
    );
    s.shutdown().await;
}

/// `inference_count` and `execution_count` of a model's version 1.
async fn counts(addr: SocketAddr, model: &str) -> (u64, u64) {
    let (status, stats) = call(
        addr,
        "GET",
        &format!("/v2/models/{model}/stats"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    let s = &stats["model_stats"][0];
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {stats}"));
    (n("inference_count"), n("execution_count"))
}

/// An ensemble's step goes through the step model's own scheduler, so it batches with
/// direct requests to that model: with a 30 s queue delay and a preferred batch of 2
/// rows, one ensemble request and one direct request to `ens_clf` sent together run as
/// one batch of 2 (one execution for two inferences) and both answer correctly. Were the
/// step run outside the scheduler, `ens_clf` would count one execution per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ensemble_steps_batch_with_direct_requests_to_the_step_model() {
    let repo = repository(false);
    let clf = repo.path().join("ens_clf/config.pbtxt");
    let text = fs_err::read_to_string(&clf).unwrap().replace(
        "dynamic_batching { max_queue_delay_microseconds: 2000 }",
        "dynamic_batching { max_queue_delay_microseconds: 30000000 preferred_batch_size: [ 2 ] }",
    );
    assert!(
        text.contains("30000000"),
        "the ens_clf config changed: {text}"
    );
    fs_err::write(&clf, text).unwrap();
    let s = common::start_on(repo.path(), BackendKind::Tract, |c| {
        c.model_control_mode = "explicit".into()
    })
    .await
    .unwrap();
    let (before_inferences, before_executions) = counts(s.http_addr, "ens_clf").await;
    let case = cases()[0].clone();
    let raw = rows(&case["raw"])[..1].to_vec();
    let feat = rows(&case["feat"])[..1].to_vec();
    let want = rows(&case["probs"])[..1].to_vec();
    let addr = s.http_addr;
    let via_ensemble = tokio::spawn({
        let body = infer_body("RAW", &raw);
        async move { call(addr, "POST", "/v2/models/ens_pipeline/infer", &body).await }
    });
    let direct = tokio::spawn({
        let body = infer_body("x", &feat);
        async move { call(addr, "POST", "/v2/models/ens_clf/infer", &body).await }
    });
    let (status, resp) = via_ensemble.await.unwrap();
    assert_eq!(status, 200, "{resp}");
    assert_output(&resp, "PROBS", &want, "through the ensemble");
    let (status, resp) = direct.await.unwrap();
    assert_eq!(status, 200, "{resp}");
    assert_output(&resp, "probs", &want, "direct");
    let (inferences, executions) = counts(s.http_addr, "ens_clf").await;
    assert_eq!(
        (
            inferences - before_inferences,
            executions - before_executions
        ),
        (2, 1),
        "two requests to ens_clf (one an ensemble step) ran as one batch"
    );
    s.shutdown().await;
}
