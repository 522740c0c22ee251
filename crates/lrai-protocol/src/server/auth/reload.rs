//! Reloading the token file without a restart: the file is re-read every two seconds and
//! at once on SIGHUP; a changed file that parses replaces the table, one that doesn't is
//! logged and the old table stays.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Auth;

/// Watches the token file until `stop` turns true (nothing to do without a token file).
pub fn spawn_reloader(auth: Arc<Auth>, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    if !auth.tokens_on() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the token file is still re-read every 2 s");
                None
            }
        };
        let mut tick = tokio::time::interval(auth.reload_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: re-reading the token file");
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            // File reads are small and rare; off the runtime's workers all the same.
            let a = Arc::clone(&auth);
            let _ = tokio::task::spawn_blocking(move || a.reload()).await;
        }
    }))
}
