//! Certificates: the JSON a third party needs to re-check a verdict. Files are named by
//! SHA-256 so the certificate cannot silently refer to another model or property; a
//! counterexample can be re-run as is; a proof records the method, its settings and the
//! smallest proven margin together with the float safety margin that was subtracted.

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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
                       "steps": settings.attack.steps, "seed": settings.attack.seed},
            "relu_split": {"root_alpha_iters": settings.relu.root_iters,
                           "alpha_beta_iters": settings.relu.iters, "batch": settings.relu.batch},
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
