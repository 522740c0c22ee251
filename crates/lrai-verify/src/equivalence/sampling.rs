//! The statistical side: points of the region run through both models on a real
//! backend, and a PGD attack on `|diff|` (on the f64 difference network) whose points
//! are re-run on the backend too. Nothing here is a proof; the largest difference seen
//! is a lower bound on the true maximum.

use lrai_backend::{BackendError, Session};
use lrai_core::random::SplitMix64;
use lrai_core::{Dim, Tensor};
use rayon::prelude::*;

use super::{InputBox, Region, Worst};
use crate::network::Network;
use crate::verifier::to_f32_in_box;
use crate::{Result, VerifyError};

/// How one model is called: its input and output names and the input shape.
#[derive(Debug, Clone)]
struct Io {
    input: String,
    /// Input shape with symbolic dims as 1.
    shape: Vec<usize>,
    /// True when dim 0 is symbolic, so points can be batched along it.
    batched: bool,
    output: String,
}

impl Io {
    fn of(session: &dyn Session) -> Result<Io> {
        let bad = |reason: String| VerifyError::Model {
            model: session.model_name().to_string(),
            reason,
        };
        let [input] = session.inputs() else {
            return Err(bad(format!(
                "an equivalence check needs exactly one input, the model has {}",
                session.inputs().len()
            )));
        };
        let output = session
            .outputs()
            .first()
            .ok_or_else(|| bad("the model has no outputs".into()))?;
        let dims = input.dims.clone().unwrap_or_default();
        let shape = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                _ => 1,
            })
            .collect();
        Ok(Io {
            input: input.name.clone(),
            shape,
            batched: matches!(dims.first(), Some(Dim::Symbol(_) | Dim::Any)),
            output: output.name.clone(),
        })
    }

    fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// Runs `xs` (each `dim()` long) and returns each point's flattened output.
    fn run(&self, session: &dyn Session, xs: &[Vec<f32>]) -> Result<Vec<Vec<f64>>> {
        let run_one = |shape: Vec<usize>, flat: &[f32]| -> Result<Vec<f64>> {
            let t = Tensor::from_slice(shape, flat).map_err(BackendError::from)?;
            let out = session.run(&[(self.input.clone(), t)])?;
            let (_, y) = out
                .iter()
                .find(|(n, _)| *n == self.output)
                .or(out.first())
                .ok_or_else(|| VerifyError::Model {
                    model: session.model_name().to_string(),
                    reason: "the backend returned no outputs".into(),
                })?;
            Ok(y.to_f64_vec().map_err(BackendError::from)?)
        };
        if self.batched && xs.len() > 1 {
            let mut shape = self.shape.clone();
            shape[0] = xs.len();
            let flat: Vec<f32> = xs.iter().flatten().copied().collect();
            let y = run_one(shape, &flat)?;
            let per = y.len() / xs.len();
            if per * xs.len() == y.len() {
                return Ok(y.chunks(per).map(<[f64]>::to_vec).collect());
            }
        }
        xs.iter().map(|x| run_one(self.shape.clone(), x)).collect()
    }
}

/// Both models on a backend.
#[derive(Debug)]
pub struct Pair<'a> {
    orig: &'a dyn Session,
    opt: &'a dyn Session,
    io_orig: Io,
    io_opt: Io,
}

/// Points per backend call.
const BATCH: usize = 256;

impl<'a> Pair<'a> {
    /// Pairs two sessions.
    ///
    /// # Errors
    /// [`VerifyError::Model`] when a model has other than one input, or the input sizes
    /// differ.
    pub fn new(orig: &'a dyn Session, opt: &'a dyn Session) -> Result<Pair<'a>> {
        let io_orig = Io::of(orig)?;
        let io_opt = Io::of(opt)?;
        if io_orig.dim() != io_opt.dim() {
            return Err(VerifyError::Model {
                model: opt.model_name().to_string(),
                reason: format!(
                    "its input has {} elements, the original's has {}; an equivalence check \
                     needs the same input size",
                    io_opt.dim(),
                    io_orig.dim()
                ),
            });
        }
        Ok(Pair {
            orig,
            opt,
            io_orig,
            io_opt,
        })
    }

    /// Flattened input size.
    pub fn input_dim(&self) -> usize {
        self.io_orig.dim()
    }

    /// Both model names, for messages.
    pub fn name(&self) -> String {
        format!("{} / {}", self.orig.model_name(), self.opt.model_name())
    }

    /// Runs the points on both models; returns the statistics of `max_j |diff_j|`, the
    /// worst point and each point's `max_j |diff_j|`. `progress` gets the count of
    /// points done after each batch.
    ///
    /// # Errors
    /// [`VerifyError::Backend`] when a run fails, [`VerifyError::Model`] when the
    /// models' outputs differ in size.
    pub fn run_points(
        &self,
        xs: &[Vec<f32>],
        progress: &dyn Fn(usize),
    ) -> Result<(SampleStats, Option<Worst>, Vec<f64>)> {
        let mut diffs = Vec::with_capacity(xs.len());
        let mut worst: Option<Worst> = None;
        for (b, chunk) in xs.chunks(BATCH).enumerate() {
            let ya = self.io_orig.run(self.orig, chunk)?;
            let yb = self.io_opt.run(self.opt, chunk)?;
            for ((x, a), o) in chunk.iter().zip(ya).zip(yb) {
                if a.len() != o.len() {
                    return Err(VerifyError::Model {
                        model: self.name(),
                        reason: format!(
                            "the outputs have {} and {} elements; an equivalence check needs \
                             the same output size",
                            a.len(),
                            o.len()
                        ),
                    });
                }
                // The difference of two f32 values is exact in f64. NaN counts as
                // infinitely far.
                let (j, d) = a
                    .iter()
                    .zip(&o)
                    .map(|(a, o)| {
                        if (o - a).is_nan() {
                            f64::INFINITY
                        } else {
                            o - a
                        }
                    })
                    .enumerate()
                    .fold(
                        (0, 0.0f64),
                        |b, (j, d)| if d.abs() > b.1.abs() { (j, d) } else { b },
                    );
                diffs.push(d.abs());
                if worst.as_ref().is_none_or(|w| d.abs() > w.diff.abs()) {
                    worst = Some(Worst {
                        x: x.iter().map(|&v| f64::from(v)).collect(),
                        y_orig: a,
                        y_opt: o,
                        output: j,
                        diff: d,
                        found_by: "sampling",
                    });
                }
            }
            progress(((b + 1) * BATCH).min(xs.len()));
        }
        Ok((SampleStats::of(diffs.clone()), worst, diffs))
    }
}

/// Quantiles of `max_j |diff_j|` over the points run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// Statistics of the differences seen on the backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleStats {
    /// Points run.
    pub n: usize,
    /// Largest `max_j |diff_j|` (0 with no points).
    pub max: f64,
    /// Mean of `max_j |diff_j|`.
    pub mean: f64,
    /// Quantiles (nearest rank).
    pub quantiles: Quantiles,
}

impl SampleStats {
    fn of(mut d: Vec<f64>) -> SampleStats {
        if d.is_empty() {
            return SampleStats::default();
        }
        d.sort_by(f64::total_cmp);
        let n = d.len();
        let q = |p: f64| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            d[rank - 1]
        };
        #[allow(clippy::cast_precision_loss)]
        let mean = d.iter().sum::<f64>() / n as f64;
        SampleStats {
            n,
            max: d[n - 1],
            mean,
            quantiles: Quantiles {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
            },
        }
    }
}

/// `n` points spread round-robin over the region's boxes: each box's centre first, then
/// uniform points; all rounded to f32 inside their box (a box holding no f32 value in
/// some element is skipped). Each point comes with the index of its box.
pub fn sample_points(region: &Region, n: usize, seed: u64) -> Vec<(usize, Vec<f32>)> {
    let mut rng = SplitMix64::new(seed);
    let nb = region.boxes.len().max(1);
    (0..n)
        .filter_map(|i| {
            let bx = region.boxes.get(i % nb)?;
            let x: Vec<f64> = if i < nb {
                centre(bx)
            } else {
                bx.lower
                    .iter()
                    .zip(&bx.upper)
                    .map(|(l, u)| l + rng.next_f64() * (u - l))
                    .collect()
            };
            Some((i % nb, to_f32_in_box(&x, &bx.lower, &bx.upper)?))
        })
        .collect()
}

fn centre(bx: &InputBox) -> Vec<f64> {
    bx.lower
        .iter()
        .zip(&bx.upper)
        .map(|(l, u)| 0.5 * (l + u))
        .collect()
}

/// PGD ascent on `max_j |diff_j|` of the f64 difference network (sign steps, L∞) from
/// each start (a box index and a point in it); returns the best point per start, in
/// f32. Quantizers pass gradients straight through (`1/scale`), which is a heuristic:
/// the points are only candidates, judged on the backend.
pub fn pgd_points(
    diff: &Network,
    region: &Region,
    starts: &[(usize, Vec<f64>)],
    steps: usize,
) -> Vec<Vec<f32>> {
    starts
        .par_iter()
        .filter_map(|(b, x)| {
            let bx = region.boxes.get(*b)?;
            let x = ascend(diff, bx, x.clone(), steps);
            to_f32_in_box(&x, &bx.lower, &bx.upper)
        })
        .collect()
}

/// PGD starts: the `n` sampled points with the largest differences, then the centres
/// of boxes not among them, up to `n` more.
pub fn pgd_starts(
    region: &Region,
    samples: &[(usize, Vec<f32>)],
    diffs: &[f64],
    n: usize,
) -> Vec<(usize, Vec<f64>)> {
    let mut order: Vec<usize> = (0..samples.len().min(diffs.len())).collect();
    order.sort_by(|&a, &b| diffs[b].total_cmp(&diffs[a]));
    let mut starts: Vec<(usize, Vec<f64>)> = order
        .iter()
        .take(n)
        .map(|&i| {
            let (b, x) = &samples[i];
            (*b, x.iter().map(|&v| f64::from(v)).collect())
        })
        .collect();
    let attacked: std::collections::HashSet<usize> = starts.iter().map(|(b, _)| *b).collect();
    starts.extend(
        (0..region.boxes.len())
            .filter(|b| !attacked.contains(b))
            .take(n)
            .map(|b| (b, centre(&region.boxes[b]))),
    );
    starts
}

/// Objective `max_j |y_j|` and its gradient with respect to `y`.
fn objective_grad(y: &[f64]) -> (f64, Vec<f64>) {
    let (j, v) =
        y.iter().enumerate().fold(
            (0, 0.0f64),
            |b, (j, v)| if v.abs() > b.1.abs() { (j, *v) } else { b },
        );
    let mut g = vec![0.0; y.len()];
    if let Some(gj) = g.get_mut(j) {
        *gj = if v >= 0.0 { 1.0 } else { -1.0 };
    }
    (v.abs(), g)
}

fn ascend(diff: &Network, bx: &InputBox, mut x: Vec<f64>, steps: usize) -> Vec<f64> {
    let width: Vec<f64> = bx.lower.iter().zip(&bx.upper).map(|(l, u)| u - l).collect();
    let mut best = (f64::NEG_INFINITY, x.clone());
    for t in 0..steps {
        let (y, g) = diff.eval_grad(&x, |y| objective_grad(y).1);
        let (v, _) = objective_grad(&y);
        if v > best.0 {
            best = (v, x.clone());
        }
        // Step size decays from a quarter of the box width.
        #[allow(clippy::cast_precision_loss)]
        let eta = 0.25 * (1.0 - t as f64 / steps.max(1) as f64).max(0.02);
        for i in 0..x.len() {
            let s = g[i].signum() * f64::from(u8::from(g[i] != 0.0));
            x[i] = (x[i] + s * eta * width[i]).clamp(bx.lower[i], bx.upper[i]);
        }
    }
    let (v, _) = objective_grad(&diff.eval(&x));
    if v > best.0 { x } else { best.1 }
}

/// Picks the array of an `.npz` whose rows are model inputs: first one whose trailing
/// shape equals the input's (`input_shape` without its batch dim), else the only one
/// whose rows have the input's element count. Returns its name and rows.
///
/// # Errors
/// A message naming the arrays when none (or several, by element count) fit.
pub fn select_points(
    arrays: &[(String, Tensor)],
    input_shape: &[usize],
) -> std::result::Result<(String, Vec<Vec<f64>>), String> {
    let dim: usize = input_shape.iter().product();
    let trailing = input_shape.get(1..).unwrap_or(&[]);
    let rows_of = |t: &Tensor| -> Option<Vec<Vec<f64>>> {
        let n = *t.shape().first()?;
        let v = t.to_f64_vec().ok()?;
        (n > 0 && v.len() == n * dim).then(|| v.chunks(dim).map(<[f64]>::to_vec).collect())
    };
    let is_float = |t: &Tensor| t.dtype().is_float();
    if let Some((name, t)) = arrays
        .iter()
        .find(|(_, t)| is_float(t) && t.shape().get(1..) == Some(trailing))
        && let Some(rows) = rows_of(t)
    {
        return Ok((name.clone(), rows));
    }
    let fits: Vec<&(String, Tensor)> = arrays
        .iter()
        .filter(|(_, t)| is_float(t) && rows_of(t).is_some())
        .collect();
    let names = || {
        arrays
            .iter()
            .map(|(n, t)| format!("{n} {:?}", t.shape()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match fits.as_slice() {
        [(name, t)] => Ok((name.clone(), rows_of(t).unwrap_or_default())),
        [] => Err(format!(
            "no float array has rows of {dim} elements (the model input {input_shape:?}); \
             arrays: {}",
            names()
        )),
        _ => Err(format!(
            "several arrays have rows of {dim} elements and none has the input's shape \
             {trailing:?}; keep one in the file. Arrays: {}",
            names()
        )),
    }
}
