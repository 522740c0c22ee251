//! `inference.GRPCInferenceService` (tonic): adapters from gRPC to [`super::core`]. RPCs
//! not written here answer UNIMPLEMENTED (shared memory, trace, logging), as tritonclient
//! expects of a server without those extensions.

use std::sync::Arc;

use lrai_monitor::Protocol;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::auth::check_grpc_model;
use super::core;
use super::error::ServerError;
use super::{Caller, ServerState};
use crate::pb;
use crate::pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use crate::{decode_grpc_request, encode_grpc_response};

/// The gRPC service, with message limits raised from tonic's 4 MB (tritonclient allows
/// INT32_MAX).
pub fn grpc_service(state: Arc<ServerState>) -> GrpcInferenceServiceServer<Service> {
    let limit = state.config.max_grpc_message_bytes;
    // tritonclient can compress requests (gzip, deflate) as Triton's server accepts them.
    // Responses stay uncompressed, as Triton's: every grpc-core client advertises gzip in
    // grpc-accept-encoding, and compressing each reply would cost more than it saves here.
    GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Deflate)
}

/// The service implementation.
#[derive(Debug, Clone)]
pub struct Service {
    state: Arc<ServerState>,
}

type Reply<T> = Result<Response<T>, Status>;

/// The status for an error, with the repository's path taken out of its message.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(|e| status(&s, e))`
fn status(state: &ServerState, e: ServerError) -> Status {
    if e.http_status().is_server_error() {
        tracing::debug!(error = %e, "grpc request failed");
    }
    let s = e.grpc_status();
    match state.redactor.apply(s.message()) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(message) => Status::new(s.code(), message),
    }
}

impl Service {
    async fn infer_one(
        &self,
        req: pb::ModelInferRequest,
        metadata: Option<&tonic::metadata::MetadataMap>,
        caller: Option<&Caller>,
    ) -> Result<pb::ModelInferResponse, ServerError> {
        let req = decode_grpc_request(req, &self.state.config.limits)?;
        // A rollout's sticky key travels as metadata under the same name as the header.
        let key = metadata.and_then(|m| {
            let name = super::rollout::sticky_header(&self.state, &req.model_name)?;
            m.get(name.as_str())?.to_str().ok().map(str::to_string)
        });
        let (req, resp) =
            core::infer(&self.state, req, Protocol::Grpc, key.as_deref(), caller).await?;
        Ok(encode_grpc_response(resp, &req)?)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Reply<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Reply<pb::ServerReadyResponse> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: core::server_ready(&self.state),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Reply<pb::ModelReadyResponse> {
        check_grpc_model(r.extensions(), &r.get_ref().name)?;
        let r = r.into_inner();
        Ok(Response::new(pb::ModelReadyResponse {
            ready: core::model_ready(&self.state, &r.name, &r.version),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Reply<pb::ServerMetadataResponse> {
        Ok(Response::new(core::server_metadata(&self.state).into()))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Reply<pb::ModelMetadataResponse> {
        check_grpc_model(r.extensions(), &r.get_ref().name)?;
        let r = r.into_inner();
        let m = core::model_metadata(&self.state, &r.name, &r.version)
            .map_err(|e| status(&self.state, e))?;
        Ok(Response::new(m.into()))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Reply<pb::ModelInferResponse> {
        let (metadata, extensions, msg) = r.into_parts();
        check_grpc_model(&extensions, &msg.model_name)?;
        self.infer_one(msg, Some(&metadata), extensions.get::<Caller>())
            .await
            .map(Response::new)
            .map_err(|e| status(&self.state, e))
    }

    async fn model_stream_infer(
        &self,
        r: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Reply<tonic::codegen::BoxStream<pb::ModelStreamInferResponse>> {
        let extensions = r.extensions().clone();
        let caller = r.extensions().get::<Caller>().cloned();
        let mut incoming = r.into_inner();
        let svc = self.clone();
        // Requests on one stream are answered in order, each with its own result; a bad
        // request answers with error_message and the stream goes on.
        let out = async_stream(move |tx| async move {
            while let Some(item) = incoming.next().await {
                let msg = match item {
                    // Each message names its model: the token is checked per message.
                    Ok(req) => match check_grpc_model(&extensions, &req.model_name) {
                        Err(denied) => pb::ModelStreamInferResponse {
                            error_message: denied.message().to_string(),
                            infer_response: None,
                        },
                        Ok(()) => match svc.infer_one(req, None, caller.as_ref()).await {
                            Ok(resp) => pb::ModelStreamInferResponse {
                                error_message: String::new(),
                                infer_response: Some(resp),
                            },
                            Err(e) => pb::ModelStreamInferResponse {
                                error_message: svc
                                    .state
                                    .redactor
                                    .apply(&e.to_string())
                                    .into_owned(),
                                infer_response: None,
                            },
                        },
                    },
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        break;
                    }
                };
                if tx.send(Ok(msg)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(out))
    }

    async fn model_config(
        &self,
        r: Request<pb::ModelConfigRequest>,
    ) -> Reply<pb::ModelConfigResponse> {
        check_grpc_model(r.extensions(), &r.get_ref().name)?;
        let r = r.into_inner();
        let h =
            core::handle(&self.state, &r.name, &r.version).map_err(|e| status(&self.state, e))?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(super::config_pb::to_pb(h.config())),
        }))
    }

    async fn model_statistics(
        &self,
        r: Request<pb::ModelStatisticsRequest>,
    ) -> Reply<pb::ModelStatisticsResponse> {
        // No name asks for every model: a server-wide read, which the layer checked.
        if !r.get_ref().name.is_empty() {
            check_grpc_model(r.extensions(), &r.get_ref().name)?;
        }
        let r = r.into_inner();
        let name = Some(r.name.as_str()).filter(|n| !n.is_empty());
        let s =
            core::statistics(&self.state, name, &r.version).map_err(|e| status(&self.state, e))?;
        Ok(Response::new(s.into()))
    }

    async fn repository_index(
        &self,
        r: Request<pb::RepositoryIndexRequest>,
    ) -> Reply<pb::RepositoryIndexResponse> {
        let r = r.into_inner();
        let models = core::index(&self.state, r.ready)
            .into_iter()
            .map(|mut m| {
                m.reason = self.state.redactor.apply(&m.reason).into_owned();
                m.into()
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        r: Request<pb::RepositoryModelLoadRequest>,
    ) -> Reply<pb::RepositoryModelLoadResponse> {
        check_grpc_model(r.extensions(), &r.get_ref().model_name)?;
        let caller = r.extensions().get::<Caller>().cloned();
        let r = r.into_inner();
        if !r.parameters.is_empty() {
            let keys: Vec<&str> = r.parameters.keys().map(String::as_str).collect();
            return Err(status(
                &self.state,
                ServerError::LoadParameters {
                    keys: keys.join(", "),
                },
            ));
        }
        core::load(&self.state, &r.model_name, caller.as_ref())
            .await
            .map_err(|e| status(&self.state, e))?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Reply<pb::RepositoryModelUnloadResponse> {
        check_grpc_model(r.extensions(), &r.get_ref().model_name)?;
        let caller = r.extensions().get::<Caller>().cloned();
        let r = r.into_inner();
        core::unload(&self.state, &r.model_name, caller.as_ref())
            .await
            .map_err(|e| status(&self.state, e))?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

/// LRAI's own repository operations (`lrai.v1.RepositoryExtension`), on the gRPC port
/// beside the inference service.
pub fn lrai_extension_service(
    state: Arc<ServerState>,
) -> pb::lrai::repository_extension_server::RepositoryExtensionServer<Extension> {
    pb::lrai::repository_extension_server::RepositoryExtensionServer::new(Extension { state })
}

/// The `lrai.v1.RepositoryExtension` implementation.
#[derive(Debug, Clone)]
pub struct Extension {
    state: Arc<ServerState>,
}

#[tonic::async_trait]
impl pb::lrai::repository_extension_server::RepositoryExtension for Extension {
    async fn model_rollback(
        &self,
        r: Request<pb::lrai::ModelRollbackRequest>,
    ) -> Reply<pb::lrai::ModelRollbackResponse> {
        check_grpc_model(r.extensions(), &r.get_ref().model_name)?;
        let caller = r.extensions().get::<Caller>().cloned();
        let r = r.into_inner();
        let done = core::rollback(&self.state, &r.model_name, caller.as_ref())
            .await
            .map_err(|e| status(&self.state, e))?;
        Ok(Response::new(pb::lrai::ModelRollbackResponse {
            model_name: r.model_name,
            from_version: done.from.to_string(),
            to_version: done.to.to_string(),
        }))
    }
}

/// A response stream fed by a task through a bounded channel.
fn async_stream<F, Fut>(body: F) -> tonic::codegen::BoxStream<pb::ModelStreamInferResponse>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::ModelStreamInferResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
