//! Rewrites that keep a graph's meaning and let tract run it correctly, applied before a
//! model is handed to tract. Each rule finds its pattern and returns a [`GraphPatch`];
//! [`prepare_for_tract`] applies them until none matches and says what it did.
//!
//! - **Dequantize before a non-element-wise op.** tract fuses `DequantizeLinear → … →
//!   QuantizeLinear` into a 256-entry lookup table when everything between looks
//!   element-wise from its axes, which `Softmax` does: the table applies softmax to the
//!   256 possible values instead of along the axis, and every output saturates (issue
//!   14; reproducer: `scripts/tract-repro/make.py`, case `qdq_softmax`). Writing such a
//!   `DequantizeLinear` as its arithmetic, `(Cast(x) − Cast(zero_point)) × scale`, gives
//!   the same values (ONNX Runtime computes `(x − zp) × scale` too, and every 8-bit
//!   difference is exact in f32) and leaves tract nothing to fuse.
//! - **`ai.onnx.ml.Scaler` as arithmetic.** `Y = (X − offset) × scale` in f32, which is
//!   what ONNX Runtime computes; tract has no `Scaler` (scikit-learn's `StandardScaler`).
//! - **`BatchNormalization` with computed parameters as arithmetic** (tract folds the
//!   parameters at load and needs them constant; [`crate::batchnorm`]).
//! - **`Loop` as `Scan`.** tract has no `Loop`; a counted loop that never stops early (a
//!   PyTorch `for`) is a `Scan` over `Range(0, M)` ([`crate::loops`]).

use std::collections::HashMap;

use crate::patch::{GraphError, GraphPatch, subgraphs};
use crate::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, attribute_proto, tensor_proto};

/// Ops that compute each output element from the input element at the same place (so a
/// lookup table over an 8-bit input is exact for them).
const ELEMENT_WISE: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "Cast",
    "Ceil",
    "Celu",
    "Clip",
    "Cos",
    "Cosh",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Log",
    "Mish",
    "Neg",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
];

/// A model rewritten for tract, and one line per rewrite made.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The rewritten model.
    pub model: ModelProto,
    /// What was rewritten, one entry per rewrite (node names included).
    pub notes: Vec<String>,
}

/// Applies every rule to the main graph until none matches (at most once per node).
/// `None` when nothing needed rewriting.
///
/// # Errors
/// [`GraphError`] when a rewrite would break the graph (a bug in a rule; the caller
/// should then use the model as it is).
pub fn prepare_for_tract(model: &ModelProto) -> Result<Option<Prepared>, GraphError> {
    let Some(graph) = model.graph.as_ref() else {
        return Ok(None);
    };
    let mut graph = graph.clone();
    let mut notes = Vec::new();
    let limit = graph.node.len() + 1;
    let opset = default_opset(model);
    for _ in 0..limit {
        let found = dequantize_before_non_element_wise(&graph)
            .or_else(|| crate::loops::loop_as_scan(&graph, opset))
            .or_else(|| scaler_as_arithmetic(&graph))
            .or_else(|| crate::batchnorm::computed_batchnorm(&graph));
        let Some((patch, note)) = found else {
            break;
        };
        patch.apply(&mut graph)?;
        notes.push(note);
    }
    if notes.is_empty() {
        return Ok(None);
    }
    let mut model = model.clone();
    model.graph = Some(graph);
    Ok(Some(Prepared { model, notes }))
}

fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("" | "ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(0)
}

/// How many places read each tensor: node inputs, subgraph captures and graph outputs.
fn readers(graph: &GraphProto) -> HashMap<&str, Vec<usize>> {
    let mut map: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in node.input.iter().filter(|s| !s.is_empty()) {
            map.entry(input.as_str()).or_default().push(i);
        }
        // A subgraph reading an outer tensor counts as a reader too.
        for sub in subgraphs(node) {
            for inner in sub.node.iter().flat_map(|n| n.input.iter()) {
                if let Some(v) = map.get_mut(inner.as_str()) {
                    v.push(i);
                }
            }
        }
    }
    for output in &graph.output {
        if let Some(name) = output.name.as_deref() {
            map.entry(name).or_default().push(usize::MAX);
        }
    }
    map
}

fn op(node: &NodeProto) -> &str {
    match node.domain.as_deref() {
        None | Some("" | "ai.onnx") => node.op_type.as_deref().unwrap_or(""),
        Some(_) => "",
    }
}

pub(crate) fn label(node: &NodeProto) -> String {
    node.name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}:{}", op(node), node.output.first().map_or("", |s| s)))
}

/// The first `DequantizeLinear` whose single-reader chain of one-input ops reaches a
/// `QuantizeLinear` through an op that is not element-wise, with its rewrite.
fn dequantize_before_non_element_wise(graph: &GraphProto) -> Option<(GraphPatch, String)> {
    let readers = readers(graph);
    graph.node.iter().enumerate().find_map(|(index, node)| {
        if op(node) != "DequantizeLinear" {
            return None;
        }
        let culprit = non_element_wise_before_quantize(graph, &readers, node)?;
        let patch = arithmetic_dequantize(graph, index, node)?;
        let note = format!(
            "DequantizeLinear '{}' written as Cast/Sub/Mul: it feeds QuantizeLinear through '{}' ({}), which tract would fold into a lookup table",
            label(node),
            label(culprit),
            op(culprit)
        );
        Some((patch, note))
    })
}

/// Follows the chain from a `DequantizeLinear` the way tract does; the first op in it
/// that is not element-wise, if the chain ends in a `QuantizeLinear`.
fn non_element_wise_before_quantize<'g>(
    graph: &'g GraphProto,
    readers: &HashMap<&str, Vec<usize>>,
    dequantize: &'g NodeProto,
) -> Option<&'g NodeProto> {
    let mut current = dequantize;
    let mut culprit = None;
    for _ in 0..graph.node.len() {
        let out = current.output.first()?;
        let &[next] = readers.get(out.as_str())?.as_slice() else {
            return None;
        };
        let next = graph.node.get(next)?;
        if op(next) == "QuantizeLinear" {
            return culprit;
        }
        if next.input.iter().filter(|i| !i.is_empty()).count() != 1 || next.output.len() != 1 {
            return None;
        }
        if culprit.is_none() && !ELEMENT_WISE.contains(&op(next)) {
            culprit = Some(next);
        }
        current = next;
    }
    None
}

/// `y = DequantizeLinear(x, scale, zp)` as `Mul(Sub(Cast(x), Cast(zp)), scale)`, for a
/// per-tensor scale held in an initializer.
fn arithmetic_dequantize(graph: &GraphProto, index: usize, node: &NodeProto) -> Option<GraphPatch> {
    let (x, scale) = (node.input.first()?, node.input.get(1)?);
    let scale_init = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(scale.as_str()))?;
    if scale_init.dims.iter().product::<i64>() != 1 {
        return None;
    }
    let to = scale_init
        .data_type
        .unwrap_or(tensor_proto::DataType::Float as i32);
    let y = node.output.first()?;
    let base = format!("{}/lrai_dq", label(node));
    let cast = |input: &str, output: String| {
        make(
            &format!("{output}_cast"),
            "Cast",
            &[input],
            &output,
            vec![int_attr("to", i64::from(to))],
        )
    };
    let x_float = format!("{base}/x");
    let mut nodes = vec![cast(x, x_float.clone())];
    let centred = match node.input.get(2).filter(|z| !z.is_empty()) {
        Some(zp) => {
            let zp_float = format!("{base}/zp");
            nodes.push(cast(zp, zp_float.clone()));
            let centred = format!("{base}/centred");
            nodes.push(make(
                &format!("{base}/sub"),
                "Sub",
                &[&x_float, &zp_float],
                &centred,
                vec![],
            ));
            centred
        }
        None => x_float,
    };
    nodes.push(make(
        &format!("{base}/mul"),
        "Mul",
        &[&centred, scale],
        y,
        vec![],
    ));
    let mut patch = GraphPatch::new();
    patch.replace_node(index, nodes);
    Some(patch)
}

/// `Y = Scaler(X)` as `Mul(Sub(Cast(X, FLOAT), offset), scale)`.
fn scaler_as_arithmetic(graph: &GraphProto) -> Option<(GraphPatch, String)> {
    graph.node.iter().enumerate().find_map(|(index, node)| {
        let is_scaler = node.op_type.as_deref() == Some("Scaler")
            && node.domain.as_deref() == Some("ai.onnx.ml");
        if !is_scaler {
            return None;
        }
        let floats = |name: &str| {
            node.attribute
                .iter()
                .find(|a| a.name.as_deref() == Some(name))
                .map_or_else(Vec::new, |a| a.floats.clone())
        };
        let (offset, scale) = (floats("offset"), floats("scale"));
        let (x, y) = (node.input.first()?, node.output.first()?);
        let base = format!("{}/lrai_scaler", label(node));
        let float = tensor_proto::DataType::Float as i32;
        let vector = |name: String, values: Vec<f32>| crate::pb::TensorProto {
            name: Some(name),
            data_type: Some(float),
            dims: vec![i64::try_from(values.len()).unwrap_or(0)],
            float_data: values,
            ..crate::pb::TensorProto::default()
        };
        let (offset_name, scale_name) = (format!("{base}/offset"), format!("{base}/scale"));
        let (x_float, centred) = (format!("{base}/x"), format!("{base}/centred"));
        let nodes = vec![
            make(
                &format!("{base}/cast"),
                "Cast",
                &[x],
                &x_float,
                vec![int_attr("to", i64::from(float))],
            ),
            make(
                &format!("{base}/sub"),
                "Sub",
                &[&x_float, &offset_name],
                &centred,
                vec![],
            ),
            make(
                &format!("{base}/mul"),
                "Mul",
                &[&centred, &scale_name],
                y,
                vec![],
            ),
        ];
        let mut patch = GraphPatch::new();
        patch
            .add_initializer(vector(
                offset_name,
                if offset.is_empty() { vec![0.0] } else { offset },
            ))
            .add_initializer(vector(
                scale_name,
                if scale.is_empty() { vec![1.0] } else { scale },
            ))
            .replace_node(index, nodes);
        Some((
            patch,
            format!(
                "Scaler '{}' written as Cast/Sub/Mul (tract has no ai.onnx.ml.Scaler)",
                label(node)
            ),
        ))
    })
}

pub(crate) fn make(
    name: &str,
    op_type: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: Some(name.to_string()),
        op_type: Some(op_type.to_string()),
        input: inputs.iter().map(ToString::to_string).collect(),
        output: vec![output.to_string()],
        attribute,
        ..NodeProto::default()
    }
}

pub(crate) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..AttributeProto::default()
    }
}
