//! The model table: which models and versions are READY, loading, or unavailable (with
//! the reason), swapped atomically (`arc-swap`) so request lookups take no lock.
//!
//! Loads and unloads are serialised per repository by an async mutex; a reload builds the
//! new versions first and swaps only when they are READY, so a broken update leaves the
//! old versions serving. Replaced and unloaded versions finish their queued requests
//! before their instances stop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use lrai_backend::{Backend, BackendKind};
use lrai_monitor::Metrics;
use tokio::sync::Mutex;

use crate::handle::ModelHandle;
use crate::loader::{LoadSettings, VersionJob, list_models, load_version, read_model_dir};
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

/// When models load and whether the API may load/unload them (Triton's
/// `--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Load every model at start; the repository API can't load or unload.
    None,
    /// Load the models named at start (all by default); the API loads and unloads.
    #[default]
    Explicit,
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
    /// Models loading at once at start.
    pub load_parallelism: usize,
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

#[derive(Debug, Clone, Default)]
pub(crate) struct ModelEntry {
    pub(crate) versions: BTreeMap<u64, Arc<ModelHandle>>,
    /// Failed versions (or the whole model, under key 0) with the reason.
    failures: BTreeMap<u64, String>,
    loading: bool,
}

pub(crate) type Table = BTreeMap<String, ModelEntry>;

/// The model repository and its table of loaded models.
#[derive(Debug)]
pub struct Repository {
    pub(crate) config: RepoConfig,
    pub(crate) backends: Backends,
    pub(crate) metrics: Metrics,
    pub(crate) table: ArcSwap<Table>,
    pub(crate) writer: Mutex<()>,
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
            config,
            backends,
            metrics,
            table: ArcSwap::from_pointee(Table::new()),
            writer: Mutex::new(()),
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

    /// Loads the startup models, a few at a time. Models that fail are recorded as
    /// unavailable with their reason; the others serve.
    ///
    /// # Errors
    /// [`RepoError::Repository`] when the directory can't be listed.
    pub async fn load_startup(&self) -> Result<()> {
        let root = self.config.root.clone();
        let mut names =
            if self.config.startup_models.is_empty() || self.config.control == ControlMode::None {
                tokio::task::spawn_blocking(move || list_models(&root))
                    .await
                    .map_err(|e| RepoError::Repository {
                        path: self.config.root.clone(),
                        reason: e.to_string(),
                    })??
            } else {
                self.config.startup_models.clone()
            };
        names.dedup();
        let parallel = self.config.load_parallelism.max(1);
        for chunk in names.chunks(parallel) {
            let loads = chunk.iter().map(|n| self.load_model(n));
            for (name, result) in chunk.iter().zip(futures_join_all(loads).await) {
                if let Err(e) = result {
                    tracing::error!(model = %name, error = %e, "model failed to load");
                }
            }
        }
        Ok(())
    }

    /// Loads (or reloads) a model from the repository: every version its policy names.
    /// New versions replace old ones only when all of them are READY.
    ///
    /// # Errors
    /// The load error; the table then records the model as unavailable (a first load) or
    /// keeps the old versions (a reload).
    pub async fn load_model(&self, name: &str) -> Result<()> {
        // A name with no directory never enters the table: a typo must not leave an
        // UNAVAILABLE entry behind that turns server readiness false.
        let bad_name =
            name.trim().is_empty() || name.contains(['/', '\\']) || name.starts_with('.');
        if bad_name {
            return Err(RepoError::InvalidModelName {
                name: name.to_string(),
            });
        }
        if !self.config.root.join(name).is_dir() {
            return Err(RepoError::ModelNotFound {
                name: name.to_string(),
                available: self.names().join(", "),
            });
        }
        self.mark_loading(name, true).await;
        let result = self.build_model(name).await;
        let _guard = self.writer.lock().await;
        let mut table = (**self.table.load()).clone();
        let entry = table.entry(name.to_string()).or_default();
        entry.loading = false;
        let replaced = match &result {
            Ok(versions) => {
                entry.failures.clear();
                std::mem::replace(&mut entry.versions, versions.clone())
            }
            Err(RepoError::ModelNotFound { .. }) if entry.versions.is_empty() => {
                // The directory vanished meanwhile: forget the model.
                table.remove(name);
                BTreeMap::new()
            }
            Err(e) => {
                if entry.versions.is_empty() {
                    // With its causes: "invalid configuration X" alone doesn't say what to fix.
                    entry.failures.insert(0, error_chain(&e));
                } else {
                    tracing::warn!(model = %name, error = %e, "reload failed; the loaded versions keep serving");
                }
                BTreeMap::new()
            }
        };
        self.table.store(Arc::new(table));
        drop(_guard);
        let keep: Vec<u64> = result
            .as_ref()
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default();
        for (v, old) in replaced {
            if !keep.contains(&v) {
                self.metrics.forget(name, &v.to_string());
            }
            tokio::spawn(async move { old.shutdown().await });
        }
        result.map(|_| ())
    }

    async fn mark_loading(&self, name: &str, loading: bool) {
        let _guard = self.writer.lock().await;
        let mut table = (**self.table.load()).clone();
        table.entry(name.to_string()).or_default().loading = loading;
        self.table.store(Arc::new(table));
    }

    async fn build_model(&self, name: &str) -> Result<BTreeMap<u64, Arc<ModelHandle>>> {
        let root = self.config.root.clone();
        let owned = name.to_string();
        let dir = tokio::task::spawn_blocking(move || read_model_dir(&root, &owned))
            .await
            .map_err(|e| RepoError::LoadPanicked {
                model: name.to_string(),
                version: 0,
                reason: e.to_string(),
            })?
            .map_err(|e| match e {
                RepoError::ModelNotFound { name, .. } => RepoError::ModelNotFound {
                    name,
                    available: self.names().join(", "),
                },
                other => other,
            })?;
        let mut loaded = BTreeMap::new();
        for version in dir.versions {
            let job = VersionJob {
                root: self.config.root.clone(),
                name: name.to_string(),
                version,
                config: dir.config.clone(),
                backends: self.backends.clone(),
                settings: self.config.load.clone(),
                metrics: self.metrics.clone(),
            };
            match load_version(job).await {
                Ok(h) => {
                    loaded.insert(version, h);
                }
                Err(e) => {
                    // Stop what was built; nothing of this load is published.
                    for (_, h) in loaded {
                        tokio::spawn(async move { h.shutdown().await });
                    }
                    return Err(e);
                }
            }
        }
        Ok(loaded)
    }

    /// Unloads every version of a model; queued requests finish first.
    ///
    /// # Errors
    /// [`RepoError::ModelNotFound`] when it is not in the table.
    pub async fn unload_model(&self, name: &str) -> Result<()> {
        let guard = self.writer.lock().await;
        let mut table = (**self.table.load()).clone();
        let Some(entry) = table.remove(name) else {
            return Err(RepoError::ModelNotFound {
                name: name.to_string(),
                available: self.names().join(", "),
            });
        };
        self.table.store(Arc::new(table));
        drop(guard);
        for (v, h) in entry.versions {
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

    /// The READY handle for a model and version ("" or `None` = the highest READY one).
    ///
    /// # Errors
    /// [`RepoError::ModelNotFound`], [`RepoError::BadVersion`],
    /// [`RepoError::VersionNotFound`], [`RepoError::ModelUnavailable`].
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelHandle>> {
        let table = self.table.load();
        let Some(entry) = table.get(name) else {
            return Err(RepoError::ModelNotFound {
                name: name.to_string(),
                available: table.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let ready = || {
            entry
                .versions
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match version.filter(|v| !v.is_empty()) {
            None => entry.versions.values().next_back().cloned().ok_or_else(|| {
                RepoError::ModelUnavailable {
                    name: name.to_string(),
                    reason: if entry.loading {
                        "it is loading".to_string()
                    } else {
                        entry
                            .failures
                            .values()
                            .next()
                            .cloned()
                            .unwrap_or_else(|| "no version is loaded".into())
                    },
                }
            }),
            Some(v) => {
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
                        ready: ready(),
                    })
            }
        }
    }

    /// Every READY handle.
    pub fn ready(&self) -> Vec<Arc<ModelHandle>> {
        self.table
            .load()
            .values()
            .flat_map(|e| e.versions.values().cloned())
            .collect()
    }

    /// True when every model in the table has a READY version and none is loading.
    pub fn all_ready(&self) -> bool {
        self.table
            .load()
            .values()
            .all(|e| !e.versions.is_empty() && !e.loading)
    }

    /// The repository index: models in the directory and in the table, with states.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let table = self.table.load();
        let mut out = Vec::new();
        let mut names: Vec<String> = list_models(&self.config.root).unwrap_or_default();
        names.extend(table.keys().cloned());
        names.sort();
        names.dedup();
        for name in names {
            match table.get(&name) {
                Some(e) if !e.versions.is_empty() => {
                    for v in e.versions.keys() {
                        out.push(IndexEntry {
                            name: name.clone(),
                            version: v.to_string(),
                            state: VersionState::Ready,
                            reason: String::new(),
                        });
                    }
                }
                Some(e) if e.loading => out.push(IndexEntry {
                    name,
                    version: String::new(),
                    state: VersionState::Loading,
                    reason: String::new(),
                }),
                Some(e) => out.push(IndexEntry {
                    name,
                    version: String::new(),
                    state: VersionState::Unavailable,
                    reason: e.failures.values().next().cloned().unwrap_or_default(),
                }),
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
fn error_chain(e: &dyn std::error::Error) -> String {
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
