//! `lrai run MODEL.onnx --input NAME=FILE.npy ... [--random] [--output-dir DIR]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use lrai::config::BackendArgs;
use lrai_backend::{ModelSource, NamedTensors, Session, check_inputs_with_warnings, load_model};
use lrai_core::random::{SplitMix64, random_tensor};
use lrai_core::{Tensor, format_shape, npy, shape, stats};
use serde_json::json;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The ONNX model file.
    model: PathBuf,

    /// An input as NAME=FILE.npy, or FILE.npz whose arrays are named after inputs. Repeatable.
    #[arg(long = "input", short = 'i')]
    inputs: Vec<String>,

    /// Make random inputs for those not given (floats in [0,1), integers in 0..=9),
    /// with symbolic dims set to 1 unless --dim says otherwise.
    #[arg(long)]
    random: bool,

    /// Size of a symbolic dimension for --random, as NAME=N (e.g. batch=4). Repeatable.
    #[arg(long = "dim")]
    dims: Vec<String>,

    /// Seed for --random.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Write each output to DIR/<name>.npy, plus DIR/outputs.json.
    #[arg(long)]
    output_dir: Option<PathBuf>,

    /// Print results as JSON.
    #[arg(long)]
    json: bool,

    /// Run this many timed times and report latency (median, p90) and throughput.
    #[arg(long, default_value_t = 1)]
    repeat: usize,

    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 0)]
    warmup: usize,

    #[command(flatten)]
    backend: BackendArgs,
}

fn parse_dims(dims: &[String]) -> anyhow::Result<BTreeMap<String, usize>> {
    dims.iter()
        .map(|d| {
            let (name, value) = d
                .split_once('=')
                .with_context(|| format!("--dim '{d}': expected NAME=N, e.g. batch=4"))?;
            let n = value
                .parse()
                .with_context(|| format!("--dim '{d}': '{value}' is not a size"))?;
            Ok((name.to_string(), n))
        })
        .collect()
}

fn load_inputs(specs: &[String]) -> anyhow::Result<NamedTensors> {
    let mut out = NamedTensors::new();
    for spec in specs {
        match spec.split_once('=') {
            Some((name, file)) => {
                let t =
                    npy::read_npy(Path::new(file)).with_context(|| format!("--input {spec}"))?;
                out.push((name.to_string(), t));
            }
            None if spec.ends_with(".npz") => {
                out.extend(
                    npy::read_npz(Path::new(spec)).with_context(|| format!("--input {spec}"))?,
                );
            }
            None => bail!("--input '{spec}': expected NAME=FILE.npy or FILE.npz"),
        }
    }
    Ok(out)
}

fn add_random_inputs(
    session: &dyn Session,
    args: &RunArgs,
    inputs: &mut NamedTensors,
) -> anyhow::Result<()> {
    let bindings = parse_dims(&args.dims)?;
    let mut rng = SplitMix64::new(args.seed);
    for spec in session.inputs() {
        if inputs.iter().any(|(n, _)| *n == spec.name) {
            continue;
        }
        let dims = spec.dims.as_deref().unwrap_or(&[]);
        let shape = shape::concretize(dims, &bindings, 1);
        inputs.push((
            spec.name.clone(),
            random_tensor(spec.dtype, shape, &mut rng)?,
        ));
    }
    Ok(())
}

/// File name for an output: characters outside `[A-Za-z0-9._-]` become `_`.
fn file_stem_for(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_outputs(dir: &Path, outputs: &NamedTensors) -> anyhow::Result<()> {
    fs_err::create_dir_all(dir)?;
    let mut entries = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (name, t) in outputs {
        let stem = file_stem_for(name);
        // Two names can sanitise to the same stem; keep both files.
        let mut file = format!("{stem}.npy");
        let mut k = 1;
        while !used.insert(file.clone()) {
            file = format!("{stem}_{k}.npy");
            k += 1;
        }
        npy::write_npy(&dir.join(&file), t).with_context(|| format!("writing output '{name}'"))?;
        entries.push(
            json!({"name": name, "file": file, "dtype": t.dtype().as_kserve(), "shape": t.shape()}),
        );
    }
    let doc = serde_json::to_string_pretty(&json!({ "outputs": entries }))?;
    fs_err::write(dir.join("outputs.json"), doc)?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<()> {
    let source = ModelSource::from_path(&args.model)?;
    let loaded = load_model(
        &args.backend.backend_config(),
        &source,
        &args.backend.session_options(),
    )?;
    if let Some(why) = &loaded.fallback {
        eprintln!("note: {why}");
    }
    let session = loaded.session;
    let mut inputs = load_inputs(&args.inputs)?;
    if args.random {
        add_random_inputs(session.as_ref(), args, &mut inputs)?;
    }
    // What ONNX Runtime runs but looks wrong (a shared dim that disagrees) is a warning.
    if let Ok((_, warnings)) =
        check_inputs_with_warnings(session.model_name(), session.inputs(), &inputs)
    {
        for w in warnings {
            eprintln!("warning: {w}");
        }
    }
    for _ in 0..args.warmup {
        session.run(&inputs)?;
    }
    let mut times = Vec::with_capacity(args.repeat.max(1));
    let mut outputs = NamedTensors::new();
    for _ in 0..args.repeat.max(1) {
        let started = Instant::now();
        outputs = session.run(&inputs).map_err(|e| {
            let hint = if matches!(e, lrai_backend::BackendError::MissingInput { .. }) {
                " (give it with --input NAME=FILE.npy, or pass --random)"
            } else {
                ""
            };
            anyhow::anyhow!("{e}{hint}")
        })?;
        times.push(started.elapsed());
    }
    times.sort();
    let median = percentile(&times, 0.5);
    let batch = inputs
        .first()
        .and_then(|(_, t)| t.shape().first())
        .copied()
        .unwrap_or(1);

    if let Some(dir) = &args.output_dir {
        write_outputs(dir, &outputs)?;
    }
    let summaries: Vec<_> = outputs
        .iter()
        .map(|(n, t)| (n, t, stats::summarize(t)))
        .collect();
    if args.json {
        let outs: Vec<_> = summaries
            .iter()
            .map(|(n, t, s)| {
                json!({"name": n, "dtype": t.dtype().as_kserve(), "shape": t.shape(),
                       "min": s.as_ref().map(|s| s.min), "max": s.as_ref().map(|s| s.max),
                       "mean": s.as_ref().map(|s| s.mean), "argmax": s.as_ref().and_then(|s| s.argmax.clone())})
            })
            .collect();
        let doc = json!({
            "model": args.model.display().to_string(),
            "backend": session.backend().as_str(),
            "outputs": outs,
            "timing": {"runs": times.len(), "warmup": args.warmup, "batch": batch,
                       "median_ms": median.as_secs_f64() * 1e3, "p90_ms": percentile(&times, 0.9).as_secs_f64() * 1e3,
                       "inferences_per_s": if median.is_zero() { 0.0 } else { batch as f64 / median.as_secs_f64() }},
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("model {} on {}", args.model.display(), session.backend());
    for (name, t, s) in &summaries {
        print!("  {name}: {} {}", t.dtype(), format_shape(t.shape()));
        match s {
            Some(s) => {
                print!("  min {:.6} max {:.6} mean {:.6}", s.min, s.max, s.mean);
                if let Some(a) = &s.argmax {
                    let shown: Vec<String> = a.iter().take(16).map(ToString::to_string).collect();
                    print!(
                        "  argmax [{}{}]",
                        shown.join(","),
                        if a.len() > 16 { ",…" } else { "" }
                    );
                }
                println!();
            }
            None => println!("{}", bytes_preview(t)),
        }
    }
    if args.repeat > 1 {
        println!(
            "  timing: {} runs after {} warm-up, median {:.3} ms, p90 {:.3} ms, {:.1} inferences/s (batch {batch})",
            times.len(),
            args.warmup,
            median.as_secs_f64() * 1e3,
            percentile(&times, 0.9).as_secs_f64() * 1e3,
            batch as f64 / median.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

fn bytes_preview(t: &Tensor) -> String {
    let items = t.byte_strings().unwrap_or_default();
    let shown: Vec<String> = items
        .iter()
        .take(4)
        .map(|b| format!("{:?}", String::from_utf8_lossy(b)))
        .collect();
    format!(
        "  [{}{}]",
        shown.join(", "),
        if items.len() > 4 { ", …" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_output_file_names() {
        assert_eq!(file_stem_for("logits"), "logits");
        assert_eq!(file_stem_for("/bert/out:0 x"), "_bert_out_0_x");
    }
}
