//! What one evaluation window saw: per arm, requests, server-side errors and latencies;
//! and the output comparisons made on shadowed or sampled requests. Pure data, fed by the
//! request path and read by the gates.

use std::time::{Duration, Instant};

/// Latency samples kept per arm and window; past this, counts go on but latencies are
/// not stored (a window of a day at high rate would otherwise grow without bound).
pub const MAX_LATENCY_SAMPLES: usize = 100_000;

/// Which version answered (or ran) a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    /// The version serving before the rollout.
    Baseline,
    /// The version being rolled out.
    Candidate,
}

impl Arm {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Baseline => "baseline",
            Arm::Candidate => "candidate",
        }
    }
}

/// One arm's requests in a window.
#[derive(Debug, Clone, Default)]
pub struct ArmWindow {
    /// Requests run (answered or mirrored).
    pub requests: u64,
    /// Of those, failed inside the server (not the caller's fault).
    pub errors: u64,
    latencies_us: Vec<f64>,
}

impl ArmWindow {
    /// Records one run.
    pub fn record(&mut self, ok: bool, latency: Duration) {
        self.requests += 1;
        if !ok {
            self.errors += 1;
        } else if self.latencies_us.len() < MAX_LATENCY_SAMPLES {
            self.latencies_us.push(latency.as_secs_f64() * 1e6);
        }
    }

    /// Latency samples (successful runs), µs.
    pub fn latency_samples(&self) -> usize {
        self.latencies_us.len()
    }

    /// Nearest-rank quantile of the latencies, µs (`q` in (0, 1]); `None` without samples.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        quantile(&self.latencies_us, q)
    }
}

/// Nearest-rank quantile (`q` in (0, 1]).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // Nearest rank: ceil(q·n), 1-based.
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil();
    // rank is in 0..=n, a small non-negative integer, so the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let idx = (rank.max(1.0) as usize).min(n) - 1;
    sorted.get(idx).copied()
}

/// How two answers to one request compare (see [`super::compare`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Rows compared (argmax over the last axis, per output).
    pub rows: u64,
    /// Rows whose top-1 class is the same.
    pub rows_agree: u64,
    /// Largest |baseline − candidate| over all elements.
    pub max_abs: f64,
    /// Cosine similarity of the flattened outputs (1 when both are zero).
    pub cosine: f64,
}

/// The comparisons of a window.
#[derive(Debug, Clone, Default)]
pub struct CompareWindow {
    /// Requests compared.
    pub compared: u64,
    /// Requests whose outputs could not be compared (shapes or types differ, or the
    /// other arm failed).
    pub mismatched: u64,
    /// Rows compared.
    pub rows: u64,
    /// Rows with the same top-1 class.
    pub rows_agree: u64,
    /// Largest |difference| seen.
    pub max_abs: f64,
    /// Lowest cosine similarity seen (1 before any comparison).
    pub min_cosine: Option<f64>,
}

impl CompareWindow {
    /// Adds one comparison; `None` when the outputs could not be compared at all, which
    /// counts as a disagreement on one row.
    pub fn record(&mut self, c: Option<Comparison>) {
        self.compared += 1;
        match c {
            Some(c) => {
                self.rows += c.rows;
                self.rows_agree += c.rows_agree;
                self.max_abs = self.max_abs.max(c.max_abs);
                self.min_cosine = Some(self.min_cosine.map_or(c.cosine, |m| m.min(c.cosine)));
            }
            None => {
                self.mismatched += 1;
                self.rows += 1;
                self.max_abs = f64::INFINITY;
                self.min_cosine = Some(self.min_cosine.map_or(-1.0, |m| m.min(-1.0)));
            }
        }
    }

    /// Top-1 agreement over the compared rows; `None` before any comparison.
    pub fn agreement(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.rows_agree as f64 / self.rows as f64)
    }
}

/// Everything one window saw.
#[derive(Debug, Clone)]
pub struct Window {
    /// When it opened.
    pub started: Instant,
    /// Requests routed in it (both arms; mirrors not counted).
    pub routed: u64,
    /// The baseline's runs.
    pub baseline: ArmWindow,
    /// The candidate's runs.
    pub candidate: ArmWindow,
    /// Output comparisons.
    pub compare: CompareWindow,
}

impl Window {
    /// An empty window opened at `now`.
    pub fn new(now: Instant) -> Window {
        Window {
            started: now,
            routed: 0,
            baseline: ArmWindow::default(),
            candidate: ArmWindow::default(),
            compare: CompareWindow::default(),
        }
    }

    /// One arm's runs.
    pub fn arm(&self, arm: Arm) -> &ArmWindow {
        match arm {
            Arm::Baseline => &self.baseline,
            Arm::Candidate => &self.candidate,
        }
    }

    /// One arm's runs, to record into.
    pub fn arm_mut(&mut self, arm: Arm) -> &mut ArmWindow {
        match arm {
            Arm::Baseline => &mut self.baseline,
            Arm::Candidate => &mut self.candidate,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn errors_count_but_keep_no_latency() {
        let mut a = ArmWindow::default();
        a.record(true, Duration::from_micros(10));
        a.record(false, Duration::from_secs(9));
        assert_eq!((a.requests, a.errors, a.latency_samples()), (2, 1, 1));
        assert_eq!(a.quantile_us(0.99), Some(10.0));
    }

    #[test]
    fn an_incomparable_answer_is_a_disagreement() {
        let mut c = CompareWindow::default();
        c.record(Some(Comparison {
            rows: 3,
            rows_agree: 3,
            max_abs: 0.1,
            cosine: 0.99,
        }));
        c.record(None);
        assert_eq!(c.agreement(), Some(0.75));
        assert!(c.max_abs.is_infinite());
        assert_eq!(c.min_cosine, Some(-1.0));
    }
}
