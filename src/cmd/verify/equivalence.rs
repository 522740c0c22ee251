//! `lrai verify --equivalence ORIGINAL.onnx OPTIMIZED.onnx (--input-box LO:HI |
//! --around FILE.npz --epsilon-in E) [--epsilon 0.01] [--samples N] [--certificate OUT]`.
//!
//! Parses the region, reads both models for bound propagation where it can (a model it
//! cannot read gets sampling only), loads both on the backend, and prints the verdict
//! (`holds` / `violated` / `unknown` as the first word) with the proven bound and the
//! sampled maximum side by side. The work is `lrai_verify::equivalence::check`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lrai_verify::certificate::{self, FileRef};
use lrai_verify::equivalence::{
    self, EquivOutcome, EquivSettings, EquivVerdict, Models, Pair, Progress, ProofStatus, Region,
};
use lrai_verify::{Network, VerifyError};
use serde_json::json;

use super::{VerifyArgs, fmt_vec, session};

/// Reads a model for bound propagation; `Err(text)` when bounds cannot handle it (the
/// check then samples only), an error when the file itself is bad.
fn network(path: &Path) -> anyhow::Result<Result<Network, String>> {
    let proto = lrai_onnx::load_model(path)?;
    match Network::from_onnx(&path.display().to_string(), &proto) {
        Ok(n) => Ok(Ok(n)),
        Err(e @ (VerifyError::Onnx(_) | VerifyError::Io(_))) => Err(e.into()),
        Err(e) => Ok(Err(e.to_string())),
    }
}

fn parse_box(text: &str) -> anyhow::Result<(f64, f64)> {
    let parsed = text
        .split_once(':')
        .and_then(|(l, h)| Some((l.trim().parse::<f64>().ok()?, h.trim().parse::<f64>().ok()?)));
    match parsed {
        Some((l, h)) if l.is_finite() && h.is_finite() && l <= h => Ok((l, h)),
        _ => bail!("--input-box {text}: expected LO:HI with finite numbers, LO <= HI (e.g. 0:1)"),
    }
}

/// The region and its description for the certificate.
fn region(
    args: &VerifyArgs,
    dim: usize,
    shape: &[usize],
) -> anyhow::Result<(Region, serde_json::Value, String)> {
    let clip = args.input_box.as_deref().map(parse_box).transpose()?;
    match (&args.around, clip) {
        (Some(file), clip) => {
            let e = args.epsilon_in;
            if !(e.is_finite() && e >= 0.0) {
                bail!("--epsilon-in {e}: expected a radius >= 0");
            }
            let arrays = lrai_core::npy::read_npz(file)?;
            let (array, points) = equivalence::select_points(&arrays, shape)
                .map_err(|m| anyhow::anyhow!("--around {}: {m}", file.display()))?;
            let region = Region::around(&points, e, clip).map_err(|m| {
                anyhow::anyhow!("--around {} with --input-box: {m}", file.display())
            })?;
            let f = FileRef::from_path(file)?;
            let clip_json = clip.map(|(l, h)| json!([l, h]));
            let text = format!(
                "{} L∞ balls of radius {e} around '{array}' in {}{}",
                points.len(),
                file.display(),
                clip.map(|(l, h)| format!(", clipped to [{l}, {h}]"))
                    .unwrap_or_default()
            );
            let doc = json!({"kind": "around", "file": {"path": f.path, "sha256": f.sha256},
                             "array": array, "points": points.len(), "epsilon_in": e,
                             "clip": clip_json});
            Ok((region, doc, text))
        }
        (None, _) if args.epsilon_in != 0.0 => {
            bail!(
                "--epsilon-in is the radius around the points of --around FILE.npz; give --around too"
            )
        }
        (None, Some((l, h))) => Ok((
            Region::uniform(dim, l, h),
            json!({"kind": "box", "lo": l, "hi": h, "elements": dim}),
            format!("the box [{l}, {h}] in each of {dim} input elements"),
        )),
        (None, None) => bail!(
            "--equivalence needs a region: --input-box LO:HI, or --around FILE.npz --epsilon-in E"
        ),
    }
}

pub(super) fn run(args: &VerifyArgs) -> anyhow::Result<i32> {
    let [orig, opt] = args.files.as_slice() else {
        bail!("--equivalence needs ORIGINAL.onnx OPTIMIZED.onnx");
    };
    if !(args.epsilon.is_finite() && args.epsilon >= 0.0) {
        bail!("--epsilon {}: expected a tolerance >= 0", args.epsilon);
    }
    let mut settings = EquivSettings {
        epsilon: args.epsilon,
        samples: args.samples,
        seed: args.seed,
        ..EquivSettings::default()
    };
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0) {
            bail!("--timeout {t}: expected a positive number of seconds");
        }
        settings.timeout = Duration::from_secs_f64(t);
    }
    let net_orig = network(orig)?;
    let net_opt = network(opt)?;
    let s_orig = session(&args.backend, orig)?;
    let s_opt = session(&args.backend, opt)?;
    let pair = Pair::new(s_orig.as_ref(), s_opt.as_ref())?;
    let shape = s_orig
        .inputs()
        .first()
        .and_then(|i| i.dims.as_ref())
        .map(|d| {
            d.iter()
                .map(|d| match d {
                    lrai_core::Dim::Fixed(n) => *n,
                    _ => 1,
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| vec![pair.input_dim()]);
    let (region, region_doc, region_text) = region(args, pair.input_dim(), &shape)?;
    let models = Models {
        orig: net_orig.as_ref().map_err(Clone::clone),
        opt: net_opt.as_ref().map_err(Clone::clone),
        pair,
    };
    let last = Mutex::new(Instant::now());
    let progress = |p: Progress| {
        let Ok(mut last) = last.lock() else { return };
        let done = matches!(p, Progress::Sampling(d, n) if d == n);
        if last.elapsed() < Duration::from_secs(1) && !done && !matches!(p, Progress::Attack) {
            return;
        }
        *last = Instant::now();
        match p {
            Progress::Sampling(d, n) => eprintln!("equivalence: sampled {d}/{n} points"),
            Progress::Attack => eprintln!("equivalence: PGD attack on |f_opt − f|"),
            Progress::Proof(b, d) => {
                eprintln!("equivalence: proven bound {b:.4e} after {d} boxes");
            }
        }
    };
    let outcome = equivalence::check(&models, &region, &settings, &progress)?;
    let backend = s_orig.backend().to_string();
    println!("{}", report(&outcome, &settings, &region_text, &backend));
    if let Some(out) = &args.certificate {
        let doc = certificate::equivalence(
            &FileRef::from_path(orig)?,
            &FileRef::from_path(opt)?,
            &region_doc,
            &backend,
            &settings,
            &outcome,
        );
        fs_err::write(out, serde_json::to_string_pretty(&doc)?)
            .with_context(|| "writing the certificate")?;
    }
    Ok(match outcome.verdict {
        EquivVerdict::Holds => 0,
        EquivVerdict::Violated => 10,
        EquivVerdict::Unknown { .. } => 20,
    })
}

fn report(o: &EquivOutcome, s: &EquivSettings, region: &str, backend: &str) -> String {
    let t = o.elapsed.as_secs_f64();
    let eps = s.epsilon;
    let mut out = match (&o.verdict, o.proven(), &o.worst) {
        (EquivVerdict::Holds, Some(b), _) => {
            format!(
                "holds: max |f_opt − f| <= {:.4e} proven (ε = {eps}) in {t:.2} s",
                b.max
            )
        }
        (EquivVerdict::Violated, _, Some(w)) => format!(
            "violated: |f_opt − f| = {:.4e} > ε = {eps} at output {} (found by {}) in {t:.2} s\n\
             x = {}\ny_original = {}\ny_optimized = {}",
            w.diff.abs(),
            w.output,
            w.found_by,
            fmt_vec(&w.x),
            fmt_vec(&w.y_orig),
            fmt_vec(&w.y_opt)
        ),
        (v, _, _) => {
            let reason = match v {
                EquivVerdict::Unknown { reason } => reason.as_str(),
                _ => "",
            };
            format!("unknown: ε = {eps} neither proven nor refuted in {t:.2} s\nreason: {reason}")
        }
    };
    let _ = write!(out, "\n  region: {region}");
    match &o.proof {
        ProofStatus::Bound(b) => {
            let _ = write!(
                out,
                "\n  proven bound: {:.4e} (before splitting {:.4e}; {} boxes, depth {}, stopped: {})",
                b.max, b.root_max, b.domains, b.max_depth, b.stop
            );
        }
        ProofStatus::NotAttempted { reason } => {
            let _ = write!(out, "\n  proven bound: none, sampling only ({reason})");
        }
    }
    let q = &o.sampled.quantiles;
    let _ = write!(
        out,
        "\n  sampled on {backend}: {} points, max {:.4e}, mean {:.4e}, p50 {:.4e}, p90 {:.4e}, \
         p99 {:.4e}, p99.9 {:.4e}",
        o.sampled.n, o.sampled.max, o.sampled.mean, q.p50, q.p90, q.p99, q.p999
    );
    if o.attacked.n > 0 {
        let _ = write!(
            out,
            "\n  attacked (PGD, re-run on {backend}): {} points, max {:.4e}",
            o.attacked.n, o.attacked.max
        );
    }
    let observed = o.sampled.max.max(o.attacked.max);
    match o.proven() {
        Some(b) => {
            let _ = write!(
                out,
                "\n  {:.4e} (proven) >= true max >= {observed:.4e} (observed)",
                b.max
            );
        }
        None => {
            let _ = write!(
                out,
                "\n  true max >= {observed:.4e} (observed); no upper bound"
            );
        }
    }
    out
}
