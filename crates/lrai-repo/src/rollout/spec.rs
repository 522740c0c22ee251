//! What a rollout is asked to do: the JSON body of `POST .../rollout` (or the
//! `lrai.rollout` config parameter), parsed and checked once. Every error names the field,
//! what it accepts and what was given, and nothing starts until the whole spec is valid.

use std::time::Duration;

use serde_json::{Map, Value};

use super::gates::{GateKind, GateSpec};

/// How traffic is shared between the baseline and the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The candidate's share grows through `steps`; all gates passing at 100% promotes it.
    Canary,
    /// A fixed split (`weight`); ends when a gate rolls it back or it is deleted.
    Ab,
    /// The baseline answers everything; a sample also runs on the candidate for comparison.
    Shadow,
}

impl Mode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Canary => "canary",
            Mode::Ab => "ab",
            Mode::Shadow => "shadow",
        }
    }
}

/// How long one evaluation window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowLength {
    /// Requests routed to the model (both arms; in shadow mode, comparisons made).
    Requests(u64),
    /// Wall-clock time.
    Time(Duration),
}

/// A validated rollout request.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    /// The candidate version.
    pub candidate: u64,
    /// The baseline version; `None` = the version serving unversioned requests now.
    pub baseline: Option<u64>,
    /// Mode.
    pub mode: Mode,
    /// Candidate traffic share per step, percent (canary: increasing, last 100; ab: one
    /// value; shadow: empty).
    pub steps: Vec<f64>,
    /// How long each window lasts.
    pub window: WindowLength,
    /// Gates checked at the end of every window.
    pub gates: Vec<GateSpec>,
    /// Consecutive failed windows that roll back (Flagger's `threshold`).
    pub threshold: u32,
    /// Share of requests whose output is compared on the other arm: in shadow mode the
    /// share mirrored to the candidate; otherwise the share of candidate answers also run
    /// on the baseline.
    pub sample_rate: f64,
    /// Header (HTTP) or metadata key (gRPC) whose value keeps one caller on one arm;
    /// without it the request id is used, and without that requests are spread evenly.
    pub sticky_header: String,
}

/// Default `sticky_header`.
pub const DEFAULT_STICKY_HEADER: &str = "x-lrai-route-key";

/// Fields `POST .../rollout` accepts.
const FIELDS: &[&str] = &[
    "candidate",
    "baseline",
    "mode",
    "steps",
    "weight",
    "step_requests",
    "step_seconds",
    "gates",
    "threshold",
    "sample_rate",
    "sticky_header",
];

/// A rollout spec that can't be used: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rollout field '{field}': {reason}")]
pub struct SpecError {
    /// The field, e.g. `steps` or `gates.max_p99_ratio`.
    pub field: String,
    /// What is wrong and what is accepted.
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

impl RolloutSpec {
    /// Parses and checks a spec from JSON text.
    ///
    /// # Errors
    /// [`SpecError`] naming the first bad field.
    pub fn from_json_text(text: &str) -> Result<RolloutSpec, SpecError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| err("(body)", format!("not a JSON object: {e}")))?;
        RolloutSpec::from_json(&value)
    }

    /// Parses and checks a spec from a JSON value.
    ///
    /// # Errors
    /// [`SpecError`] naming the first bad field.
    pub fn from_json(value: &Value) -> Result<RolloutSpec, SpecError> {
        let Some(obj) = value.as_object() else {
            return Err(err(
                "(body)",
                format!("expected a JSON object, got {value}"),
            ));
        };
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(err(
                unknown,
                format!("unknown field; known fields: {}", FIELDS.join(", ")),
            ));
        }
        let candidate = version_field(obj, "candidate")?
            .ok_or_else(|| err("candidate", "required: the version to roll out, e.g. \"2\""))?;
        let baseline = version_field(obj, "baseline")?;
        if baseline == Some(candidate) {
            return Err(err(
                "baseline",
                format!("equals the candidate ({candidate}); roll out another version"),
            ));
        }
        let mode = mode_field(obj)?;
        let steps = steps_for(mode, obj)?;
        let window = window_field(obj)?;
        let gates = super::gates::parse_gates(obj.get("gates"))?;
        let threshold = match obj.get("threshold") {
            None => 2,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=100).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    err(
                        "threshold",
                        format!("expected an integer in 1..=100, got {v}"),
                    )
                })?,
        };
        let default_rate = if mode == Mode::Shadow { 1.0 } else { 0.25 };
        let sample_rate = match obj.get("sample_rate") {
            None => default_rate,
            Some(v) => v
                .as_f64()
                .filter(|r| *r > 0.0 && *r <= 1.0)
                .ok_or_else(|| {
                    err(
                        "sample_rate",
                        format!("expected a number in (0, 1], got {v}"),
                    )
                })?,
        };
        let sticky_header = match obj.get("sticky_header") {
            None => DEFAULT_STICKY_HEADER.to_string(),
            Some(Value::String(s)) if valid_header(s) => s.to_ascii_lowercase(),
            Some(v) => {
                return Err(err(
                    "sticky_header",
                    format!("expected a header name (letters, digits, '-', '_'), got {v}"),
                ));
            }
        };
        Ok(RolloutSpec {
            candidate,
            baseline,
            mode,
            steps,
            window,
            gates,
            threshold,
            sample_rate,
            sticky_header,
        })
    }

    /// The gate of a kind, if the spec has it.
    pub fn gate(&self, kind: GateKind) -> Option<&GateSpec> {
        self.gates.iter().find(|g| g.kind == kind)
    }
}

fn valid_header(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A version given as "2" or 2.
fn version_field(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, SpecError> {
    let bad = |v: &Value| {
        err(
            field,
            format!("expected a version number > 0 such as \"2\", got {v}"),
        )
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| bad(&Value::String(s.clone()))),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| bad(v)),
    }
}

fn mode_field(obj: &Map<String, Value>) -> Result<Mode, SpecError> {
    match obj.get("mode") {
        None => Ok(Mode::Canary),
        Some(Value::String(s)) => match s.as_str() {
            "canary" => Ok(Mode::Canary),
            "ab" => Ok(Mode::Ab),
            "shadow" => Ok(Mode::Shadow),
            other => Err(err(
                "mode",
                format!("expected one of canary, ab, shadow, got \"{other}\""),
            )),
        },
        Some(v) => Err(err(
            "mode",
            format!("expected one of canary, ab, shadow, got {v}"),
        )),
    }
}

fn percent(field: &str, v: &Value) -> Result<f64, SpecError> {
    v.as_f64()
        .filter(|p| *p > 0.0 && *p <= 100.0)
        .ok_or_else(|| err(field, format!("expected a percentage in (0, 100], got {v}")))
}

fn steps_for(mode: Mode, obj: &Map<String, Value>) -> Result<Vec<f64>, SpecError> {
    match mode {
        Mode::Canary => {
            if obj.contains_key("weight") {
                return Err(err(
                    "weight",
                    "a canary's weight comes from 'steps'; use 'weight' with mode ab",
                ));
            }
            let Some(v) = obj.get("steps") else {
                return Ok(vec![10.0, 50.0, 100.0]);
            };
            let Some(list) = v.as_array().filter(|l| !l.is_empty()) else {
                return Err(err(
                    "steps",
                    format!(
                        "expected a non-empty list of percentages such as [10, 50, 100], got {v}"
                    ),
                ));
            };
            let mut steps = Vec::with_capacity(list.len());
            for (i, s) in list.iter().enumerate() {
                let p = percent(&format!("steps[{i}]"), s)?;
                if let Some(prev) = steps.last().filter(|prev| p <= **prev) {
                    return Err(err(
                        &format!("steps[{i}]"),
                        format!("steps must increase, but {p} follows {prev}"),
                    ));
                }
                steps.push(p);
            }
            if steps.last().is_some_and(|last| *last < 100.0) {
                return Err(err(
                    "steps",
                    format!("a canary's last step must be 100, got {v}"),
                ));
            }
            Ok(steps)
        }
        Mode::Ab => {
            if obj.contains_key("steps") {
                return Err(err(
                    "steps",
                    "mode ab holds one split: give 'weight' instead",
                ));
            }
            let w = obj.get("weight").ok_or_else(|| {
                err(
                    "weight",
                    "mode ab needs the candidate's share, e.g. \"weight\": 50",
                )
            })?;
            let w = percent("weight", w)?;
            if w >= 100.0 {
                return Err(err(
                    "weight",
                    "an ab split of 100 sends nothing to the baseline; use mode canary with steps [100]",
                ));
            }
            Ok(vec![w])
        }
        Mode::Shadow => {
            for field in ["steps", "weight"] {
                if obj.contains_key(field) {
                    return Err(err(
                        field,
                        "mode shadow answers every request from the baseline; use sample_rate to choose how many also run on the candidate",
                    ));
                }
            }
            Ok(Vec::new())
        }
    }
}

fn window_field(obj: &Map<String, Value>) -> Result<WindowLength, SpecError> {
    match (obj.get("step_requests"), obj.get("step_seconds")) {
        (Some(_), Some(_)) => Err(err(
            "step_seconds",
            "give either step_requests or step_seconds, not both",
        )),
        (Some(v), None) => v
            .as_u64()
            .filter(|n| (1..=10_000_000).contains(n))
            .map(WindowLength::Requests)
            .ok_or_else(|| {
                err(
                    "step_requests",
                    format!("expected an integer in 1..=10000000, got {v}"),
                )
            }),
        (None, Some(v)) => v
            .as_f64()
            .filter(|s| *s > 0.0 && *s <= 86_400.0)
            .map(|s| WindowLength::Time(Duration::from_secs_f64(s)))
            .ok_or_else(|| {
                err(
                    "step_seconds",
                    format!("expected seconds in (0, 86400], got {v}"),
                )
            }),
        (None, None) => Ok(WindowLength::Requests(200)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<RolloutSpec, SpecError> {
        RolloutSpec::from_json_text(text)
    }

    #[test]
    fn parses_the_issue_example() {
        let s = parse(
            r#"{"candidate": "2", "mode": "canary", "steps": [10, 50, 100], "step_requests": 200,
                "gates": {"max_error_rate": 0.01, "max_p99_ratio": 2.0, "min_agreement": 0.99}}"#,
        )
        .unwrap();
        assert_eq!(s.candidate, 2);
        assert_eq!(s.mode, Mode::Canary);
        assert_eq!(s.steps, vec![10.0, 50.0, 100.0]);
        assert_eq!(s.window, WindowLength::Requests(200));
        assert_eq!(s.gates.len(), 3);
        assert_eq!(s.threshold, 2);
        assert_eq!(s.sticky_header, DEFAULT_STICKY_HEADER);
    }

    #[test]
    fn rejects_bad_steps_naming_the_step() {
        let e = parse(r#"{"candidate": "2", "steps": [10, 5, 100]}"#).unwrap_err();
        assert_eq!(e.field, "steps[1]");
        let e = parse(r#"{"candidate": "2", "steps": [10, 50]}"#).unwrap_err();
        assert!(e.reason.contains("last step must be 100"), "{e}");
        let e = parse(r#"{"candidate": "2", "steps": [0, 100]}"#).unwrap_err();
        assert_eq!(e.field, "steps[0]");
        let e = parse(r#"{"candidate": "2", "steps": [50, 120]}"#).unwrap_err();
        assert_eq!(e.field, "steps[1]");
        let e = parse(r#"{"candidate": "2", "steps": []}"#).unwrap_err();
        assert_eq!(e.field, "steps");
    }

    #[test]
    fn ab_needs_a_weight_below_100() {
        let e = parse(r#"{"candidate": "2", "mode": "ab"}"#).unwrap_err();
        assert_eq!(e.field, "weight");
        let e = parse(r#"{"candidate": "2", "mode": "ab", "weight": 100}"#).unwrap_err();
        assert_eq!(e.field, "weight");
        let s = parse(r#"{"candidate": "2", "mode": "ab", "weight": 30}"#).unwrap();
        assert_eq!(s.steps, vec![30.0]);
    }

    #[test]
    fn rejects_unknown_fields_modes_and_versions() {
        assert_eq!(
            parse(r#"{"candidate": "2", "stepz": 1}"#)
                .unwrap_err()
                .field,
            "stepz"
        );
        assert_eq!(
            parse(r#"{"candidate": "2", "mode": "blue"}"#)
                .unwrap_err()
                .field,
            "mode"
        );
        assert_eq!(
            parse(r#"{"candidate": "x"}"#).unwrap_err().field,
            "candidate"
        );
        assert_eq!(parse(r#"{"candidate": 0}"#).unwrap_err().field, "candidate");
        assert_eq!(parse(r#"{}"#).unwrap_err().field, "candidate");
        assert_eq!(
            parse(r#"{"candidate": "2", "baseline": "2"}"#)
                .unwrap_err()
                .field,
            "baseline"
        );
        assert_eq!(
            parse(r#"{"candidate": "2", "step_requests": 5, "step_seconds": 5}"#)
                .unwrap_err()
                .field,
            "step_seconds"
        );
        assert_eq!(parse("[1]").unwrap_err().field, "(body)");
    }

    #[test]
    fn shadow_takes_no_weights_and_samples_everything_by_default() {
        let s = parse(r#"{"candidate": 3, "mode": "shadow", "step_seconds": 1.5}"#).unwrap();
        assert!(s.steps.is_empty());
        assert!((s.sample_rate - 1.0).abs() < 1e-12);
        assert_eq!(s.window, WindowLength::Time(Duration::from_millis(1500)));
        assert_eq!(
            parse(r#"{"candidate": 3, "mode": "shadow", "weight": 5}"#)
                .unwrap_err()
                .field,
            "weight"
        );
    }
}
