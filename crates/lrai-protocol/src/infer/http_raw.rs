//! Raw binary requests (`Inference-Header-Content-Length: 0`): the whole body is the
//! data of the model's single input, and the input's shape comes from the model's
//! configuration, by Triton's rules (`InferenceRequest::Normalize` in
//! triton-inference-server/core `src/infer_request.cc`):
//!
//! - the shape is the config's `dims`, after a batch dimension of 1 when the model
//!   batches (a raw request is batch 1);
//! - a non-BYTES input may have at most one variable (`-1`) dimension, which the body's
//!   length decides (rounded down, so a body that is not a whole number of rows is then
//!   refused as a byte-size mismatch, as Triton does);
//! - a BYTES input must have exactly one element (`dims: [1]`), and the whole body is
//!   that element, without the 4-byte length prefix of the binary tensor extension.
//!
//! Which models qualify at all (exactly one input) is checked by the server, which
//! knows the model.

use bytes::{BufMut, Bytes, BytesMut};
use lrai_core::DataType;

use super::{InferInput, InferRequest, Parameters, RequestParameters};
use crate::error::{ProtocolError, RawShapeProblem, Result, TensorRef};

/// What a raw binary request is decoded against: the model's single input.
#[derive(Debug, Clone, Copy)]
pub struct RawInputSpec<'a> {
    /// The model's name (named in errors).
    pub model: &'a str,
    /// The input's name.
    pub input: &'a str,
    /// The input's datatype.
    pub dtype: DataType,
    /// The input's `dims` from the configuration, without the batch dimension; `-1` is
    /// a variable size.
    pub dims: &'a [i64],
    /// The model batches (`max_batch_size > 0`): the shape gets a leading 1.
    pub batching: bool,
}

fn dims_text(dims: &[i64]) -> String {
    let inner: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", inner.join(","))
}

/// The request shape for `body_len` bytes, following Triton's rules.
fn raw_shape(spec: &RawInputSpec<'_>, body_len: usize) -> Result<Vec<usize>> {
    let tensor = TensorRef::input(spec.input);
    let shape_err = |problem| ProtocolError::RawShape {
        tensor: tensor.clone(),
        dims: dims_text(spec.dims),
        problem,
    };
    let mut shape: Vec<usize> = Vec::with_capacity(spec.dims.len() + 1);
    if spec.batching {
        shape.push(1);
    }
    let mut variable: Option<usize> = None;
    let mut fixed_count = 1usize;
    for &d in spec.dims {
        match usize::try_from(d) {
            Ok(n) => {
                fixed_count = fixed_count.saturating_mul(n);
                shape.push(n);
            }
            Err(_) if variable.is_some() => {
                return Err(shape_err(RawShapeProblem::SeveralVariable));
            }
            Err(_) => {
                variable = Some(shape.len());
                shape.push(0);
            }
        }
    }
    let Some(elem) = spec.dtype.size() else {
        if variable.is_some() || fixed_count != 1 {
            return Err(ProtocolError::RawBytesShape {
                tensor,
                dims: dims_text(spec.dims),
            });
        }
        return Ok(shape);
    };
    if let Some(axis) = variable {
        let row = fixed_count.saturating_mul(elem);
        if row == 0 {
            return Err(shape_err(RawShapeProblem::ZeroDimension));
        }
        // Rounded down as Triton does; the size check below refuses a partial row.
        shape[axis] = body_len / row;
    }
    let expected = shape
        .iter()
        .try_fold(elem, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if expected != body_len {
        return Err(ProtocolError::RawSize {
            model: spec.model.to_string(),
            tensor,
            dtype: spec.dtype,
            dims: dims_text(spec.dims),
            expected,
            got: body_len,
        });
    }
    Ok(shape)
}

/// Decodes a raw binary request (`Inference-Header-Content-Length: 0`): the body is the
/// data of the model's single input, whose shape comes from `spec` by Triton's rules
/// (see the module docs). Fixed-size data is used in place (no copy); a BYTES input's
/// one element is the whole body, framed with its length. All outputs are returned as
/// binary data, as Triton does.
///
/// # Errors
/// [`ProtocolError::RawShape`] when the shape cannot be deduced (several variable
/// dimensions, or a zero dimension beside the variable one),
/// [`ProtocolError::RawBytesShape`] for a BYTES input whose shape is not one element,
/// [`ProtocolError::RawSize`] when the body's length does not fit the shape,
/// [`ProtocolError::Tensor`] for a BYTES body of 4 GiB or more.
pub fn decode_raw_binary(body: Bytes, spec: &RawInputSpec<'_>) -> Result<InferRequest> {
    let shape = raw_shape(spec, body.len())?;
    let tensor_ref = TensorRef::input(spec.input);
    let data = if spec.dtype == DataType::Bytes {
        let len = u32::try_from(body.len()).map_err(|_| ProtocolError::Tensor {
            tensor: tensor_ref.clone(),
            error: lrai_core::CoreError::BadBytesElement {
                reason: format!("element of {} bytes exceeds 4 GiB", body.len()),
            },
        })?;
        let mut framed = BytesMut::with_capacity(body.len() + 4);
        framed.put_u32_le(len);
        framed.put_slice(&body);
        framed.freeze()
    } else {
        body
    };
    let tensor =
        lrai_core::Tensor::new(spec.dtype, shape, data).map_err(|error| ProtocolError::Tensor {
            tensor: tensor_ref,
            error,
        })?;
    Ok(InferRequest {
        model_name: String::new(),
        model_version: String::new(),
        id: String::new(),
        inputs: vec![InferInput {
            name: spec.input.to_string(),
            tensor,
            parameters: Parameters::new(),
        }],
        outputs: Vec::new(),
        parameters: RequestParameters {
            binary_data_output: true,
            ..RequestParameters::default()
        },
    })
}
