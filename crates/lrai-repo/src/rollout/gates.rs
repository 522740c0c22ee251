//! Gates: one number measured over a window, held against a threshold. The list is open:
//! a new gate (drift, fairness) is a [`Gate`] implementation plus a [`GateKind`] name, and
//! the rollout checks it with the others.

use serde_json::Value;

use super::spec::SpecError;
use super::window::{Arm, Window};

/// Fewest successful runs per arm before a latency quantile is trusted.
pub const MIN_LATENCY_SAMPLES: usize = 5;

/// Which side of the threshold passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// value ≤ threshold passes.
    Max,
    /// value ≥ threshold passes.
    Min,
}

/// The baseline's latency quantiles from the last window that had enough baseline runs,
/// for windows where the candidate takes all traffic (a canary's 100% step).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyReference {
    /// p95, µs.
    pub p95_us: Option<f64>,
    /// p99, µs.
    pub p99_us: Option<f64>,
}

/// What a gate sees: the window, and the carried baseline latencies.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// The window being judged.
    pub window: &'a Window,
    /// Baseline latencies from an earlier window.
    pub reference: LatencyReference,
}

/// One check of a rollout.
pub trait Gate: std::fmt::Debug + Send + Sync {
    /// Its name in the API (`max_error_rate`).
    fn name(&self) -> &'static str;
    /// The threshold.
    fn threshold(&self) -> f64;
    /// Which side of the threshold passes.
    fn bound(&self) -> Bound;
    /// The value over this window; `None` when the window has too little data to say
    /// (no candidate requests, no comparisons), which does not fail the gate.
    fn measure(&self, input: &GateInput<'_>) -> Option<f64>;
}

/// A gate's verdict on one window.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    /// The gate's name.
    pub name: &'static str,
    /// The value measured (`None`: not enough data in the window).
    pub value: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// Passed (also when there was nothing to measure).
    pub ok: bool,
}

/// Runs a gate over a window.
pub fn evaluate(gate: &dyn Gate, input: &GateInput<'_>) -> GateResult {
    let value = gate.measure(input);
    let threshold = gate.threshold();
    let ok = match (value, gate.bound()) {
        (None, _) => true,
        (Some(v), Bound::Max) => v <= threshold,
        (Some(v), Bound::Min) => v >= threshold,
    };
    GateResult {
        name: gate.name(),
        value,
        threshold,
        ok,
    }
}

/// The gates LRAI knows, by API name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    /// Candidate server-side errors / candidate requests.
    MaxErrorRate,
    /// Candidate p95 latency / baseline p95.
    MaxP95Ratio,
    /// Candidate p99 latency / baseline p99.
    MaxP99Ratio,
    /// Share of compared rows whose top-1 class is the same.
    MinAgreement,
    /// Largest |baseline − candidate| over compared outputs.
    MaxAbsDiff,
    /// Lowest cosine similarity of compared outputs.
    MinCosine,
}

impl GateKind {
    /// Every gate, in the order the status lists them.
    pub const ALL: [GateKind; 6] = [
        GateKind::MaxErrorRate,
        GateKind::MaxP95Ratio,
        GateKind::MaxP99Ratio,
        GateKind::MinAgreement,
        GateKind::MaxAbsDiff,
        GateKind::MinCosine,
    ];

    /// API name.
    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::MaxErrorRate => "max_error_rate",
            GateKind::MaxP95Ratio => "max_p95_ratio",
            GateKind::MaxP99Ratio => "max_p99_ratio",
            GateKind::MinAgreement => "min_agreement",
            GateKind::MaxAbsDiff => "max_abs_diff",
            GateKind::MinCosine => "min_cosine",
        }
    }

    fn from_name(name: &str) -> Option<GateKind> {
        GateKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Thresholds that make sense for this gate.
    fn accepts(self, t: f64) -> bool {
        match self {
            GateKind::MaxErrorRate | GateKind::MinAgreement => (0.0..=1.0).contains(&t),
            GateKind::MaxP95Ratio | GateKind::MaxP99Ratio => t > 0.0 && t.is_finite(),
            GateKind::MaxAbsDiff => t >= 0.0 && t.is_finite(),
            GateKind::MinCosine => (-1.0..=1.0).contains(&t),
        }
    }

    fn range_text(self) -> &'static str {
        match self {
            GateKind::MaxErrorRate | GateKind::MinAgreement => "a number in [0, 1]",
            GateKind::MaxP95Ratio | GateKind::MaxP99Ratio => "a ratio > 0",
            GateKind::MaxAbsDiff => "a number >= 0",
            GateKind::MinCosine => "a number in [-1, 1]",
        }
    }
}

/// A configured gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateSpec {
    /// Which gate.
    pub kind: GateKind,
    /// Its threshold.
    pub threshold: f64,
}

impl GateSpec {
    /// The gate object that measures it.
    pub fn build(&self) -> Box<dyn Gate> {
        let t = self.threshold;
        match self.kind {
            GateKind::MaxErrorRate => Box::new(ErrorRate(t)),
            GateKind::MaxP95Ratio => Box::new(LatencyRatio {
                name: "max_p95_ratio",
                q: 0.95,
                threshold: t,
            }),
            GateKind::MaxP99Ratio => Box::new(LatencyRatio {
                name: "max_p99_ratio",
                q: 0.99,
                threshold: t,
            }),
            GateKind::MinAgreement => Box::new(Agreement(t)),
            GateKind::MaxAbsDiff => Box::new(MaxAbs(t)),
            GateKind::MinCosine => Box::new(MinCosine(t)),
        }
    }
}

/// The default gates: errors at most 1%, p99 at most twice the baseline's, top-1
/// agreement at least 99%.
pub fn default_gates() -> Vec<GateSpec> {
    vec![
        GateSpec {
            kind: GateKind::MaxErrorRate,
            threshold: 0.01,
        },
        GateSpec {
            kind: GateKind::MaxP99Ratio,
            threshold: 2.0,
        },
        GateSpec {
            kind: GateKind::MinAgreement,
            threshold: 0.99,
        },
    ]
}

/// Parses the `gates` object: `{name: threshold}`.
///
/// # Errors
/// [`SpecError`] for an unknown name or a threshold out of range.
pub fn parse_gates(value: Option<&Value>) -> Result<Vec<GateSpec>, SpecError> {
    let Some(value) = value else {
        return Ok(default_gates());
    };
    let names = || {
        GateKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(obj) = value.as_object() else {
        return Err(SpecError {
            field: "gates".into(),
            reason: format!("expected an object of gate name to threshold, got {value}"),
        });
    };
    let mut out = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        let field = format!("gates.{name}");
        let Some(kind) = GateKind::from_name(name) else {
            return Err(SpecError {
                field,
                reason: format!("unknown gate; known gates: {}", names()),
            });
        };
        let threshold = v
            .as_f64()
            .filter(|t| kind.accepts(*t))
            .ok_or_else(|| SpecError {
                field: field.clone(),
                reason: format!("expected {}, got {v}", kind.range_text()),
            })?;
        out.push(GateSpec { kind, threshold });
    }
    // The status lists gates in one fixed order whatever order the request gave.
    out.sort_by_key(|g| GateKind::ALL.iter().position(|k| *k == g.kind));
    Ok(out)
}

#[derive(Debug)]
struct ErrorRate(f64);

impl Gate for ErrorRate {
    fn name(&self) -> &'static str {
        "max_error_rate"
    }
    fn threshold(&self) -> f64 {
        self.0
    }
    fn bound(&self) -> Bound {
        Bound::Max
    }
    fn measure(&self, input: &GateInput<'_>) -> Option<f64> {
        let c = &input.window.candidate;
        (c.requests > 0).then(|| c.errors as f64 / c.requests as f64)
    }
}

#[derive(Debug)]
struct LatencyRatio {
    name: &'static str,
    q: f64,
    threshold: f64,
}

impl Gate for LatencyRatio {
    fn name(&self) -> &'static str {
        self.name
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    fn bound(&self) -> Bound {
        Bound::Max
    }
    fn measure(&self, input: &GateInput<'_>) -> Option<f64> {
        let w = input.window;
        if w.arm(Arm::Candidate).latency_samples() < MIN_LATENCY_SAMPLES {
            return None;
        }
        let candidate = w.candidate.quantile_us(self.q)?;
        let baseline = if w.baseline.latency_samples() >= MIN_LATENCY_SAMPLES {
            w.baseline.quantile_us(self.q)
        } else if self.q > 0.97 {
            input.reference.p99_us
        } else {
            input.reference.p95_us
        }?;
        // A baseline under a microsecond is a timer artefact; measure against 1 µs.
        Some(candidate / baseline.max(1.0))
    }
}

#[derive(Debug)]
struct Agreement(f64);

impl Gate for Agreement {
    fn name(&self) -> &'static str {
        "min_agreement"
    }
    fn threshold(&self) -> f64 {
        self.0
    }
    fn bound(&self) -> Bound {
        Bound::Min
    }
    fn measure(&self, input: &GateInput<'_>) -> Option<f64> {
        input.window.compare.agreement()
    }
}

#[derive(Debug)]
struct MaxAbs(f64);

impl Gate for MaxAbs {
    fn name(&self) -> &'static str {
        "max_abs_diff"
    }
    fn threshold(&self) -> f64 {
        self.0
    }
    fn bound(&self) -> Bound {
        Bound::Max
    }
    fn measure(&self, input: &GateInput<'_>) -> Option<f64> {
        let c = &input.window.compare;
        (c.compared > 0).then_some(c.max_abs)
    }
}

#[derive(Debug)]
struct MinCosine(f64);

impl Gate for MinCosine {
    fn name(&self) -> &'static str {
        "min_cosine"
    }
    fn threshold(&self) -> f64 {
        self.0
    }
    fn bound(&self) -> Bound {
        Bound::Min
    }
    fn measure(&self, input: &GateInput<'_>) -> Option<f64> {
        input.window.compare.min_cosine
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, Instant};

    use super::*;
    use crate::rollout::window::Comparison;

    fn window() -> Window {
        Window::new(Instant::now())
    }

    fn run(spec: GateSpec, w: &Window, reference: LatencyReference) -> GateResult {
        evaluate(
            spec.build().as_ref(),
            &GateInput {
                window: w,
                reference,
            },
        )
    }

    fn gate(kind: GateKind, threshold: f64) -> GateSpec {
        GateSpec { kind, threshold }
    }

    #[test]
    fn error_rate_counts_candidate_failures_only() {
        let mut w = window();
        for i in 0..100 {
            w.candidate.record(i >= 2, Duration::from_millis(1));
            w.baseline.record(false, Duration::from_millis(1));
        }
        let r = run(
            gate(GateKind::MaxErrorRate, 0.01),
            &w,
            LatencyReference::default(),
        );
        assert_eq!(r.value, Some(0.02));
        assert!(!r.ok);
        let r = run(
            gate(GateKind::MaxErrorRate, 0.05),
            &w,
            LatencyReference::default(),
        );
        assert!(r.ok);
    }

    #[test]
    fn latency_ratio_compares_the_same_window() {
        let mut w = window();
        for i in 1..=100u64 {
            w.baseline.record(true, Duration::from_micros(i * 10));
            w.candidate.record(true, Duration::from_micros(i * 30));
        }
        let r = run(
            gate(GateKind::MaxP99Ratio, 2.0),
            &w,
            LatencyReference::default(),
        );
        assert!((r.value.unwrap() - 3.0).abs() < 1e-9);
        assert!(!r.ok);
        let r = run(
            gate(GateKind::MaxP95Ratio, 3.5),
            &w,
            LatencyReference::default(),
        );
        assert!(r.ok);
    }

    #[test]
    fn latency_ratio_falls_back_to_the_reference_when_the_baseline_is_idle() {
        let mut w = window();
        for _ in 0..10 {
            w.candidate.record(true, Duration::from_micros(500));
        }
        let none = run(
            gate(GateKind::MaxP99Ratio, 2.0),
            &w,
            LatencyReference::default(),
        );
        assert_eq!(none.value, None);
        assert!(none.ok, "no baseline at all: nothing to judge");
        let reference = LatencyReference {
            p95_us: Some(100.0),
            p99_us: Some(200.0),
        };
        let r = run(gate(GateKind::MaxP99Ratio, 2.0), &w, reference);
        assert!((r.value.unwrap() - 2.5).abs() < 1e-9);
        assert!(!r.ok);
    }

    #[test]
    fn too_few_candidate_samples_is_no_verdict() {
        let mut w = window();
        for _ in 0..(MIN_LATENCY_SAMPLES - 1) {
            w.candidate.record(true, Duration::from_secs(1));
        }
        for _ in 0..50 {
            w.baseline.record(true, Duration::from_micros(1));
        }
        let r = run(
            gate(GateKind::MaxP99Ratio, 2.0),
            &w,
            LatencyReference::default(),
        );
        assert_eq!((r.value, r.ok), (None, true));
    }

    #[test]
    fn agreement_abs_and_cosine_read_the_comparisons() {
        let mut w = window();
        assert!(
            run(
                gate(GateKind::MinAgreement, 0.99),
                &w,
                LatencyReference::default()
            )
            .ok
        );
        w.compare.record(Some(Comparison {
            rows: 10,
            rows_agree: 9,
            max_abs: 0.25,
            cosine: 0.97,
        }));
        let r = run(
            gate(GateKind::MinAgreement, 0.99),
            &w,
            LatencyReference::default(),
        );
        assert_eq!((r.value, r.ok), (Some(0.9), false));
        let r = run(
            gate(GateKind::MaxAbsDiff, 0.5),
            &w,
            LatencyReference::default(),
        );
        assert_eq!((r.value, r.ok), (Some(0.25), true));
        let r = run(
            gate(GateKind::MinCosine, 0.98),
            &w,
            LatencyReference::default(),
        );
        assert_eq!((r.value, r.ok), (Some(0.97), false));
    }

    #[test]
    fn parses_gates_and_names_the_bad_one() {
        let v: Value = serde_json::json!({"min_agreement": 0.99, "max_error_rate": 0.01});
        let g = parse_gates(Some(&v)).unwrap();
        assert_eq!(g[0].kind, GateKind::MaxErrorRate);
        assert_eq!(g[1].kind, GateKind::MinAgreement);
        let e = parse_gates(Some(&serde_json::json!({"max_latency": 3}))).unwrap_err();
        assert_eq!(e.field, "gates.max_latency");
        assert!(e.reason.contains("max_p99_ratio"), "{e}");
        let e = parse_gates(Some(&serde_json::json!({"max_error_rate": 2}))).unwrap_err();
        assert_eq!(e.field, "gates.max_error_rate");
        assert!(parse_gates(Some(&serde_json::json!({"max_p99_ratio": 0}))).is_err());
        assert!(parse_gates(Some(&serde_json::json!([1]))).is_err());
        assert_eq!(parse_gates(None).unwrap(), default_gates());
    }
}
