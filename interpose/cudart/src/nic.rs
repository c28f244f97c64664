//! Pinned memory registered with the network adapter. Over `rdma://`, memory the application
//! pins (`cudaMallocHost`, `cudaHostAlloc`, `cudaHostRegister`) is registered with the NIC once,
//! at pin time; copies between it and the GPU of at least [`DIRECT_MIN`] bytes are then one
//! small request, and the worker moves the bytes itself with RDMA READ (host → device) and RDMA
//! WRITE (device → host): no copy by this process, and an asynchronous copy stays
//! asynchronous. Smaller copies go inline with their request (one message beats a request
//! plus an RDMA round trip).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use remora_transport::Endpoint;

use crate::state::Runtime;

/// Copies smaller than this go inline even from registered memory.
pub(crate) const DIRECT_MIN: usize = 64 << 10;
const PAGE: usize = 4096;

/// Registered ranges: base → (length, remote key).
static REGIONS: Mutex<BTreeMap<usize, (usize, u32)>> = Mutex::new(BTreeMap::new());
/// Whether any range is registered: the one check a copy pays when none is.
static ANY: AtomicBool = AtomicBool::new(false);

/// The remote key of the registered range holding `[ptr, ptr + len)`, for a copy this large.
pub(crate) fn direct(ptr: usize, len: usize) -> Option<u32> {
    if len < DIRECT_MIN || !ANY.load(Ordering::Acquire) {
        return None;
    }
    let end = ptr.checked_add(len)?;
    let r = REGIONS.lock();
    let (&base, &(rlen, rkey)) = r.range(..=ptr).next_back()?;
    (end <= base + rlen).then_some(rkey)
}

/// Register the pinned range `[addr, addr + len)` with the NIC (whole pages). Does nothing off
/// rdma://; a refusal (e.g. the locked-memory limit) is logged and the range is copied through
/// the message path instead.
///
/// # Safety
/// The range must stay mapped until [`unregister`].
pub(crate) unsafe fn register(rt: &Runtime, addr: usize, len: usize) {
    if !matches!(rt.client.endpoint(), Endpoint::Rdma(_)) || len == 0 {
        return;
    }
    let base = addr & !(PAGE - 1);
    let Some(end) = addr.checked_add(len).and_then(|e| e.checked_next_multiple_of(PAGE)) else { return };
    // SAFETY: per this function's contract; whole pages around a mapped range are mapped.
    match unsafe { rt.client.register_remote(base, end - base) } {
        Some(Ok(rkey)) => {
            tracing::debug!("pinned {len} bytes at {addr:#x} registered with the NIC");
            REGIONS.lock().insert(base, (end - base, rkey));
            ANY.store(true, Ordering::Release);
        }
        Some(Err(e)) => tracing::warn!("pinned memory at {addr:#x} stays off the direct RDMA path: {e}"),
        None => {}
    }
}

/// Forget the registration of the range that starts on `addr`'s page.
pub(crate) fn unregister(rt: &Runtime, addr: usize) {
    if !ANY.load(Ordering::Acquire) {
        return;
    }
    let base = addr & !(PAGE - 1);
    if REGIONS.lock().remove(&base).is_some() {
        rt.client.deregister_remote(base);
    }
}
