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

use remora_wire::Status;

use crate::state::Runtime;

/// Copies smaller than this go inline even from registered memory.
pub(crate) const DIRECT_MIN: usize = 64 << 10;
const PAGE: usize = 4096;

/// Registered ranges: page-aligned base → (length, remote key, the address the application
/// pinned, which frees it).
static REGIONS: Mutex<BTreeMap<usize, (usize, u32, usize)>> = Mutex::new(BTreeMap::new());
/// Whether any range is registered: the one check a copy pays when none is.
static ANY: AtomicBool = AtomicBool::new(false);
/// Whether a direct copy has succeeded: until one has, direct copies wait for their answer, so
/// a worker that cannot do them (`NOT_SUPPORTED`) is noticed and the copy redone inline.
static VERIFIED: AtomicBool = AtomicBool::new(false);
/// Set when the worker cannot do direct copies: every copy goes through the message path.
static OFF: AtomicBool = AtomicBool::new(false);

/// The remote key of the registered range holding `[ptr, ptr + len)`, for a copy this large.
pub(crate) fn direct(ptr: usize, len: usize) -> Option<u32> {
    if len < DIRECT_MIN || !ANY.load(Ordering::Acquire) || OFF.load(Ordering::Relaxed) {
        return None;
    }
    let end = ptr.checked_add(len)?;
    let r = REGIONS.lock();
    let (&base, &(rlen, rkey, _)) = r.range(..=ptr).next_back()?;
    (end <= base + rlen).then_some(rkey)
}

/// A direct copy of `len` bytes between device address `device` and registered host memory
/// `host` (key `rkey`). `None` when the worker cannot do it (the caller copies inline; later
/// copies do too).
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy(
    rt: &Runtime,
    device: u64,
    host: u64,
    len: usize,
    stream: u64,
    rkey: u32,
    to_device: bool,
    wait: bool,
) -> Option<Result<(), Status>> {
    let wait = wait || !VERIFIED.load(Ordering::Relaxed);
    match rt.client.memcpy_remote(device, host, len as u64, stream, rkey, to_device, wait) {
        Err(Status::NOT_SUPPORTED) => {
            tracing::warn!("the worker cannot move pinned memory by RDMA; copying through the message path");
            OFF.store(true, Ordering::Relaxed);
            None
        }
        r => {
            if r.is_ok() && wait {
                VERIFIED.store(true, Ordering::Relaxed);
            }
            Some(r)
        }
    }
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
            REGIONS.lock().insert(base, (end - base, rkey, addr));
            ANY.store(true, Ordering::Release);
        }
        Some(Err(e)) => tracing::warn!("pinned memory at {addr:#x} stays off the direct RDMA path: {e}"),
        None => {}
    }
}

/// Forget the registration made for the pinned range at `addr` (`cudaFreeHost`,
/// `cudaHostUnregister`). A fire-and-forget copy may still be queued in the worker with its key:
/// one round trip first (the worker answers in order, after finishing every earlier copy), so
/// the worker never reads or writes a region that is gone.
pub(crate) fn unregister(rt: &Runtime, addr: usize) {
    if !ANY.load(Ordering::Acquire) {
        return;
    }
    let base = addr & !(PAGE - 1);
    let mut regions = REGIONS.lock();
    if !matches!(regions.get(&base), Some(&(_, _, a)) if a == addr) {
        return;
    }
    regions.remove(&base);
    drop(regions);
    if let Err(s) = rt.client.ping() {
        tracing::debug!(?s, "round trip before deregistering pinned memory failed");
    }
    rt.client.deregister_remote(base);
}
