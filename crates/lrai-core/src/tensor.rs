//! The tensor: a datatype, a concrete shape and contiguous row-major bytes.
//!
//! Storage is `bytes::Bytes`, so a tensor can wrap a received network buffer (a slice of
//! the request body) without copying, and batch splitting hands out slices of one
//! output buffer. Typed access goes through `bytemuck`, which checks alignment; network
//! buffers are often misaligned, so [`Tensor::to_vec`]/[`Tensor::as_slice`] fall back to a
//! copy instead of failing.
//!
//! `BYTES` tensors use Triton's serialisation for their storage: each element is a
//! 4-byte little-endian length followed by that many bytes. It is what the binary tensor
//! extension sends, so a BYTES input is also wrapped without copying.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::dtype::{DataType, Element};
use crate::shape::{element_count, format_shape};
use crate::{CoreError, Result};

/// A dense tensor.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DataType,
    shape: Vec<usize>,
    data: Bytes,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({} {}, {} bytes)",
            self.dtype,
            format_shape(&self.shape),
            self.data.len()
        )
    }
}

impl Tensor {
    /// Wraps `data` (row-major, little-endian; Triton-serialised for BYTES) without copying.
    ///
    /// # Errors
    /// [`CoreError::ByteLength`] when the length does not match dtype × shape,
    /// [`CoreError::ShapeOverflow`] when the element count overflows, and
    /// [`CoreError::BadBytesElement`] when BYTES data is not well formed.
    pub fn new(dtype: DataType, shape: Vec<usize>, data: Bytes) -> Result<Tensor> {
        let count = element_count(&shape).ok_or_else(|| CoreError::ShapeOverflow {
            shape: shape.clone(),
        })?;
        match dtype.size() {
            Some(size) => {
                let expected = count
                    .checked_mul(size)
                    .ok_or_else(|| CoreError::ShapeOverflow {
                        shape: shape.clone(),
                    })?;
                if expected != data.len() {
                    return Err(CoreError::ByteLength {
                        dtype,
                        shape,
                        expected,
                        got: data.len(),
                    });
                }
            }
            None => {
                let found = count_bytes_elements(&data)?;
                if found != count {
                    return Err(CoreError::BytesElementCount {
                        shape,
                        expected: count,
                        got: found,
                    });
                }
            }
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// Builds a tensor from typed values.
    ///
    /// # Errors
    /// [`CoreError::ByteLength`] when `values.len()` does not match the shape.
    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Result<Tensor> {
        // Zero copy: the Vec becomes the storage's owner.
        Tensor::new(T::DTYPE, shape, Bytes::from_owner(PodVec(values)))
    }

    /// Builds a tensor by copying typed values.
    ///
    /// # Errors
    /// [`CoreError::ByteLength`] when `values.len()` does not match the shape.
    pub fn from_slice<T: Element>(shape: Vec<usize>, values: &[T]) -> Result<Tensor> {
        let data = Bytes::copy_from_slice(bytemuck::cast_slice::<T, u8>(values));
        Tensor::new(T::DTYPE, shape, data)
    }

    /// Builds a BOOL tensor.
    ///
    /// # Errors
    /// [`CoreError::ByteLength`] when `values.len()` does not match the shape.
    pub fn from_bools(shape: Vec<usize>, values: &[bool]) -> Result<Tensor> {
        let data: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
        Tensor::new(DataType::Bool, shape, Bytes::from(data))
    }

    /// Builds a BYTES tensor from its elements.
    ///
    /// # Errors
    /// [`CoreError::BytesElementCount`] when the number of elements does not match the
    /// shape, [`CoreError::BadBytesElement`] when an element is 4 GiB or larger.
    pub fn from_byte_strings<S: AsRef<[u8]>>(shape: Vec<usize>, values: &[S]) -> Result<Tensor> {
        let total: usize = values.iter().map(|v| v.as_ref().len() + 4).sum();
        let mut buf = BytesMut::with_capacity(total);
        for v in values {
            let v = v.as_ref();
            let len = u32::try_from(v.len()).map_err(|_| CoreError::BadBytesElement {
                reason: format!("element of {} bytes exceeds 4 GiB", v.len()),
            })?;
            buf.put_u32_le(len);
            buf.put_slice(v);
        }
        Tensor::new(DataType::Bytes, shape, buf.freeze())
    }

    /// A tensor of zeros (empty strings for BYTES).
    ///
    /// # Errors
    /// [`CoreError::ShapeOverflow`] when the size overflows.
    pub fn zeros(dtype: DataType, shape: Vec<usize>) -> Result<Tensor> {
        let count = element_count(&shape).ok_or_else(|| CoreError::ShapeOverflow {
            shape: shape.clone(),
        })?;
        let bytes = count
            .checked_mul(dtype.size().unwrap_or(4))
            .ok_or_else(|| CoreError::ShapeOverflow {
                shape: shape.clone(),
            })?;
        Tensor::new(dtype, shape, Bytes::from(vec![0u8; bytes]))
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// The concrete shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        // Checked in `new`.
        element_count(&self.shape).unwrap_or(0)
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw storage (Triton-serialised for BYTES). Cloning it is free.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Consumes the tensor into its raw storage.
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// Same data under another shape with the same element count.
    ///
    /// # Errors
    /// [`CoreError::ReshapeCount`] when the counts differ.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor> {
        if element_count(&shape) != Some(self.len()) {
            return Err(CoreError::ReshapeCount {
                from: self.shape,
                to: shape,
            });
        }
        Ok(Tensor { shape, ..self })
    }

    fn check_dtype<T: Element>(&self) -> Result<()> {
        let ok =
            self.dtype == T::DTYPE || (self.dtype == DataType::Bool && T::DTYPE == DataType::U8);
        if ok {
            Ok(())
        } else {
            Err(CoreError::DataTypeMismatch {
                expected: T::DTYPE,
                got: self.dtype,
            })
        }
    }

    /// Borrows the elements as `&[T]` when the storage is aligned for `T`, and copies
    /// otherwise. BOOL reads as `u8`.
    ///
    /// # Errors
    /// [`CoreError::DataTypeMismatch`] when `T` is not the tensor's datatype.
    pub fn as_slice<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        self.check_dtype::<T>()?;
        Ok(match bytemuck::try_cast_slice::<u8, T>(&self.data) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(&self.data)),
        })
    }

    /// Copies the elements into a `Vec<T>`.
    ///
    /// # Errors
    /// [`CoreError::DataTypeMismatch`] when `T` is not the tensor's datatype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        Ok(self.as_slice::<T>()?.into_owned())
    }

    /// The elements of a BOOL tensor.
    ///
    /// # Errors
    /// [`CoreError::DataTypeMismatch`] for other datatypes.
    pub fn to_bools(&self) -> Result<Vec<bool>> {
        if self.dtype != DataType::Bool {
            return Err(CoreError::DataTypeMismatch {
                expected: DataType::Bool,
                got: self.dtype,
            });
        }
        Ok(self.data.iter().map(|&b| b != 0).collect())
    }

    /// The elements of a BYTES tensor, borrowed from its storage.
    ///
    /// # Errors
    /// [`CoreError::DataTypeMismatch`] for other datatypes.
    pub fn byte_strings(&self) -> Result<Vec<&[u8]>> {
        if self.dtype != DataType::Bytes {
            return Err(CoreError::DataTypeMismatch {
                expected: DataType::Bytes,
                got: self.dtype,
            });
        }
        let mut out = Vec::with_capacity(self.len());
        let mut rest: &[u8] = &self.data;
        while !rest.is_empty() {
            let (elem, tail) = split_bytes_element(rest)?;
            out.push(elem);
            rest = tail;
        }
        Ok(out)
    }

    /// All elements converted to f64 (for summaries and tolerance checks). BYTES has none.
    ///
    /// # Errors
    /// [`CoreError::DataTypeMismatch`] for BYTES.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        crate::dispatch_element!(self.dtype,
            T => Ok(self.as_slice::<T>()?.iter().map(|v| v.to_f64()).collect()),
            bytes => Err(CoreError::DataTypeMismatch { expected: DataType::F64, got: DataType::Bytes }))
    }

    /// Bytes per row along axis 0 for fixed-size datatypes.
    fn row_bytes(&self) -> Option<usize> {
        let inner = element_count(self.shape.get(1..).unwrap_or(&[]))?;
        inner.checked_mul(self.dtype.size()?)
    }
}

/// A typed Vec seen as bytes, so `Bytes` can own it without a copy.
struct PodVec<T>(Vec<T>);

impl<T: Element> AsRef<[u8]> for PodVec<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Splits one Triton-serialised BYTES element off the front of `buf`.
fn split_bytes_element(buf: &[u8]) -> Result<(&[u8], &[u8])> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        return Err(CoreError::BadBytesElement {
            reason: format!("{} trailing bytes cannot hold a 4-byte length", buf.len()),
        });
    };
    let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
    if rest.len() < len {
        return Err(CoreError::BadBytesElement {
            reason: format!(
                "element length {len} exceeds the {} bytes that remain",
                rest.len()
            ),
        });
    }
    Ok(rest.split_at(len))
}

fn count_bytes_elements(mut buf: &[u8]) -> Result<usize> {
    let mut n = 0;
    while !buf.is_empty() {
        buf = split_bytes_element(buf)?.1;
        n += 1;
    }
    Ok(n)
}

/// Concatenates tensors along axis 0 (one copy). All must share dtype and trailing dims.
///
/// # Errors
/// [`CoreError::EmptyBatch`] for no tensors, [`CoreError::BatchMismatch`] when dtypes,
/// ranks or trailing dims differ.
pub fn concat(parts: &[&Tensor]) -> Result<Tensor> {
    let first = parts.first().ok_or(CoreError::EmptyBatch)?;
    if first.shape.is_empty() {
        return Err(CoreError::BatchMismatch {
            reason: "cannot concatenate scalars along axis 0".into(),
        });
    }
    if parts.len() == 1 {
        return Ok((*first).clone());
    }
    let mut rows = 0usize;
    let mut total = 0usize;
    for (i, p) in parts.iter().enumerate() {
        if p.dtype != first.dtype || p.shape.get(1..) != first.shape.get(1..) {
            return Err(CoreError::BatchMismatch {
                reason: format!(
                    "part {i} is {} {}, part 0 is {} {}",
                    p.dtype,
                    format_shape(&p.shape),
                    first.dtype,
                    format_shape(&first.shape)
                ),
            });
        }
        rows += p.shape[0];
        total += p.data.len();
    }
    let mut buf = BytesMut::with_capacity(total);
    for p in parts {
        buf.put_slice(&p.data);
    }
    let mut shape = first.shape.clone();
    shape[0] = rows;
    Tensor::new(first.dtype, shape, buf.freeze())
}

/// Splits a tensor along axis 0 into parts of `rows` rows each. Fixed-size datatypes are
/// split without copying (slices of the same buffer).
///
/// # Errors
/// [`CoreError::BatchMismatch`] when the row counts do not add up to axis 0.
pub fn split(tensor: &Tensor, rows: &[usize]) -> Result<Vec<Tensor>> {
    let total: usize = rows.iter().sum();
    if tensor.shape.first() != Some(&total) {
        return Err(CoreError::BatchMismatch {
            reason: format!(
                "cannot split {} into rows {rows:?}",
                format_shape(&tensor.shape)
            ),
        });
    }
    let mut out = Vec::with_capacity(rows.len());
    match tensor.row_bytes() {
        Some(row_bytes) => {
            let mut offset = 0;
            for &n in rows {
                let len = n * row_bytes;
                let mut shape = tensor.shape.clone();
                shape[0] = n;
                out.push(Tensor {
                    dtype: tensor.dtype,
                    shape,
                    data: tensor.data.slice(offset..offset + len),
                });
                offset += len;
            }
        }
        None => {
            let inner = element_count(&tensor.shape[1..]).unwrap_or(0);
            let mut rest: &[u8] = &tensor.data;
            let mut offset = 0;
            for &n in rows {
                let start = offset;
                for _ in 0..n * inner {
                    let before = rest.len();
                    rest = split_bytes_element(rest)?.1;
                    offset += before - rest.len();
                }
                let mut shape = tensor.shape.clone();
                shape[0] = n;
                out.push(Tensor {
                    dtype: tensor.dtype,
                    shape,
                    data: tensor.data.slice(start..offset),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_wrong_byte_length() {
        let err = Tensor::new(DataType::F32, vec![2, 3], Bytes::from(vec![0u8; 20])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "FP32 tensor of shape [2,3] needs 24 bytes, got 20"
        );
    }

    #[test]
    fn reads_misaligned_storage_by_copying() {
        let raw: Vec<u8> = std::iter::once(0u8)
            .chain(bytemuck::cast_slice::<f32, u8>(&[1.0, 2.0]).iter().copied())
            .collect();
        let t = Tensor::new(DataType::F32, vec![2], Bytes::from(raw).slice(1..)).unwrap();
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn bytes_tensor_round_trips() {
        let t = Tensor::from_byte_strings(vec![3], &["a", "", "héllo"]).unwrap();
        let parts = t.byte_strings().unwrap();
        assert_eq!(parts, vec![b"a".as_slice(), b"", "héllo".as_bytes()]);
        let err = Tensor::new(
            DataType::Bytes,
            vec![1],
            Bytes::from_static(&[5, 0, 0, 0, 1]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn rejects_wrong_dtype_access() {
        let t = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        assert_eq!(
            t.to_vec::<f32>().unwrap_err().to_string(),
            "expected datatype FP32, got INT64"
        );
    }

    proptest! {
        #[test]
        fn concat_then_split_returns_inputs(rows in proptest::collection::vec(0usize..4, 1..5), inner in 1usize..4) {
            let parts: Vec<Tensor> = rows.iter().enumerate().map(|(i, &r)| {
                let vals: Vec<f32> = (0..r * inner).map(|k| (i * 100 + k) as f32).collect();
                Tensor::from_vec(vec![r, inner], vals).unwrap()
            }).collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            let joined = concat(&refs).unwrap();
            prop_assert_eq!(joined.shape()[0], rows.iter().sum::<usize>());
            let back = split(&joined, &rows).unwrap();
            prop_assert_eq!(back, parts);
        }

        #[test]
        fn concat_then_split_bytes(rows in proptest::collection::vec(0usize..4, 1..5)) {
            let parts: Vec<Tensor> = rows.iter().enumerate().map(|(i, &r)| {
                let vals: Vec<String> = (0..r).map(|k| "x".repeat(i + k)).collect();
                Tensor::from_byte_strings(vec![r], &vals).unwrap()
            }).collect();
            let refs: Vec<&Tensor> = parts.iter().collect();
            let back = split(&concat(&refs).unwrap(), &rows).unwrap();
            prop_assert_eq!(back, parts);
        }

        #[test]
        fn new_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..8) {
            let _ = Tensor::new(DataType::Bytes, vec![n], Bytes::from(data));
        }
    }
}
