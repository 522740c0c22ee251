//! A step that may replace a model file before its sessions are built: quantize-at-load
//! (`lrai.quantize*` parameters). The repository only defines the hook; the server
//! plugs in `lrai-quant` (lrai-repo may not depend on it), so the loader stays free of
//! calibration code and tests can plug in their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lrai_backend::{Backend, SessionOptions};

/// What the loader hands a [`ModelPrep`] for one version.
#[derive(Debug)]
pub struct PrepRequest<'a> {
    /// Model name.
    pub model: &'a str,
    /// Version being loaded.
    pub version: u64,
    /// The version's model file.
    pub model_path: &'a Path,
    /// `<repository>/<model>`, where data paths in parameters are resolved.
    pub model_dir: &'a Path,
    /// `config.pbtxt` parameters.
    pub parameters: &'a BTreeMap<String, String>,
    /// The backend that will serve the model.
    pub backend: &'a Arc<dyn Backend>,
    /// Its session options.
    pub options: &'a SessionOptions,
}

/// The file to serve instead, and what to show about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The model file the sessions load.
    pub path: PathBuf,
    /// True when a cached result was reused.
    pub reused: bool,
    /// One line for the config and statistics (mode, size ratio, metric before → after).
    pub summary: String,
    /// The full report file, when there is one.
    pub report_path: Option<PathBuf>,
}

impl Prepared {
    /// The JSON shown as `lrai_quantization` in the model's statistics.
    pub fn to_json(&self) -> serde_json::Value {
        let name = |p: &Path| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        serde_json::json!({
            "summary": self.summary,
            "model_file": name(&self.path),
            "report_file": self.report_path.as_deref().map(name),
            "cache": if self.reused { "reused" } else { "created" },
        })
    }
}

/// Prepares a model file before loading. `Ok(None)`: serve the file as it is.
pub trait ModelPrep: Send + Sync + std::fmt::Debug {
    /// Runs on a blocking thread; may take minutes (calibration).
    ///
    /// # Errors
    /// A message naming what is wrong and what to change; the model then fails to load
    /// with it, and other models are unaffected.
    fn prepare(&self, req: &PrepRequest<'_>) -> Result<Option<Prepared>, String>;
}
