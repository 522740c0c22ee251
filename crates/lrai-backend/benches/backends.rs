//! Backend latency in one process: every case of a plan file on each backend, median of
//! N timed runs after warm-up. Driven by `scripts/bench-backends.py`, which writes the
//! plan and the inputs, times Python onnxruntime on the same inputs, and prints ratios.
//!
//! `cargo bench -p lrai-backend --bench backends -- PLAN.json` prints one JSON object per
//! (case, backend) on stdout.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use lrai_backend::{Backend, ModelSource, SessionOptions};

fn main() {
    let plan_path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .expect("usage: backends PLAN.json");
    let plan: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&plan_path).unwrap()).unwrap();
    let threads = plan["threads"].as_u64().unwrap_or(2) as usize;
    let mut backends: Vec<Arc<dyn Backend>> =
        vec![Arc::new(lrai_backend::tract::TractBackend::new())];
    if let Some(lib) = plan["ort_lib"].as_str() {
        backends.push(Arc::new(
            lrai_backend::onnxruntime::OrtBackend::new(&PathBuf::from(lib)).unwrap(),
        ));
    }
    let options = SessionOptions {
        intra_op_threads: Some(threads),
        inter_op_threads: Some(1),
        ..SessionOptions::default()
    };
    for case in plan["cases"].as_array().unwrap() {
        let source =
            ModelSource::from_path(&PathBuf::from(case["model"].as_str().unwrap())).unwrap();
        let inputs =
            lrai_core::npy::read_npz(&PathBuf::from(case["inputs"].as_str().unwrap())).unwrap();
        let runs = case["runs"].as_u64().unwrap_or(20) as usize;
        let warmup = case["warmup"].as_u64().unwrap_or(3) as usize;
        let batch = case["batch"].as_u64().unwrap();
        for backend in &backends {
            let session = backend.load(&source, &options).unwrap();
            for _ in 0..warmup {
                session.run(&inputs).unwrap();
            }
            let mut times: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(session.run(&inputs).unwrap());
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let line = serde_json::json!({
                "case": case["name"], "backend": backend.kind().as_str(), "batch": batch, "runs": runs,
                "median_ms": median, "p10_ms": times[times.len() / 10], "p90_ms": times[times.len() * 9 / 10],
                "inferences_per_s": batch as f64 * 1e3 / median,
            });
            println!("{line}");
            eprintln!("{} {}: median {median:.3} ms", case["name"], backend.kind());
        }
    }
}
