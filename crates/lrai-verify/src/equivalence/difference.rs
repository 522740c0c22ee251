//! The difference network and the proven bound on it.
//!
//! [`difference_network`] puts both models in one DAG that reads one shared input and
//! outputs `y_opt − y_orig`. Bounding that output with CROWN back-substitution keeps the
//! correlation between the two branches (both see the same `x`), which two independent
//! interval bounds subtracted from each other lose: for two nearly equal networks the
//! input terms cancel in `Λ` and only the relaxation gaps and the quantizers' rounding
//! remain.
//!
//! [`prove_bound`] bounds `|diff|` on every box of the region (α-CROWN on rows `±e_j`),
//! then bisects the worst box along the input with the largest `|coefficient| × width`
//! until the bound meets ε, stops improving on what sampling found, or time runs out.
//! The bound reported is the largest over the current leaves, so it is sound whenever
//! the search stops.

use std::collections::BinaryHeap;
use std::time::Instant;

use rayon::prelude::*;

use crate::bounds::{
    ForwardCache, SpecOpts, Splits, crown_intermediate_within, ibp, init_alpha, relaxations,
    spec_bound,
};
use crate::matrix::{Dense, Mat};
use crate::network::{Activation, Network, Node};
use crate::search::Spec;
use crate::{Result, VerifyError};

use super::InputBox;

/// Copies `net`'s nodes after node 0 into `nodes`, mapping its input to node 0.
/// Returns the map from `net`'s node indices to the new ones.
fn append(nodes: &mut Vec<Node>, dims: &mut Vec<usize>, net: &Network) -> Vec<usize> {
    let mut map = vec![0usize; net.nodes.len()];
    for (k, node) in net.nodes.iter().enumerate().skip(1) {
        let new = node.remapped(&map);
        map[k] = nodes.len();
        nodes.push(new);
        dims.push(net.dims[k]);
    }
    map
}

/// Unit roundoff of f32.
const U: f64 = 5.960_464_477_539_063e-8;

/// True when `a` (of `orig`) computes what `b` (of `opt`) does, given which of `opt`'s
/// earlier nodes have twins in `orig` (`twin[j]`).
fn same_node(a: &Node, b: &Node, twin: &[Option<(usize, Vec<f64>)>]) -> bool {
    let t = |j: usize| twin[j].as_ref().map(|(ka, _)| *ka);
    let same_terms = |ta: &[(usize, Mat)], tb: &[(usize, Mat)]| {
        ta.len() == tb.len()
            && ta
                .iter()
                .zip(tb)
                .all(|((ja, ma), (jb, mb))| t(*jb) == Some(*ja) && ma == mb)
    };
    match (a, b) {
        (
            Node::Linear {
                terms: ta,
                bias: ba,
                abs_terms: aa,
                abs_bias: aba,
                acc_len: la,
            },
            Node::Linear {
                terms: tb,
                bias: bb,
                abs_terms: ab,
                abs_bias: abb,
                acc_len: lb,
            },
        ) => same_terms(ta, tb) && same_terms(aa, ab) && ba == bb && aba == abb && la == lb,
        (Node::Act { input: ia, act: aa }, Node::Act { input: ib, act: ab }) => {
            // Quantizers are not Lipschitz: a rounding difference can flip a step.
            aa == ab && !matches!(aa, Activation::Quantize { .. }) && t(*ib) == Some(*ia)
        }
        _ => false,
    }
}

/// One network computing `opt(x) − orig(x)` from one shared input.
///
/// `orig`'s nodes are copied as they are. A node of `opt` that computes exactly what a
/// node of `orig` does (same operator and weights on twin inputs: an identical model, or
/// the layers a partial quantization kept in float) becomes a *twin*: `orig`'s node
/// plus a divergence `δ` bounded by the two backends' rounding (`|δ| <= |W|·|δ_in| +
/// ε_orig + ε_opt` through affine nodes, `|δ_in|` through ReLU, which is 1-Lipschitz),
/// held as that node's rounding error. Back-substitution then cancels the shared part
/// exactly instead of relaxing two copies of each ReLU independently. Rounding errors
/// are taken over `hull`, a box containing the whole region (they only grow with the
/// magnitudes, so this is sound for every box in it). Other nodes of `opt` are copied.
///
/// The output node is `y_opt − y_orig` with no rounding of its own: the subtraction is
/// ours, exact up to f64; each model's output rounding is charged at its output node.
///
/// # Errors
/// [`VerifyError::Model`] when the input or output sizes differ.
pub fn difference_network(orig: &Network, opt: &Network, hull: &InputBox) -> Result<Network> {
    let mismatch = |what: &str, a: usize, b: usize| VerifyError::Model {
        model: opt.name.clone(),
        reason: format!(
            "its {what} has {b} elements, the original's ('{}') has {a}; \
             an equivalence check needs models with the same input and output sizes",
            orig.name
        ),
    };
    if orig.input_dim() != opt.input_dim() {
        return Err(mismatch("input", orig.input_dim(), opt.input_dim()));
    }
    if orig.output_dim() != opt.output_dim() {
        return Err(mismatch("output", orig.output_dim(), opt.output_dim()));
    }
    if hull.lower.len() != orig.input_dim() {
        return Err(mismatch("region", orig.input_dim(), hull.lower.len()));
    }
    let n_in = orig.input_dim();
    let mut nodes = vec![Node::Input { dim: n_in }];
    let mut dims = vec![n_in];
    // orig's node k stays at index k.
    append(&mut nodes, &mut dims, orig);
    let ba = ibp(orig, &hull.lower, &hull.upper);
    let mut twin: Vec<Option<(usize, Vec<f64>)>> = vec![None; opt.nodes.len()];
    twin[0] = Some((0, vec![0.0; n_in]));
    // Bounds of opt's twin nodes (orig's widened by δ), for opt's own rounding error.
    let mut lb: Vec<Vec<f64>> = vec![Vec::new(); opt.nodes.len()];
    let mut ub: Vec<Vec<f64>> = vec![Vec::new(); opt.nodes.len()];
    lb[0].clone_from(&hull.lower);
    ub[0].clone_from(&hull.upper);
    let mut map = vec![0usize; opt.nodes.len()];
    let gamma1 = U / (1.0 - U);
    for (k, node) in opt.nodes.iter().enumerate().skip(1) {
        let found = (1..orig.nodes.len())
            .find(|&ka| orig.dims[ka] == opt.dims[k] && same_node(&orig.nodes[ka], node, &twin));
        let Some(ka) = found else {
            nodes.push(node.remapped(&map));
            dims.push(opt.dims[k]);
            map[k] = nodes.len() - 1;
            continue;
        };
        let eps_a = |i: usize| ba.eps[ka].get(i).copied().unwrap_or(0.0);
        let dv: Vec<f64> = match node {
            Node::Linear { abs_terms, .. } => {
                let eps_b = opt.rounding_error(k, &lb, &ub);
                let mut d = vec![0.0; opt.dims[k]];
                for (j, m) in abs_terms {
                    if let Some((_, dj)) = &twin[*j] {
                        m.apply_add(dj, &mut d);
                    }
                }
                d.iter()
                    .enumerate()
                    .map(|(i, v)| v + eps_a(i) + eps_b.get(i).copied().unwrap_or(0.0))
                    .collect()
            }
            Node::Act { input, act } => {
                let din = twin[*input]
                    .as_ref()
                    .map(|(_, d)| d.clone())
                    .unwrap_or_default();
                match act {
                    Activation::Relu => din,
                    // Lipschitz 1/4 and 1, plus 16 ulps of rounding in each backend.
                    Activation::Sigmoid => din.iter().map(|v| 0.25 * v + 32.0 * U).collect(),
                    _ => din.iter().map(|v| v + 32.0 * U).collect(),
                }
            }
            Node::Input { .. } => vec![0.0; opt.dims[k]],
        };
        lb[k] = ba.lower[ka].iter().zip(&dv).map(|(l, d)| l - d).collect();
        ub[k] = ba.upper[ka].iter().zip(&dv).map(|(u, d)| u + d).collect();
        // The twin: orig's node plus δ, charged as this node's "rounding error"
        // (γ₁·abs_bias with γ₁ the factor `Network::rounding_error` uses at length 0;
        // 1e-6 covers our own f64 rounding of the product).
        nodes.push(Node::Linear {
            terms: vec![(ka, Mat::Diag(vec![1.0; opt.dims[k]]))],
            bias: vec![0.0; opt.dims[k]],
            abs_terms: Vec::new(),
            abs_bias: dv.iter().map(|d| d * (1.0 + 1e-6) / gamma1).collect(),
            acc_len: 0,
        });
        dims.push(opt.dims[k]);
        map[k] = nodes.len() - 1;
        twin[k] = Some((ka, dv));
    }
    let out_dim = orig.output_dim();
    nodes.push(Node::Linear {
        terms: vec![
            (map[opt.output], Mat::Diag(vec![1.0; out_dim])),
            (orig.output, Mat::Diag(vec![-1.0; out_dim])),
        ],
        bias: vec![0.0; out_dim],
        abs_terms: Vec::new(),
        abs_bias: vec![0.0; out_dim],
        acc_len: 0,
    });
    dims.push(out_dim);
    let output = nodes.len() - 1;
    Ok(Network {
        name: format!("{} − {}", opt.name, orig.name),
        nodes,
        dims,
        output,
        input_name: orig.input_name.clone(),
        input_shape: orig.input_shape.clone(),
        output_name: "difference".into(),
        transposed: Default::default(),
    })
}

/// A proven bound on one box.
#[derive(Debug, Clone)]
pub struct BoxBound {
    /// `max |diff_j|` over the box, per output, float errors and safety margin included.
    pub per_output: Vec<f64>,
    /// The largest of them.
    pub max: f64,
    /// Input dimension to split next (largest `|coefficient| × width` in the worst row).
    pub split_dim: usize,
}

/// Bounds `|diff_j|` for every output over `bx` (α-CROWN with `alpha_iters` steps),
/// intersected with `parent` (bounds of a box containing this one).
pub fn bound_box(
    diff: &Network,
    bx: &InputBox,
    alpha_iters: usize,
    parent: Option<&BoxBound>,
) -> BoxBound {
    let m = diff.output_dim();
    let nb = crown_intermediate_within(diff, &bx.lower, &bx.upper, None);
    let rel = relaxations(diff, &nb);
    // Rows e_j bound diff_j from below, rows −e_j from above.
    let mut c = Dense::zeros(2 * m, m);
    for j in 0..m {
        c.data[j * m + j] = 1.0;
        c.data[(m + j) * m + j] = -1.0;
    }
    let spec = Spec {
        c: c.clone(),
        d: vec![0.0; 2 * m],
        clauses: Vec::new(),
        margin: Vec::new(),
    };
    let margin = spec.margins_for(diff, &nb);
    let alpha = init_alpha(diff, &rel, 2 * m);
    let sb = spec_bound(
        diff,
        &rel,
        &nb.eps,
        &c,
        &spec.d,
        &bx.lower,
        &bx.upper,
        alpha,
        &Splits::default(),
        Dense::zeros(2 * m, 0),
        &SpecOpts {
            iters: alpha_iters,
            lr_alpha: 0.1,
            lr_beta: 0.05,
        },
        &mut ForwardCache::default(),
    );
    let out = diff.output;
    let per_output: Vec<f64> = (0..m)
        .map(|j| {
            let lo = (sb.lb[j] - margin[j]).max(nb.lower[out][j]);
            let hi = (-sb.lb[m + j] + margin[m + j]).min(nb.upper[out][j]);
            // NaN (from a degenerate model) must never read as a small bound.
            let v = hi.max(-lo);
            let v = if v.is_nan() { f64::INFINITY } else { v };
            parent.map_or(v, |p| v.min(p.per_output[j]))
        })
        .collect();
    let (worst, max) =
        per_output
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |a, (j, v)| if v > a.1 { (j, v) } else { a },
            );
    // The row that gave the worst side of the worst output steers the split.
    let lo_side = -(sb.lb[worst] - margin[worst]);
    let row = if lo_side >= -sb.lb[m + worst] + margin[m + worst] {
        worst
    } else {
        m + worst
    };
    let a = sb.back.a_in.row(row);
    let split_dim = (0..bx.lower.len())
        .max_by(|&i, &k| {
            let si = a[i].abs() * (bx.upper[i] - bx.lower[i]);
            let sk = a[k].abs() * (bx.upper[k] - bx.lower[k]);
            si.total_cmp(&sk)
        })
        .unwrap_or(0);
    BoxBound {
        per_output,
        max,
        split_dim,
    }
}

/// Settings of the proof search.
#[derive(Debug, Clone)]
pub struct ProofOpts {
    /// Stop once the bound is at most this.
    pub target: f64,
    /// Stop once the bound is within this factor of the largest difference observed
    /// (it cannot go below the true maximum).
    pub observed: f64,
    /// When to stop.
    pub deadline: Instant,
    /// α-CROWN steps per box.
    pub alpha_iters: usize,
    /// Leaves bisected per round (bounded in parallel).
    pub batch: usize,
}

/// The result of [`prove_bound`].
#[derive(Debug, Clone)]
pub struct ProvenBound {
    /// `max |diff|` over the whole region, proven.
    pub max: f64,
    /// Per output.
    pub per_output: Vec<f64>,
    /// The bound before any splitting (CROWN/α-CROWN per box of the region).
    pub root_max: f64,
    /// Boxes bounded in all.
    pub domains: u64,
    /// Deepest bisection.
    pub max_depth: usize,
    /// Why the search stopped: `target`, `observed`, `timeout`, `stalled` (no 0.1 %
    /// progress in 10 s), `exhausted` (no box left to split), or `violated` (not
    /// searched: a point already exceeds ε).
    pub stop: &'static str,
}

struct Leaf {
    bound: BoxBound,
    bx: InputBox,
    depth: usize,
}

impl PartialEq for Leaf {
    fn eq(&self, other: &Self) -> bool {
        self.bound.max.total_cmp(&other.bound.max).is_eq()
    }
}
impl Eq for Leaf {}
impl PartialOrd for Leaf {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Leaf {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bound.max.total_cmp(&other.bound.max)
    }
}

/// How long the bound may go without dropping by 0.1 % before the search stops.
const STALL_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// A box narrower than this (relative to its root) in the split dimension is not split
/// again: f64 bisection would stop making progress.
const MIN_REL_WIDTH: f64 = 1e-9;

fn bisect(bx: &InputBox, dim: usize) -> Option<(InputBox, InputBox)> {
    let (l, u) = (bx.lower[dim], bx.upper[dim]);
    let mid = 0.5 * (l + u);
    // False for NaN too.
    let wide = u - l > MIN_REL_WIDTH * (1.0 + l.abs().max(u.abs()));
    if !wide || mid <= l || mid >= u {
        return None;
    }
    let mut a = bx.clone();
    let mut b = bx.clone();
    a.upper[dim] = mid;
    b.lower[dim] = mid;
    Some((a, b))
}

/// Proves a bound on `max |diff|` over the union of `boxes`; `progress` is called about
/// once a second with (current bound, domains).
pub fn prove_bound(
    diff: &Network,
    boxes: &[InputBox],
    opts: &ProofOpts,
    progress: &(dyn Fn(f64, u64) + Sync),
) -> ProvenBound {
    let m = diff.output_dim();
    let roots: Vec<Leaf> = boxes
        .par_iter()
        .map(|bx| Leaf {
            bound: bound_box(diff, bx, opts.alpha_iters, None),
            bx: bx.clone(),
            depth: 0,
        })
        .collect();
    let mut domains = roots.len() as u64;
    let mut heap: BinaryHeap<Leaf> = roots.into_iter().collect();
    let root_max = heap.peek().map_or(0.0, |l| l.bound.max);
    let mut finished: Vec<Leaf> = Vec::new();
    let mut max_depth = 0;
    let mut last_report = Instant::now();
    // Stall detection: the bound must drop by 0.1 % every STALL_WINDOW, or splitting
    // stops (what is left is rounding error, which no split removes).
    let mut checkpoint = (Instant::now(), root_max);
    let stop = loop {
        let current = heap.peek().map_or(f64::NEG_INFINITY, |l| l.bound.max).max(
            finished
                .iter()
                .map(|l| l.bound.max)
                .fold(f64::NEG_INFINITY, f64::max),
        );
        if current <= opts.target {
            break "target";
        }
        if current <= opts.observed {
            break "observed";
        }
        if Instant::now() >= opts.deadline {
            break "timeout";
        }
        if heap.is_empty() {
            break "exhausted";
        }
        if checkpoint.0.elapsed() >= STALL_WINDOW {
            if current > checkpoint.1 * (1.0 - 1e-3) {
                break "stalled";
            }
            checkpoint = (Instant::now(), current);
        }
        if last_report.elapsed().as_secs_f64() >= 1.0 {
            progress(current, domains);
            last_report = Instant::now();
        }
        let mut work = Vec::with_capacity(opts.batch);
        while work.len() < opts.batch.max(1) {
            let Some(leaf) = heap.pop() else { break };
            // Only leaves above the bound's floor are worth splitting.
            if leaf.bound.max <= opts.target.max(opts.observed) {
                heap.push(leaf);
                break;
            }
            work.push(leaf);
        }
        let children: Vec<(Leaf, Option<[Leaf; 2]>)> = work
            .into_par_iter()
            .map(|leaf| match bisect(&leaf.bx, leaf.bound.split_dim) {
                Some((a, b)) => {
                    let child = |bx: InputBox| Leaf {
                        bound: bound_box(diff, &bx, opts.alpha_iters, Some(&leaf.bound)),
                        bx,
                        depth: leaf.depth + 1,
                    };
                    let pair = [child(a), child(b)];
                    (leaf, Some(pair))
                }
                None => (leaf, None),
            })
            .collect();
        for (leaf, kids) in children {
            match kids {
                Some(pair) => {
                    domains += 2;
                    for kid in pair {
                        max_depth = max_depth.max(kid.depth);
                        heap.push(kid);
                    }
                }
                None => finished.push(leaf),
            }
        }
    };
    let mut per_output = vec![0.0f64; m];
    for leaf in heap.iter().chain(&finished) {
        for (p, v) in per_output.iter_mut().zip(&leaf.bound.per_output) {
            *p = p.max(*v);
        }
    }
    ProvenBound {
        max: per_output.iter().copied().fold(0.0, f64::max),
        per_output,
        root_max,
        domains,
        max_depth,
        stop,
    }
}
