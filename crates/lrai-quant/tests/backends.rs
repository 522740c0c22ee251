//! Every op and pattern LRAI's quantizer writes, on both backends (issue 14).
//!
//! The float models of `tests/fixtures/quant/ops/` (made by `scripts/make-quant-fixtures.py`)
//! hold every op the rewrites handle: a conv net (Conv with and without bias, depthwise,
//! Relu/Clip folded into the output `QuantizeLinear`, MaxPool/Flatten/Transpose/Reshape/
//! Squeeze/Unsqueeze on the integers, residual Add, pools, Concat, Gemm, MatMul, a float
//! Resize between quantized ops) and a BERT layer in miniature (embedding Gather, MatMuls
//! with constant weights, attention MatMuls of two activations with Div and Softmax between,
//! LayerNormalization, Erf GELU, a Gemm head). Each is quantized here, in every mode and
//! with the options that change what is written (u8/i8 activations, per-channel/per-tensor
//! weights, 7- or 8-bit weights, layers kept float, attention MatMuls), and then, on tract
//! and on ONNX Runtime:
//! - the same requests give the same bytes every time, interleaved with other requests;
//! - the outputs match ONNX Runtime running the same file with graph optimizations off
//!   (the QDQ arithmetic as written), within the tolerances below;
//! - the outputs stay within the quantizer's accuracy budget of the float model's
//!   (mean cosine similarity ≥ 0.99, the default `--max-accuracy-drop` on `--metric
//!   cosine`).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{config, engines, options, ort, quiet, root, tract};
use lrai_backend::{
    Backend, BackendKind, ModelSource, NamedTensors, OptimizationLevel, SessionOptions,
};
use lrai_core::{Tensor, npy};
use lrai_quant::{ActivationType, Mode, Precision, QuantizeConfig, quantize};

/// Static QDQ, either backend against ONNX Runtime unoptimized (the arithmetic as written),
/// as a fraction of the output's largest |value|. Measured on these graphs:
/// - ONNX Runtime's own optimized run: up to 3.3 % (QLinearConv/QGemm/QLinearMatMul/
///   QLinearSoftmax requantize in integers; without VNNI, the 8-bit-weight layers after a
///   ReLU also saturate a u8×s8 pair sum now and then, 7 steps on 0.1 % of one conv's codes);
/// - tract: 0, except where an input of `QuantizeLinear` sits within an ulp of a half step:
///   tract rounds x·(1/scale), which can land on the other side of x/scale (64.5 against
///   64.50001: code 64 where ONNX Runtime and the spec give 65), and one flipped code moves
///   the transformer's `hidden` by 4.4 %.
///
/// A code flip propagates through every later requantization, so the margin is wide; what
/// this guards against is far wider: issue 14's folded Softmax is 89 to 300 % off here.
const QDQ: f64 = 0.06;
/// Dynamic int8, either backend against ONNX Runtime unoptimized: measured 0 (both run
/// `MatMulInteger` exactly with 7-bit weights, or with 8-bit ones on a VNNI CPU).
const EXACT: f64 = 0.005;
/// float16: measured 0.16 % (tract's float16 arithmetic against ONNX Runtime's).
const HALF: f64 = 0.005;
/// The accuracy budget: mean cosine similarity with the float model's outputs.
const MIN_COSINE: f64 = 0.99;
/// Rounds of the same requests, interleaved.
const ROUNDS: usize = 3;

/// Wrong answers this suite finds in a backend, as (variant, backend, input set) with the
/// cause. Each must still be wrong: take it off when the backend is fixed.
///
/// Empty: the one it found (`convnet dynamic` on tract at batch 4, 1.06 % off: the tract
/// session ran conv models row by row, which gives `DynamicQuantizeLinear` one scale per
/// row instead of one over the batch) is fixed in `batch_splittable` (`tract/mod.rs`).
const KNOWN_WRONG: &[(&str, &str, &str)] = &[];

fn case_dir(case: &str) -> PathBuf {
    root().join("tests/fixtures/quant/ops").join(case)
}

/// One quantization of a fixture, and what the written file must (not) contain.
struct Variant {
    label: &'static str,
    case: &'static str,
    config: QuantizeConfig,
    /// Op types the file must have.
    has: &'static [&'static str],
    /// Op types or node names it must not have.
    lacks: &'static [&'static str],
}

impl Variant {
    /// 8-bit weights against u8 (or i8) activations: without VNNI, ONNX Runtime's integer
    /// kernels saturate int16 pair sums (measured here: convnet logits off by 40 % of their
    /// range), optimized or not for `MatMulInteger`. `--reduce-range auto` avoids it.
    fn saturates_on_this_cpu(&self) -> bool {
        self.config.precision == Precision::Int8
            && !self.config.reduce_range
            && lrai_quant::default_reduce_range()
    }

    /// Whether ONNX Runtime's unoptimized run is the arithmetic as written: static QDQ
    /// dequantizes to float before each op; dynamic mode runs `MatMulInteger` itself.
    fn has_reference(&self) -> bool {
        !(self.config.mode == Mode::Dynamic && self.saturates_on_this_cpu())
    }

    fn tolerance(&self) -> f64 {
        match (self.config.precision, self.config.mode) {
            (Precision::Fp16, _) => HALF,
            (Precision::Int8, Mode::Static) => QDQ,
            (Precision::Int8, Mode::Dynamic) => EXACT,
        }
    }
}

fn static_config(case: &str) -> QuantizeConfig {
    QuantizeConfig {
        calibration: Some(case_dir(case).join("calib.npz")),
        reduce_range: true,
        ..config()
    }
}

/// Per-tensor weights are tried first when evaluation data is given; a budget of 1 keeps
/// them (and every layer int8).
fn per_tensor(case: &str) -> QuantizeConfig {
    QuantizeConfig {
        eval: Some(case_dir(case).join("eval.npz")),
        metric: lrai_quant::Metric::Cosine,
        max_accuracy_drop: 1.0,
        ..static_config(case)
    }
}

const QDQ_OPS: &[&str] = &["QuantizeLinear", "DequantizeLinear"];
const FOLDED: &[&str] = &["Relu", "Clip"];

fn static_variants(case: &'static str, keep: &[&str]) -> Vec<Variant> {
    let folded = if case == "convnet" { FOLDED } else { &[] };
    let variant = |label, config, lacks| Variant {
        label,
        case,
        config,
        has: QDQ_OPS,
        lacks,
    };
    let label = |s: &str| -> &'static str { format!("{case} static {s}").leak() };
    vec![
        variant(label("u8 per-channel"), static_config(case), folded),
        variant(label("u8 per-tensor"), per_tensor(case), folded),
        variant(
            label("i8 per-channel"),
            QuantizeConfig {
                activation_type: ActivationType::I8,
                ..static_config(case)
            },
            &[],
        ),
        variant(
            label("u8 8-bit weights"),
            QuantizeConfig {
                reduce_range: false,
                ..static_config(case)
            },
            folded,
        ),
        variant(
            label("i8 per-tensor 8-bit weights"),
            QuantizeConfig {
                activation_type: ActivationType::I8,
                reduce_range: false,
                ..per_tensor(case)
            },
            &[],
        ),
        variant(
            label("layers kept float"),
            QuantizeConfig {
                keep_float: keep.iter().map(ToString::to_string).collect(),
                ..static_config(case)
            },
            &[],
        ),
    ]
}

fn dynamic(activation_matmuls: bool, reduce_range: bool) -> QuantizeConfig {
    QuantizeConfig {
        mode: Mode::Dynamic,
        activation_matmuls,
        reduce_range,
        ..config()
    }
}

const DYNAMIC: &[&str] = &["DynamicQuantizeLinear", "MatMulInteger"];

fn other_variants() -> Vec<Variant> {
    let fp16 = QuantizeConfig {
        precision: Precision::Fp16,
        ..config()
    };
    let v = |label, case, config, has, lacks| Variant {
        label,
        case,
        config,
        has,
        lacks,
    };
    vec![
        v(
            "convnet dynamic",
            "convnet",
            dynamic(false, true),
            DYNAMIC,
            &["Gemm"],
        ),
        v(
            "transformer dynamic",
            "transformer",
            dynamic(false, true),
            DYNAMIC,
            &["Gemm"],
        ),
        v(
            "transformer dynamic attention",
            "transformer",
            dynamic(true, true),
            DYNAMIC,
            // The scores' 1/sqrt(d) joins the integer MatMul's scale.
            &["Gemm", "layer0/attention/scale"],
        ),
        v(
            "transformer dynamic 8-bit weights",
            "transformer",
            dynamic(true, false),
            DYNAMIC,
            &["Gemm"],
        ),
        v(
            "convnet fp16",
            "convnet",
            fp16.clone(),
            &["Cast"],
            &["Gemm"],
        ),
        v(
            "transformer fp16",
            "transformer",
            fp16,
            &["Cast"],
            &["Gemm"],
        ),
    ]
}

fn read(path: &Path) -> NamedTensors {
    npy::read_npz(path).unwrap()
}

/// The eval samples as two requests: `b1` (row 0) and `b4` (rows 1 to 4).
fn input_sets(case: &str) -> Vec<(&'static str, NamedTensors)> {
    let all = read(&case_dir(case).join("eval.npz"));
    let rows = |from: usize, n: usize| -> NamedTensors {
        all.iter()
            .map(|(name, t)| {
                let total = t.shape()[0];
                let parts = lrai_core::split(t, &[from, n, total - from - n]).unwrap();
                (name.clone(), parts[1].clone())
            })
            .collect()
    };
    vec![("b1", rows(0, 1)), ("b4", rows(1, 4))]
}

fn session(
    backend: &Arc<dyn Backend>,
    path: &Path,
    options: &SessionOptions,
) -> Arc<dyn lrai_backend::Session> {
    let source = ModelSource::from_path(path).unwrap();
    backend
        .load(&source, options)
        .unwrap_or_else(|e| panic!("{} cannot load {}: {e}", backend.kind(), path.display()))
}

fn name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Tract => "tract",
        BackendKind::OnnxRuntime => "onnxruntime",
    }
}

/// Each set's outputs; every set runs `ROUNDS` times, interleaved with the others, and
/// must give the same bytes each time.
fn run_repeatedly(
    session: &dyn lrai_backend::Session,
    sets: &[(&'static str, NamedTensors)],
    what: &str,
    failures: &mut Vec<String>,
) -> BTreeMap<&'static str, NamedTensors> {
    let mut first: BTreeMap<&'static str, NamedTensors> = BTreeMap::new();
    for round in 0..ROUNDS {
        for (set, inputs) in sets.iter().cycle().skip(round).take(sets.len()) {
            let out = session.run(inputs).unwrap();
            match first.get(set) {
                None => {
                    first.insert(set, out);
                }
                Some(before) if !same_bytes(before, &out) => {
                    failures.push(format!("{what} {set}: round {round} differs from round 0"));
                }
                Some(_) => {}
            }
        }
    }
    first
}

fn same_bytes(a: &NamedTensors, b: &NamedTensors) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((n, x), (m, y))| n == m && x.shape() == y.shape() && x.data() == y.data())
}

/// Largest |got − want| as a fraction of want's largest |value|.
fn relative_distance(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
    let range = w
        .iter()
        .fold(0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    g.iter()
        .zip(&w)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
        / range
}

/// Mean over samples (axis 0) of the cosine similarity of each sample's outputs.
fn mean_cosine(got: &Tensor, want: &Tensor) -> f64 {
    let rows = want.shape()[0];
    let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
    let per = w.len() / rows;
    let cos = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
    };
    #[allow(clippy::cast_precision_loss)]
    let mean = (0..rows)
        .map(|r| cos(&g[r * per..(r + 1) * per], &w[r * per..(r + 1) * per]))
        .sum::<f64>()
        / rows as f64;
    mean
}

/// Compares one backend's outputs with the reference and with the float model's.
struct Comparison<'a> {
    variant: &'a Variant,
    backend: BackendKind,
    reference: Option<&'a BTreeMap<&'static str, NamedTensors>>,
    float: &'a BTreeMap<&'static str, NamedTensors>,
}

impl Comparison<'_> {
    fn check(&self, got: &BTreeMap<&'static str, NamedTensors>, failures: &mut Vec<String>) {
        let (label, backend) = (self.variant.label, name(self.backend));
        let tolerance = self.variant.tolerance();
        for (set, outputs) in got {
            let known = KNOWN_WRONG.contains(&(label, backend, set));
            let mut wrong = false;
            for (output, tensor) in outputs {
                let want = |m: &BTreeMap<&str, NamedTensors>| {
                    m[set].iter().find(|(n, _)| n == output).unwrap().1.clone()
                };
                let what = format!("{label} [{backend}] {set} '{output}'");
                if let Some(reference) = self.reference {
                    let d = relative_distance(tensor, &want(reference));
                    if d > tolerance {
                        wrong = true;
                        if !known {
                            failures.push(format!(
                                "{what}: {:.4} % of the range from ONNX Runtime unoptimized (tolerance {:.2} %)",
                                d * 100.0,
                                tolerance * 100.0
                            ));
                        }
                    }
                }
                let c = mean_cosine(tensor, &want(self.float));
                if c < MIN_COSINE && !known {
                    failures.push(format!(
                        "{what}: mean cosine {c:.5} with the float model, below {MIN_COSINE}"
                    ));
                }
            }
            if known && !wrong {
                failures.push(format!(
                    "{label} [{backend}] {set} now matches: take it off KNOWN_WRONG"
                ));
            }
        }
    }
}

fn check_variant(variant: &Variant, failures: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let float_path = case_dir(variant.case).join("model.onnx");
    let out = quantize(&float_path, &variant.config, &engines(), &quiet).unwrap();
    let report = &out.report;
    assert!(report.budget_met, "{}: {:?}", variant.label, report.search);
    for layer in &report.layers {
        let kept = variant.config.keep_float.contains(&layer.node);
        let want = if kept { "float32" } else { "int8" };
        assert_eq!(layer.precision, want, "{}: {layer:?}", variant.label);
    }
    let model = out.model.unwrap();
    let ops = lrai_onnx::summarize(&model).op_counts;
    for op in variant.has {
        assert!(
            ops.contains_key(*op),
            "{}: no {op} in {ops:?}",
            variant.label
        );
    }
    let graph = model.graph.as_ref().unwrap();
    for op in variant.lacks {
        let named = graph.node.iter().any(|n| n.name.as_deref() == Some(*op));
        assert!(
            !ops.contains_key(*op) && !named,
            "{}: {op} left in {ops:?}",
            variant.label
        );
    }
    let path = dir.path().join("quantized.onnx");
    lrai_onnx::save_model(&path, &model).unwrap();
    common::check_onnx(&path);

    let sets = input_sets(variant.case);
    let ort = ort();
    let reference = ort.as_ref().filter(|_| variant.has_reference()).map(|o| {
        let unoptimized = SessionOptions {
            optimization: OptimizationLevel::Disabled,
            ..options()
        };
        let what = format!("{} [onnxruntime unoptimized]", variant.label);
        run_repeatedly(
            session(o, &path, &unoptimized).as_ref(),
            &sets,
            &what,
            failures,
        )
    });
    if reference.is_none() {
        eprintln!(
            "notice: {}: no ONNX Runtime reference on this machine (see saturates_on_this_cpu)",
            variant.label
        );
    }
    let mut backends = vec![tract()];
    backends.extend(ort.filter(|_| !variant.saturates_on_this_cpu()));
    for backend in &backends {
        let what = format!("{} [{}]", variant.label, name(backend.kind()));
        let got = run_repeatedly(
            session(backend, &path, &options()).as_ref(),
            &sets,
            &what,
            failures,
        );
        let float = run_repeatedly(
            session(backend, &float_path, &options()).as_ref(),
            &sets,
            &what,
            failures,
        );
        let comparison = Comparison {
            variant,
            backend: backend.kind(),
            reference: reference.as_ref(),
            float: &float,
        };
        comparison.check(&got, failures);
    }
}

fn check_all(variants: &[Variant]) {
    let mut failures = Vec::new();
    for variant in variants {
        check_variant(variant, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn static_qdq_of_every_op_matches_onnx_runtime_on_both_backends() {
    let mut variants = static_variants("convnet", &["conv3_nobias", "residual", "fc1"]);
    variants.extend(static_variants(
        "transformer",
        &["layer0/attention/scores", "layer1/ffn/up/MatMul"],
    ));
    check_all(&variants);
}

#[test]
fn dynamic_and_fp16_match_onnx_runtime_on_both_backends() {
    check_all(&other_variants());
}

#[test]
fn the_float_fixtures_match_onnx_runtime_in_python() {
    // The float side of the comparisons above, against the outputs the fixture script
    // got from ONNX Runtime in Python: both backends agree before anything is quantized.
    let mut backends = vec![tract()];
    backends.extend(ort());
    for case in ["convnet", "transformer"] {
        let inputs = read(&case_dir(case).join("eval.npz"));
        let want = read(&case_dir(case).join("eval_outputs.npz"));
        for backend in &backends {
            let got = session(backend, &case_dir(case).join("model.onnx"), &options())
                .run(&inputs)
                .unwrap();
            for (output, w) in &want {
                let g = &got.iter().find(|(n, _)| n == output).unwrap().1;
                let d = relative_distance(g, w);
                assert!(
                    d < 1e-5,
                    "{case} [{}] '{output}': {d}",
                    name(backend.kind())
                );
            }
        }
    }
}
