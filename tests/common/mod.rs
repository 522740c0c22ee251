//! Shared setup for whole-server tests: a temporary Triton-layout repository built from
//! the committed example models, and `lrai::serve` on loopback port 0.
#![allow(clippy::unwrap_used, clippy::print_stderr, dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lrai::RunningServer;
use lrai::config::ServeConfig;
use lrai_backend::testing::FakeBackend;

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/models")
}

/// Copies an example model (all of its files) under another name.
pub fn copy_example(repo: &Path, from: &str, to: &str, config: Option<&str>) {
    let dst = repo.join(to).join("1");
    fs_err::create_dir_all(&dst).unwrap();
    fs_err::copy(
        examples().join(from).join("1/model.onnx"),
        dst.join("model.onnx"),
    )
    .unwrap();
    let text = match config {
        Some(c) => c.to_string(),
        None => fs_err::read_to_string(examples().join(from).join("config.pbtxt"))
            .unwrap()
            .replace(&format!("name: \"{from}\""), &format!("name: \"{to}\"")),
    };
    fs_err::write(repo.join(to).join("config.pbtxt"), text).unwrap();
    // Files beside config.pbtxt (label files) come along.
    for entry in fs_err::read_dir(examples().join(from)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name() != Some("config.pbtxt".as_ref()) {
            fs_err::copy(&path, repo.join(to).join(path.file_name().unwrap())).unwrap();
        }
    }
}

pub const FAKE_CONFIG: &str = r#"
max_batch_size: 8
parameters { key: "lrai.backend" value: { string_value: "fake" } }
dynamic_batching { }
"#;

/// A repository with digits_mlp, a fake model (panics on x = -1), and a broken model.
pub fn standard_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_example(dir.path(), "digits_mlp", "digits_mlp", None);
    copy_example(dir.path(), "digits_mlp", "fake", Some(FAKE_CONFIG));
    fs_err::create_dir_all(dir.path().join("broken/1")).unwrap();
    fs_err::write(
        dir.path().join("broken/1/model.onnx"),
        b"\x08\x07garbage that is not onnx",
    )
    .unwrap();
    dir
}

pub async fn start(repo: &Path, tweak: impl FnOnce(&mut ServeConfig)) -> RunningServer {
    let mut config = ServeConfig::for_tests(repo);
    config
        .extra_backends
        .push(("fake".into(), Arc::new(FakeBackend::default())));
    tweak(&mut config);
    let server = lrai::serve(config).await.unwrap();
    server.wait_loaded().await;
    server
}

/// A response from [`http`].
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request with hyper's client (a real client over a real socket).
pub async fn http(method: &str, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Resp {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = client
        .request(
            req.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Resp {
    http("GET", url, &[], Vec::new()).await
}

/// The server with `kind` as its only backend (no fake backend); `None`, said loudly,
/// when ONNX Runtime is asked for and not found, unless `LRAI_REQUIRE_ORT` is set (CI and
/// `scripts/test.sh` set it, so there the case fails instead).
pub async fn start_on(
    repo: &Path,
    kind: lrai_backend::BackendKind,
    tweak: impl FnOnce(&mut ServeConfig),
) -> Option<RunningServer> {
    let mut config = ServeConfig::for_tests(repo);
    config.backend.backend = lrai_backend::BackendChoice::Only(kind);
    config.backend.ort_lib = std::env::var_os("LRAI_ORT_LIB").map(PathBuf::from);
    tweak(&mut config);
    match lrai::serve(config).await {
        Ok(s) => {
            s.wait_loaded().await;
            Some(s)
        }
        Err(e) if kind == lrai_backend::BackendKind::OnnxRuntime => {
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
