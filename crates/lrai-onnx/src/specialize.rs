//! Specialising a graph to concrete input shapes, for engines that can't analyse what
//! only becomes known then.
//!
//! Exports decide things from shapes at run time: silero VAD's `If` compares the state's
//! shape with a constant and its branches return tensors of different ranks, which
//! tract refuses (it needs both branches' facts equal); PyTorch 1.11 writes opset-11
//! `Squeeze` without `axes` (squeeze every size-1 dim), which tract can't parse. Once
//! the input shapes are fixed, each such place has one answer: the condition's value,
//! the squeezed input's shape. [`questions`] lists the places, [`probe`] builds the
//! smallest graph whose outputs are the tensors to ask about (for an engine to evaluate
//! with the concrete shapes), and [`answer`] rewrites the graph with what was learned:
//! the `If` replaced by the branch taken, the `Squeeze` given its axes.

use std::collections::{HashMap, HashSet};

use crate::patch::{GraphError, GraphPatch, subgraphs};
use crate::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, ValueInfoProto, attribute_proto,
};

/// A place in the main graph whose rewrite needs a fact only concrete shapes give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Which branch an `If` takes: ask for the value of `condition`.
    Branch {
        /// The `If` node's first output (identifies the node across rewrites).
        node_output: String,
        /// Its condition tensor.
        condition: String,
    },
    /// Which dims an axes-less `Squeeze` removes: ask for the shape of `input`.
    SqueezeAxes {
        /// The `Squeeze` node's output.
        node_output: String,
        /// Its input tensor.
        input: String,
    },
}

impl Question {
    /// The tensor whose value ([`Question::Branch`]) or shape must be known.
    pub fn tensor(&self) -> &str {
        match self {
            Question::Branch { condition, .. } => condition,
            Question::SqueezeAxes { input, .. } => input,
        }
    }
}

/// What an engine learned about a question's tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The `If` condition's value.
    Condition(bool),
    /// The squeezed tensor's shape.
    Shape(Vec<usize>),
}

fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("" | "ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(0)
}

fn is_op(node: &NodeProto, op: &str) -> bool {
    node.op_type.as_deref() == Some(op)
        && matches!(node.domain.as_deref(), None | Some("" | "ai.onnx"))
}

fn has_attr(node: &NodeProto, name: &str) -> bool {
    node.attribute
        .iter()
        .any(|a| a.name.as_deref() == Some(name))
}

/// The questions of the main graph, in node order: every `If` (even one on a constant:
/// tract refuses branches with different shapes before it folds anything), and every
/// axes-less `Squeeze` of opset < 13.
pub fn questions(model: &ModelProto) -> Vec<Question> {
    let Some(graph) = model.graph.as_ref() else {
        return Vec::new();
    };
    let old_squeeze = default_opset(model) < 13;
    graph
        .node
        .iter()
        .filter_map(|node| {
            let output = node.output.first()?.clone();
            let input = node.input.first()?.clone();
            if is_op(node, "If") {
                Some(Question::Branch {
                    node_output: output,
                    condition: input,
                })
            } else if is_op(node, "Squeeze") && old_squeeze && !has_attr(node, "axes") {
                Some(Question::SqueezeAxes {
                    node_output: output,
                    input,
                })
            } else {
                None
            }
        })
        .collect()
}

/// The graph inputs whose *value* decides an `If` (its condition) or a `Loop` (its trip
/// count), anywhere in the model, subgraphs included: silero VAD picks its 8 kHz or
/// 16 kHz branch from the scalar input `sr`. A plan specialised to their values (see
/// [`pin_values`]) lets the engine fold the decision. Only integer and bool scalars
/// qualify (declared rank 0, or every dim 1): a plan per value stays cheap.
pub fn decisive_inputs(model: &ModelProto) -> Vec<String> {
    let Some(graph) = model.graph.as_ref() else {
        return Vec::new();
    };
    let needed = outer_reads(graph, &decisions(graph));
    crate::graph_inputs(graph)
        .into_iter()
        .filter(|io| needed.contains(io.name.as_str()) && is_small_int_scalar(io))
        .map(|io| io.name)
        .collect()
}

fn is_small_int_scalar(io: &crate::IoInfo) -> bool {
    use crate::pb::tensor_proto::DataType as D;
    let int = [
        D::Bool,
        D::Int8,
        D::Int16,
        D::Int32,
        D::Int64,
        D::Uint8,
        D::Uint16,
        D::Uint32,
        D::Uint64,
    ]
    .iter()
    .any(|&d| d as i32 == io.elem_type);
    let scalar = io
        .dims
        .as_deref()
        .is_some_and(|d| d.iter().all(|d| d.fixed() == Some(1)));
    int && scalar
}

/// The tensors that decide control flow in `graph`: `If` conditions and `Loop` trip
/// counts, plus the outer tensors its subgraphs' own decisions read.
fn decisions(graph: &GraphProto) -> HashSet<String> {
    let mut out = HashSet::new();
    for node in &graph.node {
        if (is_op(node, "If") || is_op(node, "Loop"))
            && let Some(first) = node.input.first().filter(|s| !s.is_empty())
        {
            out.insert(first.clone());
        }
        for sub in subgraphs(node) {
            out.extend(outer_reads(sub, &decisions(sub)));
        }
    }
    out
}

/// The names `targets` depend on in `graph` that `graph` doesn't define itself (its
/// inputs count as undefined here, so the main graph's inputs come out).
fn outer_reads(graph: &GraphProto, targets: &HashSet<String>) -> HashSet<String> {
    let mut needed: HashSet<String> = targets.clone();
    for node in graph.node.iter().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            needed.extend(node.input.iter().filter(|i| !i.is_empty()).cloned());
            for sub in subgraphs(node) {
                let all: HashSet<String> = sub
                    .node
                    .iter()
                    .flat_map(|n| n.input.iter().cloned())
                    .collect();
                needed.extend(outer_reads(sub, &all));
            }
        }
    }
    let defined: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(graph.initializer.iter().filter_map(|t| t.name.as_deref()))
        .collect();
    needed.retain(|n| !defined.contains(n.as_str()));
    needed
}

/// Makes every reader of input `name` read `value` instead (an initializer named
/// `<name>/lrai_pinned`); the input itself stays, unread, so callers feed the same
/// inputs as before.
///
/// # Errors
/// [`GraphError`] when the rewrite would break the graph (the model is then unchanged).
pub fn pin_values(
    model: &mut ModelProto,
    values: &[(String, crate::TensorProto)],
) -> Result<(), GraphError> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    let mut patch = GraphPatch::new();
    for (name, value) in values {
        let pinned = format!("{name}/lrai_pinned");
        let mut value = value.clone();
        value.name = Some(pinned.clone());
        patch.add_initializer(value).rewire(name, &pinned);
    }
    patch.apply(graph)
}

/// The nodes `targets` depend on (indices, in order).
fn ancestors(graph: &GraphProto, targets: &[&str]) -> Vec<usize> {
    let mut needed: HashSet<&str> = targets.iter().copied().collect();
    let mut keep = Vec::new();
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o.as_str())) {
            keep.push(i);
            needed.extend(node.input.iter().map(String::as_str));
            for sub in subgraphs(node) {
                needed.extend(
                    sub.node
                        .iter()
                        .flat_map(|n| n.input.iter().map(String::as_str)),
                );
            }
        }
    }
    keep.reverse();
    keep
}

/// The questions that can be asked now: those whose tensor depends on no other open
/// question's node (answers come in rounds, outermost first).
pub fn askable<'q>(model: &ModelProto, open: &'q [Question]) -> Vec<&'q Question> {
    let Some(graph) = model.graph.as_ref() else {
        return Vec::new();
    };
    let open_nodes: HashSet<&str> =
        open.iter()
            .map(|q| match q {
                Question::Branch { node_output, .. }
                | Question::SqueezeAxes { node_output, .. } => node_output.as_str(),
            })
            .collect();
    open.iter()
        .filter(|q| {
            ancestors(graph, &[q.tensor()])
                .iter()
                .filter_map(|&i| graph.node[i].output.first())
                .all(|o| !open_nodes.contains(o.as_str()))
        })
        .collect()
}

/// The model cut down to what `tensors` need, with `tensors` as its outputs.
pub fn probe(model: &ModelProto, tensors: &[&str]) -> ModelProto {
    let mut probe = model.clone();
    if let Some(graph) = probe.graph.as_mut() {
        let keep = ancestors(graph, tensors);
        graph.node = keep.iter().map(|&i| graph.node[i].clone()).collect();
        graph.output = tensors
            .iter()
            .map(|t| ValueInfoProto {
                name: Some((*t).to_string()),
                ..ValueInfoProto::default()
            })
            .collect();
        graph.value_info.clear();
    }
    probe
}

/// Rewrites `model` with one answer: the `If` replaced by its branch, or the `Squeeze`
/// given its axes. `Ok(false)` when the answer doesn't fit the question (the node is
/// gone, or the shape says nothing can be squeezed safely).
///
/// # Errors
/// [`GraphError`] when the rewrite would break the graph (the model is then unchanged).
pub fn answer(
    model: &mut ModelProto,
    question: &Question,
    answer: &Answer,
) -> Result<bool, GraphError> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(false);
    };
    let patch = match (question, answer) {
        (Question::Branch { node_output, .. }, Answer::Condition(taken)) => {
            find(graph, node_output).and_then(|i| inline_branch(graph, i, *taken))
        }
        (Question::SqueezeAxes { node_output, .. }, Answer::Shape(shape)) => {
            find(graph, node_output).map(|i| squeeze_axes(graph, i, shape))
        }
        _ => None,
    };
    match patch {
        Some(p) => p.apply(graph).map(|()| true),
        None => Ok(false),
    }
}

fn find(graph: &GraphProto, output: &str) -> Option<usize> {
    graph
        .node
        .iter()
        .position(|n| n.output.first().map(String::as_str) == Some(output))
}

fn squeeze_axes(graph: &GraphProto, index: usize, shape: &[usize]) -> GraphPatch {
    let axes: Vec<i64> = shape
        .iter()
        .enumerate()
        .filter(|&(_, &d)| d == 1)
        .filter_map(|(i, _)| i64::try_from(i).ok())
        .collect();
    let mut node = graph.node[index].clone();
    node.attribute.push(AttributeProto {
        name: Some("axes".into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: axes,
        ..AttributeProto::default()
    });
    let mut patch = GraphPatch::new();
    patch.replace_node(index, vec![node]);
    patch
}

/// The `If` at `index` replaced by the nodes of its `then` (or `else`) branch. Names
/// the branch defines get the prefix `<if output>/<branch>/`, so they can't collide
/// with the outer graph's; its initializers move to the main graph.
fn inline_branch(graph: &GraphProto, index: usize, then: bool) -> Option<GraphPatch> {
    let node = &graph.node[index];
    let key = if then { "then_branch" } else { "else_branch" };
    let branch = node
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(key))?
        .g
        .as_ref()?;
    if branch.output.len() != node.output.len() {
        return None;
    }
    let prefix = format!(
        "{}/{}/",
        node.output.first()?,
        if then { "then" } else { "else" }
    );
    let mut renames: HashMap<String, String> = HashMap::new();
    let defined = branch
        .initializer
        .iter()
        .filter_map(|t| t.name.clone())
        .chain(
            branch
                .node
                .iter()
                .flat_map(|n| n.output.iter().filter(|o| !o.is_empty()).cloned()),
        );
    for name in defined {
        renames.insert(name.clone(), format!("{prefix}{name}"));
    }
    let mut patch = GraphPatch::new();
    let mut nodes: Vec<NodeProto> = branch.node.iter().map(|n| renamed(n, &renames)).collect();
    for n in &mut nodes {
        n.name = n.name.as_ref().map(|name| format!("{prefix}{name}"));
    }
    for t in &branch.initializer {
        let mut t = t.clone();
        t.name = t.name.as_ref().and_then(|n| renames.get(n).cloned());
        patch.add_initializer(t);
    }
    // Each If output becomes an Identity of the branch's matching output.
    for (out, branch_out) in node.output.iter().zip(&branch.output) {
        let source = branch_out.name.as_deref().unwrap_or("");
        let source = renames.get(source).map_or(source, String::as_str);
        nodes.push(NodeProto {
            op_type: Some("Identity".into()),
            name: Some(format!("{prefix}result/{out}")),
            input: vec![source.to_string()],
            output: vec![out.clone()],
            ..NodeProto::default()
        });
    }
    patch.replace_node(index, nodes);
    Some(patch)
}

/// A copy of `node` reading (and writing) the renamed tensors, subgraphs included.
fn renamed(node: &NodeProto, renames: &HashMap<String, String>) -> NodeProto {
    let mut node = node.clone();
    rename_in_node(&mut node, renames);
    node
}

fn rename_in_node(node: &mut NodeProto, renames: &HashMap<String, String>) {
    for name in node.input.iter_mut().chain(node.output.iter_mut()) {
        if let Some(new) = renames.get(name.as_str()) {
            *name = new.clone();
        }
    }
    for attr in &mut node.attribute {
        for sub in attr.g.iter_mut().chain(attr.graphs.iter_mut()) {
            // Names a subgraph defines itself shadow the outer ones: leave those.
            let own: HashSet<String> = sub
                .input
                .iter()
                .filter_map(|v| v.name.clone())
                .chain(sub.initializer.iter().filter_map(|t| t.name.clone()))
                .chain(sub.node.iter().flat_map(|n| n.output.iter().cloned()))
                .collect();
            let outer: HashMap<String, String> = renames
                .iter()
                .filter(|(k, _)| !own.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for inner in &mut sub.node {
                rename_in_node(inner, &outer);
            }
            for out in &mut sub.output {
                if let Some(new) = out.name.as_ref().and_then(|n| outer.get(n)) {
                    out.name = Some(new.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::{node, value};
    use crate::pb::OperatorSetIdProto;

    fn branch_attr(name: &str, graph: GraphProto) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(attribute_proto::AttributeType::Graph as i32),
            g: Some(graph),
            ..AttributeProto::default()
        }
    }

    /// x -> Shape -> Equal(.., c) -> If(then: Neg(x) -> t, else: x) -> y
    fn model() -> ModelProto {
        let mut if_node = node("If", &["cond"], &["y"]);
        if_node.attribute.push(branch_attr(
            "then_branch",
            GraphProto {
                node: vec![node("Neg", &["x"], &["t"])],
                output: vec![value("t")],
                ..GraphProto::default()
            },
        ));
        if_node.attribute.push(branch_attr(
            "else_branch",
            GraphProto {
                output: vec![value("x")],
                ..GraphProto::default()
            },
        ));
        ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(11),
            }],
            graph: Some(GraphProto {
                node: vec![
                    node("Shape", &["x"], &["s"]),
                    node("Equal", &["s", "c"], &["cond"]),
                    if_node,
                    node("Squeeze", &["y"], &["z"]),
                ],
                input: vec![value("x"), value("c")],
                output: vec![value("z")],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn asks_about_branches_then_squeezes_in_rounds() {
        let m = model();
        let open = questions(&m);
        assert_eq!(open.len(), 2);
        let now = askable(&m, &open);
        assert_eq!(now, vec![&open[0]], "the Squeeze waits for the If it reads");
        let p = probe(&m, &[now[0].tensor()]);
        let ops: Vec<_> = p
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.clone().unwrap())
            .collect();
        assert_eq!(ops, ["Shape", "Equal"]);
    }

    #[test]
    fn inlines_the_branch_taken() {
        for (taken, first_op) in [(true, "Neg"), (false, "Identity")] {
            let mut m = model();
            let q = questions(&m).remove(0);
            assert!(answer(&mut m, &q, &Answer::Condition(taken)).unwrap());
            let g = m.graph.as_ref().unwrap();
            assert_eq!(g.node[2].op_type.as_deref(), Some(first_op));
            assert!(g.node.iter().all(|n| n.op_type.as_deref() != Some("If")));
            crate::check_graph(g).unwrap();
            let q = questions(&m).remove(0);
            assert!(answer(&mut m, &q, &Answer::Shape(vec![1, 4, 1])).unwrap());
            let squeeze = m.graph.as_ref().unwrap().node.last().unwrap();
            assert_eq!(squeeze.attribute[0].ints, [0, 2]);
            assert!(questions(&m).is_empty());
        }
    }
}
