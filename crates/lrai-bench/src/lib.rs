//! `lrai bench`: a load generator for KServe v2 servers (LRAI, Triton, any other), over
//! HTTP (JSON or Triton's binary tensor extension) and gRPC
//! (`inference.GRPCInferenceService/ModelInfer`).
//!
//! - [`load`]: what is offered: closed loop at a concurrency, open loop (Poisson, on/off
//!   bursts, a replayed CSV trace). Open-loop arrival times are a pure, seeded function,
//!   and latency is measured from the *scheduled* send time, so a slow server cannot
//!   hide its queueing by slowing the generator down (no coordinated omission).
//! - [`inputs`]: requests built from the model's metadata as the server reports it:
//!   random data for the declared shapes, sequence lengths from a long-tailed
//!   distribution, or `.npy` files. Every request is encoded once, before the run.
//! - [`runner`]: drives one level after another, bounded by time and count, with a
//!   bounded number of requests in flight.
//! - [`stats`], [`report`], [`plot`]: percentiles, SLO attainment and errors by kind;
//!   JSON and CSV; SVG and PNG charts drawn without any plotting or font library.
//!
//! What it does not own: the server (it talks to any v2 server through
//! `lrai-protocol`'s wire types and gRPC client), and the command line (`src/cmd/bench.rs`
//! parses flags into a [`BenchConfig`] and prints).

use std::path::PathBuf;

pub mod client;
pub mod inputs;
pub mod load;
mod metrics;
pub mod plot;
pub mod report;
pub mod runner;
pub mod stats;

pub use client::{HttpFormat, Protocol, Target};
pub use inputs::{DimOverride, InputOptions, SeqLenDist};
pub use load::{Burst, Load, Trace, TraceEntry};
pub use report::BenchReport;
pub use runner::{BenchConfig, Progress, run};
pub use stats::{ErrorKind, LatencySummary, LevelSummary, Sample, TimePoint};

/// Everything that can stop a benchmark (request failures are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line value that does not parse.
    #[error("invalid {flag} '{value}': {reason}")]
    BadArg {
        /// The flag, as the user typed it (`--burst`).
        flag: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The server could not be reached or answered the metadata request with an error.
    #[error("cannot read the metadata of model '{model}' from {url}: {reason}")]
    Metadata {
        /// Model name.
        model: String,
        /// Where it was asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A URL that does not parse.
    #[error("invalid URL '{url}': {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// An input the generator cannot build data for.
    #[error("input '{input}' of model '{model}': {reason}")]
    Input {
        /// Model name.
        model: String,
        /// Input name.
        input: String,
        /// What is missing or wrong, and what to pass.
        reason: String,
    },
    /// A tensor could not be built or read.
    #[error("input '{input}'")]
    Tensor {
        /// Input name.
        input: String,
        /// The cause.
        #[source]
        source: lrai_core::CoreError,
    },
    /// A request could not be encoded.
    #[error("cannot encode a request for model '{model}'")]
    Encode {
        /// Model name.
        model: String,
        /// The cause.
        #[source]
        source: lrai_protocol::ProtocolError,
    },
    /// A trace file line that does not parse.
    #[error("trace {path}, line {line}: {reason}")]
    Trace {
        /// The trace file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was expected.
        reason: String,
    },
    /// Reading or writing a file (the error names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Serialising the JSON report.
    #[error("cannot write the JSON report {path}")]
    Json {
        /// The report file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A benchmark with nothing to run.
    #[error("nothing to run: {reason}")]
    NothingToRun {
        /// What is missing.
        reason: String,
    },
}

/// `Result` with [`BenchError`].
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
