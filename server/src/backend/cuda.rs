//! The CUDA backend: the driver API, loaded at run time.
//!
//! `libcuda` is found and opened by cudarc's loader ([`sys::culib`]) and only after
//! [`sys::is_culib_present`] said it exists, so a machine without a driver gets an `Err`, never a
//! panic. Handle types and constants are cudarc's (`cudarc::driver::sys`), but every entry point
//! is resolved here, once, with a signature that carries `CUresult` and the attribute enums as
//! the plain C integers they are in `cuda.h`: cudarc declares them as Rust enums, and a value the
//! enum does not list (an attribute number a client sends, an error code a newer driver returns)
//! would be undefined behaviour there. Here it is just a number, mapped to [`Status`]. Missing
//! entry points make [`CudaBackend::open`] fail instead of panicking at first use.
//!
//! # Contexts
//! `open` retains every device's primary context and `Drop` releases them. Each method makes its
//! device's primary context current on the calling thread (`cuCtxSetCurrent`, skipped when
//! `cuCtxGetCurrent` says it already is), so the backend can move between threads.
//!
//! # Handles
//! Streams, events, modules and functions are the driver's pointers as integers. The backend
//! keeps its own table of the ones it created (and their device), so a stale or foreign handle is
//! `INVALID_HANDLE` here rather than a dangling pointer passed to the driver.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::ptr;
use std::sync::OnceLock;

use cudarc::driver::sys;
use remora_wire::ops::{DeviceInfo, DEVICE_ATTRIBUTE_SLOTS};
use remora_wire::{Status, I32, U64};
use zerocopy::{FromZeros, IntoBytes};

use super::{ArrayDesc, Backend, Copy2D, LaunchConfig, Mem2D, RawStream, Res};
use remora_wire::ops::TexObjectCreate;

/// `CUresult` as the C `enum` it is: an `int`-sized number.
type CuResult = c_uint;

/// Most parameters `func_param_info` walks (a kernel has at most 32 764 parameter bytes).
const MAX_PARAMS: usize = 32_768;
/// `CUDA_ERROR_INVALID_VALUE`: what `cuFuncGetParamInfo` returns past the last parameter.
const CUDA_ERROR_INVALID_VALUE: CuResult = 1;

fn check(r: CuResult) -> Res<()> {
    Status(r).result()
}

/// Declares the driver entry points remora uses: one function pointer per entry, resolved from
/// `libcuda` by its exported name (the `_v2` names are what CUDA 13's `cuda.h` maps to).
macro_rules! driver_api {
    ($($field:ident = $sym:literal: fn($($arg:ty),* $(,)?);)*) => {
        #[allow(non_snake_case)]
        #[derive(Clone, Copy)]
        struct Api {
            $($field: unsafe extern "C" fn($($arg),*) -> CuResult,)*
        }

        impl Api {
            /// Resolves every entry point.
            ///
            /// # Safety
            /// [`sys::is_culib_present`] must have returned true (cudarc's loader panics otherwise).
            unsafe fn load() -> Result<Api, String> {
                // SAFETY: the caller checked that a libcuda exists; `culib` opens it once and
                // keeps it in a static for the rest of the process.
                let lib = unsafe { sys::culib() };
                Ok(Api {
                    $($field: {
                        // SAFETY: `$sym` is declared in CUDA 13's cuda.h with exactly these
                        // parameter types (enums passed as their C integer type, `CUresult`
                        // returned as `unsigned int`, both 32-bit on every CUDA platform); the
                        // library stays loaded for the life of the process, so the copied
                        // function pointer never dangles.
                        let f = unsafe { lib.get::<unsafe extern "C" fn($($arg),*) -> CuResult>($sym) };
                        *f.map_err(|e| format!("libcuda has no {}: {e} (driver too old?)", $sym))?
                    },)*
                })
            }
        }
    };
}

driver_api! {
    init = "cuInit": fn(c_uint);
    driver_get_version = "cuDriverGetVersion": fn(*mut c_int);
    device_get_count = "cuDeviceGetCount": fn(*mut c_int);
    device_get = "cuDeviceGet": fn(*mut sys::CUdevice, c_int);
    primary_ctx_retain = "cuDevicePrimaryCtxRetain": fn(*mut sys::CUcontext, sys::CUdevice);
    primary_ctx_release = "cuDevicePrimaryCtxRelease_v2": fn(sys::CUdevice);
    ctx_set_current = "cuCtxSetCurrent": fn(sys::CUcontext);
    ctx_get_current = "cuCtxGetCurrent": fn(*mut sys::CUcontext);
    ctx_synchronize = "cuCtxSynchronize": fn();
    device_get_attribute = "cuDeviceGetAttribute": fn(*mut c_int, c_int, sys::CUdevice);
    device_get_name = "cuDeviceGetName": fn(*mut c_char, c_int, sys::CUdevice);
    device_get_uuid = "cuDeviceGetUuid_v2": fn(*mut sys::CUuuid, sys::CUdevice);
    device_total_mem = "cuDeviceTotalMem_v2": fn(*mut usize, sys::CUdevice);
    device_get_pci_bus_id = "cuDeviceGetPCIBusId": fn(*mut c_char, c_int, sys::CUdevice);
    device_can_access_peer = "cuDeviceCanAccessPeer": fn(*mut c_int, sys::CUdevice, sys::CUdevice);
    ctx_enable_peer_access = "cuCtxEnablePeerAccess": fn(sys::CUcontext, c_uint);
    ctx_disable_peer_access = "cuCtxDisablePeerAccess": fn(sys::CUcontext);
    mem_get_info = "cuMemGetInfo_v2": fn(*mut usize, *mut usize);
    mem_alloc = "cuMemAlloc_v2": fn(*mut sys::CUdeviceptr, usize);
    mem_free = "cuMemFree_v2": fn(sys::CUdeviceptr);
    memcpy_htod = "cuMemcpyHtoDAsync_v2": fn(sys::CUdeviceptr, *const c_void, usize, sys::CUstream);
    memcpy_dtoh = "cuMemcpyDtoHAsync_v2": fn(*mut c_void, sys::CUdeviceptr, usize, sys::CUstream);
    memcpy_dtod = "cuMemcpyDtoDAsync_v2": fn(sys::CUdeviceptr, sys::CUdeviceptr, usize, sys::CUstream);
    memset_d8 = "cuMemsetD8Async": fn(sys::CUdeviceptr, u8, usize, sys::CUstream);
    memset_d16 = "cuMemsetD16Async": fn(sys::CUdeviceptr, u16, usize, sys::CUstream);
    memset_d32 = "cuMemsetD32Async": fn(sys::CUdeviceptr, c_uint, usize, sys::CUstream);
    stream_create = "cuStreamCreateWithPriority": fn(*mut sys::CUstream, c_uint, c_int);
    stream_destroy = "cuStreamDestroy_v2": fn(sys::CUstream);
    stream_synchronize = "cuStreamSynchronize": fn(sys::CUstream);
    stream_query = "cuStreamQuery": fn(sys::CUstream);
    stream_wait_event = "cuStreamWaitEvent": fn(sys::CUstream, sys::CUevent, c_uint);
    event_create = "cuEventCreate": fn(*mut sys::CUevent, c_uint);
    event_record = "cuEventRecord": fn(sys::CUevent, sys::CUstream);
    event_synchronize = "cuEventSynchronize": fn(sys::CUevent);
    event_query = "cuEventQuery": fn(sys::CUevent);
    event_elapsed = "cuEventElapsedTime_v2": fn(*mut f32, sys::CUevent, sys::CUevent);
    event_destroy = "cuEventDestroy_v2": fn(sys::CUevent);
    module_load_data = "cuModuleLoadData": fn(*mut sys::CUmodule, *const c_void);
    module_unload = "cuModuleUnload": fn(sys::CUmodule);
    module_get_function = "cuModuleGetFunction": fn(*mut sys::CUfunction, sys::CUmodule, *const c_char);
    module_get_global = "cuModuleGetGlobal_v2": fn(*mut sys::CUdeviceptr, *mut usize, sys::CUmodule, *const c_char);
    func_get_param_info = "cuFuncGetParamInfo": fn(sys::CUfunction, usize, *mut usize, *mut usize);
    func_get_attribute = "cuFuncGetAttribute": fn(*mut c_int, c_int, sys::CUfunction);
    func_set_attribute = "cuFuncSetAttribute": fn(sys::CUfunction, c_int, c_int);
    func_set_cache_config = "cuFuncSetCacheConfig": fn(sys::CUfunction, c_int);
    ctx_get_limit = "cuCtxGetLimit": fn(*mut usize, c_int);
    ctx_set_limit = "cuCtxSetLimit": fn(c_int, usize);
    ctx_reset_persisting_l2 = "cuCtxResetPersistingL2Cache": fn();
    array_create = "cuArray3DCreate_v2": fn(*mut sys::CUarray, *const Array3DDescriptor);
    array_destroy = "cuArrayDestroy": fn(sys::CUarray);
    memcpy_3d = "cuMemcpy3DAsync_v2": fn(*const Memcpy3DParams, sys::CUstream);
    tex_object_create = "cuTexObjectCreate": fn(*mut u64, *const ResourceDesc, *const TextureDesc, *const ResourceViewDesc);
    tex_object_destroy = "cuTexObjectDestroy": fn(u64);
    surf_object_create = "cuSurfObjectCreate": fn(*mut u64, *const ResourceDesc);
    surf_object_destroy = "cuSurfObjectDestroy": fn(u64);
    stream_set_attribute = "cuStreamSetAttribute": fn(sys::CUstream, c_int, *const [u8; 64]);
    stream_get_attribute = "cuStreamGetAttribute": fn(sys::CUstream, c_int, *mut [u8; 64]);
    occupancy = "cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags": fn(*mut c_int, sys::CUfunction, c_int, usize, c_uint);
    launch_kernel = "cuLaunchKernel": fn(
        sys::CUfunction, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, sys::CUstream,
        *mut *mut c_void, *mut *mut c_void,
    );
    launch_cooperative_kernel = "cuLaunchCooperativeKernel": fn(
        sys::CUfunction, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, sys::CUstream,
        *mut *mut c_void,
    );
    mem_host_register = "cuMemHostRegister_v2": fn(*mut c_void, usize, c_uint);
    mem_host_unregister = "cuMemHostUnregister": fn(*mut c_void);
    mem_get_granularity = "cuMemGetAllocationGranularity": fn(*mut usize, *const MemAllocationProp, c_int);
    mem_address_reserve = "cuMemAddressReserve": fn(*mut sys::CUdeviceptr, usize, usize, sys::CUdeviceptr, u64);
    mem_address_free = "cuMemAddressFree": fn(sys::CUdeviceptr, usize);
    mem_create = "cuMemCreate": fn(*mut u64, usize, *const MemAllocationProp, u64);
    mem_release = "cuMemRelease": fn(u64);
    mem_map = "cuMemMap": fn(sys::CUdeviceptr, usize, usize, u64, u64);
    mem_unmap = "cuMemUnmap": fn(sys::CUdeviceptr, usize);
    mem_set_access = "cuMemSetAccess": fn(sys::CUdeviceptr, usize, *const MemAccessDesc, usize);
}

/// `CUmemLocation`.
#[repr(C)]
#[derive(Clone, Copy)]
struct MemLocation {
    kind: c_uint,
    id: c_int,
}

/// `CUmemAllocationProp` (32 bytes).
#[repr(C)]
struct MemAllocationProp {
    kind: c_uint,
    requested_handle_types: c_uint,
    location: MemLocation,
    win32_handle_meta_data: *mut c_void,
    compression_type: u8,
    gpu_direct_rdma_capable: u8,
    usage: u16,
    reserved: [u8; 4],
}

/// `CUmemAccessDesc`.
#[repr(C)]
struct MemAccessDesc {
    location: MemLocation,
    flags: c_uint,
}

const MEM_ALLOCATION_TYPE_PINNED: c_uint = 1;
const MEM_LOCATION_TYPE_DEVICE: c_uint = 1;
const MEM_ACCESS_FLAGS_PROT_READWRITE: c_uint = 3;

/// Device memory mapped at a chosen address ([`Backend::mem_alloc_at`]): the reserved
/// granule-aligned span and the physical allocation behind it.
#[derive(Debug, Clone, Copy)]
struct FixedMapping {
    dev: u32,
    base: u64,
    len: usize,
    handle: u64,
    /// Whether the address range is this mapping's own (else a [`Backend::mem_reserve`]'s).
    owns_va: bool,
}

/// Pinned device memory on device `d`, as `cuMemCreate` and the granularity query take it.
fn allocation_prop(d: sys::CUdevice) -> MemAllocationProp {
    MemAllocationProp {
        kind: MEM_ALLOCATION_TYPE_PINNED,
        requested_handle_types: 0,
        location: MemLocation { kind: MEM_LOCATION_TYPE_DEVICE, id: d },
        win32_handle_meta_data: ptr::null_mut(),
        compression_type: 0,
        gpu_direct_rdma_capable: 0,
        usage: 0,
        reserved: [0; 4],
    }
}

// cuda.h's descriptor structs, with their enums as the plain integers they are in C (see the
// module docs): a format or mode number the client sends is then just a number to the driver.

/// `CUDA_ARRAY3D_DESCRIPTOR`.
#[repr(C)]
struct Array3DDescriptor {
    width: usize,
    height: usize,
    depth: usize,
    format: c_uint,
    num_channels: c_uint,
    flags: c_uint,
}

/// `CUDA_MEMCPY2D`.
#[repr(C)]
struct Memcpy3DParams {
    src_x_in_bytes: usize,
    src_y: usize,
    src_z: usize,
    src_lod: usize,
    src_memory_type: c_uint,
    src_host: *const c_void,
    src_device: sys::CUdeviceptr,
    src_array: sys::CUarray,
    reserved0: *mut c_void,
    src_pitch: usize,
    src_height: usize,
    dst_x_in_bytes: usize,
    dst_y: usize,
    dst_z: usize,
    dst_lod: usize,
    dst_memory_type: c_uint,
    dst_host: *mut c_void,
    dst_device: sys::CUdeviceptr,
    dst_array: sys::CUarray,
    reserved1: *mut c_void,
    dst_pitch: usize,
    dst_height: usize,
    width_in_bytes: usize,
    height: usize,
    depth: usize,
}

/// `CUDA_RESOURCE_DESC`: `res_type`, then a 128-byte union (as `u64`s; the `pitch2D` member
/// is the largest named one: address, format and channels, width, height, pitch), then flags.
#[repr(C)]
struct ResourceDesc {
    res_type: c_uint,
    res: [u64; 16],
    flags: c_uint,
}

/// `CUDA_TEXTURE_DESC`.
#[repr(C)]
struct TextureDesc {
    address_mode: [c_uint; 3],
    filter_mode: c_uint,
    flags: c_uint,
    max_anisotropy: c_uint,
    mipmap_filter_mode: c_uint,
    mipmap_level_bias: f32,
    min_mipmap_level_clamp: f32,
    max_mipmap_level_clamp: f32,
    border_color: [f32; 4],
    reserved: [c_int; 12],
}

/// `CUDA_RESOURCE_VIEW_DESC`.
#[repr(C)]
struct ResourceViewDesc {
    format: c_uint,
    width: usize,
    height: usize,
    depth: usize,
    first_mipmap_level: c_uint,
    last_mipmap_level: c_uint,
    first_layer: c_uint,
    last_layer: c_uint,
    reserved: [c_uint; 16],
}

/// `CU_MEMORYTYPE_HOST`, `_DEVICE`, `_ARRAY`.
const MEMORYTYPE_HOST: c_uint = 1;
const MEMORYTYPE_DEVICE: c_uint = 2;
const MEMORYTYPE_ARRAY: c_uint = 3;

/// The driver's entry points, resolved once per process; `Err` where there is no usable libcuda.
fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        // cudarc's loader panics on paths we have checked for; a panic still becomes an error.
        std::panic::catch_unwind(|| {
            // SAFETY: probing for libcuda loads (and unloads) the system's driver library, whose
            // initialisers are the vendor's; nothing of ours is involved.
            if !unsafe { sys::is_culib_present() } {
                return Err("no CUDA driver library (libcuda) found".to_owned());
            }
            // SAFETY: `is_culib_present` just returned true.
            unsafe { Api::load() }
        })
        .unwrap_or_else(|_| Err("loading libcuda panicked".to_owned()))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// `cuInit` and `cuDeviceGetCount`.
fn init_and_count(api: &Api) -> Result<c_int, String> {
    // SAFETY: cuInit takes a flags integer (0) and no pointers.
    check(unsafe { (api.init)(0) }).map_err(|e| format!("cuInit failed: {e}"))?;
    let mut n: c_int = 0;
    // SAFETY: `n` is a live, writable c_int.
    check(unsafe { (api.device_get_count)(&mut n) }).map_err(|e| format!("cuDeviceGetCount failed: {e}"))?;
    if n <= 0 {
        return Err("the CUDA driver found no GPU".to_owned());
    }
    Ok(n)
}

/// Number of CUDA devices, without creating any context.
pub fn probe() -> Result<u32, String> {
    let api = api()?;
    init_and_count(api).map(|n| u32::try_from(n).unwrap_or(0))
}

/// A primary context.
struct Ctx(sys::CUcontext);

// SAFETY: a CUcontext is a driver handle that may be used (made current) on any thread; the
// driver API is thread-safe. The backend touches it only through `&mut self`, i.e. from one
// thread at a time, and never hands it out.
unsafe impl Send for Ctx {}

struct Device {
    dev: sys::CUdevice,
    ctx: Ctx,
}

struct ModuleRec {
    dev: u32,
    functions: Vec<u64>,
}

/// The CUDA driver API backend (see the module docs).
pub struct CudaBackend {
    api: &'static Api,
    devices: Vec<Device>,
    driver_version: i32,
    /// Live handles this backend created, each with its device.
    streams: HashMap<u64, u32>,
    events: HashMap<u64, u32>,
    modules: HashMap<u64, ModuleRec>,
    functions: HashMap<u64, u32>,
    arrays: HashMap<u64, u32>,
    /// Texture and surface objects (plain integers to the driver, not pointers).
    objects: HashMap<u64, u32>,
    /// Memory mapped at client-chosen addresses, keyed by the address asked for.
    fixed: HashMap<u64, FixedMapping>,
    /// Address ranges reserved for clients: base → (length, device).
    reserved: HashMap<u64, (usize, u32)>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("devices", &self.devices.len())
            .field("driver_version", &self.driver_version)
            .finish_non_exhaustive()
    }
}

fn handle_to_ptr<T>(h: u64) -> Res<*mut T> {
    let addr = usize::try_from(h).map_err(|_| Status::INVALID_HANDLE)?;
    Ok(ptr::with_exposed_provenance_mut(addr))
}

fn ptr_to_handle<T>(p: *mut T) -> u64 {
    p.expose_provenance() as u64
}

fn len_usize(n: u64) -> Res<usize> {
    usize::try_from(n).map_err(|_| Status::INVALID_VALUE)
}

impl CudaBackend {
    /// Loads libcuda, initialises it and retains every device's primary context.
    pub fn open() -> Result<CudaBackend, String> {
        let api = api()?;
        let n = init_and_count(api)?;
        let mut version: c_int = 0;
        // SAFETY: `version` is a live, writable c_int.
        check(unsafe { (api.driver_get_version)(&mut version) })
            .map_err(|e| format!("cuDriverGetVersion failed: {e}"))?;
        let mut backend = CudaBackend {
            api,
            devices: Vec::new(),
            driver_version: version,
            streams: HashMap::new(),
            events: HashMap::new(),
            modules: HashMap::new(),
            functions: HashMap::new(),
            arrays: HashMap::new(),
            objects: HashMap::new(),
            fixed: HashMap::new(),
            reserved: HashMap::new(),
        };
        for ordinal in 0..n {
            let mut dev: sys::CUdevice = 0;
            // SAFETY: `dev` is a live, writable CUdevice; `ordinal` is below the device count.
            check(unsafe { (api.device_get)(&mut dev, ordinal) })
                .map_err(|e| format!("cuDeviceGet({ordinal}) failed: {e}"))?;
            let mut ctx: sys::CUcontext = ptr::null_mut();
            // SAFETY: `ctx` is a live, writable CUcontext; `dev` came from cuDeviceGet.
            check(unsafe { (api.primary_ctx_retain)(&mut ctx, dev) })
                .map_err(|e| format!("cuDevicePrimaryCtxRetain({ordinal}) failed: {e}"))?;
            // From here on `Drop` releases it, also if a later device fails.
            backend.devices.push(Device { dev, ctx: Ctx(ctx) });
        }
        tracing::info!(devices = n, driver_version = version, "CUDA backend ready");
        Ok(backend)
    }

    /// Undo [`Backend::mem_alloc_at`] (every step tolerates the ones before having failed).
    fn unmap_fixed(&mut self, m: FixedMapping) {
        if self.enter(m.dev).is_err() {
            return;
        }
        // SAFETY: `m` describes our own mapping and allocation; unmapping a range that is not
        // mapped and releasing are reported as errors by the driver, not undefined.
        unsafe {
            let _ = check((self.api.mem_unmap)(m.base, m.len));
            let _ = check((self.api.mem_release)(m.handle));
            if m.owns_va {
                let _ = check((self.api.mem_address_free)(m.base, m.len));
            }
        }
    }

    /// The VMM granularity (minimum) of device memory on `d`.
    fn granularity(&self, d: sys::CUdevice) -> Res<u64> {
        let prop = allocation_prop(d);
        let mut gran: usize = 0;
        // SAFETY: `gran` is writable; `prop` is a fully initialised CUmemAllocationProp.
        check(unsafe { (self.api.mem_get_granularity)(&mut gran, &prop, 0) })?;
        Ok(gran.max(1) as u64)
    }

    /// Makes `dev`'s primary context current on this thread; returns its `CUdevice`.
    fn enter(&self, dev: u32) -> Res<sys::CUdevice> {
        let d = usize::try_from(dev).ok().and_then(|i| self.devices.get(i)).ok_or(Status::INVALID_DEVICE)?;
        let mut cur: sys::CUcontext = ptr::null_mut();
        // SAFETY: `cur` is a live, writable CUcontext.
        check(unsafe { (self.api.ctx_get_current)(&mut cur) })?;
        if cur != d.ctx.0 {
            // SAFETY: `d.ctx` is a primary context this backend retained and has not released.
            check(unsafe { (self.api.ctx_set_current)(d.ctx.0) })?;
        }
        Ok(d.dev)
    }

    /// The `CUstream` for `stream`: null (legacy default stream) or one of `dev`'s streams.
    fn stream(&self, dev: u32, stream: RawStream) -> Res<sys::CUstream> {
        match stream {
            None => Ok(ptr::null_mut()),
            Some(s) if self.streams.get(&s) == Some(&dev) => handle_to_ptr(s),
            Some(_) => Err(Status::INVALID_HANDLE),
        }
    }

    fn event(&self, event: u64) -> Res<sys::CUevent> {
        if self.events.contains_key(&event) {
            handle_to_ptr(event)
        } else {
            Err(Status::INVALID_HANDLE)
        }
    }

    fn function(&self, dev: u32, function: u64) -> Res<sys::CUfunction> {
        if self.functions.get(&function) == Some(&dev) {
            handle_to_ptr(function)
        } else {
            Err(Status::INVALID_HANDLE)
        }
    }

    fn module(&self, dev: u32, module: u64) -> Res<sys::CUmodule> {
        match self.modules.get(&module) {
            Some(m) if m.dev == dev => handle_to_ptr(module),
            _ => Err(Status::INVALID_HANDLE),
        }
    }

    fn array(&self, dev: u32, array: u64) -> Res<sys::CUarray> {
        if self.arrays.get(&array) == Some(&dev) {
            handle_to_ptr(array)
        } else {
            Err(Status::INVALID_HANDLE)
        }
    }

    fn attribute_raw(&self, dev: sys::CUdevice, attr: c_int) -> Res<i32> {
        let mut v: c_int = 0;
        // SAFETY: `v` is a live, writable c_int; an attribute number the driver does not know is
        // an error code, not undefined behaviour, because it is passed as a plain int.
        check(unsafe { (self.api.device_get_attribute)(&mut v, attr, dev) })?;
        Ok(v)
    }
}

impl CudaBackend {
    /// The `CUDA_RESOURCE_DESC` of a texture request.
    fn resource(&self, dev: u32, d: &TexObjectCreate) -> Res<ResourceDesc> {
        let mut r = ResourceDesc { res_type: d.res_type.get(), res: [0; 16], flags: 0 };
        let format_channels = u64::from(d.format.get()) | (u64::from(d.channels.get()) << 32);
        match d.res_type.get() {
            remora_wire::ops::RES_ARRAY => r.res[0] = ptr_to_handle(self.array(dev, d.array.get())?),
            // linear: devPtr, format + numChannels, sizeInBytes.
            remora_wire::ops::RES_LINEAR => r.res[..3].copy_from_slice(&[d.ptr.get(), format_channels, d.width.get()]),
            // pitch2D: devPtr, format + numChannels, width, height, pitchInBytes.
            remora_wire::ops::RES_PITCH2D => r.res[..5].copy_from_slice(&[
                d.ptr.get(),
                format_channels,
                d.width.get(),
                d.height.get(),
                d.pitch.get(),
            ]),
            _ => return Err(Status::INVALID_VALUE),
        }
        Ok(r)
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        let api = self.api;
        // Errors are ignored: after a sticky fault every call fails, and releasing the primary
        // context frees everything in it anyway.
        for m in std::mem::take(&mut self.fixed).into_values() {
            self.unmap_fixed(m);
        }
        for (base, (len, dev)) in std::mem::take(&mut self.reserved) {
            if self.enter(dev).is_ok() {
                // SAFETY: our own reservation, nothing mapped in it any more.
                let _ = unsafe { (api.mem_address_free)(base, len) };
            }
        }
        for (&m, rec) in &self.modules {
            if self.enter(rec.dev).is_ok() {
                if let Ok(m) = handle_to_ptr(m) {
                    // SAFETY: `m` is a module this backend loaded and has not unloaded.
                    let _ = unsafe { (api.module_unload)(m) };
                }
            }
        }
        for (&s, &dev) in &self.streams {
            if let (Ok(_), Ok(s)) = (self.enter(dev), handle_to_ptr(s)) {
                // SAFETY: `s` is a stream this backend created and has not destroyed.
                let _ = unsafe { (api.stream_destroy)(s) };
            }
        }
        for (&e, &dev) in &self.events {
            if let (Ok(_), Ok(e)) = (self.enter(dev), handle_to_ptr(e)) {
                // SAFETY: `e` is an event this backend created and has not destroyed.
                let _ = unsafe { (api.event_destroy)(e) };
            }
        }
        // SAFETY: a null context detaches this thread from any context; no pointer is read.
        let _ = unsafe { (api.ctx_set_current)(ptr::null_mut()) };
        for d in &self.devices {
            // SAFETY: `d.dev` is a device whose primary context this backend retained once.
            let _ = unsafe { (api.primary_ctx_release)(d.dev) };
        }
    }
}

/// Reads a little-endian integer of `N` bytes at `off`.
fn le<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn le_u16(b: &[u8], off: usize) -> Option<u64> {
    le::<2>(b, off).map(|v| u64::from(u16::from_le_bytes(v)))
}

fn le_u32(b: &[u8], off: usize) -> Option<u64> {
    le::<4>(b, off).map(|v| u64::from(u32::from_le_bytes(v)))
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    le::<8>(b, off).map(u64::from_le_bytes)
}

/// `base + count * stride` fits in `len`.
fn table_fits(base: u64, count: u64, stride: u64, len: u64) -> bool {
    count.checked_mul(stride).and_then(|s| s.checked_add(base)).is_some_and(|end| end <= len)
}

/// Checks that an ELF64 (cubin) image's headers and sections lie inside it.
fn elf_fits(img: &[u8]) -> Option<()> {
    let len = img.len() as u64;
    if img.get(4) != Some(&2) || img.get(5) != Some(&1) {
        return None; // only 64-bit little-endian cubins exist
    }
    let (phoff, shoff) = (le_u64(img, 0x20)?, le_u64(img, 0x28)?);
    let (phentsize, phnum) = (le_u16(img, 0x36)?, le_u16(img, 0x38)?);
    let (shentsize, shnum) = (le_u16(img, 0x3a)?, le_u16(img, 0x3c)?);
    if !table_fits(phoff, phnum, phentsize, len) || !table_fits(shoff, shnum, shentsize, len) {
        return None;
    }
    for i in 0..phnum {
        let h = usize::try_from(phoff + i * phentsize).ok()?;
        if !table_fits(le_u64(img, h + 0x08)?, 1, le_u64(img, h + 0x20)?, len) {
            return None;
        }
    }
    for i in 0..shnum {
        let h = usize::try_from(shoff + i * shentsize).ok()?;
        const SHT_NOBITS: u64 = 8;
        if le_u32(img, h + 4)? != SHT_NOBITS && !table_fits(le_u64(img, h + 0x18)?, 1, le_u64(img, h + 0x20)?, len) {
            return None;
        }
    }
    Some(())
}

/// Checks that a fatbin container and each of its entries lie inside it.
fn fatbin_fits(img: &[u8]) -> Option<()> {
    let header = le_u16(img, 6)?;
    let end = header.checked_add(le_u64(img, 8)?)?;
    if end > img.len() as u64 || header < 16 {
        return None;
    }
    let mut off = header;
    while off < end {
        let o = usize::try_from(off).ok()?;
        let (entry_header, payload) = (le_u32(img, o + 4)?, le_u64(img, o + 8)?);
        if entry_header < 16 {
            return None;
        }
        off = off.checked_add(entry_header)?.checked_add(payload)?;
        if off > end {
            return None;
        }
    }
    Some(())
}

/// Makes a module image safe to give `cuModuleLoadData`, which learns an image's length only
/// from its contents: binary images must lie inside the buffer they came in, PTX text must be
/// NUL-terminated (appended when missing), and the fatbin *wrapper* (which holds a pointer into
/// another process) is refused.
fn prepare_image(image: &[u8]) -> Res<Cow<'_, [u8]>> {
    const FATBIN_WRAPPER_MAGIC: u32 = 0x466243b1;
    const FATBIN_MAGIC: u32 = 0xBA55_ED50;
    let magic = le::<4>(image, 0).map(u32::from_le_bytes);
    let fits = match magic {
        None if image.is_empty() => return Err(Status::INVALID_IMAGE),
        Some(FATBIN_WRAPPER_MAGIC) => return Err(Status::INVALID_IMAGE),
        Some(FATBIN_MAGIC) => fatbin_fits(image),
        Some(_) if image.starts_with(b"\x7fELF") => elf_fits(image),
        _ if image.contains(&0) => return Ok(Cow::Borrowed(image)),
        _ => {
            let mut text = Vec::with_capacity(image.len() + 1);
            text.extend_from_slice(image);
            text.push(0);
            return Ok(Cow::Owned(text));
        }
    };
    fits.map(|()| Cow::Borrowed(image)).ok_or(Status::INVALID_IMAGE)
}

/// `0000:3b:00.0` from what `cuDeviceGetPCIBusId` writes (upper-case hex, sometimes an 8-digit
/// domain).
fn normalise_bus_id(raw: &str) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 && domain.starts_with("0000") => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

fn c_name(name: &str) -> Res<CString> {
    CString::new(name).map_err(|_| Status::INVALID_VALUE)
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_count(&self) -> u32 {
        u32::try_from(self.devices.len()).unwrap_or(u32::MAX)
    }

    fn driver_version(&self) -> i32 {
        self.driver_version
    }

    fn device_info(&mut self, dev: u32) -> Res<DeviceInfo> {
        let d = self.enter(dev)?;
        let mut info = DeviceInfo::new_zeroed();
        let mut name = [0 as c_char; 256];
        // SAFETY: `name` is a writable buffer of exactly the length passed.
        check(unsafe { (self.api.device_get_name)(name.as_mut_ptr(), 256, d) })?;
        for (out, &c) in info.name.iter_mut().zip(&name[..255]) {
            *out = c as u8;
        }
        let mut uuid = sys::CUuuid { bytes: [0; 16] };
        // SAFETY: `uuid` is a live, writable CUuuid.
        check(unsafe { (self.api.device_get_uuid)(&mut uuid, d) })?;
        for (out, &c) in info.uuid.iter_mut().zip(&uuid.bytes) {
            *out = c as u8;
        }
        let mut total: usize = 0;
        // SAFETY: `total` is a live, writable usize.
        check(unsafe { (self.api.device_total_mem)(&mut total, d) })?;
        info.total_mem = U64::new(total as u64);
        for n in 1..DEVICE_ATTRIBUTE_SLOTS {
            let attr = c_int::try_from(n).unwrap_or(0);
            // Attributes this driver does not know stay 0.
            info.attributes[n] = I32::new(self.attribute_raw(d, attr).unwrap_or(0));
        }
        Ok(info)
    }

    fn device_attribute(&mut self, dev: u32, attr: u32) -> Res<i32> {
        let d = self.enter(dev)?;
        self.attribute_raw(d, c_int::try_from(attr).map_err(|_| Status::INVALID_VALUE)?)
    }

    fn mem_get_info(&mut self, dev: u32) -> Res<(u64, u64)> {
        self.enter(dev)?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: both are live, writable usizes; `dev`'s context is current.
        check(unsafe { (self.api.mem_get_info)(&mut free, &mut total) })?;
        Ok((free as u64, total as u64))
    }

    fn device_synchronize(&mut self, dev: u32) -> Res<()> {
        self.enter(dev)?;
        // SAFETY: no arguments; `dev`'s context is current.
        check(unsafe { (self.api.ctx_synchronize)() })
    }

    fn can_access_peer(&mut self, dev: u32, peer: u32) -> Res<bool> {
        let d = self.enter(dev)?;
        let p = usize::try_from(peer).ok().and_then(|i| self.devices.get(i)).ok_or(Status::INVALID_DEVICE)?.dev;
        let mut can: c_int = 0;
        // SAFETY: `can` is a live, writable c_int; both devices came from cuDeviceGet.
        check(unsafe { (self.api.device_can_access_peer)(&mut can, d, p) })?;
        Ok(can != 0)
    }

    fn set_peer_access(&mut self, dev: u32, peer: u32, enable: bool) -> Res<()> {
        if dev == peer {
            return Err(Status::INVALID_DEVICE);
        }
        let p = usize::try_from(peer).ok().and_then(|i| self.devices.get(i)).ok_or(Status::INVALID_DEVICE)?.ctx.0;
        self.enter(dev)?;
        // SAFETY: `dev`'s context is current; `p` is a primary context this backend retained.
        check(unsafe {
            if enable {
                (self.api.ctx_enable_peer_access)(p, 0)
            } else {
                (self.api.ctx_disable_peer_access)(p)
            }
        })
    }

    fn ctx_reset_persisting_l2(&mut self, dev: u32) -> Res<()> {
        self.enter(dev)?;
        // SAFETY: the device's context is current; no arguments.
        check(unsafe { (self.api.ctx_reset_persisting_l2)() })
    }

    fn pci_bus_id(&mut self, dev: u32) -> Option<String> {
        let d = self.devices.get(usize::try_from(dev).ok()?)?.dev;
        let mut buf = [0 as c_char; 32];
        // SAFETY: `buf` is a writable buffer of exactly the length passed (13 bytes are needed).
        check(unsafe { (self.api.device_get_pci_bus_id)(buf.as_mut_ptr(), 32, d) }).ok()?;
        let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        Some(normalise_bus_id(std::str::from_utf8(&bytes).ok()?))
    }

    fn mem_alloc(&mut self, dev: u32, size: u64) -> Res<u64> {
        self.enter(dev)?;
        let mut p: sys::CUdeviceptr = 0;
        // SAFETY: `p` is a live, writable CUdeviceptr; `dev`'s context is current.
        check(unsafe { (self.api.mem_alloc)(&mut p, len_usize(size)?) })?;
        Ok(p)
    }

    fn mem_reserve(&mut self, dev: u32, size: u64) -> Res<u64> {
        let d = self.enter(dev)?;
        let gran = self.granularity(d)?;
        let len = len_usize(size.max(1).checked_next_multiple_of(gran).ok_or(Status::INVALID_VALUE)?)?;
        let mut base: sys::CUdeviceptr = 0;
        // SAFETY: `base` is writable; reserving address space has no other effect.
        check(unsafe { (self.api.mem_address_reserve)(&mut base, len, 0, 0, 0) })?;
        self.reserved.insert(base, (len, dev));
        Ok(base)
    }

    fn mem_unreserve(&mut self, dev: u32, base: u64) -> Res<()> {
        self.enter(dev)?;
        let (len, _) = self.reserved.remove(&base).ok_or(Status::INVALID_VALUE)?;
        let inside: Vec<u64> =
            self.fixed.iter().filter(|(_, m)| m.base >= base && m.base < base + len as u64).map(|(&k, _)| k).collect();
        for k in inside {
            if let Some(m) = self.fixed.remove(&k) {
                self.unmap_fixed(m);
            }
        }
        // SAFETY: our own reservation of exactly `len` bytes, nothing mapped in it any more.
        check(unsafe { (self.api.mem_address_free)(base, len) })
    }

    fn mem_alloc_at(&mut self, dev: u32, addr: u64, size: u64) -> Res<u64> {
        let d = self.enter(dev)?;
        if size == 0 {
            return Err(Status::INVALID_VALUE);
        }
        if self.fixed.contains_key(&addr) {
            return Err(Status::ADDRESS_IN_USE);
        }
        let gran = self.granularity(d)?;
        let end = addr.checked_add(size).and_then(|e| e.checked_next_multiple_of(gran)).ok_or(Status::INVALID_VALUE)?;
        let start = addr / gran * gran;
        let in_reservation =
            self.reserved.iter().any(|(&b, &(l, rdev))| rdev == dev && b <= start && end <= b + l as u64);
        let (base, len, owns_va) = if in_reservation {
            if self.fixed.values().any(|m| m.base < end && start < m.base + m.len as u64) {
                return Err(Status::ADDRESS_IN_USE);
            }
            (start, len_usize(end - start)?, false)
        } else if addr == 0 {
            let len = len_usize(end)?;
            let mut got: sys::CUdeviceptr = 0;
            // SAFETY: `got` is writable; reserving address space has no other effect.
            check(unsafe { (self.api.mem_address_reserve)(&mut got, len, 0, 0, 0) })?;
            (got, len, true)
        } else {
            // Only inside a reservation: the driver honours an address hint only above its own
            // mappings (measured), so no other address can be promised.
            return Err(Status::ADDRESS_IN_USE);
        };
        let prop = allocation_prop(d);
        let mut handle: u64 = 0;
        // SAFETY: `handle` is writable; `prop` is initialised; `len` is a granule multiple.
        if let Err(e) = check(unsafe { (self.api.mem_create)(&mut handle, len, &prop, 0) }) {
            if owns_va {
                // SAFETY: reserved above, not mapped.
                let _ = check(unsafe { (self.api.mem_address_free)(base, len) });
            }
            return Err(e);
        }
        let access = MemAccessDesc { location: prop.location, flags: MEM_ACCESS_FLAGS_PROT_READWRITE };
        // SAFETY: `[base, base + len)` is reserved by us and unmapped, `handle` our allocation of
        // `len` bytes; `access` is one initialised descriptor.
        let mapped = check(unsafe { (self.api.mem_map)(base, len, 0, handle, 0) }).and_then(|()| {
            // SAFETY: as above, the range is now mapped.
            check(unsafe { (self.api.mem_set_access)(base, len, &access, 1) })
        });
        let m = FixedMapping { dev, base, len, handle, owns_va };
        if let Err(e) = mapped {
            self.unmap_fixed(m);
            return Err(e);
        }
        let at = if addr == 0 { base } else { addr };
        self.fixed.insert(at, m);
        Ok(at)
    }

    fn mem_free(&mut self, dev: u32, ptr: u64) -> Res<()> {
        self.enter(dev)?;
        if let Some(m) = self.fixed.remove(&ptr) {
            self.unmap_fixed(m);
            return Ok(());
        }
        // SAFETY: a device address is only a number to the host; the driver rejects addresses
        // that are not allocations.
        check(unsafe { (self.api.mem_free)(ptr) })
    }

    fn memcpy_htod(&mut self, dev: u32, dst: u64, src: &[u8], stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: `src` is readable for `src.len()` bytes. `src` is pageable memory (never
        // registered with the driver), so the driver has staged it before this call returns and
        // the caller may reuse it at once.
        check(unsafe { (self.api.memcpy_htod)(dst, src.as_ptr().cast(), src.len(), s) })
    }

    fn memcpy_dtoh(&mut self, dev: u32, dst: &mut [u8], src: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: `dst` is writable for `dst.len()` bytes and stays borrowed until the stream
        // synchronisation below has completed the copy.
        check(unsafe { (self.api.memcpy_dtoh)(dst.as_mut_ptr().cast(), src, dst.len(), s) })?;
        // SAFETY: `s` is null or a live stream of this context.
        check(unsafe { (self.api.stream_synchronize)(s) })
    }

    fn host_register(&mut self, ptr: u64, len: u64) -> Res<()> {
        self.enter(0)?;
        // CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP.
        // SAFETY: the caller maps `[ptr, ptr + len)` in this process (an arena); the driver pins
        // those pages and maps them for the devices.
        check(unsafe {
            (self.api.mem_host_register)(ptr::with_exposed_provenance_mut(len_usize(ptr)?), len_usize(len)?, 3)
        })
    }

    fn host_unregister(&mut self, ptr: u64) -> Res<()> {
        self.enter(0)?;
        // SAFETY: a range registered by `host_register`; the driver only unpins it.
        check(unsafe { (self.api.mem_host_unregister)(ptr::with_exposed_provenance_mut(len_usize(ptr)?)) })
    }

    unsafe fn memcpy_htod_host(
        &mut self,
        dev: u32,
        dst: u64,
        src: *const u8,
        len: usize,
        stream: RawStream,
    ) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: the caller guarantees `src` is registered host memory mapped until the stream
        // passes the copy; device addresses are numbers the driver checks.
        check(unsafe { (self.api.memcpy_htod)(dst, src.cast(), len, s) })
    }

    unsafe fn memcpy_dtoh_host(&mut self, dev: u32, dst: *mut u8, src: u64, len: usize, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: as in `memcpy_htod_host`, for the destination.
        check(unsafe { (self.api.memcpy_dtoh)(dst.cast(), src, len, s) })
    }

    fn memcpy_dtod(&mut self, dev: u32, dst: u64, src: u64, len: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: device addresses only; the driver checks them. `s` is null or a live stream.
        check(unsafe { (self.api.memcpy_dtod)(dst, src, len_usize(len)?, s) })
    }

    fn memset(&mut self, dev: u32, dst: u64, value: u32, element_size: u32, count: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        let n = len_usize(count)?;
        let v = value.to_le_bytes();
        let r = match element_size {
            // SAFETY: device addresses only, checked by the driver; `s` is null or a live stream
            // of this context.
            1 => unsafe { (self.api.memset_d8)(dst, v[0], n, s) },
            // SAFETY: as above.
            2 => unsafe { (self.api.memset_d16)(dst, u16::from_le_bytes([v[0], v[1]]), n, s) },
            // SAFETY: as above.
            4 => unsafe { (self.api.memset_d32)(dst, value, n, s) },
            _ => return Err(Status::INVALID_VALUE),
        };
        check(r)
    }

    fn array_create(&mut self, dev: u32, d: &ArrayDesc) -> Res<u64> {
        self.enter(dev)?;
        let desc = Array3DDescriptor {
            width: len_usize(d.width)?,
            height: len_usize(d.height)?,
            depth: len_usize(d.depth)?,
            format: d.format,
            num_channels: d.channels,
            flags: d.flags,
        };
        let mut a: sys::CUarray = ptr::null_mut();
        // SAFETY: `a` is a live, writable CUarray; `desc` is a complete CUDA_ARRAY3D_DESCRIPTOR
        // (the driver checks its values).
        check(unsafe { (self.api.array_create)(&mut a, &desc) })?;
        let h = ptr_to_handle(a);
        self.arrays.insert(h, dev);
        Ok(h)
    }

    fn array_destroy(&mut self, dev: u32, array: u64) -> Res<()> {
        self.enter(dev)?;
        let a = self.array(dev, array)?;
        // SAFETY: `a` is a live array this backend created; it is forgotten below.
        let r = check(unsafe { (self.api.array_destroy)(a) });
        self.arrays.remove(&array);
        r
    }

    fn memcpy_2d(&mut self, dev: u32, c: &Copy2D, host_src: &[u8], host_dst: &mut [u8], stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        let width = len_usize(c.width)?;
        let height = len_usize(c.height)?;
        if width == 0 || height == 0 {
            return Ok(());
        }
        let packed = width.checked_mul(height).ok_or(Status::INVALID_VALUE)?;
        // One slice of `cuMemcpy3D` (depth 1): the same call reaches a slice `z` of a 3D or
        // layered array, which `cuMemcpy2D` cannot.
        let mut p = Memcpy3DParams {
            src_x_in_bytes: 0,
            src_y: 0,
            src_z: 0,
            src_lod: 0,
            src_memory_type: MEMORYTYPE_HOST,
            src_host: ptr::null(),
            src_device: 0,
            src_array: ptr::null_mut(),
            reserved0: ptr::null_mut(),
            src_pitch: 0,
            src_height: height,
            dst_x_in_bytes: 0,
            dst_y: 0,
            dst_z: 0,
            dst_lod: 0,
            dst_memory_type: MEMORYTYPE_HOST,
            dst_host: ptr::null_mut(),
            dst_device: 0,
            dst_array: ptr::null_mut(),
            reserved1: ptr::null_mut(),
            dst_pitch: 0,
            dst_height: height,
            width_in_bytes: width,
            height,
            depth: 1,
        };
        let host_involved = matches!(c.src, Mem2D::Host) || matches!(c.dst, Mem2D::Host);
        match c.src {
            Mem2D::Host => {
                if host_src.len() != packed {
                    return Err(Status::INVALID_VALUE);
                }
                p.src_host = host_src.as_ptr().cast();
                p.src_pitch = width;
            }
            Mem2D::Device { ptr, pitch } => {
                p.src_memory_type = MEMORYTYPE_DEVICE;
                p.src_device = ptr;
                p.src_pitch = len_usize(pitch)?;
            }
            Mem2D::Array { raw, x, y, z } => {
                p.src_memory_type = MEMORYTYPE_ARRAY;
                p.src_array = self.array(dev, raw)?;
                p.src_x_in_bytes = len_usize(x)?;
                p.src_y = len_usize(y)?;
                p.src_z = len_usize(z)?;
            }
        }
        match c.dst {
            Mem2D::Host => {
                if host_dst.len() != packed {
                    return Err(Status::INVALID_VALUE);
                }
                p.dst_host = host_dst.as_mut_ptr().cast();
                p.dst_pitch = width;
            }
            Mem2D::Device { ptr, pitch } => {
                p.dst_memory_type = MEMORYTYPE_DEVICE;
                p.dst_device = ptr;
                p.dst_pitch = len_usize(pitch)?;
            }
            Mem2D::Array { raw, x, y, z } => {
                p.dst_memory_type = MEMORYTYPE_ARRAY;
                p.dst_array = self.array(dev, raw)?;
                p.dst_x_in_bytes = len_usize(x)?;
                p.dst_y = len_usize(y)?;
                p.dst_z = len_usize(z)?;
            }
        }
        // SAFETY: `p` is a complete CUDA_MEMCPY3D (reserved fields null); its host pointers are `host_src` (readable)
        // and `host_dst` (writable), each checked above to hold `width × height` bytes and
        // borrowed until the stream synchronisation below has finished the copy; arrays are
        // live ones of this device; device addresses are only numbers the driver checks.
        check(unsafe { (self.api.memcpy_3d)(&p, s) })?;
        if host_involved {
            // SAFETY: `s` is null or a live stream of this context.
            check(unsafe { (self.api.stream_synchronize)(s) })?;
        }
        Ok(())
    }

    fn tex_object_create(&mut self, dev: u32, d: &TexObjectCreate) -> Res<u64> {
        self.enter(dev)?;
        let res = self.resource(dev, d)?;
        let tex = TextureDesc {
            address_mode: d.address_mode.map(|m| m.get()),
            filter_mode: d.filter_mode.get(),
            flags: d.flags.get(),
            max_anisotropy: d.max_anisotropy.get(),
            mipmap_filter_mode: d.mipmap_filter_mode.get(),
            mipmap_level_bias: d.mipmap_level_bias.get(),
            min_mipmap_level_clamp: d.min_mipmap_level_clamp.get(),
            max_mipmap_level_clamp: d.max_mipmap_level_clamp.get(),
            border_color: d.border_color.map(|c| c.get()),
            reserved: [0; 12],
        };
        let view = ResourceViewDesc {
            format: d.view_format.get(),
            width: len_usize(d.view_width.get())?,
            height: len_usize(d.view_height.get())?,
            depth: len_usize(d.view_depth.get())?,
            first_mipmap_level: d.view_first_mip.get(),
            last_mipmap_level: d.view_last_mip.get(),
            first_layer: d.view_first_layer.get(),
            last_layer: d.view_last_layer.get(),
            reserved: [0; 16],
        };
        let view_ptr: *const ResourceViewDesc = if d.has_view.get() != 0 { &view } else { ptr::null() };
        let mut t: u64 = 0;
        // SAFETY: `t` is a live, writable CUtexObject; the descriptors are complete and live for
        // the call (the view is null or `view`); any array in `res` is a live one of this device.
        check(unsafe { (self.api.tex_object_create)(&mut t, &res, &tex, view_ptr) })?;
        self.objects.insert(t, dev);
        Ok(t)
    }

    fn tex_object_destroy(&mut self, dev: u32, tex: u64) -> Res<()> {
        self.enter(dev)?;
        if self.objects.get(&tex) != Some(&dev) {
            return Err(Status::INVALID_HANDLE);
        }
        self.objects.remove(&tex);
        // SAFETY: `tex` is a texture object this backend created (an integer to the driver).
        check(unsafe { (self.api.tex_object_destroy)(tex) })
    }

    fn surf_object_create(&mut self, dev: u32, array: u64) -> Res<u64> {
        self.enter(dev)?;
        let mut res = ResourceDesc { res_type: 0, res: [0; 16], flags: 0 };
        res.res[0] = ptr_to_handle(self.array(dev, array)?);
        let mut t: u64 = 0;
        // SAFETY: `t` is a live, writable CUsurfObject; `res` names a live array of this device.
        check(unsafe { (self.api.surf_object_create)(&mut t, &res) })?;
        self.objects.insert(t, dev);
        Ok(t)
    }

    fn surf_object_destroy(&mut self, dev: u32, surf: u64) -> Res<()> {
        self.enter(dev)?;
        if self.objects.get(&surf) != Some(&dev) {
            return Err(Status::INVALID_HANDLE);
        }
        self.objects.remove(&surf);
        // SAFETY: `surf` is a surface object this backend created (an integer to the driver).
        check(unsafe { (self.api.surf_object_destroy)(surf) })
    }

    fn stream_set_attribute(&mut self, dev: u32, stream: RawStream, attr: u32, value: &[u8; 64]) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        let a = c_int::try_from(attr).map_err(|_| Status::INVALID_VALUE)?;
        // SAFETY: `s` is null or a live stream of this context; `value` is the 64 bytes of a
        // CUstreamAttrValue (the union's size), read only.
        check(unsafe { (self.api.stream_set_attribute)(s, a, value) })
    }

    fn stream_get_attribute(&mut self, dev: u32, stream: RawStream, attr: u32) -> Res<[u8; 64]> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        let a = c_int::try_from(attr).map_err(|_| Status::INVALID_VALUE)?;
        let mut v = [0u8; 64];
        // SAFETY: `s` is null or a live stream of this context; `v` is a writable 64-byte
        // CUstreamAttrValue.
        check(unsafe { (self.api.stream_get_attribute)(s, a, &mut v) })?;
        Ok(v)
    }

    fn stream_create(&mut self, dev: u32, flags: u32, priority: i32) -> Res<u64> {
        self.enter(dev)?;
        let mut s: sys::CUstream = ptr::null_mut();
        // SAFETY: `s` is a live, writable CUstream; `dev`'s context is current.
        check(unsafe { (self.api.stream_create)(&mut s, flags, priority) })?;
        let h = ptr_to_handle(s);
        self.streams.insert(h, dev);
        Ok(h)
    }

    fn stream_destroy(&mut self, dev: u32, stream: u64) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, Some(stream))?;
        // SAFETY: `s` is a live stream this backend created; it is forgotten below.
        let r = check(unsafe { (self.api.stream_destroy)(s) });
        self.streams.remove(&stream);
        r
    }

    fn stream_synchronize(&mut self, dev: u32, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: `s` is null or a live stream of this context.
        check(unsafe { (self.api.stream_synchronize)(s) })
    }

    fn stream_query(&mut self, dev: u32, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: `s` is null or a live stream of this context.
        check(unsafe { (self.api.stream_query)(s) })
    }

    fn stream_wait_event(&mut self, dev: u32, stream: RawStream, event: u64, flags: u32) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        let e = self.event(event)?;
        // SAFETY: `s` is null or a live stream; `e` is a live event (of any device).
        check(unsafe { (self.api.stream_wait_event)(s, e, flags) })
    }

    fn event_create(&mut self, dev: u32, flags: u32) -> Res<u64> {
        self.enter(dev)?;
        let mut e: sys::CUevent = ptr::null_mut();
        // SAFETY: `e` is a live, writable CUevent; `dev`'s context is current.
        check(unsafe { (self.api.event_create)(&mut e, flags) })?;
        let h = ptr_to_handle(e);
        self.events.insert(h, dev);
        Ok(h)
    }

    fn event_record(&mut self, dev: u32, event: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        if self.events.get(&event) != Some(&dev) {
            return Err(Status::INVALID_HANDLE);
        }
        let e = self.event(event)?;
        // SAFETY: `e` is a live event and `s` null or a live stream, both of this context.
        check(unsafe { (self.api.event_record)(e, s) })
    }

    fn event_synchronize(&mut self, dev: u32, event: u64) -> Res<()> {
        self.enter(dev)?;
        let e = self.event(event)?;
        // SAFETY: `e` is a live event.
        check(unsafe { (self.api.event_synchronize)(e) })
    }

    fn event_query(&mut self, dev: u32, event: u64) -> Res<()> {
        self.enter(dev)?;
        let e = self.event(event)?;
        // SAFETY: `e` is a live event.
        check(unsafe { (self.api.event_query)(e) })
    }

    fn event_elapsed(&mut self, dev: u32, start: u64, end: u64) -> Res<f32> {
        self.enter(dev)?;
        let (s, e) = (self.event(start)?, self.event(end)?);
        let mut ms = 0f32;
        // SAFETY: `ms` is a live, writable f32; `s` and `e` are live events.
        check(unsafe { (self.api.event_elapsed)(&mut ms, s, e) })?;
        Ok(ms)
    }

    fn event_destroy(&mut self, dev: u32, event: u64) -> Res<()> {
        self.enter(dev)?;
        let e = self.event(event)?;
        // SAFETY: `e` is a live event this backend created; it is forgotten below.
        let r = check(unsafe { (self.api.event_destroy)(e) });
        self.events.remove(&event);
        r
    }

    fn module_load(&mut self, dev: u32, image: &[u8]) -> Res<u64> {
        self.enter(dev)?;
        let image = prepare_image(image)?;
        let mut m: sys::CUmodule = ptr::null_mut();
        // SAFETY: `m` is a live, writable CUmodule. `prepare_image` guarantees the driver finds
        // the image's end inside the buffer: a NUL for PTX, checked header sizes for fatbins and
        // cubins. The driver copies what it keeps.
        check(unsafe { (self.api.module_load_data)(&mut m, image.as_ptr().cast()) })?;
        let h = ptr_to_handle(m);
        self.modules.insert(h, ModuleRec { dev, functions: Vec::new() });
        Ok(h)
    }

    fn module_unload(&mut self, dev: u32, module: u64) -> Res<()> {
        self.enter(dev)?;
        let m = self.module(dev, module)?;
        // SAFETY: `m` is a live module this backend loaded; it and its functions are forgotten
        // below.
        let r = check(unsafe { (self.api.module_unload)(m) });
        if let Some(rec) = self.modules.remove(&module) {
            for f in rec.functions {
                self.functions.remove(&f);
            }
        }
        r
    }

    fn module_get_function(&mut self, dev: u32, module: u64, name: &str) -> Res<u64> {
        self.enter(dev)?;
        let m = self.module(dev, module)?;
        let name = c_name(name)?;
        let mut f: sys::CUfunction = ptr::null_mut();
        // SAFETY: `f` is a live, writable CUfunction; `m` is a live module; `name` is a
        // NUL-terminated string that outlives the call.
        check(unsafe { (self.api.module_get_function)(&mut f, m, name.as_ptr()) })?;
        let h = ptr_to_handle(f);
        if self.functions.insert(h, dev).is_none() {
            if let Some(rec) = self.modules.get_mut(&module) {
                rec.functions.push(h);
            }
        }
        Ok(h)
    }

    fn module_get_global(&mut self, dev: u32, module: u64, name: &str) -> Res<(u64, u64)> {
        self.enter(dev)?;
        let m = self.module(dev, module)?;
        let name = c_name(name)?;
        let (mut p, mut size): (sys::CUdeviceptr, usize) = (0, 0);
        // SAFETY: `p` and `size` are live and writable; `m` is a live module; `name` is a
        // NUL-terminated string that outlives the call.
        check(unsafe { (self.api.module_get_global)(&mut p, &mut size, m, name.as_ptr()) })?;
        Ok((p, size as u64))
    }

    fn func_param_info(&mut self, dev: u32, function: u64) -> Res<Vec<(u32, u32)>> {
        self.enter(dev)?;
        let f = self.function(dev, function)?;
        let mut out = Vec::new();
        for index in 0..MAX_PARAMS {
            let (mut off, mut size) = (0usize, 0usize);
            // SAFETY: `off` and `size` are live and writable; `f` is a live function.
            let r = unsafe { (self.api.func_get_param_info)(f, index, &mut off, &mut size) };
            if r == CUDA_ERROR_INVALID_VALUE {
                break; // past the last parameter
            }
            check(r)?;
            let off = u32::try_from(off).map_err(|_| Status::UNKNOWN)?;
            out.push((off, u32::try_from(size).map_err(|_| Status::UNKNOWN)?));
        }
        Ok(out)
    }

    fn func_get_attribute(&mut self, dev: u32, function: u64, attr: i32) -> Res<i32> {
        self.enter(dev)?;
        let f = self.function(dev, function)?;
        let mut v: c_int = 0;
        // SAFETY: `v` is a live, writable c_int; `f` is a live function; `attr` is passed as the
        // plain int it is in C, so unknown values are an error code.
        check(unsafe { (self.api.func_get_attribute)(&mut v, attr, f) })?;
        Ok(v)
    }

    fn func_set_attribute(&mut self, dev: u32, function: u64, attr: i32, value: i32) -> Res<()> {
        self.enter(dev)?;
        let f = self.function(dev, function)?;
        // SAFETY: `f` is a live function; integers only.
        check(unsafe { (self.api.func_set_attribute)(f, attr, value) })
    }

    fn ctx_get_limit(&mut self, dev: u32, limit: u32) -> Res<u64> {
        self.enter(dev)?;
        let l = c_int::try_from(limit).map_err(|_| Status::INVALID_VALUE)?;
        let mut v: usize = 0;
        // SAFETY: the device's context is current; `v` is a local out-parameter.
        check(unsafe { (self.api.ctx_get_limit)(&mut v, l) })?;
        Ok(v as u64)
    }

    fn ctx_set_limit(&mut self, dev: u32, limit: u32, value: u64) -> Res<()> {
        self.enter(dev)?;
        let l = c_int::try_from(limit).map_err(|_| Status::INVALID_VALUE)?;
        let v = usize::try_from(value).map_err(|_| Status::INVALID_VALUE)?;
        // SAFETY: the device's context is current; integers only.
        check(unsafe { (self.api.ctx_set_limit)(l, v) })
    }

    fn func_set_cache_config(&mut self, dev: u32, function: u64, config: i32) -> Res<()> {
        self.enter(dev)?;
        let f = self.function(dev, function)?;
        if !(0..=3).contains(&config) {
            return Err(Status::INVALID_VALUE);
        }
        // SAFETY: `f` is a live function; integers only.
        check(unsafe { (self.api.func_set_cache_config)(f, config) })
    }

    fn occupancy_max_active_blocks(
        &mut self,
        dev: u32,
        function: u64,
        block_size: u32,
        dynamic_smem: u64,
        flags: u32,
    ) -> Res<i32> {
        self.enter(dev)?;
        let f = self.function(dev, function)?;
        let block = c_int::try_from(block_size).map_err(|_| Status::INVALID_VALUE)?;
        let smem = usize::try_from(dynamic_smem).map_err(|_| Status::INVALID_VALUE)?;
        let mut n: c_int = 0;
        // SAFETY: `f` is a live function of the current context; `n` is a local out-parameter.
        check(unsafe { (self.api.occupancy)(&mut n, f, block, smem, flags) })?;
        Ok(n)
    }

    fn launch(&mut self, dev: u32, function: u64, cfg: &LaunchConfig, stream: RawStream, params: &[u8]) -> Res<()> {
        self.enter(dev)?;
        let s = self.stream(dev, stream)?;
        let f = self.function(dev, function)?;
        let [gx, gy, gz] = cfg.grid;
        let [bx, by, bz] = cfg.block;
        if !cfg.cooperative {
            let mut size: usize = params.len();
            let mut extra: [*mut c_void; 5] = [
                ptr::without_provenance_mut(sys::CU_LAUNCH_PARAM_BUFFER_POINTER_AS_INT as usize),
                params.as_ptr().cast_mut().cast(),
                ptr::without_provenance_mut(sys::CU_LAUNCH_PARAM_BUFFER_SIZE_AS_INT as usize),
                (&raw mut size).cast(),
                ptr::without_provenance_mut(sys::CU_LAUNCH_PARAM_END_AS_INT as usize),
            ];
            // SAFETY: `f` is a live function and `s` null or a live stream of this context.
            // `extra` is a CU_LAUNCH_PARAM_END-terminated list naming `params` (readable for
            // `size` bytes; the driver only reads it, and copies it before returning) and
            // `size`; both outlive the call.
            return check(unsafe {
                (self.api.launch_kernel)(
                    f,
                    gx,
                    gy,
                    gz,
                    bx,
                    by,
                    bz,
                    cfg.shared_mem,
                    s,
                    ptr::null_mut(),
                    extra.as_mut_ptr(),
                )
            });
        }
        // cuLaunchCooperativeKernel takes no `extra`: one pointer per parameter, into an aligned
        // copy of the buffer, at the offsets the driver reports.
        let layout = self.func_param_info(dev, function)?;
        let mut aligned = vec![0u128; params.len().div_ceil(16)];
        let bytes = aligned.as_mut_bytes();
        bytes[..params.len()].copy_from_slice(params);
        let base = bytes.as_mut_ptr();
        let mut args = Vec::with_capacity(layout.len());
        for &(off, size) in &layout {
            let (off, size) = (off as usize, size as usize);
            if off.checked_add(size).is_none_or(|end| end > params.len()) {
                return Err(Status::INVALID_VALUE);
            }
            args.push(base.wrapping_add(off).cast::<c_void>());
        }
        // SAFETY: `f` is a live function and `s` null or a live stream of this context. `args`
        // holds one pointer per parameter of `f` (as the driver itself reported them), each to
        // `size` readable bytes inside `aligned`; both outlive the call, and the driver copies the
        // values before returning.
        check(unsafe {
            (self.api.launch_cooperative_kernel)(f, gx, gy, gz, bx, by, bz, cfg.shared_mem, s, args.as_mut_ptr())
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_layouts_match_cuda_h() {
        // sizeof in CUDA 13.0's cuda.h (x86-64 and aarch64 alike).
        assert_eq!(core::mem::size_of::<Array3DDescriptor>(), 40);
        assert_eq!(core::mem::size_of::<Memcpy3DParams>(), 200);
        assert_eq!(core::mem::size_of::<ResourceDesc>(), 144);
        assert_eq!(core::mem::offset_of!(ResourceDesc, res), 8);
        assert_eq!(core::mem::offset_of!(ResourceDesc, flags), 136);
        assert_eq!(core::mem::size_of::<TextureDesc>(), 104);
        assert_eq!(core::mem::size_of::<ResourceViewDesc>(), 112);
    }

    fn libcuda_present() -> bool {
        // SAFETY: as in `api`: only loads the system's driver library, if there is one.
        unsafe { sys::is_culib_present() }
    }

    #[test]
    fn open_fails_cleanly_without_a_driver() {
        if libcuda_present() {
            // With a driver, opening either works or fails with a reason; never a panic.
            match CudaBackend::open() {
                Ok(b) => assert!(b.device_count() > 0),
                Err(why) => assert!(!why.is_empty()),
            }
            return;
        }
        let err = CudaBackend::open().unwrap_err();
        assert!(err.contains("libcuda"), "{err}");
        assert!(probe().is_err());
        assert!(crate::backend::cuda_available().is_err());
        // Auto falls back to the emulated backend; Cuda refuses.
        assert_eq!(crate::backend::open(crate::backend::BackendKind::Auto).unwrap().name(), "emulated");
        assert!(crate::backend::open(crate::backend::BackendKind::Cuda).is_err());
    }

    /// The whole conformance suite on a real GPU. One test, so the assert that poisons the
    /// process comes last.
    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored on the GPU machine"]
    fn gpu_conformance() {
        let mut b = CudaBackend::open().unwrap();
        eprintln!(
            "gpu_conformance on {} device(s), driver {}: {} ({:?})",
            b.device_count(),
            b.driver_version(),
            b.device_info(0).unwrap().name_str(),
            b.pci_bus_id(0)
        );
        assert!(b.pci_bus_id(0).is_some_and(|id| id.len() == 12 && id.contains(':')));
        // Handles this backend did not create are refused before the driver sees them.
        assert_eq!(b.stream_query(0, Some(0xdead_0000)), Err(Status::INVALID_HANDLE));
        assert_eq!(b.launch(0, 0xdead_0000, &cfg1(), None, &[]), Err(Status::INVALID_HANDLE));
        assert_eq!(b.device_attribute(0, 9999), Err(Status::INVALID_VALUE));
        super::super::conformance::run_all(&mut b);
        super::super::conformance::assert_poisons(&mut b);
    }

    fn cfg1() -> LaunchConfig {
        LaunchConfig { grid: [1, 1, 1], block: [1, 1, 1], shared_mem: 0, cooperative: false }
    }

    #[test]
    fn images_are_bounded_before_the_driver_reads_them() {
        // PTX without a NUL gets one; with one it is used as it is.
        assert_eq!(&*prepare_image(b".version 8.0").unwrap(), b".version 8.0\0");
        assert!(matches!(prepare_image(b".version 8.0\0"), Ok(Cow::Borrowed(_))));
        assert_eq!(prepare_image(b""), Err(Status::INVALID_IMAGE));
        // The fatbin wrapper carries a pointer into the client's memory.
        assert_eq!(prepare_image(&0x466243b1u32.to_le_bytes()), Err(Status::INVALID_IMAGE));

        // Fatbin: header (16 bytes) + one 16-byte entry header + 8 payload bytes.
        let mut fat = Vec::new();
        fat.extend_from_slice(&0xBA55_ED50u32.to_le_bytes());
        fat.extend_from_slice(&1u16.to_le_bytes());
        fat.extend_from_slice(&16u16.to_le_bytes());
        fat.extend_from_slice(&24u64.to_le_bytes());
        fat.extend_from_slice(&1u16.to_le_bytes());
        fat.extend_from_slice(&0u16.to_le_bytes());
        fat.extend_from_slice(&16u32.to_le_bytes());
        fat.extend_from_slice(&8u64.to_le_bytes());
        fat.extend_from_slice(&[0xaa; 8]);
        assert!(prepare_image(&fat).is_ok());
        assert_eq!(prepare_image(&fat[..fat.len() - 1]), Err(Status::INVALID_IMAGE), "truncated");
        let mut lying = fat.clone();
        lying[24..32].copy_from_slice(&9u64.to_le_bytes());
        assert_eq!(prepare_image(&lying), Err(Status::INVALID_IMAGE), "entry overruns the container");

        // ELF64: a header whose section table is past the end.
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(prepare_image(&elf), Err(Status::INVALID_IMAGE));
        // One section header, PROGBITS, pointing inside the file: fine; pointing outside: refused.
        elf.resize(128, 0);
        elf[64 + 4..64 + 8].copy_from_slice(&1u32.to_le_bytes());
        elf[64 + 0x18..64 + 0x20].copy_from_slice(&0u64.to_le_bytes());
        elf[64 + 0x20..64 + 0x28].copy_from_slice(&64u64.to_le_bytes());
        assert!(prepare_image(&elf).is_ok());
        elf[64 + 0x20..64 + 0x28].copy_from_slice(&129u64.to_le_bytes());
        assert_eq!(prepare_image(&elf), Err(Status::INVALID_IMAGE));
    }

    #[test]
    fn bus_ids_are_normalised() {
        assert_eq!(normalise_bus_id("0000:3B:00.0"), "0000:3b:00.0");
        assert_eq!(normalise_bus_id("00000000:3B:00.0"), "0000:3b:00.0");
        assert_eq!(normalise_bus_id("0001:C1:00.0"), "0001:c1:00.0");
    }
}
