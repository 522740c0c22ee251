//! Comparing two answers to the same request: top-1 agreement per row (argmax over the
//! last axis, which is what a classifier's logits or probabilities decide), the largest
//! absolute difference, and the cosine similarity (regressions and embeddings).

use lrai_core::Tensor;

use super::window::Comparison;

/// Compares the baseline's and the candidate's outputs, matched by name. `None` when they
/// can't be compared: an output is missing on one side, shapes differ, or an output is
/// not numeric (BYTES).
pub fn compare_outputs(
    baseline: &[(String, Tensor)],
    candidate: &[(String, Tensor)],
) -> Option<Comparison> {
    if baseline.is_empty() || baseline.len() != candidate.len() {
        return None;
    }
    let mut total = Comparison {
        rows: 0,
        rows_agree: 0,
        max_abs: 0.0,
        cosine: 1.0,
    };
    let (mut dot, mut norm_b, mut norm_c) = (0.0f64, 0.0f64, 0.0f64);
    for (name, b) in baseline {
        let (_, c) = candidate.iter().find(|(n, _)| n == name)?;
        if b.shape() != c.shape() {
            return None;
        }
        let bv = b.to_f64_vec().ok()?;
        let cv = c.to_f64_vec().ok()?;
        let width = b.shape().last().copied().filter(|w| *w > 0).unwrap_or(1);
        for (rb, rc) in bv.chunks(width).zip(cv.chunks(width)) {
            total.rows += 1;
            if argmax(rb) == argmax(rc) {
                total.rows_agree += 1;
            }
        }
        for (x, y) in bv.iter().zip(&cv) {
            let d = (x - y).abs();
            // NaN on either side is as far apart as it gets.
            total.max_abs = if d.is_nan() {
                f64::INFINITY
            } else {
                total.max_abs.max(d)
            };
            dot += x * y;
            norm_b += x * x;
            norm_c += y * y;
        }
    }
    total.cosine = cosine(dot, norm_b, norm_c);
    Some(total)
}

fn argmax(row: &[f64]) -> Option<usize> {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

fn cosine(dot: f64, norm_b: f64, norm_c: f64) -> f64 {
    if norm_b == 0.0 && norm_c == 0.0 {
        return 1.0;
    }
    if norm_b == 0.0 || norm_c == 0.0 {
        return 0.0;
    }
    let c = dot / (norm_b.sqrt() * norm_c.sqrt());
    if c.is_nan() { -1.0 } else { c.clamp(-1.0, 1.0) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp)]
    use super::*;

    fn t(shape: Vec<usize>, v: &[f32]) -> Vec<(String, Tensor)> {
        vec![("y".into(), Tensor::from_slice(shape, v).unwrap())]
    }

    #[test]
    fn identical_outputs_agree_fully() {
        let a = t(vec![2, 3], &[0.1, 0.7, 0.2, 0.5, 0.3, 0.2]);
        let c = compare_outputs(&a, &a).unwrap();
        assert_eq!((c.rows, c.rows_agree), (2, 2));
        assert_eq!(c.max_abs, 0.0);
        assert!((c.cosine - 1.0).abs() < 1e-12);
    }

    #[test]
    fn permuted_logits_disagree_on_top1() {
        let a = t(vec![2, 3], &[0.1, 0.7, 0.2, 0.5, 0.3, 0.2]);
        let b = t(vec![2, 3], &[0.7, 0.2, 0.1, 0.3, 0.2, 0.5]);
        let c = compare_outputs(&a, &b).unwrap();
        assert_eq!((c.rows, c.rows_agree), (2, 0));
        assert!((c.max_abs - 0.6).abs() < 1e-6);
        assert!(c.cosine < 0.9);
    }

    #[test]
    fn different_shapes_or_names_cannot_be_compared() {
        let a = t(vec![1, 3], &[1.0, 2.0, 3.0]);
        let b = t(vec![3, 1], &[1.0, 2.0, 3.0]);
        assert!(compare_outputs(&a, &b).is_none());
        let renamed = vec![("z".to_string(), a[0].1.clone())];
        assert!(compare_outputs(&a, &renamed).is_none());
        assert!(compare_outputs(&[], &[]).is_none());
    }

    #[test]
    fn regression_outputs_use_abs_and_cosine() {
        let a = t(vec![2, 1], &[1.0, 2.0]);
        let b = t(vec![2, 1], &[1.5, 2.0]);
        let c = compare_outputs(&a, &b).unwrap();
        // One column: top-1 always agrees; the distance measures tell them apart.
        assert_eq!(c.rows_agree, 2);
        assert!((c.max_abs - 0.5).abs() < 1e-6);
        assert!((c.cosine - 5.5 / (5f64.sqrt() * 2.5)).abs() < 1e-9);
    }
}
