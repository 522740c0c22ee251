//! Triton's validation rules for a model configuration, with errors that name the field,
//! the value and the rule (`model 'm': max_batch_size = -1: must be >= 0`).
//!
//! Rules that depend on `max_batch_size` are checked only once it is known: always for a
//! completed configuration, and for a parsed one only when the file gives it (otherwise
//! auto-complete may still set it).

use std::collections::BTreeSet;

use super::model::{
    DynamicBatching, ENSEMBLE_PLATFORM, InputFormat, InstanceKind, ModelConfig, ONNX_BACKEND,
    ONNX_PLATFORM, TensorRole, TimeoutAction, VersionPolicy, format_config_dims,
};
use super::read::label;
use super::warning::lrai_parameter;
use crate::{RepoError, Result};

/// The tensor fields the shape rules look at, for inputs and outputs alike.
struct TensorFields<'a> {
    role: TensorRole,
    index: usize,
    name: &'a str,
    dims: &'a [i64],
    reshape: Option<&'a [i64]>,
    is_shape_tensor: bool,
}

impl ModelConfig {
    /// Checks the configuration against Triton's rules.
    ///
    /// # Errors
    /// - [`RepoError::MissingField`]: no name, or an input/output without name or dims;
    /// - [`RepoError::UnsupportedPlatform`]: a platform or backend other than ONNX;
    /// - [`RepoError::DuplicateTensor`]: two inputs (or outputs) with one name;
    /// - [`RepoError::InvalidParameter`]: a known `lrai.*` parameter with an unknown value;
    /// - [`RepoError::Invalid`] for everything else: max_batch_size above int32, dims or
    ///   reshape entries below -1 or 0, a reshape with another element count, an empty
    ///   reshape without batching, NHWC/NCHW without 3 dims, shape tensors, a version policy
    ///   that selects nothing, preferred_batch_size above max_batch_size (or with
    ///   max_batch_size 0), priority levels out of range, preserve_ordering with several
    ///   priority levels or a DELAY timeout, instance count < 1, GPUs on a CPU or MODEL
    ///   group, and warm-up batch sizes or dims out of range.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(self.missing("name"));
        }
        self.validate_platform()?;
        if let Some(mbs) = self.max_batch_size
            && i32::try_from(mbs).is_err()
        {
            return Err(self.invalid("max_batch_size", &mbs, "must be <= 2147483647 (int32)"));
        }
        self.validate_tensors()?;
        self.validate_version_policy()?;
        if let Some(db) = &self.dynamic_batching {
            self.validate_dynamic_batching(db)?;
        }
        self.validate_instance_groups()?;
        self.validate_parameters()?;
        self.validate_warmup()
    }

    fn invalid(
        &self,
        field: impl Into<String>,
        value: &dyn std::fmt::Display,
        rule: &str,
    ) -> RepoError {
        RepoError::Invalid {
            model: self.name.clone(),
            field: field.into(),
            value: value.to_string(),
            rule: rule.to_string(),
        }
    }

    fn missing(&self, field: impl Into<String>) -> RepoError {
        RepoError::MissingField {
            model: self.name.clone(),
            field: field.into(),
        }
    }

    fn validate_platform(&self) -> Result<()> {
        if self.platform == ENSEMBLE_PLATFORM || self.ensemble_scheduling.is_some() {
            return self.validate_ensemble();
        }
        let platform_ok = self.platform.is_empty() || self.platform == ONNX_PLATFORM;
        let backend_ok = self.backend.is_empty() || self.backend == ONNX_BACKEND;
        if platform_ok && backend_ok {
            return Ok(());
        }
        Err(RepoError::UnsupportedPlatform {
            model: self.name.clone(),
            platform: self.platform.clone(),
            backend: self.backend.clone(),
        })
    }

    /// Triton's rules for ensembles (`ValidateEnsembleSchedulingConfig`), then the DAG.
    fn validate_ensemble(&self) -> Result<()> {
        let ensemble_err = |reason: &str| RepoError::Ensemble {
            ensemble: self.name.clone(),
            reason: reason.to_string(),
        };
        if self.platform != ENSEMBLE_PLATFORM {
            return Err(ensemble_err(&format!(
                "ensemble_scheduling is set but platform is \"{}\"; set platform: \"ensemble\"",
                self.platform
            )));
        }
        if !self.backend.is_empty() {
            return Err(ensemble_err(&format!(
                "backend \"{}\" is set; an ensemble has no backend, remove it",
                self.backend
            )));
        }
        if !self.instance_group.is_empty() {
            return Err(ensemble_err(
                "instance_group is set; an ensemble has no instances (its steps' models do), remove it",
            ));
        }
        if !self.model_warmup.is_empty() {
            return Err(ensemble_err(
                "model_warmup is set; warm up the step models instead, remove it",
            ));
        }
        crate::ensemble::plan::Plan::build(self)
            .map(|_| ())
            .map_err(|reason| ensemble_err(&reason))
    }

    fn validate_tensors(&self) -> Result<()> {
        let inputs = self
            .input
            .iter()
            .enumerate()
            .map(|(index, i)| TensorFields {
                role: TensorRole::Input,
                index,
                name: &i.name,
                dims: &i.dims,
                reshape: i.reshape.as_deref(),
                is_shape_tensor: i.is_shape_tensor,
            });
        let outputs = self
            .output
            .iter()
            .enumerate()
            .map(|(index, o)| TensorFields {
                role: TensorRole::Output,
                index,
                name: &o.name,
                dims: &o.dims,
                reshape: o.reshape.as_deref(),
                is_shape_tensor: o.is_shape_tensor,
            });
        let mut names = BTreeSet::new();
        for t in inputs.chain(outputs) {
            if !names.insert((t.role == TensorRole::Input, t.name)) {
                return Err(RepoError::DuplicateTensor {
                    model: self.name.clone(),
                    role: t.role,
                    name: t.name.to_string(),
                });
            }
            self.validate_tensor(&t)?;
        }
        for (index, i) in self.input.iter().enumerate() {
            let nchw = matches!(i.format, InputFormat::Nhwc | InputFormat::Nchw);
            if nchw && i.dims.len() != 3 {
                return Err(self.invalid(
                    label(&format!("input[{index}]"), &i.name, "dims"),
                    &format_config_dims(&i.dims),
                    &format!("{} needs exactly 3 dims", i.format.as_config()),
                ));
            }
        }
        Ok(())
    }

    fn validate_tensor(&self, t: &TensorFields<'_>) -> Result<()> {
        let prefix = format!("{}[{}]", t.role, t.index);
        if t.name.is_empty() {
            return Err(self.missing(format!("{prefix}.name")));
        }
        let field = |f: &str| label(&prefix, t.name, f);
        if t.dims.is_empty() {
            return Err(self.missing(field("dims")));
        }
        const DIM_RULE: &str = "each dimension must be >= 1, or -1 for a variable size";
        if t.dims.iter().any(|d| *d < 1 && *d != -1) {
            return Err(self.invalid(field("dims"), &format_config_dims(t.dims), DIM_RULE));
        }
        if t.is_shape_tensor {
            return Err(self.invalid(
                field("is_shape_tensor"),
                &true,
                "shape tensors exist only in TensorRT models; ONNX tensors cannot be shape tensors",
            ));
        }
        let Some(reshape) = t.reshape else {
            return Ok(());
        };
        if reshape.iter().any(|d| *d < 1 && *d != -1) {
            return Err(self.invalid(field("reshape"), &format_config_dims(reshape), DIM_RULE));
        }
        if reshape.is_empty() && self.max_batch_size == Some(0) {
            return Err(self.invalid(
                field("reshape"),
                &"[]",
                "cannot have empty reshape for non-batching model as scalar tensors are not \
                 supported (Triton's rule): for a scalar, leave reshape out and give dims [1], \
                 or set max_batch_size > 0",
            ));
        }
        if let Some(rule) = reshape_rule(t.dims, reshape) {
            return Err(self.invalid(field("reshape"), &format_config_dims(reshape), &rule));
        }
        Ok(())
    }

    fn validate_version_policy(&self) -> Result<()> {
        match &self.version_policy {
            VersionPolicy::Latest { num_versions } if *num_versions < 1 => Err(self.invalid(
                "version_policy.latest.num_versions",
                &num_versions,
                "must be >= 1",
            )),
            VersionPolicy::Specific { versions } if versions.is_empty() => Err(self.invalid(
                "version_policy.specific.versions",
                &"[]",
                "must list at least one version",
            )),
            VersionPolicy::Specific { versions } if versions.iter().any(|v| *v < 0) => Err(self
                .invalid(
                    "version_policy.specific.versions",
                    &format_config_dims(versions),
                    "versions are >= 0 (the names of the version directories)",
                )),
            VersionPolicy::Latest { .. } | VersionPolicy::All | VersionPolicy::Specific { .. } => {
                Ok(())
            }
        }
    }

    fn validate_dynamic_batching(&self, db: &DynamicBatching) -> Result<()> {
        const PREFERRED: &str = "dynamic_batching.preferred_batch_size";
        let preferred = || {
            let v: Vec<i64> = db
                .preferred_batch_size
                .iter()
                .map(|s| i64::from(*s))
                .collect();
            format_config_dims(&v)
        };
        if db.preferred_batch_size.contains(&0) {
            return Err(self.invalid(PREFERRED, &preferred(), "each size must be >= 1"));
        }
        match self.max_batch_size {
            Some(0) if !db.preferred_batch_size.is_empty() => {
                return Err(self.invalid(
                    PREFERRED,
                    &preferred(),
                    "preferred batch sizes need max_batch_size > 0; this model does not batch",
                ));
            }
            Some(mbs) if db.preferred_batch_size.iter().any(|s| *s > mbs) => {
                return Err(self.invalid(
                    PREFERRED,
                    &preferred(),
                    &format!("each size must be <= max_batch_size {mbs}"),
                ));
            }
            _ => {}
        }
        let levels = db.priority_levels;
        let default_level = db.default_priority_level;
        if levels == 0 && default_level != 0 {
            return Err(self.invalid(
                "dynamic_batching.default_priority_level",
                &default_level,
                "must be <= priority_levels 0: set priority_levels to use priorities",
            ));
        }
        if levels > 0 && !(1..=levels).contains(&default_level) {
            return Err(self.invalid(
                "dynamic_batching.default_priority_level",
                &default_level,
                &format!("must be in 1..={levels} (priority_levels {levels}; 1 is highest)"),
            ));
        }
        if let Some(level) = db
            .priority_queue_policy
            .keys()
            .find(|l| !(1..=levels).contains(*l))
        {
            return Err(self.invalid(
                "dynamic_batching.priority_queue_policy key",
                &level,
                &format!("priority levels are 1..={levels} (priority_levels {levels})"),
            ));
        }
        if db.preserve_ordering {
            if levels > 1 {
                return Err(self.invalid(
                    "dynamic_batching.priority_levels",
                    &levels,
                    "preserve_ordering allows at most one priority level",
                ));
            }
            let delays = db
                .default_queue_policy
                .iter()
                .chain(db.priority_queue_policy.values())
                .any(|p| {
                    p.timeout_action == TimeoutAction::Delay && p.default_timeout_microseconds > 0
                });
            if delays {
                return Err(self.invalid(
                    "dynamic_batching queue policy timeout_action",
                    &"DELAY",
                    "preserve_ordering cannot keep order when timed-out requests are delayed; \
                     use REJECT",
                ));
            }
        }
        Ok(())
    }

    fn validate_instance_groups(&self) -> Result<()> {
        for (index, g) in self.instance_group.iter().enumerate() {
            let prefix = format!("instance_group[{index}]");
            if g.count < 1 {
                return Err(self.invalid(
                    label(&prefix, &g.name, "count"),
                    &g.count,
                    "an instance group needs count >= 1",
                ));
            }
            if matches!(g.kind, InstanceKind::Cpu | InstanceKind::Model) && !g.gpus.is_empty() {
                let gpus: Vec<i64> = g.gpus.iter().map(|g| i64::from(*g)).collect();
                return Err(self.invalid(
                    label(&prefix, &g.name, "gpus"),
                    &format_config_dims(&gpus),
                    &format!("a {} group cannot list GPUs", g.kind.as_config()),
                ));
            }
            if let Some(gpu) = g.gpus.iter().find(|g| **g < 0) {
                return Err(self.invalid(
                    label(&prefix, &g.name, "gpus"),
                    &gpu,
                    "GPU ids are >= 0",
                ));
            }
        }
        Ok(())
    }

    fn validate_parameters(&self) -> Result<()> {
        for key in ["lrai.slo_p95_ms", "lrai.adaptive_max_delay_ms"] {
            if let Some(v) = self.parameters.get(key)
                && v.trim()
                    .parse::<f64>()
                    .map_or(true, |x| !x.is_finite() || x <= 0.0 || x > 3.6e6)
            {
                return Err(self.invalid(
                    format!("parameters[{key}]"),
                    v,
                    "must be a positive number of milliseconds (at most one hour)",
                ));
            }
        }
        if let Some(v) = self.parameters.get("lrai.quantize_max_drop")
            && v.trim()
                .parse::<f64>()
                .map_or(true, |x| !x.is_finite() || !(0.0..=1.0).contains(&x))
        {
            return Err(self.invalid(
                "parameters[lrai.quantize_max_drop]",
                v,
                "must be a number from 0 to 1, such as 0.01",
            ));
        }
        if let Some(v) = self.parameters.get("lrai.pad_buckets") {
            let axis = self
                .parameters
                .get("lrai.pad_axis")
                .map_or(Some(1), |a| a.trim().parse::<usize>().ok());
            if axis.is_none_or(|a| lrai_sched::Padding::parse(a, v).is_none()) {
                return Err(self.invalid(
                    "parameters[lrai.pad_buckets]",
                    v,
                    "must be a comma-separated list of positive lengths, with lrai.pad_axis a positive axis",
                ));
            }
        }
        for (key, value) in &self.parameters {
            if let Some(p) = lrai_parameter(key)
                && !p.values.is_empty()
                && !p.values.contains(&value.as_str())
            {
                return Err(RepoError::InvalidParameter {
                    model: self.name.clone(),
                    key: key.clone(),
                    value: value.clone(),
                    allowed: p.values,
                });
            }
        }
        Ok(())
    }

    fn validate_warmup(&self) -> Result<()> {
        for (index, w) in self.model_warmup.iter().enumerate() {
            let prefix = format!("model_warmup[{index}]");
            let field = |f: &str| label(&prefix, &w.name, f);
            if w.batch_size < 1 {
                return Err(self.invalid(field("batch_size"), &w.batch_size, "must be >= 1"));
            }
            if let Some(mbs) = self.max_batch_size
                && w.batch_size > mbs.max(1)
            {
                return Err(self.invalid(
                    field("batch_size"),
                    &w.batch_size,
                    &format!("must be <= max_batch_size {mbs} (1 for a model that does not batch)"),
                ));
            }
            for (name, input) in &w.inputs {
                if name.is_empty() {
                    return Err(self.missing(field("inputs key")));
                }
                if input.dims.iter().any(|d| *d < 1) {
                    return Err(self.invalid(
                        field(&format!("inputs '{name}' dims")),
                        &format_config_dims(&input.dims),
                        "warm-up dims are concrete sizes >= 1",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Triton's reshape rule (`ValidateIOShape` in Triton core's `model_config_utils.cc`):
/// dims and reshape hold the same element count, an empty reshape (a scalar) needs dims
/// holding one element, and with variable sizes both split at their -1s into as many
/// parts, of equal element counts (so `[2,4,-1,6]` fits `[8,-1,1,6]`). The broken rule in
/// Triton's words, then what LRAI saw; `None` when the reshape fits.
fn reshape_rule(dims: &[i64], reshape: &[i64]) -> Option<String> {
    /// Element counts between the -1s (`None` on overflow).
    fn parts(shape: &[i64]) -> Option<Vec<i64>> {
        let mut out = vec![1i64];
        for d in shape {
            if *d == -1 {
                out.push(1);
            } else if let Some(last) = out.last_mut() {
                *last = last.checked_mul(*d)?;
            }
        }
        Some(out)
    }
    let text = |parts: &[i64]| {
        let p: Vec<String> = parts.iter().map(ToString::to_string).collect();
        p.join(", ")
    };
    const SIZE: &str = "has different size for dims and reshape";
    let (Some(a), Some(b)) = (parts(dims), parts(reshape)) else {
        return Some(format!("{SIZE}: the element count overflows int64"));
    };
    if reshape.is_empty() {
        return (a != [1]).then(|| {
            format!(
                "{SIZE}: an empty reshape (a scalar) needs dims holding one element, such as \
                 [1]; dims {} do not",
                format_config_dims(dims)
            )
        });
    }
    if a.len() != b.len() {
        // Triton compares the totals first: only with -1 on both sides are the parts counted.
        let variable = |n: usize| if n == 1 { "none" } else { "some" };
        if a.len() == 1 || b.len() == 1 {
            return Some(format!(
                "{SIZE}: dims {} have {} variable-size dimensions, reshape {}",
                format_config_dims(dims),
                variable(a.len()),
                variable(b.len())
            ));
        }
        return Some(format!(
            "has different number of variable-size dimensions for dims and reshape: dims {} \
             have {}, reshape {}",
            format_config_dims(dims),
            a.len() - 1,
            b.len() - 1
        ));
    }
    (a != b).then(|| {
        if a.len() == 1 {
            format!(
                "{SIZE}: dims {} hold {} elements, reshape {}",
                format_config_dims(dims),
                text(&a),
                text(&b)
            )
        } else {
            format!(
                "{SIZE}: between their -1s, dims {} hold {} elements, reshape {}",
                format_config_dims(dims),
                text(&a),
                text(&b)
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_rule_matches_triton() {
        let fits = |d: &[i64], r: &[i64]| reshape_rule(d, r).is_none();
        assert!(fits(&[2, 4, -1, 6], &[8, -1, 1, 6]));
        assert!(fits(&[1], &[]));
        assert!(fits(&[1, 1], &[]));
        assert!(fits(&[64], &[1, 8, 8]));
        assert!(fits(&[-1, 3, -1], &[1, -1, 3, -1]));
        assert!(!fits(&[-1, 3, -1], &[-1, -1, 3]));
        assert!(!fits(&[64], &[1, 8, 9]));
        assert!(!fits(&[-1, 64], &[64]));
        assert!(!fits(&[2], &[]));
        assert!(!fits(&[-1], &[]));
        assert!(!fits(&[i64::MAX, 4], &[4, i64::MAX]));
        assert_eq!(
            reshape_rule(&[-1, 2, -1], &[-1, 2]).unwrap(),
            "has different number of variable-size dimensions for dims and reshape: dims \
             [-1,2,-1] have 2, reshape 1"
        );
        assert_eq!(
            reshape_rule(&[2, -1, 6], &[3, -1, 4]).unwrap(),
            "has different size for dims and reshape: between their -1s, dims [2,-1,6] hold \
             2, 6 elements, reshape 3, 4"
        );
    }
}
