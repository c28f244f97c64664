//! Managed memory and mapped pinned memory (the coherence itself is in `mirror.rs`): allocation,
//! device pointers of pinned memory, prefetch, advice and stream attachment.

use std::ffi::c_void;

use crate::ffi;
use crate::mirror;
use crate::state::{current_device, guard, rt, CudaError, INVALID_DEVICE, INVALID_VALUE};

const ATTACH_GLOBAL: u32 = 1;
const ATTACH_HOST: u32 = 2;
const ATTACH_SINGLE: u32 = 4;

/// `cudaMemLocation` (passed by value).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CudaMemLocation {
    kind: i32,
    id: i32,
}

const LOCATION_DEVICE: i32 = 1;
const LOCATION_HOST: i32 = 2;
const LOCATION_HOST_NUMA: i32 = 3;
const LOCATION_HOST_NUMA_CURRENT: i32 = 4;

#[no_mangle]
pub unsafe extern "C" fn cudaMallocManaged(dev_ptr: *mut *mut c_void, size: usize, flags: u32) -> CudaError {
    guard("cudaMallocManaged", || {
        if dev_ptr.is_null() || (flags != ATTACH_GLOBAL && flags != ATTACH_HOST) {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        if size == 0 {
            return Err(INVALID_VALUE);
        }
        let p = mirror::create_managed(rt, current_device(), size)?;
        // SAFETY: the caller's pointer slot (checked non-null).
        unsafe { ffi::put(dev_ptr, p as *mut c_void) }
    })
}

/// The managed range `[ptr, ptr + count)` must lie inside one managed allocation.
fn managed_range(ptr: usize, count: usize) -> Result<(), CudaError> {
    match mirror::find(ptr) {
        Some(f)
            if matches!(f.kind, mirror::Kind::Managed | mirror::Kind::ManagedVar)
                && ptr.checked_add(count).is_some_and(|end| end <= f.host + f.size) =>
        {
            Ok(())
        }
        _ => Err(INVALID_VALUE),
    }
}

#[no_mangle]
pub unsafe extern "C" fn cudaHostGetDevicePointer(
    p_device: *mut *mut c_void,
    p_host: *mut c_void,
    flags: u32,
) -> CudaError {
    guard("cudaHostGetDevicePointer", || {
        if p_device.is_null() || flags != 0 {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        let host = p_host as usize;
        if crate::arena::containing(host, 1).is_some() {
            // Shared with the worker and registered there: the same address on the device.
            // SAFETY: the caller's pointer slot (checked non-null).
            return unsafe { ffi::put(p_device, p_host) };
        }
        let device = match mirror::find(host) {
            Some(f) => f.device + (host - f.host) as u64,
            None => {
                let (base, size, _) = rt.pinned_range(host).ok_or(INVALID_VALUE)?;
                mirror::map_host(rt, current_device(), base, size)? + (host - base) as u64
            }
        };
        // SAFETY: the caller's pointer slot (checked non-null).
        unsafe { ffi::put(p_device, device as *mut c_void) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemPrefetchAsync(
    dev_ptr: *const c_void,
    count: usize,
    location: CudaMemLocation,
    flags: u32,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMemPrefetchAsync", || {
        let rt = rt()?;
        rt.stream(stream as usize)?;
        if flags != 0 {
            return Err(INVALID_VALUE);
        }
        managed_range(dev_ptr as usize, count)?;
        match location.kind {
            LOCATION_DEVICE => {
                if location.id < 0 || location.id as u32 >= rt.device_count {
                    return Err(INVALID_DEVICE);
                }
                // The device gets the host's changes now rather than at the next launch.
                mirror::touch(rt, &[(dev_ptr as u64, count)], &[])
            }
            LOCATION_HOST | LOCATION_HOST_NUMA | LOCATION_HOST_NUMA_CURRENT => mirror::synced(rt),
            _ => Err(INVALID_VALUE),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemAdvise(
    dev_ptr: *const c_void,
    count: usize,
    advice: i32,
    _location: CudaMemLocation,
) -> CudaError {
    guard("cudaMemAdvise", || {
        rt()?;
        // cudaMemAdviseSetReadMostly (1) … cudaMemAdviseUnsetAccessedBy (6): hints, accepted.
        if !(1..=6).contains(&advice) {
            return Err(INVALID_VALUE);
        }
        managed_range(dev_ptr as usize, count)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamAttachMemAsync(
    stream: *mut c_void,
    dev_ptr: *mut c_void,
    length: usize,
    flags: u32,
) -> CudaError {
    guard("cudaStreamAttachMemAsync", || {
        let rt = rt()?;
        rt.stream(stream as usize)?;
        if ![ATTACH_GLOBAL, ATTACH_HOST, ATTACH_SINGLE].contains(&flags) {
            return Err(INVALID_VALUE);
        }
        // Visibility is global on remora (every synchronisation brings managed data back), so
        // attaching only has to name managed memory; length 0 means the whole allocation.
        match mirror::find(dev_ptr as usize) {
            Some(f)
                if matches!(f.kind, mirror::Kind::Managed | mirror::Kind::ManagedVar)
                    && dev_ptr as usize == f.host
                    && (length == 0 || length == f.size) =>
            {
                Ok(())
            }
            _ => Err(INVALID_VALUE),
        }
    })
}
