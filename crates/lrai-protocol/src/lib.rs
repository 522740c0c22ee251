//! LRAI's wire layer: everything between bytes on a socket and LRAI's own types, with
//! no server in it.
//!
//! - [`pb`]: the KServe v2 / Triton gRPC messages, client and service trait (package
//!   `inference`, service `inference.GRPCInferenceService`), generated from
//!   `proto/*.proto` at build time without a system `protoc`.
//! - [`infer`]: the one transport-neutral [`InferRequest`]/[`InferResponse`] and the
//!   codecs both ways: HTTP JSON, Triton's binary tensor extension and raw binary
//!   requests, and gRPC messages. Tensors borrow the received `Bytes` wherever the
//!   wire carries raw bytes. Also Triton's classification extension ([`classify`]).
//! - [`kserve`]: the other JSON bodies (metadata, errors, repository, statistics) with
//!   Triton's field names, and their gRPC twins.
//! - [`ProtocolError`]: what can be wrong with a request, naming the tensor and the
//!   numbers involved.
//!
//! What it does not own: routing, handlers and status codes (the `server` feature,
//! with axum and tonic services, over `lrai-repo`), and any check against a model's
//! metadata (names, datatypes, shapes), which the server does once for both protocols.
//! Offline tools use this crate with `default-features = false` for the wire types
//! and the gRPC client.

pub mod error;
pub mod infer;
pub mod kserve;
#[cfg(feature = "server")]
pub mod server;

pub use error::{
    ClassParamProblem, ProtocolError, RawShapeProblem, Result, Role, ShapeProblem, TensorRef,
};
pub use infer::{
    InferInput, InferRequest, InferResponse, Limits, MAX_CLASSIFICATION_ELEMENTS, ParamValue,
    Parameters, RawInputSpec, RequestParameters, RequestedOutput, classifiable, classify,
    decode_grpc_request, decode_grpc_response, decode_http_json_and_binary, decode_http_response,
    decode_raw_binary, encode_grpc_request, encode_grpc_response, encode_http_request,
    encode_http_response, params_from_pb, params_to_pb,
};

/// Generated KServe v2 / Triton protobuf types (package `inference`), the tonic client
/// (`grpc_inference_service_client`) and server (`grpc_inference_service_server`,
/// whose trait answers UNIMPLEMENTED for every rpc not overridden).
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic
)]
#[rustfmt::skip]
pub mod pb {
    tonic::include_proto!("inference");

    /// The encoded `FileDescriptorSet` of `grpc_service.proto` and
    /// `model_config.proto` (for gRPC reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/inference_descriptor.bin"));

    /// LRAI's own gRPC services (`proto/lrai_extensions.proto`), served on the same port:
    /// `lrai.v1.RepositoryExtension` (rollback).
    pub mod lrai {
        tonic::include_proto!("lrai.v1");
    }
}

#[cfg(test)]
mod tests {
    use super::pb;
    use prost::Message;

    /// Just enough of `google.protobuf.FileDescriptorSet` to read names back.
    #[derive(Clone, PartialEq, Message)]
    struct Fds {
        #[prost(message, repeated, tag = "1")]
        file: Vec<Fdp>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Fdp {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
        #[prost(string, optional, tag = "2")]
        package: Option<String>,
        #[prost(message, repeated, tag = "6")]
        service: Vec<Sdp>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Sdp {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        method: Vec<Mdp>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Mdp {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
    }

    #[test]
    fn descriptor_set_decodes_with_tritons_names() {
        let fds = Fds::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let names: Vec<_> = fds.file.iter().filter_map(|f| f.name.as_deref()).collect();
        assert!(names.contains(&"grpc_service.proto") && names.contains(&"model_config.proto"));
        let file = fds
            .file
            .iter()
            .find(|f| f.name.as_deref() == Some("grpc_service.proto"))
            .unwrap();
        assert_eq!(file.package.as_deref(), Some("inference"));
        let svc = &file.service[0];
        assert_eq!(svc.name.as_deref(), Some("GRPCInferenceService"));
        let rpcs: Vec<_> = svc
            .method
            .iter()
            .filter_map(|m| m.name.as_deref())
            .collect();
        for rpc in [
            "ServerLive",
            "ServerReady",
            "ModelReady",
            "ServerMetadata",
            "ModelMetadata",
            "ModelInfer",
            "ModelStreamInfer",
            "ModelConfig",
            "ModelStatistics",
            "RepositoryIndex",
            "RepositoryModelLoad",
            "RepositoryModelUnload",
            "SystemSharedMemoryStatus",
            "CudaSharedMemoryRegister",
            "TraceSetting",
            "LogSettings",
        ] {
            assert!(rpcs.contains(&rpc), "{rpc} missing from {rpcs:?}");
        }
    }

    #[test]
    fn infer_request_round_trips_through_protobuf() {
        let mut req = pb::ModelInferRequest {
            model_name: "m".into(),
            raw_input_contents: vec![bytes::Bytes::from_static(&[1, 2, 3, 4])],
            ..Default::default()
        };
        req.parameters.insert(
            "priority".into(),
            pb::InferParameter {
                parameter_choice: Some(pb::infer_parameter::ParameterChoice::Uint64Param(1)),
            },
        );
        let back = pb::ModelInferRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn stream_response_and_model_config_use_tritons_field_numbers() {
        // ModelStreamInferResponse{error_message = 1}: tag 1, wire type 2 -> 0x0a.
        let msg = pb::ModelStreamInferResponse {
            error_message: "e".into(),
            infer_response: None,
        };
        assert_eq!(msg.encode_to_vec(), vec![0x0a, 1, b'e']);
        // ModelConfig{backend = 17}: tag 17, wire type 2 -> varint 0x8a 0x01.
        let cfg = pb::ModelConfig {
            backend: "x".into(),
            ..Default::default()
        };
        assert_eq!(cfg.encode_to_vec(), vec![0x8a, 0x01, 1, b'x']);
        assert_eq!(pb::DataType::TypeBf16 as i32, 14);
        assert_eq!(pb::DataType::TypeString as i32, 13);
    }
}
