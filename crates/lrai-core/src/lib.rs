//! LRAI's core data types: [`DataType`], declared shapes ([`Dim`]), the [`Tensor`] over
//! `bytes::Bytes` storage, batch [`concat`]/[`split`] along axis 0, and `.npy`/`.npz` files.
//!
//! Nothing here is async, knows ONNX, or decides I/O policy: the backend crate converts
//! tensors for its engines, the protocol crate decodes them off the wire, and
//! `lrai-onnx` owns the ONNX spelling of datatypes.

use std::path::{Path, PathBuf};

pub mod confine;
pub mod dtype;
pub mod npy;
pub mod random;
pub mod shape;
pub mod stats;
pub mod tensor;

pub use dtype::{DataType, Element};
pub use half;
pub use shape::{Dim, ShapeMismatch, TensorSpec, format_dims, format_shape};
pub use tensor::{Tensor, concat, split};

/// Errors from tensor construction, access, batching and `.npy` files.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The byte length does not match datatype × shape.
    #[error(
        "{dtype} tensor of shape {} needs {expected} bytes, got {got}",
        format_shape(shape)
    )]
    ByteLength {
        /// Datatype.
        dtype: DataType,
        /// Shape.
        shape: Vec<usize>,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The element count of a shape overflows `usize`.
    #[error("shape {} is too large", format_shape(shape))]
    ShapeOverflow {
        /// Shape.
        shape: Vec<usize>,
    },
    /// A BYTES tensor holds a different number of elements than its shape.
    #[error(
        "BYTES tensor of shape {} needs {expected} elements, got {got}",
        format_shape(shape)
    )]
    BytesElementCount {
        /// Shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements found.
        got: usize,
    },
    /// BYTES data is not a sequence of (4-byte length, bytes) elements.
    #[error("malformed BYTES data: {reason}")]
    BadBytesElement {
        /// What is wrong.
        reason: String,
    },
    /// Typed access with the wrong element type.
    #[error("expected datatype {expected}, got {got}")]
    DataTypeMismatch {
        /// Requested datatype.
        expected: DataType,
        /// The tensor's datatype.
        got: DataType,
    },
    /// Reshape to a shape with another element count.
    #[error(
        "cannot reshape {} to {}: element counts differ",
        format_shape(from),
        format_shape(to)
    )]
    ReshapeCount {
        /// Original shape.
        from: Vec<usize>,
        /// Requested shape.
        to: Vec<usize>,
    },
    /// Concatenation of no tensors.
    #[error("cannot concatenate an empty list of tensors")]
    EmptyBatch,
    /// Parts of a batch do not fit together.
    #[error("batch parts do not fit: {reason}")]
    BatchMismatch {
        /// What differs.
        reason: String,
    },
    /// A `.npy`/`.npz` payload does not parse.
    #[error("invalid .npy data: {reason}")]
    Npy {
        /// What is wrong.
        reason: String,
    },
    /// A `.npy`/`.npz` file does not parse.
    #[error("'{}' is not a readable .npy/.npz file: {reason}", path.display())]
    NpyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// File I/O (the message names the path: fs-err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CoreError {
    /// Attaches the file a `.npy` error came from.
    pub fn in_file(self, path: &Path) -> CoreError {
        match self {
            CoreError::Npy { reason } => CoreError::NpyFile {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        }
    }
}

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
