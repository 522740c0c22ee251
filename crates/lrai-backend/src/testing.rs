//! `FakeBackend`, for tests of the layers above: a model with input `x` (FP32
//! `[batch, 1]`) and output `y = 2·x` that misbehaves on cue, row by row:
//! - `x = -1` panics inside `run` (as a buggy engine would);
//! - `x = -2` returns a backend error;
//! - `1000 ≤ x < 101000` sleeps `x − 1000` milliseconds first (slow requests).
//!
//! It ignores the model file it is given, so any valid ONNX file can stand in, and it
//! counts the runs and the rows it has seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lrai_core::{DataType, Dim, Tensor, TensorSpec};

use crate::{
    Backend, BackendError, BackendKind, ModelSource, NamedTensors, Result, Session, SessionOptions,
    check_inputs,
};

/// The fake backend; `runs` and `rows` count what every session it made has run.
#[derive(Debug, Default)]
pub struct FakeBackend {
    /// Batches run.
    pub runs: Arc<AtomicUsize>,
    /// Rows run.
    pub rows: Arc<AtomicUsize>,
    /// Sessions created (loads and reloads).
    pub loads: Arc<AtomicUsize>,
    /// Inputs and outputs `[batch, seq]` with a variable `seq` instead of `[batch, 1]`
    /// (for sequence padding); `y` has the shape of `x`.
    pub variable_len: bool,
}

impl FakeBackend {
    /// The specs of the fake model.
    pub fn specs() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let dims = Some(vec![Dim::Symbol("batch".into()), Dim::Fixed(1)]);
        (
            vec![TensorSpec {
                name: "x".into(),
                dtype: DataType::F32,
                dims: dims.clone(),
            }],
            vec![TensorSpec {
                name: "y".into(),
                dtype: DataType::F32,
                dims,
            }],
        )
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        // Reported as tract: it stands in for an embedded engine.
        BackendKind::Tract
    }

    fn load(&self, model: &ModelSource, _options: &SessionOptions) -> Result<Arc<dyn Session>> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let (mut inputs, mut outputs) = FakeBackend::specs();
        if self.variable_len {
            for t in inputs.iter_mut().chain(outputs.iter_mut()) {
                t.dims = Some(vec![Dim::Symbol("batch".into()), Dim::Symbol("seq".into())]);
            }
        }
        Ok(Arc::new(FakeSession {
            name: model.name().to_string(),
            inputs,
            outputs,
            runs: Arc::clone(&self.runs),
            rows: Arc::clone(&self.rows),
        }))
    }
}

#[derive(Debug)]
struct FakeSession {
    name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    runs: Arc<AtomicUsize>,
    rows: Arc<AtomicUsize>,
}

impl Session for FakeSession {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> BackendKind {
        BackendKind::Tract
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn run(&self, inputs: &[(String, Tensor)]) -> Result<NamedTensors> {
        let x_tensor = &check_inputs(&self.name, &self.inputs, inputs)?[0];
        let shape = x_tensor.shape().to_vec();
        let x = x_tensor.to_vec::<f32>()?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(x.len(), Ordering::Relaxed);
        if x.contains(&-1.0) {
            panic!("FakeBackend told to panic (x = -1)");
        }
        if x.contains(&-2.0) {
            return Err(BackendError::Run {
                model: self.name.clone(),
                backend: BackendKind::Tract,
                detail: "FakeBackend told to fail (x = -2)".into(),
            });
        }
        if let Some(ms) = x.iter().find(|v| (1000.0..101_000.0).contains(*v)) {
            std::thread::sleep(Duration::from_millis((*ms - 1000.0) as u64));
        }
        let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
        Ok(vec![("y".into(), Tensor::from_vec(shape, y)?)])
    }
}
