//! A tensor's JSON `data`, read straight into the tensor's little-endian storage and
//! written straight from it.
//!
//! This is the hot path of JSON inference (a mobilenet request is 150k numbers), so no
//! `serde_json::Value` is built: a `DeserializeSeed` walks the array (flat or nested,
//! row-major) and appends each element's bytes to one `Vec<u8>` that becomes the
//! tensor's `Bytes` without a copy. Integers arrive as serde_json's exact `u64`/`i64`
//! (never through `f64`) and are range-checked for their datatype. FP64 elements are
//! parsed from their text with `str::parse`, because serde_json's default float
//! parsing is off by one ulp for about 15% of doubles (measured). FP32 keeps serde's
//! faster `f64` path: it reads back every shortest-form f32 exactly (checked on every
//! 7th f32 bit pattern, 611M values). A mobilenet input (150k FP32, 1.6 MB of JSON)
//! decodes in 6-10 ms on the 2-vCPU dev machine, as fast as `serde_json::Value`. A JSON
//! `null` reads as NaN for float datatypes (serde_json and JavaScript write NaN as
//! `null`). NaN and infinities are written, and read, as Triton's bare tokens `NaN`,
//! `Infinity`, `-Infinity` (see `json_nonfinite`).
//!
//! Nesting is limited as in Triton (`HTTP_MAX_JSON_NESTING_DEPTH` in
//! triton-inference-server/server `src/common.h`): `data` itself is depth 0 and an
//! element at depth [`MAX_JSON_DEPTH`] is refused, so at most 99 arrays nest. The sink
//! counts the depth as arrays open and close, with no second pass over the bytes and no
//! cost per element (passing the depth along with each element cost 2.5% of a mobilenet
//! decode in instructions, measured with the `json_decode` example under cachegrind).
//! Without the limit serde_json would stop at its own recursion limit of 128 (counted
//! from the document's root), and FP64, which re-reads each nested row from its text
//! with a fresh parser, would recurse once per level with no limit at all.

use std::cell::Cell;
use std::fmt;

use bytes::Bytes;
use lrai_core::half::{bf16, f16};
use lrai_core::{DataType, Tensor};
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IgnoredAny, SeqAccess, Unexpected, Visitor,
};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;

use super::json_nonfinite::{JsonFloat, from_marker, from_marker_text};
use crate::error::TensorRef;

/// What [`parse_data`] needs to know about the tensor being read.
#[derive(Debug)]
pub(crate) struct DataSpec<'a> {
    /// Named in error messages.
    pub(crate) tensor: &'a TensorRef,
    /// Element type.
    pub(crate) dtype: DataType,
    /// Elements the shape needs; more are counted but not stored.
    pub(crate) expected: usize,
    /// Upper bound for preallocation, in elements (the JSON cannot hold more).
    pub(crate) prealloc: usize,
    /// Set when the data nests deeper than [`MAX_JSON_DEPTH`], so the caller can report
    /// that rather than serde's generic error.
    pub(crate) too_deep: Cell<bool>,
    /// The document's bare `NaN`/`Infinity` tokens were turned into marker strings
    /// (`json_nonfinite::quote_tokens`): floats take them as values.
    pub(crate) tokens: bool,
}

impl<'a> DataSpec<'a> {
    pub(crate) fn new(
        tensor: &'a TensorRef,
        dtype: DataType,
        expected: usize,
        prealloc: usize,
    ) -> DataSpec<'a> {
        DataSpec {
            tensor,
            dtype,
            expected,
            prealloc,
            too_deep: Cell::new(false),
            tokens: false,
        }
    }
}

/// Triton's limit on JSON nesting in a tensor's `data`: an element at this depth (the
/// `data` value itself being depth 0) is refused.
pub(crate) const MAX_JSON_DEPTH: usize = 100;

/// Storage parsed from JSON `data` and the number of elements seen.
#[derive(Debug)]
pub(crate) struct ParsedData {
    /// Little-endian storage (Triton-serialised for BYTES); holds at most
    /// `expected` elements.
    pub(crate) bytes: Bytes,
    /// Elements in the JSON, which may exceed `expected`.
    pub(crate) count: usize,
}

/// Parses one `data` value: an array (possibly nested) or a lone scalar.
///
/// # Errors
/// serde errors for values of the wrong type or out of the datatype's range; their
/// message names the tensor and serde_json adds the position.
pub(crate) fn parse_data<'de, D: Deserializer<'de>>(
    d: D,
    spec: &DataSpec<'_>,
) -> Result<ParsedData, D::Error> {
    let cap = spec.expected.min(spec.prealloc);
    macro_rules! num {
        ($t:ty) => {{
            let mut sink = NumSink::<$t>::new(spec, cap);
            read_into(&mut sink, spec, d)?;
            sink.out.finish()
        }};
    }
    Ok(match spec.dtype {
        DataType::Bool => {
            let mut sink = BoolSink(Out::new(spec, cap));
            read_into(&mut sink, spec, d)?;
            sink.0.finish()
        }
        DataType::U8 => num!(u8),
        DataType::U16 => num!(u16),
        DataType::U32 => num!(u32),
        DataType::U64 => num!(u64),
        DataType::I8 => num!(i8),
        DataType::I16 => num!(i16),
        DataType::I32 => num!(i32),
        DataType::I64 => num!(i64),
        DataType::F16 => num!(f16),
        DataType::BF16 => num!(bf16),
        DataType::F32 => num!(f32),
        DataType::F64 => {
            let mut sink = F64Sink(Out::new(spec, cap));
            read_into(&mut sink, spec, d)?;
            sink.0.finish()
        }
        DataType::Bytes => {
            let mut sink = BytesSink(Out::new(spec, 0));
            read_into(&mut sink, spec, d)?;
            sink.0.finish()
        }
    })
}

/// Reads a whole `data` value into `sink`, noting in `spec` when it was too deep.
fn read_into<'de, S: Sink, D: Deserializer<'de>>(
    sink: &mut S,
    spec: &DataSpec<'_>,
    d: D,
) -> Result<(), D::Error> {
    let read = ElemSeed {
        sink: &mut *sink,
        tensor: spec.tensor,
    }
    .deserialize(d);
    if read.is_err() && sink.out().too_deep {
        spec.too_deep.set(true);
    }
    read
}

/// The growing storage: stores up to `expected` elements, counts all.
struct Out {
    buf: Vec<u8>,
    count: usize,
    expected: usize,
    /// Depth of the elements being read (`data` itself is 0).
    depth: usize,
    /// The data nests deeper than [`MAX_JSON_DEPTH`].
    too_deep: bool,
    /// Marker strings stand for non-finite floats ([`DataSpec::tokens`]).
    tokens: bool,
}

impl Out {
    fn new(spec: &DataSpec<'_>, cap_elems: usize) -> Out {
        let size = spec.dtype.size().unwrap_or(1);
        Out {
            buf: Vec::with_capacity(cap_elems.saturating_mul(size)),
            count: 0,
            expected: spec.expected,
            depth: 0,
            too_deep: false,
            tokens: spec.tokens,
        }
    }

    /// True when the element should be stored (not past the expected count).
    fn take(&mut self) -> bool {
        self.count += 1;
        self.count <= self.expected
    }

    fn finish(self) -> ParsedData {
        ParsedData {
            bytes: Bytes::from(self.buf),
            count: self.count,
        }
    }
}

/// "an FP32 number for input 'x'": the tail of serde's "invalid type" messages.
struct Expecting<'a> {
    what: &'static str,
    tensor: &'a TensorRef,
}

impl Expected for Expecting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {}", self.what, self.tensor)
    }
}

/// Receives scalar elements; every method rejects by default.
trait Sink {
    /// What an element must be, e.g. "an FP32 number".
    fn what(&self) -> &'static str;

    /// The storage (and the nesting depth it tracks).
    fn out(&mut self) -> &mut Out;

    fn on_bool<E: de::Error>(&mut self, v: bool, exp: &Expecting<'_>) -> Result<(), E> {
        Err(E::invalid_type(Unexpected::Bool(v), exp))
    }
    fn on_u64<E: de::Error>(&mut self, v: u64, exp: &Expecting<'_>) -> Result<(), E> {
        Err(E::invalid_type(Unexpected::Unsigned(v), exp))
    }
    fn on_i64<E: de::Error>(&mut self, v: i64, exp: &Expecting<'_>) -> Result<(), E> {
        Err(E::invalid_type(Unexpected::Signed(v), exp))
    }
    fn on_f64<E: de::Error>(&mut self, v: f64, exp: &Expecting<'_>) -> Result<(), E> {
        Err(E::invalid_type(Unexpected::Float(v), exp))
    }
    fn on_str<E: de::Error>(&mut self, v: &str, exp: &Expecting<'_>) -> Result<(), E> {
        Err(E::invalid_type(unexpected_str(v, self.out().tokens), exp))
    }
    fn on_null<E: de::Error>(&mut self, exp: &Expecting<'_>) -> Result<(), E> {
        Err(E::invalid_type(Unexpected::Unit, exp))
    }

    /// Reads one element (a scalar or a nested array). FP64 overrides this to read
    /// the number's text.
    fn deserialize_elem<'de, D: Deserializer<'de>>(
        &mut self,
        tensor: &TensorRef,
        d: D,
    ) -> Result<(), D::Error>
    where
        Self: Sized,
    {
        d.deserialize_any(ElemVisitor { sink: self, tensor })
    }
}

/// What serde's messages call a string: the token itself where a marker stands for one.
fn unexpected_str(v: &str, tokens: bool) -> Unexpected<'_> {
    match from_marker(v) {
        Some((_, token)) if tokens => Unexpected::Other(token),
        _ => Unexpected::Str(v),
    }
}

/// Seed for one element (or the whole `data` value).
struct ElemSeed<'s, 't, S> {
    sink: &'s mut S,
    tensor: &'t TensorRef,
}

impl<'de, S: Sink> DeserializeSeed<'de> for ElemSeed<'_, '_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.sink.deserialize_elem(self.tensor, d)
    }
}

struct ElemVisitor<'s, 't, S> {
    sink: &'s mut S,
    tensor: &'t TensorRef,
}

impl<S: Sink> ElemVisitor<'_, '_, S> {
    fn expecting(&self) -> Expecting<'_> {
        Expecting {
            what: self.sink.what(),
            tensor: self.tensor,
        }
    }
}

impl<'de, S: Sink> Visitor<'de> for ElemVisitor<'_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {}", self.sink.what(), self.tensor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.sink.out();
        let depth = out.depth + 1;
        if depth >= MAX_JSON_DEPTH {
            // Any element here is past the limit; an empty array has none.
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            out.too_deep = true;
            return Err(de::Error::custom(format_args!(
                "JSON nesting depth exceeds maximum allowed limit ({MAX_JSON_DEPTH}) in the \
                 data of {}",
                self.tensor
            )));
        }
        out.depth = depth;
        while seq
            .next_element_seed(ElemSeed {
                sink: &mut *self.sink,
                tensor: self.tensor,
            })?
            .is_some()
        {}
        self.sink.out().depth = depth - 1;
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        let exp = Expecting {
            what: self.sink.what(),
            tensor: self.tensor,
        };
        self.sink.on_bool(v, &exp)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let exp = Expecting {
            what: self.sink.what(),
            tensor: self.tensor,
        };
        self.sink.on_u64(v, &exp)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let exp = Expecting {
            what: self.sink.what(),
            tensor: self.tensor,
        };
        self.sink.on_i64(v, &exp)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let exp = Expecting {
            what: self.sink.what(),
            tensor: self.tensor,
        };
        self.sink.on_f64(v, &exp)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let exp = Expecting {
            what: self.sink.what(),
            tensor: self.tensor,
        };
        self.sink.on_str(v, &exp)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        let exp = Expecting {
            what: self.sink.what(),
            tensor: self.tensor,
        };
        self.sink.on_null(&exp)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(de::Error::invalid_type(Unexpected::Map, &self.expecting()))
    }
}

/// A fixed-size numeric element type as JSON carries it.
trait JsonNum: Copy {
    /// "an FP32 number".
    const WHAT: &'static str;
    fn from_u64(v: u64) -> Option<Self>;
    fn from_i64(v: i64) -> Option<Self>;
    /// `None` for integer types (Triton refuses `1.0` for INT32 too) and for finite
    /// values beyond the float type's range.
    fn from_f64(v: f64) -> Option<Self>;
    /// The value of JSON `null`: NaN for floats.
    fn null() -> Option<Self>;
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! json_int {
    ($t:ty, $what:literal) => {
        impl JsonNum for $t {
            const WHAT: &'static str = $what;
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_f64(_: f64) -> Option<Self> {
                None
            }
            fn null() -> Option<Self> {
                None
            }
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}

json_int!(u8, "a UINT8 integer");
json_int!(u16, "a UINT16 integer");
json_int!(u32, "a UINT32 integer");
json_int!(u64, "a UINT64 integer");
json_int!(i8, "an INT8 integer");
json_int!(i16, "an INT16 integer");
json_int!(i32, "an INT32 integer");
json_int!(i64, "an INT64 integer");

impl JsonNum for f32 {
    const WHAT: &'static str = "an FP32 number";
    #[allow(clippy::cast_precision_loss)]
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f32)
    }
    #[allow(clippy::cast_precision_loss)]
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f32)
    }
    // Rounding to nearest is the point: JSON carries the decimal, FP32 the closest value.
    #[allow(clippy::cast_possible_truncation)]
    fn from_f64(v: f64) -> Option<Self> {
        let f = v as f32;
        // A finite decimal beyond FP32's range is an error, not infinity.
        (f.is_finite() || !v.is_finite()).then_some(f)
    }
    fn null() -> Option<Self> {
        Some(f32::NAN)
    }
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

macro_rules! json_half {
    ($t:ty, $what:literal) => {
        impl JsonNum for $t {
            const WHAT: &'static str = $what;
            #[allow(clippy::cast_precision_loss)]
            fn from_u64(v: u64) -> Option<Self> {
                <Self as JsonNum>::from_f64(v as f64)
            }
            #[allow(clippy::cast_precision_loss)]
            fn from_i64(v: i64) -> Option<Self> {
                <Self as JsonNum>::from_f64(v as f64)
            }
            fn from_f64(v: f64) -> Option<Self> {
                let h = <$t>::from_f64(v);
                (h.is_finite() || !v.is_finite()).then_some(h)
            }
            fn null() -> Option<Self> {
                Some(<$t>::NAN)
            }
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}

json_half!(f16, "an FP16 number");
json_half!(bf16, "a BF16 number");

struct NumSink<T> {
    out: Out,
    _t: std::marker::PhantomData<T>,
}

impl<T: JsonNum> NumSink<T> {
    fn new(spec: &DataSpec<'_>, cap: usize) -> NumSink<T> {
        NumSink {
            out: Out::new(spec, cap),
            _t: std::marker::PhantomData,
        }
    }

    fn push<E: de::Error>(
        &mut self,
        v: Option<T>,
        unexpected: Unexpected<'_>,
        exp: &Expecting<'_>,
    ) -> Result<(), E> {
        let v = v.ok_or_else(|| E::invalid_value(unexpected, exp))?;
        if self.out.take() {
            v.put(&mut self.out.buf);
        }
        Ok(())
    }
}

impl<T: JsonNum> Sink for NumSink<T> {
    fn what(&self) -> &'static str {
        T::WHAT
    }
    fn out(&mut self) -> &mut Out {
        &mut self.out
    }
    fn on_u64<E: de::Error>(&mut self, v: u64, exp: &Expecting<'_>) -> Result<(), E> {
        self.push(T::from_u64(v), Unexpected::Unsigned(v), exp)
    }
    fn on_i64<E: de::Error>(&mut self, v: i64, exp: &Expecting<'_>) -> Result<(), E> {
        self.push(T::from_i64(v), Unexpected::Signed(v), exp)
    }
    fn on_f64<E: de::Error>(&mut self, v: f64, exp: &Expecting<'_>) -> Result<(), E> {
        self.push(T::from_f64(v), Unexpected::Float(v), exp)
    }
    fn on_null<E: de::Error>(&mut self, exp: &Expecting<'_>) -> Result<(), E> {
        self.push(T::null(), Unexpected::Unit, exp)
    }
    fn on_str<E: de::Error>(&mut self, v: &str, exp: &Expecting<'_>) -> Result<(), E> {
        match from_marker(v) {
            Some((value, token)) if self.out.tokens => {
                self.push(T::from_f64(value), Unexpected::Other(token), exp)
            }
            _ => Err(E::invalid_type(Unexpected::Str(v), exp)),
        }
    }
}

struct BoolSink(Out);

impl Sink for BoolSink {
    fn what(&self) -> &'static str {
        "true or false"
    }
    fn out(&mut self) -> &mut Out {
        &mut self.0
    }
    fn on_bool<E: de::Error>(&mut self, v: bool, _: &Expecting<'_>) -> Result<(), E> {
        if self.0.take() {
            self.0.buf.push(u8::from(v));
        }
        Ok(())
    }
}

struct BytesSink(Out);

impl Sink for BytesSink {
    fn what(&self) -> &'static str {
        "a string (BYTES element)"
    }
    fn out(&mut self) -> &mut Out {
        &mut self.0
    }
    fn on_str<E: de::Error>(&mut self, v: &str, exp: &Expecting<'_>) -> Result<(), E> {
        if self.0.tokens
            && let Some((_, token)) = from_marker(v)
        {
            return Err(E::invalid_type(Unexpected::Other(token), exp));
        }
        let len = u32::try_from(v.len())
            .map_err(|_| E::invalid_length(v.len(), &"a string shorter than 4 GiB"))?;
        if self.0.take() {
            self.0.buf.extend_from_slice(&len.to_le_bytes());
            self.0.buf.extend_from_slice(v.as_bytes());
        }
        Ok(())
    }
}

/// FP64 elements are parsed from their JSON text so that they round-trip exactly.
struct F64Sink(Out);

impl F64Sink {
    fn push(&mut self, v: f64) {
        if self.0.take() {
            self.0.buf.extend_from_slice(&v.to_le_bytes());
        }
    }
}

impl Sink for F64Sink {
    fn what(&self) -> &'static str {
        "an FP64 number"
    }

    fn out(&mut self) -> &mut Out {
        &mut self.0
    }

    fn deserialize_elem<'de, D: Deserializer<'de>>(
        &mut self,
        tensor: &TensorRef,
        d: D,
    ) -> Result<(), D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        let text = raw.get();
        let exp = Expecting {
            what: self.what(),
            tensor,
        };
        match text.as_bytes().first() {
            // An array (the whole `data`, or a nested row): walk its captured text with
            // the same sink. FP64 arrays are scanned twice, the price of exact parsing.
            Some(b'[') => {
                let mut inner = serde_json::Deserializer::from_str(text);
                inner
                    .deserialize_seq(ElemVisitor { sink: self, tensor })
                    .map_err(de::Error::custom)
            }
            Some(b'-' | b'0'..=b'9') => {
                // A JSON number is always valid Rust float syntax.
                let v: f64 = text
                    .parse()
                    .map_err(|_| de::Error::invalid_value(Unexpected::Other(text), &exp))?;
                if v.is_infinite() {
                    return Err(de::Error::invalid_value(Unexpected::Other(text), &exp));
                }
                self.push(v);
                Ok(())
            }
            Some(b'n') => {
                self.push(f64::NAN);
                Ok(())
            }
            Some(b'"') if self.0.tokens => match from_marker_text(text) {
                Some((v, _)) => {
                    self.push(v);
                    Ok(())
                }
                None => Err(de::Error::invalid_type(Unexpected::Other(text), &exp)),
            },
            _ => Err(de::Error::invalid_type(Unexpected::Other(text), &exp)),
        }
    }
}

/// A tensor's elements as a JSON array (flat, row-major). FP16/BF16 are written as
/// numbers (through f32, exactly), BOOL as `true`/`false`, BYTES as strings;
/// non-finite floats as Triton's `NaN`, `Infinity`, `-Infinity`, which need
/// `json_nonfinite::to_writer`. Callers check BYTES for UTF-8 first
/// ([`bytes_are_utf8`]); a non-UTF-8 element here is a serialisation error.
#[derive(Debug)]
pub(crate) struct JsonData<'a>(pub(crate) &'a Tensor);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let data = t.data();
        macro_rules! seq {
            ($iter:expr, $len:expr) => {{
                let mut seq = s.serialize_seq(Some($len))?;
                for v in $iter {
                    seq.serialize_element(&v)?;
                }
                seq.end()
            }};
        }
        macro_rules! typed {
            ($t:ty) => {{
                let vals = t.as_slice::<$t>().map_err(serde::ser::Error::custom)?;
                seq!(vals.iter().copied(), vals.len())
            }};
        }
        match t.dtype() {
            DataType::Bool => seq!(data.iter().map(|&b| b != 0), data.len()),
            DataType::U8 => seq!(data.iter(), data.len()),
            DataType::U16 => typed!(u16),
            DataType::U32 => typed!(u32),
            DataType::U64 => typed!(u64),
            DataType::I8 => typed!(i8),
            DataType::I16 => typed!(i16),
            DataType::I32 => typed!(i32),
            DataType::I64 => typed!(i64),
            DataType::F32 => {
                let vals = t.as_slice::<f32>().map_err(serde::ser::Error::custom)?;
                seq!(vals.iter().map(|&v| JsonFloat(v)), vals.len())
            }
            DataType::F64 => {
                let vals = t.as_slice::<f64>().map_err(serde::ser::Error::custom)?;
                seq!(vals.iter().map(|&v| JsonFloat(v)), vals.len())
            }
            DataType::F16 => {
                let vals = t.as_slice::<f16>().map_err(serde::ser::Error::custom)?;
                seq!(vals.iter().map(|v| JsonFloat(v.to_f32())), vals.len())
            }
            DataType::BF16 => {
                let vals = t.as_slice::<bf16>().map_err(serde::ser::Error::custom)?;
                seq!(vals.iter().map(|v| JsonFloat(v.to_f32())), vals.len())
            }
            DataType::Bytes => {
                let elems = t.byte_strings().map_err(serde::ser::Error::custom)?;
                let mut seq = s.serialize_seq(Some(elems.len()))?;
                for e in elems {
                    let text = std::str::from_utf8(e).map_err(serde::ser::Error::custom)?;
                    seq.serialize_element(text)?;
                }
                seq.end()
            }
        }
    }
}

/// True unless `t` is a BYTES tensor with an element that is not UTF-8.
pub(crate) fn bytes_are_utf8(t: &Tensor) -> bool {
    t.dtype() != DataType::Bytes
        || t.byte_strings()
            .is_ok_and(|elems| elems.iter().all(|e| std::str::from_utf8(e).is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, dtype: DataType, expected: usize) -> Result<ParsedData, String> {
        let tensor = TensorRef::input("x");
        let spec = DataSpec::new(&tensor, dtype, expected, json.len());
        let mut d = serde_json::Deserializer::from_str(json);
        parse_data(&mut d, &spec).map_err(|e| e.to_string())
    }

    fn to_json(t: &Tensor) -> String {
        let mut out = Vec::new();
        crate::infer::json_nonfinite::to_writer(&mut out, &JsonData(t)).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Parses `json` after its bare NaN/Infinity tokens were quoted, as a retry does.
    fn parse_tokens(json: &str, dtype: DataType, expected: usize) -> Result<ParsedData, String> {
        let quoted = crate::infer::json_nonfinite::quote_tokens(json.as_bytes()).unwrap();
        let tensor = TensorRef::input("x");
        let mut spec = DataSpec::new(&tensor, dtype, expected, json.len());
        spec.tokens = true;
        let mut d = serde_json::Deserializer::from_slice(&quoted);
        parse_data(&mut d, &spec).map_err(|e| e.to_string())
    }

    fn tensor(json: &str, dtype: DataType, shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        let p = parse(json, dtype, n).unwrap();
        assert_eq!(p.count, n);
        Tensor::new(dtype, shape, p.bytes).unwrap()
    }

    #[test]
    fn reads_flat_and_nested_arrays_row_major() {
        let flat = tensor("[1, 2.5, -3, 4e2]", DataType::F32, vec![2, 2]);
        let nested = tensor("[[1, 2.5], [-3, 4e2]]", DataType::F32, vec![2, 2]);
        assert_eq!(flat, nested);
        assert_eq!(flat.to_vec::<f32>().unwrap(), vec![1.0, 2.5, -3.0, 400.0]);
    }

    #[test]
    fn reads_int64_and_uint64_exactly() {
        let t = tensor(
            "[9007199254740993, -9223372036854775808]",
            DataType::I64,
            vec![2],
        );
        assert_eq!(
            t.to_vec::<i64>().unwrap(),
            vec![9_007_199_254_740_993, i64::MIN]
        );
        let t = tensor("[18446744073709551615]", DataType::U64, vec![1]);
        assert_eq!(t.to_vec::<u64>().unwrap(), vec![u64::MAX]);
    }

    #[test]
    fn reads_fp64_exactly_even_nested() {
        let v = 0.1f64 + 0.2;
        let json = format!("[[{v}], [{}]]", 1.0 / 3.0);
        let t = tensor(&json, DataType::F64, vec![2, 1]);
        assert_eq!(t.to_vec::<f64>().unwrap(), vec![v, 1.0 / 3.0]);
    }

    #[test]
    fn reads_bool_and_bytes() {
        let t = tensor("[true, false]", DataType::Bool, vec![2]);
        assert_eq!(t.to_bools().unwrap(), vec![true, false]);
        let t = tensor(r#"["a", "h\u00e9", ""]"#, DataType::Bytes, vec![3]);
        assert_eq!(
            t.byte_strings().unwrap(),
            vec![b"a".as_slice(), "hé".as_bytes(), b""]
        );
    }

    #[test]
    fn reads_null_as_nan_for_floats_only() {
        let t = tensor("[null]", DataType::F32, vec![1]);
        assert!(t.to_vec::<f32>().unwrap()[0].is_nan());
        let t = tensor("[null]", DataType::F64, vec![1]);
        assert!(t.to_vec::<f64>().unwrap()[0].is_nan());
        assert!(parse("[null]", DataType::I32, 1).is_err());
    }

    #[test]
    fn rejects_out_of_range_and_wrong_types_naming_the_input() {
        let e = parse("[1, 300]", DataType::U8, 2).unwrap_err();
        assert!(
            e.contains("300") && e.contains("UINT8") && e.contains("input 'x'"),
            "{e}"
        );
        assert!(e.contains("line 1 column"), "{e}");
        let e = parse("[-1]", DataType::U32, 1).unwrap_err();
        assert!(e.contains("-1"), "{e}");
        let e = parse("[1.5]", DataType::I32, 1).unwrap_err();
        assert!(e.contains("1.5") && e.contains("INT32"), "{e}");
        let e = parse(r#"["a"]"#, DataType::F32, 1).unwrap_err();
        assert!(e.contains("FP32"), "{e}");
        let e = parse("[1]", DataType::Bool, 1).unwrap_err();
        assert!(e.contains("true or false"), "{e}");
        let e = parse("[1e39]", DataType::F32, 1).unwrap_err();
        assert!(e.contains("FP32"), "{e}");
        let e = parse("[1e400]", DataType::F64, 1).unwrap_err();
        assert!(e.contains("FP64"), "{e}");
        let e = parse("[true]", DataType::F64, 1).unwrap_err();
        assert!(e.contains("FP64"), "{e}");
        let e = parse(r#"[{"a": 1}]"#, DataType::F32, 1).unwrap_err();
        assert!(e.contains("map"), "{e}");
    }

    #[test]
    fn counts_elements_beyond_the_expected_without_storing_them() {
        let p = parse("[1, 2, 3, 4, 5]", DataType::I32, 2).unwrap();
        assert_eq!(p.count, 5);
        assert_eq!(p.bytes.len(), 8);
    }

    #[test]
    fn writes_json_that_reads_back() {
        let vals = [0.1f32, -1.5e-30, 3.4e38, f32::MIN_POSITIVE, 1.0e-45];
        let t = Tensor::from_slice(vec![5], &vals).unwrap();
        let json = to_json(&t);
        let back = tensor(&json, DataType::F32, vec![5]);
        assert_eq!(back, t);

        let t = Tensor::from_slice(vec![2], &[f16::from_f32(0.333), f16::MAX]).unwrap();
        let json = to_json(&t);
        let p = parse(&json, DataType::F16, 2).unwrap();
        assert_eq!(p.bytes, t.data());

        let t = Tensor::from_byte_strings(vec![2], &["x\"y", "é"]).unwrap();
        let json = to_json(&t);
        assert_eq!(json, r#"["x\"y","é"]"#);
        assert!(bytes_are_utf8(&t));
        let bad = Tensor::from_byte_strings(vec![1], &[[0xffu8]]).unwrap();
        assert!(!bytes_are_utf8(&bad));
    }

    #[test]
    fn writes_and_reads_non_finite_floats_as_tritons_tokens() {
        let t = Tensor::from_slice(vec![3], &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]).unwrap();
        assert_eq!(to_json(&t), "[NaN,Infinity,-Infinity]");
        let t = Tensor::from_slice(vec![2], &[f16::NEG_INFINITY, f16::NAN]).unwrap();
        assert_eq!(to_json(&t), "[-Infinity,NaN]");
        let t = Tensor::from_slice(vec![2], &[f64::INFINITY, -0.0]).unwrap();
        assert_eq!(to_json(&t), "[Infinity,-0.0]");

        for dtype in [DataType::F32, DataType::F64] {
            let p =
                parse_tokens("[[NaN, Infinity], [-Infinity, -Inf], [Inf, 1.5]]", dtype, 6).unwrap();
            let back = Tensor::new(dtype, vec![6], p.bytes).unwrap();
            let v: Vec<f64> = match dtype {
                DataType::F32 => back
                    .to_vec::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                _ => back.to_vec::<f64>().unwrap(),
            };
            assert!(v[0].is_nan(), "{dtype}");
            assert_eq!(
                &v[1..],
                &[
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::NEG_INFINITY,
                    f64::INFINITY,
                    1.5
                ],
                "{dtype}"
            );
        }
        // Only floats take them, and the message names the token.
        let e = parse_tokens("[1, NaN]", DataType::I32, 2).unwrap_err();
        assert!(
            e.contains("invalid value: NaN, expected an INT32 integer"),
            "{e}"
        );
        let e = parse_tokens("[Infinity]", DataType::Bytes, 1).unwrap_err();
        assert!(e.contains("invalid type: Infinity"), "{e}");
        // Without the retry's flag a marker string is just a string.
        let e = parse(r#"["\u0000NaN"]"#, DataType::F32, 1).unwrap_err();
        assert!(e.contains("invalid type: string"), "{e}");
    }
}
