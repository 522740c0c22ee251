//! `lrai inspect MODEL.onnx [--json]`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use lrai::config::BackendArgs;
use lrai_backend::{BackendKind, ModelSource, create_kind};
use lrai_onnx::IoInfo;
use serde_json::json;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The ONNX model file.
    model: PathBuf,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    backend: BackendArgs,
}

fn io_json(io: &IoInfo) -> serde_json::Value {
    json!({
        "name": io.name,
        "datatype": io.dtype().filter(|_| io.non_tensor.is_none()).map_or_else(|| io.type_name(), |d| d.as_kserve().to_string()),
        "shape": io.dims.as_ref().map(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>()),
    })
}

fn io_line(io: &IoInfo) -> String {
    let dtype = io
        .dtype()
        .filter(|_| io.non_tensor.is_none())
        .map_or_else(|| io.type_name(), |d| d.as_kserve().to_string());
    let dims = io
        .dims
        .as_deref()
        .map_or_else(|| "[...]".to_string(), lrai_core::format_dims);
    format!("    {:<24} {:<7} {dims}", io.name, dtype)
}

/// Tries to load the model on one backend: `Ok(load ms)` or the reason it can't.
fn probe(kind: BackendKind, source: &ModelSource, args: &BackendArgs) -> Result<u128, String> {
    let backend =
        create_kind(kind, &args.backend_config()).map_err(|e| format!("unavailable: {e}"))?;
    let started = Instant::now();
    backend
        .load(source, &args.session_options())
        .map(|_| started.elapsed().as_millis())
        .map_err(|e| e.to_string())
}

/// The backend `--backend auto` would run the model on (as `lrai_backend::load_model`
/// decides): ONNX Runtime when it is here and loads the model, otherwise tract if it does.
fn auto_choice(backends: &[(BackendKind, Result<u128, String>)]) -> Option<BackendKind> {
    let loads = |kind| backends.iter().any(|(k, r)| *k == kind && r.is_ok());
    [BackendKind::OnnxRuntime, BackendKind::Tract]
        .into_iter()
        .find(|&k| loads(k))
}

pub(crate) fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let source = ModelSource::from_path(&args.model)
        .with_context(|| format!("cannot inspect '{}'", args.model.display()))?;
    let summary = lrai_onnx::summarize(source.proto());
    let backends: Vec<(BackendKind, Result<u128, String>)> =
        [BackendKind::Tract, BackendKind::OnnxRuntime]
            .into_iter()
            .map(|k| (k, probe(k, &source, &args.backend)))
            .collect();
    let auto = auto_choice(&backends);

    if args.json {
        let doc = json!({
            "model": args.model.display().to_string(),
            "ir_version": summary.ir_version,
            "opsets": summary.opsets.iter().map(|(d, v)| json!({"domain": d, "version": v})).collect::<Vec<_>>(),
            "producer": summary.producer,
            "inputs": summary.inputs.iter().map(io_json).collect::<Vec<_>>(),
            "outputs": summary.outputs.iter().map(io_json).collect::<Vec<_>>(),
            "op_counts": summary.op_counts,
            "initializers": summary.initializers,
            "parameter_count": summary.parameter_count,
            "parameter_bytes": summary.parameter_bytes,
            "external_data": summary.external_data,
            "backends": backends.iter().map(|(k, r)| (k.as_str().to_string(), match r {
                Ok(ms) => json!({"loads": true, "load_ms": ms}),
                Err(why) => json!({"loads": false, "error": why}),
            })).collect::<serde_json::Map<_, _>>(),
            "auto": auto.map_or(serde_json::Value::Null, |k| json!(k.as_str())),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }

    println!("model: {}", args.model.display());
    let opsets: Vec<String> = summary
        .opsets
        .iter()
        .map(|(d, v)| format!("{d} {v}"))
        .collect();
    println!(
        "  ir_version {}, opset {}, producer '{}'",
        summary.ir_version,
        opsets.join(", "),
        summary.producer
    );
    println!("  inputs:");
    summary
        .inputs
        .iter()
        .for_each(|i| println!("{}", io_line(i)));
    println!("  outputs:");
    summary
        .outputs
        .iter()
        .for_each(|o| println!("{}", io_line(o)));
    println!(
        "  parameters: {} in {} initializers ({} bytes{})",
        summary.parameter_count,
        summary.initializers,
        summary.parameter_bytes,
        if summary.external_data {
            ", some in external data files"
        } else {
            ""
        }
    );
    let ops: Vec<String> = summary
        .op_counts
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    println!(
        "  ops ({} nodes): {}",
        summary.op_counts.values().sum::<usize>(),
        ops.join(", ")
    );
    println!("  backends:");
    for (kind, result) in &backends {
        match result {
            Ok(ms) => println!("    {:<12} loads ({ms} ms)", kind.as_str()),
            Err(why) => println!("    {:<12} cannot load: {why}", kind.as_str()),
        }
    }
    match auto {
        Some(kind) => println!("  --backend auto runs it on {}", kind.as_str()),
        None => println!("  --backend auto cannot run it here: no backend loads it"),
    }
    Ok(())
}
