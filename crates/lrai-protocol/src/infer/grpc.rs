//! gRPC `ModelInferRequest`/`ModelInferResponse` ↔ [`InferRequest`]/[`InferResponse`].
//!
//! Raw contents (`raw_input_contents`, `raw_output_contents`) are `Bytes` (the build
//! maps every `bytes` field of package `inference` to `bytes::Bytes`) and become the
//! tensors' storage without a copy. Typed `contents` are converted, range-checked, into
//! one new buffer. Responses always use raw contents, as Triton's do.

use std::collections::HashMap;

use bytes::Bytes;
use lrai_core::{DataType, Tensor};

use super::{
    InferInput, InferRequest, InferResponse, Limits, ParamValue, Parameters, RequestParameters,
    RequestedOutput, Wire, check_supported, check_unique, element_count, select_outputs,
    take_classification,
};
use crate::error::{ProtocolError, Result, Role, ShapeProblem, TensorRef};
use crate::pb;
use crate::pb::infer_parameter::ParameterChoice;

/// Converts gRPC parameters.
///
/// # Errors
/// [`ProtocolError::BadParameter`] for a parameter whose oneof is not set.
pub fn params_from_pb(params: HashMap<String, pb::InferParameter>) -> Result<Parameters> {
    params
        .into_iter()
        .map(|(name, p)| {
            let value = match p.parameter_choice {
                Some(ParameterChoice::BoolParam(v)) => ParamValue::Bool(v),
                Some(ParameterChoice::Int64Param(v)) => ParamValue::Int(v),
                Some(ParameterChoice::Uint64Param(v)) => ParamValue::UInt(v),
                Some(ParameterChoice::DoubleParam(v)) => ParamValue::Double(v),
                Some(ParameterChoice::StringParam(v)) => ParamValue::String(v),
                None => {
                    return Err(ProtocolError::BadParameter {
                        name,
                        expected: "a value",
                        got: "an InferParameter with no value set".into(),
                    });
                }
            };
            Ok((name, value))
        })
        .collect()
}

/// Converts parameters to gRPC's `InferParameter`s.
pub fn params_to_pb(params: &Parameters) -> HashMap<String, pb::InferParameter> {
    params
        .iter()
        .map(|(name, v)| {
            let choice = match v {
                ParamValue::Bool(v) => ParameterChoice::BoolParam(*v),
                ParamValue::Int(v) => ParameterChoice::Int64Param(*v),
                ParamValue::UInt(v) => ParameterChoice::Uint64Param(*v),
                ParamValue::Double(v) => ParameterChoice::DoubleParam(*v),
                ParamValue::String(v) => ParameterChoice::StringParam(v.clone()),
            };
            (
                name.clone(),
                pb::InferParameter {
                    parameter_choice: Some(choice),
                },
            )
        })
        .collect()
}

/// One tensor as gRPC describes it, before its data is attached.
struct PbTensor {
    tensor: TensorRef,
    dtype: DataType,
    shape: Vec<usize>,
    count: usize,
}

impl PbTensor {
    fn new(tensor: TensorRef, datatype: &str, shape: &[i64], limits: &Limits) -> Result<PbTensor> {
        let dtype =
            DataType::from_kserve(datatype).ok_or_else(|| ProtocolError::UnknownDatatype {
                tensor: tensor.clone(),
                given: datatype.to_string(),
            })?;
        let bad_shape = |problem| ProtocolError::BadShape {
            tensor: tensor.clone(),
            shape: format!(
                "[{}]",
                shape
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            problem,
        };
        let shape: Vec<usize> = shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad_shape(ShapeProblem::Negative)))
            .collect::<Result<_>>()?;
        let count = element_count(&shape).ok_or_else(|| bad_shape(ShapeProblem::Overflow))?;
        limits.check(&tensor, count)?;
        Ok(PbTensor {
            tensor,
            dtype,
            shape,
            count,
        })
    }

    /// The tensor from raw contents: the bytes as they are.
    fn tensor_from_raw(self, raw: Bytes, source_name: &'static str) -> Result<Tensor> {
        if let Some(elem) = self.dtype.size() {
            let expected = self.count.saturating_mul(elem);
            if raw.len() != expected {
                return Err(ProtocolError::BinarySize {
                    tensor: self.tensor,
                    source_name,
                    dtype: self.dtype,
                    shape: self.shape,
                    expected,
                    got: raw.len(),
                });
            }
        }
        Tensor::new(self.dtype, self.shape, raw).map_err(|error| ProtocolError::Tensor {
            tensor: self.tensor,
            error,
        })
    }

    /// The tensor from typed contents, which must use the datatype's field.
    fn tensor_from_contents(self, c: pb::InferTensorContents) -> Result<Tensor> {
        let fields = [
            ("bool_contents", c.bool_contents.len()),
            ("int_contents", c.int_contents.len()),
            ("int64_contents", c.int64_contents.len()),
            ("uint_contents", c.uint_contents.len()),
            ("uint64_contents", c.uint64_contents.len()),
            ("fp32_contents", c.fp32_contents.len()),
            ("fp64_contents", c.fp64_contents.len()),
            ("bytes_contents", c.bytes_contents.len()),
        ];
        let expected = match self.dtype {
            DataType::Bool => "bool_contents",
            DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
            DataType::I64 => "int64_contents",
            DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
            DataType::U64 => "uint64_contents",
            DataType::F32 => "fp32_contents",
            DataType::F64 => "fp64_contents",
            DataType::Bytes => "bytes_contents",
            DataType::F16 | DataType::BF16 => {
                return Err(ProtocolError::HalfInContents {
                    tensor: self.tensor,
                    dtype: self.dtype,
                });
            }
        };
        if let Some((field, _)) = fields.iter().find(|(f, n)| *n > 0 && *f != expected) {
            return Err(ProtocolError::ContentsField {
                tensor: self.tensor,
                dtype: self.dtype,
                field,
                expected,
            });
        }
        let got = fields
            .iter()
            .find(|(f, _)| *f == expected)
            .map_or(0, |(_, n)| *n);
        if got != self.count {
            return Err(ProtocolError::ElementCount {
                tensor: self.tensor,
                shape: self.shape,
                expected: self.count,
                got,
            });
        }
        let built = match self.dtype {
            DataType::Bool => Tensor::from_bools(self.shape.clone(), &c.bool_contents),
            DataType::I8 => {
                Tensor::from_vec(self.shape.clone(), self.narrow::<i32, i8>(&c.int_contents)?)
            }
            DataType::I16 => Tensor::from_vec(
                self.shape.clone(),
                self.narrow::<i32, i16>(&c.int_contents)?,
            ),
            DataType::I32 => Tensor::from_vec(self.shape.clone(), c.int_contents),
            DataType::I64 => Tensor::from_vec(self.shape.clone(), c.int64_contents),
            DataType::U8 => Tensor::from_vec(
                self.shape.clone(),
                self.narrow::<u32, u8>(&c.uint_contents)?,
            ),
            DataType::U16 => Tensor::from_vec(
                self.shape.clone(),
                self.narrow::<u32, u16>(&c.uint_contents)?,
            ),
            DataType::U32 => Tensor::from_vec(self.shape.clone(), c.uint_contents),
            DataType::U64 => Tensor::from_vec(self.shape.clone(), c.uint64_contents),
            DataType::F32 => Tensor::from_vec(self.shape.clone(), c.fp32_contents),
            DataType::F64 => Tensor::from_vec(self.shape.clone(), c.fp64_contents),
            DataType::Bytes => Tensor::from_byte_strings(self.shape.clone(), &c.bytes_contents),
            DataType::F16 | DataType::BF16 => {
                return Err(ProtocolError::HalfInContents {
                    tensor: self.tensor,
                    dtype: self.dtype,
                });
            }
        };
        built.map_err(|error| ProtocolError::Tensor {
            tensor: self.tensor,
            error,
        })
    }

    /// Narrows wide gRPC integers to the datatype's width, rejecting values that do not fit.
    fn narrow<W: Copy + ToString, N: TryFrom<W>>(&self, values: &[W]) -> Result<Vec<N>> {
        values
            .iter()
            .enumerate()
            .map(|(index, &v)| {
                N::try_from(v).map_err(|_| ProtocolError::ValueRange {
                    tensor: self.tensor.clone(),
                    dtype: self.dtype,
                    index,
                    value: v.to_string(),
                })
            })
            .collect()
    }

    /// The tensor from whichever source the message used.
    fn attach(
        self,
        contents: Option<pb::InferTensorContents>,
        raw: Option<Bytes>,
        raw_name: &'static str,
    ) -> Result<Tensor> {
        match (contents, raw) {
            (Some(_), Some(_)) => Err(ProtocolError::ConflictingData {
                tensor: self.tensor,
                first: "contents",
                second: raw_name,
            }),
            (Some(c), None) => self.tensor_from_contents(c),
            (None, Some(raw)) => self.tensor_from_raw(raw, raw_name),
            (None, None) if self.count == 0 => self.tensor_from_raw(Bytes::new(), raw_name),
            (None, None) => Err(ProtocolError::NoData {
                tensor: self.tensor,
                expected: if raw_name == "raw_input_contents" {
                    "contents or raw_input_contents"
                } else {
                    "contents or raw_output_contents"
                },
            }),
        }
    }
}

/// Pairs each tensor with its raw entry when the message uses raw contents.
fn raw_entries(raw: Vec<Bytes>, tensors: usize, field: &'static str) -> Result<Vec<Option<Bytes>>> {
    if raw.is_empty() {
        return Ok(vec![None; tensors]);
    }
    if raw.len() != tensors {
        return Err(ProtocolError::RawCount {
            tensors,
            raw: raw.len(),
            field,
        });
    }
    Ok(raw.into_iter().map(Some).collect())
}

/// Decodes a gRPC `ModelInferRequest`. Inputs take their data from
/// `raw_input_contents` (one entry per input, in order; no copy) or from typed
/// `contents`; FP16 and BF16 only from raw contents.
///
/// # Errors
/// [`ProtocolError::UnknownDatatype`], [`ProtocolError::BadShape`],
/// [`ProtocolError::TooManyElements`], [`ProtocolError::ElementCount`],
/// [`ProtocolError::BinarySize`], [`ProtocolError::RawCount`],
/// [`ProtocolError::ContentsField`], [`ProtocolError::HalfInContents`],
/// [`ProtocolError::ValueRange`], [`ProtocolError::ConflictingData`],
/// [`ProtocolError::NoData`], [`ProtocolError::Tensor`] per input; parameter errors;
/// [`ProtocolError::Unsupported`] for shared memory and classification.
pub fn decode_grpc_request(req: pb::ModelInferRequest, limits: &Limits) -> Result<InferRequest> {
    let raw = raw_entries(
        req.raw_input_contents,
        req.inputs.len(),
        "raw_input_contents",
    )?;
    let inputs =
        req.inputs
            .into_iter()
            .zip(raw)
            .map(|(input, raw)| {
                let tensor_ref = TensorRef::input(&input.name);
                let parameters = params_from_pb(input.parameters)?;
                check_supported(&parameters, &tensor_ref)?;
                let tensor = PbTensor::new(tensor_ref, &input.datatype, &input.shape, limits)?
                    .attach(input.contents, raw, "raw_input_contents")?;
                Ok(InferInput {
                    name: input.name,
                    tensor,
                    parameters,
                })
            })
            .collect::<Result<Vec<_>>>()?;
    check_unique(inputs.iter().map(|i| i.name.as_str()), Role::Input)?;
    let outputs = req
        .outputs
        .into_iter()
        .map(|o| {
            let mut parameters = params_from_pb(o.parameters)?;
            let tensor = TensorRef::output(&o.name);
            check_supported(&parameters, &tensor)?;
            let classification = take_classification(&mut parameters, &tensor, Wire::Grpc)?;
            // An HTTP notion; meaningless here, and kept out of `parameters` as on HTTP.
            parameters.remove("binary_data");
            Ok(RequestedOutput {
                name: o.name,
                binary_data: None,
                classification,
                parameters,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_unique(outputs.iter().map(|o| o.name.as_str()), Role::Output)?;
    Ok(InferRequest {
        model_name: req.model_name,
        model_version: req.model_version,
        id: req.id,
        inputs,
        outputs,
        parameters: RequestParameters::from_parameters(params_from_pb(req.parameters)?)?,
    })
}

fn pb_shape(shape: &[usize]) -> Vec<i64> {
    shape
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
        .collect()
}

/// Encodes a response for gRPC: the outputs the request asked for (all when it named
/// none), each as `raw_output_contents` (no copy) with its datatype and shape.
///
/// # Errors
/// [`ProtocolError::UnknownOutput`] when the request names an output the response does
/// not have.
pub fn encode_grpc_response(
    resp: InferResponse,
    req: &InferRequest,
) -> Result<pb::ModelInferResponse> {
    let selected = select_outputs(&resp, req)?;
    let mut outputs = Vec::with_capacity(selected.len());
    let mut raw = Vec::with_capacity(selected.len());
    for s in selected {
        outputs.push(pb::model_infer_response::InferOutputTensor {
            name: s.name.to_string(),
            datatype: s.tensor.dtype().as_kserve().to_string(),
            shape: pb_shape(s.tensor.shape()),
            parameters: HashMap::new(),
            contents: None,
        });
        raw.push(s.tensor.data().clone());
    }
    let parameters = params_to_pb(&resp.parameters);
    Ok(pb::ModelInferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id,
        parameters,
        outputs,
        raw_output_contents: raw,
    })
}

/// Encodes a request for gRPC (the client side): every input as `raw_input_contents`,
/// without a copy.
pub fn encode_grpc_request(req: &InferRequest) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: req.model_name.clone(),
        model_version: req.model_version.clone(),
        id: req.id.clone(),
        parameters: params_to_pb(&req.parameters.to_parameters(false)),
        inputs: req
            .inputs
            .iter()
            .map(|i| pb::model_infer_request::InferInputTensor {
                name: i.name.clone(),
                datatype: i.tensor.dtype().as_kserve().to_string(),
                shape: pb_shape(i.tensor.shape()),
                parameters: params_to_pb(&i.parameters),
                contents: None,
            })
            .collect(),
        outputs: req
            .outputs
            .iter()
            .map(|o| {
                let mut parameters = o.parameters.clone();
                // Triton's gRPC server reads it only as an int64_param.
                if let Some(n) = o.classification {
                    parameters.insert("classification".into(), ParamValue::Int(i64::from(n)));
                }
                pb::model_infer_request::InferRequestedOutputTensor {
                    name: o.name.clone(),
                    parameters: params_to_pb(&parameters),
                }
            })
            .collect(),
        raw_input_contents: req.inputs.iter().map(|i| i.tensor.data().clone()).collect(),
    }
}

/// Decodes a gRPC `ModelInferResponse` (the client side), from raw or typed contents.
///
/// # Errors
/// As [`decode_grpc_request`], for outputs.
pub fn decode_grpc_response(
    resp: pb::ModelInferResponse,
    limits: &Limits,
) -> Result<InferResponse> {
    let raw = raw_entries(
        resp.raw_output_contents,
        resp.outputs.len(),
        "raw_output_contents",
    )?;
    let outputs = resp
        .outputs
        .into_iter()
        .zip(raw)
        .map(|(o, raw)| {
            let tensor = PbTensor::new(TensorRef::output(&o.name), &o.datatype, &o.shape, limits)?
                .attach(o.contents, raw, "raw_output_contents")?;
            Ok((o.name, tensor))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id,
        outputs,
        parameters: params_from_pb(resp.parameters)?,
    })
}
