//! `.npy` and `.npz` files (numpy's formats) to and from [`Tensor`]s.
//!
//! Written by hand rather than with ndarray-npy because LRAI's tensors are dynamically
//! typed: the dtype comes from the file header, and every KServe datatype (FP16, BOOL,
//! byte strings) must round-trip. `.npz` is a zip of `.npy` members (stored or deflated).
//!
//! Byte strings are read from numpy `S` (bytes) and `U` (UTF-32) arrays, trailing NULs
//! stripped as numpy does; they are written as `S<max len>`. bfloat16 has no numpy dtype
//! and is rejected with a message saying so.

use std::io::{Read, Seek, Write};
use std::path::Path;

use bytes::Bytes;

use crate::dtype::DataType;
use crate::shape::element_count;
use crate::tensor::Tensor;
use crate::{CoreError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

fn bad(reason: impl Into<String>) -> CoreError {
    CoreError::Npy {
        reason: reason.into(),
    }
}

/// Element kinds a numpy `descr` can name.
#[derive(Clone, Copy)]
enum Descr {
    Fixed { dtype: DataType, big_endian: bool },
    ByteStr(usize),
    Unicode { chars: usize, big_endian: bool },
}

fn parse_descr(descr: &str) -> Result<Descr> {
    let (order, rest) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => descr.split_at(1),
        _ => ("=", descr),
    };
    let big_endian = order == ">";
    // The kind is one character; cut at its end (a multi-byte one must not panic).
    let (kind, size) = rest.split_at(rest.chars().next().map_or(0, char::len_utf8));
    if kind == "O" {
        return Err(bad(
            "object arrays (dtype 'O') are not supported; save strings with arr.astype('S') or numbers with a numeric dtype",
        ));
    }
    let size: usize = size
        .parse()
        .map_err(|_| bad(format!("unsupported dtype '{descr}'")))?;
    let dtype = match (kind, size) {
        ("b", 1) => DataType::Bool,
        ("u", 1) => DataType::U8,
        ("u", 2) => DataType::U16,
        ("u", 4) => DataType::U32,
        ("u", 8) => DataType::U64,
        ("i", 1) => DataType::I8,
        ("i", 2) => DataType::I16,
        ("i", 4) => DataType::I32,
        ("i", 8) => DataType::I64,
        ("f", 2) => DataType::F16,
        ("f", 4) => DataType::F32,
        ("f", 8) => DataType::F64,
        ("S", n) => return Ok(Descr::ByteStr(n)),
        ("U", n) => {
            return Ok(Descr::Unicode {
                chars: n,
                big_endian,
            });
        }
        _ => return Err(bad(format!("unsupported dtype '{descr}'"))),
    };
    Ok(Descr::Fixed { dtype, big_endian })
}

fn descr_of(dtype: DataType) -> Result<&'static str> {
    Ok(match dtype {
        DataType::Bool => "|b1",
        DataType::U8 => "|u1",
        DataType::U16 => "<u2",
        DataType::U32 => "<u4",
        DataType::U64 => "<u8",
        DataType::I8 => "|i1",
        DataType::I16 => "<i2",
        DataType::I32 => "<i4",
        DataType::I64 => "<i8",
        DataType::F16 => "<f2",
        DataType::F32 => "<f4",
        DataType::F64 => "<f8",
        DataType::BF16 => {
            return Err(bad(
                "BF16 has no numpy dtype; convert the tensor to FP32 before saving",
            ));
        }
        DataType::Bytes => "|S",
    })
}

/// Finds `'key': value` in numpy's header dict and returns the raw value text.
fn header_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let start = header
        .find(&pat)
        .ok_or_else(|| bad(format!("header has no '{key}' entry")))?
        + pat.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else if let Some(quoted) = rest.strip_prefix('\'') {
        quoted.find('\'').map(|i| i + 2)
    } else {
        rest.find([',', '}'])
    }
    .ok_or_else(|| bad(format!("header entry '{key}' is not terminated")))?;
    Ok(rest[..end].trim())
}

fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| bad(format!("shape '{text}' is not a tuple")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("shape entry '{s}' is not a size")))
        })
        .collect()
}

/// Parses a `.npy` file held in memory.
///
/// # Errors
/// [`CoreError::Npy`] naming what is wrong: bad magic, truncated header or data,
/// unsupported dtype, Fortran order.
pub fn decode_npy(buf: &[u8]) -> Result<Tensor> {
    let rest = buf
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("not a .npy file (missing the \\x93NUMPY magic)"))?;
    let (&[major, _minor], rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("truncated header"))?;
    let (header_len, rest) = match major {
        1 => {
            let (len, rest) = rest
                .split_first_chunk::<2>()
                .ok_or_else(|| bad("truncated header"))?;
            (usize::from(u16::from_le_bytes(*len)), rest)
        }
        2 | 3 => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("truncated header"))?;
            (
                usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX),
                rest,
            )
        }
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    if rest.len() < header_len {
        return Err(bad("truncated header"));
    }
    let (header, data) = rest.split_at(header_len);
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let descr = header_value(header, "descr")?.trim_matches('\'');
    if header_value(header, "fortran_order")? != "False" {
        return Err(bad(
            "Fortran-order arrays are not supported; save np.ascontiguousarray(arr) instead",
        ));
    }
    let shape = parse_shape(header_value(header, "shape")?)?;
    let count = element_count(&shape).ok_or_else(|| bad("shape overflows the address space"))?;
    let descr = parse_descr(descr)?;
    // Zero-width strings need no data, so the header alone could ask for any count:
    // bound it before allocating one entry per element.
    if matches!(descr, Descr::ByteStr(0) | Descr::Unicode { chars: 0, .. }) && count > 1 << 24 {
        return Err(bad(format!(
            "{count} zero-width strings is more than supported"
        )));
    }
    decode_payload(descr, shape, count, data)
}

fn take(data: &[u8], n: Option<usize>) -> Result<&[u8]> {
    n.and_then(|n| data.get(..n)).ok_or_else(|| {
        bad(format!(
            "data is truncated: header promises more than the {} bytes present",
            data.len()
        ))
    })
}

fn decode_payload(descr: Descr, shape: Vec<usize>, count: usize, data: &[u8]) -> Result<Tensor> {
    match descr {
        Descr::Fixed { dtype, big_endian } => {
            let size = dtype.size().unwrap_or(1);
            let mut raw = take(data, count.checked_mul(size))?.to_vec();
            if big_endian && size > 1 {
                raw.chunks_exact_mut(size).for_each(<[u8]>::reverse);
            }
            if dtype == DataType::Bool && raw.iter().any(|&b| b > 1) {
                return Err(bad("BOOL data holds bytes other than 0 and 1"));
            }
            Tensor::new(dtype, shape, Bytes::from(raw))
        }
        Descr::ByteStr(width) => {
            let raw = take(data, count.checked_mul(width))?;
            let elems: Vec<&[u8]> = if width == 0 {
                vec![&[][..]; count]
            } else {
                raw.chunks_exact(width)
                    .map(|c| {
                        let end = c.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                        &c[..end]
                    })
                    .collect()
            };
            Tensor::from_byte_strings(shape, &elems)
        }
        Descr::Unicode { chars, big_endian } => {
            let width = chars.checked_mul(4);
            let raw = take(data, width.and_then(|w| w.checked_mul(count)))?;
            let mut elems = Vec::with_capacity(count);
            for c in raw.chunks_exact(chars.max(1) * 4).take(count) {
                let mut s = String::new();
                for cp in c.chunks_exact(4) {
                    let arr = [cp[0], cp[1], cp[2], cp[3]];
                    let v = if big_endian {
                        u32::from_be_bytes(arr)
                    } else {
                        u32::from_le_bytes(arr)
                    };
                    if v == 0 {
                        break;
                    }
                    s.push(
                        char::from_u32(v).ok_or_else(|| bad("invalid code point in 'U' array"))?,
                    );
                }
                elems.push(s);
            }
            elems.resize(count, String::new());
            Tensor::from_byte_strings(shape, &elems)
        }
    }
}

/// Serialises a tensor as a version 1.0 `.npy` file.
///
/// # Errors
/// [`CoreError::Npy`] for BF16 (no numpy dtype).
pub fn encode_npy(tensor: &Tensor) -> Result<Vec<u8>> {
    let base = descr_of(tensor.dtype())?;
    let (descr, payload): (String, Vec<u8>) = if tensor.dtype() == DataType::Bytes {
        let elems = tensor.byte_strings()?;
        let width = elems.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut payload = Vec::with_capacity(width * elems.len());
        for e in elems {
            payload.extend_from_slice(e);
            payload.resize(payload.len() + width - e.len(), 0);
        }
        (format!("{base}{width}"), payload)
    } else {
        (base.to_string(), tensor.data().to_vec())
    };
    let dims: Vec<String> = tensor.shape().iter().map(ToString::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so the data starts on a 64-byte boundary, as numpy does; ends with '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len =
        u16::try_from(header.len()).map_err(|_| bad("header longer than 65535 bytes"))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Reads a `.npy` file.
///
/// # Errors
/// [`CoreError::Io`] when the file cannot be read, [`CoreError::NpyFile`] when it does not parse.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let buf = fs_err::read(path)?;
    decode_npy(&buf).map_err(|e| e.in_file(path))
}

/// Writes a `.npy` file.
///
/// # Errors
/// [`CoreError::Io`] or [`CoreError::Npy`].
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<()> {
    let buf = encode_npy(tensor)?;
    write_atomic(path, |f| f.write_all(&buf))
}

/// Writes `path` through a temporary file in the same directory, renamed into place when
/// complete, so an interrupted run never leaves a truncated file that looks valid.
///
/// # Errors
/// [`CoreError::Io`], naming `path`.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let named = |e: std::io::Error| {
        CoreError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", path.display()),
        ))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lrai-")
        .tempfile_in(dir)
        .map_err(named)?;
    write(tmp.as_file_mut()).map_err(named)?;
    tmp.persist(path).map_err(|e| named(e.error))?;
    Ok(())
}

/// Reads all arrays of an `.npz` archive, in archive order, named without `.npy`.
///
/// # Errors
/// [`CoreError::Io`], or [`CoreError::NpyFile`] when the archive or a member does not parse.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = fs_err::File::open(path)?;
    decode_npz(file).map_err(|e| e.in_file(path))
}

/// Reads an `.npz` archive from any seekable reader.
///
/// # Errors
/// [`CoreError::Npy`] when the archive or one of its members does not parse.
pub fn decode_npz<R: Read + Seek>(reader: R) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| bad(format!("not a valid .npz (zip) archive: {e}")))?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| bad(format!("cannot read archive member {i}: {e}")))?;
        let name = member.name().to_string();
        let mut buf = Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0));
        member
            .read_to_end(&mut buf)
            .map_err(|e| bad(format!("cannot read archive member '{name}': {e}")))?;
        let tensor = decode_npy(&buf).map_err(|e| bad(format!("member '{name}': {e}")))?;
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        out.push((key, tensor));
    }
    Ok(out)
}

/// Writes an `.npz` archive (deflate-compressed, like `np.savez_compressed`).
///
/// # Errors
/// [`CoreError::Io`] or [`CoreError::Npy`].
pub fn write_npz(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    // Encoded in memory first so a bad tensor fails before anything touches the disk.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, t) in tensors {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(|e| bad(format!("cannot write member '{name}': {e}")))?;
        zip.write_all(&encode_npy(t)?)?;
    }
    let buf = zip
        .finish()
        .map_err(|e| bad(format!("cannot finish archive: {e}")))?
        .into_inner();
    write_atomic(path, |f| f.write_all(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_every_numpy_dtype() {
        let cases = vec![
            Tensor::from_vec(vec![2, 3], vec![1.5f32, -2.0, 0.0, 3.25, 4.0, 5.0]).unwrap(),
            Tensor::from_vec(vec![3], vec![1i64, -2, 3]).unwrap(),
            Tensor::from_vec(vec![2], vec![half::f16::from_f32(0.5), half::f16::ONE]).unwrap(),
            Tensor::from_vec(vec![], vec![7u8]).unwrap(),
            Tensor::from_bools(vec![2], &[true, false]).unwrap(),
            Tensor::from_byte_strings(vec![2], &["ab", "c"]).unwrap(),
            Tensor::from_vec(vec![0, 4], Vec::<f64>::new()).unwrap(),
        ];
        for t in cases {
            let back = decode_npy(&encode_npy(&t).unwrap()).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn header_is_64_byte_aligned() {
        let t = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        let buf = encode_npy(&t).unwrap();
        assert_eq!((buf.len() - 4) % 64, 0);
    }

    #[test]
    fn reads_big_endian_and_unicode() {
        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[1, 0]);
        let header = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n";
        buf.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        buf.extend_from_slice(header.as_bytes());
        buf.extend_from_slice(&1i32.to_be_bytes());
        buf.extend_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            decode_npy(&buf).unwrap().to_vec::<i32>().unwrap(),
            vec![1, -2]
        );

        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[1, 0]);
        let header = "{'descr': '<U2', 'fortran_order': False, 'shape': (2,), }\n";
        buf.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        buf.extend_from_slice(header.as_bytes());
        for c in ['h', 'é', 'x', '\0'] {
            buf.extend_from_slice(&u32::from(c).to_le_bytes());
        }
        let t = decode_npy(&buf).unwrap();
        assert_eq!(t.byte_strings().unwrap(), vec!["hé".as_bytes(), b"x"]);
    }

    #[test]
    fn rejects_truncated_and_foreign_files() {
        let t = Tensor::from_vec(vec![4], vec![1.0f32; 4]).unwrap();
        let buf = encode_npy(&t).unwrap();
        let err = decode_npy(&buf[..buf.len() - 3]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = decode_npy(b"PK\x03\x04 not npy").unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
    }

    #[test]
    fn npz_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npz");
        let items = vec![
            (
                "a".to_string(),
                Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap(),
            ),
            (
                "b".to_string(),
                Tensor::from_vec(vec![1], vec![3i64]).unwrap(),
            ),
        ];
        write_npz(&p, &items).unwrap();
        assert_eq!(read_npz(&p).unwrap(), items);
    }

    proptest! {
        #[test]
        fn decode_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = MAGIC.to_vec();
            buf.extend_from_slice(&tail);
            let _ = decode_npy(&buf);
        }

        #[test]
        fn decode_never_panics_on_header_text(header in "\\{'descr': '[<>|]?[a-zA-Z][0-9]{0,3}', 'fortran_order': (False|True), 'shape': \\([0-9, ]{0,12}\\), \\}", data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = MAGIC.to_vec();
            buf.extend_from_slice(&[1, 0]);
            buf.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
            buf.extend_from_slice(header.as_bytes());
            buf.extend_from_slice(&data);
            let _ = decode_npy(&buf);
        }
    }
}
