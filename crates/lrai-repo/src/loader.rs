//! Loading one model: read `config.pbtxt` (or none), pick versions by `version_policy`,
//! build one backend session per instance, complete the config from the model, warm up
//! ([`crate::warmup`]), then start the instances and the scheduler.
//! A version is published READY only after all of that succeeded.
//!
//! Everything here that blocks (file reads, session builds, warm-up runs) runs on
//! `spawn_blocking` threads; the async runtime only awaits it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lrai_backend::{Backend, ModelSource, Session, SessionOptions};
use lrai_core::TensorSpec;
use lrai_exec::{InstancePool, InstanceSpec, SessionFactory};
use lrai_monitor::Metrics;
use lrai_sched::{
    AdaptiveConfig, BatchPolicy, QueuePolicy, SchedConfig, SchedError, Scheduler,
    TimeoutAction as SchedTimeout,
};

use crate::config::{
    CompleteOptions, ConfigWarning, ModelConfig, TimeoutAction, VersionPolicy, complete,
};
use crate::handle::{ModelHandle, TensorMeta, meta_shape};
use crate::mlflow::{self, MlflowModel};
use crate::prepare::{ModelPrep, PrepRequest, Prepared};
use crate::warmup::WarmUp;
use crate::{Backends, RepoError, Result};

/// Settings that apply to every model the repository loads.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Session options (threads, optimisation); intra-op threads default to cores / instances.
    pub session: SessionOptions,
    /// max_batch_size given to batchable models without a config (Triton's default 4).
    pub default_max_batch_size: u32,
    /// Queue bound where the config sets none.
    pub default_max_queue_size: usize,
    /// First instance restart delay.
    pub min_backoff: Duration,
    /// Longest instance restart delay.
    pub max_backoff: Duration,
    /// Runs before sessions are built and may swap the model file (quantize-at-load).
    pub prepare: Option<Arc<dyn ModelPrep>>,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            session: SessionOptions::default(),
            default_max_batch_size: crate::config::DEFAULT_MAX_BATCH_SIZE,
            default_max_queue_size: lrai_sched::DEFAULT_MAX_QUEUE_SIZE,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            prepare: None,
        }
    }
}

/// The result of reading a model directory: config (if any) and versions to load.
pub(crate) struct ModelDir {
    pub(crate) config: Option<ModelConfig>,
    /// The versions `version_policy` names.
    pub(crate) versions: Vec<u64>,
    /// Every numbered version directory.
    pub(crate) found: Vec<u64>,
    /// What the files looked like when read.
    pub(crate) prints: crate::scan::Prints,
}

fn files_err(model: &str, reason: String) -> RepoError {
    RepoError::ModelFiles {
        model: model.to_string(),
        reason,
    }
}

/// Reads `<root>/<name>`: its config.pbtxt and version directories (blocking).
pub(crate) fn read_model_dir(root: &Path, name: &str) -> Result<ModelDir> {
    let dir = root.join(name);
    if !dir.is_dir() {
        return Err(RepoError::ModelNotFound {
            name: name.to_string(),
            available: String::new(),
        });
    }
    let confined = |path: &Path, what: String| {
        lrai_core::confine::check_inside(root, path, &what)
            .map_err(|reason| files_err(name, reason))
    };
    confined(&dir, format!("model directory '{name}'"))?;
    // Before the reads: a file changed meanwhile makes the next poll load again.
    let prints = crate::scan::fingerprint(&dir);
    let config_path = dir.join("config.pbtxt");
    confined(&config_path, format!("'{name}/config.pbtxt'"))?;
    let config = if config_path.is_file() {
        let (config, warnings) = ModelConfig::from_file(&config_path, name)?;
        log_warnings(name, &config_path, &warnings);
        Some(config)
    } else {
        None
    };
    let mut found: Vec<u64> = fs_err::read_dir(&dir)
        .map_err(|e| files_err(name, e.to_string()))?
        .filter_map(std::result::Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()))
        .collect();
    found.sort_unstable();
    if found.is_empty() {
        return Err(files_err(
            name,
            format!(
                "no version directories in '{}' (expected {name}/1/model.onnx)",
                dir.display()
            ),
        ));
    }
    let policy = config
        .as_ref()
        .map(|c| c.version_policy.clone())
        .unwrap_or_default();
    let versions = match policy {
        VersionPolicy::All => found.clone(),
        VersionPolicy::Latest { num_versions } => {
            let n = usize::try_from(num_versions.max(1)).unwrap_or(1);
            found[found.len().saturating_sub(n)..].to_vec()
        }
        VersionPolicy::Specific { versions } => {
            let mut out = Vec::new();
            for v in versions {
                let v = u64::try_from(v).ok().filter(|v| found.contains(v)).ok_or_else(|| {
                    files_err(name, format!("version_policy asks for version {v}, which has no directory (found {found:?})"))
                })?;
                out.push(v);
            }
            out
        }
    };
    Ok(ModelDir {
        config,
        versions,
        found,
        prints,
    })
}

fn log_warnings(model: &str, path: &Path, warnings: &[ConfigWarning]) {
    for w in warnings {
        tracing::warn!(model, file = %path.display(), "{w}");
    }
}

/// Everything needed to load one version; cloned into blocking tasks.
pub(crate) struct VersionJob {
    pub(crate) root: PathBuf,
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) config: Option<ModelConfig>,
    pub(crate) backends: Backends,
    pub(crate) settings: LoadSettings,
    pub(crate) metrics: Metrics,
}

/// What the blocking part builds: sessions and the effective config.
struct Built {
    config: ModelConfig,
    /// Warm-up timings (input elements, compute time), measured for adaptive models.
    profile: Vec<(u64, Duration)>,
    sessions: Vec<Arc<dyn Session>>,
    factory: SessionFactory,
    backend: Arc<dyn Backend>,
    prepared: Option<Prepared>,
}

/// Loads one version: blocking part on a blocking thread, then the pool and scheduler.
pub(crate) async fn load_version(job: VersionJob) -> Result<Arc<ModelHandle>> {
    let started = Instant::now();
    let name = job.name.clone();
    let version = job.version;
    let settings = job.settings.clone();
    let metrics = job.metrics.clone();
    let model_dir = job.root.join(&job.name);
    let labels = crate::labels::load_labels(&model_dir, &name, job.config.as_ref()).await?;
    let built = tokio::task::spawn_blocking(move || build_sessions(&job))
        .await
        .map_err(|e| RepoError::LoadPanicked {
            model: name.clone(),
            version,
            reason: e.to_string(),
        })??;
    let mm = metrics.model(&name, &version.to_string());
    let config = Arc::new(built.config);
    let batching = config.max_batch() > 0;
    let spec = InstanceSpec {
        model: name.clone(),
        factory: built.factory,
        batching,
        min_backoff: settings.min_backoff,
        max_backoff: settings.max_backoff,
        metrics: Arc::clone(&mm),
    };
    let sessions = built.sessions;
    let mut sched = sched_config(&name, &config, &settings);
    if let Some(a) = &mut sched.adaptive {
        a.profile = built.profile;
    }
    let scheduler = Scheduler::start(sched, Arc::clone(&mm), |notify| {
        InstancePool::<SchedError>::start(&spec, sessions, notify)
    })
    .map_err(|e| RepoError::ModelFiles {
        model: name.clone(),
        reason: format!("cannot start instance threads: {e}"),
    })?;
    let inputs = config
        .input
        .iter()
        .map(|i| TensorMeta {
            name: i.name.clone(),
            datatype: i.data_type,
            shape: meta_shape(&i.dims, batching),
        })
        .collect();
    let outputs = config
        .output
        .iter()
        .map(|o| TensorMeta {
            name: o.name.clone(),
            datatype: o.data_type,
            shape: meta_shape(&o.dims, batching),
        })
        .collect();
    let took = started.elapsed();
    mm.loaded(took);
    let backend = built.backend.kind();
    tracing::info!(model = %name, version, backend = %backend, max_batch_size = config.max_batch(), instances = config.instance_group.iter().map(|g| g.count).sum::<u32>(), load_ms = took.as_millis(), "model ready");
    Ok(Arc::new(ModelHandle {
        name,
        version,
        config,
        inputs,
        outputs,
        backend: Some(backend),
        runner: crate::handle::Runner::Scheduler(scheduler),
        metrics: mm,
        prepared: built.prepared,
        labels,
    }))
}

/// The version's ONNX file: the config's `default_model_filename`, else the one an
/// MLflow `MLmodel` names, else `model.onnx`.
fn model_file(job: &VersionJob) -> Result<(PathBuf, Option<MlflowModel>)> {
    let name = &job.name;
    let dir = job.root.join(name).join(job.version.to_string());
    let configured = job
        .config
        .as_ref()
        .map(|c| c.default_model_filename.clone())
        .filter(|f| !f.is_empty());
    let mlflow = match configured {
        Some(_) => None,
        None => mlflow::read(&dir).map_err(|reason| files_err(name, reason))?,
    };
    let path = match (&mlflow, configured) {
        (Some(m), _) => m.onnx_file.clone(),
        (None, Some(file)) => {
            lrai_core::confine::join_relative(&dir, &file, "default_model_filename")
                .map_err(|reason| files_err(name, reason))?
        }
        (None, None) => dir.join("model.onnx"),
    };
    let what = format!("model file '{}'", path.display());
    lrai_core::confine::check_inside(&job.root, &path, &what)
        .map_err(|reason| files_err(name, reason))?;
    if !path.is_file() {
        return Err(files_err(
            name,
            format!("model file '{}' is missing", path.display()),
        ));
    }
    Ok((path, mlflow))
}

/// The tensors the config is completed from: the model's, refined by an MLflow
/// signature that agrees with them. What MLmodel asks for that LRAI ignores is logged.
fn model_specs(
    name: &str,
    path: &Path,
    session: &dyn Session,
    mlflow: Option<&MlflowModel>,
) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    let Some(m) = mlflow else {
        return (session.inputs().to_vec(), session.outputs().to_vec());
    };
    let mut warnings = m.warnings.clone();
    let inputs = mlflow::merge_specs(
        session.inputs(),
        m.inputs.as_deref(),
        "inputs",
        &mut warnings,
    );
    let outputs = mlflow::merge_specs(
        session.outputs(),
        m.outputs.as_deref(),
        "outputs",
        &mut warnings,
    );
    let file = path.with_file_name(mlflow::MLMODEL);
    for w in &warnings {
        tracing::warn!(model = name, file = %file.display(), "MLmodel: {w}");
    }
    (inputs, outputs)
}

fn build_sessions(job: &VersionJob) -> Result<Built> {
    let name = &job.name;
    let (path, mlflow) = model_file(job)?;
    let wanted = job
        .config
        .as_ref()
        .and_then(|c| c.parameter("lrai.backend"))
        .map(str::to_string);
    let backend = job.backends.pick(name, wanted.as_deref())?;
    // Threads: the configured count, or the cores shared among this model's instances.
    let instances: u32 = job.config.as_ref().map_or(1, |c| {
        c.instance_group.iter().map(|g| g.count).sum::<u32>().max(1)
    });
    let mut options = job.settings.session.clone();
    if options.intra_op_threads.is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        options.intra_op_threads =
            Some((cores / usize::try_from(instances).unwrap_or(1).max(1)).max(1));
    }
    // Room for a plan per warmed batch size plus a few other shapes.
    let max_batch = job
        .config
        .as_ref()
        .and_then(|c| c.max_batch_size)
        .unwrap_or(job.settings.default_max_batch_size);
    let warmed = usize::try_from(max_batch.min(64)).unwrap_or(64) + 12;
    options.max_cached_plans = options.max_cached_plans.max(warmed);
    let prepared = prepare(job, &path, &backend, &options)?;
    let served = prepared
        .as_ref()
        .map_or(path.as_path(), |p| p.path.as_path());
    let source = ModelSource::from_path(served)
        .map_err(|source| RepoError::Backend {
            model: name.clone(),
            version: job.version,
            source,
        })?
        .with_name(name);
    let load = |b: &Arc<dyn Backend>| {
        b.load(&source, &options)
            .map_err(|source| RepoError::Backend {
                model: name.clone(),
                version: job.version,
                source,
            })
    };
    let first = load(&backend)?;
    let (inputs, outputs) = model_specs(name, &path, first.as_ref(), mlflow.as_ref());
    let (mut config, warnings) = complete(
        job.config.clone(),
        name,
        &inputs,
        &outputs,
        &CompleteOptions {
            default_max_batch_size: job.settings.default_max_batch_size,
        },
    )?;
    log_warnings(name, &path, &warnings);
    // Set by the server only, so a value copied from another effective config never shows.
    config
        .parameters
        .remove(crate::config::QUANTIZATION_SUMMARY);
    if let Some(p) = &prepared {
        // Shown by `GET /v2/models/{m}/config` and gRPC ModelConfig alike.
        config.parameters.insert(
            crate::config::QUANTIZATION_SUMMARY.to_string(),
            p.summary.clone(),
        );
    }
    let count: u32 = config
        .instance_group
        .iter()
        .map(|g| g.count)
        .sum::<u32>()
        .max(1);
    let mut sessions = vec![first];
    for _ in 1..count {
        sessions.push(load(&backend)?);
    }
    let warmup_err = |reason| RepoError::Warmup {
        model: name.clone(),
        version: job.version,
        reason,
    };
    let mut warm_up =
        WarmUp::plan(&config, &job.root.join(name), job.version).map_err(warmup_err)?;
    let mut profile = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        // One instance's timings are enough for the adaptive cost model.
        let timed = (i == 0 && config.slo().is_some()).then_some(&mut profile);
        warm_up.run(s.as_ref(), timed).map_err(warmup_err)?;
    }
    let factory_backend = Arc::clone(&backend);
    let factory: SessionFactory = Arc::new(move || factory_backend.load(&source, &options));
    Ok(Built {
        config,
        profile,
        sessions,
        factory,
        backend,
        prepared,
    })
}

/// Runs the configured [`ModelPrep`] (quantize-at-load) and logs what it did.
fn prepare(
    job: &VersionJob,
    path: &Path,
    backend: &Arc<dyn Backend>,
    options: &SessionOptions,
) -> Result<Option<Prepared>> {
    let (Some(prep), Some(config)) = (&job.settings.prepare, &job.config) else {
        return Ok(None);
    };
    let started = Instant::now();
    let model_dir = job.root.join(&job.name);
    let req = PrepRequest {
        model: &job.name,
        version: job.version,
        model_path: path,
        model_dir: &model_dir,
        parameters: &config.parameters,
        backend,
        options,
    };
    let prepared = prep.prepare(&req).map_err(|reason| RepoError::Prepare {
        model: job.name.clone(),
        version: job.version,
        reason,
    })?;
    if let Some(p) = &prepared {
        tracing::info!(
            model = %job.name,
            version = job.version,
            file = %p.path.display(),
            cache = if p.reused { "reused" } else { "created" },
            took_ms = started.elapsed().as_millis(),
            "quantize-at-load: {}",
            p.summary
        );
    }
    Ok(prepared)
}

/// The scheduler settings from the effective config.
pub(crate) fn sched_config(
    name: &str,
    config: &ModelConfig,
    settings: &LoadSettings,
) -> SchedConfig {
    let max = usize::try_from(config.max_batch()).unwrap_or(0);
    let Some(db) = &config.dynamic_batching else {
        let mut c = SchedConfig::simple(
            name,
            BatchPolicy {
                max_batch_size: max,
                ..BatchPolicy::unbatched()
            },
        );
        c.levels[0].max_queue_size = settings.default_max_queue_size;
        c.adaptive = adaptive_config(config);
        c.padding = config.padding();
        return c;
    };
    let policy = BatchPolicy {
        max_batch_size: max,
        dynamic: max > 0,
        preferred_batch_sizes: db
            .preferred_batch_size
            .iter()
            .filter_map(|&s| usize::try_from(s).ok())
            .collect(),
        max_queue_delay: db.max_queue_delay(),
    };
    let levels = usize::try_from(db.priority_levels.max(1)).unwrap_or(1);
    let level_policies = (1..=levels)
        .map(|l| {
            let q = db.queue_policy(u64::try_from(l).unwrap_or(1));
            QueuePolicy {
                timeout_action: match q.timeout_action {
                    TimeoutAction::Reject => SchedTimeout::Reject,
                    TimeoutAction::Delay => SchedTimeout::Delay,
                },
                default_timeout: q.default_timeout(),
                allow_timeout_override: q.allow_timeout_override,
                max_queue_size: if q.max_queue_size == 0 {
                    settings.default_max_queue_size
                } else {
                    usize::try_from(q.max_queue_size).unwrap_or(usize::MAX)
                },
            }
        })
        .collect();
    let default_priority = if db.default_priority_level == 0 {
        u32::try_from(levels.div_ceil(2)).unwrap_or(1)
    } else {
        u32::try_from(db.default_priority_level).unwrap_or(1)
    };
    SchedConfig {
        model: name.to_string(),
        policy,
        default_priority,
        levels: level_policies,
        adaptive: adaptive_config(config),
        padding: config.padding(),
    }
}

/// The adaptive batcher's settings, for models with a latency objective.
fn adaptive_config(config: &ModelConfig) -> Option<AdaptiveConfig> {
    let slo = config.slo()?;
    let mut a = AdaptiveConfig::for_slo(slo);
    if let Some(d) = config.adaptive_max_delay() {
        a.max_delay = d.min(slo);
    }
    Some(a)
}

/// Model names in a repository directory (blocking).
pub(crate) fn list_models(root: &Path) -> Result<Vec<String>> {
    let entries = fs_err::read_dir(root).map_err(|e| RepoError::Repository {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut names: Vec<String> = entries
        .filter_map(std::result::Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| match lrai_core::confine::invalid_name_reason(n) {
            None => true,
            // Hidden directories are skipped silently, as before; other bad names say why.
            Some(_) if n.starts_with('.') => false,
            Some(why) => {
                tracing::warn!(directory = %n.escape_debug(), "skipped: not a valid model name ({why})");
                false
            }
        })
        .collect();
    names.sort();
    Ok(names)
}
