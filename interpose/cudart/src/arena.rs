//! Shared pinned memory on the same host. Over `shm://`, `cudaMallocHost`/`cudaHostAlloc`
//! memory is a file in `/dev/shm` that this process and its worker map at the same address; the
//! worker registers it with the driver. Copies between it and the GPU are then one small request
//! and a DMA (no bytes through the transport), `cudaMemcpyAsync` with it is truly asynchronous,
//! and kernels may use the pointer directly: it is the same physical memory on both sides.
//! Elsewhere (tcp, or when the worker cannot map it) pinned memory is plain memory of this
//! process (`mirror.rs` gives it a device side when a kernel needs one).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use remora_transport::Endpoint;
use remora_wire::Status;

use crate::state::{cuda, CudaError, Runtime};

const PAGE: usize = 4096;
/// Host → device copies from an arena at least this large are DMAed by the worker from the
/// shared memory; smaller ones go inline with their request (measured on the H200: a 4 B copy
/// 8.2–8.7 µs through the arena's DMA against 3.5–4.3 µs inline; 64 KiB favours the DMA).
pub(crate) const DMA_MIN: usize = 16 << 10;
/// Addresses tried before falling back to plain memory.
const PLACEMENT_TRIES: usize = 8;

static ARENAS: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());
/// Whether any arena exists: the one check a copy pays when there is none.
static ANY: AtomicBool = AtomicBool::new(false);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The arena holding `[ptr, ptr + len)`, if one does.
pub(crate) fn containing(ptr: usize, len: usize) -> Option<usize> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    let end = ptr.checked_add(len)?;
    let a = ARENAS.lock();
    let (&base, &alen) = a.range(..=ptr).next_back()?;
    (end <= base + alen).then_some(base)
}

fn unmap(addr: usize, len: usize) {
    // SAFETY: only mappings this module made, with their length, once nothing uses them.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

/// Shared pinned memory of `size` bytes, or `None` when this is not a same-host session or the
/// worker cannot map it (the caller then allocates plainly).
pub(crate) fn alloc(rt: &Runtime, size: usize) -> Result<Option<usize>, CudaError> {
    if !matches!(rt.client.endpoint(), Endpoint::Shm(_)) {
        return Ok(None);
    }
    let len = size.max(1).checked_next_multiple_of(PAGE).ok_or(crate::state::MEMORY_ALLOCATION)?;
    let Some(addr) = create(rt, len) else { return Ok(None) };
    tracing::debug!("shared pinned memory: {len} bytes at {addr:#x}, registered by the worker");
    ARENAS.lock().insert(addr, len);
    ANY.store(true, Ordering::Release);
    Ok(Some(addr))
}

/// A fresh shared file of `len` bytes (a multiple of the page size) mapped here and by the
/// worker at the same address; `None` when that cannot be done.
pub(crate) fn create(rt: &Runtime, len: usize) -> Option<usize> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag = remora_transport::auth::nonce();
    let name =
        format!("remora-arena-{}-{n}-{:02x}{:02x}{:02x}{:02x}", std::process::id(), tag[0], tag[1], tag[2], tag[3]);
    let path = CString::new(format!("/dev/shm/{name}")).ok()?;
    // SAFETY: `path` is NUL-terminated; O_EXCL makes a fresh file only this process created.
    let fd = unsafe {
        libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o600 as libc::c_uint)
    };
    if fd < 0 {
        tracing::debug!("no shared pinned memory ({}); allocating plainly", std::io::Error::last_os_error());
        return None;
    }
    let placed = place(rt, fd, len, &name);
    // SAFETY: `fd` and `path` are ours; mappings keep the memory alive without either.
    unsafe {
        libc::close(fd);
        libc::unlink(path.as_ptr());
    }
    placed
}

/// Map `fd` here and have the worker map it at the same address, retrying while the address
/// is taken there. Refused mappings stay until the end (so the kernel does not hand them out
/// again), then are released.
fn place(rt: &Runtime, fd: libc::c_int, len: usize, name: &str) -> Option<usize> {
    // SAFETY: `fd` is a file this process just created.
    if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
        return None;
    }
    let mut refused = Vec::new();
    let mut placed = None;
    for _ in 0..PLACEMENT_TRIES {
        // SAFETY: a fresh shared mapping of our own file; no Rust object refers to it yet.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if p == libc::MAP_FAILED {
            break;
        }
        match rt.client.arena_map(p as u64, len as u64, name) {
            Ok(()) => {
                placed = Some(p as usize);
                break;
            }
            Err(Status::ADDRESS_IN_USE) => refused.push(p as usize),
            Err(s) => {
                tracing::debug!(?s, "the worker cannot map shared pinned memory; allocating plainly");
                refused.push(p as usize);
                break;
            }
        }
    }
    for p in refused {
        unmap(p, len);
    }
    placed
}

/// Free an arena (`cudaFreeHost`); false if `base` is not one.
pub(crate) fn free(rt: &Runtime, base: usize) -> Result<bool, CudaError> {
    let Some(len) = ARENAS.lock().remove(&base) else { return Ok(false) };
    let r = rt.client.arena_unmap(base as u64).map_err(cuda);
    unmap(base, len);
    r.map(|()| true)
}
