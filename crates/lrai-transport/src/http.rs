//! Serving an axum router over accepted [`Conn`]s with HTTP/1.1: hyper's header read
//! timeout (headers that never end close the connection), the request limits, the peer's
//! address as axum's `ConnectInfo`, and graceful shutdown that lets in-flight requests finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

use crate::conn::{AcceptOptions, Conn, spawn_acceptor};
use crate::limits::{Admission, DeadlineBody, Either, Guarded, RequestLimits, busy_http};

/// How an HTTP listener serves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Accepting: TLS, the connection cap, the handshake timeout.
    pub accept: AcceptOptions,
    /// The request limits.
    pub limits: RequestLimits,
    /// Time a client has to send a request's complete headers.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` turns true, then waits for open connections to
/// finish their requests.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    opts: HttpOptions,
    stop: watch::Receiver<bool>,
) {
    let mut conns = spawn_acceptor(listener, opts.accept.clone(), stop.clone());
    // Every connection task holds a receiver; `closed()` resolves when the last one ends.
    let (all_closed, close_rx) = watch::channel(());
    while let Some(conn) = conns.recv().await {
        let (app, opts, stop, held) = (app.clone(), opts.clone(), stop.clone(), close_rx.clone());
        tokio::spawn(async move {
            serve_conn(conn, app, &opts, stop).await;
            drop(held);
        });
    }
    drop(close_rx);
    all_closed.closed().await;
}

fn handle(
    app: &Router,
    limits: &RequestLimits,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<axum::body::Body>, Infallible>> + use<> {
    let slot = match limits.admit(req.uri().path()) {
        Admission::Admitted(slot) => slot,
        Admission::Busy => {
            return Either::Right {
                f: std::future::ready(Ok(busy_http(limits))),
            };
        }
    };
    let timeout = limits.body_timeout;
    let mut req = req.map(|b| axum::body::Body::new(DeadlineBody::new(b, timeout)));
    req.extensions_mut().insert(ConnectInfo(peer));
    // Router is always ready; `call` on a clone is what axum::serve does too.
    let fut = app.clone().call(req);
    Either::Left {
        f: Guarded::new(fut, slot),
    }
}

async fn serve_conn(conn: Conn, app: Router, opts: &HttpOptions, mut stop: watch::Receiver<bool>) {
    let peer = conn.peer();
    let limits = opts.limits.clone();
    let svc = hyper::service::service_fn(move |req| handle(&app, &limits, peer, req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout);
    let served = builder.serve_connection(TokioIo::new(conn), svc);
    tokio::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        () = crate::stopped(&mut stop) => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and bad requests from one peer: its business, not an error of ours.
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}
