//! Declared (possibly symbolic) shapes, as models state them, and the checks that
//! match a concrete shape against one.

use std::collections::BTreeMap;
use std::fmt;

use crate::DataType;

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named free size (ONNX `dim_param`, e.g. `batch`); every use of the same name
    /// in one model must take the same value.
    Symbol(String),
    /// A free size without a name (ONNX dim with neither value nor param, Triton `-1`).
    Any,
}

impl Dim {
    /// The fixed size, if any.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Symbol(_) | Dim::Any => None,
        }
    }

    /// KServe / Triton spelling of the dim: the size, or -1 when free.
    pub fn to_kserve(&self) -> i64 {
        match self {
            Dim::Fixed(n) => i64::try_from(*n).unwrap_or(i64::MAX),
            Dim::Symbol(_) | Dim::Any => -1,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Any => f.write_str("?"),
        }
    }
}

/// A named tensor as a model declares it: name, datatype and (possibly symbolic) dims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Declared dims; `None` when the model does not state a rank.
    pub dims: Option<Vec<Dim>>,
}

impl TensorSpec {
    /// The dims as text, `[batch,64]`, or `[...]` for unknown rank.
    pub fn dims_text(&self) -> String {
        self.dims
            .as_deref()
            .map_or_else(|| "[...]".to_string(), format_dims)
    }
}

/// Formats a declared shape as `[batch,3,224,224]`.
pub fn format_dims(dims: &[Dim]) -> String {
    let inner: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", inner.join(","))
}

/// Formats a concrete shape as `[4,3,224,224]`.
pub fn format_shape(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", inner.join(","))
}

/// Number of elements of a concrete shape, `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Why a concrete shape does not fit a declared one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeMismatch {
    /// Different number of dimensions.
    Rank {
        /// Declared rank.
        expected: usize,
        /// Given rank.
        got: usize,
    },
    /// A fixed dimension has another size.
    Fixed {
        /// Axis index.
        axis: usize,
        /// Declared size.
        expected: usize,
        /// Given size.
        got: usize,
    },
    /// A symbol was already bound to another value (by an earlier axis or input).
    Symbol {
        /// Axis index.
        axis: usize,
        /// The symbol's name.
        symbol: String,
        /// The value bound earlier.
        bound: usize,
        /// The value given here.
        got: usize,
    },
}

impl fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeMismatch::Rank { expected, got } => {
                write!(f, "expected {expected} dimensions, got {got}")
            }
            ShapeMismatch::Fixed {
                axis,
                expected,
                got,
            } => write!(f, "dimension {axis} must be {expected}, got {got}"),
            ShapeMismatch::Symbol {
                axis,
                symbol,
                bound,
                got,
            } => write!(
                f,
                "dimension {axis} ('{symbol}') must equal {bound} as elsewhere in this request, got {got}"
            ),
        }
    }
}

/// Matches `shape` against `dims` by ONNX Runtime's rules: a declared scalar (rank 0)
/// takes any shape (ONNX Runtime checks nothing there, and Triton clients send scalars as
/// `[1]`); otherwise the rank and every fixed size must match. Free dims are never an
/// error: a named symbol (ONNX `dim_param`) is bound in `bindings`, shared across the
/// inputs of one request, and a value that disagrees with an earlier binding is pushed
/// onto `warnings` (ONNX Runtime runs such requests, so LRAI does too).
///
/// # Errors
/// The first rank or fixed-size mismatch found.
pub fn match_dims(
    dims: &[Dim],
    shape: &[usize],
    bindings: &mut BTreeMap<String, usize>,
    warnings: &mut Vec<ShapeMismatch>,
) -> Result<(), ShapeMismatch> {
    if dims.is_empty() {
        return Ok(());
    }
    if dims.len() != shape.len() {
        return Err(ShapeMismatch::Rank {
            expected: dims.len(),
            got: shape.len(),
        });
    }
    for (axis, (dim, &got)) in dims.iter().zip(shape).enumerate() {
        match dim {
            Dim::Fixed(expected) if *expected != got => {
                return Err(ShapeMismatch::Fixed {
                    axis,
                    expected: *expected,
                    got,
                });
            }
            Dim::Symbol(name) => match bindings.get(name) {
                Some(&bound) if bound != got => warnings.push(ShapeMismatch::Symbol {
                    axis,
                    symbol: name.clone(),
                    bound,
                    got,
                }),
                Some(_) => {}
                None => {
                    bindings.insert(name.clone(), got);
                }
            },
            Dim::Fixed(_) | Dim::Any => {}
        }
    }
    Ok(())
}

/// Makes a concrete shape from declared dims: fixed sizes stay, symbols take their value
/// from `bindings` or `default`.
pub fn concretize(dims: &[Dim], bindings: &BTreeMap<String, usize>, default: usize) -> Vec<usize> {
    dims.iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbol(s) => bindings.get(s).copied().unwrap_or(default),
            Dim::Any => default,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Dim {
        Dim::Symbol(s.into())
    }

    #[test]
    fn warns_when_a_shared_symbol_disagrees() {
        let mut b = BTreeMap::new();
        let mut w = Vec::new();
        match_dims(&[sym("batch"), Dim::Fixed(64)], &[4, 64], &mut b, &mut w).unwrap();
        match_dims(&[sym("batch"), sym("seq")], &[3, 7], &mut b, &mut w).unwrap();
        assert_eq!(
            w,
            vec![ShapeMismatch::Symbol {
                axis: 0,
                symbol: "batch".into(),
                bound: 4,
                got: 3
            }]
        );
    }

    #[test]
    fn rejects_wrong_rank_and_fixed_dim() {
        let mut b = BTreeMap::new();
        let mut w = Vec::new();
        assert!(matches!(
            match_dims(&[Dim::Fixed(2)], &[2, 2], &mut b, &mut w),
            Err(ShapeMismatch::Rank {
                expected: 1,
                got: 2
            })
        ));
        let e = match_dims(&[Dim::Any, Dim::Fixed(64)], &[1, 63], &mut b, &mut w).unwrap_err();
        assert_eq!(e.to_string(), "dimension 1 must be 64, got 63");
        assert!(w.is_empty());
    }

    #[test]
    fn a_declared_scalar_takes_any_shape_as_onnx_runtime_does() {
        let mut b = BTreeMap::new();
        let mut w = Vec::new();
        for shape in [&[][..], &[1], &[1, 1], &[3]] {
            match_dims(&[], shape, &mut b, &mut w).unwrap();
        }
        assert!(w.is_empty());
    }

    #[test]
    fn unnamed_dims_are_independent() {
        let mut b = BTreeMap::new();
        let mut w = Vec::new();
        let dims = [Dim::Any, Dim::Fixed(3), Dim::Any, Dim::Any];
        match_dims(&dims, &[1, 3, 48, 192], &mut b, &mut w).unwrap();
        assert!(w.is_empty() && b.is_empty());
    }

    #[test]
    fn concretizes_with_bindings_and_default() {
        let mut b = BTreeMap::new();
        b.insert("batch".to_string(), 4);
        assert_eq!(
            concretize(&[sym("batch"), sym("seq"), Dim::Fixed(3)], &b, 1),
            vec![4, 1, 3]
        );
    }
}
