//! The repository end to end on real models (tract) and the FakeBackend: startup loads,
//! a corrupt model that stays unavailable while the others serve, input checks, a model
//! whose backend panics, version policies, unload and reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lrai_backend::SessionOptions;
use lrai_backend::testing::FakeBackend;
use lrai_backend::tract::TractBackend;
use lrai_core::Tensor;
use lrai_monitor::Metrics;
use lrai_repo::{
    Backends, ControlMode, LoadSettings, RepoConfig, RepoError, Repository, VersionState,
};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

fn copy_model(from: &str, to: &Path, name: &str, versions: &[u64], config: Option<&str>) {
    let dir = to.join(name);
    for v in versions {
        fs_err::create_dir_all(dir.join(v.to_string())).unwrap();
        fs_err::copy(
            examples().join(from).join("1/model.onnx"),
            dir.join(v.to_string()).join("model.onnx"),
        )
        .unwrap();
    }
    if let Some(c) = config {
        fs_err::write(dir.join("config.pbtxt"), c).unwrap();
    }
}

fn repo(root: &Path, fake: Arc<FakeBackend>) -> Repository {
    let backends = Backends::new(Arc::new(TractBackend::new())).with("fake", fake);
    let config = RepoConfig {
        root: root.to_path_buf(),
        control: ControlMode::Explicit,
        startup_models: vec![],
        load_parallelism: 2,
        poll_interval: Duration::from_secs(1),
        load: LoadSettings {
            session: SessionOptions {
                intra_op_threads: Some(1),
                ..SessionOptions::default()
            },
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..LoadSettings::default()
        },
    };
    Repository::open(config, backends, Metrics::new().unwrap()).unwrap()
}

const FAKE_CONFIG: &str = r#"
name: "fake"
max_batch_size: 8
parameters { key: "lrai.backend" value: { string_value: "fake" } }
dynamic_batching { }
"#;

fn digits_input(rows: usize) -> Vec<(String, Tensor)> {
    vec![(
        "input".into(),
        Tensor::from_vec(vec![rows, 64], vec![0.25f32; rows * 64]).unwrap(),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_model_is_unavailable_with_its_error_while_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("digits_mlp", dir.path(), "digits_mlp", &[1], None);
    fs_err::create_dir_all(dir.path().join("broken/1")).unwrap();
    fs_err::write(
        dir.path().join("broken/1/model.onnx"),
        b"not an onnx file at all",
    )
    .unwrap();
    let r = repo(dir.path(), Arc::default());
    r.load_startup().await.unwrap();

    let index = r.index(false);
    let broken = index.iter().find(|e| e.name == "broken").unwrap();
    assert_eq!(broken.state, VersionState::Unavailable);
    assert!(
        broken.reason.contains("is not a valid ONNX model"),
        "{}",
        broken.reason
    );
    let ok = index.iter().find(|e| e.name == "digits_mlp").unwrap();
    assert_eq!((ok.state, ok.version.as_str()), (VersionState::Ready, "1"));
    assert!(!r.all_ready());

    let err = r.get("broken", None).unwrap_err();
    assert!(matches!(err, RepoError::ModelUnavailable { .. }), "{err}");

    let h = r.get("digits_mlp", None).unwrap();
    assert_eq!(
        h.max_batch_size(),
        4,
        "no config: Triton's default max_batch_size"
    );
    let inputs = h.check_inputs(digits_input(2)).unwrap();
    let out = h
        .infer(inputs, None, None, tracing::Span::none())
        .await
        .unwrap();
    assert_eq!(out.outputs[0].1.shape(), &[2, 10]);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_inputs_against_the_config_with_the_batch_dimension_explained() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fs_err::read_to_string(examples().join("digits_mlp/config.pbtxt")).unwrap();
    copy_model("digits_mlp", dir.path(), "digits_mlp", &[1], Some(&cfg));
    let r = repo(dir.path(), Arc::default());
    r.load_model("digits_mlp").await.unwrap();
    let h = r.get("digits_mlp", Some("1")).unwrap();
    let err = h
        .check_inputs(vec![(
            "input".into(),
            Tensor::from_vec(vec![64], vec![0f32; 64]).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected shape for input 'input' of model 'digits_mlp': expected [-1,64], got [64]: the model batches (max_batch_size 64): put the batch size first, e.g. [1,64]"
    );
    let err = h
        .check_inputs(vec![(
            "input".into(),
            Tensor::from_vec(vec![1, 64], vec![0i64; 64]).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "input 'input' of model 'digits_mlp': expected datatype FP32, got INT64"
    );
    let err = h
        .check_inputs(vec![(
            "pixels".into(),
            Tensor::from_vec(vec![1, 64], vec![0f32; 64]).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected inference input 'pixels' for model 'digits_mlp' (its inputs: input)"
    );
    let err = h.check_inputs(digits_input(65)).unwrap_err();
    assert!(
        err.to_string().contains("batch size 65 is outside 1..=64"),
        "{err}"
    );
    let err = h.check_inputs(vec![]).unwrap_err();
    assert!(matches!(err, RepoError::InputMissing { .. }));
    let err = r.get("digits_mlp", Some("2")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Request for unknown model: 'digits_mlp' version 2 is not found (ready versions: 1)"
    );
    let err = r.get("digits_mlp", Some("latest")).unwrap_err();
    assert!(matches!(err, RepoError::BadVersion { .. }));
    assert_eq!(
        err.to_string(),
        "failed to get model version from specified version string 'latest' for model \
         'digits_mlp', version should be an integral value > 0"
    );
    let err = r.get("nope", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Request for unknown model: 'nope' is not found (models: digits_mlp)"
    );
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_model_fails_only_its_requests() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("digits_mlp", dir.path(), "digits_mlp", &[1], None);
    copy_model("digits_mlp", dir.path(), "fake", &[1], Some(FAKE_CONFIG));
    let fake = Arc::new(FakeBackend::default());
    let r = repo(dir.path(), Arc::clone(&fake));
    assert!(!r.all_ready(), "not ready before the startup models loaded");
    r.load_startup().await.unwrap();
    assert!(r.all_ready());
    let h = r.get("fake", None).unwrap();
    let x = |v: f32| {
        vec![(
            "x".to_string(),
            Tensor::from_vec(vec![1, 1], vec![v]).unwrap(),
        )]
    };
    let err = h
        .infer(
            h.check_inputs(x(-1.0)).unwrap(),
            None,
            None,
            tracing::Span::none(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("crashed"), "{err}");
    // The same model serves again after its instance restarts, and the other model never noticed.
    let ok = h
        .infer(
            h.check_inputs(x(3.0)).unwrap(),
            None,
            None,
            tracing::Span::none(),
        )
        .await
        .unwrap();
    assert_eq!(ok.outputs[0].1.to_vec::<f32>().unwrap(), vec![6.0]);
    let d = r.get("digits_mlp", None).unwrap();
    assert!(
        d.infer(
            d.check_inputs(digits_input(1)).unwrap(),
            None,
            None,
            tracing::Span::none()
        )
        .await
        .is_ok()
    );
    assert_eq!(h.metrics().snapshot().restarts, 1);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_policy_latest_all_and_specific() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("digits_mlp", dir.path(), "latest", &[1, 3, 2], None);
    copy_model(
        "digits_mlp",
        dir.path(),
        "all",
        &[1, 2],
        Some("version_policy: { all: {} }"),
    );
    copy_model(
        "digits_mlp",
        dir.path(),
        "pick",
        &[1, 2],
        Some("version_policy: { specific: { versions: [1] } }"),
    );
    copy_model(
        "digits_mlp",
        dir.path(),
        "missing",
        &[1],
        Some("version_policy: { specific: { versions: [4] } }"),
    );
    let r = repo(dir.path(), Arc::default());
    r.load_startup().await.unwrap();
    let versions = |name: &str| -> Vec<String> {
        r.index(true)
            .into_iter()
            .filter(|e| e.name == name)
            .map(|e| e.version)
            .collect()
    };
    assert_eq!(versions("latest"), vec!["3"]);
    assert_eq!(versions("all"), vec!["1", "2"]);
    assert_eq!(versions("pick"), vec!["1"]);
    assert_eq!(
        r.get("all", None).unwrap().version(),
        2,
        "no version asked: the highest"
    );
    let missing = r
        .index(false)
        .into_iter()
        .find(|e| e.name == "missing")
        .unwrap();
    assert!(missing.reason.contains("version 4"), "{}", missing.reason);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_then_reload_and_a_failed_reload_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("digits_mlp", dir.path(), "digits_mlp", &[1], None);
    let r = repo(dir.path(), Arc::default());
    r.load_model("digits_mlp").await.unwrap();
    r.unload_model("digits_mlp").await.unwrap();
    assert!(matches!(
        r.get("digits_mlp", None),
        Err(RepoError::ModelNotFound { .. })
    ));
    let row = r
        .index(false)
        .into_iter()
        .find(|e| e.name == "digits_mlp")
        .unwrap();
    assert_eq!(
        (row.state, row.reason.as_str()),
        (VersionState::Unavailable, "unloaded")
    );
    r.load_model("digits_mlp").await.unwrap();
    assert!(r.get("digits_mlp", None).is_ok());
    // Break the file and reload: the load fails and version 1 keeps serving.
    fs_err::write(dir.path().join("digits_mlp/1/model.onnx"), b"garbage").unwrap();
    assert!(r.load_model("digits_mlp").await.is_err());
    let h = r.get("digits_mlp", None).unwrap();
    assert!(
        h.infer(
            h.check_inputs(digits_input(1)).unwrap(),
            None,
            None,
            tracing::Span::none()
        )
        .await
        .is_ok()
    );
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_backend_name_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    copy_model(
        "digits_mlp",
        dir.path(),
        "m",
        &[1],
        Some(r#"parameters { key: "lrai.backend" value: { string_value: "tvm" } }"#),
    );
    let r = repo(dir.path(), Arc::default());
    let err = r.load_model("m").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "model 'm' asks for backend 'tvm' (parameter lrai.backend), which is not available: known backends: fake, tract"
    );
}

#[tokio::test]
async fn missing_repository_is_a_clear_error() {
    let backends = Backends::new(Arc::new(TractBackend::new()));
    let err = Repository::open(
        RepoConfig {
            root: "/nonexistent/models".into(),
            control: ControlMode::Explicit,
            startup_models: vec![],
            load_parallelism: 1,
            poll_interval: Duration::from_secs(1),
            load: LoadSettings::default(),
        },
        backends,
        Metrics::new().unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/models"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_pass_applies_only_what_changed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    copy_model("digits_mlp", dir.path(), "digits_mlp", &[1], None);
    let r = repo(dir.path(), Arc::default());
    let pass = r.poll_once().await.unwrap();
    assert_eq!(pass.loaded, vec!["digits_mlp".to_string()]);
    assert_eq!(r.serving_version("digits_mlp"), Some(1));
    // Nothing changed: nothing is loaded again.
    assert_eq!(r.poll_once().await.unwrap(), lrai_repo::PollPass::default());
    // A new version: loaded, and it serves (latest 1); 1 leaves.
    copy_model("digits_mlp", dir.path(), "digits_mlp", &[2], None);
    let pass = r.poll_once().await.unwrap();
    assert_eq!(pass.loaded, vec!["digits_mlp".to_string()]);
    assert_eq!(r.serving_version("digits_mlp"), Some(2));
    assert!(r.get("digits_mlp", Some("1")).is_err());
    // Rollback returns to 1 (loading it again); a second one has nowhere to go.
    let done = r.rollback("digits_mlp").await.unwrap();
    assert_eq!((done.from, done.to), (2, 1));
    assert_eq!(r.serving_version("digits_mlp"), Some(1));
    assert!(matches!(
        r.rollback("digits_mlp").await,
        Err(RepoError::NoPreviousVersion { serving: 1, .. })
    ));
    // Unchanged files keep the rollback's pin; a removed directory unloads the model.
    assert_eq!(r.poll_once().await.unwrap(), lrai_repo::PollPass::default());
    assert_eq!(r.serving_version("digits_mlp"), Some(1));
    fs_err::remove_dir_all(dir.path().join("digits_mlp")).unwrap();
    let pass = r.poll_once().await.unwrap();
    assert_eq!(pass.unloaded, vec!["digits_mlp".to_string()]);
    assert!(r.get("digits_mlp", None).is_err());
    r.shutdown().await;
}
