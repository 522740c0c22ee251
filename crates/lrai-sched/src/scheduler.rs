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

use crate::adaptive::{BatchDone, Controller};
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
        let mut queue = Queue::new(&config.model, Arc::clone(&counters), Arc::clone(&metrics));
        queue.set_padding(config.padding.clone());
        let cfg = Arc::clone(&config);
        let name = format!("b-{}", config.model);
        let m = Arc::clone(&metrics);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || drive(&rx, pool, queue, &cfg, &m))?;
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
    /// With padding configured, the outputs may still carry the batch's padding
    /// ([`JobOutput::padded_len`]); [`Scheduler::infer`] cuts it off.
    pub fn submit(&self, req: Request) -> Result<oneshot::Receiver<Result<JobOutput>>> {
        self.enqueue(req).map(|(rx, _)| rx)
    }

    /// [`Scheduler::submit`], also returning the request's length on the padded axis.
    fn enqueue(
        &self,
        req: Request,
    ) -> Result<(oneshot::Receiver<Result<JobOutput>>, Option<usize>)> {
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
        let (rows, shape_key, seq_len) = batch_key(cfg, &req.inputs)?;
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
        let elements = req
            .inputs
            .iter()
            .map(|(_, t)| t.shape().iter().product::<usize>() as u64)
            .sum();
        let pending = Pending {
            inputs: req.inputs,
            rows,
            shape_key,
            elements,
            level,
            enqueued,
            deadline: timeout.map(|t| enqueued + t),
            timeout_action: policy.timeout_action,
            late: false,
            seq_len,
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
        Ok((rx, seq_len))
    }

    /// Submits and waits for the answer.
    ///
    /// # Errors
    /// As [`Scheduler::submit`], plus the request's own outcome (timeout, exec errors).
    pub async fn infer(&self, req: Request) -> Result<JobOutput> {
        let (rx, from) = self.enqueue(req)?;
        let mut out = rx.await.unwrap_or_else(|_| {
            Err(SchedError::NotServing {
                model: self.config.model.clone(),
            })
        })?;
        if let (Some(p), Some(from), Some(to)) =
            (self.config.padding.as_ref(), from, out.padded_len)
            && to > from
        {
            out.outputs = crate::pad::trim_outputs(p, crate::Padded { from, to }, out.outputs);
            out.padded_len = None;
        }
        Ok(out)
    }

    /// Stops accepting, lets queued requests run, stops the instances, and waits.
    pub async fn shutdown(self) {
        self.close();
        self.join().await;
    }
}

/// A batch an instance is running, for the controller's bookkeeping.
struct Running {
    elements: u64,
    rows: usize,
    dispatched: Instant,
    predicted: std::time::Duration,
    enqueued: Vec<Instant>,
    backlogged: bool,
}

/// The batcher thread's state.
struct Batcher<'a> {
    config: &'a SchedConfig,
    metrics: &'a ModelMetrics,
    queue: Queue,
    idle: Vec<usize>,
    closing: bool,
    controller: Option<Controller>,
    running: Vec<Option<Running>>,
}

impl Batcher<'_> {
    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Request(p) => {
                if let Some(c) = &mut self.controller {
                    c.on_arrival(Instant::now());
                }
                self.queue.push(p);
            }
            Event::Idle(i) => {
                let done = self.running.get_mut(i).and_then(Option::take);
                if let (Some(c), Some(r)) = (&mut self.controller, done) {
                    c.on_batch_done(
                        Instant::now(),
                        &BatchDone {
                            elements: r.elements,
                            rows: r.rows,
                            dispatched: r.dispatched,
                            predicted: r.predicted,
                            enqueued: &r.enqueued,
                            backlogged: r.backlogged,
                        },
                    );
                }
                self.idle.push(i);
            }
            Event::Close => self.closing = true,
        }
    }

    /// The controller's decision, or the static policy's. A panicking or stalled
    /// controller hands batching back to the static policy for good measure.
    fn decide(&mut self, now: Instant, lookahead: usize) -> Decision {
        let candidates = self.queue.candidates(lookahead);
        let Some(c) = &mut self.controller else {
            return decide(now, &self.config.policy, &candidates);
        };
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.decide(now, &candidates)));
        let stalled = match &outcome {
            Err(_) => true,
            // Waiting while the most urgent request is already two objectives old means
            // the controller has lost track of time.
            Ok(Decision::Wait { .. }) => candidates.first().is_some_and(|x| {
                now.saturating_duration_since(x.enqueued) > c.slo().saturating_mul(2)
            }),
            Ok(_) => false,
        };
        if stalled && c.is_adaptive() {
            let reason = c.fall_back(lrai_monitor::FallbackReason::Stalled);
            self.metrics.adaptive_fallback(reason);
            return decide(now, &self.config.policy, &candidates);
        }
        outcome.unwrap_or_else(|_| decide(now, &self.config.policy, &candidates))
    }
}

/// The batcher loop: waits for requests and idle instances, asks the policy (or the
/// adaptive controller), dispatches.
fn drive(
    rx: &mpsc::Receiver<Event>,
    pool: InstancePool<SchedError>,
    queue: Queue,
    config: &SchedConfig,
    metrics: &ModelMetrics,
) {
    let controller = config
        .adaptive
        .clone()
        .map(|a| Controller::new(a, &config.policy));
    let mut b = Batcher {
        config,
        metrics,
        queue,
        idle: Vec::with_capacity(pool.len()),
        closing: false,
        running: (0..pool.len()).map(|_| None).collect(),
        controller,
    };
    if let Some(c) = &b.controller {
        b.queue.set_edf(Some(c.slo()));
        tracing::info!(model = %config.model, slo_ms = c.slo().as_secs_f64() * 1e3, max_batch = c.params().max_batch, max_delay_us = c.params().max_delay.as_micros(), "adaptive batching on");
    }
    // Enough candidates for the policy to see a full batch and the request after it;
    // the adaptive path also looks past other shape groups.
    let lookahead = if b.controller.is_some() {
        config.policy.max_batch_size.max(1) * 4 + 1
    } else {
        config.policy.max_batch_size.max(1) + 1
    };
    loop {
        let now = Instant::now();
        b.queue.expire(now);
        if let Some(c) = &mut b.controller
            && c.is_adaptive()
        {
            let cost = c.cost();
            b.queue.reject_hopeless(now, |e| cost.predict(e));
            // The next instance frees up when its batch is predicted to end.
            let start = if b.idle.is_empty() {
                b.running
                    .iter()
                    .flatten()
                    .map(|r| r.dispatched + r.predicted)
                    .min()
                    .map_or(now, |t| t.max(now))
            } else {
                now
            };
            let parallel = b.running.len();
            // Against the objective itself, not the margin-reduced target batches aim at:
            // a request is given up only when it is predicted to miss the objective.
            let demoted = b
                .queue
                .demote_late(start, parallel, c.slo(), |e| cost.predict(e));
            if demoted > 0 {
                c.on_demoted(demoted);
            }
        }
        let mut wake = b.queue.next_deadline();
        while let Some(&instance) = b.idle.last() {
            match b.decide(now, lookahead) {
                Decision::Empty => break,
                Decision::Send { count, reason, key } => {
                    let (jobs, elements, enqueued) = b.queue.take(count, key, now);
                    if jobs.is_empty() {
                        continue;
                    }
                    b.idle.pop();
                    if let Some(c) = &b.controller {
                        let rows = jobs.iter().map(|j| j.rows).sum();
                        if let Some(slot) = b.running.get_mut(instance) {
                            *slot = Some(Running {
                                elements,
                                rows,
                                dispatched: now,
                                predicted: c.cost().predict(elements),
                                enqueued,
                                backlogged: !b.queue.is_empty(),
                            });
                        }
                    }
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
        if b.closing && b.queue.is_empty() {
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
            Ok(ev) => b.handle(ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => b.closing = true,
        }
        // Take whatever else arrived, so one decision sees all of it.
        while let Ok(ev) = rx.try_recv() {
            b.handle(ev);
        }
        if let Some(c) = &mut b.controller
            && let Some((status, fell)) = c.tick(Instant::now())
        {
            if let Some(reason) = fell {
                metrics.adaptive_fallback(reason);
            }
            metrics.adaptive_update(status);
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
