//! `lrai verify` as a user runs it: verdict words and exit codes (0 holds, 10 violated,
//! 20 unknown, 1 error), certificates, and `--instances` with `--results`, on the
//! verifier's committed ACAS Xu fixtures and a model with an unsupported operator.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn acas(net: &str) -> PathBuf {
    root().join(format!(
        "crates/lrai-verify/tests/fixtures/acasxu/onnx/ACASXU_run2a_{net}_batch_2000.onnx"
    ))
}

fn prop(n: u32) -> PathBuf {
    root().join(format!(
        "crates/lrai-verify/tests/fixtures/acasxu/vnnlib/prop_{n}.vnnlib"
    ))
}

fn lrai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args(args)
        .env("LRAI_LOG", "warn")
        .env_remove("LRAI_VERIFY_TIMEOUT")
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The first word of the first line, and the exit code.
fn verdict(o: &Output) -> (String, Option<i32>) {
    let out = stdout(o);
    let word = out.split_whitespace().next().unwrap_or("").to_string();
    (word, o.status.code())
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&fs_err::read_to_string(p).unwrap()).unwrap()
}

fn sha256_of(p: &Path) -> String {
    lrai_verify::certificate::sha256_hex(&fs_err::read(p).unwrap())
}

#[test]
fn holds_exits_0_with_a_proof_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.json");
    let (m, p) = (acas("1_1"), prop(1));
    let o = lrai(&[
        "verify",
        s(&m),
        s(&p),
        "--timeout",
        "60",
        "--certificate",
        s(&cert),
    ]);
    assert_eq!(verdict(&o), ("holds".into(), Some(0)), "{}", stderr(&o));
    let c = read_json(&cert);
    assert_eq!(c["kind"], "lrai-verification");
    assert_eq!(c["result"], "holds");
    assert_eq!(c["method"], "input-split");
    assert_eq!(c["model"]["sha256"], sha256_of(&m));
    assert_eq!(c["property"]["sha256"], sha256_of(&p));
    assert_eq!(c["settings"]["timeout_s"], 60.0);
    assert!(c["proof"]["min_slack"].as_f64().unwrap() > 0.0, "{c}");
    assert!(c.get("counterexample").is_none());
}

#[test]
fn violated_exits_10_with_a_counterexample_that_re_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.json");
    let (m, p) = (acas("2_1"), prop(2));
    let o = lrai(&["verify", s(&m), s(&p), "--certificate", s(&cert)]);
    assert_eq!(verdict(&o), ("violated".into(), Some(10)), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("\nx = [") && out.contains("\ny = ["), "{out}");
    let c = read_json(&cert);
    assert_eq!(c["result"], "violated");
    assert_eq!(c["model"]["sha256"], sha256_of(&m));
    assert_eq!(c["property"]["sha256"], sha256_of(&p));
    let x: Vec<f64> = serde_json::from_value(c["counterexample"]["x"].clone()).unwrap();
    let y: Vec<f64> = serde_json::from_value(c["counterexample"]["y"].clone()).unwrap();
    assert_eq!((x.len(), y.len()), (5, 5));
    let property = lrai_verify::vnnlib::load(&p).unwrap();
    let bx = &property.boxes[0];
    for (i, v) in x.iter().enumerate() {
        assert!(
            bx.lower[i] <= *v && *v <= bx.upper[i],
            "x_{i} = {v} outside the box"
        );
    }
    assert!(property.is_unsafe(&y), "y = {y:?} does not violate prop_2");
    // y is what the model gives at x: re-run it through `lrai run`-independent code.
    let proto = lrai_onnx::load_model(&m).unwrap();
    let net = lrai_verify::Network::from_onnx("m", &proto).unwrap();
    let y64 = net.eval(&x);
    for (a, b) in y64.iter().zip(&y) {
        assert!((a - b).abs() < 1e-4, "f64 {y64:?} vs backend {y:?}");
    }
}

#[test]
fn unsupported_operator_is_unknown_exit_20_never_holds() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.vnnlib");
    fs_err::write(
        &p,
        "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n\
         (assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= Y_0 1e30))\n",
    )
    .unwrap();
    let m = root().join("tests/fixtures/custom_op.onnx");
    let cert = dir.path().join("cert.json");
    let o = lrai(&["verify", s(&m), s(&p), "--certificate", s(&cert)]);
    assert_eq!(verdict(&o), ("unknown".into(), Some(20)), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("unsupported operator"),
        "{}",
        stdout(&o)
    );
    let c = read_json(&cert);
    assert_eq!(c["result"], "unknown");
    assert!(c["reason"].as_str().unwrap().contains("NoSuchOp"), "{c}");
}

#[test]
fn timeout_is_unknown_exit_20() {
    // 1_1 prop_1 holds but needs input splitting; a microsecond is not enough.
    let o = lrai(&[
        "verify",
        s(&acas("1_1")),
        s(&prop(1)),
        "--timeout",
        "0.000001",
    ]);
    assert_eq!(verdict(&o), ("unknown".into(), Some(20)), "{}", stderr(&o));
    assert!(stdout(&o).contains("timeout"), "{}", stdout(&o));
}

#[test]
fn errors_exit_1_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.vnnlib");
    fs_err::write(&bad, "(declare-const X_0 Real)\n(assert (<= X_0 1)\n").unwrap();
    let three = dir.path().join("three.vnnlib");
    fs_err::write(
        &three,
        "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const X_2 Real)\
         (declare-const Y_0 Real)\n(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))\
         (assert (<= X_1 1))(assert (>= X_2 0))(assert (<= X_2 1))(assert (>= Y_0 1))",
    )
    .unwrap();
    let m = acas("1_1");
    let p1 = prop(1);
    let cases: Vec<(Vec<&str>, String)> = vec![
        // Malformed property: file, line and column.
        (
            vec!["verify", s(&m), s(&bad)],
            format!("{}:2:1: unclosed", bad.display()),
        ),
        // Property and model disagree.
        (vec!["verify", s(&m), s(&three)], "3 inputs".into()),
        // Missing files name the path.
        (
            vec!["verify", "/nonexistent/m.onnx", s(&p1)],
            "/nonexistent/m.onnx".into(),
        ),
        (
            vec!["verify", s(&m), "/nonexistent/p.vnnlib"],
            "/nonexistent/p.vnnlib".into(),
        ),
        (
            vec!["verify", s(&m)],
            "expected MODEL.onnx PROPERTY.vnnlib".into(),
        ),
        (
            vec!["verify", s(&m), s(&p1), "--timeout", "0"],
            "--timeout".into(),
        ),
    ];
    for (args, needle) in cases {
        let o = lrai(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&needle),
            "{args:?}: stderr lacks {needle:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(stdout(&o).is_empty(), "no verdict on error: {}", stdout(&o));
    }
}

#[test]
fn instances_batch_writes_vnncomp_results() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("instances.csv");
    let unknown_prop = dir.path().join("x1.vnnlib");
    fs_err::write(
        &unknown_prop,
        "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n\
         (assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= Y_0 1))\n",
    )
    .unwrap();
    let custom = root().join("tests/fixtures/custom_op.onnx");
    // Absolute paths (the CSV's directory is only a base for relative ones).
    fs_err::write(
        &csv,
        format!(
            "{},{},60\n{},{},60\n{},{},60\n{},/nonexistent/p.vnnlib,60\n",
            s(&acas("4_5")),
            s(&prop(10)),
            s(&acas("2_1")),
            s(&prop(2)),
            s(&custom),
            s(&unknown_prop),
            s(&acas("2_1")),
        ),
    )
    .unwrap();
    let results = dir.path().join("results.csv");
    let o = lrai(&["verify", "--instances", s(&csv), "--results", s(&results)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let words: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(words, ["holds", "violated", "unknown", "error"]);
    let text = fs_err::read_to_string(&results).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "onnx", "vnnlib", "result", "vnncomp", "time_s", "method", "domains"
        ]
    );
    let got: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[2], r[3])).collect();
    assert_eq!(
        got,
        [
            ("holds", "unsat"),
            ("violated", "sat"),
            ("unknown", "unknown"),
            ("error", "error"),
        ]
    );
    assert_eq!(rows[1][0], s(&acas("4_5")), "the onnx column as written");
    for r in &rows[1..] {
        assert!(r[4].parse::<f64>().unwrap() >= 0.0);
    }
}
