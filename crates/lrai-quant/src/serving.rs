//! Quantize-at-load for the server: `config.pbtxt` asks for it with `parameters`, the
//! result is cached next to the model file and reused while its inputs are unchanged.
//!
//! Keys (paths are relative to the model's directory, `<repository>/<model>/`):
//! - `lrai.quantize`: `static`, `dynamic` or `fp16`;
//! - `lrai.quantize_calibration`: calibration data (static mode);
//! - `lrai.quantize_eval`: evaluation data; with it the budget is enforced;
//! - `lrai.quantize_max_drop`: the budget (default 0.01);
//! - `lrai.quantize_method`: `minmax`, `percentile` or `entropy`;
//! - `lrai.quantize_metric`: `auto`, `top1`, `agreement` or `cosine`.
//!
//! The cache is `<stem>.lrai-<mode>.onnx` plus `<stem>.lrai-<mode>.json` (the report and
//! the hash of everything that went in: model bytes, data files, parameters). The hash
//! is FNV-1a, written here, so it stays the same across Rust releases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lrai_backend::{Backend, SessionOptions};

use crate::{
    CalibrationMethod, Engines, Metric, Mode, Precision, QuantError, QuantizeConfig, Result,
};

/// The parameter that turns quantize-at-load on.
pub const QUANTIZE_KEY: &str = "lrai.quantize";

/// What the loader gives.
#[derive(Debug)]
pub struct ServeRequest<'a> {
    /// Model name (for messages).
    pub model: &'a str,
    /// The model file of the version being loaded.
    pub model_path: &'a Path,
    /// The model's directory (`<repository>/<model>`), where data paths are resolved.
    pub model_dir: &'a Path,
    /// `config.pbtxt` parameters.
    pub parameters: &'a BTreeMap<String, String>,
    /// The backend that will serve the model (it also calibrates and evaluates).
    pub backend: &'a Arc<dyn Backend>,
    /// Its session options.
    pub options: &'a SessionOptions,
}

/// The model to load instead, and what to show about it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The quantized model file.
    pub path: PathBuf,
    /// True when the cached file was reused.
    pub reused: bool,
    /// One line for the effective config: mode, size ratio, metric before → after.
    pub summary: String,
    /// The report file next to it.
    pub report_path: PathBuf,
}

fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

fn bad(model: &str, key: &str, value: &str, expected: &str) -> QuantError {
    QuantError::Options(format!(
        "model '{model}': parameters[{key}] = '{value}': expected {expected}"
    ))
}

fn config_for(req: &ServeRequest<'_>, mode: &str) -> Result<QuantizeConfig> {
    let p = req.parameters;
    // Data paths stay inside the model's directory (no '..', no absolute path, no link out).
    let path = |k: &str| -> Result<Option<PathBuf>> {
        p.get(k)
            .map(|v| {
                let what = format!("model '{}': parameters[{k}]", req.model);
                lrai_core::confine::confined(req.model_dir, req.model_dir, v, &what)
                    .map_err(QuantError::Options)
            })
            .transpose()
    };
    let mut c = QuantizeConfig {
        calibration: path("lrai.quantize_calibration")?,
        eval: path("lrai.quantize_eval")?,
        latency_batches: Vec::new(),
        ..QuantizeConfig::default()
    };
    match mode {
        "static" => c.mode = Mode::Static,
        "dynamic" => c.mode = Mode::Dynamic,
        "fp16" => c.precision = Precision::Fp16,
        other => {
            return Err(bad(
                req.model,
                QUANTIZE_KEY,
                other,
                "static, dynamic or fp16",
            ));
        }
    }
    if let Some(v) = p.get("lrai.quantize_max_drop") {
        c.max_accuracy_drop = v.trim().parse().map_err(|_| {
            bad(
                req.model,
                "lrai.quantize_max_drop",
                v,
                "a number such as 0.01",
            )
        })?;
    }
    if let Some(v) = p.get("lrai.quantize_method") {
        c.method = match v.as_str() {
            "minmax" => CalibrationMethod::MinMax,
            "percentile" => CalibrationMethod::Percentile { percentile: 99.999 },
            "entropy" => CalibrationMethod::Entropy,
            other => {
                return Err(bad(
                    req.model,
                    "lrai.quantize_method",
                    other,
                    "minmax, percentile or entropy",
                ));
            }
        };
    }
    if let Some(v) = p.get("lrai.quantize_metric") {
        c.metric = v.parse::<Metric>().map_err(|e| {
            bad(
                req.model,
                "lrai.quantize_metric",
                v,
                e.split(": ")
                    .nth(1)
                    .unwrap_or("auto, top1, agreement or cosine"),
            )
        })?;
    }
    Ok(c)
}

fn input_hash(req: &ServeRequest<'_>, c: &QuantizeConfig) -> Result<String> {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut h, &fs_err::read(req.model_path)?);
    for p in [&c.calibration, &c.eval].into_iter().flatten() {
        if p.is_file() {
            fnv1a(&mut h, &fs_err::read(p)?);
        } else if p.is_dir() {
            let mut files: Vec<PathBuf> = fs_err::read_dir(p)?
                .filter_map(std::result::Result::ok)
                .map(|e| e.path())
                .collect();
            files.sort();
            for f in files.iter().filter(|f| f.is_file()) {
                fnv1a(&mut h, f.display().to_string().as_bytes());
                fnv1a(&mut h, &fs_err::read(f)?);
            }
        }
    }
    for (k, v) in req
        .parameters
        .iter()
        .filter(|(k, _)| k.starts_with("lrai.quantize"))
    {
        fnv1a(&mut h, k.as_bytes());
        fnv1a(&mut h, v.as_bytes());
    }
    fnv1a(&mut h, req.backend.kind().as_str().as_bytes());
    Ok(format!("{h:016x}"))
}

fn summary_of(report: &crate::Report) -> String {
    let mut s = format!(
        "{} {}: {:.2}x smaller",
        report.mode, report.precision, report.size.ratio
    );
    if let Some(a) = &report.accuracy {
        s.push_str(&format!(
            ", {} {:.4} -> {:.4} (budget {})",
            a.metric, a.before, a.after, a.max_drop
        ));
    }
    let float = report
        .layers
        .iter()
        .filter(|l| l.precision == "float32")
        .count();
    if float > 0 {
        s.push_str(&format!(
            ", {float} of {} layers kept float",
            report.layers.len()
        ));
    }
    s
}

/// Quantizes the model a config asks for, or reuses the cached result; `None` when the
/// config does not ask.
///
/// # Errors
/// Bad parameters ([`QuantError::Options`]), everything [`crate::quantize`] can fail
/// with, an unmet budget (the model then does not load), and cache I/O.
pub fn prepare_for_serving(req: &ServeRequest<'_>) -> Result<Option<Prepared>> {
    let Some(mode) = req.parameters.get(QUANTIZE_KEY) else {
        return Ok(None);
    };
    let config = config_for(req, mode)?;
    let hash = input_hash(req, &config)?;
    let stem = req
        .model_path
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let dir = req.model_path.parent().unwrap_or(Path::new("."));
    let path = dir.join(format!("{stem}.lrai-{mode}.onnx"));
    let report_path = dir.join(format!("{stem}.lrai-{mode}.json"));
    if path.is_file()
        && let Ok(text) = fs_err::read_to_string(&report_path)
        && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
        && doc["input_hash"] == hash.as_str()
    {
        let summary = doc["summary"].as_str().unwrap_or_default().to_string();
        return Ok(Some(Prepared {
            path,
            reused: true,
            summary,
            report_path,
        }));
    }
    let engines = Engines {
        primary: Arc::clone(req.backend),
        timing: Vec::new(),
        options: req.options.clone(),
    };
    // Calibration and the budget search can take minutes: say what is happening.
    tracing::info!(model = %req.model, file = %req.model_path.display(), mode, "quantizing at load (no matching cache)");
    let progress = |msg: &str| tracing::info!(model = %req.model, "quantize: {msg}");
    let outcome = crate::quantize(req.model_path, &config, &engines, &progress)?;
    let summary = summary_of(&outcome.report);
    let Some(model) = outcome.model else {
        return Err(QuantError::Options(format!(
            "model '{}': quantization misses the accuracy budget ({summary}); raise lrai.quantize_max_drop or remove lrai.quantize",
            req.model
        )));
    };
    let doc = serde_json::json!({
        "input_hash": hash,
        "summary": summary,
        "report": outcome.report,
    });
    // Report last: a crash between the two writes leaves a model without a matching
    // report, which is redone rather than trusted.
    lrai_core::npy::write_atomic(&path, |w| {
        use prost::Message;
        w.write_all(&model.encode_to_vec())
    })?;
    let text =
        serde_json::to_string_pretty(&doc).map_err(|e| QuantError::Options(e.to_string()))?;
    lrai_core::npy::write_atomic(&report_path, |w| w.write_all(text.as_bytes()))?;
    Ok(Some(Prepared {
        path,
        reused: false,
        summary,
        report_path,
    }))
}
