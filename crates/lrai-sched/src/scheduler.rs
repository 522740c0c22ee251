//! The batcher task and the [`Scheduler`] handle requests are submitted through.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lrai_exec::{Batch, InstancePool, JobOutput};
use lrai_monitor::ModelMetrics;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::policy::{Decision, decide};
use crate::queue::{Pending, Queue};
use crate::{Request, Result, SchedConfig, SchedError, batch_key};

/// Submits requests to one model version's batcher. [`Scheduler::close`] (or dropping it)
/// stops accepting and lets the batcher finish what is queued, then stop the instances;
/// [`Scheduler::join`] waits for that.
#[derive(Debug)]
pub struct Scheduler {
    tx: mpsc::UnboundedSender<Pending>,
    counters: Arc<Vec<AtomicUsize>>,
    config: Arc<SchedConfig>,
    metrics: Arc<ModelMetrics>,
    closing: Arc<Closing>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The close signal: a flag `submit` reads without a lock, and a wake-up for the batcher.
#[derive(Debug, Default)]
struct Closing {
    flag: AtomicBool,
    notify: Notify,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.close();
    }
}

impl Scheduler {
    /// Starts the batcher task over `pool` (needs a tokio runtime).
    pub fn start(
        config: SchedConfig,
        pool: InstancePool<SchedError>,
        metrics: Arc<ModelMetrics>,
    ) -> Scheduler {
        let mut config = config;
        if config.levels.is_empty() {
            config.levels.push(crate::QueuePolicy::default());
        }
        let counters: Arc<Vec<AtomicUsize>> = Arc::new(
            (0..config.levels.len())
                .map(|_| AtomicUsize::new(0))
                .collect(),
        );
        let config = Arc::new(config);
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Queue::new(&config.model, Arc::clone(&counters), Arc::clone(&metrics));
        let closing = Arc::new(Closing::default());
        let task = tokio::spawn(drive(
            rx,
            pool,
            queue,
            Arc::clone(&config),
            Arc::clone(&closing),
        ));
        Scheduler {
            tx,
            counters,
            config,
            metrics,
            closing,
            task: Mutex::new(Some(task)),
        }
    }

    /// Stops accepting requests; queued ones still run.
    pub fn close(&self) {
        self.closing.flag.store(true, Ordering::Release);
        self.closing.notify.notify_one();
    }

    /// Waits until the batcher has finished the queue and the instances have stopped
    /// (after [`Scheduler::close`]). Only the first caller waits.
    pub async fn join(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // The batcher only ends by itself; a panic in it has been logged by tokio.
            let _ = task.await;
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// Requests waiting, all levels.
    pub fn queued(&self) -> usize {
        self.counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Queues a request and returns the receiver its answer will arrive on. Fails fast,
    /// without queueing, when the queue is full or the request can't be batched.
    ///
    /// # Errors
    /// [`SchedError::QueueFull`], [`SchedError::BadPriority`], [`SchedError::BatchDim`],
    /// [`SchedError::NotServing`].
    pub fn submit(&self, req: Request) -> Result<oneshot::Receiver<Result<JobOutput>>> {
        let cfg = &self.config;
        let levels = cfg.levels.len();
        let priority = match req.priority {
            None | Some(0) => cfg.default_priority.max(1),
            Some(p) => p,
        };
        let level = usize::try_from(priority - 1).unwrap_or(usize::MAX);
        let Some(policy) = cfg.levels.get(level) else {
            return Err(SchedError::BadPriority {
                model: cfg.model.clone(),
                levels,
                given: priority,
            });
        };
        if self.closing.flag.load(Ordering::Acquire) {
            return Err(SchedError::NotServing {
                model: cfg.model.clone(),
            });
        }
        let (rows, shape_key) = batch_key(cfg, &req.inputs)?;
        let counter = &self.counters[level];
        let waiting = counter.fetch_add(1, Ordering::Relaxed);
        if waiting >= policy.max_queue_size {
            counter.fetch_sub(1, Ordering::Relaxed);
            return Err(SchedError::QueueFull {
                model: cfg.model.clone(),
                priority,
                waiting,
                limit: policy.max_queue_size,
            });
        }
        let timeout = match req.timeout {
            Some(t) if policy.allow_timeout_override && !t.is_zero() => Some(t),
            _ => policy.default_timeout,
        };
        let enqueued = Instant::now();
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            inputs: req.inputs,
            rows,
            shape_key,
            level,
            enqueued,
            deadline: timeout.map(|t| enqueued + t),
            timeout_action: policy.timeout_action,
            reply,
            span: req.span,
        };
        if self.tx.send(pending).is_err() {
            counter.fetch_sub(1, Ordering::Relaxed);
            return Err(SchedError::NotServing {
                model: cfg.model.clone(),
            });
        }
        self.metrics.request_queued();
        Ok(rx)
    }

    /// Submits and waits for the answer.
    ///
    /// # Errors
    /// As [`Scheduler::submit`], plus the request's own outcome (timeout, exec errors).
    pub async fn infer(&self, req: Request) -> Result<JobOutput> {
        let rx = self.submit(req)?;
        rx.await.unwrap_or_else(|_| {
            Err(SchedError::NotServing {
                model: self.config.model.clone(),
            })
        })
    }

    /// Stops accepting, lets queued requests run, stops the instances, and waits.
    pub async fn shutdown(self) {
        self.close();
        self.join().await;
    }
}

/// The batcher: waits for an idle instance and for requests, asks the policy, dispatches.
async fn drive(
    mut rx: mpsc::UnboundedReceiver<Pending>,
    mut pool: InstancePool<SchedError>,
    mut queue: Queue,
    config: Arc<SchedConfig>,
    closing_signal: Arc<Closing>,
) {
    let mut idle: Option<usize> = None;
    let mut closing = false;
    // Enough candidates for the policy to see a full batch and the request after it.
    let lookahead = config.policy.max_batch_size.max(1) + 1;
    loop {
        while let Ok(p) = rx.try_recv() {
            queue.push(p);
        }
        closing |= closing_signal.flag.load(Ordering::Acquire);
        let now = Instant::now();
        queue.expire(now);
        if idle.is_none() {
            idle = pool.try_idle();
        }
        let mut wake = queue.next_deadline();
        if let Some(instance) = idle {
            match decide(now, &config.policy, &queue.candidates(lookahead)) {
                Decision::Empty if closing => break,
                Decision::Empty => {}
                Decision::Send { count, reason } => {
                    let jobs = queue.take(count, now);
                    if jobs.is_empty() {
                        continue;
                    }
                    idle = None;
                    if let Err(batch) = pool.dispatch(instance, Batch { jobs, reason }) {
                        fail_batch(batch, &config.model);
                    }
                    continue;
                }
                Decision::Wait { until } => wake = Some(wake.map_or(until, |w| w.min(until))),
            }
        }
        let sleep =
            tokio::time::sleep_until(wake.unwrap_or(now + Duration::from_secs(3600)).into());
        tokio::select! {
            msg = rx.recv(), if !closing => match msg {
                Some(p) => queue.push(p),
                None => closing = true,
            },
            id = pool.next_idle(), if idle.is_none() => match id {
                Some(i) => idle = Some(i),
                None => {
                    queue.fail_all(&SchedError::NotServing { model: config.model.clone() }, Instant::now());
                    break;
                }
            },
            () = sleep, if wake.is_some() => {}
            () = closing_signal.notify.notified(), if !closing => closing = true,
        }
        if closing && queue.is_empty() {
            break;
        }
    }
    // Joining the instance threads blocks: keep it off the async workers.
    let joined = tokio::task::spawn_blocking(move || pool.shutdown()).await;
    if joined.is_err() {
        tracing::error!(model = %config.model, "instance threads did not stop cleanly");
    }
}

fn fail_batch(batch: Batch<SchedError>, model: &str) {
    for job in batch.jobs {
        let _ = job.reply.send(Err(SchedError::NotServing {
            model: model.to_string(),
        }));
    }
}
