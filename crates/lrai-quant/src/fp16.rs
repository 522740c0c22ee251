//! FP16: float32 weights, constants and computations become float16, while the model's
//! inputs and outputs stay float32 (a `Cast` after each float input and before each
//! float output), so callers see the same interface.
//!
//! `Gemm` becomes `MatMul` (+ `Add`): tract's Gemm computes float16 inputs into a
//! float32 output and then refuses its own graph, while MatMul/Add stay in float16.
//!
//! Some inputs must stay float32 whatever `T` is (`Resize` scales and roi, the `ratio`
//! of `Dropout`); those constants are left alone. A value far outside float16's range
//! (|x| > 65504) saturates to ±65504 instead of becoming infinite.

use std::collections::HashSet;

use lrai_onnx::ModelProto;
use lrai_onnx::pb::{AttributeProto, TensorProto};

use crate::graph::{self, FLOAT, FLOAT16, GraphIndex, Names, int_attr, make_node, op};
use crate::plan::Plan;
use crate::{QuantError, Result};

const F16_MAX: f32 = 65504.0;

/// Inputs (op, slot) that stay float32 whatever the node's float type is.
fn keeps_f32(op_type: &str, slot: usize) -> bool {
    matches!(
        (op_type, slot),
        ("Resize", 1 | 2) | ("Dropout", 1) | ("Upsample", 1)
    )
}

fn to_f16(t: &TensorProto) -> Option<TensorProto> {
    if t.data_type != Some(FLOAT) {
        return None;
    }
    let values = graph::to_f32(t)?;
    let clamped: Vec<f32> = values.iter().map(|v| v.clamp(-F16_MAX, F16_MAX)).collect();
    let mut out = graph::f16_tensor(t.name.as_deref().unwrap_or(""), &t.dims, &clamped);
    out.name.clone_from(&t.name);
    Some(out)
}

fn convert_attr(a: &mut AttributeProto) {
    if let Some(t) = a.t.as_mut()
        && let Some(h) = to_f16(t)
    {
        *t = h;
    }
}

/// The fp16 plan: no per-layer choice (the whole graph converts), but the report still
/// lists the ops that stay float32.
pub(crate) fn plan(model: &ModelProto) -> Plan {
    let _ = model;
    Plan::default()
}

/// `Gemm(A, B, C)` with `transA = 0`, `alpha = beta = 1` as `MatMul(A, B or Bᵀ)` then
/// `Add(C)`; a constant `B` is transposed here (a new float16 initializer), any other
/// through a `Transpose` node.
fn gemm_as_matmul(
    n: &lrai_onnx::NodeProto,
    index: &GraphIndex<'_>,
    names: &mut Names,
    new_inits: &mut Vec<TensorProto>,
) -> Option<Vec<lrai_onnx::NodeProto>> {
    use crate::graph::{attr_f, attr_i};
    if op(n) != "Gemm"
        || attr_i(n, "transA", 0) != 0
        || attr_f(n, "alpha", 1.0) != 1.0
        || attr_f(n, "beta", 1.0) != 1.0
    {
        return None;
    }
    let (a, b) = (n.input.first()?.clone(), n.input.get(1)?.clone());
    let y = n.output.first()?.clone();
    let key = crate::graph::node_key(n);
    let mut out = Vec::new();
    let b = if attr_i(n, "transB", 0) == 1 {
        let constant = index
            .constant(&b)
            .filter(|t| t.dims.len() == 2)
            .and_then(|t| Some((t.dims.clone(), graph::to_f32(t)?)));
        let t = names.fresh(&format!("{b}_t"));
        if let Some((dims, v)) = constant {
            let (r, c) = (
                usize::try_from(dims[0]).ok()?,
                usize::try_from(dims[1]).ok()?,
            );
            let mut tr = vec![0f32; v.len()];
            for i in 0..r {
                for j in 0..c {
                    tr[j * r + i] = v[i * c + j].clamp(-F16_MAX, F16_MAX);
                }
            }
            new_inits.push(graph::f16_tensor(&t, &[dims[1], dims[0]], &tr));
        } else {
            out.push(make_node(
                "Transpose",
                names.fresh(&format!("{key}_transpose")),
                vec![b],
                vec![t.clone()],
                vec![],
            ));
        }
        t
    } else {
        b
    };
    let c = n.input.get(2).filter(|s| !s.is_empty()).cloned();
    let mm = if c.is_some() {
        names.fresh(&format!("{y}_mm"))
    } else {
        y.clone()
    };
    out.push(make_node(
        "MatMul",
        names.fresh(&format!("{key}_matmul")),
        vec![a, b],
        vec![mm.clone()],
        vec![],
    ));
    if let Some(c) = c {
        out.push(make_node(
            "Add",
            names.fresh(&format!("{key}_bias")),
            vec![mm, c],
            vec![y],
            vec![],
        ));
    }
    Some(out)
}

/// Converts the model to float16 inside, float32 at the edges.
///
/// # Errors
/// [`QuantError::Model`] for a graph with subgraphs holding float tensors
/// (If/Loop/Scan bodies are not converted) or external data.
pub(crate) fn apply(model: &ModelProto, name: &str) -> Result<ModelProto> {
    let mut out = model.clone();
    let Some(graph) = model.graph.as_ref() else {
        return Ok(out);
    };
    if graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    }) {
        return Err(QuantError::Model {
            model: name.to_string(),
            reason: "fp16 conversion does not handle control flow (If/Loop/Scan) yet; use --precision int8".into(),
        });
    }
    let index = GraphIndex::new(graph);
    let mut names = Names::new(graph);
    // Constants read at a float32-only slot stay float32.
    let mut keep: HashSet<&str> = HashSet::new();
    for n in &graph.node {
        for (slot, i) in n.input.iter().enumerate() {
            if keeps_f32(op(n), slot) {
                keep.insert(i.as_str());
            }
        }
    }
    let mut inits = Vec::with_capacity(graph.initializer.len());
    for t in &graph.initializer {
        let skip = t.name.as_deref().is_some_and(|n| keep.contains(n));
        if graph::is_external(t) && t.data_type == Some(FLOAT) {
            return Err(QuantError::Model {
                model: name.to_string(),
                reason: format!(
                    "initializer '{}' lives in external data; save the model with its weights inside",
                    t.name.as_deref().unwrap_or("")
                ),
            });
        }
        inits.push(if skip {
            t.clone()
        } else {
            to_f16(t).unwrap_or_else(|| t.clone())
        });
    }
    let mut nodes = Vec::with_capacity(graph.node.len() + 8);
    // Float inputs: cast once to f16 under a new name that readers use instead.
    let mut renamed: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for v in &graph.input {
        let Some(n) = v.name.as_deref() else { continue };
        if index.is_initializer(n) || graph::declared_type(v) != Some(FLOAT) {
            continue;
        }
        let h = names.fresh(&format!("{n}_fp16"));
        nodes.push(make_node(
            "Cast",
            names.fresh(&format!("{n}_to_fp16")),
            vec![n.to_string()],
            vec![h.clone()],
            vec![int_attr("to", i64::from(FLOAT16))],
        ));
        renamed.insert(n.to_string(), h);
    }
    // Float outputs: the graph computes `<out>_fp16`, then a Cast gives the f32 output.
    let mut out_casts = Vec::new();
    let mut out_renamed: std::collections::HashMap<String, String> =
        std::collections::HashMap::new();
    for v in &graph.output {
        let Some(n) = v.name.as_deref() else { continue };
        if graph::declared_type(v) != Some(FLOAT) {
            continue;
        }
        let h = names.fresh(&format!("{n}_fp16"));
        out_casts.push(make_node(
            "Cast",
            names.fresh(&format!("{n}_to_fp32")),
            vec![h.clone()],
            vec![n.to_string()],
            vec![int_attr("to", i64::from(FLOAT))],
        ));
        out_renamed.insert(n.to_string(), h);
    }
    for n in &graph.node {
        let mut node = n.clone();
        for (slot, i) in node.input.iter_mut().enumerate() {
            if keeps_f32(op(n), slot) {
                continue;
            }
            if let Some(r) = renamed
                .get(i.as_str())
                .or_else(|| out_renamed.get(i.as_str()))
            {
                i.clone_from(r);
            }
        }
        for o in &mut node.output {
            if let Some(r) = out_renamed.get(o.as_str()) {
                o.clone_from(r);
            }
        }
        if let Some(replacement) = gemm_as_matmul(&node, &index, &mut names, &mut inits) {
            nodes.extend(replacement);
            continue;
        }
        match op(n) {
            "Cast" => {
                for a in &mut node.attribute {
                    if a.name.as_deref() == Some("to") && a.i == Some(i64::from(FLOAT)) {
                        a.i = Some(i64::from(FLOAT16));
                    }
                }
            }
            "Constant" | "ConstantOfShape" => {
                let keep_it = n.output.iter().any(|o| keep.contains(o.as_str()));
                if !keep_it {
                    node.attribute.iter_mut().for_each(convert_attr);
                }
            }
            _ => {}
        }
        nodes.push(node);
    }
    nodes.extend(out_casts);
    let g = out.graph.get_or_insert_with(Default::default);
    g.node = nodes;
    g.initializer = inits;
    graph::prune(g);
    // Types of intermediate values changed; stale value_info would contradict them.
    g.value_info.clear();
    Ok(out)
}
