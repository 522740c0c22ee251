//! Property tests: encode → decode returns what went in, for every datatype over every
//! path that can carry it, and the decoders never panic on arbitrary input.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use lrai_core::half::{bf16, f16};
use lrai_core::{DataType, Tensor};
use lrai_protocol::{
    InferInput, InferRequest, InferResponse, Limits, ParamValue, Parameters, RawInputSpec,
    RequestParameters, RequestedOutput, decode_grpc_request, decode_grpc_response,
    decode_http_json_and_binary, decode_http_response, decode_raw_binary, encode_grpc_request,
    encode_grpc_response, encode_http_request, encode_http_response, pb,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use prost::Message;

/// Replaces non-finite floats (JSON writes them as `null`, read back as NaN) by 1.
fn finite_only(dtype: DataType, mut bytes: Vec<u8>) -> Vec<u8> {
    macro_rules! fix {
        ($t:ty, $n:expr) => {
            for c in bytes.chunks_exact_mut($n) {
                let v = <$t>::from_le_bytes(c.try_into().unwrap());
                if !v.is_finite() {
                    c.copy_from_slice(&<$t>::from_f32(1.0).to_le_bytes());
                }
            }
        };
    }
    trait FromF32 {
        fn from_f32(v: f32) -> Self;
    }
    impl FromF32 for f32 {
        fn from_f32(v: f32) -> Self {
            v
        }
    }
    impl FromF32 for f64 {
        fn from_f32(v: f32) -> Self {
            f64::from(v)
        }
    }
    match dtype {
        DataType::F32 => fix!(f32, 4),
        DataType::F64 => fix!(f64, 8),
        DataType::F16 => fix!(f16, 2),
        DataType::BF16 => fix!(bf16, 2),
        _ => {}
    }
    bytes
}

/// A tensor of any datatype and a small shape. `json_safe`: finite floats and UTF-8
/// BYTES only.
fn arb_tensor(json_safe: bool) -> BoxedStrategy<Tensor> {
    (
        proptest::sample::select(DataType::ALL.to_vec()),
        vec(0usize..4, 0..4),
    )
        .prop_flat_map(move |(dtype, shape)| {
            let n: usize = shape.iter().product();
            match dtype.size() {
                Some(size) => vec(any::<u8>(), n * size)
                    .prop_map(move |bytes| {
                        let bytes = if dtype == DataType::Bool {
                            bytes.into_iter().map(|b| b & 1).collect()
                        } else if json_safe {
                            finite_only(dtype, bytes)
                        } else {
                            bytes
                        };
                        Tensor::new(dtype, shape.clone(), Bytes::from(bytes)).unwrap()
                    })
                    .boxed(),
                None if json_safe => vec("\\PC{0,6}", n)
                    .prop_map(move |s| Tensor::from_byte_strings(shape.clone(), &s).unwrap())
                    .boxed(),
                None => vec(vec(any::<u8>(), 0..6), n)
                    .prop_map(move |s| Tensor::from_byte_strings(shape.clone(), &s).unwrap())
                    .boxed(),
            }
        })
        .boxed()
}

/// Parameter values whose JSON spelling reads back as the same variant.
fn arb_param() -> impl Strategy<Value = ParamValue> {
    prop_oneof![
        any::<bool>().prop_map(ParamValue::Bool),
        any::<i64>().prop_map(ParamValue::Int),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(ParamValue::UInt),
        (-1e300f64..1e300).prop_map(ParamValue::Double),
        "\\PC{0,8}".prop_map(ParamValue::String),
    ]
}

fn arb_params() -> impl Strategy<Value = Parameters> {
    btree_map("p_[a-z]{1,4}", arb_param(), 0..3)
}

fn arb_request(json_safe: bool) -> impl Strategy<Value = InferRequest> {
    (
        vec((arb_tensor(json_safe), arb_params()), 0..4),
        vec(
            (
                proptest::option::of(any::<bool>()),
                proptest::option::of(1u32..),
                arb_params(),
            ),
            0..3,
        ),
        proptest::option::of(any::<u32>()),
        proptest::option::of(0u64..=i64::MAX as u64),
        any::<bool>(),
        arb_params(),
        "[a-z0-9]{0,4}",
    )
        .prop_map(
            |(inputs, outputs, priority, timeout_us, bdo, other, id)| InferRequest {
                model_name: String::new(),
                model_version: String::new(),
                id,
                inputs: inputs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (tensor, parameters))| InferInput {
                        name: format!("in{i}"),
                        tensor,
                        parameters,
                    })
                    .collect(),
                outputs: outputs
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (binary_data, classification, parameters))| RequestedOutput {
                            name: format!("out{i}"),
                            binary_data,
                            classification,
                            parameters,
                        },
                    )
                    .collect(),
                parameters: RequestParameters {
                    priority,
                    timeout_us,
                    binary_data_output: bdo,
                    other,
                },
            },
        )
}

fn arb_response(json_safe: bool) -> impl Strategy<Value = InferResponse> {
    (vec(arb_tensor(json_safe), 0..4), arb_params()).prop_map(|(outputs, parameters)| {
        InferResponse {
            model_name: "m".into(),
            model_version: "3".into(),
            id: "r".into(),
            outputs: outputs
                .into_iter()
                .enumerate()
                .map(|(i, t)| (format!("out{i}"), t))
                .collect(),
            parameters,
        }
    })
}

fn all_outputs(binary: bool) -> InferRequest {
    InferRequest {
        model_name: "m".into(),
        model_version: String::new(),
        id: "r".into(),
        inputs: vec![],
        outputs: vec![],
        parameters: RequestParameters {
            binary_data_output: binary,
            ..RequestParameters::default()
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn http_json_request_round_trips(req in arb_request(true)) {
        let (body, header) = encode_http_request(&req, false).unwrap();
        let back = decode_http_json_and_binary(&body, header, &Limits::unlimited()).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn http_binary_request_round_trips(req in arb_request(false)) {
        let (body, header) = encode_http_request(&req, true).unwrap();
        prop_assert_eq!(header.is_some(), !req.inputs.is_empty());
        let back = decode_http_json_and_binary(&body, header, &Limits::unlimited()).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn grpc_request_round_trips(mut req in arb_request(false)) {
        req.model_name = "m".into();
        req.model_version = "7".into();
        // binary_data_output and per-output binary_data are HTTP notions.
        req.parameters.binary_data_output = false;
        for o in &mut req.outputs {
            o.binary_data = None;
        }
        let wire = encode_grpc_request(&req).encode_to_vec();
        let msg = pb::ModelInferRequest::decode(Bytes::from(wire)).unwrap();
        let back = decode_grpc_request(msg, &Limits::unlimited()).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn http_json_response_round_trips(resp in arb_response(true)) {
        let ok = resp.outputs.iter().all(|(_, t)| t.dtype() != DataType::Bytes
            || t.byte_strings().unwrap().iter().all(|s| std::str::from_utf8(s).is_ok()));
        prop_assume!(ok);
        let (body, header) = encode_http_response(&resp, &all_outputs(false)).unwrap();
        prop_assert_eq!(header, None);
        let back = decode_http_response(&body, header, &Limits::unlimited()).unwrap();
        prop_assert_eq!(back, resp);
    }

    #[test]
    fn http_binary_response_round_trips(resp in arb_response(false)) {
        let (body, header) = encode_http_response(&resp, &all_outputs(true)).unwrap();
        let back = decode_http_response(&body, header, &Limits::unlimited()).unwrap();
        prop_assert_eq!(back, resp);
    }

    #[test]
    fn grpc_response_round_trips(resp in arb_response(false)) {
        let wire = encode_grpc_response(resp.clone(), &all_outputs(false)).unwrap().encode_to_vec();
        let msg = pb::ModelInferResponse::decode(Bytes::from(wire)).unwrap();
        prop_assert_eq!(decode_grpc_response(msg, &Limits::unlimited()).unwrap(), resp);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn http_decoders_never_panic_on_arbitrary_bytes(
        body in vec(any::<u8>(), 0..256),
        header in proptest::option::of(0usize..300),
    ) {
        let body = Bytes::from(body);
        let limits = Limits { max_elements: 1 << 16 };
        let _ = decode_http_json_and_binary(&body, header, &limits);
        let _ = decode_http_response(&body, header, &limits);
    }

    #[test]
    fn http_decoders_never_panic_on_damaged_bodies(
        req in arb_request(false),
        binary in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        header_shift in -3i64..3,
    ) {
        let (body, header) = encode_http_request(&req, binary).unwrap();
        let mut bytes = body.to_vec();
        if !bytes.is_empty() {
            for (i, v) in flips {
                let i = i.index(bytes.len());
                bytes[i] = v;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let header = header.map(|h| usize::try_from(h as i64 + header_shift).unwrap_or(0));
        let _ = decode_http_json_and_binary(&Bytes::from(bytes), header, &Limits::default());
    }

    #[test]
    fn raw_binary_never_panics(
        body in vec(any::<u8>(), 0..64),
        dtype in proptest::sample::select(DataType::ALL.to_vec()),
        dims in vec(prop_oneof![0i64..5, Just(-1i64)], 0..4),
        batching in any::<bool>(),
    ) {
        let spec = RawInputSpec { model: "m", input: "x", dtype, dims: &dims, batching };
        if let Ok(req) = decode_raw_binary(Bytes::from(body.clone()), &spec) {
            let t = &req.inputs[0].tensor;
            if dtype == DataType::Bytes {
                // The whole body is the one element.
                prop_assert_eq!(t.len(), 1);
                prop_assert_eq!(t.byte_strings().unwrap(), vec![body.as_slice()]);
            } else {
                prop_assert_eq!(t.data().len(), body.len());
            }
        }
    }

    #[test]
    fn grpc_decoder_never_panics(
        datatype in prop_oneof![
            proptest::sample::select(DataType::ALL.to_vec()).prop_map(|d| d.as_kserve().to_string()),
            "[A-Z0-9]{0,6}",
        ],
        shape in vec(-2i64..5, 0..4),
        raw in proptest::option::of(vec(any::<u8>(), 0..40)),
        ints in vec(any::<i32>(), 0..8),
        floats in vec(any::<f32>(), 0..8),
    ) {
        let contents = raw.is_none().then(|| pb::InferTensorContents {
            int_contents: ints,
            fp32_contents: floats,
            ..pb::InferTensorContents::default()
        });
        let msg = pb::ModelInferRequest {
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype,
                shape,
                parameters: Default::default(),
                contents,
            }],
            raw_input_contents: raw.map(Bytes::from).into_iter().collect(),
            ..pb::ModelInferRequest::default()
        };
        let _ = decode_grpc_request(msg, &Limits::default());
    }
}
