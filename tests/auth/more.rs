//! Triton's restricted APIs, path redaction for callers without a token, wrong tokens,
//! reload without restart, and a bad token file at start.

use lrai_protocol::pb;
use lrai_protocol::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use lrai_protocol::server::auth::{Role, append_new_token};
use tonic::Code;

use crate::{common, infer_body, repo, setup};

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
    assert!(
        r.text().contains("'<path>' is not a valid ONNX model"),
        "{}",
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
    assert!(e.message().contains("<path>"), "{}", e.message());
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
