//! The servers (feature `server`): KServe v2 over HTTP (axum) and gRPC (tonic), and the
//! Prometheus endpoint. Both protocols are thin adapters over [`core`]: decode with the
//! codecs of [`crate::infer`], call the shared operation, encode. Errors are mapped to
//! statuses in exactly one place, [`error`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use lrai_monitor::Metrics;
use lrai_repo::Repository;
use lrai_repo::rollout::Rollouts;

use crate::Limits;

mod audit;
pub mod auth;
mod caller;
mod config_pb;
pub(crate) mod core;
pub mod error;
mod grpc;
mod http;
pub mod redact;
mod rollout;

pub use caller::Caller;
pub use error::ServerError;
pub use grpc::{Extension, grpc_service, lrai_extension_service};
pub use http::{http_router, metrics_router};

/// Front-end settings.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// Name in server metadata.
    pub server_name: String,
    /// Version in server metadata.
    pub server_version: String,
    /// Largest HTTP request body, bytes.
    pub max_body_bytes: usize,
    /// Largest gRPC message, bytes.
    pub max_grpc_message_bytes: usize,
    /// Per-tensor element limit applied while decoding.
    pub limits: Limits,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            server_name: "lrai".into(),
            server_version: env!("CARGO_PKG_VERSION").into(),
            max_body_bytes: 64 << 20,
            max_grpc_message_bytes: 64 << 20,
            limits: Limits::default(),
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct ServerState {
    /// The model repository.
    pub repo: Arc<Repository>,
    /// The metric registry (for `/metrics`).
    pub metrics: Metrics,
    /// Front-end settings.
    pub config: FrontConfig,
    /// Canary, A/B and shadow rollouts.
    pub rollouts: Arc<Rollouts>,
    /// Takes the repository's path out of what callers read.
    pub redactor: redact::Redactor,
    shutting_down: AtomicBool,
    audit: OnceLock<Arc<lrai_audit::AuditLog>>,
}

impl ServerState {
    /// State over a repository.
    pub fn new(repo: Arc<Repository>, metrics: Metrics, config: FrontConfig) -> Arc<ServerState> {
        Arc::new(ServerState {
            rollouts: Rollouts::new(Arc::clone(&repo), metrics.clone()),
            redactor: redact::Redactor::new(repo.root()),
            repo,
            metrics,
            config,
            shutting_down: AtomicBool::new(false),
            audit: OnceLock::new(),
        })
    }

    /// Marks the server as draining: readiness turns false, new inferences get 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Records admin actions (and inferences, if it says so) in `log` from now on; a
    /// second call is ignored.
    pub fn set_audit(&self, log: Arc<lrai_audit::AuditLog>) {
        let _ = self.audit.set(log);
    }

    /// The audit log, when the server keeps one.
    pub fn audit(&self) -> Option<&Arc<lrai_audit::AuditLog>> {
        self.audit.get()
    }

    /// True once [`ServerState::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
