//! Device management. Properties and attributes come from one `DeviceGetInfo` round trip per
//! device, cached for the life of the process.

use std::ffi::c_int;

use remora_interpose::cudart::types::{device_prop_from_attributes, CudaDeviceProp};

use crate::ffi;
use crate::state::{
    cuda, current_device, guard, rt, set_current_device, CudaError, INVALID_DEVICE, INVALID_VALUE, NO_DEVICE,
};

/// The CUDA runtime version this library stands in for (13.0).
const RUNTIME_VERSION: c_int = 13000;

fn device_arg(device: c_int) -> Result<u32, CudaError> {
    let dev = u32::try_from(device).map_err(|_| INVALID_DEVICE)?;
    if dev >= rt()?.device_count {
        return Err(INVALID_DEVICE);
    }
    Ok(dev)
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetDeviceCount(count: *mut c_int) -> CudaError {
    guard("cudaGetDeviceCount", || {
        let n = match rt() {
            Ok(rt) => rt.device_count,
            Err(e) => {
                // As libcudart: the count is 0 when no device can be used.
                // SAFETY: `count` is the caller's int.
                unsafe { ffi::put(count, 0) }?;
                return Err(e);
            }
        };
        if n == 0 {
            return Err(NO_DEVICE);
        }
        // SAFETY: `count` is the caller's int.
        unsafe { ffi::put(count, c_int::try_from(n).unwrap_or(c_int::MAX)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaSetDevice(device: c_int) -> CudaError {
    guard("cudaSetDevice", || {
        let dev = device_arg(device)?;
        set_current_device(dev);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetDevice(device: *mut c_int) -> CudaError {
    guard("cudaGetDevice", || {
        let d = c_int::try_from(current_device()).unwrap_or(0);
        // SAFETY: `device` is the caller's int.
        unsafe { ffi::put(device, d) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaInitDevice(device: c_int, _device_flags: u32, _flags: u32) -> CudaError {
    guard("cudaInitDevice", || device_arg(device).map(drop))
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetDeviceProperties(prop: *mut CudaDeviceProp, device: c_int) -> CudaError {
    guard("cudaGetDeviceProperties", || {
        if prop.is_null() {
            return Err(INVALID_VALUE);
        }
        let dev = device_arg(device)?;
        let info = rt()?.info(dev)?;
        let mut p =
            device_prop_from_attributes(info.name_str(), info.uuid, info.total_mem.get(), |a| info.attribute(a));
        // libcudart leaves `reserved` as the caller had it.
        // SAFETY: `prop` is the caller's cudaDeviceProp (checked non-null above).
        p.reserved = unsafe { ffi::get(std::ptr::addr_of!((*prop).reserved)) }?;
        // SAFETY: as above.
        unsafe { ffi::put(prop, p) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceGetAttribute(value: *mut c_int, attr: c_int, device: c_int) -> CudaError {
    guard("cudaDeviceGetAttribute", || {
        let dev = device_arg(device)?;
        let a = u32::try_from(attr).map_err(|_| INVALID_VALUE)?;
        let info = rt()?.info(dev)?;
        // cudaDeviceAttr values are CUdevice_attribute values.
        let v = if (a as usize) < remora_wire::ops::DEVICE_ATTRIBUTE_SLOTS {
            info.attribute(a)
        } else {
            rt()?.client.device_attribute(dev, a).map_err(cuda)?
        };
        // SAFETY: `value` is the caller's int.
        unsafe { ffi::put(value, v) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceSynchronize() -> CudaError {
    guard("cudaDeviceSynchronize", || {
        let rt = rt()?;
        rt.client.device_synchronize(current_device()).map_err(cuda)?;
        crate::mirror::synced(rt)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceReset() -> CudaError {
    guard("cudaDeviceReset", || {
        let rt = rt()?;
        let dev = current_device();
        rt.client.device_reset(dev).map_err(cuda)?;
        rt.allocations.lock().retain(|_, &mut (_, d)| d != dev);
        crate::registry::forget_device(dev);
        crate::mirror::forget_device(dev);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDriverGetVersion(version: *mut c_int) -> CudaError {
    guard("cudaDriverGetVersion", || {
        // Without a server there is no driver: 0, as libcudart reports without one.
        let v = match rt() {
            Ok(rt) => rt.client.driver_version().map_err(cuda)?,
            Err(_) => 0,
        };
        // SAFETY: `version` is the caller's int.
        unsafe { ffi::put(version, v) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaRuntimeGetVersion(version: *mut c_int) -> CudaError {
    // SAFETY: `version` is the caller's int.
    guard("cudaRuntimeGetVersion", || unsafe { ffi::put(version, RUNTIME_VERSION) })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemGetInfo(free: *mut usize, total: *mut usize) -> CudaError {
    guard("cudaMemGetInfo", || {
        let (f, t) = rt()?.client.mem_get_info(current_device()).map_err(cuda)?;
        let z = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        // SAFETY: `free` and `total` are the caller's size_t.
        unsafe {
            ffi::put(free, z(f))?;
            ffi::put(total, z(t))
        }
    })
}

thread_local! {
    static DEVICE_FLAGS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[no_mangle]
pub unsafe extern "C" fn cudaSetDeviceFlags(flags: u32) -> CudaError {
    guard("cudaSetDeviceFlags", || {
        // cudaDeviceScheduleMask | cudaDeviceMapHost | cudaDeviceLmemResizeToMax | cudaDeviceSyncMemops.
        if flags & !0x9f != 0 {
            return Err(INVALID_VALUE);
        }
        DEVICE_FLAGS.with(|f| f.set(flags));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetDeviceFlags(flags: *mut u32) -> CudaError {
    guard("cudaGetDeviceFlags", || {
        // cudaDeviceMapHost (0x08) is always on with unified addressing, as libcudart reports.
        let f = DEVICE_FLAGS.with(std::cell::Cell::get) | 0x08;
        // SAFETY: `flags` is the caller's unsigned int.
        unsafe { ffi::put(flags, f) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceEnablePeerAccess(peer: c_int, flags: u32) -> CudaError {
    guard("cudaDeviceEnablePeerAccess", || {
        if flags != 0 {
            return Err(INVALID_VALUE);
        }
        let p = device_arg(peer)?;
        rt()?.client.set_peer_access(current_device(), p, true).map_err(cuda)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceDisablePeerAccess(peer: c_int) -> CudaError {
    guard("cudaDeviceDisablePeerAccess", || {
        let p = device_arg(peer)?;
        rt()?.client.set_peer_access(current_device(), p, false).map_err(cuda)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceGetLimit(value: *mut usize, limit: c_int) -> CudaError {
    guard("cudaDeviceGetLimit", || {
        // cudaLimit values are CUlimit values.
        let l = u32::try_from(limit).map_err(|_| INVALID_VALUE)?;
        let v = rt()?.client.ctx_get_limit(current_device(), l).map_err(cuda)?;
        // SAFETY: the caller's size_t.
        unsafe { ffi::put(value, usize::try_from(v).unwrap_or(usize::MAX)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceSetLimit(limit: c_int, value: usize) -> CudaError {
    guard("cudaDeviceSetLimit", || {
        let l = u32::try_from(limit).map_err(|_| INVALID_VALUE)?;
        rt()?.client.ctx_set_limit(current_device(), l, value as u64).map_err(cuda)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceCanAccessPeer(can: *mut c_int, device: c_int, peer: c_int) -> CudaError {
    guard("cudaDeviceCanAccessPeer", || {
        let (d, p) = (device_arg(device)?, device_arg(peer)?);
        let v = if d == p { false } else { rt()?.client.can_access_peer(d, p).map_err(cuda)? };
        // SAFETY: `can` is the caller's int.
        unsafe { ffi::put(can, c_int::from(v)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceGetStreamPriorityRange(least: *mut c_int, greatest: *mut c_int) -> CudaError {
    guard("cudaDeviceGetStreamPriorityRange", || {
        // Hopper and every GPU CUDA 13 supports: 0 (least) to -5 (greatest).
        // SAFETY: either may be null (then skipped), else the caller's int.
        unsafe {
            if !least.is_null() {
                ffi::put(least, 0)?;
            }
            if !greatest.is_null() {
                ffi::put(greatest, -5)?;
            }
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaCtxResetPersistingL2Cache() -> CudaError {
    guard("cudaCtxResetPersistingL2Cache", || rt()?.client.ctx_reset_persisting_l2(current_device()).map_err(cuda))
}

/// Profiler ranges are a local tool's business: accepted, as with no profiler attached.
#[no_mangle]
pub unsafe extern "C" fn cudaProfilerStart() -> CudaError {
    guard("cudaProfilerStart", || rt().map(drop))
}

/// See [`cudaProfilerStart`].
#[no_mangle]
pub unsafe extern "C" fn cudaProfilerStop() -> CudaError {
    guard("cudaProfilerStop", || rt().map(drop))
}
