//! Shared setup for the tests of the built `lrai` binary: fixture paths, running the
//! binary, and the assertions every command's failure must meet.
#![allow(clippy::unwrap_used, clippy::print_stderr, dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn model(name: &str) -> PathBuf {
    root()
        .join("examples/models")
        .join(name)
        .join("1/model.onnx")
}

pub fn refs(name: &str, case: &str) -> PathBuf {
    root().join("tests/fixtures/refs").join(name).join(case)
}

/// Runs `lrai` with ONNX Runtime located the way a user would (LRAI_ORT_LIB or python3).
pub fn lrai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args(args)
        .env("LRAI_LOG", "warn")
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts failure with a message containing `needle`, and no panic.
pub fn assert_fails_with(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

pub fn ort_available() -> bool {
    let out = lrai(&["inspect", model("digits_mlp").to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ok = v["backends"]["onnxruntime"]["loads"].as_bool().unwrap();
    if !ok {
        assert!(
            std::env::var_os("LRAI_REQUIRE_ORT").is_none(),
            "LRAI_REQUIRE_ORT set but: {}",
            v["backends"]["onnxruntime"]
        );
        eprintln!(
            "skipped ONNX Runtime CLI checks: {}",
            v["backends"]["onnxruntime"]["error"]
        );
    }
    ok
}

pub fn backends() -> Vec<&'static str> {
    if ort_available() {
        vec!["tract", "onnxruntime"]
    } else {
        vec!["tract"]
    }
}

pub fn write_npy(dir: &Path, name: &str, t: &lrai_core::Tensor) -> String {
    let p = dir.join(name);
    lrai_core::npy::write_npy(&p, t).unwrap();
    p.to_str().unwrap().to_string()
}
