//! NaN and infinities in JSON tensor data, as Triton writes and reads them.
//!
//! JSON has no number for NaN or ±infinity. Triton writes them as the bare tokens `NaN`,
//! `Infinity` and `-Infinity` (rapidjson's `kWriteNanAndInfFlag` in
//! triton-inference-server/common `triton_json.h`) and reads those and `Inf`/`-Inf`
//! (`kParseNanAndInfFlag`); Python's `json`, which `tritonclient.http` uses, reads and
//! writes the same three tokens. Writing `null` instead (serde_json's choice) would turn
//! an infinity into NaN in every Python client, so LRAI writes Triton's tokens.
//!
//! serde_json rejects them on input. Parsing stays on serde_json's fast path; only a
//! document that fails to parse and has such tokens as array elements is parsed again
//! after [`quote_tokens`] turned each into a marker string (`"\u0000NaN"`), which the
//! float readers take as the value when the context allows it ([`from_marker`]).

use std::io;

use serde::ser::{Serialize, Serializer};

/// The bare tokens read as numbers, with their values. Longest first, so that
/// `Infinity` is not read as `Inf` followed by junk.
const TOKENS: [(&str, f64); 5] = [
    ("-Infinity", f64::NEG_INFINITY),
    ("Infinity", f64::INFINITY),
    ("-Inf", f64::NEG_INFINITY),
    ("Inf", f64::INFINITY),
    ("NaN", f64::NAN),
];

/// Marker strings' prefix: a JSON `\u0000`, which no float is ever written as.
const MARKER: &str = "\0";

/// The value a marker string stands for, and the token it replaced.
pub(crate) fn from_marker(s: &str) -> Option<(f64, &'static str)> {
    let token = s.strip_prefix(MARKER)?;
    TOKENS
        .iter()
        .find(|(t, _)| *t == token)
        .map(|&(t, v)| (v, t))
}

/// The same for a marker as it appears in JSON text (`"\u0000NaN"`, quotes included).
pub(crate) fn from_marker_text(text: &str) -> Option<(f64, &'static str)> {
    let token = text.strip_prefix("\"\\u0000")?.strip_suffix('"')?;
    TOKENS
        .iter()
        .find(|(t, _)| *t == token)
        .map(|&(t, v)| (v, t))
}

/// `json` with every bare non-finite token that is an array element replaced by its
/// marker string; `None` when there is none (then the document is simply invalid).
/// Strings, objects and numbers are left as they are.
pub(crate) fn quote_tokens(json: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len() + 64);
    // Open containers: true for an array.
    let mut stack: Vec<bool> = Vec::new();
    let mut found = false;
    let mut i = 0;
    while i < json.len() {
        let c = json[i];
        match c {
            b'"' => {
                let end = string_end(json, i)?;
                out.extend_from_slice(&json[i..end]);
                i = end;
                continue;
            }
            b'[' | b'{' => stack.push(c == b'['),
            b']' | b'}' => {
                stack.pop();
            }
            b'N' | b'I' | b'-' if stack.last() == Some(&true) => {
                if let Some(token) = token_at(json, i) {
                    out.extend_from_slice(b"\"\\u0000");
                    out.extend_from_slice(token.as_bytes());
                    out.push(b'"');
                    i += token.len();
                    found = true;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    found.then_some(out)
}

/// The index just past the string that starts at `start` (a `"`), or `None` if it
/// never ends.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The token at `i`, if one starts there and ends at a delimiter.
fn token_at(json: &[u8], i: usize) -> Option<&'static str> {
    let rest = &json[i..];
    TOKENS.iter().map(|(t, _)| *t).find(|t| {
        rest.starts_with(t.as_bytes())
            && rest
                .get(t.len())
                .is_none_or(|&c| matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
    })
}

/// A float as Triton writes it: a number, or a bare `NaN`/`Infinity`/`-Infinity`.
/// Bare tokens need [`TritonFormatter`] (see [`to_writer`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonFloat<T>(pub(crate) T);

fn token(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

impl Serialize for JsonFloat<f32> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f32(self.0)
        } else {
            s.serialize_bytes(token(f64::from(self.0)).as_bytes())
        }
    }
}

impl Serialize for JsonFloat<f64> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_bytes(token(self.0).as_bytes())
        }
    }
}

/// serde_json's compact formatter, except that byte arrays are written as they are:
/// that is how [`JsonFloat`] gets a bare token into the output (serde_json writes every
/// non-finite float as `null` and has no other way to emit raw text).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TritonFormatter;

impl serde_json::ser::Formatter for TritonFormatter {
    fn write_byte_array<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        value: &[u8],
    ) -> io::Result<()> {
        writer.write_all(value)
    }
}

/// Writes `value` as JSON with [`TritonFormatter`].
///
/// # Errors
/// serde_json's, from `value`'s `Serialize`.
pub(crate) fn to_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(
        out,
        TritonFormatter,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(json: &str) -> Option<String> {
        quote_tokens(json.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn quotes_tokens_that_are_array_elements_only() {
        assert_eq!(
            quoted(r#"{"data":[1,NaN, -Infinity,Infinity ,-Inf,Inf]}"#).unwrap(),
            r#"{"data":[1,"\u0000NaN", "\u0000-Infinity","\u0000Infinity" ,"\u0000-Inf","\u0000Inf"]}"#
        );
        // Nested rows, and arrays inside objects inside arrays.
        assert_eq!(
            quoted(r#"[{"d":[[NaN],[-1]]}]"#).unwrap(),
            r#"[{"d":[["\u0000NaN"],[-1]]}]"#
        );
        // Not in strings, not as object values, not as parts of other words.
        assert_eq!(quoted(r#"{"a":"NaN [NaN]","b":NaN}"#), None);
        assert_eq!(quoted(r#"[NaNa, Infinityx, -1, -Inx]"#), None);
        assert_eq!(quoted(r#"["\"NaN", 2]"#), None);
        // An unterminated string: not ours to repair.
        assert_eq!(quoted(r#"[NaN, "abc"#), None);
    }

    #[test]
    fn markers_read_back_as_their_values() {
        let (v, t) = from_marker("\0-Infinity").unwrap();
        assert_eq!((v, t), (f64::NEG_INFINITY, "-Infinity"));
        assert!(from_marker("\0NaN").unwrap().0.is_nan());
        assert_eq!(from_marker("NaN"), None);
        assert_eq!(from_marker("\0nan"), None);
        assert_eq!(
            from_marker_text(r#""\u0000Inf""#),
            Some((f64::INFINITY, "Inf"))
        );
        assert_eq!(from_marker_text(r#""Inf""#), None);
    }

    #[test]
    fn writes_bare_tokens_for_non_finite_floats() {
        let v = vec![
            JsonFloat(f32::NAN),
            JsonFloat(f32::INFINITY),
            JsonFloat(f32::NEG_INFINITY),
            JsonFloat(-0.0),
            JsonFloat(0.1),
        ];
        let mut out = Vec::new();
        to_writer(&mut out, &v).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[NaN,Infinity,-Infinity,-0.0,0.1]"
        );
        let mut out = Vec::new();
        to_writer(&mut out, &[JsonFloat(f64::NEG_INFINITY), JsonFloat(1e300)]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[-Infinity,1e+300]");
    }
}
