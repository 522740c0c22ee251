//! Complete search by branch and bound, on rayon.
//!
//! - **Input splitting** ([`input_split`]) for low-dimensional inputs (ACAS Xu has 5):
//!   bisect the box along the dimension with the largest `|coefficient| × width` in the
//!   worst row's linear bound, bound each half with CROWN (intermediate bounds
//!   recomputed on the half), and check the minimising vertex and the centre for a
//!   counterexample.
//! - **ReLU splitting** ([`relu_split`]) for wide inputs (MNIST has 784): split an
//!   unstable ReLU (BaBSR-style score) into `z >= 0` and `z <= 0`, and bound each child
//!   with α-CROWN plus β multipliers for every split on its path (β-CROWN). Intermediate
//!   bounds are inherited from the root, tightened only at the split neuron.
//!
//! A domain is proven when, for every pending clause, some row's lower bound exceeds
//! that row's float safety margin.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rayon::prelude::*;

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

#[derive(Debug, Clone)]
struct BoxDomain {
    lower: Vec<f64>,
    upper: Vec<f64>,
    pending: Vec<usize>,
    /// Worst (best-row) bound among pending clauses at the parent, for ordering.
    score: f64,
    depth: usize,
}

impl PartialEq for BoxDomain {
    fn eq(&self, o: &Self) -> bool {
        self.score == o.score
    }
}
impl Eq for BoxDomain {}
impl PartialOrd for BoxDomain {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for BoxDomain {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // BinaryHeap pops the largest: make the lowest score the largest.
        o.score.total_cmp(&self.score)
    }
}

enum BoxOutcome {
    Proven(f64),
    Cex(Vec<f64>),
    Split(Box<(BoxDomain, BoxDomain)>),
    Stuck,
}

/// How much finer (relative to the root box) a dimension may be split than the coarsest
/// one before only the coarser ones are candidates. At 1e-3, ACAS Xu prop_1 on net 1_4
/// bisected four inputs down to 2⁻¹⁰ around one it never split and timed out (so did
/// six other prop_1 instances); at 0.1 (about three halvings) 1_4 takes 371 boxes. It
/// hurts instances that need one input split finely (2_7 prop_1 went from 4 s to a
/// timeout): see docs/verify.md, Benchmark.
const MAX_SPLIT_RATIO: f64 = 0.1;

/// Bounds one box: proven clauses drop out, the rest split.
fn bound_box(ctx: &Ctx<'_>, d: &BoxDomain) -> BoxOutcome {
    let net = ctx.net;
    let nb = bounds::crown_intermediate(net, &d.lower, &d.upper);
    let rel = relaxations(net, &nb);
    let (c, dd, idx) = ctx.spec.rows_of(&d.pending);
    let back = backward(
        net,
        &rel,
        &nb.eps,
        net.output,
        c,
        BackOpts {
            alpha: None,
            splits: None,
            keep: false,
        },
    );
    let (lb, xs) = minimise(&back, &d.lower, &d.upper, true);
    // Margins from this box's own bounds: much tighter than the root's.
    let margin = ctx.spec.margins_for(net, &nb);
    let mut pending = Vec::new();
    let mut worst = f64::INFINITY;
    let mut worst_row = 0;
    let mut min_slack = f64::INFINITY;
    let mut off = 0;
    for &cl in &d.pending {
        let n = ctx.spec.clauses[cl].len();
        let mut best = f64::NEG_INFINITY;
        let mut best_r = off;
        for r in off..off + n {
            let slack = lb[r] + dd[r] - margin[idx[r]].min(ctx.spec.margin[idx[r]]);
            if slack > best {
                best = slack;
                best_r = r;
            }
        }
        if best > 0.0 {
            min_slack = min_slack.min(best);
        } else {
            pending.push(cl);
            if best < worst {
                worst = best;
                worst_row = best_r;
            }
        }
        off += n;
    }
    if pending.is_empty() {
        return BoxOutcome::Proven(min_slack);
    }
    // Counterexample candidates: the worst row's minimising vertex and the centre.
    let centre: Vec<f64> = d
        .lower
        .iter()
        .zip(&d.upper)
        .map(|(l, u)| 0.5 * (l + u))
        .collect();
    for x in [&xs[worst_row], &centre] {
        if let Some(cex) = try_point(ctx, x) {
            return BoxOutcome::Cex(cex);
        }
    }
    // Split where the worst row's linear bound varies most (|coefficient| × width), but
    // only among dimensions not already split more than MAX_SPLIT_RATIO finer (relative
    // to the root box) than the coarsest one: the coefficients are myopic (a dimension
    // with coefficient zero still matters through the relaxations' intercepts).
    let row = back.a_in.row(worst_row);
    let rel = |i: usize| (d.upper[i] - d.lower[i]) / ctx.root_width[i];
    let max_rel = (0..d.lower.len()).map(rel).fold(0.0, f64::max);
    let mut dim = None;
    let mut best_score = -1.0;
    #[allow(clippy::needless_range_loop)] // the index addresses several parallel arrays
    for i in 0..d.lower.len() {
        let w = d.upper[i] - d.lower[i];
        if w <= 0.0 || rel(i) < MAX_SPLIT_RATIO * max_rel {
            continue;
        }
        // Ties (all coefficients zero) go to the relatively widest dimension.
        let s = row[i].abs() * w + 1e-300 * rel(i);
        if s > best_score {
            best_score = s;
            dim = Some(i);
        }
    }
    let Some(dim) = dim else {
        return BoxOutcome::Stuck;
    };
    let mid = 0.5 * (d.lower[dim] + d.upper[dim]);
    if !(mid > d.lower[dim] && mid < d.upper[dim]) {
        return BoxOutcome::Stuck;
    }
    let mut a = BoxDomain {
        lower: d.lower.clone(),
        upper: d.upper.clone(),
        pending: pending.clone(),
        score: worst,
        depth: d.depth + 1,
    };
    let mut b = a.clone();
    b.pending = pending;
    a.upper[dim] = mid;
    b.lower[dim] = mid;
    BoxOutcome::Split(Box::new((a, b)))
}

/// Input-split branch and bound over one box.
pub fn input_split(
    ctx: &Ctx<'_>,
    lower: &[f64],
    upper: &[f64],
    stats: &mut SearchStats,
) -> SearchEnd {
    // Depth first (a stack): the frontier, and the parent bounds it holds, stay small.
    let mut heap: Vec<BoxDomain> = Vec::new();
    heap.push(BoxDomain {
        lower: lower.to_vec(),
        upper: upper.to_vec(),
        pending: (0..ctx.spec.clauses.len()).collect(),
        score: f64::NEG_INFINITY,
        depth: 0,
    });
    let mut min_slack = f64::INFINITY;
    let mut last_report = Instant::now();
    let batch = 64 * rayon::current_num_threads().max(1);
    while !heap.is_empty() {
        if Instant::now() >= ctx.deadline {
            return SearchEnd::Unknown(format!(
                "timeout with {} boxes left after {} bounded",
                heap.len(),
                stats.domains
            ));
        }
        let take = heap.len().min(batch);
        let work: Vec<BoxDomain> = (0..take).filter_map(|_| heap.pop()).collect();
        let results: Vec<BoxOutcome> = work.par_iter().map(|d| bound_box(ctx, d)).collect();
        stats.domains += work.len() as u64;
        for (d, r) in work.iter().zip(results) {
            stats.max_depth = stats.max_depth.max(d.depth);
            match r {
                BoxOutcome::Proven(s) => min_slack = min_slack.min(s),
                BoxOutcome::Cex(x) => return SearchEnd::Counterexample(x),
                BoxOutcome::Split(pair) => {
                    let (a, b) = *pair;
                    heap.push(a);
                    heap.push(b);
                }
                BoxOutcome::Stuck => {
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
                boxes_left = heap.len(),
                depth = stats.max_depth,
                "input split"
            );
            last_report = Instant::now();
        }
    }
    SearchEnd::Proven { min_slack }
}

/// One ReLU-split domain.
#[derive(Debug, Clone)]
struct ReluDomain {
    splits: Splits,
    bounds: NodeBounds,
    alpha: Vec<Option<Dense>>,
    beta: Dense,
    /// Best slack among rows (for ordering: smallest first).
    score: f64,
    /// Coefficients at activations from the last bound, for branching.
    at_act: Vec<Option<Dense>>,
    /// Row with the best (largest) slack at the last bound.
    best_row: usize,
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
    /// α/β iterations per child.
    pub iters: usize,
    /// Domains split per batch.
    pub batch: usize,
}

impl Default for ReluSplitOpts {
    fn default() -> Self {
        ReluSplitOpts {
            root_iters: 30,
            iters: 12,
            batch: 16,
        }
    }
}

/// Picks the unstable ReLU to split: BaBSR-like score `|λ| · (−l·u/(u−l))` with `λ`
/// the coefficient on the ReLU output in the best row (the looseness its upper
/// relaxation adds), ties broken by the interval width.
fn pick_neuron(net: &Network, d: &ReluDomain) -> Option<(usize, usize)> {
    let mut best: Option<(f64, usize, usize)> = None;
    for (idx, node) in net.nodes.iter().enumerate() {
        let Node::Act {
            input,
            act: Activation::Relu,
        } = node
        else {
            continue;
        };
        let lam = d.at_act[idx].as_ref();
        for i in 0..net.dims[*input] {
            let (l, u) = (d.bounds.lower[*input][i], d.bounds.upper[*input][i]);
            if !(l < 0.0 && u > 0.0) {
                continue;
            }
            let coef = lam.map_or(0.0, |m| m.data[d.best_row * m.cols + i]);
            let score = coef.abs() * (-l * u / (u - l)) + 1e-9 * (u - l);
            if best.is_none_or(|(s, _, _)| score > s) {
                best = Some((score, *input, i));
            }
        }
    }
    best.map(|(_, n, i)| (n, i))
}

/// Bounds a ReLU domain for the rows of one clause; returns (best slack, best row).
#[allow(clippy::too_many_arguments)] // one call site per search level; a struct would only rename them
fn bound_relu(
    ctx: &Ctx<'_>,
    d: &mut ReluDomain,
    c: &Dense,
    dd: &[f64],
    idx: &[usize],
    lower: &[f64],
    upper: &[f64],
    iters: usize,
) -> (f64, Vec<Vec<f64>>) {
    let rel: Vec<Vec<Relax>> = relaxations(ctx.net, &d.bounds);
    let sb = bounds::spec_bound(
        ctx.net,
        &rel,
        &d.bounds.eps,
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
    d.at_act = sb.back.at_act;
    d.best_row = best_row;
    d.score = best;
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
        bounds: root.clone(),
        alpha: bounds::init_alpha(net, &rel, c.rows),
        beta: Dense::zeros(c.rows, 0),
        score: 0.0,
        at_act: Vec::new(),
        best_row: 0,
    };
    let (slack, xs) = bound_relu(ctx, &mut d, &c, &dd, &idx, lower, upper, opts.root_iters);
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
                "timeout with {} ReLU-split domains left after {} bounded",
                heap.len(),
                stats.domains
            ));
        }
        let take = heap.len().min(batch);
        let parents: Vec<ReluDomain> = (0..take).filter_map(|_| heap.pop()).collect();
        let mut children = Vec::with_capacity(2 * parents.len());
        for p in parents {
            let Some((node, neuron)) = pick_neuron(net, &p) else {
                // Every ReLU is fixed and the bound is still not positive: the β
                // optimisation did not reach the LP optimum. Give up on this domain.
                return SearchEnd::Unknown(format!(
                    "a fully split domain could not be proven (bound {:.3e}) nor refuted",
                    p.score
                ));
            };
            for active in [true, false] {
                let mut ch = p.clone();
                if active {
                    ch.bounds.lower[node][neuron] = 0.0;
                } else {
                    ch.bounds.upper[node][neuron] = 0.0;
                }
                let sign = if active { -1.0 } else { 1.0 };
                ch.splits.list.push((node, neuron, sign));
                let mut beta = Dense::zeros(c.rows, ch.splits.list.len());
                for r in 0..c.rows {
                    beta.row_mut(r)[..p.beta.cols].copy_from_slice(p.beta.row(r));
                }
                ch.beta = beta;
                // Refresh the ReLU output bounds of the split neuron.
                children.push(ch);
            }
        }
        let results: Vec<(ReluDomain, f64, Vec<Vec<f64>>)> = children
            .into_par_iter()
            .map(|mut ch| {
                let (s, xs) = bound_relu(ctx, &mut ch, &c, &dd, &idx, lower, upper, opts.iters);
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
