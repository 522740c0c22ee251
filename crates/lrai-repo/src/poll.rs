//! `--model-control-mode poll`: rescan the repository every interval and apply what
//! changed on disk, as Triton's poller does. A model whose directory fingerprint differs
//! from the one its last load saw is loaded again ([`Repository::load_model`]: only
//! changed versions are rebuilt, the old ones serve meanwhile); a new directory is
//! loaded; a model whose directory is gone is unloaded. A model that failed is tried
//! again only after its files change, so a broken model doesn't fill the log every pass.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;
use crate::loader::list_models;
use crate::repository::Repository;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollPass {
    /// Models loaded or reloaded (successfully or not).
    pub loaded: Vec<String>,
    /// Models unloaded because their directory is gone.
    pub unloaded: Vec<String>,
}

impl Repository {
    /// One rescan: loads new and changed models, unloads removed ones.
    ///
    /// # Errors
    /// [`crate::RepoError::Repository`] when the repository directory can't be listed;
    /// a model that fails to load is logged and recorded, not returned.
    pub async fn poll_once(&self) -> Result<PollPass> {
        let root = self.config.root.clone();
        let on_disk = tokio::task::spawn_blocking(move || {
            list_models(&root).map(|names| {
                names
                    .into_iter()
                    .map(|n| {
                        let print = crate::scan::fingerprint(&root.join(&n)).whole();
                        (n, print)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| crate::RepoError::Repository {
            path: self.config.root.clone(),
            reason: e.to_string(),
        })??;
        let mut pass = PollPass::default();
        for (name, print) in &on_disk {
            let seen = self.table.load().get(name).and_then(|e| e.seen);
            if seen == Some(*print) {
                continue;
            }
            tracing::info!(model = %name, "repository poll: the model changed on disk; loading it");
            if let Err(e) = self.load_model(name).await {
                tracing::error!(model = %name, error = %e, "repository poll: load failed");
            }
            pass.loaded.push(name.clone());
        }
        for name in self.names() {
            if on_disk.iter().all(|(n, _)| *n != name) {
                tracing::info!(model = %name, "repository poll: the model directory is gone; unloading it");
                // Err only when another change removed it first.
                let _ = self.unload_model(&name).await;
                pass.unloaded.push(name);
            }
        }
        Ok(pass)
    }

    /// Runs [`Repository::poll_once`] every `interval` until `stop` turns true.
    pub fn spawn_poller(
        self: &Arc<Self>,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let repo = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; startup just loaded
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                if let Err(e) = repo.poll_once().await {
                    tracing::error!(error = %e, "repository poll failed");
                }
            }
        })
    }
}
