//! The verification pipeline: counterexample search first (cheap, and most violated
//! properties fall to it), then bounds on the whole box, then branch and bound until the
//! deadline. Every counterexample is re-run on a real backend before it is reported.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lrai_backend::Session;
use lrai_core::Tensor;

use crate::attack::{self, AttackOpts};
use crate::bounds::{self, NodeBounds, crown_intermediate, relaxations};
use crate::network::Network;
use crate::refine::RefineOpts;
use crate::search::{self, Ctx, InputSplitOpts, ReluSplitOpts, SearchEnd, SearchStats, Spec};
use crate::vnnlib::Property;
use crate::{Result, VerifyError};

/// Which complete search to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Input splitting for inputs of at most [`Settings::input_split_max_dim`]
    /// elements, ReLU splitting otherwise.
    #[default]
    Auto,
    /// Bisect the input box.
    InputSplit,
    /// Split unstable ReLUs (β-CROWN).
    ReluSplit,
    /// Only bound the whole box (CROWN, α-CROWN); no search.
    BoundsOnly,
}

impl Method {
    /// The name used on the command line and in certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::InputSplit => "input-split",
            Method::ReluSplit => "relu-split",
            Method::BoundsOnly => "bounds-only",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Method::Auto),
            "input-split" => Ok(Method::InputSplit),
            "relu-split" => Ok(Method::ReluSplit),
            "bounds-only" => Ok(Method::BoundsOnly),
            other => Err(format!(
                "unknown method '{other}': expected auto, input-split, relu-split or bounds-only"
            )),
        }
    }
}

/// Verifier settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Wall-clock budget, counted from the call to [`verify`].
    pub timeout: Duration,
    /// Search method.
    pub method: Method,
    /// Auto picks input splitting up to this many input elements.
    pub input_split_max_dim: usize,
    /// Counterexample search effort.
    pub attack: AttackOpts,
    /// ReLU-split settings.
    pub relu: ReluSplitOpts,
    /// Input-split settings.
    pub input_split: InputSplitOpts,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(300),
            method: Method::Auto,
            input_split_max_dim: 16,
            attack: AttackOpts::default(),
            relu: ReluSplitOpts::default(),
            input_split: InputSplitOpts::default(),
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No input in the region meets the unsafe condition (proof).
    Holds,
    /// A confirmed counterexample: `x` (the f32 input, as f64) and the backend's `y`.
    Violated {
        /// Flattened input.
        x: Vec<f64>,
        /// Flattened output from the backend.
        y: Vec<f64>,
    },
    /// Neither proven nor refuted.
    Unknown {
        /// Why (timeout, unsupported operator, ...).
        reason: String,
    },
}

impl Verdict {
    /// `holds`, `violated` or `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Violated { .. } => "violated",
            Verdict::Unknown { .. } => "unknown",
        }
    }
}

/// A verdict with how it was reached.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The answer.
    pub verdict: Verdict,
    /// The method that decided (or was running at the end): `attack`, `bounds`,
    /// `input-split`, `relu-split`.
    pub method: String,
    /// Wall time.
    pub elapsed: Duration,
    /// Domains bounded in branch and bound.
    pub domains: u64,
    /// Deepest split.
    pub max_depth: usize,
    /// For `holds`: the smallest `lower bound − safety margin` over the proven leaves.
    pub min_slack: Option<f64>,
    /// The largest float safety margin applied to a row.
    pub max_safety_margin: f64,
}

/// Rounds `x` to f32 values inside `[lower, upper]`, or `None` when some interval holds
/// no f32 value.
pub fn to_f32_in_box(x: &[f64], lower: &[f64], upper: &[f64]) -> Option<Vec<f32>> {
    x.iter()
        .zip(lower.iter().zip(upper))
        .map(|(&v, (&l, &u))| {
            #[allow(clippy::cast_possible_truncation)]
            let mut f = v.clamp(l, u) as f32;
            if f64::from(f) < l {
                f = f.next_up();
            }
            if f64::from(f) > u {
                f = f.next_down();
            }
            (f64::from(f) >= l && f64::from(f) <= u).then_some(f)
        })
        .collect()
}

/// Runs the model on the backend at `x`; returns the flattened first output.
///
/// # Errors
/// [`VerifyError::Backend`] when the backend fails.
pub fn run_backend(session: &dyn Session, net: &Network, x: &[f32]) -> Result<Vec<f64>> {
    let t =
        Tensor::from_slice(net.input_shape.clone(), x).map_err(lrai_backend::BackendError::from)?;
    let out = session.run(&[(net.input_name.clone(), t)])?;
    let (_, y) = out
        .iter()
        .find(|(n, _)| *n == net.output_name)
        .or(out.first())
        .ok_or_else(|| VerifyError::Model {
            model: net.name.clone(),
            reason: "the backend returned no outputs".into(),
        })?;
    Ok(y.to_f64_vec().map_err(lrai_backend::BackendError::from)?)
}

/// Checks that the property fits the network.
///
/// # Errors
/// [`VerifyError::Mismatch`] when the variable counts differ from the model's sizes.
pub fn check_fit(net: &Network, prop: &Property, prop_name: &str) -> Result<()> {
    let mismatch = |reason: String| VerifyError::Mismatch {
        property: prop_name.to_string(),
        model: net.name.clone(),
        reason,
    };
    if prop.num_inputs != net.input_dim() {
        return Err(mismatch(format!(
            "it declares {} inputs X_i, the model's input '{}' has {} elements",
            prop.num_inputs,
            net.input_name,
            net.input_dim()
        )));
    }
    if prop.num_outputs != net.output_dim() {
        return Err(mismatch(format!(
            "it declares {} outputs Y_j, the model's output '{}' has {} elements",
            prop.num_outputs,
            net.output_name,
            net.output_dim()
        )));
    }
    Ok(())
}

/// Verifies `prop` on `net`, confirming counterexamples on `session`.
///
/// # Errors
/// [`VerifyError::Mismatch`] when the property does not fit the model. Backend failures
/// while confirming a counterexample make the verdict `unknown` rather than an error.
pub fn verify(
    net: &Network,
    prop: &Property,
    prop_name: &str,
    session: &dyn Session,
    settings: &Settings,
) -> Result<Outcome> {
    let start = Instant::now();
    let deadline = start + settings.timeout;
    check_fit(net, prop, prop_name)?;
    let backend_error: Mutex<Option<String>> = Mutex::new(None);
    let confirm = |x: &[f64], lower: &[f64], upper: &[f64]| -> Option<(Vec<f64>, Vec<f64>)> {
        let xf = to_f32_in_box(x, lower, upper)?;
        match run_backend(session, net, &xf) {
            Ok(y) if prop.is_unsafe(&y) => Some((xf.iter().map(|&v| f64::from(v)).collect(), y)),
            Ok(_) => None,
            Err(e) => {
                if let Ok(mut g) = backend_error.lock() {
                    *g = Some(e.to_string());
                }
                None
            }
        }
    };
    let mut outcome = Outcome {
        verdict: Verdict::Holds,
        method: "bounds".into(),
        elapsed: Duration::ZERO,
        domains: 0,
        max_depth: 0,
        min_slack: None,
        max_safety_margin: 0.0,
    };
    let method = match settings.method {
        Method::Auto if net.input_dim() <= settings.input_split_max_dim => Method::InputSplit,
        Method::Auto => Method::ReluSplit,
        m => m,
    };
    let mut unknown: Option<String> = None;
    let mut min_slack = f64::INFINITY;

    // 1. Counterexample search over every box.
    for bx in &prop.boxes {
        for x in attack::search(net, prop, &bx.lower, &bx.upper, &settings.attack) {
            if let Some((x, y)) = confirm(&x, &bx.lower, &bx.upper) {
                outcome.verdict = Verdict::Violated { x, y };
                outcome.method = "attack".into();
                outcome.elapsed = start.elapsed();
                return Ok(outcome);
            }
        }
    }

    // 2. Bounds and search, box by box.
    for bx in &prop.boxes {
        let bx_confirm = |x: &[f64]| confirm(x, &bx.lower, &bx.upper).map(|(x, _)| x);
        let root_width: Vec<f64> = bx
            .lower
            .iter()
            .zip(&bx.upper)
            .map(|(l, u)| (u - l).max(f64::MIN_POSITIVE))
            .collect();
        let mut stats = SearchStats::default();
        // One search of the box from `root` bounds until `until`; also the largest
        // float safety margin it used.
        let search_from = |root: &NodeBounds, until: Instant, stats: &mut SearchStats| {
            let mut spec = Spec::from_property(prop);
            spec.margin = spec.margins_for(net, root);
            let margin = spec.margin.iter().copied().fold(0.0, f64::max);
            let ctx = Ctx {
                net,
                prop,
                spec: &spec,
                deadline: until,
                root_width: root_width.clone(),
                split: &settings.input_split,
                confirm: &bx_confirm,
            };
            let end = match method {
                Method::InputSplit => search::input_split(&ctx, &bx.lower, &bx.upper, stats),
                Method::BoundsOnly => per_clause(&ctx, &bx.lower, &bx.upper, root, None, stats),
                Method::ReluSplit | Method::Auto => per_clause(
                    &ctx,
                    &bx.lower,
                    &bx.upper,
                    root,
                    Some(&settings.relu),
                    stats,
                ),
            };
            (end, margin)
        };
        let (end, margin) = match method {
            Method::InputSplit => {
                outcome.method = "input-split".into();
                let root = crown_intermediate(net, &bx.lower, &bx.upper);
                search_from(&root, deadline, &mut stats)
            }
            Method::BoundsOnly => {
                outcome.method = "bounds".into();
                let iters = settings.relu.intermediate_iters;
                let root = bounds::alpha_intermediate(net, &bx.lower, &bx.upper, iters);
                search_from(&root, deadline, &mut stats)
            }
            Method::ReluSplit | Method::Auto => {
                outcome.method = "relu-split".into();
                let iters = settings.relu.intermediate_iters;
                let plain = bounds::alpha_intermediate(net, &bx.lower, &bx.upper, iters);
                let r = &settings.relu.refine;
                let refine = r.layers > 0 && r.domains > 0;
                let quick = if refine {
                    deadline.min(Instant::now() + settings.timeout.mul_f64(r.quick_share))
                } else {
                    deadline
                };
                match search_from(&plain, quick, &mut stats) {
                    (SearchEnd::Unknown(_), m) if refine && Instant::now() < deadline => {
                        let now = Instant::now();
                        let opts = RefineOpts {
                            deadline: Some(
                                now + deadline.saturating_duration_since(now).mul_f64(r.share),
                            ),
                            ..r.clone()
                        };
                        let refined = bounds::refined_intermediate(
                            net, &bx.lower, &bx.upper, iters, &opts, &plain,
                        );
                        let (end, m2) = search_from(&refined, deadline, &mut stats);
                        (end, m.max(m2))
                    }
                    other => other,
                }
            }
        };
        outcome.max_safety_margin = outcome.max_safety_margin.max(margin);
        outcome.domains += stats.domains;
        outcome.max_depth = outcome.max_depth.max(stats.max_depth);
        match end {
            SearchEnd::Proven { min_slack: s } => min_slack = min_slack.min(s),
            SearchEnd::Counterexample(x) => {
                let xf: Vec<f32> = to_f32_in_box(&x, &bx.lower, &bx.upper).unwrap_or_default();
                let y = run_backend(session, net, &xf)?;
                outcome.verdict = Verdict::Violated { x, y };
                outcome.elapsed = start.elapsed();
                return Ok(outcome);
            }
            SearchEnd::Unknown(reason) => {
                unknown.get_or_insert(reason);
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    outcome.elapsed = start.elapsed();
    if let Some(mut reason) = unknown {
        if let Ok(Some(e)) = backend_error.lock().map(|g| g.clone()) {
            reason = format!("{reason}; a candidate counterexample could not be checked: {e}");
        }
        outcome.verdict = Verdict::Unknown { reason };
    } else {
        outcome.verdict = Verdict::Holds;
        outcome.min_slack = Some(min_slack);
    }
    Ok(outcome)
}

/// Proves clause by clause: α-CROWN on the whole box, then (when `relu` is given)
/// ReLU-split search. Clauses with the best root bound go first.
fn per_clause(
    ctx: &Ctx<'_>,
    lower: &[f64],
    upper: &[f64],
    root: &bounds::NodeBounds,
    relu: Option<&ReluSplitOpts>,
    stats: &mut SearchStats,
) -> SearchEnd {
    let rel = relaxations(ctx.net, root);
    let back = bounds::backward(
        ctx.net,
        &rel,
        &root.eps,
        ctx.net.output,
        ctx.spec.c.clone(),
        bounds::BackOpts {
            alpha: None,
            splits: None,
            keep: false,
        },
    );
    let (lb, _) = bounds::minimise(&back, lower, upper, false);
    let mut order: Vec<(f64, usize)> = ctx
        .spec
        .clauses
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let best = r
                .clone()
                .map(|r| lb[r] + ctx.spec.d[r] - ctx.spec.margin[r])
                .fold(f64::NEG_INFINITY, f64::max);
            (best, i)
        })
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut min_slack = f64::INFINITY;
    let opts = relu.cloned().unwrap_or(ReluSplitOpts {
        batch: 0,
        ..ReluSplitOpts::default()
    });
    for (crown, clause) in order {
        if crown > 0.0 {
            min_slack = min_slack.min(crown);
            continue;
        }
        let end = search::relu_split(ctx, clause, lower, upper, root, &opts, stats);
        match end {
            SearchEnd::Proven { min_slack: s } => min_slack = min_slack.min(s),
            other => return other,
        }
        if Instant::now() >= ctx.deadline {
            return SearchEnd::Unknown("timeout".into());
        }
    }
    SearchEnd::Proven { min_slack }
}
