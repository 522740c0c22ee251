//! gRPC ModelInfer messages ↔ the transport-neutral request/response; every error path.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use bytes::Bytes;
use lrai_core::{DataType, Tensor};
use lrai_protocol::pb::infer_parameter::ParameterChoice;
use lrai_protocol::pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use lrai_protocol::{
    InferRequest, InferResponse, Limits, ParamValue, Parameters, ProtocolError, RequestParameters,
    RequestedOutput, decode_grpc_request, decode_grpc_response, encode_grpc_response,
    params_from_pb, params_to_pb, pb,
};

fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents: None,
    }
}

fn with_contents(mut i: InferInputTensor, c: pb::InferTensorContents) -> InferInputTensor {
    i.contents = Some(c);
    i
}

fn request(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: "m".into(),
        model_version: "2".into(),
        id: "r".into(),
        parameters: HashMap::new(),
        inputs,
        outputs: vec![],
        raw_input_contents: raw,
    }
}

fn decode(req: pb::ModelInferRequest) -> Result<InferRequest, ProtocolError> {
    decode_grpc_request(req, &Limits::default())
}

fn param(choice: ParameterChoice) -> pb::InferParameter {
    pb::InferParameter {
        parameter_choice: Some(choice),
    }
}

#[test]
fn raw_inputs_are_taken_without_copy_in_order() {
    let a = Bytes::from(vec![0u8; 24]);
    let b = Bytes::from_static(&[1, 0]);
    let req = decode(request(
        vec![input("a", "FP32", &[2, 3]), input("b", "FP16", &[1])],
        vec![a.clone(), b.clone()],
    ))
    .unwrap();
    assert_eq!(
        (
            req.model_name.as_str(),
            req.model_version.as_str(),
            req.id.as_str()
        ),
        ("m", "2", "r")
    );
    assert_eq!(req.inputs[0].tensor.data().as_ptr(), a.as_ptr());
    assert_eq!(req.inputs[0].tensor.shape(), &[2, 3]);
    assert_eq!(req.inputs[1].tensor.dtype(), DataType::F16);
    assert_eq!(req.inputs[1].tensor.data().as_ptr(), b.as_ptr());
}

#[test]
fn typed_contents_fill_every_datatype_family() {
    let c = |f: fn(&mut pb::InferTensorContents)| {
        let mut c = pb::InferTensorContents::default();
        f(&mut c);
        c
    };
    let req = decode(request(
        vec![
            with_contents(
                input("b", "BOOL", &[2]),
                c(|c| c.bool_contents = vec![true, false]),
            ),
            with_contents(
                input("i8", "INT8", &[2]),
                c(|c| c.int_contents = vec![-128, 127]),
            ),
            with_contents(
                input("i32", "INT32", &[1]),
                c(|c| c.int_contents = vec![-5]),
            ),
            with_contents(
                input("i64", "INT64", &[1]),
                c(|c| c.int64_contents = vec![i64::MIN]),
            ),
            with_contents(
                input("u16", "UINT16", &[1]),
                c(|c| c.uint_contents = vec![65535]),
            ),
            with_contents(
                input("u64", "UINT64", &[1]),
                c(|c| c.uint64_contents = vec![u64::MAX]),
            ),
            with_contents(
                input("f32", "FP32", &[1]),
                c(|c| c.fp32_contents = vec![0.5]),
            ),
            with_contents(
                input("f64", "FP64", &[1]),
                c(|c| c.fp64_contents = vec![0.25]),
            ),
            with_contents(
                input("s", "BYTES", &[2]),
                c(|c| c.bytes_contents = vec![Bytes::from_static(b"ab"), Bytes::new()]),
            ),
        ],
        vec![],
    ))
    .unwrap();
    let t = |i: usize| &req.inputs[i].tensor;
    assert_eq!(t(0).to_bools().unwrap(), vec![true, false]);
    assert_eq!(t(1).to_vec::<i8>().unwrap(), vec![-128, 127]);
    assert_eq!(t(2).to_vec::<i32>().unwrap(), vec![-5]);
    assert_eq!(t(3).to_vec::<i64>().unwrap(), vec![i64::MIN]);
    assert_eq!(t(4).to_vec::<u16>().unwrap(), vec![65535]);
    assert_eq!(t(5).to_vec::<u64>().unwrap(), vec![u64::MAX]);
    assert_eq!(t(6).to_vec::<f32>().unwrap(), vec![0.5]);
    assert_eq!(t(7).to_vec::<f64>().unwrap(), vec![0.25]);
    assert_eq!(t(8).byte_strings().unwrap(), vec![b"ab".as_slice(), b""]);
}

#[test]
fn rejects_contents_in_the_wrong_field_or_range() {
    let c = pb::InferTensorContents {
        int64_contents: vec![1],
        ..Default::default()
    };
    let e = decode(request(
        vec![with_contents(input("x", "FP32", &[1]), c)],
        vec![],
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'x' is FP32 but its data is in int64_contents; use fp32_contents"
    );
    let c = pb::InferTensorContents {
        int_contents: vec![1, 300],
        ..Default::default()
    };
    let e = decode(request(
        vec![with_contents(input("x", "INT8", &[2]), c)],
        vec![],
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'x': value 300 at index 1 does not fit INT8"
    );
    let c = pb::InferTensorContents {
        fp32_contents: vec![1.0],
        ..Default::default()
    };
    let e = decode(request(
        vec![with_contents(input("h", "FP16", &[1]), c)],
        vec![],
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'h': FP16 has no typed contents field; send it in raw contents"
    );
    let c = pb::InferTensorContents {
        fp32_contents: vec![1.0, 2.0],
        ..Default::default()
    };
    let e = decode(request(
        vec![with_contents(input("x", "FP32", &[3]), c)],
        vec![],
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'x': shape [3] needs 3 elements, got 2"
    );
}

#[test]
fn rejects_raw_contents_that_do_not_fit() {
    let e = decode(request(
        vec![input("a", "FP32", &[1]), input("b", "FP32", &[1])],
        vec![Bytes::from_static(&[0; 4])],
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the message has 2 tensors but 1 raw_input_contents entries"
    );
    let e = decode(request(
        vec![input("a", "FP32", &[2])],
        vec![Bytes::from_static(&[0; 7])],
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'a': 7 bytes of raw_input_contents, but FP32 [2] needs 8"
    );
    let e = decode(request(
        vec![with_contents(
            input("a", "FP32", &[1]),
            pb::InferTensorContents::default(),
        )],
        vec![Bytes::from_static(&[0; 4])],
    ))
    .unwrap_err();
    assert!(matches!(e, ProtocolError::ConflictingData { .. }), "{e:?}");
    let e = decode(request(vec![input("a", "FP32", &[1])], vec![])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'a' has no data: set contents or raw_input_contents"
    );
    // An empty tensor needs no data.
    let req = decode(request(vec![input("a", "FP32", &[0, 3])], vec![])).unwrap();
    assert!(req.inputs[0].tensor.is_empty());
    let e = decode(request(
        vec![input("s", "BYTES", &[2])],
        vec![Bytes::from_static(&[1, 0, 0, 0, b'a'])],
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("input 's': BYTES tensor of shape [2] needs 2 elements"),
        "{e}"
    );
}

#[test]
fn rejects_bad_metadata_and_limits() {
    let e = decode(request(vec![input("a", "FLOAT", &[1])], vec![Bytes::new()])).unwrap_err();
    assert!(matches!(e, ProtocolError::UnknownDatatype { .. }), "{e:?}");
    let e = decode(request(vec![input("a", "FP32", &[-1])], vec![Bytes::new()])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid shape for input 'a': shape [-1] contains one or more invalid dimensions \
         (dimensions must be non-negative)"
    );
    let e = decode_grpc_request(
        request(
            vec![input("a", "UINT8", &[9])],
            vec![Bytes::from_static(&[0; 9])],
        ),
        &Limits { max_elements: 8 },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'a' has 9 elements, more than the limit of 8"
    );
    let e = decode(request(
        vec![input("a", "UINT8", &[1]), input("a", "UINT8", &[1])],
        vec![Bytes::from_static(&[0]), Bytes::from_static(&[0])],
    ))
    .unwrap_err();
    assert!(matches!(e, ProtocolError::DuplicateTensor { .. }), "{e:?}");
}

#[test]
fn maps_request_parameters() {
    let mut req = request(vec![], vec![]);
    req.parameters
        .insert("priority".into(), param(ParameterChoice::Int64Param(3)));
    req.parameters
        .insert("timeout".into(), param(ParameterChoice::Int64Param(1000)));
    req.parameters.insert(
        "sequence_id".into(),
        param(ParameterChoice::StringParam("s".into())),
    );
    req.outputs.push(InferRequestedOutputTensor {
        name: "y".into(),
        parameters: HashMap::new(),
    });
    let r = decode(req.clone()).unwrap();
    assert_eq!(r.parameters.priority, Some(3));
    assert_eq!(r.parameters.timeout_us, Some(1000));
    assert_eq!(
        r.parameters.other.get("sequence_id"),
        Some(&ParamValue::String("s".into()))
    );
    assert_eq!(r.outputs[0].name, "y");

    req.parameters
        .insert("priority".into(), param(ParameterChoice::Int64Param(-1)));
    let e = decode(req.clone()).unwrap_err();
    assert!(matches!(e, ProtocolError::BadParameter { .. }), "{e:?}");
    req.parameters.insert(
        "priority".into(),
        pb::InferParameter {
            parameter_choice: None,
        },
    );
    let e = decode(req).unwrap_err();
    assert!(e.to_string().contains("no value set"), "{e}");
}

#[test]
fn parameters_convert_both_ways() {
    let p: Parameters = [
        ("a".to_string(), ParamValue::Bool(true)),
        ("b".to_string(), ParamValue::Int(-1)),
        ("c".to_string(), ParamValue::UInt(u64::MAX)),
        ("d".to_string(), ParamValue::Double(0.5)),
        ("e".to_string(), ParamValue::String("x".into())),
    ]
    .into_iter()
    .collect();
    assert_eq!(params_from_pb(params_to_pb(&p)).unwrap(), p);
}

fn response() -> InferResponse {
    InferResponse {
        model_name: "m".into(),
        model_version: "1".into(),
        id: "r".into(),
        outputs: vec![
            (
                "a".into(),
                Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap(),
            ),
            (
                "b".into(),
                Tensor::from_byte_strings(vec![1], &["x"]).unwrap(),
            ),
        ],
        parameters: Parameters::new(),
    }
}

fn infer_request(outputs: &[&str]) -> InferRequest {
    InferRequest {
        model_name: "m".into(),
        model_version: String::new(),
        id: "r".into(),
        inputs: vec![],
        outputs: outputs
            .iter()
            .map(|n| RequestedOutput {
                name: (*n).into(),
                binary_data: None,
                classification: None,
                parameters: Parameters::new(),
            })
            .collect(),
        parameters: RequestParameters::default(),
    }
}

#[test]
fn encodes_response_as_raw_output_contents() {
    let resp = response();
    let a_ptr = resp.outputs[0].1.data().as_ptr();
    let pb = encode_grpc_response(resp.clone(), &infer_request(&[])).unwrap();
    assert_eq!(pb.outputs.len(), 2);
    assert_eq!(pb.outputs[0].name, "a");
    assert_eq!(pb.outputs[0].datatype, "FP32");
    assert_eq!(pb.outputs[0].shape, vec![2]);
    assert!(pb.outputs[0].contents.is_none() && pb.outputs[0].parameters.is_empty());
    assert_eq!(pb.raw_output_contents[0].as_ptr(), a_ptr);
    assert_eq!(pb.outputs[1].datatype, "BYTES");
    assert_eq!(pb.raw_output_contents[1].as_ref(), &[1, 0, 0, 0, b'x']);
    assert_eq!(
        decode_grpc_response(pb, &Limits::unlimited()).unwrap(),
        resp
    );

    let pb = encode_grpc_response(resp.clone(), &infer_request(&["b"])).unwrap();
    assert_eq!(pb.outputs.len(), 1);
    assert_eq!(pb.outputs[0].name, "b");
    let e = encode_grpc_response(resp, &infer_request(&["c"])).unwrap_err();
    assert!(matches!(e, ProtocolError::UnknownOutput { .. }), "{e:?}");
}
