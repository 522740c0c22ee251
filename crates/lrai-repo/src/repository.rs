//! The model table: which models and versions are READY, loading, or unavailable (with
//! the reason), swapped atomically (`arc-swap`) so request lookups take no lock.
//!
//! Changes to one model (load, poll, unload, rollback) are serialised by that model's
//! lock, and at most `load_parallelism` loads build at once across models. Table writes
//! are serialised by `writer` and are short: building happens before, draining after.
//! How a load swaps versions: [`crate::apply`]; which version answers: [`crate::versions`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use lrai_monitor::Metrics;
use tokio::sync::{Mutex, Semaphore};

use crate::backends::Backends;
use crate::handle::ModelHandle;
use crate::loader::{LoadSettings, list_models};
use crate::versions::ModelEntry;
use crate::{RepoError, Result};

/// When models load and whether the API may load/unload them (Triton's
/// `--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Load every model at start and ignore later changes; the repository API can't
    /// load, unload or roll back (Triton's default).
    #[default]
    None,
    /// Load every model at start, then rescan the repository every poll interval and
    /// apply what changed on disk; the API can roll back but not load or unload.
    Poll,
    /// Load the models named at start (all by default); the API loads, unloads and
    /// rolls back.
    Explicit,
}

impl ControlMode {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlMode::None => "none",
            ControlMode::Poll => "poll",
            ControlMode::Explicit => "explicit",
        }
    }

    /// From the flag's spelling (`none`, `poll`, `explicit`; any case, as Triton's).
    pub fn parse(text: &str) -> Option<ControlMode> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Some(ControlMode::None),
            "poll" => Some(ControlMode::Poll),
            "explicit" => Some(ControlMode::Explicit),
            _ => None,
        }
    }
}

/// Repository settings.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// The repository directory.
    pub root: PathBuf,
    /// Control mode.
    pub control: ControlMode,
    /// Models to load at start; empty = all.
    pub startup_models: Vec<String>,
    /// Loads building at once (startup, API and poller alike); at least 1.
    pub load_parallelism: usize,
    /// How often the poller rescans the repository ([`ControlMode::Poll`]).
    pub poll_interval: Duration,
    /// Per-model load settings.
    pub load: LoadSettings,
}

/// One version's state as the index shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Serving.
    Ready,
    /// Failed to load (or no version loaded).
    Unavailable,
    /// Being loaded.
    Loading,
}

impl VersionState {
    /// Triton's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Ready => "READY",
            VersionState::Unavailable => "UNAVAILABLE",
            VersionState::Loading => "LOADING",
        }
    }
}

/// A repository index row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version ("" when the model has none loaded).
    pub version: String,
    /// State.
    pub state: VersionState,
    /// Why it is not READY ("" when it is).
    pub reason: String,
}

pub(crate) type Table = BTreeMap<String, ModelEntry>;

/// The model repository and its table of loaded models.
#[derive(Debug)]
pub struct Repository {
    pub(crate) config: RepoConfig,
    pub(crate) backends: Backends,
    pub(crate) metrics: Metrics,
    /// Shared with the tasks that retire replaced versions.
    pub(crate) table: Arc<ArcSwap<Table>>,
    /// Serialises table writes (each a clone, an edit and a swap).
    pub(crate) writer: Mutex<()>,
    /// One lock per model name: changes to one model run one at a time.
    model_locks: std::sync::Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    /// Bounds the loads building at once.
    pub(crate) load_slots: Semaphore,
    /// True once the startup loads ended: the server is not ready before (an empty table
    /// would otherwise count as all ready while the first models still load).
    started: std::sync::atomic::AtomicBool,
}

impl Repository {
    /// Opens a repository directory (nothing is loaded yet).
    ///
    /// # Errors
    /// [`RepoError::Repository`] when the directory can't be read.
    pub fn open(config: RepoConfig, backends: Backends, metrics: Metrics) -> Result<Repository> {
        if !config.root.is_dir() {
            return Err(RepoError::Repository {
                path: config.root,
                reason: "not a directory; pass --model-repository DIR with <model>/config.pbtxt and <model>/<version>/model.onnx".into(),
            });
        }
        Ok(Repository {
            load_slots: Semaphore::new(config.load_parallelism.max(1)),
            config,
            backends,
            metrics,
            table: Arc::new(ArcSwap::from_pointee(Table::new())),
            writer: Mutex::new(()),
            model_locks: std::sync::Mutex::new(BTreeMap::new()),
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The repository directory.
    pub fn root(&self) -> &std::path::Path {
        &self.config.root
    }

    /// The control mode.
    pub fn control_mode(&self) -> ControlMode {
        self.config.control
    }

    /// How often the poller rescans ([`ControlMode::Poll`]).
    pub fn poll_interval(&self) -> Duration {
        self.config.poll_interval
    }

    /// Loads the startup models: every model in the repository, or in explicit mode the
    /// `--load-model` ones when given. At most `load_parallelism` build at once. Models
    /// that fail are recorded as unavailable with their reason; the others serve.
    ///
    /// # Errors
    /// [`RepoError::Repository`] when the directory can't be listed.
    pub async fn load_startup(&self) -> Result<()> {
        let result = self.load_startup_models().await;
        self.started
            .store(true, std::sync::atomic::Ordering::Release);
        result
    }

    async fn load_startup_models(&self) -> Result<()> {
        let root = self.config.root.clone();
        let explicit_list =
            self.config.control == ControlMode::Explicit && !self.config.startup_models.is_empty();
        let mut names = if explicit_list {
            self.config.startup_models.clone()
        } else {
            tokio::task::spawn_blocking(move || list_models(&root))
                .await
                .map_err(|e| RepoError::Repository {
                    path: self.config.root.clone(),
                    reason: e.to_string(),
                })??
        };
        names.sort();
        names.dedup();
        // Ensembles load after their step models.
        let root = self.config.root.clone();
        let waves =
            tokio::task::spawn_blocking(move || crate::ensemble::load::startup_waves(&root, names))
                .await
                .map_err(|e| RepoError::Repository {
                    path: self.config.root.clone(),
                    reason: e.to_string(),
                })?;
        for names in waves {
            // The load slots bound how many build at once.
            let loads = names.iter().map(|n| self.load_model(n));
            for (name, result) in names.iter().zip(futures_join_all(loads).await) {
                if let Err(e) = result {
                    tracing::error!(model = %name, error = %e, "model failed to load");
                }
            }
        }
        Ok(())
    }

    /// Loads (or reloads) a model from the repository: every version its policy names.
    /// Versions whose files and config are unchanged keep serving as they are; changed
    /// and new ones are built and warmed while the old ones serve, then swapped in at
    /// once; versions the policy no longer names are drained and stopped. A second load
    /// of the same model waits for the first, then applies what is on disk then.
    ///
    /// # Errors
    /// The first load error. A version that fails never serves: its old build (if any)
    /// keeps serving, and the reason is in the index and the log.
    pub async fn load_model(&self, name: &str) -> Result<()> {
        check_name(name)?;
        if !self.config.root.join(name).is_dir() {
            return Err(RepoError::ModelNotFound {
                name: name.to_string(),
                available: self.names().join(", "),
            });
        }
        let lock = self.model_lock(name);
        let _serial = lock.lock().await;
        self.apply(name).await
    }

    /// Loads a model as the load API asks: an ensemble's step models first (each
    /// loaded or brought up to date with what is on disk), then the model, as Triton
    /// loads an ensemble's models with it.
    ///
    /// # Errors
    /// The first load error, a step model's included; nothing after it is loaded.
    pub async fn load_with_steps(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let root = self.config.root.clone();
        let named = vec![name.to_string()];
        let waves =
            tokio::task::spawn_blocking(move || crate::ensemble::load::startup_waves(&root, named))
                .await
                .map_err(|e| RepoError::Repository {
                    path: self.config.root.clone(),
                    reason: e.to_string(),
                })?;
        for step in waves.iter().flatten().filter(|n| *n != name) {
            self.load_model(step).await?;
        }
        self.load_model(name).await
    }

    /// The lock that serialises changes to one model.
    pub(crate) fn model_lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .model_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(name.to_string()).or_default())
    }

    /// Applies `edit` to a copy of the table and publishes it (one atomic swap).
    pub(crate) async fn edit_table<T>(&self, edit: impl FnOnce(&mut Table) -> T) -> T {
        let _guard = self.writer.lock().await;
        let mut table = (**self.table.load()).clone();
        let out = edit(&mut table);
        self.table.store(Arc::new(table));
        out
    }

    /// Unloads every version of a model; requests that already have a version finish
    /// on it first.
    ///
    /// # Errors
    /// [`RepoError::ModelNotFound`] when it is not in the table.
    pub async fn unload_model(&self, name: &str) -> Result<()> {
        let lock = self.model_lock(name);
        let _serial = lock.lock().await;
        let removed = self.edit_table(|t| t.remove(name)).await;
        let Some(entry) = removed else {
            return Err(RepoError::ModelNotFound {
                name: name.to_string(),
                available: self.names().join(", "),
            });
        };
        for (v, h) in entry.versions {
            crate::apply::drain(&h).await;
            h.shutdown().await;
            self.metrics.forget(name, &v.to_string());
        }
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Names in the table.
    pub fn names(&self) -> Vec<String> {
        self.table.load().keys().cloned().collect()
    }

    /// The READY handle for a model and version. `""` or `None` asks for the version
    /// that answers unversioned requests (the highest loaded one, or the one a rollback
    /// pinned).
    ///
    /// # Errors
    /// [`RepoError::ModelNotFound`], [`RepoError::BadVersion`],
    /// [`RepoError::VersionNotFound`], [`RepoError::ModelUnavailable`].
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelHandle>> {
        let handle = lookup(&self.table.load(), name, version)?;
        // An ensemble is loaded but can't serve while a step model isn't ready.
        if let Some(reason) = handle.unready_reason() {
            return Err(RepoError::ModelUnavailable {
                name: name.to_string(),
                reason,
            });
        }
        Ok(handle)
    }

    /// The version that answers unversioned requests of a model, if one is READY.
    pub fn serving_version(&self, name: &str) -> Option<u64> {
        self.table.load().get(name).and_then(ModelEntry::serving)
    }

    /// Every READY handle.
    pub fn ready(&self) -> Vec<Arc<ModelHandle>> {
        self.table
            .load()
            .values()
            .flat_map(|e| e.versions.values().cloned())
            .collect()
    }

    /// True when the startup loads ended, every model in the table has a READY version
    /// and none is loading.
    pub fn all_ready(&self) -> bool {
        if !self.started.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        self.table.load().values().all(|e| {
            !e.versions.is_empty()
                && !e.loading
                && e.versions.values().all(|h| h.unready_reason().is_none())
        })
    }

    /// The repository index: models in the directory and in the table, with states: a
    /// row per READY version and per version whose last load failed (with the reason).
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let table = self.table.load();
        let mut names: Vec<String> = list_models(&self.config.root).unwrap_or_default();
        names.extend(table.keys().cloned());
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            match table.get(&name) {
                Some(e) => out.extend(e.index_rows(&name)),
                None => out.push(IndexEntry {
                    name,
                    version: String::new(),
                    state: VersionState::Unavailable,
                    reason: "unloaded".into(),
                }),
            }
        }
        if ready_only {
            out.retain(|e| e.state == VersionState::Ready);
        }
        out
    }

    /// Unloads everything, letting queued requests finish.
    pub async fn shutdown(&self) {
        let guard = self.writer.lock().await;
        let table = self.table.swap(Arc::new(Table::new()));
        drop(guard);
        let handles: Vec<Arc<ModelHandle>> = table
            .values()
            .flat_map(|e| e.versions.values().cloned())
            .collect();
        for h in handles {
            h.shutdown().await;
        }
    }
}

/// A name with no directory never enters the table: a typo must not leave an
/// UNAVAILABLE entry behind that turns server readiness false.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if lrai_core::confine::invalid_name_reason(name).is_some() {
        return Err(RepoError::InvalidModelName {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn ready_list(entry: &ModelEntry) -> String {
    entry
        .versions
        .keys()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unavailable_reason(entry: &ModelEntry) -> String {
    if entry.loading {
        return "it is loading".to_string();
    }
    entry
        .failures
        .iter()
        .next()
        .map(|(v, r)| {
            if *v == crate::versions::MODEL_WIDE {
                r.clone()
            } else {
                format!("version {v}: {r}")
            }
        })
        .unwrap_or_else(|| "no version is loaded".into())
}

/// The loaded handle for a model and version (`""` or `None`: the one that answers
/// unversioned requests).
fn lookup(table: &Table, name: &str, version: Option<&str>) -> Result<Arc<ModelHandle>> {
    let Some(entry) = table.get(name) else {
        return Err(RepoError::ModelNotFound {
            name: name.to_string(),
            available: table.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    };
    let Some(v) = version.filter(|v| !v.is_empty()) else {
        return entry
            .unversioned()
            .cloned()
            .ok_or_else(|| RepoError::ModelUnavailable {
                name: name.to_string(),
                reason: unavailable_reason(entry),
            });
    };
    let n: u64 = v.parse().map_err(|_| RepoError::BadVersion {
        name: name.to_string(),
        version: v.to_string(),
    })?;
    entry
        .versions
        .get(&n)
        .cloned()
        .ok_or_else(|| RepoError::VersionNotFound {
            name: name.to_string(),
            version: n,
            ready: ready_list(entry),
        })
}

/// Looks models up in the live table, for ensembles: weak, because the table holds the
/// ensembles that hold this.
#[derive(Debug, Clone)]
pub(crate) struct ModelLookup(pub(crate) Weak<ArcSwap<Table>>);

impl ModelLookup {
    /// The loaded handle of a model and version (see [`Repository::get`]).
    pub(crate) fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelHandle>> {
        let table = self
            .0
            .upgrade()
            .ok_or_else(|| RepoError::ModelUnavailable {
                name: name.to_string(),
                reason: "the repository has shut down".into(),
            })?;
        lookup(&table.load(), name, version)
    }
}

/// Awaits futures concurrently on this task (no extra dependency for `join_all`).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// An error and its sources, `: `-joined.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
