//! Element types. Every KServe v2 datatype has one variant; the wire spellings of each
//! format (KServe `"FP32"`, config.pbtxt `TYPE_FP32`, ONNX `FLOAT`, numpy `<f4`) are
//! converted in the module that owns that format. KServe's lives here because it is also
//! LRAI's display spelling.

use std::fmt;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    /// `BOOL`: one byte per element, 0 or 1.
    Bool,
    /// `UINT8`.
    U8,
    /// `UINT16`.
    U16,
    /// `UINT32`.
    U32,
    /// `UINT64`.
    U64,
    /// `INT8`.
    I8,
    /// `INT16`.
    I16,
    /// `INT32`.
    I32,
    /// `INT64`.
    I64,
    /// `FP16`: IEEE half precision.
    F16,
    /// `BF16`: bfloat16.
    BF16,
    /// `FP32`.
    F32,
    /// `FP64`.
    F64,
    /// `BYTES`: variable-length byte strings (ONNX `STRING`).
    Bytes,
}

impl DataType {
    /// Every datatype, in KServe's order.
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// Bytes per element, or `None` for variable-length `BYTES`.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }

    /// KServe v2 spelling (`"FP32"`).
    pub fn as_kserve(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::BF16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses the KServe v2 spelling; `None` when it is not one.
    pub fn from_kserve(s: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_kserve() == s)
    }

    /// True for FP16, BF16, FP32 and FP64.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_kserve())
    }
}

/// A fixed-size element type that can be viewed as bytes (`bool` is stored as `u8`).
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The datatype this Rust type stands for.
    const DTYPE: DataType;
    /// Converts to f64 for summaries and comparisons.
    fn to_f64(self) -> f64;
}

macro_rules! element {
    ($t:ty, $d:ident, |$v:ident| $conv:expr) => {
        impl Element for $t {
            const DTYPE: DataType = DataType::$d;
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn to_f64(self) -> f64 {
                let $v = self;
                $conv
            }
        }
    };
}

element!(u8, U8, |v| v as f64);
element!(u16, U16, |v| v as f64);
element!(u32, U32, |v| v as f64);
element!(u64, U64, |v| v as f64);
element!(i8, I8, |v| v as f64);
element!(i16, I16, |v| v as f64);
element!(i32, I32, |v| v as f64);
element!(i64, I64, |v| v as f64);
element!(half::f16, F16, |v| v.to_f64());
element!(half::bf16, BF16, |v| v.to_f64());
element!(f32, F32, |v| v as f64);
element!(f64, F64, |v| v);

/// Calls `$body` with `$T` bound to the Rust element type of a fixed-size datatype
/// (`Bool` maps to `u8`); evaluates `$bytes` for `BYTES`. One place turns a runtime dtype
/// into generic code (tract's `dispatch_datum!`).
#[macro_export]
macro_rules! dispatch_element {
    ($dtype:expr, $T:ident => $body:expr, bytes => $bytes:expr) => {
        match $dtype {
            $crate::DataType::Bool | $crate::DataType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DataType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DataType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DataType::U64 => {
                type $T = u64;
                $body
            }
            $crate::DataType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DataType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DataType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DataType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DataType::F16 => {
                type $T = $crate::half::f16;
                $body
            }
            $crate::DataType::BF16 => {
                type $T = $crate::half::bf16;
                $body
            }
            $crate::DataType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DataType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DataType::Bytes => $bytes,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kserve_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_kserve(d.as_kserve()), Some(d));
        }
        assert_eq!(DataType::from_kserve("FLOAT"), None);
    }

    #[test]
    fn element_sizes_match_rust_types() {
        fn size_of_dtype(d: DataType) -> usize {
            dispatch_element!(d, T => std::mem::size_of::<T>(), bytes => 0)
        }
        for d in DataType::ALL {
            assert_eq!(d.size().unwrap_or(0), size_of_dtype(d), "{d}");
        }
    }
}
