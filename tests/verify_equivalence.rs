//! `lrai verify --equivalence` as a user runs it: digits_mlp against an int8 QDQ version
//! made here by `lrai quantize` (proof plus sampling) and a dynamic one (sampling only),
//! the first word and exit code of each verdict, the certificate's fields, and clear
//! errors for a missing region.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> String {
    root()
        .join("examples/models/digits_mlp/1/model.onnx")
        .display()
        .to_string()
}

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures/quant")
        .join(name)
        .display()
        .to_string()
}

fn lrai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args(args)
        .env("LRAI_LOG", "warn")
        .env("LRAI_BACKEND", "tract")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Quantizes digits_mlp into `dir` (static QDQ or dynamic) and returns the path.
fn quantize(dir: &Path, mode: &str) -> String {
    let out = dir.join(format!("mlp.{mode}.onnx"));
    let o = lrai(&[
        "quantize",
        &model(),
        "-o",
        out.to_str().unwrap(),
        "--mode",
        mode,
        "--calibration",
        &fixture("digits_calib.npz"),
        "--latency-batch",
        "0",
    ]);
    assert!(o.status.success(), "quantize failed: {}", text(&o.stderr));
    out.display().to_string()
}

fn first_word(o: &Output) -> String {
    text(&o.stdout)
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn static_int8_gets_a_proven_bound_and_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantize(dir.path(), "static");
    let cert = dir.path().join("cert.json");
    // A generous ε over small balls around the test inputs (the proven bound is about 2,
    // the logits reach ±40): provable in a few seconds.
    let o = lrai(&[
        "verify",
        "--equivalence",
        &model(),
        &q,
        "--around",
        &fixture("digits_test.npz"),
        "--epsilon-in",
        "0.005",
        "--input-box",
        "0:1",
        "--epsilon",
        "3",
        "--samples",
        "500",
        "--timeout",
        "20",
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert_eq!(first_word(&o), "holds", "{out}");
    assert!(out.contains("(proven) >= true max >="), "{out}");
    let doc: serde_json::Value = serde_json::from_slice(&fs_err::read(&cert).unwrap()).unwrap();
    assert_eq!(doc["kind"], "lrai-equivalence");
    assert_eq!(doc["result"], "holds");
    assert_eq!(doc["argument"], "proof");
    assert_eq!(doc["epsilon_met"], true);
    assert_eq!(doc["proof"]["status"], "proven");
    assert_eq!(doc["original"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(doc["optimized"]["path"], q.as_str());
    assert_eq!(doc["region"]["kind"], "around");
    assert_eq!(doc["region"]["array"], "x_flat");
    assert_eq!(doc["sampling"]["random"]["n"], 500);
    assert!(doc["lrai_version"].is_string());
    // proven >= observed: the backend never beats the proof.
    let bound = doc["proof"]["bound"].as_f64().unwrap();
    let seen = doc["sampling"]["random"]["max"].as_f64().unwrap();
    let attacked = doc["sampling"]["attack"]["max"].as_f64().unwrap();
    assert!(
        bound <= 2.0 && bound >= seen.max(attacked) && seen > 0.0,
        "{doc}"
    );
}

#[test]
fn a_tight_epsilon_is_violated_with_the_point() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantize(dir.path(), "static");
    let cert = dir.path().join("cert.json");
    let o = lrai(&[
        "verify",
        "--equivalence",
        &model(),
        &q,
        "--input-box",
        "0:1",
        "--epsilon",
        "0.001",
        "--samples",
        "200",
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(10), "{out}\n{}", text(&o.stderr));
    assert_eq!(first_word(&o), "violated", "{out}");
    assert!(out.contains("\nx = ["), "{out}");
    let doc: serde_json::Value = serde_json::from_slice(&fs_err::read(&cert).unwrap()).unwrap();
    assert_eq!(doc["result"], "violated");
    assert_eq!(doc["epsilon_met"], false);
    assert_eq!(doc["worst"]["x"].as_array().unwrap().len(), 64);
    assert!(doc["worst"]["difference"].as_f64().unwrap().abs() > 0.001);
}

#[test]
fn dynamic_int8_is_sampling_only_never_holds() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantize(dir.path(), "dynamic");
    let cert = dir.path().join("cert.json");
    let o = lrai(&[
        "verify",
        "--equivalence",
        &model(),
        &q,
        "--input-box",
        "0:1",
        "--epsilon",
        "100",
        "--samples",
        "300",
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(20), "{out}\n{}", text(&o.stderr));
    assert_eq!(first_word(&o), "unknown", "{out}");
    assert!(out.contains("sampling only"), "{out}");
    assert!(out.contains("DynamicQuantizeLinear"), "{out}");
    let doc: serde_json::Value = serde_json::from_slice(&fs_err::read(&cert).unwrap()).unwrap();
    assert_eq!(doc["result"], "unknown");
    assert_eq!(doc["argument"], "sampling");
    assert_eq!(doc["epsilon_met"], true);
    assert_eq!(doc["proof"]["status"], "not attempted");
    assert_eq!(doc["sampling"]["random"]["n"], 300);
}

#[test]
fn missing_region_is_a_clear_error() {
    let o = lrai(&["verify", "--equivalence", &model(), &model()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("--input-box LO:HI"), "{err}");
    let o = lrai(&[
        "verify",
        "--equivalence",
        &model(),
        &model(),
        "--input-box",
        "1:0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("LO <= HI"));
}
