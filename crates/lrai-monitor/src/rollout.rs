//! `lrai_rollout_*`: where a rollout is (step, weight, state), what its gates measured,
//! how it ended, and how requests split between the arms. Labels: `model`, plus `arm`,
//! `gate`, `state` or `outcome` (all bounded sets). Per-version request metrics already
//! carry `version`, so each arm's latency and errors are the existing metrics.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::Result;

/// The rollout metric families.
#[derive(Clone)]
pub(crate) struct RolloutFamilies {
    step: IntGaugeVec,
    weight: GaugeVec,
    state: IntGaugeVec,
    gate_value: GaugeVec,
    gate_ok: IntGaugeVec,
    outcomes: IntCounterVec,
    requests: IntCounterVec,
    comparisons: IntCounterVec,
    mirrors_skipped: IntCounterVec,
}

impl RolloutFamilies {
    pub(crate) fn register(registry: &Registry) -> Result<RolloutFamilies> {
        let int_gauge = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(RolloutFamilies {
            step: int_gauge(
                "lrai_rollout_step",
                "Current step of the model's rollout, counting from 1 (0 for shadow)",
                &["model"],
            )?,
            weight: gauge(
                "lrai_rollout_weight_percent",
                "Share of unversioned requests routed to the candidate, percent",
                &["model"],
            )?,
            state: int_gauge(
                "lrai_rollout_state",
                "1 for the rollout's current state (progressing, promoted, rolled_back, aborted), 0 for the others",
                &["model", "state"],
            )?,
            gate_value: gauge(
                "lrai_rollout_gate_value",
                "A gate's value over the last closed window (NaN: not enough data)",
                &["model", "gate"],
            )?,
            gate_ok: int_gauge(
                "lrai_rollout_gate_ok",
                "1 when the gate passed on the last closed window",
                &["model", "gate"],
            )?,
            outcomes: counter(
                "lrai_rollout_outcomes_total",
                "Rollouts ended, by outcome (promoted, rolled_back, aborted)",
                &["model", "outcome"],
            )?,
            requests: counter(
                "lrai_rollout_requests_total",
                "Unversioned requests answered during rollouts, by arm (baseline, candidate)",
                &["model", "arm"],
            )?,
            comparisons: counter(
                "lrai_rollout_comparisons_total",
                "Requests whose answers were compared between the arms",
                &["model"],
            )?,
            mirrors_skipped: counter(
                "lrai_rollout_mirrors_skipped_total",
                "Sampled requests not mirrored because too many mirrors were already running",
                &["model"],
            )?,
        })
    }

    pub(crate) fn model(&self, model: &str) -> RolloutMetrics {
        RolloutMetrics {
            model: model.to_string(),
            f: self.clone(),
        }
    }
}

/// One model's rollout metrics.
#[derive(Clone)]
pub struct RolloutMetrics {
    model: String,
    f: RolloutFamilies,
}

impl std::fmt::Debug for RolloutMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutMetrics")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl RolloutMetrics {
    /// Sets the step (1-based; 0 for shadow) and the candidate's weight, percent.
    pub fn position(&self, step: i64, weight_percent: f64) {
        self.f.step.with_label_values(&[&self.model]).set(step);
        self.f
            .weight
            .with_label_values(&[&self.model])
            .set(weight_percent);
    }

    /// Sets the state gauge: 1 for `state`, 0 for the others in `all`.
    pub fn state(&self, state: &str, all: &[&str]) {
        for s in all {
            self.f
                .state
                .with_label_values(&[self.model.as_str(), s])
                .set(i64::from(*s == state));
        }
    }

    /// Records a gate's value (`None`: no data) and verdict.
    pub fn gate(&self, gate: &str, value: Option<f64>, ok: bool) {
        self.f
            .gate_value
            .with_label_values(&[&self.model, gate])
            .set(value.unwrap_or(f64::NAN));
        self.f
            .gate_ok
            .with_label_values(&[&self.model, gate])
            .set(i64::from(ok));
    }

    /// Counts a finished rollout.
    pub fn outcome(&self, outcome: &str) {
        self.f
            .outcomes
            .with_label_values(&[&self.model, outcome])
            .inc();
    }

    /// Counts a request answered by `arm`.
    pub fn request(&self, arm: &str) {
        self.f.requests.with_label_values(&[&self.model, arm]).inc();
    }

    /// Counts a comparison.
    pub fn compared(&self) {
        self.f.comparisons.with_label_values(&[&self.model]).inc();
    }

    /// Counts a sampled request that was not mirrored.
    pub fn mirror_skipped(&self) {
        self.f
            .mirrors_skipped
            .with_label_values(&[&self.model])
            .inc();
    }
}
