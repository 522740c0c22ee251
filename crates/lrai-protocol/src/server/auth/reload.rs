//! Reloading the token file without a restart: the file is re-read every two seconds and
//! at once on SIGHUP; a changed file that parses replaces the table, one that doesn't is
//! logged and the old table stays.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Auth;
use crate::server::ServerState;

/// Watches the token file until `stop` turns true (nothing to do without a token file).
/// Each change, applied or refused, is an admin entry in the audit log when there is one.
pub fn spawn_reloader(
    auth: Arc<Auth>,
    state: Arc<ServerState>,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
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
            if let Ok(Some(result)) = tokio::task::spawn_blocking(move || a.reload()).await {
                audit_reload(&state, &result).await;
            }
        }
    }))
}

/// Records a token reload (the outcome says how many tokens, or why the file was refused).
async fn audit_reload(state: &ServerState, result: &Result<usize, String>) {
    let Some(log) = state.audit() else { return };
    let outcome = match result {
        Ok(n) => format!("ok: {n} tokens"),
        Err(e) => format!("error: {e}"),
    };
    let action = lrai_audit::AdminAction::TokenReload;
    if let Err(e) = log.record_admin(action, "", "token file", outcome).await {
        tracing::error!(error = %e, "the token reload could not be recorded in the audit log");
    }
}
