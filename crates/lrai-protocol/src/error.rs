//! [`ProtocolError`]: everything that can be wrong with what came off the wire (or with
//! what is about to go onto it). Each variant keeps the facts (tensor, expected, given)
//! and its message names them, so a client can fix its request from the text alone.
//!
//! Every variant is the client's fault (HTTP 400 / gRPC INVALID_ARGUMENT) except
//! [`ProtocolError::Unsupported`] (Triton answers UNSUPPORTED / 501 for those) and
//! [`ProtocolError::NonUtf8Bytes`], which is about a model's output.

use std::fmt;

use lrai_core::{CoreError, DataType, format_shape};

/// Which side of an inference a tensor is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A request input.
    Input,
    /// A response output (or a requested output).
    Output,
}

/// A tensor as errors name it: `input 'x'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// Input or output.
    pub role: Role,
    /// The tensor's name (empty when the JSON object had none yet).
    pub name: String,
}

impl TensorRef {
    /// An input.
    pub fn input(name: impl Into<String>) -> TensorRef {
        TensorRef {
            role: Role::Input,
            name: name.into(),
        }
    }

    /// An output.
    pub fn output(name: impl Into<String>) -> TensorRef {
        TensorRef {
            role: Role::Output,
            name: name.into(),
        }
    }
}

impl fmt::Display for TensorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            Role::Input => "input",
            Role::Output => "output",
        };
        write!(f, "{role} '{}'", self.name)
    }
}

fn valid_datatypes() -> String {
    let names: Vec<&str> = DataType::ALL.iter().map(|d| d.as_kserve()).collect();
    names.join(", ")
}

/// What is wrong with a `classification` parameter, in Triton's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassParamProblem {
    /// HTTP: not an unsigned integer.
    NotUnsigned,
    /// gRPC: not an `int64_param`.
    NotInt64,
    /// gRPC: 0 or negative.
    NotPositive,
}

impl fmt::Display for ClassParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Triton's texts (server src/http_server.cc, src/grpc/grpc_utils.cc), verbatim.
        f.write_str(match self {
            ClassParamProblem::NotUnsigned => {
                "Unable to set 'classification': attempt to access JSON non-unsigned-integer \
                 as unsigned-integer"
            }
            ClassParamProblem::NotInt64 => {
                "invalid value type for 'classification' parameter, expected int64_param"
            }
            ClassParamProblem::NotPositive => {
                "invalid value for 'classification' parameter, expected >= 0"
            }
        })
    }
}

/// What is wrong with a tensor's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeProblem {
    /// A dimension below zero (always 400 in LRAI; Triton's answer varies by path, up to
    /// a 500: docs/protocol.md).
    Negative,
    /// A dimension that is not an integer.
    NotInteger,
    /// The element count exceeds `i64::MAX`, Triton's limit.
    Overflow,
}

impl fmt::Display for ShapeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeProblem::Negative => f.write_str(
                "contains one or more invalid dimensions (dimensions must be non-negative)",
            ),
            ShapeProblem::NotInteger => {
                f.write_str("contains one or more invalid dimensions (dimensions must be integers)")
            }
            ShapeProblem::Overflow => write!(
                f,
                "causes total element count to exceed maximum size of {}",
                i64::MAX
            ),
        }
    }
}

/// Why a raw binary request's shape cannot be deduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawShapeProblem {
    /// More than one `-1` in the dims.
    SeveralVariable,
    /// A `0` beside the `-1`: any body length fits, so none can be deduced.
    ZeroDimension,
}

impl fmt::Display for RawShapeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RawShapeProblem::SeveralVariable => "there are more than one variable-sized dimension",
            RawShapeProblem::ZeroDimension => {
                "a zero-sized dimension leaves the variable-sized one undetermined"
            }
        })
    }
}

fn raw_size_hint(dims: &str) -> &'static str {
    if dims.contains("-1") {
        "; the variable dimension takes whole rows only"
    } else {
        ""
    }
}

/// Errors decoding or encoding inference requests and responses.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The JSON does not parse, or a value in it has the wrong type (serde's message,
    /// which ends with the line and column).
    #[error("malformed JSON: {message}")]
    Json {
        /// serde_json's message, with position.
        message: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// Bytes follow the JSON document, but no `Inference-Header-Content-Length` header
    /// said where the JSON ends.
    #[error(
        "unexpected data after the JSON document at line {line} column {column}; binary \
         tensor data needs the Inference-Header-Content-Length header"
    )]
    TrailingData {
        /// 1-based line where the extra data starts.
        line: usize,
        /// 1-based column where the extra data starts.
        column: usize,
    },
    /// A required field is absent.
    #[error("{place}: missing field '{field}'")]
    MissingField {
        /// Where: `the request`, `input 'x'`, ...
        place: String,
        /// The field.
        field: &'static str,
    },
    /// A `datatype` that is not a KServe datatype.
    #[error(
        "{tensor}: unknown datatype '{given}'; valid datatypes are {}",
        valid_datatypes()
    )]
    UnknownDatatype {
        /// The tensor.
        tensor: TensorRef,
        /// The datatype given.
        given: String,
    },
    /// FP16 or BF16 values in JSON, which Triton refuses too.
    #[error(
        "{tensor}: receiving {dtype} data via JSON is not supported; use the binary tensor \
         extension"
    )]
    HalfInJson {
        /// The tensor.
        tensor: TensorRef,
        /// FP16 or BF16.
        dtype: DataType,
    },
    /// A tensor's JSON `data` nests arrays deeper than Triton allows (Triton's wording
    /// first).
    #[error(
        "JSON nesting depth exceeds maximum allowed limit ({limit}) in the data of {tensor}; \
         send the values as a flat array in row-major order"
    )]
    JsonDepth {
        /// The tensor.
        tensor: TensorRef,
        /// The limit, 100.
        limit: usize,
    },
    /// The number of values does not match the shape.
    #[error(
        "{tensor}: shape {} needs {expected} elements, got {got}",
        format_shape(shape)
    )]
    ElementCount {
        /// The tensor.
        tensor: TensorRef,
        /// The declared shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A tensor larger than [`crate::Limits::max_elements`].
    #[error("{tensor} has {count} elements, more than the limit of {limit}")]
    TooManyElements {
        /// The tensor.
        tensor: TensorRef,
        /// The tensor's element count.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A shape with a negative or non-integer dimension, or whose element count
    /// overflows (Triton's wording: server `src/http_server.cc`).
    #[error("invalid shape for {tensor}: shape {shape} {problem}")]
    BadShape {
        /// The tensor.
        tensor: TensorRef,
        /// The shape as given, `[2,-1]`.
        shape: String,
        /// What is wrong with it.
        problem: ShapeProblem,
    },
    /// Raw tensor bytes (HTTP `binary_data_size`, gRPC raw contents) whose length does
    /// not match datatype × shape.
    #[error(
        "{tensor}: {got} bytes of {source_name}, but {dtype} {} needs {expected}",
        format_shape(shape)
    )]
    BinarySize {
        /// The tensor.
        tensor: TensorRef,
        /// Where the bytes came from: `binary data`, `raw_input_contents`, ...
        source_name: &'static str,
        /// Its datatype.
        dtype: DataType,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes datatype × shape needs.
        expected: usize,
        /// Bytes declared.
        got: usize,
    },
    /// The `binary_data_size` values do not add up to the bytes after the JSON header.
    #[error(
        "binary_data_size values add up to {declared} bytes but {available} bytes follow \
         the JSON header"
    )]
    BinaryTotal {
        /// Sum of the declared sizes (saturating).
        declared: usize,
        /// Bytes in the body after the JSON header.
        available: usize,
    },
    /// A tensor declares binary data but the body has no JSON header length.
    #[error(
        "{tensor} has binary_data_size but the request has no Inference-Header-Content-Length \
         header"
    )]
    BinaryWithoutHeader {
        /// The tensor.
        tensor: TensorRef,
    },
    /// `Inference-Header-Content-Length` does not fit the body.
    #[error(
        "the Inference-Header-Content-Length header is {header} but {reason} (body is {body} \
         bytes)"
    )]
    HeaderLength {
        /// The header's value.
        header: usize,
        /// The body's length.
        body: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A tensor gives its data twice (JSON `data` and binary, or gRPC `contents` and raw).
    #[error("{tensor} sets both {first} and {second}; set exactly one")]
    ConflictingData {
        /// The tensor.
        tensor: TensorRef,
        /// One source.
        first: &'static str,
        /// The other source.
        second: &'static str,
    },
    /// A tensor gives no data at all.
    #[error("{tensor} has no data: set {expected}")]
    NoData {
        /// The tensor.
        tensor: TensorRef,
        /// Where data may come from.
        expected: &'static str,
    },
    /// gRPC raw contents with another count than the tensors.
    #[error("the message has {tensors} tensors but {raw} {field} entries")]
    RawCount {
        /// Number of inputs (or outputs).
        tensors: usize,
        /// Number of raw entries.
        raw: usize,
        /// `raw_input_contents` or `raw_output_contents`.
        field: &'static str,
    },
    /// gRPC typed contents in a field that does not match the datatype.
    #[error("{tensor} is {dtype} but its data is in {field}; use {expected}")]
    ContentsField {
        /// The tensor.
        tensor: TensorRef,
        /// Its datatype.
        dtype: DataType,
        /// The field used.
        field: &'static str,
        /// The field for this datatype.
        expected: &'static str,
    },
    /// FP16/BF16 data in gRPC typed contents, which has no field for them.
    #[error("{tensor}: {dtype} has no typed contents field; send it in raw contents")]
    HalfInContents {
        /// The tensor.
        tensor: TensorRef,
        /// FP16 or BF16.
        dtype: DataType,
    },
    /// A value that does not fit the tensor's datatype (gRPC `int_contents` 300 for INT8).
    #[error("{tensor}: value {value} at index {index} does not fit {dtype}")]
    ValueRange {
        /// The tensor.
        tensor: TensorRef,
        /// Its datatype.
        dtype: DataType,
        /// Element index.
        index: usize,
        /// The value given.
        value: String,
    },
    /// Tensor data that [`lrai_core::Tensor`] rejects (malformed BYTES elements).
    #[error("{tensor}: {error}")]
    Tensor {
        /// The tensor.
        tensor: TensorRef,
        /// What is wrong.
        error: CoreError,
    },
    /// A raw binary request (header length 0) whose input shape cannot be deduced from
    /// the model's dims (Triton's wording first).
    #[error(
        "The shape of the raw {tensor} can not be deduced because {problem} (its dims are \
         {dims}); send a JSON request or use the binary tensor extension"
    )]
    RawShape {
        /// The model's single input.
        tensor: TensorRef,
        /// Its config dims, `[-1,3]`.
        dims: String,
        /// What prevents the deduction.
        problem: RawShapeProblem,
    },
    /// A raw binary request for a BYTES input with more than one element (Triton's
    /// wording first).
    #[error(
        "For BYTE datatype raw {tensor}, the model must have input shape [1] (its dims are \
         {dims}); send a JSON request or use the binary tensor extension"
    )]
    RawBytesShape {
        /// The model's single input.
        tensor: TensorRef,
        /// Its config dims.
        dims: String,
    },
    /// A raw binary request whose body does not fill the input's shape (Triton's
    /// wording first).
    #[error(
        "input byte size mismatch for {tensor} for model '{model}'. Expected {expected}, got \
         {got} (raw binary request: {dtype} with dims {dims}{})",
        raw_size_hint(dims)
    )]
    RawSize {
        /// The model.
        model: String,
        /// The model's single input.
        tensor: TensorRef,
        /// Its datatype.
        dtype: DataType,
        /// Its config dims.
        dims: String,
        /// Bytes the deduced shape needs.
        expected: usize,
        /// Bytes in the body.
        got: usize,
    },
    /// Two tensors with the same name on one side (Triton's wording: core
    /// `src/infer_request.cc`).
    #[error("{tensor} already exists in request; name each tensor once")]
    DuplicateTensor {
        /// The tensor.
        tensor: TensorRef,
    },
    /// A parameter with a value of the wrong kind or range.
    #[error("parameter '{name}' must be {expected}, got {got}")]
    BadParameter {
        /// Parameter name.
        name: String,
        /// What it must be.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    /// A parameter key starting with `triton_` that Triton does not define.
    #[error(
        "parameter '{name}': keys starting with 'triton_' are reserved; only \
         'triton_enable_empty_final_response' is accepted"
    )]
    ReservedParameter {
        /// Parameter name.
        name: String,
    },
    /// A Triton feature LRAI does not serve (shared memory).
    #[error("{what} is not supported")]
    Unsupported {
        /// The feature and where it was asked for.
        what: String,
    },
    /// A `classification` parameter that is not a class count (Triton's wording first).
    #[error(
        "{problem} ({tensor} has classification = {got}; give the number of top classes to \
         return, 1 or more)"
    )]
    BadClassification {
        /// The requested output.
        tensor: TensorRef,
        /// What is wrong, in Triton's words.
        problem: ClassParamProblem,
        /// The value given.
        got: String,
    },
    /// Classification asked of an output whose datatype has no order (Triton's wording
    /// first).
    #[error(
        "class result not available for output due to unsupported type '{dtype}' ({tensor}; \
         classification needs an integer, FP32 or FP64 output)"
    )]
    ClassificationType {
        /// The output.
        tensor: TensorRef,
        /// Its datatype.
        dtype: DataType,
    },
    /// Classification of a row of more than a million elements (Triton's limit and
    /// wording first).
    #[error(
        "classification output tensor too large ({tensor} has {elements} elements per row, \
         more than {})",
        crate::MAX_CLASSIFICATION_ELEMENTS
    )]
    ClassificationTooLarge {
        /// The output.
        tensor: TensorRef,
        /// Elements in one row.
        elements: usize,
    },
    /// A requested output the response does not have.
    #[error("unexpected inference output '{name}' (available outputs: {})", available.join(", "))]
    UnknownOutput {
        /// The name asked for.
        name: String,
        /// The outputs there are.
        available: Vec<String>,
    },
    /// A BYTES output that is not UTF-8 cannot be written as a JSON string.
    #[error(
        "{tensor} holds BYTES that are not valid UTF-8, which JSON cannot carry; request it \
         with binary_data"
    )]
    NonUtf8Bytes {
        /// The tensor.
        tensor: TensorRef,
    },
}

impl ProtocolError {
    /// Wraps a serde_json error as [`ProtocolError::Json`].
    pub(crate) fn json(err: &serde_json::Error) -> ProtocolError {
        ProtocolError::Json {
            message: err.to_string(),
            line: err.line(),
            column: err.column(),
        }
    }
}

/// Result with [`ProtocolError`].
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_datatype_lists_valid_ones() {
        let e = ProtocolError::UnknownDatatype {
            tensor: TensorRef::input("x"),
            given: "FLOAT".into(),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("input 'x': unknown datatype 'FLOAT'"),
            "{text}"
        );
        assert!(text.contains("FP32") && text.contains("BYTES"), "{text}");
    }

    #[test]
    fn half_in_json_names_input() {
        let e = ProtocolError::HalfInJson {
            tensor: TensorRef::input("x"),
            dtype: DataType::F16,
        };
        assert_eq!(
            e.to_string(),
            "input 'x': receiving FP16 data via JSON is not supported; use the binary tensor \
             extension"
        );
    }
}
