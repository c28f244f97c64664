//! Memory: device allocations, copies of every kind, memset, pitched 2D copies, pinned host
//! memory, pointer attributes and device symbols.
//!
//! The client keeps its own table of device allocations (and module globals it has resolved),
//! so `cudaMemcpyDefault` can tell device from host pointers and a pointer that is not the
//! session's fails at once with `cudaErrorInvalidValue`, as libcudart fails it.

use std::ffi::c_void;

use remora_interpose::cudart::types::{CudaExtent, CudaMemcpy3DParms, CudaPitchedPtr, CudaPointerAttributes};

use super::array::End;
use crate::arena;
use crate::bounce;
use crate::ffi;
use crate::graph::{self, Op};
use crate::mirror;
use crate::nic;
use crate::registry;
use crate::state::{
    cuda, current_device, guard, rt, CudaError, Runtime, INVALID_MEMCPY_DIRECTION, INVALID_VALUE, MEMORY_ALLOCATION,
};

const HOST_TO_HOST: i32 = 0;
const HOST_TO_DEVICE: i32 = 1;
const DEVICE_TO_HOST: i32 = 2;
const DEVICE_TO_DEVICE: i32 = 3;
const DEFAULT: i32 = 4;

const HOST_MEMORY_ALREADY_REGISTERED: CudaError = 712;
const HOST_MEMORY_NOT_REGISTERED: CudaError = 713;
const INVALID_PITCH_VALUE: CudaError = 12;

/// A host-side address from its wire form (pointers round-trip through `u64` on 64-bit hosts,
/// the only ones the CUDA 13 ABI exists for).
fn host_addr(p: u64) -> usize {
    usize::try_from(p).unwrap_or(usize::MAX)
}

/// A copy's direction once `cudaMemcpyDefault` is resolved. A side named device memory that is
/// pinned host memory (the device pointer of mapped memory is its host pointer) is host memory.
fn direction(rt: &Runtime, dst: u64, src: u64, kind: i32) -> Result<i32, CudaError> {
    let pinned_host = |p: u64| rt.allocation(p).is_none() && rt.pinned_range(host_addr(p)).is_some();
    match kind {
        HOST_TO_HOST..=DEVICE_TO_DEVICE => {
            let src_dev = (kind == DEVICE_TO_HOST || kind == DEVICE_TO_DEVICE) && !pinned_host(src);
            let dst_dev = (kind == HOST_TO_DEVICE || kind == DEVICE_TO_DEVICE) && !pinned_host(dst);
            Ok(match (src_dev, dst_dev) {
                (false, false) => HOST_TO_HOST,
                (false, true) => HOST_TO_DEVICE,
                (true, false) => DEVICE_TO_HOST,
                (true, true) => DEVICE_TO_DEVICE,
            })
        }
        DEFAULT => {
            let d = rt.allocation(dst).is_some();
            let s = rt.allocation(src).is_some();
            Ok(match (s, d) {
                (false, false) => HOST_TO_HOST,
                (false, true) => HOST_TO_DEVICE,
                (true, false) => DEVICE_TO_HOST,
                (true, true) => DEVICE_TO_DEVICE,
            })
        }
        _ => Err(INVALID_MEMCPY_DIRECTION),
    }
}

/// Check that `[ptr, ptr + len)` is device memory of this session.
fn device_range(rt: &Runtime, ptr: u64, len: usize) -> Result<(), CudaError> {
    let (base, size, _) = rt.allocation(ptr).ok_or(INVALID_VALUE)?;
    let end = ptr.checked_add(len as u64).ok_or(INVALID_VALUE)?;
    if end > base + size {
        return Err(INVALID_VALUE);
    }
    Ok(())
}

/// One linear copy. `stream` is the wire handle; `wait` false makes host → device and device →
/// device copies fire-and-forget (device → host always waits: the bytes must land).
pub(crate) fn copy(
    rt: &Runtime,
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    kind: i32,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    if count == 0 {
        return Ok(());
    }
    let (d, s) = (dst as u64, src as u64);
    let r = copy_once(rt, dst, src, count, direction(rt, d, s, kind)?, stream, wait);
    if wait && r.is_ok() {
        // A blocking copy is a synchronisation point for managed memory.
        mirror::synced(rt)?;
    }
    r
}

fn copy_once(
    rt: &Runtime,
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    direction: i32,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    let (d, s) = (dst as u64, src as u64);
    match direction {
        HOST_TO_HOST => {
            mirror::host_access(rt, src as usize)?;
            mirror::host_access(rt, dst as usize)?;
            // SAFETY: both are host buffers of `count` bytes (the API contract); may overlap.
            let from = unsafe { ffi::bytes(src as *const u8, count) }?;
            // SAFETY: as above, for the destination.
            unsafe { std::ptr::copy(from.as_ptr(), dst as *mut u8, count) };
            Ok(())
        }
        HOST_TO_DEVICE => {
            device_range(rt, d, count)?;
            mirror::host_access(rt, src as usize)?;
            mirror::touch(rt, &[], &[(d, count)])?;
            if count >= arena::DMA_MIN && arena::containing(src as usize, count).is_some() {
                // Shared pinned memory: the worker DMAs straight from it. (Smaller copies go
                // inline with their request: one message is quicker than a DMA request plus
                // a wait for it, and an asynchronous copy of them stays fire-and-forget.)
                return rt.client.memcpy_host(d, src as u64, count as u64, stream, true, wait).map_err(cuda);
            }
            if let Some(rkey) = nic::direct(src as usize, count) {
                // Registered with the NIC: the worker pulls the bytes with RDMA READ.
                if let Some(r) = nic::copy(rt, d, src as u64, count, stream, rkey, true, wait) {
                    return r.map_err(cuda);
                }
            }
            // SAFETY: `src` is a host buffer of `count` bytes.
            let data = unsafe { ffi::bytes(src as *const u8, count) }?;
            // An asynchronous copy asks whether its stream is idle; an earlier asynchronous
            // error that answer brings back is this call's to report, after the copy is queued
            // (as the next waiting call would have reported it).
            let (bounced, earlier) = if wait {
                (true, None)
            } else {
                match bounce::idle_stream(rt, count, stream) {
                    Ok(idle) => (idle, None),
                    Err(e) => (false, Some(e)),
                }
            };
            if bounced {
                if let Some(r) = bounce::htod(rt, data, d, stream) {
                    // Large, same host, waited for or on an idle stream: copied into a shared
                    // pinned bounce arena here and DMAed from it. (Asynchronous copies behind
                    // other work stay on the message path, which takes the bytes at once.)
                    return r.map_err(cuda);
                }
            }
            let r = if wait && stream == 0 {
                rt.client.memcpy_htod(d, data)
            } else {
                rt.client.memcpy_htod_async(d, data, stream)
            };
            r.and(earlier.map_or(Ok(()), Err)).map_err(cuda)
        }
        DEVICE_TO_HOST => {
            device_range(rt, s, count)?;
            mirror::host_access(rt, dst as usize)?;
            mirror::touch(rt, &[(s, count)], &[])?;
            if arena::containing(dst as usize, count).is_some() {
                // Into shared pinned memory: an asynchronous copy stays asynchronous, as on a
                // local GPU (the bytes are there once the stream has passed it).
                return rt.client.memcpy_host(s, dst as u64, count as u64, stream, false, wait).map_err(cuda);
            }
            if let Some(rkey) = nic::direct(dst as usize, count) {
                // Registered with the NIC: the worker pushes the bytes with RDMA WRITE, before
                // the reply of this copy (or of the next synchronisation) arrives.
                if let Some(r) = nic::copy(rt, s, dst as u64, count, stream, rkey, false, wait) {
                    return r.map_err(cuda);
                }
            }
            // SAFETY: `dst` is a host buffer of `count` writable bytes.
            let out = unsafe { ffi::bytes_mut(dst as *mut u8, count) }?;
            if let Some(r) = bounce::dtoh(rt, out, s, stream) {
                // Large, same host: DMAed into a shared pinned bounce arena and copied out here.
                return r.map_err(cuda);
            }
            rt.client.memcpy_dtoh_on(out, s, stream).map_err(cuda)
        }
        _ => {
            device_range(rt, s, count)?;
            device_range(rt, d, count)?;
            mirror::touch(rt, &[(s, count)], &[(d, count)])?;
            rt.client.memcpy_dtod(d, s, count as u64, stream, wait && stream == 0).map_err(cuda)
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cudaMalloc(dev_ptr: *mut *mut c_void, size: usize) -> CudaError {
    guard("cudaMalloc", || {
        if dev_ptr.is_null() {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        if size == 0 {
            // SAFETY: `dev_ptr` is the caller's pointer slot (checked non-null).
            return unsafe { ffi::put(dev_ptr, std::ptr::null_mut()) };
        }
        let dev = current_device();
        let p = rt.client.mem_alloc(dev, size as u64).map_err(cuda)?;
        rt.allocations.lock().insert(p, (size as u64, dev));
        // SAFETY: as above.
        unsafe { ffi::put(dev_ptr, p as *mut c_void) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaFree(dev_ptr: *mut c_void) -> CudaError {
    guard("cudaFree", || {
        let rt = rt()?;
        let p = dev_ptr as u64;
        if p == 0 {
            return Ok(());
        }
        if let Some(f) = mirror::find(dev_ptr as usize).filter(|f| f.kind == mirror::Kind::Managed) {
            if f.host != dev_ptr as usize {
                return Err(INVALID_VALUE);
            }
            mirror::release(rt, f.host)?;
            return Ok(());
        }
        match rt.allocation(p) {
            Some((base, _, _)) if base == p => {}
            _ => return Err(INVALID_VALUE),
        }
        rt.client.mem_free(p).map_err(cuda)?;
        rt.allocations.lock().remove(&p);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMallocPitch(
    dev_ptr: *mut *mut c_void,
    pitch: *mut usize,
    width: usize,
    height: usize,
) -> CudaError {
    guard("cudaMallocPitch", || {
        let rt = rt()?;
        // Rows aligned to 512 bytes, as the CUDA driver pitches them on current GPUs.
        let p = width.checked_next_multiple_of(512).ok_or(INVALID_VALUE)?.max(512);
        let size = p.checked_mul(height).ok_or(MEMORY_ALLOCATION)?;
        let dev = current_device();
        let ptr = if size == 0 { 0 } else { rt.client.mem_alloc(dev, size as u64).map_err(cuda)? };
        if ptr != 0 {
            rt.allocations.lock().insert(ptr, (size as u64, dev));
        }
        // SAFETY: the caller's out-parameters.
        unsafe {
            ffi::put(dev_ptr, ptr as *mut c_void)?;
            ffi::put(pitch, p)
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemset(dev_ptr: *mut c_void, value: i32, count: usize) -> CudaError {
    guard("cudaMemset", || {
        let rt = rt()?;
        if count == 0 {
            return Ok(());
        }
        device_range(rt, dev_ptr as u64, count)?;
        mirror::touch(rt, &[], &[(dev_ptr as u64, count)])?;
        rt.client.memset(dev_ptr as u64, (value & 0xff) as u32, 1, count as u64, 0, true).map_err(cuda)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemsetAsync(
    dev_ptr: *mut c_void,
    value: i32,
    count: usize,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemsetAsync", || {
        let rt = rt()?;
        if count == 0 {
            return Ok(());
        }
        device_range(rt, dev_ptr as u64, count)?;
        let s = rt.stream(stream as usize)?;
        let op = || Ok(Op::Memset(graph::Memset::bytes(dev_ptr as u64, value, count, 1, count)));
        if let Some(captured) = graph::capture(s, op) {
            return captured;
        }
        mirror::touch(rt, &[], &[(dev_ptr as u64, count)])?;
        rt.client.memset(dev_ptr as u64, (value & 0xff) as u32, 1, count as u64, s, false).map_err(cuda)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy(dst: *mut c_void, src: *const c_void, count: usize, kind: i32) -> CudaError {
    guard("cudaMemcpy", || copy(rt()?, dst, src, count, kind, 0, true))
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyAsync(
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpyAsync", || {
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        let op = || Ok(Op::Memcpy(graph::Memcpy { dst: dst as u64, src: src as u64, count, kind }));
        if let Some(captured) = graph::capture(s, op) {
            return captured;
        }
        copy(rt, dst, src, count, kind, s, false)
    })
}

/// A pitched copy, row by row, with each row one linear copy (device → host rows are read in
/// one span and scattered locally, so a 2D read is one round trip).
#[allow(clippy::too_many_arguments)]
fn copy_2d(
    rt: &Runtime,
    dst: *mut c_void,
    dpitch: usize,
    src: *const c_void,
    spitch: usize,
    width: usize,
    height: usize,
    kind: i32,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    if width > dpitch || width > spitch {
        return Err(INVALID_PITCH_VALUE);
    }
    if width == 0 || height == 0 {
        return Ok(());
    }
    let dir = direction(rt, dst as u64, src as u64, kind)?;
    if dir == HOST_TO_HOST {
        for row in 0..height {
            let d = (dst as *mut u8).wrapping_add(row * dpitch) as *mut c_void;
            let s = (src as *const u8).wrapping_add(row * spitch) as *const c_void;
            copy(rt, d, s, width, HOST_TO_HOST, stream, false)?;
        }
        return Ok(());
    }
    // Everything else is one pitched copy on the server: one frame, not one per row.
    let span = |pitch: usize| pitch * (height - 1) + width;
    let end = |p: usize, pitch: usize, device: bool| -> Result<End, CudaError> {
        if device {
            device_range(rt, p as u64, span(pitch))?;
            Ok(End::Device(p as u64, pitch))
        } else {
            Ok(End::Host(p, pitch))
        }
    };
    let from = end(src as usize, spitch, dir == DEVICE_TO_HOST || dir == DEVICE_TO_DEVICE)?;
    let to = end(dst as usize, dpitch, dir == HOST_TO_DEVICE || dir == DEVICE_TO_DEVICE)?;
    super::array::copy(rt, from, to, width, height, stream, wait)
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy2D(
    dst: *mut c_void,
    dpitch: usize,
    src: *const c_void,
    spitch: usize,
    width: usize,
    height: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpy2D", || copy_2d(rt()?, dst, dpitch, src, spitch, width, height, kind, 0, true))
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy2DAsync(
    dst: *mut c_void,
    dpitch: usize,
    src: *const c_void,
    spitch: usize,
    width: usize,
    height: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpy2DAsync", || {
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        let op = || {
            let mut p = <CudaMemcpy3DParms as zerocopy::FromZeros>::new_zeroed();
            p.srcPtr = CudaPitchedPtr { ptr: src as *mut c_void, pitch: spitch, xsize: width, ysize: height };
            p.dstPtr = CudaPitchedPtr { ptr: dst, pitch: dpitch, xsize: width, ysize: height };
            p.extent = CudaExtent { width, height, depth: 1 };
            p.kind = kind;
            Ok(Op::Memcpy3D(graph::Copy3D(p)))
        };
        if let Some(captured) = graph::capture(s, op) {
            return captured;
        }
        copy_2d(rt, dst, dpitch, src, spitch, width, height, kind, s, false)
    })
}

/// Fresh zeroed memory for `cudaMallocHost`/`cudaHostAlloc`, in whole device granules of its own
/// (`mirror::GRANULE`), so that a device side can be mapped at the same address later without
/// meeting another allocation's.
fn map_granules(size: usize) -> Result<*mut u8, CudaError> {
    let len = size.max(1).checked_next_multiple_of(mirror::GRANULE).ok_or(MEMORY_ALLOCATION)?;
    let over = len.checked_add(mirror::GRANULE).ok_or(MEMORY_ALLOCATION)?;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(MEMORY_ALLOCATION);
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(mirror::GRANULE);
    // SAFETY: both trims are inside the mapping just made and leave `[aligned, aligned + len)`.
    unsafe {
        if aligned > start {
            libc::munmap(p, aligned - start);
        }
        let tail = start + over - (aligned + len);
        if tail > 0 {
            libc::munmap((aligned + len) as *mut c_void, tail);
        }
    }
    Ok(aligned as *mut u8)
}

fn host_alloc(ptr: *mut *mut c_void, size: usize, flags: u32) -> Result<(), CudaError> {
    if ptr.is_null() {
        return Err(INVALID_VALUE);
    }
    let rt = rt()?;
    let p = if let Some(p) = arena::alloc(rt, size)? {
        p as *mut u8
    } else if let Some(p) = mirror::reserve_host(rt, current_device(), size)? {
        p as *mut u8
    } else {
        map_granules(size)?
    };
    // With unified addressing every page-locked allocation is mapped (cudaHostAllocMapped), and
    // libcudart reports it so.
    rt.pinned.lock().insert(p as usize, (size.max(1), flags | 0x2, true));
    // SAFETY: this memory stays mapped until cudaFreeHost, which unregisters it first.
    unsafe { nic::register(rt, p as usize, size.max(1)) };
    // SAFETY: the caller's pointer slot (checked non-null).
    unsafe { ffi::put(ptr, p as *mut c_void) }
}

#[no_mangle]
pub unsafe extern "C" fn cudaMallocHost(ptr: *mut *mut c_void, size: usize) -> CudaError {
    guard("cudaMallocHost", || host_alloc(ptr, size, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cudaHostAlloc(ptr: *mut *mut c_void, size: usize, flags: u32) -> CudaError {
    guard("cudaHostAlloc", || {
        // cudaHostAllocPortable | Mapped | WriteCombined.
        if flags & !0x7 != 0 {
            return Err(INVALID_VALUE);
        }
        host_alloc(ptr, size, flags)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaFreeHost(ptr: *mut c_void) -> CudaError {
    guard("cudaFreeHost", || {
        if ptr.is_null() {
            return Ok(());
        }
        let rt = rt()?;
        let (size, _, ours) = rt.pinned.lock().get(&(ptr as usize)).copied().ok_or(INVALID_VALUE)?;
        if !ours {
            return Err(INVALID_VALUE);
        }
        nic::unregister(rt, ptr as usize);
        if arena::free(rt, ptr as usize)? || mirror::free_reserved_host(rt, ptr as usize)? {
            rt.pinned.lock().remove(&(ptr as usize));
            return Ok(());
        }
        mirror::release(rt, ptr as usize)?;
        rt.pinned.lock().remove(&(ptr as usize));
        let len = size.next_multiple_of(mirror::GRANULE);
        // SAFETY: mapped by map_granules with exactly this length, and removed from the table.
        unsafe { libc::munmap(ptr, len) };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaHostRegister(ptr: *mut c_void, size: usize, flags: u32) -> CudaError {
    guard("cudaHostRegister", || {
        if ptr.is_null() || size == 0 || flags & !0xf != 0 {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        let base = ptr as usize;
        if rt.pinned_range(base).is_some() || rt.pinned_range(base + size - 1).is_some() {
            return Err(HOST_MEMORY_ALREADY_REGISTERED);
        }
        rt.pinned.lock().insert(base, (size, flags, false));
        // SAFETY: the application keeps registered memory mapped until cudaHostUnregister.
        unsafe { nic::register(rt, base, size) };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaHostUnregister(ptr: *mut c_void) -> CudaError {
    guard("cudaHostUnregister", || {
        let rt = rt()?;
        if !matches!(rt.pinned.lock().get(&(ptr as usize)), Some(&(_, _, false))) {
            return Err(HOST_MEMORY_NOT_REGISTERED);
        }
        nic::unregister(rt, ptr as usize);
        mirror::release(rt, ptr as usize)?;
        rt.pinned.lock().remove(&(ptr as usize));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaHostGetFlags(flags: *mut u32, host: *mut c_void) -> CudaError {
    guard("cudaHostGetFlags", || {
        let (_, _, f) = rt()?.pinned_range(host as usize).ok_or(INVALID_VALUE)?;
        // SAFETY: the caller's unsigned int.
        unsafe { ffi::put(flags, f) }
    })
}

/// A memset node's work: `height` rows of `width` elements of `element_size` (1, 2 or 4) bytes,
/// `pitch` bytes apart, each row sent fire-and-forget on `stream`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn memset_rows(
    rt: &Runtime,
    dst: u64,
    pitch: usize,
    value: u32,
    element_size: u32,
    width: usize,
    height: usize,
    stream: u64,
) -> Result<(), CudaError> {
    if !matches!(element_size, 1 | 2 | 4) {
        return Err(INVALID_VALUE);
    }
    let row = width.checked_mul(element_size as usize).ok_or(INVALID_VALUE)?;
    if width == 0 || height == 0 {
        return Ok(());
    }
    if height > 1 && row > pitch {
        return Err(INVALID_VALUE);
    }
    let span = pitch.checked_mul(height - 1).and_then(|v| v.checked_add(row)).ok_or(INVALID_VALUE)?;
    device_range(rt, dst, span)?;
    let mask = if element_size == 4 { u32::MAX } else { (1u32 << (8 * element_size)) - 1 };
    for r in 0..height {
        let p = dst + (r * pitch) as u64;
        rt.client.memset(p, value & mask, element_size, width as u64, stream, false).map_err(cuda)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn memset_2d(
    rt: &Runtime,
    ptr: *mut c_void,
    pitch: usize,
    value: i32,
    width: usize,
    height: usize,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    if width > pitch {
        return Err(INVALID_PITCH_VALUE);
    }
    if width == 0 || height == 0 {
        return Ok(());
    }
    device_range(rt, ptr as u64, pitch * (height - 1) + width)?;
    for row in 0..height {
        let p = ptr as u64 + (row * pitch) as u64;
        rt.client.memset(p, (value & 0xff) as u32, 1, width as u64, stream, false).map_err(cuda)?;
    }
    if wait {
        rt.client.stream_synchronize(stream).map_err(cuda)?;
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemset2D(
    ptr: *mut c_void,
    pitch: usize,
    value: i32,
    width: usize,
    height: usize,
) -> CudaError {
    guard("cudaMemset2D", || memset_2d(rt()?, ptr, pitch, value, width, height, 0, true))
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemset2DAsync(
    ptr: *mut c_void,
    pitch: usize,
    value: i32,
    width: usize,
    height: usize,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemset2DAsync", || {
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        let op = || Ok(Op::Memset(graph::Memset::bytes(ptr as u64, value, pitch, height, width)));
        if let Some(captured) = graph::capture(s, op) {
            return captured;
        }
        memset_2d(rt, ptr, pitch, value, width, height, s, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMalloc3D(pitched: *mut CudaPitchedPtr, extent: CudaExtent) -> CudaError {
    guard("cudaMalloc3D", || {
        if pitched.is_null() {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        let pitch = extent.width.checked_next_multiple_of(512).ok_or(INVALID_VALUE)?.max(512);
        let size =
            pitch.checked_mul(extent.height).and_then(|v| v.checked_mul(extent.depth)).ok_or(MEMORY_ALLOCATION)?;
        let dev = current_device();
        let ptr = if size == 0 { 0 } else { rt.client.mem_alloc(dev, size as u64).map_err(cuda)? };
        if ptr != 0 {
            rt.allocations.lock().insert(ptr, (size as u64, dev));
        }
        let out = CudaPitchedPtr { ptr: ptr as *mut c_void, pitch, xsize: extent.width, ysize: extent.height };
        // SAFETY: the caller's cudaPitchedPtr (checked non-null).
        unsafe { ffi::put(pitched, out) }
    })
}

/// Byte offset of `(x, y, z)` in a pitched 3D allocation.
fn offset_3d(p: &CudaPitchedPtr, x: usize, y: usize, z: usize) -> Result<usize, CudaError> {
    z.checked_mul(p.pitch.checked_mul(p.ysize).ok_or(INVALID_VALUE)?)
        .and_then(|v| v.checked_add(y.checked_mul(p.pitch)?))
        .and_then(|v| v.checked_add(x))
        .ok_or(INVALID_VALUE)
}

pub(crate) fn copy_3d(rt: &Runtime, p: &CudaMemcpy3DParms, stream: u64, wait: bool) -> Result<(), CudaError> {
    if !p.srcArray.is_null() || !p.dstArray.is_null() {
        return super::array::copy_3d_array(rt, p, stream, wait);
    }
    let e = p.extent;
    if e.width == 0 || e.height == 0 || e.depth == 0 {
        return Ok(());
    }
    for z in 0..e.depth {
        let so = offset_3d(&p.srcPtr, p.srcPos.x, p.srcPos.y, p.srcPos.z + z)?;
        let d_o = offset_3d(&p.dstPtr, p.dstPos.x, p.dstPos.y, p.dstPos.z + z)?;
        let src = (p.srcPtr.ptr as *const u8).wrapping_add(so) as *const c_void;
        let dst = (p.dstPtr.ptr as *mut u8).wrapping_add(d_o) as *mut c_void;
        copy_2d(rt, dst, p.dstPtr.pitch, src, p.srcPtr.pitch, e.width, e.height, p.kind, stream, false)?;
    }
    if wait {
        rt.client.stream_synchronize(stream).map_err(cuda)?;
        mirror::synced(rt)?;
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy3D(p: *const CudaMemcpy3DParms) -> CudaError {
    guard("cudaMemcpy3D", || {
        // SAFETY: the caller's cudaMemcpy3DParms.
        let parms = unsafe { ffi::get(p) }?;
        copy_3d(rt()?, &parms, 0, true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpy3DAsync(p: *const CudaMemcpy3DParms, stream: *mut c_void) -> CudaError {
    guard("cudaMemcpy3DAsync", || {
        // SAFETY: the caller's cudaMemcpy3DParms.
        let parms = unsafe { ffi::get(p) }?;
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        if let Some(captured) = graph::capture(s, || Ok(Op::Memcpy3D(graph::Copy3D(parms)))) {
            return captured;
        }
        copy_3d(rt, &parms, s, false)
    })
}

fn memset_3d(
    rt: &Runtime,
    p: CudaPitchedPtr,
    value: i32,
    e: CudaExtent,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    if e.width == 0 || e.height == 0 || e.depth == 0 {
        return Ok(());
    }
    for z in 0..e.depth {
        let ptr = (p.ptr as *mut u8).wrapping_add(offset_3d(&p, 0, 0, z)?) as *mut c_void;
        memset_2d(rt, ptr, p.pitch, value, e.width, e.height, stream, false)?;
    }
    if wait {
        rt.client.stream_synchronize(stream).map_err(cuda)?;
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemset3D(p: CudaPitchedPtr, value: i32, extent: CudaExtent) -> CudaError {
    guard("cudaMemset3D", || memset_3d(rt()?, p, value, extent, 0, true))
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemset3DAsync(
    p: CudaPitchedPtr,
    value: i32,
    extent: CudaExtent,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemset3DAsync", || {
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        if graph::is_capturing(s) {
            // One memset node per slice, as a 3D memset is a stack of 2D ones.
            for z in 0..extent.depth {
                let at = p.ptr as u64 + offset_3d(&p, 0, 0, z)? as u64;
                let op = || Ok(Op::Memset(graph::Memset::bytes(at, value, p.pitch, extent.height, extent.width)));
                graph::capture(s, op).unwrap_or(Ok(()))?;
            }
            return Ok(());
        }
        memset_3d(rt, p, value, extent, s, false)
    })
}

fn peer_copy(
    dst: *mut c_void,
    dst_dev: i32,
    src: *const c_void,
    src_dev: i32,
    count: usize,
    stream: u64,
    wait: bool,
) -> Result<(), CudaError> {
    let rt = rt()?;
    for d in [dst_dev, src_dev] {
        if u32::try_from(d).map_or(true, |d| d >= rt.device_count) {
            return Err(crate::state::INVALID_DEVICE);
        }
    }
    if count == 0 {
        return Ok(());
    }
    device_range(rt, src as u64, count)?;
    device_range(rt, dst as u64, count)?;
    // Unified addressing: the server's device-to-device copy moves data between GPUs.
    rt.client.memcpy_dtod(dst as u64, src as u64, count as u64, stream, wait).map_err(cuda)
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyPeer(
    dst: *mut c_void,
    dst_device: i32,
    src: *const c_void,
    src_device: i32,
    count: usize,
) -> CudaError {
    guard("cudaMemcpyPeer", || peer_copy(dst, dst_device, src, src_device, count, 0, true))
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyPeerAsync(
    dst: *mut c_void,
    dst_device: i32,
    src: *const c_void,
    src_device: i32,
    count: usize,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpyPeerAsync", || {
        let s = rt()?.stream(stream as usize)?;
        peer_copy(dst, dst_device, src, src_device, count, s, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaPointerGetAttributes(
    attributes: *mut CudaPointerAttributes,
    ptr: *const c_void,
) -> CudaError {
    guard("cudaPointerGetAttributes", || {
        let rt = rt()?;
        let p = ptr as u64;
        let managed =
            mirror::find(ptr as usize).filter(|f| matches!(f.kind, mirror::Kind::Managed | mirror::Kind::ManagedVar));
        let a = if let Some(mirror::Found { dev, .. }) = managed {
            CudaPointerAttributes {
                type_: 3,
                device: dev as i32,
                devicePointer: ptr as *mut c_void,
                hostPointer: ptr as *mut c_void,
                reserved: [0; 8],
            }
        } else if let Some((_, _, dev)) = rt.allocation(p) {
            CudaPointerAttributes {
                type_: 2,
                device: dev as i32,
                devicePointer: ptr as *mut c_void,
                hostPointer: std::ptr::null_mut(),
                reserved: [0; 8],
            }
        } else if rt.pinned_range(ptr as usize).is_some() {
            // Registered memory's device side may live elsewhere (`cudaHostGetDevicePointer`).
            let device = match mirror::find(ptr as usize) {
                Some(f) => (f.device + (ptr as usize - f.host) as u64) as *mut c_void,
                None => ptr as *mut c_void,
            };
            CudaPointerAttributes {
                type_: 1,
                device: current_device() as i32,
                devicePointer: device,
                hostPointer: ptr as *mut c_void,
                reserved: [0; 8],
            }
        } else {
            CudaPointerAttributes {
                type_: 0,
                device: -2,
                devicePointer: std::ptr::null_mut(),
                hostPointer: std::ptr::null_mut(),
                reserved: [0; 8],
            }
        };
        // SAFETY: the caller's cudaPointerAttributes.
        unsafe { ffi::put(attributes, a) }
    })
}

/// A device variable's range, recorded as device memory the client may copy to and from.
fn symbol(rt: &Runtime, symbol: *const c_void) -> Result<(u64, u64), CudaError> {
    let dev = current_device();
    let (addr, size) =
        registry::var(symbol as usize, dev).map_err(|e| if e == crate::state::SYMBOL_NOT_FOUND { 13 } else { e })?;
    rt.allocations.lock().entry(addr).or_insert((size, dev));
    Ok((addr, size))
}

fn symbol_span(rt: &Runtime, sym: *const c_void, count: usize, offset: usize) -> Result<u64, CudaError> {
    let (addr, size) = symbol(rt, sym)?;
    if offset.checked_add(count).is_none_or(|end| end as u64 > size) {
        return Err(INVALID_VALUE);
    }
    Ok(addr + offset as u64)
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyToSymbol(
    sym: *const c_void,
    src: *const c_void,
    count: usize,
    offset: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpyToSymbol", || {
        let rt = rt()?;
        if !matches!(kind, HOST_TO_DEVICE | DEVICE_TO_DEVICE | DEFAULT) {
            return Err(INVALID_MEMCPY_DIRECTION);
        }
        let at = symbol_span(rt, sym, count, offset)?;
        copy(rt, at as *mut c_void, src, count, kind, 0, true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyToSymbolAsync(
    sym: *const c_void,
    src: *const c_void,
    count: usize,
    offset: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpyToSymbolAsync", || {
        let rt = rt()?;
        if !matches!(kind, HOST_TO_DEVICE | DEVICE_TO_DEVICE | DEFAULT) {
            return Err(INVALID_MEMCPY_DIRECTION);
        }
        let at = symbol_span(rt, sym, count, offset)?;
        let s = rt.stream(stream as usize)?;
        let op = || Ok(Op::Memcpy(graph::Memcpy { dst: at, src: src as u64, count, kind }));
        if let Some(captured) = graph::capture(s, op) {
            return captured;
        }
        copy(rt, at as *mut c_void, src, count, kind, s, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyFromSymbol(
    dst: *mut c_void,
    sym: *const c_void,
    count: usize,
    offset: usize,
    kind: i32,
) -> CudaError {
    guard("cudaMemcpyFromSymbol", || {
        let rt = rt()?;
        if !matches!(kind, DEVICE_TO_HOST | DEVICE_TO_DEVICE | DEFAULT) {
            return Err(INVALID_MEMCPY_DIRECTION);
        }
        let at = symbol_span(rt, sym, count, offset)?;
        copy(rt, dst, at as *const c_void, count, kind, 0, true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemcpyFromSymbolAsync(
    dst: *mut c_void,
    sym: *const c_void,
    count: usize,
    offset: usize,
    kind: i32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemcpyFromSymbolAsync", || {
        let rt = rt()?;
        if !matches!(kind, DEVICE_TO_HOST | DEVICE_TO_DEVICE | DEFAULT) {
            return Err(INVALID_MEMCPY_DIRECTION);
        }
        let at = symbol_span(rt, sym, count, offset)?;
        let s = rt.stream(stream as usize)?;
        let op = || Ok(Op::Memcpy(graph::Memcpy { dst: dst as u64, src: at, count, kind }));
        if let Some(captured) = graph::capture(s, op) {
            return captured;
        }
        copy(rt, dst, at as *const c_void, count, kind, s, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetSymbolAddress(dev_ptr: *mut *mut c_void, sym: *const c_void) -> CudaError {
    guard("cudaGetSymbolAddress", || {
        let (addr, _) = symbol(rt()?, sym)?;
        // SAFETY: the caller's pointer slot.
        unsafe { ffi::put(dev_ptr, addr as *mut c_void) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetSymbolSize(size: *mut usize, sym: *const c_void) -> CudaError {
    guard("cudaGetSymbolSize", || {
        let (_, s) = symbol(rt()?, sym)?;
        // SAFETY: the caller's size_t.
        unsafe { ffi::put(size, usize::try_from(s).unwrap_or(usize::MAX)) }
    })
}
