//! `lrai quantize IN.onnx -o OUT.onnx [--mode static|dynamic] [--precision int8|fp16]
//! [--calibration DATA] [--eval DATA] [--max-accuracy-drop 0.01] [--report FILE.json]`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use lrai::config::BackendArgs;
use lrai_backend::{Backend, BackendKind, create_backend, create_kind};
use lrai_quant::{
    ActivationType, CalibrationMethod, Engines, Metric, Mode, Precision, QuantizeConfig,
};

#[derive(Debug, Args)]
pub(crate) struct QuantizeArgs {
    /// The float32 ONNX model.
    model: PathBuf,

    /// Where to write the quantized model.
    #[arg(long, short = 'o')]
    output: PathBuf,

    /// static: activations quantized with calibrated scales (QDQ; conv nets).
    /// dynamic: activations quantized at run time (MatMul-heavy models).
    #[arg(long, default_value = "static")]
    mode: Mode,

    /// int8, or fp16 (for GPU backends; inputs and outputs stay float32).
    #[arg(long, default_value = "int8")]
    precision: Precision,

    /// Calibration samples: a .npz file or a directory of .npy files, one array per
    /// model input (named after it, or the one array that fits), samples along axis 0.
    #[arg(long)]
    calibration: Option<PathBuf>,

    /// How activation ranges are chosen: minmax, percentile or entropy (KL).
    #[arg(long, default_value = "minmax", value_parser = ["minmax", "percentile", "entropy"])]
    calibration_method: String,

    /// Percentile for --calibration-method percentile.
    #[arg(long, default_value_t = 99.999)]
    percentile: f64,

    /// Most calibration samples used (the first ones).
    #[arg(long, default_value_t = 256)]
    calibration_samples: usize,

    /// Evaluation samples (.npz or .npy directory) with optional `labels` (or `y`) and
    /// `group` arrays: the accuracy budget is checked on them, per group too.
    #[arg(long)]
    eval: Option<PathBuf>,

    /// Most evaluation samples used (the first ones); default all.
    #[arg(long)]
    eval_samples: Option<usize>,

    /// Output compared in evaluation; default the first output.
    #[arg(long)]
    eval_output: Option<String>,

    /// Budget metric: auto (top1 with labels, agreement without), top1, agreement, cosine.
    #[arg(long, default_value = "auto")]
    metric: Metric,

    /// Largest allowed drop of the metric, absolute (0.01 = one point), overall and in
    /// every group.
    #[arg(long, default_value_t = 0.01)]
    max_accuracy_drop: f64,

    /// Static mode activation type: u8 (asymmetric; ONNX Runtime's x86 advice) or i8.
    #[arg(long, default_value = "u8")]
    activation_type: ActivationType,

    /// 7-bit weights: auto (on unless this CPU has AVX-512 VNNI), on or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    reduce_range: String,

    /// Dynamic mode: also quantize MatMuls between two activations (attention scores).
    #[arg(long)]
    quantize_activation_matmuls: bool,

    /// Keep this layer (node name) in float. Repeatable.
    #[arg(long = "keep-float")]
    keep_float: Vec<String>,

    /// Measure every layer's sensitivity, even when full quantization meets the budget.
    #[arg(long)]
    rank_layers: bool,

    /// Samples per run during calibration and evaluation.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,

    /// Batch sizes at which to time the float and quantized models on each backend
    /// (comma-separated); 0 skips timing.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    latency_batch: Vec<usize>,

    /// Timed runs per latency measurement.
    #[arg(long, default_value_t = 20)]
    latency_runs: usize,

    /// Also write the report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    backend: BackendArgs,
}

impl QuantizeArgs {
    fn config(&self) -> QuantizeConfig {
        QuantizeConfig {
            mode: self.mode,
            precision: self.precision,
            calibration: self.calibration.clone(),
            method: match self.calibration_method.as_str() {
                "percentile" => CalibrationMethod::Percentile {
                    percentile: self.percentile,
                },
                "entropy" => CalibrationMethod::Entropy,
                _ => CalibrationMethod::MinMax,
            },
            calibration_samples: self.calibration_samples.max(1),
            eval: self.eval.clone(),
            eval_samples: self.eval_samples,
            eval_output: self.eval_output.clone(),
            metric: self.metric,
            max_accuracy_drop: self.max_accuracy_drop,
            activation_type: self.activation_type,
            reduce_range: match self.reduce_range.as_str() {
                "on" => true,
                "off" => false,
                _ => lrai_quant::default_reduce_range(),
            },
            activation_matmuls: self.quantize_activation_matmuls,
            keep_float: self.keep_float.clone(),
            always_rank: self.rank_layers,
            batch_size: self.batch_size.max(1),
            latency_batches: self
                .latency_batch
                .iter()
                .copied()
                .filter(|&b| b > 0)
                .collect(),
            latency_runs: self.latency_runs.max(1),
        }
    }
}

/// Every backend this binary can start here, for timing (and to prove both load the result).
fn timing_backends(args: &BackendArgs, primary: &Arc<dyn Backend>) -> Vec<Arc<dyn Backend>> {
    let config = args.backend_config();
    let mut out = vec![primary.clone()];
    for kind in [BackendKind::Tract, BackendKind::OnnxRuntime] {
        if kind == primary.kind() {
            continue;
        }
        match create_kind(kind, &config) {
            Ok(b) => out.push(b),
            Err(e) => tracing::warn!(backend = %kind, reason = %e, "not timed on this backend"),
        }
    }
    out.sort_by_key(|b| b.kind().as_str());
    out
}

pub(crate) fn run(args: &QuantizeArgs) -> anyhow::Result<()> {
    if args.precision == Precision::Fp16 && args.mode == Mode::Dynamic {
        bail!("--precision fp16 converts the whole model; leave --mode at its default");
    }
    let primary = create_backend(&args.backend.backend_config())?;
    let engines = Engines {
        timing: timing_backends(&args.backend, &primary),
        primary,
        options: args.backend.session_options(),
    };
    let progress = |msg: &str| eprintln!("quantize: {msg}");
    let outcome = lrai_quant::quantize(&args.model, &args.config(), &engines, &progress)?;
    let report = &outcome.report;
    if let Some(path) = &args.report {
        fs_err::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.render());
    }
    let Some(model) = &outcome.model else {
        let acc = report.accuracy.as_ref();
        bail!(
            "accuracy budget not met (max drop {}, metric {}): full quantization dropped {:.4}; kept up to {} of {} layers in float ({}), best worst-case drop {:.4}; nothing written to {}. Raise --max-accuracy-drop, try another --calibration-method, or give more calibration data",
            args.max_accuracy_drop,
            acc.map_or("-", |a| a.metric.as_str()),
            report.search.full_quantization_drop.unwrap_or(f64::NAN),
            report.search.kept_float.len(),
            report.layers.len(),
            report.search.kept_float.join(", "),
            report.search.steps.iter().map(|s| s.worst_drop).fold(
                report.search.full_quantization_drop.unwrap_or(f64::NAN),
                f64::min
            ),
            args.output.display()
        );
    };
    lrai_onnx::save_model(&args.output, model)
        .with_context(|| format!("writing the quantized model to {}", args.output.display()))?;
    eprintln!("quantize: wrote {}", args.output.display());
    Ok(())
}
