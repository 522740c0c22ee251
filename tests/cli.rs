//! The built `lrai` binary on committed fixtures: `inspect` and `run` output, files
//! written by `--output-dir`, exit codes, and a clear error (never a panic) for every
//! kind of bad input.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod cli_common;

use std::process::Command;

use cli_common::*;

#[test]
fn inspect_reports_io_ops_parameters_and_backends() {
    let out = lrai(&["inspect", model("digits_mlp").to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ir_version"], 8);
    assert_eq!(v["opsets"][0]["version"], 17);
    assert_eq!(v["inputs"][0]["name"], "input");
    assert_eq!(v["inputs"][0]["datatype"], "FP32");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["batch", "64"]));
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!(["batch", "10"]));
    assert_eq!(v["op_counts"]["Gemm"], 3);
    assert_eq!(v["op_counts"]["Relu"], 2);
    // 64·64+64 + 64·32+32 + 32·10+10 weights and biases.
    assert_eq!(v["parameter_count"], 6570);
    assert_eq!(v["parameter_bytes"], 6570 * 4);
    assert_eq!(v["backends"]["tract"]["loads"], true);

    let out = lrai(&["inspect", model("digits_mlp").to_str().unwrap()]);
    let s = text(&out.stdout);
    assert!(
        s.contains("input") && s.contains("[batch,64]") && s.contains("Gemm 3"),
        "{s}"
    );
}

#[test]
fn inspect_says_why_a_backend_cannot_load() {
    let det = root().join("tests/fixtures/det.onnx");
    let out = lrai(&["inspect", det.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backends"]["tract"]["loads"], false);
    let why = v["backends"]["tract"]["error"].as_str().unwrap();
    assert!(
        why.contains("unsupported operator 'Det' at node 'det_0'"),
        "{why}"
    );
}

#[test]
fn run_writes_outputs_that_match_references() {
    for backend in backends() {
        for (name, case) in [("digits_mlp", "b4"), ("mobilenet_v2", "b1")] {
            let dir = tempfile::tempdir().unwrap();
            let inputs = refs(name, case).join("inputs.npz");
            let out = lrai(&[
                "run",
                model(name).to_str().unwrap(),
                "--backend",
                backend,
                "--input",
                inputs.to_str().unwrap(),
                "--output-dir",
                dir.path().to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{backend} {name}: {}",
                text(&out.stderr)
            );
            let listing: serde_json::Value =
                serde_json::from_slice(&fs_err::read(dir.path().join("outputs.json")).unwrap())
                    .unwrap();
            let entry = &listing["outputs"][0];
            assert_eq!(entry["name"], "logits");
            assert_eq!(entry["file"], "logits.npy");
            assert_eq!(entry["dtype"], "FP32");
            let got = lrai_core::npy::read_npy(&dir.path().join("logits.npy")).unwrap();
            let want =
                &lrai_core::npy::read_npz(&refs(name, case).join("outputs.npz")).unwrap()[0].1;
            assert_eq!(entry["shape"], serde_json::json!(want.shape()));
            let (a, b) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
            assert_eq!(
                lrai_core::stats::first_mismatch(&a, &b, 1e-4, 1e-3),
                None,
                "{backend} {name}"
            );
        }
    }
}

#[test]
fn run_prints_summary_with_argmax() {
    let inputs = refs("digits_mlp", "b4").join("inputs.npz");
    let out = lrai(&[
        "run",
        model("digits_mlp").to_str().unwrap(),
        "--backend",
        "tract",
        "-i",
        inputs.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "tract");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([4, 10]));
    // The first four test digits are 1, 4, 8, 6 (digits_test.npz rows 0..3).
    assert_eq!(v["outputs"][0]["argmax"], serde_json::json!([1, 4, 8, 6]));
}

#[test]
fn random_inputs_follow_dim_flags_and_seed() {
    let run = |seed: &str| {
        let out = lrai(&[
            "run",
            model("digits_cnn").to_str().unwrap(),
            "--backend",
            "tract",
            "--random",
            "--dim",
            "batch=3",
            "--seed",
            seed,
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["outputs"][0].clone()
    };
    let (a, b, c) = (run("1"), run("1"), run("2"));
    assert_eq!(a["shape"], serde_json::json!([3, 10]));
    assert_eq!(a, b, "same seed, same outputs");
    assert_ne!(a["mean"], c["mean"], "another seed, other inputs");
}

#[test]
fn output_names_are_sanitised_into_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("nested/out");
    let odd = root().join("tests/fixtures/odd_names.onnx");
    let out = lrai(&[
        "run",
        odd.to_str().unwrap(),
        "--backend",
        "tract",
        "--random",
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing: serde_json::Value =
        serde_json::from_slice(&fs_err::read(out_dir.join("outputs.json")).unwrap()).unwrap();
    assert_eq!(listing["outputs"][0]["name"], "probs/out:0");
    assert_eq!(listing["outputs"][0]["file"], "probs_out_0.npy");
    // "probs out" sanitises to "probs_out", distinct from the first.
    assert_eq!(listing["outputs"][1]["file"], "probs_out.npy");
    let a = lrai_core::npy::read_npy(&out_dir.join("probs_out_0.npy"))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = lrai_core::npy::read_npy(&out_dir.join("probs_out.npy"))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| *x == -*y));
}

#[test]
fn missing_truncated_and_foreign_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    assert_fails_with(
        &lrai(&["run", missing.to_str().unwrap(), "--random"]),
        "nope.onnx",
    );
    assert_fails_with(
        &lrai(&["inspect", missing.to_str().unwrap()]),
        "No such file",
    );

    let bytes = fs_err::read(model("digits_mlp")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    fs_err::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails_with(
        &lrai(&["run", truncated.to_str().unwrap(), "--random"]),
        "is not a valid ONNX model (truncated, or not ONNX at all)",
    );

    let foreign = dir.path().join("notes.onnx");
    fs_err::write(&foreign, "this is not a model\n").unwrap();
    assert_fails_with(&lrai(&["inspect", foreign.to_str().unwrap()]), "notes.onnx");

    let empty = dir.path().join("empty.onnx");
    fs_err::write(&empty, "").unwrap();
    assert_fails_with(
        &lrai(&["run", empty.to_str().unwrap(), "--random"]),
        "it has no graph",
    );
}

#[test]
fn unsupported_operators_name_the_op_and_node() {
    let det = root().join("tests/fixtures/det.onnx");
    assert_fails_with(
        &lrai(&[
            "run",
            det.to_str().unwrap(),
            "--backend",
            "tract",
            "--random",
        ]),
        "unsupported operator 'Det' at node 'det_0'",
    );
    let custom = root().join("tests/fixtures/custom_op.onnx");
    for backend in backends() {
        assert_fails_with(
            &lrai(&[
                "run",
                custom.to_str().unwrap(),
                "--backend",
                backend,
                "--random",
            ]),
            "unsupported operator 'com.example.NoSuchOp' at node 'mystery_0'",
        );
    }
    if backends().len() == 2 {
        let out = lrai(&[
            "run",
            det.to_str().unwrap(),
            "--backend",
            "onnxruntime",
            "--random",
        ]);
        assert!(
            out.status.success(),
            "ONNX Runtime implements Det: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn wrong_input_name_dtype_and_shape_say_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("digits_mlp");
    let m = m.to_str().unwrap();
    let good = write_npy(
        dir.path(),
        "good.npy",
        &lrai_core::Tensor::from_vec(vec![2, 64], vec![0.5f32; 128]).unwrap(),
    );
    let ints = write_npy(
        dir.path(),
        "ints.npy",
        &lrai_core::Tensor::from_vec(vec![2, 64], vec![1i64; 128]).unwrap(),
    );
    let narrow = write_npy(
        dir.path(),
        "narrow.npy",
        &lrai_core::Tensor::from_vec(vec![2, 63], vec![0.5f32; 126]).unwrap(),
    );
    for backend in backends() {
        assert_fails_with(
            &lrai(&[
                "run",
                m,
                "--backend",
                backend,
                "--input",
                &format!("pixels={good}"),
            ]),
            "model 'digits_mlp' has no input 'pixels' (inputs: input)",
        );
        assert_fails_with(
            &lrai(&[
                "run",
                m,
                "--backend",
                backend,
                "--input",
                &format!("input={ints}"),
            ]),
            "input 'input' of model 'digits_mlp': expected datatype FP32, got INT64",
        );
        assert_fails_with(
            &lrai(&[
                "run",
                m,
                "--backend",
                backend,
                "--input",
                &format!("input={narrow}"),
            ]),
            "input 'input' of model 'digits_mlp': expected shape [batch,64], got [2,63]: dimension 1 must be 64, got 63",
        );
        assert_fails_with(
            &lrai(&["run", m, "--backend", backend]),
            "needs input 'input', which was not given",
        );
    }
}

#[test]
fn unparseable_npy_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("digits_mlp");
    let junk = dir.path().join("junk.npy");
    fs_err::write(&junk, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'").unwrap();
    assert_fails_with(
        &lrai(&[
            "run",
            m.to_str().unwrap(),
            "--backend",
            "tract",
            "--input",
            &format!("input={}", junk.display()),
        ]),
        "is not a readable .npy/.npz file",
    );
    let obj = dir.path().join("obj.npy");
    let header = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }\n";
    let mut buf = b"\x93NUMPY\x01\x00".to_vec();
    buf.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    buf.extend_from_slice(header.as_bytes());
    fs_err::write(&obj, buf).unwrap();
    assert_fails_with(
        &lrai(&[
            "run",
            m.to_str().unwrap(),
            "--backend",
            "tract",
            "--input",
            &format!("input={}", obj.display()),
        ]),
        "object arrays (dtype 'O') are not supported",
    );
    assert_fails_with(
        &lrai(&["run", m.to_str().unwrap(), "--input", "input.npy"]),
        "expected NAME=FILE.npy or FILE.npz",
    );
    assert_fails_with(
        &lrai(&["run", m.to_str().unwrap(), "--random", "--dim", "batch"]),
        "expected NAME=N",
    );
}

#[test]
fn asking_for_a_missing_onnxruntime_library_says_how_to_get_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args([
            "run",
            model("digits_mlp").to_str().unwrap(),
            "--random",
            "--backend",
            "onnxruntime",
            "--ort-lib",
            "/nonexistent/libonnxruntime.so.1.31.1",
        ])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        "given by --ort-lib/LRAI_ORT_LIB but no ONNX Runtime library is there",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args([
            "run",
            model("digits_mlp").to_str().unwrap(),
            "--random",
            "--backend",
            "onnxruntime",
        ])
        .env_remove("LRAI_ORT_LIB")
        .env_remove("ORT_DYLIB_PATH")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_fails_with(&out, "pip install onnxruntime==1.31.1");
    // auto falls back to tract and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args([
            "run",
            model("digits_mlp").to_str().unwrap(),
            "--random",
            "--log-level",
            "info",
        ])
        .env_remove("LRAI_ORT_LIB")
        .env_remove("ORT_DYLIB_PATH")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("on tract"));
    assert!(
        text(&out.stderr).contains("ONNX Runtime unavailable"),
        "{}",
        text(&out.stderr)
    );
}
