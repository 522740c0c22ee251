//! `lrai quantize` as a user runs it: the model and report it writes, the exit code and
//! message when the budget cannot be met (and that nothing is written then), and clear
//! errors for bad input.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model(name: &str) -> String {
    root()
        .join("examples/models")
        .join(name)
        .join("1/model.onnx")
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
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn quantize_writes_a_model_and_a_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlp.int8.onnx");
    let report = dir.path().join("report.json");
    let o = lrai(&[
        "quantize",
        &model("digits_mlp"),
        "-o",
        out.to_str().unwrap(),
        "--calibration",
        &fixture("digits_calib.npz"),
        "--eval",
        &fixture("digits_test.npz"),
        "--report",
        report.to_str().unwrap(),
        "--latency-runs",
        "3",
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "stderr: {stderr}");
    assert!(stdout.contains("top1_accuracy"), "{stdout}");
    assert!(stdout.contains("layers: 3 of 3 quantized"), "{stdout}");
    assert!(
        stderr.contains("quantize: calibration (minmax)"),
        "progress on stderr: {stderr}"
    );
    assert!(out.is_file());
    let r: serde_json::Value = serde_json::from_slice(&fs_err::read(&report).unwrap()).unwrap();
    assert_eq!(r["budget_met"], true);
    assert_eq!(r["mode"], "static");
    assert!(r["size"]["ratio"].as_f64().unwrap() > 2.0);
    assert_eq!(r["layers"].as_array().unwrap().len(), 3);
    // Latency on every backend that could start (tract always).
    let lat = r["latency"].as_array().unwrap();
    assert!(
        lat.iter()
            .any(|l| l["backend"] == "tract" && l["after_ms"].is_number()),
        "{lat:?}"
    );
    // The written model runs.
    let run = lrai(&[
        "run",
        out.to_str().unwrap(),
        "--random",
        "--backend",
        "tract",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
}

#[test]
fn unmet_budget_exits_non_zero_and_writes_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.onnx");
    let report = dir.path().join("report.json");
    let o = lrai(&[
        "quantize",
        &model("digits_cnn"),
        "-o",
        out.to_str().unwrap(),
        "--calibration",
        &fixture("digits_calib.npz"),
        "--eval",
        &fixture("digits_test.npz"),
        "--metric",
        "cosine",
        "--max-accuracy-drop",
        "0",
        "--report",
        report.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("accuracy budget not met"), "{err}");
    assert!(err.contains("kept up to 2 of 3 layers in float"), "{err}");
    assert!(err.contains("nothing written"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists());
    let r: serde_json::Value = serde_json::from_slice(&fs_err::read(&report).unwrap()).unwrap();
    assert_eq!(r["budget_met"], false);
}

#[test]
fn quantize_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.onnx");
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "quantize",
                &model("digits_mlp_int8"),
                "-o",
                o,
                "--mode",
                "dynamic",
            ],
            "is already quantized",
        ),
        (
            &["quantize", &model("digits_mlp"), "-o", o],
            "static mode needs calibration data",
        ),
        (
            &[
                "quantize",
                &model("digits_cnn"),
                "-o",
                o,
                "--calibration",
                &fixture("digits_test.npz"),
                "--calibration-method",
                "kl",
            ],
            "invalid value 'kl'",
        ),
        (
            &[
                "quantize",
                "/nonexistent.onnx",
                "-o",
                o,
                "--mode",
                "dynamic",
            ],
            "/nonexistent.onnx",
        ),
    ];
    for (args, needle) in cases {
        let r = lrai(args);
        let err = text(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!out.exists());
}
