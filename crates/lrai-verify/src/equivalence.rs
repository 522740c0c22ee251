//! Equivalence certificates: how far an optimised (e.g. quantized) model can drift from
//! its original, `max |f_opt(x) − f(x)|` over an input region.
//!
//! Two arguments, always both attempted:
//! - **Proof.** When both graphs read into [`Network`]s (QDQ models included: a
//!   QuantizeLinear with constant scales is an activation whose rounding is a bounded
//!   error), the [`difference_network`] is bounded with CROWN/α-CROWN and input
//!   bisection ([`prove_bound`]). The bound is for the f32 networks as ONNX defines
//!   them, float rounding included (see the crate docs on soundness).
//! - **Sampling.** `N` points of the region (uniform, rounded to f32 inside it) and the
//!   points a PGD attack on `|diff|` found are run through **both models on a real
//!   backend**; their largest difference is a lower bound on the true maximum. A
//!   model the bounds cannot read (dynamic quantization: DynamicQuantizeLinear,
//!   MatMulInteger, ConvInteger) gets sampling only, and the verdict says so: it is
//!   never `holds`.
//!
//! So a report reads `proven bound ≥ true max ≥ attacked/sampled max`. If the backend
//! ever shows a difference above the proven bound, the backend does not compute what
//! the ONNX graph says (e.g. a fused integer kernel that rounds differently); the proof
//! then proves nothing about that backend, and the verdict is `unknown` with that reason.

mod difference;
mod sampling;

use std::time::{Duration, Instant};

pub use difference::{
    BoxBound, ProofOpts, ProvenBound, bound_box, difference_network, prove_bound,
};
pub use sampling::{
    Pair, Quantiles, SampleStats, pgd_points, pgd_starts, sample_points, select_points,
};

use crate::network::Network;
use crate::{Result, VerifyError};

/// One box of the input region, over the flattened input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputBox {
    /// Lower bound per element.
    pub lower: Vec<f64>,
    /// Upper bound per element.
    pub upper: Vec<f64>,
}

/// The input region: a union of boxes.
#[derive(Debug, Clone)]
pub struct Region {
    /// The boxes.
    pub boxes: Vec<InputBox>,
}

impl Region {
    /// `[lo, hi]` in every one of `dim` elements.
    pub fn uniform(dim: usize, lo: f64, hi: f64) -> Region {
        Region {
            boxes: vec![InputBox {
                lower: vec![lo; dim],
                upper: vec![hi; dim],
            }],
        }
    }

    /// The smallest box containing every box; `None` for an empty region.
    pub fn hull(&self) -> Option<InputBox> {
        let first = self.boxes.first()?;
        let mut h = first.clone();
        for b in &self.boxes[1..] {
            for i in 0..h.lower.len().min(b.lower.len()) {
                h.lower[i] = h.lower[i].min(b.lower[i]);
                h.upper[i] = h.upper[i].max(b.upper[i]);
            }
        }
        Some(h)
    }

    /// L∞ balls of radius `eps` around each point, each intersected with `clip`.
    ///
    /// # Errors
    /// When a ball misses `clip` entirely (the message names the point).
    pub fn around(
        points: &[Vec<f64>],
        eps: f64,
        clip: Option<(f64, f64)>,
    ) -> Result<Region, String> {
        let (cl, ch) = clip.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let mut boxes = Vec::with_capacity(points.len());
        for (p, x) in points.iter().enumerate() {
            let lower: Vec<f64> = x.iter().map(|v| (v - eps).max(cl)).collect();
            let upper: Vec<f64> = x.iter().map(|v| (v + eps).min(ch)).collect();
            if lower.iter().zip(&upper).any(|(l, u)| l > u) {
                return Err(format!(
                    "the ball around point {p} does not meet the box {cl}:{ch}"
                ));
            }
            boxes.push(InputBox { lower, upper });
        }
        Ok(Region { boxes })
    }
}

/// Settings of one equivalence check.
#[derive(Debug, Clone)]
pub struct EquivSettings {
    /// The tolerance ε on `max_j |f_opt(x)_j − f(x)_j|`.
    pub epsilon: f64,
    /// Random points run on the backend.
    pub samples: usize,
    /// Seed for sampling and PGD starts.
    pub seed: u64,
    /// Budget for the whole check (the proof search stops at it).
    pub timeout: Duration,
    /// α-CROWN steps per box.
    pub alpha_iters: usize,
    /// PGD starts: this many of the worst sampled points, and as many box centres.
    pub pgd_starts: usize,
    /// PGD steps per start.
    pub pgd_steps: usize,
}

impl Default for EquivSettings {
    fn default() -> Self {
        EquivSettings {
            epsilon: 0.01,
            samples: 10_000,
            seed: 0,
            timeout: Duration::from_secs(60),
            alpha_iters: 10,
            pgd_starts: 64,
            pgd_steps: 40,
        }
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum EquivVerdict {
    /// `max |diff| <= ε` is proven.
    Holds,
    /// A point, run on the backend, differs by more than ε.
    Violated,
    /// Neither.
    Unknown {
        /// Why (bound above ε, operators the bounds cannot read, ...).
        reason: String,
    },
}

impl EquivVerdict {
    /// `holds`, `violated` or `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EquivVerdict::Holds => "holds",
            EquivVerdict::Violated => "violated",
            EquivVerdict::Unknown { .. } => "unknown",
        }
    }
}

/// The point with the largest observed difference.
#[derive(Debug, Clone)]
pub struct Worst {
    /// The f32 input (as f64, flattened).
    pub x: Vec<f64>,
    /// The original model's output there (backend).
    pub y_orig: Vec<f64>,
    /// The optimised model's output there (backend).
    pub y_opt: Vec<f64>,
    /// The output element with the largest `|difference|`.
    pub output: usize,
    /// That difference, `y_opt − y_orig`.
    pub diff: f64,
    /// `sampling` or `attack`.
    pub found_by: &'static str,
}

/// The proof side of an outcome.
#[derive(Debug, Clone)]
pub enum ProofStatus {
    /// A bound was proven (whether or not it meets ε).
    Bound(ProvenBound),
    /// No proof: a model the bounds cannot read.
    NotAttempted {
        /// The unsupported operator (or model problem), as text.
        reason: String,
    },
}

/// What an equivalence check found.
#[derive(Debug, Clone)]
pub struct EquivOutcome {
    /// The verdict.
    pub verdict: EquivVerdict,
    /// `proof`, `sampling` or `none`: the argument for the verdict's claim about ε.
    pub argument: &'static str,
    /// Whether ε was met (by the proof, or on every point tried).
    pub epsilon_met: bool,
    /// The proven bound, or why there is none.
    pub proof: ProofStatus,
    /// Random samples on the backend.
    pub sampled: SampleStats,
    /// PGD points on the backend (empty without a proof network).
    pub attacked: SampleStats,
    /// The largest difference seen on the backend.
    pub worst: Option<Worst>,
    /// Wall time.
    pub elapsed: Duration,
}

impl EquivOutcome {
    /// The proven bound, when there is one.
    pub fn proven(&self) -> Option<&ProvenBound> {
        match &self.proof {
            ProofStatus::Bound(b) => Some(b),
            ProofStatus::NotAttempted { .. } => None,
        }
    }
}

/// Both models, read for bound propagation where possible.
#[derive(Debug)]
pub struct Models<'a> {
    /// The original network, or why it cannot be bounded.
    pub orig: std::result::Result<&'a Network, String>,
    /// The optimised network, or why it cannot be bounded.
    pub opt: std::result::Result<&'a Network, String>,
    /// Both on a backend.
    pub pair: Pair<'a>,
}

/// Progress of a long check, for the caller to show.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Sampling: points run so far of the total.
    Sampling(usize, usize),
    /// PGD attack running.
    Attack,
    /// Proof search: the current bound and domains bounded.
    Proof(f64, u64),
}

/// Runs the check: sampling and attack on the backend, then the proof.
///
/// # Errors
/// [`VerifyError::Backend`] when the backend fails on the samples,
/// [`VerifyError::Model`] when the models' sizes differ.
pub fn check(
    models: &Models<'_>,
    region: &Region,
    settings: &EquivSettings,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<EquivOutcome> {
    let start = Instant::now();
    let deadline = start + settings.timeout;
    let hull = region.hull().ok_or_else(|| VerifyError::Model {
        model: models.pair.name(),
        reason: "the input region is empty".into(),
    })?;
    let diff = match (&models.orig, &models.opt) {
        (Ok(a), Ok(b)) => Ok(difference_network(a, b, &hull)?),
        (Err(e), _) => Err(format!("original model: {e}")),
        (_, Err(e)) => Err(format!("optimized model: {e}")),
    };
    let dim = models.pair.input_dim();
    if let Some(bx) = region.boxes.iter().find(|b| b.lower.len() != dim) {
        return Err(VerifyError::Model {
            model: models.pair.name(),
            reason: format!(
                "the region has {} input elements, the model's input has {dim}",
                bx.lower.len()
            ),
        });
    }

    // 1. Sampling on the backend.
    let samples = sample_points(region, settings.samples, settings.seed);
    let xs: Vec<Vec<f32>> = samples.iter().map(|(_, x)| x.clone()).collect();
    let (sampled, worst_s, diffs) = models.pair.run_points(&xs, &|done| {
        progress(Progress::Sampling(done, xs.len()));
    })?;
    // 2. PGD on the difference network from the worst samples, re-run on the backend.
    let (attacked, worst_a) = match &diff {
        Ok(net) => {
            progress(Progress::Attack);
            let starts = pgd_starts(region, &samples, &diffs, settings.pgd_starts);
            let pts = pgd_points(net, region, &starts, settings.pgd_steps);
            let (stats, worst, _) = models.pair.run_points(&pts, &|_| {})?;
            (stats, worst)
        }
        Err(_) => (SampleStats::default(), None),
    };
    let worst = match (worst_s, worst_a) {
        (Some(s), Some(a)) if a.diff.abs() > s.diff.abs() => Some(Worst {
            found_by: "attack",
            ..a
        }),
        (Some(s), _) => Some(s),
        (None, a) => a.map(|a| Worst {
            found_by: "attack",
            ..a
        }),
    };
    let observed = worst.as_ref().map_or(0.0, |w| w.diff.abs());

    // 3. The proof. With a violation in hand only the root bound is computed (for the
    // report); otherwise search until ε is met, the bound reaches what the backend
    // showed, or time runs out.
    let violated = observed > settings.epsilon;
    let proof = match &diff {
        Ok(net) => {
            let opts = ProofOpts {
                target: if violated {
                    f64::INFINITY
                } else {
                    settings.epsilon
                },
                // Within 0.1 % of the observed maximum there is nothing left to win.
                observed: observed * 1.001,
                deadline,
                alpha_iters: settings.alpha_iters,
                batch: 2 * rayon::current_num_threads(),
            };
            let mut bound = prove_bound(net, &region.boxes, &opts, &|b, d| {
                progress(Progress::Proof(b, d));
            });
            if violated {
                bound.stop = "violated";
            }
            ProofStatus::Bound(bound)
        }
        Err(reason) => ProofStatus::NotAttempted {
            reason: reason.clone(),
        },
    };

    let n_points = sampled.n + attacked.n;
    let (verdict, argument, epsilon_met) = match &proof {
        _ if violated => (
            EquivVerdict::Violated,
            worst.as_ref().map_or("sampling", |w| w.found_by),
            false,
        ),
        ProofStatus::Bound(b) if observed > b.max => (
            EquivVerdict::Unknown {
                reason: format!(
                    "the backend showed a difference of {observed:e}, above the proven bound \
                     {:e}: it does not compute what the ONNX graph says (e.g. a fused integer \
                     kernel rounding differently), so the proof does not cover it; \
                     ε was met on all {n_points} points run",
                    b.max
                ),
            },
            "sampling",
            true,
        ),
        ProofStatus::Bound(b) if b.max <= settings.epsilon => (EquivVerdict::Holds, "proof", true),
        ProofStatus::Bound(b) => (
            EquivVerdict::Unknown {
                reason: format!(
                    "proven bound {:e} is above ε = {} ({}); ε was met on all {n_points} \
                     points run on the backend, which is not a proof",
                    b.max,
                    settings.epsilon,
                    match b.stop {
                        "timeout" => "time ran out; a longer --timeout may tighten it",
                        "stalled" => "input bisection stopped tightening it: no 0.1 % in 10 s",
                        _ => "input bisection cannot tighten it further",
                    }
                ),
            },
            "sampling",
            true,
        ),
        ProofStatus::NotAttempted { reason } => (
            EquivVerdict::Unknown {
                reason: format!(
                    "sampling only, no proof: {reason}; ε was met on all {n_points} points \
                     run on the backend"
                ),
            },
            "sampling",
            true,
        ),
    };
    Ok(EquivOutcome {
        verdict,
        argument,
        epsilon_met,
        proof,
        sampled,
        attacked,
        worst,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests;
