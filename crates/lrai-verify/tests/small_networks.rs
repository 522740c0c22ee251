//! Hand-built networks whose output ranges are known exactly: bounds contain the true
//! range and are tight where they must be, properties that hold are proven by every
//! search, violated ones come back with a counterexample the backend confirms, and a
//! threshold at or one ulp from the true maximum is never proven when f32 violates it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Model, assert_counterexample, layer, mlp, mlp_with, settings, vnnlib_box};
use lrai_verify::bounds;
use lrai_verify::matrix::Dense;
use lrai_verify::network::Node;
use lrai_verify::refine::RefineOpts;
use lrai_verify::vnnlib;
use lrai_verify::{Method, Network, Verdict, VerifyError};

const SEARCHES: [Method; 3] = [Method::Auto, Method::InputSplit, Method::ReluSplit];

/// `h = relu([x0 + x1, x0 − x1])`, `y0 = h0 + h1`, `y1 = h0 − h1` on `[-1, 1]²`:
/// `y0 ∈ [0, 2]` (2 on the whole edge `x0 = 1`, 0 where `x0 <= -|x1|`),
/// `y1 ∈ [-2, 2]` (2 at `(1, 1)`, −2 at `(1, −1)`).
fn abs_net(dir: &std::path::Path) -> Model {
    Model::from_proto(
        &mlp(&[
            layer(&[&[1.0, 1.0], &[1.0, -1.0]], &[0.0, 0.0]),
            layer(&[&[1.0, 1.0], &[1.0, -1.0]], &[0.0, 0.0]),
        ]),
        dir,
    )
}

fn square(asserts: &str) -> String {
    vnnlib_box(&[-1.0, -1.0], &[1.0, 1.0], 2, asserts)
}

#[test]
fn affine_bounds_are_exact_up_to_rounding() {
    let dir = tempfile::tempdir().unwrap();
    // y0 = 2·x0 − 3·x1 + 1, y1 = −x0 + 0.5 on x ∈ [−1, 2] × [0, 1].
    let m = Model::from_proto(
        &mlp(&[layer(&[&[2.0, -3.0], &[-1.0, 0.0]], &[1.0, 0.5])]),
        dir.path(),
    );
    let (lo, hi) = ([-1.0, 0.0], [2.0, 1.0]);
    let exact_lo = [-2.0 - 3.0 + 1.0, -2.0 + 0.5];
    let exact_hi = [2.0 * 2.0 + 1.0, 1.0 + 0.5];
    for b in [
        bounds::ibp(&m.net, &lo, &hi),
        bounds::crown_intermediate(&m.net, &lo, &hi),
    ] {
        let (l, u) = (&b.lower[m.net.output], &b.upper[m.net.output]);
        for j in 0..2 {
            assert!(l[j] <= exact_lo[j] && u[j] >= exact_hi[j], "{l:?} {u:?}");
            // Only the f32 rounding allowance separates them (a few ulps of 5).
            assert!(exact_lo[j] - l[j] < 1e-5 && u[j] - exact_hi[j] < 1e-5);
        }
    }
}

#[test]
fn relu_bounds_contain_the_true_range() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    let b = bounds::crown_intermediate(&m.net, &[-1.0, -1.0], &[1.0, 1.0]);
    let (l, u) = (&b.lower[m.net.output], &b.upper[m.net.output]);
    assert!(l[0] <= 0.0 && u[0] >= 2.0, "y0: [{}, {}]", l[0], u[0]);
    assert!(l[1] <= -2.0 && u[1] >= 2.0, "y1: [{}, {}]", l[1], u[1]);
    // With every ReLU stable (x0 ≥ |x1| + margin) the network is affine (y0 = 2·x0), so
    // back-substitution from the output is exact: y0 ∈ [1, 2] (IBP alone says [0.5, 2.5]).
    let (lo, hi) = ([0.5, -0.25], [1.0, 0.25]);
    let b = bounds::crown_intermediate(&m.net, &lo, &hi);
    let rel = bounds::relaxations(&m.net, &b);
    let mut c = Dense::zeros(2, 2);
    c.row_mut(0)[0] = 1.0; // min y0
    c.row_mut(1)[0] = -1.0; // min −y0 = −max y0
    let back = bounds::backward(
        &m.net,
        &rel,
        &b.eps,
        m.net.output,
        c,
        bounds::BackOpts {
            alpha: None,
            splits: None,
            keep: false,
        },
    );
    let (lb, _) = bounds::minimise(&back, &lo, &hi, false);
    assert!(lb[0] <= 1.0 && -lb[1] >= 2.0, "{lb:?}");
    assert!(
        (lb[0] - 1.0).abs() < 1e-5 && (-lb[1] - 2.0).abs() < 1e-5,
        "{lb:?}"
    );
}

#[test]
fn holds_is_proven_by_every_search() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    for asserts in [
        "(assert (>= Y_0 2.001))",
        "(assert (<= Y_0 -0.001))",
        "(assert (or (and (>= Y_1 2.01)) (and (<= Y_1 -2.01))))",
        "(assert (>= Y_0 1.5))\n(assert (<= Y_1 -2.1))",
        // y0 − y1 = 2·h1 ≥ 0 and y0 + y1 = 2·h0 ≥ 0 everywhere.
        "(assert (or (and (<= (- Y_0 Y_1) -0.1) (>= Y_0 0.1)) (and (<= (+ Y_0 Y_1) -0.1))))",
    ] {
        for method in SEARCHES {
            let o = m.verify_text(&square(asserts), method);
            assert_eq!(o.verdict, Verdict::Holds, "{method:?} {asserts}: {o:?}");
            assert!(o.min_slack.is_some_and(|s| s > 0.0), "{o:?}");
        }
    }
}

#[test]
fn violated_comes_with_a_confirmed_counterexample() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    for asserts in [
        "(assert (>= Y_0 2.0))",
        "(assert (<= Y_0 0.0))",
        "(assert (or (and (>= Y_1 2.5)) (and (<= Y_1 -1.9))))",
        "(assert (>= Y_0 1.9))\n(assert (>= Y_1 1.9))",
        "(assert (>= Y_0 1.99))\n(assert (<= Y_1 -1.99))",
    ] {
        let text = square(asserts);
        let prop = vnnlib::parse("p", &text).unwrap();
        for method in SEARCHES {
            let o = m.verify(&prop, &settings(method, 20.0));
            assert_counterexample(&m, &prop, &o);
        }
    }
}

#[test]
fn counterexamples_found_by_search_not_only_by_attack() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    // No attack: the branch and bound itself must find and confirm the point.
    let text = square("(assert (>= Y_1 1.98))");
    let prop = vnnlib::parse("p", &text).unwrap();
    for method in [Method::InputSplit, Method::ReluSplit] {
        let mut s = settings(method, 20.0);
        s.attack.samples = 0;
        s.attack.restarts = 0;
        let o = m.verify(&prop, &s);
        assert_counterexample(&m, &prop, &o);
        assert_ne!(o.method, "attack");
    }
}

#[test]
fn union_of_input_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    let head = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n";
    // x0 ≤ −0.5 with |x1| ≤ 0.25 forces y0 = 0; x0 ≥ 0.5 lets y0 reach 2.
    let left = "(and (>= X_0 -1) (<= X_0 -0.5) (>= X_1 -0.25) (<= X_1 0.25))";
    let right = "(and (>= X_0 0.5) (<= X_0 1) (>= X_1 -0.25) (<= X_1 0.25))";
    // A repeated disjunct is the same region.
    let holds = format!("{head}(assert (or {left} {left}))\n(assert (>= Y_0 0.01))");
    let violated = format!("{head}(assert (or {left} {right}))\n(assert (>= Y_0 0.01))");
    assert_eq!(vnnlib::parse("p", &violated).unwrap().boxes.len(), 2);
    for method in SEARCHES {
        let o = m.verify_text(&holds, method);
        assert_eq!(o.verdict, Verdict::Holds, "{method:?}: {o:?}");
        let prop = vnnlib::parse("p", &violated).unwrap();
        let o = m.verify(&prop, &settings(method, 20.0));
        assert_counterexample(&m, &prop, &o);
        let Verdict::Violated { x, .. } = o.verdict else {
            unreachable!()
        };
        assert!(
            x[0] >= 0.5,
            "the counterexample must come from the right box: {x:?}"
        );
    }
}

#[test]
fn bounds_only_never_claims_more_than_it_proves() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    // Loose enough for CROWN on the whole box.
    let o = m.verify_text(&square("(assert (>= Y_0 5))"), Method::BoundsOnly);
    assert_eq!(o.verdict, Verdict::Holds, "{o:?}");
    // True (max 2) but needs splitting: bounds alone must answer unknown.
    let mut s = settings(Method::BoundsOnly, 20.0);
    s.attack.samples = 0;
    s.attack.restarts = 0;
    let prop = vnnlib::parse("p", &square("(assert (>= Y_0 2.001))")).unwrap();
    let o = m.verify(&prop, &s);
    assert!(
        matches!(o.verdict, Verdict::Unknown { .. } | Verdict::Holds),
        "{o:?}"
    );
}

#[test]
fn timeout_gives_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    let prop = vnnlib::parse("p", &square("(assert (>= Y_0 2.0000001))")).unwrap();
    let mut s = settings(Method::InputSplit, 1e-9);
    s.attack.samples = 0;
    s.attack.restarts = 0;
    let o = m.verify(&prop, &s);
    match o.verdict {
        Verdict::Unknown { reason } => assert!(reason.contains("timeout"), "{reason}"),
        other => panic!("expected unknown, got {other:?}"),
    }
}

/// `y = x` (one Gemm with weight 1, bias 0) on `x ∈ [0, 1]`: the f32 maximum is exactly 1.
fn identity_net(dir: &std::path::Path) -> Model {
    Model::from_proto(&mlp(&[layer(&[&[1.0]], &[0.0])]), dir)
}

#[test]
fn threshold_at_the_exact_maximum_is_violated() {
    let dir = tempfile::tempdir().unwrap();
    let m = identity_net(dir.path());
    let one_ulp_below = f64::from(1.0f32.next_down());
    for t in [1.0, one_ulp_below] {
        let text = vnnlib_box(&[0.0], &[1.0], 1, &format!("(assert (>= Y_0 {t:?}))"));
        let prop = vnnlib::parse("p", &text).unwrap();
        for method in SEARCHES {
            let o = m.verify(&prop, &settings(method, 10.0));
            assert_counterexample(&m, &prop, &o);
        }
    }
}

#[test]
fn threshold_one_ulp_above_the_maximum_is_not_violated() {
    let dir = tempfile::tempdir().unwrap();
    let m = identity_net(dir.path());
    let t = f64::from(1.0f32.next_up());
    let text = vnnlib_box(&[0.0], &[1.0], 1, &format!("(assert (>= Y_0 {t:?}))"));
    for method in SEARCHES {
        let o = m.verify_text(&text, method);
        // Holds in f32 (and in exact arithmetic); proving it is allowed, refuting is not.
        assert!(
            !matches!(o.verdict, Verdict::Violated { .. }),
            "{method:?}: {o:?}"
        );
    }
}

/// The f32 network reaches the threshold only through rounding: `y = x + b` with
/// `b = 0.6 ulp(1)`; at `x = 1` the exact sum `1 + 0.6 ulp` rounds up to `1 + 1 ulp` in
/// f32. A threshold at `1 + 0.8 ulp` is above the exact (real-arithmetic) maximum, so a
/// verifier that ignores f32 rounding would prove it; the backend violates it.
#[test]
fn rounding_up_past_the_threshold_is_never_proven() {
    let dir = tempfile::tempdir().unwrap();
    let ulp = f64::from(f32::EPSILON);
    #[allow(clippy::cast_possible_truncation)]
    let b = (0.6 * ulp) as f32;
    let m = Model::from_proto(&mlp(&[layer(&[&[1.0]], &[b])]), dir.path());
    let y = m.run(&[1.0])[0];
    assert_eq!(y, 1.0 + ulp, "the backend rounds 1 + b up");
    let exact_max = 1.0 + f64::from(b);
    let t = 1.0 + 0.8 * ulp;
    assert!(exact_max < t && t <= y);
    let text = vnnlib_box(&[0.0], &[1.0], 1, &format!("(assert (>= Y_0 {t:?}))"));
    let prop = vnnlib::parse("p", &text).unwrap();
    for method in [
        Method::Auto,
        Method::InputSplit,
        Method::ReluSplit,
        Method::BoundsOnly,
    ] {
        let o = m.verify(&prop, &settings(method, 3.0));
        match &o.verdict {
            Verdict::Holds => panic!("{method:?}: proved a property the f32 network violates"),
            Verdict::Violated { .. } => assert_counterexample(&m, &prop, &o),
            Verdict::Unknown { .. } => {}
        }
    }
}

#[test]
fn unsupported_operator_is_an_error_never_a_proof() {
    let dir = tempfile::tempdir().unwrap();
    // Exp after the last layer: bound propagation has no relaxation for it.
    let proto = mlp_with(&[layer(&[&[1.0]], &[0.0])], Some("Exp"));
    match Network::from_onnx("exp", &proto) {
        Err(VerifyError::UnsupportedOperator { op, .. }) => assert_eq!(op, "Exp"),
        other => panic!("expected UnsupportedOperator, got {other:?}"),
    }
    let _ = dir;
}

#[test]
fn property_that_does_not_fit_the_model_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    let text = vnnlib_box(&[0.0; 3], &[1.0; 3], 2, "(assert (>= Y_0 1))");
    let prop = vnnlib::parse("p", &text).unwrap();
    let err = lrai_verify::verify(
        &m.net,
        &prop,
        "p",
        m.session.as_ref(),
        &settings(Method::Auto, 5.0),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("3 inputs"), "{err}");
}

#[test]
fn deeper_network_agrees_with_sampling() {
    // A 3-layer net with mixed-sign weights; thresholds come from a grid's maximum: just
    // below it is violated, far enough above it (more than the Lipschitz constant times
    // the grid spacing) holds.
    let dir = tempfile::tempdir().unwrap();
    let m = Model::from_proto(
        &mlp(&[
            layer(
                &[&[0.7, -1.2], &[-0.4, 0.9], &[1.1, 0.3], &[-0.8, -0.6]],
                &[0.1, -0.2, 0.05, 0.3],
            ),
            layer(
                &[
                    &[0.5, -0.7, 0.9, 0.2],
                    &[-0.3, 0.8, -0.5, 0.6],
                    &[0.9, 0.1, -0.4, -0.7],
                ],
                &[0.0, 0.1, -0.1],
            ),
            layer(&[&[1.0, -0.5, 0.8]], &[0.2]),
        ]),
        dir.path(),
    );
    let mut best = f64::NEG_INFINITY;
    let n = 100;
    for i in 0..=n {
        for j in 0..=n {
            let x = [
                -1.0 + 2.0 * f64::from(i) / f64::from(n),
                -1.0 + 2.0 * f64::from(j) / f64::from(n),
            ];
            best = best.max(m.run(&x)[0]);
        }
    }
    let above = vnnlib_box(
        &[-1.0, -1.0],
        &[1.0, 1.0],
        1,
        &format!("(assert (>= Y_0 {:?}))", best + 0.5),
    );
    let at = vnnlib_box(
        &[-1.0, -1.0],
        &[1.0, 1.0],
        1,
        &format!("(assert (>= Y_0 {:?}))", best - 1e-3),
    );
    for method in SEARCHES {
        let o = m.verify_text(&above, method);
        assert_eq!(o.verdict, Verdict::Holds, "{method:?}: {o:?}");
        let prop = vnnlib::parse("p", &at).unwrap();
        let o = m.verify(&prop, &settings(method, 20.0));
        assert_counterexample(&m, &prop, &o);
    }
}

#[test]
fn attack_finds_counterexamples_on_the_box_faces() {
    // `y = relu(x0 − 0.9999) + relu(x1 − 0.9999)` on `[0, 1]²` reaches 1.5e-4 only
    // within 5e-5 of the corner (1, 1), where uniform samples never land and the
    // gradient is zero almost everywhere (PGD does not move): the attack's face samples
    // must find it, before any search (bounds only).
    let dir = tempfile::tempdir().unwrap();
    let m = Model::from_proto(
        &mlp(&[
            layer(&[&[1.0, 0.0], &[0.0, 1.0]], &[-0.9999, -0.9999]),
            layer(&[&[1.0, 1.0]], &[0.0]),
        ]),
        dir.path(),
    );
    let text = vnnlib_box(&[0.0, 0.0], &[1.0, 1.0], 1, "(assert (>= Y_0 0.00015))");
    let prop = vnnlib::parse("p", &text).unwrap();
    let o = m.verify(&prop, &settings(Method::BoundsOnly, 20.0));
    assert_counterexample(&m, &prop, &o);
    assert_eq!(o.method, "attack");
}

#[test]
fn input_split_without_strong_branching_or_pgd_still_decides() {
    // The plain rule (first candidate only, no PGD in boxes) is the other code path of
    // the input-split search: it must still prove what holds and find what is violated.
    let dir = tempfile::tempdir().unwrap();
    let m = abs_net(dir.path());
    for (asserts, want) in [
        ("(assert (>= Y_1 2.01))", "holds"),
        ("(assert (>= Y_1 1.98))", "violated"),
    ] {
        let prop = vnnlib::parse("p", &square(asserts)).unwrap();
        let mut s = settings(Method::InputSplit, 20.0);
        s.attack.samples = 0;
        s.attack.restarts = 0;
        s.input_split.strong = false;
        s.input_split.pgd_steps = 0;
        let o = m.verify(&prop, &s);
        assert_eq!(o.verdict.as_str(), want, "{asserts}: {o:?}");
        if want == "violated" {
            assert_counterexample(&m, &prop, &o);
        }
    }
}

/// A seeded random MLP `widths[0] → … → widths[last]`, weights in (−1, 1).
fn random_mlp(widths: &[usize], seed: u64) -> Vec<common::Layer> {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    widths
        .windows(2)
        .map(|w| {
            let rows: Vec<Vec<f32>> = (0..w[1])
                .map(|_| (0..w[0]).map(|_| next()).collect())
                .collect();
            let bias: Vec<f32> = (0..w[1]).map(|_| 0.3 * next()).collect();
            common::Layer {
                weights: rows,
                bias,
            }
        })
        .collect()
}

#[test]
fn alpha_intermediate_bounds_are_sound_and_never_looser_than_crown() {
    let dir = tempfile::tempdir().unwrap();
    let layers = random_mlp(&[6, 12, 12, 12, 12, 3], 7);
    let m = Model::from_proto(&mlp(&layers), dir.path());
    let (lo, hi) = (vec![-1.0; 6], vec![1.0; 6]);
    let crown = bounds::crown_intermediate(&m.net, &lo, &hi);
    let alpha = bounds::alpha_intermediate(&m.net, &lo, &hi, 20);
    let (mut w_crown, mut w_alpha) = (0.0, 0.0);
    for k in 0..m.net.nodes.len() {
        for i in 0..m.net.dims[k] {
            let (la, ua) = (alpha.lower[k][i], alpha.upper[k][i]);
            assert!(la >= crown.lower[k][i] - 1e-12 && ua <= crown.upper[k][i] + 1e-12);
            w_crown += crown.upper[k][i] - crown.lower[k][i];
            w_alpha += ua - la;
        }
    }
    // Deep enough that optimised slopes must pay off somewhere.
    assert!(w_alpha < w_crown, "α-CROWN {w_alpha} vs CROWN {w_crown}");
    assert_contains_samples(&m, &lo, &hi, &alpha);
}

/// Every node's value at sampled points of the box (all corners of the first six
/// dimensions, then a seeded cloud) lies inside `b`.
fn assert_contains_samples(m: &Model, lo: &[f64], hi: &[f64], b: &bounds::NodeBounds) {
    let mut s = 11u64;
    for n in 0..2000 {
        let x: Vec<f64> = (0..lo.len())
            .map(|d| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                let t = if n < 64 && d < 6 {
                    if (n >> d) & 1 == 1 { 1.0 } else { 0.0 }
                } else {
                    (s >> 11) as f64 / (1u64 << 53) as f64
                };
                lo[d] + t * (hi[d] - lo[d])
            })
            .collect();
        for (k, v) in m.net.eval_all(&x).iter().enumerate() {
            for (i, v) in v.iter().enumerate() {
                assert!(
                    *v >= b.lower[k][i] - 1e-9 && *v <= b.upper[k][i] + 1e-9,
                    "node {k}[{i}] = {v} outside [{}, {}]",
                    b.lower[k][i],
                    b.upper[k][i]
                );
            }
        }
    }
}

/// Unstable ReLU inputs (lower < 0 < upper) over the whole network.
fn unstable(m: &Model, b: &bounds::NodeBounds) -> usize {
    m.net
        .nodes
        .iter()
        .filter_map(|n| match n {
            Node::Act { input, .. } => Some(*input),
            _ => None,
        })
        .map(|k| {
            (0..m.net.dims[k])
                .filter(|&i| b.lower[k][i] < 0.0 && b.upper[k][i] > 0.0)
                .count()
        })
        .sum()
}

#[test]
fn refined_intermediate_bounds_are_sound_and_never_looser_than_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let layers = random_mlp(&[6, 12, 12, 12, 12, 3], 7);
    let m = Model::from_proto(&mlp(&layers), dir.path());
    // A box small enough that some ReLUs are stable (at ±0.1 every one is unstable,
    // and refinement leaves such layers alone).
    let (lo, hi) = (vec![-0.05; 6], vec![0.05; 6]);
    let alpha = bounds::alpha_intermediate(&m.net, &lo, &hi, 20);
    let refine = RefineOpts {
        domains: 64,
        ..RefineOpts::default()
    };
    let refined = bounds::refined_intermediate(&m.net, &lo, &hi, 20, &refine, &alpha);
    let (mut w_alpha, mut w_refined) = (0.0, 0.0);
    for k in 0..m.net.nodes.len() {
        for i in 0..m.net.dims[k] {
            let (lr, ur) = (refined.lower[k][i], refined.upper[k][i]);
            assert!(lr >= alpha.lower[k][i] - 1e-12 && ur <= alpha.upper[k][i] + 1e-12);
            w_alpha += alpha.upper[k][i] - alpha.lower[k][i];
            w_refined += ur - lr;
        }
    }
    assert!(w_refined < w_alpha, "refined {w_refined} vs α {w_alpha}");
    assert!(
        unstable(&m, &refined) < unstable(&m, &alpha),
        "unstable ReLUs: refined {} vs α {}",
        unstable(&m, &refined),
        unstable(&m, &alpha)
    );
    assert_contains_samples(&m, &lo, &hi, &refined);
    // A deadline already passed refines nothing: the α bounds come back unchanged.
    let past = RefineOpts {
        deadline: Some(std::time::Instant::now()),
        ..refine
    };
    let same = bounds::refined_intermediate(&m.net, &lo, &hi, 20, &past, &alpha);
    assert_eq!(same.lower, alpha.lower);
    assert_eq!(same.upper, alpha.upper);
}

#[test]
fn incremental_first_layer_matches_a_full_pass() {
    let dir = tempfile::tempdir().unwrap();
    let m = Model::from_proto(&mlp(&random_mlp(&[40, 16, 4], 3)), dir.path());
    let first = 1; // the first Gemm reads the input
    let x0: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37).sin()).collect();
    let z0 = m.net.eval_all(&x0)[first].clone();
    // Three coordinates move: updated from z0, it equals a full pass at the new point.
    let mut x1 = x0.clone();
    for j in [2, 17, 39] {
        x1[j] += 0.5;
    }
    let inc = m.net.forward_first_from(first, &x1, &x0, &z0).unwrap();
    let full = &m.net.eval_all(&x1)[first];
    for (a, b) in inc.iter().zip(full) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // Over a quarter moved: the caller must do a full pass.
    let x2: Vec<f64> = x0.iter().map(|v| v + 1.0).collect();
    assert!(m.net.forward_first_from(first, &x2, &x0, &z0).is_none());
    // A node that does not read the input directly is not eligible.
    assert!(m.net.forward_first_from(3, &x1, &x0, &z0).is_none());
}

#[test]
fn resumed_pass_matches_a_full_pass() {
    // Strong branching bounds each candidate child by resuming the parent's kept pass at
    // the split neuron's activation: with the same relaxations it must give the parent's
    // bound back, and with one neuron's relaxation changed the full pass's.
    let dir = tempfile::tempdir().unwrap();
    let m = Model::from_proto(&mlp(&random_mlp(&[6, 12, 12, 12, 3], 9)), dir.path());
    let net = &m.net;
    let (lo, hi) = (vec![-1.0; 6], vec![1.0; 6]);
    let b = bounds::alpha_intermediate(net, &lo, &hi, 5);
    let rel = bounds::relaxations(net, &b);
    let mut lam = Dense::zeros(3, 3);
    for r in 0..3 {
        lam.data[r * 3 + r] = 1.0;
    }
    let opts = bounds::BackOpts {
        alpha: None,
        splits: None,
        keep: true,
    };
    let pass = |rel: &[Vec<bounds::Relax>]| {
        let back = bounds::backward(net, rel, &b.eps, net.output, lam.clone(), opts);
        bounds::minimise(&back, &lo, &hi, false).0
    };
    let parent = bounds::backward(net, &rel, &b.eps, net.output, lam.clone(), opts);
    let want = bounds::minimise(&parent, &lo, &hi, false).0;
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    let (mut changed, mut rank_one) = (0, 0);
    for (a, node) in net.nodes.iter().enumerate() {
        let Node::Act { input, act } = node else {
            continue;
        };
        assert!(bounds::resumable(net, a));
        let same = bounds::resume(net, &rel, &b.eps, &parent, a, opts).unwrap();
        let got = bounds::minimise(&same, &lo, &hi, false).0;
        assert!(close(&got, &want), "node {a}: {got:?} vs {want:?}");
        // Fix every unstable neuron of this layer active in turn.
        for i in 0..net.dims[*input] {
            let (l, u) = (b.lower[*input][i], b.upper[*input][i]);
            if l >= 0.0 || u <= 0.0 {
                continue;
            }
            let mut r2 = rel.clone();
            r2[a][i] = bounds::relax(act, i, 0.0, u);
            let got = bounds::resume(net, &r2, &b.eps, &parent, a, opts).unwrap();
            let got = bounds::minimise(&got, &lo, &hi, false).0;
            let full = pass(&r2);
            assert!(
                close(&got, &full),
                "node {a} neuron {i}: {got:?} vs {full:?}"
            );
            changed += usize::from(!close(&full, &want));
            // The first layer's change is a rank-one update of the input coefficients;
            // deeper layers have relaxations in between and get `None`.
            let one = bounds::rank_one_first_layer(
                net, &b.eps, &parent, None, a, i, &rel[a][i], &r2[a][i],
            );
            match one {
                Some(one) => {
                    let got = bounds::minimise(&one, &lo, &hi, false).0;
                    assert!(
                        close(&got, &full),
                        "rank one, neuron {i}: {got:?} vs {full:?}"
                    );
                    rank_one += 1;
                }
                None => assert!(*input > 1, "the first layer must take the rank-one path"),
            }
        }
    }
    assert!(
        changed > 0,
        "no split changed any bound: the test proves nothing"
    );
    assert!(rank_one > 0, "no first-layer neuron was unstable");
}

#[test]
fn strong_branching_agrees_with_babsr() {
    // Thresholds just above the grid maximum need ReLU splits; strong branching changes
    // which neuron is split, never the answer.
    let dir = tempfile::tempdir().unwrap();
    let m = Model::from_proto(&mlp(&random_mlp(&[4, 10, 10, 1], 5)), dir.path());
    // The range on a grid of 21 points per input.
    let (mut best, mut worst) = (f64::NEG_INFINITY, f64::INFINITY);
    let n = 20u32;
    for k in 0..(n + 1).pow(4) {
        let x: Vec<f64> = (0..4)
            .map(|d| -1.0 + 2.0 * f64::from(k / (n + 1).pow(d) % (n + 1)) / f64::from(n))
            .collect();
        let y = m.net.eval_all(&x)[m.net.output][0];
        best = best.max(y);
        worst = worst.min(y);
    }
    let text = |t: f64| {
        vnnlib_box(
            &[-1.0; 4],
            &[1.0; 4],
            1,
            &format!("(assert (>= Y_0 {t:?}))"),
        )
    };
    let run = |t: f64, candidates: usize| {
        let prop = vnnlib::parse("p", &text(t)).unwrap();
        // Far more time than a few thousand domains take: the verdict, not the
        // speed, is under test.
        let mut s = settings(Method::ReluSplit, 600.0);
        s.attack.samples = 0;
        s.attack.restarts = 0;
        s.relu.candidates = candidates;
        s.relu.refine.candidates = candidates;
        (prop.clone(), m.verify(&prop, &s))
    };
    let mut branched = false;
    for t in [best + 0.1 * (best - worst), best + 0.3 * (best - worst)] {
        let (_, plain) = run(t, 1);
        let (_, strong) = run(t, 4);
        assert_eq!(
            plain.verdict.as_str(),
            strong.verdict.as_str(),
            "{plain:?} vs {strong:?}"
        );
        assert_ne!(strong.verdict.as_str(), "unknown", "{strong:?}");
        eprintln!(
            "threshold {t}: {} domains plain, {} strong",
            plain.domains, strong.domains
        );
        branched |= strong.domains > 1;
    }
    assert!(
        branched,
        "no threshold needed a split: the test proves nothing"
    );
    let (prop, o) = run(best - 1e-3 * (best - worst), 4);
    assert_counterexample(&m, &prop, &o);
}
