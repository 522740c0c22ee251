//! What both protocols do, written once: the HTTP handlers and the gRPC service are thin
//! adapters that decode, call one of these, and encode (qdrant's `do_upsert_points`
//! pattern). Input checks against the model happen here, in `ModelHandle::check_inputs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lrai_audit::AdminAction;
use lrai_monitor::{ModelStatsSnapshot, Protocol, RequestStatus};
use lrai_repo::{ControlMode, ModelHandle, RepoError, Repository, TensorMeta};

use crate::kserve::{
    InferBatchStatistics, InferStatistics, ModelMetadata, ModelStatistics, ModelStatisticsResponse,
    RepositoryIndexEntry, ServerMetadata, StatisticDuration, TensorMetadata,
};
use crate::server::error::{Result, ServerError};
use crate::server::rollout::{self, Target};
use crate::server::{Caller, ServerState, audit};
use crate::{
    InferRequest, InferResponse, ProtocolError, RequestedOutput, TensorRef, classifiable, classify,
};

/// Extensions advertised in server metadata: what tritonclient and perf_analyzer may use.
pub(crate) const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "statistics",
    "parameters",
];

pub(crate) fn server_metadata(state: &ServerState) -> ServerMetadata {
    ServerMetadata {
        name: state.config.server_name.clone(),
        version: state.config.server_version.clone(),
        extensions: EXTENSIONS.iter().map(|s| (*s).to_string()).collect(),
    }
}

fn version_arg(version: &str) -> Option<&str> {
    Some(version).filter(|v| !v.is_empty())
}

pub(crate) fn handle(state: &ServerState, name: &str, version: &str) -> Result<Arc<ModelHandle>> {
    Ok(state.repo.get(name, version_arg(version))?)
}

fn tensor_meta(t: &TensorMeta) -> TensorMetadata {
    TensorMetadata {
        name: t.name.clone(),
        datatype: t.datatype.as_kserve().to_string(),
        shape: t.shape.clone(),
    }
}

pub(crate) fn model_metadata(
    state: &ServerState,
    name: &str,
    version: &str,
) -> Result<ModelMetadata> {
    let h = handle(state, name, version)?;
    let versions = state
        .repo
        .index(true)
        .into_iter()
        .filter(|e| e.name == name)
        .map(|e| e.version)
        .collect();
    Ok(ModelMetadata {
        name: h.name().to_string(),
        versions,
        platform: h.config().platform.clone(),
        inputs: h.inputs().iter().map(tensor_meta).collect(),
        outputs: h.outputs().iter().map(tensor_meta).collect(),
    })
}

pub(crate) fn model_ready(state: &ServerState, name: &str, version: &str) -> bool {
    state.repo.get(name, version_arg(version)).is_ok()
}

pub(crate) fn server_ready(state: &ServerState) -> bool {
    !state.is_shutting_down() && state.repo.all_ready()
}

/// Runs one inference; returns the request back (its outputs list and parameters decide
/// the encoding) with the response.
/// `route_key` keeps one caller on one arm of a rollout (see [`super::rollout`]); the
/// audit log (when it records inferences) gets `caller` and digests of the tensors.
pub(crate) async fn infer(
    state: &ServerState,
    req: InferRequest,
    protocol: Protocol,
    route_key: Option<&str>,
    caller: Option<&Caller>,
) -> Result<(InferRequest, InferResponse)> {
    let Some(pending) = audit::before_infer(state, &req) else {
        return infer_routed(state, req, protocol, route_key).await;
    };
    let result = infer_routed(state, req, protocol, route_key).await;
    audit::after_infer(pending, caller, protocol, &result).await;
    result
}

async fn infer_routed(
    state: &ServerState,
    mut req: InferRequest,
    protocol: Protocol,
    route_key: Option<&str>,
) -> Result<(InferRequest, InferResponse)> {
    if state.is_shutting_down() {
        return Err(ServerError::ShuttingDown);
    }
    let started = Instant::now();
    let target = rollout::route(
        state,
        &req.model_name,
        &req.model_version,
        route_key,
        &req.id,
    )?;
    let first = Arc::clone(target.handle().metrics());
    first.inflight_delta(1);
    let (result, h) = match target {
        Target::Handle(h) => (run(&h, &mut req).await, h),
        Target::Split(routed) => rollout::run_split(state, routed, &mut req).await,
    };
    first.inflight_delta(-1);
    let metrics = Arc::clone(h.metrics());
    match &result {
        Ok(_) => metrics.request_done(protocol, RequestStatus::Ok, None, started.elapsed()),
        Err(e) => {
            let (status, reason) = e.metric_labels();
            metrics.request_done(protocol, status, Some(reason), started.elapsed());
        }
    }
    let outputs = result?;
    let resp = InferResponse {
        model_name: h.name().to_string(),
        model_version: h.version().to_string(),
        id: req.id.clone(),
        outputs,
        parameters: Default::default(),
    };
    Ok((req, resp))
}

async fn run(h: &ModelHandle, req: &mut InferRequest) -> Result<Vec<(String, lrai_core::Tensor)>> {
    check_requested_outputs(h, &req.outputs)?;
    let inputs = std::mem::take(&mut req.inputs)
        .into_iter()
        .map(|i| (i.name, i.tensor))
        .collect();
    let inputs = h.check_inputs(inputs)?;
    let span =
        tracing::debug_span!("infer", model = %h.name(), version = h.version(), id = %req.id);
    let timeout = req.parameters.timeout_us.map(Duration::from_micros);
    let out = h
        .infer(inputs, req.parameters.priority, timeout, span)
        .await?;
    let mut outputs = out.outputs;
    classify_outputs(h, &req.outputs, &mut outputs)?;
    Ok(outputs)
}

/// Every requested output exists, and can be classified when that is asked: checked
/// before the model runs (Triton finds an unclassifiable type only after).
pub(crate) fn check_requested_outputs(h: &ModelHandle, wanted: &[RequestedOutput]) -> Result<()> {
    for o in wanted {
        let Some(meta) = h.outputs().iter().find(|m| m.name == o.name) else {
            return Err(ServerError::UnknownOutput {
                model: h.name().to_string(),
                output: o.name.clone(),
                available: h
                    .outputs()
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if o.classification.is_some() && !classifiable(meta.datatype) {
            return Err(ProtocolError::ClassificationType {
                tensor: TensorRef::output(&o.name),
                dtype: meta.datatype,
            }
            .into());
        }
    }
    Ok(())
}

/// Replaces each output the request asked to classify with its top classes, labelled
/// from the output's `label_filename` (read at load). Done once here, for both
/// protocols.
pub(crate) fn classify_outputs(
    h: &ModelHandle,
    wanted: &[RequestedOutput],
    outputs: &mut [(String, lrai_core::Tensor)],
) -> Result<()> {
    let batched = h.max_batch_size() > 0;
    for o in wanted {
        let Some(count) = o.classification else {
            continue;
        };
        if let Some((name, tensor)) = outputs.iter_mut().find(|(n, _)| *n == o.name) {
            let labels = h.labels().get(name).unwrap_or_default();
            *tensor = classify(name, tensor, count, batched, labels)?;
        }
    }
    Ok(())
}

fn dur(d: lrai_monitor::StatDuration) -> StatisticDuration {
    StatisticDuration {
        count: d.count,
        ns: d.ns,
    }
}

fn stats_of(s: ModelStatsSnapshot) -> ModelStatistics {
    ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: InferStatistics {
            success: dur(s.success),
            fail: dur(s.fail),
            queue: dur(s.queue),
            compute_input: dur(s.compute_input),
            compute_infer: dur(s.compute_infer),
            compute_output: dur(s.compute_output),
            ..InferStatistics::default()
        },
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| InferBatchStatistics {
                batch_size: b.batch_size as u64,
                compute_input: dur(b.compute_input),
                compute_infer: dur(b.compute_infer),
                compute_output: dur(b.compute_output),
            })
            .collect(),
        ..ModelStatistics::default()
    }
}

fn adaptive_json(a: &lrai_monitor::AdaptiveStatus) -> serde_json::Value {
    let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    serde_json::json!({
        "mode": a.mode,
        "fallback_reason": a.fallback_reason.map(lrai_monitor::FallbackReason::as_str),
        "fallbacks": a.fallbacks,
        "slo_p95_us": us(a.slo),
        "max_batch_size": a.max_batch_size,
        "max_queue_delay_us": us(a.max_queue_delay),
        "cost_model": {
            "fixed_us": a.cost_fixed_us,
            "us_per_input_element": a.cost_per_element_us,
            "median_relative_error": a.prediction_error,
        },
        "window": {
            "requests": a.window_requests,
            "p95_us": us(a.window_p95),
            "slo_attainment": a.attainment,
            "arrival_rate_per_s": a.arrival_rate,
            "demoted_late": a.window_demoted,
        },
    })
}

/// Statistics of every READY version, of one model, or of one version.
pub(crate) fn statistics(
    state: &ServerState,
    name: Option<&str>,
    version: &str,
) -> Result<ModelStatisticsResponse> {
    let handles: Vec<Arc<ModelHandle>> = match name {
        None => state.repo.ready(),
        Some(n) if version.is_empty() => {
            let all: Vec<_> = state
                .repo
                .ready()
                .into_iter()
                .filter(|h| h.name() == n)
                .collect();
            if all.is_empty() {
                // Reuse the repository's error (not found vs not ready).
                vec![handle(state, n, "")?]
            } else {
                all
            }
        }
        Some(n) => vec![handle(state, n, version)?],
    };
    Ok(ModelStatisticsResponse {
        model_stats: handles
            .iter()
            .map(|h| {
                let mut s = stats_of(h.metrics().snapshot());
                s.lrai_adaptive = h.metrics().adaptive_status().map(|a| adaptive_json(&a));
                s.lrai_quantization = h.prepared().map(lrai_repo::Prepared::to_json);
                s
            })
            .collect(),
    })
}

pub(crate) fn config_json(
    state: &ServerState,
    name: &str,
    version: &str,
) -> Result<serde_json::Value> {
    let h = handle(state, name, version)?;
    let mut json = h.config().to_triton_json();
    if let (Some(p), Some(obj)) = (h.prepared(), json.as_object_mut()) {
        obj.insert("lrai_quantization".into(), p.to_json());
    }
    Ok(json)
}

pub(crate) fn index(state: &ServerState, ready_only: bool) -> Vec<RepositoryIndexEntry> {
    state
        .repo
        .index(ready_only)
        .into_iter()
        .map(|e| RepositoryIndexEntry {
            name: e.name,
            version: Some(e.version).filter(|v| !v.is_empty()),
            state: e.state.as_str().to_string(),
            reason: e.reason,
        })
        .collect()
}

/// Load and unload are Triton's explicit-mode API: refused in `none` and `poll`, as
/// Triton refuses them.
fn explicit_only(state: &ServerState) -> Result<()> {
    match state.repo.control_mode() {
        ControlMode::Explicit => Ok(()),
        mode @ (ControlMode::None | ControlMode::Poll) => Err(RepoError::ControlDisabled {
            mode: mode.as_str(),
        }
        .into()),
    }
}

/// Runs a repository change on its own task: a client that hangs up mid-load must not
/// cancel the load halfway (the model would stay LOADING with its lock released).
async fn detached<T: Send + 'static>(
    state: &ServerState,
    name: &str,
    change: impl FnOnce(Arc<Repository>, String) -> ChangeFuture<T>,
) -> Result<T> {
    let task = tokio::spawn(change(Arc::clone(&state.repo), name.to_string()));
    let result = task.await.map_err(|e| RepoError::LoadPanicked {
        model: name.to_string(),
        version: 0,
        reason: e.to_string(),
    })?;
    Ok(result?)
}

type ChangeFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = lrai_repo::Result<T>> + Send>>;

pub(crate) async fn load(state: &ServerState, name: &str, caller: Option<&Caller>) -> Result<()> {
    let result = load_model(state, name).await;
    audit::admin(state, caller, AdminAction::Load, name, result).await
}

async fn load_model(state: &ServerState, name: &str) -> Result<()> {
    explicit_only(state)?;
    rollout::check_no_rollout(state, name)?;
    detached(state, name, |r, n| {
        Box::pin(async move { r.load_with_steps(&n).await })
    })
    .await?;
    // The table decides again; a rollout in the new config.pbtxt starts now.
    state.rollouts.forget(name);
    state.rollouts.start_from_config(name).await;
    Ok(())
}

pub(crate) async fn unload(state: &ServerState, name: &str, caller: Option<&Caller>) -> Result<()> {
    let result = unload_model(state, name).await;
    audit::admin(state, caller, AdminAction::Unload, name, result).await
}

async fn unload_model(state: &ServerState, name: &str) -> Result<()> {
    explicit_only(state)?;
    rollout::check_no_rollout(state, name)?;
    detached(state, name, |r, n| {
        Box::pin(async move { r.unload_model(&n).await })
    })
    .await?;
    state.rollouts.forget(name);
    Ok(())
}

/// Rollback changes what serves, so control mode `none` refuses it; `poll` allows it
/// (the pin holds until the model's files change).
pub(crate) async fn rollback(
    state: &ServerState,
    name: &str,
    caller: Option<&Caller>,
) -> Result<lrai_repo::Rollback> {
    let result = rollback_model(state, name).await;
    audit::admin(state, caller, AdminAction::Rollback, name, result).await
}

async fn rollback_model(state: &ServerState, name: &str) -> Result<lrai_repo::Rollback> {
    let mode = state.repo.control_mode();
    if mode == ControlMode::None {
        return Err(RepoError::ControlDisabled {
            mode: mode.as_str(),
        }
        .into());
    }
    // A rollout owns the model's routing until it ends (DELETE .../rollout aborts it).
    rollout::check_no_rollout(state, name)?;
    detached(state, name, |r, n| {
        Box::pin(async move { r.rollback(&n).await })
    })
    .await
}
