//! The ensemble checked against its step models' effective configurations, when it loads
//! (Triton's `ValidateEnsembleConfig`): each step's maps name real inputs and outputs,
//! every required step input is mapped, batch sizes fit, and every ensemble tensor has one
//! datatype and compatible shapes wherever it appears. Shapes compare as Triton does: equal
//! with -1 matching anything, either as written or with the batch dimension added, so a
//! batching model and a non-batching one can share `[-1, 4]`.

use std::collections::BTreeMap;

use lrai_core::DataType;

use super::plan::Plan;
use crate::config::{ModelConfig, datatype_to_config, format_config_dims};

/// One appearance of an ensemble tensor.
struct Use {
    /// `ensemble input 'RAW'`, `step 1 (model 'clf') output 'y'`.
    place: String,
    dtype: DataType,
    dims: Vec<i64>,
    /// With the batch dimension (-1) first when that model batches.
    full: Vec<i64>,
}

impl Use {
    fn new(place: String, dtype: DataType, dims: &[i64], batching: bool) -> Use {
        let mut full = Vec::with_capacity(dims.len() + 1);
        if batching {
            full.push(-1);
        }
        full.extend_from_slice(dims);
        Use {
            place,
            dtype,
            dims: dims.to_vec(),
            full,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} is {} {}",
            self.place,
            datatype_to_config(self.dtype),
            format_config_dims(&self.full)
        )
    }
}

fn dims_fit(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || *x < 0 || *y < 0)
}

/// Checks `plan` of `ensemble` against `steps`, the effective config of each step's model
/// (same order as the plan's steps).
///
/// # Errors
/// A message naming the step, the model and the tensor that don't fit.
pub(crate) fn check_steps(
    ensemble: &ModelConfig,
    plan: &Plan,
    steps: &[&ModelConfig],
) -> Result<(), String> {
    let batching = ensemble.max_batch() > 0;
    let mut uses: BTreeMap<&str, Vec<Use>> = BTreeMap::new();
    for i in &ensemble.input {
        let dims = i.reshape.as_deref().unwrap_or(&i.dims);
        let place = format!("ensemble input '{}'", i.name);
        uses.entry(&i.name)
            .or_default()
            .push(Use::new(place, i.data_type, dims, batching));
    }
    for o in &ensemble.output {
        let dims = o.reshape.as_deref().unwrap_or(&o.dims);
        let place = format!("ensemble output '{}'", o.name);
        uses.entry(&o.name)
            .or_default()
            .push(Use::new(place, o.data_type, dims, batching));
    }
    for (index, (step, model)) in plan.steps.iter().zip(steps).enumerate() {
        let label = step.label(index);
        let mbs = model.max_batch();
        if mbs != 0 && mbs < ensemble.max_batch() {
            return Err(format!(
                "max_batch_size {} is larger than {label} allows ({mbs}); lower the \
                 ensemble's max_batch_size",
                ensemble.max_batch()
            ));
        }
        let step_batching = mbs > 0;
        for (input, tensor) in &step.inputs {
            let Some(spec) = model.input(input) else {
                return Err(format!(
                    "{label} has no input '{input}' (its inputs: {}); fix input_map",
                    names(model.input.iter().map(|i| i.name.as_str()))
                ));
            };
            let place = format!("{label} input '{input}'");
            uses.entry(tensor).or_default().push(Use::new(
                place,
                spec.data_type,
                &spec.dims,
                step_batching,
            ));
        }
        for spec in &model.input {
            if !spec.optional && !step.inputs.iter().any(|(i, _)| *i == spec.name) {
                return Err(format!(
                    "{label} input '{}' is not mapped; add it to the step's input_map",
                    spec.name
                ));
            }
        }
        for (output, tensor) in &step.outputs {
            let Some(spec) = model.output(output) else {
                return Err(format!(
                    "{label} has no output '{output}' (its outputs: {}); fix output_map",
                    names(model.output.iter().map(|o| o.name.as_str()))
                ));
            };
            let place = format!("{label} output '{output}'");
            uses.entry(tensor).or_default().push(Use::new(
                place,
                spec.data_type,
                &spec.dims,
                step_batching,
            ));
        }
    }
    for (tensor, list) in &uses {
        check_consistent(tensor, list)?;
    }
    Ok(())
}

fn check_consistent(tensor: &str, uses: &[Use]) -> Result<(), String> {
    let Some((first, rest)) = uses.split_first() else {
        return Ok(());
    };
    for other in rest {
        if other.dtype != first.dtype {
            return Err(format!(
                "ensemble tensor '{tensor}' has two datatypes: {}, but {}",
                first.describe(),
                other.describe()
            ));
        }
        if !dims_fit(&first.dims, &other.dims) && !dims_fit(&first.full, &other.full) {
            return Err(format!(
                "ensemble tensor '{tensor}' has incompatible shapes: {}, but {}",
                first.describe(),
                other.describe()
            ));
        }
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelInput, ModelOutput};

    fn model(
        name: &str,
        mbs: u32,
        input: (&str, DataType, &[i64]),
        output: (&str, DataType, &[i64]),
    ) -> ModelConfig {
        ModelConfig {
            max_batch_size: Some(mbs),
            input: vec![ModelInput::new(input.0, input.1, input.2.to_vec())],
            output: vec![ModelOutput::new(output.0, output.1, output.2.to_vec())],
            ..ModelConfig::named(name)
        }
    }

    const ENSEMBLE: &str = r#"
name: "ens"
platform: "ensemble"
max_batch_size: 4
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "PROBS" data_type: TYPE_FP32 dims: [ 3 ] } ]
ensemble_scheduling { step [
  { model_name: "pre" model_version: -1
    input_map { key: "x" value: "RAW" } output_map { key: "y" value: "FEAT" } },
  { model_name: "clf" model_version: -1
    input_map { key: "x" value: "FEAT" } output_map { key: "y" value: "PROBS" } }
] }
"#;

    fn run(pre: &ModelConfig, clf: &ModelConfig) -> Result<(), String> {
        let (config, _) = ModelConfig::from_text(ENSEMBLE, "ens").unwrap();
        let plan = Plan::build(&config).unwrap();
        check_steps(&config, &plan, &[pre, clf])
    }

    fn good() -> (ModelConfig, ModelConfig) {
        (
            model(
                "pre",
                8,
                ("x", DataType::F32, &[4]),
                ("y", DataType::F32, &[-1]),
            ),
            model(
                "clf",
                8,
                ("x", DataType::F32, &[4]),
                ("y", DataType::F32, &[3]),
            ),
        )
    }

    #[test]
    fn accepts_fitting_steps() {
        let (pre, clf) = good();
        run(&pre, &clf).unwrap();
    }

    #[test]
    fn accepts_a_non_batching_step_with_the_batch_in_its_dims() {
        let (pre, _) = good();
        let clf = model(
            "clf",
            0,
            ("x", DataType::F32, &[-1, 4]),
            ("y", DataType::F32, &[-1, 3]),
        );
        run(&pre, &clf).unwrap();
    }

    #[test]
    fn rejects_mismatched_datatypes_naming_both_ends() {
        let (pre, _) = good();
        let clf = model(
            "clf",
            8,
            ("x", DataType::I64, &[4]),
            ("y", DataType::F32, &[3]),
        );
        let e = run(&pre, &clf).unwrap_err();
        assert!(
            e.contains("ensemble tensor 'FEAT' has two datatypes"),
            "{e}"
        );
        assert!(
            e.contains("step 0 (model 'pre') output 'y' is TYPE_FP32"),
            "{e}"
        );
        assert!(
            e.contains("step 1 (model 'clf') input 'x' is TYPE_INT64"),
            "{e}"
        );
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let (pre, _) = good();
        let clf = model(
            "clf",
            8,
            ("x", DataType::F32, &[5, 2]),
            ("y", DataType::F32, &[3]),
        );
        let e = run(&pre, &clf).unwrap_err();
        assert!(e.contains("'FEAT' has incompatible shapes"), "{e}");
        let (pre, _) = good();
        let clf = model(
            "clf",
            8,
            ("x", DataType::F32, &[4]),
            ("y", DataType::F32, &[7]),
        );
        let e = run(&pre, &clf).unwrap_err();
        assert!(e.contains("'PROBS' has incompatible shapes"), "{e}");
        assert!(
            e.contains("ensemble output 'PROBS' is TYPE_FP32 [-1,3]"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_and_unmapped_step_tensors() {
        let (pre, _) = good();
        let clf = model(
            "clf",
            8,
            ("input", DataType::F32, &[4]),
            ("y", DataType::F32, &[3]),
        );
        let e = run(&pre, &clf).unwrap_err();
        assert!(
            e.contains("step 1 (model 'clf') has no input 'x' (its inputs: input)"),
            "{e}"
        );
        let (pre, mut clf) = good();
        clf.input
            .push(ModelInput::new("mask", DataType::F32, vec![4]));
        let e = run(&pre, &clf).unwrap_err();
        assert!(
            e.contains("step 1 (model 'clf') input 'mask' is not mapped"),
            "{e}"
        );
        clf.input[1].optional = true;
        run(&pre, &clf).unwrap();
        let (pre, mut clf) = good();
        clf.output[0].name = "logits".into();
        let e = run(&pre, &clf).unwrap_err();
        assert!(e.contains("has no output 'y' (its outputs: logits)"), "{e}");
    }

    #[test]
    fn rejects_a_step_that_batches_less_than_the_ensemble() {
        let (pre, mut clf) = good();
        clf.max_batch_size = Some(2);
        let e = run(&pre, &clf).unwrap_err();
        assert!(
            e.contains("larger than step 1 (model 'clf') allows (2)"),
            "{e}"
        );
    }
}
