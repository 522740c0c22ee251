//! Raw binary requests (`Inference-Header-Content-Length: 0`): the body is the single
//! input's data and the shape comes from the model's dims, by Triton's rules.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use lrai_core::DataType;
use lrai_protocol::{ProtocolError, RawInputSpec, decode_raw_binary};

fn spec(dtype: DataType, dims: &[i64], batching: bool) -> RawInputSpec<'_> {
    RawInputSpec {
        model: "m",
        input: "x",
        dtype,
        dims,
        batching,
    }
}

fn f32_bytes(v: &[f32]) -> Bytes {
    Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

#[test]
fn fixed_size_input_takes_the_body_in_place() {
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // A batching model: batch 1 first, then the variable dimension decided by the body.
    let req = decode_raw_binary(data.clone(), &spec(DataType::F32, &[-1, 3], true)).unwrap();
    let t = &req.inputs[0].tensor;
    assert_eq!(t.shape(), &[1, 2, 3]);
    assert_eq!(
        t.data().as_ptr(),
        data.as_ptr(),
        "raw data is used without a copy"
    );
    assert_eq!(req.inputs[0].name, "x");
    assert!(
        req.parameters.binary_data_output,
        "outputs come back binary"
    );
    assert!(req.outputs.is_empty());

    let req = decode_raw_binary(data.clone(), &spec(DataType::F32, &[6], false)).unwrap();
    assert_eq!(req.inputs[0].tensor.shape(), &[6]);
    let req = decode_raw_binary(data, &spec(DataType::F32, &[2, 3], true)).unwrap();
    assert_eq!(req.inputs[0].tensor.shape(), &[1, 2, 3]);
    // An empty body with a variable dimension is a zero-row tensor.
    let req = decode_raw_binary(Bytes::new(), &spec(DataType::F32, &[-1, 3], false)).unwrap();
    assert_eq!(req.inputs[0].tensor.shape(), &[0, 3]);
}

#[test]
fn bytes_input_takes_the_whole_body_as_its_one_element() {
    // No 4-byte length prefix: bytes that look like one are data too.
    let body = Bytes::from_static(&[2, 0, 0, 0, b'h', b'i', 0, 0xff]);
    let req = decode_raw_binary(body.clone(), &spec(DataType::Bytes, &[1], true)).unwrap();
    let t = &req.inputs[0].tensor;
    assert_eq!(t.shape(), &[1, 1]);
    assert_eq!(t.byte_strings().unwrap(), vec![body.as_ref()]);
    let req = decode_raw_binary(body.clone(), &spec(DataType::Bytes, &[1], false)).unwrap();
    assert_eq!(req.inputs[0].tensor.shape(), &[1]);
    assert_eq!(
        req.inputs[0].tensor.byte_strings().unwrap(),
        vec![body.as_ref()]
    );
    // One element however the dims write it; an empty body is one empty string.
    let req = decode_raw_binary(Bytes::new(), &spec(DataType::Bytes, &[1, 1], false)).unwrap();
    assert_eq!(req.inputs[0].tensor.shape(), &[1, 1]);
    assert_eq!(
        req.inputs[0].tensor.byte_strings().unwrap(),
        vec![b"".as_slice()]
    );
    let text = Bytes::from("a sentence, sent as is\n");
    let req = decode_raw_binary(text.clone(), &spec(DataType::Bytes, &[], true)).unwrap();
    assert_eq!(req.inputs[0].tensor.shape(), &[1]);
    assert_eq!(
        req.inputs[0].tensor.byte_strings().unwrap(),
        vec![text.as_ref()]
    );
}

#[test]
fn refuses_bytes_inputs_of_more_than_one_element() {
    for dims in [&[-1][..], &[2], &[1, -1], &[0]] {
        let e =
            decode_raw_binary(Bytes::from("hi"), &spec(DataType::Bytes, dims, true)).unwrap_err();
        assert!(matches!(e, ProtocolError::RawBytesShape { .. }), "{e:?}");
    }
    let e = decode_raw_binary(Bytes::from("hi"), &spec(DataType::Bytes, &[-1], false)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "For BYTE datatype raw input 'x', the model must have input shape [1] (its dims are \
         [-1]); send a JSON request or use the binary tensor extension"
    );
}

#[test]
fn refuses_shapes_that_cannot_be_deduced() {
    let data = f32_bytes(&[1.0; 6]);
    let e = decode_raw_binary(data.clone(), &spec(DataType::F32, &[-1, -1], true)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "The shape of the raw input 'x' can not be deduced because there are more than one \
         variable-sized dimension (its dims are [-1,-1]); send a JSON request or use the \
         binary tensor extension"
    );
    let e = decode_raw_binary(data, &spec(DataType::F32, &[0, -1], false)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("The shape of the raw input 'x' can not be deduced because a zero"),
        "{e}"
    );
}

#[test]
fn refuses_a_body_that_does_not_fill_the_shape() {
    let data = f32_bytes(&[1.0; 6]);
    let e = decode_raw_binary(data.clone(), &spec(DataType::F32, &[5], false)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input byte size mismatch for input 'x' for model 'm'. Expected 20, got 24 (raw binary \
         request: FP32 with dims [5])"
    );
    // Triton rounds the variable dimension down, then finds the bytes do not match.
    let e = decode_raw_binary(data, &spec(DataType::F32, &[-1, 5], true)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "input byte size mismatch for input 'x' for model 'm'. Expected 20, got 24 (raw binary \
         request: FP32 with dims [-1,5]; the variable dimension takes whole rows only)"
    );
    assert!(
        matches!(
            e,
            ProtocolError::RawSize {
                expected: 20,
                got: 24,
                ..
            }
        ),
        "{e:?}"
    );
    let e = decode_raw_binary(
        Bytes::from_static(&[0; 3]),
        &spec(DataType::U16, &[-1], false),
    )
    .unwrap_err();
    assert!(
        matches!(e, ProtocolError::RawSize { expected: 2, .. }),
        "{e:?}"
    );
}
