//! The one transport-neutral inference request and response, and the codecs that turn
//! HTTP bodies (JSON, binary tensor extension, raw binary) and gRPC messages into them
//! and back.
//!
//! Both protocols decode into the same [`InferRequest`], whose tensors borrow the
//! received buffer (`Bytes` slices) wherever the wire carries raw bytes; the server
//! checks names, datatypes and shapes against the model once, for both. Framing
//! parameters (`binary_data_size`, `binary_data`, `binary_data_output`) are consumed by
//! the codecs and appear as fields, not in the `parameters` maps; Triton's `priority`
//! and `timeout` become [`RequestParameters`] fields; every other parameter is kept.

use std::collections::BTreeMap;
use std::fmt;

use lrai_core::Tensor;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::error::{ClassParamProblem, ProtocolError, Result, Role, TensorRef};

mod classification;
mod grpc;
mod http;
mod http_json;
mod http_raw;
mod json_data;
mod json_nonfinite;

pub use classification::{MAX_CLASSIFICATION_ELEMENTS, classifiable, classify};
pub use grpc::{
    decode_grpc_request, decode_grpc_response, encode_grpc_request, encode_grpc_response,
    params_from_pb, params_to_pb,
};
pub use http::{
    decode_http_json_and_binary, decode_http_response, encode_http_request, encode_http_response,
};
pub use http_raw::{RawInputSpec, decode_raw_binary};

/// Named request or response parameters, sorted by name.
pub type Parameters = BTreeMap<String, ParamValue>;

/// A parameter value: KServe's JSON scalars, gRPC's `InferParameter` oneof.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `true`/`false`; gRPC `bool_param`.
    Bool(bool),
    /// A JSON integer that fits `i64`; gRPC `int64_param`.
    Int(i64),
    /// A JSON integer above `i64::MAX`; gRPC `uint64_param`.
    UInt(u64),
    /// A JSON number with a fraction or exponent; gRPC `double_param`.
    Double(f64),
    /// A JSON string; gRPC `string_param`.
    String(String),
}

impl ParamValue {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            ParamValue::Int(v) => u64::try_from(v).ok(),
            ParamValue::UInt(v) => Some(v),
            ParamValue::Bool(_) | ParamValue::Double(_) | ParamValue::String(_) => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            ParamValue::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::UInt(v) => write!(f, "{v}"),
            ParamValue::Double(v) => write!(f, "{v}"),
            ParamValue::String(v) => write!(f, "{v:?}"),
        }
    }
}

impl Serialize for ParamValue {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ParamValue::Bool(v) => s.serialize_bool(*v),
            ParamValue::Int(v) => s.serialize_i64(*v),
            ParamValue::UInt(v) => s.serialize_u64(*v),
            ParamValue::Double(v) => s.serialize_f64(*v),
            ParamValue::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ParamValue, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a parameter value (bool, number or string)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ParamValue, E> {
                Ok(i64::try_from(v).map_or(ParamValue::UInt(v), ParamValue::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue::Double(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue::String(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<ParamValue, E> {
                Ok(ParamValue::String(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Limits applied while decoding, before anything large is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most elements one tensor may have (per input, per output).
    pub max_elements: usize,
}

impl Limits {
    /// No limit (for clients reading their own server's responses, and tests).
    pub fn unlimited() -> Limits {
        Limits {
            max_elements: usize::MAX,
        }
    }

    pub(crate) fn check(&self, tensor: &TensorRef, count: usize) -> Result<()> {
        if count > self.max_elements {
            return Err(ProtocolError::TooManyElements {
                tensor: tensor.clone(),
                count,
                limit: self.max_elements,
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    /// 64 Mi elements per tensor: 256 MiB of FP32, far above any one image or batch
    /// LRAI serves, far below what would exhaust memory.
    fn default() -> Limits {
        Limits {
            max_elements: 64 << 20,
        }
    }
}

/// One inference request, whichever protocol brought it.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// Model name. HTTP carries it in the URL: the caller fills it in.
    pub model_name: String,
    /// Model version; empty lets the server pick (the URL's `/versions/N` over HTTP).
    pub model_version: String,
    /// Request id, echoed in the response; may be empty.
    pub id: String,
    /// Inputs, in the order the request listed them.
    pub inputs: Vec<InferInput>,
    /// Outputs asked for; empty means all of the model's outputs.
    pub outputs: Vec<RequestedOutput>,
    /// Request-level parameters.
    pub parameters: RequestParameters,
}

/// One input tensor of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferInput {
    /// Tensor name.
    pub name: String,
    /// The data, with its datatype and concrete shape.
    pub tensor: Tensor,
    /// The input's parameters, without `binary_data_size`.
    pub parameters: Parameters,
}

/// One output a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    /// Tensor name.
    pub name: String,
    /// HTTP: `Some(true)` returns this output as binary data, `Some(false)` as JSON,
    /// `None` follows [`RequestParameters::binary_data_output`]. gRPC ignores it.
    pub binary_data: Option<bool>,
    /// Triton's classification extension (parameter `classification`, tritonclient's
    /// `class_count`): return the top N classes as BYTES `value:index[:label]` strings
    /// instead of the tensor ([`classify`]). `None` (or 0 over HTTP) returns the tensor.
    pub classification: Option<u32>,
    /// The output's other parameters.
    pub parameters: Parameters,
}

/// Request-level parameters, with the ones LRAI acts on parsed out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestParameters {
    /// Triton `priority`: 1 is the highest; `None` or 0 is the model's default level.
    pub priority: Option<u32>,
    /// Triton `timeout`, in microseconds.
    pub timeout_us: Option<u64>,
    /// HTTP `binary_data_output`: outputs without their own `binary_data` come back
    /// as binary data. Raw binary requests set it.
    pub binary_data_output: bool,
    /// Every other parameter (`sequence_id`, custom ones), as sent.
    pub other: Parameters,
}

impl RequestParameters {
    /// Splits `priority`, `timeout` and `binary_data_output` out of a parameter map.
    ///
    /// # Errors
    /// [`ProtocolError::BadParameter`] when one of those has the wrong kind or range,
    /// [`ProtocolError::ReservedParameter`] for `triton_` keys Triton does not define.
    pub fn from_parameters(params: Parameters) -> Result<RequestParameters> {
        let mut out = RequestParameters::default();
        for (name, value) in params {
            match name.as_str() {
                "priority" => {
                    let p = value.as_u64().and_then(|v| u32::try_from(v).ok());
                    out.priority = Some(p.ok_or_else(|| ProtocolError::BadParameter {
                        name: name.clone(),
                        expected: "an unsigned 32-bit integer",
                        got: value.to_string(),
                    })?);
                }
                "timeout" => {
                    out.timeout_us =
                        Some(value.as_u64().ok_or_else(|| ProtocolError::BadParameter {
                            name: name.clone(),
                            expected: "an unsigned integer (microseconds)",
                            got: value.to_string(),
                        })?);
                }
                "binary_data_output" => {
                    out.binary_data_output =
                        value.as_bool().ok_or_else(|| ProtocolError::BadParameter {
                            name: name.clone(),
                            expected: "true or false",
                            got: value.to_string(),
                        })?;
                }
                n if n.starts_with("triton_") && n != "triton_enable_empty_final_response" => {
                    return Err(ProtocolError::ReservedParameter { name });
                }
                _ => {
                    out.other.insert(name, value);
                }
            }
        }
        Ok(out)
    }

    /// The parameter map again. `timeout` is an `Int` (Triton's gRPC server accepts
    /// only `int64_param` for it); `binary_data_output` is included only when
    /// `with_binary_data_output` (HTTP) and true.
    pub fn to_parameters(&self, with_binary_data_output: bool) -> Parameters {
        let mut out = self.other.clone();
        if let Some(p) = self.priority {
            out.insert("priority".into(), ParamValue::UInt(u64::from(p)));
        }
        if let Some(t) = self.timeout_us {
            let t = i64::try_from(t).unwrap_or(i64::MAX);
            out.insert("timeout".into(), ParamValue::Int(t));
        }
        if with_binary_data_output && self.binary_data_output {
            out.insert("binary_data_output".into(), ParamValue::Bool(true));
        }
        out
    }
}

/// One inference response, whichever protocol carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    /// Model name.
    pub model_name: String,
    /// The version that ran.
    pub model_version: String,
    /// The request's id.
    pub id: String,
    /// Every output the model produced, by name, in the model's order; the encoders
    /// pick the ones the request asked for.
    pub outputs: Vec<(String, Tensor)>,
    /// Response parameters.
    pub parameters: Parameters,
}

/// An output chosen for the response, and whether HTTP sends it as binary.
#[derive(Debug)]
pub(crate) struct SelectedOutput<'a> {
    pub(crate) name: &'a str,
    pub(crate) tensor: &'a Tensor,
    pub(crate) binary: bool,
}

/// The outputs the request asked for, in its order, or all of them when it named none.
///
/// # Errors
/// [`ProtocolError::UnknownOutput`] when a requested name is not among the outputs.
pub(crate) fn select_outputs<'a>(
    resp: &'a InferResponse,
    req: &InferRequest,
) -> Result<Vec<SelectedOutput<'a>>> {
    let default_binary = req.parameters.binary_data_output;
    if req.outputs.is_empty() {
        return Ok(resp
            .outputs
            .iter()
            .map(|(name, tensor)| SelectedOutput {
                name,
                tensor,
                binary: default_binary,
            })
            .collect());
    }
    req.outputs
        .iter()
        .map(|wanted| {
            let (name, tensor) = resp
                .outputs
                .iter()
                .find(|(n, _)| *n == wanted.name)
                .ok_or_else(|| ProtocolError::UnknownOutput {
                    name: wanted.name.clone(),
                    available: resp.outputs.iter().map(|(n, _)| n.clone()).collect(),
                })?;
            Ok(SelectedOutput {
                name,
                tensor,
                binary: wanted.binary_data.unwrap_or(default_binary),
            })
        })
        .collect()
}

/// Elements of a request shape, `None` past `i64::MAX` (Triton's limit, which a
/// 64-bit `usize` product would otherwise allow).
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    lrai_core::shape::element_count(shape)
        .filter(|&n| u64::try_from(n).is_ok_and(|n| n <= i64::MAX.unsigned_abs()))
}

/// Rejects a second tensor with the same name on one side of a request or response.
pub(crate) fn check_unique<'a>(names: impl IntoIterator<Item = &'a str>, role: Role) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ProtocolError::DuplicateTensor {
                tensor: TensorRef {
                    role,
                    name: name.to_string(),
                },
            });
        }
    }
    Ok(())
}

/// Rejects Triton features LRAI does not serve, named by their parameters.
pub(crate) fn check_supported(params: &Parameters, tensor: &TensorRef) -> Result<()> {
    let key = "shared_memory_region";
    if params.contains_key(key) {
        return Err(ProtocolError::Unsupported {
            what: format!("shared memory (parameter '{key}' on {tensor})"),
        });
    }
    Ok(())
}

/// Which protocol a `classification` parameter came by: Triton checks it differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Http,
    Grpc,
}

/// Takes `classification` out of a requested output's parameters, as Triton reads it:
/// over HTTP any unsigned integer (0 = no classification), over gRPC an `int64_param`
/// of 1 or more. Counts above `u32::MAX` mean "every class".
pub(crate) fn take_classification(
    params: &mut Parameters,
    tensor: &TensorRef,
    wire: Wire,
) -> Result<Option<u32>> {
    let Some(value) = params.remove("classification") else {
        return Ok(None);
    };
    let bad = |problem| ProtocolError::BadClassification {
        tensor: tensor.clone(),
        problem,
        got: value.to_string(),
    };
    let count = match (wire, &value) {
        (Wire::Http, _) => value
            .as_u64()
            .ok_or_else(|| bad(ClassParamProblem::NotUnsigned))?,
        (Wire::Grpc, ParamValue::Int(n)) => u64::try_from(*n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(ClassParamProblem::NotPositive))?,
        (Wire::Grpc, _) => return Err(bad(ClassParamProblem::NotInt64)),
    };
    Ok((count > 0).then(|| u32::try_from(count).unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, ParamValue)]) -> Parameters {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn splits_priority_timeout_and_binary_output() {
        let p = RequestParameters::from_parameters(params(&[
            ("priority", ParamValue::Int(2)),
            ("timeout", ParamValue::UInt(5000)),
            ("binary_data_output", ParamValue::Bool(true)),
            ("sequence_id", ParamValue::Int(7)),
        ]))
        .unwrap();
        assert_eq!(p.priority, Some(2));
        assert_eq!(p.timeout_us, Some(5000));
        assert!(p.binary_data_output);
        assert_eq!(p.other, params(&[("sequence_id", ParamValue::Int(7))]));
        let back = RequestParameters::from_parameters(p.to_parameters(true)).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn rejects_bad_priority_and_reserved_keys() {
        let e = RequestParameters::from_parameters(params(&[("priority", ParamValue::Int(-1))]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter 'priority' must be an unsigned 32-bit integer, got -1"
        );
        let e = RequestParameters::from_parameters(params(&[(
            "timeout",
            ParamValue::String("1s".into()),
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("\"1s\""), "{e}");
        let e = RequestParameters::from_parameters(params(&[(
            "binary_data_output",
            ParamValue::Int(1),
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("true or false"), "{e}");
        let e = RequestParameters::from_parameters(params(&[("triton_x", ParamValue::Bool(true))]))
            .unwrap_err();
        assert!(matches!(e, ProtocolError::ReservedParameter { .. }), "{e}");
        assert!(
            RequestParameters::from_parameters(params(&[(
                "triton_enable_empty_final_response",
                ParamValue::Bool(true)
            )]))
            .is_ok()
        );
    }

    #[test]
    fn param_values_read_json_scalars() {
        let p: Parameters = serde_json::from_str(
            r#"{"a": true, "b": -3, "c": 18446744073709551615, "d": 0.5, "e": "s", "f": 4}"#,
        )
        .unwrap();
        assert_eq!(p["a"], ParamValue::Bool(true));
        assert_eq!(p["b"], ParamValue::Int(-3));
        assert_eq!(p["c"], ParamValue::UInt(u64::MAX));
        assert_eq!(p["d"], ParamValue::Double(0.5));
        assert_eq!(p["e"], ParamValue::String("s".into()));
        assert_eq!(p["f"], ParamValue::Int(4));
        assert_eq!(
            serde_json::from_str::<Parameters>(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
        let e = serde_json::from_str::<Parameters>(r#"{"a": [1]}"#).unwrap_err();
        assert!(e.to_string().contains("parameter value"), "{e}");
    }

    #[test]
    fn selects_requested_outputs_or_all() {
        let t = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: String::new(),
            outputs: vec![("a".into(), t.clone()), ("b".into(), t)],
            parameters: Parameters::new(),
        };
        let mut req = InferRequest {
            model_name: "m".into(),
            model_version: String::new(),
            id: String::new(),
            inputs: vec![],
            outputs: vec![],
            parameters: RequestParameters::default(),
        };
        assert_eq!(select_outputs(&resp, &req).unwrap().len(), 2);
        req.outputs.push(RequestedOutput {
            name: "b".into(),
            binary_data: Some(true),
            classification: None,
            parameters: Parameters::new(),
        });
        let sel = select_outputs(&resp, &req).unwrap();
        assert_eq!((sel[0].name, sel[0].binary), ("b", true));
        req.outputs[0].name = "c".into();
        let e = select_outputs(&resp, &req).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected inference output 'c' (available outputs: a, b)"
        );
    }
}
