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
        let to = location_id(rt, location)?;
        if to >= 0 {
            // The device gets the host's changes now rather than at the next launch.
            mirror::touch(rt, &[(dev_ptr as u64, count)], &[])?;
        } else {
            mirror::synced(rt)?;
        }
        mirror::advise(dev_ptr as usize, count, |a| a.last_prefetch = to)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemAdvise(
    dev_ptr: *const c_void,
    count: usize,
    advice: i32,
    location: CudaMemLocation,
) -> CudaError {
    guard("cudaMemAdvise", || {
        let rt = rt()?;
        managed_range(dev_ptr as usize, count)?;
        // Hints: recorded (cudaMemRangeGetAttribute reports them); coherence needs none.
        let at = || location_id(rt, location);
        match advice {
            1 => mirror::advise(dev_ptr as usize, count, |a| a.read_mostly = true),
            2 => mirror::advise(dev_ptr as usize, count, |a| a.read_mostly = false),
            3 => {
                let id = at()?;
                mirror::advise(dev_ptr as usize, count, |a| a.preferred = id)
            }
            4 => mirror::advise(dev_ptr as usize, count, |a| a.preferred = mirror::NO_LOCATION),
            5 => {
                let id = at()?;
                mirror::advise(dev_ptr as usize, count, |a| {
                    if !a.accessed_by.contains(&id) {
                        a.accessed_by.push(id);
                    }
                })
            }
            6 => {
                let id = at()?;
                mirror::advise(dev_ptr as usize, count, |a| a.accessed_by.retain(|&d| d != id))
            }
            _ => Err(INVALID_VALUE),
        }
    })
}

/// A location as CUDA's location ids: a device ordinal, or `cudaCpuDeviceId` (-1) for the host.
fn location_id(rt: &crate::state::Runtime, l: CudaMemLocation) -> Result<i32, CudaError> {
    match l.kind {
        LOCATION_DEVICE if l.id >= 0 && (l.id as u32) < rt.device_count => Ok(l.id),
        LOCATION_DEVICE => Err(INVALID_DEVICE),
        LOCATION_HOST | LOCATION_HOST_NUMA | LOCATION_HOST_NUMA_CURRENT => Ok(-1),
        _ => Err(INVALID_VALUE),
    }
}

/// One `cudaMemRangeAttribute` of a managed range into `data` (`size` bytes of ints).
fn range_attribute(data: *mut c_void, size: usize, attribute: i32, ptr: usize, count: usize) -> Result<(), CudaError> {
    managed_range(ptr, count)?;
    let a = mirror::advice(ptr, count)?;
    let kind = |id: i32| match id {
        mirror::NO_LOCATION => 0, // cudaMemLocationTypeInvalid
        -1 => LOCATION_HOST,
        _ => LOCATION_DEVICE,
    };
    let values: Vec<i32> = match attribute {
        1 => vec![i32::from(a.read_mostly)],
        2 => vec![a.preferred],
        3 => {
            let n = size / 4;
            (0..n).map(|i| a.accessed_by.get(i).copied().unwrap_or(mirror::NO_LOCATION)).collect()
        }
        4 => vec![a.last_prefetch],
        5 => vec![kind(a.preferred)],
        6 => vec![a.preferred.max(0)],
        7 => vec![kind(a.last_prefetch)],
        8 => vec![a.last_prefetch.max(0)],
        _ => return Err(INVALID_VALUE),
    };
    if data.is_null() || size == 0 || !size.is_multiple_of(4) || (attribute != 3 && size != 4) {
        return Err(INVALID_VALUE);
    }
    for (i, v) in values.into_iter().enumerate() {
        // SAFETY: the caller's buffer of `size` bytes holds `size / 4` ints (checked above).
        unsafe { ffi::put((data as *mut i32).wrapping_add(i), v) }?;
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemRangeGetAttribute(
    data: *mut c_void,
    data_size: usize,
    attribute: i32,
    dev_ptr: *const c_void,
    count: usize,
) -> CudaError {
    guard("cudaMemRangeGetAttribute", || {
        rt()?;
        range_attribute(data, data_size, attribute, dev_ptr as usize, count)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemRangeGetAttributes(
    data: *mut *mut c_void,
    data_sizes: *mut usize,
    attributes: *mut i32,
    num_attributes: usize,
    dev_ptr: *const c_void,
    count: usize,
) -> CudaError {
    guard("cudaMemRangeGetAttributes", || {
        rt()?;
        if num_attributes == 0 || data.is_null() || data_sizes.is_null() || attributes.is_null() {
            return Err(INVALID_VALUE);
        }
        for i in 0..num_attributes {
            // SAFETY: the caller's three arrays of `num_attributes` entries (checked non-null).
            let (d, s, a) = unsafe {
                (
                    ffi::get(data.wrapping_add(i))?,
                    ffi::get(data_sizes.wrapping_add(i))?,
                    ffi::get(attributes.wrapping_add(i))?,
                )
            };
            range_attribute(d, s, a, dev_ptr as usize, count)?;
        }
        Ok(())
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
