//! BYTES inputs for ONNX Runtime, byte for byte.
//!
//! `ort`'s string tensors go through `FillStringTensor`, which takes NUL-terminated C
//! strings: an element holding a NUL byte would be cut short, and only UTF-8 can be
//! passed. ONNX Runtime's own strings are `std::string`s, which hold any bytes, and
//! `GetResizedStringTensorElementBuffer` (ONNX Runtime 1.16+) writes an element of a given
//! length. This module uses it, so `"a\0b"` and non-UTF-8 bytes reach the model intact,
//! as they do from ONNX Runtime's Python API.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::ptr::{self, NonNull};

use ort::AsPointer;
use ort::memory::Allocator;
use ort::sys::{self, ONNXTensorElementDataType, OrtStatus, OrtStatusPtr};
use ort::value::DynValue;

/// Turns an ONNX Runtime status into a result, releasing the status.
fn check(status: OrtStatusPtr) -> ort::Result<()> {
    let raw: *mut OrtStatus = status.0;
    if raw.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: `raw` is a non-null status just returned by ONNX Runtime; its message is a
    // NUL-terminated string owned by the status, read before the status is released once.
    let message = unsafe {
        let text = CStr::from_ptr((api.GetErrorMessage)(raw))
            .to_string_lossy()
            .into_owned();
        (api.ReleaseStatus)(raw);
        text
    };
    Err(ort::Error::new(message))
}

/// A string tensor of `shape` holding `elements` exactly (row-major).
///
/// # Errors
/// ONNX Runtime's error when it cannot allocate the tensor.
pub(super) fn string_tensor(shape: &[usize], elements: &[&[u8]]) -> ort::Result<DynValue> {
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| ort::Error::new("dimension too large")))
        .collect::<ort::Result<Vec<i64>>>()?;
    if lrai_core::shape::element_count(shape) != Some(elements.len()) {
        return Err(ort::Error::new(format!(
            "{} strings do not fill shape {shape:?}",
            elements.len()
        )));
    }
    let allocator = Allocator::default();
    let api = ort::api();
    let mut value: *mut sys::OrtValue = ptr::null_mut();
    // SAFETY: the allocator outlives this call, `dims` is a valid array of `dims.len()`
    // i64s, and `value` is a valid out-pointer; ONNX Runtime fills it or returns an error.
    check(unsafe {
        (api.CreateTensorAsOrtValue)(
            allocator.ptr().cast_mut(),
            dims.as_ptr(),
            dims.len(),
            ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING,
            &raw mut value,
        )
    })?;
    let value =
        NonNull::new(value).ok_or_else(|| ort::Error::new("ONNX Runtime returned no tensor"))?;
    // SAFETY: `value` is a tensor ONNX Runtime just created with `allocator`; wrapping it
    // hands ownership to `ort`, which releases it on drop (also on the error paths below).
    let tensor: DynValue = unsafe { DynValue::from_ptr(value, Some(&allocator)) };
    for (index, bytes) in elements.iter().enumerate() {
        let mut buffer: *mut std::ffi::c_char = ptr::null_mut();
        // SAFETY: `index` is below the element count (checked above against the shape), and ONNX Runtime resizes element `index`
        // to `bytes.len()` bytes and hands back a buffer of exactly that length.
        check(unsafe {
            (api.GetResizedStringTensorElementBuffer)(
                value.as_ptr(),
                index,
                bytes.len(),
                &raw mut buffer,
            )
        })?;
        if !bytes.is_empty() {
            // SAFETY: `buffer` points to `bytes.len()` writable bytes owned by the tensor,
            // which cannot overlap the caller's slice.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.cast::<u8>(), bytes.len()) };
        }
    }
    Ok(tensor)
}

/// The elements of a string tensor ONNX Runtime returned, byte for byte (`ort`'s own
/// extraction insists on UTF-8).
///
/// # Errors
/// ONNX Runtime's error, or a tensor that is not a string tensor.
pub(super) fn string_elements(value: &DynValue, count: usize) -> ort::Result<Vec<Vec<u8>>> {
    let api = ort::api();
    let raw = value.ptr();
    let mut total: usize = 0;
    // SAFETY: `raw` is a live string tensor owned by `value` for this whole call; the
    // out-pointer is valid.
    check(unsafe { (api.GetStringTensorDataLength)(raw, &raw mut total) })?;
    let mut data = vec![0u8; total];
    let mut offsets = vec![0usize; count];
    // SAFETY: `data` has `total` bytes and `offsets` has `count` slots, the sizes ONNX
    // Runtime is told; it writes within them.
    check(unsafe {
        (api.GetStringTensorContent)(
            raw,
            data.as_mut_ptr().cast(),
            total,
            offsets.as_mut_ptr(),
            count,
        )
    })?;
    let mut ends: Vec<usize> = offsets.iter().skip(1).copied().collect();
    ends.push(total);
    offsets
        .iter()
        .zip(&ends)
        .map(|(&start, &end)| {
            data.get(start..end)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ort::Error::new("ONNX Runtime returned string offsets out of range"))
        })
        .collect()
}
