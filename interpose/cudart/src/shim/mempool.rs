//! Stream-ordered allocation (`cudaMallocAsync`, `cudaFreeAsync`) and memory pools.
//!
//! Emulated on the client over plain allocations, which keeps every guarantee a program can
//! rely on: an allocation is usable at once (so certainly by the time its stream reaches it),
//! and a free waits until the stream has finished the work queued before it. What is lost is
//! the driver's reuse of freed memory within a stream without synchronising; pools are the
//! device's default pool with attributes kept here.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ffi;
use crate::graph::{self, Op};
use crate::state::{cuda, current_device, guard, rt, CudaError, INVALID_VALUE};

/// `cudaMemPoolAttr` values.
const REUSE_FOLLOW_EVENT_DEPENDENCIES: c_int = 1;
const REUSE_ALLOW_INTERNAL_DEPENDENCIES: c_int = 3;
const RELEASE_THRESHOLD: c_int = 4;
const RESERVED_MEM_CURRENT: c_int = 5;
const USED_MEM_HIGH: c_int = 8;

/// Default pool handles: a recognisable constant plus the device.
const POOL_BASE: usize = 0x7e3f_0000_0000;

struct Pools {
    /// (pool, attribute) → value, for the attributes a program may set.
    attrs: HashMap<(usize, c_int), u64>,
    /// Bytes allocated through pools: current and high-water mark, per pool.
    used: HashMap<usize, (u64, u64)>,
    /// Stream-ordered allocations: pointer → (pool, size).
    live: HashMap<u64, (usize, u64)>,
}

static POOLS: Mutex<Option<Pools>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Pools) -> R) -> R {
    let mut g = POOLS.lock();
    f(g.get_or_insert_with(|| Pools { attrs: HashMap::new(), used: HashMap::new(), live: HashMap::new() }))
}

fn default_pool(dev: u32) -> usize {
    POOL_BASE + dev as usize
}

fn pool_device(pool: usize) -> Result<u32, CudaError> {
    let dev = pool.checked_sub(POOL_BASE).and_then(|d| u32::try_from(d).ok()).ok_or(INVALID_VALUE)?;
    if dev >= rt()?.device_count {
        return Err(INVALID_VALUE);
    }
    Ok(dev)
}

fn alloc(ptr: *mut *mut c_void, size: usize, pool: usize) -> Result<(), CudaError> {
    if ptr.is_null() {
        return Err(INVALID_VALUE);
    }
    let dev = pool_device(pool)?;
    let rt = rt()?;
    let p = if size == 0 { 0 } else { rt.client.mem_alloc(dev, size as u64).map_err(cuda)? };
    if p != 0 {
        rt.allocations.lock().insert(p, (size as u64, dev));
        with(|s| {
            s.live.insert(p, (pool, size as u64));
            let u = s.used.entry(pool).or_insert((0, 0));
            u.0 += size as u64;
            u.1 = u.1.max(u.0);
        });
    }
    // SAFETY: the caller's pointer slot (checked non-null).
    unsafe { ffi::put(ptr, p as *mut c_void) }
}

fn free(ptr: *mut c_void, stream: *mut c_void) -> Result<(), CudaError> {
    let rt = rt()?;
    let p = ptr as u64;
    if p == 0 {
        return Ok(());
    }
    match rt.allocation(p) {
        Some((base, _, _)) if base == p => {}
        _ => return Err(INVALID_VALUE),
    }
    // The memory may still be in use by work queued on the stream before this free.
    rt.client.stream_synchronize(rt.stream(stream as usize)?).map_err(cuda)?;
    rt.client.mem_free(p).map_err(cuda)?;
    rt.allocations.lock().remove(&p);
    with(|s| {
        if let Some((pool, size)) = s.live.remove(&p) {
            if let Some(u) = s.used.get_mut(&pool) {
                u.0 = u.0.saturating_sub(size);
            }
        }
    });
    Ok(())
}

/// In a capture, a stream-ordered allocation becomes a graph alloc node: allocated now, at an
/// address fixed for the graph's life (see `crate::graph`), not counted in the pool.
fn captured_alloc(ptr: *mut *mut c_void, size: usize, stream: *mut c_void) -> Option<Result<(), CudaError>> {
    let rt = rt().ok()?;
    let s = rt.stream(stream as usize).ok()?;
    if !graph::is_capturing(s) || size == 0 {
        return None;
    }
    Some((|| {
        if ptr.is_null() {
            return Err(INVALID_VALUE);
        }
        let dev = current_device();
        let p = rt.client.mem_alloc(dev, size as u64).map_err(cuda)?;
        rt.allocations.lock().insert(p, (size as u64, dev));
        let node = Arc::new(graph::GraphAlloc { ptr: p });
        graph::capture(s, || Ok(Op::MemAlloc(node))).unwrap_or(Ok(()))?;
        // SAFETY: the caller's pointer slot (checked non-null).
        unsafe { ffi::put(ptr, p as *mut c_void) }
    })())
}

#[no_mangle]
pub unsafe extern "C" fn cudaMallocAsync(ptr: *mut *mut c_void, size: usize, stream: *mut c_void) -> CudaError {
    guard("cudaMallocAsync", || {
        captured_alloc(ptr, size, stream).unwrap_or_else(|| alloc(ptr, size, default_pool(current_device())))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMallocFromPoolAsync(
    ptr: *mut *mut c_void,
    size: usize,
    pool: *mut c_void,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaMallocFromPoolAsync", || {
        captured_alloc(ptr, size, stream).unwrap_or_else(|| alloc(ptr, size, pool as usize))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaFreeAsync(ptr: *mut c_void, stream: *mut c_void) -> CudaError {
    guard("cudaFreeAsync", || {
        let s = rt()?.stream(stream as usize)?;
        // In a capture: a free node (nothing is freed; see `crate::graph`).
        graph::capture(s, || Ok(Op::MemFree(ptr as u64))).unwrap_or_else(|| free(ptr, stream))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceGetDefaultMemPool(pool: *mut *mut c_void, device: c_int) -> CudaError {
    guard("cudaDeviceGetDefaultMemPool", || {
        let dev = u32::try_from(device).map_err(|_| crate::state::INVALID_DEVICE)?;
        if dev >= rt()?.device_count {
            return Err(crate::state::INVALID_DEVICE);
        }
        // SAFETY: the caller's cudaMemPool_t slot.
        unsafe { ffi::put(pool, default_pool(dev) as *mut c_void) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDeviceGetMemPool(pool: *mut *mut c_void, device: c_int) -> CudaError {
    // SAFETY: same contract.
    unsafe { cudaDeviceGetDefaultMemPool(pool, device) }
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemPoolSetAttribute(pool: *mut c_void, attr: c_int, value: *mut c_void) -> CudaError {
    guard("cudaMemPoolSetAttribute", || {
        let pool = pool as usize;
        pool_device(pool)?;
        let v = match attr {
            REUSE_FOLLOW_EVENT_DEPENDENCIES..=REUSE_ALLOW_INTERNAL_DEPENDENCIES => {
                // SAFETY: these attributes are `int`s.
                u64::from(unsafe { ffi::get(value as *const c_int) }? != 0)
            }
            // SAFETY: the threshold is a `cuuint64_t`.
            RELEASE_THRESHOLD => unsafe { ffi::get(value as *const u64) }?,
            // The high-water marks may only be reset to zero.
            6 | USED_MEM_HIGH => {
                // SAFETY: the statistics are `cuuint64_t`s.
                if unsafe { ffi::get(value as *const u64) }? != 0 {
                    return Err(INVALID_VALUE);
                }
                if attr == USED_MEM_HIGH {
                    with(|s| {
                        let u = s.used.entry(pool).or_insert((0, 0));
                        u.1 = u.0;
                    });
                }
                return Ok(());
            }
            _ => return Err(INVALID_VALUE),
        };
        with(|s| s.attrs.insert((pool, attr), v));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemPoolGetAttribute(pool: *mut c_void, attr: c_int, value: *mut c_void) -> CudaError {
    guard("cudaMemPoolGetAttribute", || {
        let pool = pool as usize;
        pool_device(pool)?;
        let (used, high) = with(|s| s.used.get(&pool).copied().unwrap_or((0, 0)));
        match attr {
            REUSE_FOLLOW_EVENT_DEPENDENCIES..=REUSE_ALLOW_INTERNAL_DEPENDENCIES => {
                let v = with(|s| s.attrs.get(&(pool, attr)).copied()).unwrap_or(1);
                // SAFETY: these attributes are `int`s.
                unsafe { ffi::put(value as *mut c_int, c_int::from(v != 0)) }
            }
            RELEASE_THRESHOLD => {
                let v = with(|s| s.attrs.get(&(pool, attr)).copied()).unwrap_or(0);
                // SAFETY: a `cuuint64_t`.
                unsafe { ffi::put(value as *mut u64, v) }
            }
            // Reserved (current, high) and used (current, high): what this process holds.
            RESERVED_MEM_CURRENT..=USED_MEM_HIGH => {
                let v = if attr % 2 == 1 { used } else { high };
                // SAFETY: a `cuuint64_t`.
                unsafe { ffi::put(value as *mut u64, v) }
            }
            _ => Err(INVALID_VALUE),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaMemPoolTrimTo(pool: *mut c_void, _min_bytes_to_keep: usize) -> CudaError {
    // Freed memory is returned at once here: there is never anything to trim.
    guard("cudaMemPoolTrimTo", || pool_device(pool as usize).map(drop))
}
