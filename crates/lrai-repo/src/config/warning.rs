//! Warnings about a configuration that still loads, and LRAI's own `parameters` keys.
//!
//! Triton's protobuf parser rejects a field it doesn't know. LRAI instead loads the model
//! and returns a warning, so a config written for a newer Triton still serves. Warnings
//! are returned to the caller, which logs them with the model and file; nothing here logs.

use std::fmt;

use super::text::Pos;

/// One LRAI-specific key under `parameters { key: "lrai.…" value { string_value: … } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LraiParameter {
    /// The key, starting with `lrai.`.
    pub key: &'static str,
    /// The values accepted; empty accepts any string.
    pub values: &'static [&'static str],
    /// What it does, for docs and `--help`-style listings.
    pub help: &'static str,
}

/// Every `lrai.*` parameter key LRAI knows. An unknown `lrai.*` key is a warning; a known
/// key with a value outside its `values` is an error.
pub const LRAI_PARAMETERS: &[LraiParameter] = &[
    LraiParameter {
        key: "lrai.backend",
        // Free-form here: the server checks the name against the backends it has (tests
        // register a `fake` one), and its error lists them.
        values: &[],
        help: "engine that runs the model: tract (pure Rust), onnxruntime, or auto (the server's choice)",
    },
    LraiParameter {
        key: "lrai.slo_p95_ms",
        // A number; checked in validation.
        values: &[],
        help: "latency objective (p95 of queue + compute, milliseconds): batch size and queue delay adapt to it, falling back to the static settings",
    },
    LraiParameter {
        key: "lrai.adaptive_max_delay_ms",
        values: &[],
        help: "longest queue delay the adaptive batcher may choose (milliseconds; default a quarter of lrai.slo_p95_ms)",
    },
    LraiParameter {
        key: "lrai.pad_buckets",
        values: &[],
        help: "sequence lengths to pad requests up to (e.g. \"16,32,64,128,256\"), so similar lengths share a batch; only for models that ignore padding through an attention mask; outputs are trimmed back",
    },
    LraiParameter {
        key: "lrai.pad_axis",
        values: &[],
        help: "the padded axis, counting the batch axis (default 1)",
    },
    LraiParameter {
        key: "lrai.batcher",
        values: &["adaptive", "static"],
        help: "static keeps the configured dynamic_batching settings even when lrai.slo_p95_ms is set",
    },
    LraiParameter {
        key: "lrai.quantize",
        values: &["static", "dynamic", "fp16"],
        help: "quantize the model at load (cached next to the model file as <stem>.lrai-<mode>.onnx and reused while the model, data and parameters are unchanged)",
    },
    LraiParameter {
        key: "lrai.quantize_calibration",
        values: &[],
        help: "calibration samples (.npz or a directory of .npy), relative to the model's directory; required by static mode",
    },
    LraiParameter {
        key: "lrai.rollout",
        // JSON; checked when the rollout starts, so a bad one never stops the model.
        values: &[],
        help: "a rollout started once the model loads: the JSON body of POST /v2/repository/models/{m}/rollout (docs/rollouts.md)",
    },
    LraiParameter {
        key: "lrai.quantize_eval",
        values: &[],
        help: "evaluation samples (.npz with optional labels and group), relative to the model's directory; with them the accuracy budget is enforced and the most sensitive layers stay float",
    },
    LraiParameter {
        key: "lrai.quantize_max_drop",
        // A number; checked in validation.
        values: &[],
        help: "accuracy budget: largest allowed drop of the metric, overall and per group (default 0.01); a model that misses it does not load",
    },
    LraiParameter {
        key: "lrai.quantize_method",
        values: &["minmax", "percentile", "entropy"],
        help: "how activation ranges are calibrated (default minmax)",
    },
    LraiParameter {
        key: "lrai.quantize_metric",
        values: &["auto", "top1", "agreement", "cosine"],
        help: "what the budget is measured in (default auto: top1 with labels, else agreement)",
    },
    LraiParameter {
        key: QUANTIZATION_SUMMARY,
        values: &[],
        help: "set by the server in the effective config: what quantize-at-load did; ignored when given",
    },
];

/// The effective-config parameter that carries the quantize-at-load summary.
pub const QUANTIZATION_SUMMARY: &str = "lrai.quantization_summary";

/// The known `lrai.*` parameter with this key.
pub fn lrai_parameter(key: &str) -> Option<&'static LraiParameter> {
    LRAI_PARAMETERS.iter().find(|p| p.key == key)
}

/// Something in a configuration that is ignored or suspicious but does not stop loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A Triton setting LRAI parses but does not implement; it has no effect.
    Unsupported {
        /// Field path, e.g. `sequence_batching` or `instance_group[0].rate_limiter`.
        field: String,
        /// Where it is.
        pos: Pos,
    },
    /// A field that is not in Triton's model configuration; it has no effect.
    UnknownField {
        /// Field path.
        field: String,
        /// Where it is.
        pos: Pos,
        /// A known field with a similar name.
        suggestion: Option<&'static str>,
    },
    /// A `parameters` key starting with `lrai.` that LRAI does not know.
    UnknownLraiParameter {
        /// The key.
        key: String,
        /// Where it is.
        pos: Pos,
        /// A known key with a similar name.
        suggestion: Option<&'static str>,
    },
    /// A map key given twice; the last value wins (as in protobuf).
    DuplicateKey {
        /// The map field, e.g. `parameters`.
        field: String,
        /// The key.
        key: String,
        /// Where the later entry is.
        pos: Pos,
    },
    /// `dynamic_batching` on a model that does not batch: requests still run one at a time,
    /// and only the queue policy and priorities apply (as in Triton).
    DynamicBatchingWithoutBatching {
        /// Model name.
        model: String,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::Unsupported { field, pos } => write!(
                f,
                "{pos}: '{field}' is a Triton setting LRAI does not implement; it is ignored"
            ),
            ConfigWarning::UnknownField {
                field,
                pos,
                suggestion,
            } => {
                write!(
                    f,
                    "{pos}: unknown field '{field}' (not in Triton's model configuration); it is ignored"
                )?;
                if let Some(s) = suggestion {
                    write!(f, "; did you mean '{s}'?")?;
                }
                Ok(())
            }
            ConfigWarning::UnknownLraiParameter {
                key,
                pos,
                suggestion,
            } => {
                let known: Vec<&str> = LRAI_PARAMETERS.iter().map(|p| p.key).collect();
                write!(
                    f,
                    "{pos}: unknown LRAI parameter '{key}'; it is ignored (known: {})",
                    known.join(", ")
                )?;
                if let Some(s) = suggestion {
                    write!(f, "; did you mean '{s}'?")?;
                }
                Ok(())
            }
            ConfigWarning::DuplicateKey { field, key, pos } => write!(
                f,
                "{pos}: key '{key}' of '{field}' is given again; the last value is used"
            ),
            ConfigWarning::DynamicBatchingWithoutBatching { model } => write!(
                f,
                "model '{model}' has dynamic_batching but max_batch_size 0: requests run one at \
                 a time and only the queue policy and priorities apply; set max_batch_size > 0 \
                 to batch"
            ),
        }
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be a likely typo.
pub(crate) fn closest(name: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let (Some(&left), Some(&up)) = (row.get(j), row.get(j + 1)) else {
                break;
            };
            let value = (prev + cost).min(left + 1).min(up + 1);
            prev = up;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = value;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["max_batch_size", "input", "output", "dynamic_batching"];
        assert_eq!(closest("max_batchsize", &known), Some("max_batch_size"));
        assert_eq!(closest("inputs", &known), Some("input"));
        assert_eq!(closest("dynamic_batcher", &known), Some("dynamic_batching"));
        assert_eq!(closest("flavour", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn messages_name_the_field_and_line() {
        let w = ConfigWarning::UnknownField {
            field: "max_batchsize".into(),
            pos: Pos { line: 3, column: 1 },
            suggestion: Some("max_batch_size"),
        };
        assert_eq!(
            w.to_string(),
            "line 3, column 1: unknown field 'max_batchsize' (not in Triton's model \
             configuration); it is ignored; did you mean 'max_batch_size'?"
        );
    }
}
