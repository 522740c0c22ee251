//! Triton-shaped statistics (`/v2/models/{m}/stats`, gRPC `ModelStatistics`), kept in
//! atomics next to the Prometheus handles. perf_analyzer reads these around each
//! measurement window for its server-side breakdown.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use crate::metrics::BatchTimings;

/// A (count, total nanoseconds) pair, Triton's `StatisticDuration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duration {
    /// Number of events.
    pub count: u64,
    /// Total time in nanoseconds.
    pub ns: u64,
}

#[derive(Debug, Default)]
pub(crate) struct AtomicDuration {
    count: AtomicU64,
    ns: AtomicU64,
}

fn ns(d: StdDuration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl AtomicDuration {
    pub(crate) fn add(&self, d: StdDuration) {
        self.add_n(d, 1);
    }

    pub(crate) fn add_n(&self, d: StdDuration, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
        self.ns
            .fetch_add(ns(d).saturating_mul(n), Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    pub(crate) success: AtomicDuration,
    pub(crate) fail: AtomicDuration,
    pub(crate) queue: AtomicDuration,
    pub(crate) compute_input: AtomicDuration,
    pub(crate) compute_infer: AtomicDuration,
    pub(crate) compute_output: AtomicDuration,
    pub(crate) inference_count: AtomicU64,
    pub(crate) execution_count: AtomicU64,
    pub(crate) restarts: AtomicU64,
    last_inference_ms: AtomicU64,
}

impl StatCounters {
    pub(crate) fn touch_last_inference(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_inference_ms.store(now, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        model: &str,
        version: &str,
        batches: &BatchStats,
    ) -> ModelStatsSnapshot {
        ModelStatsSnapshot {
            name: model.to_string(),
            version: version.to_string(),
            last_inference_ms: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            success: self.success.get(),
            fail: self.fail.get(),
            queue: self.queue.get(),
            compute_input: self.compute_input.get(),
            compute_infer: self.compute_infer.get(),
            compute_output: self.compute_output.get(),
            restarts: self.restarts.load(Ordering::Relaxed),
            batch_stats: batches.snapshot(),
        }
    }
}

/// Per-batch-size execution statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStat {
    /// Rows in the batch.
    pub batch_size: usize,
    /// Input copy time of batches of this size.
    pub compute_input: Duration,
    /// Run time.
    pub compute_infer: Duration,
    /// Output split time.
    pub compute_output: Duration,
}

/// Batch statistics: a fixed array of atomics for sizes below 256 (the hot path takes no
/// lock), a mutex-guarded list for the rare larger ones.
#[derive(Debug)]
pub(crate) struct BatchStats {
    small: Vec<[AtomicDuration; 3]>,
    large: Mutex<Vec<BatchStat>>,
}

const SMALL: usize = 256;

impl Default for BatchStats {
    fn default() -> Self {
        BatchStats {
            small: (0..SMALL).map(|_| Default::default()).collect(),
            large: Mutex::new(Vec::new()),
        }
    }
}

impl BatchStats {
    pub(crate) fn record(&self, rows: usize, t: BatchTimings) {
        if let Some(slot) = self.small.get(rows) {
            slot[0].add(t.compute_input);
            slot[1].add(t.compute_infer);
            slot[2].add(t.compute_output);
            return;
        }
        let mut large = self
            .large
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = match large.iter().position(|b| b.batch_size == rows) {
            Some(i) => &mut large[i],
            None => {
                large.push(BatchStat {
                    batch_size: rows,
                    compute_input: Duration::default(),
                    compute_infer: Duration::default(),
                    compute_output: Duration::default(),
                });
                let last = large.len() - 1;
                &mut large[last]
            }
        };
        for (d, v) in [
            (&mut entry.compute_input, t.compute_input),
            (&mut entry.compute_infer, t.compute_infer),
            (&mut entry.compute_output, t.compute_output),
        ] {
            d.count += 1;
            d.ns = d.ns.saturating_add(ns(v));
        }
    }

    fn snapshot(&self) -> Vec<BatchStat> {
        let mut out: Vec<BatchStat> = self
            .small
            .iter()
            .enumerate()
            .filter(|(_, s)| s[1].count.load(Ordering::Relaxed) > 0)
            .map(|(size, s)| BatchStat {
                batch_size: size,
                compute_input: s[0].get(),
                compute_infer: s[1].get(),
                compute_output: s[2].get(),
            })
            .collect();
        out.extend(
            self.large
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        out
    }
}

/// One model version's statistics, in Triton's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatsSnapshot {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Milliseconds since the epoch of the last successful inference (0 = never).
    pub last_inference_ms: u64,
    /// Inferences (rows) performed.
    pub inference_count: u64,
    /// Batches executed.
    pub execution_count: u64,
    /// Successful requests and their total duration.
    pub success: Duration,
    /// Failed requests and their total duration.
    pub fail: Duration,
    /// Queue time per request.
    pub queue: Duration,
    /// Input copy time per request.
    pub compute_input: Duration,
    /// Run time per request.
    pub compute_infer: Duration,
    /// Output time per request.
    pub compute_output: Duration,
    /// Instance restarts.
    pub restarts: u64,
    /// Per batch size.
    pub batch_stats: Vec<BatchStat>,
}
