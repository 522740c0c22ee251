//! Bounds on hand-built networks whose largest difference is known exactly.

use std::time::{Duration, Instant};

use super::*;
use crate::matrix::{Dense, Mat};
use crate::network::{Activation, Node};

fn dense(rows: usize, cols: usize, data: &[f64]) -> Mat {
    Mat::Dense(Dense {
        rows,
        cols,
        data: data.to_vec(),
    })
}

/// `y = W2 · relu(W1 · x + b1) + b2`, built as `Network::from_onnx` would.
fn mlp(w1: &[f64], b1: &[f64], w2: &[f64], b2: &[f64]) -> Network {
    let (h, o) = (b1.len(), b2.len());
    let n = w1.len() / h;
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    Network {
        name: "mlp".into(),
        nodes: vec![
            Node::Input { dim: n },
            Node::Linear {
                terms: vec![(0, dense(h, n, w1))],
                bias: b1.to_vec(),
                abs_terms: vec![(0, dense(h, n, &abs(w1)))],
                abs_bias: abs(b1),
                acc_len: n,
            },
            Node::Act {
                input: 1,
                act: Activation::Relu,
            },
            Node::Linear {
                terms: vec![(2, dense(o, h, w2))],
                bias: b2.to_vec(),
                abs_terms: vec![(2, dense(o, h, &abs(w2)))],
                abs_bias: abs(b2),
                acc_len: h,
            },
        ],
        dims: vec![n, h, h, o],
        output: 3,
        input_name: "x".into(),
        input_shape: vec![1, n],
        output_name: "y".into(),
        transposed: Default::default(),
    }
}

const W1: [f64; 6] = [1.0, -1.0, 0.5, 2.0, -1.5, 0.25];
const B1: [f64; 3] = [0.1, -0.2, 0.3];
const W2: [f64; 6] = [1.0, -2.0, 0.5, 0.75, 1.25, -1.0];
const B2: [f64; 2] = [0.0, 0.5];

fn opts(target: f64, secs: f64) -> ProofOpts {
    ProofOpts {
        target,
        observed: 0.0,
        deadline: Instant::now() + Duration::from_secs_f64(secs),
        alpha_iters: 10,
        batch: 4,
    }
}

/// A box containing every region the tests bound (rounding errors are taken over it).
fn hull() -> InputBox {
    Region::uniform(2, -1.0, 2.0).boxes.remove(0)
}

fn unit_box(lo: f64, hi: f64) -> Vec<InputBox> {
    Region::uniform(2, lo, hi).boxes
}

#[test]
fn identical_models_differ_only_by_rounding_where_relus_are_stable() {
    // On [1, 2]² every hidden pre-activation keeps one sign, so the branches cancel.
    let w1 = [1.0, 0.5, 0.5, 2.0, -1.5, -0.25];
    let a = mlp(&w1, &B1, &W2, &B2);
    let diff = difference_network(&a, &a, &hull()).unwrap();
    let b = bound_box(&diff, &unit_box(1.0, 2.0)[0], 0, None);
    assert!(b.max > 0.0, "rounding error must be charged, got {}", b.max);
    // Outputs are about 5 here: 1e-4 is a few thousand f32 ulps of the sums involved.
    assert!(b.max < 1e-4, "bound {} is more than rounding error", b.max);
}

#[test]
fn identical_models_cancel_through_unstable_relus() {
    // Every node of the second model is a twin of the first's: no ReLU is relaxed twice.
    let a = mlp(&W1, &B1, &W2, &B2);
    let diff = difference_network(&a, &a, &hull()).unwrap();
    let b = bound_box(&diff, &unit_box(-1.0, 1.0)[0], 0, None);
    assert!(b.max > 0.0 && b.max < 1e-4, "bound {}", b.max);
}

#[test]
fn bisection_tightens_the_bound_of_nearly_identical_models() {
    // A bias moved by 1e-3 makes every hidden node differ, so each branch's unstable
    // ReLUs are relaxed on their own: the root bound is loose and only splitting the
    // input brings it down (the true maximum is at most 2·1e-3).
    let a = mlp(&W1, &B1, &W2, &B2);
    let b = mlp(&W1, &[0.101, -0.2, 0.3], &W2, &B2);
    let diff = difference_network(&a, &b, &hull()).unwrap();
    let p = prove_bound(&diff, &unit_box(-1.0, 1.0), &opts(0.25, 10.0), &|_, _| {});
    assert!(
        p.root_max > 1.0,
        "root bound {} should be loose",
        p.root_max
    );
    assert!(
        p.max <= 0.25,
        "bisection reached only {} ({})",
        p.max,
        p.stop
    );
    assert!(p.max >= 1e-3, "bound {} below the true difference", p.max);
}

/// One output weight moved by δ: `diff_0 = δ · relu(h_0)` with `h_0 = x0 − x1 + 0.1`,
/// so over `[lo, hi]²` the maximum is `δ · max(0, hi − lo + 0.1)`.
#[test]
fn perturbed_weight_bound_is_sound_and_tight() {
    let delta = 0.03;
    let mut w2 = W2;
    w2[0] += delta;
    let a = mlp(&W1, &B1, &W2, &B2);
    let b = mlp(&W1, &B1, &w2, &B2);
    let diff = difference_network(&a, &b, &hull()).unwrap();
    for (lo, hi) in [(1.0, 2.0), (-1.0, 1.0), (0.0, 0.5)] {
        let truth = delta * (hi - lo + 0.1f64).max(0.0);
        let p = prove_bound(
            &diff,
            &unit_box(lo, hi),
            &opts(truth * 1.01, 20.0),
            &|_, _| {},
        );
        assert!(
            p.max >= truth,
            "[{lo}, {hi}]: bound {} below the true {truth}",
            p.max
        );
        assert!(
            p.max <= truth * 1.01 + 1e-6,
            "[{lo}, {hi}]: bound {} not within 1% of {truth} ({})",
            p.max,
            p.stop
        );
        // Output 1 is unchanged: its bound is rounding (and relaxation) only.
        assert!(p.per_output[1] <= p.max);
    }
}

#[test]
fn bound_contains_sampled_differences() {
    let mut w1 = W1;
    w1[3] -= 0.2;
    let a = mlp(&W1, &B1, &W2, &B2);
    let b = mlp(&w1, &B1, &W2, &[0.01, 0.5]);
    let diff = difference_network(&a, &b, &hull()).unwrap();
    let bx = unit_box(-1.0, 1.0);
    let root = bound_box(&diff, &bx[0], 10, None);
    let region = Region { boxes: bx };
    for (_, x) in sample_points(&region, 2000, 3) {
        let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let (ya, yb) = (a.eval(&x), b.eval(&x));
        for j in 0..2 {
            assert!((yb[j] - ya[j]).abs() <= root.per_output[j], "x = {x:?}");
        }
    }
}

#[test]
fn pgd_finds_the_worst_corner() {
    let delta = 0.03;
    let mut w2 = W2;
    w2[0] += delta;
    let diff =
        difference_network(&mlp(&W1, &B1, &W2, &B2), &mlp(&W1, &B1, &w2, &B2), &hull()).unwrap();
    let region = Region::uniform(2, -1.0, 1.0);
    let starts = pgd_starts(&region, &[], &[], 4);
    let pts = pgd_points(&diff, &region, &starts, 40);
    let best = pts
        .iter()
        .map(|x| {
            let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            diff.eval(&x)[0].abs()
        })
        .fold(0.0, f64::max);
    // The maximum, δ·2.1 at x = (1, −1).
    assert!(best >= delta * 2.1 * 0.999, "PGD reached only {best}");
}

#[test]
fn mismatched_sizes_are_an_error_naming_both() {
    let a = mlp(&W1, &B1, &W2, &B2);
    let b = mlp(&W1, &B1, &W2[..3], &B2[..1]);
    let e = difference_network(&a, &b, &hull()).unwrap_err().to_string();
    assert!(e.contains("output has 1 elements"), "{e}");
}

#[test]
fn around_clips_and_rejects_empty_balls() {
    let r = Region::around(&[vec![0.0, 1.0]], 0.1, Some((0.0, 1.0))).unwrap();
    assert_eq!(r.boxes[0].lower, vec![0.0, 0.9]);
    assert_eq!(r.boxes[0].upper, vec![0.1, 1.0]);
    assert!(Region::around(&[vec![5.0]], 0.1, Some((0.0, 1.0))).is_err());
}

#[test]
fn selects_the_array_shaped_like_the_input() {
    use lrai_core::Tensor;
    let flat = Tensor::from_slice(vec![2, 4], &[0f32; 8]).unwrap();
    let img = Tensor::from_slice(vec![2, 1, 2, 2], &[1f32; 8]).unwrap();
    let labels = Tensor::from_slice(vec![2], &[1i64, 2]).unwrap();
    let arrays = vec![
        ("x_img".to_string(), img),
        ("x_flat".to_string(), flat),
        ("y".to_string(), labels),
    ];
    let (name, rows) = select_points(&arrays, &[1, 4]).unwrap();
    assert_eq!((name.as_str(), rows.len()), ("x_flat", 2));
    let (name, _) = select_points(&arrays, &[1, 1, 2, 2]).unwrap();
    assert_eq!(name, "x_img");
    let e = select_points(&arrays, &[1, 3]).unwrap_err();
    assert!(e.contains("no float array"), "{e}");
    let e = select_points(&arrays[..2], &[4]).unwrap_err();
    assert!(e.contains("several arrays"), "{e}");
}

/// The quantizer relaxations (unclamped, clamped on one side, constant) hold at every
/// point of the interval, for any round-to-nearest rule: checked against both roundings
/// of a tie and against `round(v ± 1e-7·|v|)` for the f32 division error.
#[test]
fn quantizer_relaxations_contain_the_quantizer() {
    use crate::bounds::relax;
    let act = Activation::Quantize {
        scale: vec![0.05],
        zero_point: vec![3.0],
        qmin: 0.0,
        qmax: 255.0,
    };
    let mut rng = lrai_core::random::SplitMix64::new(9);
    for _ in 0..2000 {
        let a = (rng.next_f64() - 0.5) * 30.0;
        let b = a + rng.next_f64() * rng.next_f64() * 20.0;
        let r = relax(&act, 0, a, b);
        let (lo_q, hi_q) = act.eval_range(0, a, b);
        for k in 0..=50 {
            let z = a + (b - a) * f64::from(k) / 50.0;
            let v = z / 0.05;
            for w in [v * (1.0 - 1e-7), v, v * (1.0 + 1e-7)] {
                for q in [(w - 0.5).ceil(), (w + 0.5).floor()] {
                    let q = (q + 3.0).clamp(0.0, 255.0);
                    // The node's rounding error (2u·|z|/s) is charged on top.
                    let slack = 2.0 * 5.97e-8 * z.abs() / 0.05 + 1e-9;
                    assert!(r.lo_s * z + r.lo_c <= q + slack, "{r:?} z={z} q={q}");
                    assert!(r.up_s * z + r.up_c >= q - slack, "{r:?} z={z} q={q}");
                    assert!(lo_q <= q && q <= hi_q, "[{lo_q}, {hi_q}] z={z} q={q}");
                }
            }
        }
    }
}

/// A QDQ version of [`mlp`]: the input quantized (u8, zero point 128), weights rounded
/// to multiples of 1/64, the ReLU folded into a u8 activation quantizer with zero point
/// 0 (clamped below for negative inputs), each dequantization fused into the next
/// affine node.
fn qdq_mlp() -> Network {
    let q = |v: &[f64]| {
        v.iter()
            .map(|x| (x * 64.0).round() / 64.0)
            .collect::<Vec<_>>()
    };
    let (s_in, zp_in, s_h) = (0.02, 128.0, 0.05);
    let w1: Vec<f64> = q(&W1).iter().map(|w| w * s_in).collect();
    let b1: Vec<f64> = (0..3)
        .map(|r| B1[r] - zp_in * (w1[2 * r] + w1[2 * r + 1]))
        .collect();
    let w2: Vec<f64> = q(&W2).iter().map(|w| w * s_h).collect();
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let quant = |n: usize, s: f64, zp: f64| Activation::Quantize {
        scale: vec![s; n],
        zero_point: vec![zp; n],
        qmin: 0.0,
        qmax: 255.0,
    };
    Network {
        name: "qdq".into(),
        nodes: vec![
            Node::Input { dim: 2 },
            Node::Linear {
                terms: vec![(0, Mat::Diag(vec![1.0; 2]))],
                bias: vec![0.0; 2],
                abs_terms: vec![(0, Mat::Diag(vec![1.0; 2]))],
                abs_bias: vec![0.0; 2],
                acc_len: 0,
            },
            Node::Act {
                input: 1,
                act: quant(2, s_in, zp_in),
            },
            Node::Linear {
                terms: vec![(2, dense(3, 2, &w1))],
                bias: b1.clone(),
                abs_terms: vec![(2, dense(3, 2, &abs(&w1)))],
                abs_bias: abs(&b1),
                acc_len: 4,
            },
            Node::Act {
                input: 3,
                act: quant(3, s_h, 0.0),
            },
            Node::Linear {
                terms: vec![(4, dense(2, 3, &w2))],
                bias: B2.to_vec(),
                abs_terms: vec![(4, dense(2, 3, &abs(&w2)))],
                abs_bias: abs(&B2),
                acc_len: 5,
            },
        ],
        dims: vec![2, 2, 2, 3, 3, 2],
        output: 5,
        input_name: "x".into(),
        input_shape: vec![1, 2],
        output_name: "y".into(),
        transposed: Default::default(),
    }
}

#[test]
fn qdq_bound_contains_sampled_differences_and_bisection_tightens_it() {
    let a = mlp(&W1, &B1, &W2, &B2);
    let b = qdq_mlp();
    let diff = difference_network(&a, &b, &hull()).unwrap();
    let bx = unit_box(-1.0, 1.0);
    let region = Region { boxes: bx.clone() };
    let mut seen = 0.0f64;
    let p = prove_bound(&diff, &bx, &opts(0.0, 1.0), &|_, _| {});
    for (_, x) in sample_points(&region, 5000, 5) {
        let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let (ya, yb) = (a.eval(&x), b.eval(&x));
        for j in 0..2 {
            let d = (yb[j] - ya[j]).abs();
            seen = seen.max(d);
            assert!(d <= p.per_output[j], "x = {x:?}: {d} > {}", p.per_output[j]);
        }
    }
    assert!(seen > 0.0);
    assert!(
        p.max < p.root_max,
        "bisection should tighten {}",
        p.root_max
    );
    // About 5.9 before splitting, 0.14 after a second against 0.10 observed.
    assert!(p.max <= 2.0 * seen, "bound {} vs observed {seen}", p.max);
}
