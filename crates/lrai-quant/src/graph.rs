//! Reading a graph the way the rewrites need it: who produces and who consumes each
//! tensor, which values are constants (initializers or `Constant` nodes) and their
//! contents as f32, and every tensor's element type.
//!
//! Element types come from a small forward inference over the node list (ONNX keeps
//! nodes in topological order), because exports rarely carry `value_info` and the
//! quantizer must tell float activations from the int64 shape arithmetic that
//! transformer exports are full of (MiniLM has 63 `Add`s, most on shapes).

use std::collections::{HashMap, HashSet};

use lrai_onnx::pb::tensor_proto::DataType as O;
use lrai_onnx::pb::{self, AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};

/// ONNX FLOAT.
pub(crate) const FLOAT: i32 = O::Float as i32;
/// ONNX FLOAT16.
pub(crate) const FLOAT16: i32 = O::Float16 as i32;
/// ONNX INT8.
pub(crate) const INT8: i32 = O::Int8 as i32;
/// ONNX UINT8.
pub(crate) const UINT8: i32 = O::Uint8 as i32;
/// ONNX INT32.
pub(crate) const INT32: i32 = O::Int32 as i32;
/// ONNX INT64.
pub(crate) const INT64: i32 = O::Int64 as i32;
/// ONNX BOOL.
pub(crate) const BOOL: i32 = O::Bool as i32;

/// The op type of a node (`""` when unset).
pub(crate) fn op(n: &NodeProto) -> &str {
    n.op_type.as_deref().unwrap_or("")
}

/// True for nodes in the default ONNX domain.
pub(crate) fn default_domain(n: &NodeProto) -> bool {
    matches!(n.domain.as_deref(), None | Some("" | "ai.onnx"))
}

/// A stable name for a node: its own name, or `<op>:<first output>` when it has none.
pub(crate) fn node_key(n: &NodeProto) -> String {
    match n.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => format!("{}:{}", op(n), n.output.first().map_or("", String::as_str)),
    }
}

/// An attribute by name.
pub(crate) fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

/// An integer attribute, or `default`.
pub(crate) fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

/// A float attribute, or `default`.
pub(crate) fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

/// An integer attribute.
pub(crate) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(pb::attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..AttributeProto::default()
    }
}

/// A node in the default domain.
pub(crate) fn make_node(
    op_type: &str,
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op_type.to_string()),
        name: Some(name),
        input: inputs,
        output: outputs,
        attribute,
        ..NodeProto::default()
    }
}

/// The element count of a tensor proto.
pub(crate) fn element_count(t: &TensorProto) -> usize {
    t.dims
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .product()
}

fn raw(t: &TensorProto) -> &[u8] {
    t.raw_data.as_deref().unwrap_or(&[])
}

/// True when the tensor's data lives in an external file.
pub(crate) fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
}

/// The values of a FLOAT, FLOAT16, DOUBLE or integer tensor as f32; `None` for other
/// types, external data, or data that does not match the dims.
pub(crate) fn to_f32(t: &TensorProto) -> Option<Vec<f32>> {
    if is_external(t) {
        return None;
    }
    let n = element_count(t);
    let dt = O::try_from(t.data_type?).ok()?;
    let r = raw(t);
    let out: Vec<f32> = match dt {
        O::Float if !r.is_empty() => r
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        O::Float => t.float_data.clone(),
        O::Float16 if !r.is_empty() => r
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        O::Float16 => t
            .int32_data
            .iter()
            .map(|&v| half::f16::from_bits(u16::try_from(v & 0xffff).unwrap_or(0)).to_f32())
            .collect(),
        #[allow(clippy::cast_possible_truncation)]
        O::Double if !r.is_empty() => r
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        #[allow(clippy::cast_possible_truncation)]
        O::Double => t.double_data.iter().map(|&v| v as f32).collect(),
        #[allow(clippy::cast_precision_loss)]
        O::Int64 if !r.is_empty() => r
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        #[allow(clippy::cast_precision_loss)]
        O::Int64 => t.int64_data.iter().map(|&v| v as f32).collect(),
        #[allow(clippy::cast_precision_loss)]
        O::Int32 if !r.is_empty() => r
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        #[allow(clippy::cast_precision_loss)]
        O::Int32 => t.int32_data.iter().map(|&v| v as f32).collect(),
        _ => return None,
    };
    (out.len() == n).then_some(out)
}

/// A FLOAT tensor.
pub(crate) fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        raw_data: Some(raw.into()),
        ..TensorProto::default()
    }
}

/// A FLOAT16 tensor.
pub(crate) fn f16_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let raw: Vec<u8> = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT16),
        raw_data: Some(raw.into()),
        ..TensorProto::default()
    }
}

/// An INT8 tensor.
pub(crate) fn i8_tensor(name: &str, dims: &[i64], values: &[i8]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(INT8),
        raw_data: Some(raw.into()),
        ..TensorProto::default()
    }
}

/// A UINT8 tensor.
pub(crate) fn u8_tensor(name: &str, dims: &[i64], values: &[u8]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(UINT8),
        raw_data: Some(values.to_vec().into()),
        ..TensorProto::default()
    }
}

/// An INT32 tensor.
pub(crate) fn i32_tensor(name: &str, dims: &[i64], values: &[i32]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(INT32),
        raw_data: Some(raw.into()),
        ..TensorProto::default()
    }
}

/// A tensor-typed value info without a shape.
pub(crate) fn value_info(name: &str, elem_type: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: None,
            })),
            ..pb::TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// The element type a value info declares.
pub(crate) fn declared_type(v: &ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) => t.elem_type,
        _ => None,
    }
}

/// An index over one graph (subgraphs are not looked into: the rewrites leave nodes
/// that own subgraphs alone).
#[derive(Debug)]
pub(crate) struct GraphIndex<'a> {
    /// The graph.
    pub(crate) graph: &'a GraphProto,
    inits: HashMap<&'a str, &'a TensorProto>,
    constants: HashMap<&'a str, &'a TensorProto>,
    /// Tensor name → indices of the nodes reading it (once per node).
    pub(crate) consumers: HashMap<&'a str, Vec<usize>>,
    /// Tensor name → ONNX element type, where known.
    pub(crate) types: HashMap<String, i32>,
    /// Graph output names.
    pub(crate) outputs: HashSet<&'a str>,
}

impl<'a> GraphIndex<'a> {
    /// Indexes a graph and infers element types.
    pub(crate) fn new(graph: &'a GraphProto) -> GraphIndex<'a> {
        let inits: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .filter_map(|t| Some((t.name.as_deref()?, t)))
            .collect();
        let mut constants = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            let mut seen = HashSet::new();
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                if seen.insert(inp.as_str()) {
                    consumers.entry(inp.as_str()).or_default().push(i);
                }
            }
            if op(n) == "Constant"
                && let (Some(o), Some(t)) = (
                    n.output.first(),
                    attr(n, "value").and_then(|a| a.t.as_ref()),
                )
            {
                constants.insert(o.as_str(), t);
            }
        }
        let outputs = graph
            .output
            .iter()
            .filter_map(|v| v.name.as_deref())
            .collect();
        let mut index = GraphIndex {
            graph,
            inits,
            constants,
            consumers,
            types: HashMap::new(),
            outputs,
        };
        index.infer_types();
        index
    }

    /// The constant tensor behind a name: an initializer (that is not also a graph
    /// input, which a caller could override) or a `Constant` node's value.
    pub(crate) fn constant(&self, name: &str) -> Option<&'a TensorProto> {
        if let Some(t) = self.inits.get(name) {
            let overridable = self
                .graph
                .input
                .iter()
                .any(|v| v.name.as_deref() == Some(name));
            return (!overridable).then_some(*t);
        }
        self.constants.get(name).copied()
    }

    /// True when `name` is an initializer (constant or overridable).
    pub(crate) fn is_initializer(&self, name: &str) -> bool {
        self.inits.contains_key(name)
    }

    /// A constant's values as f32.
    pub(crate) fn constant_f32(&self, name: &str) -> Option<Vec<f32>> {
        self.constant(name).and_then(to_f32)
    }

    /// The element type of a tensor, if known.
    pub(crate) fn elem_type(&self, name: &str) -> Option<i32> {
        self.types.get(name).copied()
    }

    /// True when the tensor is known to be FLOAT.
    pub(crate) fn is_float(&self, name: &str) -> bool {
        self.elem_type(name) == Some(FLOAT)
    }

    /// Nodes reading a tensor.
    pub(crate) fn consumers_of(&self, name: &str) -> &[usize] {
        self.consumers.get(name).map_or(&[], Vec::as_slice)
    }

    fn infer_types(&mut self) {
        let g = self.graph;
        let mut types: HashMap<String, i32> = HashMap::new();
        for v in g.input.iter().chain(&g.value_info).chain(&g.output) {
            if let (Some(n), Some(t)) = (v.name.as_deref(), declared_type(v)) {
                types.insert(n.to_string(), t);
            }
        }
        for t in &g.initializer {
            if let (Some(n), Some(dt)) = (t.name.as_deref(), t.data_type) {
                types.insert(n.to_string(), dt);
            }
        }
        for n in &g.node {
            let ty = |i: usize| n.input.get(i).and_then(|s| types.get(s)).copied();
            let outs: Vec<Option<i32>> = match op(n) {
                "Constant" => vec![
                    attr(n, "value")
                        .and_then(|a| a.t.as_ref())
                        .and_then(|t| t.data_type),
                ],
                "Cast" => vec![
                    attr(n, "to")
                        .and_then(|a| a.i)
                        .and_then(|v| i32::try_from(v).ok()),
                ],
                "CastLike" => vec![ty(1)],
                "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" => vec![Some(INT64)],
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And"
                | "Or" | "Xor" | "IsNaN" | "IsInf" => vec![Some(BOOL)],
                "ConstantOfShape" => vec![Some(
                    attr(n, "value")
                        .and_then(|a| a.t.as_ref())
                        .and_then(|t| t.data_type)
                        .unwrap_or(FLOAT),
                )],
                "Where" => vec![ty(1)],
                "DequantizeLinear" => vec![ty(1)],
                "QuantizeLinear" => vec![Some(ty(2).unwrap_or(UINT8))],
                "DynamicQuantizeLinear" => vec![Some(UINT8), Some(FLOAT), Some(UINT8)],
                "MatMulInteger" | "ConvInteger" => vec![Some(INT32)],
                "TopK" => vec![ty(0), Some(INT64)],
                "EyeLike" | "RandomNormalLike" | "RandomUniformLike" => vec![ty(0)],
                "Gather" | "GatherElements" | "GatherND" | "ScatterND" | "Expand" | "Tile" => {
                    vec![ty(0)]
                }
                "LayerNormalization" => vec![ty(0), Some(FLOAT), Some(FLOAT)],
                _ if !default_domain(n) => vec![],
                _ => vec![ty(0)],
            };
            for (o, t) in n.output.iter().zip(outs) {
                if let Some(t) = t
                    && !o.is_empty()
                {
                    types.entry(o.clone()).or_insert(t);
                }
            }
        }
        self.types = types;
    }
}

/// Hands out tensor and node names that the graph does not use yet.
#[derive(Debug)]
pub(crate) struct Names {
    used: HashSet<String>,
}

impl Names {
    /// Every name in the graph (tensors, nodes, initializers) is taken.
    pub(crate) fn new(graph: &GraphProto) -> Names {
        let mut used = HashSet::new();
        for n in &graph.node {
            used.extend(n.input.iter().cloned());
            used.extend(n.output.iter().cloned());
            used.extend(n.name.iter().cloned());
        }
        for v in graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
        {
            used.extend(v.name.iter().cloned());
        }
        used.extend(graph.initializer.iter().filter_map(|t| t.name.clone()));
        Names { used }
    }

    /// `base`, or `base_1`, `base_2`… if taken.
    pub(crate) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }
}

/// The `ai.onnx` opset the model imports.
pub(crate) fn onnx_opset(model: &lrai_onnx::ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("" | "ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(0)
}

/// Drops initializers nothing reads any more, and `value_info` for tensors that no
/// longer exist (a checker rejects neither, but they cost bytes and confuse readers).
pub(crate) fn prune(graph: &mut GraphProto) {
    // Constant nodes left without readers (a folded Clip's bounds) go first.
    loop {
        let read: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .chain(graph.output.iter().filter_map(|v| v.name.as_deref()))
            .collect();
        let dead: Vec<usize> = graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                op(n) == "Constant" && n.output.iter().all(|o| !read.contains(o.as_str()))
            })
            .map(|(i, _)| i)
            .collect();
        if dead.is_empty() {
            break;
        }
        for i in dead.into_iter().rev() {
            graph.node.remove(i);
        }
    }
    let mut used: HashSet<String> = HashSet::new();
    for n in &graph.node {
        used.extend(n.input.iter().cloned());
        used.extend(n.output.iter().cloned());
        // Subgraphs may read outer-scope initializers.
        for a in &n.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                for sn in lrai_onnx::all_nodes(g) {
                    used.extend(sn.input.iter().cloned());
                }
            }
        }
    }
    used.extend(graph.output.iter().filter_map(|v| v.name.clone()));
    let inputs: HashSet<String> = graph.input.iter().filter_map(|v| v.name.clone()).collect();
    graph.initializer.retain(|t| {
        t.name
            .as_ref()
            .is_some_and(|n| used.contains(n) || inputs.contains(n))
    });
    graph
        .value_info
        .retain(|v| v.name.as_ref().is_some_and(|n| used.contains(n)));
}

/// Initializers with the same type, shape and contents (an activation's scale and zero
/// point read by its `Q` and every `DQ`, the weights' zero points, the scale a
/// pass-through node keeps) become one: readers are pointed at the first. Only small
/// ones (at most 64 elements) are compared, and never graph inputs or outputs or a graph
/// with subgraphs (which may read outer names implicitly).
pub(crate) fn share_constants(graph: &mut GraphProto) {
    if has_subgraphs(graph) {
        return;
    }
    let io: HashSet<String> = graph
        .input
        .iter()
        .chain(&graph.output)
        .filter_map(|v| v.name.clone())
        .collect();
    let mut first: HashMap<Vec<u8>, String> = HashMap::new();
    let mut alias: HashMap<String, String> = HashMap::new();
    for t in &graph.initializer {
        let Some(name) = t.name.as_deref() else {
            continue;
        };
        if io.contains(name) || element_count(t) > 64 || is_external(t) {
            continue;
        }
        let mut key = t.clone();
        key.name = None;
        let key = prost::Message::encode_to_vec(&key);
        match first.get(&key) {
            Some(f) => {
                alias.insert(name.to_string(), f.clone());
            }
            None => {
                first.insert(key, name.to_string());
            }
        }
    }
    if alias.is_empty() {
        return;
    }
    for n in &mut graph.node {
        for i in &mut n.input {
            if let Some(a) = alias.get(i.as_str()) {
                i.clone_from(a);
            }
        }
    }
    graph
        .initializer
        .retain(|t| t.name.as_deref().is_none_or(|n| !alias.contains_key(n)));
}

fn has_subgraphs(graph: &GraphProto) -> bool {
    graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    })
}

/// Drops attributes that only restate the ONNX default (`dilations`, `strides` of all
/// ones, `pads` of zeros, `group` 1, `ceil_mode` 0, Gemm's `alpha`/`beta` 1 and `transA`/
/// `transB` 0, Flatten's `axis` 1): exporters write them all, and on a small model they
/// are a few percent of the file. Only ops and attributes whose defaults the ONNX spec
/// fixes for every opset the quantizer accepts are touched.
pub(crate) fn drop_default_attributes(graph: &mut GraphProto) {
    for n in &mut graph.node {
        if !default_domain(n) {
            continue;
        }
        let op_type = op(n).to_string();
        n.attribute.retain(|a| !is_default(&op_type, a));
    }
}

fn is_default(op_type: &str, a: &AttributeProto) -> bool {
    let all = |v: i64| !a.ints.is_empty() && a.ints.iter().all(|&x| x == v);
    let int = |v: i64| a.ints.is_empty() && a.i == Some(v);
    let float = |v: f32| a.f == Some(v);
    match (op_type, a.name.as_deref().unwrap_or("")) {
        ("Conv" | "MaxPool" | "AveragePool" | "LpPool", "strides" | "dilations") => all(1),
        ("Conv" | "MaxPool" | "AveragePool" | "LpPool", "pads") => all(0),
        ("Conv", "group") => int(1),
        ("MaxPool" | "AveragePool", "ceil_mode") => int(0),
        ("MaxPool", "storage_order") => int(0),
        ("AveragePool", "count_include_pad") => int(0),
        ("Gemm", "alpha" | "beta") => float(1.0),
        ("Gemm", "transA" | "transB") => int(0),
        ("Flatten", "axis") => int(1),
        _ => false,
    }
}

/// The `n`th shortest C identifier: `a`…`z`, `A`…`Z`, then `aa`, `ab`, … `a0`…`a9`, `ba`, …
fn short_name(mut n: usize) -> String {
    const ALNUM: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rest = 0u32; // characters after the first
    let mut count = 52usize;
    while n >= count {
        n -= count;
        rest += 1;
        count = count.saturating_mul(62);
    }
    let tail = 62usize.pow(rest);
    let mut out = String::with_capacity(rest as usize + 1);
    out.push(char::from(ALNUM[n / tail]));
    let mut n = n % tail;
    for k in (0..rest).rev() {
        let p = 62usize.pow(k);
        out.push(char::from(ALNUM[n / p]));
        n %= p;
    }
    out
}

/// Gives the graph's inner tensors short names (`a`, `b`, …, `aa`, …) and drops the names of
/// the nodes a rewrite added. On small models the long derived names (`/net/net.1/Relu_
/// output_0_QuantizeLinear`, each tensor named again in every node that uses it) were a
/// quarter of the quantized file. The model's inputs and outputs keep their names, and
/// so do the original nodes, so reports and `--keep-float` still match; a model with
/// subgraphs (which may use outer names implicitly) keeps every original name.
pub(crate) fn compact_names(original: &GraphProto, graph: &mut GraphProto) {
    let mut kept: HashSet<&str> = HashSet::new();
    let mut kept_nodes: HashSet<&str> = HashSet::new();
    let has_subgraphs = original.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    });
    for n in &original.node {
        if has_subgraphs {
            kept.extend(n.input.iter().map(String::as_str));
            kept.extend(n.output.iter().map(String::as_str));
        }
        kept_nodes.extend(n.name.as_deref());
    }
    for v in original.input.iter().chain(&original.output) {
        kept.extend(v.name.as_deref());
    }
    if has_subgraphs {
        kept.extend(original.value_info.iter().filter_map(|v| v.name.as_deref()));
        kept.extend(
            original
                .initializer
                .iter()
                .filter_map(|t| t.name.as_deref()),
        );
    }
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut next = 0usize;
    let mut rename = |name: &mut String| {
        if name.is_empty() || kept.contains(name.as_str()) {
            return;
        }
        let short = renamed.entry(name.clone()).or_insert_with(|| {
            loop {
                let candidate = short_name(next);
                next += 1;
                if !kept.contains(candidate.as_str()) {
                    break candidate;
                }
            }
        });
        name.clone_from(short);
    };
    for n in &mut graph.node {
        n.input.iter_mut().for_each(&mut rename);
        n.output.iter_mut().for_each(&mut rename);
        if n.name.as_deref().is_some_and(|s| !kept_nodes.contains(s)) {
            n.name = None;
        }
    }
    for t in &mut graph.initializer {
        if let Some(name) = &mut t.name {
            rename(name);
        }
    }
    for v in graph
        .value_info
        .iter_mut()
        .chain(&mut graph.input)
        .chain(&mut graph.output)
    {
        if let Some(name) = &mut v.name {
            rename(name);
        }
    }
}

/// A node with string inputs and outputs and no attributes, for unit tests.
#[cfg(test)]
pub(crate) fn test_node(op_type: &str, name: &str, i: &[&str], o: &[&str]) -> NodeProto {
    make_node(
        op_type,
        name.into(),
        i.iter().map(|s| (*s).to_string()).collect(),
        o.iter().map(|s| (*s).to_string()).collect(),
        vec![],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_and_typed_float_data() {
        let t = f32_tensor("w", &[2], &[1.5, -2.0]);
        assert_eq!(to_f32(&t), Some(vec![1.5, -2.0]));
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(FLOAT),
            float_data: vec![1.0, 2.0, 3.0],
            ..TensorProto::default()
        };
        assert_eq!(to_f32(&t), Some(vec![1.0, 2.0, 3.0]));
        let t = f16_tensor("h", &[1], &[0.5]);
        assert_eq!(to_f32(&t), Some(vec![0.5]));
        let bad = TensorProto {
            dims: vec![4],
            data_type: Some(FLOAT),
            float_data: vec![1.0],
            ..TensorProto::default()
        };
        assert_eq!(to_f32(&bad), None, "dims and data disagree");
    }

    #[test]
    fn fresh_names_do_not_collide() {
        let g = GraphProto {
            node: vec![make_node(
                "Relu",
                "r".into(),
                vec!["x".into()],
                vec!["y".into()],
                vec![],
            )],
            ..GraphProto::default()
        };
        let mut names = Names::new(&g);
        assert_eq!(names.fresh("y"), "y_1");
        assert_eq!(names.fresh("y"), "y_2");
        assert_eq!(names.fresh("z"), "z");
    }

    #[test]
    fn compact_names_keeps_io_and_layer_names() {
        let node = |op: &str, name: Option<&str>, i: &[&str], o: &[&str]| NodeProto {
            op_type: Some(op.into()),
            name: name.map(Into::into),
            input: i.iter().map(|s| (*s).to_string()).collect(),
            output: o.iter().map(|s| (*s).to_string()).collect(),
            ..NodeProto::default()
        };
        let original = GraphProto {
            node: vec![
                node("Relu", Some("r"), &["x"], &["mid"]),
                node("Relu", Some("s"), &["mid"], &["y"]),
            ],
            input: vec![value_info("x", FLOAT)],
            output: vec![value_info("y", FLOAT)],
            ..GraphProto::default()
        };
        let mut rewritten = original.clone();
        rewritten.node.insert(
            1,
            node(
                "QuantizeLinear",
                Some("mid_QuantizeLinear"),
                &["mid", "mid_scale"],
                &["mid_q"],
            ),
        );
        rewritten.node[2].input[0] = "mid_q".into();
        rewritten
            .initializer
            .push(f32_tensor("mid_scale", &[], &[0.5]));
        compact_names(&original, &mut rewritten);
        let n = &rewritten.node;
        assert_eq!(
            (n[0].name.as_deref(), n[0].input[0].as_str()),
            (Some("r"), "x")
        );
        assert_eq!(n[1].name, None, "added nodes lose their names");
        assert_eq!(n[1].input, ["a", "b"]);
        assert_eq!(
            (n[2].input[0].as_str(), n[2].output[0].as_str()),
            ("c", "y")
        );
        assert_eq!(rewritten.initializer[0].name.as_deref(), Some("b"));
    }

    #[test]
    fn short_names_are_distinct_identifiers() {
        let names: Vec<String> = (0..52 + 52 * 62 + 10).map(short_name).collect();
        assert_eq!((names[0].as_str(), names[51].as_str()), ("a", "Z"));
        assert_eq!((names[52].as_str(), names[53].as_str()), ("aa", "ab"));
        assert_eq!(names[52 + 52 * 62].as_str(), "aaa");
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert!(names.iter().all(|n| n.as_bytes()[0].is_ascii_alphabetic()
            && n.bytes().all(|b| b.is_ascii_alphanumeric())));
    }
}
