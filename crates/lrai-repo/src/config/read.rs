//! Typed reads of text-format fields against the schema: strings, protobuf integer
//! literals with range checks, booleans, enums by name or number, sub-messages, and the
//! bookkeeping for non-repeated fields and `oneof`s. Errors carry the value's position.

use std::collections::{BTreeMap, BTreeSet};

use lrai_core::DataType;

use super::model::{datatype_from_config, datatype_from_config_number};
use super::text::{Field, Message, Pos, Scalar, Value};
use crate::{RepoError, Result};

/// Tracks which non-repeated fields of one message have been seen.
#[derive(Default)]
pub(crate) struct Seen {
    first: BTreeMap<String, Pos>,
    warned: BTreeSet<String>,
}

impl Seen {
    /// Errors when `f` was already given.
    pub(crate) fn once(&mut self, f: &Field, path: &str) -> Result<()> {
        if let Some(first) = self.first.get(&f.name) {
            return Err(RepoError::DuplicateField {
                pos: f.pos,
                field: path.to_string(),
                first: *first,
            });
        }
        self.first.insert(f.name.clone(), f.pos);
        Ok(())
    }

    /// Errors when another member of the oneof `group` was already given.
    pub(crate) fn oneof(&self, f: &Field, path: &str, prefix: &str, group: &[&str]) -> Result<()> {
        for other in group.iter().filter(|o| **o != f.name) {
            if let Some(pos) = self.first.get(*other) {
                return Err(RepoError::OneofConflict {
                    pos: f.pos,
                    field: path.to_string(),
                    other: join(prefix, other),
                    other_pos: *pos,
                });
            }
        }
        Ok(())
    }

    /// True the first time a name is passed (one warning per field name per message).
    pub(crate) fn first_warning(&mut self, name: &str) -> bool {
        self.warned.insert(name.to_string())
    }
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Names a field of a list element: `input 'x' dims` once the name is known, else
/// `input[0].dims`.
pub(crate) fn label(prefix: &str, name: &str, field: &str) -> String {
    if name.is_empty() {
        join(prefix, field)
    } else {
        let list = prefix.split('[').next().unwrap_or(prefix);
        format!("{list} '{name}' {field}")
    }
}

pub(crate) fn type_error(f: &Field, path: &str, expected: &str) -> RepoError {
    RepoError::FieldType {
        pos: f.value_pos,
        field: path.to_string(),
        expected: expected.to_string(),
        found: f.value.describe(),
    }
}

pub(crate) fn string(f: &Field, path: &str) -> Result<String> {
    match &f.value {
        Value::Scalar(Scalar::Str(s)) => Ok(s.clone()),
        _ => Err(type_error(f, path, "a string")),
    }
}

pub(crate) fn message<'a>(f: &'a Field, path: &str) -> Result<&'a Message> {
    match &f.value {
        Value::Message(m) => Ok(m),
        Value::Scalar(_) => Err(type_error(f, path, "a message in { }")),
    }
}

/// Reads a protobuf integer literal: decimal, `0x` hex or leading-`0` octal, with sign.
pub(crate) fn parse_integer(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i128::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<i128>().ok()?
    };
    // from_str_radix accepts a leading '+', which protobuf does not.
    if digits.contains('+') {
        return None;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// Reads an integer field into `T` (`type_name` names the protobuf type in errors).
pub(crate) fn integer<T: TryFrom<i128>>(f: &Field, path: &str, type_name: &str) -> Result<T> {
    let expected = || format!("an integer ({type_name})");
    let Value::Scalar(Scalar::Number(n)) = &f.value else {
        return Err(type_error(f, path, &expected()));
    };
    let value = parse_integer(n).ok_or_else(|| type_error(f, path, &expected()))?;
    T::try_from(value).map_err(|_| RepoError::FieldType {
        pos: f.value_pos,
        field: path.to_string(),
        expected: format!("{} in the range of {type_name}", expected()),
        found: n.clone(),
    })
}

pub(crate) fn boolean(f: &Field, path: &str) -> Result<bool> {
    match &f.value {
        Value::Scalar(Scalar::Ident(i)) if ["true", "True", "t"].contains(&i.as_str()) => Ok(true),
        Value::Scalar(Scalar::Ident(i)) if ["false", "False", "f"].contains(&i.as_str()) => {
            Ok(false)
        }
        Value::Scalar(Scalar::Number(n)) if n == "1" => Ok(true),
        Value::Scalar(Scalar::Number(n)) if n == "0" => Ok(false),
        _ => Err(type_error(f, path, "true or false")),
    }
}

/// Reads an enum given by name or by number.
pub(crate) fn enumeration<T: Copy>(f: &Field, path: &str, table: &[(&str, i64, T)]) -> Result<T> {
    let found = match &f.value {
        Value::Scalar(Scalar::Ident(i)) => table.iter().find(|e| e.0 == i.as_str()),
        Value::Scalar(Scalar::Number(n)) => {
            parse_integer(n).and_then(|v| table.iter().find(|e| i128::from(e.1) == v))
        }
        _ => None,
    };
    found.map(|e| e.2).ok_or_else(|| {
        let names: Vec<&str> = table.iter().map(|e| e.0).collect();
        type_error(f, path, &format!("one of {}", names.join(", ")))
    })
}

pub(crate) fn data_type(f: &Field, path: &str) -> Result<DataType> {
    let found = match &f.value {
        Value::Scalar(Scalar::Ident(i)) => datatype_from_config(i),
        Value::Scalar(Scalar::Number(n)) => parse_integer(n)
            .and_then(|v| i64::try_from(v).ok())
            .and_then(datatype_from_config_number),
        _ => None,
    };
    found.ok_or_else(|| {
        type_error(
            f,
            path,
            "a datatype (TYPE_BOOL, TYPE_UINT8..TYPE_UINT64, TYPE_INT8..TYPE_INT64, TYPE_FP16, \
             TYPE_BF16, TYPE_FP32, TYPE_FP64, TYPE_STRING)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protobuf_integer_literals() {
        assert_eq!(parse_integer("12"), Some(12));
        assert_eq!(parse_integer("-1"), Some(-1));
        assert_eq!(parse_integer("0x1f"), Some(31));
        assert_eq!(parse_integer("017"), Some(15));
        assert_eq!(parse_integer("0"), Some(0));
        assert_eq!(parse_integer("1.5"), None);
        assert_eq!(parse_integer("0x+1"), None);
        assert_eq!(parse_integer("-"), None);
        assert_eq!(
            parse_integer("99999999999999999999999999999999999999999"),
            None
        );
    }
}
