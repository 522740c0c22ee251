//! How a load changes the table without downtime, and rollback.
//!
//! 1. Read the model directory: config, the versions `version_policy` names, and
//!    fingerprints of the files ([`crate::scan`]).
//! 2. Build and warm every named version that is new or whose files or config changed,
//!    while the current versions serve. Unchanged versions are kept as they are.
//! 3. Publish in one swap: built versions replace their old builds, versions the policy
//!    no longer names leave. A version that failed never serves; its old build (if any)
//!    stays, the reason goes into the index and the log, and while any version failed
//!    nothing is removed and a rollback's pin holds.
//! 4. Retire what left: requests that already hold the old handle finish on it (it is
//!    drained: [`drain`]), then its instances stop after their queue is empty.
//!
//! The caller holds the model's lock, so changes to one model never interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::handle::ModelHandle;
use crate::loader::{ModelDir, VersionJob, load_version, read_model_dir};
use crate::repository::{Repository, error_chain};
use crate::versions::{MODEL_WIDE, ModelEntry, Routing};
use crate::{RepoError, Result};

/// Longest wait for requests that hold a replaced version before its queue closes; a
/// request still holding it later gets "not serving" instead of waiting forever.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// What a rollback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollback {
    /// The version that served unversioned requests before.
    pub from: u64,
    /// The version that serves them now.
    pub to: u64,
}

/// What building each version gave: the handle, or why it failed.
type Built = BTreeMap<u64, std::result::Result<Arc<ModelHandle>, String>>;

impl Repository {
    /// Reads the model directory on a blocking thread.
    async fn read_dir(&self, name: &str) -> Result<ModelDir> {
        let root = self.config.root.clone();
        let owned = name.to_string();
        tokio::task::spawn_blocking(move || read_model_dir(&root, &owned))
            .await
            .map_err(|e| RepoError::LoadPanicked {
                model: name.to_string(),
                version: 0,
                reason: e.to_string(),
            })?
    }

    /// Steps 1 to 4 for one model; the caller holds its lock.
    pub(crate) async fn apply(&self, name: &str) -> Result<()> {
        let dir = match self.read_dir(name).await {
            Ok(dir) => dir,
            Err(e) => return self.record_model_failure(name, e).await,
        };
        let current = self.table.load().get(name).cloned().unwrap_or_default();
        let build: Vec<u64> = dir
            .versions
            .iter()
            .copied()
            .filter(|v| current.prints.get(v) != dir.prints.of_version(*v).as_ref())
            .collect();
        if current.versions.is_empty() && !build.is_empty() {
            self.edit_table(|t| t.entry(name.to_string()).or_default().loading = true)
                .await;
        }
        let mut built = Built::new();
        let mut first_error = None;
        for v in build {
            let result = self.build_version(name, &dir, v).await;
            built.insert(
                v,
                result.as_ref().map(Arc::clone).map_err(|e| error_chain(e)),
            );
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let retired = self.edit_table(|t| commit(t, name, &dir, built)).await;
        self.retire(name, retired);
        first_error.map_or(Ok(()), Err)
    }

    /// Builds and warms one version (bounded by the load slots).
    pub(crate) async fn build_version(
        &self,
        name: &str,
        dir: &ModelDir,
        version: u64,
    ) -> Result<Arc<ModelHandle>> {
        let _slot = self
            .load_slots
            .acquire()
            .await
            .expect("the load semaphore is never closed");
        if let Some(config) = dir
            .config
            .clone()
            .filter(crate::config::ModelConfig::is_ensemble)
        {
            return self.build_ensemble_version(name, config, version).await;
        }
        let job = VersionJob {
            root: self.config.root.clone(),
            name: name.to_string(),
            version,
            config: dir.config.clone(),
            backends: self.backends.clone(),
            settings: self.config.load.clone(),
            metrics: self.metrics.clone(),
        };
        let result = load_version(job).await;
        if let Err(e) = &result {
            tracing::error!(model = %name, version, error = %error_chain(e), "version failed to load; it does not serve");
        }
        result
    }

    /// An ensemble's version: its steps checked against the step models loaded now,
    /// which it looks up again at every request.
    async fn build_ensemble_version(
        &self,
        name: &str,
        config: crate::config::ModelConfig,
        version: u64,
    ) -> Result<Arc<ModelHandle>> {
        let job = crate::ensemble::load::EnsembleJob {
            root: self.config.root.clone(),
            name: name.to_string(),
            versions: vec![version],
            config,
            metrics: self.metrics.clone(),
            models: crate::repository::ModelLookup(Arc::downgrade(&self.table)),
        };
        let result = crate::ensemble::load::load(job)
            .await
            .and_then(|mut built| {
                built.remove(&version).ok_or_else(|| RepoError::Ensemble {
                    ensemble: name.to_string(),
                    reason: format!("version {version} was not built"),
                })
            });
        if let Err(e) = &result {
            tracing::error!(model = %name, version, error = %error_chain(e), "ensemble failed to load; it does not serve");
        }
        result
    }

    /// The whole model failed to read (config invalid, no version directory): a first
    /// load records it; loaded versions keep serving.
    async fn record_model_failure(&self, name: &str, e: RepoError) -> Result<()> {
        let reason = error_chain(&e);
        let print = crate::scan::fingerprint(&self.config.root.join(name)).whole();
        let gone = matches!(e, RepoError::ModelNotFound { .. });
        let serving = self
            .edit_table(|t| {
                let entry = t.entry(name.to_string()).or_default();
                entry.loading = false;
                entry.seen = Some(print);
                let serving = !entry.versions.is_empty();
                if gone && !serving {
                    // The directory vanished meanwhile: forget the model.
                    t.remove(name);
                } else {
                    entry.failures.insert(MODEL_WIDE, reason.clone());
                }
                serving
            })
            .await;
        if serving {
            tracing::warn!(model = %name, error = %reason, "reload failed; the loaded versions keep serving");
        }
        Err(match e {
            RepoError::ModelNotFound { name, .. } => RepoError::ModelNotFound {
                name,
                available: self.names().join(", "),
            },
            other => other,
        })
    }

    /// Hands replaced and removed versions to a task that drains and stops them. Their
    /// metrics go unless a build of that version is in the table by then (a rollback may
    /// have loaded it again meanwhile).
    fn retire(&self, name: &str, retired: Vec<Arc<ModelHandle>>) {
        for handle in retired {
            let metrics = self.metrics.clone();
            let table = Arc::clone(&self.table);
            let name = name.to_string();
            tokio::spawn(async move {
                drain(&handle).await;
                handle.shutdown().await;
                let version = handle.version();
                let loaded = table
                    .load()
                    .get(&name)
                    .is_some_and(|e| e.versions.contains_key(&version));
                if !loaded {
                    metrics.forget(&name, &version.to_string());
                }
                tracing::info!(model = %name, version, "replaced version stopped after draining");
            });
        }
    }

    /// Returns unversioned traffic of a model to the version that served it before the
    /// one serving now (see `docs/lifecycle.md`), loading that version first when the
    /// policy had unloaded it. The switch is one swap; nothing changes on error.
    ///
    /// # Errors
    /// [`RepoError::ModelNotFound`], [`RepoError::ModelUnavailable`],
    /// [`RepoError::NoPreviousVersion`], [`RepoError::RollbackTarget`].
    pub async fn rollback(&self, name: &str) -> Result<Rollback> {
        crate::repository::check_name(name)?;
        let lock = self.model_lock(name);
        let _serial = lock.lock().await;
        let entry =
            self.table
                .load()
                .get(name)
                .cloned()
                .ok_or_else(|| RepoError::ModelNotFound {
                    name: name.to_string(),
                    available: self.names().join(", "),
                })?;
        let from = entry.serving().ok_or_else(|| RepoError::ModelUnavailable {
            name: name.to_string(),
            reason: "no version serves, so there is nothing to roll back from".into(),
        })?;
        let to = entry
            .previous()
            .ok_or_else(|| RepoError::NoPreviousVersion {
                name: name.to_string(),
                serving: from,
            })?;
        let built = match entry.versions.get(&to) {
            Some(_) => None,
            None => Some(self.build_rollback_target(name, from, to).await?),
        };
        self.edit_table(|t| {
            let e = t.entry(name.to_string()).or_default();
            if let Some((handle, print)) = built {
                e.versions.insert(to, handle);
                e.prints.insert(to, print);
            }
            e.failures.remove(&to);
            e.routing = Routing::Pinned(to);
            e.held = BTreeSet::from([to]);
            e.rolled_back(to);
        })
        .await;
        tracing::info!(model = %name, from, to, "rolled back: unversioned requests go to version {to}");
        Ok(Rollback { from, to })
    }

    /// Loads the version a rollback returns to, which the policy had unloaded.
    async fn build_rollback_target(
        &self,
        name: &str,
        from: u64,
        to: u64,
    ) -> Result<(Arc<ModelHandle>, u64)> {
        let target_err = |reason: String| RepoError::RollbackTarget {
            name: name.to_string(),
            version: to,
            serving: from,
            reason,
        };
        let dir = self
            .read_dir(name)
            .await
            .map_err(|e| target_err(error_chain(&e)))?;
        let Some(print) = dir.prints.of_version(to) else {
            return Err(target_err(format!(
                "its directory '{name}/{to}' is no longer in the repository"
            )));
        };
        let handle = self
            .build_version(name, &dir, to)
            .await
            .map_err(|e| target_err(error_chain(&e)))?;
        Ok((handle, print))
    }
}

/// Step 3: publishes a load's results into the table; returns the handles to retire.
fn commit(
    table: &mut crate::repository::Table,
    name: &str,
    dir: &ModelDir,
    built: Built,
) -> Vec<Arc<ModelHandle>> {
    let entry = table.entry(name.to_string()).or_default();
    entry.loading = false;
    entry.seen = Some(dir.prints.whole());
    entry.failures.clear();
    let mut retired = Vec::new();
    let mut failed = false;
    for (v, result) in built {
        match result {
            Ok(handle) => {
                if let Some(old) = entry.versions.insert(v, handle) {
                    retired.push(old);
                }
                if let Some(p) = dir.prints.of_version(v) {
                    entry.prints.insert(v, p);
                }
            }
            Err(reason) => {
                failed = true;
                entry.failures.insert(v, reason);
            }
        }
    }
    if !failed {
        entry.routing = Routing::Policy;
        entry.held.clear();
    }
    let keep = kept_versions(entry, dir, failed);
    let leaving: Vec<u64> = entry
        .versions
        .keys()
        .copied()
        .filter(|v| !keep.contains(v))
        .collect();
    for v in leaving {
        entry.prints.remove(&v);
        if let Some(old) = entry.versions.remove(&v) {
            retired.push(old);
        }
    }
    entry.note_serving();
    retired
}

/// The versions that stay loaded: what the policy names, what a rollback holds, and,
/// while a version failed, everything still on disk (the old versions keep serving).
fn kept_versions(entry: &ModelEntry, dir: &ModelDir, failed: bool) -> BTreeSet<u64> {
    let on_disk: BTreeSet<u64> = dir.found.iter().copied().collect();
    let mut keep: BTreeSet<u64> = dir.versions.iter().copied().collect();
    keep.extend(entry.held.iter().filter(|v| on_disk.contains(v)));
    if failed {
        keep.extend(entry.versions.keys().filter(|v| on_disk.contains(v)));
    }
    keep
}

/// Waits (bounded) until no request holds `handle` any more but the caller: requests
/// that looked a version up just before it was replaced may not have queued yet, and
/// must not meet a closed queue.
pub(crate) async fn drain(handle: &Arc<ModelHandle>) {
    let started = Instant::now();
    while Arc::strong_count(handle) > 1 && started.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
