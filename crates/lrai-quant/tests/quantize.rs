//! The quantizer end to end on the digits models: the rewrites give valid ONNX (checked
//! by the `onnx` checker when the workspace venv has it) that both backends load and
//! run; budgets are met, or refused with what was tried; per-group budgets; and a clear
//! error for every kind of bad input.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{check_onnx, config, engines, fixture, model, ort, quiet, run_on, tract};
use lrai_core::{Tensor, npy};
use lrai_quant::{
    CalibrationMethod, Metric, Mode, Precision, QuantError, QuantizeConfig, quantize,
};

fn static_config() -> QuantizeConfig {
    QuantizeConfig {
        calibration: Some(fixture("digits_calib.npz")),
        eval: Some(fixture("digits_test.npz")),
        // 7-bit weights whatever the CPU (the default follows VNNI), as on the CPUs these
        // tests were written on.
        reduce_range: true,
        ..config()
    }
}

fn save(dir: &Path, name: &str, m: &lrai_onnx::ModelProto) -> PathBuf {
    let p = dir.join(name);
    lrai_onnx::save_model(&p, m).unwrap();
    p
}

fn op_counts(m: &lrai_onnx::ModelProto) -> BTreeMap<String, usize> {
    lrai_onnx::summarize(m).op_counts
}

fn test_rows(key: &str, n: usize) -> Tensor {
    let arrays = npy::read_npz(&fixture("digits_test.npz")).unwrap();
    let t = arrays.into_iter().find(|(k, _)| k == key).unwrap().1;
    let rows = t.shape()[0];
    lrai_core::split(&t, &[n, rows - n]).unwrap().remove(0)
}

fn argmax_rows(t: &Tensor) -> Vec<usize> {
    lrai_core::stats::summarize(t).unwrap().argmax.unwrap()
}

/// Runs the float and quantized models on both backends and checks the quantized
/// one agrees with the float one on most rows.
fn runs_on_both_backends(float: &Path, quantized: &Path, input: Tensor) {
    let inputs = vec![("input".to_string(), input)];
    let mut backends = vec![tract()];
    backends.extend(ort());
    for b in &backends {
        let f = run_on(b, float, &inputs);
        let q = run_on(b, quantized, &inputs);
        let (fa, qa) = (argmax_rows(&f[0].1), argmax_rows(&q[0].1));
        let same = fa.iter().zip(&qa).filter(|(a, b)| a == b).count();
        assert!(
            same + 1 >= fa.len(),
            "{}: argmax {fa:?} vs {qa:?}",
            b.kind()
        );
    }
}

#[test]
fn static_qdq_cnn_is_valid_onnx_meets_the_budget_and_runs_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let out = quantize(&model("digits_cnn"), &static_config(), &engines(), &quiet).unwrap();
    let r = &out.report;
    assert!(r.budget_met);
    let acc = r.accuracy.as_ref().unwrap();
    assert_eq!(acc.metric, "top1_accuracy");
    assert!(acc.before > 0.97 && acc.drop <= 0.01, "{acc:?}");
    assert!(r.layers.iter().all(|l| l.precision == "int8"));
    let m = out.model.unwrap();
    let ops = op_counts(&m);
    assert!(
        ops["QuantizeLinear"] >= 3 && ops["DequantizeLinear"] >= 9,
        "{ops:?}"
    );
    assert!(
        !ops.contains_key("Relu"),
        "Relu folded into the output Q: {ops:?}"
    );
    // MaxPool and Flatten run on the integers: their input is a Q output, no Q/DQ pair.
    let g = m.graph.as_ref().unwrap();
    let q_outputs: Vec<&str> = g
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("QuantizeLinear"))
        .map(|n| n.output[0].as_str())
        .collect();
    for pool in g
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("MaxPool"))
    {
        assert!(q_outputs.contains(&pool.input[0].as_str()), "{pool:?}");
    }
    // Issue 6's size goal, met with per-tensor weights (the budget allows them here).
    assert!(
        r.size.ratio >= 3.5,
        "{} -> {} bytes ({:.3}x)",
        r.size.before_bytes,
        r.size.after_bytes,
        r.size.ratio
    );
    assert!(r.weights.as_deref().unwrap().contains("per-tensor"));
    let path = save(dir.path(), "cnn.int8.onnx", &m);
    check_onnx(&path);
    runs_on_both_backends(&model("digits_cnn"), &path, test_rows("x_img", 8));
}

#[test]
fn writes_the_same_bytes_on_every_run() {
    // Offline tools are deterministic: the same model, data and options give the same
    // file (scales and zero points used to follow a hash map's order, which changes from
    // one map to the next).
    let cfg = QuantizeConfig {
        eval: None,
        ..static_config()
    };
    let bytes = |m: &Path| {
        let out = quantize(m, &cfg, &engines(), &quiet).unwrap();
        lrai_onnx::encode_model(&out.model.unwrap())
    };
    for name in ["digits_cnn", "digits_mlp"] {
        let first = bytes(&model(name));
        for _ in 0..3 {
            assert!(bytes(&model(name)) == first, "{name}: a different file");
        }
    }
}

#[test]
fn static_mlp_is_3_5x_smaller_with_per_tensor_weights_and_shared_scales() {
    let out = quantize(&model("digits_mlp"), &static_config(), &engines(), &quiet).unwrap();
    let r = &out.report;
    assert!(r.budget_met && r.accuracy.as_ref().unwrap().drop <= 0.01);
    assert!(r.size.ratio >= 3.5, "{:?}", r.size);
    let m = out.model.unwrap();
    let g = m.graph.as_ref().unwrap();
    // One scale per weight, and no initializer stored twice.
    let scalar_or_big = g
        .initializer
        .iter()
        .all(|t| t.dims.is_empty() || t.dims.iter().product::<i64>() >= 10);
    assert!(scalar_or_big, "per-channel scale vectors left");
    let mut seen = std::collections::HashSet::new();
    for t in &g.initializer {
        let mut k = t.clone();
        k.name = None;
        assert!(
            seen.insert(prost::Message::encode_to_vec(&k)),
            "{t:?} twice"
        );
    }
    // Gemm's default attributes (alpha = beta = 1) are not restated.
    for n in g
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Gemm"))
    {
        assert!(
            n.attribute
                .iter()
                .all(|a| !matches!(a.name.as_deref(), Some("alpha" | "beta"))),
            "{n:?}"
        );
    }
}

#[test]
fn per_channel_weights_when_per_tensor_misses_the_budget() {
    // digits_cnn loses 1 of 450 test images with per-tensor weights: a zero budget has
    // to fall back to per-channel (which, with 8-bit weights after its zero-point-0
    // inputs, may still keep a layer float to lose none).
    let cfg = QuantizeConfig {
        max_accuracy_drop: 0.0,
        ..static_config()
    };
    let out = quantize(&model("digits_cnn"), &cfg, &engines(), &quiet).unwrap();
    let r = &out.report;
    assert!(r.budget_met, "{:?}", r.search);
    // On some CPUs (VNNI: ONNX Runtime's u8×s8 kernels without int16 saturation) per-tensor
    // weights lose nothing here, and there is no fallback to check.
    if r.search.per_tensor_drop.unwrap() > 0.0 {
        assert!(
            r.weights.as_deref().unwrap().contains("per-channel"),
            "{:?}",
            r.weights
        );
    } else {
        eprintln!(
            "notice: per-tensor weights lose nothing on this CPU: {:?}",
            r.search
        );
    }
    assert!(r.layers.iter().any(|l| l.precision == "int8"));
}

#[test]
fn every_calibration_method_meets_the_budget_on_digits_mlp() {
    for method in [
        CalibrationMethod::MinMax,
        CalibrationMethod::Percentile { percentile: 99.99 },
        CalibrationMethod::Entropy,
    ] {
        let cfg = QuantizeConfig {
            method,
            ..static_config()
        };
        let out = quantize(&model("digits_mlp"), &cfg, &engines(), &quiet).unwrap();
        let acc = out.report.accuracy.as_ref().unwrap();
        assert!(out.report.budget_met, "{method:?}: {acc:?}");
        assert_eq!(out.report.calibration.as_ref().unwrap().method, method);
    }
}

#[test]
fn dynamic_mlp_uses_integer_matmuls_and_runs_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QuantizeConfig {
        mode: Mode::Dynamic,
        eval: Some(fixture("digits_test.npz")),
        ..config()
    };
    let out = quantize(&model("digits_mlp"), &cfg, &engines(), &quiet).unwrap();
    assert!(out.report.budget_met);
    assert!(out.report.accuracy.as_ref().unwrap().drop <= 0.01);
    assert_eq!(out.report.unsupported_ops.get("Relu"), Some(&2));
    let m = out.model.unwrap();
    let ops = op_counts(&m);
    assert_eq!(ops.get("MatMulInteger"), Some(&3), "{ops:?}");
    assert_eq!(ops.get("DynamicQuantizeLinear"), Some(&3), "{ops:?}");
    assert!(!ops.contains_key("Gemm"));
    let path = save(dir.path(), "mlp.dyn.onnx", &m);
    check_onnx(&path);
    runs_on_both_backends(&model("digits_mlp"), &path, test_rows("x_flat", 8));
}

#[test]
fn fp16_keeps_float32_inputs_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QuantizeConfig {
        precision: Precision::Fp16,
        eval: Some(fixture("digits_test.npz")),
        ..config()
    };
    let out = quantize(&model("digits_cnn"), &cfg, &engines(), &quiet).unwrap();
    assert!(out.report.budget_met);
    let acc = out.report.accuracy.as_ref().unwrap();
    assert!(acc.scores.cosine_min > 0.999, "{acc:?}");
    let m = out.model.unwrap();
    let s = lrai_onnx::summarize(&m);
    assert_eq!(s.inputs[0].type_name(), "FLOAT");
    assert_eq!(s.outputs[0].type_name(), "FLOAT");
    assert_eq!(s.op_counts.get("Cast"), Some(&2));
    assert!(out.report.size.ratio > 1.8, "{:?}", out.report.size);
    let path = save(dir.path(), "cnn.fp16.onnx", &m);
    check_onnx(&path);
    runs_on_both_backends(&model("digits_cnn"), &path, test_rows("x_img", 4));
}

#[test]
fn impossible_budget_writes_nothing_and_reports_what_was_tried() {
    // Cosine must stay exactly 1: no quantized layer can do that.
    let cfg = QuantizeConfig {
        metric: Metric::Cosine,
        max_accuracy_drop: 0.0,
        ..static_config()
    };
    let out = quantize(&model("digits_mlp"), &cfg, &engines(), &quiet).unwrap();
    assert!(out.model.is_none());
    let r = &out.report;
    assert!(!r.budget_met);
    assert!(r.search.full_quantization_drop.unwrap() > 0.0);
    // Every layer was ranked, and all but the last were tried in float.
    assert!(r.layers.iter().all(|l| l.sensitivity.is_some()));
    assert_eq!(r.search.kept_float.len(), r.layers.len() - 1);
    assert!(r.search.steps.iter().all(|s| s.worst_drop > 0.0));
}

#[test]
fn keeps_the_most_sensitive_layers_float_until_the_budget_holds() {
    // A budget the fully quantized MLP misses on cosine but meets with layers in float.
    let cfg = QuantizeConfig {
        metric: Metric::Cosine,
        max_accuracy_drop: 0.00002,
        ..static_config()
    };
    let out = quantize(&model("digits_mlp"), &cfg, &engines(), &quiet).unwrap();
    let r = &out.report;
    if !r.budget_met {
        eprintln!("notice: budget too tight on this backend: {:?}", r.search);
        return;
    }
    if r.search.full_quantization_drop.unwrap() <= 0.00002 {
        // As above: on some CPUs the fully quantized MLP already meets this budget.
        eprintln!(
            "notice: full quantization meets the budget on this CPU: {:?}",
            r.search
        );
        assert!(r.search.kept_float.is_empty(), "{:?}", r.search);
        return;
    }
    assert!(!r.search.kept_float.is_empty());
    let mut float: Vec<&str> = r
        .layers
        .iter()
        .filter(|l| l.precision == "float32")
        .map(|l| l.node.as_str())
        .collect();
    let mut kept: Vec<&str> = r.search.kept_float.iter().map(String::as_str).collect();
    float.sort_unstable();
    kept.sort_unstable();
    assert_eq!(float, kept);
    assert!(r.accuracy.as_ref().unwrap().drop <= 0.00002);
}

/// digits_test with every odd sample 3× brighter (beyond the calibration range) and
/// `group` = sample parity: quantized inputs saturate for group 1 only.
fn grouped_eval(dir: &Path) -> PathBuf {
    let arrays = npy::read_npz(&fixture("digits_test.npz")).unwrap();
    let get = |k: &str| arrays.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let x = get("x_flat");
    let n = x.shape()[0];
    let mut v = x.to_vec::<f32>().unwrap();
    for (i, row) in v.chunks_mut(64).enumerate() {
        if i % 2 == 1 {
            row.iter_mut().for_each(|p| *p *= 3.0);
        }
    }
    let group: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
    let path = dir.join("grouped.npz");
    npy::write_npz(
        &path,
        &[
            ("x_flat".into(), Tensor::from_vec(vec![n, 64], v).unwrap()),
            ("y".into(), get("y")),
            ("group".into(), Tensor::from_vec(vec![n], group).unwrap()),
        ],
    )
    .unwrap();
    path
}

#[test]
fn per_group_budget_holds_for_the_group_quantization_hurts_more() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QuantizeConfig {
        eval: Some(grouped_eval(dir.path())),
        max_accuracy_drop: 0.04,
        ..static_config()
    };
    let out = quantize(&model("digits_mlp"), &cfg, &engines(), &quiet).unwrap();
    let r = &out.report;
    let s = &r.search;
    // Overall, full quantization would pass; group 1 does not.
    assert!(s.full_quantization_overall_drop.unwrap() <= 0.04, "{s:?}");
    assert!(s.full_quantization_drop.unwrap() > 0.04, "{s:?}");
    assert!(r.budget_met && !s.kept_float.is_empty(), "{s:?}");
    let acc = r.accuracy.as_ref().unwrap();
    assert_eq!(acc.groups.len(), 2);
    assert!(
        acc.groups.iter().all(|g| g.drop <= 0.04),
        "{:?}",
        acc.groups
    );
    assert_eq!(acc.groups[0].samples + acc.groups[1].samples, 450);
    assert!(acc.max_group_gap_before.unwrap() > 0.0);
    assert!(acc.max_group_gap_after.is_some());
    // The first layer (which sees the saturated inputs) is the one kept float.
    assert_eq!(r.layers[0].precision, "float32", "{:?}", r.layers);
}

#[test]
fn keep_float_layers_stay_float() {
    let cfg = QuantizeConfig {
        keep_float: vec!["/net/net.4/Gemm".into()],
        ..static_config()
    };
    let out = quantize(&model("digits_mlp"), &cfg, &engines(), &quiet).unwrap();
    let last = out.report.layers.last().unwrap();
    assert_eq!(last.precision, "float32");
    assert_eq!(last.reason.as_deref(), Some("kept float by --keep-float"));
    assert_eq!(op_counts(out.model.as_ref().unwrap()).get("Gemm"), Some(&3));
}

// ---- bad input: each is a clear error, never a panic ----

fn err(m: &Path, cfg: &QuantizeConfig) -> String {
    let e = quantize(m, cfg, &engines(), &quiet).unwrap_err();
    e.to_string()
}

#[test]
fn rejects_an_already_quantized_model() {
    let e = quantize(
        &model("digits_mlp_int8"),
        &static_config(),
        &engines(),
        &quiet,
    )
    .unwrap_err();
    assert!(matches!(e, QuantError::AlreadyQuantized { .. }), "{e}");
    assert!(e.to_string().contains("already quantized"), "{e}");
    assert!(
        e.to_string()
            .contains("quantize the original float32 model"),
        "{e}"
    );
}

#[test]
fn rejects_calibration_data_of_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.npz");
    npy::write_npz(
        &p,
        &[(
            "input".into(),
            Tensor::from_vec(vec![4, 63], vec![0f32; 252]).unwrap(),
        )],
    )
    .unwrap();
    let cfg = QuantizeConfig {
        calibration: Some(p.clone()),
        eval: None,
        ..static_config()
    };
    let e = err(&model("digits_mlp"), &cfg);
    assert!(e.contains("calibration data"), "{e}");
    assert!(
        e.contains("array 'input' is FP32 [4,63] but model input 'input' is FP32 [batch,64]"),
        "{e}"
    );
    // Unnamed arrays that fit nothing.
    npy::write_npz(
        &p,
        &[(
            "x".into(),
            Tensor::from_vec(vec![2, 8, 8], vec![0f32; 128]).unwrap(),
        )],
    )
    .unwrap();
    let e = err(&model("digits_mlp"), &cfg);
    assert!(e.contains("no array fits model input 'input'"), "{e}");
    // Two arrays that both fit.
    let t = Tensor::from_vec(vec![2, 64], vec![0f32; 128]).unwrap();
    npy::write_npz(&p, &[("a".into(), t.clone()), ("b".into(), t)]).unwrap();
    let e = err(&model("digits_mlp"), &cfg);
    assert!(e.contains("arrays a, b all fit model input 'input'"), "{e}");
}

#[test]
fn reads_a_directory_of_npy_files_and_rejects_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QuantizeConfig {
        calibration: Some(dir.path().to_path_buf()),
        eval: None,
        ..static_config()
    };
    let e = err(&model("digits_mlp"), &cfg);
    assert!(e.contains("holds no .npy files"), "{e}");
    npy::write_npy(&dir.path().join("input.npy"), &test_rows("x_flat", 16)).unwrap();
    let out = quantize(&model("digits_mlp"), &cfg, &engines(), &quiet).unwrap();
    assert_eq!(out.report.calibration.unwrap().samples, 16);
}

#[test]
fn rejects_missing_files_and_bad_labels() {
    let cfg = QuantizeConfig {
        calibration: Some(PathBuf::from("/nonexistent/calib.npz")),
        ..static_config()
    };
    let e = err(&model("digits_mlp"), &cfg);
    assert!(e.contains("no such file or directory"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("eval.npz");
    npy::write_npz(
        &p,
        &[
            ("input".into(), test_rows("x_flat", 4)),
            (
                "labels".into(),
                Tensor::from_vec(vec![3], vec![1i64, 2, 3]).unwrap(),
            ),
        ],
    )
    .unwrap();
    let cfg = QuantizeConfig {
        eval: Some(p),
        ..static_config()
    };
    let e = err(&model("digits_mlp"), &cfg);
    assert!(
        e.contains("array 'labels' has shape [3]; it must be 1-D with one entry per sample (4)"),
        "{e}"
    );
}

#[test]
fn rejects_contradictory_options() {
    let no_calib = QuantizeConfig {
        calibration: None,
        ..static_config()
    };
    assert!(err(&model("digits_mlp"), &no_calib).contains("static mode needs calibration data"));

    let negative = QuantizeConfig {
        max_accuracy_drop: -0.1,
        ..static_config()
    };
    assert!(err(&model("digits_mlp"), &negative).contains("--max-accuracy-drop must be 0 or more"));

    let unknown_layer = QuantizeConfig {
        keep_float: vec!["nope".into()],
        ..static_config()
    };
    let e = err(&model("digits_mlp"), &unknown_layer);
    assert!(
        e.contains("--keep-float 'nope' is not a quantizable layer")
            && e.contains("/net/net.0/Gemm"),
        "{e}"
    );

    let unknown_output = QuantizeConfig {
        eval_output: Some("probs".into()),
        ..static_config()
    };
    assert!(
        err(&model("digits_mlp"), &unknown_output)
            .contains("--eval-output 'probs' is not an output of the model (outputs: logits)")
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nolabels.npz");
    npy::write_npz(&p, &[("input".into(), test_rows("x_flat", 4))]).unwrap();
    let top1 = QuantizeConfig {
        eval: Some(p),
        metric: Metric::Top1,
        ..static_config()
    };
    assert!(err(&model("digits_mlp"), &top1).contains("--metric top1 needs a 'labels'"));
}

#[test]
fn a_model_with_nothing_to_quantize_says_so() {
    let det = common::root().join("tests/fixtures/det.onnx");
    let cfg = QuantizeConfig {
        mode: Mode::Dynamic,
        ..config()
    };
    let e = quantize(&det, &cfg, &engines(), &quiet).unwrap_err();
    assert!(matches!(e, QuantError::NothingToQuantize { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("has nothing to quantize in dynamic mode"),
        "{e}"
    );
    let junk = tempfile::NamedTempFile::new().unwrap();
    fs_err::write(junk.path(), b"not a model").unwrap();
    let e = quantize(junk.path(), &config(), &engines(), &quiet).unwrap_err();
    assert!(e.to_string().contains("is not a valid ONNX model"), "{e}");
}
