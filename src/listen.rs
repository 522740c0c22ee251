//! The listeners' flags (TLS, connection and request caps, timeouts) and the step of
//! [`crate::serve`] that starts the HTTP, gRPC and metrics servers over `lrai-transport`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lrai_protocol::server::auth::{Auth, GrpcAuthLayer, Listener, with_auth};
use lrai_protocol::server::{
    ServerState, grpc_service, http_router, lrai_extension_service, metrics_router,
};
use lrai_transport::{
    AcceptOptions, Alpn, ConnectionCap, GrpcLimitsLayer, HttpOptions, RequestLimits, TlsFiles,
    TlsReloader,
};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// TLS and limits of the listeners.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// PEM certificate chain (leaf first): turns on TLS for the listeners in --tls-listeners.
    /// Re-read when it changes, without restart.
    #[arg(long, env = "LRAI_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "LRAI_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: clients must present a certificate that chains to it (mutual TLS).
    #[arg(long, env = "LRAI_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Listeners that use TLS when --tls-cert is given: any of http, grpc, metrics.
    #[arg(long, env = "LRAI_TLS_LISTENERS", value_delimiter = ',', default_value = "http,grpc,metrics", value_parser = ["http", "grpc", "metrics"])]
    pub tls_listeners: Vec<String>,

    /// Seconds between checks of the TLS files for a new certificate, key or client CA.
    #[arg(long, env = "LRAI_TLS_RELOAD_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_secs: u64,

    /// Open connections, all listeners together; more are closed at accept.
    #[arg(long, env = "LRAI_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Requests in flight (HTTP and gRPC together); more get 503 / RESOURCE_EXHAUSTED.
    /// Health probes are never refused.
    #[arg(long, env = "LRAI_MAX_INFLIGHT_REQUESTS", default_value_t = DEFAULT_MAX_INFLIGHT, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_inflight_requests: u64,

    /// Seconds a connection has for its TLS handshake (or first byte) and an HTTP request
    /// for its complete headers; slower clients are disconnected.
    #[arg(long, env = "LRAI_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,

    /// Seconds a request has, after its headers, to deliver its whole body (not applied to
    /// gRPC ModelStreamInfer streams).
    #[arg(long, env = "LRAI_BODY_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
}

const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
const DEFAULT_MAX_INFLIGHT: u64 = 4096;

impl Default for ListenArgs {
    /// The flags' defaults (tests start from these).
    fn default() -> Self {
        ListenArgs {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_listeners: vec!["http".into(), "grpc".into(), "metrics".into()],
            tls_reload_secs: 10,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_inflight_requests: DEFAULT_MAX_INFLIGHT,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
        }
    }
}

/// What the listeners share, checked before anything binds.
#[derive(Debug)]
pub(crate) struct Listeners {
    tls: Option<Arc<TlsReloader>>,
    tls_on: Vec<String>,
    reload_every: Duration,
    cap: Arc<ConnectionCap>,
    limits: RequestLimits,
    header_timeout: Duration,
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Listeners {
    /// Reads the TLS files (errors name the file and what to do) and sizes the caps.
    pub(crate) fn prepare(args: &ListenArgs) -> anyhow::Result<Listeners> {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsReloader::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
            })?),
            (None, None) if args.tls_client_ca.is_none() => None,
            _ => anyhow::bail!(
                "TLS needs both --tls-cert and --tls-key (and --tls-client-ca only with them)"
            ),
        };
        let max_inflight = to_usize(args.max_inflight_requests);
        Ok(Listeners {
            tls,
            tls_on: args.tls_listeners.clone(),
            reload_every: Duration::from_secs(args.tls_reload_secs),
            cap: ConnectionCap::new(to_usize(args.max_connections)),
            limits: RequestLimits {
                in_flight: Some(Arc::new(Semaphore::new(
                    max_inflight.min(Semaphore::MAX_PERMITS),
                ))),
                max_in_flight: max_inflight,
                body_timeout: Duration::from_secs(args.body_timeout_secs),
            },
            header_timeout: Duration::from_secs(args.header_timeout_secs),
        })
    }

    fn accept(&self, which: &str, alpn: Alpn) -> AcceptOptions {
        AcceptOptions {
            tls: self
                .tls
                .as_ref()
                .filter(|_| self.tls_on.iter().any(|l| l == which))
                .map(Arc::clone),
            alpn,
            cap: Arc::clone(&self.cap),
            handshake_timeout: self.header_timeout,
        }
    }

    /// Which listeners speak TLS, for the start-up log line.
    pub(crate) fn describe(&self) -> String {
        match &self.tls {
            None => "off".into(),
            Some(t) => format!(
                "{} ({})",
                self.tls_on.join(","),
                if t.mutual() {
                    "client certificates required"
                } else {
                    "no client certificates"
                }
            ),
        }
    }
}

/// The three bound listeners.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) http: TcpListener,
    pub(crate) grpc: TcpListener,
    pub(crate) metrics: TcpListener,
}

/// Starts serving on the bound listeners (and the TLS file watcher); the tasks end after
/// `stop` turns true and their connections have drained.
pub(crate) fn spawn_servers(
    l: &Listeners,
    bound: Bound,
    state: &Arc<ServerState>,
    metrics: lrai_monitor::Metrics,
    auth: &Arc<Auth>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let http = HttpOptions {
        accept: l.accept("http", Alpn::Http1),
        limits: l.limits.clone(),
        header_timeout: l.header_timeout,
    };
    let app = with_auth(
        http_router(Arc::clone(state)),
        Arc::clone(auth),
        Listener::Http,
    );
    tasks.push(tokio::spawn(lrai_transport::serve_http(
        bound.http,
        app,
        http,
        stop.clone(),
    )));
    let incoming =
        lrai_transport::grpc_incoming(bound.grpc, l.accept("grpc", Alpn::H2), stop.clone());
    let (svc, ext) = (
        grpc_service(Arc::clone(state)),
        lrai_extension_service(Arc::clone(state)),
    );
    let (layer, rx) = (GrpcLimitsLayer(l.limits.clone()), stop.clone());
    let auth_layer = GrpcAuthLayer::new(Arc::clone(auth));
    tasks.push(tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .layer(layer)
            .layer(auth_layer)
            .add_service(svc)
            .add_service(ext)
            .serve_with_incoming_shutdown(incoming, stopped(rx))
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server failed");
        }
    }));
    let prom = HttpOptions {
        accept: l.accept("metrics", Alpn::Http1),
        // Scrapes are cheap and must keep working when inference is saturated.
        limits: RequestLimits {
            in_flight: None,
            ..l.limits.clone()
        },
        header_timeout: l.header_timeout,
    };
    tasks.push(tokio::spawn(lrai_transport::serve_http(
        bound.metrics,
        with_auth(metrics_router(metrics), Arc::clone(auth), Listener::Metrics),
        prom,
        stop.clone(),
    )));
    if let Some(tls) = &l.tls {
        tokio::spawn(Arc::clone(tls).watch(l.reload_every, stop.clone()));
    }
    tasks
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
