//! The rollout's decision logic, as a pure state machine over an injected clock: requests
//! and comparisons are recorded into the current window; when the window is over
//! (`step_requests` routed, or `step_seconds` passed) the gates judge it, and the
//! rollout progresses to the next step, promotes (all gates pass at 100%), holds the
//! step for another window, or rolls back (a gate failed `threshold` windows in a row).

use std::time::{Duration, Instant};

use super::gates::{Gate, GateInput, GateResult, LatencyReference, MIN_LATENCY_SAMPLES, evaluate};
use super::spec::{Mode, RolloutSpec, WindowLength};
use super::window::{Arm, Comparison, Window};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Running.
    Progressing,
    /// The candidate serves (canary passed every step).
    Promoted,
    /// A gate failed; traffic went back to the baseline.
    RolledBack,
    /// Stopped by `DELETE .../rollout`; traffic went back to the baseline.
    Aborted,
}

impl RolloutState {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Progressing => "progressing",
            RolloutState::Promoted => "promoted",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Aborted => "aborted",
        }
    }

    /// Every state, for metrics.
    pub const ALL: [RolloutState; 4] = [
        RolloutState::Progressing,
        RolloutState::Promoted,
        RolloutState::RolledBack,
        RolloutState::Aborted,
    ];
}

/// What a closed window decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Same step, new window (gates passed in ab/shadow, or failed fewer than
    /// `threshold` times in a row).
    Hold,
    /// Next step of a canary, at this weight (percent).
    Advance {
        /// The new step's index.
        step: usize,
        /// Its weight.
        weight: f64,
    },
    /// All gates passed at 100%: the candidate becomes the served version.
    Promote,
    /// Traffic back to the baseline.
    RollBack {
        /// Which gates failed, with their values.
        reason: String,
    },
}

/// The state machine of one rollout.
#[derive(Debug)]
pub struct RolloutCore {
    spec: RolloutSpec,
    gates: Vec<Box<dyn Gate>>,
    step: usize,
    state: RolloutState,
    window: Window,
    failures_in_a_row: u32,
    last_results: Vec<GateResult>,
    reference: LatencyReference,
    windows_closed: u64,
    reason: String,
}

impl RolloutCore {
    /// A rollout at its first step, its first window opened at `now`.
    pub fn new(spec: RolloutSpec, now: Instant) -> RolloutCore {
        let gates: Vec<Box<dyn Gate>> = spec.gates.iter().map(|g| g.build()).collect();
        let last_results = gates
            .iter()
            .map(|g| GateResult {
                name: g.name(),
                value: None,
                threshold: g.threshold(),
                ok: true,
            })
            .collect();
        RolloutCore {
            spec,
            gates,
            step: 0,
            state: RolloutState::Progressing,
            window: Window::new(now),
            failures_in_a_row: 0,
            last_results,
            reference: LatencyReference::default(),
            windows_closed: 0,
            reason: String::new(),
        }
    }

    /// The spec.
    pub fn spec(&self) -> &RolloutSpec {
        &self.spec
    }

    /// The state.
    pub fn state(&self) -> RolloutState {
        self.state
    }

    /// Index of the current step.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Why it ended ("" while progressing or after promotion).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Windows judged so far.
    pub fn windows_closed(&self) -> u64 {
        self.windows_closed
    }

    /// The gates' verdicts on the last closed window (no values before the first).
    pub fn gate_results(&self) -> &[GateResult] {
        &self.last_results
    }

    /// The current window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The candidate's share of unversioned requests now, percent.
    pub fn weight(&self) -> f64 {
        match self.state {
            RolloutState::Promoted => 100.0,
            RolloutState::RolledBack | RolloutState::Aborted => 0.0,
            RolloutState::Progressing => match self.spec.mode {
                Mode::Shadow => 0.0,
                Mode::Canary | Mode::Ab => self.spec.steps.get(self.step).copied().unwrap_or(0.0),
            },
        }
    }

    /// Records a request answered by `arm`.
    pub fn record_served(&mut self, arm: Arm, ok: bool, latency: Duration) {
        if self.state != RolloutState::Progressing {
            return;
        }
        self.window.routed += 1;
        self.window.arm_mut(arm).record(ok, latency);
    }

    /// Records a run off the served path (a shadow or a comparison sample) on `arm`.
    pub fn record_mirror(&mut self, arm: Arm, ok: bool, latency: Duration) {
        if self.state == RolloutState::Progressing {
            self.window.arm_mut(arm).record(ok, latency);
        }
    }

    /// Records one output comparison (`None`: the answers could not be compared).
    pub fn record_comparison(&mut self, c: Option<Comparison>) {
        if self.state == RolloutState::Progressing {
            self.window.compare.record(c);
        }
    }

    /// Whether the current window is over at `now`.
    pub fn window_due(&self, now: Instant) -> bool {
        self.state == RolloutState::Progressing
            && match self.spec.window {
                WindowLength::Requests(n) => self.window.routed >= n,
                WindowLength::Time(d) => now.saturating_duration_since(self.window.started) >= d,
            }
    }

    /// Closes the window if it is over and decides; `None` while it runs.
    pub fn decide(&mut self, now: Instant) -> Option<Decision> {
        if !self.window_due(now) {
            return None;
        }
        let results: Vec<GateResult> = self
            .gates
            .iter()
            .map(|g| {
                evaluate(
                    g.as_ref(),
                    &GateInput {
                        window: &self.window,
                        reference: self.reference,
                    },
                )
            })
            .collect();
        self.update_reference();
        self.windows_closed += 1;
        self.window = Window::new(now);
        let failed: Vec<&GateResult> = results.iter().filter(|r| !r.ok).collect();
        let decision = if failed.is_empty() {
            self.failures_in_a_row = 0;
            self.after_passing()
        } else {
            self.failures_in_a_row += 1;
            if self.failures_in_a_row >= self.spec.threshold {
                let reason = self.rollback_reason(&failed);
                self.state = RolloutState::RolledBack;
                self.reason.clone_from(&reason);
                Decision::RollBack { reason }
            } else {
                Decision::Hold
            }
        };
        self.last_results = results;
        Some(decision)
    }

    fn after_passing(&mut self) -> Decision {
        if self.spec.mode != Mode::Canary {
            return Decision::Hold;
        }
        if self.step + 1 < self.spec.steps.len() {
            self.step += 1;
            Decision::Advance {
                step: self.step,
                weight: self.weight(),
            }
        } else {
            self.state = RolloutState::Promoted;
            Decision::Promote
        }
    }

    fn rollback_reason(&self, failed: &[&GateResult]) -> String {
        let gates = failed
            .iter()
            .map(|r| {
                let value = r
                    .value
                    .map_or_else(|| "none".to_string(), |v| format!("{v:.4}"));
                let op = if r.name.starts_with("min_") { "<" } else { ">" };
                format!("{} = {value} {op} {}", r.name, r.threshold)
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "gate failed {} window(s) in a row at weight {}% (step {} of {}): {gates}",
            self.failures_in_a_row,
            self.weight(),
            self.step + 1,
            self.spec.steps.len().max(1)
        )
    }

    fn update_reference(&mut self) {
        let b = &self.window.baseline;
        if b.latency_samples() >= MIN_LATENCY_SAMPLES {
            self.reference = LatencyReference {
                p95_us: b.quantile_us(0.95),
                p99_us: b.quantile_us(0.99),
            };
        }
    }

    /// Ends the rollout by request; traffic goes back to the baseline. Returns false when
    /// it had already ended.
    pub fn abort(&mut self, reason: &str) -> bool {
        if self.state != RolloutState::Progressing {
            return false;
        }
        self.state = RolloutState::Aborted;
        self.reason = reason.to_string();
        true
    }

    /// Ends the rollout because something outside the gates went wrong (the candidate
    /// stopped serving); traffic goes back to the baseline.
    pub fn fail(&mut self, reason: &str) -> bool {
        if self.state != RolloutState::Progressing {
            return false;
        }
        self.state = RolloutState::RolledBack;
        self.reason = reason.to_string();
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rollout::routing;

    fn spec(text: &str) -> RolloutSpec {
        RolloutSpec::from_json_text(text).unwrap()
    }

    fn agree(ok: bool) -> Option<Comparison> {
        Some(Comparison {
            rows: 1,
            rows_agree: u64::from(ok),
            max_abs: 0.0,
            cosine: 1.0,
        })
    }

    /// Sends `n` requests through the core the way the server does: route by the
    /// current weight (every k-th to the candidate), compare each candidate answer.
    fn traffic(
        core: &mut RolloutCore,
        n: u64,
        candidate_agrees: bool,
        now: Instant,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        for i in 0..n {
            let w = routing::weight_bp(core.weight());
            let arm = routing::arm_for(routing::sequence_bucket(i), w);
            core.record_served(arm, true, Duration::from_micros(100));
            if arm == Arm::Candidate {
                core.record_mirror(Arm::Baseline, true, Duration::from_micros(100));
                core.record_comparison(agree(candidate_agrees));
            }
            if let Some(d) = core.decide(now) {
                out.push(d);
            }
        }
        out
    }

    #[test]
    fn a_good_canary_walks_the_steps_and_promotes() {
        let now = Instant::now();
        let mut core = RolloutCore::new(
            spec(r#"{"candidate": "2", "steps": [10, 50, 100], "step_requests": 100}"#),
            now,
        );
        assert_eq!(core.weight(), 10.0);
        let d = traffic(&mut core, 300, true, now);
        assert_eq!(
            d,
            vec![
                Decision::Advance {
                    step: 1,
                    weight: 50.0
                },
                Decision::Advance {
                    step: 2,
                    weight: 100.0
                },
                Decision::Promote
            ]
        );
        assert_eq!(core.state(), RolloutState::Promoted);
        assert_eq!(core.weight(), 100.0);
        assert!(core.gate_results().iter().all(|g| g.ok));
    }

    #[test]
    fn a_broken_canary_rolls_back_at_the_first_step_after_threshold_windows() {
        let now = Instant::now();
        let mut core = RolloutCore::new(
            spec(
                r#"{"candidate": "2", "steps": [10, 50, 100], "step_requests": 100, "threshold": 2}"#,
            ),
            now,
        );
        let d = traffic(&mut core, 100, false, now);
        assert_eq!(
            d,
            vec![Decision::Hold],
            "one failed window is not yet a rollback"
        );
        assert_eq!(core.weight(), 10.0);
        let d = traffic(&mut core, 100, false, now);
        let [Decision::RollBack { reason }] = d.as_slice() else {
            panic!("expected a rollback, got {d:?}");
        };
        assert!(reason.contains("min_agreement = 0.0000 < 0.99"), "{reason}");
        assert!(reason.contains("weight 10%"), "{reason}");
        assert_eq!(core.state(), RolloutState::RolledBack);
        assert_eq!(core.weight(), 0.0);
        // Nothing more is recorded or decided once it ended.
        assert!(traffic(&mut core, 500, false, now).is_empty());
    }

    #[test]
    fn a_pass_resets_the_failure_count() {
        let now = Instant::now();
        let mut core = RolloutCore::new(
            spec(
                r#"{"mode": "ab", "weight": 50, "candidate": "2", "step_requests": 10, "threshold": 2}"#,
            ),
            now,
        );
        assert_eq!(traffic(&mut core, 10, false, now), vec![Decision::Hold]);
        assert_eq!(traffic(&mut core, 10, true, now), vec![Decision::Hold]);
        assert_eq!(traffic(&mut core, 10, false, now), vec![Decision::Hold]);
        assert_eq!(core.state(), RolloutState::Progressing);
        assert!(matches!(
            traffic(&mut core, 10, false, now).as_slice(),
            [Decision::RollBack { .. }]
        ));
    }

    #[test]
    fn time_windows_close_on_the_injected_clock() {
        let t0 = Instant::now();
        let mut core = RolloutCore::new(
            spec(r#"{"candidate": "2", "steps": [50, 100], "step_seconds": 30}"#),
            t0,
        );
        traffic(&mut core, 40, true, t0);
        assert_eq!(core.decide(t0 + Duration::from_secs(29)), None);
        assert_eq!(
            core.decide(t0 + Duration::from_secs(30)),
            Some(Decision::Advance {
                step: 1,
                weight: 100.0
            })
        );
        // The new window opened at 30 s.
        assert_eq!(core.decide(t0 + Duration::from_secs(59)), None);
        assert_eq!(
            core.decide(t0 + Duration::from_secs(60)),
            Some(Decision::Promote)
        );
    }

    #[test]
    fn latency_gate_uses_the_baseline_reference_at_full_weight() {
        let t0 = Instant::now();
        let mut core = RolloutCore::new(
            spec(
                r#"{"candidate": "2", "steps": [50, 100], "step_requests": 20, "threshold": 1, "gates": {"max_p99_ratio": 2.0}}"#,
            ),
            t0,
        );
        for i in 0..20 {
            let arm = if i % 2 == 0 {
                Arm::Baseline
            } else {
                Arm::Candidate
            };
            core.record_served(arm, true, Duration::from_micros(100));
        }
        assert!(matches!(core.decide(t0), Some(Decision::Advance { .. })));
        // At 100% the baseline runs nothing; the candidate is 5× slower than the
        // baseline was.
        for _ in 0..20 {
            core.record_served(Arm::Candidate, true, Duration::from_micros(500));
        }
        let Some(Decision::RollBack { reason }) = core.decide(t0) else {
            panic!("expected a rollback");
        };
        assert!(reason.contains("max_p99_ratio = 5.0000 > 2"), "{reason}");
    }

    #[test]
    fn error_gate_rolls_back_shadow() {
        let t0 = Instant::now();
        let mut core = RolloutCore::new(
            spec(r#"{"candidate": "2", "mode": "shadow", "step_requests": 10, "threshold": 1}"#),
            t0,
        );
        assert_eq!(core.weight(), 0.0);
        for _ in 0..10 {
            core.record_served(Arm::Baseline, true, Duration::from_micros(100));
            core.record_mirror(Arm::Candidate, false, Duration::from_micros(100));
        }
        let Some(Decision::RollBack { reason }) = core.decide(t0) else {
            panic!("expected a rollback");
        };
        assert!(
            reason.contains("max_error_rate = 1.0000 > 0.01"),
            "{reason}"
        );
    }

    #[test]
    fn abort_ends_once_and_sends_traffic_back() {
        let t0 = Instant::now();
        let mut core = RolloutCore::new(
            spec(r#"{"candidate": "2", "mode": "ab", "weight": 20}"#),
            t0,
        );
        assert_eq!(core.weight(), 20.0);
        assert!(core.abort("aborted by DELETE"));
        assert!(!core.abort("again"));
        assert_eq!(core.state(), RolloutState::Aborted);
        assert_eq!(core.weight(), 0.0);
        assert_eq!(core.reason(), "aborted by DELETE");
    }
}
