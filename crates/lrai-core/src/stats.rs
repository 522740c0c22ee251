//! Small numeric summaries of tensors and the tolerance check used against references.

use crate::DataType;
use crate::tensor::Tensor;

/// min/max/mean of a numeric tensor, plus per-row argmax for 2-D tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Smallest element (NaN ignored).
    pub min: f64,
    /// Largest element (NaN ignored).
    pub max: f64,
    /// Mean of all elements.
    pub mean: f64,
    /// For 2-D tensors, the index of the largest element of each row.
    pub argmax: Option<Vec<usize>>,
}

/// Summarises a numeric tensor; `None` for BYTES and empty tensors.
pub fn summarize(t: &Tensor) -> Option<Summary> {
    if t.dtype() == DataType::Bytes || t.is_empty() {
        return None;
    }
    let v = t.to_f64_vec().ok()?;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    #[allow(clippy::cast_precision_loss)]
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let argmax = match t.shape() {
        [_, cols] if *cols > 0 => Some(
            v.chunks(*cols)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold((0, f64::NEG_INFINITY), |best, (i, &x)| {
                            if x > best.1 { (i, x) } else { best }
                        })
                        .0
                })
                .collect(),
        ),
        _ => None,
    };
    Some(Summary {
        min,
        max,
        mean,
        argmax,
    })
}

/// The first element where `|a − b| > atol + rtol·|b|`, as (index, a, b); `None` when all
/// are within tolerance. Shapes must match; NaN equals NaN.
pub fn first_mismatch(
    actual: &[f64],
    expected: &[f64],
    atol: f64,
    rtol: f64,
) -> Option<(usize, f64, f64)> {
    if actual.len() != expected.len() {
        return Some((actual.len().min(expected.len()), f64::NAN, f64::NAN));
    }
    actual
        .iter()
        .zip(expected)
        .enumerate()
        .find(|(_, (a, b))| {
            let both_nan = a.is_nan() && b.is_nan();
            // Written as "within" so that a NaN difference counts as a mismatch.
            let within = (*a - *b).abs() <= atol + rtol * b.abs();
            !both_nan && !within
        })
        .map(|(i, (a, b))| (i, *a, *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_rows() {
        let t = Tensor::from_vec(vec![2, 3], vec![1.0f32, 5.0, 2.0, -1.0, -3.0, -2.0]).unwrap();
        let s = summarize(&t).unwrap();
        assert_eq!(s.argmax, Some(vec![1, 0]));
        assert!((s.mean - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((s.min, s.max), (-3.0, 5.0));
    }

    #[test]
    fn tolerance_check_finds_first_bad_element() {
        assert_eq!(
            first_mismatch(&[1.0, 2.0], &[1.0, 2.0005], 1e-4, 1e-3),
            None
        );
        assert_eq!(
            first_mismatch(&[1.0, 2.1], &[1.0, 2.0], 1e-4, 1e-3),
            Some((1, 2.1, 2.0))
        );
        assert!(first_mismatch(&[f64::NAN], &[1.0], 1.0, 1.0).is_some());
    }
}
