//! HTTP inference bodies: JSON and the binary tensor extension; every error path. Raw
//! binary requests are in raw_binary.rs.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use lrai_core::Tensor;
use lrai_core::half::f16;
use lrai_protocol::{
    InferRequest, InferResponse, Limits, ParamValue, Parameters, ProtocolError, RequestParameters,
    RequestedOutput, decode_http_json_and_binary, decode_http_response, encode_http_response,
};
use serde_json::{Value, json};

fn decode_json(body: &str) -> Result<InferRequest, ProtocolError> {
    decode_http_json_and_binary(&Bytes::from(body.to_string()), None, &Limits::default())
}

fn err_json(body: &str) -> String {
    decode_json(body).unwrap_err().to_string()
}

/// JSON head followed by binary parts, and the head length.
fn binary_body(head: &Value, parts: &[&[u8]]) -> (Bytes, usize) {
    let mut buf = serde_json::to_vec(head).unwrap();
    let n = buf.len();
    for p in parts {
        buf.extend_from_slice(p);
    }
    (Bytes::from(buf), n)
}

#[test]
fn decodes_json_request_with_parameters_and_outputs() {
    let req = decode_json(
        r#"{"id": "r1", "parameters": {"priority": 1, "timeout": 100, "custom": "v"},
            "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3.5, -4]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": true, "k": 3}}, {"name": "z"}]}"#,
    )
    .unwrap();
    assert_eq!(req.id, "r1");
    assert_eq!(req.model_name, "");
    assert_eq!(req.parameters.priority, Some(1));
    assert_eq!(req.parameters.timeout_us, Some(100));
    assert_eq!(
        req.parameters.other.get("custom"),
        Some(&ParamValue::String("v".into()))
    );
    assert_eq!(req.inputs[0].name, "x");
    assert_eq!(req.inputs[0].tensor.shape(), &[2, 2]);
    assert_eq!(
        req.inputs[0].tensor.to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, 3.5, -4.0]
    );
    assert_eq!(req.outputs[0].binary_data, Some(true));
    assert_eq!(
        req.outputs[0].parameters.get("k"),
        Some(&ParamValue::Int(3))
    );
    assert_eq!(req.outputs[1].binary_data, None);
}

#[test]
fn decodes_nested_data_and_data_before_datatype() {
    let a = decode_json(
        r#"{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]}]}"#,
    )
    .unwrap();
    let b = decode_json(
        r#"{"inputs": [{"data": [1, 2, 3, 4, 5, 6], "name": "x", "datatype": "INT32", "shape": [2, 3]}]}"#,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.inputs[0].tensor.to_vec::<i32>().unwrap(),
        vec![1, 2, 3, 4, 5, 6]
    );
}

#[test]
fn decodes_bool_bytes_and_exact_64_bit_integers() {
    let req = decode_json(
        r#"{"inputs": [
            {"name": "b", "shape": [2], "datatype": "BOOL", "data": [true, false]},
            {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["hi", ""]},
            {"name": "i", "shape": [1], "datatype": "INT64", "data": [-9007199254740993]},
            {"name": "u", "shape": [1], "datatype": "UINT64", "data": [18446744073709551615]}]}"#,
    )
    .unwrap();
    assert_eq!(req.inputs[0].tensor.to_bools().unwrap(), vec![true, false]);
    assert_eq!(
        req.inputs[1].tensor.byte_strings().unwrap(),
        vec![b"hi".as_slice(), b""]
    );
    assert_eq!(
        req.inputs[2].tensor.to_vec::<i64>().unwrap(),
        vec![-9_007_199_254_740_993]
    );
    assert_eq!(
        req.inputs[3].tensor.to_vec::<u64>().unwrap(),
        vec![u64::MAX]
    );
}

#[test]
fn rejects_fp16_and_bf16_in_json() {
    assert_eq!(
        err_json(r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}]}"#),
        "input 'x': receiving FP16 data via JSON is not supported; use the binary tensor extension"
    );
    // Also when `data` comes first.
    let e =
        err_json(r#"{"inputs": [{"data": [1], "name": "h", "shape": [1], "datatype": "BF16"}]}"#);
    assert!(
        e.starts_with("input 'h': receiving BF16 data via JSON"),
        "{e}"
    );
}

#[test]
fn rejects_element_count_mismatch() {
    let e = decode_json(
        r#"{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2]}]}"#,
    )
    .unwrap_err();
    assert!(
        matches!(
            &e,
            ProtocolError::ElementCount {
                expected: 6,
                got: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "input 'x': shape [2,3] needs 6 elements, got 2"
    );
    let e = err_json(
        r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1, 2, 3]}]}"#,
    );
    assert_eq!(e, "input 'x': shape [1] needs 1 elements, got 3");
}

#[test]
fn reports_malformed_json_with_position() {
    let e = decode_json("{\"inputs\": [\n  {\"name\": \"x\",, }]}").unwrap_err();
    match &e {
        ProtocolError::Json { line, column, .. } => assert_eq!((*line, *column), (2, 16)),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("malformed JSON: "), "{e}");
    assert!(e.to_string().contains("line 2 column 16"), "{e}");
}

#[test]
fn wrongly_typed_elements_name_the_input() {
    let e = err_json(
        r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 200]}]}"#,
    );
    assert!(
        e.contains("200") && e.contains("INT8") && e.contains("input 'x'") && e.contains("column"),
        "{e}"
    );
    let e =
        err_json(r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["1"]}]}"#);
    assert!(e.contains("FP32 number for input 'x'"), "{e}");
}

#[test]
fn rejects_unknown_datatype_listing_valid_ones() {
    let e =
        err_json(r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}]}"#);
    assert!(
        e.starts_with("input 'x': unknown datatype 'FLOAT'; valid datatypes are BOOL, UINT8"),
        "{e}"
    );
}

#[test]
fn enforces_element_limit_before_parsing() {
    let limits = Limits { max_elements: 4 };
    let body =
        r#"{"inputs": [{"name": "x", "shape": [5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}"#;
    let e = decode_http_json_and_binary(&Bytes::from(body), None, &limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'x' has 5 elements, more than the limit of 4"
    );
    // Binary tensors too.
    let head = json!({"inputs": [{"name": "b", "shape": [8], "datatype": "UINT8",
                                  "parameters": {"binary_data_size": 8}}]});
    let (body, n) = binary_body(&head, &[&[0; 8]]);
    let e = decode_http_json_and_binary(&body, Some(n), &limits).unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::TooManyElements {
                count: 8,
                limit: 4,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn rejects_missing_fields_and_bad_shapes() {
    assert_eq!(
        err_json(r#"{"id": "a"}"#),
        "the request: missing field 'inputs'"
    );
    assert_eq!(
        err_json(r#"{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}"#),
        "input #0: missing field 'name'"
    );
    assert_eq!(
        err_json(r#"{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}"#),
        "input 'x': missing field 'shape'"
    );
    assert_eq!(
        err_json(r#"{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}"#),
        "input 'x': missing field 'datatype'"
    );
    assert_eq!(
        err_json(
            r#"{"inputs": [{"name": "x", "shape": [-1, 2], "datatype": "FP32", "data": []}]}"#
        ),
        "invalid shape for input 'x': shape [-1,2] contains one or more invalid dimensions \
         (dimensions must be non-negative)"
    );
    assert_eq!(
        err_json(r#"{"inputs": [{"name": "x", "shape": [1.5], "datatype": "FP32", "data": []}]}"#),
        "invalid shape for input 'x': shape [1.5] contains one or more invalid dimensions \
         (dimensions must be integers)"
    );
    let e = err_json(
        r#"{"inputs": [{"name": "x", "shape": [4294967296, 4294967296, 4294967296], "datatype": "FP32", "data": []}]}"#,
    );
    assert_eq!(
        e,
        "invalid shape for input 'x': shape [4294967296,4294967296,4294967296] causes total \
         element count to exceed maximum size of 9223372036854775807"
    );
    // Triton's limit is i64::MAX elements, below what a 64-bit usize product allows.
    let e = err_json(
        r#"{"inputs": [{"name": "x", "shape": [4294967296, 3000000000], "datatype": "FP32", "data": []}]}"#,
    );
    assert!(
        e.contains("exceed maximum size of 9223372036854775807"),
        "{e}"
    );
}

/// `data` for one value inside `levels` nested arrays.
fn nested(levels: usize, value: &str) -> String {
    format!("{}{value}{}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn nests_data_up_to_tritons_limit() {
    // 99 arrays: the value sits at depth 99, the deepest Triton reads.
    for (dtype, value) in [
        ("FP32", "1.5"),
        ("FP64", "1.5"),
        ("INT64", "7"),
        ("BYTES", "\"s\""),
    ] {
        let data = nested(99, value);
        let req = decode_json(&format!(
            r#"{{"inputs": [{{"name": "x", "shape": [1], "datatype": "{dtype}", "data": {data}}}]}}"#
        ))
        .unwrap();
        assert_eq!(req.inputs[0].tensor.len(), 1, "{dtype}");
        // Also when `data` comes before `datatype` (read later from its text).
        decode_json(&format!(
            r#"{{"inputs": [{{"name": "x", "data": {data}, "shape": [1], "datatype": "{dtype}"}}]}}"#
        ))
        .unwrap();
    }
    // Empty arrays count only as deep as they go: 100 of them reach depth 99 (101 do not
    // pass, below).
    decode_json(&format!(
        r#"{{"inputs": [{{"name": "x", "shape": [0], "datatype": "FP32", "data": {}}}]}}"#,
        nested(100, "")
    ))
    .unwrap();
    // Nesting outside `data` is not limited (Triton's parser is iterative too).
    let deep = nested(5000, "1");
    let req = decode_json(&format!(
        r#"{{"extra": {deep}, "inputs": [{{"name": "x", "shape": [1], "datatype": "FP32", "data": [2]}}],
            "outputs": [{{"name": "y", "extra": {deep}}}]}}"#
    ))
    .unwrap();
    assert_eq!(req.outputs[0].name, "y");
}

#[test]
fn refuses_data_nested_deeper_than_tritons_limit() {
    let want = "JSON nesting depth exceeds maximum allowed limit (100) in the data of input 'x'; \
                send the values as a flat array in row-major order";
    let cases = [
        ("FP32", "1"),
        ("FP64", "1"),
        ("UINT8", "1"),
        ("BOOL", "true"),
        ("BYTES", "\"s\""),
    ];
    for (dtype, value) in cases {
        // 100 arrays: the value would sit at depth 100.
        let data = nested(100, value);
        let e = decode_json(&format!(
            r#"{{"inputs": [{{"name": "x", "shape": [1], "datatype": "{dtype}", "data": {data}}}]}}"#
        ))
        .unwrap_err();
        assert!(
            matches!(e, ProtocolError::JsonDepth { limit: 100, .. }),
            "{dtype}: {e:?}"
        );
        assert_eq!(e.to_string(), want, "{dtype}");
        let e = decode_json(&format!(
            r#"{{"inputs": [{{"name": "x", "data": {data}, "datatype": "{dtype}", "shape": [1]}}]}}"#
        ))
        .unwrap_err();
        assert_eq!(e.to_string(), want, "{dtype}, data first");
    }
    let e = decode_json(&format!(
        r#"{{"inputs": [{{"name": "x", "shape": [0], "datatype": "FP32", "data": {}}}]}}"#,
        nested(101, "")
    ))
    .unwrap_err();
    assert!(matches!(e, ProtocolError::JsonDepth { .. }), "{e:?}");
    // Far deeper than any stack could recurse: refused at depth 100, not a crash. FP64
    // re-reads each row from its text, so it is the case that must not recurse.
    for dtype in ["FP64", "FP32"] {
        let data = nested(200_000, "1");
        let e = decode_json(&format!(
            r#"{{"inputs": [{{"name": "x", "shape": [1], "datatype": "{dtype}", "data": {data}}}]}}"#
        ))
        .unwrap_err();
        assert!(
            matches!(e, ProtocolError::JsonDepth { .. }),
            "{dtype}: {e:?}"
        );
    }
}

#[test]
fn requires_exactly_one_data_source() {
    assert_eq!(
        err_json(r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}"#),
        "input 'x' has no data: set 'data' or a 'binary_data_size' parameter"
    );
    let head = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
                                  "parameters": {"binary_data_size": 4}}]});
    let (body, n) = binary_body(&head, &[&[0; 4]]);
    let e = decode_http_json_and_binary(&body, Some(n), &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'x' sets both 'data' and 'binary_data_size'; set exactly one"
    );
}

#[test]
fn rejects_shared_memory_and_duplicates() {
    let e = err_json(
        r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
             "parameters": {"shared_memory_region": "r"}}]}"#,
    );
    assert!(
        e.starts_with(
            "shared memory (parameter 'shared_memory_region' on input 'x') is not supported"
        ),
        "{e}"
    );
    let e = err_json(
        r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                       {"name": "x", "shape": [1], "datatype": "FP32", "data": [2]}]}"#,
    );
    assert_eq!(
        e,
        "input 'x' already exists in request; name each tensor once"
    );
    let e = err_json(r#"{"inputs": [], "outputs": [{"name": "y"}, {"name": "y"}]}"#);
    assert_eq!(
        e,
        "output 'y' already exists in request; name each tensor once"
    );
    let e =
        err_json(r#"{"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}"#);
    assert_eq!(e, "parameter 'binary_data' must be true or false, got 1");
    let e = err_json(r#"{"inputs": [], "parameters": {"priority": "high"}}"#);
    assert!(e.contains("priority"), "{e}");
}

#[test]
fn binary_inputs_are_slices_of_the_body() {
    let head = json!({"inputs": [
        {"name": "a", "shape": [2, 2], "datatype": "UINT32", "parameters": {"binary_data_size": 16}},
        {"name": "j", "shape": [1], "datatype": "FP32", "data": [7]},
        {"name": "b", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}},
        {"name": "h", "shape": [1], "datatype": "FP16", "parameters": {"binary_data_size": 2}}]});
    let a: Vec<u8> = [1u32, 2, 3, 4]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let h = f16::from_f32(1.5).to_le_bytes();
    let (body, n) = binary_body(&head, &[&a, &[1, 0, 1], &h]);
    let req = decode_http_json_and_binary(&body, Some(n), &Limits::default()).unwrap();
    let ta = &req.inputs[0].tensor;
    assert_eq!(ta.to_vec::<u32>().unwrap(), vec![1, 2, 3, 4]);
    // Zero copy: the tensor's storage points into the body.
    let body_range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
    assert!(body_range.contains(&(ta.data().as_ptr() as usize)));
    assert_eq!(req.inputs[1].tensor.to_vec::<f32>().unwrap(), vec![7.0]);
    assert_eq!(
        req.inputs[2].tensor.to_bools().unwrap(),
        vec![true, false, true]
    );
    assert_eq!(
        req.inputs[3].tensor.to_vec::<f16>().unwrap(),
        vec![f16::from_f32(1.5)]
    );
    // binary_data_size is framing, not a parameter the server sees.
    assert!(req.inputs[0].parameters.is_empty());
}

#[test]
fn rejects_binary_sizes_that_do_not_add_up() {
    let head = json!({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 20}}]});
    let (body, n) = binary_body(&head, &[&[0; 20]]);
    let e = decode_http_json_and_binary(&body, Some(n), &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'x': 20 bytes of binary data, but FP32 [2,3] needs 24"
    );

    let head = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 4}}]});
    let (body, n) = binary_body(&head, &[&[0; 6]]);
    let e = decode_http_json_and_binary(&body, Some(n), &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "binary_data_size values add up to 4 bytes but 6 bytes follow the JSON header"
    );
    let (body, n) = binary_body(&head, &[&[0; 2]]);
    let e = decode_http_json_and_binary(&body, Some(n), &Limits::default()).unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::BinaryTotal {
                declared: 4,
                available: 2
            }
        ),
        "{e:?}"
    );
}

#[test]
fn rejects_malformed_binary_bytes_elements() {
    let head = json!({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES",
                                  "parameters": {"binary_data_size": 5}}]});
    let (body, n) = binary_body(&head, &[&[9, 0, 0, 0, b'a']]);
    let e = decode_http_json_and_binary(&body, Some(n), &Limits::default()).unwrap_err();
    assert!(
        e.to_string().starts_with("input 's': malformed BYTES data"),
        "{e}"
    );
}

#[test]
fn explains_framing_mistakes() {
    let head = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 4}}]});
    let (body, n) = binary_body(&head, &[&[0; 4]]);
    // No header at all: the bytes after the JSON are trailing data.
    let e = decode_http_json_and_binary(&body, None, &Limits::default()).unwrap_err();
    assert!(matches!(e, ProtocolError::TrailingData { .. }), "{e:?}");
    assert!(
        e.to_string().contains("Inference-Header-Content-Length"),
        "{e}"
    );
    // JSON-only body whose input claims binary data.
    let json_only = Bytes::from(body[..n].to_vec());
    let e = decode_http_json_and_binary(&json_only, None, &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input 'x' has binary_data_size but the request has no Inference-Header-Content-Length header"
    );
    let e =
        decode_http_json_and_binary(&body, Some(body.len() + 1), &Limits::default()).unwrap_err();
    assert!(matches!(e, ProtocolError::HeaderLength { .. }), "{e:?}");
    let e = decode_http_json_and_binary(&body, Some(0), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("raw binary"), "{e}");
    // A header length that cuts the JSON short.
    let e = decode_http_json_and_binary(&body, Some(n - 3), &Limits::default()).unwrap_err();
    assert!(matches!(e, ProtocolError::Json { .. }), "{e:?}");
}

fn response() -> InferResponse {
    InferResponse {
        model_name: "m".into(),
        model_version: "1".into(),
        id: String::new(),
        outputs: vec![
            (
                "probs".into(),
                Tensor::from_vec(vec![1, 3], vec![0.1f32, 0.2, 0.7]).unwrap(),
            ),
            (
                "label".into(),
                Tensor::from_vec(vec![1], vec![2i64]).unwrap(),
            ),
        ],
        parameters: Parameters::new(),
    }
}

fn request(outputs: Vec<RequestedOutput>, binary_data_output: bool) -> InferRequest {
    InferRequest {
        model_name: "m".into(),
        model_version: String::new(),
        id: String::new(),
        inputs: vec![],
        outputs,
        parameters: RequestParameters {
            binary_data_output,
            ..RequestParameters::default()
        },
    }
}

fn wanted(name: &str, binary_data: Option<bool>) -> RequestedOutput {
    RequestedOutput {
        name: name.into(),
        binary_data,
        classification: None,
        parameters: Parameters::new(),
    }
}

#[test]
fn encodes_json_response_without_output_parameters() {
    let (body, header) = encode_http_response(&response(), &request(vec![], false)).unwrap();
    assert_eq!(header, None);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"model_name": "m", "model_version": "1", "outputs": [
            {"name": "probs", "datatype": "FP32", "shape": [1, 3], "data": [0.1, 0.2, 0.7]},
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [2]}]})
    );
    // f32 values print shortest-round-trip, not as widened doubles.
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("[0.1,0.2,0.7]")
    );
}

#[test]
fn encodes_binary_outputs_after_the_json() {
    let resp = response();
    let (body, header) = encode_http_response(&resp, &request(vec![], true)).unwrap();
    let n = header.unwrap();
    let head: Value = serde_json::from_slice(&body[..n]).unwrap();
    assert_eq!(
        head["outputs"][0],
        json!({"name": "probs", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}})
    );
    assert_eq!(
        head["outputs"][1]["parameters"]["binary_data_size"],
        json!(8)
    );
    assert_eq!(&body[n..n + 12], resp.outputs[0].1.data().as_ref());
    assert_eq!(&body[n + 12..], resp.outputs[1].1.data().as_ref());
    assert_eq!(body.len(), n + 20);
}

#[test]
fn requested_outputs_choose_order_and_format() {
    let req = request(
        vec![wanted("label", None), wanted("probs", Some(false))],
        true,
    );
    let (body, header) = encode_http_response(&response(), &req).unwrap();
    let n = header.unwrap();
    let head: Value = serde_json::from_slice(&body[..n]).unwrap();
    let outs = head["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0]["name"], json!("label"));
    assert_eq!(outs[0]["parameters"]["binary_data_size"], json!(8));
    assert_eq!(outs[1]["name"], json!("probs"));
    assert!(outs[1].get("parameters").is_none());
    assert_eq!(outs[1]["data"], json!([0.1, 0.2, 0.7]));
    assert_eq!(body.len(), n + 8);

    let req = request(vec![wanted("logits", None)], false);
    let e = encode_http_response(&response(), &req).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected inference output 'logits' (available outputs: probs, label)"
    );
}

#[test]
fn writes_fp16_json_as_numbers_and_refuses_non_utf8_bytes_in_json() {
    let mut resp = response();
    resp.outputs = vec![(
        "h".into(),
        Tensor::from_slice(vec![2], &[f16::from_f32(0.5), f16::from_f32(-2.0)]).unwrap(),
    )];
    resp.id = "r".into();
    resp.parameters.insert("p".into(), ParamValue::Bool(true));
    let (body, _) = encode_http_response(&resp, &request(vec![], false)).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["outputs"][0]["data"], json!([0.5, -2.0]));
    assert_eq!(v["id"], json!("r"));
    assert_eq!(v["parameters"], json!({"p": true}));
    let back = decode_http_response(&body, None, &Limits::unlimited()).unwrap();
    assert_eq!(back, resp);

    resp.outputs = vec![(
        "s".into(),
        Tensor::from_byte_strings(vec![1], &[[0xffu8, 0]]).unwrap(),
    )];
    let e = encode_http_response(&resp, &request(vec![], false)).unwrap_err();
    assert!(matches!(e, ProtocolError::NonUtf8Bytes { .. }), "{e:?}");
    let (body, header) = encode_http_response(&resp, &request(vec![], true)).unwrap();
    let back = decode_http_response(&body, header, &Limits::unlimited()).unwrap();
    assert_eq!(back.outputs, resp.outputs);
}
