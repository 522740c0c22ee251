//! Auto-complete: the effective configuration from `config.pbtxt` (or none) and the
//! inputs and outputs the ONNX model declares, as Triton's ONNX Runtime backend does it.
//!
//! - When the config lists no inputs or no outputs, the missing side is filled from the
//!   model. If the config leaves `max_batch_size` out and every input and output has a
//!   free first dimension, the model batches: `max_batch_size` becomes the default
//!   (Triton's `--backend-config=default-max-batch-size`, 4), the filled dims leave the
//!   batch axis out, and `dynamic_batching` is turned on when max_batch_size > 1.
//! - When the config lists both, nothing is filled and a missing `max_batch_size` is 0, as
//!   in Triton (its backend skips auto-complete then).
//! - Inputs and outputs the config lists are checked against the model: names, datatypes,
//!   and dims with the implicit batch dimension added when max_batch_size > 0. Unlike
//!   Triton, an explicit `max_batch_size: 0` is kept (Triton cannot tell it from "not
//!   given"), and a configured output dim may narrow a free model dim, as for inputs.

use lrai_core::{Dim, TensorSpec, format_dims};

use super::model::{
    DynamicBatching, InstanceGroup, InstanceKind, ModelConfig, ModelInput, ModelOutput,
    ONNX_BACKEND, ONNX_PLATFORM, TensorRole, format_config_dims,
};
use super::warning::ConfigWarning;
use crate::{RepoError, Result};

/// Triton's default for `--backend-config=default-max-batch-size`.
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 4;

/// Settings for [`complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompleteOptions {
    /// max_batch_size given to a model that can batch when the config does not say
    /// (Triton's `default-max-batch-size`; 0 turns auto-batching off).
    pub default_max_batch_size: u32,
}

impl Default for CompleteOptions {
    fn default() -> CompleteOptions {
        CompleteOptions {
            default_max_batch_size: DEFAULT_MAX_BATCH_SIZE,
        }
    }
}

/// The effective configuration of model `name`, from its parsed config (`None` when
/// there is no `config.pbtxt`) and the tensors the model declares.
///
/// The result has `platform`, `backend` and `max_batch_size` set, every input the model
/// has, at least one instance group (unnamed groups are named `<model>_<index>`, a default
/// group `<model>`), and passes [`ModelConfig::validate`].
///
/// # Errors
/// - [`RepoError::NotInModel`]: the config lists a tensor the model lacks;
/// - [`RepoError::MissingInput`]: the config lists inputs but not this one;
/// - [`RepoError::DataTypeMismatch`]: config and model disagree on a datatype;
/// - [`RepoError::ShapeMismatch`]: config dims (with the implicit batch dimension) do not
///   fit the model's shape;
/// - [`RepoError::NotBatchable`]: max_batch_size > 0 for a model without a free first
///   dimension, when filling from the model;
/// - [`RepoError::UnknownRank`]: a tensor to fill has no declared rank;
/// - [`RepoError::NotInModel`] also for a warm-up input that is not a model input;
/// - any error of [`ModelConfig::validate`] on the result.
pub fn complete(
    config: Option<ModelConfig>,
    name: &str,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    options: &CompleteOptions,
) -> Result<(ModelConfig, Vec<ConfigWarning>)> {
    let mut c = config.unwrap_or_else(|| ModelConfig::named(name));
    if c.name.is_empty() {
        c.name = name.to_string();
    }
    if c.platform.is_empty() {
        c.platform = ONNX_PLATFORM.to_string();
    }
    if c.backend.is_empty() {
        c.backend = ONNX_BACKEND.to_string();
    }
    let fill = c.input.is_empty() || c.output.is_empty();
    let batchable = can_batch(inputs, outputs);
    let mbs = match c.max_batch_size {
        Some(mbs) => mbs,
        None if fill && batchable => options.default_max_batch_size,
        None => 0,
    };
    c.max_batch_size = Some(mbs);
    if fill && mbs > 0 && !batchable {
        return Err(not_batchable(&c.name, mbs, inputs, outputs));
    }
    if fill && mbs > 1 && c.dynamic_batching.is_none() {
        c.dynamic_batching = Some(DynamicBatching::default());
    }
    if c.input.is_empty() {
        c.input = inputs
            .iter()
            .map(|t| {
                let (dims, reshape) = config_dims(&c.name, TensorRole::Input, t, mbs)?;
                let mut input = ModelInput::new(&t.name, t.dtype, dims);
                input.reshape = reshape;
                Ok(input)
            })
            .collect::<Result<_>>()?;
    } else {
        check_inputs(&c, inputs)?;
    }
    if c.output.is_empty() {
        c.output = outputs
            .iter()
            .map(|t| {
                let (dims, reshape) = config_dims(&c.name, TensorRole::Output, t, mbs)?;
                let mut output = ModelOutput::new(&t.name, t.dtype, dims);
                output.reshape = reshape;
                Ok(output)
            })
            .collect::<Result<_>>()?;
    } else {
        check_outputs(&c, outputs)?;
    }
    name_instance_groups(&mut c);
    check_warmup(&c)?;
    c.validate()?;
    let mut warnings = Vec::new();
    if mbs == 0 && c.dynamic_batching.is_some() {
        warnings.push(ConfigWarning::DynamicBatchingWithoutBatching {
            model: c.name.clone(),
        });
    }
    Ok((c, warnings))
}

/// True when the model has inputs and every input and output has a free first dimension.
fn can_batch(inputs: &[TensorSpec], outputs: &[TensorSpec]) -> bool {
    !inputs.is_empty()
        && inputs.iter().chain(outputs).all(|t| {
            t.dims
                .as_deref()
                .and_then(|d| d.first())
                .is_some_and(|d| d.fixed().is_none())
        })
}

fn not_batchable(
    model: &str,
    mbs: u32,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> RepoError {
    let first_fixed = |t: &&TensorSpec| {
        t.dims
            .as_deref()
            .is_none_or(|d| d.first().is_none_or(|d| d.fixed().is_some()))
    };
    let culprit = inputs
        .iter()
        .find(first_fixed)
        .map(|t| (TensorRole::Input, t))
        .or_else(|| {
            outputs
                .iter()
                .find(first_fixed)
                .map(|t| (TensorRole::Output, t))
        });
    match culprit {
        Some((role, t)) => RepoError::NotBatchable {
            model: model.to_string(),
            max_batch_size: mbs,
            role,
            name: t.name.clone(),
            declared: t.dims.clone().unwrap_or_default(),
        },
        // Only a model without inputs gets here.
        None => RepoError::Invalid {
            model: model.to_string(),
            field: "max_batch_size".to_string(),
            value: mbs.to_string(),
            rule: "a model without inputs cannot batch; set max_batch_size: 0".to_string(),
        },
    }
}

/// Config dims for a model tensor: the batch axis dropped when batching, free dims as -1;
/// a scalar becomes dims `[1]` (with an empty reshape when batching), as Triton writes it.
fn config_dims(
    model: &str,
    role: TensorRole,
    t: &TensorSpec,
    mbs: u32,
) -> Result<(Vec<i64>, Option<Vec<i64>>)> {
    let Some(declared) = &t.dims else {
        return Err(RepoError::UnknownRank {
            model: model.to_string(),
            role,
            name: t.name.clone(),
        });
    };
    let skip = usize::from(mbs > 0);
    let dims: Vec<i64> = declared.iter().skip(skip).map(Dim::to_kserve).collect();
    if dims.is_empty() {
        return Ok((vec![1], (mbs > 0).then(Vec::new)));
    }
    Ok((dims, None))
}

fn check_inputs(c: &ModelConfig, declared: &[TensorSpec]) -> Result<()> {
    for input in &c.input {
        let spec = find(c, TensorRole::Input, &input.name, declared)?;
        check_dtype(c, TensorRole::Input, &input.name, input.data_type, spec)?;
        if input.allow_ragged_batch {
            // Ragged inputs are concatenated flat: the model sees one free axis.
            let flat = spec
                .dims
                .as_deref()
                .is_none_or(|d| d.len() == 1 && d.first().is_some_and(|d| d.fixed().is_none()));
            if !flat {
                return Err(shape_error(
                    c,
                    TensorRole::Input,
                    &input.name,
                    &[-1],
                    false,
                    spec,
                ));
            }
            continue;
        }
        let (dims, reshape) = match &input.reshape {
            Some(r) => (r.as_slice(), true),
            None => (input.dims.as_slice(), false),
        };
        check_shape(c, TensorRole::Input, &input.name, dims, reshape, spec)?;
    }
    if let Some(missing) = declared.iter().find(|t| c.input(&t.name).is_none()) {
        return Err(RepoError::MissingInput {
            model: c.name.clone(),
            name: missing.name.clone(),
        });
    }
    Ok(())
}

fn check_outputs(c: &ModelConfig, declared: &[TensorSpec]) -> Result<()> {
    // A config may list a subset of the outputs (as in Triton).
    for output in &c.output {
        let spec = find(c, TensorRole::Output, &output.name, declared)?;
        check_dtype(c, TensorRole::Output, &output.name, output.data_type, spec)?;
        let (dims, reshape) = match &output.reshape {
            Some(r) => (r.as_slice(), true),
            None => (output.dims.as_slice(), false),
        };
        check_shape(c, TensorRole::Output, &output.name, dims, reshape, spec)?;
    }
    Ok(())
}

fn find<'a>(
    c: &ModelConfig,
    role: TensorRole,
    name: &str,
    declared: &'a [TensorSpec],
) -> Result<&'a TensorSpec> {
    declared
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| RepoError::NotInModel {
            model: c.name.clone(),
            role,
            name: name.to_string(),
            declared: declared.iter().map(|t| t.name.clone()).collect(),
        })
}

fn check_dtype(
    c: &ModelConfig,
    role: TensorRole,
    name: &str,
    configured: lrai_core::DataType,
    spec: &TensorSpec,
) -> Result<()> {
    if configured == spec.dtype {
        return Ok(());
    }
    Err(RepoError::DataTypeMismatch {
        model: c.name.clone(),
        role,
        name: name.to_string(),
        configured,
        declared: spec.dtype,
    })
}

fn shape_error(
    c: &ModelConfig,
    role: TensorRole,
    name: &str,
    dims: &[i64],
    reshape: bool,
    spec: &TensorSpec,
) -> RepoError {
    RepoError::ShapeMismatch {
        model: c.name.clone(),
        role,
        name: name.to_string(),
        dims: dims.to_vec(),
        reshape,
        max_batch_size: c.max_batch(),
        declared: spec.dims.clone().unwrap_or_default(),
    }
}

/// Config dims (plus the batch axis when batching) against the model's declared shape: a
/// fixed model dim needs the same size; a free one takes any size or -1.
fn check_shape(
    c: &ModelConfig,
    role: TensorRole,
    name: &str,
    dims: &[i64],
    reshape: bool,
    spec: &TensorSpec,
) -> Result<()> {
    let Some(declared) = spec.dims.as_deref() else {
        return Ok(()); // rank unknown: nothing to check against
    };
    let batching = c.batches();
    if declared.is_empty() && !batching {
        // A scalar: Triton accepts dims of ones ([1]).
        if dims.iter().all(|d| *d == 1) {
            return Ok(());
        }
        return Err(shape_error(c, role, name, dims, reshape, spec));
    }
    if batching && declared.first().is_none_or(|d| d.fixed().is_some()) {
        return Err(RepoError::NotBatchable {
            model: c.name.clone(),
            max_batch_size: c.max_batch(),
            role,
            name: name.to_string(),
            declared: declared.to_vec(),
        });
    }
    if fits(&full_dims(dims, batching), declared) {
        Ok(())
    } else {
        Err(shape_error(c, role, name, dims, reshape, spec))
    }
}

fn full_dims(dims: &[i64], batching: bool) -> Vec<i64> {
    if batching {
        std::iter::once(-1).chain(dims.iter().copied()).collect()
    } else {
        dims.to_vec()
    }
}

fn fits(full: &[i64], declared: &[Dim]) -> bool {
    full.len() == declared.len()
        && full.iter().zip(declared).all(|(c, d)| match d {
            Dim::Fixed(n) => i64::try_from(*n).is_ok_and(|n| n == *c),
            Dim::Symbol(_) | Dim::Any => true,
        })
}

/// The message of [`RepoError::ShapeMismatch`]: what the config dims mean once the
/// implicit batch dimension is added, what the model declares, and the likely fix.
pub(crate) fn shape_mismatch_text(e: &RepoError) -> String {
    let RepoError::ShapeMismatch {
        model,
        role,
        name,
        dims,
        reshape,
        max_batch_size,
        declared,
    } = e
    else {
        return e.to_string();
    };
    let batching = *max_batch_size > 0;
    let full = full_dims(dims, batching);
    let field = if *reshape { "reshape" } else { "dims" };
    let mut text = format!(
        "{role} '{name}' of model '{model}': config {field} {} with max_batch_size \
         {max_batch_size} mean {}; the model declares {}",
        format_config_dims(dims),
        format_config_dims(&full),
        format_dims(declared)
    );
    let free_first = declared.first().is_some_and(|d| d.fixed().is_none());
    let hint = if batching && fits(dims, declared) {
        // The config wrote the batch axis itself.
        let rest = dims.get(1..).unwrap_or_default();
        format!(
            "; leave the batch dimension out of {field} when max_batch_size > 0 \
             ({field}: {} would match)",
            format_config_dims(rest)
        )
    } else if !batching && free_first && fits(&full_dims(dims, true), declared) {
        format!(
            "; the model's first dimension is a batch dimension: set max_batch_size (e.g. 8) \
             so LRAI adds it, or write it in {field}: {}",
            format_config_dims(&full_dims(dims, true))
        )
    } else if full.len() == declared.len() {
        let diffs: Vec<String> = full
            .iter()
            .zip(declared)
            .enumerate()
            .filter(|(_, (c, d))| !fits(&[**c], std::slice::from_ref(*d)))
            .map(|(axis, (c, d))| format!("dimension {axis}: config {c}, model {d}"))
            .collect();
        format!("; {}", diffs.join(", "))
    } else {
        format!("; the ranks differ ({} vs {})", full.len(), declared.len())
    };
    text.push_str(&hint);
    text
}

fn name_instance_groups(c: &mut ModelConfig) {
    if c.instance_group.is_empty() {
        let mut group = InstanceGroup::new(InstanceKind::Auto);
        group.name.clone_from(&c.name);
        c.instance_group.push(group);
        return;
    }
    for (index, group) in c.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = format!("{}_{index}", c.name);
        }
    }
}

fn check_warmup(c: &ModelConfig) -> Result<()> {
    for w in &c.model_warmup {
        if let Some(name) = w.inputs.keys().find(|n| c.input(n).is_none()) {
            return Err(RepoError::NotInModel {
                model: c.name.clone(),
                role: TensorRole::Input,
                name: name.clone(),
                declared: c.input.iter().map(|i| i.name.clone()).collect(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrai_core::DataType;

    fn spec(name: &str, dims: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: DataType::F32,
            dims: Some(dims),
        }
    }

    fn batch() -> Dim {
        Dim::Symbol("batch".into())
    }

    #[test]
    fn hint_for_batch_dim_written_into_dims() {
        let e = RepoError::ShapeMismatch {
            model: "m".into(),
            role: TensorRole::Input,
            name: "x".into(),
            dims: vec![-1, 64],
            reshape: false,
            max_batch_size: 8,
            declared: vec![batch(), Dim::Fixed(64)],
        };
        assert_eq!(
            e.to_string(),
            "input 'x' of model 'm': config dims [-1,64] with max_batch_size 8 mean [-1,-1,64]; \
             the model declares [batch,64]; leave the batch dimension out of dims when \
             max_batch_size > 0 (dims: [64] would match)"
        );
    }

    #[test]
    fn hint_for_missing_max_batch_size() {
        let c = ModelConfig {
            input: vec![ModelInput::new("x", DataType::F32, vec![64])],
            output: vec![ModelOutput::new("y", DataType::F32, vec![10])],
            ..ModelConfig::named("m")
        };
        let err = complete(
            Some(c),
            "m",
            &[spec("x", vec![batch(), Dim::Fixed(64)])],
            &[spec("y", vec![batch(), Dim::Fixed(10)])],
            &CompleteOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'x' of model 'm': config dims [64] with max_batch_size 0 mean [64]; the model \
             declares [batch,64]; the model's first dimension is a batch dimension: set \
             max_batch_size (e.g. 8) so LRAI adds it, or write it in dims: [-1,64]"
        );
    }

    #[test]
    fn scalar_tensors_become_dims_one() {
        let (c, _) = complete(
            None,
            "m",
            &[spec("x", vec![batch()])],
            &[spec("y", vec![batch()])],
            &CompleteOptions::default(),
        )
        .unwrap();
        assert_eq!(c.input[0].dims, vec![1]);
        assert_eq!(c.input[0].reshape, Some(vec![]));
        let (c, _) = complete(
            None,
            "m",
            &[spec("x", vec![])],
            &[spec("y", vec![])],
            &CompleteOptions::default(),
        )
        .unwrap();
        assert_eq!(c.max_batch_size, Some(0));
        assert_eq!(
            (c.input[0].dims.clone(), c.input[0].reshape.clone()),
            (vec![1], None)
        );
    }
}
