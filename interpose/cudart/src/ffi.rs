//! The few ways the shims touch memory the application hands them. Each function is `unsafe`:
//! its caller promises what the CUDA runtime API promises for that argument (a valid pointer to
//! writable storage for out-parameters, `len` readable bytes for a host source, a NUL-terminated
//! string). Null pointers are refused here with `cudaErrorInvalidValue`, as libcudart does.

use std::ffi::{c_char, CStr};

use crate::state::{CudaError, INVALID_VALUE};

/// Store `v` through an out-parameter.
///
/// # Safety
/// `p` is null or valid for a write of `T`.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) -> Result<(), CudaError> {
    if p.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: non-null, and the caller promises it is valid for writes of T.
    unsafe { p.write_unaligned(v) };
    Ok(())
}

/// Read an in-parameter.
///
/// # Safety
/// `p` is null or valid for a read of `T`.
pub(crate) unsafe fn get<T: Copy>(p: *const T) -> Result<T, CudaError> {
    if p.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: non-null, and the caller promises it is valid for reads of T.
    Ok(unsafe { p.read_unaligned() })
}

/// `len` bytes of host memory.
///
/// # Safety
/// `p` is null or valid for reads of `len` bytes for the returned lifetime.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], CudaError> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: non-null, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// `len` writable bytes of host memory.
///
/// # Safety
/// `p` is null or valid for writes of `len` bytes, and nothing else uses them meanwhile.
pub(crate) unsafe fn bytes_mut<'a>(p: *mut u8, len: usize) -> Result<&'a mut [u8], CudaError> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: non-null, and the caller promises `len` writable, unaliased bytes.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A NUL-terminated string, lossily as UTF-8.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
pub(crate) unsafe fn string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated per the caller.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}
