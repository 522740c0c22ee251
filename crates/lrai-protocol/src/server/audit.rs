//! The hooks between the handlers and the audit log (`lrai-audit`): admin actions are
//! recorded, durably, before they are acknowledged; inference requests (when the log
//! records them) hand their tensors to the log's writer, which hashes them off the
//! request path. Without an audit log every hook is a no-op.

use lrai_audit::{AdminAction, AuditLog, InferenceRecord};
use lrai_monitor::{Protocol, RequestStatus};

use crate::server::error::{Result, ServerError};
use crate::server::{Caller, ServerState};
use crate::{InferRequest, InferResponse};

/// How the log names a caller: the token's name (or `anonymous`) and the peer.
fn who(caller: Option<&Caller>) -> String {
    caller.map_or_else(|| "anonymous".to_string(), Caller::describe)
}

/// Records an admin action's outcome and returns it; acknowledged only once the entry is
/// on disk. When the log can't record it, the caller gets a 500 that says the action
/// itself happened (or failed) as usual.
pub(crate) async fn admin<T>(
    state: &ServerState,
    caller: Option<&Caller>,
    action: AdminAction,
    model: &str,
    result: Result<T>,
) -> Result<T> {
    let Some(log) = state.audit() else {
        return result;
    };
    let outcome = lrai_audit::outcome_of(&result);
    match log.record_admin(action, model, &who(caller), outcome).await {
        Ok(_) => result,
        Err(e) => {
            tracing::error!(model, error = %e, "an admin action was not recorded in the audit log");
            Err(ServerError::Audit(e.to_string()))
        }
    }
}

/// What an audited inference keeps from its request before running: the model and
/// version asked for, and the inputs (shared buffers, not copies).
pub(crate) struct Pending<'a> {
    log: &'a AuditLog,
    model: String,
    version: String,
    inputs: Vec<(String, lrai_core::Tensor)>,
}

/// `Some` when the server records inference requests.
pub(crate) fn before_infer<'a>(state: &'a ServerState, req: &InferRequest) -> Option<Pending<'a>> {
    let log = state.audit().filter(|l| l.records_inference())?;
    Some(Pending {
        log,
        model: req.model_name.clone(),
        version: req.model_version.clone(),
        inputs: req
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.tensor.clone()))
            .collect(),
    })
}

/// Hands the record to the log's writer (waits only while its queue is full).
pub(crate) async fn after_infer(
    pending: Pending<'_>,
    caller: Option<&Caller>,
    protocol: Protocol,
    result: &Result<(InferRequest, InferResponse)>,
) {
    let (status, version, outputs) = match result {
        Ok((_, resp)) => (
            RequestStatus::Ok,
            resp.model_version.clone(),
            resp.outputs.clone(),
        ),
        Err(e) => (e.metric_labels().0, pending.version, Vec::new()),
    };
    let record = InferenceRecord {
        caller: who(caller),
        model: pending.model,
        version,
        protocol: protocol.as_str(),
        status: status.as_str().to_string(),
        inputs: pending.inputs,
        outputs,
    };
    pending.log.record_inference(record).await;
}
