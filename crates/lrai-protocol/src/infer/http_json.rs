//! The JSON document of a KServe v2 inference request or response, read in one pass.
//!
//! Each tensor object's `data` is handed to [`parse_data`] as soon as its `datatype`
//! and `shape` are known (tritonclient writes them first), so the numbers go straight
//! into the tensor's storage. When `data` comes first it is kept as a borrowed
//! `RawValue` and parsed at the end of the object. Errors that are about meaning rather
//! than syntax (FP16 in JSON, element counts, limits) are raised inside serde as a
//! custom error, with the structured [`ProtocolError`] kept aside in [`Ctx`] and
//! returned instead of serde's error.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use lrai_core::{DataType, Tensor};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::json_data::{DataSpec, MAX_JSON_DEPTH, ParsedData, parse_data};
use super::json_nonfinite::quote_tokens;
use super::{Limits, ParamValue, Parameters, check_supported, element_count};
use crate::error::{ProtocolError, Result, Role, ShapeProblem, TensorRef};

/// Decoding context shared by every visitor of one document.
pub(crate) struct Ctx<'a> {
    limits: &'a Limits,
    role: Role,
    /// Responses may carry FP16/BF16 as JSON numbers (LRAI writes them); requests not.
    allow_half: bool,
    /// Upper bound for preallocating one tensor, in elements.
    prealloc: usize,
    failure: Cell<Option<ProtocolError>>,
    /// This pass reads a document whose bare NaN/Infinity tokens were quoted.
    tokens: Cell<bool>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(limits: &'a Limits, role: Role, allow_half: bool, json_len: usize) -> Self {
        Ctx {
            limits,
            role,
            allow_half,
            // Every element takes at least two bytes of JSON ("0,").
            prealloc: json_len / 2 + 1,
            failure: Cell::new(None),
            tokens: Cell::new(false),
        }
    }

    fn tensor(&self, name: &str) -> TensorRef {
        TensorRef {
            role: self.role,
            name: name.to_string(),
        }
    }

    /// Keeps `err` (the first one wins) and returns a serde error with its message.
    fn fail<E: de::Error>(&self, err: ProtocolError) -> E {
        let msg = err.to_string();
        let first = self.failure.take().unwrap_or(err);
        self.failure.set(Some(first));
        E::custom(msg)
    }

    /// Runs a seed from `seed` over the whole of `json`, rejecting trailing data. A
    /// document that serde_json can't read because it has Triton's bare `NaN`,
    /// `Infinity` or `-Infinity` as array elements is read again with those quoted
    /// (`json_nonfinite`); documents without them are read once.
    ///
    /// # Errors
    /// The structured error a visitor kept, else [`ProtocolError::TrailingData`] when
    /// extra bytes follow the document and `header_given` is false, else
    /// [`ProtocolError::Json`].
    pub(crate) fn parse<S, V>(
        &self,
        json: &[u8],
        seed: impl Fn() -> S,
        header_given: bool,
    ) -> Result<V>
    where
        S: for<'de> DeserializeSeed<'de, Value = V>,
    {
        let first = self.parse_once(json, seed());
        let retry = match &first {
            Err(e) if e.is_syntax() && !self.kept_failure() => quote_tokens(json),
            _ => None,
        };
        let result = match retry {
            Some(quoted) => {
                self.tokens.set(true);
                self.parse_once(&quoted, seed())
            }
            None => first,
        };
        result.map_err(|e| self.error(&e, header_given))
    }

    fn parse_once<'de, S: DeserializeSeed<'de>>(
        &self,
        json: &'de [u8],
        seed: S,
    ) -> serde_json::Result<S::Value> {
        let mut de = serde_json::Deserializer::from_slice(json);
        seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v))
    }

    /// Whether a visitor kept a structured error (left in place).
    fn kept_failure(&self) -> bool {
        let kept = self.failure.take();
        let some = kept.is_some();
        self.failure.set(kept);
        some
    }

    /// The error to report for a failed pass: the one a visitor kept, else serde's.
    fn error(&self, e: &serde_json::Error, header_given: bool) -> ProtocolError {
        if let Some(kept) = self.failure.take() {
            kept
        } else if !header_given && e.to_string().starts_with("trailing characters") {
            ProtocolError::TrailingData {
                line: e.line(),
                column: e.column(),
            }
        } else {
            ProtocolError::json(e)
        }
    }
}

/// Where a tensor's bytes are.
#[derive(Debug)]
pub(crate) enum Payload {
    /// Parsed from JSON `data`.
    Inline(Tensor),
    /// `binary_data_size` bytes after the JSON document (in tensor order).
    Binary(usize),
}

/// A tensor object: `{name, datatype, shape, parameters, data}`.
#[derive(Debug)]
pub(crate) struct JsonTensor {
    pub(crate) name: String,
    pub(crate) dtype: DataType,
    pub(crate) shape: Vec<usize>,
    /// Without `binary_data_size`.
    pub(crate) parameters: Parameters,
    pub(crate) payload: Payload,
}

/// A requested output object: `{name, parameters}`.
#[derive(Debug, Deserialize)]
pub(crate) struct JsonRequestedOutput {
    pub(crate) name: String,
    #[serde(default, deserialize_with = "deserialize_params")]
    pub(crate) parameters: Parameters,
}

/// A `parameters` object, with numbers read from their text: serde_json's own float
/// parsing may be an ulp off for 17-digit doubles, and parameters should arrive as sent.
fn deserialize_params<'de, D: Deserializer<'de>>(d: D) -> Result<Parameters, D::Error> {
    let raw = BTreeMap::<String, &'de RawValue>::deserialize(d)?;
    raw.into_iter()
        .map(|(name, v)| {
            let value = param_from_json(v.get()).ok_or_else(|| {
                de::Error::custom(format_args!(
                    "parameter '{name}': invalid value {}, expected a bool, number or string",
                    v.get()
                ))
            })?;
            Ok((name, value))
        })
        .collect()
}

/// One parameter value from its JSON text; `None` for null, arrays, objects and numbers
/// beyond f64.
fn param_from_json(text: &str) -> Option<ParamValue> {
    match text.as_bytes().first()? {
        b't' => Some(ParamValue::Bool(true)),
        b'f' => Some(ParamValue::Bool(false)),
        b'"' => serde_json::from_str(text).ok().map(ParamValue::String),
        b'-' | b'0'..=b'9' => {
            let integral = !text.contains(['.', 'e', 'E']);
            if let (true, Ok(v)) = (integral, text.parse::<i64>()) {
                Some(ParamValue::Int(v))
            } else if let (true, Ok(v)) = (integral, text.parse::<u64>()) {
                Some(ParamValue::UInt(v))
            } else {
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(ParamValue::Double)
            }
        }
        _ => None,
    }
}

/// The JSON document of an inference request.
#[derive(Debug, Default)]
pub(crate) struct RequestDoc {
    pub(crate) id: String,
    pub(crate) parameters: Parameters,
    pub(crate) inputs: Vec<JsonTensor>,
    pub(crate) outputs: Vec<JsonRequestedOutput>,
}

/// The JSON document of an inference response.
#[derive(Debug, Default)]
pub(crate) struct ResponseDoc {
    pub(crate) id: String,
    pub(crate) model_name: String,
    pub(crate) model_version: String,
    pub(crate) parameters: Parameters,
    pub(crate) outputs: Vec<JsonTensor>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    Id,
    ModelName,
    ModelVersion,
    Parameters,
    Inputs,
    Outputs,
    Name,
    Datatype,
    Shape,
    Data,
    #[serde(other)]
    Other,
}

/// Seed for a request document.
pub(crate) struct RequestSeed<'c, 'l>(pub(crate) &'c Ctx<'l>);

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, '_> {
    type Value = RequestDoc;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RequestDoc, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, '_> {
    type Value = RequestDoc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inference request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestDoc, A::Error> {
        let mut doc = RequestDoc::default();
        let mut inputs = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => doc.id = map.next_value()?,
                Key::Parameters => doc.parameters = map.next_value_seed(ParamsSeed)?,
                Key::Inputs => inputs = Some(map.next_value_seed(TensorListSeed(self.0))?),
                Key::Outputs => doc.outputs = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        doc.inputs = inputs.ok_or_else(|| {
            self.0.fail(ProtocolError::MissingField {
                place: "the request".into(),
                field: "inputs",
            })
        })?;
        Ok(doc)
    }
}

/// Seed for a response document.
pub(crate) struct ResponseSeed<'c, 'l>(pub(crate) &'c Ctx<'l>);

impl<'de> DeserializeSeed<'de> for ResponseSeed<'_, '_> {
    type Value = ResponseDoc;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ResponseDoc, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResponseSeed<'_, '_> {
    type Value = ResponseDoc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inference response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResponseDoc, A::Error> {
        let mut doc = ResponseDoc::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => doc.id = map.next_value()?,
                Key::ModelName => doc.model_name = map.next_value()?,
                Key::ModelVersion => doc.model_version = map.next_value()?,
                Key::Parameters => doc.parameters = map.next_value_seed(ParamsSeed)?,
                Key::Outputs => doc.outputs = map.next_value_seed(TensorListSeed(self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(doc)
    }
}

struct TensorListSeed<'c, 'l>(&'c Ctx<'l>);

impl<'de> DeserializeSeed<'de> for TensorListSeed<'_, '_> {
    type Value = Vec<JsonTensor>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<JsonTensor>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TensorListSeed<'_, '_> {
    type Value = Vec<JsonTensor>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tensor objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<JsonTensor>, A::Error> {
        let mut out = Vec::new();
        while let Some(t) = seq.next_element_seed(TensorSeed {
            ctx: self.0,
            index: out.len(),
        })? {
            out.push(t);
        }
        Ok(out)
    }
}

struct TensorSeed<'c, 'l> {
    ctx: &'c Ctx<'l>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for TensorSeed<'_, '_> {
    type Value = JsonTensor;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<JsonTensor, D::Error> {
        d.deserialize_map(self)
    }
}

/// A tensor's `data`, parsed or (when it came before `datatype`/`shape`) kept raw.
enum Data<'de> {
    Parsed(ParsedData),
    Raw(&'de RawValue),
}

impl TensorSeed<'_, '_> {
    /// Checks what can be checked before reading `data`, and sizes the read.
    fn spec<'t>(
        &self,
        tensor: &'t TensorRef,
        dtype: DataType,
        count: usize,
    ) -> Result<DataSpec<'t>> {
        if !self.ctx.allow_half && matches!(dtype, DataType::F16 | DataType::BF16) {
            return Err(ProtocolError::HalfInJson {
                tensor: tensor.clone(),
                dtype,
            });
        }
        let mut spec = DataSpec::new(tensor, dtype, count, self.ctx.prealloc);
        spec.tokens = self.ctx.tokens.get();
        Ok(spec)
    }

    fn dtype(&self, tensor: &TensorRef, given: &str) -> Result<DataType> {
        DataType::from_kserve(given).ok_or_else(|| ProtocolError::UnknownDatatype {
            tensor: tensor.clone(),
            given: given.to_string(),
        })
    }

    /// Element count of a shape, checked against the limits.
    fn count(&self, tensor: &TensorRef, shape: &[usize]) -> Result<usize> {
        let count = element_count(shape).ok_or_else(|| ProtocolError::BadShape {
            tensor: tensor.clone(),
            shape: lrai_core::format_shape(shape),
            problem: ShapeProblem::Overflow,
        })?;
        self.ctx.limits.check(tensor, count)?;
        Ok(count)
    }

    /// Turns parsed data into the tensor, checking the element count.
    fn finish_data(
        &self,
        tensor: &TensorRef,
        dtype: DataType,
        shape: &[usize],
        parsed: ParsedData,
        expected: usize,
    ) -> Result<Tensor> {
        if parsed.count != expected {
            return Err(ProtocolError::ElementCount {
                tensor: tensor.clone(),
                shape: shape.to_vec(),
                expected,
                got: parsed.count,
            });
        }
        Tensor::new(dtype, shape.to_vec(), parsed.bytes).map_err(|error| ProtocolError::Tensor {
            tensor: tensor.clone(),
            error,
        })
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_, '_> {
    type Value = JsonTensor;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonTensor, A::Error> {
        let ctx = self.ctx;
        let mut name: Option<String> = None;
        let mut datatype: Option<String> = None;
        let mut shape: Option<Vec<usize>> = None;
        let mut parameters: Option<Parameters> = None;
        let mut data: Option<Data<'de>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Name => name = Some(map.next_value()?),
                Key::Datatype => datatype = Some(map.next_value()?),
                Key::Shape => {
                    let tensor = ctx.tensor(name.as_deref().unwrap_or_default());
                    shape = Some(map.next_value_seed(ShapeSeed {
                        ctx,
                        tensor: &tensor,
                    })?);
                }
                Key::Parameters => parameters = Some(map.next_value_seed(ParamsSeed)?),
                Key::Data => {
                    data = Some(match (&datatype, &shape) {
                        (Some(dt), Some(shape)) => {
                            let tensor = ctx.tensor(name.as_deref().unwrap_or_default());
                            let spec = self
                                .dtype(&tensor, dt)
                                .and_then(|dtype| {
                                    let count = self.count(&tensor, shape)?;
                                    self.spec(&tensor, dtype, count)
                                })
                                .map_err(|e| ctx.fail::<A::Error>(e))?;
                            let parsed = map.next_value_seed(DataSeed(&spec)).map_err(|e| {
                                if spec.too_deep.get() {
                                    ctx.fail(too_deep(&tensor))
                                } else {
                                    e
                                }
                            })?;
                            Data::Parsed(parsed)
                        }
                        _ => Data::Raw(map.next_value()?),
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        self.finish(name, datatype, shape, parameters.unwrap_or_default(), data)
            .map_err(|e| ctx.fail(e))
    }
}

impl TensorSeed<'_, '_> {
    /// Checks the complete object and builds the tensor.
    fn finish(
        &self,
        name: Option<String>,
        datatype: Option<String>,
        shape: Option<Vec<usize>>,
        mut parameters: Parameters,
        data: Option<Data<'_>>,
    ) -> Result<JsonTensor> {
        let role = match self.ctx.role {
            Role::Input => "input",
            Role::Output => "output",
        };
        let name = name.ok_or_else(|| ProtocolError::MissingField {
            place: format!("{role} #{}", self.index),
            field: "name",
        })?;
        let tensor = self.ctx.tensor(&name);
        let missing = |field| ProtocolError::MissingField {
            place: tensor.to_string(),
            field,
        };
        let dtype = self.dtype(&tensor, &datatype.ok_or_else(|| missing("datatype"))?)?;
        let shape = shape.ok_or_else(|| missing("shape"))?;
        let count = self.count(&tensor, &shape)?;
        check_supported(&parameters, &tensor)?;
        let binary = match parameters.remove("binary_data_size") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| ProtocolError::BadParameter {
                        name: "binary_data_size".into(),
                        expected: "a byte count",
                        got: v.to_string(),
                    })?,
            ),
        };
        let payload = match (data, binary) {
            (Some(_), Some(_)) => {
                return Err(ProtocolError::ConflictingData {
                    tensor,
                    first: "'data'",
                    second: "'binary_data_size'",
                });
            }
            (None, None) => {
                return Err(ProtocolError::NoData {
                    tensor,
                    expected: "'data' or a 'binary_data_size' parameter",
                });
            }
            (None, Some(size)) => Payload::Binary(size),
            (Some(Data::Parsed(parsed)), None) => {
                Payload::Inline(self.finish_data(&tensor, dtype, &shape, parsed, count)?)
            }
            (Some(Data::Raw(raw)), None) => {
                let spec = self.spec(&tensor, dtype, count)?;
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let parsed = parse_data(&mut de, &spec).map_err(|e| {
                    if spec.too_deep.get() {
                        too_deep(&tensor)
                    } else {
                        ProtocolError::json(&e)
                    }
                })?;
                Payload::Inline(self.finish_data(&tensor, dtype, &shape, parsed, count)?)
            }
        };
        Ok(JsonTensor {
            name,
            dtype,
            shape,
            parameters,
            payload,
        })
    }
}

fn too_deep(tensor: &TensorRef) -> ProtocolError {
    ProtocolError::JsonDepth {
        tensor: tensor.clone(),
        limit: MAX_JSON_DEPTH,
    }
}

struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Parameters;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parameters, D::Error> {
        deserialize_params(d)
    }
}

struct DataSeed<'s, 't>(&'s DataSpec<'t>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_> {
    type Value = ParsedData;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ParsedData, D::Error> {
        parse_data(d, self.0)
    }
}

/// A shape: non-negative integers.
struct ShapeSeed<'c, 'l, 't> {
    ctx: &'c Ctx<'l>,
    tensor: &'t TensorRef,
}

impl<'de> DeserializeSeed<'de> for ShapeSeed<'_, '_, '_> {
    type Value = Vec<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<usize>, D::Error> {
        let dims = Vec::<serde_json::Number>::deserialize(d)?;
        let mut shape = Vec::with_capacity(dims.len());
        for n in &dims {
            match n.as_u64().and_then(|v| usize::try_from(v).ok()) {
                Some(v) => shape.push(v),
                None => {
                    let problem = if n.is_f64() {
                        ShapeProblem::NotInteger
                    } else {
                        ShapeProblem::Negative
                    };
                    return Err(self.ctx.fail(ProtocolError::BadShape {
                        tensor: self.tensor.clone(),
                        shape: format!(
                            "[{}]",
                            dims.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                        problem,
                    }));
                }
            }
        }
        Ok(shape)
    }
}
