//! KServe v2 over HTTP (axum): routes, and the adapters from HTTP to [`super::core`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lrai_monitor::{Metrics, Protocol};
use serde::Serialize;

use super::audit;
use super::core;
use super::error::{Result, ServerError};
use super::rollout;
use super::{Caller, ServerState};
use crate::kserve::{ErrorBody, RepositoryIndexRequest, RepositoryModelRequest};
use crate::{RawInputSpec, decode_http_json_and_binary, decode_raw_binary, encode_http_response};

type St = State<Arc<ServerState>>;
/// Who sent the request, when the authentication layer said.
type Who = Option<axum::Extension<Caller>>;

fn who(caller: &Who) -> Option<&Caller> {
    caller.as_ref().map(|c| &c.0)
}

const HEADER_LEN: &str = "inference-header-content-length";

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request rejected");
        }
        let retry = self.retryable();
        let mut resp = (status, axum::Json(ErrorBody::new(self.to_string()))).into_response();
        if retry {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

fn json<T: Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

/// The KServe v2 routes.
pub fn http_router(state: Arc<ServerState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
        .route("/v2/models/{model}/config", get(config))
        .route("/v2/models/{model}/versions/{version}/config", get(config_v))
        .route("/v2/models/{model}/stats", get(model_stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(model_stats_v))
        .route("/v2/repository/index", post(repo_index))
        .route("/v2/repository/models/{model}/load", post(repo_load))
        .route("/v2/repository/models/{model}/unload", post(repo_unload))
        .route("/v2/repository/models/{model}/rollback", post(repo_rollback))
        .route(
            "/v2/repository/models/{model}/rollout",
            post(rollout_start).get(rollout_status).delete(rollout_abort),
        )
        .fallback(|uri: axum::http::Uri| async move { ServerError::NoRoute(uri.path().to_string()).into_response() })
        // The limit is checked by the Bytes extractor; its rejection becomes our JSON error.
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            redact_answer,
        ))
        .with_state(state)
}

/// Largest answer [`redact_answer`] rewrites (errors and repository answers are small).
const REDACT_LIMIT: usize = 16 << 20;

/// Errors and repository answers with the repository's path taken out (see
/// [`super::redact`]); successful inference answers pass untouched.
async fn redact_answer(
    State(s): St,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let repository_route = req.uri().path().starts_with("/v2/repository/");
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error() || repository_route) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, REDACT_LIMIT).await else {
        let body = ErrorBody::new("the answer could not be read back; retry".to_string());
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    match s.redactor.apply(&text) {
        std::borrow::Cow::Borrowed(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
        std::borrow::Cow::Owned(redacted) => {
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(redacted))
        }
    }
}

/// The Prometheus endpoint.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                match metrics.render() {
                    Ok(text) => {
                        ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
                    }
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                }
            }
        }),
    )
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(s): St) -> StatusCode {
    if core::server_ready(&s) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn server_metadata(State(s): St) -> Response {
    json(&core::server_metadata(&s))
}

async fn model_metadata(State(s): St, Path(model): Path<String>) -> Result<Response> {
    Ok(json(&core::model_metadata(&s, &model, "")?))
}

async fn model_metadata_v(
    State(s): St,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    Ok(json(&core::model_metadata(&s, &model, &version)?))
}

fn ready_status(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn model_ready(State(s): St, Path(model): Path<String>) -> StatusCode {
    ready_status(core::model_ready(&s, &model, ""))
}

async fn model_ready_v(State(s): St, Path((model, version)): Path<(String, String)>) -> StatusCode {
    ready_status(core::model_ready(&s, &model, &version))
}

async fn config(State(s): St, Path(model): Path<String>) -> Result<Response> {
    Ok(json(&core::config_json(&s, &model, "")?))
}

async fn config_v(
    State(s): St,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    Ok(json(&core::config_json(&s, &model, &version)?))
}

async fn all_stats(State(s): St) -> Result<Response> {
    Ok(json(&core::statistics(&s, None, "")?))
}

async fn model_stats(State(s): St, Path(model): Path<String>) -> Result<Response> {
    Ok(json(&core::statistics(&s, Some(&model), "")?))
}

async fn model_stats_v(
    State(s): St,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    Ok(json(&core::statistics(&s, Some(&model), &version)?))
}

fn body_bytes(
    state: &ServerState,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Bytes> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(inner)
            if inner.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ServerError::BodyTooLarge {
                limit: state.config.max_body_bytes,
            }
        }
        other => ServerError::Body(other.body_text()),
    })
}

/// Optional JSON body (empty body = defaults).
fn parse_optional<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ServerError::BadJson(e.to_string()))
}

async fn repo_index(
    State(s): St,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body_bytes(&s, body)?;
    let req: RepositoryIndexRequest = parse_optional(&body)?;
    Ok(json(&core::index(&s, req.ready)))
}

async fn repo_load(
    State(s): St,
    caller: Who,
    Path(model): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body_bytes(&s, body)?;
    let req: RepositoryModelRequest = parse_optional(&body)?;
    if !req.parameters.is_empty() {
        let keys: Vec<&str> = req.parameters.keys().map(String::as_str).collect();
        return Err(ServerError::LoadParameters {
            keys: keys.join(", "),
        });
    }
    core::load(&s, &model, who(&caller)).await?;
    Ok(StatusCode::OK.into_response())
}

async fn repo_unload(
    State(s): St,
    caller: Who,
    Path(model): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body_bytes(&s, body)?;
    let _req: RepositoryModelRequest = parse_optional(&body)?;
    core::unload(&s, &model, who(&caller)).await?;
    Ok(StatusCode::OK.into_response())
}

/// LRAI's extension: returns unversioned traffic to the previous version.
async fn repo_rollback(
    State(s): St,
    caller: Who,
    Path(model): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body_bytes(&s, body)?;
    let _req: RepositoryModelRequest = parse_optional(&body)?;
    let done = core::rollback(&s, &model, who(&caller)).await?;
    Ok(json(&serde_json::json!({
        "model": model,
        "from_version": done.from.to_string(),
        "to_version": done.to.to_string(),
    })))
}

async fn rollout_start(
    State(s): St,
    caller: Who,
    Path(model): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body_bytes(&s, body)?;
    let started = rollout::start(&s, &model, &body).await;
    let action = lrai_audit::AdminAction::RolloutStart;
    Ok(json(
        &audit::admin(&s, who(&caller), action, &model, started).await?,
    ))
}

async fn rollout_status(State(s): St, Path(model): Path<String>) -> Result<Response> {
    Ok(json(&rollout::status(&s, &model)?))
}

async fn rollout_abort(State(s): St, caller: Who, Path(model): Path<String>) -> Result<Response> {
    let aborted = rollout::abort(&s, &model);
    let action = lrai_audit::AdminAction::RolloutAbort;
    Ok(json(
        &audit::admin(&s, who(&caller), action, &model, aborted).await?,
    ))
}

async fn infer(
    State(s): St,
    caller: Who,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    infer_common(&s, who(&caller), (model, String::new()), &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn infer_v(
    State(s): St,
    caller: Who,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    infer_common(&s, who(&caller), (model, version), &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn header_length(headers: &HeaderMap) -> Result<Option<usize>> {
    let Some(v) = headers.get(HEADER_LEN) else {
        return Ok(None);
    };
    let text = v.to_str().map_err(|_| ServerError::Header {
        name: "Inference-Header-Content-Length",
        reason: "not text".into(),
    })?;
    text.trim()
        .parse::<usize>()
        .map(Some)
        .map_err(|_| ServerError::Header {
            name: "Inference-Header-Content-Length",
            reason: format!("'{text}' is not a byte count"),
        })
}

/// Undoes `Content-Encoding: gzip | deflate` (tritonclient's request compression, which
/// Triton accepts), never inflating past the body limit.
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes> {
    use std::io::Read;
    let Some(encoding) = headers.get(CONTENT_ENCODING) else {
        return Ok(body);
    };
    let encoding = encoding.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let read = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(&body[..])
            .take(limit_u64)
            .read_to_end(&mut out),
        // HTTP's "deflate" is the zlib format (RFC 9110), which is what tritonclient sends.
        "deflate" => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit_u64)
            .read_to_end(&mut out),
        other => {
            return Err(ServerError::Header {
                name: "Content-Encoding",
                reason: format!("'{other}' is not supported; use gzip, deflate or none"),
            });
        }
    };
    read.map_err(|e| ServerError::Body(format!("cannot decompress the {encoding} body: {e}")))?;
    if out.len() > limit {
        return Err(ServerError::BodyTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

async fn infer_common(
    s: &ServerState,
    caller: Option<&Caller>,
    (model, version): (String, String),
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = decompress(headers, body_bytes(s, body)?, s.config.max_body_bytes)?;
    let header_len = header_length(headers)?;
    let mut req = if header_len == Some(0) {
        // Raw binary: the body is the one input's bytes; its shape comes from the model.
        let h = core::handle(s, &model, &version)?;
        let [input] = h.config().input.as_slice() else {
            return Err(ServerError::RawBinaryInputs {
                model: h.name().to_string(),
                inputs: h.config().input.len(),
            });
        };
        // Triton deduces the shape from the config's dims (and 1 for the batch dimension).
        let spec = RawInputSpec {
            model: h.name(),
            input: &input.name,
            dtype: input.data_type,
            dims: &input.dims,
            batching: h.max_batch_size() > 0,
        };
        decode_raw_binary(body, &spec)?
    } else {
        decode_http_json_and_binary(&body, header_len, &s.config.limits)?
    };
    req.model_name = model;
    req.model_version = version;
    let key = rollout::sticky_header(s, &req.model_name).and_then(|name| {
        headers
            .get(name.as_str())?
            .to_str()
            .ok()
            .map(str::to_string)
    });
    let (req, resp) = core::infer(s, req, Protocol::Http, key.as_deref(), caller).await?;
    let (bytes, json_len) = encode_http_response(&resp, &req)?;
    let mut out = bytes.into_response();
    let h = out.headers_mut();
    match json_len {
        Some(n) => {
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_LEN, HeaderValue::from(n));
        }
        None => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(out)
}
