//! LRAI's listeners below the protocols: TLS and mutual TLS with rustls (ring provider,
//! TLS 1.2 and 1.3 only) and certificate reload without restart ([`tls`]); a global cap on
//! open connections, checked at accept ([`conn`]); a global cap on requests in flight and a
//! deadline for request bodies ([`limits`]); HTTP/1.1 serving with a header read timeout
//! ([`http`]); and the incoming stream the gRPC server reads ([`grpc_incoming`]).

pub mod conn;
pub mod http;
pub mod limits;
pub mod tls;

pub use conn::{AcceptOptions, Conn, ConnectionCap};
pub use http::{HttpOptions, serve_http};
pub use limits::{GrpcLimitsLayer, RequestLimits};
pub use tls::{Alpn, TlsError, TlsFiles, TlsReloader};

/// The accepted connections of a gRPC listener, as tonic's `serve_with_incoming` wants them.
/// Plain-TCP h2 has no header timeout of its own; the first-byte and handshake timeouts of
/// [`AcceptOptions`] and the body deadline of [`GrpcLimitsLayer`] bound a slow client.
pub fn grpc_incoming(
    listener: tokio::net::TcpListener,
    opts: AcceptOptions,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl tokio_stream::Stream<Item = Result<Conn, std::io::Error>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::ReceiverStream::new(conn::spawn_acceptor(listener, opts, stop)).map(Ok)
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
