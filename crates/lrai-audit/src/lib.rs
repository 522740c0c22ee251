//! LRAI's tamper-evident audit log. It owns the log file format (JSON lines: entries and
//! signed tree heads, see `docs/security.md`), the RFC 6962 / RFC 9162 Merkle tree over
//! the entries ([`merkle`]), Ed25519-signed tree heads ([`record::TreeHead`]), the writer
//! the server hands records to ([`AuditLog`], off the request path), verification
//! ([`verify::verify_log`]) and inclusion and consistency proofs ([`prove`]).
//!
//! It knows nothing of HTTP or gRPC: `lrai-protocol` calls [`AuditLog::record_admin`] and
//! [`AuditLog::record_inference`] from its handlers, and the binary wires the flags and
//! the `lrai audit` commands.

pub mod error;
pub mod key;
mod log;
pub mod merkle;
pub mod prove;
pub mod record;
pub mod verify;

pub use error::AuditError;
pub use log::{AuditConfig, AuditLog, AuditStats, InferenceRecord, outcome_of};
pub use record::{AdminAction, Entry, Event, TreeHead};
