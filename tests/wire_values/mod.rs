//! Tensor values of every KServe datatype, written to and read from the wire by hand:
//! little-endian bytes, Triton's length-prefixed BYTES, JSON text, gRPC typed contents.
//! The server tests compare responses with requests through these, not through LRAI's
//! own codecs, so that a conversion bug on one side can't cancel one on the other.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use lrai_core::half::{bf16, f16};
use lrai_protocol::pb;

/// One tensor's elements.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$f` to the vector inside any variant, rewrapping the result in the same one.
macro_rules! each {
    ($v:expr, |$x:ident| $body:expr) => {
        match $v {
            Values::Bool($x) => Values::Bool($body),
            Values::U8($x) => Values::U8($body),
            Values::U16($x) => Values::U16($body),
            Values::U32($x) => Values::U32($body),
            Values::U64($x) => Values::U64($body),
            Values::I8($x) => Values::I8($body),
            Values::I16($x) => Values::I16($body),
            Values::I32($x) => Values::I32($body),
            Values::I64($x) => Values::I64($body),
            Values::F16($x) => Values::F16($body),
            Values::BF16($x) => Values::BF16($body),
            Values::F32($x) => Values::F32($body),
            Values::F64($x) => Values::F64($body),
            Values::Bytes($x) => Values::Bytes($body),
        }
    };
}

/// Applies `$f` to the vector inside any variant, returning what it returns.
macro_rules! with {
    ($v:expr, |$x:ident| $body:expr) => {
        match $v {
            Values::Bool($x) => $body,
            Values::U8($x) => $body,
            Values::U16($x) => $body,
            Values::U32($x) => $body,
            Values::U64($x) => $body,
            Values::I8($x) => $body,
            Values::I16($x) => $body,
            Values::I32($x) => $body,
            Values::I64($x) => $body,
            Values::F16($x) => $body,
            Values::BF16($x) => $body,
            Values::F32($x) => $body,
            Values::F64($x) => $body,
            Values::Bytes($x) => $body,
        }
    };
}

/// Float text as Triton writes it in JSON (rapidjson's `kWriteNanAndInfFlag`), and
/// otherwise the shortest digits that read back to the same value.
fn float_text(v: f64, shortest: String) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        shortest
    }
}

/// JSON text with Triton's bare `NaN`, `Infinity`, `-Infinity` quoted, so that a strict
/// parser (serde_json) reads it; [`Values::from_json`] reads the quoted tokens back.
pub fn quote_bare_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if let Some(t) = ["NaN", "Infinity", "-Infinity"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push_str(&format!("\"{t}\""));
            rest = &rest[t.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn parse_float(text: &str) -> f64 {
    match text.trim_matches('"') {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("not a JSON number: {other:?}")),
    }
}

impl Values {
    /// The KServe datatype.
    pub fn datatype(&self) -> &'static str {
        match self {
            Values::Bool(_) => "BOOL",
            Values::U8(_) => "UINT8",
            Values::U16(_) => "UINT16",
            Values::U32(_) => "UINT32",
            Values::U64(_) => "UINT64",
            Values::I8(_) => "INT8",
            Values::I16(_) => "INT16",
            Values::I32(_) => "INT32",
            Values::I64(_) => "INT64",
            Values::F16(_) => "FP16",
            Values::BF16(_) => "BF16",
            Values::F32(_) => "FP32",
            Values::F64(_) => "FP64",
            Values::Bytes(_) => "BYTES",
        }
    }

    pub fn len(&self) -> usize {
        with!(self, |v| v.len())
    }

    /// The first `n` elements.
    pub fn head(&self, n: usize) -> Values {
        each!(self, |v| v[..n].to_vec())
    }

    /// The elements in reverse order.
    pub fn reversed(&self) -> Values {
        each!(self, |v| v.iter().rev().cloned().collect())
    }

    /// Binary tensor data: little-endian elements, BOOL as one byte, BYTES as a 4-byte
    /// little-endian length before each element (Triton's serialisation).
    pub fn wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Values::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            Values::Bytes(v) => {
                for e in v {
                    out.extend_from_slice(&u32::try_from(e.len()).unwrap().to_le_bytes());
                    out.extend_from_slice(e);
                }
            }
            Values::U8(v) => out.extend_from_slice(v),
            Values::U16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::U32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::U64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::I8(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::I16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::I32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::F16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::BF16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Values::F64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        }
        out
    }

    /// JSON `data` (flat). Floats as their shortest round-trip digits and non-finite
    /// values as Triton's tokens; BYTES as strings (they must be UTF-8).
    pub fn json(&self) -> String {
        let items: Vec<String> = match self {
            Values::Bool(v) => v.iter().map(ToString::to_string).collect(),
            Values::U8(v) => v.iter().map(ToString::to_string).collect(),
            Values::U16(v) => v.iter().map(ToString::to_string).collect(),
            Values::U32(v) => v.iter().map(ToString::to_string).collect(),
            Values::U64(v) => v.iter().map(ToString::to_string).collect(),
            Values::I8(v) => v.iter().map(ToString::to_string).collect(),
            Values::I16(v) => v.iter().map(ToString::to_string).collect(),
            Values::I32(v) => v.iter().map(ToString::to_string).collect(),
            Values::I64(v) => v.iter().map(ToString::to_string).collect(),
            Values::F16(v) => v
                .iter()
                .map(|x| float_text(x.to_f64(), format!("{:e}", x.to_f32())))
                .collect(),
            Values::BF16(v) => v
                .iter()
                .map(|x| float_text(x.to_f64(), format!("{:e}", x.to_f32())))
                .collect(),
            Values::F32(v) => v
                .iter()
                .map(|&x| float_text(f64::from(x), format!("{x:e}")))
                .collect(),
            Values::F64(v) => v.iter().map(|&x| float_text(x, format!("{x:e}"))).collect(),
            Values::Bytes(v) => v
                .iter()
                .map(|e| serde_json::to_string(std::str::from_utf8(e).unwrap()).unwrap())
                .collect(),
        };
        format!("[{}]", items.join(","))
    }

    /// Reads a flat JSON `data` array of `datatype` from its text, numbers exactly.
    // FP32 through f64 is exact: the server writes an FP32's shortest digits.
    #[allow(clippy::cast_possible_truncation)]
    pub fn from_json(datatype: &str, text: &str) -> Values {
        if datatype == "BYTES" {
            let v: Vec<String> = serde_json::from_str(text).unwrap();
            return Values::Bytes(v.into_iter().map(String::into_bytes).collect());
        }
        let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
        let items: Vec<&str> = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        macro_rules! ints {
            ($variant:ident) => {
                Values::$variant(
                    items
                        .iter()
                        .map(|s| {
                            s.parse()
                                .unwrap_or_else(|_| panic!("{datatype}: {s:?} in {text}"))
                        })
                        .collect(),
                )
            };
        }
        match datatype {
            "BOOL" => Values::Bool(items.iter().map(|s| *s == "true").collect()),
            "UINT8" => ints!(U8),
            "UINT16" => ints!(U16),
            "UINT32" => ints!(U32),
            "UINT64" => ints!(U64),
            "INT8" => ints!(I8),
            "INT16" => ints!(I16),
            "INT32" => ints!(I32),
            "INT64" => ints!(I64),
            "FP16" => Values::F16(
                items
                    .iter()
                    .map(|s| f16::from_f64(parse_float(s)))
                    .collect(),
            ),
            "BF16" => Values::BF16(
                items
                    .iter()
                    .map(|s| bf16::from_f64(parse_float(s)))
                    .collect(),
            ),
            "FP32" => Values::F32(items.iter().map(|s| parse_float(s) as f32).collect()),
            "FP64" => Values::F64(items.iter().map(|s| parse_float(s)).collect()),
            other => panic!("unknown datatype {other}"),
        }
    }

    /// Reads binary tensor data of `datatype` (for messages; `None` if malformed).
    pub fn from_wire(datatype: &str, bytes: &[u8]) -> Option<Values> {
        macro_rules! le {
            ($variant:ident, $t:ty) => {{
                let n = std::mem::size_of::<$t>();
                if bytes.len() % n != 0 {
                    return None;
                }
                Values::$variant(
                    bytes
                        .chunks_exact(n)
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                )
            }};
        }
        Some(match datatype {
            "BOOL" => Values::Bool(bytes.iter().map(|&b| b != 0).collect()),
            "UINT8" => Values::U8(bytes.to_vec()),
            "UINT16" => le!(U16, u16),
            "UINT32" => le!(U32, u32),
            "UINT64" => le!(U64, u64),
            "INT8" => le!(I8, i8),
            "INT16" => le!(I16, i16),
            "INT32" => le!(I32, i32),
            "INT64" => le!(I64, i64),
            "FP16" => le!(F16, f16),
            "BF16" => le!(BF16, bf16),
            "FP32" => le!(F32, f32),
            "FP64" => le!(F64, f64),
            "BYTES" => {
                let mut out = Vec::new();
                let mut rest = bytes;
                while !rest.is_empty() {
                    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                    out.push(rest.get(4..4 + len)?.to_vec());
                    rest = &rest[4 + len..];
                }
                Values::Bytes(out)
            }
            _ => return None,
        })
    }

    /// gRPC typed contents (FP16 and BF16 have none: they go in `fp32_contents`, which
    /// the server must refuse).
    pub fn contents(&self) -> pb::InferTensorContents {
        let mut c = pb::InferTensorContents::default();
        match self {
            Values::Bool(v) => c.bool_contents.clone_from(v),
            Values::U8(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
            Values::U16(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
            Values::U32(v) => c.uint_contents.clone_from(v),
            Values::U64(v) => c.uint64_contents.clone_from(v),
            Values::I8(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
            Values::I16(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
            Values::I32(v) => c.int_contents.clone_from(v),
            Values::I64(v) => c.int64_contents.clone_from(v),
            Values::F32(v) => c.fp32_contents.clone_from(v),
            Values::F64(v) => c.fp64_contents.clone_from(v),
            Values::Bytes(v) => {
                c.bytes_contents = v.iter().map(|e| bytes::Bytes::from(e.clone())).collect();
            }
            // There is no field for them; the server must refuse whichever is used.
            Values::F16(v) => c.fp32_contents = v.iter().map(|x| x.to_f32()).collect(),
            Values::BF16(v) => c.fp32_contents = v.iter().map(|x| x.to_f32()).collect(),
        }
        c
    }
}

/// Values at the edges of each datatype's range, 8 of each, keyed by the suffix the
/// `dtypes_identity` fixture gives its inputs (`x_int64` → `y_int64`). Integers at both
/// limits and beyond 2^32 and 2^53; UINT64 beyond 2^63; FP64 that FP32 can't hold;
/// floats at max, subnormal, -0, ±inf and NaN (quiet, as JSON readers make it); BYTES with NULs, multi-byte UTF-8, quotes and
/// a long element. BYTES here are UTF-8 (JSON must carry them); [`binary_strings`]
/// has the others.
pub fn edge_values() -> Vec<(&'static str, Values)> {
    vec![
        (
            "bool",
            Values::Bool(vec![true, false, true, true, false, false, true, false]),
        ),
        ("uint8", Values::U8(vec![0, 1, 127, 128, 200, 254, 255, 7])),
        (
            "uint16",
            Values::U16(vec![0, 1, 255, 256, 32768, 65534, 65535, 7]),
        ),
        (
            "uint32",
            Values::U32(vec![
                0,
                1,
                65536,
                2_147_483_651,
                4_294_967_294,
                u32::MAX,
                7,
                16_777_217,
            ]),
        ),
        (
            "uint64",
            Values::U64(vec![
                0,
                1,
                (1 << 53) + 1,
                1 << 63,
                (1 << 63) + 1,
                u64::MAX - 1,
                u64::MAX,
                (1 << 32) + 5,
            ]),
        ),
        ("int8", Values::I8(vec![-128, -127, -1, 0, 1, 126, 127, 7])),
        (
            "int16",
            Values::I16(vec![-32768, -32767, -1, 0, 1, 32766, 32767, 7]),
        ),
        (
            "int32",
            Values::I32(vec![
                i32::MIN,
                i32::MIN + 1,
                -1,
                0,
                1,
                7,
                i32::MAX - 1,
                i32::MAX,
            ]),
        ),
        (
            "int64",
            Values::I64(vec![
                i64::MIN,
                i64::MIN + 1,
                -(1 << 40) - 7,
                -1,
                (1 << 40) + 5,
                (1 << 53) + 1,
                i64::MAX - 1,
                i64::MAX,
            ]),
        ),
        (
            "float16",
            Values::F16(vec![
                f16::MAX,
                f16::MIN,
                f16::from_bits(1), // smallest subnormal, 2^-24
                f16::MIN_POSITIVE,
                f16::NEG_ZERO,
                f16::INFINITY,
                f16::NEG_INFINITY,
                f16::NAN,
            ]),
        ),
        (
            "float32",
            Values::F32(vec![
                f32::MAX,
                f32::MIN,
                f32::from_bits(1), // smallest subnormal
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                0.1,
            ]),
        ),
        (
            "float64",
            Values::F64(vec![
                0.1,
                1e300,
                1.0 + 2f64.powi(-40),
                f64::from_bits(1), // 5e-324
                -1.0 / 3.0,
                -0.0,
                f64::NEG_INFINITY,
                f64::NAN,
            ]),
        ),
        (
            "string",
            Values::Bytes(vec![
                b"a\0b".to_vec(),
                Vec::new(),
                "ünï ✓ \u{10FFFF}".as_bytes().to_vec(),
                vec![b'x'; 300],
                b"\0".to_vec(),
                br#"comma, "quote" \back"#.to_vec(),
                b"\n\t\r".to_vec(),
                b"end".to_vec(),
            ]),
        ),
    ]
}

/// BYTES that are not UTF-8 (and NULs), which only binary wires can carry.
pub fn binary_strings() -> Values {
    Values::Bytes(vec![
        b"ok".to_vec(),
        b"\xff\xfe binary".to_vec(),
        b"\0\0".to_vec(),
        b"\xc3".to_vec(), // a truncated two-byte sequence
        Vec::new(),
        b"\x80\x00\xc0\xaf".to_vec(),
        "ünï".as_bytes().to_vec(),
        vec![0xf5; 5],
    ])
}
