//! One running rollout: both arms' handles (pinned, so both stay loaded until it ends),
//! the weight read lock-free on every request, the state machine behind a short lock,
//! and the bound on mirrors in flight.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lrai_monitor::RolloutMetrics;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::gates::GateResult;
use super::routing::{Router, weight_bp};
use super::spec::{Mode, RolloutSpec};
use super::state::{Decision, RolloutCore, RolloutState};
use super::window::{Arm, Comparison};
use crate::handle::ModelHandle;

/// Mirrors (shadow runs and comparison samples) in flight per rollout; past this a
/// sampled request is not mirrored, so a slow candidate can't pile work up behind the
/// served path.
pub const MAX_MIRRORS_IN_FLIGHT: usize = 32;

/// The arm a request was routed to.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The rollout.
    pub rollout: Arc<ActiveRollout>,
    /// Which arm answers.
    pub arm: Arm,
}

/// A mirror to run off the served path.
#[derive(Debug)]
pub struct Mirror {
    /// The version that runs it.
    pub handle: Arc<ModelHandle>,
    /// Its arm.
    pub arm: Arm,
    /// Holds one of the in-flight slots until dropped.
    pub permit: OwnedSemaphorePermit,
}

/// The rollout status, as `GET .../rollout` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStatus {
    /// Model.
    pub model: String,
    /// Candidate version.
    pub candidate: u64,
    /// Baseline version.
    pub baseline: u64,
    /// Mode.
    pub mode: Mode,
    /// State.
    pub state: RolloutState,
    /// Candidate share now, percent.
    pub weight: f64,
    /// Step index (0-based) and number of steps.
    pub step: (usize, usize),
    /// Gate verdicts on the last closed window.
    pub gates: Vec<GateResult>,
    /// Why it ended.
    pub reason: String,
    /// Windows judged.
    pub windows: u64,
    /// The current window: requests routed, compared, and answered by each arm.
    pub window_routed: u64,
    /// Comparisons in the current window.
    pub window_compared: u64,
    /// Requests answered by each arm since the start (baseline, candidate).
    pub answered: (u64, u64),
    /// Comparisons made since the start.
    pub compared: u64,
    /// Seconds since it started.
    pub elapsed: Duration,
}

/// A rollout in progress (or ended, kept for its status).
#[derive(Debug)]
pub struct ActiveRollout {
    pub(crate) model: String,
    pub(crate) baseline: Arc<ModelHandle>,
    pub(crate) candidate: Arc<ModelHandle>,
    /// The rollout loaded the candidate itself (it is not in the table).
    pub(crate) owns_candidate: bool,
    pub(crate) started: Instant,
    core: Mutex<RolloutCore>,
    weight_bp: AtomicU32,
    router: Router,
    samples: AtomicU64,
    answered: [AtomicU64; 2],
    compared: AtomicU64,
    mirrors: Arc<Semaphore>,
    pub(crate) wake: Notify,
    pub(crate) metrics: RolloutMetrics,
}

impl ActiveRollout {
    pub(crate) fn new(
        spec: RolloutSpec,
        baseline: Arc<ModelHandle>,
        candidate: Arc<ModelHandle>,
        owns_candidate: bool,
        metrics: RolloutMetrics,
    ) -> ActiveRollout {
        let now = Instant::now();
        let core = RolloutCore::new(spec, now);
        let weight = weight_bp(core.weight());
        ActiveRollout {
            model: baseline.name().to_string(),
            baseline,
            candidate,
            owns_candidate,
            started: now,
            core: Mutex::new(core),
            weight_bp: AtomicU32::new(weight),
            router: Router::default(),
            samples: AtomicU64::new(0),
            answered: [AtomicU64::new(0), AtomicU64::new(0)],
            compared: AtomicU64::new(0),
            mirrors: Arc::new(Semaphore::new(MAX_MIRRORS_IN_FLIGHT)),
            wake: Notify::new(),
            metrics,
        }
    }

    /// The model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The handle of an arm.
    pub fn handle(&self, arm: Arm) -> &Arc<ModelHandle> {
        match arm {
            Arm::Baseline => &self.baseline,
            Arm::Candidate => &self.candidate,
        }
    }

    /// Locks the state machine; a panic elsewhere while it was held leaves plain data
    /// that is still consistent, so the lock is taken anyway.
    pub(crate) fn core(&self) -> MutexGuard<'_, RolloutCore> {
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The header (or gRPC metadata key) whose value keeps a caller on one arm.
    pub fn sticky_header(&self) -> String {
        self.core().spec().sticky_header.clone()
    }

    /// The state.
    pub fn state(&self) -> RolloutState {
        self.core().state()
    }

    /// Picks the arm for an unversioned request (`key`: its routing key).
    pub fn route(&self, key: Option<&str>) -> Arm {
        self.router
            .route(key, self.weight_bp.load(Ordering::Acquire))
    }

    /// Publishes the state machine's weight to the request path.
    pub(crate) fn publish_weight(&self, core: &RolloutCore) {
        self.weight_bp
            .store(weight_bp(core.weight()), Ordering::Release);
    }

    /// Whether this request (answered by `served`) should also run on the other arm for
    /// comparison, and a slot to run it in.
    pub fn mirror_for(&self, served: Arm) -> Option<Mirror> {
        let (rate, mode, progressing) = {
            let core = self.core();
            (
                core.spec().sample_rate,
                core.spec().mode,
                core.state() == RolloutState::Progressing,
            )
        };
        let other = match (mode, served) {
            (Mode::Shadow, Arm::Baseline) => Arm::Candidate,
            (Mode::Canary | Mode::Ab, Arm::Candidate) => Arm::Baseline,
            _ => return None,
        };
        if !progressing {
            return None;
        }
        let n = self.samples.fetch_add(1, Ordering::Relaxed);
        if !Router::sample(n, rate) {
            return None;
        }
        let Ok(permit) = Arc::clone(&self.mirrors).try_acquire_owned() else {
            self.metrics.mirror_skipped();
            return None;
        };
        Some(Mirror {
            handle: Arc::clone(self.handle(other)),
            arm: other,
            permit,
        })
    }

    /// Records a request answered by `arm`; `ok` is false for failures inside the
    /// server (not the caller's).
    pub fn record_served(&self, arm: Arm, ok: bool, latency: Duration) {
        self.answered[arm_index(arm)].fetch_add(1, Ordering::Relaxed);
        self.metrics.request(arm.as_str());
        let due = {
            let mut core = self.core();
            core.record_served(arm, ok, latency);
            core.window_due(Instant::now())
        };
        if due {
            self.wake.notify_one();
        }
    }

    /// Records a mirror's run and, when both answers were there, their comparison.
    pub fn record_mirror(
        &self,
        arm: Arm,
        ok: bool,
        latency: Duration,
        c: Option<Option<Comparison>>,
    ) {
        let mut core = self.core();
        core.record_mirror(arm, ok, latency);
        if let Some(c) = c {
            core.record_comparison(c);
            self.compared.fetch_add(1, Ordering::Relaxed);
            self.metrics.compared();
        }
    }

    /// Closes the window if due; publishes the new weight in the same critical section
    /// as the decision, so routing changes the moment the decision is made.
    pub(crate) fn decide(&self, now: Instant) -> Option<(Decision, RolloutStatus)> {
        let mut core = self.core();
        let decision = core.decide(now)?;
        self.publish_weight(&core);
        let status = self.status_of(&core);
        Some((decision, status))
    }

    /// Ends the rollout by request; false when it had already ended.
    pub(crate) fn abort(&self, reason: &str) -> bool {
        let mut core = self.core();
        let ended = core.abort(reason);
        self.publish_weight(&core);
        drop(core);
        self.wake.notify_one();
        ended
    }

    /// The status now.
    pub fn status(&self) -> RolloutStatus {
        let core = self.core();
        self.status_of(&core)
    }

    fn status_of(&self, core: &RolloutCore) -> RolloutStatus {
        RolloutStatus {
            model: self.model.clone(),
            candidate: self.candidate.version(),
            baseline: self.baseline.version(),
            mode: core.spec().mode,
            state: core.state(),
            weight: core.weight(),
            step: (core.step(), core.spec().steps.len()),
            gates: core.gate_results().to_vec(),
            reason: core.reason().to_string(),
            windows: core.windows_closed(),
            window_routed: core.window().routed,
            window_compared: core.window().compare.compared,
            answered: (
                self.answered[0].load(Ordering::Relaxed),
                self.answered[1].load(Ordering::Relaxed),
            ),
            compared: self.compared.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }

    /// Publishes position, state and gate values as metrics.
    pub(crate) fn export(&self, status: &RolloutStatus) {
        let step = if status.mode == Mode::Shadow {
            0
        } else {
            i64::try_from(status.step.0 + 1).unwrap_or(i64::MAX)
        };
        self.metrics.position(step, status.weight);
        let all: Vec<&str> = RolloutState::ALL.iter().map(|s| s.as_str()).collect();
        self.metrics.state(status.state.as_str(), &all);
        for g in &status.gates {
            self.metrics.gate(g.name, g.value, g.ok);
        }
    }
}

fn arm_index(arm: Arm) -> usize {
    match arm {
        Arm::Baseline => 0,
        Arm::Candidate => 1,
    }
}
