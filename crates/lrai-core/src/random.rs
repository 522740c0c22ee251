//! Deterministic random tensors for `lrai run --random` and tests: SplitMix64, which is
//! tiny, seedable and good enough for test data (not for cryptography).

use crate::shape::element_count;
use crate::tensor::Tensor;
use crate::{CoreError, DataType, Result};

/// SplitMix64 pseudo-random generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed; the same seed gives the same sequence.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A random tensor: floats uniform in [0, 1), integers uniform in 0..=9 (small enough
/// to be valid indices for most embedding tables), BOOL a fair coin, BYTES short
/// lowercase words.
///
/// # Errors
/// [`CoreError::ShapeOverflow`] when the shape is too large.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn random_tensor(dtype: DataType, shape: Vec<usize>, rng: &mut SplitMix64) -> Result<Tensor> {
    let n = element_count(&shape).ok_or_else(|| CoreError::ShapeOverflow {
        shape: shape.clone(),
    })?;
    let small = |rng: &mut SplitMix64| (rng.next_u64() % 10) as u8;
    match dtype {
        DataType::Bool => {
            let v: Vec<bool> = (0..n).map(|_| rng.next_u64() & 1 == 1).collect();
            Tensor::from_bools(shape, &v)
        }
        DataType::Bytes => {
            let v: Vec<String> = (0..n)
                .map(|_| {
                    let len = 1 + rng.next_u64() % 8;
                    (0..len)
                        .map(|_| char::from(b'a' + (rng.next_u64() % 26) as u8))
                        .collect()
                })
                .collect();
            Tensor::from_byte_strings(shape, &v)
        }
        DataType::F16 => Tensor::from_vec(
            shape,
            (0..n)
                .map(|_| half::f16::from_f64(rng.next_f64()))
                .collect(),
        ),
        DataType::BF16 => Tensor::from_vec(
            shape,
            (0..n)
                .map(|_| half::bf16::from_f64(rng.next_f64()))
                .collect(),
        ),
        DataType::F32 => Tensor::from_vec(shape, (0..n).map(|_| rng.next_f64() as f32).collect()),
        DataType::F64 => Tensor::from_vec(shape, (0..n).map(|_| rng.next_f64()).collect()),
        DataType::U8 => Tensor::from_vec(shape, (0..n).map(|_| small(rng)).collect()),
        DataType::U16 => Tensor::from_vec(shape, (0..n).map(|_| u16::from(small(rng))).collect()),
        DataType::U32 => Tensor::from_vec(shape, (0..n).map(|_| u32::from(small(rng))).collect()),
        DataType::U64 => Tensor::from_vec(shape, (0..n).map(|_| u64::from(small(rng))).collect()),
        DataType::I8 => Tensor::from_vec(shape, (0..n).map(|_| small(rng) as i8).collect()),
        DataType::I16 => Tensor::from_vec(shape, (0..n).map(|_| i16::from(small(rng))).collect()),
        DataType::I32 => Tensor::from_vec(shape, (0..n).map(|_| i32::from(small(rng))).collect()),
        DataType::I64 => Tensor::from_vec(shape, (0..n).map(|_| i64::from(small(rng))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tensor() {
        let a = random_tensor(DataType::F32, vec![3, 4], &mut SplitMix64::new(7)).unwrap();
        let b = random_tensor(DataType::F32, vec![3, 4], &mut SplitMix64::new(7)).unwrap();
        let c = random_tensor(DataType::F32, vec![3, 4], &mut SplitMix64::new(8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.to_vec::<f32>()
                .unwrap()
                .iter()
                .all(|v| (0.0..1.0).contains(v))
        );
    }
}
