//! `BatchNormalization` with computed parameters, written as arithmetic.
//!
//! tract folds a BatchNormalization into a per-channel scale and shift at load, so it needs
//! its scale, bias, mean and variance constant ("Params are not const"); tf2onnx writes
//! Keras' layer normalisation as a BatchNormalization whose parameters are computed
//! (`magika_standard_v1`). In inference mode it is
//! `Y = (X − mean) / sqrt(var + ε) · scale + B`, each parameter broadcast along axis 1, so
//! each is reshaped to `[C, 1, …, 1]` (rank − 1 dims, from `Shape(Shape(X))`: no rank
//! needs to be known when rewriting), which tract folds once the input shapes are known.

use crate::patch::GraphPatch;
use crate::pb::{GraphProto, NodeProto, TensorProto, tensor_proto};
use crate::simplify::{label, make};

/// The first inference-mode BatchNormalization with a non-constant parameter, rewritten.
pub(crate) fn computed_batchnorm(graph: &GraphProto) -> Option<(GraphPatch, String)> {
    let constant = |name: &str| {
        graph
            .initializer
            .iter()
            .any(|t| t.name.as_deref() == Some(name))
            || graph.node.iter().any(|n| {
                n.op_type.as_deref() == Some("Constant")
                    && n.output.first().map(String::as_str) == Some(name)
            })
    };
    graph.node.iter().enumerate().find_map(|(index, node)| {
        let candidate = node.op_type.as_deref() == Some("BatchNormalization")
            && matches!(node.domain.as_deref(), None | Some("" | "ai.onnx"))
            && node.input.len() == 5
            && node.output.iter().filter(|o| !o.is_empty()).count() == 1
            && !training(node)
            && node.input[1..].iter().any(|p| !constant(p));
        if !candidate {
            return None;
        }
        let patch = rewrite(index, node)?;
        Some((
            patch,
            format!(
                "BatchNormalization '{}' with computed parameters written as arithmetic",
                label(node)
            ),
        ))
    })
}

fn training(node: &NodeProto) -> bool {
    node.attribute
        .iter()
        .any(|a| a.name.as_deref() == Some("training_mode") && a.i.unwrap_or(0) != 0)
}

fn epsilon(node: &NodeProto) -> f32 {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("epsilon"))
        .and_then(|a| a.f)
        .unwrap_or(1e-5)
}

fn rewrite(index: usize, node: &NodeProto) -> Option<GraphPatch> {
    let (x, y) = (node.input.first()?, node.output.first()?);
    let base = format!("{}/lrai_bn", label(node));
    let name = |s: &str| format!("{base}/{s}");
    let mut nodes = vec![
        make(&name("shape"), "Shape", &[x], &name("shape"), vec![]),
        make(
            &name("rank"),
            "Shape",
            &[&name("shape")],
            &name("rank"),
            vec![],
        ),
        make(
            &name("rank_2"),
            "Sub",
            &[&name("rank"), &name("two")],
            &name("rank_2"),
            vec![],
        ),
        make(
            &name("ones"),
            "ConstantOfShape",
            &[&name("rank_2")],
            &name("ones"),
            vec![one_i64()],
        ),
        make(
            &name("param_shape"),
            "Concat",
            &[&name("minus_one"), &name("ones")],
            &name("param_shape"),
            vec![axis0()],
        ),
    ];
    let mut shaped = Vec::new();
    for (param, tag) in node.input[1..].iter().zip(["scale", "bias", "mean", "var"]) {
        let out = name(&format!("{tag}_r"));
        nodes.push(make(
            &out,
            "Reshape",
            &[param, &name("param_shape")],
            &out,
            vec![],
        ));
        shaped.push(out);
    }
    let (scale, bias, mean, var) = (&shaped[0], &shaped[1], &shaped[2], &shaped[3]);
    nodes.extend([
        make(
            &name("centred"),
            "Sub",
            &[x, mean],
            &name("centred"),
            vec![],
        ),
        make(
            &name("var_eps"),
            "Add",
            &[var, &name("eps")],
            &name("var_eps"),
            vec![],
        ),
        make(
            &name("std"),
            "Sqrt",
            &[&name("var_eps")],
            &name("std"),
            vec![],
        ),
        make(
            &name("normed"),
            "Div",
            &[&name("centred"), &name("std")],
            &name("normed"),
            vec![],
        ),
        make(
            &name("scaled"),
            "Mul",
            &[&name("normed"), scale],
            &name("scaled"),
            vec![],
        ),
        make(&name("out"), "Add", &[&name("scaled"), bias], y, vec![]),
    ]);
    let mut patch = GraphPatch::new();
    patch
        .add_initializer(i64_vec(&name("two"), &[2]))
        .add_initializer(i64_vec(&name("minus_one"), &[-1]))
        .add_initializer(f32_scalar(&name("eps"), epsilon(node)))
        .replace_node(index, nodes);
    Some(patch)
}

fn i64_vec(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(tensor_proto::DataType::Int64 as i32),
        dims: vec![i64::try_from(values.len()).unwrap_or(0)],
        int64_data: values.to_vec(),
        ..TensorProto::default()
    }
}

fn f32_scalar(name: &str, value: f32) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(tensor_proto::DataType::Float as i32),
        float_data: vec![value],
        ..TensorProto::default()
    }
}

/// `value` attribute of ConstantOfShape: a one-element int64 tensor holding 1.
fn one_i64() -> crate::pb::AttributeProto {
    crate::pb::AttributeProto {
        name: Some("value".into()),
        r#type: Some(crate::pb::attribute_proto::AttributeType::Tensor as i32),
        t: Some(TensorProto {
            dims: vec![1],
            ..i64_vec("one", &[1])
        }),
        ..crate::pb::AttributeProto::default()
    }
}

fn axis0() -> crate::pb::AttributeProto {
    crate::simplify::int_attr("axis", 0)
}
