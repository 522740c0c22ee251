//! The audit log's errors. A verification failure names the line and the entry index
//! where the log stops matching what it claims.

use std::path::PathBuf;

/// What can go wrong writing, reading or verifying an audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A key file is missing or malformed.
    #[error("key file '{path}': {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log file can't be read or written.
    #[error("audit log '{path}': {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log is not what its heads sign, or not well-formed.
    #[error("audit log '{path}' fails verification at line {line} (entry {entry}): {reason}")]
    Invalid {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Index of the entry the line holds, or of the next entry for a head line.
        entry: u64,
        /// What does not match.
        reason: String,
    },
    /// A saved head (`--since-head`) that the log does not extend.
    #[error("audit log '{path}' is not consistent with the saved head '{head}': {reason}")]
    Inconsistent {
        /// The log file.
        path: PathBuf,
        /// The saved head file.
        head: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// A proof was asked for outside the log.
    #[error("{0}")]
    Range(String),
    /// The writer task is gone (the server is shutting down, or the disk failed).
    #[error("the audit log writer has stopped: {0}")]
    Closed(String),
}
