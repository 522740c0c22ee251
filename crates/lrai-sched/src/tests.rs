#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The scheduler driven over real instance threads running the FakeBackend. A "slow"
//! request (the fake sleeps on cue) keeps the single instance busy so that others queue;
//! the assertions are about decisions and outcomes, never about durations.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use lrai_backend::testing::FakeBackend;
use lrai_backend::{Backend, ModelSource, SessionOptions};
use lrai_core::Tensor;
use lrai_exec::{InstancePool, InstanceSpec, SessionFactory};
use lrai_monitor::Metrics;

use super::*;

struct Rig {
    sched: Scheduler,
    backend: Arc<FakeBackend>,
    metrics: Arc<lrai_monitor::ModelMetrics>,
    /// The registry `metrics` lives in (for the Prometheus text).
    registry: Metrics,
}

fn rig(config: SchedConfig) -> Rig {
    rig_with(config, FakeBackend::default())
}

fn rig_with(config: SchedConfig, backend: FakeBackend) -> Rig {
    let backend = Arc::new(backend);
    let registry = Metrics::new().unwrap();
    let metrics = registry.model("fake", "1");
    let b = Arc::clone(&backend);
    let source = ModelSource::from_bytes("fake", Bytes::from_static(b"\x3a\x00")).unwrap();
    let factory: SessionFactory = Arc::new(move || b.load(&source, &SessionOptions::default()));
    let spec = InstanceSpec {
        model: "fake".into(),
        factory: Arc::clone(&factory),
        batching: config.policy.max_batch_size > 0,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        metrics: Arc::clone(&metrics),
    };
    let session = factory().unwrap();
    let sched = Scheduler::start(config, Arc::clone(&metrics), |notify| {
        InstancePool::<SchedError>::start(&spec, vec![session], notify)
    })
    .unwrap();
    Rig {
        sched,
        backend,
        metrics,
        registry,
    }
}

fn batching(max: usize, delay_us: u64) -> SchedConfig {
    SchedConfig::simple(
        "fake",
        BatchPolicy {
            max_batch_size: max,
            dynamic: true,
            preferred_batch_sizes: vec![],
            max_queue_delay: Duration::from_micros(delay_us),
        },
    )
}

fn req(values: &[f32]) -> Request {
    Request {
        inputs: vec![(
            "x".into(),
            Tensor::from_vec(vec![values.len(), 1], values.to_vec()).unwrap(),
        )],
        priority: None,
        timeout: None,
        span: tracing::Span::none(),
    }
}

fn y(out: &lrai_exec::JobOutput) -> Vec<f32> {
    out.outputs[0].1.to_vec::<f32>().unwrap()
}

/// Occupies the single instance for `ms` milliseconds; returns once the request has left
/// the queue (it is on the instance), so later requests queue behind it.
async fn busy(r: &Rig, ms: u32) -> tokio::sync::oneshot::Receiver<Result<lrai_exec::JobOutput>> {
    let rx = r.sched.submit(req(&[1000.0 + ms as f32])).unwrap();
    while r.sched.queued() > 0 {
        tokio::task::yield_now().await;
    }
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesces_requests_queued_behind_a_busy_instance() {
    let r = rig(batching(8, 0));
    let slow = busy(&r, 300).await;
    let rxs: Vec<_> = (1..=5)
        .map(|i| r.sched.submit(req(&[i as f32])).unwrap())
        .collect();
    assert!(slow.await.unwrap().is_ok());
    for (i, rx) in rxs.into_iter().enumerate() {
        let out = rx.await.unwrap().unwrap();
        assert_eq!(y(&out), vec![2.0 * (i + 1) as f32]);
        assert_eq!(
            out.batch_rows, 5,
            "the five queued requests ran as one batch"
        );
    }
    assert_eq!(r.backend.runs.load(Ordering::Relaxed), 2);
    let s = r.metrics.snapshot();
    assert_eq!(s.execution_count, 2);
    assert_eq!(
        s.batch_stats
            .iter()
            .map(|b| b.batch_size)
            .collect::<Vec<_>>(),
        vec![1, 5]
    );
    r.sched.shutdown().await;
}

/// How many batches went for `reason`, from the Prometheus text.
fn batches_sent_for(r: &Rig, reason: &str) -> u64 {
    let text = r.registry.render().unwrap();
    let key = format!("lrai_batches_total{{model=\"fake\",reason=\"{reason}\",version=\"1\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_as_large_as_the_largest_preferred_size_does_not_wait_for_the_delay() {
    // preferred [2, 6] and an hour of queue delay: Triton sends a 7-row request at once.
    let mut config = batching(8, 3_600_000_000);
    config.policy.preferred_batch_sizes = vec![2, 6];
    let r = rig(config);
    let values: Vec<f32> = (1..=7).map(|i| i as f32).collect();
    // Bounded: a batcher that waits for the delay would otherwise hang the test for an hour.
    let out = tokio::time::timeout(Duration::from_secs(60), r.sched.infer(req(&values)))
        .await
        .expect("the 7-row request still waits for the queue delay")
        .unwrap();
    assert_eq!(y(&out), values.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    assert_eq!(out.batch_rows, 7);
    assert_eq!(batches_sent_for(&r, "preferred"), 1);
    assert_eq!(batches_sent_for(&r, "delay"), 0);
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_size_counts_rows() {
    let r = rig(batching(4, 0));
    let slow = busy(&r, 300).await;
    let a = r.sched.submit(req(&[1.0, 2.0, 3.0])).unwrap();
    let b = r.sched.submit(req(&[4.0, 5.0])).unwrap();
    slow.await.unwrap().unwrap();
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(
        (a.batch_rows, b.batch_rows),
        (3, 2),
        "3 + 2 rows exceed 4: two batches"
    );
    assert_eq!(y(&b), vec![8.0, 10.0]);
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_at_once_when_the_queue_is_full() {
    let mut cfg = batching(8, 0);
    cfg.levels[0].max_queue_size = 2;
    let r = rig(cfg);
    let slow = busy(&r, 300).await;
    let a = r.sched.submit(req(&[1.0])).unwrap();
    let b = r.sched.submit(req(&[2.0])).unwrap();
    let err = r.sched.submit(req(&[3.0])).unwrap_err();
    assert!(
        matches!(err, SchedError::QueueFull { limit: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("retry after a short backoff"));
    slow.await.unwrap().unwrap();
    assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_are_answered_without_running() {
    let mut cfg = batching(8, 0);
    cfg.levels[0].default_timeout = Some(Duration::from_millis(20));
    let r = rig(cfg);
    let mut slow_req = req(&[1500.0]); // 500 ms, longer than the timeout: exempt it
    slow_req.timeout = Some(Duration::from_secs(10));
    let slow = r.sched.submit(slow_req).unwrap();
    while r.sched.queued() > 0 {
        tokio::task::yield_now().await;
    }
    let late = r.sched.submit(req(&[7.0])).unwrap();
    let err = late.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            SchedError::Timeout {
                timeout_us: 20_000,
                ..
            }
        ),
        "{err}"
    );
    slow.await.unwrap().unwrap();
    assert_eq!(
        r.backend.rows.load(Ordering::Relaxed),
        1,
        "the expired request never ran"
    );
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_runs_first() {
    let mut cfg = SchedConfig::simple("fake", BatchPolicy::unbatched());
    cfg.levels = vec![QueuePolicy::default(), QueuePolicy::default()];
    cfg.default_priority = 2;
    let r = rig(cfg);
    let slow = busy(&r, 300).await;
    let mut low = r.sched.submit(req(&[1.0])).unwrap();
    let mut high_req = req(&[2.0]);
    high_req.priority = Some(1);
    let mut high = r.sched.submit(high_req).unwrap();
    slow.await.unwrap().unwrap();
    let first = tokio::select! {
        biased;
        _ = &mut high => "high",
        _ = &mut low => "low",
    };
    assert_eq!(first, "high");
    // Like Triton, a level the model doesn't have runs at the default level.
    let mut other = req(&[3.0]);
    other.priority = Some(3);
    assert_eq!(y(&r.sched.infer(other).await.unwrap()), vec![6.0]);
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_requests_whose_client_went_away() {
    let r = rig(batching(8, 0));
    let slow = busy(&r, 300).await;
    drop(r.sched.submit(req(&[5.0])).unwrap());
    let kept = r.sched.submit(req(&[6.0])).unwrap();
    slow.await.unwrap().unwrap();
    assert_eq!(y(&kept.await.unwrap().unwrap()), vec![12.0]);
    assert_eq!(
        r.backend.rows.load(Ordering::Relaxed),
        2,
        "slow + kept; the abandoned one never ran"
    );
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_queued_requests() {
    let r = rig(batching(2, 0));
    let slow = busy(&r, 200).await;
    let rxs: Vec<_> = (0..5)
        .map(|i| r.sched.submit(req(&[i as f32])).unwrap())
        .collect();
    r.sched.shutdown().await;
    assert!(slow.await.unwrap().is_ok());
    for rx in rxs {
        assert!(rx.await.unwrap().is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_batch_fails_only_its_requests() {
    let r = rig(batching(8, 0));
    let slow = busy(&r, 300).await;
    let a = r.sched.submit(req(&[-1.0])).unwrap();
    let b = r.sched.submit(req(&[1.0])).unwrap();
    slow.await.unwrap().unwrap();
    let (ea, eb) = (a.await.unwrap().unwrap_err(), b.await.unwrap().unwrap_err());
    assert!(ea.to_string().contains("crashed"), "{ea}");
    assert!(eb.to_string().contains("crashed"), "same batch: {eb}");
    let after = r.sched.infer(req(&[4.0])).await.unwrap();
    assert_eq!(y(&after), vec![8.0]);
    r.sched.shutdown().await;
}

#[test]
fn batch_key_rejects_inconsistent_batch_dims() {
    let cfg = batching(8, 0);
    let inputs = vec![
        (
            "a".to_string(),
            Tensor::from_vec(vec![2, 1], vec![0f32; 2]).unwrap(),
        ),
        (
            "b".to_string(),
            Tensor::from_vec(vec![3, 1], vec![0f32; 3]).unwrap(),
        ),
    ];
    assert!(
        batch_key(&cfg, &inputs)
            .unwrap_err()
            .to_string()
            .contains("disagree")
    );
    let big = vec![(
        "a".to_string(),
        Tensor::from_vec(vec![9, 1], vec![0f32; 9]).unwrap(),
    )];
    assert!(
        batch_key(&cfg, &big)
            .unwrap_err()
            .to_string()
            .contains("exceeds max_batch_size 8")
    );
}

fn with_objective(max: usize, slo: Duration, run_ms: u64) -> SchedConfig {
    let mut cfg = batching(max, 0);
    let mut a = AdaptiveConfig::for_slo(slo);
    // What warm-up would have measured: one element takes `run_ms`.
    a.profile = vec![(1, Duration::from_millis(run_ms))];
    cfg.adaptive = Some(a);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_meet_its_deadline_is_answered_without_running() {
    let r = rig(with_objective(8, Duration::from_secs(2), 200));
    let mut doomed = req(&[3.0]);
    doomed.timeout = Some(Duration::from_millis(50));
    let err = r.sched.infer(doomed).await.unwrap_err();
    assert!(matches!(err, SchedError::Unmeetable { .. }), "{err}");
    assert!(err.to_string().contains("was not computed"), "{err}");
    assert_eq!(r.backend.rows.load(Ordering::Relaxed), 0, "nothing ran");
    // Without a deadline it runs.
    let out = r.sched.infer(req(&[2.0])).await.unwrap();
    assert_eq!(y(&out), vec![4.0]);
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_objective_the_earliest_deadline_goes_first() {
    let r = rig(with_objective(2, Duration::from_secs(10), 1));
    let slow = busy(&r, 300).await;
    let mut far_a = req(&[1.0]);
    far_a.timeout = Some(Duration::from_secs(60));
    let mut far_b = req(&[2.0]);
    far_b.timeout = Some(Duration::from_secs(60));
    let mut near = req(&[3.0]);
    near.timeout = Some(Duration::from_secs(5));
    let a = r.sched.submit(far_a).unwrap();
    let b = r.sched.submit(far_b).unwrap();
    let c = r.sched.submit(near).unwrap();
    slow.await.unwrap().unwrap();
    let (a, b, c) = (
        a.await.unwrap().unwrap(),
        b.await.unwrap().unwrap(),
        c.await.unwrap().unwrap(),
    );
    // FIFO would run [a, b] then [c]; earliest deadline first runs [c, a] then [b].
    assert_eq!((c.batch_rows, a.batch_rows, b.batch_rows), (2, 2, 1));
    assert_eq!(y(&c), vec![6.0]);
    r.sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_batcher_publishes_its_status() {
    let r = rig(with_objective(8, Duration::from_millis(200), 1));
    assert!(r.metrics.adaptive_status().is_none());
    // Two windows close after 256 completions each; a bounded number of requests.
    for chunk in 0..6 {
        let rxs: Vec<_> = (0..100)
            .map(|i| r.sched.submit(req(&[(chunk * 100 + i) as f32])).unwrap())
            .collect();
        for rx in rxs {
            rx.await.unwrap().unwrap();
        }
        if r.metrics.adaptive_status().is_some() {
            break;
        }
    }
    let s = r.metrics.adaptive_status().expect("a window closed");
    assert_eq!(s.slo, Duration::from_millis(200));
    assert!(s.window_requests > 0);
    assert!(s.max_batch_size >= 1 && s.max_batch_size <= 8);
    r.sched.shutdown().await;
}

fn seq_req(values: &[f32]) -> Request {
    Request {
        inputs: vec![(
            "x".into(),
            Tensor::from_vec(vec![1, values.len()], values.to_vec()).unwrap(),
        )],
        priority: None,
        timeout: None,
        span: tracing::Span::none(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lengths_in_one_bucket_share_a_batch_padded_to_its_longest_and_trimmed_back() {
    let mut cfg = batching(4, 0);
    cfg.padding = Padding::parse(1, "8,64");
    let r = rig_with(
        cfg,
        FakeBackend {
            variable_len: true,
            ..FakeBackend::default()
        },
    );
    let slow = busy(&r, 300).await;
    let short = [1.0, 2.0, 3.0];
    let long = [4.0, 5.0, 6.0, 7.0, 8.0];
    let a = tokio::spawn({
        let rx = r.sched.submit(seq_req(&short));
        async move { rx.unwrap().await }
    });
    let b = r.sched.infer(seq_req(&long));
    let (b, _) = tokio::join!(b, slow);
    let b = b.unwrap();
    let a_raw = a.await.unwrap().unwrap().unwrap();
    assert_eq!(b.batch_rows, 2, "3 and 5 are both in bucket 8: one batch");
    assert_eq!(y(&b), vec![8.0, 10.0, 12.0, 14.0, 16.0]);
    // Padded to the batch's longest (5), not to the bucket (8): 1 + 2 × 5 elements ran.
    assert_eq!(a_raw.padded_len, Some(5));
    assert_eq!(r.backend.rows.load(Ordering::Relaxed), 11);
    // Through infer the padding is cut off exactly.
    let slow = busy(&r, 200).await;
    let a2 = r.sched.infer(seq_req(&short));
    let b2 = r.sched.infer(seq_req(&long));
    let (a2, b2, _) = tokio::join!(a2, b2, slow);
    let (a2, b2) = (a2.unwrap(), b2.unwrap());
    assert_eq!(a2.batch_rows, 2);
    assert_eq!(y(&a2), vec![2.0, 4.0, 6.0]);
    assert_eq!(a2.outputs[0].1.shape(), &[1, 3]);
    assert_eq!(y(&b2), vec![8.0, 10.0, 12.0, 14.0, 16.0]);
    // Alone, nothing is padded.
    let before = r.backend.rows.load(Ordering::Relaxed);
    let c = r.sched.infer(seq_req(&short)).await.unwrap();
    assert_eq!(c.padded_len, None);
    assert_eq!(r.backend.rows.load(Ordering::Relaxed) - before, 3);
    r.sched.shutdown().await;
}
