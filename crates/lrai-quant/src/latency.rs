//! Timing the float and quantized models on each backend, on real samples when there
//! are some (the first `batch` rows of the evaluation or calibration data) and on
//! seeded random inputs otherwise. Medians after two warm-up runs; this is a report,
//! not a benchmark (see `scripts/bench-quant.py` for that).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use lrai_backend::{Backend, Session, SessionOptions};
use lrai_core::random::{SplitMix64, random_tensor};
use lrai_core::{Dim, Tensor, TensorSpec};
use lrai_onnx::ModelProto;

use crate::Result;
use crate::calibrate::load_session;
use crate::data::Dataset;
use crate::report::LatencyReport;

fn inputs_for(
    specs: &[TensorSpec],
    data: Option<&Dataset>,
    batch: usize,
) -> Result<Vec<(String, Tensor)>> {
    if let Some(d) = data {
        // Repeat the samples when there are fewer than `batch`.
        let mut out = Vec::new();
        for (name, t) in &d.inputs {
            let rows: Vec<usize> = (0..batch).map(|i| i % d.samples).collect();
            let parts = lrai_core::split(t, &vec![1; d.samples])?;
            let picked: Vec<&Tensor> = rows.iter().map(|&r| &parts[r]).collect();
            out.push((name.clone(), lrai_core::concat(&picked)?));
        }
        return Ok(out);
    }
    let mut rng = SplitMix64::new(0);
    let mut bindings = BTreeMap::new();
    let mut out = Vec::new();
    for s in specs {
        let dims = s.dims.clone().unwrap_or_default();
        if let Some(Dim::Symbol(b)) = dims.first() {
            bindings.insert(b.clone(), batch);
        }
        let shape = lrai_core::shape::concretize(&dims, &bindings, 1);
        out.push((s.name.clone(), random_tensor(s.dtype, shape, &mut rng)?));
    }
    Ok(out)
}

fn median_ms(
    session: &dyn Session,
    inputs: &[(String, Tensor)],
    runs: usize,
) -> std::result::Result<f64, String> {
    for _ in 0..2 {
        session.run(inputs).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        session.run(inputs).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// What to time.
pub(crate) struct Timing<'a> {
    pub(crate) before: &'a ModelProto,
    pub(crate) after: &'a ModelProto,
    pub(crate) specs: &'a [TensorSpec],
    pub(crate) data: Option<&'a Dataset>,
    pub(crate) batches: &'a [usize],
    pub(crate) runs: usize,
}

/// Times both models on every backend and batch size.
pub(crate) fn measure(
    backends: &[Arc<dyn Backend>],
    options: &SessionOptions,
    t: &Timing<'_>,
    progress: &crate::Progress<'_>,
) -> Vec<LatencyReport> {
    let mut out = Vec::new();
    let fixed = crate::data::has_fixed_batch(t.specs);
    for backend in backends {
        let name = backend.kind().as_str().to_string();
        progress(&format!("timing on {name}"));
        let before = load_session(backend, options, "float model", t.before);
        let after = load_session(backend, options, "quantized model", t.after);
        for &batch in t.batches {
            let batch = if fixed {
                t.specs
                    .first()
                    .and_then(|s| s.dims.as_ref()?.first()?.fixed())
                    .unwrap_or(batch)
            } else {
                batch
            };
            let inputs = match inputs_for(t.specs, t.data, batch) {
                Ok(i) => i,
                Err(e) => {
                    out.push(LatencyReport {
                        backend: name.clone(),
                        batch,
                        before_ms: None,
                        after_ms: None,
                        speedup: None,
                        error: Some(e.to_string()),
                    });
                    continue;
                }
            };
            let b = before
                .as_ref()
                .map_err(ToString::to_string)
                .and_then(|s| median_ms(s.as_ref(), &inputs, t.runs));
            let a = after
                .as_ref()
                .map_err(ToString::to_string)
                .and_then(|s| median_ms(s.as_ref(), &inputs, t.runs));
            let error = match (&b, &a) {
                (Err(e), _) => Some(format!("float model: {e}")),
                (_, Err(e)) => Some(format!("quantized model: {e}")),
                _ => None,
            };
            let (b, a) = (b.ok(), a.ok());
            out.push(LatencyReport {
                backend: name.clone(),
                batch,
                before_ms: b,
                after_ms: a,
                speedup: b.zip(a).map(|(b, a)| b / a.max(1e-9)),
                error,
            });
            if fixed {
                break;
            }
        }
    }
    out
}
