//! The quantization run: check the model, read the data, calibrate, rewrite, and when
//! evaluation data is given, hold the result to the accuracy budget.
//!
//! The budget search follows OpenVINO NNCF's accuracy-control idea with the ranking the
//! issue asks for: if the fully quantized model misses the budget, each layer is
//! quantized alone to measure its sensitivity (worst drop over the whole set and every
//! group, ties broken by output error), then the most sensitive layers go back to float
//! one at a time until the budget holds. A model that only meets the budget with no
//! quantized layer left is a failure: nothing is written, and the report says what was
//! tried.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use lrai_core::TensorSpec;
use lrai_onnx::ModelProto;
use prost::Message;

use crate::calibrate::{self, Range};
use crate::data::{self, Dataset};
use crate::eval::{self, Evaluation, Metric, Rows};
use crate::plan::{Plan, check_not_quantized};
use crate::qdq::{StaticPlan, StaticSettings};
use crate::report::{CalibrationReport, LayerReport, Report, SearchReport, SearchStep, SizeReport};
use crate::{
    Engines, Mode, Precision, Progress, QuantError, QuantizeConfig, Result, dynamic, fp16, latency,
    qdq,
};

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The quantized model; `None` when the budget could not be met.
    pub model: Option<ModelProto>,
    /// What was done and measured.
    pub report: Report,
}

enum Rewriter {
    Static {
        plan: StaticPlan,
        ranges: HashMap<String, Range>,
        settings: StaticSettings,
    },
    Dynamic {
        plan: dynamic::DynamicPlan,
        reduce_range: bool,
    },
    Fp16 {
        plan: Plan,
    },
}

impl Rewriter {
    fn plan(&self) -> &Plan {
        match self {
            Rewriter::Static { plan, .. } => &plan.plan,
            Rewriter::Dynamic { plan, .. } => &plan.plan,
            Rewriter::Fp16 { plan } => plan,
        }
    }

    fn apply(
        &self,
        model: &ModelProto,
        name: &str,
        float_layers: &HashSet<String>,
    ) -> Result<ModelProto> {
        let mut m = match self {
            Rewriter::Static {
                plan,
                ranges,
                settings,
            } => qdq::apply(model, plan, ranges, float_layers, *settings),
            Rewriter::Dynamic { plan, reduce_range } => {
                dynamic::apply(model, plan, float_layers, *reduce_range)
            }
            Rewriter::Fp16 { .. } => fp16::apply(model, name),
        };
        if let (Ok(m), Some(original)) = (&mut m, &model.graph)
            && let Some(graph) = &mut m.graph
        {
            crate::graph::share_constants(graph);
            crate::graph::drop_default_attributes(graph);
            crate::graph::compact_names(original, graph);
        }
        m.map_err(|e| match e {
            QuantError::Model { reason, .. } => QuantError::Model {
                model: name.to_string(),
                reason,
            },
            other => other,
        })
    }
}

/// How many runs of consecutive float layers `float` makes in graph order.
fn float_runs(layers: &[crate::Layer], float: &HashSet<String>) -> usize {
    let mut runs = 0;
    let mut previous = false;
    for l in layers {
        let f = float.contains(&l.key);
        if f && !previous {
            runs += 1;
        }
        previous = f;
    }
    runs
}

/// Reads and quantizes the model at `path`.
///
/// # Errors
/// See [`quantize_model`]; also [`QuantError::Onnx`] when the file is not a model.
pub fn quantize(
    path: &Path,
    config: &QuantizeConfig,
    engines: &Engines,
    progress: &Progress<'_>,
) -> Result<Outcome> {
    let model = lrai_onnx::load_model(path)?;
    quantize_model(
        &model,
        &path.display().to_string(),
        config,
        engines,
        progress,
    )
}

fn io_specs(model: &ModelProto, name: &str) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let graph = model.graph.as_ref().ok_or_else(|| QuantError::Model {
        model: name.to_string(),
        reason: "it has no graph".into(),
    })?;
    let conv = |infos: Vec<lrai_onnx::IoInfo>, role| {
        infos
            .iter()
            .map(|i| i.to_spec(role).map_err(QuantError::from))
            .collect::<Result<Vec<_>>>()
    };
    Ok((
        conv(lrai_onnx::graph_inputs(graph), "input")?,
        conv(lrai_onnx::graph_outputs(graph), "output")?,
    ))
}

/// Evaluates candidates against the float model.
struct Judge<'a> {
    engines: &'a Engines,
    batches: Vec<Vec<(String, lrai_core::Tensor)>>,
    data: &'a Dataset,
    output: String,
    metric: Metric,
    reference: Rows,
    baseline: Evaluation,
    evaluations: usize,
}

impl Judge<'_> {
    fn judge(&mut self, model: &ModelProto) -> Result<(Evaluation, f64)> {
        self.evaluations += 1;
        let rows = eval::run_model(
            &self.engines.primary,
            &self.engines.options,
            model,
            &self.batches,
            &self.output,
        )?;
        let e = eval::evaluate(&rows, &self.reference, self.data);
        let drop = eval::worst_drop(&self.baseline, &e, self.metric);
        Ok((e, drop))
    }
}

fn nothing_to_quantize(name: &str, mode: Mode) -> QuantError {
    let (mode, hint) = match mode {
        Mode::Static => (
            "static",
            "static mode quantizes Conv, Gemm, MatMul, Add and pools with float weights; try --precision fp16",
        ),
        Mode::Dynamic => (
            "dynamic",
            "dynamic mode quantizes MatMul/Gemm with constant weights and Gather tables; try --mode static for conv nets",
        ),
    };
    QuantError::NothingToQuantize {
        model: name.to_string(),
        mode: mode.into(),
        hint: hint.into(),
    }
}

/// Quantizes a decoded model; `name` is used in messages and the report.
///
/// # Errors
/// [`QuantError::AlreadyQuantized`], [`QuantError::Model`] (no graph, old opset,
/// external data), [`QuantError::NothingToQuantize`], [`QuantError::Data`] (data that
/// does not fit), [`QuantError::Options`] (contradictory options) and
/// [`QuantError::Backend`] (a model that cannot be run). A budget that cannot be met is
/// not an error: the outcome has no model and the report says what was tried.
#[allow(clippy::too_many_lines)]
pub fn quantize_model(
    model: &ModelProto,
    name: &str,
    config: &QuantizeConfig,
    engines: &Engines,
    progress: &Progress<'_>,
) -> Result<Outcome> {
    let started = Instant::now();
    check_not_quantized(model, name)?;
    if config.max_accuracy_drop.is_nan() || config.max_accuracy_drop < 0.0 {
        return Err(QuantError::Options(format!(
            "--max-accuracy-drop must be 0 or more (absolute, e.g. 0.01 for one point), got {}",
            config.max_accuracy_drop
        )));
    }
    let (inputs, outputs) = io_specs(model, name)?;
    let batch = data::batch_for(&inputs, config.batch_size);
    let fixed = data::has_fixed_batch(&inputs);

    let eval_data = match &config.eval {
        Some(p) => {
            let d = data::load_dataset("eval", p, &inputs)?;
            Some(match config.eval_samples {
                Some(n) => d.take(n)?,
                None => d,
            })
        }
        None => None,
    };

    // Build the rewrite (calibrating first in static mode).
    let mut calibration_report = None;
    let mut calibration_data = None;
    let rewriter = match (config.precision, config.mode) {
        (Precision::Fp16, _) => Rewriter::Fp16 {
            plan: fp16::plan(model),
        },
        (Precision::Int8, Mode::Dynamic) => {
            let plan = dynamic::analyze(model, name, config.activation_matmuls)?;
            if plan.plan.layers.is_empty() {
                return Err(nothing_to_quantize(name, Mode::Dynamic));
            }
            Rewriter::Dynamic {
                plan,
                reduce_range: config.reduce_range,
            }
        }
        (Precision::Int8, Mode::Static) => {
            let Some(path) = &config.calibration else {
                return Err(QuantError::Options(
                    "static mode needs calibration data: pass --calibration FILE.npz (or a directory of .npy files), or use --mode dynamic".into(),
                ));
            };
            let plan = qdq::analyze(model, name)?;
            if plan.plan.layers.is_empty() {
                return Err(nothing_to_quantize(name, Mode::Static));
            }
            let d = data::load_dataset("calibration", path, &inputs)?
                .take(config.calibration_samples)?;
            let batches = d.batches(batch, fixed)?;
            let ranges = calibrate::calibrate(
                model,
                &plan.calibrate,
                &engines.primary,
                &engines.options,
                &batches,
                config.method,
                progress,
            )?;
            calibration_report = Some(CalibrationReport {
                data: path.display().to_string(),
                samples: d.samples,
                method: config.method,
                tensors: ranges.len(),
            });
            calibration_data = Some(d);
            Rewriter::Static {
                plan,
                ranges,
                settings: StaticSettings {
                    activation: config.activation_type,
                    reduce_range: config.reduce_range,
                    // Tried first when the budget can be checked (see below).
                    per_tensor: eval_data.is_some(),
                },
            }
        }
    };
    let layers = rewriter.plan().layers.clone();
    let known: HashSet<&str> = layers.iter().map(|l| l.key.as_str()).collect();
    if let Some(bad) = config
        .keep_float
        .iter()
        .find(|k| !known.contains(k.as_str()))
    {
        let some: Vec<&str> = layers.iter().take(8).map(|l| l.key.as_str()).collect();
        return Err(QuantError::Options(format!(
            "--keep-float '{bad}' is not a quantizable layer of this model (layers: {}{})",
            some.join(", "),
            if layers.len() > 8 { ", …" } else { "" }
        )));
    }
    let user_float: HashSet<String> = crate::layer_set(&config.keep_float);
    let mut float_layers = user_float.clone();
    let mut sensitivity: HashMap<String, (f64, f64)> = HashMap::new();
    let mut search = SearchReport::default();
    let mut accuracy = None;
    let mut budget_met = true;

    let mut rewriter = rewriter;
    let mut candidate = rewriter.apply(model, name, &float_layers)?;

    if let Some(d) = &eval_data {
        let metric = config.metric.resolve(d.labels.is_some());
        if metric == Metric::Top1 && d.labels.is_none() {
            return Err(QuantError::Data {
                role: "eval",
                path: config.eval.clone().unwrap_or_default(),
                reason: "--metric top1 needs a 'labels' (or 'y') array with one class per sample"
                    .into(),
            });
        }
        let output = match &config.eval_output {
            Some(o) if outputs.iter().any(|s| &s.name == o) => o.clone(),
            Some(o) => {
                return Err(QuantError::Options(format!(
                    "--eval-output '{o}' is not an output of the model (outputs: {})",
                    outputs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            None => outputs.first().map(|s| s.name.clone()).unwrap_or_default(),
        };
        progress("evaluating the float model");
        let batches = d.batches(batch, fixed)?;
        let reference =
            eval::run_model(&engines.primary, &engines.options, model, &batches, &output)?;
        let baseline = eval::evaluate(&reference, &reference, d);
        let mut judge = Judge {
            engines,
            batches,
            data: d,
            output: output.clone(),
            metric,
            reference,
            baseline,
            evaluations: 0,
        };
        progress("evaluating the quantized model");
        let (mut result, mut full_drop) = judge.judge(&candidate)?;
        let max = config.max_accuracy_drop + 1e-12;
        // Per-tensor weight scales first (one scale per weight: on small models the
        // per-channel scales and the per-channel bias scales are a tenth of the file);
        // per-channel when that misses the budget.
        if let Rewriter::Static { settings, .. } = &mut rewriter
            && settings.per_tensor
        {
            search.per_tensor_drop = Some(full_drop);
            if full_drop > max {
                settings.per_tensor = false;
                progress("per-tensor weights miss the budget; evaluating per-channel weights");
                candidate = rewriter.apply(model, name, &float_layers)?;
                (result, full_drop) = judge.judge(&candidate)?;
            }
        }
        search.full_quantization_drop = Some(full_drop);
        search.full_quantization_overall_drop =
            Some(judge.baseline.overall.value(metric) - result.overall.value(metric));
        let missed = full_drop > max;
        if (missed || config.always_rank) && !layers.is_empty() {
            let all: HashSet<String> = layers.iter().map(|l| l.key.clone()).collect();
            let todo: Vec<&str> = layers
                .iter()
                .map(|l| l.key.as_str())
                .filter(|k| !user_float.contains(*k))
                .collect();
            for (i, key) in todo.iter().enumerate() {
                eval::announce(progress, &format!("sensitivity: {key}"), i, todo.len());
                let mut others = all.clone();
                others.remove(*key);
                let m = rewriter.apply(model, name, &others)?;
                let (e, drop) = judge.judge(&m)?;
                sensitivity.insert((*key).to_string(), (drop, e.overall.rel_error_mean));
            }
        }
        if missed {
            budget_met = false;
            let mut ranked: Vec<(&String, &(f64, f64))> = sensitivity.iter().collect();
            ranked.sort_by(|a, b| {
                b.1.0
                    .total_cmp(&a.1.0)
                    .then(b.1.1.total_cmp(&a.1.1))
                    .then(a.0.cmp(b.0))
            });
            let total = ranked.len();
            for (i, (key, _)) in ranked.iter().enumerate() {
                float_layers.insert((*key).clone());
                if float_layers.len() >= layers.len() {
                    break;
                }
                eval::announce(progress, &format!("fallback: {key} kept float"), i, total);
                let m = rewriter.apply(model, name, &float_layers)?;
                let (e, drop) = judge.judge(&m)?;
                search.kept_float.push((*key).clone());
                search.steps.push(SearchStep {
                    float_layers: float_layers.len(),
                    worst_drop: drop,
                });
                if drop <= max {
                    budget_met = true;
                    candidate = m;
                    result = e;
                    break;
                }
            }
            // Float layers scattered among int8 ones pay a conversion at every border (in
            // ONNX Runtime a QuantizeLinear or DequantizeLinear plus a layout reorder or
            // transpose of the whole tensor). mobilenet_v2's 9 fallback layers, in two
            // runs, ran 10-18 % slower than the 13 of one run that also meet its budget.
            // So the fallback's span is filled: from its first layer to its last, then one
            // layer further at a time (up to as many as it kept), until the budget holds.
            if budget_met && float_runs(&layers, &float_layers) > 1 {
                let at = |k: &String| layers.iter().position(|l| l.key == *k);
                let span = search.kept_float.iter().filter_map(at);
                let (first, last) = (span.clone().min(), span.max());
                if let (Some(first), Some(last)) = (first, last) {
                    let end = (last + search.kept_float.len()).min(layers.len() - 1);
                    for upto in last..=end {
                        let mut joined = float_layers.clone();
                        joined.extend(layers[first..=upto].iter().map(|l| l.key.clone()));
                        if joined.len() >= layers.len() {
                            break;
                        }
                        if float_runs(&layers, &joined) >= float_runs(&layers, &float_layers) {
                            continue;
                        }
                        progress(&format!(
                            "joining the float layers into one run: {} to {}",
                            layers[first].key, layers[upto].key
                        ));
                        let m = rewriter.apply(model, name, &joined)?;
                        let (e, drop) = judge.judge(&m)?;
                        search.steps.push(SearchStep {
                            float_layers: joined.len(),
                            worst_drop: drop,
                        });
                        if drop <= max {
                            search.joined = layers[first..=upto]
                                .iter()
                                .map(|l| l.key.clone())
                                .filter(|k| !float_layers.contains(k))
                                .collect();
                            float_layers = joined;
                            candidate = m;
                            result = e;
                            break;
                        }
                    }
                }
            }
        }
        search.evaluations = judge.evaluations;
        accuracy = Some(crate::report::accuracy_section(
            config
                .eval
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            output,
            metric,
            config.max_accuracy_drop,
            &judge.baseline,
            &result,
        ));
    }

    let layer_rows: Vec<LayerReport> = layers
        .iter()
        .map(|l| {
            let float = float_layers.contains(&l.key);
            let reason = if user_float.contains(&l.key) {
                Some("kept float by --keep-float".to_string())
            } else if float && budget_met {
                Some("kept float to meet the accuracy budget".to_string())
            } else {
                None
            };
            let s = sensitivity.get(&l.key);
            LayerReport {
                node: l.key.clone(),
                op: l.op.clone(),
                precision: if float && budget_met {
                    "float32"
                } else {
                    "int8"
                }
                .into(),
                sensitivity: s.map(|s| s.0),
                rel_error: s.map(|s| s.1),
                reason,
            }
        })
        .collect();

    let before_bytes = model.encoded_len() as u64;
    let after_bytes = candidate.encoded_len() as u64;
    let latency = if budget_met && !config.latency_batches.is_empty() {
        let timing = latency::Timing {
            before: model,
            after: &candidate,
            specs: &inputs,
            data: eval_data.as_ref().or(calibration_data.as_ref()),
            batches: &config.latency_batches,
            runs: config.latency_runs,
        };
        latency::measure(&engines.timing, &engines.options, &timing, progress)
    } else {
        Vec::new()
    };
    let int8 = config.precision == Precision::Int8;
    #[allow(clippy::cast_precision_loss)]
    let report = Report {
        model: name.to_string(),
        mode: match (config.precision, config.mode) {
            (Precision::Fp16, _) => "fp16",
            (_, Mode::Static) => "static",
            (_, Mode::Dynamic) => "dynamic",
        }
        .into(),
        precision: if int8 { "int8" } else { "fp16" }.into(),
        activation_type: int8.then(|| match (config.mode, config.activation_type) {
            (Mode::Dynamic, _) | (Mode::Static, crate::ActivationType::U8) => {
                "u8 (asymmetric)".to_string()
            }
            (Mode::Static, crate::ActivationType::I8) => "i8 (symmetric)".to_string(),
        }),
        weights: int8.then(|| {
            let per_tensor = matches!(
                &rewriter,
                Rewriter::Static { settings, .. } if settings.per_tensor
            );
            format!(
                "int8 {} symmetric{}",
                if per_tensor {
                    "per-tensor"
                } else {
                    "per-channel"
                },
                match (config.reduce_range, config.mode) {
                    (false, _) => "",
                    // See `qdq::apply`: a u8 input with zero point 0 cannot saturate.
                    (true, Mode::Static) if config.activation_type == crate::ActivationType::U8 => {
                        ", 7-bit (reduce range) except after a zero-point-0 u8 input (8-bit)"
                    }
                    (true, _) => ", 7-bit (reduce range)",
                }
            )
        }),
        reduce_range: int8 && config.reduce_range,
        calibration: calibration_report,
        size: SizeReport {
            before_bytes,
            after_bytes,
            ratio: before_bytes as f64 / (after_bytes.max(1)) as f64,
        },
        accuracy,
        layers: layer_rows,
        unsupported_ops: rewriter.plan().unsupported.clone(),
        search,
        latency,
        budget_met,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    Ok(Outcome {
        model: budget_met.then_some(candidate),
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_runs_counts_consecutive_float_layers() {
        let layers: Vec<crate::Layer> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|k| crate::Layer {
                key: (*k).to_string(),
                op: "Conv".into(),
            })
            .collect();
        let set = |ks: &[&str]| ks.iter().map(|k| (*k).to_string()).collect::<HashSet<_>>();
        assert_eq!(float_runs(&layers, &set(&[])), 0);
        assert_eq!(float_runs(&layers, &set(&["a", "b", "c"])), 1);
        assert_eq!(float_runs(&layers, &set(&["a", "b", "d"])), 2);
        assert_eq!(float_runs(&layers, &set(&["a", "c", "e"])), 3);
    }
}
