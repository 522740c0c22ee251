//! The batcher and the [`Scheduler`] handle requests are submitted through.
//!
//! The batcher runs on its own named OS thread (`b-<model>`), like Triton's: queue delays
//! are hundreds of microseconds, and tokio's timer wheel rounds every sleep up to the next
//! millisecond, which measured as ~1.3 ms of queueing for a 500 µs delay. A thread
//! blocking in `recv_timeout` wakes within microseconds. Requests, "instance idle"
//! reports and the close signal all arrive on one channel, so the thread owns the queue
//! and the idle list without locks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lrai_exec::{Batch, IdleNotifier, InstancePool, JobOutput};
use lrai_monitor::ModelMetrics;
use tokio::sync::oneshot;

use crate::policy::{Decision, decide};
use crate::queue::{Pending, Queue};
use crate::{Request, Result, SchedConfig, SchedError, batch_key};

/// What the batcher thread reacts to.
enum Event {
    Request(Pending),
    Idle(usize),
    Close,
}

/// Submits requests to one model version's batcher. [`Scheduler::close`] (or dropping it)
/// stops accepting and lets the batcher finish what is queued, then stop the instances;
/// [`Scheduler::join`] waits for that.
#[derive(Debug)]
pub struct Scheduler {
    tx: mpsc::Sender<Event>,
    counters: Arc<Vec<AtomicUsize>>,
    config: Arc<SchedConfig>,
    metrics: Arc<ModelMetrics>,
    closing: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Request(_) => f.write_str("Request"),
            Event::Idle(i) => write!(f, "Idle({i})"),
            Event::Close => f.write_str("Close"),
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.close();
    }
}

impl Scheduler {
    /// Starts the batcher thread and the model's instances: `start_pool` gets the notifier
    /// instances report idleness through (`InstancePool::start(spec, sessions, notifier)`).
    ///
    /// # Errors
    /// An I/O error when a thread cannot be spawned.
    pub fn start(
        config: SchedConfig,
        metrics: Arc<ModelMetrics>,
        start_pool: impl FnOnce(&IdleNotifier) -> std::io::Result<InstancePool<SchedError>>,
    ) -> std::io::Result<Scheduler> {
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
        let (tx, rx) = mpsc::channel();
        let idle_tx = tx.clone();
        // Instances report idleness on the batcher's own channel.
        let notify: IdleNotifier = Arc::new(move |id| idle_tx.send(Event::Idle(id)).is_ok());
        let pool = start_pool(&notify)?;
        let queue = Queue::new(&config.model, Arc::clone(&counters), Arc::clone(&metrics));
        let cfg = Arc::clone(&config);
        let name = format!("b-{}", config.model);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || drive(&rx, pool, queue, &cfg))?;
        Ok(Scheduler {
            tx,
            counters,
            config,
            metrics,
            closing: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
        })
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

    /// Stops accepting requests; queued ones still run.
    pub fn close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Event::Close);
        }
    }

    /// Waits until the batcher has finished the queue and the instances have stopped
    /// (after [`Scheduler::close`]). Only the first caller waits.
    pub async fn join(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // Joining blocks: keep it off the async workers. A panic in the batcher has
            // already been reported by the panic hook.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
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
        // Triton's rule: 0 or a level the model doesn't have means the default level.
        let default = cfg
            .default_priority
            .clamp(1, u32::try_from(levels).unwrap_or(1).max(1));
        let priority = match req.priority {
            Some(p) if p >= 1 && usize::try_from(p).is_ok_and(|p| p <= levels) => p,
            _ => default,
        };
        let level = usize::try_from(priority - 1).unwrap_or(0);
        let Some(policy) = cfg.levels.get(level) else {
            return Err(SchedError::BadPriority {
                model: cfg.model.clone(),
                levels,
                given: priority,
            });
        };
        if self.closing.load(Ordering::Acquire) {
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
        self.metrics.request_queued();
        if self.tx.send(Event::Request(pending)).is_err() {
            counter.fetch_sub(1, Ordering::Relaxed);
            self.metrics.request_dequeued(std::time::Duration::ZERO);
            return Err(SchedError::NotServing {
                model: cfg.model.clone(),
            });
        }
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

/// The batcher loop: waits for requests and idle instances, asks the policy, dispatches.
fn drive(
    rx: &mpsc::Receiver<Event>,
    pool: InstancePool<SchedError>,
    mut queue: Queue,
    config: &SchedConfig,
) {
    let mut idle: Vec<usize> = Vec::with_capacity(pool.len());
    let mut closing = false;
    // Enough candidates for the policy to see a full batch and the request after it.
    let lookahead = config.policy.max_batch_size.max(1) + 1;
    let handle = |ev: Event, queue: &mut Queue, idle: &mut Vec<usize>, closing: &mut bool| match ev
    {
        Event::Request(p) => queue.push(p),
        Event::Idle(i) => idle.push(i),
        Event::Close => *closing = true,
    };
    loop {
        let now = Instant::now();
        queue.expire(now);
        let mut wake = queue.next_deadline();
        while let Some(&instance) = idle.last() {
            match decide(now, &config.policy, &queue.candidates(lookahead)) {
                Decision::Empty => break,
                Decision::Send { count, reason } => {
                    let jobs = queue.take(count, now);
                    if jobs.is_empty() {
                        continue;
                    }
                    idle.pop();
                    if let Err(batch) = pool.dispatch(instance, Batch { jobs, reason }) {
                        fail_batch(batch, &config.model);
                    }
                }
                Decision::Wait { until } => {
                    wake = Some(wake.map_or(until, |w| w.min(until)));
                    break;
                }
            }
        }
        if closing && queue.is_empty() {
            break;
        }
        let event = match wake {
            Some(w) => {
                let left = w.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    continue;
                }
                rx.recv_timeout(left)
            }
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(ev) => handle(ev, &mut queue, &mut idle, &mut closing),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closing = true,
        }
        // Take whatever else arrived, so one decision sees all of it.
        while let Ok(ev) = rx.try_recv() {
            handle(ev, &mut queue, &mut idle, &mut closing);
        }
    }
    pool.shutdown();
}

fn fail_batch(batch: Batch<SchedError>, model: &str) {
    for job in batch.jobs {
        let _ = job.reply.send(Err(SchedError::NotServing {
            model: model.to_string(),
        }));
    }
}
