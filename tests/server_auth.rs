//! Scoped tokens on every route: the whole route table (HTTP, both gRPC services, metrics)
//! walked with no token, a `read`, an `infer` (on a matching and a non-matching model) and
//! an `admin` token, against the exact allow/deny matrix the table implies; routes the
//! table doesn't list are unreachable; Triton's restricted APIs; reload without restart.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use lrai_protocol::pb::lrai::repository_extension_client::RepositoryExtensionClient;
use lrai_protocol::server::auth::{Action, Listener, ROUTES, Role, Route, append_new_token};
use tonic::Code;
use tonic::transport::Channel;

/// The test's tokens: name, roles, model patterns.
const TOKENS: &[(&str, &[Role], &[&str])] = &[
    ("reader", &[Role::Read], &["*"]),
    ("ci", &[Role::Infer], &["digits_*"]),
    ("ops", &[Role::Admin], &["*"]),
];

struct Setup {
    _repo: tempfile::TempDir,
    dir: tempfile::TempDir,
    server: lrai::RunningServer,
    /// (name, token) in TOKENS order.
    tokens: Vec<(String, String)>,
}

fn repo() -> tempfile::TempDir {
    let repo = common::standard_repo();
    // A second real model that the `ci` token's `digits_*` does not match.
    common::copy_example(repo.path(), "digits_mlp", "other_mlp", None);
    repo
}

async fn setup(tweak: impl FnOnce(&mut lrai::config::ServeConfig)) -> Setup {
    let repo = repo();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let mut tokens = Vec::new();
    for (name, roles, models) in TOKENS {
        let models: Vec<String> = models.iter().map(|m| (*m).to_string()).collect();
        let t = append_new_token(&file, name, roles, &models).unwrap();
        tokens.push(((*name).to_string(), t));
    }
    let server = common::start(repo.path(), |c| {
        c.auth.auth_file = Some(file.clone());
        tweak(c);
    })
    .await;
    Setup {
        _repo: repo,
        dir,
        server,
        tokens,
    }
}

/// Who asks: no token, or one of TOKENS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Token(usize),
}

impl Setup {
    fn bearer(&self, who: Who) -> Option<String> {
        match who {
            Who::Nobody => None,
            Who::Token(i) => Some(format!("Bearer {}", self.tokens[i].1)),
        }
    }
}

/// What the table says `who` may do on `route` for `model`.
fn expected(route: &Route, who: Who, model: &str, allow_health: bool) -> Expect {
    if allow_health && route.action == Action::Health {
        return Expect::Allowed;
    }
    let Who::Token(i) = who else {
        return Expect::Unauthenticated;
    };
    let (_, roles, models) = TOKENS[i];
    let role_ok = roles.contains(&route.action.role());
    let model_ok = !route.action.is_model_scoped()
        || models
            .iter()
            .any(|p| *p == "*" || (p.ends_with('*') && model.starts_with(&p[..p.len() - 1])));
    if role_ok && model_ok {
        Expect::Allowed
    } else {
        Expect::Forbidden
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    Unauthenticated,
    Forbidden,
}

fn infer_body() -> Vec<u8> {
    let data = vec!["0.5"; 64].join(",");
    format!(r#"{{"inputs":[{{"name":"input","datatype":"FP32","shape":[1,64],"data":[{data}]}}]}}"#)
        .into_bytes()
}

fn instantiate(path: &str, model: &str) -> String {
    path.replace("{model}", model).replace("{version}", "1")
}

async fn http_call(
    s: &Setup,
    listener: Listener,
    method: &str,
    path: &str,
    who: Who,
) -> common::Resp {
    let addr = match listener {
        Listener::Metrics => s.server.metrics_addr,
        _ => s.server.http_addr,
    };
    let mut headers = Vec::new();
    if let Some(b) = s.bearer(who) {
        headers.push(("authorization", b));
    }
    let body = if path.ends_with("/infer") {
        infer_body()
    } else {
        Vec::new()
    };
    common::http(method, &format!("http://{addr}{path}"), &headers, body).await
}

fn classify_http(r: &common::Resp) -> Expect {
    match r.status {
        401 => Expect::Unauthenticated,
        403 => Expect::Forbidden,
        _ => Expect::Allowed,
    }
}

fn whos(s: &Setup) -> Vec<Who> {
    std::iter::once(Who::Nobody)
        .chain((0..s.tokens.len()).map(Who::Token))
        .collect()
}

async fn walk_http(s: &Setup, allow_health: bool) -> usize {
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.listener != Listener::Grpc) {
        let models: &[&str] = if route.path.contains("{model}") {
            &["digits_mlp", "other_mlp"]
        } else {
            &["-"]
        };
        for model in models {
            let path = instantiate(route.path, model);
            for who in whos(s) {
                let r = http_call(s, route.listener, route.method, &path, who).await;
                let want = expected(route, who, model, allow_health);
                assert_eq!(
                    classify_http(&r),
                    want,
                    "{} {path} as {who:?}: {} {}",
                    route.method,
                    r.status,
                    r.text()
                );
                match want {
                    // Reached its handler, not the router's fallback or a 405.
                    Expect::Allowed => assert!(
                        r.status != 405 && !r.text().contains("not found: /"),
                        "{} {path} as {who:?} did not reach a handler: {} {}",
                        route.method,
                        r.status,
                        r.text()
                    ),
                    Expect::Unauthenticated => {
                        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
                        assert!(
                            r.json()["error"]
                                .as_str()
                                .unwrap()
                                .contains("Authorization: Bearer")
                        );
                    }
                    Expect::Forbidden => {
                        let msg = r.json()["error"].as_str().unwrap().to_string();
                        assert!(msg.starts_with("token '"), "{msg}");
                    }
                }
                checked += 1;
            }
        }
    }
    checked
}

async fn grpc_clients(
    s: &Setup,
) -> (
    GrpcInferenceServiceClient<Channel>,
    RepositoryExtensionClient<Channel>,
) {
    let ch = Channel::from_shared(format!("http://{}", s.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        GrpcInferenceServiceClient::new(ch.clone()),
        RepositoryExtensionClient::new(ch),
    )
}

fn req<T>(msg: T, bearer: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(b) = bearer {
        r.metadata_mut().insert("authorization", b.parse().unwrap());
    }
    r
}

fn digits(model: &str) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            contents: Some(pb::InferTensorContents {
                fp32_contents: vec![0.5; 64],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Calls the RPC at `path` (every row of the table has an arm here; a new RPC without one
/// fails the test).
async fn grpc_call(s: &Setup, path: &str, model: &str, who: Who) -> Result<(), tonic::Status> {
    let (mut c, mut x) = grpc_clients(s).await;
    let b = s.bearer(who);
    let b = b.as_deref();
    let name = model.to_string();
    let method = path.rsplit('/').next().unwrap();
    match method {
        "ServerLive" => c
            .server_live(req(pb::ServerLiveRequest {}, b))
            .await
            .map(drop),
        "ServerReady" => c
            .server_ready(req(pb::ServerReadyRequest {}, b))
            .await
            .map(drop),
        "ModelReady" => c
            .model_ready(req(
                pb::ModelReadyRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "ServerMetadata" => c
            .server_metadata(req(pb::ServerMetadataRequest {}, b))
            .await
            .map(drop),
        "ModelMetadata" => c
            .model_metadata(req(
                pb::ModelMetadataRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "ModelInfer" => c.model_infer(req(digits(model), b)).await.map(drop),
        "ModelStreamInfer" => {
            let stream = tokio_stream::iter(vec![digits(model)]);
            let mut out = c.model_stream_infer(req(stream, b)).await?.into_inner();
            let first = out.message().await?.unwrap();
            // A denial on a stream comes back per message, as Triton's stream errors do.
            if first.error_message.starts_with("token '") {
                return Err(tonic::Status::permission_denied(first.error_message));
            }
            assert!(first.error_message.is_empty(), "{}", first.error_message);
            Ok(())
        }
        "ModelConfig" => c
            .model_config(req(
                pb::ModelConfigRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "ModelStatistics" => c
            .model_statistics(req(
                pb::ModelStatisticsRequest {
                    name,
                    version: String::new(),
                },
                b,
            ))
            .await
            .map(drop),
        "RepositoryIndex" => c
            .repository_index(req(pb::RepositoryIndexRequest::default(), b))
            .await
            .map(drop),
        "RepositoryModelLoad" => c
            .repository_model_load(req(
                pb::RepositoryModelLoadRequest {
                    model_name: name,
                    ..Default::default()
                },
                b,
            ))
            .await
            .map(drop),
        "RepositoryModelUnload" => c
            .repository_model_unload(req(
                pb::RepositoryModelUnloadRequest {
                    model_name: name,
                    ..Default::default()
                },
                b,
            ))
            .await
            .map(drop),
        "SystemSharedMemoryStatus" => c
            .system_shared_memory_status(req(Default::default(), b))
            .await
            .map(drop),
        "SystemSharedMemoryRegister" => c
            .system_shared_memory_register(req(Default::default(), b))
            .await
            .map(drop),
        "SystemSharedMemoryUnregister" => c
            .system_shared_memory_unregister(req(Default::default(), b))
            .await
            .map(drop),
        "CudaSharedMemoryStatus" => c
            .cuda_shared_memory_status(req(Default::default(), b))
            .await
            .map(drop),
        "CudaSharedMemoryRegister" => c
            .cuda_shared_memory_register(req(Default::default(), b))
            .await
            .map(drop),
        "CudaSharedMemoryUnregister" => c
            .cuda_shared_memory_unregister(req(Default::default(), b))
            .await
            .map(drop),
        "TraceSetting" => c.trace_setting(req(Default::default(), b)).await.map(drop),
        "LogSettings" => c.log_settings(req(Default::default(), b)).await.map(drop),
        "ModelRollback" => x
            .model_rollback(req(pb::lrai::ModelRollbackRequest { model_name: name }, b))
            .await
            .map(drop),
        other => panic!(
            "the route table lists the RPC {path} ({other}) but this test has no call for it"
        ),
    }
}

fn classify_grpc(r: &Result<(), tonic::Status>) -> Expect {
    match r {
        Err(s) if s.code() == Code::Unauthenticated => Expect::Unauthenticated,
        Err(s) if s.code() == Code::PermissionDenied => Expect::Forbidden,
        _ => Expect::Allowed,
    }
}

async fn walk_grpc(s: &Setup, allow_health: bool) -> usize {
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.listener == Listener::Grpc) {
        let models: &[&str] = if route.action.is_model_scoped() {
            &["digits_mlp", "other_mlp"]
        } else {
            &["digits_mlp"]
        };
        for model in models {
            for who in whos(s) {
                let r = grpc_call(s, route.path, model, who).await;
                let want = expected(route, who, model, allow_health);
                assert_eq!(
                    classify_grpc(&r),
                    want,
                    "{} on {model} as {who:?}: {r:?}",
                    route.path
                );
                checked += 1;
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_the_table_s_matrix() {
    let s = setup(|_| {}).await;
    let http = walk_http(&s, false).await;
    let grpc = walk_grpc(&s, false).await;
    eprintln!("checked {http} HTTP/metrics and {grpc} gRPC (route, model, caller) cases");
    // The infer token really infers on its model (a 200 with outputs, not just "not denied").
    let r = http_call(
        &s,
        Listener::Http,
        "POST",
        "/v2/models/digits_mlp/infer",
        Who::Token(1),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outputs"][0]["shape"], serde_json::json!([1, 10]));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_can_stay_open_for_probes() {
    let s = setup(|c| c.auth.auth_allow_health = true).await;
    walk_http(&s, true).await;
    walk_grpc(&s, true).await;
    s.server.shutdown().await;
}

/// Nothing answers that the table doesn't list: every RPC the protos declare is in the
/// table (and nothing else), every other method on a listed path and every unknown path
/// is refused before any handler, with nothing internal in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_table_is_reachable() {
    let declared = declared_rpcs();
    let listed: BTreeSet<String> = ROUTES
        .iter()
        .filter(|r| r.listener == Listener::Grpc)
        .map(|r| r.path.to_string())
        .collect();
    assert_eq!(
        declared, listed,
        "the protos' RPCs and the route table's gRPC rows differ"
    );

    let s = setup(|_| {}).await;
    let admin = Who::Token(2);
    let mut paths: Vec<(Listener, String)> = ROUTES
        .iter()
        .filter(|r| r.listener != Listener::Grpc)
        .map(|r| (r.listener, instantiate(r.path, "digits_mlp")))
        .collect();
    for extra in [
        "/",
        "/v1/models/digits_mlp:predict",
        "/v2/models/digits_mlp/generate",
        "/v2/systemsharedmemory/status",
        "/v2/trace/setting",
        "/v2/logging",
        "/invocations",
        "/metrics/../v2",
        "/v2/repository/models/digits_mlp/load/x",
    ] {
        paths.push((Listener::Http, extra.to_string()));
    }
    paths.push((Listener::Metrics, "/v2/health/live".into()));
    for (listener, path) in &paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let listed = ROUTES.iter().any(|r| {
                r.listener == *listener
                    && r.method == method
                    && instantiate(r.path, "digits_mlp") == *path
            });
            if listed {
                continue;
            }
            let r = http_call(&s, *listener, method, path, Who::Nobody).await;
            assert_eq!(
                r.status,
                401,
                "{method} {path} without a token: {}",
                r.text()
            );
            let r = http_call(&s, *listener, method, path, admin).await;
            assert_eq!(r.status, 404, "{method} {path} as admin: {}", r.text());
            assert_eq!(r.json()["error"], "not found", "{method} {path}");
        }
    }
    for path in [
        "/inference.GRPCInferenceService/Bogus",
        "/grpc.health.v1.Health/Check",
        "/lrai.v1.RepositoryExtension/ModelDelete",
    ] {
        for (who, code) in [
            (Who::Nobody, Code::Unauthenticated),
            (admin, Code::Unimplemented),
        ] {
            let status = raw_grpc(&s, path, s.bearer(who).as_deref()).await;
            assert_eq!(status, code, "{path} as {who:?}");
        }
    }
    s.server.shutdown().await;

    // Without tokens the routers themselves hold exactly the table's methods: every
    // other method on a listed path is 405 or the fallback's 404.
    let repo = repo();
    let open = common::start(repo.path(), |_| {}).await;
    for route in ROUTES.iter().filter(|r| r.listener == Listener::Http) {
        let path = instantiate(route.path, "digits_mlp");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if ROUTES
                .iter()
                .any(|r| r.listener == Listener::Http && r.method == method && r.path == route.path)
            {
                continue;
            }
            let r = common::http(
                method,
                &format!("http://{}{path}", open.http_addr),
                &[],
                Vec::new(),
            )
            .await;
            assert!(
                r.status == 405 || r.text().contains("not found: /"),
                "{method} {path} answered {} {} without a table row",
                r.status,
                r.text()
            );
        }
    }
    open.shutdown().await;
}

/// `/package.Service/Method` of every RPC in the protos the server is built from.
fn declared_rpcs() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/lrai-protocol/proto");
    let mut out = BTreeSet::new();
    for file in ["grpc_service.proto", "lrai_extensions.proto"] {
        let text = fs_err::read_to_string(dir.join(file)).unwrap();
        let package = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("package "))
            .unwrap()
            .trim_end_matches(';');
        let mut service = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = Some(rest.split_whitespace().next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest
                    .split(|c: char| c == '(' || c.is_whitespace())
                    .next()
                    .unwrap();
                out.insert(format!("/{package}.{}/{name}", service.as_deref().unwrap()));
            }
        }
    }
    out
}

/// A unary call to any path (an empty message), for paths no generated client has.
async fn raw_grpc(s: &Setup, path: &str, bearer: Option<&str>) -> Code {
    let ch = Channel::from_shared(format!("http://{}", s.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<pb::ServerLiveRequest, pb::ServerLiveResponse>::default();
    let r = grpc
        .unary(
            req(pb::ServerLiveRequest {}, bearer),
            path.parse().unwrap(),
            codec,
        )
        .await;
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_refused_and_new_tokens_load_without_restart() {
    let s = setup(|_| {}).await;
    let url = format!("http://{}/v2", s.server.http_addr);
    for bad in [
        "Bearer lrai_not_a_token",
        "Bearer ",
        "Basic b3BzOnB3",
        "bearer x y",
    ] {
        let r = common::http(
            "GET",
            &url,
            &[("authorization", bad.to_string())],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, 401, "{bad}: {}", r.text());
    }
    // The scheme is case-insensitive.
    let lower = format!("bearer {}", s.tokens[0].1);
    assert_eq!(
        common::http("GET", &url, &[("authorization", lower)], Vec::new())
            .await
            .status,
        200
    );

    let file = s.dir.path().join("tokens.json");
    let fresh = append_new_token(&file, "late", &[Role::Read], &[]).unwrap();
    let works = |t: String| {
        let url = url.clone();
        async move {
            common::http(
                "GET",
                &url,
                &[("authorization", format!("Bearer {t}"))],
                Vec::new(),
            )
            .await
            .status
        }
    };
    let mut status = 0;
    // The file is re-read every 2 s: wait up to 30 s, polling.
    for _ in 0..300 {
        status = works(fresh.clone()).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "a token added to the file was not picked up");
    // A broken file keeps the old table (the server logs why).
    fs_err::write(&file, "{\"tokens\": [oops").unwrap();
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(works(fresh.clone()).await, 200);
    }
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritons_restricted_apis() {
    let repo = repo();
    let s = common::start(repo.path(), |c| {
        c.auth.http_restricted_api = vec!["model-repository,statistics:admin-key=s3cret".into()];
        c.auth.grpc_restricted_api = vec!["model-repository:admin-key=s3cret".into()];
        c.model_control_mode = "explicit".into();
    })
    .await;
    let base = format!("http://{}", s.http_addr);
    let key = || vec![("admin-key", "s3cret".to_string())];
    let r = common::http(
        "POST",
        &format!("{base}/v2/repository/index"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["error"],
        "This API is restricted, expecting header 'admin-key'"
    );
    let r = common::http(
        "POST",
        &format!("{base}/v2/repository/index"),
        &[("admin-key", "wrong".into())],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        common::http(
            "POST",
            &format!("{base}/v2/repository/index"),
            &key(),
            Vec::new()
        )
        .await
        .status,
        200
    );
    assert_eq!(
        common::get(&format!("{base}/v2/models/stats")).await.status,
        403
    );
    // Unrestricted groups stay open.
    let r = common::http(
        "POST",
        &format!("{base}/v2/models/digits_mlp/infer"),
        &[],
        infer_body(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // An error to a caller without a token names no filesystem path.
    let r = common::http(
        "POST",
        &format!("{base}/v2/repository/models/broken/load"),
        &key(),
        Vec::new(),
    )
    .await;
    assert!(r.status >= 400, "{}", r.text());
    let root = repo.path().to_string_lossy().to_string();
    assert!(
        !r.text().contains(&root),
        "a path in an error to an anonymous caller: {}",
        r.text()
    );

    let mut c = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr))
        .await
        .unwrap();
    let e = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        e.message(),
        "This API is restricted, expecting header 'admin-key'"
    );
    let mut r = tonic::Request::new(pb::RepositoryIndexRequest::default());
    r.metadata_mut()
        .insert("admin-key", "s3cret".parse().unwrap());
    assert!(c.repository_index(r).await.is_ok());
    assert!(
        c.model_statistics(pb::ModelStatisticsRequest::default())
            .await
            .is_ok()
    );
    let mut r = tonic::Request::new(pb::RepositoryModelLoadRequest {
        model_name: "broken".into(),
        ..Default::default()
    });
    r.metadata_mut()
        .insert("admin-key", "s3cret".parse().unwrap());
    let e = c.repository_model_load(r).await.unwrap_err();
    assert!(
        !e.message().contains(&root),
        "a path in a gRPC error to an anonymous caller: {}",
        e.message()
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_file_stops_the_start_with_a_clear_error() {
    let repo = repo();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    fs_err::write(
        &file,
        r#"{"tokens": [{"name": "x", "sha256": "abc", "roles": ["read"]}]}"#,
    )
    .unwrap();
    let mut config = lrai::config::ServeConfig::for_tests(repo.path());
    config.auth.auth_file = Some(file);
    let err = lrai::serve(config).await.unwrap_err().to_string();
    assert!(err.contains("'sha256' must be 64 hex digits"), "{err}");
}
