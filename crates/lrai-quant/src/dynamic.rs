//! Dynamic INT8: int8 per-channel weights, activations quantized at run time.
//!
//! A MatMul (or Gemm) `y = x·W` with constant `W[K,N]` becomes, as ONNX Runtime's own
//! `quantize_dynamic` writes it:
//!
//! ```text
//! x_q, x_s, x_zp = DynamicQuantizeLinear(x)            (u8, one per distinct x)
//! y = Cast(MatMulInteger(x_q, W_i8, x_zp, W_zp[N])) · Mul(x_s, W_scale[N])  (+ bias)
//! ```
//!
//! ONNX Runtime fuses that chain into `DynamicQuantizeMatMul` (one u8×s8 GEMM with the
//! rescale and bias folded in); the QDQ spelling of the same thing (`DQ(DynamicQuantize
//! Linear(x))`) is not fused and runs as a float MatMul plus conversions. Everything
//! here is standard ONNX (opset ≥ 11), so every runtime and LRAI's verifier can read it.
//!
//! Embedding tables read by `Gather` become int8 tables (per column, full 8 bits)
//! followed by `DequantizeLinear`: a size win (MiniLM's word embeddings are half its
//! weights) at no speed cost. MatMuls of two activations (attention scores) can be quantized too
//! (both sides dynamically), when asked.

use std::collections::{HashMap, HashSet};

use lrai_onnx::ModelProto;
use lrai_onnx::pb::NodeProto;

use crate::graph::{
    self, FLOAT, GraphIndex, Names, attr_f, attr_i, int_attr, make_node, node_key, op,
};
use crate::params;
use crate::plan::{Layer, Plan};
use crate::{QuantError, Result};

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// MatMul/Gemm with constant weight (`transposed`: stored [N,K]) and optional bias.
    Weighted {
        transposed: bool,
        bias: Option<String>,
    },
    /// MatMul of two activations.
    Activations,
    /// Gather from a constant float table along axis 0.
    Embedding,
}

#[derive(Debug, Clone)]
struct Unit {
    node: usize,
    kind: Kind,
}

/// The dynamic plan for a model.
#[derive(Debug, Clone)]
pub(crate) struct DynamicPlan {
    units: Vec<Unit>,
    /// Layers for sensitivity and the report.
    pub(crate) plan: Plan,
}

fn classify(
    index: &GraphIndex<'_>,
    n: &NodeProto,
    activation_matmuls: bool,
    opset: i64,
) -> Option<Kind> {
    if !graph::default_domain(n) {
        return None;
    }
    let x = n.input.first()?;
    match op(n) {
        "MatMul" | "Gemm" => {
            if !index.is_float(x) || index.constant(x).is_some() {
                return None;
            }
            let w = n.input.get(1)?;
            if let Some(wt) = index.constant(w) {
                if wt.data_type != Some(FLOAT) || wt.dims.len() != 2 {
                    return None;
                }
                if op(n) == "MatMul" {
                    return Some(Kind::Weighted {
                        transposed: false,
                        bias: None,
                    });
                }
                if attr_i(n, "transA", 0) != 0
                    || attr_f(n, "alpha", 1.0) != 1.0
                    || attr_f(n, "beta", 1.0) != 1.0
                {
                    return None;
                }
                let bias = n.input.get(2).filter(|s| !s.is_empty()).cloned();
                if let Some(b) = &bias
                    && !index.is_float(b)
                {
                    return None;
                }
                return Some(Kind::Weighted {
                    transposed: attr_i(n, "transB", 0) == 1,
                    bias,
                });
            }
            (activation_matmuls && op(n) == "MatMul" && index.is_float(w))
                .then_some(Kind::Activations)
        }
        "Gather" => {
            let t = index.constant(x)?;
            (opset >= 13
                && t.data_type == Some(FLOAT)
                && t.dims.len() == 2
                && attr_i(n, "axis", 0) == 0)
                .then_some(Kind::Embedding)
        }
        _ => None,
    }
}

/// Finds what dynamic mode can quantize.
///
/// # Errors
/// [`QuantError::Model`] when the model has no graph or an opset below 11.
pub(crate) fn analyze(
    model: &ModelProto,
    name: &str,
    activation_matmuls: bool,
) -> Result<DynamicPlan> {
    let graph = model.graph.as_ref().ok_or_else(|| QuantError::Model {
        model: name.to_string(),
        reason: "it has no graph".into(),
    })?;
    let opset = graph::onnx_opset(model);
    if opset < 11 {
        return Err(QuantError::Model {
            model: name.to_string(),
            reason: format!(
                "its opset is {opset}; DynamicQuantizeLinear needs opset 11 or newer (re-export the model with opset_version >= 13)"
            ),
        });
    }
    let index = GraphIndex::new(graph);
    let mut units = Vec::new();
    let mut layers = Vec::new();
    let mut covered = HashSet::new();
    for (i, n) in graph.node.iter().enumerate() {
        if let Some(kind) = classify(&index, n, activation_matmuls, opset) {
            covered.insert(i);
            layers.push(Layer {
                key: node_key(n),
                op: op(n).to_string(),
            });
            units.push(Unit { node: i, kind });
        }
    }
    let unsupported = crate::qdq::float_ops_left(&index, &covered);
    Ok(DynamicPlan {
        units,
        plan: Plan {
            layers,
            unsupported,
        },
    })
}

/// Shared `DynamicQuantizeLinear` outputs of one activation: (q, scale, zero point).
type Dql = (String, String, String);

/// Writes the dynamic model with every layer quantized except those in `float_layers`.
///
/// # Errors
/// [`QuantError::Model`] when a weight cannot be read (external data).
pub(crate) fn apply(
    model: &ModelProto,
    plan: &DynamicPlan,
    float_layers: &HashSet<String>,
    reduce_range: bool,
) -> Result<ModelProto> {
    let mut out = model.clone();
    let Some(graph) = model.graph.as_ref() else {
        return Ok(out);
    };
    let index = GraphIndex::new(graph);
    let mut names = Names::new(graph);
    let active: HashMap<usize, &Kind> = plan
        .units
        .iter()
        .filter(|u| !float_layers.contains(&node_key(&graph.node[u.node])))
        .map(|u| (u.node, &u.kind))
        .collect();
    let mut inits = Vec::new();
    let mut nodes = Vec::with_capacity(graph.node.len() * 2);
    let mut dql: HashMap<String, Dql> = HashMap::new();
    let mut weights: HashMap<String, (String, String, String)> = HashMap::new();
    let folds = scale_folds(&index, &active);
    let folded: HashSet<usize> = folds.values().map(|f| f.0).collect();

    for (i, n) in graph.node.iter().enumerate() {
        if folded.contains(&i) {
            continue;
        }
        let Some(kind) = active.get(&i) else {
            nodes.push(n.clone());
            continue;
        };
        let key = node_key(n);
        let y = n.output.first().cloned().unwrap_or_default();
        match kind {
            Kind::Embedding => {
                // Full 8 bits: a table is only gathered, never fed to a u8×s8 GEMM, so
                // the saturation that 7-bit weights avoid cannot happen here.
                let (table, scale, zp) = quantized_weight(
                    &index,
                    &n.input[0],
                    1,
                    false,
                    false,
                    &mut names,
                    &mut inits,
                    &mut weights,
                )?;
                let gathered = names.fresh(&format!("{y}_i8"));
                let mut g = n.clone();
                g.input[0] = table;
                g.output = vec![gathered.clone()];
                nodes.push(g);
                nodes.push(make_node(
                    "DequantizeLinear",
                    names.fresh(&format!("{key}_DequantizeLinear")),
                    vec![gathered, scale, zp],
                    vec![y],
                    vec![int_attr("axis", -1)],
                ));
            }
            Kind::Weighted { transposed, bias } => {
                let a = dynamic_quantize(&n.input[0], &mut names, &mut nodes, &mut dql);
                let (w, w_scale, w_zp) = quantized_weight(
                    &index,
                    &n.input[1],
                    1,
                    *transposed,
                    reduce_range,
                    &mut names,
                    &mut inits,
                    &mut weights,
                )?;
                let mm_out = if bias.is_some() {
                    names.fresh(&format!("{y}_mm"))
                } else {
                    y.clone()
                };
                integer_matmul(
                    &key,
                    (a, (w, w_scale, w_zp)),
                    &mm_out,
                    &mut names,
                    &mut nodes,
                );
                if let Some(b) = bias {
                    nodes.push(make_node(
                        "Add",
                        names.fresh(&format!("{key}_bias")),
                        vec![mm_out, b.clone()],
                        vec![y],
                        vec![],
                    ));
                }
            }
            Kind::Activations => {
                let a = dynamic_quantize(&n.input[0], &mut names, &mut nodes, &mut dql);
                let mut b = dynamic_quantize(&n.input[1], &mut names, &mut nodes, &mut dql);
                let mut y = y;
                if let Some((_, c, out)) = folds.get(&i) {
                    // `MatMul → Mul(c)` (attention's 1/√d): c joins b's scale, so the
                    // product is one fused kernel instead of a pass over the scores.
                    let cn = names.fresh(&format!("{key}_factor"));
                    inits.push(graph::f32_tensor(&cn, &[], &[*c]));
                    let bc = names.fresh(&format!("{key}_b_scale"));
                    nodes.push(make_node(
                        "Mul",
                        names.fresh(&format!("{key}_b_scale_mul")),
                        vec![b.1.clone(), cn],
                        vec![bc.clone()],
                        vec![],
                    ));
                    b.1 = bc;
                    y.clone_from(out);
                }
                integer_matmul(&key, (a, b), &y, &mut names, &mut nodes);
            }
        }
    }
    let g = out.graph.get_or_insert_with(Default::default);
    g.node = nodes;
    g.initializer.extend(inits);
    graph::prune(g);
    Ok(out)
}

/// Quantized MatMuls of two activations whose only reader multiplies (or divides) by a
/// scalar constant: matmul node → (the Mul/Div node, the factor, its output).
fn scale_folds(
    index: &GraphIndex<'_>,
    active: &HashMap<usize, &Kind>,
) -> HashMap<usize, (usize, f32, String)> {
    let mut out = HashMap::new();
    for (&i, kind) in active {
        if **kind != Kind::Activations {
            continue;
        }
        let Some(y) = index.graph.node[i].output.first() else {
            continue;
        };
        let [r] = index.consumers_of(y) else { continue };
        let m = &index.graph.node[*r];
        if index.outputs.contains(y.as_str())
            || !graph::default_domain(m)
            || m.input.len() != 2
            || m.input[0] != *y
        {
            continue;
        }
        let Some(v) = index.constant_f32(&m.input[1]) else {
            continue;
        };
        let ([v], Some(o)) = (v.as_slice(), m.output.first()) else {
            continue;
        };
        let c = match op(m) {
            "Mul" => *v,
            "Div" if *v != 0.0 => 1.0 / *v,
            _ => continue,
        };
        if c.is_finite() && index.is_float(o) {
            out.insert(i, (*r, c, o.clone()));
        }
    }
    out
}

fn dynamic_quantize(
    x: &str,
    names: &mut Names,
    nodes: &mut Vec<NodeProto>,
    cache: &mut HashMap<String, Dql>,
) -> Dql {
    if let Some(d) = cache.get(x) {
        return d.clone();
    }
    let d = (
        names.fresh(&format!("{x}_quantized")),
        names.fresh(&format!("{x}_scale")),
        names.fresh(&format!("{x}_zero_point")),
    );
    nodes.push(make_node(
        "DynamicQuantizeLinear",
        names.fresh(&format!("{x}_DynamicQuantizeLinear")),
        vec![x.to_string()],
        vec![d.0.clone(), d.1.clone(), d.2.clone()],
        vec![],
    ));
    cache.insert(x.to_string(), d.clone());
    d
}

/// `Cast(MatMulInteger(a, b)) · (a_scale · b_scale)` written to `y`, in the order ONNX
/// Runtime's fusion expects (scale product first, as `quantize_dynamic` writes it).
fn integer_matmul(
    key: &str,
    (a, b): (Dql, Dql),
    y: &str,
    names: &mut Names,
    nodes: &mut Vec<NodeProto>,
) {
    let scales = names.fresh(&format!("{key}_scales"));
    nodes.push(make_node(
        "Mul",
        names.fresh(&format!("{key}_scales_mul")),
        vec![a.1, b.1],
        vec![scales.clone()],
        vec![],
    ));
    let acc = names.fresh(&format!("{y}_i32"));
    nodes.push(make_node(
        "MatMulInteger",
        names.fresh(&format!("{key}_MatMulInteger")),
        vec![a.0, b.0, a.2, b.2],
        vec![acc.clone()],
        vec![],
    ));
    let cast = names.fresh(&format!("{y}_f32"));
    nodes.push(make_node(
        "Cast",
        names.fresh(&format!("{key}_cast")),
        vec![acc],
        vec![cast.clone()],
        vec![int_attr("to", i64::from(FLOAT))],
    ));
    nodes.push(make_node(
        "Mul",
        names.fresh(&format!("{key}_rescale")),
        vec![cast, scales],
        vec![y.to_string()],
        vec![],
    ));
}

/// The int8 version of a constant 2-D weight, per channel along `axis` of the stored
/// (after optional transpose) [K,N] layout; one copy per (weight, layout).
#[allow(clippy::too_many_arguments)]
fn quantized_weight(
    index: &GraphIndex<'_>,
    w: &str,
    axis: usize,
    transpose: bool,
    reduce_range: bool,
    names: &mut Names,
    inits: &mut Vec<lrai_onnx::TensorProto>,
    cache: &mut HashMap<String, (String, String, String)>,
) -> Result<(String, String, String)> {
    let key = format!("{w}@{transpose}@{reduce_range}");
    if let Some(c) = cache.get(&key) {
        return Ok(c.clone());
    }
    let t = index.constant(w).ok_or_else(|| QuantError::Model {
        model: String::new(),
        reason: format!("weight '{w}' is not a constant"),
    })?;
    let values = graph::to_f32(t).ok_or_else(|| QuantError::Model {
        model: String::new(),
        reason: format!(
            "weight '{w}' cannot be read (external data is not supported; save the model with its weights inside)"
        ),
    })?;
    let mut dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect();
    let values = if transpose && dims.len() == 2 {
        let (r, c) = (dims[0], dims[1]);
        let mut tr = vec![0f32; values.len()];
        for i in 0..r {
            for j in 0..c {
                tr[j * r + i] = values[i * c + j];
            }
        }
        dims = vec![c, r];
        tr
    } else {
        values
    };
    let q = params::quantize_per_channel(&values, &dims, axis, reduce_range);
    let base = if transpose {
        format!("{w}_kn")
    } else {
        w.to_string()
    };
    let qn = names.fresh(&format!("{base}_quantized"));
    let sn = names.fresh(&format!("{base}_scale"));
    let zn = names.fresh(&format!("{base}_zero_point"));
    let dims_i64: Vec<i64> = dims
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(0))
        .collect();
    let c = [i64::try_from(q.scales.len()).unwrap_or(0)];
    inits.push(graph::i8_tensor(&qn, &dims_i64, &q.values));
    inits.push(graph::f32_tensor(&sn, &c, &q.scales));
    inits.push(graph::i8_tensor(&zn, &c, &vec![0; q.scales.len()]));
    let out = (qn, sn, zn);
    cache.insert(key, out.clone());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_onnx::pb::{GraphProto, OperatorSetIdProto};

    use crate::graph::test_node as node;

    #[test]
    fn attention_scale_joins_the_integer_matmul() {
        let model = ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            graph: Some(GraphProto {
                node: vec![
                    node("MatMul", "scores", &["q", "k"], &["s"]),
                    node("Div", "scale", &["s", "d"], &["y"]),
                ],
                initializer: vec![graph::f32_tensor("d", &[], &[4.0])],
                input: vec![graph::value_info("q", FLOAT), graph::value_info("k", FLOAT)],
                output: vec![graph::value_info("y", FLOAT)],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let plan = analyze(&model, "m", true).unwrap();
        let out = apply(&model, &plan, &HashSet::new(), false).unwrap();
        let g = out.graph.unwrap();
        let ops: Vec<&str> = g.node.iter().map(op).collect();
        assert!(!ops.contains(&"Div"), "{ops:?}");
        // The rescale writes the Div's output; the factor 1/4 multiplies k's scale.
        let last = g.node.last().unwrap();
        assert_eq!((op(last), last.output[0].as_str()), ("Mul", "y"));
        let factor = g
            .initializer
            .iter()
            .find(|t| t.dims.is_empty() && graph::to_f32(t) == Some(vec![0.25]));
        assert!(factor.is_some(), "{:?}", g.initializer);
        // Not folded when the MatMul output has another reader.
        let mut two = model;
        let gr = two.graph.as_mut().unwrap();
        gr.node.push(node("Relu", "r", &["s"], &["z"]));
        gr.output.push(graph::value_info("z", FLOAT));
        let plan = analyze(&two, "m", true).unwrap();
        let out = apply(&two, &plan, &HashSet::new(), false).unwrap();
        assert!(out.graph.unwrap().node.iter().any(|n| op(n) == "Div"));
    }

    #[test]
    fn embedding_tables_use_all_eight_bits() {
        let table: Vec<f32> = (0..12)
            .map(|i| f32::from(i8::try_from(i).unwrap()) - 5.5)
            .collect();
        let model = ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            graph: Some(GraphProto {
                node: vec![node("Gather", "emb", &["table", "ids"], &["y"])],
                initializer: vec![graph::f32_tensor("table", &[4, 3], &table)],
                input: vec![graph::value_info("ids", graph::INT64)],
                output: vec![graph::value_info("y", FLOAT)],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let plan = analyze(&model, "m", false).unwrap();
        // reduce_range on: the table still uses all 8 bits (it never meets a GEMM).
        let out = apply(&model, &plan, &HashSet::new(), true).unwrap();
        let g = out.graph.unwrap();
        let ops: Vec<&str> = g.node.iter().map(op).collect();
        assert_eq!(ops, ["Gather", "DequantizeLinear"]);
        let codes = g
            .initializer
            .iter()
            .find(|t| t.data_type == Some(graph::INT8) && t.dims == [4, 3])
            .and_then(|t| t.raw_data.as_deref())
            .unwrap();
        assert_eq!(
            codes.iter().map(|&b| b.cast_signed().unsigned_abs()).max(),
            Some(127)
        );
        assert_eq!(g.node.last().unwrap().output[0], "y");
    }
}
