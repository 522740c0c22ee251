//! Shared helpers for backend tests: fixture paths, finding ONNX Runtime, reading the
//! shared rawtensors-v1 references, and tolerance checks.
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::cast_possible_truncation,
    dead_code,
    unreachable_pub
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lrai_backend::{Backend, BackendKind, NamedTensors, OrtCandidate, locate_onnxruntime};
use lrai_core::{DataType, Tensor};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn example_model(name: &str) -> PathBuf {
    repo_root()
        .join("examples/models")
        .join(name)
        .join("1/model.onnx")
}

pub fn refs_dir(name: &str, case: &str) -> PathBuf {
    repo_root()
        .join("tests/fixtures/refs")
        .join(name)
        .join(case)
}

/// `../shared/models`, where the large models live (not in git).
pub fn shared_models() -> Option<PathBuf> {
    let p = repo_root().join("../shared/models");
    p.join("minilm_l6.onnx").is_file().then_some(p)
}

/// The ONNX Runtime backend, or `None` (with a note) when its library can't be found.
/// With LRAI_REQUIRE_ORT=1 (set by scripts/test.sh) a missing library fails the test.
pub fn ort_backend() -> Option<Arc<dyn Backend>> {
    let candidates: Vec<OrtCandidate> = std::env::var_os("LRAI_ORT_LIB")
        .filter(|v| !v.is_empty())
        .map(|p| OrtCandidate {
            origin: "LRAI_ORT_LIB".into(),
            path: p.into(),
        })
        .into_iter()
        .collect();
    let found = locate_onnxruntime(&candidates, Some("python3"))
        .and_then(|p| lrai_backend::onnxruntime::OrtBackend::new(&p));
    match found {
        Ok(b) => Some(Arc::new(b)),
        Err(e) if std::env::var_os("LRAI_REQUIRE_ORT").is_some() => {
            panic!("LRAI_REQUIRE_ORT is set: {e}")
        }
        Err(e) => {
            eprintln!("skipped ONNX Runtime checks: {e}");
            None
        }
    }
}

pub fn backends() -> Vec<Arc<dyn Backend>> {
    let mut v: Vec<Arc<dyn Backend>> = vec![Arc::new(lrai_backend::tract::TractBackend::new())];
    v.extend(ort_backend());
    v
}

pub fn backend_name(b: &dyn Backend) -> &'static str {
    match b.kind() {
        BackendKind::Tract => "tract",
        BackendKind::OnnxRuntime => "onnxruntime",
    }
}

/// Reads a rawtensors-v1 bundle (`NAME.json` + its data file).
pub fn read_bundle(json_path: &Path) -> NamedTensors {
    let head: serde_json::Value =
        serde_json::from_slice(&fs_err::read(json_path).unwrap()).unwrap();
    let data = fs_err::read(json_path.with_file_name(head["data_file"].as_str().unwrap())).unwrap();
    head["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let dtype = match t["dtype"].as_str().unwrap() {
                "float32" => DataType::F32,
                "float64" => DataType::F64,
                "float16" => DataType::F16,
                "int64" => DataType::I64,
                "int32" => DataType::I32,
                "int8" => DataType::I8,
                "uint8" => DataType::U8,
                "bool" => DataType::Bool,
                other => panic!("dtype {other}"),
            };
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let off = t["offset"].as_u64().unwrap() as usize;
            let n = t["nbytes"].as_u64().unwrap() as usize;
            let bytes = bytes::Bytes::copy_from_slice(&data[off..off + n]);
            (
                t["name"].as_str().unwrap().to_string(),
                Tensor::new(dtype, shape, bytes).unwrap(),
            )
        })
        .collect()
}

pub fn get<'a>(tensors: &'a NamedTensors, name: &str) -> &'a Tensor {
    &tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
}

/// `|a − b| ≤ atol + rtol·|b|` everywhere, or a message naming the first element that isn't.
pub fn assert_close(
    what: &str,
    actual: &Tensor,
    expected: &Tensor,
    atol: f64,
    rtol: f64,
) -> Result<(), String> {
    if actual.shape() != expected.shape() {
        return Err(format!(
            "{what}: shape {:?}, expected {:?}",
            actual.shape(),
            expected.shape()
        ));
    }
    let a = actual.to_f64_vec().unwrap();
    let b = expected.to_f64_vec().unwrap();
    match lrai_core::stats::first_mismatch(&a, &b, atol, rtol) {
        None => Ok(()),
        Some((i, x, y)) => Err(format!(
            "{what}: element {i} is {x}, expected {y} (atol {atol}, rtol {rtol})"
        )),
    }
}

pub fn argmax_rows(t: &Tensor) -> Vec<usize> {
    lrai_core::stats::summarize(t).unwrap().argmax.unwrap()
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}
