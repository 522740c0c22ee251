//! The rollout status as JSON (`GET .../rollout`), with the field names.

use serde_json::{Map, Value, json};

use super::active::RolloutStatus;
use super::spec::Mode;

/// A JSON number, or null for values JSON can't hold (NaN, ±∞ are shown as null with
/// the gate failing).
fn number(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

impl RolloutStatus {
    /// `{"candidate", "baseline", "mode", "state", "weight", "gates": {name: {"value",
    /// "threshold", "ok"}}, "reason", ...}`.
    pub fn to_json(&self) -> Value {
        let mut gates = Map::new();
        for g in &self.gates {
            gates.insert(
                g.name.to_string(),
                json!({"value": number(g.value), "threshold": g.threshold, "ok": g.ok}),
            );
        }
        let step = if self.mode == Mode::Shadow {
            Value::Null
        } else {
            json!(self.step.0 + 1)
        };
        json!({
            "model": self.model,
            "candidate": self.candidate.to_string(),
            "baseline": self.baseline.to_string(),
            "mode": self.mode.as_str(),
            "state": self.state.as_str(),
            "weight": self.weight,
            "step": step,
            "steps": self.step.1,
            "gates": gates,
            "reason": self.reason,
            "windows": self.windows,
            "window": {"requests": self.window_routed, "compared": self.window_compared},
            "requests": {"baseline": self.answered.0, "candidate": self.answered.1},
            "compared": self.compared,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
        })
    }
}
