//! Development driver: `cargo run --release -p lrai-verify --example verify_instance --
//! MODEL.onnx PROPERTY.vnnlib [TIMEOUT_S] [METHOD]` verifies one instance with tract as
//! the confirming backend and prints the verdict (the `lrai verify` CLI does the same
//! with more options).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::time::Duration;

use lrai_backend::{Backend, ModelSource, SessionOptions};

fn main() {
    // Progress and per-layer refinement counts on stderr (`RUST_LOG=info`).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let model = Path::new(&args[1]);
    let prop_path = Path::new(&args[2]);
    let timeout: f64 = args.get(3).map_or(60.0, |t| t.parse().unwrap());
    let method = args.get(4).map_or("auto", String::as_str).parse().unwrap();
    let prop = lrai_verify::vnnlib::load(prop_path).unwrap();
    let proto = lrai_onnx::load_model(model).unwrap();
    let net = lrai_verify::Network::from_onnx(&args[1], &proto).unwrap();
    let backend = lrai_backend::tract::TractBackend::new();
    let source = ModelSource::from_path(model).unwrap();
    let opts = SessionOptions {
        intra_op_threads: Some(1),
        ..SessionOptions::default()
    };
    let session = backend.load(&source, &opts).unwrap();
    let mut settings = lrai_verify::Settings {
        timeout: Duration::from_secs_f64(timeout),
        method,
        ..lrai_verify::Settings::default()
    };
    // Side-by-side experiments: `LRAI_INTER_ITERS=0` gives plain CROWN intermediates.
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(n) = env("LRAI_INTER_ITERS") {
        settings.relu.intermediate_iters = n;
    }
    if let Some(n) = env("LRAI_ITERS") {
        settings.relu.iters = n;
    }
    if let Some(n) = env("LRAI_REFINE_LAYERS") {
        settings.relu.refine.layers = n;
    }
    if let Some(n) = env("LRAI_REFINE_DOMAINS") {
        settings.relu.refine.domains = n;
    }
    if let Some(n) = std::env::var("LRAI_REFINE_SHARE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.relu.refine.share = n;
    }
    if let Some(n) = env("LRAI_CANDIDATES") {
        settings.relu.candidates = n;
    }
    if let Some(n) = env("LRAI_REFINE_CANDIDATES") {
        settings.relu.refine.candidates = n;
    }
    if let Some(n) = env("LRAI_BATCH") {
        settings.relu.batch = n;
    }
    let o = lrai_verify::verify(&net, &prop, &args[2], session.as_ref(), &settings).unwrap();
    println!(
        "{} {:.3} s method={} domains={} depth={} slack={:?} margin={:.2e} {:?}",
        o.verdict.as_str(),
        o.elapsed.as_secs_f64(),
        o.method,
        o.domains,
        o.max_depth,
        o.min_slack,
        o.max_safety_margin,
        match &o.verdict {
            lrai_verify::Verdict::Unknown { reason } => reason.clone(),
            lrai_verify::Verdict::Violated { x, y } => format!("x={x:?} y={y:?}"),
            lrai_verify::Verdict::Holds => String::new(),
        }
    );
}
