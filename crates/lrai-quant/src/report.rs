//! The quantization report: what was done to each layer and what it cost, as JSON
//! (`--report`, stable field names) and as the table the CLI prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::calibrate::CalibrationMethod;
use crate::eval::{Evaluation, Scores};

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Input model path.
    pub model: String,
    /// `static`, `dynamic` or `fp16`.
    pub mode: String,
    /// `int8` or `fp16`.
    pub precision: String,
    /// Activation integer type (`u8`/`i8`), int8 modes only.
    pub activation_type: Option<String>,
    /// Weight integer type and layout.
    pub weights: Option<String>,
    /// Whether weights use 7 bits.
    pub reduce_range: bool,
    /// Calibration, static mode only.
    pub calibration: Option<CalibrationReport>,
    /// Bytes of the encoded model before and after, and their ratio.
    pub size: SizeReport,
    /// Accuracy or agreement, when evaluation data was given.
    pub accuracy: Option<AccuracyReport>,
    /// One row per quantizable layer.
    pub layers: Vec<LayerReport>,
    /// Op types (and counts) that stay float because this mode does not quantize them.
    pub unsupported_ops: BTreeMap<String, usize>,
    /// How the layer choice was made.
    pub search: SearchReport,
    /// Latency of the float and quantized models on each backend.
    pub latency: Vec<LatencyReport>,
    /// Whether the written model meets the budget (true when no evaluation was asked).
    pub budget_met: bool,
    /// Seconds the whole run took.
    pub elapsed_s: f64,
}

/// Calibration details.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    /// Data file or directory.
    pub data: String,
    /// Samples used.
    pub samples: usize,
    /// Method and its parameter.
    pub method: CalibrationMethod,
    /// Tensors calibrated.
    pub tensors: usize,
}

/// Model sizes.
#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    /// Encoded float model, bytes.
    pub before_bytes: u64,
    /// Encoded quantized model, bytes.
    pub after_bytes: u64,
    /// before / after.
    pub ratio: f64,
}

/// Accuracy before and after.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyReport {
    /// Evaluation data.
    pub data: String,
    /// The output compared.
    pub output: String,
    /// `top1_accuracy`, `top1_agreement` or `cosine_similarity`.
    pub metric: String,
    /// The budget: largest allowed drop (absolute), overall and per group.
    pub max_drop: f64,
    /// Metric value of the float model.
    pub before: f64,
    /// Metric value of the written model.
    pub after: f64,
    /// before − after.
    pub drop: f64,
    /// All scores of the written model against the float model.
    pub scores: Scores,
    /// Per group, when the data has a `group` array.
    pub groups: Vec<GroupReport>,
    /// Largest gap between groups, float model.
    pub max_group_gap_before: Option<f64>,
    /// Largest gap between groups, written model.
    pub max_group_gap_after: Option<f64>,
}

/// One group's accuracy before and after.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// Group id.
    pub group: i64,
    /// Samples in it.
    pub samples: usize,
    /// Metric value, float model.
    pub before: f64,
    /// Metric value, written model.
    pub after: f64,
    /// before − after.
    pub drop: f64,
}

/// One layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Node name.
    pub node: String,
    /// Op type.
    pub op: String,
    /// `int8`, `fp16` or `float32`.
    pub precision: String,
    /// Worst drop (overall or any group) with only this layer quantized, when measured.
    pub sensitivity: Option<f64>,
    /// Mean relative output error with only this layer quantized, when measured.
    pub rel_error: Option<f64>,
    /// Why it stayed float, if it did.
    pub reason: Option<String>,
}

/// How the layer choice was made.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SearchReport {
    /// Candidate models evaluated (full quantization, per-layer, and fallbacks).
    pub evaluations: usize,
    /// Worst drop (overall or any group) with every layer quantized.
    pub full_quantization_drop: Option<f64>,
    /// Overall drop with every layer quantized (groups aside).
    pub full_quantization_overall_drop: Option<f64>,
    /// Static mode with evaluation data: the worst drop with per-tensor weight scales
    /// (tried first, as they are smaller); per-channel is used when it misses the budget.
    pub per_tensor_drop: Option<f64>,
    /// Layers kept float by the search, most sensitive first.
    pub kept_float: Vec<String>,
    /// Layers also made float to join the search's float layers into one run (fewer
    /// float/int8 conversions), in graph order.
    pub joined: Vec<String>,
    /// Each step: layers kept float and the worst drop it gave.
    pub steps: Vec<SearchStep>,
}

/// One step of the fallback search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchStep {
    /// Layers kept float so far.
    pub float_layers: usize,
    /// Worst drop (overall or any group).
    pub worst_drop: f64,
}

/// Latency of one backend at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// `tract` or `onnxruntime`.
    pub backend: String,
    /// Batch size.
    pub batch: usize,
    /// Median ms of the float model.
    pub before_ms: Option<f64>,
    /// Median ms of the quantized model.
    pub after_ms: Option<f64>,
    /// before / after.
    pub speedup: Option<f64>,
    /// Why a model could not be timed here.
    pub error: Option<String>,
}

/// Builds the accuracy section.
pub(crate) fn accuracy_section(
    data: String,
    output: String,
    metric: crate::eval::Metric,
    max_drop: f64,
    before: &Evaluation,
    after: &Evaluation,
) -> AccuracyReport {
    let groups = before
        .groups
        .iter()
        .filter_map(|(id, b)| {
            let a = after.groups.get(id)?;
            Some(GroupReport {
                group: *id,
                samples: b.samples,
                before: b.value(metric),
                after: a.value(metric),
                drop: b.value(metric) - a.value(metric),
            })
        })
        .collect();
    AccuracyReport {
        data,
        output,
        metric: metric.as_str().to_string(),
        max_drop,
        before: before.overall.value(metric),
        after: after.overall.value(metric),
        drop: before.overall.value(metric) - after.overall.value(metric),
        scores: after.overall.clone(),
        groups,
        max_group_gap_before: crate::eval::group_gap(before, metric),
        max_group_gap_after: crate::eval::group_gap(after, metric),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

impl Report {
    /// The report as the CLI prints it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "quantized {} ({} {}{})",
            self.model,
            self.mode,
            self.precision,
            self.activation_type
                .as_ref()
                .map(|a| format!(
                    ", activations {a}, weights {}",
                    self.weights.as_deref().unwrap_or("-")
                ))
                .unwrap_or_default()
        );
        if let Some(c) = &self.calibration {
            let _ = writeln!(
                s,
                "  calibration: {} samples from {}, {} ({} tensors)",
                c.samples,
                c.data,
                c.method.as_str(),
                c.tensors
            );
        }
        let _ = writeln!(
            s,
            "  size: {} -> {} bytes ({:.2}x smaller)",
            self.size.before_bytes, self.size.after_bytes, self.size.ratio
        );
        if let Some(a) = &self.accuracy {
            let _ = writeln!(
                s,
                "  {} on {} ({}): {:.4} -> {:.4} (drop {:.4}, budget {:.4})",
                a.metric, a.data, a.output, a.before, a.after, a.drop, a.max_drop
            );
            let _ = writeln!(
                s,
                "  agreement with float: top-1 {:.4}, cosine mean {:.5} min {:.5}, relative error mean {:.4} max {:.4}",
                a.scores.top1_agreement,
                a.scores.cosine_mean,
                a.scores.cosine_min,
                a.scores.rel_error_mean,
                a.scores.rel_error_max
            );
            if !a.groups.is_empty() {
                let _ = writeln!(s, "  per group:");
                for g in &a.groups {
                    let _ = writeln!(
                        s,
                        "    group {:>4} ({:>4} samples): {:.4} -> {:.4} (drop {:.4})",
                        g.group, g.samples, g.before, g.after, g.drop
                    );
                }
                let _ = writeln!(
                    s,
                    "    largest gap between groups: {} -> {}",
                    opt(a.max_group_gap_before, 4),
                    opt(a.max_group_gap_after, 4)
                );
            }
        }
        if !self.layers.is_empty() {
            let int8 = self
                .layers
                .iter()
                .filter(|l| l.precision != "float32")
                .count();
            let _ = writeln!(s, "  layers: {int8} of {} quantized", self.layers.len());
            let _ = writeln!(
                s,
                "    {:<9} {:<8} {:>11} {:>9}  node",
                "precision", "op", "sensitivity", "rel.err"
            );
            for l in &self.layers {
                let _ = writeln!(
                    s,
                    "    {:<9} {:<8} {:>11} {:>9}  {}{}",
                    l.precision,
                    l.op,
                    opt(l.sensitivity, 4),
                    opt(l.rel_error, 4),
                    l.node,
                    l.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
        }
        if !self.unsupported_ops.is_empty() {
            let ops: Vec<String> = self
                .unsupported_ops
                .iter()
                .map(|(o, n)| format!("{o} {n}"))
                .collect();
            let _ = writeln!(
                s,
                "  stay float (not quantized in this mode): {}",
                ops.join(", ")
            );
        }
        for l in &self.latency {
            match &l.error {
                Some(e) => {
                    let _ = writeln!(s, "  latency {} batch {}: {e}", l.backend, l.batch);
                }
                None => {
                    let _ = writeln!(
                        s,
                        "  latency {} batch {}: {} -> {} ms ({}x)",
                        l.backend,
                        l.batch,
                        opt(l.before_ms, 3),
                        opt(l.after_ms, 3),
                        opt(l.speedup, 2)
                    );
                }
            }
        }
        let per_tensor = self.search.per_tensor_drop.map_or(String::new(), |d| {
            let used = self
                .weights
                .as_deref()
                .is_some_and(|w| w.contains("per-tensor"));
            format!(
                " per-tensor weights: drop {d:.4} ({});",
                if used {
                    "used"
                } else {
                    "over budget, per-channel used"
                }
            )
        });
        let _ = writeln!(
            s,
            "  search:{per_tensor} {} evaluations, {} layers kept float{}; {:.1} s",
            self.search.evaluations,
            self.search.kept_float.len(),
            if self.search.joined.is_empty() {
                String::new()
            } else {
                format!(
                    " and {} more to make them one run",
                    self.search.joined.len()
                )
            },
            self.elapsed_s
        );
        s
    }
}
