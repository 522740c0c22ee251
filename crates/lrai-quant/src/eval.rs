//! Measuring a candidate: top-1 accuracy against labels, or agreement with the float
//! model's outputs (top-1 agreement, relative error, cosine similarity), overall and per
//! group.
//!
//! Relative error is per sample, `‖q − f‖₂ / ‖f‖₂` over the output row, because an
//! element-wise ratio explodes wherever the float output is near zero.

use std::collections::BTreeMap;
use std::sync::Arc;

use lrai_backend::{Backend, Session, SessionOptions};
use lrai_core::{DataType, Tensor};
use lrai_onnx::ModelProto;
use serde::Serialize;

use crate::calibrate::load_session;
use crate::data::Dataset;
use crate::{Progress, QuantError, Result};

/// What the budget is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Top-1 accuracy with labels, top-1 agreement without.
    #[default]
    Auto,
    /// Top-1 accuracy against `labels` (required).
    Top1,
    /// Top-1 agreement with the float model.
    Agreement,
    /// Mean cosine similarity with the float model's outputs (embeddings).
    Cosine,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Metric::Auto),
            "top1" | "accuracy" => Ok(Metric::Top1),
            "agreement" => Ok(Metric::Agreement),
            "cosine" => Ok(Metric::Cosine),
            other => Err(format!(
                "unknown metric '{other}': expected auto, top1, agreement or cosine"
            )),
        }
    }
}

impl Metric {
    /// The metric actually used given whether labels exist.
    pub(crate) fn resolve(self, has_labels: bool) -> Metric {
        match self {
            Metric::Auto if has_labels => Metric::Top1,
            Metric::Auto => Metric::Agreement,
            m => m,
        }
    }

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Auto => "auto",
            Metric::Top1 => "top1_accuracy",
            Metric::Agreement => "top1_agreement",
            Metric::Cosine => "cosine_similarity",
        }
    }
}

/// One output row per sample, as f32.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    pub(crate) width: usize,
    pub(crate) values: Vec<f32>,
}

impl Rows {
    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.width..(i + 1) * self.width]
    }
    fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }
}

/// Runs `session` over the dataset and keeps output `output` (flattened per sample).
pub(crate) fn run_rows(
    session: &dyn Session,
    batches: &[Vec<(String, Tensor)>],
    output: &str,
) -> Result<Rows> {
    let mut values = Vec::new();
    let mut width = 0;
    for batch in batches {
        let outs = session
            .run(batch)
            .map_err(|e| QuantError::backend("running evaluation data", e))?;
        let Some((_, t)) = outs.iter().find(|(n, _)| n == output) else {
            return Err(QuantError::Options(format!(
                "the model has no output '{output}'"
            )));
        };
        let rows = t.shape().first().copied().unwrap_or(1).max(1);
        width = t.len() / rows;
        let v: Vec<f32> = match t.dtype() {
            DataType::F32 => t.as_slice::<f32>()?.into_owned(),
            _ => {
                #[allow(clippy::cast_possible_truncation)]
                let v = t.to_f64_vec()?.into_iter().map(|x| x as f32).collect();
                v
            }
        };
        values.extend(v);
    }
    Ok(Rows { width, values })
}

/// Loads `model` and runs it over the batches.
pub(crate) fn run_model(
    backend: &Arc<dyn Backend>,
    options: &SessionOptions,
    model: &ModelProto,
    batches: &[Vec<(String, Tensor)>],
    output: &str,
) -> Result<Rows> {
    let session = load_session(backend, options, "candidate model", model)?;
    run_rows(session.as_ref(), batches, output)
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += f64::from(*x) * f64::from(*y);
        aa += f64::from(*x) * f64::from(*x);
        bb += f64::from(*y) * f64::from(*y);
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

fn rel_error(q: &[f32], f: &[f32]) -> f64 {
    let (mut d, mut n) = (0f64, 0f64);
    for (x, y) in q.iter().zip(f) {
        d += (f64::from(*x) - f64::from(*y)).powi(2);
        n += f64::from(*y).powi(2);
    }
    if n == 0.0 {
        return if d == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (d / n).sqrt()
}

/// Scores of one model on one set of samples.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scores {
    /// Samples scored.
    pub samples: usize,
    /// Top-1 accuracy, when labels exist.
    pub accuracy: Option<f64>,
    /// Share of samples with the float model's top-1 class.
    pub top1_agreement: f64,
    /// Mean cosine similarity with the float outputs.
    pub cosine_mean: f64,
    /// Lowest cosine similarity.
    pub cosine_min: f64,
    /// Mean per-sample relative L2 error.
    pub rel_error_mean: f64,
    /// Largest per-sample relative L2 error.
    pub rel_error_max: f64,
}

impl Scores {
    /// The value the budget is about (higher is better).
    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Top1 | Metric::Auto => self.accuracy.unwrap_or(self.top1_agreement),
            Metric::Agreement => self.top1_agreement,
            Metric::Cosine => self.cosine_mean,
        }
    }
}

/// Scores `rows` against the float model's `reference` on the samples `which`.
pub(crate) fn score(
    rows: &Rows,
    reference: &Rows,
    labels: Option<&[i64]>,
    which: &[usize],
) -> Scores {
    let mut correct = 0usize;
    let mut agree = 0usize;
    let (mut cos_sum, mut cos_min) = (0f64, f64::INFINITY);
    let (mut rel_sum, mut rel_max) = (0f64, 0f64);
    let n = which.len().min(rows.len()).min(reference.len());
    for &i in which.iter().take(n) {
        let (q, f) = (rows.row(i), reference.row(i));
        let aq = argmax(q);
        if aq == argmax(f) {
            agree += 1;
        }
        if let Some(l) = labels
            && usize::try_from(l[i]).ok() == Some(aq)
        {
            correct += 1;
        }
        let c = cosine(q, f);
        cos_sum += c;
        cos_min = cos_min.min(c);
        let r = rel_error(q, f);
        rel_sum += r;
        rel_max = rel_max.max(r);
    }
    #[allow(clippy::cast_precision_loss)]
    let nf = n.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    Scores {
        samples: n,
        accuracy: labels.map(|_| correct as f64 / nf),
        top1_agreement: agree as f64 / nf,
        cosine_mean: cos_sum / nf,
        cosine_min: if n == 0 { 1.0 } else { cos_min },
        rel_error_mean: rel_sum / nf,
        rel_error_max: rel_max,
    }
}

/// Scores overall and per group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    /// All samples.
    pub overall: Scores,
    /// Per group id.
    pub groups: BTreeMap<i64, Scores>,
}

/// Evaluates candidate outputs against the reference, per group when groups exist.
pub(crate) fn evaluate(rows: &Rows, reference: &Rows, data: &Dataset) -> Evaluation {
    let all: Vec<usize> = (0..data.samples).collect();
    let labels = data.labels.as_deref();
    let overall = score(rows, reference, labels, &all);
    let mut groups = BTreeMap::new();
    if let Some(g) = &data.groups {
        let mut members: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, id) in g.iter().enumerate() {
            members.entry(*id).or_default().push(i);
        }
        for (id, idx) in members {
            groups.insert(id, score(rows, reference, labels, &idx));
        }
    }
    Evaluation { overall, groups }
}

/// Drop of `after` against `before` for the budget: the overall drop and every group's,
/// and the worst of them.
pub(crate) fn worst_drop(before: &Evaluation, after: &Evaluation, metric: Metric) -> f64 {
    let mut worst = before.overall.value(metric) - after.overall.value(metric);
    for (id, b) in &before.groups {
        if let Some(a) = after.groups.get(id) {
            worst = worst.max(b.value(metric) - a.value(metric));
        }
    }
    worst
}

/// Largest gap between groups' values.
pub(crate) fn group_gap(e: &Evaluation, metric: Metric) -> Option<f64> {
    let vals: Vec<f64> = e.groups.values().map(|s| s.value(metric)).collect();
    let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
    (vals.len() >= 2).then_some(max - min)
}

/// Reports progress of a sequence of evaluations.
pub(crate) fn announce(progress: &Progress<'_>, what: &str, i: usize, n: usize) {
    progress(&format!("{what} {}/{n}", i + 1));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(width: usize, values: Vec<f32>) -> Rows {
        Rows { width, values }
    }

    #[test]
    fn scores_accuracy_agreement_and_cosine() {
        let reference = rows(2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let q = rows(2, vec![0.9, 0.1, 0.6, 0.4, 1.0, 0.0]);
        let s = score(&q, &reference, Some(&[0, 1, 1]), &[0, 1, 2]);
        assert_eq!(s.samples, 3);
        assert!((s.accuracy.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.top1_agreement - 2.0 / 3.0).abs() < 1e-12);
        assert!(s.cosine_min < s.cosine_mean && s.cosine_mean < 1.0);
        assert_eq!(s.value(Metric::Top1), s.accuracy.unwrap());
    }

    #[test]
    fn worst_drop_covers_every_group() {
        let mk = |acc: f64| Scores {
            samples: 1,
            accuracy: Some(acc),
            top1_agreement: 1.0,
            cosine_mean: 1.0,
            cosine_min: 1.0,
            rel_error_mean: 0.0,
            rel_error_max: 0.0,
        };
        let before = Evaluation {
            overall: mk(0.9),
            groups: [(0, mk(0.9)), (1, mk(0.9))].into(),
        };
        let after = Evaluation {
            overall: mk(0.89),
            groups: [(0, mk(0.9)), (1, mk(0.8))].into(),
        };
        assert!((worst_drop(&before, &after, Metric::Top1) - 0.1).abs() < 1e-12);
        assert!((group_gap(&after, Metric::Top1).unwrap() - 0.1).abs() < 1e-12);
    }
}
