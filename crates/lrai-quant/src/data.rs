//! Calibration and evaluation data: a `.npz` file or a directory of `.npy` files whose
//! arrays hold one sample per row (axis 0), bound to the model's inputs, plus optional
//! `labels` (or `y`) and `group` arrays for evaluation.
//!
//! Arrays are bound by name first. An input without an array of its name takes the one
//! array whose datatype and trailing dims fit it (so `digits_test.npz`, with `x_flat`
//! [450,64] and `x_img` [450,1,8,8], feeds `digits_mlp` and `digits_cnn` alike); two
//! candidates are an error that asks for a rename. float64 arrays (numpy's default) are
//! accepted for float32 inputs and converted.

use std::collections::BTreeMap;
use std::path::Path;

use lrai_core::{DataType, Dim, Tensor, TensorSpec, format_dims, format_shape, npy};

use crate::{QuantError, Result};

/// Array names read as labels, in order of preference.
pub const LABEL_KEYS: [&str; 2] = ["labels", "y"];
/// Array name read as the group of each sample.
pub const GROUP_KEY: &str = "group";

/// Samples bound to a model's inputs.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// One tensor per model input, samples along axis 0, in the model's input order.
    pub inputs: Vec<(String, Tensor)>,
    /// Which array fed each input (for the report).
    pub sources: BTreeMap<String, String>,
    /// Class label per sample.
    pub labels: Option<Vec<i64>>,
    /// Group per sample.
    pub groups: Option<Vec<i64>>,
    /// Number of samples.
    pub samples: usize,
}

fn data_err(role: &'static str, path: &Path, reason: String) -> QuantError {
    QuantError::Data {
        role,
        path: path.to_path_buf(),
        reason,
    }
}

fn read_arrays(role: &'static str, path: &Path) -> Result<Vec<(String, Tensor)>> {
    if path.is_dir() {
        let mut out = Vec::new();
        let mut entries: Vec<_> = fs_err::read_dir(path)?
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, npy::read_npy(&p)?));
        }
        if out.is_empty() {
            return Err(data_err(
                role,
                path,
                "the directory holds no .npy files; put one <input name>.npy per model input there"
                    .into(),
            ));
        }
        Ok(out)
    } else if path.is_file() {
        if path.extension().is_some_and(|e| e == "npy") {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(vec![(stem, npy::read_npy(path)?)]);
        }
        Ok(npy::read_npz(path)?)
    } else {
        Err(data_err(
            role,
            path,
            "no such file or directory; give a .npz file or a directory of .npy files".into(),
        ))
    }
}

fn describe(arrays: &[(String, Tensor)]) -> String {
    arrays
        .iter()
        .map(|(n, t)| format!("{n} {} {}", t.dtype(), format_shape(t.shape())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when the array's trailing dims fit the spec's (axis 0 is the sample axis).
fn fits(spec: &TensorSpec, t: &Tensor) -> bool {
    let dtype_ok =
        t.dtype() == spec.dtype || (spec.dtype == DataType::F32 && t.dtype() == DataType::F64);
    let Some(dims) = &spec.dims else {
        return dtype_ok;
    };
    dtype_ok
        && dims.len() == t.shape().len()
        && dims
            .iter()
            .zip(t.shape())
            .skip(1)
            .all(|(d, &n)| !matches!(d, Dim::Fixed(f) if *f != n))
}

fn to_f32(t: Tensor) -> Result<Tensor> {
    if t.dtype() != DataType::F64 {
        return Ok(t);
    }
    #[allow(clippy::cast_possible_truncation)]
    let v: Vec<f32> = t.as_slice::<f64>()?.iter().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(t.shape().to_vec(), v)?)
}

fn int_array(
    role: &'static str,
    path: &Path,
    name: &str,
    t: &Tensor,
    samples: usize,
) -> Result<Vec<i64>> {
    if t.shape() != [samples] {
        return Err(data_err(
            role,
            path,
            format!(
                "array '{name}' has shape {}; it must be 1-D with one entry per sample ({samples})",
                format_shape(t.shape())
            ),
        ));
    }
    let v = t.to_f64_vec().map_err(|_| {
        data_err(
            role,
            path,
            format!("array '{name}' must hold integers, not {}", t.dtype()),
        )
    })?;
    v.iter()
        .map(|&x| {
            if x.fract() == 0.0 && x.abs() < 9.0e15 {
                #[allow(clippy::cast_possible_truncation)]
                Ok(x as i64)
            } else {
                Err(data_err(
                    role,
                    path,
                    format!("array '{name}' holds {x}, which is not an integer"),
                ))
            }
        })
        .collect()
}

/// Reads `path` and binds its arrays to `specs` (the model's inputs).
///
/// # Errors
/// [`QuantError::Data`] naming the file and what does not fit: no array for an input,
/// two candidates, a wrong shape or datatype, sample counts that differ, bad labels.
pub fn load_dataset(role: &'static str, path: &Path, specs: &[TensorSpec]) -> Result<Dataset> {
    let arrays = read_arrays(role, path).map_err(|e| match e {
        QuantError::Core(c) => data_err(role, path, c.to_string()),
        other => other,
    })?;
    let reserved = |n: &str| LABEL_KEYS.contains(&n) || n == GROUP_KEY;
    let mut inputs = Vec::new();
    let mut sources = BTreeMap::new();
    let mut taken: Vec<&str> = Vec::new();
    for spec in specs {
        let expected = spec
            .dims
            .as_ref()
            .map_or_else(|| "any shape".to_string(), |d| format_dims(d));
        let chosen = if let Some((n, t)) = arrays.iter().find(|(n, _)| *n == spec.name) {
            if !fits(spec, t) {
                return Err(data_err(
                    role,
                    path,
                    format!(
                        "array '{n}' is {} {} but model input '{}' is {} {expected} (axis 0 is the sample axis)",
                        t.dtype(),
                        format_shape(t.shape()),
                        spec.name,
                        spec.dtype
                    ),
                ));
            }
            (n, t)
        } else {
            let candidates: Vec<&(String, Tensor)> = arrays
                .iter()
                .filter(|(n, t)| !reserved(n) && !taken.contains(&n.as_str()) && fits(spec, t))
                .collect();
            match candidates.as_slice() {
                [one] => (&one.0, &one.1),
                [] => {
                    return Err(data_err(
                        role,
                        path,
                        format!(
                            "no array fits model input '{}' ({} {expected}); arrays: {}. Name an array '{}' with that shape (axis 0 = samples)",
                            spec.name,
                            spec.dtype,
                            describe(&arrays),
                            spec.name
                        ),
                    ));
                }
                many => {
                    let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(data_err(
                        role,
                        path,
                        format!(
                            "arrays {} all fit model input '{}'; name the one to use '{}'",
                            names.join(", "),
                            spec.name,
                            spec.name
                        ),
                    ));
                }
            }
        };
        taken.push(chosen.0.as_str());
        sources.insert(spec.name.clone(), chosen.0.clone());
        let tensor = if spec.dtype == DataType::F32 {
            to_f32(chosen.1.clone())?
        } else {
            chosen.1.clone()
        };
        inputs.push((spec.name.clone(), tensor));
    }
    let samples = inputs
        .first()
        .and_then(|(_, t)| t.shape().first().copied())
        .unwrap_or(0);
    for (name, t) in &inputs {
        if t.shape().first().copied() != Some(samples) {
            return Err(data_err(
                role,
                path,
                format!(
                    "inputs hold different numbers of samples ('{name}' has {}, '{}' has {samples})",
                    t.shape().first().copied().unwrap_or(0),
                    inputs.first().map_or("", |(n, _)| n.as_str())
                ),
            ));
        }
    }
    if samples == 0 {
        return Err(data_err(role, path, "the arrays hold no samples".into()));
    }
    // Batching is along axis 0, so a fixed batch dim must be 1 (one sample per run).
    for spec in specs {
        if let Some(Some(Dim::Fixed(n))) = spec.dims.as_ref().map(|d| d.first())
            && *n != 1
            && *n != samples
        {
            return Err(data_err(
                role,
                path,
                format!(
                    "model input '{}' has a fixed first dim {n}; give exactly {n} samples or export the model with a symbolic batch dim",
                    spec.name
                ),
            ));
        }
    }
    let labels = match arrays
        .iter()
        .find(|(n, _)| LABEL_KEYS.contains(&n.as_str()))
    {
        Some((n, t)) => Some(int_array(role, path, n, t, samples)?),
        None => None,
    };
    let groups = match arrays.iter().find(|(n, _)| n == GROUP_KEY) {
        Some((n, t)) => Some(int_array(role, path, n, t, samples)?),
        None => None,
    };
    Ok(Dataset {
        inputs,
        sources,
        labels,
        groups,
        samples,
    })
}

impl Dataset {
    /// The first `n` samples.
    ///
    /// # Errors
    /// Tensor errors (not expected for well-formed datasets).
    pub fn take(&self, n: usize) -> Result<Dataset> {
        if n >= self.samples {
            return Ok(self.clone());
        }
        let mut inputs = Vec::new();
        for (name, t) in &self.inputs {
            let parts = lrai_core::split(t, &[n, self.samples - n])?;
            let first = parts
                .into_iter()
                .next()
                .ok_or(lrai_core::CoreError::EmptyBatch)?;
            inputs.push((name.clone(), first));
        }
        Ok(Dataset {
            inputs,
            sources: self.sources.clone(),
            labels: self.labels.as_ref().map(|l| l[..n].to_vec()),
            groups: self.groups.as_ref().map(|g| g[..n].to_vec()),
            samples: n,
        })
    }

    /// The samples cut into batches of at most `batch` rows, as named inputs.
    ///
    /// # Errors
    /// Tensor errors (not expected for well-formed datasets).
    pub fn batches(&self, batch: usize, fixed_batch: bool) -> Result<Vec<Vec<(String, Tensor)>>> {
        let batch = if fixed_batch {
            self.samples
        } else {
            batch.max(1)
        };
        let mut rows = Vec::new();
        let mut left = self.samples;
        while left > 0 {
            let n = left.min(batch);
            rows.push(n);
            left -= n;
        }
        let mut out: Vec<Vec<(String, Tensor)>> = vec![Vec::new(); rows.len()];
        for (name, t) in &self.inputs {
            for (i, part) in lrai_core::split(t, &rows)?.into_iter().enumerate() {
                out[i].push((name.clone(), part));
            }
        }
        Ok(out)
    }
}

/// True when some input's first dim is fixed to a value other than 1: such a model
/// takes all samples in one run.
pub(crate) fn has_fixed_batch(specs: &[TensorSpec]) -> bool {
    specs
        .iter()
        .any(|s| matches!(s.dims.as_ref().and_then(|d| d.first()), Some(Dim::Fixed(n)) if *n != 1))
}

/// The batch size to cut data into for a model: 1 when some input's first dim is fixed
/// to 1, else `preferred`.
pub(crate) fn batch_for(specs: &[TensorSpec], preferred: usize) -> usize {
    let fixed_one = specs
        .iter()
        .any(|s| matches!(s.dims.as_ref().and_then(|d| d.first()), Some(Dim::Fixed(1))));
    if fixed_one { 1 } else { preferred.max(1) }
}
