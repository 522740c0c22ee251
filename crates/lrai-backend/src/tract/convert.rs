//! Tensors between LRAI and tract, copied element by element in the datatype they have:
//! no datatype is narrowed or widened on the way (tests: `dtypes_identity`, `noop_casts`).

use lrai_core::{DataType, Tensor as LTensor, TensorSpec};
use tract_onnx::prelude::{DatumType, Tensor as TTensor, tract_ndarray};

pub(super) fn to_tract(t: &LTensor) -> conv::Result<TTensor> {
    let shape = t.shape();
    macro_rules! pod {
        ($t:ty) => {
            TTensor::from_shape::<$t>(shape, &t.as_slice::<$t>()?)?
        };
    }
    Ok(match t.dtype() {
        DataType::Bool => TTensor::from_shape::<bool>(shape, &t.to_bools()?)?,
        DataType::U8 => pod!(u8),
        DataType::U16 => pod!(u16),
        DataType::U32 => pod!(u32),
        DataType::U64 => pod!(u64),
        DataType::I8 => pod!(i8),
        DataType::I16 => pod!(i16),
        DataType::I32 => pod!(i32),
        DataType::I64 => pod!(i64),
        DataType::F16 => pod!(half::f16),
        DataType::F32 => pod!(f32),
        DataType::F64 => pod!(f64),
        DataType::BF16 => return Err(conv::Error("tract does not support BF16".into())),
        DataType::Bytes => {
            // tract holds strings as Rust `String`s; replacing invalid bytes would change
            // the request silently, so non-UTF-8 elements are refused instead.
            let strings = t
                .byte_strings()?
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    String::from_utf8(b.to_vec()).map_err(|_| {
                        conv::Error(format!(
                            "element {i} of a BYTES input is not valid UTF-8, which tract's string tensors require; use the onnxruntime backend for binary strings"
                        ))
                    })
                })
                .collect::<conv::Result<Vec<_>>>()?;
            tract_ndarray::ArrayD::from_shape_vec(shape, strings)
                .map_err(|e| conv::Error(e.to_string()))?
                .into()
        }
    })
}

pub(super) fn from_tract(v: &TTensor, spec: &TensorSpec) -> conv::Result<LTensor> {
    let shape = v.shape().to_vec();
    macro_rules! pod {
        ($t:ty) => {{
            let view = v.to_plain_array_view::<$t>()?;
            LTensor::from_vec::<$t>(shape, view.iter().copied().collect())?
        }};
    }
    Ok(match v.datum_type() {
        DatumType::Bool => {
            let view = v.to_plain_array_view::<bool>()?;
            LTensor::from_bools(shape, &view.iter().copied().collect::<Vec<_>>())?
        }
        DatumType::U8 => pod!(u8),
        DatumType::U16 => pod!(u16),
        DatumType::U32 => pod!(u32),
        DatumType::U64 => pod!(u64),
        DatumType::I8 => pod!(i8),
        DatumType::I16 => pod!(i16),
        DatumType::I32 => pod!(i32),
        DatumType::I64 => pod!(i64),
        DatumType::F16 => pod!(half::f16),
        DatumType::F32 => pod!(f32),
        DatumType::F64 => pod!(f64),
        DatumType::TDim => {
            let cast = v.cast_to::<i64>()?;
            let view = cast.to_plain_array_view::<i64>()?;
            LTensor::from_vec::<i64>(shape, view.iter().copied().collect())?
        }
        DatumType::String => {
            let view = v.to_plain_array_view::<String>()?;
            let items: Vec<&String> = view.iter().collect();
            LTensor::from_byte_strings(shape, &items)?
        }
        other => {
            return Err(conv::Error(format!(
                "output '{}' has tract type {other:?}, which LRAI cannot return",
                spec.name
            )));
        }
    })
}

/// A tiny error type for output conversion: tract's errors are `anyhow` and ours are
/// `CoreError`; both are rendered into the `Run` error's detail.
pub(super) mod conv {
    #[derive(Debug)]
    pub(in crate::tract) struct Error(pub(in crate::tract) String);
    pub(in crate::tract) type Result<T> = std::result::Result<T, Error>;
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl From<tract_onnx::prelude::TractError> for Error {
        fn from(e: tract_onnx::prelude::TractError) -> Self {
            Error(format!("{e:#}"))
        }
    }
    impl From<lrai_core::CoreError> for Error {
        fn from(e: lrai_core::CoreError) -> Self {
            Error(e.to_string())
        }
    }
}
