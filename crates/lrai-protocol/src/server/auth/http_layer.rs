//! The HTTP side: an axum middleware over the whole router (fallback included), so no
//! route is reachable around it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{
    ConnectInfo, FromRequestParts, MatchedPath, Path, Request as HttpRequest, State,
};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_LENGTH, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Auth, Denial, Listener, Request, routes};
use crate::kserve::ErrorBody;

/// Largest error body rewritten to hide paths; longer ones are replaced whole.
const REDACT_LIMIT: usize = 64 << 10;

/// `router` behind `auth` on `listener` (HTTP or metrics).
pub fn with_auth(router: Router, auth: Arc<Auth>, listener: Listener) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        (auth, listener),
        guard,
    ))
}

fn denied(d: &Denial) -> Response {
    let mut resp = (d.http_status(), axum::Json(ErrorBody::new(d.message()))).into_response();
    if *d == Denial::Unauthenticated {
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

async fn guard(
    State((auth, listener)): State<(Arc<Auth>, Listener)>,
    req: HttpRequest,
    next: Next,
) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let route = matched
        .as_deref()
        .and_then(|p| routes::lookup(listener, req.method().as_str(), p));
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (mut parts, body) = req.into_parts();
    let info = Request {
        listener,
        route,
        headers: &parts.headers,
        peer,
    };
    let grant = match auth.authorize(info).await {
        Ok(g) => g,
        Err(d) => return denied(&d),
    };
    if route.is_some_and(|r| r.action.is_model_scoped()) {
        // The same percent-decoding as the handlers' own `Path` extractor.
        let model = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
            .await
            .ok()
            .and_then(|p| p.0.get("model").cloned());
        let checked = match model {
            Some(m) => grant.check_model(&m),
            // Without a decodable name the handler refuses the request anyway.
            None if auth.tokens_on() => Err(Denial::Forbidden(
                "the model name in the path is not valid".into(),
            )),
            None => Ok(()),
        };
        if let Err(d) = checked {
            return denied(&d);
        }
    }
    let redact = auth.is_on() && !grant.caller.is_authenticated();
    parts.extensions.insert(grant.caller.clone());
    parts.extensions.insert(grant);
    let resp = next.run(HttpRequest::from_parts(parts, body)).await;
    if redact && (resp.status().is_client_error() || resp.status().is_server_error()) {
        return redact_body(resp).await;
    }
    resp
}

/// Rewrites an error body so it names no filesystem path (for callers without a token).
async fn redact_body(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, REDACT_LIMIT).await {
        Ok(b) => match serde_json::from_slice::<ErrorBody>(&b) {
            Ok(e) => serde_json::to_string(&ErrorBody::new(super::redact_paths(&e.error)))
                .unwrap_or_else(|_| r#"{"error":"request failed"}"#.to_string()),
            Err(_) => super::redact_paths(&String::from_utf8_lossy(&b)),
        },
        Err(_) => r#"{"error":"request failed"}"#.to_string(),
    };
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}
