//! The backends a repository loads models on: the default one, others by the name a
//! model's `lrai.backend` parameter gives, and why the missing ones are missing.

use std::collections::BTreeMap;
use std::sync::Arc;

use lrai_backend::{Backend, BackendKind};

use crate::{RepoError, Result};

/// The backends a repository can load models on, by config name, and the default.
#[derive(Debug, Clone)]
pub struct Backends {
    default: Arc<dyn Backend>,
    by_name: BTreeMap<String, Arc<dyn Backend>>,
    unavailable: BTreeMap<String, String>,
}

impl Backends {
    /// A set with `default` for models that don't ask (`lrai.backend` unset or `auto`).
    pub fn new(default: Arc<dyn Backend>) -> Backends {
        let mut by_name = BTreeMap::new();
        by_name.insert(default.kind().as_str().to_string(), Arc::clone(&default));
        Backends {
            default,
            by_name,
            unavailable: BTreeMap::new(),
        }
    }

    /// Adds a backend under a name (`tract`, `onnxruntime`, or a test's `fake`).
    #[must_use]
    pub fn with(mut self, name: &str, backend: Arc<dyn Backend>) -> Backends {
        self.by_name.insert(name.to_string(), backend);
        self
    }

    /// Records why a backend can't be used, for models that ask for it.
    #[must_use]
    pub fn without(mut self, name: &str, reason: &str) -> Backends {
        self.unavailable
            .insert(name.to_string(), reason.to_string());
        self
    }

    /// The default backend's kind.
    pub fn default_kind(&self) -> BackendKind {
        self.default.kind()
    }

    pub(crate) fn pick(&self, model: &str, wanted: Option<&str>) -> Result<Arc<dyn Backend>> {
        match wanted {
            None | Some("" | "auto") => Ok(Arc::clone(&self.default)),
            Some(name) => {
                let name = if name == "ort" { "onnxruntime" } else { name };
                self.by_name
                    .get(name)
                    .cloned()
                    .ok_or_else(|| RepoError::BackendUnavailable {
                        model: model.to_string(),
                        backend: name.to_string(),
                        reason: self.unavailable.get(name).cloned().unwrap_or_else(|| {
                            format!(
                                "known backends: {}",
                                self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        }),
                    })
            }
        }
    }
}
