//! Managed and mapped memory: host ranges that have a device copy at the *same address* in the
//! session's worker, kept coherent at the points CUDA's rules for devices without concurrent
//! managed access allow (docs/MANAGED-MEMORY.md).
//!
//! - `cudaMallocManaged`: the worker allocates (`MemAlloc`, rounded to whole granules), the
//!   client maps anonymous memory at exactly that address (another, if that one is taken here).
//! - `__managed__` variables: the module global's address, mapped the same way on the client;
//!   the program's host pointer slot is pointed at it.
//! - Pinned memory remora allocates (`cudaMallocHost`, `cudaHostAlloc`) takes its address from
//!   a device address-space reservation in the worker (`MemReserve`), so when it needs a device
//!   side (`cudaHostGetDevicePointer`, or the pointer passed to a kernel, as unified addressing
//!   allows) the worker maps memory at the same address (`MemAllocAt`).
//! - Registered memory (`cudaHostRegister`) keeps the application's address; its device side is
//!   elsewhere and `cudaHostGetDevicePointer` returns that (remora reports
//!   `cudaDevAttrCanUseHostPointerForRegisteredMem` = 0, as CUDA does where it differs).
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
/// Placing memory at a worker-chosen address tries this many addresses before giving up.
const PLACEMENT_TRIES: usize = 8;

/// What a mirror is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `cudaMallocManaged`: worker allocation; client mapping we made.
    Managed,
    /// A `__managed__` variable: the module's global; client mapping we made.
    ManagedVar,
    /// Pinned host memory given a device side (the worker's `MemAllocAt`); the host memory is
    /// the application's (allocated through us or registered).
    Mapped,
}

#[derive(Debug)]
struct Mirror {
    /// First host byte (the device address for every kind but registered memory).
    host: usize,
    size: usize,
    dev: u32,
    kind: Kind,
    /// Hash of each page as the device last had it (empty: unknown, push everything).
    hashes: Vec<u64>,
    host_turn: bool,
    device_dirty: bool,
    /// What `cudaMemAdvise` and `cudaMemPrefetchAsync` said of it (reported back by
    /// `cudaMemRangeGetAttribute`; coherence does not depend on them).
    advice: Advice,
}

/// Location ids as CUDA reports them: a device ordinal, `cudaCpuDeviceId` (-1) or
/// `cudaInvalidDeviceId` (-2, none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advice {
    pub(crate) read_mostly: bool,
    pub(crate) preferred: i32,
    pub(crate) accessed_by: Vec<i32>,
    pub(crate) last_prefetch: i32,
}

/// `cudaInvalidDeviceId`.
pub(crate) const NO_LOCATION: i32 = -2;

impl Default for Advice {
    fn default() -> Advice {
        Advice { read_mostly: false, preferred: NO_LOCATION, accessed_by: Vec::new(), last_prefetch: NO_LOCATION }
    }
}

#[derive(Default)]
struct Mirrors {
    /// By device address.
    by_dev: BTreeMap<u64, Mirror>,
    /// Host address → device address.
    by_host: BTreeMap<usize, u64>,
    /// Pinned allocations placed in worker reservations: host (= device) base → length.
    reserved: BTreeMap<usize, usize>,
}

/// Whether any mirror exists: the one check device work pays when there is none.
static ANY: AtomicBool = AtomicBool::new(false);
static MIRRORS: Mutex<Mirrors> =
    Mutex::new(Mirrors { by_dev: BTreeMap::new(), by_host: BTreeMap::new(), reserved: BTreeMap::new() });

fn insert(device: u64, host: usize, size: usize, dev: u32, kind: Kind) {
    let mut m = MIRRORS.lock();
    m.by_host.insert(host, device);
    let advice = Advice::default();
    m.by_dev.insert(
        device,
        Mirror { host, size, dev, kind, hashes: Vec::new(), host_turn: true, device_dirty: false, advice },
    );
    ANY.store(true, Ordering::Release);
}

/// One mirror as the shims see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub(crate) host: usize,
    pub(crate) device: u64,
    pub(crate) size: usize,
    pub(crate) kind: Kind,
    pub(crate) dev: u32,
}

/// The mirror whose *host* range contains `ptr`.
pub(crate) fn find(ptr: usize) -> Option<Found> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    let m = MIRRORS.lock();
    let (&host, &device) = m.by_host.range(..=ptr).next_back()?;
    let r = m.by_dev.get(&device)?;
    (ptr < host + r.size.max(1)).then_some(Found { host, device, size: r.size, kind: r.kind, dev: r.dev })
}

/// Update the advice of the mirror whose host range holds `[ptr, ptr + len)` (`INVALID_VALUE`
/// if none does).
pub(crate) fn advise(ptr: usize, len: usize, f: impl FnOnce(&mut Advice)) -> Result<(), CudaError> {
    let mut m = MIRRORS.lock();
    let device = {
        let (&host, &device) = m.by_host.range(..=ptr).next_back().ok_or(INVALID_VALUE)?;
        let r = m.by_dev.get(&device).ok_or(INVALID_VALUE)?;
        if ptr.checked_add(len).is_none_or(|end| end > host + r.size) {
            return Err(INVALID_VALUE);
        }
        device
    };
    f(&mut m.by_dev.get_mut(&device).ok_or(INVALID_VALUE)?.advice);
    Ok(())
}

/// The advice recorded for the mirror holding `[ptr, ptr + len)`.
pub(crate) fn advice(ptr: usize, len: usize) -> Result<Advice, CudaError> {
    let mut out = None;
    advise(ptr, len, |a| out = Some(a.clone()))?;
    out.ok_or(INVALID_VALUE)
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
    // SAFETY: only called on mappings `map_fixed` made, with their length, once nothing refers
    // to them any more (the application freed the memory).
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

fn page_len(size: usize) -> usize {
    size.max(1).next_multiple_of(PAGE)
}

/// Host memory at an address the worker hands out (`take` asks for `len` bytes), retrying
/// while the address is taken in this process. Refused addresses stay taken until the end, so
/// the worker does not offer them again, then are given back with `give_back`.
fn place(
    len: usize,
    take: impl Fn() -> Result<u64, CudaError>,
    give_back: impl Fn(u64),
) -> Result<Option<usize>, CudaError> {
    let mut refused = Vec::new();
    let mut placed = None;
    for _ in 0..PLACEMENT_TRIES {
        let a = take()?;
        match usize::try_from(a) {
            Ok(addr) if addr % PAGE == 0 && map_fixed(addr, len) => {
                placed = Some(addr);
                break;
            }
            _ => refused.push(a),
        }
    }
    for a in refused {
        give_back(a);
    }
    Ok(placed)
}

/// `cudaMallocManaged`: `size` bytes on `dev` that the host and the device address alike.
pub(crate) fn create_managed(rt: &Runtime, dev: u32, size: usize) -> Result<usize, CudaError> {
    let rounded = size.max(1).checked_next_multiple_of(GRANULE).ok_or(MEMORY_ALLOCATION)?;
    let take = || rt.client.mem_alloc(dev, rounded as u64).map_err(cuda);
    let Some(addr) = place(rounded, take, |a| {
        let _ = rt.client.mem_free(a);
    })?
    else {
        eprintln!(
            "remora: cudaMallocManaged({size}): none of {PLACEMENT_TRIES} device addresses is free in this process; \
             returning cudaErrorMemoryAllocation"
        );
        return Err(MEMORY_ALLOCATION);
    };
    rt.allocations.lock().insert(addr as u64, (size as u64, dev));
    insert(addr as u64, addr, size.max(1), dev, Kind::Managed);
    Ok(addr)
}

/// Pinned host memory for `cudaMallocHost`/`cudaHostAlloc`: `size` zeroed bytes at an address
/// reserved in the worker's device address space (whole granules), so a device side can be
/// mapped at the same address when needed. `None` when the worker has no reservation to give
/// (an older server) or no address is free here: the caller allocates plainly.
pub(crate) fn reserve_host(rt: &Runtime, dev: u32, size: usize) -> Result<Option<usize>, CudaError> {
    let len = size.max(1).checked_next_multiple_of(GRANULE).ok_or(MEMORY_ALLOCATION)?;
    let take = || rt.client.mem_reserve(dev, len as u64).map_err(cuda);
    match place(len, take, |a| {
        let _ = rt.client.mem_free(a);
    }) {
        Ok(Some(addr)) => {
            MIRRORS.lock().reserved.insert(addr, len);
            Ok(Some(addr))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::debug!(e, "no device address reservation for pinned memory; allocating it plainly");
            Ok(None)
        }
    }
}

/// Free what [`reserve_host`] made: the device side if any, the reservation, the host pages.
/// False if `base` is not such an allocation.
pub(crate) fn free_reserved_host(rt: &Runtime, base: usize) -> Result<bool, CudaError> {
    let Some(len) = MIRRORS.lock().reserved.remove(&base) else { return Ok(false) };
    let released = release(rt, base);
    let unreserved = rt.client.mem_free(base as u64).map_err(cuda);
    unmap(base, len);
    released?;
    unreserved?;
    Ok(true)
}

/// A `__managed__` variable's module global `[addr, addr + size)` on `dev`: map the host side,
/// fill it with the variable's initial value, and return its address for the program's slot.
pub(crate) fn adopt_var(rt: &Runtime, dev: u32, addr: u64, size: u64) -> Result<usize, CudaError> {
    let base = usize::try_from(addr).map_err(|_| INVALID_VALUE)?;
    if let Some(f) = find(base) {
        return Ok(f.host);
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
    insert(addr, base, size, dev, Kind::ManagedVar);
    if let Some(r) = MIRRORS.lock().by_dev.get_mut(&addr) {
        r.hashes = hashes(host);
    }
    Ok(base)
}

/// Give the pinned host range `[base, base + size)` a device side (idempotent) and return the
/// device address of `base`: the same address for memory [`reserve_host`] placed, elsewhere for
/// registered memory.
pub(crate) fn map_host(rt: &Runtime, dev: u32, base: usize, size: usize) -> Result<u64, CudaError> {
    if let Some(f) = find(base) {
        return Ok(f.device + (base - f.host) as u64);
    }
    let same_address = MIRRORS.lock().reserved.contains_key(&base);
    let want = if same_address { base as u64 } else { 0 };
    match rt.client.mem_alloc_at(dev, want, size as u64) {
        Ok(device) => {
            if device != base as u64 {
                // Copies may name the device side; the client checks ranges like cudaMalloc's.
                rt.allocations.lock().insert(device, (size as u64, dev));
            }
            insert(device, base, size, dev, Kind::Mapped);
            Ok(device)
        }
        Err(s) => {
            eprintln!(
                "remora: cannot give pinned host memory at {base:#x} ({size} bytes) a device side ({s:?}); \
                 kernels cannot use it"
            );
            Err(cuda(s))
        }
    }
}

/// Those of `words` (a kernel's argument words: it may be given host pointers) that point into
/// an allocation placed by [`reserve_host`] with no device side yet. One lock; nothing to do,
/// and no lookup per word, while no such allocation exists.
pub(crate) fn reserved_hosts_without_device_side(words: impl Iterator<Item = usize>) -> Vec<usize> {
    let m = MIRRORS.lock();
    if m.reserved.is_empty() {
        return Vec::new();
    }
    words
        .filter(|&w| {
            m.reserved
                .range(..=w)
                .next_back()
                .is_some_and(|(&base, &len)| w < base + len && !m.by_host.contains_key(&base))
        })
        .collect()
}

/// The mirror whose host range starts at `host` is going away (the application freed it):
/// release its device side and, for managed memory, the client mapping. Returns whether there
/// was one.
pub(crate) fn release(rt: &Runtime, host: usize) -> Result<bool, CudaError> {
    let (device, r) = {
        let mut m = MIRRORS.lock();
        let Some(device) = m.by_host.remove(&host) else { return Ok(false) };
        let Some(r) = m.by_dev.remove(&device) else { return Ok(false) };
        (device, r)
    };
    match r.kind {
        Kind::Managed => {
            rt.allocations.lock().remove(&device);
            unmap(host, r.size.next_multiple_of(GRANULE));
            rt.client.mem_free(device).map_err(cuda)?;
        }
        Kind::Mapped => {
            rt.allocations.lock().remove(&device);
            rt.client.mem_free(device).map_err(cuda)?;
        }
        Kind::ManagedVar => {
            let start = host / PAGE * PAGE;
            unmap(start, page_len(host + r.size - start));
        }
    }
    Ok(true)
}

/// The server released everything of the session on `dev` (`cudaDeviceReset`): drop its mirrors
/// (managed pointers dangle afterwards, as with CUDA; pinned memory stays host memory).
pub(crate) fn forget_device(dev: u32) {
    let mut m = MIRRORS.lock();
    let gone: Vec<u64> = m.by_dev.iter().filter(|(_, r)| r.dev == dev).map(|(&d, _)| d).collect();
    for device in gone {
        let Some(r) = m.by_dev.remove(&device) else { continue };
        m.by_host.remove(&r.host);
        match r.kind {
            Kind::Managed => unmap(r.host, r.size.next_multiple_of(GRANULE)),
            Kind::ManagedVar => {
                let start = r.host / PAGE * PAGE;
                unmap(start, page_len(r.host + r.size - start));
            }
            Kind::Mapped => {}
        }
    }
}

fn hashes(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks(PAGE).map(xxhash_rust::xxh3::xxh3_64).collect()
}

/// Push the pages of `r` (device side at `device`) that changed since the device had them.
fn push(rt: &Runtime, device: u64, r: &mut Mirror) -> Result<(), CudaError> {
    // SAFETY: a mirror's host range is mapped and readable for as long as the mirror exists
    // (our own mapping, or pinned memory the application has not freed: it must unregister or
    // free it through us first).
    let bytes = unsafe { std::slice::from_raw_parts(r.host as *const u8, r.size) };
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
            rt.client.memcpy_htod_async(device + s as u64, &bytes[s..e], 0).map_err(cuda)?;
        }
        // The last one waits, so the data is on the device before work on any stream starts.
        rt.client.memcpy_htod(device + s as u64, &bytes[s..e]).map_err(cuda)?;
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
    for (&device, r) in m.by_dev.iter_mut() {
        if r.host_turn {
            push(rt, device, r)?;
        }
        r.device_dirty = true;
    }
    Ok(())
}

/// Device work that reads `reads` and writes `writes` (device addresses) is about to be sent.
pub(crate) fn touch(rt: &Runtime, reads: &[(u64, usize)], writes: &[(u64, usize)]) -> Result<(), CudaError> {
    if !ANY.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut m = MIRRORS.lock();
    let mut visit = |ptr: u64, write: bool| -> Result<(), CudaError> {
        let Some((&device, r)) = m.by_dev.range_mut(..=ptr).next_back() else { return Ok(()) };
        if ptr >= device + r.size.max(1) as u64 {
            return Ok(());
        }
        if r.host_turn {
            push(rt, device, r)?;
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

/// The host is about to read or write the host memory at `ptr` directly (one side of a copy):
/// if it is a mirror device work may have written, bring every mirror up to date first.
pub(crate) fn host_access(rt: &Runtime, ptr: usize) -> Result<(), CudaError> {
    let Some(f) = find(ptr) else { return Ok(()) };
    let dirty = MIRRORS.lock().by_dev.get(&f.device).is_some_and(|r| r.device_dirty);
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
    let mut devices: Vec<u32> = m.by_dev.values().filter(|r| r.device_dirty).map(|r| r.dev).collect();
    devices.sort_unstable();
    devices.dedup();
    for d in devices {
        rt.client.device_synchronize(d).map_err(cuda)?;
    }
    for (&device, r) in m.by_dev.iter_mut() {
        if r.device_dirty {
            // SAFETY: as in `push`, the host range is mapped and writable while the mirror lives;
            // the application may not touch it while device work is pending (CUDA's rule for
            // devices without concurrent managed access, which remora reports).
            let bytes = unsafe { std::slice::from_raw_parts_mut(r.host as *mut u8, r.size) };
            rt.client.memcpy_dtoh(bytes, device).map_err(cuda)?;
            r.hashes = hashes(bytes);
            r.device_dirty = false;
        }
        r.host_turn = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_mapping_refuses_taken_addresses() {
        let len = 3 * PAGE;
        // A free address: probe with a fresh mapping, release it, take it back with map_fixed.
        // Other test threads may map the hole in between, so try a few times.
        let free = (0..20)
            .find_map(|_| {
                // SAFETY: a fresh anonymous mapping, released at once; only its address is used.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                } as usize;
                unmap(p, len);
                map_fixed(p, len).then_some(p)
            })
            .expect("a free range maps at its exact address");
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
