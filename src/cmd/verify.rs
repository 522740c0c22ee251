//! `lrai verify MODEL.onnx PROPERTY.vnnlib [--timeout S] [--certificate OUT.json]`,
//! `lrai verify --instances instances.csv [--results out.csv]` and
//! `lrai verify --equivalence ORIGINAL.onnx OPTIMIZED.onnx ...`.
//!
//! The first word of the first line is the verdict (`holds`, `violated`, `unknown`);
//! exit status 0 holds, 10 violated, 20 unknown, 1 error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use lrai::config::BackendArgs;
use lrai_backend::{ModelSource, Session, SessionOptions, create_backend};
use lrai_verify::certificate::{self, FileRef};
use lrai_verify::{Method, Network, Settings, Verdict, VerifyError, instances, vnnlib};

mod equivalence;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// MODEL.onnx PROPERTY.vnnlib, or with --equivalence ORIGINAL.onnx OPTIMIZED.onnx.
    files: Vec<PathBuf>,

    /// Seconds before giving up with `unknown` (per instance; --instances uses the CSV's;
    /// --equivalence: for the whole check, default 60).
    #[arg(long, env = "LRAI_VERIFY_TIMEOUT")]
    timeout: Option<f64>,

    /// Write a JSON certificate (hashes, method, settings, margins or counterexample).
    #[arg(long)]
    certificate: Option<PathBuf>,

    /// Search: auto (input split for ≤ 16 inputs, ReLU split otherwise), input-split,
    /// relu-split or bounds-only.
    #[arg(long, default_value = "auto")]
    method: Method,

    /// Verify every instance of a VNN-COMP list (onnx,vnnlib,timeout; paths relative to it).
    #[arg(long, conflicts_with = "equivalence")]
    instances: Option<PathBuf>,

    /// With --instances: write VNN-COMP-style results here.
    #[arg(long, requires = "instances")]
    results: Option<PathBuf>,

    /// Bound max |f_opt(x) − f(x)| between two models over an input region.
    #[arg(long)]
    equivalence: bool,

    /// With --equivalence: the region is the box LO:HI in every input element.
    #[arg(long, requires = "equivalence")]
    input_box: Option<String>,

    /// With --equivalence: the region is an L∞ ball of radius --epsilon-in around each
    /// input in this .npz (one array, rows = points).
    #[arg(long, requires = "equivalence")]
    around: Option<PathBuf>,

    /// Radius for --around.
    #[arg(long, default_value_t = 0.0)]
    epsilon_in: f64,

    /// With --equivalence: the tolerance ε to certify.
    #[arg(long, default_value_t = 0.01)]
    epsilon: f64,

    /// With --equivalence: random samples for the statistical check.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,

    /// With --equivalence: seed for the samples and the PGD starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    #[command(flatten)]
    backend: BackendArgs,
}

fn session(args: &BackendArgs, path: &Path) -> anyhow::Result<Arc<dyn Session>> {
    let source = ModelSource::from_path(path)?;
    let backend = create_backend(&args.backend_config())?;
    // One thread: confirmation runs single points; the cores belong to the search.
    let opts = SessionOptions {
        intra_op_threads: Some(1),
        ..args.session_options()
    };
    Ok(backend.load(&source, &opts)?)
}

fn fmt_vec(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", items.join(", "))
}

fn exit_code(v: &Verdict) -> i32 {
    match v {
        Verdict::Holds => 0,
        Verdict::Violated { .. } => 10,
        Verdict::Unknown { .. } => 20,
    }
}

/// One instance: the verdict, or `unknown` when the model uses an unsupported operator.
fn verify_one(
    args: &BackendArgs,
    model: &Path,
    prop_path: &Path,
    settings: &Settings,
) -> anyhow::Result<lrai_verify::Outcome> {
    let started = Instant::now();
    let prop = vnnlib::load(prop_path)?;
    let proto = lrai_onnx::load_model(model)?;
    let net = match Network::from_onnx(&model.display().to_string(), &proto) {
        Ok(n) => n,
        Err(e @ VerifyError::UnsupportedOperator { .. }) => {
            return Ok(lrai_verify::Outcome {
                verdict: Verdict::Unknown {
                    reason: e.to_string(),
                },
                method: "none".into(),
                elapsed: started.elapsed(),
                domains: 0,
                max_depth: 0,
                min_slack: None,
                max_safety_margin: 0.0,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let session = session(args, model)?;
    Ok(lrai_verify::verify(
        &net,
        &prop,
        &prop_path.display().to_string(),
        session.as_ref(),
        settings,
    )?)
}

pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    if args.equivalence {
        let code = equivalence_cmd(args)?;
        std::process::exit(code);
    }
    let mut settings = Settings {
        method: args.method,
        ..Settings::default()
    };
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0) {
            bail!("--timeout {t}: expected a positive number of seconds");
        }
        settings.timeout = Duration::from_secs_f64(t);
    }
    if let Some(csv) = &args.instances {
        return batch(args, csv, &settings);
    }
    let [model, prop] = args.files.as_slice() else {
        bail!(
            "expected MODEL.onnx PROPERTY.vnnlib (or --instances CSV, or --equivalence A.onnx B.onnx)"
        );
    };
    let outcome = verify_one(&args.backend, model, prop, &settings)?;
    let mut line = format!(
        "{} in {:.3} s ({}, {} domains)",
        outcome.verdict.as_str(),
        outcome.elapsed.as_secs_f64(),
        outcome.method,
        outcome.domains
    );
    match &outcome.verdict {
        Verdict::Holds => {}
        Verdict::Violated { x, y } => {
            let _ = write!(line, "\nx = {}\ny = {}", fmt_vec(x), fmt_vec(y));
        }
        Verdict::Unknown { reason } => {
            let _ = write!(line, "\nreason: {reason}");
        }
    }
    println!("{line}");
    if let Some(out) = &args.certificate {
        let doc = certificate::verification(
            &FileRef::from_path(model)?,
            &FileRef::from_path(prop)?,
            &settings,
            &outcome,
        );
        fs_err::write(out, serde_json::to_string_pretty(&doc)?)
            .with_context(|| "writing the certificate")?;
    }
    std::process::exit(exit_code(&outcome.verdict));
}

fn batch(args: &VerifyArgs, csv: &Path, settings: &Settings) -> anyhow::Result<()> {
    let list = instances::load(csv)?;
    let mut rows = vec!["onnx,vnnlib,result,vnncomp,time_s,method,domains".to_string()];
    for (i, inst) in list.iter().enumerate() {
        let mut s = settings.clone();
        if args.timeout.is_none() {
            s.timeout = inst.timeout;
        }
        let started = Instant::now();
        let (result, reason, method, domains) =
            match verify_one(&args.backend, &inst.onnx, &inst.vnnlib, &s) {
                Ok(o) => {
                    let reason = match &o.verdict {
                        Verdict::Unknown { reason } => reason.clone(),
                        _ => String::new(),
                    };
                    (o.verdict.as_str().to_string(), reason, o.method, o.domains)
                }
                Err(e) => ("error".to_string(), format!("{e:#}"), "none".to_string(), 0),
            };
        let t = started.elapsed().as_secs_f64();
        println!(
            "{result} {t:.3} s {} {}{}",
            inst.onnx_text,
            inst.vnnlib_text,
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        );
        eprintln!(
            "[{}/{}] {result} {t:.3} s {} {}",
            i + 1,
            list.len(),
            inst.onnx_text,
            inst.vnnlib_text
        );
        rows.push(format!(
            "{},{},{result},{},{t:.3},{method},{domains}",
            inst.onnx_text,
            inst.vnnlib_text,
            instances::vnncomp_word(&result, &reason)
        ));
    }
    if let Some(out) = &args.results {
        fs_err::write(out, rows.join("\n") + "\n")?;
    }
    Ok(())
}

fn equivalence_cmd(args: &VerifyArgs) -> anyhow::Result<i32> {
    equivalence::run(args)
}
