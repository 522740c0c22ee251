//! Runs the levels of a benchmark, one after another, against one target.
//!
//! - **Closed loop**: `concurrency` tokio tasks, each sending its next request as soon
//!   as the last one is answered. Latency runs from the send.
//! - **Open loop**: a dedicated thread walks the precomputed arrival times, sleeping
//!   with `std::thread::sleep` (tens of microseconds late on Linux, where tokio's timer
//!   rounds to a millisecond) and spawning each send onto the runtime at its time.
//!   Latency runs from the *scheduled* time, so when the generator or the server falls
//!   behind, the delay is charged to the requests instead of hiding in gaps between
//!   them (no coordinated omission). At most `max_in_flight` requests are outstanding;
//!   an arrival beyond that is recorded as `dropped` and counts as an SLO miss.
//!
//! Every level ends after `warmup + duration` or `requests` measured arrivals,
//! whichever comes first, then waits for answers in flight, each bounded by `timeout`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lrai_core::random::SplitMix64;
use tokio::sync::{Semaphore, oneshot, watch};

use crate::client::{Client, Prepared};
use crate::inputs::{InputOptions, InputPlan, Pool, SeqLenDist};
use crate::load::{Arrivals, Load};
use crate::report::{BenchReport, LevelResult, TargetInfo};
use crate::stats::{ErrorKind, LevelInfo, LevelSummary, Sample, timeline, window_for};
use crate::{BenchError, Result, Target, metrics};

/// A whole benchmark: one target, one or more load levels.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Server and model.
    pub target: Target,
    /// How request data is made.
    pub inputs: InputOptions,
    /// The levels, run in order.
    pub loads: Vec<Load>,
    /// Leading time of each level left out of the results.
    pub warmup: Duration,
    /// Measured time of each level (after warm-up); `None` bounds by `requests` only.
    pub duration: Option<Duration>,
    /// Most measured requests per level; `None` bounds by `duration` only.
    pub requests: Option<u64>,
    /// Most requests in flight in an open loop (and HTTP connections kept).
    pub max_in_flight: usize,
    /// Longest wait for one answer; later ones count as `timeout`.
    pub timeout: Duration,
    /// Latency objective for SLO attainment, in milliseconds.
    pub slo_ms: Option<f64>,
    /// Seed for arrivals, data and sequence lengths.
    pub seed: u64,
    /// Prometheus endpoint to scrape batch sizes from (`http://host:8002/metrics`).
    pub metrics_url: Option<String>,
}

/// A snapshot of the level in progress, for a progress line.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Load label.
    pub level: String,
    /// 1-based index of the level.
    pub index: usize,
    /// Number of levels.
    pub levels: usize,
    /// Seconds since the level started.
    pub elapsed_s: f64,
    /// Whether the level is still warming up.
    pub warming_up: bool,
    /// Requests due so far (sent or dropped).
    pub sent: u64,
    /// Successful answers so far.
    pub ok: u64,
    /// Failures and drops so far.
    pub failed: u64,
}

/// State shared by the sends of a run.
#[derive(Debug)]
struct Shared {
    client: Client,
    pool: Pool<Prepared>,
    seq: Option<SeqLenDist>,
    seed: u64,
    timeout: Duration,
    samples: Mutex<Vec<Sample>>,
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    /// The sequence length of the `i`-th request: from the trace when it has one, else
    /// drawn from a generator seeded by `i`, so lengths do not depend on which task or
    /// thread sends the request.
    fn seq_len(&self, i: u64, from_trace: Option<usize>) -> usize {
        match (from_trace, &self.seq) {
            (Some(n), _) => n,
            (None, Some(dist)) => dist.sample(&mut SplitMix64::new(
                self.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )),
            (None, None) => 0,
        }
    }

    fn record(&self, sample: Sample) {
        let counter = if sample.error.is_none() {
            &self.ok
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample);
    }

    /// Sends request `i`, due at `due` (`start` is the level's start).
    async fn send(&self, i: u64, seq_len: usize, start: Instant, due: Instant) -> Sample {
        let lag = due.elapsed();
        let answer = match self.pool.pick(i, seq_len) {
            Some(p) => match tokio::time::timeout(self.timeout, self.client.infer(p)).await {
                Ok(r) => r,
                Err(_) => Err(ErrorKind::Timeout),
            },
            None => Err(ErrorKind::Transport),
        };
        Sample {
            t_send_s: due.saturating_duration_since(start).as_secs_f64(),
            latency_s: due.elapsed().as_secs_f64(),
            lag_s: lag.as_secs_f64(),
            seq_len: u32::try_from(seq_len).ok().filter(|n| *n > 0),
            version: answer.as_ref().ok().copied().flatten(),
            error: answer.err(),
        }
    }
}

/// Bounds of one level.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    warmup: Duration,
    /// Warm-up plus duration, if bounded by time.
    end: Option<Duration>,
    requests: Option<u64>,
}

/// Runs every level of `config` and collects the results. `progress` is called about
/// twice a second while a level runs.
///
/// # Errors
/// [`BenchError::NothingToRun`] without loads or bounds; [`BenchError::Metadata`] when
/// the server or model cannot be reached; input planning and encoding errors. Failed
/// requests are counted in the report, not returned as errors.
pub async fn run(
    config: &BenchConfig,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<BenchReport> {
    if config.loads.is_empty() {
        return Err(BenchError::NothingToRun {
            reason: "no load given; pass --concurrency, --rate, --burst or --trace".into(),
        });
    }
    if config.duration.is_none() && config.requests.is_none() {
        return Err(BenchError::NothingToRun {
            reason: "no bound; pass --duration or --requests".into(),
        });
    }
    let max_in_flight = config.max_in_flight.clamp(1, 1 << 20);
    let client = Client::connect(&config.target, max_in_flight).await?;
    let meta = client.inputs(&config.target).await?;
    let (opts, lengths) = sequence_lengths(config);
    let plan = InputPlan::new(&config.target.model, &meta, &opts)?;
    let pool = Pool::new(&plan, &lengths, config.seed, |r| {
        let mut r = r.clone();
        r.model_version.clone_from(&config.target.version);
        client.prepare(&r)
    })?;
    let shared = Arc::new(Shared {
        client,
        pool,
        seq: if plan.has_seq() { opts.seq_len } else { None },
        seed: config.seed,
        timeout: config.timeout,
        samples: Mutex::new(Vec::new()),
        sent: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let bounds = Bounds {
        warmup: config.warmup,
        end: config.duration.map(|d| config.warmup + d),
        requests: config.requests,
    };
    let mut levels = Vec::with_capacity(config.loads.len());
    for (index, load) in config.loads.iter().enumerate() {
        let seed = config.seed.wrapping_add(index as u64);
        let label = load.label();
        let start = Instant::now();
        let (stop_tx, stop_rx) = watch::channel(false);
        let window_s = window_for(bounds.end.map_or(10.0, |e| e.as_secs_f64()));
        let scraper = config.metrics_url.clone().map(|url| {
            tokio::spawn(metrics::poll(
                url,
                config.target.model.clone(),
                start,
                Duration::from_secs_f64(window_s),
                stop_rx,
            ))
        });
        let level = run_level(
            Arc::clone(&shared),
            load,
            bounds,
            max_in_flight,
            start,
            seed,
        );
        tokio::pin!(level);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = &mut level => break,
                _ = tick.tick() => progress(&Progress {
                    level: label.clone(),
                    index: index + 1,
                    levels: config.loads.len(),
                    elapsed_s: start.elapsed().as_secs_f64(),
                    warming_up: start.elapsed() < bounds.warmup,
                    sent: shared.sent.load(Ordering::Relaxed),
                    ok: shared.ok.load(Ordering::Relaxed),
                    failed: shared.failed.load(Ordering::Relaxed),
                }),
            }
        }
        let _ = stop_tx.send(true);
        let scrapes = match scraper {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let mut samples = std::mem::take(
            &mut *shared
                .samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for c in [&shared.sent, &shared.ok, &shared.failed] {
            c.store(0, Ordering::Relaxed);
        }
        samples.sort_by(|a, b| a.t_send_s.total_cmp(&b.t_send_s));
        let info = LevelInfo {
            label,
            mode: load.mode(),
            concurrency: match load {
                Load::Closed { concurrency } => Some(*concurrency),
                _ => None,
            },
            offered_rate: load.offered_rate(),
            warmup_s: bounds.warmup.as_secs_f64(),
            slo_ms: config.slo_ms,
        };
        let mut summary = LevelSummary::new(&info, &samples);
        let mut points = timeline(&samples, window_s);
        summary.batch_size_mean = metrics::apply(&scrapes, &mut points, window_s, info.warmup_s);
        levels.push(LevelResult {
            summary,
            timeline: points,
            samples,
        });
    }
    Ok(BenchReport {
        target: TargetInfo::new(&config.target),
        warmup_s: config.warmup.as_secs_f64(),
        levels,
    })
}

/// The input options to plan with, and the sequence lengths to prepare: every length
/// the distribution can produce plus every length a trace names. A trace with lengths
/// but no `--seq-len-dist` uses its longest length for arrivals that name none.
fn sequence_lengths(config: &BenchConfig) -> (InputOptions, Vec<usize>) {
    let mut opts = config.inputs.clone();
    let mut lengths: Vec<usize> = config
        .loads
        .iter()
        .filter_map(|l| match l {
            Load::Trace(t) => Some(t.entries.iter().filter_map(|e| e.seq_len)),
            _ => None,
        })
        .flatten()
        .collect();
    if opts.seq_len.is_none()
        && let Some(&longest) = lengths.iter().max()
    {
        opts.seq_len = Some(SeqLenDist::Fixed(longest));
    }
    if let Some(dist) = opts.seq_len {
        let (min, max) = dist.bounds();
        if max - min < 4096 {
            lengths.extend(min..=max);
        } else {
            lengths.push(max);
        }
    }
    lengths.sort_unstable();
    lengths.dedup();
    (opts, lengths)
}

async fn run_level(
    shared: Arc<Shared>,
    load: &Load,
    bounds: Bounds,
    max_in_flight: usize,
    start: Instant,
    seed: u64,
) {
    match load {
        Load::Closed { concurrency } => closed_loop(shared, *concurrency, bounds, start).await,
        Load::Poisson { .. } | Load::Burst(_) | Load::Trace(_) => {
            let arrivals = Arrivals::new(load, seed);
            open_loop(shared, arrivals, bounds, max_in_flight, start).await;
        }
    }
}

async fn closed_loop(shared: Arc<Shared>, concurrency: usize, bounds: Bounds, start: Instant) {
    let next = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (shared, next, measured) = (
                Arc::clone(&shared),
                Arc::clone(&next),
                Arc::clone(&measured),
            );
            tokio::spawn(async move {
                loop {
                    let now = start.elapsed();
                    if bounds.end.is_some_and(|end| now >= end) {
                        break;
                    }
                    if now >= bounds.warmup
                        && let Some(limit) = bounds.requests
                        && measured.fetch_add(1, Ordering::Relaxed) >= limit
                    {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    let seq_len = shared.seq_len(i, None);
                    let sample = shared.send(i, seq_len, start, Instant::now()).await;
                    shared.record(sample);
                }
            })
        })
        .collect();
    for t in tasks {
        // A send task does not panic; if one did, the others' samples still count.
        let _ = t.await;
    }
}

async fn open_loop(
    shared: Arc<Shared>,
    arrivals: Arrivals,
    bounds: Bounds,
    max_in_flight: usize,
    start: Instant,
) {
    let permits = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(permits as usize));
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let dispatcher = {
        let (shared, slots) = (Arc::clone(&shared), Arc::clone(&slots));
        move || {
            let mut measured = 0u64;
            for (i, arrival) in (0u64..).zip(arrivals) {
                let offset = Duration::from_secs_f64(arrival.t_s);
                if bounds.end.is_some_and(|end| offset >= end) {
                    break;
                }
                if offset >= bounds.warmup {
                    if bounds.requests.is_some_and(|limit| measured >= limit) {
                        break;
                    }
                    measured += 1;
                }
                let due = start + offset;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                shared.sent.fetch_add(1, Ordering::Relaxed);
                let seq_len = shared.seq_len(i, arrival.seq_len);
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => {
                        let shared = Arc::clone(&shared);
                        runtime.spawn(async move {
                            let sample = shared.send(i, seq_len, start, due).await;
                            shared.record(sample);
                            drop(permit);
                        });
                    }
                    Err(_) => shared.record(Sample {
                        t_send_s: arrival.t_s,
                        latency_s: 0.0,
                        lag_s: 0.0,
                        seq_len: u32::try_from(seq_len).ok().filter(|n| *n > 0),
                        error: Some(ErrorKind::Dropped),
                        version: None,
                    }),
                }
            }
            let _ = done_tx.send(());
        }
    };
    // The thread's name shows in `top -H` next to the tokio workers.
    if std::thread::Builder::new()
        .name("bench-arrivals".into())
        .spawn(dispatcher)
        .is_err()
    {
        return;
    }
    // Err only if the dispatcher died, which also means it sends no more.
    let _ = done_rx.await;
    // Every permit back means every request in flight has been answered or timed out.
    let _ = slots.acquire_many(permits).await;
}
