//! Events. Recording is fire-and-forget; waiting, querying and timing ask the server.

use std::ffi::c_void;

use crate::ffi;
use crate::state::{cuda, current_device, guard, rt, CudaError, INVALID_RESOURCE_HANDLE, INVALID_VALUE};

/// cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess.
const EVENT_FLAGS: u32 = 0x7;

fn create(event: *mut *mut c_void, flags: u32) -> Result<(), CudaError> {
    if event.is_null() || flags & !EVENT_FLAGS != 0 {
        return Err(INVALID_VALUE);
    }
    let h = rt()?.client.event_create(current_device(), flags).map_err(cuda)?;
    // SAFETY: the caller's cudaEvent_t slot (checked non-null).
    unsafe { ffi::put(event, h as *mut c_void) }
}

fn handle(event: *mut c_void) -> Result<u64, CudaError> {
    if event.is_null() {
        Err(INVALID_RESOURCE_HANDLE)
    } else {
        Ok(event as u64)
    }
}

/// Record on the server, or mark the point of a capture in progress on `stream`.
fn record(event: *mut c_void, stream: *mut c_void) -> Result<(), CudaError> {
    let rt = rt()?;
    let (e, s) = (handle(event)?, rt.stream(stream as usize)?);
    if let Some(captured) = crate::graph::record_event(e, s) {
        return captured;
    }
    rt.client.event_record(e, s).map_err(cuda)
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventCreate(event: *mut *mut c_void) -> CudaError {
    guard("cudaEventCreate", || create(event, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventCreateWithFlags(event: *mut *mut c_void, flags: u32) -> CudaError {
    guard("cudaEventCreateWithFlags", || create(event, flags))
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventRecord(event: *mut c_void, stream: *mut c_void) -> CudaError {
    guard("cudaEventRecord", || record(event, stream))
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventRecordWithFlags(event: *mut c_void, stream: *mut c_void, flags: u32) -> CudaError {
    guard("cudaEventRecordWithFlags", || {
        if flags & !1 != 0 {
            return Err(INVALID_VALUE);
        }
        record(event, stream)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventSynchronize(event: *mut c_void) -> CudaError {
    guard("cudaEventSynchronize", || {
        let rt = rt()?;
        crate::graph::refuse_captured_event(handle(event)?)?;
        rt.client.event_synchronize(handle(event)?).map_err(cuda)?;
        crate::mirror::synced(rt)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventQuery(event: *mut c_void) -> CudaError {
    guard("cudaEventQuery", || {
        let rt = rt()?;
        crate::graph::refuse_captured_event(handle(event)?)?;
        match rt.client.event_query(handle(event)?).map_err(cuda)? {
            true => Ok(()),
            false => Err(crate::state::NOT_READY),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventElapsedTime(ms: *mut f32, start: *mut c_void, end: *mut c_void) -> CudaError {
    guard("cudaEventElapsedTime", || {
        let t = rt()?.client.event_elapsed(handle(start)?, handle(end)?).map_err(cuda)?;
        // SAFETY: the caller's float.
        unsafe { ffi::put(ms, t) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaEventDestroy(event: *mut c_void) -> CudaError {
    guard("cudaEventDestroy", || rt()?.client.event_destroy(handle(event)?).map_err(cuda))
}
