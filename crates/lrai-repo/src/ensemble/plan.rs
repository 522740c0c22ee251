//! The ensemble's DAG, built from its configuration alone and checked as Triton checks
//! `ensemble_scheduling` (`ValidateEnsembleSchedulingConfig` in triton-inference-server
//! core): every step names a model and maps inputs and outputs, each ensemble tensor has
//! one producer, every step input comes from an ensemble input or another step, the steps
//! form no cycle, every ensemble input is used, every ensemble output is produced, and no
//! step output is left unused.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::ModelConfig;

/// One step, resolved to the steps it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepPlan {
    /// The step model.
    pub(crate) model: String,
    /// The version to run; `None` for -1, the version unversioned requests get.
    pub(crate) version: Option<u64>,
    /// (step model input, ensemble tensor).
    pub(crate) inputs: Vec<(String, String)>,
    /// (step model output, ensemble tensor).
    pub(crate) outputs: Vec<(String, String)>,
    /// Steps that produce this step's inputs.
    pub(crate) after: BTreeSet<usize>,
}

impl StepPlan {
    /// `step 1 (model 'clf')`, for messages.
    pub(crate) fn label(&self, index: usize) -> String {
        format!("step {index} (model '{}')", self.model)
    }
}

/// The checked DAG of an ensemble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Steps in config order; indices are the config's.
    pub(crate) steps: Vec<StepPlan>,
    /// For each step, the steps that wait for it.
    pub(crate) next: Vec<BTreeSet<usize>>,
}

/// Where an ensemble tensor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Input,
    Step(usize),
}

impl Plan {
    /// Builds and checks the DAG of `config`'s `ensemble_scheduling`.
    ///
    /// # Errors
    /// A message naming the step, the model and the tensor that break a rule.
    pub(crate) fn build(config: &ModelConfig) -> Result<Plan, String> {
        let Some(sched) = &config.ensemble_scheduling else {
            return Err(
                "platform \"ensemble\" needs an ensemble_scheduling { step [...] } block".into(),
            );
        };
        if sched.step.is_empty() {
            return Err("ensemble_scheduling has no step; give at least one".into());
        }
        let mut steps = Vec::with_capacity(sched.step.len());
        for (i, s) in sched.step.iter().enumerate() {
            steps.push(step_plan(config, i, s)?);
        }
        let sources = sources(config, &steps)?;
        for (i, step) in steps.iter_mut().enumerate() {
            for (input, tensor) in &step.inputs {
                match sources.get(tensor.as_str()) {
                    Some(Source::Step(p)) => {
                        step.after.insert(*p);
                    }
                    Some(Source::Input) => {}
                    None => {
                        return Err(format!(
                            "step {i} (model '{}') input '{input}' takes ensemble tensor \
                             '{tensor}', which is neither an ensemble input nor any step's \
                             output; map it in some step's output_map or declare it as an input",
                            step.model
                        ));
                    }
                }
            }
        }
        let mut next = vec![BTreeSet::new(); steps.len()];
        for (i, s) in steps.iter().enumerate() {
            for &p in &s.after {
                next[p].insert(i);
            }
        }
        let plan = Plan { steps, next };
        plan.check_acyclic()?;
        plan.check_uses(config, &sources)?;
        Ok(plan)
    }

    /// Steps in an order where every step comes after the steps it waits for.
    pub(crate) fn order(&self) -> Vec<usize> {
        let mut waiting: Vec<usize> = self.steps.iter().map(|s| s.after.len()).collect();
        let mut ready: Vec<usize> = (0..self.steps.len()).filter(|&i| waiting[i] == 0).collect();
        let mut out = Vec::with_capacity(self.steps.len());
        while let Some(i) = ready.pop() {
            out.push(i);
            for &n in &self.next[i] {
                waiting[n] -= 1;
                if waiting[n] == 0 {
                    ready.push(n);
                }
            }
        }
        out
    }

    fn check_acyclic(&self) -> Result<(), String> {
        let ordered = self.order();
        if ordered.len() == self.steps.len() {
            return Ok(());
        }
        let left: BTreeSet<usize> = (0..self.steps.len())
            .filter(|i| !ordered.contains(i))
            .collect();
        // Walk back through producers that are also stuck until a step repeats.
        let mut path = Vec::new();
        let mut at = left.first().copied().unwrap_or(0);
        while !path.contains(&at) {
            path.push(at);
            at = self.steps[at]
                .after
                .iter()
                .copied()
                .find(|p| left.contains(p))
                .unwrap_or(at);
        }
        let start = path.iter().position(|&p| p == at).unwrap_or(0);
        let mut cycle: Vec<String> = path[start..]
            .iter()
            .rev()
            .map(|&i| self.steps[i].label(i))
            .collect();
        cycle.push(self.steps[at].label(at));
        Err(format!(
            "the steps form a cycle: {}; each step must only take tensors produced before it",
            cycle.join(" -> ")
        ))
    }

    fn check_uses(
        &self,
        config: &ModelConfig,
        sources: &BTreeMap<String, Source>,
    ) -> Result<(), String> {
        let used: BTreeSet<&str> = self
            .steps
            .iter()
            .flat_map(|s| s.inputs.iter().map(|(_, t)| t.as_str()))
            .collect();
        for input in &config.input {
            if !used.contains(input.name.as_str()) {
                return Err(format!(
                    "ensemble input '{}' is not used by any step; map it in a step's \
                     input_map or remove it",
                    input.name
                ));
            }
        }
        for output in &config.output {
            match sources.get(output.name.as_str()) {
                Some(Source::Step(_)) => {}
                Some(Source::Input) | None => {
                    return Err(format!(
                        "ensemble output '{}' is not produced by any step; map a step output \
                         to it in output_map",
                        output.name
                    ));
                }
            }
        }
        for (tensor, source) in sources {
            if let Source::Step(p) = source
                && !used.contains(tensor.as_str())
                && config.output(tensor).is_none()
            {
                return Err(format!(
                    "ensemble tensor '{tensor}' from {} is unused: no step takes it and it is \
                     not an ensemble output; remove it from output_map or declare it as an output",
                    self.steps[*p].label(*p)
                ));
            }
        }
        Ok(())
    }
}

fn step_plan(
    config: &ModelConfig,
    i: usize,
    s: &crate::config::EnsembleStep,
) -> Result<StepPlan, String> {
    if s.model_name.is_empty() {
        return Err(format!("step {i} has no model_name"));
    }
    let label = format!("step {i} (model '{}')", s.model_name);
    // A model is a directory directly under the repository; nothing may reach outside it.
    if let Some(why) = lrai_core::confine::invalid_name_reason(&s.model_name) {
        return Err(format!(
            "{label}: model_name must be a model directory name ({why}; no '/', '\\', \
             leading '.' or control characters)"
        ));
    }
    if s.model_name == config.name {
        return Err(format!(
            "{label} runs the ensemble itself: the steps form a cycle"
        ));
    }
    let version = match s.model_version {
        -1 => None,
        v => Some(u64::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
            format!("{label} model_version = {v}: must be -1 (the latest) or a version >= 1")
        })?),
    };
    if s.input_map.is_empty() {
        return Err(format!(
            "{label} has an empty input_map; map every step input"
        ));
    }
    if s.output_map.is_empty() {
        return Err(format!(
            "{label} has an empty output_map; map the step outputs the ensemble uses"
        ));
    }
    Ok(StepPlan {
        model: s.model_name.clone(),
        version,
        inputs: s.input_map.clone().into_iter().collect(),
        outputs: s.output_map.clone().into_iter().collect(),
        after: BTreeSet::new(),
    })
}

/// Each ensemble tensor's one producer: an ensemble input, or one step's output.
fn sources(config: &ModelConfig, steps: &[StepPlan]) -> Result<BTreeMap<String, Source>, String> {
    let mut sources: BTreeMap<String, Source> = config
        .input
        .iter()
        .map(|i| (i.name.clone(), Source::Input))
        .collect();
    for (i, step) in steps.iter().enumerate() {
        for (output, tensor) in &step.outputs {
            match sources.insert(tensor.clone(), Source::Step(i)) {
                None => {}
                Some(Source::Input) => {
                    return Err(format!(
                        "{} output '{output}' writes ensemble tensor '{tensor}', which is an \
                         ensemble input; a tensor has one producer",
                        step.label(i)
                    ));
                }
                Some(Source::Step(p)) => {
                    return Err(format!(
                        "ensemble tensor '{tensor}' is produced twice, by {} and by {}; a \
                         tensor has one producer",
                        steps[p].label(p),
                        step.label(i)
                    ));
                }
            }
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    const HEAD: &str = r#"
name: "ens"
platform: "ensemble"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "PROBS" data_type: TYPE_FP32 dims: [ 3 ] },
         { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] } ]
"#;

    fn step(model: &str, ins: &[(&str, &str)], outs: &[(&str, &str)]) -> String {
        let maps = |kind: &str, pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{kind} {{ key: \"{k}\" value: \"{v}\" }}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "{{ model_name: \"{model}\" model_version: -1 {} {} }}",
            maps("input_map", ins),
            maps("output_map", outs)
        )
    }

    fn plan(steps: &[String]) -> Result<Plan, String> {
        let text = format!(
            "{HEAD}ensemble_scheduling {{ step [ {} ] }}",
            steps.join(", ")
        );
        let (config, _) = ModelConfig::from_text(&text, "ens").map_err(|e| e.to_string())?;
        Plan::build(&config)
    }

    fn diamond() -> Vec<String> {
        vec![
            step("pre", &[("x", "RAW")], &[("y", "FEAT")]),
            step("clf", &[("x", "FEAT")], &[("y", "PROBS")]),
            step("score", &[("a", "RAW"), ("b", "FEAT")], &[("s", "SCORE")]),
        ]
    }

    #[test]
    fn builds_dependencies_and_an_order() {
        let p = plan(&diamond()).unwrap();
        assert_eq!(p.steps[0].after, BTreeSet::new());
        assert_eq!(p.steps[1].after, BTreeSet::from([0]));
        assert_eq!(p.steps[2].after, BTreeSet::from([0]));
        assert_eq!(p.next[0], BTreeSet::from([1, 2]));
        let order = p.order();
        assert_eq!(order.len(), 3);
        assert_eq!(order[0], 0);
        assert_eq!(p.steps[1].version, None);
    }

    #[test]
    fn round_trips_through_pbtxt_and_shows_in_json() {
        let text = format!(
            "{HEAD}ensemble_scheduling {{ step [ {} ] }}",
            diamond().join(", ")
        );
        let (config, warnings) = ModelConfig::from_text(&text, "ens").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let (again, _) = ModelConfig::from_text(&config.to_pbtxt(), "ens").unwrap();
        assert_eq!(again, config);
        let json = config.to_triton_json();
        assert_eq!(json["platform"], "ensemble");
        let steps = json["ensemble_scheduling"]["step"].as_array().unwrap();
        assert_eq!(steps[2]["input_map"]["b"], "FEAT");
        assert_eq!(steps[1]["model_version"], -1);
    }

    #[test]
    fn refuses_ensemble_settings_of_ordinary_models() {
        let steps = diamond().join(", ");
        for (edit, want) in [
            ("platform: \"ensemble\"", "platform is \"\""),
            ("max_batch_size: 8", "instance_group is set"),
        ] {
            let replaced = match edit {
                "max_batch_size: 8" => {
                    HEAD.replace(edit, "max_batch_size: 8 instance_group [ { count: 1 } ]")
                }
                _ => HEAD.replace(edit, ""),
            };
            let text = format!("{replaced}ensemble_scheduling {{ step [ {steps} ] }}");
            let e = ModelConfig::from_text(&text, "ens")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        let e = ModelConfig::from_text(HEAD, "ens").unwrap_err().to_string();
        assert!(e.contains("needs an ensemble_scheduling"), "{e}");
    }

    #[test]
    fn steps_listed_out_of_order_still_build() {
        let mut s = diamond();
        s.reverse();
        let p = plan(&s).unwrap();
        assert_eq!(p.order().first(), Some(&2));
        assert_eq!(p.steps[0].after, BTreeSet::from([2]));
    }

    #[test]
    fn rejects_a_cycle_naming_its_steps() {
        let e = plan(&[
            step("pre", &[("x", "RAW"), ("z", "LOOP")], &[("y", "FEAT")]),
            step("clf", &[("x", "FEAT")], &[("y", "PROBS"), ("w", "LOOP")]),
            step("score", &[("a", "RAW")], &[("s", "SCORE")]),
        ])
        .unwrap_err();
        assert!(e.contains("cycle"), "{e}");
        assert!(e.contains("step 0 (model 'pre')"), "{e}");
        assert!(e.contains("step 1 (model 'clf')"), "{e}");
    }

    #[test]
    fn rejects_a_step_running_the_ensemble_itself() {
        let e = plan(&[
            step("ens", &[("RAW", "RAW")], &[("PROBS", "PROBS")]),
            step("score", &[("a", "RAW")], &[("s", "SCORE")]),
        ])
        .unwrap_err();
        assert!(e.contains("runs the ensemble itself"), "{e}");
    }

    #[test]
    fn rejects_a_tensor_with_two_producers() {
        let e = plan(&[
            step("pre", &[("x", "RAW")], &[("y", "PROBS")]),
            step("clf", &[("x", "RAW")], &[("y", "PROBS")]),
            step("score", &[("a", "RAW")], &[("s", "SCORE")]),
        ])
        .unwrap_err();
        assert!(e.contains("'PROBS' is produced twice"), "{e}");
        assert!(e.contains("step 0 (model 'pre')") && e.contains("step 1 (model 'clf')"));
    }

    #[test]
    fn rejects_writing_an_ensemble_input() {
        let e = plan(&[
            step("pre", &[("x", "RAW")], &[("y", "RAW")]),
            step("score", &[("a", "RAW")], &[("s", "SCORE"), ("p", "PROBS")]),
        ])
        .unwrap_err();
        assert!(e.contains("which is an ensemble input"), "{e}");
    }

    #[test]
    fn rejects_an_input_nobody_produces() {
        let e = plan(&[
            step("pre", &[("x", "RAW")], &[("y", "FEAT")]),
            step("clf", &[("x", "FEAT2")], &[("y", "PROBS")]),
            step("score", &[("a", "FEAT")], &[("s", "SCORE")]),
        ])
        .unwrap_err();
        assert!(e.contains("step 1 (model 'clf') input 'x'"), "{e}");
        assert!(e.contains("'FEAT2'"), "{e}");
    }

    #[test]
    fn rejects_unmapped_ensemble_output_and_unused_input_and_tensor() {
        let e = plan(&[
            step("pre", &[("x", "RAW")], &[("y", "FEAT")]),
            step("clf", &[("x", "FEAT")], &[("y", "PROBS")]),
        ])
        .unwrap_err();
        assert!(e.contains("ensemble output 'SCORE' is not produced"), "{e}");

        let text = format!(
            "{}ensemble_scheduling {{ step [ {} ] }}",
            HEAD.replace(
                "input [ {",
                "input [ { name: \"EXTRA\" data_type: TYPE_FP32 dims: [ 1 ] }, {"
            ),
            diamond().join(", ")
        );
        // Parsing checks the DAG too, so a bad ensemble never gets as far as loading.
        let e = ModelConfig::from_text(&text, "ens")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ensemble 'ens': ensemble input 'EXTRA' is not used"),
            "{e}"
        );

        let e = plan(&[
            step("pre", &[("x", "RAW")], &[("y", "FEAT"), ("z", "DANGLING")]),
            step("clf", &[("x", "FEAT")], &[("y", "PROBS")]),
            step("score", &[("a", "RAW")], &[("s", "SCORE")]),
        ])
        .unwrap_err();
        assert!(
            e.contains("'DANGLING' from step 0 (model 'pre') is unused"),
            "{e}"
        );
    }

    #[test]
    fn rejects_empty_maps_names_and_bad_versions() {
        let e = plan(&[step("pre", &[], &[("y", "FEAT")])]).unwrap_err();
        assert!(
            e.contains("step 0 (model 'pre') has an empty input_map"),
            "{e}"
        );
        let e = plan(&[step("pre", &[("x", "RAW")], &[])]).unwrap_err();
        assert!(e.contains("empty output_map"), "{e}");
        let e = plan(&[step("", &[("x", "RAW")], &[("y", "PROBS")])]).unwrap_err();
        assert!(e.contains("step 0 has no model_name"), "{e}");
        let s = step("pre", &[("x", "RAW")], &[("y", "PROBS")]).replace("-1", "0");
        let e = plan(&[s]).unwrap_err();
        assert!(e.contains("model_version = 0"), "{e}");
        let e = plan(&[step("../clf", &[("x", "RAW")], &[("y", "PROBS")])]).unwrap_err();
        assert!(e.contains("must be a model directory name"), "{e}");
    }
}
