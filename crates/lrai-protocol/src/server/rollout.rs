//! Rollouts at the edge: the `.../rollout` operations, and the request path while one
//! runs. An unversioned request goes to the arm the rollout picks; a sample also runs on
//! the other arm off the served path (a spawned task, bounded), and what both answered
//! goes back to the rollout as recorded values. The client only ever gets one answer:
//! the candidate's in canary and A/B (the baseline's when the candidate fails inside the
//! server), the baseline's in shadow.

use std::sync::Arc;
use std::time::Instant;

use lrai_core::Tensor;
use lrai_repo::rollout::{
    ActiveRollout, Arm, Mirror, RolloutError, RolloutSpec, Route, Routed, compare::compare_outputs,
};
use lrai_repo::{ControlMode, ModelHandle, RepoError};

use super::ServerState;
use super::core::{check_requested_outputs, classify_outputs};
use super::error::{Class, Result, ServerError};
use crate::InferRequest;

type Outputs = Vec<(String, Tensor)>;

/// Where an inference goes.
pub(crate) enum Target {
    /// One version answers.
    Handle(Arc<ModelHandle>),
    /// An arm of a running rollout answers.
    Split(Routed),
}

impl Target {
    /// The version the request starts on.
    pub(crate) fn handle(&self) -> &Arc<ModelHandle> {
        match self {
            Target::Handle(h) => h,
            Target::Split(r) => r.rollout.handle(r.arm),
        }
    }
}

/// Routes one inference request. `key` is the caller's routing key (the rollout's
/// sticky header); without one the request id is used.
pub(crate) fn route(
    state: &ServerState,
    model: &str,
    version: &str,
    key: Option<&str>,
    id: &str,
) -> Result<Target> {
    let key = key.or(Some(id).filter(|i| !i.is_empty()));
    match state.rollouts.route(model, version, key) {
        Route::Split(r) => Ok(Target::Split(r)),
        Route::Pinned(h) => Ok(Target::Handle(h)),
        Route::Table => Ok(Target::Handle(super::core::handle(state, model, version)?)),
    }
}

/// The header (or gRPC metadata key) that keeps callers of `model` on one arm, while a
/// rollout of it runs.
pub(crate) fn sticky_header(state: &ServerState, model: &str) -> Option<String> {
    state.rollouts.get(model).map(|r| r.sticky_header())
}

/// A failure inside the server (the version's fault), as opposed to the caller's.
fn server_side(e: &ServerError) -> bool {
    matches!(e.class(), Class::Internal | Class::Unavailable)
}

/// The version stopped accepting requests (it was unloaded or replaced).
fn stopped(e: &ServerError) -> bool {
    matches!(
        e,
        ServerError::Repo(RepoError::Sched(lrai_repo::SchedError::NotServing { .. }))
    )
}

async fn run_inputs(h: &ModelHandle, req: &InferRequest, inputs: Outputs) -> Result<Outputs> {
    let inputs = h.check_inputs(inputs)?;
    let span =
        tracing::debug_span!("infer", model = %h.name(), version = h.version(), id = %req.id);
    let timeout = req
        .parameters
        .timeout_us
        .map(std::time::Duration::from_micros);
    Ok(h.infer(inputs, req.parameters.priority, timeout, span)
        .await?
        .outputs)
}

/// Runs a request on the arm it was routed to, records it, and starts its mirror.
/// Returns the outputs and the version that answered.
pub(crate) async fn run_split(
    state: &ServerState,
    routed: Routed,
    req: &mut InferRequest,
) -> (Result<Outputs>, Arc<ModelHandle>) {
    let Routed { rollout, arm } = routed;
    let h = Arc::clone(rollout.handle(arm));
    if let Err(e) = check_requested_outputs(&h, &req.outputs) {
        return (Err(e), h);
    }
    // Tensors share their bytes: keeping a copy for the mirror or a retry is cheap.
    let inputs: Outputs = std::mem::take(&mut req.inputs)
        .into_iter()
        .map(|i| (i.name, i.tensor))
        .collect();
    let kept = inputs.clone();
    let started = Instant::now();
    let result = run_inputs(&h, req, inputs).await;
    let ok = result.as_ref().map_or_else(|e| !server_side(e), |_| true);
    rollout.record_served(arm, ok, started.elapsed());
    match result {
        Ok(mut outputs) => {
            if let Some(mirror) = rollout.mirror_for(arm) {
                spawn_mirror(Arc::clone(&rollout), mirror, kept, outputs.clone(), arm);
            }
            let classified = classify_outputs(&h, &req.outputs, &mut outputs).map(|()| outputs);
            (classified, h)
        }
        Err(e) if server_side(&e) => {
            answer_elsewhere(state, &rollout, arm, (e, h), req, kept).await
        }
        Err(e) => (Err(e), h),
    }
}

/// A request whose arm failed inside the server: the failure already counted against
/// that arm; the baseline answers instead (for the candidate's failures), or the table's
/// version (when the pinned baseline stopped: replaced or unloaded under the rollout).
async fn answer_elsewhere(
    state: &ServerState,
    rollout: &ActiveRollout,
    arm: Arm,
    failed: (ServerError, Arc<ModelHandle>),
    req: &InferRequest,
    inputs: Outputs,
) -> (Result<Outputs>, Arc<ModelHandle>) {
    let (mut error, mut last) = failed;
    let mut others = Vec::with_capacity(2);
    if arm == Arm::Candidate {
        others.push(Arc::clone(rollout.handle(Arm::Baseline)));
    }
    if let Ok(now) = state.repo.get(last.name(), None) {
        others.push(now);
    }
    for other in others {
        let retry = arm == Arm::Candidate && Arc::ptr_eq(&other, rollout.handle(Arm::Baseline));
        if Arc::ptr_eq(&other, &last) || !(retry || stopped(&error)) {
            continue;
        }
        tracing::debug!(model = %other.name(), error = %error, arm = arm.as_str(), "failed; another version answers");
        let started = Instant::now();
        match run_inputs(&other, req, inputs.clone()).await {
            Ok(mut outputs) => {
                rollout.record_mirror(Arm::Baseline, true, started.elapsed(), None);
                let classified =
                    classify_outputs(&other, &req.outputs, &mut outputs).map(|()| outputs);
                return (classified, other);
            }
            Err(e) => {
                error = e;
                last = other;
            }
        }
    }
    (Err(error), last)
}

/// Runs the request on the other arm off the served path and compares the answers.
fn spawn_mirror(
    rollout: Arc<ActiveRollout>,
    mirror: Mirror,
    inputs: Outputs,
    served: Outputs,
    served_arm: Arm,
) {
    tokio::spawn(async move {
        let Mirror {
            handle,
            arm,
            permit,
        } = mirror;
        let started = Instant::now();
        let span =
            tracing::debug_span!("mirror", model = %handle.name(), version = handle.version());
        let result = match handle.check_inputs(inputs) {
            Ok(inputs) => handle.infer(inputs, None, None, span).await,
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        drop(permit);
        match result {
            Ok(out) => {
                let (baseline, candidate) = if served_arm == Arm::Baseline {
                    (served, out.outputs)
                } else {
                    (out.outputs, served)
                };
                let c = compare_outputs(&baseline, &candidate);
                rollout.record_mirror(arm, true, took, Some(c));
            }
            Err(e) => {
                let e = ServerError::from(e);
                tracing::debug!(model = %handle.name(), version = handle.version(), error = %e, "mirror failed");
                rollout.record_mirror(arm, !server_side(&e), took, None);
            }
        }
    });
}

/// A rollout changes what serves: control mode `none` refuses it (`poll` and
/// `explicit` allow it, as they allow rollback).
fn check_control(state: &ServerState) -> Result<()> {
    let mode = state.repo.control_mode();
    if mode == ControlMode::None {
        return Err(RepoError::ControlDisabled {
            mode: mode.as_str(),
        }
        .into());
    }
    Ok(())
}

/// `POST .../rollout`.
pub(crate) async fn start(
    state: &ServerState,
    model: &str,
    body: &[u8],
) -> Result<serde_json::Value> {
    check_control(state)?;
    let text = std::str::from_utf8(body)
        .map_err(|_| ServerError::BadJson("the rollout body is not UTF-8 text".into()))?;
    let spec = RolloutSpec::from_json_text(text).map_err(|source| RolloutError::Spec {
        model: model.to_string(),
        source,
    })?;
    Ok(state.rollouts.start(model, spec).await?.to_json())
}

/// `GET .../rollout`.
pub(crate) fn status(state: &ServerState, model: &str) -> Result<serde_json::Value> {
    Ok(state.rollouts.status(model)?.to_json())
}

/// `DELETE .../rollout`.
pub(crate) fn abort(state: &ServerState, model: &str) -> Result<serde_json::Value> {
    check_control(state)?;
    Ok(state.rollouts.abort(model)?.to_json())
}

/// Load and unload are refused while a rollout of the model runs: they would replace the
/// versions it holds.
pub(crate) fn check_no_rollout(state: &ServerState, model: &str) -> Result<()> {
    if let Some(r) = state
        .rollouts
        .get(model)
        .filter(|r| r.state() == lrai_repo::rollout::RolloutState::Progressing)
    {
        return Err(RolloutError::InProgress {
            model: model.to_string(),
            candidate: r.handle(Arm::Candidate).version(),
        }
        .into());
    }
    Ok(())
}
