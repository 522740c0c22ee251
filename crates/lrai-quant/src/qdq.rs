//! Static INT8 in QDQ form: `QuantizeLinear`/`DequantizeLinear` pairs around the nodes
//! ONNX Runtime fuses into integer kernels, with scales from calibration.
//!
//! What is written, and why (ONNX Runtime's QDQ selectors, `qdq_selector_action_transformer`):
//! - Conv, Gemm, MatMul with a constant weight: `DQ(int8 weight, per-channel scale)`,
//!   bias as `DQ(int32, input_scale·weight_scale)`, activations through `Q→DQ`, and the
//!   output through `Q`. `DQ→Conv→Q` becomes QLinearConv, `DQ→Gemm→Q` QGemm,
//!   `DQ→MatMul→Q` QLinearMatMul.
//! - Add of two activations (residuals) → QLinearAdd; GlobalAveragePool/AveragePool →
//!   QLinear variants; Concat → QLinearConcat.
//! - MaxPool, Flatten, Reshape, Transpose, Squeeze, Unsqueeze pass values through, so
//!   their output reuses their input's scale; ONNX Runtime then drops the pair and runs
//!   them on the integers.
//! - A Relu or Clip(0, max) that is the only reader of a quantized node's output is
//!   removed: the output `Q` gets the activation's calibrated range with zero point at
//!   the range's bottom, so `QuantizeLinear`'s saturation does the clipping (ONNX
//!   Runtime's quantizer does the same).
//! - Each reader gets its own `DQ` (ONNX Runtime fuses a `DQ` only into a single reader).
//! - Graph outputs stay float: quantizing logits or embeddings costs accuracy and buys
//!   nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use lrai_onnx::ModelProto;
use lrai_onnx::pb::NodeProto;

use crate::calibrate::Range;
use crate::graph::{
    self, FLOAT, GraphIndex, Names, attr, attr_f, attr_i, int_attr, make_node, node_key, op,
};
use crate::params::{self, ActivationType, QParams};
use crate::plan::{Layer, Plan};
use crate::{QuantError, Result};

/// How a quantizable node is rewritten.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Conv / Gemm / MatMul with a constant weight at `weight`, per-channel along `axis`.
    Weighted {
        weight: usize,
        axis: usize,
        bias: Option<usize>,
    },
    /// Every float input is an activation (MatMul of two activations, Add, pools, Concat).
    Activations,
    /// Output keeps the input's scale.
    PassThrough,
}

#[derive(Debug, Clone)]
struct Unit {
    node: usize,
    kind: Kind,
}

/// The static plan for a model: its quantizable nodes and the tensors to calibrate.
#[derive(Debug, Clone)]
pub(crate) struct StaticPlan {
    units: Vec<Unit>,
    /// Tensors whose ranges calibration must provide.
    pub(crate) calibrate: Vec<String>,
    /// Layers (what sensitivity ranks and the report lists).
    pub(crate) plan: Plan,
}

const PASS_THROUGH: [&str; 6] = [
    "MaxPool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
];

fn weighted(index: &GraphIndex<'_>, n: &NodeProto) -> Option<Kind> {
    let w = n.input.get(1)?;
    let wt = index.constant(w)?;
    if wt.data_type != Some(FLOAT) || !index.is_float(n.input.first()?) {
        return None;
    }
    let bias_ok = |i: usize, channels: i64| match n.input.get(i).filter(|s| !s.is_empty()) {
        None => Some(None),
        Some(b) => {
            let bt = index.constant(b)?;
            (bt.data_type == Some(FLOAT) && bt.dims == [channels]).then_some(Some(i))
        }
    };
    match op(n) {
        "Conv" if wt.dims.len() >= 3 => Some(Kind::Weighted {
            weight: 1,
            axis: 0,
            bias: bias_ok(2, wt.dims[0])?,
        }),
        "Gemm"
            if wt.dims.len() == 2
                && attr_i(n, "transA", 0) == 0
                && attr_f(n, "alpha", 1.0) == 1.0
                && attr_f(n, "beta", 1.0) == 1.0 =>
        {
            let axis = if attr_i(n, "transB", 0) == 1 { 0 } else { 1 };
            Some(Kind::Weighted {
                weight: 1,
                axis,
                bias: bias_ok(2, wt.dims[axis])?,
            })
        }
        "MatMul" if wt.dims.len() == 2 => Some(Kind::Weighted {
            weight: 1,
            axis: 1,
            bias: None,
        }),
        _ => None,
    }
}

fn all_float_activations(index: &GraphIndex<'_>, n: &NodeProto) -> bool {
    !n.input.is_empty()
        && n.input
            .iter()
            .all(|i| index.is_float(i) && index.constant(i).is_none())
        && n.output.iter().all(|o| index.is_float(o))
}

/// A Relu, or a Clip whose lower bound is 0, reading `tensor` as its only reader.
fn foldable_activation(index: &GraphIndex<'_>, tensor: &str) -> Option<usize> {
    let readers = index.consumers_of(tensor);
    let [r] = readers else { return None };
    if index.outputs.contains(tensor) {
        return None;
    }
    let n = &index.graph.node[*r];
    let out = n.output.first()?;
    if index.outputs.contains(out.as_str()) {
        return None;
    }
    match op(n) {
        "Relu" => Some(*r),
        "Clip" => {
            let min = match n.input.get(1).filter(|s| !s.is_empty()) {
                Some(m) => index.constant_f32(m)?.first().copied()?,
                // Opset < 11 keeps the bounds in attributes.
                None => attr(n, "min")
                    .and_then(|a| a.f)
                    .unwrap_or(f32::NEG_INFINITY),
            };
            (min == 0.0).then_some(*r)
        }
        _ => None,
    }
}

/// Finds the quantizable nodes of a model and what must be calibrated.
///
/// # Errors
/// [`QuantError::Model`] when the model has no graph or its opset is below 13
/// (per-channel `DequantizeLinear` needs 13).
pub(crate) fn analyze(model: &ModelProto, name: &str) -> Result<StaticPlan> {
    let graph = model.graph.as_ref().ok_or_else(|| QuantError::Model {
        model: name.to_string(),
        reason: "it has no graph".into(),
    })?;
    let opset = graph::onnx_opset(model);
    if opset < 13 {
        return Err(QuantError::Model {
            model: name.to_string(),
            reason: format!(
                "its opset is {opset}; per-channel QDQ needs opset 13 or newer (re-export the model with opset_version >= 13)"
            ),
        });
    }
    let index = GraphIndex::new(graph);
    let mut units = Vec::new();
    let mut calibrate: Vec<String> = Vec::new();
    let want = |t: &str, calibrate: &mut Vec<String>| {
        if !calibrate.iter().any(|c| c == t) {
            calibrate.push(t.to_string());
        }
    };
    let mut layers = Vec::new();
    let mut covered = HashSet::new();
    for (i, n) in graph.node.iter().enumerate() {
        if !graph::default_domain(n) {
            continue;
        }
        let kind = if let Some(k) = weighted(&index, n) {
            Some(k)
        } else {
            match op(n) {
                "MatMul" | "Add" | "Concat" | "GlobalAveragePool" | "AveragePool"
                    if all_float_activations(&index, n) =>
                {
                    Some(Kind::Activations)
                }
                o if PASS_THROUGH.contains(&o)
                    && n.output.len() == 1
                    && n.input.first().is_some_and(|x| index.is_float(x)) =>
                {
                    Some(Kind::PassThrough)
                }
                _ => None,
            }
        };
        let Some(kind) = kind else { continue };
        covered.insert(i);
        if kind != Kind::PassThrough {
            for (slot, inp) in n.input.iter().enumerate() {
                if is_activation_slot(&kind, slot) && index.is_float(inp) {
                    want(inp, &mut calibrate);
                }
            }
            for o in &n.output {
                want(o, &mut calibrate);
                if let Some(a) = foldable_activation(&index, o) {
                    covered.insert(a);
                    if let Some(ao) = graph.node[a].output.first() {
                        want(ao, &mut calibrate);
                    }
                }
            }
            layers.push(Layer {
                key: node_key(n),
                op: op(n).to_string(),
            });
        }
        units.push(Unit { node: i, kind });
    }
    let unsupported = float_ops_left(&index, &covered);
    Ok(StaticPlan {
        units,
        calibrate,
        plan: Plan {
            layers,
            unsupported,
        },
    })
}

fn is_activation_slot(kind: &Kind, slot: usize) -> bool {
    match kind {
        Kind::Weighted { weight, bias, .. } => slot != *weight && Some(slot) != *bias,
        Kind::Activations => true,
        Kind::PassThrough => slot == 0,
    }
}

/// Op types (with counts) of nodes that compute floats and are not quantized.
pub(crate) fn float_ops_left(
    index: &GraphIndex<'_>,
    covered: &HashSet<usize>,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (i, n) in index.graph.node.iter().enumerate() {
        if covered.contains(&i) || op(n) == "Constant" {
            continue;
        }
        if n.output.iter().any(|o| index.is_float(o)) {
            *out.entry(op(n).to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// A quantized edge: `Q(source)` and a `DQ` for each reader of `logical`.
#[derive(Debug, Clone)]
struct Edge {
    source: String,
    params: QParams,
}

/// Quantized edges by logical tensor, iterated in the order they were found (graph
/// order), so the file written is the same on every run.
#[derive(Debug, Default)]
struct Edges {
    map: HashMap<String, Edge>,
    order: Vec<String>,
}

impl Edges {
    fn insert(&mut self, logical: String, edge: Edge) {
        if !self.map.contains_key(&logical) {
            self.order.push(logical.clone());
        }
        self.map.insert(logical, edge);
    }

    fn get(&self, logical: &str) -> Option<&Edge> {
        self.map.get(logical)
    }

    fn contains_key(&self, logical: &str) -> bool {
        self.map.contains_key(logical)
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &Edge)> {
        self.order
            .iter()
            .filter_map(|l| Some((l, self.map.get(l)?)))
    }
}

/// Settings of the static rewrite.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StaticSettings {
    /// Activation integer type.
    pub(crate) activation: ActivationType,
    /// 7-bit weights.
    pub(crate) reduce_range: bool,
    /// One weight scale per tensor instead of per output channel.
    pub(crate) per_tensor: bool,
}

/// Writes the QDQ model with every layer quantized except those in `float_layers`.
///
/// # Errors
/// [`QuantError::Model`] when a weight cannot be read (external data).
pub(crate) fn apply(
    model: &ModelProto,
    plan: &StaticPlan,
    ranges: &HashMap<String, Range>,
    float_layers: &HashSet<String>,
    settings: StaticSettings,
) -> Result<ModelProto> {
    let mut out = model.clone();
    let Some(graph) = model.graph.as_ref() else {
        return Ok(out);
    };
    let index = GraphIndex::new(graph);
    let mut names = Names::new(graph);
    let params_of = |t: &str| {
        ranges
            .get(t)
            .map(|r| params::activation_params(r.min, r.max, settings.activation))
    };

    // Which units are on, and which of them can actually be done (ranges known).
    let active: Vec<&Unit> = plan
        .units
        .iter()
        .filter(|u| {
            let n = &graph.node[u.node];
            u.kind == Kind::PassThrough || !float_layers.contains(&node_key(n))
        })
        .filter(|u| {
            let n = &graph.node[u.node];
            u.kind == Kind::PassThrough
                || n.input.iter().enumerate().all(|(s, t)| {
                    !is_activation_slot(&u.kind, s) || !index.is_float(t) || ranges.contains_key(t)
                })
        })
        .collect();

    // logical tensor → edge
    let mut edges = Edges::default();
    let mut removed: HashSet<usize> = HashSet::new();
    let quantizable_tensor =
        |t: &str| index.is_float(t) && !index.outputs.contains(t) && index.constant(t).is_none();

    // (a) outputs of compute units, folding a following Relu/Clip.
    for u in active.iter().filter(|u| u.kind != Kind::PassThrough) {
        let n = &graph.node[u.node];
        for o in &n.output {
            if !quantizable_tensor(o) {
                continue;
            }
            if let Some(a) = foldable_activation(&index, o)
                && let Some(ao) = graph.node[a].output.first()
                && let Some(p) = params_of(ao)
                && (settings.activation == ActivationType::U8)
            {
                removed.insert(a);
                edges.insert(
                    ao.clone(),
                    Edge {
                        source: o.clone(),
                        params: p,
                    },
                );
            } else if let Some(p) = params_of(o) {
                edges.insert(
                    o.clone(),
                    Edge {
                        source: o.clone(),
                        params: p,
                    },
                );
            }
        }
    }
    // (b) pass-through nodes whose input is quantized, in graph order so chains follow.
    // They run on the integers (`Q→MaxPool→Flatten→DQ`, what ONNX Runtime's QDQ
    // transformer makes of `DQ→MaxPool→Q`), which saves a Q/DQ pair and a scale each.
    let mut int_pass: HashSet<usize> = HashSet::new();
    for u in active.iter().filter(|u| u.kind == Kind::PassThrough) {
        let n = &graph.node[u.node];
        let (Some(i), Some(o)) = (n.input.first(), n.output.first()) else {
            continue;
        };
        if let Some(e) = edges.get(i)
            && quantizable_tensor(o)
        {
            let p = e.params;
            int_pass.insert(u.node);
            edges.insert(
                o.clone(),
                Edge {
                    source: o.clone(),
                    params: p,
                },
            );
        }
    }
    // (c) activation inputs of compute units.
    for u in active.iter().filter(|u| u.kind != Kind::PassThrough) {
        let n = &graph.node[u.node];
        for (s, t) in n.input.iter().enumerate() {
            if !is_activation_slot(&u.kind, s) || edges.contains_key(t) {
                continue;
            }
            let is_graph_input = graph
                .input
                .iter()
                .any(|v| v.name.as_deref() == Some(t.as_str()));
            let ok = index.is_float(t)
                && index.constant(t).is_none()
                && (is_graph_input || !index.outputs.contains(t.as_str()));
            if ok && let Some(p) = params_of(t) {
                edges.insert(
                    t.clone(),
                    Edge {
                        source: t.clone(),
                        params: p,
                    },
                );
            }
        }
    }

    // Scale / zero-point initializers per edge.
    let mut new_inits = Vec::new();
    let mut edge_qparams: HashMap<String, (String, String)> = HashMap::new();
    for (logical, e) in edges.iter() {
        let s = names.fresh(&format!("{logical}_scale"));
        let z = names.fresh(&format!("{logical}_zp"));
        new_inits.push(graph::f32_tensor(&s, &[], &[e.params.scale]));
        new_inits.push(zero_point_tensor(
            &z,
            e.params.zero_point,
            settings.activation,
        ));
        edge_qparams.insert(logical.clone(), (s, z));
    }
    // source tensor → (q output, logical)
    let mut q_of_source: HashMap<&str, (String, &str)> = HashMap::new();
    for (logical, e) in edges.iter() {
        let q = names.fresh(&format!("{logical}_q"));
        q_of_source.insert(e.source.as_str(), (q, logical.as_str()));
    }
    let q_node = |src: &str, names: &mut Names| -> Option<NodeProto> {
        let (q, logical) = q_of_source.get(src)?;
        let (s, z) = edge_qparams.get(*logical)?;
        Some(make_node(
            "QuantizeLinear",
            names.fresh(&format!("{logical}_QuantizeLinear")),
            vec![src.to_string(), s.clone(), z.clone()],
            vec![q.clone()],
            vec![],
        ))
    };

    let active_weighted: HashMap<usize, &Kind> = active
        .iter()
        .filter(|u| matches!(u.kind, Kind::Weighted { .. }))
        .map(|u| (u.node, &u.kind))
        .collect();

    let mut nodes = Vec::with_capacity(graph.node.len() * 2);
    for v in &graph.input {
        if let Some(n) = v.name.as_deref().and_then(|t| q_node(t, &mut names)) {
            nodes.push(n);
        }
    }
    let mut weight_cache: HashMap<String, (String, String, String)> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        if removed.contains(&i) {
            continue;
        }
        if int_pass.contains(&i)
            && let (Some(x), Some(o)) = (n.input.first(), n.output.first())
            && let Some(e) = edges.get(x)
            && let Some((xq, _)) = q_of_source.get(e.source.as_str())
            && let Some((oq, _)) = q_of_source.get(o.as_str())
        {
            let mut node = n.clone();
            node.input[0].clone_from(xq);
            node.output[0].clone_from(oq);
            nodes.push(node);
            continue;
        }
        let mut node = n.clone();
        let weighted_kind = active_weighted.get(&i).copied();
        let input_edge = n.input.first().and_then(|x| edges.get(x));
        let input_scale = input_edge.map(|e| e.params.scale);
        // 7-bit weights guard against `vpmaddubsw` saturating a pair of u8×s8 products
        // in int16. A u8 input with zero point 0 (a ReLU/Clip output) is mostly small
        // codes: two products near 255·127 in one pair are then too rare to show, and
        // the full 8 bits halve the weight error (mobilenet_v2 with random weights:
        // 3 fewer layers kept float for the same cosine). Inputs centred on 128 (the
        // image, residual sums, linear outputs) saturate often, so they keep 7 bits.
        // The accuracy budget is measured on the rewritten model, saturation included.
        let reduce_range = settings.reduce_range
            && !(settings.activation == ActivationType::U8
                && input_edge.is_some_and(|e| e.params.zero_point == 0));
        let mut weight_scales: Vec<f32> = Vec::new();
        for (slot, t) in n.input.iter().enumerate() {
            if t.is_empty() {
                continue;
            }
            if let Some(Kind::Weighted { weight, axis, bias }) = weighted_kind {
                if slot == *weight {
                    let (dq, scales) = weight_dq(
                        &index,
                        t,
                        (!settings.per_tensor).then_some(*axis),
                        reduce_range,
                        &mut names,
                        &mut new_inits,
                        &mut weight_cache,
                    )?;
                    weight_scales = scales;
                    nodes.push(dq.0);
                    node.input[slot] = dq.1;
                    continue;
                }
                if Some(slot) == *bias {
                    let Some(xs) = input_scale else { continue };
                    let Some(b) = index.constant_f32(t) else {
                        continue;
                    };
                    let (q, scales) = params::quantize_bias(&b, xs, &weight_scales);
                    let bq = names.fresh(&format!("{t}_i32"));
                    let bs = names.fresh(&format!("{t}_i32_scale"));
                    let dims = [i64::try_from(q.len()).unwrap_or(0)];
                    new_inits.push(graph::i32_tensor(&bq, &dims, &q));
                    // Per-tensor weights give one bias scale: a scalar, no axis.
                    let (scale_dims, axis): (&[i64], _) = if weight_scales.len() == 1 {
                        (&[], vec![])
                    } else {
                        (&dims, vec![int_attr("axis", 0)])
                    };
                    let scales = if weight_scales.len() == 1 {
                        &scales[..1.min(scales.len())]
                    } else {
                        &scales[..]
                    };
                    new_inits.push(graph::f32_tensor(&bs, scale_dims, scales));
                    let out = names.fresh(&format!("{t}_dq"));
                    nodes.push(make_node(
                        "DequantizeLinear",
                        names.fresh(&format!("{t}_DequantizeLinear")),
                        vec![bq, bs],
                        vec![out.clone()],
                        axis,
                    ));
                    node.input[slot] = out;
                    continue;
                }
            }
            if let Some(e) = edges.get(t.as_str()) {
                let Some((q, _)) = q_of_source.get(e.source.as_str()) else {
                    continue;
                };
                let Some((s, z)) = edge_qparams.get(t.as_str()) else {
                    continue;
                };
                let out = names.fresh(&format!("{t}_dq"));
                nodes.push(make_node(
                    "DequantizeLinear",
                    names.fresh(&format!("{t}_DequantizeLinear")),
                    vec![q.clone(), s.clone(), z.clone()],
                    vec![out.clone()],
                    vec![],
                ));
                // The same tensor may fill several slots of one node (x + x).
                for s2 in slot..node.input.len() {
                    if n.input[s2] == *t {
                        node.input[s2].clone_from(&out);
                    }
                }
            }
        }
        let outputs = node.output.clone();
        nodes.push(node);
        for o in &outputs {
            if let Some(qn) = q_node(o, &mut names) {
                nodes.push(qn);
            }
        }
    }

    let g = out.graph.get_or_insert_with(Default::default);
    g.node = nodes;
    g.initializer.extend(new_inits);
    graph::prune(g);
    Ok(out)
}

fn zero_point_tensor(name: &str, zp: i32, ty: ActivationType) -> lrai_onnx::TensorProto {
    match ty {
        ActivationType::U8 => {
            graph::u8_tensor(name, &[], &[u8::try_from(zp.clamp(0, 255)).unwrap_or(0)])
        }
        ActivationType::I8 => {
            graph::i8_tensor(name, &[], &[i8::try_from(zp.clamp(-128, 127)).unwrap_or(0)])
        }
    }
}

/// `DQ(int8 weight)` for a constant weight, quantized once per (weight, axis) and shared
/// by every reader; returns the node, its output, and the per-channel scales (one scale,
/// a scalar, when `axis` is `None`: per tensor).
#[allow(clippy::type_complexity)]
fn weight_dq(
    index: &GraphIndex<'_>,
    w: &str,
    axis: Option<usize>,
    reduce_range: bool,
    names: &mut Names,
    inits: &mut Vec<lrai_onnx::TensorProto>,
    cache: &mut HashMap<String, (String, String, String)>,
) -> Result<((NodeProto, String), Vec<f32>)> {
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
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect();
    let q = match axis {
        Some(a) => params::quantize_per_channel(&values, &dims, a, reduce_range),
        None => params::quantize_per_tensor(&values, reduce_range),
    };
    let key = format!("{w}@{axis:?}@{reduce_range}");
    let (qn, sn, zn) = if let Some(c) = cache.get(&key) {
        c.clone()
    } else {
        let qn = names.fresh(&format!("{w}_i8"));
        let sn = names.fresh(&format!("{w}_scale"));
        let zn = names.fresh(&format!("{w}_zp"));
        let c = [i64::try_from(q.scales.len()).unwrap_or(0)];
        let c: &[i64] = if axis.is_some() { &c } else { &[] };
        inits.push(graph::i8_tensor(&qn, &t.dims, &q.values));
        inits.push(graph::f32_tensor(&sn, c, &q.scales));
        // The zero point stays although 0 is its default: ONNX Runtime fuses
        // `DQ→Gemm→Q` into QGemm only when the weight's DQ has one.
        inits.push(graph::i8_tensor(&zn, c, &vec![0; q.scales.len()]));
        cache.insert(key, (qn.clone(), sn.clone(), zn.clone()));
        (qn, sn, zn)
    };
    let out = names.fresh(&format!("{w}_dq"));
    let node = make_node(
        "DequantizeLinear",
        names.fresh(&format!("{w}_DequantizeLinear")),
        vec![qn, sn, zn],
        vec![out.clone()],
        axis.map(|a| int_attr("axis", i64::try_from(a).unwrap_or(0)))
            .into_iter()
            .collect(),
    );
    Ok(((node, out), q.scales))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_onnx::pb::{GraphProto, OperatorSetIdProto};

    use crate::graph::test_node as node;

    /// Largest |code| of each 4-D int8 initializer (the conv weights), in file order.
    fn weight_codes(m: &ModelProto) -> Vec<f32> {
        let g = m.graph.as_ref().unwrap();
        g.initializer
            .iter()
            .filter(|t| t.data_type == Some(graph::INT8) && t.dims.len() == 4)
            .map(|t| {
                t.raw_data
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .fold(0f32, |a, &b| a.max(f32::from(b.cast_signed()).abs()))
            })
            .collect()
    }

    #[test]
    fn full_eight_bit_weights_only_after_a_zero_point_zero_input() {
        // x (centred) → Conv a → Relu → Conv b: with reduce-range, `a` reads codes around
        // 128 and keeps 7 bits; `b` reads the Relu's codes from 0 and gets all 8.
        let w: Vec<f32> = [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5].to_vec();
        let model = ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            graph: Some(GraphProto {
                node: vec![
                    node("Conv", "a", &["x", "wa"], &["y"]),
                    node("Relu", "r", &["y"], &["z"]),
                    node("Conv", "b", &["z", "wb"], &["out"]),
                ],
                initializer: vec![
                    graph::f32_tensor("wa", &[2, 4, 1, 1], &w),
                    graph::f32_tensor("wb", &[2, 4, 1, 1], &w),
                ],
                input: vec![graph::value_info("x", FLOAT)],
                output: vec![graph::value_info("out", FLOAT)],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let plan = analyze(&model, "m").unwrap();
        let ranges: HashMap<String, Range> = [
            ("x", -1.0, 1.0),
            ("y", -2.0, 2.0),
            ("z", 0.0, 2.0),
            ("out", -1.0, 1.0),
        ]
        .into_iter()
        .map(|(t, min, max)| (t.to_string(), Range { min, max }))
        .collect();
        let settings = StaticSettings {
            activation: ActivationType::U8,
            reduce_range: true,
            per_tensor: false,
        };
        let out = apply(&model, &plan, &ranges, &HashSet::new(), settings).unwrap();
        assert_eq!(weight_codes(&out), vec![64.0, 127.0]);
        // Without reduce-range both get 8 bits; with i8 activations both keep 7.
        let full = StaticSettings {
            reduce_range: false,
            ..settings
        };
        let out = apply(&model, &plan, &ranges, &HashSet::new(), full).unwrap();
        assert_eq!(weight_codes(&out), vec![127.0, 127.0]);
        let i8 = StaticSettings {
            activation: ActivationType::I8,
            ..settings
        };
        let out = apply(&model, &plan, &ranges, &HashSet::new(), i8).unwrap();
        assert_eq!(weight_codes(&out), vec![64.0, 64.0]);
    }
}
