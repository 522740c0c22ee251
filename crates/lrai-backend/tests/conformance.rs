//! One suite of reference cases run against every backend, like tract's `test-rt`: each
//! case must match ONNX Runtime's reference outputs (computed by the models' maker)
//! within the models README's tolerances, at batch 1 and 4.
//!
//! int8 models get the README's int8 tolerance *or*, failing that, its fallback checks
//! (same argmax for logits, cosine ≥ 0.98 for embeddings). The references were made on a
//! CPU with AVX-512 VNNI, where ORT's u8×s8 kernels are exact; on AVX2-only CPUs (this
//! machine) ORT saturates int16 intermediates and python onnxruntime itself lands 1.1
//! away on a digits logit (-19.13 vs -20.27). tract's integer kernels differ again on MiniLM.
//! Both are valid int8 results, so the elementwise check would test the CPU, not LRAI.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::*;
use lrai_backend::{Backend, BackendKind, ModelSource, SessionOptions};
use lrai_core::npy::read_npz;

const FP32: (f64, f64) = (1e-4, 1e-3);
const INT8: (f64, f64) = (1e-2, 1e-2);

fn options() -> SessionOptions {
    SessionOptions {
        intra_op_threads: Some(2),
        ..SessionOptions::default()
    }
}

/// Runs one committed reference case; `Err` describes the first mismatch.
fn run_case(backend: &dyn Backend, model: &str, case: &str, tol: (f64, f64)) -> Result<(), String> {
    let source = ModelSource::from_path(&example_model(model)).unwrap();
    let session = backend
        .load(&source, &options())
        .map_err(|e| e.to_string())?;
    let inputs = read_npz(&refs_dir(model, case).join("inputs.npz")).unwrap();
    let expected = read_npz(&refs_dir(model, case).join("outputs.npz")).unwrap();
    let outputs = session.run(&inputs).map_err(|e| e.to_string())?;
    for (name, want) in &expected {
        let got = get(&outputs, name);
        let strict = assert_close(&format!("{model}/{case} {name}"), got, want, tol.0, tol.1);
        match strict {
            Err(e) if tol == INT8 && want.shape().len() == 2 => {
                if argmax_rows(got) != argmax_rows(want) {
                    return Err(format!("{e}; and argmax differs"));
                }
                eprintln!(
                    "[{}] {e}; argmax agrees (int8 fallback check)",
                    backend_name(backend)
                );
            }
            other => other?,
        }
    }
    Ok(())
}

#[test]
fn small_models_match_references_on_every_backend() {
    let cases = [
        ("digits_mlp", FP32),
        ("digits_cnn", FP32),
        ("digits_mlp_int8", INT8),
        ("mobilenet_v2", FP32),
    ];
    let mut failures = Vec::new();
    for backend in backends() {
        for (model, tol) in cases {
            for case in ["b1", "b4"] {
                if let Err(e) = run_case(backend.as_ref(), model, case, tol) {
                    failures.push(format!("[{}] {e}", backend_name(backend.as_ref())));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// MiniLM (fp32 and int8) at both sequence lengths and batch 1 and 4, from ../shared.
/// `last_hidden_state` is compared only where attention_mask is 1 (padding is meaningless).
#[test]
fn minilm_matches_references_on_every_backend() {
    let Some(shared) = shared_models() else {
        eprintln!("skipped: ../shared/models/minilm_l6.onnx is absent (MiniLM stays out of git)");
        return;
    };
    let mut failures = Vec::new();
    for backend in backends() {
        for (file, tol) in [("minilm_l6", FP32), ("minilm_l6.int8", INT8)] {
            let source = ModelSource::from_path(&shared.join(format!("{file}.onnx"))).unwrap();
            let session = match backend.load(&source, &options()) {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("[{}] {file}: {e}", backend_name(backend.as_ref())));
                    continue;
                }
            };
            for case in ["b1_s16", "b4_s16", "b1_s128", "b4_s128"] {
                let dir = shared.join(format!("{file}.ref")).join(case);
                let inputs = read_bundle(&dir.join("inputs.json"));
                let expected = read_bundle(&dir.join("outputs.json"));
                let outputs = session.run(&inputs).unwrap();
                let mask = get(&inputs, "attention_mask").to_vec::<i64>().unwrap();
                let check = minilm_check(backend.kind(), file, &outputs, &expected, &mask, tol);
                if let Err(e) = check {
                    failures.push(format!(
                        "[{}] {file}/{case}: {e}",
                        backend_name(backend.as_ref())
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn minilm_check(
    kind: BackendKind,
    file: &str,
    outputs: &lrai_backend::NamedTensors,
    expected: &lrai_backend::NamedTensors,
    mask: &[i64],
    tol: (f64, f64),
) -> Result<(), String> {
    let got_emb = get(outputs, "sentence_embedding");
    let want_emb = get(expected, "sentence_embedding");
    let strict = minilm_strict(outputs, expected, mask, tol);
    match strict {
        Err(e) if tol == INT8 => {
            let g = got_emb.to_f64_vec().unwrap();
            let w = want_emb.to_f64_vec().unwrap();
            for (row, (a, b)) in g.chunks(384).zip(w.chunks(384)).enumerate() {
                let c = cosine(a, b);
                if c < 0.98 {
                    return Err(format!(
                        "{e}; and sentence_embedding row {row} has cosine {c:.4} < 0.98"
                    ));
                }
            }
            eprintln!("[{kind:?}] {file}: {e}; embeddings agree in cosine (int8 fallback check)");
            Ok(())
        }
        other => other,
    }
}

fn minilm_strict(
    outputs: &lrai_backend::NamedTensors,
    expected: &lrai_backend::NamedTensors,
    mask: &[i64],
    tol: (f64, f64),
) -> Result<(), String> {
    let got_emb = get(outputs, "sentence_embedding");
    let want_emb = get(expected, "sentence_embedding");
    assert_close("sentence_embedding", got_emb, want_emb, tol.0, tol.1)?;
    let got = get(outputs, "last_hidden_state").to_f64_vec().unwrap();
    let want = get(expected, "last_hidden_state").to_f64_vec().unwrap();
    for (pos, &m) in mask.iter().enumerate() {
        if m == 1 {
            let (a, b) = (
                &got[pos * 384..(pos + 1) * 384],
                &want[pos * 384..(pos + 1) * 384],
            );
            if let Some((i, x, y)) = lrai_core::stats::first_mismatch(a, b, tol.0, tol.1) {
                return Err(format!(
                    "last_hidden_state token {pos} element {i}: {x} vs {y}"
                ));
            }
        }
    }
    Ok(())
}
