//! Shared setup for the model lifecycle tests: a repository with model `plus` whose
//! versions answer y = x + k (k = 1 or 2, `tests/fixtures/lifecycle/plus_k.onnx`), and
//! clients that send requests while versions change and check each answer against the
//! version that gave it.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;

use crate::common;

pub const WIDTH: usize = 16;

pub fn fixture(k: u64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/lifecycle/plus_{k}.onnx"))
}

/// config.pbtxt of `plus` with a version policy.
pub fn config(policy: &str, max_batch: u32) -> String {
    format!(
        r#"name: "plus"
max_batch_size: {max_batch}
version_policy: {policy}
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {WIDTH} ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {WIDTH} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 200 }}
"#
    )
}

/// Writes version `v` of `plus` answering x + k. The version directory is built under a
/// temporary name and renamed, so a poller never sees half a version.
pub fn write_version(repo: &Path, v: u64, k: u64) {
    let staging = repo.join("plus").join(format!("staging-{v}"));
    fs_err::create_dir_all(&staging).unwrap();
    fs_err::copy(fixture(k), staging.join("model.onnx")).unwrap();
    fs_err::rename(&staging, repo.join("plus").join(v.to_string())).unwrap();
}

/// Writes a version whose model file is not ONNX.
pub fn write_broken_version(repo: &Path, v: u64) {
    let staging = repo.join("plus").join(format!("staging-{v}"));
    fs_err::create_dir_all(&staging).unwrap();
    fs_err::write(staging.join("model.onnx"), b"\x08\x07not onnx").unwrap();
    fs_err::rename(&staging, repo.join("plus").join(v.to_string())).unwrap();
}

/// A repository with `plus` version 1 (x + 1) under `policy`.
pub fn repo(policy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(dir.path().join("plus")).unwrap();
    fs_err::write(dir.path().join("plus/config.pbtxt"), config(policy, 8)).unwrap();
    write_version(dir.path(), 1, 1);
    dir
}

pub const LATEST_1: &str = "{ latest { num_versions: 1 } }";

/// The version each `plus` version answers with: the k of x + k (written by the test).
#[derive(Debug, Default)]
pub struct Expect {
    /// k per version; index = version.
    pub k: std::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
}

impl Expect {
    pub fn set(&self, version: u64, k: u64) {
        self.k.lock().unwrap().insert(version, k);
    }
    fn of(&self, version: u64) -> Option<u64> {
        self.k.lock().unwrap().get(&version).copied()
    }
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Answers per version (index 0..4).
    pub by_version: [AtomicU64; 4],
    pub first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(why);
    }
    fn answered(&self, version: u64) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = usize::try_from(version)
            .ok()
            .and_then(|v| self.by_version.get(v))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn count(&self, version: usize) -> u64 {
        self.by_version[version].load(Ordering::Relaxed)
    }
    pub fn assert_clean(&self) {
        let failed = self.failed.load(Ordering::Relaxed);
        assert_eq!(
            failed,
            0,
            "{failed} requests failed or answered wrongly; first: {:?}",
            self.first_error.lock().unwrap()
        );
        assert!(
            self.ok.load(Ordering::Relaxed) > 0,
            "no request was answered"
        );
    }
}

fn input(seed: u64) -> Vec<f32> {
    // Small integers: x + k is exact in FP32.
    (0..WIDTH)
        .map(|i| f32::from(u16::try_from((seed * 7 + i as u64) % 1000).unwrap()))
        .collect()
}

/// Checks one answer: y == x + k of the version that answered.
fn check(expect: &Expect, tally: &Tally, x: &[f32], version: u64, y: &[f64]) {
    let Some(k) = expect.of(version) else {
        tally.fail(format!("answered by unexpected version {version}"));
        return;
    };
    let k = f64::from(u16::try_from(k).unwrap());
    if y.len() != x.len()
        || x.iter()
            .zip(y)
            .any(|(a, b)| (f64::from(*a) + k - b).abs() > 0.0)
    {
        tally.fail(format!("version {version} answered {y:?} for {x:?}"));
        return;
    }
    tally.answered(version);
}

/// One HTTP request (JSON) to `plus` with no version.
async fn http_once(base: &str, seed: u64, expect: &Expect, tally: &Tally) {
    let x = input(seed);
    let body = serde_json::json!({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": x}]
    });
    let r = common::http(
        "POST",
        &format!("{base}/v2/models/plus/infer"),
        &[("content-type", "application/json".into())],
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    if r.status != 200 {
        tally.fail(format!("HTTP {}: {}", r.status, r.text()));
        return;
    }
    let j = r.json();
    let version: u64 = j["model_version"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let y: Vec<f64> = j["outputs"][0]["data"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
        .unwrap_or_default();
    check(expect, tally, &x, version, &y);
}

/// One gRPC request (raw tensors) to `plus` with no version.
async fn grpc_once(
    c: &mut GrpcInferenceServiceClient<tonic::transport::Channel>,
    seed: u64,
    expect: &Expect,
    tally: &Tally,
) {
    let x = input(seed);
    let req = pb::ModelInferRequest {
        model_name: "plus".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, WIDTH as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![
            x.iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        ],
        ..Default::default()
    };
    match c.model_infer(req).await {
        Ok(r) => {
            let r = r.into_inner();
            let version: u64 = r.model_version.parse().unwrap_or(0);
            let y: Vec<f64> = r
                .raw_output_contents
                .first()
                .map(|b| {
                    b.chunks_exact(4)
                        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                        .collect()
                })
                .unwrap_or_default();
            check(expect, tally, &x, version, &y);
        }
        Err(s) => tally.fail(format!("gRPC {:?}: {}", s.code(), s.message())),
    }
}

/// Clients sending unversioned requests (half HTTP, half gRPC) until `stop`, each at
/// most `max_each` requests: a bounded number in flight at any time.
#[derive(Debug)]
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub tally: Arc<Tally>,
    pub expect: Arc<Expect>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(s: &lrai::RunningServer, clients: usize, expect: Arc<Expect>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let base = format!("http://{}", s.http_addr);
        let grpc = format!("http://{}", s.grpc_addr);
        let max_each = 20_000u64;
        let tasks = (0..clients)
            .map(|i| {
                let (stop, tally, expect) = (stop.clone(), tally.clone(), expect.clone());
                let (base, grpc) = (base.clone(), grpc.clone());
                tokio::spawn(async move {
                    let mut c = GrpcInferenceServiceClient::connect(grpc).await.unwrap();
                    for n in 0..max_each {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let seed = n * 31 + i as u64;
                        if i % 2 == 0 {
                            http_once(&base, seed, &expect, &tally).await;
                        } else {
                            grpc_once(&mut c, seed, &expect, &tally).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            expect,
            tasks,
        }
    }

    /// Waits until `n` more requests were answered (bounded by 60 s).
    pub async fn wait_answers(&self, n: u64) {
        let from =
            self.tally.ok.load(Ordering::Relaxed) + self.tally.failed.load(Ordering::Relaxed);
        wait_for("clients to get answers", || {
            self.tally.ok.load(Ordering::Relaxed) + self.tally.failed.load(Ordering::Relaxed)
                >= from + n
        })
        .await;
    }

    pub async fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.tally
    }
}

/// Waits until `cond` holds, checking every 20 ms, failing after 60 s.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `{}` to a repository API path; returns the status and the JSON body.
pub async fn repo_post(s: &lrai::RunningServer, path: &str) -> (u16, serde_json::Value) {
    let r = common::http(
        "POST",
        &format!("http://{}{path}", s.http_addr),
        &[("content-type", "application/json".into())],
        b"{}".to_vec(),
    )
    .await;
    (r.status, r.json())
}

/// The index rows of `plus`: (version, state, reason).
pub async fn plus_index(s: &lrai::RunningServer) -> Vec<(String, String, String)> {
    let (_, index) = repo_post(s, "/v2/repository/index").await;
    index
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "plus")
        .map(|m| {
            (
                m["version"].as_str().unwrap_or("").to_string(),
                m["state"].as_str().unwrap_or("").to_string(),
                m["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub async fn start(repo: &Path, mode: &str) -> lrai::RunningServer {
    common::start(repo, |c| {
        c.model_control_mode = mode.into();
        c.repository_poll_secs = 1;
    })
    .await
}
