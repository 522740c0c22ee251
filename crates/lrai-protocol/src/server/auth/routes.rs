//! The one table of what each route is: every HTTP route, every RPC of both gRPC services
//! and the metrics endpoint, with the role it needs and its Triton API group (for
//! `--http-restricted-api`). The auth layers look requests up here and refuse anything the
//! table doesn't list, so a route added to a router without a row here is unreachable.

use super::tokens::Role;

/// What a route does, which decides the role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Server liveness and readiness: `read`, or open with `--auth-allow-health`.
    Health,
    /// A server-wide read (metadata, all statistics, index, metrics): `read`.
    Read,
    /// A read about one model: `read` and a matching model pattern.
    ReadModel,
    /// Inference on one model: `infer` and a matching model pattern.
    Infer,
    /// Control of one model (load, unload, rollback, rollout): `admin` and a matching pattern.
    AdminModel,
    /// Server-wide control (shared memory, trace and log settings): `admin`.
    Admin,
}

impl Action {
    /// The role the action needs.
    pub fn role(self) -> Role {
        match self {
            Action::Health | Action::Read | Action::ReadModel => Role::Read,
            Action::Infer => Role::Infer,
            Action::AdminModel | Action::Admin => Role::Admin,
        }
    }

    /// True when the action names a model whose pattern must match.
    pub fn is_model_scoped(self) -> bool {
        matches!(self, Action::ReadModel | Action::Infer | Action::AdminModel)
    }
}

/// Triton's API groups (`--http-restricted-api` / `--grpc-restricted-api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// `health`.
    Health,
    /// `metadata`.
    Metadata,
    /// `inference`.
    Inference,
    /// `shared-memory`.
    SharedMemory,
    /// `model-config`.
    ModelConfig,
    /// `model-repository`.
    ModelRepository,
    /// `statistics`.
    Statistics,
    /// `trace`.
    Trace,
    /// `logging`.
    Logging,
}

impl Group {
    /// Every group, in Triton's order.
    pub const ALL: [Group; 9] = [
        Group::Health,
        Group::Metadata,
        Group::Inference,
        Group::SharedMemory,
        Group::ModelConfig,
        Group::ModelRepository,
        Group::Statistics,
        Group::Trace,
        Group::Logging,
    ];

    /// Triton's name for the group.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Health => "health",
            Group::Metadata => "metadata",
            Group::Inference => "inference",
            Group::SharedMemory => "shared-memory",
            Group::ModelConfig => "model-config",
            Group::ModelRepository => "model-repository",
            Group::Statistics => "statistics",
            Group::Trace => "trace",
            Group::Logging => "logging",
        }
    }
}

/// Which listener a route is served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The KServe v2 HTTP port.
    Http,
    /// The gRPC port (both services).
    Grpc,
    /// The Prometheus port.
    Metrics,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Where it is served.
    pub listener: Listener,
    /// HTTP method (`POST` for every gRPC call).
    pub method: &'static str,
    /// The axum path template, or the gRPC path `/package.Service/Method`.
    pub path: &'static str,
    /// What it does.
    pub action: Action,
    /// Its Triton API group (`None`: not restrictable, as Triton's metrics port).
    pub group: Option<Group>,
}

const fn http(method: &'static str, path: &'static str, action: Action, group: Group) -> Route {
    Route {
        listener: Listener::Http,
        method,
        path,
        action,
        group: Some(group),
    }
}

const fn grpc(path: &'static str, action: Action, group: Group) -> Route {
    Route {
        listener: Listener::Grpc,
        method: "POST",
        path,
        action,
        group: Some(group),
    }
}

use Action as A;
use Group as G;

/// Every route LRAI serves.
pub const ROUTES: &[Route] = &[
    http("GET", "/v2/health/live", A::Health, G::Health),
    http("GET", "/v2/health/ready", A::Health, G::Health),
    http("GET", "/v2", A::Read, G::Metadata),
    http("GET", "/v2/models/stats", A::Read, G::Statistics),
    http("GET", "/v2/models/{model}", A::ReadModel, G::Metadata),
    http(
        "GET",
        "/v2/models/{model}/versions/{version}",
        A::ReadModel,
        G::Metadata,
    ),
    http("GET", "/v2/models/{model}/ready", A::ReadModel, G::Health),
    http(
        "GET",
        "/v2/models/{model}/versions/{version}/ready",
        A::ReadModel,
        G::Health,
    ),
    http("POST", "/v2/models/{model}/infer", A::Infer, G::Inference),
    http(
        "POST",
        "/v2/models/{model}/versions/{version}/infer",
        A::Infer,
        G::Inference,
    ),
    http(
        "GET",
        "/v2/models/{model}/config",
        A::ReadModel,
        G::ModelConfig,
    ),
    http(
        "GET",
        "/v2/models/{model}/versions/{version}/config",
        A::ReadModel,
        G::ModelConfig,
    ),
    http(
        "GET",
        "/v2/models/{model}/stats",
        A::ReadModel,
        G::Statistics,
    ),
    http(
        "GET",
        "/v2/models/{model}/versions/{version}/stats",
        A::ReadModel,
        G::Statistics,
    ),
    http("POST", "/v2/repository/index", A::Read, G::ModelRepository),
    http(
        "POST",
        "/v2/repository/models/{model}/load",
        A::AdminModel,
        G::ModelRepository,
    ),
    http(
        "POST",
        "/v2/repository/models/{model}/unload",
        A::AdminModel,
        G::ModelRepository,
    ),
    http(
        "POST",
        "/v2/repository/models/{model}/rollback",
        A::AdminModel,
        G::ModelRepository,
    ),
    http(
        "POST",
        "/v2/repository/models/{model}/rollout",
        A::AdminModel,
        G::ModelRepository,
    ),
    http(
        "GET",
        "/v2/repository/models/{model}/rollout",
        A::AdminModel,
        G::ModelRepository,
    ),
    http(
        "DELETE",
        "/v2/repository/models/{model}/rollout",
        A::AdminModel,
        G::ModelRepository,
    ),
    grpc(
        "/inference.GRPCInferenceService/ServerLive",
        A::Health,
        G::Health,
    ),
    grpc(
        "/inference.GRPCInferenceService/ServerReady",
        A::Health,
        G::Health,
    ),
    grpc(
        "/inference.GRPCInferenceService/ModelReady",
        A::ReadModel,
        G::Health,
    ),
    grpc(
        "/inference.GRPCInferenceService/ServerMetadata",
        A::Read,
        G::Metadata,
    ),
    grpc(
        "/inference.GRPCInferenceService/ModelMetadata",
        A::ReadModel,
        G::Metadata,
    ),
    grpc(
        "/inference.GRPCInferenceService/ModelInfer",
        A::Infer,
        G::Inference,
    ),
    grpc(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        A::Infer,
        G::Inference,
    ),
    grpc(
        "/inference.GRPCInferenceService/ModelConfig",
        A::ReadModel,
        G::ModelConfig,
    ),
    // An empty model name asks for every model's statistics (server-wide read).
    grpc(
        "/inference.GRPCInferenceService/ModelStatistics",
        A::ReadModel,
        G::Statistics,
    ),
    grpc(
        "/inference.GRPCInferenceService/RepositoryIndex",
        A::Read,
        G::ModelRepository,
    ),
    grpc(
        "/inference.GRPCInferenceService/RepositoryModelLoad",
        A::AdminModel,
        G::ModelRepository,
    ),
    grpc(
        "/inference.GRPCInferenceService/RepositoryModelUnload",
        A::AdminModel,
        G::ModelRepository,
    ),
    // Not implemented (UNIMPLEMENTED), but registering shared memory is how Triton's
    // 2025 RCE chain began: admin only, should they ever be.
    grpc(
        "/inference.GRPCInferenceService/SystemSharedMemoryStatus",
        A::Admin,
        G::SharedMemory,
    ),
    grpc(
        "/inference.GRPCInferenceService/SystemSharedMemoryRegister",
        A::Admin,
        G::SharedMemory,
    ),
    grpc(
        "/inference.GRPCInferenceService/SystemSharedMemoryUnregister",
        A::Admin,
        G::SharedMemory,
    ),
    grpc(
        "/inference.GRPCInferenceService/CudaSharedMemoryStatus",
        A::Admin,
        G::SharedMemory,
    ),
    grpc(
        "/inference.GRPCInferenceService/CudaSharedMemoryRegister",
        A::Admin,
        G::SharedMemory,
    ),
    grpc(
        "/inference.GRPCInferenceService/CudaSharedMemoryUnregister",
        A::Admin,
        G::SharedMemory,
    ),
    grpc(
        "/inference.GRPCInferenceService/TraceSetting",
        A::Admin,
        G::Trace,
    ),
    grpc(
        "/inference.GRPCInferenceService/LogSettings",
        A::Admin,
        G::Logging,
    ),
    grpc(
        "/lrai.v1.RepositoryExtension/ModelRollback",
        A::AdminModel,
        G::ModelRepository,
    ),
    Route {
        listener: Listener::Metrics,
        method: "GET",
        path: "/metrics",
        action: A::Read,
        group: None,
    },
];

/// The row for a request on `listener`; HEAD is looked up as GET (axum answers HEAD on
/// GET routes).
pub fn lookup(listener: Listener, method: &str, path: &str) -> Option<&'static Route> {
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES
        .iter()
        .find(|r| r.listener == listener && r.method == method && r.path == path)
}
