//! Loading an ensemble: its DAG, checked against the step models that are READY now, becomes
//! one [`ModelHandle`] per version directory (Triton requires them; they stay empty). And
//! the start-up order: step models load before the ensembles that use them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lrai_monitor::Metrics;

use super::Ensemble;
use super::check::check_steps;
use super::plan::Plan;
use crate::config::ModelConfig;
use crate::handle::{ModelHandle, Runner, TensorMeta, meta_shape};
use crate::repository::ModelLookup;
use crate::{RepoError, Result};

/// What loading an ensemble needs.
pub(crate) struct EnsembleJob {
    pub(crate) root: PathBuf,
    pub(crate) name: String,
    pub(crate) versions: Vec<u64>,
    pub(crate) config: ModelConfig,
    pub(crate) metrics: Metrics,
    pub(crate) models: ModelLookup,
}

/// Builds the ensemble's handles, one per version.
///
/// # Errors
/// [`RepoError::Ensemble`] naming the step and model that is missing, not ready, or
/// doesn't fit; label file errors.
pub(crate) async fn load(job: EnsembleJob) -> Result<BTreeMap<u64, Arc<ModelHandle>>> {
    let started = Instant::now();
    let name = job.name.clone();
    let err = |reason: String| RepoError::Ensemble {
        ensemble: name.clone(),
        reason,
    };
    let plan = Arc::new(Plan::build(&job.config).map_err(err)?);
    let mut steps = Vec::with_capacity(plan.steps.len());
    for (i, s) in plan.steps.iter().enumerate() {
        if !job.root.join(&s.model).is_dir() {
            return Err(err(format!(
                "{} names a model that is not in the repository (no directory '{}')",
                s.label(i),
                s.model
            )));
        }
        let version = s.version.map(|v| v.to_string());
        let handle = job
            .models
            .get(&s.model, version.as_deref())
            .map_err(|e| err(format!("{} is not ready: {e}", s.label(i))))?;
        if let Some(why) = handle.unready_reason() {
            return Err(err(format!("{} is not ready: {why}", s.label(i))));
        }
        steps.push(handle);
    }
    let configs: Vec<&ModelConfig> = steps.iter().map(|h| h.config()).collect();
    check_steps(&job.config, &plan, &configs).map_err(err)?;
    let config = Arc::new(effective(job.config));
    let labels =
        crate::labels::load_labels(&job.root.join(&name), &name, Some(config.as_ref())).await?;
    let batching = config.batches();
    let meta = |name: &str, dtype, dims: &[i64]| TensorMeta {
        name: name.to_string(),
        datatype: dtype,
        shape: meta_shape(dims, batching),
    };
    let inputs: Vec<TensorMeta> = config
        .input
        .iter()
        .map(|i| meta(&i.name, i.data_type, &i.dims))
        .collect();
    let outputs: Vec<TensorMeta> = config
        .output
        .iter()
        .map(|o| meta(&o.name, o.data_type, &o.dims))
        .collect();
    let mut handles = BTreeMap::new();
    for version in job.versions {
        let metrics = job.metrics.model(&name, &version.to_string());
        metrics.loaded(started.elapsed());
        let ensemble = Ensemble {
            name: name.clone(),
            plan: Arc::clone(&plan),
            models: job.models.clone(),
            outputs: config.output.iter().map(|o| o.name.clone()).collect(),
            metrics: Arc::clone(&metrics),
        };
        handles.insert(
            version,
            Arc::new(ModelHandle {
                name: name.clone(),
                version,
                config: Arc::clone(&config),
                inputs: inputs.clone(),
                outputs: outputs.clone(),
                backend: None,
                runner: Runner::Ensemble(ensemble),
                metrics,
                prepared: None,
                labels: labels.clone(),
            }),
        );
        tracing::info!(model = %name, version, steps = plan.steps.len(), max_batch_size = config.max_batch(), load_ms = started.elapsed().as_millis(), "ensemble ready");
    }
    Ok(handles)
}

/// The config as `GET /v2/models/{m}/config` shows an ensemble (Triton's normalised form:
/// max_batch_size given, no model file).
fn effective(mut config: ModelConfig) -> ModelConfig {
    config.max_batch_size = Some(config.max_batch());
    config.default_model_filename = String::new();
    config
}

/// The step models of `<root>/<name>` when it is an ensemble (blocking; a config that
/// doesn't parse is left for the load to report).
fn ensemble_steps(root: &Path, name: &str) -> Option<Vec<String>> {
    let path = root.join(name).join("config.pbtxt");
    let text = fs_err::read_to_string(path).ok()?;
    let (config, _) = ModelConfig::from_text(&text, name).ok()?;
    let steps = config
        .ensemble_scheduling
        .filter(|_| config.platform == crate::config::ENSEMBLE_PLATFORM)?;
    Some(steps.step.into_iter().map(|s| s.model_name).collect())
}

/// The models to load at start, in waves: models first, then each ensemble in the wave
/// after all of its step models (blocking: reads the configs). The step models of the
/// ensembles named are added, as Triton loads an ensemble's models with it.
pub(crate) fn startup_waves(root: &Path, names: Vec<String>) -> Vec<Vec<String>> {
    let mut all: Vec<String> = Vec::new();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut queue = names;
    queue.reverse();
    while let Some(name) = queue.pop() {
        if all.contains(&name) {
            continue;
        }
        if let Some(steps) = ensemble_steps(root, &name) {
            for s in steps.iter().rev() {
                // Only plain directory names: a step name must never reach outside the
                // repository.
                let plain = !s.is_empty() && !s.contains(['/', '\\']) && !s.starts_with('.');
                if plain && root.join(s).is_dir() {
                    queue.push(s.clone());
                }
            }
            deps.insert(name.clone(), steps);
        }
        all.push(name);
    }
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut waves = Vec::new();
    while placed.len() < all.len() {
        let wave: Vec<String> = all
            .iter()
            .filter(|n| !placed.contains(*n))
            .filter(|n| {
                deps.get(*n).is_none_or(|d| {
                    d.iter()
                        .all(|s| placed.contains(s) || !all.contains(s) || *s == **n)
                })
            })
            .cloned()
            .collect();
        // What is left waits on a cycle: load it anyway, its error will say why.
        let mut wave = if wave.is_empty() {
            all.iter()
                .filter(|n| !placed.contains(*n))
                .cloned()
                .collect()
        } else {
            wave
        };
        wave.sort();
        placed.extend(wave.iter().cloned());
        waves.push(wave);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, config: &str) {
        fs_err::create_dir_all(root.join(name).join("1")).unwrap();
        fs_err::write(root.join(name).join("config.pbtxt"), config).unwrap();
    }

    fn ensemble(name: &str, steps: &[&str]) -> String {
        let steps: Vec<String> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{{ model_name: \"{s}\" input_map {{ key: \"x\" value: \"{}\" }} output_map {{ key: \"y\" value: \"{}\" }} }}",
                    if i == 0 { "IN".to_string() } else { format!("T{i}") },
                    if i + 1 == steps.len() { "OUT".to_string() } else { format!("T{}", i + 1) }
                )
            })
            .collect();
        format!(
            "name: \"{name}\" platform: \"ensemble\" input [ {{ name: \"IN\" data_type: TYPE_FP32 dims: [ 1 ] }} ] output [ {{ name: \"OUT\" data_type: TYPE_FP32 dims: [ 1 ] }} ] ensemble_scheduling {{ step [ {} ] }}",
            steps.join(", ")
        )
    }

    #[test]
    fn loads_ensembles_after_their_steps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "a_pipeline",
            &ensemble("a_pipeline", &["pre", "b_nested"]),
        );
        write(root, "b_nested", &ensemble("b_nested", &["clf"]));
        write(root, "clf", "");
        write(root, "pre", "");
        let names = vec![
            "a_pipeline".into(),
            "b_nested".into(),
            "clf".into(),
            "pre".into(),
        ];
        let waves = startup_waves(root, names);
        assert_eq!(
            waves,
            vec![
                vec!["clf".to_string(), "pre".to_string()],
                vec!["b_nested".to_string()],
                vec!["a_pipeline".to_string()],
            ]
        );
    }

    #[test]
    fn an_ensemble_named_alone_brings_its_steps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "pipe", &ensemble("pipe", &["pre", "clf"]));
        write(root, "clf", "");
        write(root, "pre", "");
        let waves = startup_waves(root, vec!["pipe".into()]);
        assert_eq!(
            waves,
            vec![
                vec!["clf".to_string(), "pre".to_string()],
                vec!["pipe".to_string()]
            ]
        );
    }

    #[test]
    fn a_cycle_still_loads_everything_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "x", &ensemble("x", &["y"]));
        write(root, "y", &ensemble("y", &["x"]));
        let waves = startup_waves(root, vec!["x".into(), "y".into()]);
        assert_eq!(waves, vec![vec!["x".to_string(), "y".to_string()]]);
    }
}
