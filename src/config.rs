//! Command-line configuration shared by subcommands. Each struct is a clap `Args` that is
//! flattened into the subcommands that need it and converted into a library config; the
//! libraries themselves never read flags or environment variables.

use std::path::PathBuf;

use clap::Args;
use lrai_backend::{
    BackendChoice, BackendConfig, ExecutionProvider, OptimizationLevel, OrtCandidate,
    SessionOptions,
};

/// Which backend runs models and how sessions are built.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Backend: `tract` (embedded, pure Rust), `onnxruntime`, or `auto` (ONNX Runtime when
    /// its library is found, tract otherwise).
    #[arg(long, env = "LRAI_BACKEND", default_value = "auto")]
    pub backend: BackendChoice,

    /// Path to libonnxruntime.so (or a directory holding it). Without it LRAI tries
    /// ORT_DYLIB_PATH, then a pip-installed `onnxruntime` package found by `python3`.
    #[arg(long, env = "LRAI_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,

    /// Threads inside one operator; default: available cores.
    #[arg(long, env = "LRAI_INTRA_OP_THREADS")]
    pub intra_op_threads: Option<usize>,

    /// Threads running independent operators (ONNX Runtime); default 1.
    #[arg(long, env = "LRAI_INTER_OP_THREADS")]
    pub inter_op_threads: Option<usize>,

    /// ONNX Runtime graph optimisation: disabled, basic, extended or all.
    #[arg(long, env = "LRAI_GRAPH_OPTIMIZATION", default_value = "all")]
    pub graph_optimization: OptimizationLevel,

    /// ONNX Runtime execution providers in priority order: cpu, cuda[:N], tensorrt[:N].
    #[arg(
        long = "execution-provider",
        env = "LRAI_EXECUTION_PROVIDERS",
        value_delimiter = ','
    )]
    pub execution_providers: Vec<ExecutionProvider>,
}

impl BackendArgs {
    /// The backend library's config. `ORT_DYLIB_PATH` (ort's own variable) is read here,
    /// at the edge, after the flag and `LRAI_ORT_LIB`.
    pub fn backend_config(&self) -> BackendConfig {
        let mut ort_candidates = Vec::new();
        if let Some(p) = &self.ort_lib {
            ort_candidates.push(OrtCandidate {
                origin: "--ort-lib/LRAI_ORT_LIB".into(),
                path: p.clone(),
            });
        }
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            ort_candidates.push(OrtCandidate {
                origin: "ORT_DYLIB_PATH".into(),
                path: PathBuf::from(p),
            });
        }
        BackendConfig {
            choice: self.backend,
            ort_candidates,
            python: Some("python3".into()),
        }
    }

    /// Session options from the flags.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            intra_op_threads: self.intra_op_threads,
            inter_op_threads: self.inter_op_threads,
            optimization: self.graph_optimization,
            execution_providers: self.execution_providers.clone(),
            ..SessionOptions::default()
        }
    }
}
