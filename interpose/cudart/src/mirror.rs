//! Managed and mapped memory: host ranges that have a device copy at the *same address* in the
//! session's worker, kept coherent at the points CUDA's rules for devices without concurrent
//! managed access allow (docs/MANAGED-MEMORY.md).
//!
//! - `cudaMallocManaged`: the worker allocates (`MemAlloc`, rounded to whole granules), the
//!   client maps anonymous memory at exactly that address.
//! - `__managed__` variables: the module global's address, mapped the same way on the client;
//!   the program's host pointer slot is pointed at it.
//! - Mapped pinned memory (`cudaHostGetDevicePointer`, or a pinned pointer passed to a kernel):
//!   the client's range, and the worker maps device memory at that address (`MemAllocAt`).
//!
//! Coherence: every mirror has two flags. `host_turn` — the host may have written it since the
//! last push (set at every synchronising call); `device_dirty` — device work may have written it
//! since the last fetch. Before device work that may touch a mirror (every kernel launch; a copy
//! or memset naming it), pages whose content changed since the device last had them (a 64-bit
//! hash per 4 KiB page) are pushed. At a synchronising call, if any mirror is device-dirty, the
//! devices are synchronised and those mirrors fetched whole. No signals and no page protection:
//! the host may read or write mirrors with system calls (`read(2)` into managed memory works).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::state::{cuda, CudaError, Runtime, INVALID_VALUE, MEMORY_ALLOCATION};

/// The device's mapping granule remora assumes (the CUDA VMM minimum on current GPUs): mirrors
/// of different allocations never share one.
pub(crate) const GRANULE: usize = 2 << 20;
const PAGE: usize = 4096;
/// `cudaMallocManaged` tries this many worker addresses before giving up.
const PLACEMENT_TRIES: usize = 8;

/// What a mirror is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `cudaMallocManaged`: worker allocation; client mapping we made.
    Managed,
    /// A `__managed__` variable: the module's global; client mapping we made.
    ManagedVar,
    /// Pinned host memory given a device side: the worker's `MemAllocAt`; host memory is the
    /// application's.
    Mapped,
}

#[derive(Debug)]
struct Mirror {
    size: usize,
    dev: u32,
    kind: Kind,
    /// Hash of each page as the device last had it (empty: unknown, push everything).
    hashes: Vec<u64>,
    host_turn: bool,
    device_dirty: bool,
}

/// Whether any mirror exists: the one check device work pays when there is none.
static ANY: AtomicBool = AtomicBool::new(false);
static MIRRORS: Mutex<BTreeMap<usize, Mirror>> = Mutex::new(BTreeMap::new());

fn insert(base: usize, size: usize, dev: u32, kind: Kind) {
    let mut m = MIRRORS.lock();
    m.insert(base, Mirror { size, dev, kind, hashes: Vec::new(), host_turn: true, device_dirty: false });
    ANY.store(true, Ordering::Release);
}

/// The mirror containing `ptr`: (base, size, kind, device).
pub(crate) fn find(ptr: usize) -> Option<(usize, usize, Kind, u32)> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    let m = MIRRORS.lock();
    let (&base, r) = m.range(..=ptr).next_back()?;
    (ptr < base + r.size.max(1)).then_some((base, r.size, r.kind, r.dev))
}

/// Map anonymous memory at exactly `[addr, addr + len)`; false if anything is there.
fn map_fixed(addr: usize, len: usize) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: it fails (EEXIST) or
    // creates fresh anonymous zero pages at exactly `addr`, which no Rust object refers to.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    if p as usize != addr {
        // A kernel older than 4.17 treats the flag as a hint: undo a mapping elsewhere.
        // SAFETY: `p` is the mapping just made, of `len` bytes.
        unsafe { libc::munmap(p, len) };
        return false;
    }
    true
}

fn unmap(addr: usize, len: usize) {
    // SAFETY: only called on mappings `map_fixed` made, with their length, once their mirror is
    // gone (the application freed the memory).
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

fn page_len(size: usize) -> usize {
    size.max(1).next_multiple_of(PAGE)
}

/// `cudaMallocManaged`: `size` bytes on `dev` that the host and the device address alike.
pub(crate) fn create_managed(rt: &Runtime, dev: u32, size: usize) -> Result<usize, CudaError> {
    let rounded = size.max(1).checked_next_multiple_of(GRANULE).ok_or(MEMORY_ALLOCATION)?;
    let mut refused = Vec::new();
    let mut placed = None;
    for _ in 0..PLACEMENT_TRIES {
        let a = rt.client.mem_alloc(dev, rounded as u64).map_err(cuda)?;
        let addr = usize::try_from(a).map_err(|_| MEMORY_ALLOCATION)?;
        if addr % PAGE == 0 && map_fixed(addr, rounded) {
            placed = Some(addr);
            break;
        }
        // Taken on this side: keep it allocated (so the worker does not offer it again).
        refused.push(a);
    }
    for a in refused {
        let _ = rt.client.mem_free(a);
    }
    let Some(addr) = placed else {
        eprintln!(
            "remora: cudaMallocManaged({size}): none of {PLACEMENT_TRIES} device addresses is free in this process; \
             returning cudaErrorMemoryAllocation"
        );
        return Err(MEMORY_ALLOCATION);
    };
    rt.allocations.lock().insert(addr as u64, (size as u64, dev));
    insert(addr, size.max(1), dev, Kind::Managed);
    Ok(addr)
}

/// A `__managed__` variable's module global `[addr, addr + size)` on `dev`: map the host side,
/// fill it with the variable's initial value, and return its address for the program's slot.
pub(crate) fn adopt_var(rt: &Runtime, dev: u32, addr: u64, size: u64) -> Result<usize, CudaError> {
    let base = usize::try_from(addr).map_err(|_| INVALID_VALUE)?;
    if let Some((b, ..)) = find(base) {
        return Ok(b);
    }
    let size = usize::try_from(size).map_err(|_| INVALID_VALUE)?.max(1);
    let start = base / PAGE * PAGE;
    let len = page_len(base + size - start);
    if !map_fixed(start, len) {
        eprintln!(
            "remora: a __managed__ variable's device address {addr:#x} is taken in this process; \
             host accesses to it will fail"
        );
        return Err(MEMORY_ALLOCATION);
    }
    // SAFETY: `[base, base + size)` lies inside the mapping just made.
    let host = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, size) };
    rt.client.memcpy_dtoh(host, addr).map_err(cuda)?;
    insert(base, size, dev, Kind::ManagedVar);
    let mut m = MIRRORS.lock();
    if let Some(r) = m.get_mut(&base) {
        r.hashes = hashes(host);
    }
    Ok(base)
}

/// Give the pinned host range `[base, base + size)` a device side at the same address (idempotent).
pub(crate) fn map_host(rt: &Runtime, dev: u32, base: usize, size: usize) -> Result<(), CudaError> {
    if find(base).is_some() {
        return Ok(());
    }
    match rt.client.mem_alloc_at(dev, base as u64, size as u64) {
        Ok(()) => {
            insert(base, size, dev, Kind::Mapped);
            Ok(())
        }
        Err(s) => {
            eprintln!(
                "remora: cannot give pinned host memory at {base:#x} ({size} bytes) a device mapping at the same \
                 address ({s:?}); kernels cannot use it"
            );
            Err(cuda(s))
        }
    }
}

/// The mirror at `base` is going away (the application freed it): release its device side and,
/// for managed memory, the client mapping. Returns whether there was one.
pub(crate) fn release(rt: &Runtime, base: usize) -> Result<bool, CudaError> {
    let Some(r) = MIRRORS.lock().remove(&base) else { return Ok(false) };
    match r.kind {
        Kind::Managed => {
            rt.allocations.lock().remove(&(base as u64));
            unmap(base, r.size.next_multiple_of(GRANULE));
            rt.client.mem_free(base as u64).map_err(cuda)?;
        }
        Kind::Mapped => rt.client.mem_free(base as u64).map_err(cuda)?,
        Kind::ManagedVar => {
            let start = base / PAGE * PAGE;
            unmap(start, page_len(base + r.size - start));
        }
    }
    Ok(true)
}

/// The server released everything of the session on `dev` (`cudaDeviceReset`): drop its mirrors
/// (managed pointers dangle afterwards, as with CUDA).
pub(crate) fn forget_device(dev: u32) {
    let gone: Vec<(usize, Mirror)> = {
        let mut m = MIRRORS.lock();
        let keys: Vec<usize> = m.iter().filter(|(_, r)| r.dev == dev).map(|(&b, _)| b).collect();
        keys.into_iter().filter_map(|b| m.remove(&b).map(|r| (b, r))).collect()
    };
    for (base, r) in gone {
        match r.kind {
            Kind::Managed => unmap(base, r.size.next_multiple_of(GRANULE)),
            Kind::ManagedVar => {
                let start = base / PAGE * PAGE;
                unmap(start, page_len(base + r.size - start));
            }
            Kind::Mapped => {}
        }
    }
}

fn hashes(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks(PAGE).map(xxhash_rust::xxh3::xxh3_64).collect()
}

/// Push the pages of `r` (at `base`) that changed since the device had them.
fn push(rt: &Runtime, base: usize, r: &mut Mirror) -> Result<(), CudaError> {
    // SAFETY: a mirror's host range is mapped and readable for as long as the mirror exists
    // (our own mapping, or pinned memory the application has not freed: it must unregister or
    // free it through us first).
    let bytes = unsafe { std::slice::from_raw_parts(base as *const u8, r.size) };
    let now = hashes(bytes);
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, h) in now.iter().enumerate() {
        if r.hashes.get(i) == Some(h) {
            continue;
        }
        let (start, end) = (i * PAGE, ((i + 1) * PAGE).min(r.size));
        match runs.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => runs.push((start, end)),
        }
    }
    if let Some((&(s, e), rest)) = runs.split_last() {
        for &(s, e) in rest {
            rt.client.memcpy_htod_async((base + s) as u64, &bytes[s..e], 0).map_err(cuda)?;
        }
        // The last one waits, so the data is on the device before work on any stream starts.
        rt.client.memcpy_htod((base + s) as u64, &bytes[s..e]).map_err(cuda)?;
    }
    r.hashes = now;
    r.host_turn = false;
    Ok(())
}

/// Device work that may read or write every mirror (a kernel launch) is about to be sent.
pub(crate) fn touch_all(rt: &Runtime) -> Result<(), CudaError> {
    if !ANY.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut m = MIRRORS.lock();
    for (&base, r) in m.iter_mut() {
        if r.host_turn {
            push(rt, base, r)?;
        }
        r.device_dirty = true;
    }
    Ok(())
}

/// Device work that reads `reads` and writes `writes` (device-side ranges) is about to be sent.
pub(crate) fn touch(rt: &Runtime, reads: &[(u64, usize)], writes: &[(u64, usize)]) -> Result<(), CudaError> {
    if !ANY.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut m = MIRRORS.lock();
    let mut visit = |ptr: u64, write: bool| -> Result<(), CudaError> {
        let Ok(p) = usize::try_from(ptr) else { return Ok(()) };
        let Some((&base, r)) = m.range_mut(..=p).next_back() else { return Ok(()) };
        if p >= base + r.size.max(1) {
            return Ok(());
        }
        if r.host_turn {
            push(rt, base, r)?;
        }
        r.device_dirty |= write;
        Ok(())
    };
    for &(p, _) in reads {
        visit(p, false)?;
    }
    for &(p, _) in writes {
        visit(p, true)?;
    }
    Ok(())
}

/// The host is about to read or write `[ptr, ptr + len)` directly (one side of a copy that is
/// host memory): if it is a mirror device work may have written, bring it up to date first.
pub(crate) fn host_access(rt: &Runtime, ptr: usize) -> Result<(), CudaError> {
    if find(ptr).is_none() {
        return Ok(());
    }
    let dirty = MIRRORS.lock().values().any(|r| r.device_dirty);
    if dirty {
        synced(rt)?;
    }
    Ok(())
}

/// A synchronising call returned: fetch what device work may have written (after letting every
/// device finish, so no kernel still writes what is read), and give the host its turn.
pub(crate) fn synced(rt: &Runtime) -> Result<(), CudaError> {
    if !ANY.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut m = MIRRORS.lock();
    let mut devices: Vec<u32> = m.values().filter(|r| r.device_dirty).map(|r| r.dev).collect();
    devices.sort_unstable();
    devices.dedup();
    for d in devices {
        rt.client.device_synchronize(d).map_err(cuda)?;
    }
    for (&base, r) in m.iter_mut() {
        if r.device_dirty {
            // SAFETY: as in `push`, the host range is mapped and writable while the mirror lives;
            // the application may not touch it while device work is pending (CUDA's rule for
            // devices without concurrent managed access, which remora reports).
            let bytes = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, r.size) };
            rt.client.memcpy_dtoh(bytes, base as u64).map_err(cuda)?;
            r.hashes = hashes(bytes);
            r.device_dirty = false;
        }
        r.host_turn = true;
    }
    Ok(())
}

/// `cudaMemPrefetchAsync` to the host: this mirror's device data now (after the devices finish).
pub(crate) fn fetch_now(rt: &Runtime) -> Result<(), CudaError> {
    synced(rt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_mapping_refuses_taken_addresses() {
        let len = 3 * PAGE;
        // SAFETY: a fresh anonymous mapping to find a free address, then released.
        let free = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        } as usize;
        unmap(free, len);
        assert!(map_fixed(free, len), "a free range maps");
        assert!(!map_fixed(free + PAGE, PAGE), "an occupied range is refused, not replaced");
        // SAFETY: the mapping made above is writable.
        unsafe { *(free as *mut u8) = 7 };
        unmap(free, len);
    }

    #[test]
    fn page_hashes_see_one_changed_byte() {
        let mut v = vec![0u8; 3 * PAGE + 10];
        let before = hashes(&v);
        assert_eq!(before.len(), 4);
        v[PAGE + 5] = 1;
        let after = hashes(&v);
        assert_eq!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
        assert_eq!(before[2..], after[2..]);
    }
}
