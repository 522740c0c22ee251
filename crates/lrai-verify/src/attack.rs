//! Counterexample search: random points in the box, then projected gradient descent on
//! the property margin (sign steps, L∞ geometry, as in Madry et al. 2018), from several
//! starts. Everything here runs in f64 on the verifier's copy of the network; a point it
//! returns is only a candidate until the backend confirms it.

use lrai_core::random::SplitMix64;
use rayon::prelude::*;

use crate::network::Network;
use crate::vnnlib::Property;

/// How hard to search.
#[derive(Debug, Clone)]
pub struct AttackOpts {
    /// Random points tried first.
    pub samples: usize,
    /// PGD starts (the box centre, then random points).
    pub restarts: usize,
    /// Steps per start.
    pub steps: usize,
    /// Seed.
    pub seed: u64,
    /// Inputs of at most this many elements get `low_dim_scale` times the samples and
    /// restarts: their networks are cheap to run (ACAS Xu: 5 inputs, 300 ReLUs, a few
    /// microseconds), while on MNIST (784 inputs) the same effort would cost seconds.
    pub low_dim: usize,
    /// The factor for low-dimensional inputs.
    pub low_dim_scale: usize,
}

impl Default for AttackOpts {
    fn default() -> Self {
        AttackOpts {
            samples: 2000,
            restarts: 8,
            steps: 60,
            seed: 0,
            low_dim: 16,
            // 10× found ACAS Xu 1_2 prop_2's counterexample in 0.1 s (the search timed
            // out without it) for about 0.05 s more per instance.
            low_dim_scale: 10,
        }
    }
}

/// The margin to drive below zero, with its gradient with respect to the output: for
/// each clause, the largest constraint value; overall, the smallest over clauses.
fn margin_and_grad(prop: &Property, y: &[f64]) -> (f64, Vec<f64>) {
    let mut best = f64::INFINITY;
    let mut grad = vec![0.0; y.len()];
    for clause in &prop.clauses {
        let mut worst = f64::NEG_INFINITY;
        let mut worst_row = None;
        for c in &clause.constraints {
            let v = c.value(y);
            if v > worst {
                worst = v;
                worst_row = Some(c);
            }
        }
        if clause.constraints.is_empty() {
            worst = f64::NEG_INFINITY;
        }
        if worst < best {
            best = worst;
            grad = worst_row.map_or_else(|| vec![0.0; y.len()], |c| c.coeffs.clone());
        }
    }
    (best, grad)
}

/// Searches the box `[lower, upper]` for inputs whose output meets the unsafe
/// condition; returns candidates ordered by margin (most negative first), at most 8.
pub fn search(
    net: &Network,
    prop: &Property,
    lower: &[f64],
    upper: &[f64],
    opts: &AttackOpts,
) -> Vec<Vec<f64>> {
    let n = lower.len();
    let point = |rng: &mut SplitMix64| -> Vec<f64> {
        (0..n)
            .map(|i| lower[i] + rng.next_f64() * (upper[i] - lower[i]))
            .collect()
    };
    let scale = if n <= opts.low_dim {
        opts.low_dim_scale.max(1)
    } else {
        1
    };
    let chunks = 16usize;
    let per = (opts.samples * scale).div_ceil(chunks);
    let mut found: Vec<(f64, Vec<f64>)> = (0..chunks)
        .into_par_iter()
        .flat_map_iter(|c| {
            let mut rng = SplitMix64::new(opts.seed ^ (c as u64).wrapping_mul(0x9E37_79B9));
            let mut out = Vec::new();
            for s in 0..per {
                let mut x = point(&mut rng);
                // Every other sample has each coordinate at a face of the box with
                // probability 1/2: counterexamples often sit where some inputs are at
                // their bounds (ACAS Xu 1_9 prop_7: two of five), which uniform points
                // almost never reach.
                if s % 2 == 1 {
                    for (i, v) in x.iter_mut().enumerate() {
                        let r = rng.next_f64();
                        if r < 0.25 {
                            *v = lower[i];
                        } else if r < 0.5 {
                            *v = upper[i];
                        }
                    }
                }
                let m = prop.margin(&net.eval(&x));
                if m <= 0.0 {
                    out.push((m, x));
                }
            }
            out
        })
        .collect();
    if found.is_empty() {
        found = (0..opts.restarts * scale)
            .into_par_iter()
            .filter_map(|s| {
                let mut rng = SplitMix64::new(opts.seed.wrapping_add(1000 + s as u64));
                let start = if s == 0 {
                    lower
                        .iter()
                        .zip(upper)
                        .map(|(l, u)| 0.5 * (l + u))
                        .collect()
                } else {
                    point(&mut rng)
                };
                pgd(net, prop, lower, upper, start, opts.steps)
            })
            .collect();
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found.truncate(8);
    found.into_iter().map(|(_, x)| x).collect()
}

/// PGD from `x`; returns the point once its margin is below zero (after a few extra
/// steps to move away from the boundary, so the f32 re-run agrees).
pub fn pgd(
    net: &Network,
    prop: &Property,
    lower: &[f64],
    upper: &[f64],
    mut x: Vec<f64>,
    steps: usize,
) -> Option<(f64, Vec<f64>)> {
    let width: Vec<f64> = lower.iter().zip(upper).map(|(l, u)| u - l).collect();
    let mut best: Option<(f64, Vec<f64>)> = None;
    let mut extra = 0;
    for t in 0..steps {
        let (y, g) = net.eval_grad(&x, |y| margin_and_grad(prop, y).1);
        let m = prop.margin(&y);
        if m <= 0.0 && best.as_ref().is_none_or(|(b, _)| m < *b) {
            best = Some((m, x.clone()));
        }
        if best.is_some() {
            extra += 1;
            if extra > 3 {
                break;
            }
        }
        // Step size decays from a quarter of the box width.
        #[allow(clippy::cast_precision_loss)]
        let eta = 0.25 * (1.0 - t as f64 / steps as f64).max(0.05);
        for i in 0..x.len() {
            let s = if g[i] > 0.0 {
                -1.0
            } else if g[i] < 0.0 {
                1.0
            } else {
                0.0
            };
            x[i] = (x[i] + s * eta * width[i]).clamp(lower[i], upper[i]);
        }
    }
    let (y, _) = net.eval_grad(&x, |y| vec![0.0; y.len()]);
    let m = prop.margin(&y);
    if m <= 0.0 && best.as_ref().is_none_or(|(b, _)| m < *b) {
        best = Some((m, x));
    }
    best
}
