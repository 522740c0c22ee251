//! What tract would parse and then compute wrongly, refused at load so that `auto` can
//! pick ONNX Runtime and nobody gets a wrong answer (the reproducers are in
//! `scripts/tract-repro/`, the causes in `docs/tract-upstream.md`):
//!
//! - tract's importers for `RNN`, `GRU` and `LSTM` never read `activations`, `clip`,
//!   `input_forget` or `direction="reverse"`: a PyTorch `nn.RNN(nonlinearity='relu')`
//!   answered with Tanh;
//! - tract ignores a node's domain: `com.microsoft.Relu` (no such op) ran as ONNX `Relu`.
//!   Ops of other domains are accepted only where the domain really defines them.

use lrai_onnx::NodeProto;

/// Operators of `ai.onnx.ml` (the ONNX-ML spec).
const ONNX_ML: &[&str] = &[
    "ArrayFeatureExtractor",
    "Binarizer",
    "CastMap",
    "CategoryMapper",
    "DictVectorizer",
    "FeatureVectorizer",
    "Imputer",
    "LabelEncoder",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "OneHotEncoder",
    "SVMClassifier",
    "SVMRegressor",
    "Scaler",
    "TreeEnsemble",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "ZipMap",
];

/// ONNX Runtime's `com.microsoft` contrib operators that tract implements. Not
/// `Attention`: tract's is ONNX's (opset 23), whose inputs differ from the contrib one's.
const COM_MICROSOFT: &[&str] = &[
    "BiasGelu",
    "FastGelu",
    "GatherBlockQuantized",
    "Gelu",
    "GroupQueryAttention",
    "MatMulNBits",
    "MultiHeadAttention",
    "QuickGelu",
    "RotaryEmbedding",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
];

/// Default activations of each recurrent op, per direction (ONNX spec).
fn default_activations(op: &str) -> &'static [&'static str] {
    match op {
        "RNN" => &["Tanh"],
        "GRU" => &["Sigmoid", "Tanh"],
        "LSTM" => &["Sigmoid", "Tanh", "Tanh"],
        _ => &[],
    }
}

/// Why tract can't be trusted with `node`, or `None`. `known` says whether tract
/// registers an op of that name (in any domain: it doesn't look at domains).
pub(super) fn refusal(node: &NodeProto, known: impl Fn(&str) -> bool) -> Option<String> {
    let op = node.op_type.as_deref().unwrap_or("");
    let qualified = match node.domain.as_deref() {
        None | Some("" | "ai.onnx") => op.to_string(),
        Some(domain) => format!("{domain}.{op}"),
    };
    let in_domain = match node.domain.as_deref() {
        None | Some("" | "ai.onnx") => true,
        Some("ai.onnx.ml") => ONNX_ML.contains(&op),
        Some("com.microsoft") => COM_MICROSOFT.contains(&op),
        Some(_) => false,
    };
    if !in_domain || !known(op) {
        return Some(qualified);
    }
    recurrent_gap(node, op).map(|why| format!("{op} with {why} (tract ignores it)"))
}

fn strings(node: &NodeProto, name: &str) -> Vec<String> {
    node.attribute
        .iter()
        .filter(|a| a.name.as_deref() == Some(name))
        .flat_map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
        })
        .collect()
}

fn has(node: &NodeProto, name: &str) -> bool {
    node.attribute
        .iter()
        .any(|a| a.name.as_deref() == Some(name))
}

fn int(node: &NodeProto, name: &str) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
        .unwrap_or(0)
}

/// The attribute of a recurrent node tract would ignore, described.
fn recurrent_gap(node: &NodeProto, op: &str) -> Option<String> {
    let defaults = default_activations(op);
    if defaults.is_empty() {
        return None;
    }
    let activations = strings(node, "activations");
    let standard = activations
        .iter()
        .zip(defaults.iter().cycle())
        .all(|(a, d)| a.eq_ignore_ascii_case(d));
    if !standard {
        return Some(format!("activations [{}]", activations.join(", ")));
    }
    if has(node, "clip") {
        return Some("clip".into());
    }
    if op == "LSTM" && int(node, "input_forget") != 0 {
        return Some("input_forget".into());
    }
    // `direction` is a single string (attribute field `s`), not a list.
    let reverse = node
        .attribute
        .iter()
        .any(|a| a.name.as_deref() == Some("direction") && a.s.as_deref() == Some(&b"reverse"[..]));
    if reverse {
        return Some("direction reverse".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_onnx::pb::{AttributeProto, attribute_proto::AttributeType};

    fn node(op: &str, domain: &str, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            domain: Some(domain.into()),
            attribute: attrs,
            ..NodeProto::default()
        }
    }

    fn strs(name: &str, values: &[&str]) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Strings as i32),
            strings: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ..AttributeProto::default()
        }
    }

    #[test]
    fn refuses_what_tract_would_get_wrong() {
        let known = |_: &str| true;
        assert_eq!(refusal(&node("Relu", "", vec![]), known), None);
        assert_eq!(
            refusal(&node("Relu", "com.microsoft", vec![]), known).as_deref(),
            Some("com.microsoft.Relu")
        );
        assert_eq!(
            refusal(&node("FastGelu", "com.microsoft", vec![]), known),
            None
        );
        let lstm = node(
            "LSTM",
            "",
            vec![strs("activations", &["Sigmoid", "Tanh", "Tanh"])],
        );
        assert_eq!(refusal(&lstm, known), None);
        let relu_gru = node("GRU", "", vec![strs("activations", &["Sigmoid", "Relu"])]);
        assert!(
            refusal(&relu_gru, known)
                .unwrap()
                .contains("activations [Sigmoid, Relu]")
        );
        let reverse = node(
            "RNN",
            "",
            vec![AttributeProto {
                name: Some("direction".into()),
                r#type: Some(AttributeType::String as i32),
                s: Some(b"reverse".to_vec()),
                ..AttributeProto::default()
            }],
        );
        assert!(
            refusal(&reverse, known)
                .unwrap()
                .contains("direction reverse")
        );
        let bidirectional = node(
            "LSTM",
            "",
            vec![strs(
                "activations",
                &["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Tanh"],
            )],
        );
        assert_eq!(refusal(&bidirectional, known), None);
        assert_eq!(
            refusal(&node("Det", "", vec![]), |op| op != "Det").as_deref(),
            Some("Det")
        );
    }
}
