//! Runs an ONNX model on tract alone, the way tract's own README does, without any of
//! LRAI's rewrites, checks or panic containment: it shows tract's own behaviour for the
//! upstream reports in `docs/tract-upstream.md` (`scripts/tract-repro/run.sh` calls it).
//!
//! ```sh
//! cargo run --release -p lrai-backend --example tract_raw -- MODEL.onnx INPUTS.npz [--runs N]
//! ```
//!
//! The input facts are set from the arrays' dtypes and shapes, then the model is
//! optimised and made runnable. `--runs N` runs the same inputs N times: each run on a
//! fresh state (`SimplePlan::run`), then N runs on one reused `SimpleState`, which is how
//! tract keeps recurrent state for streaming. A tract error prints its whole chain and
//! exits 1; a panic inside tract is not caught (exit 101).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lrai_core::{DataType, Tensor as LTensor};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::bail;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((model, inputs, runs)) = parse_args(&args) else {
        eprintln!("usage: tract_raw MODEL.onnx INPUTS.npz [--runs N]");
        return ExitCode::from(2);
    };
    match run(&model, &inputs, runs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("tract error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> Option<(PathBuf, PathBuf, usize)> {
    match args {
        [m, i] => Some((m.into(), i.into(), 1)),
        [m, i, flag, n] if flag == "--runs" => Some((m.into(), i.into(), n.parse().ok()?)),
        _ => None,
    }
}

fn run(model_path: &Path, inputs_path: &Path, runs: usize) -> TractResult<()> {
    let arrays = lrai_core::npy::read_npz(inputs_path)?;
    let mut model = tract_onnx::onnx().model_for_path(model_path)?;
    let mut values = TVec::new();
    for (ix, outlet) in model.input_outlets()?.to_vec().iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let Some((_, array)) = arrays.iter().find(|(n, _)| *n == name) else {
            bail!("no array named '{name}' in {}", inputs_path.display());
        };
        let tensor = to_tract(array)?;
        model.set_input_fact(
            ix,
            InferenceFact::dt_shape(tensor.datum_type(), tensor.shape()),
        )?;
        values.push(TValue::from(tensor));
    }
    let plan = model.into_optimized()?.into_runnable()?;
    for n in 1..=runs {
        print_outputs(&format!("fresh state, run {n}"), &plan.run(values.clone())?)?;
    }
    if runs > 1 {
        let mut state = plan.spawn()?;
        for n in 1..=runs {
            print_outputs(
                &format!("reused state, run {n}"),
                &state.run(values.clone())?,
            )?;
        }
    }
    Ok(())
}

fn print_outputs(label: &str, outputs: &[TValue]) -> TractResult<()> {
    println!("{label}:");
    for (ix, value) in outputs.iter().enumerate() {
        println!("  output {ix}: {}", value.dump(true)?);
    }
    Ok(())
}

fn to_tract(t: &LTensor) -> TractResult<Tensor> {
    let shape = t.shape();
    macro_rules! pod {
        ($t:ty) => {
            Tensor::from_shape::<$t>(shape, &t.as_slice::<$t>()?)?
        };
    }
    Ok(match t.dtype() {
        DataType::Bool => Tensor::from_shape::<bool>(shape, &t.to_bools()?)?,
        DataType::U8 => pod!(u8),
        DataType::I8 => pod!(i8),
        DataType::I32 => pod!(i32),
        DataType::I64 => pod!(i64),
        DataType::F32 => pod!(f32),
        DataType::F64 => pod!(f64),
        other => bail!("tract_raw does not read {other:?} inputs"),
    })
}
