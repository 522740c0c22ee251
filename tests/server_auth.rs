//! Scoped tokens on every route: the whole route table (HTTP, both gRPC services, metrics)
//! walked with no token, a `read`, an `infer` (on a matching and a non-matching model) and
//! an `admin` token, against the exact allow/deny matrix the table implies; routes the
//! table doesn't list are unreachable; Triton's restricted APIs; reload without restart.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

#[path = "auth/grpc.rs"]
mod grpc;
#[path = "auth/more.rs"]
mod more;

use std::collections::BTreeSet;

use grpc::{declared_rpcs, grpc_call, raw_grpc};
use lrai_protocol::server::auth::{Action, Listener, ROUTES, Role, Route, append_new_token};
use tonic::Code;

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
