//! The built `lrai` binary on the acceptance rules of issue 14 (`tests/fixtures/backend/`,
//! made by `scripts/make-backend-fixtures.py`): what ONNX Runtime accepts runs on every
//! backend (`?` dims, a shared dim that disagrees, with a warning, a scalar sent as `[1]`),
//! wrong dims are still refused with their message, a panic inside tract is a clear error
//! and never a crash, and `auto` falls back to the backend that loads the model.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod cli_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cli_common::*;

fn backend_case(case: &str) -> PathBuf {
    root().join("tests/fixtures/backend").join(case)
}

/// A fixture model copied under a name of its own (the errors name the model by its file).
fn fixture_as(dir: &Path, case: &str, file: &str) -> String {
    let dst = dir.join(file);
    fs_err::copy(backend_case(case).join("model.onnx"), &dst).unwrap();
    dst.to_str().unwrap().to_string()
}

/// `lrai run` on a fixture case's input set, outputs compared with its references (floats
/// within 1e-4 + 1e-3·|ref|, other datatypes exactly); returns stderr.
fn run_matches(model: &str, backend: &str, case: &str, set: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let inputs = backend_case(case).join(set).join("inputs.npz");
    let out = lrai(&[
        "run",
        model,
        "--backend",
        backend,
        "--input",
        inputs.to_str().unwrap(),
        "--output-dir",
        dir.path().to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{backend} {case}/{set}: {err}");
    for (name, want) in
        lrai_core::npy::read_npz(&backend_case(case).join(set).join("outputs.npz")).unwrap()
    {
        let got = lrai_core::npy::read_npy(&dir.path().join(format!("{name}.npy"))).unwrap();
        assert_eq!(got.dtype(), want.dtype(), "{backend} {case}/{set} {name}");
        assert_eq!(got.shape(), want.shape(), "{backend} {case}/{set} {name}");
        if want.dtype().is_float() {
            let (a, b) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
            let bad = lrai_core::stats::first_mismatch(&a, &b, 1e-4, 1e-3);
            assert_eq!(bad, None, "{backend} {case}/{set} {name}");
        } else {
            assert_eq!(got.data(), want.data(), "{backend} {case}/{set} {name}");
        }
    }
    err
}

/// No Rust panic message and no backtrace, even with RUST_BACKTRACE set.
fn assert_no_panic_output(out: &Output) {
    let err = text(&out.stderr);
    for needle in ["panicked at", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!err.contains(needle), "{needle:?} on stderr: {err}");
    }
    assert_ne!(out.status.code(), Some(101), "{err}");
}

#[test]
fn run_accepts_what_onnx_runtime_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let paddle = fixture_as(dir.path(), "paddle_free_dims", "paddle_free_dims.onnx");
    let shared = fixture_as(dir.path(), "shared_symbol_mismatch", "shared_n.onnx");
    let scalar = fixture_as(dir.path(), "scalar_input", "scalar_input.onnx");
    for backend in backends() {
        // `?` dims are independent: [1,3,48,192] and [2,3,16,16].
        for set in ["a", "b"] {
            let err = run_matches(&paddle, backend, "paddle_free_dims", set);
            assert!(!err.contains("warning"), "{backend}: {err}");
        }
        // x [2,4] and y [3,2] share `n`: it runs, as ONNX Runtime does, and says so.
        let err = run_matches(&shared, backend, "shared_symbol_mismatch", "a");
        assert!(
            err.contains("warning: input 'y' of model 'shared_n'")
                && err.contains("dimension 0 ('n') must equal 2")
                && err.contains("running it anyway, as ONNX Runtime does"),
            "{backend}: {err}"
        );
        // A declared scalar takes a one-element [1] tensor, and a scalar.
        for set in ["one", "scalar"] {
            let err = run_matches(&scalar, backend, "scalar_input", set);
            assert!(!err.contains("warning"), "{backend}: {err}");
        }
    }
}

#[test]
fn run_still_refuses_dims_that_are_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let paddle = fixture_as(dir.path(), "paddle_free_dims", "paddle_free_dims.onnx");
    let channels = write_npy(
        dir.path(),
        "channels.npy",
        &lrai_core::Tensor::zeros(lrai_core::DataType::F32, vec![1, 4, 8, 8]).unwrap(),
    );
    let rank = write_npy(
        dir.path(),
        "rank.npy",
        &lrai_core::Tensor::zeros(lrai_core::DataType::F32, vec![1, 3, 8]).unwrap(),
    );
    for backend in backends() {
        let run = |file: &str| {
            lrai(&[
                "run",
                &paddle,
                "--backend",
                backend,
                "--input",
                &format!("x={file}"),
            ])
        };
        assert_fails_with(
            &run(&channels),
            "error: input 'x' of model 'paddle_free_dims': expected shape [?,3,?,?], got [1,4,8,8]: dimension 1 must be 3, got 4",
        );
        assert_fails_with(
            &run(&rank),
            "error: input 'x' of model 'paddle_free_dims': expected shape [?,3,?,?], got [1,3,8]: expected 4 dimensions, got 3",
        );
    }
}

#[test]
fn a_panic_inside_tract_is_a_clear_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let at_load = fixture_as(dir.path(), "tract_panic_load", "gather_const_oob.onnx");
    let at_run = fixture_as(dir.path(), "tract_panic_run", "conv_gather.onnx");
    let with_backtrace = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lrai"))
            .args(args)
            .env("LRAI_LOG", "warn")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap()
    };
    let ort = ort_available();

    // Panics while loading: inspect reports it and carries on; run fails with exit 1.
    let out = with_backtrace(&["inspect", &at_load, "--json"]);
    assert_no_panic_output(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backends"]["tract"]["loads"], false);
    let why = v["backends"]["tract"]["error"].as_str().unwrap();
    assert!(
        why.contains("tract failed to load model 'gather_const_oob'")
            && why.contains("tract hit a defect while planning the model and LRAI contained it: index out of bounds"),
        "{why}"
    );
    let auto = if ort {
        serde_json::json!("onnxruntime")
    } else {
        serde_json::Value::Null
    };
    assert_eq!(v["auto"], auto, "{v}");
    let out = with_backtrace(&["inspect", &at_load]);
    assert_no_panic_output(&out);
    assert!(
        text(&out.stdout)
            .contains("tract        cannot load: tract failed to load model 'gather_const_oob'")
    );
    let inputs = backend_case("tract_panic_load").join("a/inputs.npz");
    let out = with_backtrace(&[
        "run",
        &at_load,
        "--backend",
        "tract",
        "-i",
        inputs.to_str().unwrap(),
    ]);
    assert_no_panic_output(&out);
    assert_fails_with(
        &out,
        "error: tract failed to load model 'gather_const_oob': tract hit a defect while planning",
    );

    // Panics while running at n = 1; the same model runs at n = 300.
    let out = with_backtrace(&["inspect", &at_run, "--json"]);
    assert_no_panic_output(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backends"]["tract"]["loads"], true, "{v}");
    let n1 = backend_case("tract_panic_run").join("n1/inputs.npz");
    let out = with_backtrace(&[
        "run",
        &at_run,
        "--backend",
        "tract",
        "-i",
        n1.to_str().unwrap(),
    ]);
    assert_no_panic_output(&out);
    assert_fails_with(&out, "model 'conv_gather'");
    assert!(
        text(&out.stderr).contains("tract hit a defect while"),
        "{}",
        text(&out.stderr)
    );
    run_matches(&at_run, "tract", "tract_panic_run", "n300");
}

#[test]
fn auto_falls_back_to_the_backend_that_loads_the_model() {
    let dir = tempfile::tempdir().unwrap();
    // ONNX Runtime has no INT16 Relu kernel; tract runs the model exactly.
    let relu = fixture_as(dir.path(), "ort_no_kernel", "relu_int16.onnx");
    let out = lrai(&["inspect", &relu, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auto"], "tract", "{v}");
    assert_eq!(v["backends"]["tract"]["loads"], true, "{v}");
    if ort_available() {
        let why = v["backends"]["onnxruntime"]["error"].as_str().unwrap();
        assert!(
            why.contains("unsupported operator 'Relu' at node 'relu_i16'"),
            "{why}"
        );
        let err = run_matches(&relu, "auto", "ort_no_kernel", "a");
        assert!(
            err.contains("note: auto: onnxruntime cannot load model 'relu_int16'")
                && err.contains("running it on tract"),
            "{err}"
        );
        assert_fails_with(
            &lrai(&["run", &relu, "--backend", "onnxruntime", "--random"]),
            "model 'relu_int16' cannot run on onnxruntime: unsupported operator 'Relu' at node 'relu_i16'",
        );

        // The other way round there is nothing to note: ONNX Runtime is auto's first
        // choice, and it runs `Det`, which tract lacks.
        let det = root().join("tests/fixtures/det.onnx");
        let out = lrai(&[
            "run",
            det.to_str().unwrap(),
            "--backend",
            "auto",
            "--random",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("on onnxruntime"),
            "{}",
            text(&out.stdout)
        );
        assert!(
            !text(&out.stderr).contains("note:"),
            "{}",
            text(&out.stderr)
        );
        let out = lrai(&["inspect", det.to_str().unwrap(), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["auto"], "onnxruntime", "{v}");
    } else {
        // Without ONNX Runtime, auto is tract and has nothing to fall back from.
        run_matches(&relu, "auto", "ort_no_kernel", "a");
    }
}
