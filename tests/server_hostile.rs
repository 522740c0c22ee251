//! Requests of the classes behind real CVEs in inference servers, each sent over a real
//! socket byte for byte: path traversal in model names (plain, percent-encoded, double
//! encoded, absolute, backslashes), symbolic links and config paths that leave the
//! repository, config override and file upload through the load API (TorchServe's
//! ShellTorch class), declared shapes whose element counts overflow, a gzip bomb and
//! deeply nested JSON. Each must get a 4xx, change nothing, disclose no filesystem path,
//! and leave the server answering.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use common::copy_example;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `base/repo` (the repository) and `base/outside` (a valid model outside it, which no
/// request may reach), with models whose files lead outside.
struct Layout {
    base: tempfile::TempDir,
}

impl Layout {
    fn repo(&self) -> std::path::PathBuf {
        self.base.path().join("repo")
    }

    fn new() -> Layout {
        let base = tempfile::tempdir().unwrap();
        let repo = base.path().join("repo");
        fs_err::create_dir_all(&repo).unwrap();
        copy_example(&repo, "digits_mlp", "digits_mlp", None);
        copy_example(base.path(), "digits_mlp", "outside", None);
        let outside = base.path().join("outside");
        let model = outside.join("1/model.onnx");
        let config = |name: &str, extra: &str| {
            fs_err::read_to_string(repo.join("digits_mlp/config.pbtxt"))
                .unwrap()
                .replace("name: \"digits_mlp\"", &format!("name: \"{name}\""))
                + extra
        };
        // A model directory that is a link out of the repository.
        std::os::unix::fs::symlink(&outside, repo.join("linked_dir")).unwrap();
        // A model file that is a link out.
        fs_err::create_dir_all(repo.join("linked_file/1")).unwrap();
        fs_err::write(
            repo.join("linked_file/config.pbtxt"),
            config("linked_file", ""),
        )
        .unwrap();
        std::os::unix::fs::symlink(&model, repo.join("linked_file/1/model.onnx")).unwrap();
        // default_model_filename climbing out, and absolute.
        for (name, file) in [
            ("dotdot_file", "../../../outside/1/model.onnx".to_string()),
            ("absolute_file", model.display().to_string()),
        ] {
            fs_err::create_dir_all(repo.join(name).join("1")).unwrap();
            let extra = format!("\ndefault_model_filename: \"{file}\"\n");
            fs_err::write(repo.join(name).join("config.pbtxt"), config(name, &extra)).unwrap();
        }
        // A warm-up data file that is a link out.
        copy_example(&repo, "digits_mlp", "linked_warmup", None);
        fs_err::create_dir_all(repo.join("linked_warmup/warmup")).unwrap();
        fs_err::write(outside.join("secret.bin"), vec![0u8; 256]).unwrap();
        std::os::unix::fs::symlink(
            outside.join("secret.bin"),
            repo.join("linked_warmup/warmup/x.bin"),
        )
        .unwrap();
        let warmup = "\nmodel_warmup [ { name: \"w\" batch_size: 1 inputs { key: \"input\" \
                      value: { data_type: TYPE_FP32 dims: [ 64 ] input_data_file: \"x.bin\" } } } ]\n";
        fs_err::write(
            repo.join("linked_warmup/config.pbtxt"),
            config("linked_warmup", warmup),
        )
        .unwrap();
        Layout { base }
    }
}

/// Sends `request` as is and reads the answer until the server closes (requests carry
/// `Connection: close`); returns the status and the body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        s.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "no answer within 30 s to {}", show(request));
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn show(request: &[u8]) -> String {
    String::from_utf8_lossy(&request[..request.len().min(200)]).into_owned()
}

fn request(method: &str, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Asserts a 4xx that discloses no filesystem path, and that the server still answers.
async fn refused(addr: SocketAddr, base: &Path, req: &[u8]) -> String {
    let (status, body) = raw(addr, req).await;
    let what = show(req);
    assert!(
        (400..500).contains(&status),
        "{what}: status {status}, {body}"
    );
    let base = base.canonicalize().unwrap();
    assert!(
        !body.contains(&*base.to_string_lossy()) && !body.contains("/tmp/"),
        "{what}: the answer discloses a path: {body}"
    );
    let (live, _) = raw(addr, &request("GET", "/v2/health/live", "", b"")).await;
    assert_eq!(live, 200, "the server stopped answering after {what}");
    body
}

async fn index(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = raw(addr, &request("POST", "/v2/repository/index", "", b"{}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn entry<'a>(index: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    index
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no '{name}' in {index}"))
}

const TRAVERSALS: [&str; 10] = [
    "..%2Foutside",
    "%2e%2e%2foutside",
    "%2E%2E%2Foutside",
    "%252e%252e%252foutside",
    "..%5Coutside",
    "%2Fetc%2Foutside",
    "..",
    "%2e%2e",
    ".hidden",
    "a%00b",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_in_model_names_is_refused_everywhere() {
    let layout = Layout::new();
    let s = common::start(&layout.repo(), |c| c.model_control_mode = "explicit".into()).await;
    let base = layout.base.path();
    for name in TRAVERSALS {
        for (method, path, body) in [
            ("POST", format!("/v2/repository/models/{name}/load"), "{}"),
            ("POST", format!("/v2/repository/models/{name}/unload"), "{}"),
            (
                "POST",
                format!("/v2/repository/models/{name}/rollback"),
                "{}",
            ),
            (
                "POST",
                format!("/v2/repository/models/{name}/rollout"),
                r#"{"candidate": "1"}"#,
            ),
            ("GET", format!("/v2/models/{name}"), ""),
            ("GET", format!("/v2/models/{name}/config"), ""),
            (
                "POST",
                format!("/v2/models/{name}/infer"),
                r#"{"inputs": []}"#,
            ),
        ] {
            refused(
                s.http_addr,
                base,
                &request(method, &path, "", body.as_bytes()),
            )
            .await;
        }
    }
    // Unencoded dot segments in the request line.
    for path in [
        "/v2/repository/models/../../outside/load",
        "/v2/repository/models/./../outside/load",
        "/v2/models/../../../outside/config",
    ] {
        refused(s.http_addr, base, &request("POST", path, "", b"{}")).await;
    }
    let index = index(s.http_addr).await;
    assert!(
        !index.to_string().contains("\"outside\""),
        "a model outside the repository was reached: {index}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_config_paths_that_leave_the_repository_never_load() {
    let layout = Layout::new();
    let s = common::start(&layout.repo(), |c| c.model_control_mode = "explicit".into()).await;
    let base = layout.base.path();
    let index = index(s.http_addr).await;
    for (name, says) in [
        ("linked_dir", "outside the model repository"),
        ("linked_file", "outside the model repository"),
        (
            "dotdot_file",
            "must be a relative path inside the model's directory",
        ),
        (
            "absolute_file",
            "must be a relative path inside the model's directory",
        ),
        ("linked_warmup", "outside the model repository"),
    ] {
        let e = entry(&index, name);
        assert_eq!(e["state"], "UNAVAILABLE", "{name}: {e}");
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains(says), "{name}: {reason}");
        assert!(
            !reason.contains(&*base.to_string_lossy()),
            "{name} discloses a path: {reason}"
        );
        let path = format!("/v2/repository/models/{name}/load");
        let body = refused(s.http_addr, base, &request("POST", &path, "", b"{}")).await;
        assert!(body.contains(says), "{name}: {body}");
    }
    assert_eq!(entry(&index, "digits_mlp")["state"], "READY");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_api_takes_no_config_override_and_no_uploaded_file() {
    let layout = Layout::new();
    let s = common::start(&layout.repo(), |c| c.model_control_mode = "explicit".into()).await;
    let base = layout.base.path();
    // The content is never looked at: any load parameter is refused by its name.
    let encoded = "CAcSBGxyYWk=";
    let config =
        r#"{"backend": "onnxruntime", "default_model_filename": "../../../outside/1/model.onnx"}"#;
    for body in [
        serde_json::json!({"parameters": {"config": config}}),
        serde_json::json!({"parameters": {"file:1/model.onnx": encoded}}),
        serde_json::json!({"parameters": {"config": config, "file:1/model.onnx": encoded}}),
    ] {
        for name in ["digits_mlp", "uploaded"] {
            let path = format!("/v2/repository/models/{name}/load");
            let body = body.to_string();
            let answer = refused(
                s.http_addr,
                base,
                &request("POST", &path, "", body.as_bytes()),
            )
            .await;
            assert!(
                answer.contains("load parameters") && answer.contains("refused"),
                "{answer}"
            );
        }
    }
    assert!(
        !layout.repo().join("uploaded").exists(),
        "a directory was created by the load API"
    );
    let index = index(s.http_addr).await;
    assert!(!index.to_string().contains("uploaded"), "{index}");
    assert_eq!(entry(&index, "digits_mlp")["state"], "READY");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_shapes_bombs_and_deep_json_are_refused() {
    let layout = Layout::new();
    let s = common::start(&layout.repo(), |_| {}).await;
    let base = layout.base.path();
    let infer = "/v2/models/digits_mlp/infer";
    let json = "Content-Type: application/json\r\n";
    // Declared shapes whose element counts overflow or dwarf the data.
    for shape in [
        "[4611686018427387904, 64]",
        "[4294967296, 4294967296, 4294967296]",
        "[1, 18446744073709551615]",
        "[-1, 64]",
        "[1000000000, 64]",
    ] {
        let body = format!(
            r#"{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": {shape}, "data": [1.0]}}]}}"#
        );
        refused(
            s.http_addr,
            base,
            &request("POST", infer, json, body.as_bytes()),
        )
        .await;
    }
    // The binary extension declaring more bytes than the body holds, or an overflowing size.
    for (size, header_len) in [(u64::MAX, None), (1u64 << 40, None), (256, Some(1 << 30))] {
        let header = format!(
            r#"{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 64], "parameters": {{"binary_data_size": {size}}}}}]}}"#
        );
        let declared = header_len.unwrap_or(header.len());
        let headers = format!("Inference-Header-Content-Length: {declared}\r\n");
        let mut body = header.into_bytes();
        body.extend_from_slice(&[0u8; 256]);
        refused(s.http_addr, base, &request("POST", infer, &headers, &body)).await;
    }
    // A gzip bomb: 256 MB of zeros in ~250 KB, past the 64 MB body limit once inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let headers = format!("{json}Content-Encoding: gzip\r\n");
    let answer = refused(s.http_addr, base, &request("POST", infer, &headers, &bomb)).await;
    assert!(answer.contains("larger than the limit"), "{answer}");
    // Deeply nested JSON, in the body and inside a tensor's data.
    let deep = "[".repeat(100_000);
    refused(
        s.http_addr,
        base,
        &request("POST", infer, json, deep.as_bytes()),
    )
    .await;
    let body = format!(
        r#"{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": {deep}}}]}}"#
    );
    refused(
        s.http_addr,
        base,
        &request("POST", infer, json, body.as_bytes()),
    )
    .await;
    // And the model still answers a good request.
    let good = serde_json::json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": vec![0.5f32; 64]}]});
    let (status, body) = raw(
        s.http_addr,
        &request("POST", infer, json, good.to_string().as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    s.shutdown().await;
}
