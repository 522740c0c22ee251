//! Model lifecycle through the real server (issue 15): control modes, version swaps with
//! requests in flight (HTTP and gRPC clients; every answer checked against the version
//! that gave it), rollback over HTTP, gRPC and the CLI, a version that fails to load,
//! concurrent loads of one model, version policies, and the errors of bad requests.
#![allow(clippy::unwrap_used)]

mod common;
mod lifecycle;

use std::sync::Arc;

use clap::Parser;
use lifecycle::{Expect, LATEST_1, Load, plus_index, repo_post, start, wait_for, write_version};
use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use lrai_protocol::pb::lrai::repository_extension_client::RepositoryExtensionClient;
use tonic::Code;

#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    serve: lrai::config::ServeConfig,
}

#[test]
fn the_default_control_mode_is_none() {
    let flags = Flags::try_parse_from(["lrai"]).unwrap();
    assert_eq!(flags.serve.model_control_mode, "none");
    assert_eq!(flags.serve.repository_poll_secs, 15);
    let poll = Flags::try_parse_from(["lrai", "--model-control-mode", "POLL"]).unwrap();
    assert_eq!(poll.serve.model_control_mode, "POLL");
    let bad = Flags::try_parse_from(["lrai", "--model-control-mode", "auto"]).unwrap_err();
    assert!(bad.to_string().contains("none, poll, explicit"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_mode_none_refuses_load_unload_and_rollback() {
    let repo = lifecycle::repo(LATEST_1);
    let s = start(repo.path(), "none").await;
    write_version(repo.path(), 2, 2);
    for action in ["load", "unload", "rollback"] {
        let (st, body) = repo_post(&s, &format!("/v2/repository/models/plus/{action}")).await;
        assert_eq!(st, 503, "{action}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.starts_with("explicit model load / unload is not allowed if polling is enabled")
                && msg.contains("--model-control-mode none"),
            "{msg}"
        );
    }
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let e = c
        .repository_model_load(pb::RepositoryModelLoadRequest {
            model_name: "plus".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let mut ext = RepositoryExtensionClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let e = ext
        .model_rollback(pb::lrai::ModelRollbackRequest {
            model_name: "plus".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    // Nothing changed: version 1 serves, version 2 on disk was not loaded.
    assert_eq!(s.repository().serving_version("plus"), Some(1));
    assert_eq!(
        plus_index(&s).await,
        vec![("1".into(), "READY".into(), String::new())]
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_model_flag_needs_explicit_mode() {
    let repo = lifecycle::repo(LATEST_1);
    let mut config = lrai::config::ServeConfig::for_tests(repo.path());
    config.load_models = vec!["plus".into()];
    let e = lrai::serve(config).await.unwrap_err().to_string();
    assert!(
        e.contains("--load-model plus: only --model-control-mode explicit loads a subset"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_refuses_load_and_unload() {
    let repo = lifecycle::repo(LATEST_1);
    let s = start(repo.path(), "poll").await;
    for action in ["load", "unload"] {
        let (st, body) = repo_post(&s, &format!("/v2/repository/models/plus/{action}")).await;
        assert_eq!(st, 503, "{action}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("--model-control-mode poll")
        );
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_swap_and_rollback_with_requests_in_flight() {
    let repo = lifecycle::repo(LATEST_1);
    let s = start(repo.path(), "explicit").await;
    let expect = Arc::new(Expect::default());
    expect.set(1, 1);
    expect.set(2, 2);
    let load = Load::start(&s, 4, Arc::clone(&expect));
    load.wait_answers(50).await;
    write_version(repo.path(), 2, 2);
    let (st, body) = repo_post(&s, "/v2/repository/models/plus/load").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(s.repository().serving_version("plus"), Some(2));
    load.wait_answers(100).await;
    // latest 1: version 1 is unloaded once drained.
    assert_eq!(
        plus_index(&s).await,
        vec![("2".into(), "READY".into(), String::new())]
    );
    let (st, body) = repo_post(&s, "/v2/repository/models/plus/rollback").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["from_version"], "2");
    assert_eq!(body["to_version"], "1");
    assert_eq!(s.repository().serving_version("plus"), Some(1));
    load.wait_answers(100).await;
    let tally = load.finish().await;
    tally.assert_clean();
    assert!(tally.count(2) > 0, "version 2 never answered");
    // Version 1 answered before the swap and after the rollback.
    assert!(tally.count(1) > 0);
    // Both stay loaded: the rollback holds 1, the policy keeps 2.
    let rows = plus_index(&s).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    // Rolling back again: 1 is the first version that served, there is nothing before.
    let (st, body) = repo_post(&s, "/v2/repository/models/plus/rollback").await;
    assert_eq!(st, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("model 'plus' has no previous version to roll back to: version 1 serves"),
        "{msg}"
    );
    assert_eq!(s.repository().serving_version("plus"), Some(1));
    // A load applies the repository again: the rollback's pin ends, 2 serves.
    let (st, _) = repo_post(&s, "/v2/repository/models/plus/load").await;
    assert_eq!(st, 200);
    assert_eq!(s.repository().serving_version("plus"), Some(2));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_applies_versions_config_edits_and_removals_under_load() {
    let repo = lifecycle::repo(LATEST_1);
    let s = start(repo.path(), "poll").await;
    let expect = Arc::new(Expect::default());
    expect.set(1, 1);
    expect.set(2, 2);
    expect.set(3, 1);
    let load = Load::start(&s, 4, Arc::clone(&expect));
    load.wait_answers(50).await;
    // A new version: the poller loads it, it takes over once warm.
    write_version(repo.path(), 2, 2);
    let r = Arc::clone(s.repository());
    wait_for("version 2 to serve", || {
        r.serving_version("plus") == Some(2)
    })
    .await;
    load.wait_answers(100).await;
    // An edited config: the version is rebuilt with it.
    fs_err::write(
        repo.path().join("plus/config.pbtxt"),
        lifecycle::config(LATEST_1, 4),
    )
    .unwrap();
    wait_for("the config edit to apply", || {
        r.get("plus", None).is_ok_and(|h| h.max_batch_size() == 4)
    })
    .await;
    load.wait_answers(100).await;
    // A broken version never serves: 2 keeps serving, the reason is in the index.
    lifecycle::write_broken_version(repo.path(), 3);
    let failed = |rows: &[(String, String, String)]| {
        rows.iter()
            .any(|(v, st, why)| v == "3" && st == "UNAVAILABLE" && why.contains("version 3"))
    };
    let started = std::time::Instant::now();
    loop {
        let rows = plus_index(&s).await;
        if failed(&rows) {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "version 3 never failed: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(r.serving_version("plus"), Some(2));
    load.wait_answers(100).await;
    // Rollback is allowed in poll mode.
    let (st, body) = repo_post(&s, "/v2/repository/models/plus/rollback").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["to_version"], "1");
    load.wait_answers(100).await;
    let tally = load.finish().await;
    tally.assert_clean();
    assert!(tally.count(2) > 0);
    // A removed model directory unloads the model; a new one loads (without the broken
    // version 3, which `latest 1` would pick).
    fs_err::remove_dir_all(repo.path().join("plus/3")).unwrap();
    fs_err::rename(repo.path().join("plus"), repo.path().join("plus_renamed")).unwrap();
    // Its config still says name: "plus": refused until the name matches the directory.
    let text = lifecycle::config(LATEST_1, 4).replace("name: \"plus\"", "");
    fs_err::write(repo.path().join("plus_renamed/config.pbtxt"), text).unwrap();
    wait_for("plus to unload", || r.get("plus", None).is_err()).await;
    wait_for("plus_renamed to load", || {
        r.get("plus_renamed", None).is_ok_and(|h| h.version() == 2)
    })
    .await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_load_never_serves_and_the_old_one_stays() {
    let repo = lifecycle::repo(LATEST_1);
    let s = start(repo.path(), "explicit").await;
    lifecycle::write_broken_version(repo.path(), 2);
    let (st, body) = repo_post(&s, "/v2/repository/models/plus/load").await;
    assert_eq!(st, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("model 'plus' version 2"), "{msg}");
    assert_eq!(s.repository().serving_version("plus"), Some(1));
    let rows = plus_index(&s).await;
    assert_eq!(rows[0], ("1".into(), "READY".into(), String::new()));
    assert_eq!(rows[1].0, "2");
    assert_eq!(rows[1].1, "UNAVAILABLE");
    assert!(rows[1].2.contains("model 'plus' version 2"), "{rows:?}");
    // A config that doesn't parse: the load fails, version 1 keeps serving and says why.
    fs_err::write(repo.path().join("plus/config.pbtxt"), "max_batch_size: [").unwrap();
    let (st, _) = repo_post(&s, "/v2/repository/models/plus/load").await;
    assert_eq!(st, 400);
    assert_eq!(s.repository().serving_version("plus"), Some(1));
    let rows = plus_index(&s).await;
    assert!(
        rows[0].1 == "READY" && rows[0].2.contains("this version keeps serving"),
        "{rows:?}"
    );
    let r = common::http(
        "POST",
        &format!("http://{}/v2/models/plus/infer", s.http_addr),
        &[],
        serde_json::to_vec(
            &serde_json::json!({"inputs": [{"name": "x", "datatype": "FP32",
            "shape": [1, 16], "data": vec![0.0f32; 16]}]}),
        )
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model_version"], "1");
    assert_eq!(r.json()["outputs"][0]["data"][0], 1.0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_of_one_model_build_each_version_once() {
    let repo = lifecycle::repo(LATEST_1);
    let s = start(repo.path(), "explicit").await;
    write_version(repo.path(), 2, 2);
    let loads = (0..4).map(|_| {
        let addr = s.http_addr;
        tokio::spawn(async move {
            common::http(
                "POST",
                &format!("http://{addr}/v2/repository/models/plus/load"),
                &[],
                Vec::new(),
            )
            .await
            .status
        })
    });
    for l in loads.collect::<Vec<_>>() {
        assert_eq!(l.await.unwrap(), 200);
    }
    assert_eq!(s.repository().serving_version("plus"), Some(2));
    let metrics = common::get(&format!("http://{}/metrics", s.metrics_addr))
        .await
        .text();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("lrai_model_load_duration_seconds_count")
                && l.contains("model=\"plus\"")
                && l.contains("version=\"2\"")
        })
        .unwrap_or_else(|| panic!("no load count for plus 2 in:\n{metrics}"));
    assert!(
        line.ends_with(" 1"),
        "version 2 was built more than once: {line}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_over_grpc_and_its_errors() {
    let repo = lifecycle::repo("{ all { } }");
    write_version(repo.path(), 2, 2);
    let s = start(repo.path(), "explicit").await;
    // `all`: both load, the highest answers unversioned requests.
    assert_eq!(s.repository().serving_version("plus"), Some(2));
    let mut ext = RepositoryExtensionClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let rollback = |name: &str| pb::lrai::ModelRollbackRequest {
        model_name: name.into(),
    };
    // Only 2 has served: nothing to go back to.
    let e = ext.model_rollback(rollback("plus")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("model 'plus' has no previous version"),
        "{e:?}"
    );
    let e = ext.model_rollback(rollback("ghost")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("'ghost'"), "{e:?}");
    // 3 arrives and serves; rollback returns to 2 (which served before it).
    write_version(repo.path(), 3, 1);
    let (st, _) = repo_post(&s, "/v2/repository/models/plus/load").await;
    assert_eq!(st, 200);
    assert_eq!(s.repository().serving_version("plus"), Some(3));
    let done = ext
        .model_rollback(rollback("plus"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (done.from_version.as_str(), done.to_version.as_str()),
        ("3", "2")
    );
    assert_eq!(s.repository().serving_version("plus"), Some(2));
    // Versioned requests still reach every loaded version.
    assert_eq!(s.repository().get("plus", Some("3")).unwrap().version(), 3);
    let e = s
        .repository()
        .get("plus", Some("7"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'plus' version 7 is not found (ready versions: 1, 2, 3)"),
        "{e}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specific_version_policy_decides_what_unversioned_requests_see() {
    let repo = lifecycle::repo("{ specific { versions: [ 1 ] } }");
    write_version(repo.path(), 2, 2);
    let s = start(repo.path(), "explicit").await;
    assert_eq!(s.repository().serving_version("plus"), Some(1));
    let e = s
        .repository()
        .get("plus", Some("2"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("version 2 is not found (ready versions: 1)"),
        "{e}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrai_model_rollback_talks_to_a_running_server() {
    let repo = lifecycle::repo(LATEST_1);
    let s = start(repo.path(), "explicit").await;
    let url = s.http_addr.to_string();
    let run = |url: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_lrai"))
                .args(["model", "rollback", "plus", "--url", &url])
                .output()
                .unwrap()
        })
    };
    let out = run(url.clone()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the server answered 400 Bad Request: model 'plus' has no previous version"),
        "{err}"
    );
    write_version(repo.path(), 2, 2);
    let (st, _) = repo_post(&s, "/v2/repository/models/plus/load").await;
    assert_eq!(st, 200);
    let out = run(url).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "model 'plus' rolled back: unversioned requests go to version 1 (were version 2)"
    );
    assert_eq!(s.repository().serving_version("plus"), Some(1));
    s.shutdown().await;
}
