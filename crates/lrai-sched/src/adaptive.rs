//! The adaptive controller: batch size and queue delay chosen online for a latency
//! objective (p95 of server-side latency, queue + compute), with Triton's static
//! settings as the fallback. A pure state machine: every method takes `now`, so tests
//! drive it with synthetic instants and a synthetic cost model.
//!
//! Two loops (`../shared/research/adaptive-batching.md`, section 3):
//! - **Fast path** ([`Controller::decide`]), asked when an instance is idle: gather the
//!   most urgent request's shape group up to `B` rows (other groups are skipped, not
//!   waited behind); send at once when full, when the oldest request has waited `D`, or
//!   when waiting for one more request would push the oldest past its objective by the
//!   cost model; otherwise wait only if the arrival rate says another request is likely
//!   to arrive in time. Busy instances make batches grow on their own (work conserving).
//! - **Slow loop** ([`Controller::tick`]), once per window (1 s or 256 completions):
//!   AIMD on `B` and `D` from the window's p95 and batch fill (Clipper), bounded by what
//!   the cost model says fits in the objective.
//!
//! The cost model is `cost(u) = fixed + per_element · u` over `u` = input elements in the
//! batch (rows × sequence length for variable-length models), fitted by weighted least
//! squares to per-size EWMAs: seeded from the warm-up runs, refined by every executed
//! batch.
//!
//! Fallback to the static policy: when the median relative prediction error of a window
//! exceeds `max_error` (the model no longer describes the machine), when SLO attainment
//! stays below `min_attainment` for `collapse_windows` windows, or when the controller's
//! own output is invalid (not finite, out of range). While fallen back it keeps fitting
//! the cost model on the static batches and re-enables itself after `cooldown_windows`
//! once predictions are good again for two windows in a row.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lrai_monitor::{AdaptiveStatus, BatchReason, FallbackReason};

use crate::policy::{BatchPolicy, Candidate, Decision, decide};

/// The objective and the controller's knobs (config.pbtxt `parameters`, see the README).
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveConfig {
    /// p95 target of server-side latency (queue + compute): `lrai.slo_p95_ms`.
    pub slo: Duration,
    /// Subtracted from every slack computation (scheduling jitter, output copy).
    pub margin: Duration,
    /// Upper bound on the queue delay the controller may choose.
    pub max_delay: Duration,
    /// Slow-loop window length.
    pub window: Duration,
    /// A window also closes after this many completed requests.
    pub window_requests: usize,
    /// Fall back when the window's median relative prediction error exceeds this.
    pub max_error: f64,
    /// Re-enable only when the error is below this (two windows in a row).
    pub recover_error: f64,
    /// SLO attainment below this counts as collapsed.
    pub min_attainment: f64,
    /// Consecutive collapsed windows before falling back.
    pub collapse_windows: u32,
    /// Windows spent on static settings before trying adaptive again.
    pub cooldown_windows: u32,
    /// Warm-up measurements: (input elements of the batch, its compute time).
    pub profile: Vec<(u64, Duration)>,
}

impl AdaptiveConfig {
    /// Defaults for an objective: margin 5 % of it, delay cap a quarter of it.
    pub fn for_slo(slo: Duration) -> AdaptiveConfig {
        AdaptiveConfig {
            slo,
            margin: slo / 20,
            max_delay: slo / 4,
            window: Duration::from_secs(1),
            window_requests: 256,
            max_error: 0.5,
            recover_error: 0.25,
            min_attainment: 0.5,
            collapse_windows: 3,
            cooldown_windows: 5,
            profile: Vec::new(),
        }
    }
}

/// Batch cost as a linear function of input elements.
#[derive(Debug, Clone, Default)]
pub struct CostModel {
    /// log2 bucket of elements → (EWMA elements, EWMA µs, samples).
    points: BTreeMap<u32, (f64, f64, u64)>,
    fixed_us: f64,
    per_element_us: f64,
}

const EWMA: f64 = 0.2;

impl CostModel {
    /// Records one executed batch.
    pub fn observe(&mut self, elements: u64, took: Duration) {
        let u = elements.max(1) as f64;
        let t = took.as_secs_f64() * 1e6;
        let bucket = 64 - elements.max(1).leading_zeros();
        let e = self.points.entry(bucket).or_insert((u, t, 0));
        if e.2 > 0 {
            e.0 += EWMA * (u - e.0);
            e.1 += EWMA * (t - e.1);
        }
        e.2 += 1;
    }

    /// Refits the line (after a batch of observations).
    pub fn refit(&mut self) {
        let pts: Vec<(f64, f64, f64)> = self
            .points
            .values()
            .map(|&(u, t, n)| (u, t, (n as f64).min(20.0)))
            .collect();
        let w: f64 = pts.iter().map(|p| p.2).sum();
        if pts.is_empty() || w <= 0.0 {
            return;
        }
        let mu = pts.iter().map(|p| p.0 * p.2).sum::<f64>() / w;
        let mt = pts.iter().map(|p| p.1 * p.2).sum::<f64>() / w;
        let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - mu) * (p.0 - mu)).sum();
        let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - mu) * (p.1 - mt)).sum();
        let (fixed, slope) = if pts.len() < 2 || sxx <= f64::EPSILON {
            // One size seen: assume mostly proportional cost, which over-predicts bigger
            // batches a little (the safe side) until a second size is observed.
            (0.2 * mt, 0.8 * mt / mu.max(1.0))
        } else {
            let slope = (sxy / sxx).max(0.0);
            ((mt - slope * mu).max(0.0), slope)
        };
        if fixed.is_finite() && slope.is_finite() {
            self.fixed_us = fixed;
            self.per_element_us = slope;
        }
    }

    /// Predicted compute time of a batch of `elements` input elements.
    pub fn predict(&self, elements: u64) -> Duration {
        let us = self.fixed_us + self.per_element_us * elements as f64;
        if us.is_finite() && us > 0.0 {
            Duration::from_secs_f64(us / 1e6)
        } else {
            Duration::ZERO
        }
    }

    /// Whether any batch has been observed.
    pub fn is_fitted(&self) -> bool {
        !self.points.is_empty()
    }

    /// (fixed µs, µs per element).
    pub fn coefficients(&self) -> (f64, f64) {
        (self.fixed_us, self.per_element_us)
    }
}

/// What the controller currently lets the batcher do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Largest batch in rows.
    pub max_batch: usize,
    /// Longest the oldest request may wait for a bigger batch.
    pub max_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Adaptive,
    Static {
        reason: FallbackReason,
        windows: u32,
    },
}

/// One slow-loop window's observations.
#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    latencies: Vec<Duration>,
    errors: Vec<f64>,
    batches: u64,
    rows: u64,
    elements: u64,
    /// Batches dispatched while more requests were left in the queue.
    backlogged: u64,
    arrivals: u64,
    demoted: u64,
}

/// The controller of one model version (owned by its batcher thread).
#[derive(Debug)]
pub struct Controller {
    cfg: AdaptiveConfig,
    static_policy: BatchPolicy,
    b_max: usize,
    params: Params,
    cost: CostModel,
    mode: Mode,
    win: Window,
    /// Arrivals per second (EWMA over windows, plus the current window's).
    rate: f64,
    up_streak: u32,
    collapsed: u32,
    good_predictions: u32,
    fallbacks: u64,
    last_status: Option<AdaptiveStatus>,
}

impl Controller {
    /// A controller for `policy`'s model (its `max_batch_size` bounds every batch).
    pub fn new(cfg: AdaptiveConfig, policy: &BatchPolicy) -> Controller {
        let mut cost = CostModel::default();
        for &(elements, took) in &cfg.profile {
            cost.observe(elements, took);
        }
        cost.refit();
        let b_max = policy.max_batch_size.max(1);
        let mut c = Controller {
            params: Params {
                max_batch: b_max,
                max_delay: Duration::ZERO,
            },
            cfg,
            static_policy: policy.clone(),
            b_max,
            cost,
            mode: Mode::Adaptive,
            win: Window::default(),
            rate: 0.0,
            up_streak: 0,
            collapsed: 0,
            good_predictions: 0,
            fallbacks: 0,
            last_status: None,
        };
        c.params = c.initial_params(None);
        c
    }

    /// Starting settings: the largest batch whose predicted cost fits in half the
    /// objective (a batch may have to wait for the one before it), and a delay that is a
    /// tenth of the objective, both within their caps.
    fn initial_params(&self, per_row: Option<u64>) -> Params {
        let per_row = per_row.or_else(|| self.profile_per_row()).unwrap_or(1);
        let budget = self.cfg.slo.saturating_sub(self.cfg.margin) / 2;
        let mut b = 1;
        if self.cost.is_fitted() {
            while b < self.b_max && self.cost.predict(per_row * (b as u64 + 1)) <= budget {
                b += 1;
            }
        } else {
            b = self.b_max;
        }
        Params {
            max_batch: b,
            max_delay: (self.cfg.slo / 10).min(self.delay_cap(b, per_row)),
        }
    }

    fn profile_per_row(&self) -> Option<u64> {
        self.cfg
            .profile
            .iter()
            .map(|p| p.0)
            .filter(|&u| u > 0)
            .min()
    }

    /// The most the oldest request may wait: the configured cap, and no more than the
    /// objective leaves after running a full batch.
    fn delay_cap(&self, batch: usize, per_row: u64) -> Duration {
        let run = self.cost.predict(per_row.saturating_mul(batch as u64));
        self.cfg
            .max_delay
            .min(self.cfg.slo.saturating_sub(run + self.cfg.margin))
    }

    /// Whether adaptive settings are in force (false while fallen back).
    pub fn is_adaptive(&self) -> bool {
        self.mode == Mode::Adaptive
    }

    /// Current settings.
    pub fn params(&self) -> Params {
        self.params
    }

    /// The objective.
    pub fn slo(&self) -> Duration {
        self.cfg.slo
    }

    /// The objective less the safety margin: what every decision aims at.
    pub fn target(&self) -> Duration {
        self.cfg.slo.saturating_sub(self.cfg.margin)
    }

    /// The cost model.
    pub fn cost(&self) -> &CostModel {
        &self.cost
    }

    /// `n` requests were moved behind the others: they can no longer meet the objective.
    pub fn on_demoted(&mut self, n: usize) {
        self.win.demoted += n as u64;
    }

    /// A request arrived.
    pub fn on_arrival(&mut self, now: Instant) {
        self.win.started.get_or_insert(now);
        self.win.arrivals += 1;
    }

    /// A batch finished: `elements` input elements in `rows` rows, dispatched at
    /// `dispatched` with `predicted` cost, for requests queued at `enqueued`;
    /// `backlogged` = requests were left waiting when it was sent.
    pub fn on_batch_done(&mut self, now: Instant, done: &BatchDone<'_>) {
        self.win.started.get_or_insert(now);
        let took = now.saturating_duration_since(done.dispatched);
        if !done.predicted.is_zero() && !took.is_zero() {
            let err =
                (took.as_secs_f64() - done.predicted.as_secs_f64()).abs() / took.as_secs_f64();
            self.win.errors.push(err);
        }
        self.cost.observe(done.elements, took);
        self.win.batches += 1;
        self.win.rows += done.rows as u64;
        self.win.elements += done.elements;
        self.win.backlogged += u64::from(done.backlogged);
        self.win.latencies.extend(
            done.enqueued
                .iter()
                .map(|&e| now.saturating_duration_since(e)),
        );
    }

    /// Closes the window when it is due; returns the new status to publish, and a
    /// fallback reason when it fell back in this window.
    pub fn tick(&mut self, now: Instant) -> Option<(AdaptiveStatus, Option<FallbackReason>)> {
        let started = self.win.started?;
        let elapsed = now.saturating_duration_since(started);
        if elapsed < self.cfg.window && self.win.latencies.len() < self.cfg.window_requests {
            return None;
        }
        let win = std::mem::take(&mut self.win);
        self.win.started = Some(now);
        let secs = elapsed.as_secs_f64().max(1e-3);
        let rate = win.arrivals as f64 / secs;
        self.rate = if self.rate == 0.0 {
            rate
        } else {
            0.5 * self.rate + 0.5 * rate
        };
        self.cost.refit();
        let fell = self.close_window(&win);
        let status = self.status(&win);
        self.last_status = Some(status.clone());
        Some((status, fell))
    }

    /// The slow loop proper.
    fn close_window(&mut self, win: &Window) -> Option<FallbackReason> {
        let error = median(&win.errors);
        let n = win.latencies.len();
        let p95 = percentile(&win.latencies, 0.95);
        let misses = win.latencies.iter().filter(|&&l| l > self.cfg.slo).count();
        let attainment = if n == 0 {
            1.0
        } else {
            1.0 - misses as f64 / n as f64
        };
        let per_row = win
            .elements
            .checked_div(win.rows)
            .map(|u| u.max(1))
            .or_else(|| self.profile_per_row())
            .unwrap_or(1);
        let predictions_good =
            win.errors.len() >= 4 && error.is_some_and(|e| e < self.cfg.recover_error);
        if predictions_good {
            self.good_predictions += 1;
        } else if !win.errors.is_empty() {
            self.good_predictions = 0;
        }
        match self.mode {
            Mode::Static { reason, windows } => {
                let windows = windows + 1;
                self.mode = Mode::Static { reason, windows };
                if windows >= self.cfg.cooldown_windows && self.good_predictions >= 2 {
                    tracing::info!(
                        reason = reason.as_str(),
                        "adaptive batching re-enabled: predictions match observed batch times again"
                    );
                    self.mode = Mode::Adaptive;
                    self.collapsed = 0;
                    self.up_streak = 0;
                    self.params = self.initial_params(Some(per_row));
                }
                return None;
            }
            Mode::Adaptive => {}
        }
        if win.errors.len() >= 8 && error.is_some_and(|e| e > self.cfg.max_error) {
            return Some(self.fall_back(FallbackReason::Prediction));
        }
        let backlog = win.backlogged as f64 / win.batches.max(1) as f64;
        // Misses while most batches leave requests behind are overload, which static
        // settings would not cure; only misses with capacity to spare are the
        // controller's fault.
        if n > 0 && attainment < self.cfg.min_attainment && backlog < 0.5 {
            self.collapsed += 1;
            if self.collapsed >= self.cfg.collapse_windows {
                return Some(self.fall_back(FallbackReason::Slo));
            }
        } else {
            self.collapsed = 0;
        }
        if n == 0 {
            // Nothing finished: waiting buys nothing when nothing arrives.
            self.params.max_delay /= 2;
            return None;
        }
        let slo = self.cfg.slo.as_secs_f64();
        let p95 = p95.as_secs_f64();
        let fill = win.rows as f64 / (win.batches.max(1) as f64 * self.params.max_batch as f64);
        let mut b = self.params.max_batch;
        let mut d = self.params.max_delay;
        if p95 > 0.95 * slo || attainment < 0.95 {
            // Multiplicative decrease, at once: the objective is being missed.
            b = (b * 3 / 4).max(1);
            d /= 2;
            self.up_streak = 0;
        } else if p95 < 0.8 * slo && (fill >= 0.75 || backlog > 0.5) {
            // Additive increase, only after two windows agree.
            self.up_streak += 1;
            if self.up_streak >= 2 {
                b = (b + (b / 4).max(1)).min(self.b_max);
                d += self.cfg.slo / 20;
                self.up_streak = 0;
            }
        } else if fill < 0.5 && backlog < 0.1 {
            // Batches are not filling and nothing waits: shorter waits buy latency.
            d /= 2;
            self.up_streak = 0;
        }
        let cap = self.delay_cap(b, per_row);
        let next = Params {
            max_batch: b.clamp(1, self.b_max),
            max_delay: d.min(cap),
        };
        if !self.valid(next) {
            return Some(self.fall_back(FallbackReason::Stalled));
        }
        self.params = next;
        None
    }

    fn valid(&self, p: Params) -> bool {
        let (a, b) = self.cost.coefficients();
        p.max_batch >= 1
            && p.max_batch <= self.b_max
            && p.max_delay <= self.cfg.max_delay
            && a.is_finite()
            && b.is_finite()
    }

    /// Hands batching to the static settings.
    pub fn fall_back(&mut self, reason: FallbackReason) -> FallbackReason {
        if self.mode == Mode::Adaptive {
            tracing::warn!(
                reason = reason.as_str(),
                "adaptive batching fell back to the model's static settings"
            );
            self.fallbacks += 1;
        }
        self.mode = Mode::Static { reason, windows: 0 };
        self.good_predictions = 0;
        reason
    }

    fn status(&self, win: &Window) -> AdaptiveStatus {
        let n = win.latencies.len();
        let misses = win.latencies.iter().filter(|&&l| l > self.cfg.slo).count();
        let (fixed, per) = self.cost.coefficients();
        let (mode, fallback_reason) = match self.mode {
            Mode::Adaptive => ("adaptive", None),
            Mode::Static { reason, .. } => ("static", Some(reason)),
        };
        AdaptiveStatus {
            mode,
            fallback_reason,
            slo: self.cfg.slo,
            max_batch_size: self.params.max_batch,
            max_queue_delay: self.params.max_delay,
            cost_fixed_us: fixed,
            cost_per_element_us: per,
            prediction_error: median(&win.errors).unwrap_or(0.0),
            attainment: if n == 0 {
                1.0
            } else {
                1.0 - misses as f64 / n as f64
            },
            window_p95: percentile(&win.latencies, 0.95),
            window_requests: n as u64,
            arrival_rate: self.rate,
            window_demoted: win.demoted,
            fallbacks: self.fallbacks,
        }
    }

    /// The fast path: what to send to an idle instance. In static mode, exactly the
    /// static policy.
    pub fn decide(&self, now: Instant, queue: &[Candidate]) -> Decision {
        if !self.is_adaptive() {
            return decide(now, &self.static_policy, queue);
        }
        decide_adaptive(
            now,
            self.params,
            self.b_max,
            &self.cost,
            self.rate,
            self.target(),
            queue,
        )
    }
}

/// One finished batch, as the batcher saw it.
#[derive(Debug)]
pub struct BatchDone<'a> {
    /// Input elements in the batch.
    pub elements: u64,
    /// Rows in the batch.
    pub rows: usize,
    /// When it was handed to the instance.
    pub dispatched: Instant,
    /// What the cost model predicted then.
    pub predicted: Duration,
    /// When each of its requests was queued.
    pub enqueued: &'a [Instant],
    /// Whether requests were left waiting when it was sent.
    pub backlogged: bool,
}

/// The adaptive fast path (see the module docs). `target` is the objective minus the
/// margin; `rate` is arrivals per second; `b_max` the model's largest batch.
///
/// The batch takes the most urgent request's shape group in service order (given-up
/// requests last, see [`late_set`]), up to `b_max` rows, only while the batch would
/// still finish within the objective of every on-time member and costs less than
/// running the newcomer separately (padding can cost more than it saves): under a backlog,
/// batches grow to what the deadlines allow (work conserving), not just to the tuned
/// size. The tuned size `params.max_batch` and delay only decide whether a batch that
/// is not there yet is worth waiting for.
pub fn decide_adaptive(
    now: Instant,
    params: Params,
    b_max: usize,
    cost: &CostModel,
    rate: f64,
    target: Duration,
    queue: &[Candidate],
) -> Decision {
    let Some(first) = queue.first() else {
        return Decision::Empty;
    };
    let key = first.shape_key;
    let b_max = b_max.max(1);
    let (mut rows, mut count) = (0usize, 0usize);
    let mut size = BatchSize::default();
    // Earliest objective among on-time members, and the oldest of them.
    let mut due: Option<Instant> = None;
    let mut oldest: Option<Instant> = None;
    let mut stopped = false;
    for c in queue.iter().filter(|c| c.shape_key == key) {
        let c_due = (!c.late).then(|| c.enqueued + target);
        let due_with = match (due, c_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let with = size.with(c);
        if count > 0 {
            let batch = cost.predict(with.elements());
            let too_slow = due_with.is_some_and(|d| now + batch > d);
            // Padding to a longer member can cost more than batching saves.
            let not_worth = batch > cost.predict(size.elements()) + cost.predict(c.elements);
            if rows + c.rows > b_max || too_slow || not_worth {
                stopped = true;
                break;
            }
        }
        rows += c.rows;
        size = with;
        count += 1;
        due = due_with;
        if !c.late {
            oldest = Some(oldest.map_or(c.enqueued, |o: Instant| o.min(c.enqueued)));
        }
        if rows >= b_max {
            stopped = true;
            break;
        }
    }
    let elements = size.elements();
    let send = Decision::Send {
        count,
        reason: BatchReason::Adaptive,
        key: Some(key),
    };
    // Only late requests: nothing to wait for.
    let (Some(due), Some(oldest)) = (due, oldest) else {
        return send;
    };
    if stopped || rows >= params.max_batch || params.max_delay.is_zero() {
        return send;
    }
    let by_delay = oldest + params.max_delay;
    // Waiting for one more request of this size: the batch must still finish in time.
    let per_request = elements / count.max(1) as u64;
    let bigger = cost.predict(elements + per_request);
    let Some(latest_start) = due.checked_sub(bigger) else {
        return send;
    };
    let until = by_delay.min(latest_start);
    if now >= until || rate <= 0.0 {
        return send;
    }
    // Only wait if another request is likely to arrive before we must send.
    let gap = Duration::from_secs_f64((1.0 / rate).min(3600.0));
    if now + gap > until {
        return send;
    }
    Decision::Wait { until }
}

/// Input elements of a batch being formed, padded members counted at the longest
/// member's length.
#[derive(Debug, Clone, Copy, Default)]
struct BatchSize {
    /// Elements of members that are not padded.
    plain: u64,
    /// Elements per unit of length, summed over padded members.
    per_len: u64,
    longest: u64,
}

impl BatchSize {
    fn with(self, c: &Candidate) -> BatchSize {
        let mut s = self;
        if c.len == 0 {
            s.plain += c.elements;
        } else {
            let len = c.len as u64;
            s.per_len += c.elements / len;
            s.longest = s.longest.max(len);
        }
        s
    }

    fn elements(self) -> u64 {
        self.plain + self.per_len * self.longest
    }
}

/// One queued request as [`late_set`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// When it must be done.
    pub due: Instant,
    /// Its predicted cost run alone.
    pub cost: Duration,
    /// Whether it may be given up (requests with their own deadline may not).
    pub movable: bool,
}

/// Which requests to give up so that as many as possible of the rest finish on time:
/// Moore–Hodgson's algorithm (optimal for one machine, jobs in deadline order): add
/// jobs in order; whenever the last would finish late, drop the costliest kept so far,
/// the youngest among equals. Sacrificing one long request to save several short ones
/// is what a p95 objective wants. Among equal costs the youngest goes because it is
/// last in line anyway: when the prediction was pessimistic and no one else arrives, it
/// runs exactly when it would have. The schedule starts at `start` on `parallel`
/// instances (approximated as one `parallel` times faster). Returns the indices to give
/// up, ascending; it runs on every batcher wake-up, so when all are on time (the usual
/// case) it allocates nothing.
pub fn late_set(start: Instant, parallel: usize, jobs: &[Job]) -> Vec<usize> {
    let parallel = u32::try_from(parallel.max(1)).unwrap_or(u32::MAX);
    let mut end = start;
    let all_on_time = jobs.iter().all(|j| {
        end += j.cost / parallel;
        end <= j.due
    });
    if all_on_time {
        return Vec::new();
    }
    let mut give_up = Vec::new();
    // (cost, index): the costliest first, the youngest among equal costs.
    let mut kept: std::collections::BinaryHeap<(Duration, usize)> =
        std::collections::BinaryHeap::new();
    let mut t = start;
    for (i, j) in jobs.iter().enumerate() {
        let c = j.cost / parallel;
        t += c;
        if j.movable {
            kept.push((c, i));
        }
        if t > j.due
            && let Some((c_max, k)) = kept.pop()
        {
            give_up.push(k);
            t = t.checked_sub(c_max).unwrap_or(start);
        }
    }
    give_up.sort_unstable();
    give_up
}

fn percentile(xs: &[Duration], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let mut v = xs.to_vec();
    v.sort_unstable();
    // Nearest rank, in integers: ceil(len × q) with q in thousandths.
    let q = if q.is_finite() {
        q.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let permille = (0..=1000usize)
        .find(|&p| p as f64 >= q * 1000.0)
        .unwrap_or(1000);
    let i = (v.len() * permille).div_ceil(1000).clamp(1, v.len()) - 1;
    v[i]
}

fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

#[cfg(test)]
#[path = "adaptive_tests.rs"]
mod tests;
