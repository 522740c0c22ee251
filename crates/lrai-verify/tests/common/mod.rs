//! Shared helpers for the verifier tests: tiny ONNX networks built in code (so their
//! exact bounds are known by hand), the committed benchmark fixtures, and a tract
//! session to confirm counterexamples on.
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lrai_backend::{Backend, ModelSource, Session, SessionOptions};
use lrai_onnx::pb::{
    self, AttributeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    tensor_shape_proto::{Dimension, dimension},
};
use lrai_onnx::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use lrai_verify::vnnlib::{self, Property};
use lrai_verify::{Method, Network, Outcome, Settings, Verdict};

/// The committed fixtures (a subset of VNN-COMP ACAS Xu and MNIST fc).
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(pb::tensor_proto::DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Dimension::default()
                        })
                        .collect(),
                }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(pb::tensor_proto::DataType::Float as i32),
        float_data: values.to_vec(),
        ..TensorProto::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{output}")),
        input: inputs.iter().map(|s| (*s).to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..NodeProto::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(pb::attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..AttributeProto::default()
    }
}

/// One fully connected layer: `weights[out][in]`, `bias[out]`.
#[derive(Debug, Clone)]
pub struct Layer {
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

pub fn layer(weights: &[&[f32]], bias: &[f32]) -> Layer {
    Layer {
        weights: weights.iter().map(|r| r.to_vec()).collect(),
        bias: bias.to_vec(),
    }
}

/// An MLP `x[1, n] → Gemm → Relu → … → Gemm → y[1, m]` (ReLU between layers, none
/// after the last); `extra` appends one element-wise operator (e.g. an unsupported one)
/// after the last layer.
pub fn mlp_with(layers: &[Layer], extra: Option<&str>) -> ModelProto {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut cur = "x".to_string();
    let n_in = layers[0].weights[0].len();
    for (k, l) in layers.iter().enumerate() {
        let rows = l.weights.len();
        let cols = l.weights[0].len();
        let w: Vec<f32> = l.weights.iter().flatten().copied().collect();
        let (wn, bn) = (format!("W{k}"), format!("B{k}"));
        inits.push(f32_tensor(&wn, &[rows as i64, cols as i64], &w));
        inits.push(f32_tensor(&bn, &[rows as i64], &l.bias));
        let last = k + 1 == layers.len();
        let out = if last && extra.is_none() {
            "y".to_string()
        } else {
            format!("z{k}")
        };
        nodes.push(node(
            "Gemm",
            &[&cur, &wn, &bn],
            &out,
            vec![int_attr("transB", 1)],
        ));
        cur = out;
        if !last {
            let a = format!("a{k}");
            nodes.push(node("Relu", &[&cur], &a, vec![]));
            cur = a;
        }
    }
    if let Some(op) = extra {
        nodes.push(node(op, &[&cur], "y", vec![]));
    }
    let n_out = layers.last().unwrap().weights.len();
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        producer_name: Some("lrai-verify tests".into()),
        graph: Some(GraphProto {
            name: Some("mlp".into()),
            node: nodes,
            initializer: inits,
            input: vec![value_info("x", &[1, n_in as i64])],
            output: vec![value_info("y", &[1, n_out as i64])],
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    }
}

pub fn mlp(layers: &[Layer]) -> ModelProto {
    mlp_with(layers, None)
}

/// The tract backend (always built), one thread.
pub fn tract() -> Arc<dyn Backend> {
    lrai_backend::create_kind(
        lrai_backend::BackendKind::Tract,
        &lrai_backend::BackendConfig::default(),
    )
    .unwrap()
}

pub fn options() -> SessionOptions {
    SessionOptions {
        intra_op_threads: Some(1),
        ..SessionOptions::default()
    }
}

/// A model ready to verify: the verifier's network and a backend session.
pub struct Model {
    pub net: Network,
    pub session: Arc<dyn Session>,
}

impl Model {
    pub fn from_proto(proto: &ModelProto, dir: &Path) -> Model {
        let path = dir.join("model.onnx");
        lrai_onnx::save_model(&path, proto).unwrap();
        Model::load(&path)
    }

    pub fn load(path: &Path) -> Model {
        let proto = lrai_onnx::load_model(path).unwrap();
        let net = Network::from_onnx(&path.display().to_string(), &proto).unwrap();
        let source = ModelSource::from_path(path).unwrap();
        let session = tract().load(&source, &options()).unwrap();
        Model { net, session }
    }

    /// Runs the backend at `x` (f32) and returns the flattened output.
    pub fn run(&self, x: &[f64]) -> Vec<f64> {
        #[allow(clippy::cast_possible_truncation)]
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        lrai_verify::verifier::run_backend(self.session.as_ref(), &self.net, &xf).unwrap()
    }

    pub fn verify(&self, prop: &Property, settings: &Settings) -> Outcome {
        lrai_verify::verify(&self.net, prop, "prop", self.session.as_ref(), settings).unwrap()
    }

    pub fn verify_text(&self, vnnlib_text: &str, method: Method) -> Outcome {
        let prop = vnnlib::parse("prop", vnnlib_text).unwrap();
        self.verify(&prop, &settings(method, 20.0))
    }
}

pub fn settings(method: Method, timeout_s: f64) -> Settings {
    Settings {
        method,
        timeout: Duration::from_secs_f64(timeout_s),
        ..Settings::default()
    }
}

/// Checks a `violated` verdict the way VNN-COMP does: `x` is inside one of the
/// property's boxes, and re-running the backend on it gives `y` (as reported), which
/// meets the unsafe condition.
pub fn assert_counterexample(model: &Model, prop: &Property, outcome: &Outcome) {
    let Verdict::Violated { x, y } = &outcome.verdict else {
        panic!("expected violated, got {:?}", outcome.verdict);
    };
    assert!(
        prop.boxes.iter().any(|b| x
            .iter()
            .zip(b.lower.iter().zip(&b.upper))
            .all(|(v, (l, u))| l <= v && v <= u)),
        "counterexample {x:?} is outside the input region"
    );
    // x is reported as f32 values, so re-running is exact.
    for v in x {
        #[allow(clippy::cast_possible_truncation)]
        let f = *v as f32;
        assert_eq!(f64::from(f), *v, "x is not an f32 value");
    }
    let again = model.run(x);
    assert_eq!(&again, y, "the reported y is not the backend's output at x");
    assert!(
        prop.is_unsafe(y),
        "y = {y:?} does not meet the unsafe condition"
    );
}

/// A VNN-LIB text: box `lo[i] <= X_i <= hi[i]`, `ny` outputs, then the given asserts.
pub fn vnnlib_box(lo: &[f64], hi: &[f64], ny: usize, asserts: &str) -> String {
    let mut s = String::new();
    for i in 0..lo.len() {
        s += &format!("(declare-const X_{i} Real)\n");
    }
    for j in 0..ny {
        s += &format!("(declare-const Y_{j} Real)\n");
    }
    for i in 0..lo.len() {
        s += &format!(
            "(assert (>= X_{i} {:?}))\n(assert (<= X_{i} {:?}))\n",
            lo[i], hi[i]
        );
    }
    s + asserts
}
