//! Certificates: the JSON a third party needs to re-check a verdict. Files are named by
//! SHA-256 so the certificate cannot silently refer to another model or property; a
//! counterexample can be re-run as is; a proof records the method, its settings and the
//! smallest proven margin together with the float safety margin that was subtracted.

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::equivalence::{EquivOutcome, EquivSettings, EquivVerdict, ProofStatus};
use crate::verifier::{Outcome, Settings, Verdict};

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file's name and hash for a certificate.
#[derive(Debug, Clone)]
pub struct FileRef {
    /// Path as given.
    pub path: String,
    /// SHA-256 of the contents.
    pub sha256: String,
}

impl FileRef {
    /// Hashes a file.
    ///
    /// # Errors
    /// I/O errors (naming the path).
    pub fn from_path(path: &Path) -> std::io::Result<FileRef> {
        let bytes = fs_err::read(path)?;
        Ok(FileRef {
            path: path.display().to_string(),
            sha256: sha256_hex(&bytes),
        })
    }

    fn to_json(&self) -> Value {
        json!({"path": self.path, "sha256": self.sha256})
    }
}

/// The version written into certificates.
pub const LRAI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The certificate of one verification run.
pub fn verification(
    model: &FileRef,
    property: &FileRef,
    settings: &Settings,
    outcome: &Outcome,
) -> Value {
    // `usize::MAX` layers means every hidden layer.
    let refine_layers = match settings.relu.refine.layers {
        usize::MAX => json!("all"),
        n => json!(n),
    };
    let mut doc = json!({
        "kind": "lrai-verification",
        "lrai_version": LRAI_VERSION,
        "model": model.to_json(),
        "property": property.to_json(),
        "result": outcome.verdict.as_str(),
        "method": outcome.method,
        "settings": {
            "requested_method": settings.method.as_str(),
            "timeout_s": settings.timeout.as_secs_f64(),
            "input_split_max_dim": settings.input_split_max_dim,
            "attack": {"samples": settings.attack.samples, "restarts": settings.attack.restarts,
                       "steps": settings.attack.steps, "seed": settings.attack.seed,
                       "low_dim": settings.attack.low_dim, "low_dim_scale": settings.attack.low_dim_scale},
            "input_split": {"strong_branching": settings.input_split.strong,
                            "pgd_steps": settings.input_split.pgd_steps},
            "relu_split": {"root_alpha_iters": settings.relu.root_iters,
                           "alpha_beta_iters": settings.relu.iters, "batch": settings.relu.batch,
                           "intermediate_alpha_iters": settings.relu.intermediate_iters,
                           "strong_branching_candidates": settings.relu.candidates,
                           "refine": {"layers": refine_layers,
                                      "domains_per_bound": settings.relu.refine.domains,
                                      "root_alpha_iters": settings.relu.refine.root_iters,
                                      "alpha_beta_iters": settings.relu.refine.iters,
                                      "strong_branching_candidates": settings.relu.refine.candidates,
                                      "quick_search_share": settings.relu.refine.quick_share,
                                      "timeout_share": settings.relu.refine.share}},
            "bounds": "IBP + CROWN intermediate bounds; alpha-CROWN/beta-CROWN on the property rows; f64 arithmetic",
        },
        "time_s": outcome.elapsed.as_secs_f64(),
        "domains": outcome.domains,
        "max_depth": outcome.max_depth,
        "float_safety_margin_max": outcome.max_safety_margin,
    });
    match &outcome.verdict {
        Verdict::Holds => {
            doc["proof"] = json!({
                "claim": "for every input in the property's box(es), every unsafe clause has a row with lower bound > safety margin",
                "min_slack": outcome.min_slack,
            });
        }
        Verdict::Violated { x, y } => {
            doc["counterexample"] = json!({"x": x, "y": y});
        }
        Verdict::Unknown { reason } => {
            doc["reason"] = json!(reason);
        }
    }
    doc
}

/// The certificate of one equivalence check. `region` describes the input region as the
/// caller defined it (box, or balls around the points of a hashed file); `backend`
/// names the engine the samples ran on.
pub fn equivalence(
    original: &FileRef,
    optimized: &FileRef,
    region: &Value,
    backend: &str,
    settings: &EquivSettings,
    outcome: &EquivOutcome,
) -> Value {
    let stats = |s: &crate::equivalence::SampleStats| {
        json!({"n": s.n, "max": s.max, "mean": s.mean,
               "p50": s.quantiles.p50, "p90": s.quantiles.p90,
               "p99": s.quantiles.p99, "p99.9": s.quantiles.p999})
    };
    let proof = match &outcome.proof {
        ProofStatus::Bound(b) => json!({
            "status": "proven",
            "claim": "for every input in the region, max_j |f_opt(x)_j - f(x)_j| <= bound, for both \
                      models evaluated in f32 as the ONNX graphs define them (any summation order)",
            "bound": b.max,
            "bound_per_output": b.per_output,
            "bound_before_splitting": b.root_max,
            "method": "difference network (shared input, y_opt - y_orig); CROWN intermediate bounds, \
                       alpha-CROWN on rows +-e_j; input bisection; f64 arithmetic with f32 rounding \
                       terms and a 1e-9 relative safety margin",
            "domains": b.domains,
            "max_depth": b.max_depth,
            "stopped": b.stop,
        }),
        ProofStatus::NotAttempted { reason } => json!({
            "status": "not attempted",
            "reason": reason,
        }),
    };
    let mut doc = json!({
        "kind": "lrai-equivalence",
        "lrai_version": LRAI_VERSION,
        "original": original.to_json(),
        "optimized": optimized.to_json(),
        "region": region,
        "epsilon": settings.epsilon,
        "result": outcome.verdict.as_str(),
        "epsilon_met": outcome.epsilon_met,
        "argument": outcome.argument,
        "proof": proof,
        "sampling": {
            "backend": backend,
            "random": stats(&outcome.sampled),
            "attack": stats(&outcome.attacked),
        },
        "settings": {
            "samples": settings.samples, "seed": settings.seed,
            "timeout_s": settings.timeout.as_secs_f64(), "alpha_iters": settings.alpha_iters,
            "pgd_starts": settings.pgd_starts, "pgd_steps": settings.pgd_steps,
        },
        "time_s": outcome.elapsed.as_secs_f64(),
    });
    if let Some(w) = &outcome.worst {
        doc["worst"] = json!({"x": w.x, "y_original": w.y_orig, "y_optimized": w.y_opt,
                              "output": w.output, "difference": w.diff, "found_by": w.found_by});
    }
    if let EquivVerdict::Unknown { reason } = &outcome.verdict {
        doc["reason"] = json!(reason);
    }
    doc
}
