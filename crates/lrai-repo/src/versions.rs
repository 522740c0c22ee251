//! One model's row in the table: its READY versions, failures, and which version answers
//! a request that names none ([`ModelEntry::unversioned`], the one place that decides it).
//!
//! Triton's rule, kept: `version_policy` decides which versions are loaded, and an
//! unversioned request goes to the highest loaded one. A rollback pins unversioned
//! traffic to the version that served before ([`Routing::Pinned`]) until the next load of
//! the model succeeds. The rollout work adds weighted routing as another [`Routing`]
//! variant, decided in the same function.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::handle::ModelHandle;
use crate::repository::{IndexEntry, VersionState};

/// How many versions the served-history keeps (what rollback can step back through).
const HISTORY_LEN: usize = 32;

/// Which version answers requests that name none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// The highest loaded version (Triton's rule; `version_policy` decides what is loaded).
    #[default]
    Policy,
    /// This version, set by a rollback; held loaded whatever the policy says.
    Pinned(u64),
}

/// Failure key for the whole model (config unreadable, no version directory).
pub(crate) const MODEL_WIDE: u64 = 0;

/// A model in the table.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelEntry {
    /// READY versions.
    pub(crate) versions: BTreeMap<u64, Arc<ModelHandle>>,
    /// Fingerprint of the files each READY version was built from (config included).
    pub(crate) prints: BTreeMap<u64, u64>,
    /// Why a version (or, under [`MODEL_WIDE`], the whole model) failed its last load.
    pub(crate) failures: BTreeMap<u64, String>,
    /// True while the first load of the model runs (nothing serves yet).
    pub(crate) loading: bool,
    /// Who answers unversioned requests.
    pub(crate) routing: Routing,
    /// Versions kept loaded beyond the policy (a rollback's target).
    pub(crate) held: BTreeSet<u64>,
    /// Versions that answered unversioned requests, oldest first; the last one serves now.
    pub(crate) history: Vec<u64>,
    /// Fingerprint of the model directory at its last load (the poller compares it).
    pub(crate) seen: Option<u64>,
}

impl ModelEntry {
    /// The handle that answers a request naming no version. The single decision point
    /// for unversioned traffic: a rollout's weighted choice belongs here.
    pub(crate) fn unversioned(&self) -> Option<&Arc<ModelHandle>> {
        match self.routing {
            Routing::Pinned(v) => self
                .versions
                .get(&v)
                .or_else(|| self.versions.values().next_back()),
            Routing::Policy => self.versions.values().next_back(),
        }
    }

    /// The version that answers unversioned requests now.
    pub(crate) fn serving(&self) -> Option<u64> {
        self.unversioned().map(|h| h.version())
    }

    /// Records the serving version in the history when it changed.
    pub(crate) fn note_serving(&mut self) {
        let Some(now) = self.serving() else {
            return;
        };
        if self.history.last() != Some(&now) {
            self.history.push(now);
            if self.history.len() > HISTORY_LEN {
                self.history.remove(0);
            }
        }
    }

    /// The version a rollback returns to: the one that served unversioned traffic just
    /// before the version serving now (`None` when there is none).
    pub(crate) fn previous(&self) -> Option<u64> {
        previous_in(&self.history, self.serving()?)
    }

    /// The history after a rollback to `to`: the entries from `to` on are dropped and
    /// `to` ends it, so a second rollback steps back once more.
    pub(crate) fn rolled_back(&mut self, to: u64) {
        if let Some(at) = self.history.iter().rposition(|&v| v == to) {
            self.history.truncate(at + 1);
        } else {
            self.history.push(to);
        }
    }

    /// Index rows of this model.
    pub(crate) fn index_rows(&self, name: &str) -> Vec<IndexEntry> {
        let row = |version: String, state, reason: String| IndexEntry {
            name: name.to_string(),
            version,
            state,
            reason,
        };
        if self.versions.is_empty() && self.loading {
            return vec![row(String::new(), VersionState::Loading, String::new())];
        }
        let model_wide = self.failures.get(&MODEL_WIDE);
        let mut out = Vec::new();
        for (v, handle) in &self.versions {
            // An ensemble whose step model is not ready can't serve.
            if let Some(why) = handle.unready_reason() {
                out.push(row(v.to_string(), VersionState::Unavailable, why));
                continue;
            }
            // A READY version whose reload failed keeps serving; say so beside it.
            let reason = match (self.failures.get(v), model_wide) {
                (Some(r), _) | (None, Some(r)) => {
                    format!("the last load failed, this version keeps serving: {r}")
                }
                (None, None) => String::new(),
            };
            out.push(row(v.to_string(), VersionState::Ready, reason));
        }
        for (v, reason) in &self.failures {
            if *v != MODEL_WIDE && !self.versions.contains_key(v) {
                out.push(row(
                    v.to_string(),
                    VersionState::Unavailable,
                    reason.clone(),
                ));
            }
        }
        if out.is_empty() {
            let reason = model_wide.cloned().unwrap_or_default();
            out.push(row(String::new(), VersionState::Unavailable, reason));
        }
        out
    }
}

/// The entry before the run of `now` at the end of `history`.
fn previous_in(history: &[u64], now: u64) -> Option<u64> {
    let mut older = history.iter().rev().skip_while(|&&v| v == now);
    older.next().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entry: &mut ModelEntry, served: &[u64]) {
        entry.history = served.to_vec();
    }

    #[test]
    fn previous_is_the_version_that_served_before() {
        assert_eq!(previous_in(&[1, 2, 3], 3), Some(2));
        assert_eq!(previous_in(&[3, 1], 1), Some(3));
        assert_eq!(previous_in(&[2], 2), None);
        assert_eq!(previous_in(&[], 2), None);
        // Nothing serves without handles, so nothing is previous.
        let mut e = ModelEntry::default();
        history(&mut e, &[1, 2, 3]);
        assert_eq!(e.previous(), None);
    }

    #[test]
    fn rollback_truncates_history_to_the_target() {
        let mut e = ModelEntry::default();
        history(&mut e, &[1, 2, 3]);
        e.rolled_back(2);
        assert_eq!(e.history, vec![1, 2]);
        e.rolled_back(1);
        assert_eq!(e.history, vec![1]);
    }

    #[test]
    fn index_shows_failed_versions_beside_ready_ones() {
        let mut e = ModelEntry::default();
        e.failures.insert(2, "bad onnx".into());
        let rows = e.index_rows("m");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].version, "2");
        assert_eq!(rows[0].state, VersionState::Unavailable);
        assert_eq!(rows[0].reason, "bad onnx");
    }
}
