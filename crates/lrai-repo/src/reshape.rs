//! Triton's `reshape` (config.pbtxt): clients shape a tensor by `dims`, the model sees
//! `reshape.shape`, and outputs go back to the clients shaped by `dims` again (Triton
//! core's `InferenceRequest::Normalize` and `InferenceResponse::Output::Reshape`). A -1
//! on the target side takes the size of the matching -1 on the source side, in order;
//! [`ModelConfig::validate`](crate::config::ModelConfig::validate) makes sure both sides
//! have as many -1s, between parts of equal element counts, so the element count holds.
//! `reshape: { shape: [] }` makes a `[1]` per row a scalar per row.

use lrai_core::Tensor;

use crate::config::{ModelConfig, format_config_dims};

/// `shape` (with the batch dimension first when `batching`) with its non-batch part
/// converted from `from` to `to`.
///
/// # Errors
/// The shape's rank or sizes don't fit `from`, as a sentence for messages.
pub(crate) fn convert(
    shape: &[usize],
    from: &[i64],
    to: &[i64],
    batching: bool,
) -> Result<Vec<usize>, String> {
    let (batch, rest) = match (batching, shape.split_first()) {
        (true, Some((&rows, rest))) => (Some(rows), rest),
        (true, None) => return Err("a scalar has no batch dimension".to_string()),
        (false, _) => (None, shape),
    };
    if rest.len() != from.len() {
        return Err(format!(
            "rank {} does not match {}",
            rest.len(),
            format_config_dims(from)
        ));
    }
    let mut variable = Vec::new();
    for (&got, &want) in rest.iter().zip(from) {
        if want < 0 {
            variable.push(got);
        } else if usize::try_from(want).ok() != Some(got) {
            return Err(format!(
                "{} does not match {}",
                lrai_core::format_shape(rest),
                format_config_dims(from)
            ));
        }
    }
    let mut variable = variable.into_iter();
    let mut out: Vec<usize> = batch.into_iter().collect();
    for &d in to {
        let size = if d < 0 {
            variable.next()
        } else {
            usize::try_from(d).ok()
        };
        let Some(size) = size else {
            return Err(format!(
                "{} has more variable dimensions than {}",
                format_config_dims(to),
                format_config_dims(from)
            ));
        };
        out.push(size);
    }
    let count = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if variable.next().is_some() || count(rest) != count(&out[usize::from(batching)..]) {
        return Err(format!(
            "{} and {} hold different element counts",
            format_config_dims(from),
            format_config_dims(to)
        ));
    }
    Ok(out)
}

/// A request input as the model sees it: reshaped from `dims` to the config's `reshape`
/// (the input's shape already fits `dims`).
///
/// # Errors
/// A sentence saying why the tensor can't take the reshape.
pub(crate) fn input_to_model(
    config: &ModelConfig,
    name: &str,
    tensor: Tensor,
) -> Result<Tensor, String> {
    let Some(spec) = config.input(name) else {
        return Ok(tensor);
    };
    let Some(reshape) = &spec.reshape else {
        return Ok(tensor);
    };
    let target = convert(tensor.shape(), &spec.dims, reshape, config.batches())?;
    tensor.reshape(target).map_err(|e| e.to_string())
}

/// A model output as clients get it: reshaped from the config's `reshape` back to its
/// `dims`. A scalar output of a model that doesn't batch takes its dims of ones (`[1]`),
/// as Triton's ONNX Runtime backend returns it.
///
/// # Errors
/// A sentence saying why the output doesn't fit its reshape.
pub(crate) fn output_to_client(
    config: &ModelConfig,
    name: &str,
    tensor: Tensor,
) -> Result<Tensor, String> {
    let Some(spec) = config.output(name) else {
        return Ok(tensor);
    };
    let target = match &spec.reshape {
        Some(reshape) => {
            convert(tensor.shape(), reshape, &spec.dims, config.batches()).map_err(|e| {
                format!(
                    "output '{name}' has shape {}, which does not fit its config reshape {}: {e}",
                    lrai_core::format_shape(tensor.shape()),
                    format_config_dims(reshape)
                )
            })?
        }
        None if tensor.shape().is_empty()
            && !config.batches()
            && spec.dims.iter().all(|&d| d == 1) =>
        {
            vec![1; spec.dims.len()]
        }
        None => return Ok(tensor),
    };
    tensor.reshape(target).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_each_variable_dimension_from_the_matching_one() {
        // dims [2,4,-1,6] -> reshape [8,-1,1,6]: the request [1,2,4,5,6] becomes [1,8,5,1,6].
        assert_eq!(
            convert(&[1, 2, 4, 5, 6], &[2, 4, -1, 6], &[8, -1, 1, 6], true),
            Ok(vec![1, 8, 5, 1, 6])
        );
        // And back, for an output.
        assert_eq!(
            convert(&[3, 8, 5, 1, 6], &[8, -1, 1, 6], &[2, 4, -1, 6], true),
            Ok(vec![3, 2, 4, 5, 6])
        );
        // Two variable dimensions keep their order.
        assert_eq!(
            convert(&[7, 3, 2], &[-1, 3, -1], &[1, -1, 3, -1], false),
            Ok(vec![1, 7, 3, 2])
        );
    }

    #[test]
    fn an_empty_reshape_makes_one_value_per_row_a_scalar() {
        assert_eq!(convert(&[4, 1], &[1], &[], true), Ok(vec![4]));
        assert_eq!(convert(&[4], &[], &[1], true), Ok(vec![4, 1]));
    }

    #[test]
    fn refuses_shapes_that_do_not_fit_the_source() {
        assert!(convert(&[1, 2, 4], &[2, 4, -1, 6], &[8, -1, 1, 6], true).is_err());
        assert!(convert(&[1, 3, 4, 5, 6], &[2, 4, -1, 6], &[8, -1, 1, 6], true).is_err());
        assert!(convert(&[], &[1], &[], true).is_err());
        // A reshape with more -1s than the source, or another element count.
        assert!(convert(&[2, 3], &[2, -1], &[-1, -1], false).is_err());
        assert!(convert(&[2, 3], &[2, 3], &[5], false).is_err());
    }
}
