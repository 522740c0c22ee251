//! Complete search by branch and bound, on rayon.
//!
//! - **Input splitting** ([`input_split`]) for low-dimensional inputs (ACAS Xu has 5):
//!   bisect the box, bound each half with CROWN (intermediate bounds recomputed on the
//!   half and intersected with the parent's), and check the minimising vertex and the
//!   centre for a counterexample, then run a few PGD steps from that vertex. The split
//!   dimension is chosen by strong branching among three candidates (the largest
//!   `|coefficient| × width` in the worst row's linear bound, with and without a cap on
//!   how finely one dimension may be split, and the relatively widest dimension): the
//!   one whose worse half has the larger slack.
//! - **ReLU splitting** ([`relu_split`]) for wide inputs (MNIST has 784): split an
//!   unstable ReLU (strong branching among the best few by a BaBSR-style score,
//!   [`ReluSplitOpts::candidates`]) into `z >= 0` and `z <= 0`, and bound each
//!   child with α-CROWN plus β multipliers for every split on its path (β-CROWN). Intermediate
//!   bounds are inherited from the root, tightened only at the split neuron. When a
//!   short first search fails, the verifier refines the root's intermediate bounds
//!   ([`crate::refine`]) and searches again.
//!
//! A domain is proven when, for every pending clause, some row's lower bound exceeds
//! that row's float safety margin.

use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::attack;
use crate::bounds::{
    self, BackOpts, NodeBounds, Relax, SpecOpts, Splits, backward, minimise, relaxations,
};
use crate::matrix::Dense;
use crate::network::{Activation, Network, Node};
use crate::vnnlib::Property;

/// The property's output rows, grouped by clause.
#[derive(Debug, Clone)]
pub struct Spec {
    /// One row per output constraint: unsafe when `c·y + d <= 0`.
    pub c: Dense,
    /// Constant per row.
    pub d: Vec<f64>,
    /// Row ranges per clause.
    pub clauses: Vec<std::ops::Range<usize>>,
    /// Safety margin per row: a bound must exceed it to count as proven.
    pub margin: Vec<f64>,
}

impl Spec {
    /// Builds the spec from a property with zero margins.
    pub fn from_property(prop: &Property) -> Spec {
        let ny = prop.num_outputs;
        let rows: usize = prop.clauses.iter().map(|c| c.constraints.len()).sum();
        let mut c = Dense::zeros(rows, ny);
        let mut d = Vec::with_capacity(rows);
        let mut clauses = Vec::new();
        let mut r = 0;
        for clause in &prop.clauses {
            let start = r;
            for con in &clause.constraints {
                c.row_mut(r).copy_from_slice(&con.coeffs);
                d.push(con.constant);
                r += 1;
            }
            clauses.push(start..r);
        }
        Spec {
            c,
            d,
            clauses,
            margin: vec![0.0; rows],
        }
    }

    /// Safety margin per row: the bounds already include the backend's f32 rounding
    /// error ([`Network::rounding_error`]); what is left is f64 rounding in our own
    /// arithmetic, covered by a relative 1e-9 of the row's magnitude (far above it).
    pub fn margins_for(&self, net: &Network, b: &NodeBounds) -> Vec<f64> {
        let out = net.output;
        (0..self.d.len())
            .map(|r| {
                let mut scale = self.d[r].abs();
                for (j, c) in self.c.row(r).iter().enumerate() {
                    scale += c.abs() * b.lower[out][j].abs().max(b.upper[out][j].abs());
                }
                1e-9 * (1.0 + scale)
            })
            .collect()
    }

    /// Rows of some clauses as their own matrix (with the global row index of each).
    fn rows_of(&self, clauses: &[usize]) -> (Dense, Vec<f64>, Vec<usize>) {
        let idx: Vec<usize> = clauses
            .iter()
            .flat_map(|&c| self.clauses[c].clone())
            .collect();
        let mut m = Dense::zeros(idx.len(), self.c.cols);
        for (r, &i) in idx.iter().enumerate() {
            m.row_mut(r).copy_from_slice(self.c.row(i));
        }
        let d = idx.iter().map(|&i| self.d[i]).collect();
        (m, d, idx)
    }
}

/// Settings of the input-split search.
#[derive(Debug, Clone)]
pub struct InputSplitOpts {
    /// Strong branching over the three candidate dimensions of each box (the
    /// coefficient rule restricted and unrestricted, the relatively widest) instead of
    /// the first alone. On ACAS Xu it bounds up to 3× the boxes per split and needs
    /// 2–20× fewer splits: see docs/verify.md, Benchmark.
    pub strong: bool,
    /// PGD steps from each open box's worst minimising vertex (0: none). 8 steps cost
    /// about a fifth of a box's bound on ACAS Xu and found prop_2's counterexamples on
    /// nets 1_5 and 5_3 after under 1 600 boxes (the search alone: none in 100 000).
    pub pgd_steps: usize,
    /// α-CROWN iterations on boxes CROWN leaves open at depth `alpha_depth` or more
    /// (0: never). On ACAS Xu at 10 from depth 20: 1_1 prop_5 37 s → 1.9 s, 4_7 prop_1
    /// 18 → 9 s, and prop_2 on 3_3 and 4_2 (unknown after 116 s before) in 14–16 s.
    pub alpha_iters: usize,
    /// Split depth from which `alpha_iters` applies.
    pub alpha_depth: usize,
}

impl Default for InputSplitOpts {
    fn default() -> Self {
        InputSplitOpts {
            strong: true,
            pgd_steps: 8,
            alpha_iters: 10,
            alpha_depth: 20,
        }
    }
}

/// Shared state of one search.
pub struct Ctx<'a> {
    /// The network.
    pub net: &'a Network,
    /// The property (for concrete checks).
    pub prop: &'a Property,
    /// Output rows and margins.
    pub spec: &'a Spec,
    /// When to give up.
    pub deadline: Instant,
    /// Width of the root box per input (for the input-split heuristic).
    pub root_width: Vec<f64>,
    /// Input-split settings.
    pub split: &'a InputSplitOpts,
    /// Confirms a candidate on the backend; `Some(x)` (the confirmed f64 input) ends the search.
    pub confirm: &'a (dyn Fn(&[f64]) -> Option<Vec<f64>> + Sync),
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

/// How a search ended.
#[derive(Debug, Clone)]
pub enum SearchEnd {
    /// Every domain was proven; the smallest proven `bound − margin` over the leaves.
    Proven {
        /// Smallest slack over all proven leaves.
        min_slack: f64,
    },
    /// A confirmed counterexample.
    Counterexample(Vec<f64>),
    /// Out of time (or a domain could not be split further).
    Unknown(String),
}

/// Search statistics.
#[derive(Debug, Clone, Default)]
pub struct SearchStats {
    /// Domains bounded.
    pub domains: u64,
    /// Largest split depth reached.
    pub max_depth: usize,
}

/// Candidate check: true if `x` is unsafe in f64 and the backend confirms it.
fn try_point(ctx: &Ctx<'_>, x: &[f64]) -> Option<Vec<f64>> {
    let y = ctx.net.eval(x);
    if ctx.prop.margin(&y) <= 0.0 {
        (ctx.confirm)(x)
    } else {
        None
    }
}

/// A bounded box of the input-split search whose clauses are not all proven.
#[derive(Debug, Clone)]
struct BoxDomain {
    lower: Vec<f64>,
    upper: Vec<f64>,
    depth: usize,
    /// Clauses not proven on this box.
    pending: Vec<usize>,
    /// The smallest best-row slack among the pending clauses (not positive).
    worst: f64,
    /// Input coefficients of that row's linear lower bound.
    worst_coeffs: Vec<f64>,
    /// Intermediate bounds on this box: valid on every sub-box, so its children start
    /// from them.
    bounds: Arc<NodeBounds>,
}

/// One box bounded.
enum BoxEval {
    Proven(f64),
    Cex(Vec<f64>),
    Open(BoxDomain),
}

impl BoxEval {
    /// Slack for comparing splits: proven halves count as infinitely good.
    fn slack(&self) -> f64 {
        match self {
            BoxEval::Open(d) => d.worst,
            _ => f64::INFINITY,
        }
    }
}

/// One box expanded.
enum Expansion {
    Split(Box<[BoxEval; 2]>),
    Cex(Vec<f64>),
    Stuck,
}

/// How much finer (relative to the root box) a dimension may be split than the coarsest
/// one before only the coarser ones are candidates for the coefficient rule. At 1e-3,
/// ACAS Xu prop_1 on net 1_4 bisected four inputs down to 2⁻¹⁰ around one it never
/// split and timed out (so did six other prop_1 instances); at 0.1 (about three
/// halvings) 1_4 takes 371 boxes. Alone it hurts instances that need one input split
/// finely (2_7 prop_1 went from 4 s to a timeout), hence the unrestricted candidate of
/// [`split_candidates`]: see docs/verify.md, Benchmark.
const MAX_SPLIT_RATIO: f64 = 0.1;

/// The finest (relative to the coarsest dimension) that the unrestricted coefficient
/// rule may split: about 13 halvings. Without a floor, ACAS Xu 3_3 prop_2 split four
/// inputs down to 1e-10 (each split reproducing its parent's bound within rounding,
/// which strong branching took for progress) and never the fifth, 0.06 wide.
const MIN_SPLIT_RATIO: f64 = 1e-4;

/// Bounds a box with CROWN (intermediate bounds intersected with the parent's): proven
/// clauses drop out; a box with clauses left is checked for a counterexample at the
/// worst row's minimising vertex and at its centre.
fn eval_box(
    ctx: &Ctx<'_>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    pending_in: &[usize],
    depth: usize,
    parent: Option<&NodeBounds>,
) -> BoxEval {
    let net = ctx.net;
    let nb = bounds::crown_intermediate_within(net, &lower, &upper, parent);
    let rel = relaxations(net, &nb);
    let mut rows = bound_rows(ctx, &nb, &rel, &lower, &upper, pending_in, 0);
    // Deep boxes are where CROWN's fixed slopes stall (thin margins): optimising them
    // there costs ~10 backward passes per box and saves far more boxes (docs/verify.md).
    if ctx.split.alpha_iters > 0 && depth >= ctx.split.alpha_depth && !rows.pending.is_empty() {
        let again = bound_rows(
            ctx,
            &nb,
            &rel,
            &lower,
            &upper,
            &rows.pending,
            ctx.split.alpha_iters,
        );
        rows.pending = again.pending;
        if !rows.pending.is_empty() {
            rows.worst = again.worst;
            rows.worst_x = again.worst_x;
            rows.worst_coeffs = again.worst_coeffs;
        }
        rows.min_slack = rows.min_slack.min(again.min_slack);
    }
    let RowBounds {
        pending,
        worst,
        worst_x,
        worst_coeffs,
        min_slack,
    } = rows;
    if pending.is_empty() {
        return BoxEval::Proven(min_slack);
    }
    let centre: Vec<f64> = lower
        .iter()
        .zip(&upper)
        .map(|(l, u)| 0.5 * (l + u))
        .collect();
    for x in [&worst_x, &centre] {
        if let Some(cex) = try_point(ctx, x) {
            return BoxEval::Cex(cex);
        }
    }
    // A few PGD steps from that vertex: the search narrows the box around the regions
    // where the relaxation says a counterexample may be, the attack finds it there.
    if ctx.split.pgd_steps > 0 {
        let found = attack::pgd(net, ctx.prop, &lower, &upper, worst_x, ctx.split.pgd_steps);
        if let Some(cex) = found.and_then(|(_, x)| (ctx.confirm)(&x)) {
            return BoxEval::Cex(cex);
        }
    }
    BoxEval::Open(BoxDomain {
        lower,
        upper,
        depth,
        pending,
        worst,
        worst_coeffs,
        bounds: Arc::new(nb),
    })
}

/// The spec rows of some clauses bounded on one box.
struct RowBounds {
    /// Clauses not proven.
    pending: Vec<usize>,
    /// The smallest best slack among them.
    worst: f64,
    /// The minimising vertex of that clause's best bound.
    worst_x: Vec<f64>,
    /// Input coefficients of that bound.
    worst_coeffs: Vec<f64>,
    /// The smallest best slack among the proven clauses.
    min_slack: f64,
}

/// Back-substitutes the rows of `pending_in`'s clauses given the box's intermediate
/// bounds. A clause is a conjunction (unsafe when every row is `<= 0`), so besides each
/// row alone a convex combination of its rows' linear bounds ([`combine_rows`]) proves
/// it when positive.
fn bound_rows(
    ctx: &Ctx<'_>,
    nb: &NodeBounds,
    rel: &[Vec<Relax>],
    lower: &[f64],
    upper: &[f64],
    pending_in: &[usize],
    alpha_iters: usize,
) -> RowBounds {
    let net = ctx.net;
    let (c, dd, idx) = ctx.spec.rows_of(pending_in);
    let (back, lb, xs) = if alpha_iters == 0 {
        let back = backward(
            net,
            rel,
            &nb.eps,
            net.output,
            c,
            BackOpts {
                alpha: None,
                splits: None,
                keep: false,
            },
        );
        let (lb, xs) = minimise(&back, lower, upper, true);
        (back, lb, xs)
    } else {
        let alpha = bounds::init_alpha(net, rel, c.rows);
        let zeros = vec![0.0; c.rows];
        let sb = bounds::spec_bound(
            net,
            rel,
            &nb.eps,
            &c,
            &zeros,
            lower,
            upper,
            alpha,
            &Splits::default(),
            Dense::zeros(c.rows, 0),
            &SpecOpts {
                iters: alpha_iters,
                lr_alpha: 0.1,
                lr_beta: 0.05,
            },
            &mut bounds::ForwardCache::default(),
        );
        (sb.back, sb.lb, sb.xs)
    };
    // Margins from this box's own bounds: much tighter than the root's.
    let margin = ctx.spec.margins_for(net, nb);
    let mut out = RowBounds {
        pending: Vec::new(),
        worst: f64::INFINITY,
        worst_x: Vec::new(),
        worst_coeffs: Vec::new(),
        min_slack: f64::INFINITY,
    };
    let mut off = 0;
    for &cl in pending_in {
        let n = ctx.spec.clauses[cl].len();
        let rows = off..off + n;
        off += n;
        let konst = |r: usize| back.c[r] + dd[r] - margin[idx[r]].min(ctx.spec.margin[idx[r]]);
        let mut best = f64::NEG_INFINITY;
        let mut best_r = rows.start;
        for r in rows.clone() {
            let slack = lb[r] + dd[r] - margin[idx[r]].min(ctx.spec.margin[idx[r]]);
            if slack > best {
                best = slack;
                best_r = r;
            }
        }
        let mut combined = None;
        if best <= 0.0 && n > 1 {
            let a: Vec<&[f64]> = rows.clone().map(|r| back.a_in.row(r)).collect();
            let k: Vec<f64> = rows.clone().map(konst).collect();
            if let Some((v, w)) = combine_rows(&a, &k, lower, upper)
                && v > best
            {
                best = v;
                combined = Some(w);
            }
        }
        if best > 0.0 {
            out.min_slack = out.min_slack.min(best);
        } else {
            out.pending.push(cl);
            if best < out.worst {
                out.worst = best;
                match combined {
                    Some(w) => {
                        out.worst_x = vertex(&w, lower, upper);
                        out.worst_coeffs = w;
                    }
                    None => {
                        out.worst_x = xs[best_r].clone();
                        out.worst_coeffs = back.a_in.row(best_r).to_vec();
                    }
                }
            }
        }
    }
    out
}

/// The box vertex minimising `w·x`.
fn vertex(w: &[f64], lower: &[f64], upper: &[f64]) -> Vec<f64> {
    w.iter()
        .zip(lower.iter().zip(upper))
        .map(|(w, (l, u))| if *w >= 0.0 { *l } else { *u })
        .collect()
}

/// The best lower bound of a convex combination `Σ λ_r (a_r·x + k_r)` over the box
/// (`λ ≥ 0`, `Σ λ = 1`), and its coefficients `Σ λ_r a_r`. If it is positive, at every
/// point of the box some row is positive, so the conjunction "every row `<= 0`" has no
/// solution there, although no row alone is positive everywhere (rows are tight in
/// different corners; ACAS Xu prop_2's four "`Y_0` is largest" rows, say). Any `λ`
/// gives a sound bound, so it is searched cheaply by exact line searches that move
/// weight from one row to another (as in SMO): first from each row to every other (all
/// pairs), then, from the best pair, sweeps over all of them until none improves.
fn combine_rows(a: &[&[f64]], k: &[f64], lower: &[f64], upper: &[f64]) -> Option<(f64, Vec<f64>)> {
    let m = a.len();
    let n = lower.len();
    let mut w = vec![0.0; n];
    let mut dw = vec![0.0; n];
    let mut ts = Vec::with_capacity(n + 2);
    // The exact maximum over δ ∈ [−λ_p, λ_q] of the bound at λ + δ(e_p − e_q): concave and
    // piecewise linear in δ, so it is at an end or where a coefficient changes sign.
    let mut line = |lam: &[f64], p: usize, q: usize| -> (f64, f64) {
        w.iter_mut().for_each(|v| *v = 0.0);
        let mut c0 = 0.0;
        for (r, &l) in lam.iter().enumerate() {
            c0 += l * k[r];
            for (wi, ai) in w.iter_mut().zip(a[r]) {
                *wi += l * ai;
            }
        }
        for (d, (ap, aq)) in dw.iter_mut().zip(a[p].iter().zip(a[q])) {
            *d = ap - aq;
        }
        let g = |delta: f64| -> f64 {
            c0 + delta * (k[p] - k[q])
                + w.iter()
                    .zip(&dw)
                    .zip(lower.iter().zip(upper))
                    .map(|((wi, d), (l, u))| {
                        let wi = wi + delta * d;
                        (wi * l).min(wi * u)
                    })
                    .sum::<f64>()
        };
        ts.clear();
        ts.extend([-lam[p], lam[q]]);
        for (wi, d) in w.iter().zip(&dw) {
            if *d != 0.0 {
                let t = -wi / d;
                if t > -lam[p] && t < lam[q] {
                    ts.push(t);
                }
            }
        }
        let (mut best_d, mut best_g) = (0.0, g(0.0));
        for &t in &ts {
            let v = g(t);
            if v > best_g {
                (best_d, best_g) = (t, v);
            }
        }
        (best_d, best_g)
    };
    let mut best: Option<(f64, Vec<f64>)> = None;
    for q in 0..m {
        for p in (q + 1)..m {
            let mut lam = vec![0.0; m];
            lam[q] = 1.0;
            let (d, v) = line(&lam, p, q);
            if best.as_ref().is_none_or(|(b, _)| v > *b) {
                lam[p] += d;
                lam[q] -= d;
                best = Some((v, lam));
            }
        }
    }
    let (mut best_v, mut lam) = best?;
    for _sweep in 0..8 {
        let before = best_v;
        for p in 0..m {
            for q in 0..m {
                if p == q || best_v > 0.0 {
                    continue;
                }
                let (d, v) = line(&lam, p, q);
                if d != 0.0 && v > best_v {
                    lam[p] = (lam[p] + d).max(0.0);
                    lam[q] = (lam[q] - d).max(0.0);
                    best_v = v;
                }
            }
        }
        if best_v <= before + 1e-12 * before.abs().max(1e-300) {
            break;
        }
    }
    // The bound is re-evaluated for the λ kept, in closed form.
    let mut w = vec![0.0; n];
    let mut v = 0.0;
    for (r, &l) in lam.iter().enumerate() {
        v += l * k[r];
        for (wi, ai) in w.iter_mut().zip(a[r]) {
            *wi += l * ai;
        }
    }
    v += w
        .iter()
        .zip(lower.iter().zip(upper))
        .map(|(w, (l, u))| (w * l).min(w * u))
        .sum::<f64>();
    Some((v.min(best_v), w))
}

/// Dimensions worth splitting, best guess first:
/// 1. the largest `|coefficient| × width` in the worst row's linear bound among
///    dimensions not split more than [`MAX_SPLIT_RATIO`] finer (relative to the root
///    box) than the coarsest one: the coefficients are myopic (a dimension with
///    coefficient zero still matters through the relaxations' intercepts);
/// 2. the largest `|coefficient| × width` among all dimensions;
/// 3. the relatively widest dimension.
fn split_candidates(ctx: &Ctx<'_>, d: &BoxDomain) -> Vec<usize> {
    let n = d.lower.len();
    let width = |i: usize| d.upper[i] - d.lower[i];
    let rel = |i: usize| width(i) / ctx.root_width[i];
    let max_rel = (0..n).map(rel).fold(0.0, f64::max);
    let splittable = |i: usize| {
        let mid = 0.5 * (d.lower[i] + d.upper[i]);
        mid > d.lower[i] && mid < d.upper[i]
    };
    let argmax = |ok: &dyn Fn(usize) -> bool, score: &dyn Fn(usize) -> f64| {
        let mut best = None;
        let mut best_score = f64::NEG_INFINITY;
        for i in (0..n).filter(|&i| splittable(i) && ok(i)) {
            let s = score(i);
            if s > best_score {
                best_score = s;
                best = Some(i);
            }
        }
        best
    };
    // Ties (all coefficients zero) go to the relatively widest dimension.
    let coeff = |i: usize| d.worst_coeffs[i].abs() * width(i) + 1e-300 * rel(i);
    let mut out = Vec::with_capacity(3);
    for c in [
        argmax(&|i| rel(i) >= MAX_SPLIT_RATIO * max_rel, &coeff),
        argmax(&|i| rel(i) >= MIN_SPLIT_RATIO * max_rel, &coeff),
        argmax(&|_| true, &rel),
    ]
    .into_iter()
    .flatten()
    {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Bisects a box. With `strong`, every candidate of [`split_candidates`] is tried and
/// the split whose worse half has the larger slack is kept (the halves' bounds are the
/// children's, so only the rejected candidates cost extra); otherwise the first.
fn expand(ctx: &Ctx<'_>, d: &BoxDomain, strong: bool, bounded: &mut u64) -> Expansion {
    let mut cands = split_candidates(ctx, d);
    if !strong {
        cands.truncate(1);
    }
    let mut best: Option<(f64, f64, [BoxEval; 2])> = None;
    for dim in cands {
        let mid = 0.5 * (d.lower[dim] + d.upper[dim]);
        if !(mid > d.lower[dim] && mid < d.upper[dim]) {
            continue;
        }
        let mut lo_upper = d.upper.clone();
        lo_upper[dim] = mid;
        let mut hi_lower = d.lower.clone();
        hi_lower[dim] = mid;
        let halves = [(d.lower.clone(), lo_upper), (hi_lower, d.upper.clone())];
        let mut evals = Vec::with_capacity(2);
        for (lo, up) in halves {
            let e = eval_box(ctx, lo, up, &d.pending, d.depth + 1, Some(&d.bounds));
            *bounded += 1;
            if let BoxEval::Cex(x) = e {
                return Expansion::Cex(x);
            }
            evals.push(e);
        }
        let (Some(b), Some(a)) = (evals.pop(), evals.pop()) else {
            continue;
        };
        // A half's bound can come out below its parent's (CROWN's relaxations are not
        // monotone in the box), yet the parent's holds on it too. Clamped, a split that
        // leaves both halves where the parent was loses the tie to one that improves a
        // half; unclamped, splitting an already tiny dimension (which reproduces the
        // parent's bound) beat a useful split whose worse half dipped below it, and ACAS
        // Xu 3_3 prop_2 went 214 splits deep with four inputs at 1e-10 and the fifth
        // never split.
        let (sa, sb) = (a.slack().max(d.worst), b.slack().max(d.worst));
        let (worse, better) = (sa.min(sb), sa.max(sb));
        if best
            .as_ref()
            .is_none_or(|(w, bt, _)| worse > *w || (worse == *w && better > *bt))
        {
            best = Some((worse, better, [a, b]));
        }
        if worse == f64::INFINITY {
            break;
        }
    }
    match best {
        Some((_, _, pair)) => Expansion::Split(Box::new(pair)),
        None => Expansion::Stuck,
    }
}

/// Input-split branch and bound over one box.
pub fn input_split(
    ctx: &Ctx<'_>,
    lower: &[f64],
    upper: &[f64],
    stats: &mut SearchStats,
) -> SearchEnd {
    let strong = ctx.split.strong;
    let all: Vec<usize> = (0..ctx.spec.clauses.len()).collect();
    stats.domains += 1;
    // Depth first (a stack): the frontier, and the parent bounds it holds, stay small.
    let mut stack: Vec<BoxDomain> = Vec::new();
    let mut min_slack = f64::INFINITY;
    match eval_box(ctx, lower.to_vec(), upper.to_vec(), &all, 0, None) {
        BoxEval::Proven(s) => return SearchEnd::Proven { min_slack: s },
        BoxEval::Cex(x) => return SearchEnd::Counterexample(x),
        BoxEval::Open(d) => stack.push(d),
    }
    let mut last_report = Instant::now();
    let batch = 32 * rayon::current_num_threads().max(1);
    while !stack.is_empty() {
        if Instant::now() >= ctx.deadline {
            return SearchEnd::Unknown(format!(
                "timeout with {} boxes left after {} bounded",
                stack.len(),
                stats.domains
            ));
        }
        let take = stack.len().min(batch);
        let work: Vec<BoxDomain> = (0..take).filter_map(|_| stack.pop()).collect();
        let results: Vec<(Expansion, u64)> = work
            .par_iter()
            .map(|d| {
                let mut n = 0;
                let e = expand(ctx, d, strong, &mut n);
                (e, n)
            })
            .collect();
        for (d, (r, n)) in work.iter().zip(results) {
            stats.domains += n;
            stats.max_depth = stats.max_depth.max(d.depth + 1);
            match r {
                Expansion::Cex(x) => return SearchEnd::Counterexample(x),
                Expansion::Split(mut pair) => {
                    // The worse half last: popped first, where a counterexample is likelier.
                    if pair[0].slack() < pair[1].slack() {
                        pair.swap(0, 1);
                    }
                    for e in *pair {
                        match e {
                            BoxEval::Proven(s) => min_slack = min_slack.min(s),
                            BoxEval::Cex(x) => return SearchEnd::Counterexample(x),
                            BoxEval::Open(child) => stack.push(child),
                        }
                    }
                }
                Expansion::Stuck => {
                    return SearchEnd::Unknown(
                        "a box could not be split further (width at floating-point resolution)"
                            .into(),
                    );
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(
                boxes_done = stats.domains,
                boxes_left = stack.len(),
                depth = stats.max_depth,
                "input split"
            );
            last_report = Instant::now();
        }
    }
    SearchEnd::Proven { min_slack }
}

/// One ReLU-split domain. Its intermediate bounds are the root's with the split
/// neurons fixed, so only the splits are kept: a full copy of the bounds per domain
/// was most of the memory (4 GB for 49k open MNIST 256x4 domains).
#[derive(Debug, Clone)]
struct ReluDomain {
    splits: Splits,
    alpha: Vec<Option<Dense>>,
    beta: Dense,
    /// Best slack among rows (for ordering: smallest first).
    score: f64,
    /// The neuron to split next (linear node, neuron), chosen when the domain was
    /// bounded; `None` when every ReLU is fixed.
    next: Option<(usize, usize)>,
    /// The last relaxed forward pass's first layer, for the children's passes.
    forward: bounds::ForwardCache,
}

impl PartialEq for ReluDomain {
    fn eq(&self, o: &Self) -> bool {
        self.score == o.score
    }
}
impl Eq for ReluDomain {}
impl PartialOrd for ReluDomain {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ReluDomain {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.score.total_cmp(&self.score)
    }
}

/// Settings of the ReLU-split search.
#[derive(Debug, Clone)]
pub struct ReluSplitOpts {
    /// α iterations at the root.
    pub root_iters: usize,
    /// α/β iterations per child. Children start from their parent's α and β, so a few
    /// steps suffice: 6 proved MNIST 256x4 prop_11_0.05 with fewer domains than 12 or 24.
    pub iters: usize,
    /// Domains split per batch.
    pub batch: usize,
    /// α-CROWN steps per intermediate layer at the root (0: plain CROWN).
    pub intermediate_iters: usize,
    /// Branch-and-bound refinement of early intermediate layers at the root.
    pub refine: crate::refine::RefineOpts,
    /// Split candidates tried by strong branching per domain (1: BaBSR's pick alone).
    /// 3, with children that keep their parent's bound: MNIST 256x6 prop_7_0.03 2.6 ->
    /// 1.1 s, 256x4 prop_12_0.05 unknown at 300 s -> holds in 129 s (docs/verify.md).
    pub candidates: usize,
}

impl Default for ReluSplitOpts {
    fn default() -> Self {
        ReluSplitOpts {
            root_iters: 30,
            iters: 6,
            batch: 16,
            intermediate_iters: 20,
            refine: crate::refine::RefineOpts::default(),
            candidates: 3,
        }
    }
}

/// The relaxations of a domain: the root's (`root_rel`), with each split neuron's made
/// exact.
pub(crate) fn domain_relaxations(
    net: &Network,
    root: &NodeBounds,
    root_rel: &[Vec<Relax>],
    splits: &Splits,
) -> Vec<Vec<Relax>> {
    let mut rel = root_rel.to_vec();
    for &(z, i, sign) in &splits.list {
        let reader = net.nodes.iter().enumerate().find_map(|(a, n)| match n {
            Node::Act { input, act } if *input == z => Some((a, act)),
            _ => None,
        });
        if let Some((a, act)) = reader.filter(|(a, _)| *a < rel.len()) {
            rel[a][i] = split_relax(act, i, root.lower[z][i], root.upper[z][i], sign);
        }
    }
    rel
}

/// The exact relaxation of element `i` on `[l, u]` under a split: `z >= 0` (sign −1) or
/// `z <= 0` (sign +1).
fn split_relax(act: &Activation, i: usize, l: f64, u: f64, sign: f64) -> Relax {
    if sign < 0.0 {
        bounds::relax(act, i, 0.0, u.max(0.0))
    } else {
        bounds::relax(act, i, l.min(0.0), 0.0)
    }
}

/// The `k` best ReLUs to split, best first, among those still unstable in the domain
/// (`rel`, whose split neurons are exact): BaBSR-like score `|λ| · (−l·u/(u−l))` with `λ`
/// the coefficient on the ReLU output in the best row (`at_act`; the looseness its upper
/// relaxation adds), ties broken by the interval width.
pub(crate) fn pick_neurons(
    net: &Network,
    root: &NodeBounds,
    rel: &[Vec<Relax>],
    at_act: &[Option<Dense>],
    best_row: usize,
    k: usize,
) -> Vec<(usize, usize)> {
    // (score, linear node, neuron), kept sorted best first; k is a handful.
    let mut best: Vec<(f64, usize, usize)> = Vec::with_capacity(k + 1);
    // `rel` may stop short of the output (intermediate refinement): only its nodes count.
    for (idx, node) in net.nodes.iter().enumerate().take(rel.len()) {
        let Node::Act {
            input,
            act: Activation::Relu,
        } = node
        else {
            continue;
        };
        let lam = at_act[idx].as_ref();
        for (i, r) in rel[idx].iter().enumerate() {
            if !r.free_alpha {
                continue;
            }
            let (l, u) = (root.lower[*input][i], root.upper[*input][i]);
            let coef = lam.map_or(0.0, |m| m.data[best_row * m.cols + i]);
            let score = coef.abs() * (-l * u / (u - l)) + 1e-9 * (u - l);
            if best.len() < k || best.last().is_some_and(|(s, _, _)| score > *s) {
                let at = best.partition_point(|(s, _, _)| *s >= score);
                best.insert(at, (score, *input, i));
                best.truncate(k);
            }
        }
    }
    best.into_iter().map(|(_, n, i)| (n, i)).collect()
}

/// The activation node reading linear node `z`.
fn act_of(net: &Network, z: usize) -> Option<usize> {
    net.nodes
        .iter()
        .position(|n| matches!(n, Node::Act { input, .. } if *input == z))
}

/// Filtered smart branching (FSB, De Palma et al. 2021): among BaBSR's best candidates
/// (`cands`), the split whose worse child has the best bound, each child bounded by one
/// CROWN pass with the parent's α and β (the new split's β at 0) and scored by `slack`
/// of its rows' lower bounds. BaBSR's score only estimates what a split gains; these
/// passes measure it. A child's pass equals the parent's (`parent`, kept) down to the
/// split neuron's activation, so it resumes there.
#[allow(clippy::too_many_arguments)] // the parent's bound state, passed through once
pub(crate) fn strong_branch(
    net: &Network,
    root: &NodeBounds,
    rel: &mut [Vec<Relax>],
    alpha: &[Option<Dense>],
    splits: &Splits,
    beta: &Dense,
    parent: &bounds::Backward,
    cands: &[(usize, usize)],
    lower: &[f64],
    upper: &[f64],
    slack: impl Fn(&[f64]) -> f64,
) -> Option<(usize, usize)> {
    // One candidate (or none) needs no comparison.
    if cands.len() <= 1 {
        return cands.first().copied();
    }
    let mut best: Option<(f64, (usize, usize))> = None;
    for &(z, i) in cands {
        let Some(a) = act_of(net, z).filter(|a| *a < rel.len()) else {
            continue;
        };
        let Node::Act { act, .. } = &net.nodes[a] else {
            continue;
        };
        let saved = rel[a][i];
        let (l, u) = (root.lower[z][i], root.upper[z][i]);
        let mut worst = f64::INFINITY;
        for sign in [-1.0, 1.0] {
            let fixed = split_relax(act, i, l, u, sign);
            let quick = bounds::rank_one_first_layer(
                net,
                &root.eps,
                parent,
                Some(alpha),
                a,
                i,
                &saved,
                &fixed,
            );
            let back = match quick {
                Some(b) => b,
                None if bounds::resumable(net, a) => {
                    rel[a][i] = fixed;
                    let opts = BackOpts {
                        alpha: Some(alpha),
                        splits: Some((splits, beta)),
                        keep: false,
                    };
                    let b = bounds::resume(net, rel, &root.eps, parent, a, opts);
                    rel[a][i] = saved;
                    match b {
                        Some(b) => b,
                        None => return cands.first().copied(),
                    }
                }
                // A graph with skips: BaBSR's order is the answer.
                None => return cands.first().copied(),
            };
            let (lb, _) = minimise(&back, lower, upper, false);
            worst = worst.min(slack(&lb));
        }
        if best.is_none_or(|(s, _)| worst > s) {
            best = Some((worst, (z, i)));
        }
    }
    best.map(|(_, n)| n)
}

/// Bounds a ReLU domain for the rows of one clause and picks its next split; returns
/// (best slack, the minimising input vertex per row).
#[allow(clippy::too_many_arguments)] // one call site per search level; a struct would only rename them
fn bound_relu(
    ctx: &Ctx<'_>,
    root: &NodeBounds,
    root_rel: &[Vec<Relax>],
    d: &mut ReluDomain,
    c: &Dense,
    dd: &[f64],
    idx: &[usize],
    lower: &[f64],
    upper: &[f64],
    iters: usize,
    candidates: usize,
) -> (f64, Vec<Vec<f64>>) {
    let mut rel = domain_relaxations(ctx.net, root, root_rel, &d.splits);
    let sb = bounds::spec_bound(
        ctx.net,
        &rel,
        &root.eps,
        c,
        dd,
        lower,
        upper,
        std::mem::take(&mut d.alpha),
        &d.splits,
        d.beta.clone(),
        &SpecOpts {
            iters,
            lr_alpha: 0.1,
            lr_beta: 0.05,
        },
        &mut d.forward,
    );
    let mut best = f64::NEG_INFINITY;
    let mut best_row = 0;
    for (r, v) in sb.lb.iter().enumerate() {
        let slack = v - ctx.spec.margin[idx[r]];
        if slack > best {
            best = slack;
            best_row = r;
        }
    }
    d.alpha = sb.alpha;
    d.beta = sb.beta;
    d.score = best;
    d.next = if best > 0.0 {
        None
    } else {
        let cands = pick_neurons(ctx.net, root, &rel, &sb.back.at_act, best_row, candidates);
        let slack = |lb: &[f64]| {
            lb.iter()
                .enumerate()
                .map(|(r, v)| v + dd[r] - ctx.spec.margin[idx[r]])
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let (alpha, beta) = (&d.alpha, &d.beta);
        strong_branch(
            ctx.net, root, &mut rel, alpha, &d.splits, beta, &sb.back, &cands, lower, upper, slack,
        )
    };
    (best, sb.xs)
}

/// ReLU-split branch and bound (β-CROWN style) for one clause over one box.
pub fn relu_split(
    ctx: &Ctx<'_>,
    clause: usize,
    lower: &[f64],
    upper: &[f64],
    root: &NodeBounds,
    opts: &ReluSplitOpts,
    stats: &mut SearchStats,
) -> SearchEnd {
    let net = ctx.net;
    let (c, dd, idx) = ctx.spec.rows_of(&[clause]);
    let rel = relaxations(net, root);
    let mut d = ReluDomain {
        splits: Splits::default(),
        alpha: bounds::init_alpha(net, &rel, c.rows),
        beta: Dense::zeros(c.rows, 0),
        score: 0.0,
        next: None,
        forward: bounds::ForwardCache::default(),
    };
    let (slack, xs) = bound_relu(
        ctx,
        root,
        &rel,
        &mut d,
        &c,
        &dd,
        &idx,
        lower,
        upper,
        opts.root_iters,
        opts.candidates,
    );
    stats.domains += 1;
    if slack > 0.0 {
        return SearchEnd::Proven { min_slack: slack };
    }
    for x in &xs {
        if let Some(cex) = try_point(ctx, x) {
            return SearchEnd::Counterexample(cex);
        }
    }
    if opts.batch == 0 {
        return SearchEnd::Unknown(format!(
            "bounds only: α-CROWN leaves clause {clause} unproven (best bound {slack:.3e})"
        ));
    }
    let mut heap = BinaryHeap::new();
    heap.push(d);
    let mut min_slack = f64::INFINITY;
    let mut last_report = Instant::now();
    let batch = opts.batch;
    while !heap.is_empty() {
        if Instant::now() >= ctx.deadline {
            return SearchEnd::Unknown(format!(
                "timeout with {} ReLU-split domains left after {} bounded (lowest open bound {:.3e})",
                heap.len(),
                stats.domains,
                heap.peek().map_or(0.0, |d| d.score)
            ));
        }
        let take = heap.len().min(batch);
        let parents: Vec<ReluDomain> = (0..take).filter_map(|_| heap.pop()).collect();
        let mut children = Vec::with_capacity(2 * parents.len());
        for p in parents {
            let Some((node, neuron)) = p.next else {
                // Every ReLU is fixed and the bound is still not positive: the β
                // optimisation did not reach the LP optimum. Give up on this domain.
                return SearchEnd::Unknown(format!(
                    "a fully split domain could not be proven (bound {:.3e}) nor refuted",
                    p.score
                ));
            };
            for active in [true, false] {
                let mut ch = p.clone();
                let sign = if active { -1.0 } else { 1.0 };
                ch.splits.list.push((node, neuron, sign));
                let mut beta = Dense::zeros(c.rows, ch.splits.list.len());
                for r in 0..c.rows {
                    beta.row_mut(r)[..p.beta.cols].copy_from_slice(p.beta.row(r));
                }
                ch.beta = beta;
                children.push(ch);
            }
        }
        let results: Vec<(ReluDomain, f64, Vec<Vec<f64>>)> = children
            .into_par_iter()
            .map(|mut ch| {
                let parent = ch.score;
                let (s, xs) = bound_relu(
                    ctx,
                    root,
                    &rel,
                    &mut ch,
                    &c,
                    &dd,
                    &idx,
                    lower,
                    upper,
                    opts.iters,
                    opts.candidates,
                );
                // The parent's bound holds on its children's smaller domains, and a few
                // α/β steps with the new split's β at 0 can leave a child below it. So the
                // best-first order never revisits a bound already beaten, and the lowest
                // open bound (the progress line's `worst`) only rises.
                let s = s.max(parent);
                ch.score = s;
                (ch, s, xs)
            })
            .collect();
        stats.domains += results.len() as u64;
        for (ch, s, xs) in results {
            stats.max_depth = stats.max_depth.max(ch.splits.list.len());
            if s > 0.0 {
                min_slack = min_slack.min(s);
                continue;
            }
            for x in &xs {
                if let Some(cex) = try_point(ctx, x) {
                    return SearchEnd::Counterexample(cex);
                }
            }
            heap.push(ch);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(
                clause,
                domains_done = stats.domains,
                domains_left = heap.len(),
                depth = stats.max_depth,
                worst = heap.peek().map_or(0.0, |d| d.score),
                "ReLU split"
            );
            last_report = Instant::now();
        }
    }
    SearchEnd::Proven { min_slack }
}

#[cfg(test)]
mod tests {
    use super::combine_rows;

    #[test]
    fn combined_rows_prove_what_no_row_proves_alone() {
        // x + 0.1 and −x + 0.1 on [−1, 1]: each alone reaches −0.9, their mean is 0.1.
        let (v, w) = combine_rows(&[&[1.0], &[-1.0]], &[0.1, 0.1], &[-1.0], &[1.0]).unwrap();
        assert!((v - 0.1).abs() < 1e-12, "{v}");
        assert!(w[0].abs() < 1e-12);
        // Three rows on a square, tight in different corners: x0, x1 and −x0 − x1 (+0.1
        // each); only all three together are positive (at most 0.1, with weights 1/3).
        // The search stops once the bound is positive.
        let (v, _) = combine_rows(
            &[&[1.0, 0.0], &[0.0, 1.0], &[-1.0, -1.0]],
            &[0.1, 0.1, 0.1],
            &[-1.0, -1.0],
            &[1.0, 1.0],
        )
        .unwrap();
        assert!(v > 0.0 && v <= 0.1 + 1e-12, "{v}");
        // A conjunction that is satisfiable (x = 0 makes both rows −0.1) is never proven.
        let (v, _) = combine_rows(&[&[1.0], &[-1.0]], &[-0.1, -0.1], &[-1.0], &[1.0]).unwrap();
        assert!(v <= -0.1 + 1e-12, "{v}");
    }
}
