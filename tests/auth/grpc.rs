//! The gRPC side of the route walk: one call per RPC of the table, by path.

use std::collections::BTreeSet;
use std::path::Path;

use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use lrai_protocol::pb::lrai::repository_extension_client::RepositoryExtensionClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::{Setup, Who};

async fn grpc_clients(
    s: &Setup,
) -> (
    GrpcInferenceServiceClient<Channel>,
    RepositoryExtensionClient<Channel>,
) {
    let ch = Channel::from_shared(format!("http://{}", s.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        GrpcInferenceServiceClient::new(ch.clone()),
        RepositoryExtensionClient::new(ch),
    )
}

pub(crate) fn req<T>(msg: T, bearer: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(b) = bearer {
        r.metadata_mut().insert("authorization", b.parse().unwrap());
    }
    r
}

fn digits(model: &str) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            contents: Some(pb::InferTensorContents {
                fp32_contents: vec![0.5; 64],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Calls the RPC at `path` (every row of the table has an arm here; a new RPC without one
/// fails the test).
pub(crate) async fn grpc_call(
    s: &Setup,
    path: &str,
    model: &str,
    who: Who,
) -> Result<(), tonic::Status> {
    let (mut c, mut x) = grpc_clients(s).await;
    let b = s.bearer(who);
    let b = b.as_deref();
    let name = model.to_string();
    let method = path.rsplit('/').next().unwrap();
    match method {
        "ServerLive" => c
            .server_live(req(pb::ServerLiveRequest {}, b))
            .await
            .map(drop),
        "ServerReady" => c
            .server_ready(req(pb::ServerReadyRequest {}, b))
            .await
            .map(drop),
        "ModelReady" => c
            .model_ready(req(
                pb::ModelReadyRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "ServerMetadata" => c
            .server_metadata(req(pb::ServerMetadataRequest {}, b))
            .await
            .map(drop),
        "ModelMetadata" => c
            .model_metadata(req(
                pb::ModelMetadataRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "ModelInfer" => c.model_infer(req(digits(model), b)).await.map(drop),
        "ModelStreamInfer" => {
            let stream = tokio_stream::iter(vec![digits(model)]);
            let mut out = c.model_stream_infer(req(stream, b)).await?.into_inner();
            let first = out.message().await?.unwrap();
            // A denial on a stream comes back per message, as Triton's stream errors do.
            if first.error_message.starts_with("token '") {
                return Err(tonic::Status::permission_denied(first.error_message));
            }
            assert!(first.error_message.is_empty(), "{}", first.error_message);
            Ok(())
        }
        "ModelConfig" => c
            .model_config(req(
                pb::ModelConfigRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "ModelStatistics" => c
            .model_statistics(req(
                pb::ModelStatisticsRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "RepositoryIndex" => c
            .repository_index(req(pb::RepositoryIndexRequest::default(), b))
            .await
            .map(drop),
        "RepositoryModelLoad" => c
            .repository_model_load(req(
                pb::RepositoryModelLoadRequest {
                    model_name: name,
                    ..Default::default()
                },
                b,
            ))
            .await
            .map(drop),
        "RepositoryModelUnload" => c
            .repository_model_unload(req(
                pb::RepositoryModelUnloadRequest {
                    model_name: name,
                    ..Default::default()
                },
                b,
            ))
            .await
            .map(drop),
        "SystemSharedMemoryStatus" => c
            .system_shared_memory_status(req(Default::default(), b))
            .await
            .map(drop),
        "SystemSharedMemoryRegister" => c
            .system_shared_memory_register(req(Default::default(), b))
            .await
            .map(drop),
        "SystemSharedMemoryUnregister" => c
            .system_shared_memory_unregister(req(Default::default(), b))
            .await
            .map(drop),
        "CudaSharedMemoryStatus" => c
            .cuda_shared_memory_status(req(Default::default(), b))
            .await
            .map(drop),
        "CudaSharedMemoryRegister" => c
            .cuda_shared_memory_register(req(Default::default(), b))
            .await
            .map(drop),
        "CudaSharedMemoryUnregister" => c
            .cuda_shared_memory_unregister(req(Default::default(), b))
            .await
            .map(drop),
        "TraceSetting" => c.trace_setting(req(Default::default(), b)).await.map(drop),
        "LogSettings" => c.log_settings(req(Default::default(), b)).await.map(drop),
        "ModelRollback" => x
            .model_rollback(req(pb::lrai::ModelRollbackRequest { model_name: name }, b))
            .await
            .map(drop),
        other => panic!(
            "the route table lists the RPC {path} ({other}) but this test has no call for it"
        ),
    }
}

/// `/package.Service/Method` of every RPC in the protos the server is built from.
pub(crate) fn declared_rpcs() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/lrai-protocol/proto");
    let mut out = BTreeSet::new();
    for file in ["grpc_service.proto", "lrai_extensions.proto"] {
        let text = fs_err::read_to_string(dir.join(file)).unwrap();
        let package = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("package "))
            .unwrap()
            .trim_end_matches(';');
        let mut service = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = Some(rest.split_whitespace().next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest
                    .split(|c: char| c == '(' || c.is_whitespace())
                    .next()
                    .unwrap();
                out.insert(format!("/{package}.{}/{name}", service.as_deref().unwrap()));
            }
        }
    }
    out
}

/// A unary call to any path (an empty message), for paths no generated client has.
pub(crate) async fn raw_grpc(s: &Setup, path: &str, bearer: Option<&str>) -> Code {
    let ch = Channel::from_shared(format!("http://{}", s.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<pb::ServerLiveRequest, pb::ServerLiveResponse>::default();
    let r = grpc
        .unary(
            req(pb::ServerLiveRequest {}, bearer),
            path.parse().unwrap(),
            codec,
        )
        .await;
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}
