//! CUDA arrays and the copies that involve them (texture and surface objects: `texture.rs`).
//!
//! Arrays are server handles. The client keeps each one's channel descriptor, extent and flags
//! (to answer `cudaArrayGetInfo` / `cudaGetChannelDesc` and to turn element offsets into bytes);
//! every copy goes to the server as one 2D copy (`Memcpy2D`), host data packed inline.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::LazyLock;

use parking_lot::Mutex;
use remora_interpose::cudart::types::{CudaChannelFormatDesc, CudaExtent, CudaMemcpy3DParms, CudaPitchedPtr};
use remora_wire::ops::{self, Loc2D};

use crate::ffi;
use crate::graph;
use crate::state::{
    cuda, current_device, guard, rt, CudaError, Runtime, INVALID_MEMCPY_DIRECTION, INVALID_RESOURCE_HANDLE,
    INVALID_VALUE, NOT_SUPPORTED,
};

/// `cudaErrorInvalidChannelDescriptor`.
const INVALID_CHANNEL_DESCRIPTOR: CudaError = 20;
/// `cudaErrorInvalidPitchValue`.
const INVALID_PITCH_VALUE: CudaError = 12;

const HOST_TO_DEVICE: i32 = 1;
const DEVICE_TO_HOST: i32 = 2;
const DEVICE_TO_DEVICE: i32 = 3;
const DEFAULT: i32 = 4;

/// What the client knows of an array.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArrayInfo {
    pub(crate) desc: CudaChannelFormatDesc,
    extent: CudaExtent,
    flags: u32,
    /// Bytes per element.
    elem: usize,
    /// Bytes per row.
    row_bytes: usize,
    /// Rows of one slice (at least 1).
    rows: usize,
    /// Slices of a 3D or layered array (at least 1).
    slices: usize,
}

static ARRAYS: LazyLock<Mutex<HashMap<u64, ArrayInfo>>> = LazyLock::new(Default::default);

pub(crate) fn array_info(array: *mut c_void) -> Result<ArrayInfo, CudaError> {
    ARRAYS.lock().get(&(array as u64)).copied().ok_or(INVALID_RESOURCE_HANDLE)
}

/// `CUarray_format` and channel count of a channel descriptor, as libcudart maps them.
pub(crate) fn format_of(d: &CudaChannelFormatDesc) -> Result<(u32, u32), CudaError> {
    let bits = [d.x, d.y, d.z, d.w];
    let channels = bits.iter().take_while(|&&b| b != 0).count();
    if channels == 0 || bits[channels..].iter().any(|&b| b != 0) || bits[..channels].iter().any(|&b| b != d.x) {
        return Err(INVALID_CHANNEL_DESCRIPTOR);
    }
    if channels == 3 {
        return Err(INVALID_CHANNEL_DESCRIPTOR);
    }
    let format = match (d.f, d.x) {
        (0, 8) => 0x08,
        (0, 16) => 0x09,
        (0, 32) => 0x0a,
        (1, 8) => 0x01,
        (1, 16) => 0x02,
        (1, 32) => 0x03,
        (2, 16) => 0x10,
        (2, 32) => 0x20,
        // NV12, the normalized and block-compressed kinds: not mapped yet.
        (k, _) if k >= 4 => return Err(NOT_SUPPORTED),
        _ => return Err(INVALID_CHANNEL_DESCRIPTOR),
    };
    let channels = if channels == 4 { 4 } else { u32::from(channels == 2) + 1 };
    Ok((format, channels))
}

/// One end of a 2D copy.
#[derive(Debug, Clone, Copy)]
pub(crate) enum End {
    /// Host memory at an address, with a pitch.
    Host(usize, usize),
    /// Device memory at an address, with a pitch.
    Device(u64, usize),
    /// An array, from byte column `x`, row `y` of slice `z`.
    Array(u64, u64, u64, u32),
}

/// A pointer end: host or device by `kind`, with `cudaMemcpyDefault` resolved from the
/// allocation table. `device_kind` is the kind that makes it device memory.
fn pointer_end(rt: &Runtime, ptr: usize, pitch: usize, kind: i32, device_kind: i32) -> Result<End, CudaError> {
    let device = match kind {
        DEVICE_TO_DEVICE => true,
        DEFAULT => rt.allocation(ptr as u64).is_some(),
        k if k == device_kind || k == HOST_TO_DEVICE || k == DEVICE_TO_HOST => k == device_kind,
        _ => return Err(INVALID_MEMCPY_DIRECTION),
    };
    Ok(if device { End::Device(ptr as u64, pitch) } else { End::Host(ptr, pitch) })
}

/// One 2D copy of `height` rows of `width` bytes through the server (`Memcpy2D`: pitched host,
/// device and array ends alike). `wait` false makes a copy without a host destination
/// fire-and-forget (host sources are packed before the call).
pub(crate) fn copy(
    rt: &Runtime,
    src: End,
    dst: End,
    width: usize,
    height: usize,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    if width == 0 || height == 0 {
        return Ok(());
    }
    for end in [src, dst] {
        if let End::Host(_, pitch) | End::Device(_, pitch) = end {
            if pitch < width && height > 1 {
                return Err(INVALID_PITCH_VALUE);
            }
        }
    }
    let loc = |e: End| match e {
        End::Host(..) => Loc2D::host(),
        End::Device(p, pitch) => Loc2D::new(ops::LOC_DEVICE, p, pitch as u64, 0, 0),
        End::Array(h, x, y, z) => Loc2D::array(h, x, y, z),
    };
    let packed = width.checked_mul(height).ok_or(INVALID_VALUE)?;
    let mut data = Vec::new();
    if let End::Host(p, pitch) = src {
        data.reserve(packed);
        for r in 0..height {
            // SAFETY: the source rows are `width` readable bytes at `pitch` strides (API contract).
            data.extend_from_slice(unsafe { ffi::bytes((p as *const u8).wrapping_add(r * pitch), width) }?);
        }
    }
    let (w, h) = (width as u64, height as u64);
    if let End::Host(p, pitch) = dst {
        let mut out = vec![0u8; packed];
        rt.client.memcpy_2d(loc(src), loc(dst), w, h, &data, Some(&mut out), stream, true).map_err(cuda)?;
        for (r, row) in out.chunks_exact(width).enumerate() {
            // SAFETY: the destination rows are `width` writable bytes at `pitch` strides.
            unsafe { ffi::bytes_mut((p as *mut u8).wrapping_add(r * pitch), width) }?.copy_from_slice(row);
        }
        return Ok(());
    }
    rt.client.memcpy_2d(loc(src), loc(dst), w, h, &data, None, stream, wait).map_err(cuda)
}

/// Checks an array end's rectangle (the server checks again).
fn array_end(array: *mut c_void, x: usize, y: usize, width: usize, height: usize) -> Result<End, CudaError> {
    array_slice_end(array, x, y, 0, width, height)
}

/// [`array_end`] in slice `z` of a 3D or layered array.
fn array_slice_end(
    array: *mut c_void,
    x: usize,
    y: usize,
    z: usize,
    width: usize,
    height: usize,
) -> Result<End, CudaError> {
    let a = array_info(array)?;
    let fits = x.checked_add(width).is_some_and(|e| e <= a.row_bytes)
        && y.checked_add(height).is_some_and(|e| e <= a.rows)
        && z < a.slices;
    if !fits {
        return Err(INVALID_VALUE);
    }
    let z = u32::try_from(z).map_err(|_| INVALID_VALUE)?;
    Ok(End::Array(array as u64, x as u64, y as u64, z))
}

/// A rectangle of a linear array copy: column (bytes), row, bytes per row, rows, and the offset
/// of its first byte in the linear memory.
type Span = (usize, usize, usize, usize, usize);

/// The rectangles a linear copy of `count` bytes from byte
/// column `x`, row `y` of an array covers: a partial first row, whole rows, a partial last row.
fn linear_spans(a: &ArrayInfo, x: usize, y: usize, count: usize) -> Result<Vec<Span>, CudaError> {
    let row = a.row_bytes;
    if x >= row && count > 0 {
        return Err(INVALID_VALUE);
    }
    let (mut x, mut y, mut left, mut off) = (x, y, count, 0usize);
    let mut spans = Vec::new();
    if x > 0 && left > 0 {
        let n = left.min(row - x);
        spans.push((x, y, n, 1, off));
        (x, y, left, off) = (0, y + 1, left - n, off + n);
    }
    if left >= row {
        let rows = left / row;
        spans.push((x, y, row, rows, off));
        (y, left, off) = (y + rows, left - rows * row, off + rows * row);
    }
    if left > 0 {
        spans.push((x, y, left, 1, off));
    }
    Ok(spans)
}

/// `cudaMemcpyToArray` / `FromArray`: a linear range of an array's rows.
#[allow(clippy::too_many_arguments)]
fn copy_linear(
    rt: &Runtime,
    array: *mut c_void,
    x: usize,
    y: usize,
    mem: usize,
    count: usize,
    kind: i32,
    to_array: bool,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    let a = array_info(array)?;
    for (sx, sy, w, h, off) in linear_spans(&a, x, y, count)? {
        let arr = array_end(array, sx, sy, w, h)?;
        let p = mem.wrapping_add(off);
        if to_array {
            let src = pointer_end(rt, p, a.row_bytes, kind, DEVICE_TO_DEVICE)?;
            copy(rt, src, arr, w, h, stream, false)?;
        } else {
            let dst = pointer_end(rt, p, a.row_bytes, kind, DEVICE_TO_DEVICE)?;
            copy(rt, arr, dst, w, h, stream, false)?;
        }
    }
    if wait {
        rt.client.stream_synchronize(stream).map_err(cuda)?;
    }
    Ok(())
}

/// Copies on a capturing stream are not recorded yet: the capture fails as CUDA fails an
/// unsupported operation.
fn refuse_capture(stream: u64) -> Result<(), CudaError> {
    match graph::capture(stream, || Err(NOT_SUPPORTED)) {
        Some(r) => r,
        None => Ok(()),
    }
}

#[no_mangle]
pub extern "C" fn cudaCreateChannelDesc(x: c_int, y: c_int, z: c_int, w: c_int, f: c_int) -> CudaChannelFormatDesc {
    CudaChannelFormatDesc { x, y, z, w, f }
}

fn malloc_array(
    array: *mut *mut c_void,
    desc: *const CudaChannelFormatDesc,
    extent: CudaExtent,
    flags: u32,
) -> Result<(), CudaError> {
    if array.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: the caller's channel descriptor.
    let d = unsafe { ffi::get(desc) }?;
    let (format, channels) = format_of(&d)?;
    let elem = ops::array_element_bytes(format, channels).ok_or(INVALID_CHANNEL_DESCRIPTOR)? as usize;
    if extent.width == 0 {
        return Err(INVALID_VALUE);
    }
    let row_bytes = extent.width.checked_mul(elem).ok_or(INVALID_VALUE)?;
    let (rows, slices) = (extent.height.max(1), extent.depth.max(1));
    rows.checked_mul(slices).and_then(|r| r.checked_mul(row_bytes)).ok_or(INVALID_VALUE)?;
    let (w, h, dp) = (extent.width as u64, extent.height as u64, extent.depth as u64);
    let rt = rt()?;
    let handle = rt.client.array_create(current_device(), format, channels, flags, w, h, dp).map_err(cuda)?;
    let info = ArrayInfo { desc: d, extent, flags, elem, row_bytes, rows, slices };
    ARRAYS.lock().insert(handle, info);
    // SAFETY: the caller's cudaArray_t slot (checked non-null).
    unsafe { ffi::put(array, handle as *mut c_void) }
}

#[no_mangle]
pub unsafe extern "C" fn cudaMallocArray(
    array: *mut *mut c_void,
    desc: *const CudaChannelFormatDesc,
    width: usize,
    height: usize,
    flags: u32,
) -> CudaError {
    guard("cudaMallocArray", || malloc_array(array, desc, CudaExtent { width, height, depth: 0 }, flags))
}

#[no_mangle]
pub unsafe extern "C" fn cudaMalloc3DArray(
    array: *mut *mut c_void,
    desc: *const CudaChannelFormatDesc,
    extent: CudaExtent,
    flags: u32,
) -> CudaError {
    guard("cudaMalloc3DArray", || malloc_array(array, desc, extent, flags))
}

#[no_mangle]
pub unsafe extern "C" fn cudaFreeArray(array: *mut c_void) -> CudaError {
    guard("cudaFreeArray", || {
        if array.is_null() {
            return Ok(());
        }
        array_info(array)?;
        rt()?.client.array_destroy(array as u64).map_err(cuda)?;
        ARRAYS.lock().remove(&(array as u64));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaArrayGetInfo(
    desc: *mut CudaChannelFormatDesc,
    extent: *mut CudaExtent,
    flags: *mut u32,
    array: *mut c_void,
) -> CudaError {
    guard("cudaArrayGetInfo", || {
        let a = array_info(array)?;
        if !desc.is_null() {
            // SAFETY: the caller's out-parameter (non-null).
            unsafe { ffi::put(desc, a.desc) }?;
        }
        if !extent.is_null() {
            // SAFETY: as above.
            unsafe { ffi::put(extent, a.extent) }?;
        }
        if !flags.is_null() {
            // SAFETY: as above.
            unsafe { ffi::put(flags, a.flags) }?;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetChannelDesc(desc: *mut CudaChannelFormatDesc, array: *const c_void) -> CudaError {
    guard("cudaGetChannelDesc", || {
        let a = array_info(array as *mut c_void)?;
        // SAFETY: the caller's out-parameter.
        unsafe { ffi::put(desc, a.desc) }
    })
}

#[allow(clippy::too_many_arguments)]
fn to_array_2d(
    dst: *mut c_void,
    w_offset: usize,
    h_offset: usize,
    src: *const c_void,
    spitch: usize,
    width: usize,
    height: usize,
    kind: i32,
    stream: *mut c_void,
    wait: bool,
) -> Result<(), CudaError> {
    let rt = rt()?;
    let s = rt.stream(stream as usize)?;
    refuse_capture(s)?;
    let arr = array_end(dst, w_offset, h_offset, width, height)?;
    let from = pointer_end(rt, src as usize, spitch, kind, DEVICE_TO_DEVICE)?;
    copy(rt, from, arr, width, height, s, false)?;
    if wait {
        rt.client.stream_synchronize(s).map_err(cuda)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn from_array_2d(
    dst: *mut c_void,
    dpitch: usize,
    src: *const c_void,
    w_offset: usize,
    h_offset: usize,
    width: usize,
    height: usize,
    kind: i32,
    stream: *mut c_void,
    wait: bool,
) -> Result<(), CudaError> {
    let rt = rt()?;
    let s = rt.stream(stream as usize)?;
    refuse_capture(s)?;
    let arr = array_end(src as *mut c_void, w_offset, h_offset, width, height)?;
    let to = pointer_end(rt, dst as usize, dpitch, kind, DEVICE_TO_DEVICE)?;
    copy(rt, arr, to, width, height, s, false)?;
    if wait {
        rt.client.stream_synchronize(s).map_err(cuda)?;
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy2DToArray(
    dst: *mut c_void,
    w_offset: usize,
    h_offset: usize,
    src: *const c_void,
    spitch: usize,
    width: usize,
    height: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpy2DToArray", || {
        to_array_2d(dst, w_offset, h_offset, src, spitch, width, height, kind, std::ptr::null_mut(), true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy2DToArrayAsync(
    dst: *mut c_void,
    w_offset: usize,
    h_offset: usize,
    src: *const c_void,
    spitch: usize,
    width: usize,
    height: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpy2DToArrayAsync", || {
        to_array_2d(dst, w_offset, h_offset, src, spitch, width, height, kind, stream, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy2DFromArray(
    dst: *mut c_void,
    dpitch: usize,
    src: *const c_void,
    w_offset: usize,
    h_offset: usize,
    width: usize,
    height: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpy2DFromArray", || {
        from_array_2d(dst, dpitch, src, w_offset, h_offset, width, height, kind, std::ptr::null_mut(), true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy2DFromArrayAsync(
    dst: *mut c_void,
    dpitch: usize,
    src: *const c_void,
    w_offset: usize,
    h_offset: usize,
    width: usize,
    height: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpy2DFromArrayAsync", || {
        from_array_2d(dst, dpitch, src, w_offset, h_offset, width, height, kind, stream, false)
    })
}

#[allow(clippy::too_many_arguments)]
fn linear(
    array: *mut c_void,
    w_offset: usize,
    h_offset: usize,
    mem: usize,
    count: usize,
    kind: i32,
    to_array: bool,
    stream: *mut c_void,
    wait: bool,
) -> Result<(), CudaError> {
    let rt = rt()?;
    let s = rt.stream(stream as usize)?;
    refuse_capture(s)?;
    copy_linear(rt, array, w_offset, h_offset, mem, count, kind, to_array, s, wait)
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyToArray(
    dst: *mut c_void,
    w_offset: usize,
    h_offset: usize,
    src: *const c_void,
    count: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpyToArray", || {
        linear(dst, w_offset, h_offset, src as usize, count, kind, true, std::ptr::null_mut(), true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyToArrayAsync(
    dst: *mut c_void,
    w_offset: usize,
    h_offset: usize,
    src: *const c_void,
    count: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpyToArrayAsync", || linear(dst, w_offset, h_offset, src as usize, count, kind, true, stream, false))
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyFromArray(
    dst: *mut c_void,
    src: *const c_void,
    w_offset: usize,
    h_offset: usize,
    count: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpyFromArray", || {
        linear(src as *mut c_void, w_offset, h_offset, dst as usize, count, kind, false, std::ptr::null_mut(), true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyFromArrayAsync(
    dst: *mut c_void,
    src: *const c_void,
    w_offset: usize,
    h_offset: usize,
    count: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpyFromArrayAsync", || {
        linear(src as *mut c_void, w_offset, h_offset, dst as usize, count, kind, false, stream, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy2DArrayToArray(
    dst: *mut c_void,
    w_offset_dst: usize,
    h_offset_dst: usize,
    src: *const c_void,
    w_offset_src: usize,
    h_offset_src: usize,
    width: usize,
    height: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpy2DArrayToArray", || {
        if !matches!(kind, DEVICE_TO_DEVICE | DEFAULT) {
            return Err(INVALID_MEMCPY_DIRECTION);
        }
        let rt = rt()?;
        let from = array_end(src as *mut c_void, w_offset_src, h_offset_src, width, height)?;
        let to = array_end(dst, w_offset_dst, h_offset_dst, width, height)?;
        copy(rt, from, to, width, height, 0, true)
    })
}

/// `cudaMemcpy3D` where either end is an array: one 2D copy per slice (one `Memcpy2D` op each,
/// the array side addressed by its slice, the pitched side advanced by its slice pitch).
/// Array positions and the extent's width are in elements; pitched pointers' in bytes.
pub(crate) fn copy_3d_array(rt: &Runtime, p: &CudaMemcpy3DParms, stream: u64, wait: bool) -> Result<(), CudaError> {
    let e = p.extent;
    if e.width == 0 || e.height == 0 || e.depth == 0 {
        return Ok(());
    }
    let elem = if p.srcArray.is_null() { array_info(p.dstArray)?.elem } else { array_info(p.srcArray)?.elem };
    let width = e.width.checked_mul(elem).ok_or(INVALID_VALUE)?;
    let end = |array: *mut c_void, pos: (usize, usize, usize), ptr: &CudaPitchedPtr, device_kind: i32| {
        if !array.is_null() {
            let x = pos.0.checked_mul(elem).ok_or(INVALID_VALUE)?;
            return array_slice_end(array, x, pos.1, pos.2, width, e.height);
        }
        let off = pos
            .2
            .checked_mul(ptr.pitch.checked_mul(ptr.ysize).ok_or(INVALID_VALUE)?)
            .and_then(|v| v.checked_add(pos.1.checked_mul(ptr.pitch)?))
            .and_then(|v| v.checked_add(pos.0))
            .ok_or(INVALID_VALUE)?;
        pointer_end(rt, (ptr.ptr as usize).wrapping_add(off), ptr.pitch, p.kind, device_kind)
    };
    for k in 0..e.depth {
        let z = |pos: usize| pos.checked_add(k).ok_or(INVALID_VALUE);
        let src = end(p.srcArray, (p.srcPos.x, p.srcPos.y, z(p.srcPos.z)?), &p.srcPtr, DEVICE_TO_HOST)?;
        let dst = end(p.dstArray, (p.dstPos.x, p.dstPos.y, z(p.dstPos.z)?), &p.dstPtr, HOST_TO_DEVICE)?;
        copy(rt, src, dst, width, e.height, stream, false)?;
    }
    if wait {
        rt.client.stream_synchronize(stream).map_err(cuda)?;
    }
    Ok(())
}
