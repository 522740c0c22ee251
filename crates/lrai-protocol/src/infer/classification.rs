//! Triton's classification extension: a requested output with `classification: N`
//! comes back as the top N classes, as BYTES strings `value:index[:label]`.
//!
//! Written to give what Triton gives (`TopkClassifications` in
//! triton-inference-server/server `src/classification.cc`, and the response writers in
//! `src/http_server.cc` and `src/grpc/infer_handler.h`):
//!
//! - a model that batches (`max_batch_size > 0`) gets the top N of each batch row:
//!   shape `[batch, min(N, classes)]`; a model that doesn't gets the top N of the whole
//!   tensor, flattened: shape `[min(N, elements)]`;
//! - classes are ordered by value, highest first; `index` is the position in the row
//!   (flattened), counted from 0;
//! - the value is written as C's `std::to_string` writes it: integers in decimal,
//!   FP32 and FP64 with six decimals (`"%f"`: `0.983000`, `-0.000000`, `inf`);
//! - `:label` follows when the output's `label_filename` has a non-empty line at that
//!   index; otherwise the string is `value:index`;
//! - BOOL, BYTES, FP16 and BF16 outputs are refused, and so is a row of more than a
//!   million elements.
//!
//! Where Triton's result is unspecified LRAI picks the stable answer: equal values keep
//! index order (Triton's `std::sort` may order them either way), and NaN ranks below
//! every number (Triton's comparison is undefined with NaN), printed as `nan`/`-nan`.

use std::cmp::Ordering;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use lrai_core::{DataType, Element, Tensor};

use crate::error::{ProtocolError, Result, TensorRef};

/// Most elements one row may have (Triton's `kMaxClassificationElements`).
pub const MAX_CLASSIFICATION_ELEMENTS: usize = 1_000_000;

/// Whether Triton can classify an output of this datatype.
pub fn classifiable(dtype: DataType) -> bool {
    !matches!(
        dtype,
        DataType::Bool | DataType::Bytes | DataType::F16 | DataType::BF16
    )
}

/// A value that can be ranked and written as Triton writes it.
trait ClassValue: Copy {
    fn rank(a: Self, b: Self) -> Ordering;
    fn write(self, out: &mut String);
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ClassValue for $t {
            fn rank(a: Self, b: Self) -> Ordering {
                b.cmp(&a)
            }
            fn write(self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

int_value!(u8, u16, u32, u64, i8, i16, i32, i64);

/// Highest first; NaN after every number.
fn rank_float(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    }
}

/// C's `"%f"`, which Rust's `{:.6}` matches digit for digit (both round the exact
/// binary value, ties to even), except for NaN.
fn write_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str(if v.is_sign_negative() { "-nan" } else { "nan" });
    } else {
        let _ = write!(out, "{v:.6}");
    }
}

impl ClassValue for f32 {
    fn rank(a: Self, b: Self) -> Ordering {
        rank_float(f64::from(a), f64::from(b))
    }
    fn write(self, out: &mut String) {
        write_float(f64::from(self), out);
    }
}

impl ClassValue for f64 {
    fn rank(a: Self, b: Self) -> Ordering {
        rank_float(a, b)
    }
    fn write(self, out: &mut String) {
        write_float(self, out);
    }
}

/// The output shape and the row length for `shape`.
fn class_shape(shape: &[usize], count: usize, batched: bool) -> (Option<usize>, usize, usize) {
    let (batch, row) = match shape.split_first() {
        Some((&rows, rest)) if batched => (Some(rows), rest.iter().product::<usize>()),
        _ => (None, shape.iter().product::<usize>()),
    };
    (batch, row, count.min(row))
}

/// Appends the top `k` of `row` to `out` as Triton-framed BYTES elements.
fn top_k<T: ClassValue, L: AsRef<[u8]>>(row: &[T], k: usize, labels: &[L], out: &mut BytesMut) {
    let mut order: Vec<usize> = (0..row.len()).collect();
    // Equal values keep index order: a total order, so the result is deterministic.
    let cmp = |&a: &usize, &b: &usize| T::rank(row[a], row[b]).then(a.cmp(&b));
    if k < order.len() {
        if k > 0 {
            order.select_nth_unstable_by(k - 1, cmp);
        }
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
    let mut text = String::new();
    for index in order {
        text.clear();
        row[index].write(&mut text);
        let _ = write!(text, ":{index}");
        let label = labels.get(index).map(AsRef::as_ref).unwrap_or_default();
        let len = text.len() + if label.is_empty() { 0 } else { label.len() + 1 };
        out.put_u32_le(u32::try_from(len).unwrap_or(u32::MAX));
        out.put_slice(text.as_bytes());
        if !label.is_empty() {
            out.put_u8(b':');
            out.put_slice(label);
        }
    }
}

fn classify_typed<T: ClassValue + Element, L: AsRef<[u8]>>(
    name: &str,
    tensor: &Tensor,
    row: usize,
    k: usize,
    labels: &[L],
) -> Result<BytesMut> {
    let values = tensor
        .as_slice::<T>()
        .map_err(|error| ProtocolError::Tensor {
            tensor: TensorRef::output(name),
            error,
        })?;
    let mut out = BytesMut::new();
    if row == 0 {
        return Ok(out);
    }
    for chunk in values.chunks_exact(row) {
        top_k(chunk, k, labels, &mut out);
    }
    Ok(out)
}

/// The top `count` classes of `tensor` (an output named `name`), as Triton returns them
/// for `classification: count`: a BYTES tensor of `value:index[:label]` strings, one
/// row per batch entry when `batched`. `labels` are the output's label lines (may be
/// empty).
///
/// # Errors
/// [`ProtocolError::ClassificationType`] for BOOL, BYTES, FP16 and BF16 outputs,
/// [`ProtocolError::ClassificationTooLarge`] for rows of more than
/// [`MAX_CLASSIFICATION_ELEMENTS`] elements.
pub fn classify<L: AsRef<[u8]>>(
    name: &str,
    tensor: &Tensor,
    count: u32,
    batched: bool,
    labels: &[L],
) -> Result<Tensor> {
    let dtype = tensor.dtype();
    if !classifiable(dtype) {
        return Err(ProtocolError::ClassificationType {
            tensor: TensorRef::output(name),
            dtype,
        });
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let (batch, row, k) = class_shape(tensor.shape(), count, batched);
    if row > MAX_CLASSIFICATION_ELEMENTS {
        return Err(ProtocolError::ClassificationTooLarge {
            tensor: TensorRef::output(name),
            elements: row,
        });
    }
    let data = match dtype {
        DataType::U8 => classify_typed::<u8, L>(name, tensor, row, k, labels),
        DataType::U16 => classify_typed::<u16, L>(name, tensor, row, k, labels),
        DataType::U32 => classify_typed::<u32, L>(name, tensor, row, k, labels),
        DataType::U64 => classify_typed::<u64, L>(name, tensor, row, k, labels),
        DataType::I8 => classify_typed::<i8, L>(name, tensor, row, k, labels),
        DataType::I16 => classify_typed::<i16, L>(name, tensor, row, k, labels),
        DataType::I32 => classify_typed::<i32, L>(name, tensor, row, k, labels),
        DataType::I64 => classify_typed::<i64, L>(name, tensor, row, k, labels),
        DataType::F32 => classify_typed::<f32, L>(name, tensor, row, k, labels),
        DataType::F64 => classify_typed::<f64, L>(name, tensor, row, k, labels),
        DataType::Bool | DataType::Bytes | DataType::F16 | DataType::BF16 => {
            Err(ProtocolError::ClassificationType {
                tensor: TensorRef::output(name),
                dtype,
            })
        }
    }?;
    let shape = match batch {
        Some(rows) => vec![rows, k],
        None => vec![k],
    };
    Tensor::new(DataType::Bytes, shape, data.freeze()).map_err(|error| ProtocolError::Tensor {
        tensor: TensorRef::output(name),
        error,
    })
}
