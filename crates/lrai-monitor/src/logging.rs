//! Log setup: one `tracing` subscriber for the process, writing to stderr (stdout is for
//! results), filtered by `--log-level`/`LRAI_LOG`, as text or JSON. Called once, from
//! `main`; libraries only emit events.

use tracing_subscriber::EnvFilter;

use crate::{MonitorError, Result};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging configuration.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct LogConfig {
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// `info,lrai_sched=debug`.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "log-level",
            env = "LRAI_LOG",
            default_value = "info",
            global = true
        )
    )]
    pub filter: String,

    /// Log format: text or json.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "log-format",
            env = "LRAI_LOG_FORMAT",
            value_enum,
            default_value = "text",
            global = true
        )
    )]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Installs the global subscriber.
///
/// # Errors
/// [`MonitorError::LogFilter`] when the filter does not parse, [`MonitorError::Subscriber`]
/// when one is already installed.
pub fn init(config: &LogConfig) -> Result<()> {
    let filter = EnvFilter::try_new(&config.filter).map_err(|e| MonitorError::LogFilter {
        filter: config.filter.clone(),
        reason: e.to_string(),
    })?;
    // Colours only on a terminal: logs redirected to files or collectors stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| MonitorError::Subscriber(e.to_string()))
}
