//! Rollouts: a model's traffic moved from a baseline version to a candidate inside the
//! server, per request, with gates that decide from what both versions answered.
//!
//! - [`spec`]: the request (`POST .../rollout` or the `lrai.rollout` config parameter),
//!   validated whole before anything changes.
//! - [`routing`]: which arm answers an unversioned request (sticky by key, exact split
//!   without one).
//! - [`window`], [`compare`], [`gates`]: what one window saw and how each gate judges it.
//!   [`gates::Gate`] is the open interface that drift and fairness gates plug into.
//! - [`state`]: the pure decision logic (progress, hold, promote, roll back) over an
//!   injected clock.
//! - [`ActiveRollout`] and [`Rollouts`]: the running rollout, and the registry that starts,
//!   drives, aborts and reports them. The protocol layer routes and mirrors requests;
//!   everything it learns comes back here as recorded values.
//!
//! See `docs/rollouts.md` for the API and the semantics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lrai_monitor::Metrics;

use crate::handle::ModelHandle;
use crate::{RepoError, Repository};

mod active;
pub mod compare;
pub mod gates;
pub mod routing;
pub mod spec;
pub mod state;
mod status;
mod table;
pub mod window;

pub use active::{ActiveRollout, MAX_MIRRORS_IN_FLIGHT, Mirror, RolloutStatus, Routed};
pub use spec::{Mode, RolloutSpec, SpecError, WindowLength};
pub use state::{Decision, RolloutState};
pub use window::{Arm, Comparison};

/// The `config.pbtxt` parameter that starts a rollout when the model loads.
pub const CONFIG_PARAMETER: &str = "lrai.rollout";

/// How often the driver looks at a time-based window.
const TICK: Duration = Duration::from_millis(100);

/// Why a rollout can't start or be found. Nothing changed when one of these comes back.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The spec is invalid.
    #[error("model '{model}': {source}")]
    Spec {
        /// Model.
        model: String,
        /// What is wrong.
        #[source]
        source: SpecError,
    },
    /// The model isn't serving (not found, or no READY version).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The candidate version has no directory in the repository.
    #[error(
        "cannot roll out model '{model}' to version {version}: the repository has no directory '{model}/{version}' (versions on disk: {on_disk})"
    )]
    NoSuchVersion {
        /// Model.
        model: String,
        /// The version asked for.
        version: u64,
        /// Versions on disk.
        on_disk: String,
    },
    /// The candidate is the version already serving.
    #[error(
        "cannot roll out model '{model}' to version {version}: it is the baseline (the version serving unversioned requests); name another candidate"
    )]
    CandidateIsBaseline {
        /// Model.
        model: String,
        /// The version.
        version: u64,
    },
    /// The candidate failed to load or warm up; the baseline keeps serving.
    #[error("cannot roll out model '{model}' to version {version}: it failed to load: {source}")]
    CandidateLoad {
        /// Model.
        model: String,
        /// The version.
        version: u64,
        /// Why.
        #[source]
        source: RepoError,
    },
    /// The candidate's inputs or outputs differ from the baseline's, so requests can't
    /// go to either.
    #[error("cannot roll out model '{model}' to version {version}: {detail}")]
    Incompatible {
        /// Model.
        model: String,
        /// The version.
        version: u64,
        /// What differs.
        detail: String,
    },
    /// A rollout of this model is already running.
    #[error(
        "model '{model}' already has a rollout in progress (to version {candidate}); wait for it to end or stop it with DELETE /v2/repository/models/{model}/rollout"
    )]
    InProgress {
        /// Model.
        model: String,
        /// The running rollout's candidate.
        candidate: u64,
    },
    /// No rollout of this model exists.
    #[error(
        "model '{model}' has no rollout; start one with POST /v2/repository/models/{model}/rollout"
    )]
    NoRollout {
        /// Model.
        model: String,
    },
}

/// Where an inference request goes.
#[derive(Debug)]
pub enum Route {
    /// No rollout concerns it: the table answers.
    Table,
    /// A version only the rollout holds (the candidate named explicitly, or the promoted
    /// candidate for unversioned requests).
    Pinned(Arc<ModelHandle>),
    /// An unversioned request during a rollout, and the arm it goes to.
    Split(Routed),
}

/// The rollouts of a server, one per model at most.
#[derive(Debug)]
pub struct Rollouts {
    repo: Arc<Repository>,
    metrics: Metrics,
    map: ArcSwap<BTreeMap<String, Arc<ActiveRollout>>>,
    starts: tokio::sync::Mutex<()>,
}

impl Rollouts {
    /// No rollouts yet.
    pub fn new(repo: Arc<Repository>, metrics: Metrics) -> Arc<Rollouts> {
        Arc::new(Rollouts {
            repo,
            metrics,
            map: ArcSwap::from_pointee(BTreeMap::new()),
            starts: tokio::sync::Mutex::new(()),
        })
    }

    /// The model's rollout (running or ended).
    pub fn get(&self, model: &str) -> Option<Arc<ActiveRollout>> {
        self.map.load().get(model).cloned()
    }

    /// True while a rollout of the model is progressing.
    pub fn is_progressing(&self, model: &str) -> bool {
        self.get(model)
            .is_some_and(|r| r.state() == RolloutState::Progressing)
    }

    /// Where a request for `model` / `version` ("" = unversioned) goes. `key` keeps one
    /// caller on one arm.
    pub fn route(&self, model: &str, version: &str, key: Option<&str>) -> Route {
        let Some(r) = self.get(model) else {
            return Route::Table;
        };
        let state = r.state();
        if version.is_empty() {
            return match state {
                RolloutState::Progressing => Route::Split(Routed {
                    arm: r.route(key),
                    rollout: r,
                }),
                RolloutState::Promoted => Route::Pinned(Arc::clone(&r.candidate)),
                RolloutState::RolledBack | RolloutState::Aborted => Route::Table,
            };
        }
        let named_candidate = version.parse::<u64>().ok() == Some(r.candidate.version());
        if named_candidate && r.owns_candidate && state == RolloutState::Progressing {
            Route::Pinned(Arc::clone(&r.candidate))
        } else {
            Route::Table
        }
    }

    /// The model's rollout status.
    ///
    /// # Errors
    /// [`RolloutError::NoRollout`].
    pub fn status(&self, model: &str) -> Result<RolloutStatus, RolloutError> {
        self.get(model)
            .map(|r| r.status())
            .ok_or_else(|| RolloutError::NoRollout {
                model: model.to_string(),
            })
    }

    /// Starts a rollout: checks the spec, the baseline and the candidate (loading the
    /// candidate if it isn't loaded), then routes. On any error nothing has changed.
    ///
    /// # Errors
    /// See [`RolloutError`].
    pub async fn start(
        self: &Arc<Self>,
        model: &str,
        spec: RolloutSpec,
    ) -> Result<RolloutStatus, RolloutError> {
        let _one_at_a_time = self.starts.lock().await;
        if let Some(r) = self
            .get(model)
            .filter(|r| r.state() == RolloutState::Progressing)
        {
            return Err(RolloutError::InProgress {
                model: model.to_string(),
                candidate: r.candidate.version(),
            });
        }
        let baseline = self.baseline(model, spec.baseline)?;
        let version = spec.candidate;
        if version == baseline.version() {
            return Err(RolloutError::CandidateIsBaseline {
                model: model.to_string(),
                version,
            });
        }
        let (candidate, owned) = self.candidate(model, version).await?;
        if let Err(detail) = compatible(&baseline, &candidate) {
            if owned {
                candidate.shutdown().await;
            }
            return Err(RolloutError::Incompatible {
                model: model.to_string(),
                version,
                detail,
            });
        }
        let rollout = Arc::new(ActiveRollout::new(
            spec,
            baseline,
            candidate,
            owned,
            self.metrics.rollout(model),
        ));
        let mut map = (**self.map.load()).clone();
        map.insert(model.to_string(), Arc::clone(&rollout));
        self.map.store(Arc::new(map));
        let status = rollout.status();
        tracing::info!(
            model,
            baseline = status.baseline,
            candidate = status.candidate,
            mode = status.mode.as_str(),
            weight = status.weight,
            "rollout started"
        );
        tokio::spawn(Arc::clone(self).drive(rollout));
        Ok(status)
    }

    /// The version serving unversioned requests now (or the one named).
    fn baseline(&self, model: &str, named: Option<u64>) -> Result<Arc<ModelHandle>, RolloutError> {
        if named.is_none()
            && let Some(r) = self
                .get(model)
                .filter(|r| r.state() == RolloutState::Promoted)
            && self.repo.holds(&r.candidate)
        {
            return Ok(Arc::clone(&r.candidate));
        }
        let version = named.map(|v| v.to_string());
        Ok(self.repo.get(model, version.as_deref())?)
    }

    /// The candidate's handle: from the table when it is loaded, else loaded here.
    async fn candidate(
        &self,
        model: &str,
        version: u64,
    ) -> Result<(Arc<ModelHandle>, bool), RolloutError> {
        if let Ok(h) = self.repo.get(model, Some(&version.to_string())) {
            return Ok((h, false));
        }
        let on_disk = self.repo.version_dirs(model);
        if !on_disk.contains(&version) {
            return Err(RolloutError::NoSuchVersion {
                model: model.to_string(),
                version,
                on_disk: on_disk
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        tracing::info!(model, version, "rollout loading the candidate");
        let h = self
            .repo
            .load_detached(model, version)
            .await
            .map_err(|source| RolloutError::CandidateLoad {
                model: model.to_string(),
                version,
                source,
            })?;
        Ok((h, true))
    }

    /// Stops the model's rollout; traffic goes back to the baseline.
    ///
    /// # Errors
    /// [`RolloutError::NoRollout`].
    pub fn abort(&self, model: &str) -> Result<RolloutStatus, RolloutError> {
        let r = self.get(model).ok_or_else(|| RolloutError::NoRollout {
            model: model.to_string(),
        })?;
        r.abort(&format!(
            "aborted by DELETE /v2/repository/models/{model}/rollout; traffic is back on the baseline"
        ));
        Ok(r.status())
    }

    /// Forgets an ended rollout of the model (after the model was loaded or unloaded
    /// through the repository API, the table decides again).
    pub fn forget(&self, model: &str) {
        if self
            .get(model)
            .is_some_and(|r| r.state() != RolloutState::Progressing)
        {
            let mut map = (**self.map.load()).clone();
            map.remove(model);
            self.map.store(Arc::new(map));
        }
    }

    /// Starts the rollout a model's `config.pbtxt` asks for (`lrai.rollout`), if any.
    /// Errors are logged, and the model keeps serving its baseline.
    pub async fn start_from_config(self: &Arc<Self>, model: &str) {
        let Ok(h) = self.repo.get(model, None) else {
            return;
        };
        let Some(text) = h.config().parameter(CONFIG_PARAMETER).map(str::to_string) else {
            return;
        };
        let result = match RolloutSpec::from_json_text(&text) {
            Ok(spec) => self.start(model, spec).await.map(|_| ()),
            Err(source) => Err(RolloutError::Spec {
                model: model.to_string(),
                source,
            }),
        };
        if let Err(e) = result {
            tracing::error!(model, error = %e, "the rollout in config.pbtxt (parameter lrai.rollout) did not start; the model keeps serving its current version");
        }
    }

    /// Aborts every running rollout and stops the candidates they loaded (server
    /// shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<Arc<ActiveRollout>> = self.map.load().values().cloned().collect();
        for r in all {
            r.abort("the server is shutting down");
            if r.owns_candidate && !self.repo.holds(&r.candidate) {
                r.candidate.shutdown().await;
            }
        }
    }

    /// Closes windows and applies decisions until the rollout ends.
    async fn drive(self: Arc<Self>, r: Arc<ActiveRollout>) {
        r.export(&r.status());
        loop {
            let _ = tokio::time::timeout(TICK, r.wake.notified()).await;
            if let Some((decision, status)) = r.decide(Instant::now()) {
                r.export(&status);
                match decision {
                    Decision::Hold => {
                        tracing::debug!(model = %r.model, windows = status.windows, "rollout window closed; step held");
                    }
                    Decision::Advance { step, weight } => {
                        tracing::info!(model = %r.model, step = step + 1, weight, "rollout step passed; candidate share raised");
                    }
                    Decision::Promote => {
                        self.promote(&r).await;
                        return;
                    }
                    Decision::RollBack { reason } => {
                        tracing::warn!(model = %r.model, candidate = status.candidate, baseline = status.baseline, %reason, "rollout rolled back");
                        self.end(&r).await;
                        return;
                    }
                }
            }
            if r.state() == RolloutState::Progressing && !self.repo.holds(&r.baseline) {
                // A load, unload or poll replaced the baseline under the rollout: its
                // pinned handle is draining, so the rollout stops and the table answers.
                r.abort(&format!(
                    "version {} of model '{}' was replaced or unloaded in the repository while the rollout ran",
                    r.baseline.version(),
                    r.model
                ));
                tracing::warn!(model = %r.model, "rollout aborted: its baseline left the model table");
            }
            if r.state() != RolloutState::Progressing {
                self.end(&r).await;
                return;
            }
        }
    }

    async fn promote(&self, r: &Arc<ActiveRollout>) {
        let removed = self
            .repo
            .promote_version(&r.candidate, r.baseline.version())
            .await;
        let status = r.status();
        r.export(&status);
        r.metrics.outcome(RolloutState::Promoted.as_str());
        tracing::info!(model = %r.model, version = status.candidate, replaced = status.baseline, "rollout promoted the candidate");
        for old in removed {
            // Queued requests finish on the old versions before their instances stop.
            tokio::spawn(async move {
                crate::apply::drain(&old).await;
                old.shutdown().await;
            });
        }
    }

    async fn end(&self, r: &Arc<ActiveRollout>) {
        let status = r.status();
        r.export(&status);
        r.metrics.outcome(status.state.as_str());
        if status.state == RolloutState::Aborted {
            tracing::info!(model = %r.model, candidate = status.candidate, "rollout aborted; traffic is back on the baseline");
        }
        if r.owns_candidate && !self.repo.holds(&r.candidate) {
            r.candidate.shutdown().await;
        }
    }
}

/// Inputs and outputs must match by name, datatype and shape: a request valid for one
/// arm must be valid for the other, and answers must compare.
fn compatible(baseline: &ModelHandle, candidate: &ModelHandle) -> Result<(), String> {
    let same = |a: &[crate::TensorMeta], b: &[crate::TensorMeta]| {
        a.len() == b.len() && a.iter().all(|t| b.iter().any(|u| u == t))
    };
    let show = |ts: &[crate::TensorMeta]| {
        ts.iter()
            .map(|t| format!("{} {} {:?}", t.name, t.datatype.as_kserve(), t.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !same(baseline.inputs(), candidate.inputs()) {
        return Err(format!(
            "its inputs ({}) differ from the baseline's ({})",
            show(candidate.inputs()),
            show(baseline.inputs())
        ));
    }
    if !same(baseline.outputs(), candidate.outputs()) {
        return Err(format!(
            "its outputs ({}) differ from the baseline's ({})",
            show(candidate.outputs()),
            show(baseline.outputs())
        ));
    }
    Ok(())
}
