//! The gRPC side: a tower layer over tonic's router (both services and its fallback), and
//! the model-name check that model-scoped RPCs call once they have decoded their message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request as HttpRequest, Response as HttpResponse};
use tonic::transport::server::TcpConnectInfo;

use super::{Auth, Grant, Listener, Request, routes};

/// Wraps a gRPC router with [`GrpcAuth`].
#[derive(Debug, Clone)]
pub struct GrpcAuthLayer {
    auth: Arc<Auth>,
}

impl GrpcAuthLayer {
    /// A layer over `auth`.
    pub fn new(auth: Arc<Auth>) -> GrpcAuthLayer {
        GrpcAuthLayer { auth }
    }
}

impl<S> tower_layer::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// Admits or refuses each call before tonic routes it.
#[derive(Debug, Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    auth: Arc<Auth>,
}

type BoxFut<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower_service::Service<HttpRequest<B>> for GrpcAuth<S>
where
    S: tower_service::Service<HttpRequest<B>, Response = HttpResponse<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = HttpResponse<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFut<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest<B>) -> Self::Future {
        // The clone that was made ready serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            let route = routes::lookup(Listener::Grpc, req.method().as_str(), req.uri().path());
            let peer = req
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr);
            let info = Request {
                listener: Listener::Grpc,
                route,
                headers: req.headers(),
                peer,
            };
            let grant = match auth.authorize(info).await {
                Ok(g) => g,
                Err(d) => return Ok(d.grpc_status().into_http()),
            };
            let redact = auth.is_on() && !grant.caller.is_authenticated();
            req.extensions_mut().insert(grant.caller.clone());
            req.extensions_mut().insert(grant);
            let mut resp = inner.call(req).await?;
            if redact {
                redact_grpc_message(&mut resp);
            }
            Ok(resp)
        })
    }
}

/// Hides paths in a trailers-only error's `grpc-message` (how tonic answers a failed
/// unary call).
fn redact_grpc_message(resp: &mut HttpResponse<tonic::body::Body>) {
    let Some(msg) = resp.headers().get("grpc-message") else {
        return;
    };
    let text = percent_decode(msg.as_bytes());
    let redacted = super::redact_paths(&text);
    if redacted != text
        && let Ok(v) = HeaderValue::from_str(&percent_encode(&redacted))
    {
        resp.headers_mut().insert("grpc-message", v);
    }
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC's grpc-message encoding: printable ASCII but `%` as is, everything else `%XX`.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write;
    s.bytes()
        .fold(String::with_capacity(s.len()), |mut out, b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
            out
        })
}

/// For model-scoped RPCs, once the message names the model: refuses a model the caller's
/// token doesn't cover. Without the auth layer (no grant) nothing is checked.
///
/// # Errors
/// PERMISSION_DENIED naming the token and the model.
#[allow(clippy::result_large_err)] // tonic's Status is what the RPCs return
pub fn check_grpc_model(extensions: &tonic::Extensions, model: &str) -> Result<(), tonic::Status> {
    match extensions.get::<Grant>() {
        Some(g) => g.check_model(model).map_err(|d| d.grpc_status()),
        None => Ok(()),
    }
}
