//! The defects of issue 14 as one suite run against every backend, on the small graphs of
//! `tests/fixtures/backend/` (made by `scripts/make-backend-fixtures.py`, references from
//! ONNX Runtime in Python):
//!
//! - a model whose recurrent state comes in and goes out as tensors answers the same
//!   request the same way every time, whatever ran before it or beside it;
//! - every datatype passes through unchanged, at the edges of its range;
//! - QDQ graphs (DQ → Softmax → Q, ONNX Runtime's quantizer output) match ONNX Runtime;
//! - what ONNX Runtime accepts is accepted: `?` dims, a shared dim that disagrees, a
//!   scalar sent as `[1]`;
//! - exports tract once refused load and match.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use lrai_backend::{Backend, BackendKind, ModelSource, NamedTensors, Session, SessionOptions};
use lrai_core::npy::read_npz;
use lrai_core::{DataType, Tensor};

/// Float tolerance against ONNX Runtime for float graphs.
const FP32: (f64, f64) = (1e-5, 1e-4);
/// For quantized graphs, against the unfused QDQ arithmetic (ONNX Runtime with graph
/// optimizations off): eight steps of the output's quantization (1/255 for the
/// probabilities). That is how far ONNX Runtime's own fused integer kernels land from it
/// on these fixtures (measured: 8 steps on `ort_qdq_u8s8_pc` b4); integer kernels round
/// intermediate requantizations differently. The defect this guards against is far
/// larger: issue 14's saturated Softmax answered 0.994 where 0.179 was right.
const QDQ: (f64, f64) = (8.0 / 255.0 + 1e-6, 0.0);

fn case_dir(case: &str) -> PathBuf {
    repo_root().join("tests/fixtures/backend").join(case)
}

fn load(backend: &dyn Backend, case: &str) -> Result<Arc<dyn Session>, String> {
    let source = ModelSource::from_path(&case_dir(case).join("model.onnx"))
        .unwrap()
        .with_name(case);
    let options = SessionOptions {
        intra_op_threads: Some(1),
        ..SessionOptions::default()
    };
    backend.load(&source, &options).map_err(|e| e.to_string())
}

fn inputs(case: &str, set: &str) -> NamedTensors {
    read_npz(&case_dir(case).join(set).join("inputs.npz")).unwrap()
}

fn expected(case: &str, set: &str) -> NamedTensors {
    read_npz(&case_dir(case).join(set).join("outputs.npz")).unwrap()
}

/// Compares every expected output: floats within `tol`, everything else byte for byte.
fn compare(
    what: &str,
    got: &NamedTensors,
    want: &NamedTensors,
    tol: (f64, f64),
) -> Result<(), String> {
    for (name, w) in want {
        let g = got
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("{what}: no output '{name}'"))?;
        if g.dtype() != w.dtype() {
            return Err(format!(
                "{what} {name}: dtype {} , expected {}",
                g.dtype(),
                w.dtype()
            ));
        }
        if matches!(w.dtype(), DataType::F32 | DataType::F64 | DataType::F16) && tol != (0.0, 0.0) {
            assert_close(&format!("{what} {name}"), g, w, tol.0, tol.1)?;
        } else if g.shape() != w.shape() || g.data() != w.data() {
            return Err(format!(
                "{what} {name}: not identical (shape {:?} vs {:?})",
                g.shape(),
                w.shape()
            ));
        }
    }
    Ok(())
}

fn run_set(session: &dyn Session, case: &str, set: &str, tol: (f64, f64)) -> Result<(), String> {
    let got = session
        .run(&inputs(case, set))
        .map_err(|e| format!("{case}/{set}: {e}"))?;
    compare(&format!("{case}/{set}"), &got, &expected(case, set), tol)
}

fn sets(case: &str) -> Vec<String> {
    let mut v: Vec<String> = fs_err::read_dir(case_dir(case))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_type()
                .unwrap()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    v.sort();
    v
}

/// Cases tract refuses, with the refusal each must give (tract's expected-failure list,
/// as in its test-rt runners): a clear error, never an answer.
/// `loop_no_index`: a `Loop` becomes a `Scan` for tract only when its body reads the
/// iteration number (tract drops an unread Scan input, then can't count iterations).
const TRACT_REFUSES: &[(&str, &str)] = &[
    (
        "gru_reverse",
        "unsupported operator 'GRU with direction reverse (tract ignores it)'",
    ),
    (
        "loop_no_index",
        "unsupported operator 'Loop' at node 'loop_0'",
    ),
];

/// Runs every case on every backend, collecting failures as `[backend] message`. A case
/// on tract's refusal list must fail with its message instead.
fn on_every_backend(
    cases: &[&str],
    mut check: impl FnMut(&dyn Backend, &str) -> Result<(), String>,
) {
    let mut failures = Vec::new();
    for backend in backends() {
        let name = backend_name(backend.as_ref());
        for case in cases {
            let refusal = TRACT_REFUSES
                .iter()
                .find(|(c, _)| c == case && backend.kind() == BackendKind::Tract);
            match (check(backend.as_ref(), case), refusal) {
                (Ok(()), None) => {}
                (Err(e), Some((_, needle))) if e.contains(needle) => {}
                (Ok(()), Some(_)) => failures.push(format!(
                    "[{name}] {case} now runs: take it off TRACT_REFUSES"
                )),
                (Err(e), _) => failures.push(format!("[{name}] {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const RECURRENT: [&str; 7] = [
    "lstm_state",
    "gru_state",
    "rnn_state",
    "scan_state",
    "loop_state",
    "loop_no_index",
    "gru_reverse",
];

#[test]
fn recurrent_state_never_leaks_between_runs() {
    on_every_backend(&RECURRENT, |backend, case| {
        let session = load(backend, case)?;
        let sets = sets(case);
        // The same request again and again, then interleaved with the others.
        for _ in 0..4 {
            run_set(session.as_ref(), case, &sets[0], FP32)?;
        }
        for round in 0..3 {
            for set in sets.iter().cycle().skip(round).take(sets.len() * 2) {
                run_set(session.as_ref(), case, set, FP32)?;
            }
        }
        Ok(())
    });
}

#[test]
fn recurrent_state_never_leaks_between_concurrent_runs() {
    on_every_backend(&RECURRENT, |backend, case| {
        let session = load(backend, case)?;
        let sets = sets(case);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let session = Arc::clone(&session);
                    let sets = &sets;
                    scope.spawn(move || -> Result<(), String> {
                        for i in 0..8 {
                            let set = &sets[(w + i) % sets.len()];
                            run_set(session.as_ref(), case, set, FP32)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| w.join().unwrap())
        })
    });
}

#[test]
fn every_dtype_passes_through_unchanged() {
    on_every_backend(&["dtypes_identity", "noop_casts"], |backend, case| {
        let session = load(backend, case)?;
        // Exact: these graphs only move values, so any difference is a conversion bug.
        run_set(session.as_ref(), case, "a", (0.0, 0.0))?;
        run_set(session.as_ref(), case, "a", (0.0, 0.0))
    });
}

#[test]
fn bf16_passes_through_onnx_runtime_and_tract_says_it_cannot() {
    let values = [1.0f32, -0.0, 3.389_531_4e38, 9.2e-41, f32::INFINITY];
    let x: Vec<half::bf16> = values.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let input = vec![(
        "x".to_string(),
        Tensor::from_vec(vec![x.len()], x.clone()).unwrap(),
    )];
    for backend in backends() {
        match (backend.kind(), load(backend.as_ref(), "bf16_identity")) {
            (BackendKind::OnnxRuntime, Ok(s)) => {
                let out = s.run(&input).unwrap();
                assert_eq!(out[0].1.to_vec::<half::bf16>().unwrap(), x);
            }
            (BackendKind::Tract, Err(e)) => {
                assert!(e.contains("does not support datatype BF16"), "{e}");
            }
            (kind, other) => panic!("{kind:?}: unexpected {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn strings_with_nul_and_binary_bytes_pass_through() {
    let elements: [&[u8]; 4] = [b"a\0b", b"", b"\xff\xfe binary", b"\0"];
    let t = Tensor::from_byte_strings(vec![4], &elements).unwrap();
    let source = ModelSource::from_path(&case_dir("dtypes_identity").join("model.onnx")).unwrap();
    for backend in backends() {
        let session = backend.load(&source, &SessionOptions::default()).unwrap();
        // Only the string input matters here; the others get their fixture values.
        let mut feed = inputs("dtypes_identity", "a");
        for (name, value) in &mut feed {
            if name == "x_string" {
                *value = t.clone();
            } else {
                let dtype = value.dtype();
                *value = Tensor::zeros(dtype, vec![4]).unwrap();
            }
        }
        let result = session.run(&feed);
        match backend.kind() {
            BackendKind::OnnxRuntime => {
                let out = result.unwrap();
                let y = get(&out, "y_string");
                assert_eq!(y.byte_strings().unwrap(), elements.to_vec());
            }
            // tract keeps strings as UTF-8 `String`s: NULs pass, binary bytes are refused.
            BackendKind::Tract => {
                let e = result.unwrap_err().to_string();
                assert!(
                    e.contains("element 2 of a BYTES input is not valid UTF-8"),
                    "{e}"
                );
                let utf8 =
                    Tensor::from_byte_strings(vec![4], &[&b"a\0b"[..], b"", b"\xc3\xbc", b"\0"])
                        .unwrap();
                for (name, value) in &mut feed {
                    if name == "x_string" {
                        *value = utf8.clone();
                    }
                }
                let out = session.run(&feed).unwrap();
                assert_eq!(get(&out, "y_string").data(), utf8.data());
            }
        }
    }
}

#[test]
fn qdq_graphs_match_onnx_runtime() {
    let cases = [
        "qdq_softmax_zp0",
        "qdq_softmax_zp128",
        "ort_qdq_u8s8_pc",
        "ort_qdq_s8s8",
        "ort_qdq_u8u8",
    ];
    on_every_backend(&cases, |backend, case| {
        let session = load(backend, case)?;
        for set in sets(case) {
            run_set(session.as_ref(), case, &set, QDQ)?;
        }
        Ok(())
    });
}

#[test]
fn accepts_what_onnx_runtime_accepts() {
    let cases = [
        "paddle_free_dims",
        "shared_symbol_mismatch",
        "scalar_input",
        "float_convnet",
    ];
    on_every_backend(&cases, |backend, case| {
        let session = load(backend, case)?;
        for set in sets(case) {
            run_set(session.as_ref(), case, &set, FP32)?;
        }
        Ok(())
    });
}

#[test]
fn loads_exports_tract_once_refused() {
    let cases = [
        "squeeze_no_axes",
        "if_squeeze_op15",
        "if_squeeze_op18",
        "if_on_value",
    ];
    on_every_backend(&cases, |backend, case| {
        let session = load(backend, case)?;
        // Twice over, interleaved: plans specialised per shape or value must not mix.
        for _ in 0..2 {
            for set in sets(case) {
                run_set(session.as_ref(), case, &set, FP32)?;
            }
        }
        Ok(())
    });
}

#[test]
fn still_refuses_wrong_ranks_fixed_dims_and_dtypes() {
    for backend in backends() {
        let session = load(backend.as_ref(), "paddle_free_dims").unwrap();
        let name = backend_name(backend.as_ref());
        let bad = [
            (
                Tensor::zeros(DataType::F32, vec![1, 3, 8]).unwrap(),
                "expected 4 dimensions, got 3",
            ),
            (
                Tensor::zeros(DataType::F32, vec![1, 4, 8, 8]).unwrap(),
                "dimension 1 must be 3, got 4",
            ),
            (
                Tensor::zeros(DataType::F64, vec![1, 3, 8, 8]).unwrap(),
                "expected datatype FP32, got FP64",
            ),
        ];
        for (t, needle) in bad {
            let e = session
                .run(&[("x".to_string(), t)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "[{name}] {e}");
            assert!(e.contains("model 'paddle_free_dims'"), "[{name}] {e}");
        }
    }
}
