//! Kernel launch: the CUDA 13 `<<<>>>` path (`__cudaPushCallConfiguration`,
//! `__cudaPopCallConfiguration`, `__cudaGetKernel`, `__cudaLaunchKernel`), `cudaLaunchKernel`,
//! cooperative launch, and function attributes (per-thread-stream variants: `per_thread.rs`).
//!
//! Launches are fire-and-forget: the kernel's parameters are packed at the offsets of its
//! parameter table and sent; a failure surfaces at the next synchronising call, as on a local
//! GPU. Launch configurations are checked here first, against the device's cached limits, so
//! an invalid one fails at once with `cudaErrorInvalidConfiguration` as libcudart does.

use std::cell::RefCell;
use std::ffi::c_void;

use remora_interpose::client::LaunchDims;
use remora_interpose::cudart::types::{CudaFuncAttributes, Dim3};

use crate::ffi;
use crate::graph;
use crate::registry;
use crate::state::{
    cuda, current_device, guard, rt, CudaError, INVALID_CONFIGURATION, INVALID_DEVICE_FUNCTION, INVALID_VALUE,
};

#[derive(Clone, Copy)]
struct CallConfig {
    grid: Dim3,
    block: Dim3,
    shared_mem: usize,
    stream: usize,
}

thread_local! {
    static CONFIGS: RefCell<Vec<CallConfig>> = const { RefCell::new(Vec::new()) };
}

#[no_mangle]
pub unsafe extern "C" fn __cudaPushCallConfiguration(
    grid: Dim3,
    block: Dim3,
    shared_mem: usize,
    stream: *mut c_void,
) -> u32 {
    CONFIGS.with(|c| c.borrow_mut().push(CallConfig { grid, block, shared_mem, stream: stream as usize }));
    0
}

#[no_mangle]
pub unsafe extern "C" fn __cudaPopCallConfiguration(
    grid: *mut Dim3,
    block: *mut Dim3,
    shared_mem: *mut usize,
    stream: *mut c_void,
) -> CudaError {
    guard("__cudaPopCallConfiguration", || {
        let c = CONFIGS.with(|c| c.borrow_mut().pop()).ok_or(INVALID_CONFIGURATION)?;
        // SAFETY: the launch stub passes addresses of its locals (dim3, dim3, size_t, cudaStream_t).
        unsafe {
            ffi::put(grid, c.grid)?;
            ffi::put(block, c.block)?;
            ffi::put(shared_mem, c.shared_mem)?;
            ffi::put(stream as *mut usize, c.stream)?;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn __cudaGetKernel(kernel: *mut *const c_void, host_fun: *const c_void) -> CudaError {
    guard("__cudaGetKernel", || {
        if !registry::is_kernel(host_fun as usize) {
            return Err(INVALID_DEVICE_FUNCTION);
        }
        // The kernel handle is the host stub itself: launches look it up in the registry.
        // SAFETY: the stub passes the address of its static cudaKernel_t.
        unsafe { ffi::put(kernel, host_fun) }
    })
}

fn check_config(dev: u32, grid: Dim3, block: Dim3) -> Result<(), CudaError> {
    let info = rt()?.info(dev)?;
    let a = |n: u32| i64::from(info.attribute(n));
    let (b, g) = ([block.x, block.y, block.z].map(i64::from), [grid.x, grid.y, grid.z].map(i64::from));
    let threads = b[0] * b[1] * b[2];
    // CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1, MAX_BLOCK_DIM_X..Z = 2..4, MAX_GRID_DIM_X..Z = 5..7.
    let bad = threads == 0
        || g.contains(&0)
        || threads > a(1)
        || (0..3u32).any(|i| b[i as usize] > a(2 + i) || g[i as usize] > a(5 + i));
    // CUDA 13 reports an impossible configuration as cudaErrorInvalidValue (measured on the H200).
    if bad {
        Err(INVALID_VALUE)
    } else {
        Ok(())
    }
}

/// A launch the server can run: the kernel's function on the device and its packed argument
/// bytes. Made by [`prepare`]; graphs keep one per kernel node and replay it with [`send`].
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    /// The kernel's host stub (its handle in the registry).
    pub(crate) host_fun: usize,
    pub(crate) grid: Dim3,
    pub(crate) block: Dim3,
    pub(crate) shared_mem: usize,
    /// The argument bytes, at the offsets of the kernel's parameter table.
    pub(crate) params: Vec<u8>,
}

/// Check a launch against the device's and the kernel's limits (as libcudart does before
/// launching) and pack its arguments: the bytes `args` points to, copied now.
pub(crate) fn prepare(
    host_fun: usize,
    grid: Dim3,
    block: Dim3,
    args: *mut *mut c_void,
    shared_mem: usize,
) -> Result<Packed, CudaError> {
    let dev = current_device();
    let (_, layout) = checked_kernel(host_fun, dev, grid, block, shared_mem)?;
    let total = layout.iter().map(|&(o, s)| o as usize + s as usize).max().unwrap_or(0);
    let mut params = vec![0u8; total];
    for (i, &(offset, size)) in layout.iter().enumerate() {
        // SAFETY: `args` holds one pointer per kernel parameter (the launch contract).
        let arg = unsafe { ffi::get(args.add(i)) }?;
        // SAFETY: each points to the argument's value, `size` bytes as the kernel declares it.
        let value = unsafe { ffi::bytes(arg as *const u8, size as usize) }?;
        params[offset as usize..offset as usize + size as usize].copy_from_slice(value);
    }
    Ok(Packed { host_fun, grid, block, shared_mem, params })
}

/// The kernel's function on `dev`, once the configuration passed the device's and the kernel's
/// launch limits (`__launch_bounds__`, dynamic shared memory).
fn checked_kernel(
    host_fun: usize,
    dev: u32,
    grid: Dim3,
    block: Dim3,
    shared_mem: usize,
) -> Result<(u64, registry::Layout), CudaError> {
    check_config(dev, grid, block)?;
    let (function, layout) = registry::kernel(host_fun, dev)?;
    let (max_threads, max_dynamic_shared) = registry::launch_limits(host_fun, dev, function)?;
    let threads = u64::from(block.x) * u64::from(block.y) * u64::from(block.z);
    if threads > u64::try_from(max_threads).unwrap_or(0)
        || shared_mem > usize::try_from(max_dynamic_shared).unwrap_or(0)
    {
        return Err(INVALID_VALUE);
    }
    Ok((function, layout))
}

/// Launch a packed kernel on `stream` (a wire handle) on the current device, fire-and-forget.
pub(crate) fn send(p: &Packed, stream: u64, cooperative: bool) -> Result<(), CudaError> {
    let rt = rt()?;
    let (function, _) = checked_kernel(p.host_fun, current_device(), p.grid, p.block, p.shared_mem)?;
    let dims = LaunchDims {
        grid: [p.grid.x, p.grid.y, p.grid.z],
        block: [p.block.x, p.block.y, p.block.z],
        shared_mem: u32::try_from(p.shared_mem).map_err(|_| INVALID_VALUE)?,
    };
    map_pinned_arguments(rt, &p.params)?;
    crate::mirror::touch_all(rt)?;
    if cooperative {
        rt.client.launch_cooperative(function, dims, stream, &p.params).map_err(cuda)
    } else {
        rt.client.launch(function, dims, stream, &p.params).map_err(cuda)
    }
}

/// With unified addressing a kernel may be given pinned host memory directly: every aligned
/// pointer-sized word of the parameters that points into pinned memory remora allocated gives
/// that allocation a device side at the same address (once), so the kernel finds the data there.
fn map_pinned_arguments(rt: &crate::state::Runtime, params: &[u8]) -> Result<(), CudaError> {
    let words = params.chunks_exact(8).filter_map(|w| usize::try_from(u64::from_le_bytes(w.try_into().ok()?)).ok());
    for word in crate::mirror::reserved_hosts_without_device_side(words) {
        if let Some((base, size, _)) = rt.pinned_range(word) {
            crate::mirror::map_host(rt, current_device(), base, size)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn launch(
    host_fun: usize,
    grid: Dim3,
    block: Dim3,
    args: *mut *mut c_void,
    shared_mem: usize,
    stream: usize,
    cooperative: bool,
) -> Result<(), CudaError> {
    let rt = rt()?;
    let packed = prepare(host_fun, grid, block, args, shared_mem)?;
    let s = rt.stream(stream)?;
    if let Some(captured) = graph::capture(s, || Ok(graph::Op::Kernel(packed.clone()))) {
        return captured;
    }
    send(&packed, s, cooperative)
}

#[no_mangle]
pub unsafe extern "C" fn __cudaLaunchKernel(
    kernel: *const c_void,
    grid: Dim3,
    block: Dim3,
    args: *mut *mut c_void,
    shared_mem: usize,
    stream: *mut c_void,
) -> CudaError {
    guard("__cudaLaunchKernel", || launch(kernel as usize, grid, block, args, shared_mem, stream as usize, false))
}

#[no_mangle]
pub unsafe extern "C" fn cudaLaunchKernel(
    func: *const c_void,
    grid: Dim3,
    block: Dim3,
    args: *mut *mut c_void,
    shared_mem: usize,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaLaunchKernel", || launch(func as usize, grid, block, args, shared_mem, stream as usize, false))
}

#[no_mangle]
pub unsafe extern "C" fn cudaLaunchCooperativeKernel(
    func: *const c_void,
    grid: Dim3,
    block: Dim3,
    args: *mut *mut c_void,
    shared_mem: usize,
    stream: *mut c_void,
) -> CudaError {
    guard("cudaLaunchCooperativeKernel", || launch(func as usize, grid, block, args, shared_mem, stream as usize, true))
}

/// `CUfunction_attribute` values, in `cudaFuncAttributes` order.
const FUNC_ATTRS: [i32; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

#[no_mangle]
pub unsafe extern "C" fn cudaFuncGetAttributes(attr: *mut CudaFuncAttributes, func: *const c_void) -> CudaError {
    guard("cudaFuncGetAttributes", || {
        let rt = rt()?;
        let (f, _) = registry::kernel(func as usize, current_device())?;
        let mut v = [0i32; 10];
        for (slot, &a) in v.iter_mut().zip(&FUNC_ATTRS) {
            *slot = rt.client.func_get_attribute(f, a).map_err(cuda)?;
        }
        let size = |x: i32| usize::try_from(x).unwrap_or(0);
        let mut out = <CudaFuncAttributes as zerocopy::FromZeros>::new_zeroed();
        out.maxThreadsPerBlock = v[0];
        out.sharedSizeBytes = size(v[1]);
        out.constSizeBytes = size(v[2]);
        out.localSizeBytes = size(v[3]);
        out.numRegs = v[4];
        out.ptxVersion = v[5];
        out.binaryVersion = v[6];
        out.cacheModeCA = v[7];
        out.maxDynamicSharedSizeBytes = v[8];
        out.preferredShmemCarveout = v[9];
        // SAFETY: `attr` is the caller's cudaFuncAttributes.
        unsafe { ffi::put(attr, out) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaFuncSetAttribute(func: *const c_void, attr: i32, value: i32) -> CudaError {
    guard("cudaFuncSetAttribute", || {
        let rt = rt()?;
        let (f, _) = registry::kernel(func as usize, current_device())?;
        // cudaFuncAttribute values 8 and 9 are CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES and
        // PREFERRED_SHARED_MEMORY_CARVEOUT; the rest follow the same numbering.
        rt.client.func_set_attribute(f, attr, value).map_err(cuda)?;
        registry::forget_limits(func as usize, current_device());
        Ok(())
    })
}

fn occupancy(
    num_blocks: *mut i32,
    func: *const c_void,
    block_size: i32,
    dynamic_smem: usize,
    flags: u32,
) -> Result<(), CudaError> {
    let rt = rt()?;
    let (f, _) = registry::kernel(func as usize, current_device())?;
    let block = u32::try_from(block_size).map_err(|_| INVALID_VALUE)?;
    let n = rt.client.occupancy_max_active_blocks(f, block, dynamic_smem as u64, flags).map_err(cuda)?;
    // SAFETY: the caller's int.
    unsafe { ffi::put(num_blocks, n) }
}

#[no_mangle]
pub unsafe extern "C" fn cudaOccupancyMaxActiveBlocksPerMultiprocessor(
    num_blocks: *mut i32,
    func: *const c_void,
    block_size: i32,
    dynamic_smem: usize,
) -> CudaError {
    guard("cudaOccupancyMaxActiveBlocksPerMultiprocessor", || occupancy(num_blocks, func, block_size, dynamic_smem, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
    num_blocks: *mut i32,
    func: *const c_void,
    block_size: i32,
    dynamic_smem: usize,
    flags: u32,
) -> CudaError {
    guard("cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags", || {
        occupancy(num_blocks, func, block_size, dynamic_smem, flags)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaFuncSetCacheConfig(func: *const c_void, config: i32) -> CudaError {
    guard("cudaFuncSetCacheConfig", || {
        let rt = rt()?;
        let (f, _) = registry::kernel(func as usize, current_device())?;
        // cudaFuncCache values are CUfunc_cache values.
        rt.client.func_set_cache_config(f, config).map_err(cuda)
    })
}
