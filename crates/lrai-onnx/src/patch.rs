//! Graph rewrites as patches, after tract's `TypedModelPatch`: a rewrite never mutates a
//! graph ad hoc; it records what to insert, replace and remove, and which tensors to
//! rewire, then [`GraphPatch::apply`] makes all of it at once and checks that the result
//! is still a well-formed graph (every tensor defined once and before use, every output
//! produced). The quantizer, the tract preparation rules ([`crate::simplify`]) and the
//! splitter build on it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::pb::{GraphProto, NodeProto, TensorProto, ValueInfoProto};

/// Why a graph (or a patched graph) is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A node reads a tensor nothing defines before it.
    #[error("node '{node}' reads '{tensor}', which no earlier node, input or initializer defines")]
    Undefined {
        /// The reading node.
        node: String,
        /// The tensor.
        tensor: String,
    },
    /// Two producers for one tensor.
    #[error("tensor '{tensor}' is defined twice (second time by node '{node}')")]
    Redefined {
        /// The second producer.
        node: String,
        /// The tensor.
        tensor: String,
    },
    /// A graph output nothing produces.
    #[error("graph output '{tensor}' is not produced by any node, input or initializer")]
    MissingOutput {
        /// The output.
        tensor: String,
    },
    /// A patch refers to a node index the graph does not have.
    #[error("the patch refers to node {index}, but the graph has {len} nodes")]
    NoSuchNode {
        /// The index.
        index: usize,
        /// Nodes in the graph.
        len: usize,
    },
}

/// Insertions, replacements, removals and rewiring, applied together.
#[derive(Debug, Clone, Default)]
pub struct GraphPatch {
    removed: BTreeSet<usize>,
    before: BTreeMap<usize, Vec<NodeProto>>,
    appended: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    removed_initializers: BTreeSet<String>,
    rewires: Vec<(String, String)>,
}

impl GraphPatch {
    /// An empty patch.
    pub fn new() -> GraphPatch {
        GraphPatch::default()
    }

    /// True when applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.before.is_empty()
            && self.appended.is_empty()
            && self.initializers.is_empty()
            && self.removed_initializers.is_empty()
            && self.rewires.is_empty()
    }

    /// Removes node `index` (its outputs must be rewired or no longer read).
    pub fn remove_node(&mut self, index: usize) -> &mut Self {
        self.removed.insert(index);
        self
    }

    /// Inserts `node` just before node `index` (so it can read what earlier nodes make).
    pub fn insert_before(&mut self, index: usize, node: NodeProto) -> &mut Self {
        self.before.entry(index).or_default().push(node);
        self
    }

    /// Replaces node `index` by `nodes`, in its place.
    pub fn replace_node(&mut self, index: usize, nodes: Vec<NodeProto>) -> &mut Self {
        self.removed.insert(index);
        self.before.entry(index).or_default().extend(nodes);
        self
    }

    /// Appends `node` after every existing node.
    pub fn append(&mut self, node: NodeProto) -> &mut Self {
        self.appended.push(node);
        self
    }

    /// Adds an initializer (a constant tensor).
    pub fn add_initializer(&mut self, tensor: TensorProto) -> &mut Self {
        self.initializers.push(tensor);
        self
    }

    /// Removes the initializer named `name`.
    pub fn remove_initializer(&mut self, name: &str) -> &mut Self {
        self.removed_initializers.insert(name.to_string());
        self
    }

    /// Makes every reader of tensor `from` (nodes, and subgraphs that capture it) read `to`
    /// instead. A graph output keeps its name: when no node produces `from` any more, an
    /// `Identity` carries `to` to it.
    pub fn rewire(&mut self, from: &str, to: &str) -> &mut Self {
        self.rewires.push((from.to_string(), to.to_string()));
        self
    }

    /// Applies the patch to `graph` and checks the result.
    ///
    /// # Errors
    /// [`GraphError`] when the patch names a node that isn't there, or the patched graph
    /// is not well formed; `graph` is left unchanged then.
    pub fn apply(self, graph: &mut GraphProto) -> Result<(), GraphError> {
        let len = graph.node.len();
        if let Some(&index) = self
            .removed
            .iter()
            .chain(self.before.keys())
            .find(|&&i| i > len || (i == len && self.removed.contains(&i)))
        {
            return Err(GraphError::NoSuchNode { index, len });
        }
        let mut patched = graph.clone();
        let mut before = self.before;
        let mut nodes = Vec::with_capacity(len + self.appended.len());
        for (i, node) in graph.node.iter().enumerate() {
            nodes.extend(before.remove(&i).unwrap_or_default());
            if !self.removed.contains(&i) {
                nodes.push(node.clone());
            }
        }
        nodes.extend(before.remove(&len).unwrap_or_default());
        nodes.extend(self.appended);
        patched.node = nodes;
        patched.initializer.retain(|t| {
            !self
                .removed_initializers
                .contains(t.name.as_deref().unwrap_or(""))
        });
        patched.initializer.extend(self.initializers);
        for (from, to) in &self.rewires {
            rewire_readers(&mut patched, from, to);
            keep_output_name(&mut patched, from, to);
        }
        check_graph(&patched)?;
        *graph = patched;
        Ok(())
    }
}

/// Renames `from` to `to` in every node input, recursing into subgraphs (which may
/// read outer tensors by name) unless a subgraph defines `from` itself.
fn rewire_readers(graph: &mut GraphProto, from: &str, to: &str) {
    for node in &mut graph.node {
        for input in &mut node.input {
            if input == from {
                *input = to.to_string();
            }
        }
        for attr in &mut node.attribute {
            for sub in subgraphs_mut(attr) {
                if !defines(sub, from) {
                    rewire_readers(sub, from, to);
                }
            }
        }
    }
}

/// A graph output named `from` now comes from `to`: through an `Identity` when nothing
/// else produces `from` any more.
fn keep_output_name(graph: &mut GraphProto, from: &str, to: &str) {
    let is_output = graph.output.iter().any(|o| o.name.as_deref() == Some(from));
    let still_made = graph
        .node
        .iter()
        .any(|n| n.output.iter().any(|o| o == from));
    if is_output && !still_made {
        graph.node.push(NodeProto {
            op_type: Some("Identity".into()),
            name: Some(format!("{from}/keep_name")),
            input: vec![to.to_string()],
            output: vec![from.to_string()],
            ..NodeProto::default()
        });
    }
}

fn subgraphs_mut(attr: &mut crate::pb::AttributeProto) -> Vec<&mut GraphProto> {
    let mut out: Vec<&mut GraphProto> = attr.g.iter_mut().collect();
    out.extend(attr.graphs.iter_mut());
    out
}

/// The subgraphs a node carries (If branches, Loop/Scan bodies).
pub fn subgraphs(node: &NodeProto) -> impl Iterator<Item = &GraphProto> {
    node.attribute
        .iter()
        .flat_map(|a| a.g.iter().chain(a.graphs.iter()))
}

fn defines(graph: &GraphProto, name: &str) -> bool {
    graph.input.iter().any(|v| v.name.as_deref() == Some(name))
        || graph
            .initializer
            .iter()
            .any(|t| t.name.as_deref() == Some(name))
        || graph
            .node
            .iter()
            .any(|n| n.output.iter().any(|o| o == name))
}

fn node_label(node: &NodeProto) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!(
            "{}:{}",
            node.op_type.as_deref().unwrap_or(""),
            node.output.first().map_or("", String::as_str)
        ),
    }
}

/// Checks that `graph` is well formed: nodes in topological order, each tensor defined
/// once, every read defined (by an input, an initializer, an earlier node, or the outer
/// scope of a subgraph), every output produced.
///
/// # Errors
/// The first problem found.
pub fn check_graph(graph: &GraphProto) -> Result<(), GraphError> {
    check_scoped(graph, &HashSet::new())
}

fn check_scoped(graph: &GraphProto, outer: &HashSet<String>) -> Result<(), GraphError> {
    let names =
        |v: &[ValueInfoProto]| -> Vec<String> { v.iter().filter_map(|v| v.name.clone()).collect() };
    let mut defined: HashSet<String> = outer.clone();
    defined.extend(names(&graph.input));
    defined.extend(graph.initializer.iter().filter_map(|t| t.name.clone()));
    let mut produced: HashSet<&str> = HashSet::new();
    for node in &graph.node {
        if let Some(tensor) = node
            .input
            .iter()
            .find(|i| !i.is_empty() && !defined.contains(*i))
        {
            return Err(GraphError::Undefined {
                node: node_label(node),
                tensor: tensor.clone(),
            });
        }
        for sub in subgraphs(node) {
            check_scoped(sub, &defined)?;
        }
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            if !produced.insert(output) {
                return Err(GraphError::Redefined {
                    node: node_label(node),
                    tensor: output.clone(),
                });
            }
            defined.insert(output.clone());
        }
    }
    if let Some(tensor) = names(&graph.output)
        .into_iter()
        .find(|o| !defined.contains(o))
    {
        return Err(GraphError::MissingOutput { tensor });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A node named `<op>_<first output>` (shared by this crate's graph tests).
    pub(crate) fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{op}_{}", outputs[0])),
            input: inputs.iter().map(ToString::to_string).collect(),
            output: outputs.iter().map(ToString::to_string).collect(),
            ..NodeProto::default()
        }
    }

    /// A value info with only a name.
    pub(crate) fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            ..ValueInfoProto::default()
        }
    }

    fn graph() -> GraphProto {
        GraphProto {
            node: vec![node("Relu", &["x"], &["a"]), node("Neg", &["a"], &["y"])],
            input: vec![value("x")],
            output: vec![value("y")],
            ..GraphProto::default()
        }
    }

    #[test]
    fn replaces_a_node_and_rewires_its_readers() {
        let mut g = graph();
        let mut p = GraphPatch::new();
        p.replace_node(0, vec![node("Sigmoid", &["x"], &["s"])])
            .rewire("a", "s");
        p.apply(&mut g).unwrap();
        let ops: Vec<_> = g.node.iter().map(|n| n.op_type.clone().unwrap()).collect();
        assert_eq!(ops, ["Sigmoid", "Neg"]);
        assert_eq!(g.node[1].input, ["s"]);
    }

    #[test]
    fn keeps_a_graph_output_name_when_its_producer_goes() {
        let mut g = graph();
        let mut p = GraphPatch::new();
        p.remove_node(1).rewire("y", "a");
        p.apply(&mut g).unwrap();
        let last = g.node.last().unwrap();
        assert_eq!(
            (last.input.clone(), last.output.clone()),
            (vec!["a".into()], vec!["y".into()])
        );
    }

    #[test]
    fn refuses_a_patch_that_breaks_the_graph_and_leaves_it_unchanged() {
        let mut g = graph();
        let before = g.clone();
        let mut p = GraphPatch::new();
        p.remove_node(0);
        let e = p.apply(&mut g).unwrap_err();
        assert_eq!(
            e,
            GraphError::Undefined {
                node: "Neg_y".into(),
                tensor: "a".into()
            }
        );
        assert_eq!(g, before);
        let mut p = GraphPatch::new();
        p.append(node("Relu", &["x"], &["a"]));
        assert!(matches!(p.apply(&mut g), Err(GraphError::Redefined { .. })));
        let mut p = GraphPatch::new();
        p.remove_node(9);
        assert_eq!(
            p.apply(&mut g),
            Err(GraphError::NoSuchNode { index: 9, len: 2 })
        );
    }

    #[test]
    fn rewires_into_subgraphs_that_capture_the_tensor() {
        use crate::pb::{AttributeProto, attribute_proto};
        let mut g = graph();
        let branch = GraphProto {
            node: vec![node("Identity", &["a"], &["t"])],
            output: vec![value("t")],
            ..GraphProto::default()
        };
        let mut if_node = node("If", &["x"], &["z"]);
        if_node.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(attribute_proto::AttributeType::Graph as i32),
            g: Some(branch),
            ..AttributeProto::default()
        });
        g.node.push(if_node);
        check_graph(&g).unwrap();
        let mut p = GraphPatch::new();
        p.insert_before(1, node("Abs", &["x"], &["b"]))
            .rewire("a", "b");
        p.apply(&mut g).unwrap();
        let sub = subgraphs(&g.node[3]).next().unwrap();
        assert_eq!(sub.node[0].input, ["b"]);
    }
}
