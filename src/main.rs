//! `lrai`: the LRAI command line. One subcommand per job; each lives in `cmd/` and stays
//! thin (parse, call a library, print). Errors print as `error: …` with their causes and
//! exit with status 1; results go to stdout, logs to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::exit)]

use clap::{Parser, Subcommand};

mod cmd;

/// LRAI: an inference engine and server for ONNX models.
#[derive(Debug, Parser)]
#[command(name = "lrai", version, about)]
struct Cli {
    #[command(flatten)]
    log: lrai_monitor::logging::LogConfig,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a model repository over KServe v2 HTTP and gRPC (Triton-compatible), with
    /// Prometheus metrics.
    Serve(Box<lrai::config::ServeConfig>),
    /// Show what an ONNX model declares and whether each backend can load it.
    Inspect(cmd::inspect::InspectArgs),
    /// Run a model once (or repeatedly, timed) on inputs from files or random data.
    Run(cmd::run::RunArgs),
    /// Prove or refute a VNN-LIB property of an ONNX network (exit 0 holds, 10 violated,
    /// 20 unknown), or bound how far an optimised model drifts from its original.
    Verify(Box<cmd::verify::VerifyArgs>),
    /// Load a KServe v2 server (LRAI, Triton) over HTTP or gRPC, closed or open loop, and
    /// report latency percentiles, throughput and SLO attainment, with charts.
    Bench(Box<cmd::bench::BenchArgs>),
    /// Change what a running server serves: `lrai model rollback NAME`.
    Model(cmd::model::ModelArgs),
    /// Manage the server's bearer tokens: `lrai token new --auth-file FILE --name ci --role infer`.
    Token(cmd::token::TokenArgs),
    /// Quantize a model to INT8 (static QDQ or dynamic) or FP16 under an accuracy budget.
    Quantize(Box<cmd::quantize::QuantizeArgs>),
    /// The tamper-evident audit log: `keygen`, `prove` (inclusion, consistency), `verify`.
    Audit(cmd::audit::AuditArgs),
}

fn main() {
    // One TLS provider for the process (ring): rustls can't pick when both are compiled in.
    #[allow(deprecated)] // deprecated only in favour of aws-lc-rs, which LRAI doesn't build
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // Panics inside backend libraries become errors (lrai_backend::guard); keep their
    // default message and backtrace off stderr.
    lrai_backend::guard::install_panic_hook();
    if let Err(err) = lrai_monitor::logging::init(&cli.log) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Serve(config) => cmd::serve::run(*config),
        Command::Inspect(args) => cmd::inspect::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Verify(args) => cmd::verify::run(&args),
        Command::Quantize(args) => cmd::quantize::run(&args),
        Command::Bench(args) => cmd::bench::run(&args),
        Command::Model(args) => cmd::model::run(&args),
        Command::Token(args) => cmd::token::run(&args),
        Command::Audit(args) => cmd::audit::run(&args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
