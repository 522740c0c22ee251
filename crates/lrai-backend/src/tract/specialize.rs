//! Plans for models tract can only analyse once their input shapes are concrete
//! (`lrai_onnx::specialize`): for each plan's shapes, tract's own analysis of a probe
//! graph answers the questions (an `If` condition computed from shapes, the shape an
//! axes-less `Squeeze` squeezes), the ONNX graph is rewritten with the answers, and the
//! result is parsed for that plan. Models without such places keep the parse-once path.

use lrai_core::TensorSpec;
use lrai_onnx::ModelProto;
use lrai_onnx::specialize::{
    Answer, Question, answer, askable, decisive_inputs, pin_values, probe, questions,
};
use tract_onnx::prelude::{
    Framework, InferenceFact, InferenceModel, InferenceModelExt, TDim, TractResult,
};
use tract_onnx::tract_hir::infer::{Factoid, ShapeFactoid};

use super::datum_type;

/// Rounds of questions at most: each round answers the outermost open ones.
const ROUNDS: usize = 8;

/// What a specialised session keeps to build each plan.
pub(super) struct Specializer {
    pub(super) onnx: tract_onnx::Onnx,
    /// The (prepared) model, before any answer.
    pub(super) model: ModelProto,
    /// The model's directory, for external data.
    pub(super) dir: Option<String>,
    /// Inputs whose value decides control flow: each plan is built for their values, which
    /// are part of its cache key.
    pub(super) pinned: Vec<String>,
}

impl Specializer {
    /// A specializer when `model` has questions or decisive inputs, else `None`.
    pub(super) fn for_model(
        onnx: &tract_onnx::Onnx,
        model: &ModelProto,
        dir: Option<String>,
    ) -> Option<Specializer> {
        let pinned = decisive_inputs(model);
        (!questions(model).is_empty() || !pinned.is_empty()).then(|| Specializer {
            onnx: onnx.clone(),
            model: model.clone(),
            dir,
            pinned,
        })
    }

    /// tract's inference model for a plan key: the input shapes, then the bytes of each
    /// pinned input (`TractSession::plan_key`).
    pub(super) fn model_for(
        &self,
        inputs: &[TensorSpec],
        key: &[Vec<usize>],
    ) -> TractResult<InferenceModel> {
        let (shapes, values) = key.split_at(inputs.len().min(key.len()));
        let mut model = self.model.clone();
        pin_values(&mut model, &self.pinned_tensors(inputs, shapes, values))?;
        for _ in 0..ROUNDS {
            let open = questions(&model);
            let now = askable(&model, &open);
            if now.is_empty() {
                break;
            }
            let tensors: Vec<&str> = now.iter().map(|q| q.tensor()).collect();
            let facts = self.evaluate(&probe(&model, &tensors), inputs, shapes, &tensors)?;
            let mut progress = false;
            for (question, fact) in now.iter().zip(&facts) {
                if let Some(a) = fact.as_ref().and_then(|f| to_answer(question, f)) {
                    progress |= answer(&mut model, question, &a)?;
                }
            }
            if !progress {
                break;
            }
        }
        self.parse(&model)
    }

    /// The pinned inputs' values as ONNX tensors.
    fn pinned_tensors(
        &self,
        inputs: &[TensorSpec],
        shapes: &[Vec<usize>],
        values: &[Vec<usize>],
    ) -> Vec<(String, lrai_onnx::TensorProto)> {
        self.pinned
            .iter()
            .zip(values)
            .filter_map(|(name, bytes)| {
                let i = inputs.iter().position(|s| &s.name == name)?;
                let dims = shapes
                    .get(i)?
                    .iter()
                    .map(|&d| i64::try_from(d).ok())
                    .collect::<Option<Vec<_>>>()?;
                let raw = bytes
                    .iter()
                    .map(|&b| u8::try_from(b).ok())
                    .collect::<Option<Vec<u8>>>()?;
                let tensor = lrai_onnx::TensorProto {
                    data_type: Some(lrai_onnx::dtype_to_onnx(inputs[i].dtype)),
                    dims,
                    raw_data: Some(raw.into()),
                    ..lrai_onnx::TensorProto::default()
                };
                Some((name.clone(), tensor))
            })
            .collect()
    }

    fn parse(&self, model: &ModelProto) -> TractResult<InferenceModel> {
        Ok(self.parse_with_outlets(model)?.model)
    }

    fn parse_with_outlets(
        &self,
        model: &ModelProto,
    ) -> TractResult<tract_onnx::model::ParseResult> {
        let bytes = lrai_onnx::encode_model(model);
        let proto = self.onnx.proto_model_for_read(&mut bytes.as_slice())?;
        self.onnx.parse(&proto, self.dir.as_deref())
    }

    /// tract's facts about `tensors` in the probe, with the inputs at `shapes`.
    fn evaluate(
        &self,
        probe: &ModelProto,
        inputs: &[TensorSpec],
        shapes: &[Vec<usize>],
        tensors: &[&str],
    ) -> TractResult<Vec<Option<InferenceFact>>> {
        let parsed = self.parse_with_outlets(probe)?;
        let mut model = parsed.model;
        for (i, (spec, shape)) in inputs.iter().zip(shapes).enumerate() {
            if let Some(dt) = datum_type(spec.dtype) {
                let dims: ShapeFactoid = shape.iter().map(|&d| TDim::from(d)).collect();
                model.set_input_fact(i, InferenceFact::dt_shape(dt, dims))?;
            }
        }
        // Obstinate: facts upstream of a node tract can't analyse are still worth having.
        let _ = model.analyse(true);
        Ok(tensors
            .iter()
            .map(|t| {
                parsed
                    .outlets_by_name
                    .get(*t)
                    .and_then(|&outlet| model.outlet_fact(outlet).ok().cloned())
            })
            .collect())
    }
}

fn to_answer(question: &Question, fact: &InferenceFact) -> Option<Answer> {
    match question {
        Question::Branch { .. } => {
            let value = fact.value.concretize()?;
            let value = value.cast_to::<bool>().ok()?;
            let first = value
                .to_plain_array_view::<bool>()
                .ok()?
                .iter()
                .next()
                .copied()?;
            (value.len() == 1).then_some(Answer::Condition(first))
        }
        Question::SqueezeAxes { .. } => {
            let shape = fact.shape.as_concrete_finite().ok()??;
            Some(Answer::Shape(shape.to_vec()))
        }
    }
}
