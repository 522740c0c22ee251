//! Per-request samples and what is computed from them: percentiles (nearest rank),
//! throughput, SLO attainment, errors by kind, and time series for plots.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a request did not succeed. Labels are short and stable (`http_503`,
/// `grpc_unavailable`, `timeout`, `transport`, `dropped`), for tables and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// An HTTP status other than 200.
    Http(u16),
    /// A gRPC status other than OK (the `tonic::Code` as its number).
    Grpc(i32),
    /// No answer within the request timeout.
    Timeout,
    /// The connection failed (refused, reset, closed mid-answer).
    Transport,
    /// Not sent: the open loop already had its maximum of requests in flight. The
    /// arrival still counts, so overload shows up instead of being smoothed away.
    Dropped,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Http(code) => write!(f, "http_{code}"),
            ErrorKind::Grpc(code) => {
                // `Unavailable` -> `grpc_unavailable`, `DeadlineExceeded` -> `grpc_deadline_exceeded`.
                let name = format!("{:?}", tonic::Code::from_i32(*code));
                f.write_str("grpc")?;
                for c in name.chars() {
                    if c.is_ascii_uppercase() {
                        write!(f, "_{}", c.to_ascii_lowercase())?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                Ok(())
            }
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Transport => f.write_str("transport"),
            ErrorKind::Dropped => f.write_str("dropped"),
        }
    }
}

/// One request, as the generator saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the request was due, in seconds after the level started: the scheduled
    /// arrival in an open loop, the send time in a closed loop.
    pub t_send_s: f64,
    /// From `t_send_s` to the end of the answer, in seconds (0 for a dropped request).
    pub latency_s: f64,
    /// How late the generator actually sent it after `t_send_s`, in seconds (its own
    /// overhead; always 0 in a closed loop).
    pub lag_s: f64,
    /// The sequence length used, for models with a variable dimension.
    pub seq_len: Option<u32>,
    /// `None` when the server answered with success.
    pub error: Option<ErrorKind>,
    /// The model version that answered (`model_version` of the response), when it is a
    /// number: which arm of a rollout served the request.
    pub version: Option<u64>,
}

/// Latency percentiles of the successful requests, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl LatencySummary {
    /// Summarises latencies (any unit; the summary keeps it); `None` when empty.
    pub fn from_unsorted(mut values: Vec<f64>) -> Option<LatencySummary> {
        values.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        Some(LatencySummary {
            min: *values.first()?,
            mean,
            p50: percentile(&values, 50.0)?,
            p90: percentile(&values, 90.0)?,
            p95: percentile(&values, 95.0)?,
            p99: percentile(&values, 99.0)?,
            max: *values.last()?,
        })
    }
}

/// The `p`-th percentile (0 < p ≤ 100) of sorted values by the nearest-rank method: the
/// smallest value such that at least p% of the values are ≤ it. Always one of the values,
/// so a p99 of 100 samples is the 99th, not an interpolation; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Generator lag behind the schedule, in milliseconds (open loop only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LagSummary {
    /// Median lag.
    pub p50: f64,
    /// 99th percentile lag.
    pub p99: f64,
    /// Largest lag.
    pub max: f64,
}

/// What one level measured, after warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelSummary {
    /// Short name of the load (`c4`, `poisson200`, `burst200:800:500`, `trace`).
    pub label: String,
    /// `closed`, `poisson`, `burst` or `trace`.
    pub mode: String,
    /// Closed loop: the concurrency.
    pub concurrency: Option<usize>,
    /// Open loop: the mean offered rate, requests per second.
    pub offered_rate: Option<f64>,
    /// Seconds measured: from the end of warm-up to the last answer.
    pub duration_s: f64,
    /// Requests due after warm-up (sent or dropped).
    pub requests: u64,
    /// Of those, answered with success.
    pub ok: u64,
    /// Of those, failed or dropped, by [`ErrorKind`] label.
    pub errors: BTreeMap<String, u64>,
    /// Successful answers per second over `duration_s`.
    pub throughput_rps: f64,
    /// Latency of the successful requests, in milliseconds; `None` when none succeeded.
    pub latency_ms: Option<LatencySummary>,
    /// The latency objective, if one was given.
    pub slo_ms: Option<f64>,
    /// Fraction of requests that succeeded within `slo_ms`; errors and drops count as
    /// misses.
    pub slo_attainment: Option<f64>,
    /// How late the generator sent requests behind their schedule (open loop only): a
    /// p99 well below the server's latency means the generator kept up.
    pub send_lag_ms: Option<LagSummary>,
    /// Mean server batch size over the level, from its metrics, when scraped.
    pub batch_size_mean: Option<f64>,
}

/// How a level ran, for [`LevelSummary::new`].
#[derive(Debug, Clone)]
pub struct LevelInfo {
    /// Load label.
    pub label: String,
    /// Load mode.
    pub mode: &'static str,
    /// Closed loop concurrency.
    pub concurrency: Option<usize>,
    /// Open loop offered rate.
    pub offered_rate: Option<f64>,
    /// Warm-up, in seconds after the level started; earlier samples are left out.
    pub warmup_s: f64,
    /// The latency objective, in milliseconds.
    pub slo_ms: Option<f64>,
}

impl LevelSummary {
    /// Summarises the samples due after warm-up.
    #[allow(clippy::cast_precision_loss)]
    pub fn new(info: &LevelInfo, samples: &[Sample]) -> LevelSummary {
        let measured: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.t_send_s >= info.warmup_s)
            .collect();
        let mut errors = BTreeMap::new();
        let mut latencies = Vec::with_capacity(measured.len());
        let mut lags = Vec::new();
        let mut end_s = info.warmup_s;
        for s in &measured {
            match s.error {
                None => latencies.push(s.latency_s * 1e3),
                Some(kind) => *errors.entry(kind.to_string()).or_insert(0u64) += 1,
            }
            if s.error != Some(ErrorKind::Dropped) {
                lags.push(s.lag_s * 1e3);
            }
            end_s = end_s.max(s.t_send_s + s.latency_s);
        }
        let ok = latencies.len() as u64;
        let requests = measured.len() as u64;
        let duration_s = end_s - info.warmup_s;
        let slo_attainment = info
            .slo_ms
            .filter(|_| requests > 0)
            .map(|slo| latencies.iter().filter(|l| **l <= slo).count() as f64 / requests as f64);
        let send_lag_ms = if info.mode == "closed" {
            None
        } else {
            lags.sort_by(f64::total_cmp);
            Some(LagSummary {
                p50: percentile(&lags, 50.0).unwrap_or(0.0),
                p99: percentile(&lags, 99.0).unwrap_or(0.0),
                max: lags.last().copied().unwrap_or(0.0),
            })
        };
        LevelSummary {
            label: info.label.clone(),
            mode: info.mode.to_string(),
            concurrency: info.concurrency,
            offered_rate: info.offered_rate,
            duration_s,
            requests,
            ok,
            errors,
            throughput_rps: if duration_s > 0.0 {
                ok as f64 / duration_s
            } else {
                0.0
            },
            latency_ms: LatencySummary::from_unsorted(latencies),
            slo_ms: info.slo_ms,
            slo_attainment,
            send_lag_ms,
            batch_size_mean: None,
        }
    }

    /// Requests that failed or were dropped.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One window of a level's time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimePoint {
    /// End of the window, seconds after the level started (warm-up included).
    pub t_s: f64,
    /// Requests due in the window, per second (the offered load).
    pub sent_rps: f64,
    /// Successful answers that completed in the window, per second.
    pub ok_rps: f64,
    /// Latency percentiles of the successful requests due in the window, in ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Mean server batch size in the window, when the server's metrics were scraped.
    pub batch_size: Option<f64>,
}

/// A window length giving about 100 points over `span_s`, at least 0.25 s.
pub fn window_for(span_s: f64) -> f64 {
    (span_s / 100.0).max(0.25)
}

/// Cuts the samples into windows of `window_s` seconds.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn timeline(samples: &[Sample], window_s: f64) -> Vec<TimePoint> {
    // Windows cover the sends; answers arriving after the last send go to the last
    // window instead of a final, mostly empty one that would look like a collapse.
    let end = samples.iter().map(|s| s.t_send_s).fold(0.0, f64::max);
    if window_s <= 0.0 || end <= 0.0 {
        return Vec::new();
    }
    let n = (end / window_s).ceil().max(1.0) as usize;
    let index = |t: f64| ((t / window_s) as usize).min(n - 1);
    let mut sent = vec![0u64; n];
    let mut done = vec![0u64; n];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); n];
    for s in samples {
        let i = index(s.t_send_s);
        sent[i] += 1;
        if s.error.is_none() {
            lat[i].push(s.latency_s * 1e3);
            done[index(s.t_send_s + s.latency_s)] += 1;
        }
    }
    (0..n)
        .map(|i| {
            let l = &mut lat[i];
            l.sort_by(f64::total_cmp);
            TimePoint {
                t_s: (i + 1) as f64 * window_s,
                sent_rps: sent[i] as f64 / window_s,
                ok_rps: done[i] as f64 / window_s,
                p50_ms: percentile(l, 50.0),
                p95_ms: percentile(l, 95.0),
                p99_ms: percentile(l, 99.0),
                batch_size: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_core::random::SplitMix64;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.1), Some(1.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        // Five values: p90 is the 5th (ceil(4.5)), p50 the 3rd.
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 90.0), Some(5.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 50.0), Some(3.0));
    }

    #[test]
    fn summary_percentiles_are_ordered_for_random_data() {
        let mut rng = SplitMix64::new(3);
        for n in [1usize, 2, 10, 1000] {
            let v: Vec<f64> = (0..n).map(|_| rng.next_f64() * 100.0).collect();
            let s = LatencySummary::from_unsorted(v).unwrap();
            assert!(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p95);
            assert!(s.p95 <= s.p99 && s.p99 <= s.max && s.min <= s.mean && s.mean <= s.max);
        }
        assert_eq!(LatencySummary::from_unsorted(Vec::new()), None);
    }

    fn sample(t: f64, latency_ms: f64, error: Option<ErrorKind>) -> Sample {
        Sample {
            t_send_s: t,
            latency_s: latency_ms / 1e3,
            lag_s: 0.0,
            seq_len: None,
            error,
            version: None,
        }
    }

    #[test]
    fn summary_leaves_out_warmup_and_counts_errors_as_slo_misses() {
        let samples = vec![
            sample(0.5, 1000.0, None), // warm-up
            sample(1.0, 10.0, None),
            sample(1.5, 30.0, None),
            sample(2.0, 5.0, Some(ErrorKind::Http(503))),
            sample(2.5, 0.0, Some(ErrorKind::Dropped)),
            sample(2.9, 100.0, None),
        ];
        let info = LevelInfo {
            label: "poisson4".into(),
            mode: "poisson",
            concurrency: None,
            offered_rate: Some(4.0),
            warmup_s: 1.0,
            slo_ms: Some(50.0),
        };
        let s = LevelSummary::new(&info, &samples);
        assert_eq!((s.requests, s.ok, s.failed()), (5, 3, 2));
        assert_eq!(s.errors["http_503"], 1);
        assert_eq!(s.errors["dropped"], 1);
        assert_eq!(s.slo_attainment, Some(2.0 / 5.0));
        let l = s.latency_ms.unwrap();
        assert_eq!((l.min, l.p50, l.max), (10.0, 30.0, 100.0));
        assert!((s.duration_s - 2.0).abs() < 1e-9);
        assert!((s.throughput_rps - 1.5).abs() < 1e-9);
    }

    #[test]
    fn error_labels_are_snake_case() {
        assert_eq!(ErrorKind::Http(503).to_string(), "http_503");
        assert_eq!(
            ErrorKind::Grpc(tonic::Code::Unavailable as i32).to_string(),
            "grpc_unavailable"
        );
        assert_eq!(
            ErrorKind::Grpc(tonic::Code::DeadlineExceeded as i32).to_string(),
            "grpc_deadline_exceeded"
        );
    }

    #[test]
    fn timeline_counts_each_request_once() {
        let samples: Vec<Sample> = (0..40)
            .map(|i| sample(f64::from(i) * 0.05, 20.0, None))
            .collect();
        let points = timeline(&samples, 0.5);
        assert_eq!(points.len(), 4);
        let sent: f64 = points.iter().map(|p| p.sent_rps * 0.5).sum();
        let done: f64 = points.iter().map(|p| p.ok_rps * 0.5).sum();
        assert_eq!((sent, done), (40.0, 40.0));
        assert!(points.iter().all(|p| p.p95_ms == Some(20.0)));
    }
}
