//! ONNX models as data: the protobuf types (generated from the vendored `onnx.proto`,
//! IR version 14, without a system `protoc`), loading and saving with errors that name
//! the file, the ONNX spelling of datatypes, graph inputs/outputs as declared shapes,
//! and a [`ModelSummary`] for `lrai inspect`.
//!
//! This crate never runs a model (that is `lrai-backend`) and never rewrites one ad hoc:
//! rewrites are [`GraphPatch`]es ([`patch`]), checked after they are applied; [`simplify`]
//! holds the rewrites that let tract run graphs it would otherwise get wrong.

use std::collections::BTreeMap;
use std::path::Path;

use lrai_core::{DataType, Dim, TensorSpec};
use prost::Message;

/// Generated ONNX protobuf types (package `onnx`).
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
#[rustfmt::skip]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use pb::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};

mod batchnorm;
mod loops;
pub mod patch;
pub mod simplify;
pub mod specialize;

pub use patch::{GraphError, GraphPatch, check_graph};

/// Errors reading, writing or interpreting ONNX models.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not a protobuf ModelProto.
    #[error("'{name}' is not a valid ONNX model (truncated, or not ONNX at all)")]
    Decode {
        /// The file or model name.
        name: String,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
    /// The protobuf decoded but holds no graph: an empty or foreign file.
    #[error("'{name}' is not an ONNX model: it has no graph (is the file empty or truncated?)")]
    NoGraph {
        /// The file or model name.
        name: String,
    },
    /// A graph input or output has a type LRAI cannot hold.
    #[error("{role} '{tensor}' has ONNX type {type_name}, which LRAI does not support")]
    UnsupportedType {
        /// `input` or `output`.
        role: &'static str,
        /// Tensor name.
        tensor: String,
        /// ONNX type name.
        type_name: String,
    },
    /// File I/O (the message names the path: fs-err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

/// Decodes a model held in memory; `name` is used in errors.
///
/// # Errors
/// [`OnnxError::Decode`] when the bytes are not protobuf, [`OnnxError::NoGraph`] when
/// they decode to something without a graph.
pub fn decode_model(name: &str, bytes: &[u8]) -> Result<ModelProto> {
    let model = ModelProto::decode(bytes).map_err(|source| OnnxError::Decode {
        name: name.to_string(),
        source,
    })?;
    if model.graph.is_none() {
        return Err(OnnxError::NoGraph {
            name: name.to_string(),
        });
    }
    Ok(model)
}

/// Reads and decodes a model file.
///
/// # Errors
/// [`OnnxError::Io`] when the file cannot be read, otherwise as [`decode_model`].
pub fn load_model(path: &Path) -> Result<ModelProto> {
    let bytes = fs_err::read(path)?;
    decode_model(&path.display().to_string(), &bytes)
}

/// Encodes a model as protobuf bytes.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Encodes and writes a model file.
///
/// # Errors
/// [`OnnxError::Io`].
pub fn save_model(path: &Path, model: &ModelProto) -> Result<()> {
    fs_err::write(path, model.encode_to_vec())?;
    Ok(())
}

/// The LRAI datatype for an ONNX `TensorProto.DataType`, if LRAI has one.
pub fn dtype_from_onnx(elem_type: i32) -> Option<DataType> {
    use pb::tensor_proto::DataType as O;
    Some(match O::try_from(elem_type).ok()? {
        O::Float => DataType::F32,
        O::Uint8 => DataType::U8,
        O::Int8 => DataType::I8,
        O::Uint16 => DataType::U16,
        O::Int16 => DataType::I16,
        O::Int32 => DataType::I32,
        O::Int64 => DataType::I64,
        O::String => DataType::Bytes,
        O::Bool => DataType::Bool,
        O::Float16 => DataType::F16,
        O::Double => DataType::F64,
        O::Uint32 => DataType::U32,
        O::Uint64 => DataType::U64,
        O::Bfloat16 => DataType::BF16,
        _ => return None,
    })
}

/// The ONNX `TensorProto.DataType` for an LRAI datatype.
pub fn dtype_to_onnx(dtype: DataType) -> i32 {
    use pb::tensor_proto::DataType as O;
    let o = match dtype {
        DataType::Bool => O::Bool,
        DataType::U8 => O::Uint8,
        DataType::U16 => O::Uint16,
        DataType::U32 => O::Uint32,
        DataType::U64 => O::Uint64,
        DataType::I8 => O::Int8,
        DataType::I16 => O::Int16,
        DataType::I32 => O::Int32,
        DataType::I64 => O::Int64,
        DataType::F16 => O::Float16,
        DataType::BF16 => O::Bfloat16,
        DataType::F32 => O::Float,
        DataType::F64 => O::Double,
        DataType::Bytes => O::String,
    };
    o as i32
}

/// ONNX's name for an element type (`FLOAT`), or `type <n>` when unknown.
pub fn onnx_type_name(elem_type: i32) -> String {
    pb::tensor_proto::DataType::try_from(elem_type).map_or_else(
        |_| format!("type {elem_type}"),
        |d| d.as_str_name().to_string(),
    )
}

/// One graph input or output as the file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoInfo {
    /// Tensor name.
    pub name: String,
    /// ONNX element type (0 when the value is not a tensor or has none).
    pub elem_type: i32,
    /// Declared dimensions; `None` when the file gives no shape at all.
    pub dims: Option<Vec<Dim>>,
    /// What kind of value it is when not a plain tensor (`sequence`, `map`, `optional`,
    /// `sparse tensor`, `opaque`); `None` for tensors.
    pub non_tensor: Option<&'static str>,
}

impl IoInfo {
    fn from_value_info(v: &ValueInfoProto) -> IoInfo {
        use pb::type_proto::Value;
        let value = v.r#type.as_ref().and_then(|t| t.value.as_ref());
        let tensor = match value {
            Some(Value::TensorType(tt)) => Some(tt),
            _ => None,
        };
        let non_tensor = match value {
            Some(Value::TensorType(_)) | None => None,
            Some(Value::SequenceType(_)) => Some("sequence"),
            Some(Value::MapType(_)) => Some("map"),
            Some(Value::OptionalType(_)) => Some("optional"),
            Some(Value::SparseTensorType(_)) => Some("sparse tensor"),
            Some(Value::OpaqueType(_)) => Some("opaque"),
        };
        let elem_type = tensor.and_then(|t| t.elem_type).unwrap_or(0);
        let dims = tensor.and_then(|t| t.shape.as_ref()).map(|s| {
            s.dim
                .iter()
                .map(|d| {
                    use pb::tensor_shape_proto::dimension::Value as D;
                    match &d.value {
                        Some(D::DimValue(v)) => usize::try_from(*v).map_or(Dim::Any, Dim::Fixed),
                        // Paddle writes `?` for every free dim: a placeholder, not one shared
                        // name, so it (like an empty name) ties nothing together.
                        Some(D::DimParam(p)) if !matches!(p.trim(), "" | "?" | "-1") => {
                            Dim::Symbol(p.clone())
                        }
                        _ => Dim::Any,
                    }
                })
                .collect()
        });
        IoInfo {
            name: v.name.clone().unwrap_or_default(),
            elem_type,
            dims,
            non_tensor,
        }
    }

    /// The declared type as text: `FLOAT`, or the value kind for non-tensors.
    pub fn type_name(&self) -> String {
        match self.non_tensor {
            Some(kind) => kind.to_string(),
            None => onnx_type_name(self.elem_type),
        }
    }

    /// The LRAI datatype, if supported.
    pub fn dtype(&self) -> Option<DataType> {
        dtype_from_onnx(self.elem_type)
    }

    /// Converts to a [`TensorSpec`] (a file without a shape gives `dims: None`).
    ///
    /// # Errors
    /// [`OnnxError::UnsupportedType`] when the element type has no LRAI datatype.
    pub fn to_spec(&self, role: &'static str) -> Result<TensorSpec> {
        let dtype = self
            .dtype()
            .filter(|_| self.non_tensor.is_none())
            .ok_or_else(|| OnnxError::UnsupportedType {
                role,
                tensor: self.name.clone(),
                type_name: self.type_name(),
            })?;
        Ok(TensorSpec {
            name: self.name.clone(),
            dtype,
            dims: self.dims.clone(),
        })
    }
}

/// The graph's real inputs: declared inputs that are not initializers (IR < 4 lists
/// weights as inputs too).
pub fn graph_inputs(graph: &GraphProto) -> Vec<IoInfo> {
    let inits: std::collections::HashSet<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    graph
        .input
        .iter()
        .filter(|v| !inits.contains(v.name.as_deref().unwrap_or("")))
        .map(IoInfo::from_value_info)
        .collect()
}

/// The graph's outputs.
pub fn graph_outputs(graph: &GraphProto) -> Vec<IoInfo> {
    graph.output.iter().map(IoInfo::from_value_info).collect()
}

/// Every node of the graph and of its subgraphs (If/Loop/Scan bodies), depth first.
pub fn all_nodes(graph: &GraphProto) -> Vec<&NodeProto> {
    let mut out = Vec::new();
    let mut stack = vec![graph];
    while let Some(g) = stack.pop() {
        for n in &g.node {
            out.push(n);
            for a in &n.attribute {
                stack.extend(a.g.iter());
                stack.extend(a.graphs.iter());
            }
        }
    }
    out
}

/// Number of elements a tensor proto declares by its dims.
pub fn tensor_element_count(t: &TensorProto) -> Option<u64> {
    t.dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

/// What `lrai inspect` shows about a model.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Operator sets as (domain, version); `ai.onnx` for the empty domain.
    pub opsets: Vec<(String, i64)>,
    /// Producer name and version.
    pub producer: String,
    /// Graph inputs (initializers excluded).
    pub inputs: Vec<IoInfo>,
    /// Graph outputs.
    pub outputs: Vec<IoInfo>,
    /// Node count per op type (subgraphs included), sorted by op type.
    pub op_counts: BTreeMap<String, usize>,
    /// Number of initializer tensors.
    pub initializers: usize,
    /// Total elements in initializers.
    pub parameter_count: u64,
    /// Total bytes of initializer data.
    pub parameter_bytes: u64,
    /// True when some initializer lives in an external data file.
    pub external_data: bool,
}

/// Summarises a decoded model.
pub fn summarize(model: &ModelProto) -> ModelSummary {
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let mut op_counts = BTreeMap::new();
    for n in all_nodes(graph) {
        let op = n.op_type.clone().unwrap_or_default();
        let key = match n.domain.as_deref() {
            None | Some("" | "ai.onnx") => op,
            Some(d) => format!("{d}.{op}"),
        };
        *op_counts.entry(key).or_insert(0) += 1;
    }
    let mut parameter_count = 0u64;
    let mut parameter_bytes = 0u64;
    let mut external_data = false;
    for t in &graph.initializer {
        let n = tensor_element_count(t).unwrap_or(0);
        parameter_count = parameter_count.saturating_add(n);
        let elem = t
            .data_type
            .and_then(dtype_from_onnx)
            .and_then(DataType::size);
        let bytes = match elem {
            Some(size) => n.saturating_mul(size as u64),
            None => t.string_data.iter().map(|s| s.len() as u64).sum(),
        };
        parameter_bytes = parameter_bytes.saturating_add(bytes);
        external_data |= t.data_location == Some(pb::tensor_proto::DataLocation::External as i32);
    }
    ModelSummary {
        ir_version: model.ir_version.unwrap_or(0),
        opsets: model
            .opset_import
            .iter()
            .map(|o| {
                let d = o.domain.clone().unwrap_or_default();
                let d = if d.is_empty() { "ai.onnx".into() } else { d };
                (d, o.version.unwrap_or(0))
            })
            .collect(),
        producer: format!(
            "{} {}",
            model.producer_name.as_deref().unwrap_or(""),
            model.producer_version.as_deref().unwrap_or("")
        )
        .trim()
        .to_string(),
        inputs: graph_inputs(graph),
        outputs: graph_outputs(graph),
        op_counts,
        initializers: graph.initializer.len(),
        parameter_count,
        parameter_bytes,
        external_data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatypes_round_trip_through_onnx() {
        for d in DataType::ALL {
            assert_eq!(dtype_from_onnx(dtype_to_onnx(d)), Some(d));
        }
        assert_eq!(onnx_type_name(1), "FLOAT");
        assert_eq!(dtype_from_onnx(17), None, "float8 has no LRAI datatype");
    }

    #[test]
    fn empty_bytes_are_not_a_model() {
        let err = decode_model("x.onnx", b"").unwrap_err();
        assert!(matches!(err, OnnxError::NoGraph { .. }), "{err}");
        let err = decode_model("x.onnx", b"\xff\xff\xff garbage").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("'x.onnx' is not a valid ONNX model"),
            "{err}"
        );
    }
}
