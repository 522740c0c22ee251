//! Warm-up, before a version is published READY.
//!
//! - **Explicit**: the config's `model_warmup` samples, as Triton runs them. A sample's
//!   inputs are shaped as a client would send them (`batch_size` rows first when the model
//!   batches; one row of an `input_data_file` repeated per row), checked against the
//!   config's dims and reshaped like a request, then run `count` times (at least once).
//!   A sample that fails fails the load, as in Triton (the model is UNAVAILABLE with
//!   the reason).
//! - **Implicit** (no `model_warmup`; Triton has none): zeros at every batch size the
//!   batcher may form, so tract compiles its plans and the adaptive batcher's cost model
//!   is seeded before the first request. It runs only shapes known to be valid, the
//!   config's dims when every input's are concrete, and nothing for BYTES inputs, whose
//!   contents a model may parse (empty strings fail a `Cast` to INT32). When it can't
//!   know a shape it is skipped; when a run fails it is logged at WARN with the model and
//!   the reason and the rest is skipped. It is never a reason to refuse a model.

use std::path::Path;
use std::time::{Duration, Instant};

use lrai_backend::Session;
use lrai_core::random::{SplitMix64, random_tensor};
use lrai_core::{DataType, Tensor};

use crate::config::{ModelConfig, ModelWarmup, WarmupData, WarmupInput, format_config_dims};

/// One warm-up request.
struct Sample {
    /// For messages: `sample 'name'` or `at batch size 4`.
    label: String,
    inputs: Vec<(String, Tensor)>,
    /// Untimed runs, before the timed one when profiling (at least 1).
    runs: u32,
}

/// The warm-up of one model version, planned once and run on each instance.
pub(crate) struct WarmUp {
    model: String,
    version: u64,
    samples: Vec<Sample>,
    /// From `model_warmup`: a failure fails the load.
    explicit: bool,
}

impl WarmUp {
    /// Plans the warm-up from the effective config.
    ///
    /// # Errors
    /// An explicit sample that can't be built (unreadable or short data file, dims that
    /// don't fit the config), as a sentence naming the sample.
    pub(crate) fn plan(
        config: &ModelConfig,
        model_dir: &Path,
        version: u64,
    ) -> std::result::Result<WarmUp, String> {
        let explicit = !config.model_warmup.is_empty();
        let samples = if explicit {
            config
                .model_warmup
                .iter()
                .map(|w| explicit_sample(config, model_dir, w))
                .collect::<std::result::Result<_, _>>()?
        } else {
            match implicit_samples(config) {
                Ok(samples) => samples,
                Err(why) => {
                    tracing::info!(model = %config.name, version, "no implicit warm-up: {why}; add model_warmup to config.pbtxt to warm it up");
                    Vec::new()
                }
            }
        };
        Ok(WarmUp {
            model: config.name.clone(),
            version,
            samples,
            explicit,
        })
    }

    /// Runs the warm-up on one instance's session. With `profile`, each sample runs once
    /// more, timed (the first run of a shape compiles plans), and the timings (input
    /// elements, compute time) are recorded for the adaptive batcher's cost model.
    ///
    /// # Errors
    /// A failed explicit sample: `failed to run warmup sample 'name': why` (Triton's words).
    pub(crate) fn run(
        &mut self,
        session: &dyn Session,
        mut profile: Option<&mut Vec<(u64, Duration)>>,
    ) -> std::result::Result<(), String> {
        for i in 0..self.samples.len() {
            let sample = &self.samples[i];
            let outcome = run_sample(session, sample, profile.as_deref_mut());
            let Err(why) = outcome else { continue };
            if self.explicit {
                return Err(format!(
                    "failed to run warmup sample '{}': {why}",
                    sample.label
                ));
            }
            tracing::warn!(model = %self.model, version = self.version, reason = %why, "implicit warm-up {} failed; the model serves without warm-up (add model_warmup to config.pbtxt to choose its inputs)", sample.label);
            // The other sizes and instances would fail alike.
            self.samples.clear();
            break;
        }
        Ok(())
    }
}

/// Runs one sample `runs` times, then once timed into `profile`. A panic in the backend
/// is a failure of this sample, not of the loader.
fn run_sample(
    session: &dyn Session,
    sample: &Sample,
    profile: Option<&mut Vec<(u64, Duration)>>,
) -> std::result::Result<(), String> {
    let once = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.run(&sample.inputs)))
            .map_err(|panic| format!("the backend panicked: {}", panic_text(panic.as_ref())))?
            .map(drop)
            .map_err(|e| e.to_string())
    };
    for _ in 0..sample.runs {
        once()?;
    }
    if let Some(p) = profile {
        let started = Instant::now();
        once()?;
        let elements = sample
            .inputs
            .iter()
            .map(|(_, t)| t.shape().iter().product::<usize>() as u64)
            .sum();
        p.push((elements, started.elapsed()));
    }
    Ok(())
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Batch sizes to warm: every size the batcher may form up to 64, then powers of two,
/// preferred sizes and the max. tract compiles a plan per shape, so these are compiled
/// before READY; the rare larger sizes not listed compile on first use.
pub(crate) fn warm_sizes(config: &ModelConfig) -> Vec<usize> {
    let max = usize::try_from(config.max_batch()).unwrap_or(0);
    if max == 0 {
        return vec![0];
    }
    let mut sizes: Vec<usize> = (1..=max.min(64)).collect();
    let mut p = 128;
    while p <= max {
        sizes.push(p);
        p *= 2;
    }
    sizes.push(max);
    if let Some(db) = &config.dynamic_batching {
        sizes.extend(
            db.preferred_batch_size
                .iter()
                .filter_map(|&s| usize::try_from(s).ok())
                .filter(|&s| s > 0 && s <= max),
        );
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Zeros at every size of [`warm_sizes`], when every required input has concrete dims
/// and is not BYTES; otherwise why not.
fn implicit_samples(config: &ModelConfig) -> std::result::Result<Vec<Sample>, String> {
    let required: Vec<_> = config.input.iter().filter(|i| !i.optional).collect();
    for i in &required {
        if i.data_type == DataType::Bytes {
            return Err(format!(
                "input '{}' is BYTES, and the model may parse its contents",
                i.name
            ));
        }
        if i.dims.iter().any(|&d| d < 1) {
            return Err(format!(
                "input '{}' has variable dims {}",
                i.name,
                format_config_dims(&i.dims)
            ));
        }
    }
    let batching = config.batches();
    let mut samples = Vec::new();
    for rows in warm_sizes(config) {
        let mut inputs = Vec::with_capacity(required.len());
        for i in &required {
            let shape = client_shape(batching, rows, &i.dims);
            let t = Tensor::zeros(i.data_type, shape).map_err(|e| e.to_string())?;
            inputs.push((i.name.clone(), to_model(config, &i.name, t)?));
        }
        samples.push(Sample {
            label: if batching {
                format!("at batch size {rows}")
            } else {
                "of the model's shapes".to_string()
            },
            inputs,
            runs: 1,
        });
    }
    Ok(samples)
}

/// A `model_warmup` entry as one request.
fn explicit_sample(
    config: &ModelConfig,
    model_dir: &Path,
    w: &ModelWarmup,
) -> std::result::Result<Sample, String> {
    let rows = usize::try_from(w.batch_size).unwrap_or(1);
    let mut rng = SplitMix64::new(0);
    let mut inputs = Vec::with_capacity(w.inputs.len());
    for (name, wi) in &w.inputs {
        let why = |e: String| format!("warmup sample '{}' input '{name}': {e}", w.name);
        let t = sample_input(config, model_dir, rows, wi, &mut rng).map_err(why)?;
        inputs.push((name.clone(), to_model(config, name, t).map_err(why)?));
    }
    Ok(Sample {
        label: w.name.clone(),
        inputs,
        // Triton runs a sample `count` times, at least once.
        runs: w.count.max(1),
    })
}

fn sample_input(
    config: &ModelConfig,
    model_dir: &Path,
    rows: usize,
    wi: &WarmupInput,
    rng: &mut SplitMix64,
) -> std::result::Result<Tensor, String> {
    let batching = config.batches();
    let shape = client_shape(batching, rows, &wi.dims);
    let t = match &wi.data {
        WarmupData::Zero => Tensor::zeros(wi.data_type, shape),
        // Triton sends empty strings for random BYTES data too.
        WarmupData::Random if wi.data_type == DataType::Bytes => Tensor::zeros(wi.data_type, shape),
        WarmupData::Random => random_tensor(wi.data_type, shape, rng),
        WarmupData::File(f) => {
            let row = read_row(model_dir, f, wi)?;
            let copies = if batching { rows } else { 1 };
            Tensor::new(wi.data_type, shape, row.repeat(copies).into())
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(t)
}

/// One row of an `input_data_file` (under the model's `warmup/` directory): for BYTES the
/// whole file (serialised elements), else its first dims × element size bytes (Triton
/// reads as many as it needs and requires no fewer).
fn read_row(
    model_dir: &Path,
    file: &str,
    wi: &WarmupInput,
) -> std::result::Result<Vec<u8>, String> {
    let dir = model_dir.join("warmup");
    // Paths stay inside the model's warmup directory, links included.
    let path = lrai_core::confine::join_relative(&dir, file, "input_data_file").map_err(|_| {
        // Not echoed when absolute: the answer may reach callers.
        let shown = if Path::new(file).is_absolute() {
            "(an absolute path)"
        } else {
            file
        };
        format!(
            "input_data_file {shown} must name a file inside the model's warmup/ directory \
             (a relative path, no '..')"
        )
    })?;
    lrai_core::confine::check_inside(model_dir, &path, &format!("input_data_file '{file}'"))?;
    let mut bytes = fs_err::read(&path).map_err(|e| e.to_string())?;
    let Some(size) = wi.data_type.size() else {
        return Ok(bytes);
    };
    let count = wi
        .dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?));
    let need = count
        .and_then(|c| c.checked_mul(size))
        .ok_or_else(|| format!("dims {} overflow", format_config_dims(&wi.dims)))?;
    if bytes.len() < need {
        return Err(format!(
            "warmup setting expects {need} bytes, but the data provided from {file} only has {} bytes",
            bytes.len()
        ));
    }
    bytes.truncate(need);
    Ok(bytes)
}

/// The shape a client sends: the batch first when the model batches, then `dims`.
fn client_shape(batching: bool, rows: usize, dims: &[i64]) -> Vec<usize> {
    let mut shape: Vec<usize> = if batching { vec![rows] } else { Vec::new() };
    shape.extend(dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)));
    shape
}

/// Checks a warm-up tensor against the input's config dims, as a request's, and applies
/// the config's `reshape`.
fn to_model(config: &ModelConfig, name: &str, t: Tensor) -> std::result::Result<Tensor, String> {
    let Some(spec) = config.input(name) else {
        return Err(format!("the model has no input '{name}'"));
    };
    let inner = t
        .shape()
        .get(usize::from(config.batches())..)
        .unwrap_or_default();
    let fits = inner.len() == spec.dims.len()
        && inner
            .iter()
            .zip(&spec.dims)
            .all(|(&g, &d)| d < 0 || usize::try_from(d).is_ok_and(|d| d == g));
    if !fits {
        return Err(format!(
            "unexpected shape {}: the config's dims are {}",
            lrai_core::format_shape(inner),
            format_config_dims(&spec.dims)
        ));
    }
    crate::reshape::input_to_model(config, name, t)
        .map_err(|e| format!("reshape from the config: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{DynamicBatching, ModelInput};

    fn config(inputs: Vec<ModelInput>, max_batch: u32) -> ModelConfig {
        ModelConfig {
            max_batch_size: Some(max_batch),
            input: inputs,
            dynamic_batching: Some(DynamicBatching {
                preferred_batch_size: vec![3],
                ..DynamicBatching::default()
            }),
            ..ModelConfig::named("m")
        }
    }

    #[test]
    fn implicit_warm_up_runs_only_concrete_dims_and_never_bytes() {
        let mut scalar = ModelInput::new("s", DataType::F32, vec![1]);
        scalar.reshape = Some(vec![]);
        let c = config(
            vec![ModelInput::new("x", DataType::F32, vec![3, 8]), scalar],
            4,
        );
        let samples = implicit_samples(&c).unwrap();
        assert!(samples.iter().all(|s| s.runs == 1));
        let shapes: Vec<Vec<Vec<usize>>> = samples
            .iter()
            .map(|s| s.inputs.iter().map(|(_, t)| t.shape().to_vec()).collect())
            .collect();
        // Every size up to max_batch_size, the per-row scalar reshaped as requests are.
        assert_eq!(
            shapes,
            (1..=4)
                .map(|r| vec![vec![r, 3, 8], vec![r]])
                .collect::<Vec<_>>()
        );
        let free = config(
            vec![ModelInput::new("x", DataType::F32, vec![3, -1, -1])],
            4,
        );
        assert_eq!(
            implicit_samples(&free).err().unwrap(),
            "input 'x' has variable dims [3,-1,-1]"
        );
        let text = config(vec![ModelInput::new("t", DataType::Bytes, vec![2])], 4);
        assert!(implicit_samples(&text).err().unwrap().contains("BYTES"));
        let unbatched = config(vec![ModelInput::new("x", DataType::F32, vec![2, 2])], 0);
        let samples = implicit_samples(&unbatched).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].inputs[0].1.shape(), &[2, 2]);
    }

    #[test]
    fn a_data_file_gives_one_row_and_stays_in_the_warmup_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("warmup")).unwrap();
        fs_err::write(dir.path().join("warmup/row.bin"), [7u8; 10]).unwrap();
        let input = |dims: Vec<i64>, file: &str| WarmupInput {
            data_type: DataType::U8,
            dims,
            data: WarmupData::File(file.to_string()),
        };
        // Triton reads what one row needs and ignores the rest.
        assert_eq!(
            read_row(dir.path(), "row.bin", &input(vec![2, 3], "")).unwrap(),
            vec![7u8; 6]
        );
        assert_eq!(
            read_row(dir.path(), "row.bin", &input(vec![4, 3], "")).unwrap_err(),
            "warmup setting expects 12 bytes, but the data provided from row.bin only has 10 bytes"
        );
        for escape in ["../config.pbtxt", "/etc/hostname", "a/../../x"] {
            let err = read_row(dir.path(), escape, &input(vec![1], "")).unwrap_err();
            assert!(
                err.contains("inside the model's warmup/ directory"),
                "{escape}: {err}"
            );
        }
    }
}
