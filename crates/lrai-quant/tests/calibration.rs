//! Calibration methods give the scales expected on synthetic data, and quantizing then
//! dequantizing never errs by more than half a step inside the range.
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use lrai_quant::calibrate::{CalibrationMethod, range_for_values};
use lrai_quant::params::{ActivationType, activation_params, fake_quantize};
use proptest::prelude::*;

/// Deterministic standard normal samples (Box–Muller over a fixed grid of uniforms).
fn gaussian(n: usize) -> Vec<f32> {
    let mut rng = lrai_core::random::SplitMix64::new(7);
    (0..n)
        .map(|_| {
            let u1 = rng.next_f64().max(1e-12);
            let u2 = rng.next_f64();
            #[allow(clippy::cast_possible_truncation)]
            let z = ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32;
            z
        })
        .collect()
}

#[test]
fn minmax_on_uniform_data_gives_range_over_255() {
    let v: Vec<f32> = (0..=1000).map(|i| i as f32 / 100.0).collect();
    let r = range_for_values(&v, CalibrationMethod::MinMax);
    assert_eq!((r.min, r.max), (0.0, 10.0));
    let p = activation_params(r.min, r.max, ActivationType::U8);
    assert!((p.scale - 10.0 / 255.0).abs() < 1e-7);
    assert_eq!(p.zero_point, 0);
}

#[test]
fn percentile_drops_outliers_that_minmax_keeps() {
    let mut v = gaussian(200_000);
    v.push(50.0);
    let mm = range_for_values(&v, CalibrationMethod::MinMax);
    assert_eq!(mm.max, 50.0);
    let p = range_for_values(&v, CalibrationMethod::Percentile { percentile: 99.99 });
    // 99.99 % of |N(0,1)| lies below about 3.9.
    assert!(p.max > 3.5 && p.max < 4.5, "{p:?}");
    assert!(p.min < -3.5 && p.min > -4.5, "{p:?}");
    let (s_mm, s_p) = (
        activation_params(mm.min, mm.max, ActivationType::I8).scale,
        activation_params(p.min, p.max, ActivationType::I8).scale,
    );
    assert!(s_p < s_mm / 10.0, "{s_p} vs {s_mm}");
}

#[test]
fn entropy_threshold_on_gaussian_lies_between_two_and_five_sigma() {
    let mut v = gaussian(200_000);
    v.push(40.0);
    let r = range_for_values(&v, CalibrationMethod::Entropy);
    assert!(r.max > 2.0 && r.max < 5.0, "{r:?}");
    assert!(
        (r.max + r.min).abs() < 1e-6,
        "symmetric for symmetric data: {r:?}"
    );
}

#[test]
fn one_sided_data_keeps_zero_point_zero_with_every_method() {
    let v: Vec<f32> = gaussian(50_000).into_iter().map(f32::abs).collect();
    for m in [
        CalibrationMethod::MinMax,
        CalibrationMethod::Percentile { percentile: 99.9 },
        CalibrationMethod::Entropy,
    ] {
        let r = range_for_values(&v, m);
        assert!(r.min >= 0.0, "{m:?}: {r:?}");
        assert_eq!(
            activation_params(r.min, r.max, ActivationType::U8).zero_point,
            0
        );
    }
}

proptest! {
    #[test]
    fn quantize_dequantize_error_is_at_most_half_a_step(
        lo in -100.0f32..0.0, span in 0.01f32..200.0, t in 0.0f32..1.0, signed in any::<bool>()
    ) {
        let ty = if signed { ActivationType::I8 } else { ActivationType::U8 };
        let hi = lo + span;
        let p = activation_params(lo, hi, ty);
        let x = lo + t * span;
        let err = (fake_quantize(x, p, ty) - x).abs();
        prop_assert!(err <= p.scale / 2.0 + p.scale * 1e-3, "x={} err={} scale={}", x, err, p.scale);
    }
}
