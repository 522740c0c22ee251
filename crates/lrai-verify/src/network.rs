//! An ONNX graph as the verifier sees it: a DAG over flattened f64 vectors whose nodes
//! are the input, affine maps ([`Node::Linear`], a sum of matrices applied to earlier
//! nodes plus a bias) and element-wise activations ([`Node::Act`]).
//!
//! Every linear ONNX operator (Gemm, MatMul, Add/Sub/Mul/Div by constants, Conv,
//! BatchNormalization, AveragePool, Concat, Transpose, DequantizeLinear) becomes an
//! affine node; chains of them are fused into one, so after [`Network::from_onnx`] an
//! affine node only reads the input or activations. Reshape-like operators (Flatten,
//! Reshape, Squeeze, Unsqueeze, Identity, Dropout) change nothing on flattened vectors.
//! Constant subgraphs (QDQ weights, shape arithmetic) are folded while reading.

use std::collections::HashMap;

use lrai_onnx::pb::tensor_proto::DataType as OnnxType;
use lrai_onnx::{ModelProto, NodeProto, TensorProto};

use crate::matrix::{Dense, Mat};
use crate::{Result, VerifyError};

/// An element-wise nonlinearity.
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// ONNX QuantizeLinear: `clamp(round_half_even(x / scale) + zero_point, qmin, qmax)`,
    /// per element (scales and zero points are expanded to the vector's length).
    Quantize {
        /// Scale per element.
        scale: Vec<f64>,
        /// Zero point per element.
        zero_point: Vec<f64>,
        /// Smallest representable integer.
        qmin: f64,
        /// Largest representable integer.
        qmax: f64,
    },
}

impl Activation {
    /// Applies the activation to element `i` with value `x`.
    pub fn eval(&self, i: usize, x: f64) -> f64 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Quantize {
                scale,
                zero_point,
                qmin,
                qmax,
            } => ((x / scale[i]).round_ties_even() + zero_point[i]).clamp(*qmin, *qmax),
        }
    }

    /// Bounds on the backend's f32 result for pre-activations in `[l, u]` (monotone
    /// activations: the values at the ends). A quantizer rounds `fl(x / scale)`, whose
    /// relative error (at most about 2u, also for a multiplication by a rounded
    /// reciprocal) can carry a value across a rounding boundary, and backends differ on
    /// ties; so the ends are widened by that error and rounded the lowest and highest
    /// way any round-to-nearest rule can (`ceil(v − ½)`, `floor(v + ½)`).
    pub fn eval_range(&self, i: usize, l: f64, u: f64) -> (f64, f64) {
        match self {
            Activation::Quantize {
                scale,
                zero_point,
                qmin,
                qmax,
            } => {
                const WIDEN: f64 = 2.5 * 5.960_464_477_539_063e-8;
                let lo = l / scale[i];
                let hi = u / scale[i];
                let lo = lo - WIDEN * lo.abs();
                let hi = hi + WIDEN * hi.abs();
                (
                    ((lo - 0.5).ceil() + zero_point[i]).clamp(*qmin, *qmax),
                    ((hi + 0.5).floor() + zero_point[i]).clamp(*qmin, *qmax),
                )
            }
            _ => (self.eval(i, l), self.eval(i, u)),
        }
    }

    /// Derivative used by gradient-based search (a subgradient at kinks; quantizers use
    /// the straight-through estimate `1/scale`).
    pub fn derivative(&self, i: usize, x: f64) -> f64 {
        match self {
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            }
            Activation::Tanh => 1.0 - x.tanh().powi(2),
            Activation::Quantize { scale, .. } => 1.0 / scale[i],
        }
    }

    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Quantize { .. } => "QuantizeLinear",
        }
    }
}

/// One node of the verified DAG. Nodes are stored in topological order.
#[derive(Debug, Clone)]
pub enum Node {
    /// The network input (flattened).
    Input {
        /// Number of elements.
        dim: usize,
    },
    /// `Σ terms[k].1 · value(terms[k].0) + bias`.
    Linear {
        /// (earlier node, matrix of shape `dim × dim(node)`).
        terms: Vec<(usize, Mat)>,
        /// Bias, length `dim`.
        bias: Vec<f64>,
        /// For the float-error bound: `|W|` composed through fused operators, which
        /// dominates every intermediate sum the backend forms.
        abs_terms: Vec<(usize, Mat)>,
        /// `|b|` composed likewise.
        abs_bias: Vec<f64>,
        /// Total accumulation length through the fused operators (for `γ_n`).
        acc_len: usize,
    },
    /// An element-wise activation of an earlier [`Node::Linear`].
    Act {
        /// The linear node it reads.
        input: usize,
        /// Which nonlinearity.
        act: Activation,
    },
}

impl Node {
    /// A copy whose input indices go through `map` (old node index → new one), for
    /// networks assembled from other networks' nodes.
    pub(crate) fn remapped(&self, map: &[usize]) -> Node {
        let remap = |terms: &[(usize, Mat)]| -> Vec<(usize, Mat)> {
            terms.iter().map(|(j, m)| (map[*j], m.clone())).collect()
        };
        match self {
            Node::Input { dim } => Node::Input { dim: *dim },
            Node::Act { input, act } => Node::Act {
                input: map[*input],
                act: act.clone(),
            },
            Node::Linear {
                terms,
                bias,
                abs_terms,
                abs_bias,
                acc_len,
            } => Node::Linear {
                terms: remap(terms),
                bias: bias.clone(),
                abs_terms: remap(abs_terms),
                abs_bias: abs_bias.clone(),
                acc_len: *acc_len,
            },
        }
    }
}

/// A network ready for bound propagation.
#[derive(Debug, Clone)]
pub struct Network {
    /// Model name (for messages).
    pub name: String,
    /// Nodes in topological order; node 0 is the input.
    pub nodes: Vec<Node>,
    /// Element count of each node.
    pub dims: Vec<usize>,
    /// The output node (always a [`Node::Linear`]).
    pub output: usize,
    /// The graph input's name.
    pub input_name: String,
    /// The concrete input shape (symbolic dims set to 1).
    pub input_shape: Vec<usize>,
    /// The graph output's name.
    pub output_name: String,
    /// Transposed dense weights, built on first use (see [`Network::forward_linear`]).
    pub transposed: Transposed,
}

/// Each linear node's dense terms transposed (`None` for diagonal ones), built once on
/// first use and shared by every thread.
#[derive(Debug, Clone, Default)]
pub struct Transposed(std::sync::OnceLock<Vec<Vec<Option<crate::matrix::Dense>>>>);

impl Network {
    /// The value of linear node `k`, which reads only the input through one dense term,
    /// at `x`, from its value `z_prev` at `x_prev`: only the columns where `x` differs
    /// are added. `None` when the node is not of that form or more than a quarter of the
    /// columns differ (a full pass is then as cheap).
    pub fn forward_first_from(
        &self,
        k: usize,
        x: &[f64],
        x_prev: &[f64],
        z_prev: &[f64],
    ) -> Option<Vec<f64>> {
        let Node::Linear { terms, .. } = &self.nodes[k] else {
            return None;
        };
        let [(0, Mat::Dense(_))] = terms.as_slice() else {
            return None;
        };
        let mt = self.transposed_terms()[k].first()?.as_ref()?;
        if x.len() != x_prev.len() || x.len() != mt.rows || z_prev.len() != mt.cols {
            return None;
        }
        let changed = x.iter().zip(x_prev).filter(|(a, b)| a != b).count();
        if changed * 4 > x.len() {
            return None;
        }
        let mut out = z_prev.to_vec();
        for (j, (a, b)) in x.iter().zip(x_prev).enumerate() {
            if a != b {
                let d = a - b;
                for (o, w) in out.iter_mut().zip(mt.row(j)) {
                    *o += d * w;
                }
            }
        }
        Some(out)
    }

    fn transposed_terms(&self) -> &Vec<Vec<Option<crate::matrix::Dense>>> {
        self.transposed.0.get_or_init(|| {
            self.nodes
                .iter()
                .map(|n| match n {
                    Node::Linear { terms, .. } => terms
                        .iter()
                        .map(|(_, m)| match m {
                            Mat::Dense(d) => Some(d.transpose()),
                            Mat::Diag(_) => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                })
                .collect()
        })
    }

    /// `out = bias + Σ W·x_j` for linear node `k`, given every earlier node's value.
    ///
    /// Reads the transposed weights row by row and skips zero inputs (ReLUs that are
    /// off), which is far less work than one dot product per output row: relaxed
    /// forward passes for α/β gradients are most of a ReLU-split search's time.
    pub fn forward_linear(&self, k: usize, values: &[Vec<f64>]) -> Vec<f64> {
        let Node::Linear { terms, bias, .. } = &self.nodes[k] else {
            return Vec::new(); // not a linear node: nothing to compute
        };
        let t = self.transposed_terms();
        let mut out = bias.clone();
        for (q, (j, m)) in terms.iter().enumerate() {
            match t[k].get(q).and_then(Option::as_ref) {
                Some(mt) => mt.transpose_apply_add(&values[*j], &mut out),
                None => m.apply_add(&values[*j], &mut out),
            }
        }
        out
    }

    /// Input dimension.
    pub fn input_dim(&self) -> usize {
        self.dims[0]
    }

    /// Output dimension.
    pub fn output_dim(&self) -> usize {
        self.dims[self.output]
    }

    /// Number of ReLU neurons (for reports).
    pub fn relu_count(&self) -> usize {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                matches!(
                    n,
                    Node::Act {
                        act: Activation::Relu,
                        ..
                    }
                )
            })
            .map(|(i, _)| self.dims[i])
            .sum()
    }

    /// Evaluates every node at `x` in f64.
    pub fn eval_all(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let mut values: Vec<Vec<f64>> = Vec::with_capacity(self.nodes.len());
        for (k, node) in self.nodes.iter().enumerate() {
            let v = match node {
                Node::Input { .. } => x.to_vec(),
                Node::Linear { .. } => self.forward_linear(k, &values),
                Node::Act { input, act } => values[*input]
                    .iter()
                    .enumerate()
                    .map(|(i, &z)| act.eval(i, z))
                    .collect(),
            };
            debug_assert_eq!(v.len(), self.dims[k]);
            values.push(v);
        }
        values
    }

    /// The output at `x`, in f64.
    pub fn eval(&self, x: &[f64]) -> Vec<f64> {
        let mut all = self.eval_all(x);
        all.swap_remove(self.output)
    }

    /// Output and the gradient of `g · output` with respect to `x`.
    pub fn eval_grad(&self, x: &[f64], g_out: impl Fn(&[f64]) -> Vec<f64>) -> (Vec<f64>, Vec<f64>) {
        let values = self.eval_all(x);
        let y = values[self.output].clone();
        let mut grads: Vec<Vec<f64>> = self.dims.iter().map(|&d| vec![0.0; d]).collect();
        grads[self.output] = g_out(&y);
        for k in (0..self.nodes.len()).rev() {
            let g = std::mem::take(&mut grads[k]);
            if g.iter().all(|v| *v == 0.0) {
                grads[k] = g;
                continue;
            }
            match &self.nodes[k] {
                Node::Input { .. } => {}
                Node::Linear { terms, .. } => {
                    for (j, m) in terms {
                        m.transpose_apply_add(&g, &mut grads[*j]);
                    }
                }
                Node::Act { input, act } => {
                    let z = &values[*input];
                    let gi = &mut grads[*input];
                    for (i, gv) in g.iter().enumerate() {
                        gi[i] += gv * act.derivative(i, z[i]);
                    }
                }
            }
            grads[k] = g;
        }
        (y, std::mem::take(&mut grads[0]))
    }

    /// Reads an ONNX model. Symbolic input dims are taken as 1.
    ///
    /// # Errors
    /// [`VerifyError::UnsupportedOperator`] for an operator (or form of one) bound
    /// propagation cannot handle, [`VerifyError::Model`] for a model it cannot read.
    pub fn from_onnx(name: &str, model: &ModelProto) -> Result<Network> {
        Reader::new(name, model)?.read()
    }

    /// The f32 rounding error a backend may add at node `k`, given interval bounds on
    /// the (float) values of earlier nodes: for an affine node `γ_n·(|W|·|x| + |b|)`
    /// with `γ_n = n·u/(1 − n·u)`, `u = 2⁻²⁴` and `n` its accumulation length (through
    /// fused operators, with `|W|` composed as `|W₂|·|W₁|`, which bounds every
    /// intermediate sum); for sigmoid/tanh 16 ulps of a value ≤ 1; for a quantizer the
    /// error of `x / scale` before rounding. Empty for exact nodes (input, ReLU).
    pub fn rounding_error(&self, k: usize, lower: &[Vec<f64>], upper: &[Vec<f64>]) -> Vec<f64> {
        // Unit roundoff of f32.
        const U: f64 = 5.960_464_477_539_063e-8;
        let mag = |j: usize| -> Vec<f64> {
            lower[j]
                .iter()
                .zip(&upper[j])
                .map(|(l, u)| l.abs().max(u.abs()))
                .collect()
        };
        match &self.nodes[k] {
            Node::Input { .. }
            | Node::Act {
                act: Activation::Relu,
                ..
            } => Vec::new(),
            Node::Linear {
                abs_terms,
                abs_bias,
                acc_len,
                ..
            } => {
                #[allow(clippy::cast_precision_loss)]
                let nu = (*acc_len + 1) as f64 * U;
                let g = if nu >= 0.5 {
                    f64::INFINITY
                } else {
                    nu / (1.0 - nu)
                };
                let mut sum = abs_bias.clone();
                for (j, m) in abs_terms {
                    m.apply_add(&mag(*j), &mut sum);
                }
                sum.iter().map(|s| g * s).collect()
            }
            Node::Act {
                act: Activation::Sigmoid | Activation::Tanh,
                ..
            } => vec![16.0 * U; self.dims[k]],
            Node::Act {
                input,
                act: Activation::Quantize { scale, .. },
            } => mag(*input)
                .iter()
                .zip(scale)
                .map(|(m, s)| 2.0 * U * m / s + 1e-12)
                .collect(),
        }
    }
}

/// A constant tensor while reading.
#[derive(Debug, Clone)]
struct Arr {
    shape: Vec<usize>,
    data: Vec<f64>,
    /// ONNX element type, for QuantizeLinear's output range.
    elem: i32,
}

/// A value while reading: constant or a (reshaped view of a) raw node.
#[derive(Debug, Clone)]
enum Value {
    Const(Arr),
    Var { node: usize, shape: Vec<usize> },
}

/// Raw, unfused nodes built while reading.
#[derive(Debug, Clone)]
enum Raw {
    Input(usize),
    Linear {
        terms: Vec<(usize, Mat)>,
        bias: Vec<f64>,
        acc_len: usize,
    },
    Act {
        input: usize,
        act: Activation,
    },
}

struct Reader<'a> {
    name: String,
    model: &'a ModelProto,
    raw: Vec<Raw>,
    dims: Vec<usize>,
    values: HashMap<String, Value>,
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Numpy broadcasting of two shapes.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// Expands `arr` to `target` (numpy rules); `None` if not broadcastable to exactly it.
fn broadcast_to(arr: &Arr, target: &[usize]) -> Option<Vec<f64>> {
    if broadcast_shape(&arr.shape, target)? != target {
        return None;
    }
    let n = target.len();
    let off = n - arr.shape.len();
    let src_strides = strides(&arr.shape);
    let tstr = strides(target);
    let total = numel(target);
    let mut out = Vec::with_capacity(total);
    for flat in 0..total {
        let mut src = 0;
        for d in 0..n {
            let idx = (flat / tstr[d]) % target[d];
            if d >= off && arr.shape[d - off] != 1 {
                src += idx * src_strides[d - off];
            }
        }
        out.push(arr.data[src]);
    }
    Some(out)
}

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n lrai_onnx::pb::AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(node: &NodeProto, name: &str, default: f64) -> f64 {
    attr(node, name)
        .and_then(|a| a.f)
        .map_or(default, f64::from)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn node_label(node: &NodeProto) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => node
            .output
            .first()
            .map_or_else(|| "<unnamed>".into(), |o| format!("<output {o}>")),
    }
}

fn unsupported(node: &NodeProto, detail: &str) -> VerifyError {
    VerifyError::UnsupportedOperator {
        op: node.op_type.clone().unwrap_or_default(),
        node: node_label(node),
        detail: detail.to_string(),
    }
}

/// Normalises a possibly negative axis.
fn norm_axis(node: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
    let r = i64::try_from(rank).unwrap_or(i64::MAX);
    let a = if axis < 0 { axis + r } else { axis };
    usize::try_from(a)
        .ok()
        .filter(|&a| a < rank.max(1))
        .ok_or_else(|| {
            unsupported(
                node,
                &format!("axis {axis} is out of range for rank {rank}"),
            )
        })
}

fn dim_usize(node: &NodeProto, v: f64) -> Result<usize> {
    if v.fract() != 0.0 || !(0.0..=1e12).contains(&v) {
        return Err(unsupported(node, &format!("expected a size, got {v}")));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(v as usize)
}

/// Reads a constant tensor into f64.
fn read_tensor(model: &str, t: &TensorProto) -> Result<Arr> {
    let bad = |reason: String| VerifyError::Model {
        model: model.to_string(),
        reason: format!("tensor '{}': {reason}", t.name.as_deref().unwrap_or("")),
    };
    if t.data_location == Some(lrai_onnx::pb::tensor_proto::DataLocation::External as i32) {
        return Err(bad(
            "weights in external data files are not supported by the verifier; \
             save the model with its weights inside"
                .into(),
        ));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<Result<Vec<_>>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= 200_000_000)
        .ok_or_else(|| bad("too many elements".into()))?;
    let elem = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let from_raw = |size: usize, f: &dyn Fn(&[u8]) -> f64| -> Result<Vec<f64>> {
        let r = raw.unwrap_or(&[]);
        if r.len() != n * size {
            return Err(bad(format!(
                "raw data has {} bytes, expected {}",
                r.len(),
                n * size
            )));
        }
        Ok(r.chunks_exact(size).map(f).collect())
    };
    let ty = OnnxType::try_from(elem).map_err(|_| bad(format!("unknown element type {elem}")))?;
    let data: Vec<f64> = match ty {
        OnnxType::Float => match raw {
            Some(_) => from_raw(4, &|b| {
                f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            })?,
            None => t.float_data.iter().map(|&v| f64::from(v)).collect(),
        },
        OnnxType::Double => match raw {
            Some(_) => from_raw(8, &|b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            })?,
            None => t.double_data.clone(),
        },
        OnnxType::Int64 => match raw {
            #[allow(clippy::cast_precision_loss)]
            Some(_) => from_raw(8, &|b| {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64
            })?,
            #[allow(clippy::cast_precision_loss)]
            None => t.int64_data.iter().map(|&v| v as f64).collect(),
        },
        OnnxType::Int32 => match raw {
            Some(_) => from_raw(4, &|b| {
                f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            })?,
            None => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        },
        OnnxType::Int8 => match raw {
            Some(_) => from_raw(1, &|b| f64::from(i8::from_le_bytes([b[0]])))?,
            None => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        },
        OnnxType::Uint8 => match raw {
            Some(_) => from_raw(1, &|b| f64::from(b[0]))?,
            None => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        },
        OnnxType::Float16 => match raw {
            Some(_) => from_raw(2, &|b| {
                f64::from(lrai_core::half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            })?,
            None => t
                .int32_data
                .iter()
                .map(|&v| {
                    f64::from(
                        lrai_core::half::f16::from_bits(u16::try_from(v).unwrap_or(0)).to_f32(),
                    )
                })
                .collect(),
        },
        other => {
            return Err(bad(format!(
                "element type {} is not supported by the verifier",
                other.as_str_name()
            )));
        }
    };
    if data.len() != n {
        return Err(bad(format!(
            "holds {} values, its shape needs {n}",
            data.len()
        )));
    }
    Ok(Arr { shape, data, elem })
}

impl<'a> Reader<'a> {
    fn new(name: &str, model: &'a ModelProto) -> Result<Reader<'a>> {
        Ok(Reader {
            name: name.to_string(),
            model,
            raw: Vec::new(),
            dims: Vec::new(),
            values: HashMap::new(),
        })
    }

    fn model_err(&self, reason: impl Into<String>) -> VerifyError {
        VerifyError::Model {
            model: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn push(&mut self, raw: Raw, dim: usize) -> usize {
        self.raw.push(raw);
        self.dims.push(dim);
        self.raw.len() - 1
    }

    fn read(mut self) -> Result<Network> {
        let graph = self
            .model
            .graph
            .as_ref()
            .ok_or_else(|| self.model_err("the model has no graph"))?;
        for init in &graph.initializer {
            let arr = read_tensor(&self.name, init)?;
            self.values
                .insert(init.name.clone().unwrap_or_default(), Value::Const(arr));
        }
        let inputs = lrai_onnx::graph_inputs(graph);
        let [input] = inputs.as_slice() else {
            return Err(self.model_err(format!(
                "the verifier needs exactly one graph input, the model has {}",
                inputs.len()
            )));
        };
        if input.elem_type != OnnxType::Float as i32 {
            return Err(self.model_err(format!(
                "input '{}' has type {}; the verifier needs FLOAT",
                input.name,
                input.type_name()
            )));
        }
        let input_shape: Vec<usize> = input
            .dims
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|d| match d {
                lrai_core::Dim::Fixed(n) => *n,
                _ => 1,
            })
            .collect();
        let in_dim = numel(&input_shape);
        if in_dim == 0 {
            return Err(self.model_err(format!("input '{}' has no elements", input.name)));
        }
        let inode = self.push(Raw::Input(in_dim), in_dim);
        self.values.insert(
            input.name.clone(),
            Value::Var {
                node: inode,
                shape: input_shape.clone(),
            },
        );
        for node in &graph.node {
            self.read_node(node)?;
        }
        let outputs = lrai_onnx::graph_outputs(graph);
        let [output] = outputs.as_slice() else {
            return Err(self.model_err(format!(
                "the verifier needs exactly one graph output, the model has {}",
                outputs.len()
            )));
        };
        let out_node = match self.values.get(&output.name) {
            Some(Value::Var { node, .. }) => *node,
            Some(Value::Const(_)) => {
                return Err(self.model_err(format!(
                    "output '{}' does not depend on the input",
                    output.name
                )));
            }
            None => {
                return Err(self.model_err(format!("output '{}' is never computed", output.name)));
            }
        };
        let (nodes, dims, output_idx) = fuse(&self.raw, &self.dims, out_node);
        Ok(Network {
            name: self.name,
            nodes,
            dims,
            output: output_idx,
            input_name: input.name.clone(),
            input_shape,
            output_name: output.name.clone(),
            transposed: Default::default(),
        })
    }

    fn get(&self, node: &NodeProto, i: usize) -> Result<Option<Value>> {
        match node.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(n) => self.values.get(n).cloned().map(Some).ok_or_else(|| {
                self.model_err(format!(
                    "node '{}' reads '{n}', which no earlier node produces",
                    node_label(node)
                ))
            }),
        }
    }

    fn need(&self, node: &NodeProto, i: usize) -> Result<Value> {
        self.get(node, i)?
            .ok_or_else(|| unsupported(node, &format!("input {i} is missing")))
    }

    fn need_const(&self, node: &NodeProto, i: usize) -> Result<Arr> {
        match self.need(node, i)? {
            Value::Const(a) => Ok(a),
            Value::Var { .. } => Err(unsupported(
                node,
                &format!(
                    "input {i} depends on the network input; only constants are supported there"
                ),
            )),
        }
    }

    fn set(&mut self, node: &NodeProto, v: Value) {
        if let Some(o) = node.output.first() {
            self.values.insert(o.clone(), v);
        }
    }

    /// A new linear raw node over one variable.
    fn linear1(
        &mut self,
        src: usize,
        m: Mat,
        bias: Vec<f64>,
        acc_len: usize,
        shape: Vec<usize>,
    ) -> Value {
        let dim = bias.len();
        let node = self.push(
            Raw::Linear {
                terms: vec![(src, m)],
                bias,
                acc_len,
            },
            dim,
        );
        Value::Var { node, shape }
    }

    #[allow(clippy::too_many_lines)]
    fn read_node(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.clone().unwrap_or_default();
        match node.domain.as_deref() {
            None | Some("" | "ai.onnx") => {}
            Some(_) => {
                return Err(unsupported(
                    node,
                    "operators outside the ai.onnx domain are not supported",
                ));
            }
        }
        // Constant folding first: any op whose inputs are all constant.
        let all_const = node
            .input
            .iter()
            .filter(|i| !i.is_empty())
            .all(|i| matches!(self.values.get(i), Some(Value::Const(_))));
        if op == "Constant" {
            let t = attr(node, "value")
                .and_then(|a| a.t.as_ref())
                .ok_or_else(|| unsupported(node, "only the 'value' attribute is supported"))?;
            let arr = read_tensor(&self.name, t)?;
            self.set(node, Value::Const(arr));
            return Ok(());
        }
        if op == "Shape"
            && let Some(Value::Var { shape, .. }) = self.get(node, 0)?
        {
            #[allow(clippy::cast_precision_loss)]
            let data = shape.iter().map(|&d| d as f64).collect::<Vec<_>>();
            let arr = Arr {
                shape: vec![data.len()],
                data,
                elem: OnnxType::Int64 as i32,
            };
            self.set(node, Value::Const(arr));
            return Ok(());
        }
        if all_const {
            let v = self.fold(node, &op)?;
            self.set(node, Value::Const(v));
            return Ok(());
        }
        let x = self.need(node, 0)?;
        let Value::Var { node: src, shape } = x.clone() else {
            return Err(unsupported(
                node,
                "expected a value computed from the input",
            ));
        };
        let dim = numel(&shape);
        match op.as_str() {
            "Identity" | "Dropout" => self.set(node, x),
            "Flatten" => {
                let axis = norm_axis(node, attr_i(node, "axis", 1), shape.len() + 1)?;
                let a: usize = shape[..axis.min(shape.len())].iter().product();
                self.set(
                    node,
                    Value::Var {
                        node: src,
                        shape: vec![a, dim / a.max(1)],
                    },
                );
            }
            "Reshape" => {
                let target = self.need_const(node, 1)?;
                let new_shape = reshape_target(node, &shape, &target.data)?;
                self.set(
                    node,
                    Value::Var {
                        node: src,
                        shape: new_shape,
                    },
                );
            }
            "Squeeze" | "Unsqueeze" => {
                let axes = match self.get(node, 1)? {
                    Some(Value::Const(a)) => a
                        .data
                        .iter()
                        .map(|v| {
                            #[allow(clippy::cast_possible_truncation)]
                            let a = *v as i64;
                            a
                        })
                        .collect(),
                    Some(Value::Var { .. }) => {
                        return Err(unsupported(node, "axes must be constant"));
                    }
                    None => attr_ints(node, "axes").unwrap_or_default(),
                };
                let new_shape = squeeze_shape(node, &op, &shape, &axes)?;
                self.set(
                    node,
                    Value::Var {
                        node: src,
                        shape: new_shape,
                    },
                );
            }
            "Relu" | "Sigmoid" | "Tanh" => {
                let act = match op.as_str() {
                    "Relu" => Activation::Relu,
                    "Sigmoid" => Activation::Sigmoid,
                    _ => Activation::Tanh,
                };
                let n = self.push(Raw::Act { input: src, act }, dim);
                self.set(node, Value::Var { node: n, shape });
            }
            "Add" | "Sub" | "Mul" | "Div" => self.binary(node, &op, src, &shape)?,
            "Neg" => {
                let v = self.linear1(src, Mat::Diag(vec![-1.0; dim]), vec![0.0; dim], 1, shape);
                self.set(node, v);
            }
            "Gemm" => self.gemm(node, src, &shape)?,
            "MatMul" => self.matmul(node)?,
            "Conv" => self.conv(node, src, &shape)?,
            "BatchNormalization" => {
                if shape.len() < 2 {
                    return Err(unsupported(node, "input must have a channel axis"));
                }
                let p: Vec<Arr> = (1..5)
                    .map(|i| self.need_const(node, i))
                    .collect::<Result<_>>()?;
                let eps = attr_f(node, "epsilon", 1e-5);
                let c = shape[1];
                if p.iter().any(|a| a.data.len() != c) {
                    return Err(unsupported(
                        node,
                        "parameters must have one value per channel",
                    ));
                }
                let inner: usize = shape[2..].iter().product();
                let mut scale = vec![0.0; dim];
                let mut bias = vec![0.0; dim];
                for (i, (s, b)) in scale.iter_mut().zip(bias.iter_mut()).enumerate() {
                    let ch = (i / inner.max(1)) % c;
                    let k = p[0].data[ch] / (p[3].data[ch] + eps).sqrt();
                    *s = k;
                    *b = p[1].data[ch] - p[2].data[ch] * k;
                }
                let v = self.linear1(src, Mat::Diag(scale), bias, 3, shape);
                self.set(node, v);
            }
            "AveragePool" => self.avgpool(node, src, &shape)?,
            "Transpose" => {
                let perm = attr_ints(node, "perm").unwrap_or_else(|| {
                    (0..shape.len())
                        .rev()
                        .map(|v| i64::try_from(v).unwrap_or(0))
                        .collect()
                });
                let perm = perm
                    .iter()
                    .map(|&p| norm_axis(node, p, shape.len()))
                    .collect::<Result<Vec<_>>>()?;
                let (out_shape, index) = transpose_index(&shape, &perm);
                let mut m = Dense::zeros(dim, dim);
                for (o, &i) in index.iter().enumerate() {
                    m.data[o * dim + i] = 1.0;
                }
                let v = self.linear1(src, Mat::Dense(m), vec![0.0; dim], 1, out_shape);
                self.set(node, v);
            }
            "Concat" => self.concat(node)?,
            "QuantizeLinear" => {
                let scale = self.need_const(node, 1)?;
                let zp = self.get(node, 2)?;
                let (zp, elem) = match zp {
                    Some(Value::Const(a)) => {
                        let e = a.elem;
                        (a, e)
                    }
                    Some(Value::Var { .. }) => {
                        return Err(unsupported(node, "zero point must be constant"));
                    }
                    None => (
                        Arr {
                            shape: vec![],
                            data: vec![0.0],
                            elem: OnnxType::Uint8 as i32,
                        },
                        OnnxType::Uint8 as i32,
                    ),
                };
                let (qmin, qmax) = match OnnxType::try_from(elem) {
                    Ok(OnnxType::Uint8) => (0.0, 255.0),
                    Ok(OnnxType::Int8) => (-128.0, 127.0),
                    Ok(OnnxType::Uint16) => (0.0, 65535.0),
                    Ok(OnnxType::Int16) => (-32768.0, 32767.0),
                    _ => {
                        return Err(unsupported(
                            node,
                            "only 8- and 16-bit integer outputs are supported",
                        ));
                    }
                };
                let axis = attr_i(node, "axis", 1);
                let scale = per_axis(node, &scale, &shape, axis)?;
                if scale.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
                    return Err(unsupported(node, "scales must be positive"));
                }
                let zero_point = per_axis(node, &zp, &shape, axis)?;
                let n = self.push(
                    Raw::Act {
                        input: src,
                        act: Activation::Quantize {
                            scale,
                            zero_point,
                            qmin,
                            qmax,
                        },
                    },
                    dim,
                );
                self.set(node, Value::Var { node: n, shape });
            }
            "DequantizeLinear" => {
                let scale = self.need_const(node, 1)?;
                let zp = match self.get(node, 2)? {
                    Some(Value::Const(a)) => a,
                    Some(Value::Var { .. }) => {
                        return Err(unsupported(node, "zero point must be constant"));
                    }
                    None => Arr {
                        shape: vec![],
                        data: vec![0.0],
                        elem: 0,
                    },
                };
                let axis = attr_i(node, "axis", 1);
                let s = per_axis(node, &scale, &shape, axis)?;
                let z = per_axis(node, &zp, &shape, axis)?;
                let bias = s.iter().zip(&z).map(|(s, z)| -s * z).collect();
                let v = self.linear1(src, Mat::Diag(s), bias, 2, shape);
                self.set(node, v);
            }
            _ => return Err(unsupported(node, "")),
        }
        Ok(())
    }

    fn binary(&mut self, node: &NodeProto, op: &str, _src: usize, _shape: &[usize]) -> Result<()> {
        let a = self.need(node, 0)?;
        let b = self.need(node, 1)?;
        match (&a, &b) {
            (
                Value::Var {
                    node: na,
                    shape: sa,
                },
                Value::Var {
                    node: nb,
                    shape: sb,
                },
            ) => {
                if op != "Add" && op != "Sub" {
                    return Err(unsupported(
                        node,
                        "both operands depend on the input; only Add and Sub are linear then",
                    ));
                }
                if sa != sb {
                    return Err(unsupported(node, "both operands must have the same shape"));
                }
                let d = numel(sa);
                let sign = if op == "Sub" { -1.0 } else { 1.0 };
                let terms = if na == nb {
                    vec![(*na, Mat::Diag(vec![1.0 + sign; d]))]
                } else {
                    vec![
                        (*na, Mat::Diag(vec![1.0; d])),
                        (*nb, Mat::Diag(vec![sign; d])),
                    ]
                };
                let n = self.push(
                    Raw::Linear {
                        terms,
                        bias: vec![0.0; d],
                        acc_len: 1,
                    },
                    d,
                );
                self.set(
                    node,
                    Value::Var {
                        node: n,
                        shape: sa.clone(),
                    },
                );
            }
            (Value::Var { node: n, shape }, Value::Const(c))
            | (Value::Const(c), Value::Var { node: n, shape }) => {
                let var_first = matches!(a, Value::Var { .. });
                let cb = broadcast_to(c, shape).ok_or_else(|| {
                    unsupported(node, "the constant must broadcast to the variable's shape")
                })?;
                let d = numel(shape);
                let (scale, bias) = match (op, var_first) {
                    ("Add", _) => (vec![1.0; d], cb),
                    ("Sub", true) => (vec![1.0; d], cb.iter().map(|v| -v).collect()),
                    ("Sub", false) => (vec![-1.0; d], cb),
                    ("Mul", _) => (cb, vec![0.0; d]),
                    ("Div", true) => {
                        if cb.contains(&0.0) {
                            return Err(unsupported(node, "division by zero"));
                        }
                        (cb.iter().map(|v| 1.0 / v).collect(), vec![0.0; d])
                    }
                    _ => {
                        return Err(unsupported(
                            node,
                            "dividing a constant by a variable is not linear",
                        ));
                    }
                };
                let v = self.linear1(*n, Mat::Diag(scale), bias, 1, shape.clone());
                self.set(node, v);
            }
            _ => return Err(unsupported(node, "unexpected operands")),
        }
        Ok(())
    }

    fn gemm(&mut self, node: &NodeProto, src: usize, shape: &[usize]) -> Result<()> {
        if attr_i(node, "transA", 0) != 0 {
            return Err(unsupported(node, "transA=1 on a variable is not supported"));
        }
        let [m, k] = *shape else {
            return Err(unsupported(node, "A must be 2-D"));
        };
        let b = self.need_const(node, 1)?;
        let alpha = attr_f(node, "alpha", 1.0);
        let beta = attr_f(node, "beta", 1.0);
        let trans_b = attr_i(node, "transB", 0) != 0;
        let (bk, n) = match (b.shape.as_slice(), trans_b) {
            ([r, c], false) => (*r, *c),
            ([r, c], true) => (*c, *r),
            _ => return Err(unsupported(node, "B must be 2-D")),
        };
        if bk != k {
            return Err(unsupported(
                node,
                &format!("A has {k} columns but B has {bk} rows"),
            ));
        }
        let bval = |kk: usize, nn: usize| {
            if trans_b {
                b.data[nn * k + kk]
            } else {
                b.data[kk * n + nn]
            }
        };
        let mut w = Dense::zeros(m * n, m * k);
        for mi in 0..m {
            for nn in 0..n {
                let row = w.row_mut(mi * n + nn);
                for kk in 0..k {
                    row[mi * k + kk] = alpha * bval(kk, nn);
                }
            }
        }
        let bias = match self.get(node, 2)? {
            Some(Value::Const(c)) => broadcast_to(&c, &[m, n])
                .ok_or_else(|| unsupported(node, "C must broadcast to the output"))?
                .iter()
                .map(|v| beta * v)
                .collect(),
            Some(Value::Var { .. }) => return Err(unsupported(node, "C must be constant")),
            None => vec![0.0; m * n],
        };
        let v = self.linear1(src, Mat::Dense(w), bias, k + 1, vec![m, n]);
        self.set(node, v);
        Ok(())
    }

    fn matmul(&mut self, node: &NodeProto) -> Result<()> {
        let a = self.need(node, 0)?;
        let b = self.need(node, 1)?;
        match (a, b) {
            (Value::Var { node: src, shape }, Value::Const(w)) => {
                let [k, n] = *w.shape.as_slice() else {
                    return Err(unsupported(node, "the constant operand must be 2-D"));
                };
                let (batch, xk, out_shape) = match shape.as_slice() {
                    [kk] => (1, *kk, vec![n]),
                    [lead @ .., last] => {
                        let mut s = lead.to_vec();
                        s.push(n);
                        (numel(lead), *last, s)
                    }
                    [] => return Err(unsupported(node, "scalar operand")),
                };
                if xk != k {
                    return Err(unsupported(
                        node,
                        &format!("inner dimensions differ ({xk} vs {k})"),
                    ));
                }
                let mut m = Dense::zeros(batch * n, batch * k);
                for bi in 0..batch {
                    for nn in 0..n {
                        let row = m.row_mut(bi * n + nn);
                        for kk in 0..k {
                            row[bi * k + kk] = w.data[kk * n + nn];
                        }
                    }
                }
                let v = self.linear1(src, Mat::Dense(m), vec![0.0; batch * n], k, out_shape);
                self.set(node, v);
            }
            (Value::Const(w), Value::Var { node: src, shape }) => {
                let [mm, k] = *w.shape.as_slice() else {
                    return Err(unsupported(node, "the constant operand must be 2-D"));
                };
                let (xk, n) = match shape.as_slice() {
                    [kk, nn] => (*kk, *nn),
                    _ => return Err(unsupported(node, "the variable operand must be 2-D")),
                };
                if xk != k {
                    return Err(unsupported(
                        node,
                        &format!("inner dimensions differ ({k} vs {xk})"),
                    ));
                }
                let mut m = Dense::zeros(mm * n, k * n);
                for i in 0..mm {
                    for nn in 0..n {
                        let row = m.row_mut(i * n + nn);
                        for kk in 0..k {
                            row[kk * n + nn] = w.data[i * k + kk];
                        }
                    }
                }
                let v = self.linear1(src, Mat::Dense(m), vec![0.0; mm * n], k, vec![mm, n]);
                self.set(node, v);
            }
            _ => {
                return Err(unsupported(
                    node,
                    "both operands depend on the input (not linear)",
                ));
            }
        }
        Ok(())
    }

    fn conv(&mut self, node: &NodeProto, src: usize, shape: &[usize]) -> Result<()> {
        let w = self.need_const(node, 1)?;
        let [1, c, h, wd] = *shape else {
            return Err(unsupported(
                node,
                "only 2-D convolutions with batch 1 are supported",
            ));
        };
        let [m, cg, kh, kw] = *w.shape.as_slice() else {
            return Err(unsupported(node, "weights must be 4-D"));
        };
        match attr(node, "auto_pad").and_then(|a| a.s.as_deref()) {
            None | Some(b"NOTSET") => {}
            Some(_) => {
                return Err(unsupported(
                    node,
                    "auto_pad is not supported; give explicit pads",
                ));
            }
        }
        let group = dim_usize(node, attr_i(node, "group", 1) as f64)?.max(1);
        if cg * group != c || m % group != 0 {
            return Err(unsupported(
                node,
                "channels do not match the weights and group",
            ));
        }
        let ints = |name: &str, default: Vec<i64>| -> Result<Vec<usize>> {
            attr_ints(node, name)
                .unwrap_or(default)
                .iter()
                .map(|&v| {
                    usize::try_from(v).map_err(|_| unsupported(node, &format!("negative {name}")))
                })
                .collect()
        };
        let pads = ints("pads", vec![0; 4])?;
        let st = ints("strides", vec![1, 1])?;
        let dil = ints("dilations", vec![1, 1])?;
        if pads.len() != 4 || st.len() != 2 || dil.len() != 2 || st.contains(&0) {
            return Err(unsupported(node, "malformed pads/strides/dilations"));
        }
        let eh = dil[0] * (kh - 1) + 1;
        let ew = dil[1] * (kw - 1) + 1;
        if h + pads[0] + pads[2] < eh || wd + pads[1] + pads[3] < ew {
            return Err(unsupported(node, "kernel larger than the padded input"));
        }
        let oh = (h + pads[0] + pads[2] - eh) / st[0] + 1;
        let ow = (wd + pads[1] + pads[3] - ew) / st[1] + 1;
        let in_dim = c * h * wd;
        let out_dim = m * oh * ow;
        if out_dim.saturating_mul(in_dim) > 200_000_000 {
            return Err(unsupported(
                node,
                "too large for the verifier's dense matrices",
            ));
        }
        let bias_c = match self.get(node, 2)? {
            Some(Value::Const(b)) if b.data.len() == m => b.data,
            None => vec![0.0; m],
            _ => {
                return Err(unsupported(
                    node,
                    "bias must be a constant with one value per output channel",
                ));
            }
        };
        let mut mat = Dense::zeros(out_dim, in_dim);
        let mut bias = vec![0.0; out_dim];
        let per_group = m / group;
        #[allow(clippy::needless_range_loop)] // the index addresses several parallel arrays
        for oc in 0..m {
            let g = oc / per_group;
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (oc * oh + oy) * ow + ox;
                    bias[o] = bias_c[oc];
                    for icg in 0..cg {
                        let ic = g * cg + icg;
                        for ky in 0..kh {
                            let iy = (oy * st[0] + ky * dil[0]).checked_sub(pads[0]);
                            let Some(iy) = iy.filter(|&v| v < h) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let ix = (ox * st[1] + kx * dil[1]).checked_sub(pads[1]);
                                let Some(ix) = ix.filter(|&v| v < wd) else {
                                    continue;
                                };
                                let wv = w.data[((oc * cg + icg) * kh + ky) * kw + kx];
                                mat.data[o * in_dim + (ic * h + iy) * wd + ix] += wv;
                            }
                        }
                    }
                }
            }
        }
        let v = self.linear1(
            src,
            Mat::Dense(mat),
            bias,
            cg * kh * kw + 1,
            vec![1, m, oh, ow],
        );
        self.set(node, v);
        Ok(())
    }

    fn avgpool(&mut self, node: &NodeProto, src: usize, shape: &[usize]) -> Result<()> {
        let [1, c, h, wd] = *shape else {
            return Err(unsupported(
                node,
                "only 2-D pooling with batch 1 is supported",
            ));
        };
        if attr_i(node, "ceil_mode", 0) != 0 {
            return Err(unsupported(node, "ceil_mode=1 is not supported"));
        }
        match attr(node, "auto_pad").and_then(|a| a.s.as_deref()) {
            None | Some(b"NOTSET") => {}
            Some(_) => {
                return Err(unsupported(
                    node,
                    "auto_pad is not supported; give explicit pads",
                ));
            }
        }
        let ints = |name: &str, default: Vec<i64>| -> Result<Vec<usize>> {
            attr_ints(node, name)
                .unwrap_or(default)
                .iter()
                .map(|&v| {
                    usize::try_from(v).map_err(|_| unsupported(node, &format!("negative {name}")))
                })
                .collect()
        };
        let k = ints("kernel_shape", vec![])?;
        let pads = ints("pads", vec![0; 4])?;
        let st = ints("strides", vec![1, 1])?;
        if k.len() != 2 || pads.len() != 4 || st.len() != 2 || st.contains(&0) || k.contains(&0) {
            return Err(unsupported(node, "malformed kernel_shape/pads/strides"));
        }
        let include_pad = attr_i(node, "count_include_pad", 0) != 0;
        if h + pads[0] + pads[2] < k[0] || wd + pads[1] + pads[3] < k[1] {
            return Err(unsupported(node, "kernel larger than the padded input"));
        }
        let oh = (h + pads[0] + pads[2] - k[0]) / st[0] + 1;
        let ow = (wd + pads[1] + pads[3] - k[1]) / st[1] + 1;
        let in_dim = c * h * wd;
        let out_dim = c * oh * ow;
        let mut mat = Dense::zeros(out_dim, in_dim);
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (ch * oh + oy) * ow + ox;
                    let mut cells = Vec::new();
                    for ky in 0..k[0] {
                        for kx in 0..k[1] {
                            let iy = (oy * st[0] + ky).checked_sub(pads[0]).filter(|&v| v < h);
                            let ix = (ox * st[1] + kx).checked_sub(pads[1]).filter(|&v| v < wd);
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                cells.push((ch * h + iy) * wd + ix);
                            }
                        }
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let count = if include_pad {
                        (k[0] * k[1]) as f64
                    } else {
                        cells.len().max(1) as f64
                    };
                    for i in cells {
                        mat.data[o * in_dim + i] += 1.0 / count;
                    }
                }
            }
        }
        let v = self.linear1(
            src,
            Mat::Dense(mat),
            vec![0.0; out_dim],
            k[0] * k[1] + 1,
            vec![1, c, oh, ow],
        );
        self.set(node, v);
        Ok(())
    }

    fn concat(&mut self, node: &NodeProto) -> Result<()> {
        let parts: Vec<Value> = (0..node.input.len())
            .map(|i| self.need(node, i))
            .collect::<Result<_>>()?;
        let shapes: Vec<Vec<usize>> = parts
            .iter()
            .map(|p| match p {
                Value::Const(a) => a.shape.clone(),
                Value::Var { shape, .. } => shape.clone(),
            })
            .collect();
        let Some(first) = shapes.first() else {
            return Err(unsupported(node, "no inputs"));
        };
        let rank = first.len();
        let axis = norm_axis(node, attr_i(node, "axis", 0), rank)?;
        if shapes.iter().any(|s| {
            s.len() != rank
                || s.iter()
                    .enumerate()
                    .any(|(d, v)| d != axis && *v != first[d])
        }) {
            return Err(unsupported(node, "input shapes differ off the concat axis"));
        }
        let mut out_shape = first.clone();
        out_shape[axis] = shapes.iter().map(|s| s[axis]).sum();
        let out_dim = numel(&out_shape);
        let outer: usize = first[..axis].iter().product();
        let inner: usize = first[axis + 1..].iter().product();
        let mut bias = vec![0.0; out_dim];
        let mut terms: Vec<(usize, Mat)> = Vec::new();
        let mut offset = 0;
        let total_axis = out_shape[axis];
        for (p, s) in parts.iter().zip(&shapes) {
            let len = s[axis] * inner;
            let pdim = numel(s);
            let mut place = match p {
                Value::Var { .. } => Some(Dense::zeros(out_dim, pdim)),
                Value::Const(_) => None,
            };
            for o in 0..outer {
                for j in 0..len {
                    let out_i = o * total_axis * inner + offset * inner + j;
                    let in_i = o * len + j;
                    match (p, place.as_mut()) {
                        (Value::Const(a), _) => bias[out_i] = a.data[in_i],
                        (Value::Var { .. }, Some(m)) => m.data[out_i * pdim + in_i] = 1.0,
                        (Value::Var { .. }, None) => {}
                    }
                }
            }
            if let (Value::Var { node: n, .. }, Some(m)) = (p, place) {
                terms.push((*n, Mat::Dense(m)));
            }
            offset += s[axis];
        }
        let n = self.push(
            Raw::Linear {
                terms,
                bias,
                acc_len: 1,
            },
            out_dim,
        );
        self.set(
            node,
            Value::Var {
                node: n,
                shape: out_shape,
            },
        );
        Ok(())
    }

    /// Evaluates an operator over constants.
    fn fold(&self, node: &NodeProto, op: &str) -> Result<Arr> {
        let a = self.need_const(node, 0)?;
        let elem_f = OnnxType::Float as i32;
        match op {
            "Identity" | "Dropout" => Ok(a),
            "Cast" => Ok(Arr {
                elem: i32::try_from(attr_i(node, "to", 1)).unwrap_or(elem_f),
                ..a
            }),
            "Reshape" => {
                let t = self.need_const(node, 1)?;
                let shape = reshape_target(node, &a.shape, &t.data)?;
                Ok(Arr { shape, ..a })
            }
            "Flatten" => {
                let axis = norm_axis(node, attr_i(node, "axis", 1), a.shape.len() + 1)?;
                let l: usize = a.shape[..axis.min(a.shape.len())].iter().product();
                let n = a.data.len();
                Ok(Arr {
                    shape: vec![l, n / l.max(1)],
                    ..a
                })
            }
            "Squeeze" | "Unsqueeze" => {
                let axes: Vec<i64> = match self.get(node, 1)? {
                    #[allow(clippy::cast_possible_truncation)]
                    Some(Value::Const(x)) => x.data.iter().map(|v| *v as i64).collect(),
                    _ => attr_ints(node, "axes").unwrap_or_default(),
                };
                let shape = squeeze_shape(node, op, &a.shape, &axes)?;
                Ok(Arr { shape, ..a })
            }
            "Transpose" => {
                let perm = attr_ints(node, "perm").unwrap_or_else(|| {
                    (0..a.shape.len())
                        .rev()
                        .map(|v| i64::try_from(v).unwrap_or(0))
                        .collect()
                });
                let perm = perm
                    .iter()
                    .map(|&p| norm_axis(node, p, a.shape.len()))
                    .collect::<Result<Vec<_>>>()?;
                let (shape, index) = transpose_index(&a.shape, &perm);
                Ok(Arr {
                    shape,
                    data: index.iter().map(|&i| a.data[i]).collect(),
                    elem: a.elem,
                })
            }
            "Neg" => Ok(Arr {
                data: a.data.iter().map(|v| -v).collect(),
                ..a
            }),
            "Add" | "Sub" | "Mul" | "Div" => {
                let b = self.need_const(node, 1)?;
                let shape = broadcast_shape(&a.shape, &b.shape)
                    .ok_or_else(|| unsupported(node, "shapes do not broadcast"))?;
                let (ea, eb) = (
                    broadcast_to(&a, &shape).unwrap_or_default(),
                    broadcast_to(&b, &shape).unwrap_or_default(),
                );
                let int = a.elem != elem_f && a.elem != OnnxType::Double as i32;
                let data = ea
                    .iter()
                    .zip(&eb)
                    .map(|(x, y)| match op {
                        "Add" => x + y,
                        "Sub" => x - y,
                        "Mul" => x * y,
                        _ if int => (x / y).trunc(),
                        _ => x / y,
                    })
                    .collect();
                Ok(Arr {
                    shape,
                    data,
                    elem: a.elem,
                })
            }
            "DequantizeLinear" => {
                let s = self.need_const(node, 1)?;
                let z = match self.get(node, 2)? {
                    Some(Value::Const(z)) => z,
                    _ => Arr {
                        shape: vec![],
                        data: vec![0.0],
                        elem: 0,
                    },
                };
                let axis = attr_i(node, "axis", 1);
                let sv = per_axis(node, &s, &a.shape, axis)?;
                let zv = per_axis(node, &z, &a.shape, axis)?;
                let data = a
                    .data
                    .iter()
                    .zip(&sv)
                    .zip(&zv)
                    .map(|((q, s), z)| (q - z) * s)
                    .collect();
                Ok(Arr {
                    shape: a.shape,
                    data,
                    elem: elem_f,
                })
            }
            "Concat" => {
                let parts: Vec<Arr> = (0..node.input.len())
                    .map(|i| self.need_const(node, i))
                    .collect::<Result<_>>()?;
                let rank = a.shape.len();
                let axis = norm_axis(node, attr_i(node, "axis", 0), rank)?;
                let outer: usize = a.shape[..axis].iter().product();
                let mut shape = a.shape.clone();
                shape[axis] = parts
                    .iter()
                    .map(|p| p.shape.get(axis).copied().unwrap_or(0))
                    .sum();
                let mut data = Vec::new();
                for o in 0..outer {
                    for p in &parts {
                        let chunk = p.data.len() / outer.max(1);
                        data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
                    }
                }
                if data.len() != numel(&shape) {
                    return Err(unsupported(node, "input shapes differ off the concat axis"));
                }
                Ok(Arr {
                    shape,
                    data,
                    elem: a.elem,
                })
            }
            "Gather" => {
                let idx = self.need_const(node, 1)?;
                if attr_i(node, "axis", 0) != 0 || a.shape.len() != 1 {
                    return Err(unsupported(
                        node,
                        "only axis-0 gathers from 1-D constants are supported",
                    ));
                }
                let n = i64::try_from(a.data.len()).unwrap_or(i64::MAX);
                let data = idx
                    .data
                    .iter()
                    .map(|&i| {
                        #[allow(clippy::cast_possible_truncation)]
                        let i = i as i64;
                        let i = if i < 0 { i + n } else { i };
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| a.data.get(i).copied())
                            .ok_or_else(|| unsupported(node, "index out of range"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Arr {
                    shape: idx.shape,
                    data,
                    elem: a.elem,
                })
            }
            _ => Err(unsupported(node, "")),
        }
    }
}

/// Expands a per-tensor (scalar) or per-axis (1-D) quantization parameter to every
/// element of a tensor of `shape`.
fn per_axis(node: &NodeProto, p: &Arr, shape: &[usize], axis: i64) -> Result<Vec<f64>> {
    let n = numel(shape);
    if p.data.len() == 1 {
        return Ok(vec![p.data[0]; n]);
    }
    let ax = norm_axis(node, axis, shape.len())?;
    if p.data.len() != shape[ax] {
        return Err(unsupported(
            node,
            "scale/zero point length does not match the axis",
        ));
    }
    let inner: usize = shape[ax + 1..].iter().product();
    Ok((0..n)
        .map(|i| p.data[(i / inner.max(1)) % shape[ax]])
        .collect())
}

fn reshape_target(node: &NodeProto, from: &[usize], target: &[f64]) -> Result<Vec<usize>> {
    let total = numel(from);
    let allow_zero = attr_i(node, "allowzero", 0) != 0;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        if t == -1.0 {
            if infer.replace(i).is_some() {
                return Err(unsupported(node, "more than one -1 in the target shape"));
            }
            out.push(1);
        } else if t == 0.0 && !allow_zero {
            out.push(
                from.get(i)
                    .copied()
                    .ok_or_else(|| unsupported(node, "0 copies a missing dim"))?,
            );
        } else {
            out.push(dim_usize(node, t)?);
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(unsupported(
                node,
                "target shape does not divide the element count",
            ));
        }
        out[i] = total / known;
    }
    if numel(&out) != total {
        return Err(unsupported(
            node,
            "target shape has a different element count",
        ));
    }
    Ok(out)
}

fn squeeze_shape(node: &NodeProto, op: &str, shape: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    if op == "Squeeze" {
        if axes.is_empty() {
            return Ok(shape.iter().copied().filter(|&d| d != 1).collect());
        }
        let ax = axes
            .iter()
            .map(|&a| norm_axis(node, a, shape.len()))
            .collect::<Result<Vec<_>>>()?;
        Ok(shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !ax.contains(i))
            .map(|(_, d)| *d)
            .collect())
    } else {
        let rank = shape.len() + axes.len();
        let ax = axes
            .iter()
            .map(|&a| norm_axis(node, a, rank))
            .collect::<Result<Vec<_>>>()?;
        let mut it = shape.iter();
        Ok((0..rank)
            .map(|i| {
                if ax.contains(&i) {
                    1
                } else {
                    it.next().copied().unwrap_or(1)
                }
            })
            .collect())
    }
}

/// Output shape and, per output element, the input element it reads.
fn transpose_index(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let in_str = strides(shape);
    let out_str = strides(&out_shape);
    let n = numel(shape);
    let index = (0..n)
        .map(|o| {
            perm.iter()
                .enumerate()
                .map(|(d, &p)| ((o / out_str[d]) % out_shape[d]) * in_str[p])
                .sum()
        })
        .collect();
    (out_shape, index)
}

/// Sums matrices applied to the same node.
fn add_term(terms: &mut Vec<(usize, Mat)>, node: usize, m: Mat) {
    if let Some((_, existing)) = terms.iter_mut().find(|(n, _)| *n == node) {
        *existing = match (&*existing, &m) {
            (Mat::Diag(a), Mat::Diag(b)) => {
                Mat::Diag(a.iter().zip(b).map(|(x, y)| x + y).collect())
            }
            _ => {
                let mut d = existing.to_dense();
                let o = m.to_dense();
                d.data.iter_mut().zip(&o.data).for_each(|(x, y)| *x += y);
                Mat::Dense(d)
            }
        };
    } else {
        terms.push((node, m));
    }
}

/// Fuses chains of linear raw nodes, makes every activation read a linear node and the
/// output a linear node, and drops what the output does not need.
fn fuse(raw: &[Raw], raw_dims: &[usize], out_raw: usize) -> (Vec<Node>, Vec<usize>, usize) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut dims: Vec<usize> = Vec::new();
    let mut map: Vec<usize> = Vec::with_capacity(raw.len());
    let identity_of = |src: usize, dim: usize| Node::Linear {
        terms: vec![(src, Mat::Diag(vec![1.0; dim]))],
        bias: vec![0.0; dim],
        abs_terms: vec![(src, Mat::Diag(vec![1.0; dim]))],
        abs_bias: vec![0.0; dim],
        acc_len: 0,
    };
    for (k, r) in raw.iter().enumerate() {
        let dim = raw_dims[k];
        match r {
            Raw::Input(d) => {
                nodes.push(Node::Input { dim: *d });
                dims.push(*d);
            }
            Raw::Act { input, act } => {
                let mut src = map[*input];
                if !matches!(nodes[src], Node::Linear { .. }) {
                    nodes.push(identity_of(src, dim));
                    dims.push(dim);
                    src = nodes.len() - 1;
                }
                nodes.push(Node::Act {
                    input: src,
                    act: act.clone(),
                });
                dims.push(dim);
            }
            Raw::Linear {
                terms,
                bias,
                acc_len,
            } => {
                let mut new_terms: Vec<(usize, Mat)> = Vec::new();
                let mut new_abs: Vec<(usize, Mat)> = Vec::new();
                let mut new_bias = bias.clone();
                let mut new_abs_bias: Vec<f64> = bias.iter().map(|v| v.abs()).collect();
                let mut inner_len = 0;
                for (j, m) in terms {
                    let fj = map[*j];
                    match &nodes[fj] {
                        Node::Linear {
                            terms: t2,
                            bias: b2,
                            abs_terms: a2,
                            abs_bias: ab2,
                            acc_len: l2,
                        } => {
                            inner_len = inner_len.max(*l2);
                            for (n2, m2) in t2 {
                                add_term(&mut new_terms, *n2, m.compose(m2));
                            }
                            let ma = m.abs();
                            for (n2, m2) in a2 {
                                add_term(&mut new_abs, *n2, ma.compose(m2));
                            }
                            m.apply_add(b2, &mut new_bias);
                            ma.apply_add(ab2, &mut new_abs_bias);
                        }
                        Node::Input { .. } | Node::Act { .. } => {
                            add_term(&mut new_terms, fj, m.clone());
                            add_term(&mut new_abs, fj, m.abs());
                        }
                    }
                }
                nodes.push(Node::Linear {
                    terms: new_terms,
                    bias: new_bias,
                    abs_terms: new_abs,
                    abs_bias: new_abs_bias,
                    acc_len: acc_len + inner_len,
                });
                dims.push(dim);
            }
        }
        map.push(nodes.len() - 1);
    }
    let mut out = map[out_raw];
    if !matches!(nodes[out], Node::Linear { .. }) {
        nodes.push(identity_of(out, dims[out]));
        dims.push(dims[out]);
        out = nodes.len() - 1;
    }
    // Keep what the output needs (node 0, the input, always stays).
    let mut needed = vec![false; nodes.len()];
    needed[out] = true;
    needed[0] = true;
    for k in (0..nodes.len()).rev() {
        if !needed[k] {
            continue;
        }
        match &nodes[k] {
            Node::Input { .. } => {}
            Node::Linear { terms, .. } => terms.iter().for_each(|(j, _)| needed[*j] = true),
            Node::Act { input, .. } => needed[*input] = true,
        }
    }
    let mut remap = vec![usize::MAX; nodes.len()];
    let mut kept_nodes = Vec::new();
    let mut kept_dims = Vec::new();
    for (k, node) in nodes.into_iter().enumerate() {
        if !needed[k] {
            continue;
        }
        remap[k] = kept_nodes.len();
        let node = match node {
            Node::Input { dim } => Node::Input { dim },
            Node::Act { input, act } => Node::Act {
                input: remap[input],
                act,
            },
            Node::Linear {
                terms,
                bias,
                abs_terms,
                abs_bias,
                acc_len,
            } => Node::Linear {
                terms: terms.into_iter().map(|(j, m)| (remap[j], m)).collect(),
                bias,
                abs_terms: abs_terms.into_iter().map(|(j, m)| (remap[j], m)).collect(),
                abs_bias,
                acc_len,
            },
        };
        kept_nodes.push(node);
        kept_dims.push(dims[k]);
    }
    let out = remap[out];
    (kept_nodes, kept_dims, out)
}
