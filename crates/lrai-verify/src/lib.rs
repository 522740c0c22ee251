//! LRAI's verifier: proves or refutes properties of ONNX networks, and bounds how far an
//! optimised (e.g. quantized) model can drift from its original.
//!
//! The pieces, in the order a run uses them:
//! - [`vnnlib`]: VNN-LIB 1.0 properties (input boxes, unsafe output condition as a DNF).
//! - [`network`]: the ONNX graph (read with `lrai-onnx`, never a second parser) turned
//!   into a DAG of fused affine maps and element-wise activations. An operator outside
//!   the supported set is an [`VerifyError::UnsupportedOperator`]; the answer is then
//!   `unknown`, never `holds`.
//! - [`bounds`]: interval bounds (IBP), CROWN/DeepPoly back-substitution, α-CROWN lower
//!   slopes and β-CROWN split multipliers, optimised by projected gradient ascent.
//! - [`attack`]: counterexample search (random sampling, then PGD on the property margin).
//! - [`refine`]: early intermediate layers tightened by a small branch and bound per
//!   unstable neuron (the role a MIP solver plays in α,β-CROWN), for deep networks.
//! - [`search`]: the complete search: input splitting for low-dimensional inputs (CROWN
//!   per box, α-CROWN on deep boxes, a clause's rows also combined convexly) and ReLU
//!   splitting (β-CROWN style) for wide ones, on rayon.
//! - [`verifier`]: the pipeline and its [`Outcome`]; every counterexample is confirmed by
//!   running the model on a real backend (`lrai-backend`) before it is reported.
//! - [`equivalence`]: a proven bound on `max |f_opt(x) - f(x)|` over a region, plus a
//!   sampled check.
//!
//! # Soundness and floating point
//!
//! All bound arithmetic is in f64 over f64 copies of the model's f32 weights. A backend
//! evaluates the model in f32, in an order we do not know. So every bound is for the
//! **f32** network: at each node we add the rounding error a backend may commit there
//! ([`network::Network::rounding_error`]), `|δ| <= γ_n·(|W|·|x| + |b|)` for an affine
//! map with accumulation length `n` (`γ_n = n·u/(1 − n·u)`, `u = 2⁻²⁴`; this holds for
//! any summation order, with or without FMA), 16 ulps for sigmoid/tanh, and the error of
//! `x / scale` before a quantizer rounds. The magnitudes `|x|` come from the bounds of
//! the region being bounded; interval bounds are widened by `δ`, and back-substitution
//! charges `|Λ|·δ` at every node it passes. On top of that, a proof needs every lower
//! bound to exceed an explicit safety margin of `1e-9 × (1 + the row's magnitude)` for
//! f64 rounding in our own arithmetic (relative error around 1e-16 per operation, so
//! the margin is far above it). These terms only ever make a proof harder: they can turn
//! `holds` into `unknown`, never `violated` into `holds`.
//!
//! Counterexamples are never taken from our own arithmetic: each is rounded to f32
//! inside the input box, re-run on the backend, and reported only when the backend's
//! outputs meet the unsafe condition.
//!
//! What this crate does not do: read models with a second ONNX parser, run models itself
//! for a verdict (it uses `lrai-backend`), or print (the CLI is `src/cmd/verify.rs`).

pub mod attack;
pub mod bounds;
pub mod certificate;
pub mod equivalence;
pub mod instances;
pub mod matrix;
pub mod network;
pub mod refine;
pub mod search;
pub mod verifier;
pub mod vnnlib;

pub use network::Network;
pub use verifier::{Method, Outcome, Settings, Verdict, verify};
pub use vnnlib::Property;

/// Errors from reading properties and models and from running the verifier.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The VNN-LIB text is malformed.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file (or name) of the property.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A well-formed property outside what the verifier supports.
    #[error("property '{property}' is not supported: {reason}")]
    UnsupportedProperty {
        /// The property file.
        property: String,
        /// Why.
        reason: String,
    },
    /// The model uses an operator (or an operator form) bound propagation cannot handle.
    #[error("unsupported operator {op} at node '{node}'{}", detail_suffix(detail))]
    UnsupportedOperator {
        /// Operator type.
        op: String,
        /// Node name (or its first output when unnamed).
        node: String,
        /// What about it is unsupported, when not the operator itself.
        detail: String,
    },
    /// The model is not something the verifier can read (structure, shapes, data).
    #[error("model '{model}': {reason}")]
    Model {
        /// Model name.
        model: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The property and the model disagree (sizes).
    #[error("property '{property}' does not fit model '{model}': {reason}")]
    Mismatch {
        /// Property name.
        property: String,
        /// Model name.
        model: String,
        /// What differs.
        reason: String,
    },
    /// Reading the model failed.
    #[error(transparent)]
    Onnx(#[from] lrai_onnx::OnnxError),
    /// Running the model on the backend failed.
    #[error("confirming on the backend failed: {0}")]
    Backend(#[from] lrai_backend::BackendError),
    /// File I/O (the message names the path: fs-err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Result with [`VerifyError`].
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;
