//! `Loop` written as `Scan`, for engines without `Loop` (tract).
//!
//! A `Loop` with a trip count `M` whose condition is always true (absent or a constant
//! true going in, passed through or constant true in the body) runs its body exactly `M`
//! times: that is a `Scan` over `Range(0, M, 1)`, whose one scan input feeds the body's
//! iteration number. Carried values become the Scan's state, per-iteration outputs its
//! scan outputs, stacked on axis 0 as `Loop` stacks them. Loops that may stop early
//! (`while`, a computed condition) are left alone, and so are loops whose body never
//! reads its iteration number: tract discards a Scan input nothing reads and then can't
//! tell how many times to run.

use crate::patch::GraphPatch;
use crate::pb::{
    AttributeProto, GraphProto, NodeProto, TensorProto, attribute_proto, tensor_proto,
};

/// The first rewritable `Loop` of `graph` as a patch, with a note; `None` when there is
/// none. Needs opset 11 (`Range`) or newer.
pub(crate) fn loop_as_scan(graph: &GraphProto, opset: i64) -> Option<(GraphPatch, String)> {
    if opset < 11 {
        return None;
    }
    graph.node.iter().enumerate().find_map(|(index, node)| {
        let is_loop = node.op_type.as_deref() == Some("Loop")
            && matches!(node.domain.as_deref(), None | Some("" | "ai.onnx"));
        if !is_loop {
            return None;
        }
        let patch = rewrite(graph, index, node)?;
        let name = node.name.clone().unwrap_or_default();
        Some((
            patch,
            format!("Loop '{name}' written as Scan over Range(0, M): it always runs M times"),
        ))
    })
}

fn rewrite(graph: &GraphProto, index: usize, node: &NodeProto) -> Option<GraphPatch> {
    let trips = node.input.first().filter(|m| !m.is_empty())?;
    let cond = node.input.get(1).map_or("", String::as_str);
    if !cond.is_empty() && !is_true_constant(graph, cond) {
        return None;
    }
    let body = node
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("body"))?
        .g
        .as_ref()?;
    let iteration = body.input.first()?.name.clone()?;
    let cond_in = body.input.get(1)?.name.clone()?;
    // tract drops a Scan input the body never reads, and then can't count iterations.
    let reads_iteration = body.node.iter().any(|n| n.input.contains(&iteration));
    if !reads_iteration {
        return None;
    }
    let cond_out = body.output.first()?.name.clone()?;
    if !always_true(graph, body, &cond_in, &cond_out) {
        return None;
    }
    let base = format!("{}/lrai_scan", node.output.first()?);
    let (start, delta, iters) = (
        format!("{base}/start"),
        format!("{base}/delta"),
        format!("{base}/iterations"),
    );
    let mut scan_body = body.clone();
    // State inputs first, then the scan input (the iteration number, a scalar slice).
    let iteration_input = scan_body.input.remove(0);
    scan_body.input.remove(0);
    scan_body.input.push(iteration_input);
    scan_body.output.remove(0);
    scan_body.initializer.push(bool_scalar(&cond_in, true));
    // Exports declare body shapes with the outer graph's symbols (PyTorch: `batch`); the
    // Scan's state takes the outer shapes, so the declarations go and types stay.
    for value in scan_body
        .input
        .iter_mut()
        .chain(scan_body.output.iter_mut())
    {
        forget_shape(value);
    }
    scan_body.value_info.clear();
    let carried = body.input.len().checked_sub(2)?;
    let mut inputs: Vec<String> = node.input.iter().skip(2).cloned().collect();
    if inputs.len() != carried {
        return None;
    }
    inputs.push(iters.clone());
    let range = NodeProto {
        name: Some(format!("{base}/range")),
        op_type: Some("Range".into()),
        input: vec![start.clone(), trips.clone(), delta.clone()],
        output: vec![iters],
        ..NodeProto::default()
    };
    let scan = NodeProto {
        name: node.name.clone(),
        op_type: Some("Scan".into()),
        input: inputs,
        output: node.output.clone(),
        attribute: vec![
            AttributeProto {
                name: Some("body".into()),
                r#type: Some(attribute_proto::AttributeType::Graph as i32),
                g: Some(scan_body),
                ..AttributeProto::default()
            },
            AttributeProto {
                name: Some("num_scan_inputs".into()),
                r#type: Some(attribute_proto::AttributeType::Int as i32),
                i: Some(1),
                ..AttributeProto::default()
            },
        ],
        ..NodeProto::default()
    };
    let mut patch = GraphPatch::new();
    patch
        .add_initializer(i64_scalar(&start, 0))
        .add_initializer(i64_scalar(&delta, 1))
        .replace_node(index, vec![range, scan]);
    Some(patch)
}

/// The body's condition output is its condition input or a constant true (of the body
/// or the outer graph), directly or through `Identity` (PyTorch writes
/// `Identity(outer true constant)`).
fn always_true(outer: &GraphProto, body: &GraphProto, cond_in: &str, cond_out: &str) -> bool {
    let true_here = |name: &str| {
        name == cond_in || is_true_constant(body, name) || is_true_constant(outer, name)
    };
    if true_here(cond_out) {
        return true;
    }
    body.node.iter().any(|n| {
        n.output.first().map(String::as_str) == Some(cond_out)
            && n.op_type.as_deref() == Some("Identity")
            && n.input.first().is_some_and(|i| true_here(i))
    })
}

/// `name` is an initializer or `Constant` node of `graph` holding the single value true.
fn is_true_constant(graph: &GraphProto, name: &str) -> bool {
    let from_init = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name));
    let from_node = graph.node.iter().find_map(|n| {
        (n.op_type.as_deref() == Some("Constant")
            && n.output.first().map(String::as_str) == Some(name))
        .then(|| {
            n.attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("value"))?
                .t
                .as_ref()
        })
        .flatten()
    });
    from_init.or(from_node).is_some_and(is_single_true)
}

fn is_single_true(t: &TensorProto) -> bool {
    if t.dims.iter().product::<i64>() != 1
        || t.data_type != Some(tensor_proto::DataType::Bool as i32)
    {
        return false;
    }
    match t.raw_data.as_deref() {
        Some(raw) if !raw.is_empty() => raw == [1],
        _ => t.int32_data == [1],
    }
}

fn forget_shape(value: &mut crate::pb::ValueInfoProto) {
    use crate::pb::type_proto::Value;
    if let Some(Value::TensorType(t)) = value.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.shape = None;
    }
}

fn bool_scalar(name: &str, value: bool) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(tensor_proto::DataType::Bool as i32),
        raw_data: Some(vec![u8::from(value)].into()),
        ..TensorProto::default()
    }
}

fn i64_scalar(name: &str, value: i64) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(tensor_proto::DataType::Int64 as i32),
        raw_data: Some(value.to_le_bytes().to_vec().into()),
        ..TensorProto::default()
    }
}
