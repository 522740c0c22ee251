//! VNN-COMP instance lists (`onnx,vnnlib,timeout` per line, paths relative to the CSV)
//! and their results files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Result, VerifyError};

/// One instance of a benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Model path (resolved against the CSV's directory).
    pub onnx: PathBuf,
    /// Property path (resolved likewise).
    pub vnnlib: PathBuf,
    /// The onnx column as written.
    pub onnx_text: String,
    /// The vnnlib column as written.
    pub vnnlib_text: String,
    /// Per-instance timeout.
    pub timeout: Duration,
}

/// Parses an instance list. A header line (one whose third column is not a number) is
/// skipped; blank lines are ignored.
///
/// # Errors
/// [`VerifyError::Parse`] naming the line for a malformed row.
pub fn parse(csv: &Path, text: &str) -> Result<Vec<Instance>> {
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let err = |message: String| VerifyError::Parse {
            file: csv.display().to_string(),
            line: n + 1,
            column: 1,
            message,
        };
        let [onnx, vnnlib, timeout, ..] = cols.as_slice() else {
            return Err(err(format!("expected onnx,vnnlib,timeout, got '{line}'")));
        };
        let Ok(t) = timeout.parse::<f64>() else {
            if n == 0 {
                continue;
            }
            return Err(err(format!(
                "timeout '{timeout}' is not a number of seconds"
            )));
        };
        if !(t.is_finite() && t > 0.0) {
            return Err(err(format!("timeout '{timeout}' must be positive")));
        }
        out.push(Instance {
            onnx: base.join(onnx),
            vnnlib: base.join(vnnlib),
            onnx_text: (*onnx).to_string(),
            vnnlib_text: (*vnnlib).to_string(),
            timeout: Duration::from_secs_f64(t),
        });
    }
    Ok(out)
}

/// Reads and parses an instance list.
///
/// # Errors
/// I/O errors and as [`parse`].
pub fn load(csv: &Path) -> Result<Vec<Instance>> {
    let text = fs_err::read_to_string(csv)?;
    parse(csv, &text)
}

/// VNN-COMP's word for a result: `unsat` (holds), `sat` (violated), `timeout` (unknown
/// after running out of time) or `error`.
pub fn vnncomp_word(result: &str, reason: &str) -> &'static str {
    match result {
        "holds" => "unsat",
        "violated" => "sat",
        "unknown" if reason.contains("timeout") => "timeout",
        "unknown" => "unknown",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_against_the_csv() {
        let v = parse(
            Path::new("/b/instances.csv"),
            "onnx,vnnlib,timeout\nonnx/a.onnx,vnnlib/p.vnnlib,116\n\n",
        )
        .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].onnx, PathBuf::from("/b/onnx/a.onnx"));
        assert_eq!(v[0].timeout, Duration::from_secs(116));
        assert!(parse(Path::new("x.csv"), "a,b,1\nc,d,x\n").is_err());
    }
}
