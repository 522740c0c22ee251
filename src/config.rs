//! Command-line configuration shared by subcommands. Each struct is a clap `Args` that is
//! flattened into the subcommands that need it and converted into a library config; the
//! libraries themselves never read flags or environment variables.

use std::path::PathBuf;

use clap::Args;
use lrai_backend::{
    BackendChoice, BackendConfig, ExecutionProvider, OptimizationLevel, OrtCandidate,
    SessionOptions,
};

/// Which backend runs models and how sessions are built.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Backend: `tract` (embedded, pure Rust), `onnxruntime`, or `auto` (ONNX Runtime when
    /// its library is found, tract otherwise).
    #[arg(long, env = "LRAI_BACKEND", default_value = "auto")]
    pub backend: BackendChoice,

    /// Path to libonnxruntime.so (or a directory holding it). Without it LRAI tries
    /// ORT_DYLIB_PATH, then a pip-installed `onnxruntime` package found by `python3`.
    #[arg(long, env = "LRAI_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,

    /// Threads inside one operator; default: available cores.
    #[arg(long, env = "LRAI_INTRA_OP_THREADS")]
    pub intra_op_threads: Option<usize>,

    /// Threads running independent operators (ONNX Runtime); default 1.
    #[arg(long, env = "LRAI_INTER_OP_THREADS")]
    pub inter_op_threads: Option<usize>,

    /// ONNX Runtime graph optimisation: disabled, basic, extended or all.
    #[arg(long, env = "LRAI_GRAPH_OPTIMIZATION", default_value = "all")]
    pub graph_optimization: OptimizationLevel,

    /// ONNX Runtime execution providers in priority order: cpu, cuda[:N], tensorrt[:N].
    #[arg(
        long = "execution-provider",
        env = "LRAI_EXECUTION_PROVIDERS",
        value_delimiter = ','
    )]
    pub execution_providers: Vec<ExecutionProvider>,
}

impl BackendArgs {
    /// The backend library's config. `ORT_DYLIB_PATH` (ort's own variable) is read here,
    /// at the edge, after the flag and `LRAI_ORT_LIB`.
    pub fn backend_config(&self) -> BackendConfig {
        let mut ort_candidates = Vec::new();
        if let Some(p) = &self.ort_lib {
            ort_candidates.push(OrtCandidate {
                origin: "--ort-lib/LRAI_ORT_LIB".into(),
                path: p.clone(),
            });
        }
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            ort_candidates.push(OrtCandidate {
                origin: "ORT_DYLIB_PATH".into(),
                path: PathBuf::from(p),
            });
        }
        BackendConfig {
            choice: self.backend,
            ort_candidates,
            python: Some("python3".into()),
        }
    }

    /// Session options from the flags.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            intra_op_threads: self.intra_op_threads,
            inter_op_threads: self.inter_op_threads,
            optimization: self.graph_optimization,
            execution_providers: self.execution_providers.clone(),
            ..SessionOptions::default()
        }
    }
}

/// `lrai serve`: the server's configuration. Tests build it with [`ServeConfig::for_tests`].
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// The model repository: <model>/config.pbtxt and <model>/<version>/model.onnx
    /// (Triton's layout).
    #[arg(long, env = "LRAI_MODEL_REPOSITORY", default_value = "examples/models")]
    pub model_repository: PathBuf,

    /// Address the listeners bind to.
    #[arg(long, env = "LRAI_ADDRESS", default_value = "0.0.0.0")]
    pub address: std::net::IpAddr,

    /// HTTP port (KServe v2 REST); 0 picks a free port.
    #[arg(long, env = "LRAI_HTTP_PORT", default_value_t = 8000)]
    pub http_port: u16,

    /// gRPC port (inference.GRPCInferenceService); 0 picks a free port.
    #[arg(long, env = "LRAI_GRPC_PORT", default_value_t = 8001)]
    pub grpc_port: u16,

    /// Prometheus metrics port (/metrics); 0 picks a free port.
    #[arg(long, env = "LRAI_METRICS_PORT", default_value_t = 8002)]
    pub metrics_port: u16,

    /// none (Triton's default): load every model at start and ignore later changes; the
    /// load/unload/rollback API answers with Triton's error. poll: load every model, then
    /// rescan the repository every --repository-poll-secs and apply what changed
    /// (rollback allowed). explicit: load the --load-model models (all when none given);
    /// the API loads, unloads and rolls back. With poll or explicit, anyone who reaches
    /// the ports can change what serves: bind --address 127.0.0.1 or put an
    /// authenticating proxy in front.
    #[arg(long, env = "LRAI_MODEL_CONTROL_MODE", default_value = "none", value_parser = ["none", "poll", "explicit"], ignore_case = true)]
    pub model_control_mode: String,

    /// Seconds between repository rescans in --model-control-mode poll (Triton's flag).
    #[arg(long, env = "LRAI_REPOSITORY_POLL_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub repository_poll_secs: u64,

    /// Model to load at start (repeatable); default: every model in the repository.
    #[arg(long = "load-model", env = "LRAI_LOAD_MODELS", value_delimiter = ',')]
    pub load_models: Vec<String>,

    /// Model versions building at once (at start, through the API, or by the poller);
    /// a second load of one model waits for the first.
    #[arg(long, env = "LRAI_LOAD_PARALLELISM", default_value_t = 2)]
    pub load_parallelism: usize,

    /// max_batch_size given to batchable models that have no config.pbtxt (Triton's
    /// default-max-batch-size).
    #[arg(long, env = "LRAI_DEFAULT_MAX_BATCH_SIZE", default_value_t = 4)]
    pub default_max_batch_size: u32,

    /// Queue bound per model and priority level where config.pbtxt sets none.
    #[arg(long, env = "LRAI_MAX_QUEUE_SIZE", default_value_t = 1024)]
    pub max_queue_size: usize,

    /// Let ONNX Runtime's intra-op threads spin while idle (lower latency for one busy
    /// model, but idle spinning steals cores from everything else on the machine).
    #[arg(long, env = "LRAI_ORT_SPIN", default_value_t = false)]
    pub ort_spin: bool,

    /// Largest HTTP request body in bytes (and gRPC message).
    #[arg(long, env = "LRAI_HTTP_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    pub http_max_body_bytes: usize,

    /// Most elements in one request tensor.
    #[arg(long, env = "LRAI_MAX_TENSOR_ELEMENTS", default_value_t = 64 << 20)]
    pub max_tensor_elements: usize,

    /// Backend selection and session options.
    #[command(flatten)]
    pub backend: BackendArgs,

    /// TLS, connection and request caps, timeouts of the listeners.
    #[command(flatten)]
    pub listen: crate::listen::ListenArgs,
    /// Bearer tokens and Triton's restricted APIs.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// The tamper-evident audit log.
    #[command(flatten)]
    pub audit: crate::audit::AuditArgs,

    /// Backends registered by tests (e.g. a fake one), by the name config.pbtxt uses.
    #[arg(skip)]
    pub extra_backends: Vec<(String, std::sync::Arc<dyn lrai_backend::Backend>)>,
}

impl ServeConfig {
    /// Loopback, port 0 everywhere, tract, one intra-op thread, control mode `none` (the
    /// default): for tests.
    pub fn for_tests(repo: &std::path::Path) -> ServeConfig {
        ServeConfig {
            model_repository: repo.to_path_buf(),
            address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            http_port: 0,
            grpc_port: 0,
            metrics_port: 0,
            model_control_mode: "none".into(),
            repository_poll_secs: 15,
            load_models: Vec::new(),
            load_parallelism: 2,
            default_max_batch_size: 4,
            max_queue_size: 1024,
            ort_spin: false,
            http_max_body_bytes: 64 << 20,
            max_tensor_elements: 64 << 20,
            backend: BackendArgs {
                backend: BackendChoice::Only(lrai_backend::BackendKind::Tract),
                ort_lib: None,
                intra_op_threads: Some(1),
                inter_op_threads: None,
                graph_optimization: OptimizationLevel::All,
                execution_providers: Vec::new(),
            },
            listen: crate::listen::ListenArgs::default(),
            auth: AuthArgs::default(),
            audit: crate::audit::AuditArgs::default(),
            extra_backends: Vec::new(),
        }
    }
}

/// Who may call the server (docs/security.md, "Tokens").
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Token file: {"tokens": [{"name", "sha256", "roles", "models"}]} (make entries with
    /// `lrai token new`). With it every route of every listener needs
    /// `Authorization: Bearer <token>` with the right role (read, infer, admin); the file is
    /// re-read when it changes and on SIGHUP.
    #[arg(long, env = "LRAI_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// With --auth-file: leave server liveness and readiness (HTTP /v2/health/live and
    /// /v2/health/ready, gRPC ServerLive and ServerReady) open, for Kubernetes probes.
    #[arg(long, env = "LRAI_AUTH_ALLOW_HEALTH", default_value_t = false)]
    pub auth_allow_health: bool,

    /// Triton's restricted APIs over HTTP: API[,API...]:KEY=VALUE (repeatable); requests in
    /// those groups (health, metadata, inference, shared-memory, model-config,
    /// model-repository, statistics, trace, logging) must carry the header KEY: VALUE
    /// (several in the variable: separated by `;`).
    #[arg(
        long = "http-restricted-api",
        env = "LRAI_HTTP_RESTRICTED_API",
        value_delimiter = ';'
    )]
    pub http_restricted_api: Vec<String>,

    /// The same for gRPC (the metadata entry KEY: VALUE); Triton's older
    /// --grpc-restricted-protocol is accepted too.
    #[arg(
        long = "grpc-restricted-api",
        alias = "grpc-restricted-protocol",
        env = "LRAI_GRPC_RESTRICTED_API",
        value_delimiter = ';'
    )]
    pub grpc_restricted_api: Vec<String>,
}

impl AuthArgs {
    /// The protocol layer's settings.
    pub fn settings(&self) -> lrai_protocol::server::auth::AuthSettings {
        lrai_protocol::server::auth::AuthSettings {
            auth_file: self.auth_file.clone(),
            allow_health: self.auth_allow_health,
            http_restricted: self.http_restricted_api.clone(),
            grpc_restricted: self.grpc_restricted_api.clone(),
        }
    }
}
