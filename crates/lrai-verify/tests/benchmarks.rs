//! A few VNN-COMP ACAS Xu and MNIST fc instances with known answers (committed under
//! `tests/fixtures/`): every answer must match the ground truth, and every
//! counterexample must be confirmed by re-running the backend.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;

use common::{Model, assert_counterexample, fixture, settings};
use lrai_verify::{Method, Verdict, instances, vnnlib};

fn expected(bench: &str) -> HashMap<(String, String), String> {
    let text = fs_err::read_to_string(fixture(&format!("{bench}/expected.csv"))).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            ((c[0].to_string(), c[1].to_string()), c[2].to_string())
        })
        .collect()
}

fn run(bench: &str) {
    let list = instances::load(&fixture(&format!("{bench}/instances.csv"))).unwrap();
    let truth = expected(bench);
    assert!(!list.is_empty());
    for inst in list {
        let want = &truth[&(inst.onnx_text.clone(), inst.vnnlib_text.clone())];
        let model = Model::load(&inst.onnx);
        let prop = vnnlib::load(&inst.vnnlib).unwrap();
        // Far below the VNN-COMP timeout: these solve in a few seconds; a regression
        // shows up as `unknown` rather than a slow test.
        let o = model.verify(&prop, &settings(Method::Auto, 60.0));
        let name = format!("{bench} {} {}", inst.onnx_text, inst.vnnlib_text);
        assert_eq!(o.verdict.as_str(), want, "{name}: {o:?}");
        if matches!(o.verdict, Verdict::Violated { .. }) {
            assert_counterexample(&model, &prop, &o);
        }
        eprintln!(
            "{name}: {} in {:.2} s ({})",
            want,
            o.elapsed.as_secs_f64(),
            o.method
        );
    }
}

#[test]
fn acasxu_subset_matches_ground_truth() {
    run("acasxu");
}

#[test]
fn mnist_fc_subset_matches_ground_truth() {
    run("mnist_fc");
}

#[test]
fn acasxu_violated_found_by_search_without_attack() {
    // 1_7 prop_3 falls to the attack in the default pipeline; without it the input-split
    // search must still find (and confirm) a counterexample.
    let model = Model::load(&fixture("acasxu/onnx/ACASXU_run2a_1_7_batch_2000.onnx"));
    let prop = vnnlib::load(&fixture("acasxu/vnnlib/prop_3.vnnlib")).unwrap();
    let mut s = settings(Method::InputSplit, 60.0);
    s.attack.samples = 0;
    s.attack.restarts = 0;
    let o = model.verify(&prop, &s);
    assert_counterexample(&model, &prop, &o);
    assert_eq!(o.method, "input-split");
}

#[test]
fn acasxu_hold_needs_search() {
    // α-CROWN on the whole box cannot prove 1_1 prop_1: bounds-only must say unknown,
    // never holds or violated.
    let model = Model::load(&fixture("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx"));
    let prop = vnnlib::load(&fixture("acasxu/vnnlib/prop_1.vnnlib")).unwrap();
    let o = model.verify(&prop, &settings(Method::BoundsOnly, 30.0));
    assert!(matches!(o.verdict, Verdict::Unknown { .. }), "{o:?}");
}
