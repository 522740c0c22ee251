//! The audit log through a real server: admin actions over HTTP are in the file (synced)
//! when their reply arrives, inference entries carry digests of exactly what was sent,
//! the log verifies after shutdown, and SIGTERM on the `lrai` binary mid-load loses no
//! answered request.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use lrai_audit::verify::{VerifyOptions, verify_log};
use lrai_core::{DataType, Tensor};

fn keypair(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("audit.key");
    lrai_audit::key::generate(&key).unwrap();
    key
}

fn opts(key: &Path) -> VerifyOptions {
    VerifyOptions {
        pubkey: lrai_audit::key::read_signing_key(key)
            .unwrap()
            .verifying_key(),
        since: None,
        allow_unsigned_tail: false,
        allow_torn_tail: false,
    }
}

fn entries(log: &Path) -> Vec<serde_json::Value> {
    fs_err::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("head").is_none())
        .collect()
}

fn infer_body(x: f32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": vec![x; 64]}]
    }))
    .unwrap()
}

#[tokio::test]
async fn admin_actions_are_durable_before_the_reply_and_the_log_verifies() {
    let repo = tempfile::tempdir().unwrap();
    common::copy_example(repo.path(), "digits_mlp", "digits_mlp", None);
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path());
    let log = dir.path().join("audit.log");
    let server = common::start(repo.path(), |c| {
        c.model_control_mode = "explicit".into();
        c.audit.audit_log = Some(log.clone());
        c.audit.audit_key = Some(key.clone());
        c.audit.audit_inference = true;
    })
    .await;
    let base = format!("http://{}", server.http_addr);
    // Version 2 appears; load serves it; rollback returns to 1; unload; a refused load.
    let v2 = repo.path().join("digits_mlp/2");
    fs_err::create_dir_all(&v2).unwrap();
    fs_err::copy(
        repo.path().join("digits_mlp/1/model.onnx"),
        v2.join("model.onnx"),
    )
    .unwrap();
    let steps = [
        ("load", "digits_mlp", 200, "ok"),
        ("rollback", "digits_mlp", 200, "ok"),
        ("unload", "digits_mlp", 200, "ok"),
        ("load", "no_such_model", 404, "error: "),
        ("load", "digits_mlp", 200, "ok"),
    ];
    for (action, model, status, outcome) in steps {
        let url = format!("{base}/v2/repository/models/{model}/{action}");
        let resp = common::http("POST", &url, &[], Vec::new()).await;
        assert_eq!(resp.status, status, "{action} {model}: {}", resp.text());
        // Read from the file, no waiting: the entry was synced before the reply.
        let last = entries(&log).pop().unwrap();
        assert_eq!(last["kind"], "admin");
        assert_eq!(last["action"], action, "{last}");
        assert_eq!(last["model"], model);
        // No token: anonymous, known by the peer's address.
        let caller = last["caller"].as_str().unwrap();
        assert!(caller.starts_with("anonymous@127.0.0.1:"), "{last}");
        assert!(
            last["outcome"].as_str().unwrap().starts_with(outcome),
            "{last}"
        );
    }
    let resp = common::http(
        "POST",
        &format!("{base}/v2/models/digits_mlp/infer"),
        &[],
        infer_body(0.25),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    server.shutdown().await;

    let v = verify_log(&log, &opts(&key)).unwrap();
    let all = entries(&log);
    assert_eq!(v.entries, all.len() as u64);
    assert_eq!(all.first().unwrap()["action"], "server_start");
    assert_eq!(all.last().unwrap()["action"], "server_stop");
    let inference = all.iter().find(|e| e["kind"] == "inference").unwrap();
    let sent = Tensor::new(
        DataType::F32,
        vec![1, 64],
        bytes::Bytes::from(0.25f32.to_le_bytes().repeat(64)),
    )
    .unwrap();
    let want = lrai_audit::record::digest_tensors(&mut [("input".into(), sent)]);
    assert_eq!(inference["inputs_sha256"], want.as_str());
    assert_eq!(inference["version"], "2");
    assert_eq!(inference["status"], "ok");
    assert!(!fs_err::read_to_string(&log).unwrap().contains("0.25"));
}

/// Starts the built binary on free ports; returns it and its HTTP address.
fn spawn_lrai(repo: &Path, log: &Path, key: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args(["serve", "--backend", "tract", "--address", "127.0.0.1"])
        .args([
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ])
        .arg("--model-repository")
        .arg(repo)
        .arg("--audit-log")
        .arg(log)
        .arg("--audit-key")
        .arg(key)
        .arg("--audit-inference")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening http=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .unwrap();
    (child, addr)
}

#[tokio::test]
async fn sigterm_on_the_binary_loses_no_answered_request() {
    let repo = tempfile::tempdir().unwrap();
    common::copy_example(repo.path(), "digits_mlp", "digits_mlp", None);
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path());
    let log = dir.path().join("audit.log");
    let (mut child, addr) = spawn_lrai(repo.path(), &log, &key);
    let url = format!("http://{addr}/v2/models/digits_mlp/infer");
    for _ in 0..600 {
        let ready = format!("http://{addr}/v2/models/digits_mlp/ready");
        if common::get(&ready).await.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..8u8 {
        let (url, ok) = (url.clone(), std::sync::Arc::clone(&ok));
        clients.push(tokio::spawn(async move {
            for i in 0..100u8 {
                let x = f32::from(c) + f32::from(i) / 100.0;
                let sent = post_status(&url, infer_body(x)).await;
                if sent == Some(200) {
                    ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                } else {
                    return;
                }
            }
        }));
    }
    // SIGTERM while the clients are still sending (bounded: 60 s).
    for _ in 0..12_000 {
        let all_done = clients.iter().all(tokio::task::JoinHandle::is_finished);
        if ok.load(std::sync::atomic::Ordering::SeqCst) >= 200 || all_done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    for c in clients {
        c.await.unwrap();
    }
    assert!(child.wait().unwrap().success());
    let answered = ok.load(std::sync::atomic::Ordering::SeqCst);
    verify_log(&log, &opts(&key)).unwrap();
    let recorded = entries(&log)
        .iter()
        .filter(|e| e["kind"] == "inference" && e["status"] == "ok")
        .count() as u64;
    println!("answered {answered}, recorded {recorded}");
    assert!(
        recorded >= answered,
        "{answered} answered, {recorded} recorded"
    );
    assert!(answered >= 200, "{answered}");
}

/// The status of a POST, or `None` when the connection fails (the server has stopped).
async fn post_status(url: &str, body: Vec<u8>) -> Option<u16> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::post(url)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?;
    Some(status)
}
