//! Intermediate bounds tightened by branch and bound.
//!
//! Deep MNIST networks at ε = 0.05 stay out of reach of a ReLU-split search when the
//! bounds of their early hidden layers come from a per-neuron linear relaxation alone:
//! every later layer inherits the looseness. α,β-CROWN refines those layers with a MIP
//! solver; here each still-unstable neuron of an early layer gets a small β-CROWN branch
//! and bound of its own over the ReLUs before it, with the neuron's value as the
//! objective. The bound is the minimum over the open leaves, which cover the whole
//! input region, so it is sound at any budget; the search stops early once the neuron
//! is proven stable.

use std::collections::BinaryHeap;
use std::time::Instant;

use rayon::prelude::*;

use crate::bounds::{self, ForwardCache, NodeBounds, Relax, SpecOpts, Splits};
use crate::matrix::Dense;
use crate::network::Network;
use crate::search::{domain_relaxations, pick_neurons, strong_branch};

/// Settings of the refinement.
#[derive(Debug, Clone)]
pub struct RefineOpts {
    /// Hidden ReLU layers refined after the first (whose bounds are exact): 0 turns
    /// refinement off, `usize::MAX` (the default) refines them all. A layer where more than three quarters of the neurons are
    /// unstable is left alone: its neurons' own searches would not close (MNIST 256x6
    /// ε = 0.03 spent 47 s on a layer of 256 unstable neurons and stabilised none),
    /// while half can collapse (the same network's prop_9: 120 unstable to 3).
    pub layers: usize,
    /// Domains bounded per neuron and side, the root included, in the last round.
    pub domains: usize,
    /// α steps at each neuron's root.
    pub root_iters: usize,
    /// α/β steps per child (children start from their parent's α and β).
    pub iters: usize,
    /// The verifier first searches without refinement for this share of its timeout
    /// (most instances need no refinement, and it costs seconds)...
    pub quick_share: f64,
    /// ...then refines for at most this share of the time left, and searches again.
    pub share: f64,
    /// Split candidates tried by strong branching per leaf (1: BaBSR's pick alone; 3 as
    /// in the search, [`crate::search::ReluSplitOpts::candidates`]).
    pub candidates: usize,
    /// When refinement must end; the time left is shared evenly among the layers still
    /// to refine, and a neuron whose turn comes after its layer's share keeps the bound
    /// it had.
    pub deadline: Option<Instant>,
}

impl Default for RefineOpts {
    fn default() -> Self {
        RefineOpts {
            layers: usize::MAX,
            domains: 1024,
            root_iters: 10,
            iters: 6,
            quick_share: 0.1,
            share: 0.45,
            candidates: 3,
            deadline: None,
        }
    }
}

/// One leaf of a neuron's search.
struct Leaf {
    splits: Splits,
    alpha: Vec<Option<Dense>>,
    beta: Dense,
    lb: f64,
    next: Option<(usize, usize)>,
    forward: ForwardCache,
}

impl PartialEq for Leaf {
    fn eq(&self, o: &Self) -> bool {
        self.lb == o.lb
    }
}
impl Eq for Leaf {}
impl PartialOrd for Leaf {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Leaf {
    // Smallest bound first: it is the one that limits the neuron's bound.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.lb.total_cmp(&self.lb)
    }
}

/// Tightens the unstable ReLU inputs of linear node `z` in `b` until `until`; `rel`
/// has the relaxations of every node before `z`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_node(
    net: &Network,
    b: &mut NodeBounds,
    rel: &[Vec<Relax>],
    z: usize,
    lower: &[f64],
    upper: &[f64],
    opts: &RefineOpts,
    until: Option<Instant>,
) {
    let dim = net.dims[z];
    let mut unstable = bounds::unstable_relus(b, z);
    if opts.domains == 0 || unstable.is_empty() || 4 * unstable.len() > 3 * dim {
        return;
    }
    // Nearest to stable first: the likeliest to be settled in the time given.
    let gap = |i: usize| (-b.lower[z][i]).min(b.upper[z][i]);
    unstable.sort_by(|&x, &y| gap(x).total_cmp(&gap(y)));
    let mut rows = bounds::signed_rows(&unstable);
    let before = unstable.len();
    let started = Instant::now();
    // Rounds of growing budgets (64, 256, ... up to `domains`) over the neurons still
    // unstable: every neuron gets a small search before a few hard ones use up the
    // layer's time (one pass at 1,024 left MNIST 256x6 prop_0_0.05 unknown, where 256
    // proved it); a round repeats at most a quarter of the next one's work.
    let mut budget = opts.domains.min(64);
    loop {
        let shared: &NodeBounds = b;
        let found: Vec<f64> = rows
            .par_iter()
            .map(|&(i, sign)| {
                if until.is_some_and(|t| Instant::now() >= t) {
                    return f64::NEG_INFINITY;
                }
                neuron_bound(
                    net, shared, rel, z, i, sign, lower, upper, opts, budget, until,
                )
            })
            .collect();
        bounds::narrow_signed(b, z, &rows, &found);
        // A neuron proven stable from either side needs nothing more.
        rows.retain(|&(i, _)| b.lower[z][i] < 0.0 && b.upper[z][i] > 0.0);
        if budget >= opts.domains || rows.is_empty() || until.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        budget = opts.domains.min(budget.saturating_mul(4));
    }
    tracing::info!(
        node = z,
        unstable_before = before,
        unstable_after = bounds::unstable_relus(b, z).len(),
        seconds = started.elapsed().as_secs_f64(),
        "intermediate bounds refined by branch and bound"
    );
}

/// A lower bound of `sign · z_i` by best-first branch and bound.
#[allow(clippy::too_many_arguments)]
fn neuron_bound(
    net: &Network,
    b: &NodeBounds,
    rel: &[Vec<Relax>],
    z: usize,
    i: usize,
    sign: f64,
    lower: &[f64],
    upper: &[f64],
    opts: &RefineOpts,
    budget: usize,
    until: Option<Instant>,
) -> f64 {
    let dim = net.dims[z];
    let mut lam = Dense::zeros(1, dim);
    lam.data[i] = sign;
    let bound = |leaf: &mut Leaf, iters: usize| {
        let mut drel = domain_relaxations(net, b, rel, &leaf.splits);
        let sb = bounds::optimise(
            net,
            &drel,
            &b.eps,
            z,
            &lam,
            &[0.0],
            lower,
            upper,
            std::mem::take(&mut leaf.alpha),
            &leaf.splits,
            leaf.beta.clone(),
            &SpecOpts {
                iters,
                lr_alpha: 0.1,
                lr_beta: 0.05,
            },
            &mut leaf.forward,
        );
        leaf.lb = sb.lb[0];
        leaf.next = if leaf.lb >= 0.0 {
            None
        } else {
            let cands = pick_neurons(net, b, &drel, &sb.back.at_act, 0, opts.candidates);
            strong_branch(
                net,
                b,
                &mut drel,
                &sb.alpha,
                &leaf.splits,
                &sb.beta,
                &sb.back,
                &cands,
                lower,
                upper,
                |lb| lb[0],
            )
        };
        leaf.alpha = sb.alpha;
        leaf.beta = sb.beta;
    };
    let mut root = Leaf {
        splits: Splits::default(),
        alpha: bounds::init_alpha(net, rel, 1),
        beta: Dense::zeros(1, 0),
        lb: f64::NEG_INFINITY,
        next: None,
        forward: ForwardCache::default(),
    };
    bound(&mut root, opts.root_iters);
    let mut heap = BinaryHeap::new();
    heap.push(root);
    let mut spent = 1;
    while spent < budget && until.is_none_or(|t| Instant::now() < t) {
        let Some(worst) = heap.pop() else { break };
        // Proven stable (the bound is non-negative), or nothing left to split.
        let Some((node, neuron)) = worst.next.filter(|_| worst.lb < 0.0) else {
            heap.push(worst);
            break;
        };
        for s in [-1.0, 1.0] {
            let mut splits = worst.splits.clone();
            splits.list.push((node, neuron, s));
            let mut beta = Dense::zeros(1, splits.list.len());
            beta.row_mut(0)[..worst.beta.cols].copy_from_slice(worst.beta.row(0));
            let mut ch = Leaf {
                splits,
                alpha: worst.alpha.clone(),
                beta,
                lb: f64::NEG_INFINITY,
                next: None,
                forward: worst.forward.clone(),
            };
            bound(&mut ch, opts.iters);
            // A child is never looser than its parent: the parent's bound holds on it.
            ch.lb = ch.lb.max(worst.lb);
            heap.push(ch);
        }
        spent += 2;
    }
    heap.peek().map_or(f64::NEG_INFINITY, |l| l.lb)
}
