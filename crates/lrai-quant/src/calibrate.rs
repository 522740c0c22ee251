//! Calibration: run the float model on sample data with the tensors of interest added
//! as graph outputs, and turn what they held into ranges.
//!
//! - min-max: the observed range (ONNX Runtime's default).
//! - percentile: `|x|` clipped at a percentile (99.999 by default, as ONNX Runtime),
//!   so rare outliers do not stretch the scale.
//! - entropy: the clipping threshold that minimises the KL divergence between the
//!   histogram of `|x|` and its quantized version (TensorRT's calibrator; 2048 bins).
//!
//! Histograms need the range first, so those two methods run the data twice rather
//! than holding every activation of every sample in memory (mobilenet_v2 makes about
//! 7 M floats of activations per image).

use std::collections::HashMap;
use std::sync::Arc;

use lrai_backend::{Backend, ModelSource, Session, SessionOptions};
use lrai_core::{DataType, Tensor};
use lrai_onnx::ModelProto;
use prost::Message;
use serde::Serialize;

use crate::graph::{self, FLOAT};
use crate::{Progress, QuantError, Result};

/// Histogram bins for percentile and entropy calibration.
pub const HISTOGRAM_BINS: usize = 2048;

/// How activation ranges are chosen from calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "name")]
pub enum CalibrationMethod {
    /// The observed min and max.
    MinMax,
    /// `|x|` clipped at this percentile (0–100).
    Percentile {
        /// The percentile, e.g. 99.999.
        percentile: f64,
    },
    /// The KL-optimal clipping threshold.
    Entropy,
}

impl CalibrationMethod {
    /// The name used on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            CalibrationMethod::MinMax => "minmax",
            CalibrationMethod::Percentile { .. } => "percentile",
            CalibrationMethod::Entropy => "entropy",
        }
    }
}

/// A tensor's range as calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    /// Lowest value kept.
    pub min: f32,
    /// Highest value kept.
    pub max: f32,
}

#[derive(Debug, Clone)]
struct Observed {
    min: f32,
    max: f32,
    hist: Vec<u64>,
}

/// Builds a session for a model held in memory.
pub(crate) fn load_session(
    backend: &Arc<dyn Backend>,
    options: &SessionOptions,
    name: &str,
    model: &ModelProto,
) -> Result<Arc<dyn Session>> {
    let source = ModelSource::from_bytes(name, model.encode_to_vec().into())
        .map_err(|e| QuantError::backend(format!("loading {name}"), e))?;
    backend
        .load(&source, options)
        .map_err(|e| QuantError::backend(format!("loading {name} on {}", backend.kind()), e))
}

/// The model with `tensors` added as FLOAT graph outputs.
pub(crate) fn with_outputs(model: &ModelProto, tensors: &[String]) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        let existing: std::collections::HashSet<String> =
            g.output.iter().filter_map(|v| v.name.clone()).collect();
        for t in tensors {
            if !existing.contains(t) {
                g.output.push(graph::value_info(t, FLOAT));
            }
        }
    }
    m
}

fn floats(t: &Tensor) -> Option<std::borrow::Cow<'_, [f32]>> {
    (t.dtype() == DataType::F32)
        .then(|| t.as_slice::<f32>().ok())
        .flatten()
}

/// Calibrates `tensors` of `model` on `batches`.
///
/// # Errors
/// [`QuantError::Backend`] when the model cannot be loaded or run with the extra outputs.
pub(crate) fn calibrate(
    model: &ModelProto,
    tensors: &[String],
    backend: &Arc<dyn Backend>,
    options: &SessionOptions,
    batches: &[Vec<(String, Tensor)>],
    method: CalibrationMethod,
    progress: &Progress<'_>,
) -> Result<HashMap<String, Range>> {
    let augmented = with_outputs(model, tensors);
    let session = load_session(backend, options, "calibration model", &augmented)?;
    let mut seen: HashMap<String, Observed> = tensors
        .iter()
        .map(|t| {
            (
                t.clone(),
                Observed {
                    min: f32::INFINITY,
                    max: f32::NEG_INFINITY,
                    hist: Vec::new(),
                },
            )
        })
        .collect();
    let passes = if method == CalibrationMethod::MinMax {
        1
    } else {
        2
    };
    for pass in 0..passes {
        for (i, batch) in batches.iter().enumerate() {
            progress(&format!(
                "calibration ({}): pass {}/{passes}, batch {}/{}",
                method.as_str(),
                pass + 1,
                i + 1,
                batches.len()
            ));
            let outputs = session
                .run(batch)
                .map_err(|e| QuantError::backend("running calibration data", e))?;
            for (name, t) in &outputs {
                let (Some(obs), Some(values)) = (seen.get_mut(name), floats(t)) else {
                    continue;
                };
                if pass == 0 {
                    for &v in values.iter().filter(|v| v.is_finite()) {
                        obs.min = obs.min.min(v);
                        obs.max = obs.max.max(v);
                    }
                } else {
                    add_to_histogram(obs, &values);
                }
            }
        }
    }
    let mut out = HashMap::new();
    for (name, obs) in seen {
        if !obs.min.is_finite() || !obs.max.is_finite() {
            // Never produced a finite float (an empty tensor, or not float after all).
            continue;
        }
        out.insert(name, range_of(&obs, method));
    }
    Ok(out)
}

fn add_to_histogram(obs: &mut Observed, values: &[f32]) {
    if obs.hist.is_empty() {
        obs.hist = vec![0; HISTOGRAM_BINS];
    }
    let absmax = obs.min.abs().max(obs.max.abs());
    if absmax <= 0.0 {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let per = HISTOGRAM_BINS as f32 / absmax;
    for &v in values.iter().filter(|v| v.is_finite()) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let b = ((v.abs() * per) as usize).min(HISTOGRAM_BINS - 1);
        obs.hist[b] += 1;
    }
}

fn range_of(obs: &Observed, method: CalibrationMethod) -> Range {
    let absmax = obs.min.abs().max(obs.max.abs());
    let threshold = match method {
        CalibrationMethod::MinMax => {
            return Range {
                min: obs.min,
                max: obs.max,
            };
        }
        CalibrationMethod::Percentile { percentile } => {
            percentile_threshold(&obs.hist, absmax, percentile)
        }
        CalibrationMethod::Entropy => {
            // One-sided tensors (ReLU outputs) use all 256 u8 levels; signed ones 128 per side.
            let levels = if obs.min >= 0.0 { 256 } else { 128 };
            entropy_threshold(&obs.hist, absmax, levels)
        }
    };
    Range {
        min: obs.min.max(-threshold),
        max: obs.max.min(threshold),
    }
}

/// The value of `|x|` below which `percentile` % of the histogram's mass lies.
pub(crate) fn percentile_threshold(hist: &[u64], absmax: f32, percentile: f64) -> f32 {
    let total: u64 = hist.iter().sum();
    if total == 0 || hist.is_empty() {
        return absmax;
    }
    #[allow(clippy::cast_precision_loss)]
    let target = total as f64 * percentile.clamp(0.0, 100.0) / 100.0;
    let mut acc = 0u64;
    for (i, &c) in hist.iter().enumerate() {
        acc += c;
        #[allow(clippy::cast_precision_loss)]
        if acc as f64 >= target {
            #[allow(clippy::cast_precision_loss)]
            return absmax * (i + 1) as f32 / hist.len() as f32;
        }
    }
    absmax
}

/// The KL-optimal threshold for quantizing a histogram of `|x|` into `levels` levels.
pub(crate) fn entropy_threshold(hist: &[u64], absmax: f32, levels: usize) -> f32 {
    let bins = hist.len();
    if bins <= levels || hist.iter().all(|&c| c == 0) {
        return absmax;
    }
    let mut best = (f64::INFINITY, bins);
    #[allow(clippy::cast_precision_loss)]
    for i in levels..=bins {
        // Reference: the first i bins, with everything beyond clipped into the last one.
        let mut p: Vec<f64> = hist[..i].iter().map(|&c| c as f64).collect();
        let outliers: u64 = hist[i..].iter().sum();
        p[i - 1] += outliers as f64;
        // Candidate: the first i bins merged into `levels` groups and expanded back,
        // spreading each group's mass over its non-empty bins.
        let mut q = vec![0f64; i];
        for j in 0..levels {
            let start = j * i / levels;
            let end = ((j + 1) * i / levels).max(start + 1).min(i);
            let total: f64 = hist[start..end].iter().map(|&c| c as f64).sum();
            let nonzero = hist[start..end].iter().filter(|&&c| c != 0).count();
            if nonzero == 0 {
                continue;
            }
            for k in start..end {
                if hist[k] != 0 {
                    q[k] = total / nonzero as f64;
                }
            }
        }
        let kl = kl_divergence(&p, &q);
        if kl < best.0 {
            best = (kl, i);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let t = absmax * best.1 as f32 / bins as f32;
    t
}

fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let ps: f64 = p.iter().sum();
    let qs: f64 = q.iter().sum();
    if ps <= 0.0 || qs <= 0.0 {
        return f64::INFINITY;
    }
    let eps = 1e-10;
    p.iter()
        .zip(q)
        .filter(|(pv, _)| **pv > 0.0)
        .map(|(pv, qv)| {
            let pn = pv / ps;
            let qn = (qv / qs).max(eps);
            pn * (pn / qn).ln()
        })
        .sum()
}

/// Observes `values` the way calibration does and returns the range the method picks
/// (for tests and tools that calibrate data they already hold).
pub fn range_for_values(values: &[f32], method: CalibrationMethod) -> Range {
    let mut obs = Observed {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        hist: Vec::new(),
    };
    for &v in values.iter().filter(|v| v.is_finite()) {
        obs.min = obs.min.min(v);
        obs.max = obs.max.max(v);
    }
    if !obs.min.is_finite() {
        return Range { min: 0.0, max: 0.0 };
    }
    if method != CalibrationMethod::MinMax {
        add_to_histogram(&mut obs, values);
    }
    range_of(&obs, method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_keeps_the_observed_range() {
        let r = range_for_values(&[-1.0, 0.5, 3.0], CalibrationMethod::MinMax);
        assert_eq!(
            r,
            Range {
                min: -1.0,
                max: 3.0
            }
        );
    }

    #[test]
    fn percentile_ignores_a_rare_outlier() {
        let mut v: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        v.push(100.0);
        let r = range_for_values(&v, CalibrationMethod::Percentile { percentile: 99.9 });
        assert!(r.max < 1.2 && r.max > 0.9, "{r:?}");
        assert_eq!(r.min, 0.0, "one-sided data stays one-sided");
    }

    #[test]
    fn entropy_clips_long_tails_but_keeps_the_bulk() {
        // Laplace-like: many small values, a thin tail up to 20.
        let mut v = Vec::new();
        for i in 0..20_000 {
            let u = (i as f32 + 0.5) / 20_000.0;
            v.push(-(1.0 - u).ln());
        }
        v.push(20.0);
        let r = range_for_values(&v, CalibrationMethod::Entropy);
        assert!(r.max < 15.0, "tail clipped: {r:?}");
        assert!(r.max > 3.0, "bulk kept: {r:?}");
    }
}
