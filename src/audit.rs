//! `lrai serve --audit-log`: the flags, and the step of `serve` that opens the log and
//! hands it to the handlers. The log itself lives in `lrai-audit`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lrai_audit::{AuditConfig, AuditLog};
use lrai_protocol::server::ServerState;

/// The tamper-evident audit log (see docs/security.md, "Audit log").
#[derive(Debug, Clone, Default, Args)]
pub struct AuditArgs {
    /// Append every admin action (load, unload, rollback, rollouts) to this log, a
    /// Merkle tree (RFC 9162) with Ed25519-signed tree heads; an existing log is verified
    /// and continued. Needs --audit-key.
    #[arg(long = "audit-log", env = "LRAI_AUDIT_LOG", requires = "audit_key")]
    pub audit_log: Option<PathBuf>,

    /// The secret key that signs tree heads (made by `lrai audit keygen`).
    #[arg(long = "audit-key", env = "LRAI_AUDIT_KEY", requires = "audit_log")]
    pub audit_key: Option<PathBuf>,

    /// Record every inference request too: who, model, version, time, status and
    /// SHA-256 digests of the inputs and outputs (never the tensors).
    #[arg(
        long = "audit-inference",
        env = "LRAI_AUDIT_INFERENCE",
        requires = "audit_log"
    )]
    pub audit_inference: bool,

    /// Seconds between signed tree heads while entries arrive (0: after every write);
    /// a final head is always signed at shutdown.
    #[arg(
        long = "audit-head-secs",
        env = "LRAI_AUDIT_HEAD_SECS",
        default_value_t = 10
    )]
    pub audit_head_secs: u64,

    /// Audit records queued for the writer before requests wait for it.
    #[arg(long = "audit-queue", env = "LRAI_AUDIT_QUEUE", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_queue: u64,
}

/// Opens the audit log the flags ask for (if any) and gives it to the handlers.
///
/// # Errors
/// When the key can't be read, or the existing log doesn't verify with it.
pub(crate) fn open(args: &AuditArgs, state: &ServerState) -> anyhow::Result<()> {
    let (Some(path), Some(key)) = (&args.audit_log, &args.audit_key) else {
        return Ok(());
    };
    let key = lrai_audit::key::read_signing_key(key).context("--audit-key")?;
    let log = AuditLog::open(AuditConfig {
        path: path.clone(),
        key,
        head_interval: Duration::from_secs(args.audit_head_secs),
        inference: args.audit_inference,
        queue_capacity: usize::try_from(args.audit_queue).unwrap_or(usize::MAX),
    })
    .context("--audit-log: cannot open the audit log (run `lrai audit verify` on it to see why, or start a new one)")?;
    state.set_audit(Arc::clone(&log));
    Ok(())
}

/// Signs the final tree head (server shutdown, after the last request).
pub(crate) async fn close(state: &ServerState) {
    let Some(log) = state.audit() else {
        return;
    };
    if let Err(e) = log.close().await {
        tracing::error!(error = %e, log = %log.path().display(), "the audit log did not close cleanly");
    }
}
