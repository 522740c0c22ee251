//! The `lrai` package: the composition root under the `lrai` binary. [`serve`] turns a
//! [`config::ServeConfig`] into the layers' own config structs and wires them together:
//! backends → repository (which loads models onto exec instances and schedulers) →
//! HTTP, gRPC and metrics listeners. Logic worth testing lives in the crates
//! (`lrai-core`, `lrai-backend`, `lrai-exec`, `lrai-sched`, `lrai-repo`,
//! `lrai-protocol`, `lrai-monitor`), not here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lrai_backend::{BackendChoice, BackendKind, create_kind};
use lrai_monitor::Metrics;
use lrai_protocol::server::auth::{Auth, spawn_reloader};
use lrai_protocol::server::{FrontConfig, ServerState};
use lrai_repo::{Backends, ControlMode, LoadSettings, RepoConfig, Repository};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod audit;
pub mod config;
mod listen;
mod quantize_at_load;

use config::ServeConfig;

/// A server that is listening; models load in the background.
#[derive(Debug)]
pub struct RunningServer {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound metrics address.
    pub metrics_addr: SocketAddr,
    state: Arc<ServerState>,
    repo: Arc<Repository>,
    stop: watch::Sender<bool>,
    loaded: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Waits until the startup models have been loaded (or failed to).
    pub async fn wait_loaded(&self) {
        let mut rx = self.loaded.clone();
        // Err only if the loader task vanished, which also means it is done.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// The model repository.
    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests and queued work,
    /// stop the model instances.
    pub async fn shutdown(self) {
        self.state.begin_shutdown();
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.rollouts.shutdown().await;
        self.repo.shutdown().await;
        audit::close(&self.state).await;
        tracing::info!("shutdown complete");
    }
}

/// Builds the backends: the default one (`--backend`), plus every other backend that is
/// available, so a model's `lrai.backend` parameter can pick it.
fn build_backends(config: &ServeConfig) -> anyhow::Result<Backends> {
    let bc = config.backend.backend_config();
    let default = lrai_backend::create_backend(&bc).context("cannot create the default backend")?;
    let mut backends = Backends::new(Arc::clone(&default));
    for kind in [BackendKind::Tract, BackendKind::OnnxRuntime] {
        if kind == default.kind() {
            continue;
        }
        // Locating ONNX Runtime asks python3: only try when the user allowed it.
        if kind == BackendKind::OnnxRuntime
            && bc.choice == BackendChoice::Only(BackendKind::Tract)
            && bc.ort_candidates.is_empty()
        {
            backends = backends.without(
                kind.as_str(),
                "the server runs with --backend tract; pass --ort-lib to also offer onnxruntime",
            );
            continue;
        }
        match create_kind(kind, &bc) {
            Ok(b) => backends = backends.with(kind.as_str(), b),
            Err(e) => backends = backends.without(kind.as_str(), &e.to_string()),
        }
    }
    for (name, b) in &config.extra_backends {
        backends = backends.with(name, Arc::clone(b));
    }
    Ok(backends)
}

/// Says the control mode at start, and warns when it lets anyone change what serves.
fn log_control_mode(config: &ServeConfig, control: ControlMode, auth: &Auth) {
    match control {
        ControlMode::None => tracing::info!(
            model_control_mode = "none",
            "model control: every model loads at start; the load/unload/rollback API is off \
             (pass --model-control-mode explicit or poll to change models while serving)"
        ),
        ControlMode::Poll => tracing::info!(
            model_control_mode = "poll",
            repository_poll_secs = config.repository_poll_secs,
            "model control: the repository is rescanned and changes are applied"
        ),
        ControlMode::Explicit => tracing::info!(
            model_control_mode = "explicit",
            "model control: the repository API loads, unloads and rolls back models"
        ),
    }
    if control != ControlMode::None && !auth.guards_admin() {
        tracing::warn!(
            model_control_mode = control.as_str(),
            address = %config.address,
            "model control is on and no authentication is configured: anyone who reaches \
             the HTTP or gRPC port can load, unload and roll back models; pass --auth-file (see `lrai token \
             new`), bind --address 127.0.0.1, or put an authenticating proxy in front"
        );
    }
}

/// Reads the token file and restricted-API flags, and says at start what protects the
/// server.
fn start_auth(config: &ServeConfig) -> anyhow::Result<Arc<Auth>> {
    let auth = Auth::new(&config.auth.settings()).map_err(anyhow::Error::msg)?;
    if let Some(file) = &config.auth.auth_file {
        tracing::info!(
            auth_file = %file.display(),
            tokens = auth.token_count(),
            health_open = auth.allows_health(),
            "authentication is on: every request needs a bearer token with the right role"
        );
    }
    for (flag, specs) in [
        ("--http-restricted-api", &config.auth.http_restricted_api),
        ("--grpc-restricted-api", &config.auth.grpc_restricted_api),
    ] {
        for spec in specs {
            let api = spec.split(':').next().unwrap_or_default();
            tracing::info!(flag, api, "restricted API: requests need its header");
        }
    }
    Ok(auth)
}

async fn bind(config: &ServeConfig, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(config.address, port);
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the {what} listener to {addr}; is another server using it? choose another with --{what}-port"))
}

/// Starts the server: binds the three listeners, starts serving, and loads the startup
/// models in the background (readiness turns true when they are loaded).
///
/// # Errors
/// When a listener can't bind, the repository can't be opened, or no backend can be made.
pub async fn serve(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let metrics = Metrics::new().context("cannot create the metrics registry")?;
    let backends = build_backends(&config)?;
    let control = ControlMode::parse(&config.model_control_mode).with_context(|| {
        format!(
            "--model-control-mode '{}': expected none, poll or explicit",
            config.model_control_mode
        )
    })?;
    if control != ControlMode::Explicit && !config.load_models.is_empty() {
        anyhow::bail!(
            "--load-model {}: only --model-control-mode explicit loads a subset of the \
             repository (in mode {} every model loads); pass --model-control-mode explicit",
            config.load_models.join(","),
            control.as_str()
        );
    }
    let auth = start_auth(&config)?;
    log_control_mode(&config, control, &auth);
    let repo_config = RepoConfig {
        root: config.model_repository.clone(),
        control,
        startup_models: config.load_models.clone(),
        load_parallelism: config.load_parallelism,
        poll_interval: Duration::from_secs(config.repository_poll_secs.max(1)),
        load: LoadSettings {
            session: lrai_backend::SessionOptions {
                spin: Some(config.ort_spin),
                ..config.backend.session_options()
            },
            default_max_batch_size: config.default_max_batch_size,
            default_max_queue_size: config.max_queue_size,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            prepare: Some(Arc::new(quantize_at_load::QuantizeAtLoad)),
        },
    };
    let repo = Arc::new(Repository::open(repo_config, backends, metrics.clone())?);
    let front = FrontConfig {
        max_body_bytes: config.http_max_body_bytes,
        max_grpc_message_bytes: config.http_max_body_bytes,
        limits: lrai_protocol::Limits {
            max_elements: config.max_tensor_elements,
        },
        ..FrontConfig::default()
    };
    let state = ServerState::new(Arc::clone(&repo), metrics.clone(), front);
    let listeners = listen::Listeners::prepare(&config.listen)?;
    audit::open(&config.audit, &state)?;

    let http = bind(&config, config.http_port, "http").await?;
    let grpc = bind(&config, config.grpc_port, "grpc").await?;
    let prom = bind(&config, config.metrics_port, "metrics").await?;
    let (http_addr, grpc_addr, metrics_addr) =
        (http.local_addr()?, grpc.local_addr()?, prom.local_addr()?);
    let (stop, stop_rx) = watch::channel(false);

    let poll_stop = stop_rx.clone();
    let bound = listen::Bound {
        http,
        grpc,
        metrics: prom,
    };
    let mut tasks = listen::spawn_servers(&listeners, bound, &state, metrics, &auth, &stop_rx);
    tasks.extend(spawn_reloader(
        Arc::clone(&auth),
        Arc::clone(&state),
        stop_rx,
    ));

    let (loaded_tx, loaded) = watch::channel(false);
    let loader_repo = Arc::clone(&repo);
    let rollouts = Arc::clone(&state.rollouts);
    tokio::spawn(async move {
        if let Err(e) = loader_repo.load_startup().await {
            tracing::error!(error = %e, "cannot load the model repository");
        }
        // Rollouts that config.pbtxt asks for (parameter lrai.rollout) start once the
        // baselines serve.
        for name in loader_repo.names() {
            rollouts.start_from_config(&name).await;
        }
        let ready = loader_repo.index(true).len();
        tracing::info!(models_ready = ready, "startup models loaded");
        let _ = loaded_tx.send(true);
        if control == ControlMode::Poll {
            let every = loader_repo.poll_interval();
            let _ = loader_repo.spawn_poller(every, poll_stop).await;
        }
    });
    tracing::info!(http = %http_addr, grpc = %grpc_addr, metrics = %metrics_addr, tls = %listeners.describe(), repository = %config.model_repository.display(), "listening");
    Ok(RunningServer {
        http_addr,
        grpc_addr,
        metrics_addr,
        state,
        repo,
        stop,
        loaded,
        tasks,
    })
}
