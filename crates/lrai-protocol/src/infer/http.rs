//! HTTP bodies: JSON, and JSON followed by binary tensors (Triton's binary tensor data
//! extension). Raw binary requests are in `http_raw`.
//!
//! A body with binary tensors is the JSON document, `Inference-Header-Content-Length`
//! bytes long, followed by each binary tensor's bytes in the order the tensors appear
//! in the JSON. Binary inputs become `Bytes::slice`s of the body: no copy.

use bytes::Bytes;
use lrai_core::{DataType, Tensor, shape::element_count};
use serde::Serialize;

use super::http_json::{Ctx, JsonTensor, Payload, RequestSeed, ResponseSeed};
use super::json_data::{JsonData, bytes_are_utf8};
use super::json_nonfinite;
use super::{
    InferInput, InferRequest, InferResponse, Limits, ParamValue, Parameters, RequestParameters,
    RequestedOutput, Wire, check_supported, check_unique, select_outputs, take_classification,
};
use crate::error::{ProtocolError, Result, Role, TensorRef};

/// Splits the body into the JSON length and whether a header gave it.
fn json_len(body: &Bytes, header_length: Option<usize>) -> Result<usize> {
    match header_length {
        None => Ok(body.len()),
        Some(0) => Err(ProtocolError::HeaderLength {
            header: 0,
            body: body.len(),
            reason: "0 marks a raw binary request, which needs the model's input",
        }),
        Some(n) if n > body.len() => Err(ProtocolError::HeaderLength {
            header: n,
            body: body.len(),
            reason: "the body is shorter",
        }),
        Some(n) => Ok(n),
    }
}

/// Resolves each tensor's payload: JSON data as parsed, binary data as slices of the
/// bytes after the JSON document, in order.
fn attach_binary(
    tensors: Vec<JsonTensor>,
    body: &Bytes,
    json_len: usize,
    header_given: bool,
    role: Role,
) -> Result<Vec<(String, Tensor, Parameters)>> {
    let tensor_ref = |name: &str| TensorRef {
        role,
        name: name.to_string(),
    };
    // Sizes first: a wrong size for one tensor is the more useful message.
    let mut declared = 0usize;
    for t in &tensors {
        let Payload::Binary(size) = t.payload else {
            continue;
        };
        if !header_given {
            return Err(ProtocolError::BinaryWithoutHeader {
                tensor: tensor_ref(&t.name),
            });
        }
        if let Some(elem) = t.dtype.size() {
            let expected = element_count(&t.shape)
                .and_then(|n| n.checked_mul(elem))
                .unwrap_or(usize::MAX);
            if size != expected {
                return Err(ProtocolError::BinarySize {
                    tensor: tensor_ref(&t.name),
                    source_name: "binary data",
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    expected,
                    got: size,
                });
            }
        }
        declared = declared.saturating_add(size);
    }
    let available = body.len() - json_len;
    if declared != available {
        return Err(ProtocolError::BinaryTotal {
            declared,
            available,
        });
    }
    let mut offset = json_len;
    tensors
        .into_iter()
        .map(|t| {
            let tensor = match t.payload {
                Payload::Inline(tensor) => tensor,
                Payload::Binary(size) => {
                    let data = body.slice(offset..offset + size);
                    offset += size;
                    Tensor::new(t.dtype, t.shape, data).map_err(|error| ProtocolError::Tensor {
                        tensor: tensor_ref(&t.name),
                        error,
                    })?
                }
            };
            Ok((t.name, tensor, t.parameters))
        })
        .collect()
}

/// Decodes a KServe v2 inference request body: JSON alone (`header_length` `None`),
/// or JSON followed by binary tensors (`header_length` is the
/// `Inference-Header-Content-Length` value). `model_name` and `model_version` are left
/// empty: HTTP carries them in the URL.
///
/// # Errors
/// [`ProtocolError::Json`] (with line and column) for malformed JSON or wrongly typed
/// values; [`ProtocolError::UnknownDatatype`], [`ProtocolError::HalfInJson`],
/// [`ProtocolError::ElementCount`], [`ProtocolError::TooManyElements`],
/// [`ProtocolError::BadShape`] per tensor; [`ProtocolError::BinarySize`],
/// [`ProtocolError::BinaryTotal`], [`ProtocolError::BinaryWithoutHeader`],
/// [`ProtocolError::HeaderLength`], [`ProtocolError::TrailingData`] for framing;
/// [`ProtocolError::ConflictingData`]/[`ProtocolError::NoData`] for a tensor with two
/// or no data sources; parameter errors from [`RequestParameters::from_parameters`];
/// [`ProtocolError::Unsupported`] for shared memory and classification.
pub fn decode_http_json_and_binary(
    body: &Bytes,
    header_length: Option<usize>,
    limits: &Limits,
) -> Result<InferRequest> {
    let json_len = json_len(body, header_length)?;
    let ctx = Ctx::new(limits, Role::Input, false, json_len);
    let doc = ctx.parse(
        &body[..json_len],
        || RequestSeed(&ctx),
        header_length.is_some(),
    )?;
    let inputs = attach_binary(
        doc.inputs,
        body,
        json_len,
        header_length.is_some(),
        Role::Input,
    )?;
    check_unique(inputs.iter().map(|(n, _, _)| n.as_str()), Role::Input)?;
    let inputs = inputs
        .into_iter()
        .map(|(name, tensor, parameters)| InferInput {
            name,
            tensor,
            parameters,
        })
        .collect();
    let outputs = doc
        .outputs
        .into_iter()
        .map(|o| {
            let tensor = TensorRef::output(&o.name);
            let mut parameters = o.parameters;
            check_supported(&parameters, &tensor)?;
            let classification = take_classification(&mut parameters, &tensor, Wire::Http)?;
            let binary_data = match parameters.remove("binary_data") {
                None => None,
                Some(v) => Some(v.as_bool().ok_or_else(|| ProtocolError::BadParameter {
                    name: "binary_data".into(),
                    expected: "true or false",
                    got: v.to_string(),
                })?),
            };
            Ok(RequestedOutput {
                name: o.name,
                binary_data,
                classification,
                parameters,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_unique(outputs.iter().map(|o| o.name.as_str()), Role::Output)?;
    Ok(InferRequest {
        model_name: String::new(),
        model_version: String::new(),
        id: doc.id,
        inputs,
        outputs,
        parameters: RequestParameters::from_parameters(doc.parameters)?,
    })
}

/// A tensor object as written: JSON `data` or a `binary_data_size` parameter.
#[derive(Serialize)]
struct TensorOut<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    // perf_analyzer reads any `parameters` on an output as "binary": omit when JSON.
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: Parameters,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

impl<'a> TensorOut<'a> {
    fn new(name: &'a str, tensor: &'a Tensor, mut parameters: Parameters, binary: bool) -> Self {
        let data = if binary {
            let size = u64::try_from(tensor.data().len()).unwrap_or(u64::MAX);
            parameters.insert("binary_data_size".into(), ParamValue::UInt(size));
            None
        } else {
            Some(JsonData(tensor))
        };
        TensorOut {
            name,
            datatype: tensor.dtype().as_kserve(),
            shape: tensor.shape(),
            parameters,
            data,
        }
    }
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: &'a Parameters,
    outputs: Vec<TensorOut<'a>>,
}

#[derive(Serialize)]
struct RequestedOutputOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: Parameters,
}

#[derive(Serialize)]
struct RequestOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: Parameters,
    inputs: Vec<TensorOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<RequestedOutputOut<'a>>,
}

/// Writes `doc` as JSON followed by the binary tensors; returns the body and, when
/// any tensor is binary, the JSON length for `Inference-Header-Content-Length`.
fn write_body<T: Serialize>(
    doc: &T,
    binary: &[&Tensor],
    json_estimate: usize,
) -> Result<(Bytes, Option<usize>)> {
    let binary_len: usize = binary.iter().map(|t| t.data().len()).sum();
    let mut buf = Vec::with_capacity(json_estimate + binary_len);
    json_nonfinite::to_writer(&mut buf, doc).map_err(|e| ProtocolError::json(&e))?;
    let json_len = buf.len();
    for t in binary {
        buf.extend_from_slice(t.data());
    }
    let header = (!binary.is_empty()).then_some(json_len);
    Ok((Bytes::from(buf), header))
}

/// Room for one tensor's JSON text: about 12 bytes a number, plus its metadata.
fn json_estimate(t: &Tensor, binary: bool) -> usize {
    if binary {
        128
    } else {
        128 + t.data().len() * 3
    }
}

/// Encodes a response for HTTP. The request decides which outputs are sent (the ones
/// it names, else all) and how: binary data when its `binary_data_output` or the
/// output's own `binary_data` says so, else JSON. FP16/BF16 outputs in JSON are
/// written as numbers; non-finite floats in JSON become `null`. Returns the body and,
/// when any output is binary, the value for the `Inference-Header-Content-Length`
/// response header.
///
/// # Errors
/// [`ProtocolError::UnknownOutput`] when the request names an output the response does
/// not have, [`ProtocolError::NonUtf8Bytes`] for a BYTES output that JSON cannot carry.
pub fn encode_http_response(
    resp: &InferResponse,
    req: &InferRequest,
) -> Result<(Bytes, Option<usize>)> {
    let selected = select_outputs(resp, req)?;
    let mut outputs = Vec::with_capacity(selected.len());
    let mut binary = Vec::new();
    let mut estimate = 256;
    for s in &selected {
        if !s.binary && !bytes_are_utf8(s.tensor) {
            return Err(ProtocolError::NonUtf8Bytes {
                tensor: TensorRef::output(s.name),
            });
        }
        if s.binary {
            binary.push(s.tensor);
        }
        estimate += json_estimate(s.tensor, s.binary);
        outputs.push(TensorOut::new(
            s.name,
            s.tensor,
            Parameters::new(),
            s.binary,
        ));
    }
    let doc = ResponseOut {
        id: &resp.id,
        model_name: &resp.model_name,
        model_version: &resp.model_version,
        parameters: &resp.parameters,
        outputs,
    };
    write_body(&doc, &binary, estimate)
}

/// Encodes a request for HTTP (the client side). With `binary_inputs`, every input is
/// sent as binary data after the JSON; without, inputs go in JSON except FP16/BF16 and
/// non-UTF-8 BYTES, which JSON cannot carry and are sent binary regardless. Returns the
/// body and, when any input is binary, the `Inference-Header-Content-Length` value.
///
/// # Errors
/// [`ProtocolError::Json`] only if serialisation fails, which it does not for valid
/// tensors.
pub fn encode_http_request(
    req: &InferRequest,
    binary_inputs: bool,
) -> Result<(Bytes, Option<usize>)> {
    let mut inputs = Vec::with_capacity(req.inputs.len());
    let mut binary = Vec::new();
    let mut estimate = 256;
    for i in &req.inputs {
        let t = &i.tensor;
        let is_binary = binary_inputs
            || matches!(t.dtype(), DataType::F16 | DataType::BF16)
            || !bytes_are_utf8(t);
        if is_binary {
            binary.push(t);
        }
        estimate += json_estimate(t, is_binary);
        inputs.push(TensorOut::new(&i.name, t, i.parameters.clone(), is_binary));
    }
    let outputs = req
        .outputs
        .iter()
        .map(|o| {
            let mut parameters = o.parameters.clone();
            if let Some(b) = o.binary_data {
                parameters.insert("binary_data".into(), ParamValue::Bool(b));
            }
            if let Some(n) = o.classification {
                parameters.insert("classification".into(), ParamValue::UInt(u64::from(n)));
            }
            RequestedOutputOut {
                name: &o.name,
                parameters,
            }
        })
        .collect();
    let doc = RequestOut {
        id: &req.id,
        parameters: req.parameters.to_parameters(true),
        inputs,
        outputs,
    };
    write_body(&doc, &binary, estimate)
}

/// Decodes an HTTP inference response (the client side): JSON, or JSON followed by
/// binary outputs when `header_length` is given. FP16/BF16 may be JSON numbers.
///
/// # Errors
/// As [`decode_http_json_and_binary`], for outputs.
pub fn decode_http_response(
    body: &Bytes,
    header_length: Option<usize>,
    limits: &Limits,
) -> Result<InferResponse> {
    let json_len = json_len(body, header_length)?;
    let ctx = Ctx::new(limits, Role::Output, true, json_len);
    let doc = ctx.parse(
        &body[..json_len],
        || ResponseSeed(&ctx),
        header_length.is_some(),
    )?;
    let outputs = attach_binary(
        doc.outputs,
        body,
        json_len,
        header_length.is_some(),
        Role::Output,
    )?;
    Ok(InferResponse {
        model_name: doc.model_name,
        model_version: doc.model_version,
        id: doc.id,
        outputs: outputs.into_iter().map(|(n, t, _)| (n, t)).collect(),
        parameters: doc.parameters,
    })
}
