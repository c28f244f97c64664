//! Streams. Handles are the server's; `cudaStreamLegacy` (and 0) is the legacy default stream,
//! `cudaStreamPerThread` a stream of the calling thread's own, created on first use.
//! Host callbacks run on the client, in the calling thread, once the stream has reached them.

use std::ffi::{c_int, c_void};

use crate::ffi;
use crate::graph::{self, Op};
use crate::state::{cuda, current_device, guard, rt, CudaError, INVALID_RESOURCE_HANDLE, INVALID_VALUE};

/// `cudaStreamNonBlocking`.
const NON_BLOCKING: u32 = 1;

fn create(stream: *mut *mut c_void, flags: u32, priority: c_int) -> Result<(), CudaError> {
    if stream.is_null() || flags & !NON_BLOCKING != 0 {
        return Err(INVALID_VALUE);
    }
    let rt = rt()?;
    // Priorities outside the device's range are clamped, as libcudart does.
    let priority = priority.clamp(-5, 0);
    let h = rt.client.stream_create(current_device(), flags, priority).map_err(cuda)?;
    rt.streams.lock().insert(h, (flags, priority));
    // SAFETY: the caller's cudaStream_t slot (checked non-null).
    unsafe { ffi::put(stream, h as *mut c_void) }
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamCreate(stream: *mut *mut c_void) -> CudaError {
    guard("cudaStreamCreate", || create(stream, 0, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamCreateWithFlags(stream: *mut *mut c_void, flags: u32) -> CudaError {
    guard("cudaStreamCreateWithFlags", || create(stream, flags, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamCreateWithPriority(
    stream: *mut *mut c_void,
    flags: u32,
    priority: c_int,
) -> CudaError {
    guard("cudaStreamCreateWithPriority", || create(stream, flags, priority))
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamDestroy(stream: *mut c_void) -> CudaError {
    guard("cudaStreamDestroy", || {
        let s = stream as usize;
        if s <= 2 {
            return Err(INVALID_RESOURCE_HANDLE);
        }
        let rt = rt()?;
        rt.client.stream_destroy(s as u64).map_err(cuda)?;
        rt.streams.lock().remove(&(s as u64));
        Ok(())
    })
}

/// The (flags, priority) of a `cudaStream_t`: the default streams are blocking, priority 0.
fn stream_info(stream: *mut c_void) -> Result<(u32, i32), CudaError> {
    let s = stream as usize;
    if s <= 2 {
        return Ok((0, 0));
    }
    rt()?.streams.lock().get(&(s as u64)).copied().ok_or(INVALID_RESOURCE_HANDLE)
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamGetFlags(stream: *mut c_void, flags: *mut u32) -> CudaError {
    guard("cudaStreamGetFlags", || {
        let (f, _) = stream_info(stream)?;
        // SAFETY: the caller's unsigned int.
        unsafe { ffi::put(flags, f) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamGetPriority(stream: *mut c_void, priority: *mut c_int) -> CudaError {
    guard("cudaStreamGetPriority", || {
        let (_, p) = stream_info(stream)?;
        // SAFETY: the caller's int.
        unsafe { ffi::put(priority, p) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamSynchronize(stream: *mut c_void) -> CudaError {
    guard("cudaStreamSynchronize", || {
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        graph::refuse_if_capturing(s)?;
        rt.client.stream_synchronize(s).map_err(cuda)?;
        crate::mirror::synced(rt)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamQuery(stream: *mut c_void) -> CudaError {
    guard("cudaStreamQuery", || {
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        graph::refuse_if_capturing(s)?;
        match rt.client.stream_query(s).map_err(cuda)? {
            true => Ok(()),
            false => Err(crate::state::NOT_READY),
        }
    })
}

/// `cudaEventWaitExternal`.
const WAIT_EXTERNAL: u32 = 1;

#[no_mangle]
pub unsafe extern "C" fn cudaStreamWaitEvent(stream: *mut c_void, event: *mut c_void, flags: u32) -> CudaError {
    guard("cudaStreamWaitEvent", || {
        if event.is_null() {
            return Err(INVALID_RESOURCE_HANDLE);
        }
        if flags & !WAIT_EXTERNAL != 0 {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        if let Some(captured) = graph::wait_event(s, event as u64, flags & WAIT_EXTERNAL != 0) {
            return captured;
        }
        rt.client.stream_wait_event(s, event as u64, flags).map_err(cuda)
    })
}

/// `cudaHostFn_t`.
pub(crate) type HostFn = unsafe extern "C" fn(user_data: *mut c_void);
/// `cudaStreamCallback_t`.
pub(crate) type StreamCallback = unsafe extern "C" fn(stream: *mut c_void, status: CudaError, user_data: *mut c_void);

#[no_mangle]
pub unsafe extern "C" fn cudaLaunchHostFunc(
    stream: *mut c_void,
    f: Option<HostFn>,
    user_data: *mut c_void,
) -> CudaError {
    guard("cudaLaunchHostFunc", || {
        let f = f.ok_or(INVALID_VALUE)?;
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        if let Some(captured) = graph::capture(s, || Ok(Op::Host(graph::Host { f, user_data: user_data as usize }))) {
            return captured;
        }
        rt.client.stream_synchronize(s).map_err(cuda)?;
        crate::mirror::synced(rt)?;
        // SAFETY: the application's callback, called with its own user data, as CUDA would.
        unsafe { f(user_data) };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamAddCallback(
    stream: *mut c_void,
    cb: Option<StreamCallback>,
    user_data: *mut c_void,
    flags: u32,
) -> CudaError {
    guard("cudaStreamAddCallback", || {
        let cb = cb.ok_or(INVALID_VALUE)?;
        if flags != 0 {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        // CUDA refuses stream callbacks in a capture (host nodes are cudaLaunchHostFunc's).
        graph::refuse_if_capturing(s)?;
        let status = match rt.client.stream_synchronize(s).map_err(cuda).and_then(|()| crate::mirror::synced(rt)) {
            Ok(()) => 0,
            Err(e) => e,
        };
        // SAFETY: the application's callback with its stream, the stream's status and its data.
        unsafe { cb(stream, status, user_data) };
        Ok(())
    })
}

/// `cudaStreamAttrValue` (`union cudaLaunchAttributeValue`): 64 bytes.
type StreamAttrValue = [u8; 64];

#[no_mangle]
pub unsafe extern "C" fn cudaStreamSetAttribute(
    stream: *mut c_void,
    attr: c_int,
    value: *const StreamAttrValue,
) -> CudaError {
    guard("cudaStreamSetAttribute", || {
        // SAFETY: the caller's attribute value (64 bytes).
        let v = unsafe { ffi::get(value) }?;
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        let attr = u32::try_from(attr).map_err(|_| INVALID_VALUE)?;
        rt.client.stream_set_attribute(current_device(), s, attr, v).map_err(cuda)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamGetAttribute(
    stream: *mut c_void,
    attr: c_int,
    value: *mut StreamAttrValue,
) -> CudaError {
    guard("cudaStreamGetAttribute", || {
        if value.is_null() {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        let attr = u32::try_from(attr).map_err(|_| INVALID_VALUE)?;
        let v = rt.client.stream_get_attribute(current_device(), s, attr).map_err(cuda)?;
        // SAFETY: the caller's out-parameter (checked non-null).
        unsafe { ffi::put(value, v) }
    })
}
