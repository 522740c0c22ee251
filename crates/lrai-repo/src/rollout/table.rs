//! What a rollout needs from the model table: load a candidate version outside the table
//! (whatever `version_policy` says), and at promotion publish it in place of the baseline.

use std::sync::Arc;

use crate::handle::ModelHandle;
use crate::loader::{VersionJob, load_version, read_model_dir};
use crate::{RepoError, Repository, Result};

impl Repository {
    /// Version directories of a model on disk, ascending (empty when there is none).
    pub fn version_dirs(&self, name: &str) -> Vec<u64> {
        let dir = self.config.root.join(name);
        let Ok(entries) = fs_err::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found: Vec<u64> = entries
            .filter_map(std::result::Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()))
            .collect();
        found.sort_unstable();
        found
    }

    /// Loads and warms one version outside the table: it serves only through whoever
    /// holds the handle (the rollout), and stops when they shut it down.
    ///
    /// # Errors
    /// The load error (config, backend, warm-up).
    pub(crate) async fn load_detached(&self, name: &str, version: u64) -> Result<Arc<ModelHandle>> {
        let root = self.config.root.clone();
        let owned = name.to_string();
        let dir = tokio::task::spawn_blocking(move || read_model_dir(&root, &owned))
            .await
            .map_err(|e| RepoError::LoadPanicked {
                model: name.to_string(),
                version,
                reason: e.to_string(),
            })??;
        let job = VersionJob {
            root: self.config.root.clone(),
            name: name.to_string(),
            version,
            config: dir.config,
            backends: self.backends.clone(),
            settings: self.config.load.clone(),
            metrics: self.metrics.clone(),
        };
        load_version(job).await
    }

    /// Publishes `candidate` in the table and takes `baseline` out of it, atomically.
    /// Returns the baseline's handle when it was in the table, for the caller to drain.
    pub(crate) async fn promote_version(
        &self,
        candidate: &Arc<ModelHandle>,
        baseline: u64,
    ) -> Option<Arc<ModelHandle>> {
        let _guard = self.writer.lock().await;
        let mut table = (**self.table.load()).clone();
        let entry = table.entry(candidate.name().to_string()).or_default();
        entry
            .versions
            .insert(candidate.version(), Arc::clone(candidate));
        let removed = if baseline == candidate.version() {
            None
        } else {
            entry.versions.remove(&baseline)
        };
        self.table.store(Arc::new(table));
        removed
    }

    /// Whether the table holds this exact handle (not another load of the same version).
    pub(crate) fn holds(&self, handle: &Arc<ModelHandle>) -> bool {
        self.table
            .load()
            .get(handle.name())
            .and_then(|e| e.versions.get(&handle.version()))
            .is_some_and(|h| Arc::ptr_eq(h, handle))
    }
}
