//! Triton's classification extension: the `classification` parameter as each protocol
//! carries it, and the `value:index[:label]` strings as Triton writes them.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use lrai_core::half::{bf16, f16};
use lrai_core::{DataType, Tensor};
use lrai_protocol::{
    ClassParamProblem, Limits, ProtocolError, classify, decode_grpc_request,
    decode_http_json_and_binary, pb,
};
use proptest::prelude::*;

fn http_outputs(params: &str) -> Result<Vec<lrai_protocol::RequestedOutput>, ProtocolError> {
    let body = format!(r#"{{"inputs": [], "outputs": [{{"name": "y", "parameters": {params}}}]}}"#);
    decode_http_json_and_binary(&Bytes::from(body), None, &Limits::default()).map(|r| r.outputs)
}

fn grpc_outputs(
    value: pb::infer_parameter::ParameterChoice,
) -> Result<Vec<lrai_protocol::RequestedOutput>, ProtocolError> {
    let mut out = pb::model_infer_request::InferRequestedOutputTensor {
        name: "y".into(),
        ..Default::default()
    };
    out.parameters.insert(
        "classification".into(),
        pb::InferParameter {
            parameter_choice: Some(value),
        },
    );
    let req = pb::ModelInferRequest {
        outputs: vec![out],
        ..Default::default()
    };
    decode_grpc_request(req, &Limits::default()).map(|r| r.outputs)
}

#[test]
fn http_reads_any_unsigned_count() {
    let o = http_outputs(r#"{"classification": 3, "binary_data": true}"#).unwrap();
    assert_eq!(o[0].classification, Some(3));
    assert_eq!(o[0].binary_data, Some(true));
    assert!(o[0].parameters.is_empty(), "{:?}", o[0].parameters);
    // 0 is no classification, as in Triton; huge counts mean every class.
    assert_eq!(
        http_outputs(r#"{"classification": 0}"#).unwrap()[0].classification,
        None
    );
    assert_eq!(http_outputs("{}").unwrap()[0].classification, None);
    let o = http_outputs(r#"{"classification": 1099511627776}"#).unwrap();
    assert_eq!(o[0].classification, Some(u32::MAX));
}

#[test]
fn http_refuses_what_triton_refuses() {
    for value in ["-1", "2.5", "\"3\"", "true"] {
        let e = http_outputs(&format!(r#"{{"classification": {value}}}"#)).unwrap_err();
        assert!(
            matches!(
                e,
                ProtocolError::BadClassification {
                    problem: ClassParamProblem::NotUnsigned,
                    ..
                }
            ),
            "{value}: {e:?}"
        );
    }
    let e = http_outputs(r#"{"classification": -1}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Unable to set 'classification': attempt to access JSON non-unsigned-integer as \
         unsigned-integer (output 'y' has classification = -1; give the number of top classes \
         to return, 1 or more)"
    );
}

#[test]
fn grpc_reads_int64_param_only() {
    use pb::infer_parameter::ParameterChoice as P;
    assert_eq!(
        grpc_outputs(P::Int64Param(5)).unwrap()[0].classification,
        Some(5)
    );
    for bad in [P::Int64Param(0), P::Int64Param(-2)] {
        let e = grpc_outputs(bad).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid value for 'classification' parameter, expected >= 0 (output 'y'"
            ),
            "{e}"
        );
    }
    for bad in [
        P::Uint64Param(5),
        P::StringParam("5".into()),
        P::BoolParam(true),
    ] {
        let e = grpc_outputs(bad).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid value type for 'classification' parameter, expected int64_param"
            ),
            "{e}"
        );
    }
}

fn strings(t: &Tensor) -> Vec<String> {
    t.byte_strings()
        .unwrap()
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

const NO_LABELS: &[&str] = &[];

#[test]
fn batched_outputs_give_the_top_classes_of_each_row() {
    let t = Tensor::from_vec(
        vec![2, 4],
        vec![0.1f32, 0.9, 0.3, 0.2, 5.0, -1.0, 7.25, 0.0],
    )
    .unwrap();
    let c = classify("y", &t, 2, true, &["cat", "dog", "", "fish"]).unwrap();
    assert_eq!(c.dtype(), DataType::Bytes);
    assert_eq!(c.shape(), &[2, 2]);
    assert_eq!(
        strings(&c),
        [
            "0.900000:1:dog",
            "0.300000:2",
            "7.250000:2",
            "5.000000:0:cat"
        ]
    );
    // More classes than there are: all of them, in order.
    let c = classify("y", &t, 10, true, NO_LABELS).unwrap();
    assert_eq!(c.shape(), &[2, 4]);
    assert_eq!(
        strings(&c)[4..],
        ["7.250000:2", "5.000000:0", "0.000000:3", "-1.000000:1"]
    );
}

#[test]
fn unbatched_outputs_are_classified_whole_and_flattened() {
    let t = Tensor::from_vec(vec![1, 2, 3], vec![1i32, 9, 3, 7, 5, 8]).unwrap();
    let c = classify("y", &t, 3, false, NO_LABELS).unwrap();
    assert_eq!(c.shape(), &[3]);
    assert_eq!(strings(&c), ["9:1", "8:5", "7:3"]);
    // A scalar is one class.
    let t = Tensor::from_vec(vec![], vec![2.5f64]).unwrap();
    let c = classify("y", &t, 5, false, NO_LABELS).unwrap();
    assert_eq!(
        (c.shape(), strings(&c)),
        (&[1][..], vec!["2.500000:0".to_string()])
    );
}

#[test]
fn values_are_written_as_cs_to_string_writes_them() {
    let t = Tensor::from_vec(
        vec![6],
        vec![
            0.007_812_5f64,
            -0.0,
            1e30,
            f64::INFINITY,
            f64::NAN,
            1_234.567_890_5,
        ],
    )
    .unwrap();
    let c = classify("y", &t, 6, false, NO_LABELS).unwrap();
    assert_eq!(
        strings(&c),
        [
            "inf:3",
            "1000000000000000019884624838656.000000:2",
            "1234.567890:5",
            "0.007812:0", // the exact tie rounds to even, as printf does
            "-0.000000:1",
            "nan:4", // NaN ranks below every number
        ]
    );
    let t = Tensor::from_vec(vec![3], vec![i8::MIN, 0, i8::MAX]).unwrap();
    assert_eq!(
        strings(&classify("y", &t, 3, false, NO_LABELS).unwrap()),
        ["127:2", "0:1", "-128:0"]
    );
    let t = Tensor::from_vec(vec![2], vec![u64::MAX, 1]).unwrap();
    assert_eq!(
        strings(&classify("y", &t, 1, false, NO_LABELS).unwrap()),
        ["18446744073709551615:0"]
    );
    let t = Tensor::from_vec(vec![2], vec![0.1f32, -f32::NAN]).unwrap();
    assert_eq!(
        strings(&classify("y", &t, 2, false, NO_LABELS).unwrap()),
        ["0.100000:0", "-nan:1"]
    );
}

#[test]
fn equal_values_keep_index_order_and_labels_are_bytes() {
    let t = Tensor::from_vec(vec![5], vec![0.5f32, 0.5, 0.1, 0.5, 0.1]).unwrap();
    let labels: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![0xff, b'x'], b"".to_vec()];
    let c = classify("y", &t, 5, false, &labels).unwrap();
    let raw = c.byte_strings().unwrap();
    assert_eq!(raw[0], b"0.500000:0:a");
    assert_eq!(raw[1], b"0.500000:1:\xffx");
    assert_eq!(raw[2], b"0.500000:3");
    assert_eq!(raw[3], b"0.100000:2"); // an empty label line: no label
    assert_eq!(raw[4], b"0.100000:4"); // past the label file: no label
}

#[test]
fn refuses_what_triton_cannot_classify() {
    let cases = [
        (
            Tensor::from_slice(vec![1], &[f16::from_f32(1.0)]).unwrap(),
            "FP16",
        ),
        (
            Tensor::from_slice(vec![1], &[bf16::from_f32(1.0)]).unwrap(),
            "BF16",
        ),
        (Tensor::from_bools(vec![1], &[true]).unwrap(), "BOOL"),
        (Tensor::from_byte_strings(vec![1], &["a"]).unwrap(), "BYTES"),
    ];
    for (t, name) in cases {
        let e = classify("y", &t, 1, true, NO_LABELS).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "class result not available for output due to unsupported type '{name}'"
            )),
            "{e}"
        );
    }
    let big = Tensor::from_vec(vec![1, 1_000_001], vec![0u8; 1_000_001]).unwrap();
    let e = classify("y", &big, 1, true, NO_LABELS).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("classification output tensor too large"),
        "{e}"
    );
    let edge = Tensor::from_vec(vec![1_000_000], vec![0u8; 1_000_000]).unwrap();
    assert_eq!(
        classify("y", &edge, 1, false, NO_LABELS).unwrap().shape(),
        &[1]
    );
}

proptest! {
    /// The partial selection gives what sorting every class would.
    #[test]
    fn top_k_matches_a_full_sort(
        values in proptest::collection::vec(-4i8..4, 1..40),
        k in 1u32..50,
        rows in 1usize..4,
    ) {
        let per_row = values.len();
        let data: Vec<f32> = (0..rows)
            .flat_map(|r| values.iter().map(move |&v| f32::from(v) + r as f32))
            .collect();
        let t = Tensor::from_vec(vec![rows, per_row], data.clone()).unwrap();
        let got = strings(&classify("y", &t, k, true, NO_LABELS).unwrap());
        let mut want = Vec::new();
        for row in data.chunks(per_row) {
            let mut order: Vec<usize> = (0..per_row).collect();
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
            want.extend(
                order
                    .into_iter()
                    .take(k as usize)
                    .map(|i| format!("{:.6}:{i}", f64::from(row[i]))),
            );
        }
        prop_assert_eq!(got, want);
    }
}
