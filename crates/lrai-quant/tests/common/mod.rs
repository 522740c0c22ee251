//! Shared helpers for the quantizer tests: fixtures, backends, and the `onnx` checker.
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use lrai_backend::{
    Backend, BackendChoice, BackendConfig, BackendKind, ModelSource, NamedTensors, OrtCandidate,
    SessionOptions, create_kind,
};
use lrai_quant::{Engines, QuantizeConfig};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn model(name: &str) -> PathBuf {
    root()
        .join("examples/models")
        .join(name)
        .join("1/model.onnx")
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/quant").join(name)
}

/// ONNX Runtime when it can be found (LRAI_ORT_LIB, or the workspace venv); a test run
/// with LRAI_REQUIRE_ORT set fails instead of skipping.
pub fn ort() -> Option<Arc<dyn Backend>> {
    let mut ort_candidates = Vec::new();
    if let Some(p) = std::env::var_os("LRAI_ORT_LIB") {
        ort_candidates.push(OrtCandidate {
            origin: "LRAI_ORT_LIB".into(),
            path: PathBuf::from(p),
        });
    }
    let venv = root().join(".venv/bin/python");
    let config = BackendConfig {
        choice: BackendChoice::Only(BackendKind::OnnxRuntime),
        ort_candidates,
        python: Some(if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }),
    };
    match create_kind(BackendKind::OnnxRuntime, &config) {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                std::env::var_os("LRAI_REQUIRE_ORT").is_none(),
                "LRAI_REQUIRE_ORT is set but ONNX Runtime is unavailable: {e}"
            );
            eprintln!("notice: ONNX Runtime checks skipped: {e}");
            None
        }
    }
}

pub fn tract() -> Arc<dyn Backend> {
    create_kind(BackendKind::Tract, &BackendConfig::default()).unwrap()
}

pub fn options() -> SessionOptions {
    SessionOptions {
        intra_op_threads: Some(1),
        ..SessionOptions::default()
    }
}

/// ONNX Runtime as the primary backend when present (tract otherwise); no timing.
pub fn engines() -> Engines {
    let ort = ort();
    Engines {
        primary: ort.clone().unwrap_or_else(tract),
        timing: Vec::new(),
        options: options(),
    }
}

/// A config for tests: no timing, small batches.
pub fn config() -> QuantizeConfig {
    QuantizeConfig {
        latency_batches: Vec::new(),
        batch_size: 64,
        ..QuantizeConfig::default()
    }
}

pub fn quiet(_: &str) {}

/// Runs the `onnx` checker (full check) from the workspace venv on a saved model; prints
/// a notice and returns when that Python or its `onnx` package is absent.
pub fn check_onnx(path: &Path) {
    let python = root().join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "notice: {} absent, onnx checker skipped for {}",
            python.display(),
            path.display()
        );
        return;
    }
    let has_onnx = Command::new(&python)
        .args(["-c", "import onnx"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_onnx {
        eprintln!("notice: python package onnx absent, onnx checker skipped");
        return;
    }
    let out = Command::new(&python)
        .args([
            "-c",
            "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnx checker rejected {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Loads a saved model on a backend and runs it.
pub fn run_on(backend: &Arc<dyn Backend>, path: &Path, inputs: &NamedTensors) -> NamedTensors {
    let source = ModelSource::from_path(path).unwrap();
    let session = backend
        .load(&source, &options())
        .unwrap_or_else(|e| panic!("{} cannot load {}: {e}", backend.kind(), path.display()));
    session.run(inputs).unwrap()
}
