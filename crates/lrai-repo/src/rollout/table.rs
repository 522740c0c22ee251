//! What a rollout needs from the model table: load a candidate version outside the table
//! (whatever `version_policy` says), and at promotion publish it in place of the baseline.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::handle::ModelHandle;
use crate::loader::{ModelDir, VersionJob, load_version, read_model_dir};
use crate::versions::{ModelEntry, Routing};
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

    /// Publishes `candidate` in the table and takes `baseline` out of it, atomically, then
    /// lets `version_policy` apply again: versions it no longer names leave (the rollout
    /// held both arms whatever it said). The candidate answers unversioned requests; when
    /// the policy would not pick it (it is not the highest version the policy keeps), it
    /// is pinned and held as a rollback's target is, until the next load of the model.
    /// Returns the handles that left the table, for the caller to drain.
    pub(crate) async fn promote_version(
        &self,
        candidate: &Arc<ModelHandle>,
        baseline: u64,
    ) -> Vec<Arc<ModelHandle>> {
        let name = candidate.name().to_string();
        let lock = self.model_lock(&name);
        let _serial = lock.lock().await;
        // Unreadable now (files edited mid-rollout): keep only the candidate's row change.
        let root = self.config.root.clone();
        let owned = name.clone();
        let dir = tokio::task::spawn_blocking(move || read_model_dir(&root, &owned))
            .await
            .ok()
            .and_then(std::result::Result::ok);
        let _guard = self.writer.lock().await;
        let mut table = (**self.table.load()).clone();
        let entry = table.entry(name).or_default();
        let retired = publish_candidate(entry, candidate, baseline, dir.as_ref());
        entry.note_serving();
        self.table.store(Arc::new(table));
        retired
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

/// The table row after a promotion: the candidate in, the baseline out, and (when the
/// directory could be read) only what the policy names besides the candidate; the
/// baseline stays only when the policy names it.
fn publish_candidate(
    entry: &mut ModelEntry,
    candidate: &Arc<ModelHandle>,
    baseline: u64,
    dir: Option<&ModelDir>,
) -> Vec<Arc<ModelHandle>> {
    let promoted = candidate.version();
    let mut retired = Vec::new();
    if let Some(old) = entry.versions.insert(promoted, Arc::clone(candidate))
        && !Arc::ptr_eq(&old, candidate)
    {
        retired.push(old);
    }
    if let Some(p) = dir.and_then(|d| d.prints.of_version(promoted)) {
        entry.prints.insert(promoted, p);
    }
    // Without the directory the policy is unknown: only the baseline leaves.
    let policy: Option<BTreeSet<u64>> = dir.map(|d| d.versions.iter().copied().collect());
    let leaving: Vec<u64> = entry
        .versions
        .keys()
        .copied()
        .filter(|v| *v != promoted)
        .filter(|v| policy.as_ref().map_or(*v == baseline, |p| !p.contains(v)))
        .collect();
    for v in leaving {
        entry.prints.remove(&v);
        if let Some(old) = entry.versions.remove(&v) {
            retired.push(old);
        }
    }
    entry.held.clear();
    let highest = entry.versions.keys().next_back().copied();
    let named = policy.as_ref().is_none_or(|p| p.contains(&promoted));
    if named && highest == Some(promoted) {
        entry.routing = Routing::Policy;
    } else {
        entry.routing = Routing::Pinned(promoted);
        entry.held.insert(promoted);
    }
    retired
}
