//! What a rewrite can quantize: its layers (the unit that sensitivity analysis turns on
//! and off) and the float ops it leaves alone.

use std::collections::BTreeMap;

use lrai_onnx::ModelProto;

use crate::graph::{self, INT8, UINT8, op};
use crate::{QuantError, Result};

/// One quantizable node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The node's name (or `<op>:<first output>` when unnamed).
    pub key: String,
    /// Its op type.
    pub op: String,
}

/// The layers of a rewrite and the float ops that stay float.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Quantizable layers in graph order.
    pub layers: Vec<Layer>,
    /// Op types (and counts) computing floats that the rewrite does not quantize.
    pub unsupported: BTreeMap<String, usize>,
}

const QUANTIZED_OPS: [&str; 12] = [
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearMul",
    "QGemm",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
];

/// Refuses a model that is already quantized: quantized operators, or 8-bit
/// initializers (quantized weights).
///
/// # Errors
/// [`QuantError::AlreadyQuantized`] naming what gave it away.
pub fn check_not_quantized(model: &ModelProto, name: &str) -> Result<()> {
    let Some(g) = model.graph.as_ref() else {
        return Ok(());
    };
    for n in lrai_onnx::all_nodes(g) {
        let o = op(n);
        if QUANTIZED_OPS.contains(&o) || o.starts_with("QLinear") {
            return Err(QuantError::AlreadyQuantized {
                model: name.to_string(),
                what: format!("a {o} node ('{}')", graph::node_key(n)),
            });
        }
    }
    if let Some(t) = g.initializer.iter().find(|t| {
        matches!(t.data_type, Some(d) if d == INT8 || d == UINT8) && graph::element_count(t) > 1
    }) {
        return Err(QuantError::AlreadyQuantized {
            model: name.to_string(),
            what: format!("8-bit weights ('{}')", t.name.as_deref().unwrap_or("")),
        });
    }
    Ok(())
}
