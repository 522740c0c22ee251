#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use lrai_backend::testing::FakeBackend;
use lrai_backend::{Backend, ModelSource, SessionOptions};
use lrai_core::Tensor;
use lrai_monitor::{BatchReason, Metrics};
use tokio::sync::oneshot;

use super::*;

fn source() -> ModelSource {
    // The fake ignores the model's content; any ONNX bytes with a graph will do.
    let bytes = Bytes::from_static(b"\x3a\x00");
    ModelSource::from_bytes("fake", bytes).unwrap()
}

struct Rig {
    pool: InstancePool<ExecError>,
    idle: tokio::sync::mpsc::UnboundedReceiver<usize>,
    backend: Arc<FakeBackend>,
    metrics: Arc<lrai_monitor::ModelMetrics>,
}

fn rig(instances: usize) -> Rig {
    let backend = Arc::new(FakeBackend::default());
    let metrics = Metrics::new().unwrap().model("fake", "1");
    let b = Arc::clone(&backend);
    let factory: SessionFactory = Arc::new(move || b.load(&source(), &SessionOptions::default()));
    let spec = InstanceSpec {
        model: "fake".into(),
        factory: Arc::clone(&factory),
        batching: true,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        metrics: Arc::clone(&metrics),
    };
    let sessions = (0..instances).map(|_| factory().unwrap()).collect();
    let (tx, idle) = tokio::sync::mpsc::unbounded_channel();
    let notify: IdleNotifier = Arc::new(move |id| tx.send(id).is_ok());
    Rig {
        pool: InstancePool::<ExecError>::start(&spec, sessions, &notify).unwrap(),
        idle,
        backend,
        metrics,
    }
}

fn job(values: &[f32]) -> (Job, oneshot::Receiver<Result<JobOutput>>) {
    let (tx, rx) = oneshot::channel();
    let t = Tensor::from_vec(vec![values.len(), 1], values.to_vec()).unwrap();
    (
        Job {
            inputs: vec![("x".into(), t)],
            rows: values.len(),
            reply: tx,
            span: tracing::Span::none(),
            padded_len: None,
        },
        rx,
    )
}

async fn run(r: &mut Rig, batches: Vec<Vec<f32>>) -> Vec<Result<JobOutput>> {
    let (jobs, rxs): (Vec<_>, Vec<_>) = batches.iter().map(|v| job(v)).unzip();
    let id = r.idle.recv().await.unwrap();
    r.pool
        .dispatch(
            id,
            Batch {
                jobs,
                reason: BatchReason::Full,
            },
        )
        .unwrap();
    let mut out = Vec::new();
    for rx in rxs {
        out.push(rx.await.unwrap());
    }
    out
}

#[tokio::test]
async fn splits_outputs_back_per_request() {
    let mut r = rig(1);
    let out = run(&mut r, vec![vec![1.0], vec![2.0, 3.0], vec![4.0]]).await;
    let ys: Vec<Vec<f32>> = out
        .into_iter()
        .map(|o| o.unwrap().outputs[0].1.to_vec::<f32>().unwrap())
        .collect();
    assert_eq!(ys, vec![vec![2.0], vec![4.0, 6.0], vec![8.0]]);
    assert_eq!(
        r.backend.runs.load(Ordering::Relaxed),
        1,
        "one batch, one run"
    );
    let s = r.metrics.snapshot();
    assert_eq!((s.inference_count, s.execution_count), (4, 1));
    r.pool.shutdown();
}

#[tokio::test]
async fn restarts_instance_after_panic_and_fails_only_that_batch() {
    let mut r = rig(1);
    let out = run(&mut r, vec![vec![1.0], vec![-1.0]]).await;
    for o in &out {
        let e = o.as_ref().unwrap_err();
        assert!(
            matches!(e, ExecError::InstanceCrashed { instance: 0, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("told to panic"), "{e}");
    }
    // The next batch is served by the rebuilt session.
    let out = run(&mut r, vec![vec![5.0]]).await;
    assert_eq!(
        out[0].as_ref().unwrap().outputs[0]
            .1
            .to_vec::<f32>()
            .unwrap(),
        vec![10.0]
    );
    assert_eq!(
        r.backend.loads.load(Ordering::Relaxed),
        2,
        "initial load plus one rebuild"
    );
    assert_eq!(r.metrics.snapshot().restarts, 1);
    r.pool.shutdown();
}

#[tokio::test]
async fn backend_errors_fail_the_batch_and_restart_after_three_in_a_row() {
    let mut r = rig(1);
    for _ in 0..2 {
        let out = run(&mut r, vec![vec![-2.0]]).await;
        assert!(matches!(out[0], Err(ExecError::Backend(_))));
    }
    assert_eq!(
        r.metrics.snapshot().restarts,
        0,
        "two failures are not yet a broken session"
    );
    let _ = run(&mut r, vec![vec![-2.0]]).await;
    let out = run(&mut r, vec![vec![1.0]]).await;
    assert!(out[0].is_ok());
    assert_eq!(r.metrics.snapshot().restarts, 1);
    r.pool.shutdown();
}

#[tokio::test]
async fn a_slow_instance_does_not_block_the_other() {
    let mut r = rig(2);
    let (slow, mut slow_rx) = job(&[1200.0]); // sleeps 200 ms
    let a = r.idle.recv().await.unwrap();
    r.pool
        .dispatch(
            a,
            Batch {
                jobs: vec![slow],
                reason: BatchReason::Idle,
            },
        )
        .unwrap();
    let out = run(&mut r, vec![vec![3.0]]).await;
    assert_eq!(
        out[0].as_ref().unwrap().outputs[0]
            .1
            .to_vec::<f32>()
            .unwrap(),
        vec![6.0]
    );
    assert!(
        matches!(slow_rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "the fast request finished while the slow one still runs"
    );
    assert!(slow_rx.await.unwrap().is_ok());
    r.pool.shutdown();
}

#[tokio::test]
async fn shutdown_stops_every_thread() {
    let r = rig(3);
    assert_eq!(r.pool.len(), 3);
    r.pool.shutdown();
}
