//! Bound propagation over a [`Network`]: interval bounds (IBP), linear relaxations with
//! back-substitution (CROWN / DeepPoly), α-CROWN (optimised ReLU lower slopes) and
//! β-CROWN split multipliers.
//!
//! Back-substitution starts from a coefficient matrix `Λ` on some node (`k` rows, one
//! per bound wanted) and walks the DAG backwards in topological order: through an affine
//! node `Λ ← Λ·W` (bias into the constant), through an activation the lower or upper
//! linear relaxation by the sign of each coefficient. At the input, the linear function
//! of `x` is minimised over the box in closed form. Gradients for α and β come from a
//! forward pass of the relaxed network at the minimising vertex (envelope theorem).

use rayon::prelude::*;

use crate::matrix::{Dense, Mat, dot};
use crate::network::{Activation, Network, Node};

/// Interval bounds for every node of a network (empty vectors where not computed).
#[derive(Debug, Clone)]
pub struct NodeBounds {
    /// Lower bound per node and element.
    pub lower: Vec<Vec<f64>>,
    /// Upper bound per node and element.
    pub upper: Vec<Vec<f64>>,
    /// Rounding error a backend may add at each node ([`Network::rounding_error`]);
    /// the bounds above already include it.
    pub eps: Vec<Vec<f64>>,
}

/// Linear lower and upper bounds of one activation element: `lo_s·z + lo_c <= a <= up_s·z + up_c`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relax {
    /// Lower slope.
    pub lo_s: f64,
    /// Lower intercept.
    pub lo_c: f64,
    /// Upper slope.
    pub up_s: f64,
    /// Upper intercept.
    pub up_c: f64,
    /// True for an unstable ReLU, whose lower slope is the free α in `[0, 1]`.
    pub free_alpha: bool,
}

/// Relaxation of one element of `act` on `[l, u]`.
pub fn relax(act: &Activation, i: usize, l: f64, u: f64) -> Relax {
    let fixed = |lo_s: f64, lo_c: f64, up_s: f64, up_c: f64| Relax {
        lo_s,
        lo_c,
        up_s,
        up_c,
        free_alpha: false,
    };
    match act {
        Activation::Relu => {
            if l >= 0.0 {
                fixed(1.0, 0.0, 1.0, 0.0)
            } else if u <= 0.0 {
                fixed(0.0, 0.0, 0.0, 0.0)
            } else {
                let s = u / (u - l);
                Relax {
                    lo_s: if u > -l { 1.0 } else { 0.0 },
                    lo_c: 0.0,
                    up_s: s,
                    up_c: -s * l,
                    free_alpha: true,
                }
            }
        }
        Activation::Sigmoid | Activation::Tanh => s_shaped(act, i, l, u),
        Activation::Quantize {
            scale,
            zero_point,
            qmin,
            qmax,
        } => {
            let (s, z) = (scale[i], zero_point[i]);
            let (ql, qu) = act.eval_range(i, l, u);
            if ql == qu {
                return fixed(0.0, ql, 0.0, qu);
            }
            let unclamped =
                (l / s).round_ties_even() + z >= *qmin && (u / s).round_ties_even() + z <= *qmax;
            if unclamped {
                // |round(v) - v| <= 1/2 for every v.
                fixed(1.0 / s, z - 0.5, 1.0 / s, z + 0.5)
            } else {
                clamped_quantizer(1.0 / s, z, *qmin, *qmax, l, u).unwrap_or_else(|| {
                    // Monotone: the constant bounds are sound.
                    fixed(0.0, ql, 0.0, qu)
                })
            }
        }
    }
}

/// A quantizer clamped on one side only, e.g. a ReLU folded into a u8 zero point:
/// `q = clamp(round(z/s + zp))` lies between `clamp(v − ½)` and `clamp(v + ½)` with
/// `v = z/s + zp` (any round-to-nearest rule; the f32 error of `z/s` is the node's
/// rounding error). With only the lower clamp both envelopes are convex: a supporting
/// line below (slope `1/s` or 0, whichever leaves less area, as CROWN does for ReLU) and
/// the chord above; with only the upper clamp, mirrored. `None` when both clamps can
/// act.
fn clamped_quantizer(inv_s: f64, zp: f64, qmin: f64, qmax: f64, l: f64, u: f64) -> Option<Relax> {
    let v = |x: f64| x * inv_s + zp;
    let width = u - l;
    if width.is_nan() || width <= 0.0 {
        return None;
    }
    let chord = |f: &dyn Fn(f64) -> f64| {
        let slope = (f(u) - f(l)) / width;
        (slope, f(l) - slope * l)
    };
    let relax = |lo_s: f64, lo_c: f64, up_s: f64, up_c: f64| Relax {
        lo_s,
        lo_c,
        up_s,
        up_c,
        free_alpha: false,
    };
    if v(u) + 0.5 <= qmax {
        let (up_s, up_c) = chord(&|x| (v(x) + 0.5).max(qmin));
        let steep = v(u) - 0.5 - qmin > qmin - (v(l) - 0.5);
        Some(if steep {
            relax(inv_s, zp - 0.5, up_s, up_c)
        } else {
            relax(0.0, qmin, up_s, up_c)
        })
    } else if v(l) - 0.5 >= qmin {
        let (lo_s, lo_c) = chord(&|x| (v(x) - 0.5).min(qmax));
        let steep = qmax - (v(l) + 0.5) > v(u) + 0.5 - qmax;
        Some(if steep {
            relax(lo_s, lo_c, inv_s, zp + 0.5)
        } else {
            relax(lo_s, lo_c, 0.0, qmax)
        })
    } else {
        None
    }
}

/// Sound linear bounds of sigmoid or tanh on `[l, u]`: chord and tangent in the convex
/// (x <= 0) and concave (x >= 0) parts, parallel lines with the smaller end slope
/// across 0 (the derivative is unimodal with its peak at 0, so `f(x) - d·x` is
/// non-decreasing there). Intercepts are padded by 1e-12 for the error of `exp`/`tanh`.
fn s_shaped(act: &Activation, i: usize, l: f64, u: f64) -> Relax {
    const PAD: f64 = 1e-12;
    let f = |x: f64| act.eval(i, x);
    let df = |x: f64| act.derivative(i, x);
    let fixed = |lo_s: f64, lo_c: f64, up_s: f64, up_c: f64| Relax {
        lo_s,
        lo_c: lo_c - PAD,
        up_s,
        up_c: up_c + PAD,
        free_alpha: false,
    };
    let width = u - l;
    // NaN widths (from NaN bounds) take the safe constant relaxation too.
    if width.is_nan() || width <= 1e-9 {
        return fixed(0.0, f(l), 0.0, f(u));
    }
    let chord_s = (f(u) - f(l)) / (u - l);
    let chord_c = f(l) - chord_s * l;
    let m = 0.5 * (l + u);
    let tan_s = df(m);
    let tan_c = f(m) - tan_s * m;
    if u <= 0.0 {
        // Convex: tangent below, chord above.
        fixed(tan_s, tan_c, chord_s, chord_c)
    } else if l >= 0.0 {
        // Concave: chord below, tangent above.
        fixed(chord_s, chord_c, tan_s, tan_c)
    } else {
        let d = df(l).min(df(u));
        fixed(d, f(l) - d * l, d, f(u) - d * u)
    }
}

/// Interval bound propagation from a box, including the backend's rounding error.
pub fn ibp(net: &Network, lower: &[f64], upper: &[f64]) -> NodeBounds {
    let n = net.nodes.len();
    let mut b = NodeBounds {
        lower: Vec::with_capacity(n),
        upper: Vec::with_capacity(n),
        eps: Vec::with_capacity(n),
    };
    for k in 0..n {
        let (l, u) = ibp_node(net, &b, k, lower, upper);
        b.lower.push(l);
        b.upper.push(u);
        b.eps.push(Vec::new());
        let e = net.rounding_error(k, &b.lower, &b.upper);
        widen(&mut b, k, &e);
        b.eps[k] = e;
    }
    b
}

/// Widens node `k`'s bounds by its rounding error.
fn widen(b: &mut NodeBounds, k: usize, e: &[f64]) {
    for (i, e) in e.iter().enumerate() {
        b.lower[k][i] -= e;
        b.upper[k][i] += e;
    }
}

/// Interval bounds of node `k` from earlier nodes' bounds (without its own rounding).
fn ibp_node(
    net: &Network,
    b: &NodeBounds,
    k: usize,
    lower: &[f64],
    upper: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    match &net.nodes[k] {
        Node::Input { .. } => (lower.to_vec(), upper.to_vec()),
        Node::Linear { terms, bias, .. } => {
            let mut c = bias.clone();
            let mut r = vec![0.0; bias.len()];
            for (j, m) in terms {
                let cj: Vec<f64> = b.lower[*j]
                    .iter()
                    .zip(&b.upper[*j])
                    .map(|(a, bb)| 0.5 * (a + bb))
                    .collect();
                let rj: Vec<f64> = b.lower[*j]
                    .iter()
                    .zip(&b.upper[*j])
                    .map(|(a, bb)| 0.5 * (bb - a))
                    .collect();
                m.apply_add(&cj, &mut c);
                m.abs_apply_add(&rj, &mut r);
            }
            (
                c.iter().zip(&r).map(|(c, r)| c - r).collect(),
                c.iter().zip(&r).map(|(c, r)| c + r).collect(),
            )
        }
        Node::Act { input, act } => b.lower[*input]
            .iter()
            .zip(&b.upper[*input])
            .enumerate()
            .map(|(i, (&l, &u))| act.eval_range(i, l, u))
            .unzip(),
    }
}

/// Relaxations of every activation node from the bounds of its input.
pub fn relaxations(net: &Network, b: &NodeBounds) -> Vec<Vec<Relax>> {
    net.nodes.iter().map(|n| node_relaxations(n, b)).collect()
}

/// Relaxations of one node's elements (empty unless it is an activation).
pub(crate) fn node_relaxations(node: &Node, b: &NodeBounds) -> Vec<Relax> {
    match node {
        Node::Act { input, act } => b.lower[*input]
            .iter()
            .zip(&b.upper[*input])
            .enumerate()
            .map(|(i, (&l, &u))| relax(act, i, l, u))
            .collect(),
        _ => Vec::new(),
    }
}

/// Split constraints on pre-activation (linear) nodes, with their multipliers.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    /// (linear node, neuron, sign): sign = -1 for `z >= 0` (active), +1 for `z <= 0`
    /// (inactive); the constraint is `sign·z <= 0`.
    pub list: Vec<(usize, usize, f64)>,
}

/// The result of one back-substitution.
#[derive(Debug, Clone)]
pub struct Backward {
    /// Coefficients on the input, `k × n_in`.
    pub a_in: Dense,
    /// Constant per row.
    pub c: Vec<f64>,
    /// The coefficient matrix reaching each activation node's output (when kept).
    pub at_act: Vec<Option<Dense>>,
    /// The constant per row accumulated before each activation node (when kept), so a
    /// pass that differs only from that node down can resume there ([`resume`]).
    pub c_at: Vec<Option<Vec<f64>>>,
}

/// Options for one back-substitution.
#[derive(Debug, Clone, Copy)]
pub struct BackOpts<'a> {
    /// α per activation node (`k × dim`), for unstable ReLUs; `None`: CROWN's choice.
    pub alpha: Option<&'a [Option<Dense>]>,
    /// Split constraints and their multipliers β (`k × splits`).
    pub splits: Option<(&'a Splits, &'a Dense)>,
    /// Keep the coefficient matrices at activations (for gradients and branching).
    pub keep: bool,
}

/// Back-substitutes `lambda` (`k × dim(start)`) from `start` to the input.
pub fn backward(
    net: &Network,
    relax: &[Vec<Relax>],
    eps: &[Vec<f64>],
    start: usize,
    lambda: Dense,
    opts: BackOpts<'_>,
) -> Backward {
    let k = lambda.rows;
    backward_from(net, relax, eps, start, lambda, vec![0.0; k], opts)
}

/// Whether a back-substitution can resume at node `a` from a kept pass: no node after
/// `a` reads a node before it, so nothing but `a` had reached the nodes below when the
/// pass got there (true of every chain, e.g. an MLP).
pub fn resumable(net: &Network, a: usize) -> bool {
    net.nodes
        .iter()
        .enumerate()
        .skip(a + 1)
        .all(|(_, n)| match n {
            Node::Input { .. } => true,
            Node::Linear { terms, .. } => terms.iter().all(|(j, _)| *j >= a),
            Node::Act { input, .. } => *input >= a,
        })
}

/// [`backward`] of a kept pass (`parent`, `keep: true`) continued from activation node
/// `a` with `relax` (which may differ from the parent's at `a` and below, not above):
/// the rows' part above `a` is reused. Only valid where [`resumable`] holds.
pub fn resume(
    net: &Network,
    relax: &[Vec<Relax>],
    eps: &[Vec<f64>],
    parent: &Backward,
    a: usize,
    opts: BackOpts<'_>,
) -> Option<Backward> {
    let lam = parent.at_act.get(a)?.clone()?;
    let c = parent.c_at.get(a)?.clone()?;
    Some(backward_from(net, relax, eps, a, lam, c, opts))
}

/// A kept pass (`parent`) with one element's relaxation changed from `old` to `new`
/// (element `i` of activation node `a`), where `a` alone reads a linear node of the
/// network input: the change reaches the input coefficients as a rank-one update, in
/// O(inputs) where [`resume`] would redo the first layer, the widest (784 × 256 on
/// MNIST). `None` where that does not hold. Only `a_in` and `c` are filled.
#[allow(clippy::too_many_arguments)] // the parent's pass and the one element that changes
pub fn rank_one_first_layer(
    net: &Network,
    eps: &[Vec<f64>],
    parent: &Backward,
    alpha: Option<&[Option<Dense>]>,
    a: usize,
    i: usize,
    old: &Relax,
    new: &Relax,
) -> Option<Backward> {
    let Node::Act { input: z, .. } = &net.nodes[a] else {
        return None;
    };
    let Node::Linear { terms, bias, .. } = &net.nodes[*z] else {
        return None;
    };
    let from_input = terms.iter().all(|(j, _)| {
        matches!(net.nodes[*j], Node::Input { .. }) && eps.get(*j).is_none_or(|e| e.is_empty())
    });
    let readers = net.nodes.iter().filter(|n| match n {
        Node::Linear { terms, .. } => terms.iter().any(|(j, _)| j == z),
        Node::Act { input, .. } => input == z,
        Node::Input { .. } => false,
    });
    if !from_input || readers.count() != 1 {
        return None;
    }
    let lam = parent.at_act.get(a)?.as_ref()?;
    let dim = lam.cols;
    let alpha = alpha.and_then(|al| al.get(a)).and_then(Option::as_ref);
    let e_z = eps.get(*z).filter(|e| !e.is_empty());
    let mut a_in = parent.a_in.clone();
    let mut c = parent.c.clone();
    #[allow(clippy::needless_range_loop)] // the row addresses λ, α, `c` and `a_in`
    for r in 0..lam.rows {
        let l = lam.data[r * dim + i];
        if l == 0.0 {
            continue;
        }
        // The slope and intercept the pass takes for this row, as in `backward_from`.
        let part = |x: &Relax| {
            if l > 0.0 {
                let s = match alpha {
                    Some(al) if x.free_alpha => al.data[r * dim + i],
                    _ => x.lo_s,
                };
                (s, x.lo_c)
            } else {
                (x.up_s, x.up_c)
            }
        };
        let ((s0, c0), (s1, c1)) = (part(old), part(new));
        let (z0, z1) = (l * s0, l * s1);
        let delta = z1 - z0;
        c[r] += l * (c1 - c0) + delta * bias[i];
        if let Some(e) = e_z {
            c[r] -= (z1.abs() - z0.abs()) * e[i];
        }
        if delta == 0.0 {
            continue;
        }
        let cols = a_in.cols;
        let row = &mut a_in.data[r * cols..(r + 1) * cols];
        for (_, m) in terms {
            match m {
                Mat::Dense(w) => {
                    for (o, v) in row.iter_mut().zip(w.row(i)) {
                        *o += delta * v;
                    }
                }
                Mat::Diag(d) => row[i] += delta * d[i],
            }
        }
    }
    Some(Backward {
        a_in,
        c,
        at_act: Vec::new(),
        c_at: Vec::new(),
    })
}

fn backward_from(
    net: &Network,
    relax: &[Vec<Relax>],
    eps: &[Vec<f64>],
    start: usize,
    lambda: Dense,
    mut c: Vec<f64>,
    opts: BackOpts<'_>,
) -> Backward {
    let k = lambda.rows;
    let mut acc: Vec<Option<Dense>> = vec![None; net.nodes.len()];
    let mut at_act: Vec<Option<Dense>> = vec![None; net.nodes.len()];
    let mut c_at: Vec<Option<Vec<f64>>> = vec![None; net.nodes.len()];
    acc[start] = Some(lambda);
    let mut a_in = Dense::zeros(k, net.input_dim());
    for idx in (0..=start).rev() {
        let Some(mut lam) = acc[idx].take() else {
            continue;
        };
        if opts.keep && matches!(net.nodes[idx], Node::Act { .. }) {
            c_at[idx] = Some(c.clone());
        }
        // The backend's rounding error at this node, worst case for each row's sign.
        if let Some(e) = eps.get(idx).filter(|e| !e.is_empty()) {
            for (r, cr) in c.iter_mut().enumerate() {
                *cr -= lam
                    .row(r)
                    .iter()
                    .zip(e)
                    .map(|(a, e)| a.abs() * e)
                    .sum::<f64>();
            }
        }
        match &net.nodes[idx] {
            Node::Input { .. } => a_in = lam,
            Node::Linear { terms, bias, .. } => {
                if let Some((splits, beta)) = opts.splits {
                    for (s, &(node, neuron, sign)) in splits.list.iter().enumerate() {
                        if node == idx {
                            for r in 0..k {
                                lam.data[r * lam.cols + neuron] +=
                                    beta.data[r * beta.cols + s] * sign;
                            }
                        }
                    }
                }
                for (r, cr) in c.iter_mut().enumerate() {
                    *cr += dot(lam.row(r), bias);
                }
                for (j, m) in terms {
                    let target = acc[*j].get_or_insert_with(|| Dense::zeros(k, m.cols()));
                    m.left_mul_add(&lam, target);
                }
            }
            Node::Act { input, .. } => {
                let rel = &relax[idx];
                let dim = rel.len();
                let target = acc[*input].get_or_insert_with(|| Dense::zeros(k, dim));
                let alpha = opts.alpha.and_then(|a| a[idx].as_ref());
                #[allow(clippy::needless_range_loop)] // the index addresses several parallel arrays
                for r in 0..k {
                    let lr = lam.row(r);
                    let tr = &mut target.data[r * dim..(r + 1) * dim];
                    let mut cr = 0.0;
                    for i in 0..dim {
                        let l = lr[i];
                        if l == 0.0 {
                            continue;
                        }
                        let x = &rel[i];
                        if l > 0.0 {
                            let s = match alpha {
                                Some(a) if x.free_alpha => a.data[r * dim + i],
                                _ => x.lo_s,
                            };
                            tr[i] += l * s;
                            cr += l * x.lo_c;
                        } else {
                            tr[i] += l * x.up_s;
                            cr += l * x.up_c;
                        }
                    }
                    c[r] += cr;
                }
                if opts.keep {
                    at_act[idx] = Some(lam);
                }
            }
        }
    }
    Backward {
        a_in,
        c,
        at_act,
        c_at,
    }
}

/// Minimum of each row's linear function over the box, and the minimising vertex.
pub fn minimise(
    b: &Backward,
    lower: &[f64],
    upper: &[f64],
    want_x: bool,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let k = b.a_in.rows;
    let mut lb = Vec::with_capacity(k);
    let mut xs = Vec::new();
    for r in 0..k {
        let row = b.a_in.row(r);
        let mut v = b.c[r];
        let mut x = if want_x {
            Vec::with_capacity(row.len())
        } else {
            Vec::new()
        };
        for ((a, l), u) in row.iter().zip(lower).zip(upper) {
            let pick = if *a >= 0.0 { *l } else { *u };
            v += a * pick;
            if want_x {
                x.push(pick);
            }
        }
        lb.push(v);
        if want_x {
            xs.push(x);
        }
    }
    (lb, xs)
}

/// CROWN bounds on every linear node that feeds an activation (and IBP elsewhere),
/// tightened against IBP. `only_unstable` limits the back-substitution to ReLU inputs
/// whose IBP bounds straddle 0 (the others' relaxations are exact already).
pub fn crown_intermediate(net: &Network, lower: &[f64], upper: &[f64]) -> NodeBounds {
    crown_intermediate_within(net, lower, upper, None)
}

/// As [`crown_intermediate`], also intersecting with bounds known for a region that
/// contains this one (a parent box in input splitting).
///
/// One sweep in topological order: each node's IBP bounds and rounding error come from
/// its predecessors' final bounds, and a linear node that feeds an activation is then
/// tightened by back-substitution, so every node is visited once (recomputing all later
/// nodes after each tightening was quadratic in depth, and most of a box's cost).
pub fn crown_intermediate_within(
    net: &Network,
    lower: &[f64],
    upper: &[f64],
    parent: Option<&NodeBounds>,
) -> NodeBounds {
    sweep(net, lower, upper, parent, 0, None)
}

/// As [`crown_intermediate`], then α-CROWN (`iters` steps, one α per bound wanted) on
/// every ReLU input that CROWN leaves unstable. Later layers are bounded with the
/// tightened relaxations of earlier ones, so the gain compounds with depth; this is what
/// deep networks need before a ReLU-split search, whose domains inherit these bounds.
pub fn alpha_intermediate(net: &Network, lower: &[f64], upper: &[f64], iters: usize) -> NodeBounds {
    sweep(net, lower, upper, None, iters, None)
}

/// As [`alpha_intermediate`], then each ReLU input still unstable in the first
/// `refine.layers` hidden layers after the first is tightened by a small branch and
/// bound over the ReLUs before it ([`crate::refine`]), before later layers are bounded.
///
/// Tighter early bounds do not always give tighter later ones (CROWN's lower slope
/// flips with the bounds, and α is a local optimum), so the sweep is intersected with
/// `plain`, the [`alpha_intermediate`] bounds of the same box: the result is never
/// looser anywhere.
pub fn refined_intermediate(
    net: &Network,
    lower: &[f64],
    upper: &[f64],
    iters: usize,
    refine: &crate::refine::RefineOpts,
    plain: &NodeBounds,
) -> NodeBounds {
    sweep(net, lower, upper, Some(plain), iters, Some(refine))
}

fn sweep(
    net: &Network,
    lower: &[f64],
    upper: &[f64],
    parent: Option<&NodeBounds>,
    alpha_iters: usize,
    refine: Option<&crate::refine::RefineOpts>,
) -> NodeBounds {
    let n = net.nodes.len();
    // The activation reading each linear node, if any.
    let mut feeds: Vec<Option<&Activation>> = vec![None; n];
    for node in &net.nodes {
        if let Node::Act { input, act } = node {
            feeds[*input] = Some(act);
        }
    }
    let mut b = NodeBounds {
        lower: Vec::with_capacity(n),
        upper: Vec::with_capacity(n),
        eps: Vec::with_capacity(n),
    };
    let mut rel: Vec<Vec<Relax>> = Vec::with_capacity(n);
    // ReLU layers bounded so far (the first is exact from IBP), and in all.
    let mut relu_layer = 0;
    let mut refined_before = false;
    let relu_layers = feeds
        .iter()
        .filter(|f| matches!(f, Some(Activation::Relu)))
        .count();
    for (k, feed) in feeds.iter().enumerate() {
        let (mut l, mut u) = ibp_node(net, &b, k, lower, upper);
        let e = net.rounding_error(k, &b.lower, &b.upper);
        for (i, e) in e.iter().enumerate() {
            l[i] -= e;
            u[i] += e;
        }
        if let Some(p) = parent {
            for i in 0..l.len() {
                l[i] = l[i].max(p.lower[k][i]);
                u[i] = u[i].min(p.upper[k][i]).max(l[i]);
            }
        }
        b.lower.push(l);
        b.upper.push(u);
        b.eps.push(e);
        // In a refined sweep (`parent` is the plain α sweep), layers before the first
        // refined one would only repeat the parent's CROWN and α passes.
        let repeat = refine.is_some() && !refined_before;
        if let Some(act) = feed.filter(|_| !repeat) {
            tighten(net, &mut b, &rel, k, act, lower, upper);
        }
        if let Some(Activation::Relu) = feed {
            if alpha_iters > 0 && !repeat {
                tighten_alpha(net, &mut b, &rel, k, lower, upper, alpha_iters);
            }
            if let Some(r) = refine.filter(|r| relu_layer >= 1 && relu_layer <= r.layers) {
                // An even share of the time left among the layers still to refine.
                let left = relu_layers
                    .min(r.layers.saturating_add(1))
                    .saturating_sub(relu_layer)
                    .max(1);
                let until = r.deadline.map(|d| {
                    let now = std::time::Instant::now();
                    now + d.saturating_duration_since(now).div_f64(left as f64)
                });
                crate::refine::refine_node(net, &mut b, &rel, k, lower, upper, r, until);
                refined_before = true;
            }
            relu_layer += 1;
        }
        rel.push(node_relaxations(&net.nodes[k], &b));
    }
    b
}

/// CROWN bounds on the elements of linear node `z` (read by `act`) whose interval is not
/// already exact for it, intersected with what `b` holds. `rel` has the relaxations of
/// every activation before `z`.
fn tighten(
    net: &Network,
    b: &mut NodeBounds,
    rel: &[Vec<Relax>],
    z: usize,
    act: &Activation,
    lower: &[f64],
    upper: &[f64],
) {
    if is_first_linear(net, z) {
        return;
    }
    let rows: Vec<usize> = (0..net.dims[z])
        .filter(|&i| match act {
            Activation::Relu => b.lower[z][i] < 0.0 && b.upper[z][i] > 0.0,
            _ => b.upper[z][i] > b.lower[z][i],
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let dim = net.dims[z];
    let mut lam = Dense::zeros(2 * rows.len(), dim);
    for (r, &i) in rows.iter().enumerate() {
        lam.data[(2 * r) * dim + i] = 1.0;
        lam.data[(2 * r + 1) * dim + i] = -1.0;
    }
    let back = backward(
        net,
        rel,
        &b.eps,
        z,
        lam,
        BackOpts {
            alpha: None,
            splits: None,
            keep: false,
        },
    );
    let (lb, _) = minimise(&back, lower, upper, false);
    for (r, &i) in rows.iter().enumerate() {
        narrow(b, z, i, lb[2 * r], -lb[2 * r + 1]);
    }
}

/// Intersects element `i` of node `z` with `[lo, hi]`.
fn narrow(b: &mut NodeBounds, z: usize, i: usize, lo: f64, hi: f64) {
    b.lower[z][i] = b.lower[z][i].max(lo);
    b.upper[z][i] = b.upper[z][i].min(hi);
    if b.lower[z][i] > b.upper[z][i] {
        // Only floating-point noise can cross them; keep the interval non-empty.
        let m = 0.5 * (b.lower[z][i] + b.upper[z][i]);
        b.lower[z][i] = m;
        b.upper[z][i] = m;
    }
}

/// The ReLU inputs of node `z` whose interval straddles 0.
pub(crate) fn unstable_relus(b: &NodeBounds, z: usize) -> Vec<usize> {
    (0..b.lower[z].len())
        .filter(|&i| b.lower[z][i] < 0.0 && b.upper[z][i] > 0.0)
        .collect()
}

/// One row per bound wanted, `(element, sign)`: sign +1 bounds `z_i` from below, −1
/// from above.
pub(crate) fn signed_rows(elements: &[usize]) -> Vec<(usize, f64)> {
    elements
        .iter()
        .flat_map(|&i| [(i, 1.0), (i, -1.0)])
        .collect()
}

/// Narrows node `z` with a lower bound `v` of `sign · z_i` per row.
pub(crate) fn narrow_signed(b: &mut NodeBounds, z: usize, rows: &[(usize, f64)], found: &[f64]) {
    for (&(i, sign), &v) in rows.iter().zip(found) {
        if sign > 0.0 {
            narrow(b, z, i, v, f64::INFINITY);
        } else {
            narrow(b, z, i, f64::NEG_INFINITY, -v);
        }
    }
}

/// α-CROWN bounds on the still-unstable ReLU inputs of linear node `z`: each bound gets
/// its own α, optimised from CROWN's choice, in parallel chunks of rows (every iterate
/// is sound, so the best one is kept).
fn tighten_alpha(
    net: &Network,
    b: &mut NodeBounds,
    rel: &[Vec<Relax>],
    z: usize,
    lower: &[f64],
    upper: &[f64],
    iters: usize,
) {
    if is_first_linear(net, z) {
        return;
    }
    let dim = net.dims[z];
    let rows = signed_rows(&unstable_relus(b, z));
    if rows.is_empty() {
        return;
    }
    const CHUNK: usize = 16;
    let eps = &b.eps;
    let opts = SpecOpts {
        iters,
        lr_alpha: 0.1,
        lr_beta: 0.0,
    };
    let found: Vec<Vec<f64>> = rows
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut lam = Dense::zeros(chunk.len(), dim);
            for (r, &(i, sign)) in chunk.iter().enumerate() {
                lam.data[r * dim + i] = sign;
            }
            let alpha = init_alpha(net, rel, chunk.len());
            let beta = Dense::zeros(chunk.len(), 0);
            let d = vec![0.0; chunk.len()];
            optimise(
                net,
                rel,
                eps,
                z,
                &lam,
                &d,
                lower,
                upper,
                alpha,
                &Splits::default(),
                beta,
                &opts,
                &mut ForwardCache::default(),
            )
            .lb
        })
        .collect();
    let found: Vec<f64> = found.into_iter().flatten().collect();
    narrow_signed(b, z, &rows, &found);
}

/// True when a linear node reads only the input (CROWN equals IBP there).
fn is_first_linear(net: &Network, z: usize) -> bool {
    matches!(&net.nodes[z], Node::Linear { terms, .. } if terms.iter().all(|(j, _)| matches!(net.nodes[*j], Node::Input { .. })))
}

/// The first layer's value at the last point of each row's relaxed forward pass.
///
/// Successive minimising vertices (over α/β steps, and from a parent domain to its
/// children) differ in few coordinates, and the first layer is the widest matrix, so
/// updating its value by the changed columns saves most of a pass. Values are used for
/// gradients only, never for a bound, and a full pass every [`FIRST_LAYER_REFRESH`]
/// updates keeps the accumulated rounding negligible.
#[derive(Debug, Clone, Default)]
pub struct ForwardCache {
    rows: Vec<Option<CachedLayer>>,
}

#[derive(Debug, Clone)]
struct CachedLayer {
    node: usize,
    x: Vec<f64>,
    z: Vec<f64>,
    updates: u32,
}

/// Incremental updates of a cached first layer before a full recomputation.
const FIRST_LAYER_REFRESH: u32 = 64;

/// The relaxed network evaluated forward at one point per row, choosing each
/// activation's lower or upper relaxation by the sign of that row's coefficient (as the
/// back-substitution did). Returns the value of every linear node per row.
pub fn relaxed_forward(
    net: &Network,
    relax: &[Vec<Relax>],
    back: &Backward,
    alpha: Option<&[Option<Dense>]>,
    xs: &[Vec<f64>],
    upto: usize,
    cache: &mut ForwardCache,
) -> Vec<Vec<Vec<f64>>> {
    cache.rows.resize(xs.len(), None);
    xs.iter()
        .zip(cache.rows.iter_mut())
        .enumerate()
        .map(|(r, (x, cached))| {
            let mut vals: Vec<Vec<f64>> = Vec::with_capacity(upto + 1);
            for idx in 0..=upto {
                let v = match &net.nodes[idx] {
                    Node::Input { .. } => x.clone(),
                    Node::Linear { .. } if is_first_linear(net, idx) => {
                        let inc = match cached.as_ref() {
                            Some(c) if c.node == idx && c.updates < FIRST_LAYER_REFRESH => net
                                .forward_first_from(idx, x, &c.x, &c.z)
                                .map(|z| (z, c.updates + 1)),
                            _ => None,
                        };
                        let (z, updates) =
                            inc.unwrap_or_else(|| (net.forward_linear(idx, &vals), 0));
                        *cached = Some(CachedLayer {
                            node: idx,
                            x: x.clone(),
                            z: z.clone(),
                            updates,
                        });
                        z
                    }
                    Node::Linear { .. } => net.forward_linear(idx, &vals),
                    Node::Act { input, .. } => {
                        let z = &vals[*input];
                        let rel = &relax[idx];
                        let lam = back.at_act[idx].as_ref();
                        let a = alpha.and_then(|a| a[idx].as_ref());
                        (0..z.len())
                            .map(|i| {
                                let l = lam.map_or(0.0, |m| m.data[r * m.cols + i]);
                                let x = &rel[i];
                                if l >= 0.0 {
                                    let s = match a {
                                        Some(a) if x.free_alpha => a.data[r * a.cols + i],
                                        _ => x.lo_s,
                                    };
                                    s * z[i] + x.lo_c
                                } else {
                                    x.up_s * z[i] + x.up_c
                                }
                            })
                            .collect()
                    }
                };
                vals.push(v);
            }
            vals
        })
        .collect()
}

/// Adam state for one parameter vector.
#[derive(Debug, Clone)]
pub struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    /// Fresh state for `n` parameters.
    pub fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One ascent step on `params` with gradient `g`, then projection by `clip`.
    pub fn step(&mut self, params: &mut [f64], g: &[f64], lr: f64, clip: impl Fn(f64) -> f64) {
        self.t += 1;
        let (b1, b2) = (0.9f64, 0.999f64);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for i in 0..params.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let step = lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
            params[i] = clip(params[i] + step);
        }
    }
}

/// Lower bounds of spec rows `c·y + d`, optionally optimising α (and β when there are
/// splits) for `iters` steps. Returns the best bound per row found over all iterates
/// (each iterate is sound), the final α and β, and the last back-substitution.
#[derive(Debug, Clone)]
pub struct SpecBound {
    /// Best lower bound per row.
    pub lb: Vec<f64>,
    /// α per activation node.
    pub alpha: Vec<Option<Dense>>,
    /// β per (row, split).
    pub beta: Dense,
    /// The back-substitution of the last iterate (kept coefficient matrices).
    pub back: Backward,
    /// The minimising input vertex per row of the last iterate.
    pub xs: Vec<Vec<f64>>,
}

/// Initial α: CROWN's choice, per row.
pub fn init_alpha(net: &Network, relax: &[Vec<Relax>], k: usize) -> Vec<Option<Dense>> {
    net.nodes
        .iter()
        .enumerate()
        .map(|(idx, n)| match n {
            // Nodes past the relaxations given (intermediate bounds) have no α.
            Node::Act {
                act: Activation::Relu,
                ..
            } if idx < relax.len() => {
                let rel = &relax[idx];
                let dim = rel.len();
                let mut a = Dense::zeros(k, dim);
                for r in 0..k {
                    for (i, x) in rel.iter().enumerate() {
                        a.data[r * dim + i] = x.lo_s;
                    }
                }
                Some(a)
            }
            _ => None,
        })
        .collect()
}

/// Parameters for [`spec_bound`].
#[derive(Debug, Clone)]
pub struct SpecOpts {
    /// Gradient steps (0: plain CROWN with the given α).
    pub iters: usize,
    /// Adam learning rate for α.
    pub lr_alpha: f64,
    /// Adam learning rate for β.
    pub lr_beta: f64,
}

/// Bounds spec rows `C·y + d` over the box with α/β optimisation. The relaxed forward
/// passes start from `cache` (a parent domain's, or empty) and leave their last first
/// layer there.
#[allow(clippy::too_many_arguments)]
pub fn spec_bound(
    net: &Network,
    relax: &[Vec<Relax>],
    eps: &[Vec<f64>],
    c_rows: &Dense,
    d: &[f64],
    lower: &[f64],
    upper: &[f64],
    alpha: Vec<Option<Dense>>,
    splits: &Splits,
    beta: Dense,
    opts: &SpecOpts,
    cache: &mut ForwardCache,
) -> SpecBound {
    optimise(
        net, relax, eps, net.output, c_rows, d, lower, upper, alpha, splits, beta, opts, cache,
    )
}

/// [`spec_bound`] for rows on any node `start` (intermediate bounds use it too).
#[allow(clippy::too_many_arguments)]
pub(crate) fn optimise(
    net: &Network,
    relax: &[Vec<Relax>],
    eps: &[Vec<f64>],
    start: usize,
    c_rows: &Dense,
    d: &[f64],
    lower: &[f64],
    upper: &[f64],
    mut alpha: Vec<Option<Dense>>,
    splits: &Splits,
    mut beta: Dense,
    opts: &SpecOpts,
    cache: &mut ForwardCache,
) -> SpecBound {
    let k = c_rows.rows;
    let mut best = vec![f64::NEG_INFINITY; k];
    let n_alpha: usize = alpha.iter().flatten().map(|a| a.data.len()).sum();
    let mut adam_a = Adam::new(n_alpha);
    let mut adam_b = Adam::new(beta.data.len());
    let has_splits = !splits.list.is_empty();
    let mut last = None;
    for it in 0..=opts.iters {
        let back = backward(
            net,
            relax,
            eps,
            start,
            c_rows.clone(),
            BackOpts {
                alpha: Some(&alpha),
                splits: has_splits.then_some((splits, &beta)),
                keep: true,
            },
        );
        let (lb, xs) = minimise(&back, lower, upper, true);
        for r in 0..k {
            let v = lb[r] + d[r];
            if v > best[r] {
                best[r] = v;
            }
        }
        if it == opts.iters {
            last = Some((back, xs));
            break;
        }
        // Gradients from the relaxed forward pass at the minimising vertices.
        let upto = start;
        let vals = relaxed_forward(net, relax, &back, Some(&alpha), &xs, upto, cache);
        let mut ga = Vec::with_capacity(n_alpha);
        for (idx, a) in alpha.iter().enumerate() {
            let Some(a) = a else { continue };
            let Node::Act { input, .. } = &net.nodes[idx] else {
                continue;
            };
            let lam = back.at_act[idx].as_ref();
            let dim = a.cols;
            #[allow(clippy::needless_range_loop)] // the index addresses several parallel arrays
            for r in 0..k {
                for i in 0..dim {
                    let l = lam.map_or(0.0, |m| m.data[r * dim + i]);
                    let g = if relax[idx][i].free_alpha && l > 0.0 {
                        l * vals[r][*input][i]
                    } else {
                        0.0
                    };
                    ga.push(g);
                }
            }
        }
        let mut flat: Vec<f64> = alpha
            .iter()
            .flatten()
            .flat_map(|a| a.data.iter().copied())
            .collect();
        adam_a.step(&mut flat, &ga, opts.lr_alpha, |v| v.clamp(0.0, 1.0));
        let mut off = 0;
        for a in alpha.iter_mut().flatten() {
            let n = a.data.len();
            a.data.copy_from_slice(&flat[off..off + n]);
            off += n;
        }
        if has_splits {
            let ns = splits.list.len();
            let mut gb = vec![0.0; k * ns];
            for r in 0..k {
                for (s, &(node, neuron, sign)) in splits.list.iter().enumerate() {
                    gb[r * ns + s] = sign * vals[r][node][neuron];
                }
            }
            adam_b.step(&mut beta.data, &gb, opts.lr_beta, |v| v.max(0.0));
        }
    }
    let (back, xs) = last.unwrap_or_else(|| {
        let back = backward(
            net,
            relax,
            eps,
            start,
            c_rows.clone(),
            BackOpts {
                alpha: Some(&alpha),
                splits: None,
                keep: true,
            },
        );
        let (_, xs) = minimise(&back, lower, upper, true);
        (back, xs)
    });
    SpecBound {
        lb: best,
        alpha,
        beta,
        back,
        xs,
    }
}
