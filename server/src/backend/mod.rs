//! Backends execute driver-level operations. The worker resolves every client handle and checks
//! every pointer range before it calls a backend, so backends see only valid, owned objects
//! (they still return errors rather than panic on anything else).
//!
//! - [`cuda`]: the CUDA driver API through cudarc, loaded at run time (no link-time dependency).
//! - [`emulated`]: memory, streams and events in host memory, plus a few built-in "kernels"
//!   (the demo kernels) so the whole path can be exercised without a GPU. A test double: it says
//!   so in its name and logs.
//! - [`demo_kernels`]: the demo kernels' PTX and names, which both backends run.

#[cfg(test)]
mod conformance;
pub mod cuda;
pub mod demo_kernels;
pub mod emulated;

use remora_wire::ops::DeviceInfo;
use remora_wire::Status;

/// Backend result: a `CUresult`-numbered [`Status`] on failure.
pub type Res<T> = Result<T, Status>;

/// A backend-native stream (`CUstream` as an integer); `None` means the legacy default stream.
pub type RawStream = Option<u64>;

/// Launch geometry and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Grid dimensions.
    pub grid: [u32; 3],
    /// Block dimensions.
    pub block: [u32; 3],
    /// Dynamic shared memory bytes.
    pub shared_mem: u32,
    /// `cuLaunchCooperativeKernel`.
    pub cooperative: bool,
}

/// One end of a [`Copy2D`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mem2D {
    /// The host buffer passed with the copy (packed: pitch = width).
    Host,
    /// Device memory: the first row starts at `ptr`, rows are `pitch` bytes apart.
    Device {
        /// Address of the first byte copied.
        ptr: u64,
        /// Row pitch.
        pitch: u64,
    },
    /// A backend array; the copy starts at byte column `x`, row `y` of slice (layer) `z`.
    Array {
        /// The backend's array handle.
        raw: u64,
        /// Start column in bytes.
        x: u64,
        /// Start row.
        y: u64,
        /// Slice of a 3D or layered array (0 otherwise).
        z: u64,
    },
}

/// A 2D copy (`cuMemcpy2D`): `height` rows of `width` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy2D {
    /// Source.
    pub src: Mem2D,
    /// Destination.
    pub dst: Mem2D,
    /// Bytes per row.
    pub width: u64,
    /// Rows.
    pub height: u64,
}

/// A CUDA array's shape (`CUDA_ARRAY3D_DESCRIPTOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayDesc {
    /// Width in elements.
    pub width: u64,
    /// Height (0: 1D).
    pub height: u64,
    /// Depth (0: 1D or 2D).
    pub depth: u64,
    /// `CUarray_format`.
    pub format: u32,
    /// 1, 2 or 4.
    pub channels: u32,
    /// `CUDA_ARRAY3D_*`.
    pub flags: u32,
}

/// Which backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// CUDA if a driver and a GPU are present, else emulated.
    Auto,
    /// The CUDA driver API.
    Cuda,
    /// The host-memory test double.
    Emulated,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<BackendKind, String> {
        match s {
            "auto" => Ok(BackendKind::Auto),
            "cuda" => Ok(BackendKind::Cuda),
            "emulated" => Ok(BackendKind::Emulated),
            other => Err(format!("unknown backend {other:?} (expected auto, cuda or emulated)")),
        }
    }
}

/// Driver-level operations, on device ordinals `0..device_count()` and backend-native handles.
///
/// Every method that takes `dev` makes that device's context current first. All copies and
/// launches are ordered on the given stream; `memcpy_dtoh` returns only once the bytes are in
/// `dst`. A fatal device fault (assert, illegal address) makes every later call fail with the
/// same status, as CUDA does.
pub trait Backend: Send {
    /// `"cuda"` or `"emulated"`.
    fn name(&self) -> &'static str;
    /// Number of devices.
    fn device_count(&self) -> u32;
    /// `cuDriverGetVersion`.
    fn driver_version(&self) -> i32;
    /// Name, UUID, total memory and every attribute.
    fn device_info(&mut self, dev: u32) -> Res<DeviceInfo>;
    /// One attribute.
    fn device_attribute(&mut self, dev: u32, attr: u32) -> Res<i32>;
    /// `cuMemGetInfo` (free, total).
    fn mem_get_info(&mut self, dev: u32) -> Res<(u64, u64)>;
    /// `cuCtxSynchronize`.
    fn device_synchronize(&mut self, dev: u32) -> Res<()>;
    /// `cuDeviceCanAccessPeer`.
    fn can_access_peer(&mut self, dev: u32, peer: u32) -> Res<bool>;
    /// `cuCtxEnablePeerAccess` (`enable`) or `cuCtxDisablePeerAccess` from `dev`'s context to `peer`'s.
    fn set_peer_access(&mut self, dev: u32, peer: u32, enable: bool) -> Res<()>;
    /// `cuCtxGetLimit`.
    fn ctx_get_limit(&mut self, dev: u32, limit: u32) -> Res<u64>;
    /// `cuCtxSetLimit`.
    fn ctx_set_limit(&mut self, dev: u32, limit: u32, value: u64) -> Res<()>;
    /// `cuCtxResetPersistingL2Cache`.
    fn ctx_reset_persisting_l2(&mut self, dev: u32) -> Res<()>;
    /// The PCI bus id (`0000:3b:00.0`), for placement; `None` where there is none.
    fn pci_bus_id(&mut self, dev: u32) -> Option<String>;

    /// `cuMemAlloc`.
    fn mem_alloc(&mut self, dev: u32, size: u64) -> Res<u64>;
    /// Reserve `size` bytes of device address space, no memory (`cuMemAddressReserve`).
    fn mem_reserve(&mut self, dev: u32, size: u64) -> Res<u64>;
    /// Release a [`Backend::mem_reserve`] range and whatever is still mapped in it.
    fn mem_unreserve(&mut self, dev: u32, base: u64) -> Res<()>;
    /// Device memory at `[addr, addr + size)` (the device side of a client's host range):
    /// mapped there when the range lies in one of our reservations, `addr` 0: anywhere, any
    /// other address: `ADDRESS_IN_USE`. Returns the address; freed by `mem_free(dev, addr)`.
    fn mem_alloc_at(&mut self, dev: u32, addr: u64, size: u64) -> Res<u64>;
    /// `cuMemFree` (also of a [`Backend::mem_alloc_at`] range).
    fn mem_free(&mut self, dev: u32, ptr: u64) -> Res<()>;
    /// Host → device, ordered on `stream`; `src` may be reused when this returns.
    fn memcpy_htod(&mut self, dev: u32, dst: u64, src: &[u8], stream: RawStream) -> Res<()>;
    /// Device → host, ordered on `stream`; returns once the bytes are in `dst`.
    fn memcpy_dtoh(&mut self, dev: u32, dst: &mut [u8], src: u64, stream: RawStream) -> Res<()>;
    /// Register host memory of this process with the driver for every device
    /// (`cuMemHostRegister`, portable and device-mapped): DMA-able, and usable by kernels at the
    /// same address.
    fn host_register(&mut self, ptr: u64, len: u64) -> Res<()>;
    /// Undo [`Backend::host_register`] (after the devices have finished with it).
    fn host_unregister(&mut self, ptr: u64) -> Res<()>;
    /// Host → device from registered host memory, ordered on `stream` and asynchronous.
    ///
    /// # Safety
    /// `[src, src + len)` is host memory of this process registered with
    /// [`Backend::host_register`], and stays mapped until the stream has passed the copy.
    unsafe fn memcpy_htod_host(&mut self, dev: u32, dst: u64, src: *const u8, len: usize, stream: RawStream)
        -> Res<()>;
    /// Device → registered host memory, ordered on `stream` and asynchronous.
    ///
    /// # Safety
    /// As [`Backend::memcpy_htod_host`], for `[dst, dst + len)`.
    unsafe fn memcpy_dtoh_host(&mut self, dev: u32, dst: *mut u8, src: u64, len: usize, stream: RawStream) -> Res<()>;
    /// Device → device, ordered on `stream`.
    fn memcpy_dtod(&mut self, dev: u32, dst: u64, src: u64, len: u64, stream: RawStream) -> Res<()>;
    /// `cuMemsetD8/D16/D32Async`; `element_size` is 1, 2 or 4.
    fn memset(&mut self, dev: u32, dst: u64, value: u32, element_size: u32, count: u64, stream: RawStream) -> Res<()>;
    /// `cuArray3DCreate`.
    fn array_create(&mut self, dev: u32, desc: &ArrayDesc) -> Res<u64>;
    /// `cuArrayDestroy`.
    fn array_destroy(&mut self, dev: u32, array: u64) -> Res<()>;
    /// `cuMemcpy2D` ordered on `stream`: `host_src` is the packed source when `c.src` is
    /// [`Mem2D::Host`], `host_dst` the packed destination when `c.dst` is (both `width × height`
    /// bytes, else empty). Returns once host buffers may be reused (and `host_dst` is filled).
    fn memcpy_2d(&mut self, dev: u32, c: &Copy2D, host_src: &[u8], host_dst: &mut [u8], stream: RawStream) -> Res<()>;
    /// `cuTexObjectCreate`; `desc.array` is already the backend's array handle.
    fn tex_object_create(&mut self, dev: u32, desc: &remora_wire::ops::TexObjectCreate) -> Res<u64>;
    /// `cuTexObjectDestroy`.
    fn tex_object_destroy(&mut self, dev: u32, tex: u64) -> Res<()>;
    /// `cuSurfObjectCreate` over a backend array.
    fn surf_object_create(&mut self, dev: u32, array: u64) -> Res<u64>;
    /// `cuSurfObjectDestroy`.
    fn surf_object_destroy(&mut self, dev: u32, surf: u64) -> Res<()>;

    /// `cuStreamCreateWithPriority`.
    fn stream_create(&mut self, dev: u32, flags: u32, priority: i32) -> Res<u64>;
    /// `cuStreamDestroy`.
    fn stream_destroy(&mut self, dev: u32, stream: u64) -> Res<()>;
    /// `cuStreamSynchronize` (`None`: the legacy default stream).
    fn stream_synchronize(&mut self, dev: u32, stream: RawStream) -> Res<()>;
    /// `cuStreamQuery`: `Err(NOT_READY)` while work is pending.
    fn stream_query(&mut self, dev: u32, stream: RawStream) -> Res<()>;
    /// `cuStreamWaitEvent`.
    fn stream_wait_event(&mut self, dev: u32, stream: RawStream, event: u64, flags: u32) -> Res<()>;
    /// `cuStreamSetAttribute` (`value`: a `CUstreamAttrValue`).
    fn stream_set_attribute(&mut self, dev: u32, stream: RawStream, attr: u32, value: &[u8; 64]) -> Res<()>;
    /// `cuStreamGetAttribute`.
    fn stream_get_attribute(&mut self, dev: u32, stream: RawStream, attr: u32) -> Res<[u8; 64]>;

    /// `cuEventCreate`.
    fn event_create(&mut self, dev: u32, flags: u32) -> Res<u64>;
    /// `cuEventRecord`.
    fn event_record(&mut self, dev: u32, event: u64, stream: RawStream) -> Res<()>;
    /// `cuEventSynchronize`.
    fn event_synchronize(&mut self, dev: u32, event: u64) -> Res<()>;
    /// `cuEventQuery`: `Err(NOT_READY)` while pending.
    fn event_query(&mut self, dev: u32, event: u64) -> Res<()>;
    /// `cuEventElapsedTime` in milliseconds.
    fn event_elapsed(&mut self, dev: u32, start: u64, end: u64) -> Res<f32>;
    /// `cuEventDestroy`.
    fn event_destroy(&mut self, dev: u32, event: u64) -> Res<()>;

    /// `cuModuleLoadData` of a fatbinary, cubin or NUL-terminated PTX image.
    fn module_load(&mut self, dev: u32, image: &[u8]) -> Res<u64>;
    /// `cuModuleUnload`.
    fn module_unload(&mut self, dev: u32, module: u64) -> Res<()>;
    /// `cuModuleGetFunction`.
    fn module_get_function(&mut self, dev: u32, module: u64, name: &str) -> Res<u64>;
    /// `cuModuleGetGlobal`: (address, size).
    fn module_get_global(&mut self, dev: u32, module: u64, name: &str) -> Res<(u64, u64)>;
    /// `cuFuncGetParamInfo` for every parameter: (offset, size).
    fn func_param_info(&mut self, dev: u32, function: u64) -> Res<Vec<(u32, u32)>>;
    /// `cuFuncGetAttribute`.
    fn func_get_attribute(&mut self, dev: u32, function: u64, attr: i32) -> Res<i32>;
    /// `cuFuncSetAttribute`.
    fn func_set_attribute(&mut self, dev: u32, function: u64, attr: i32, value: i32) -> Res<()>;
    /// `cuFuncSetCacheConfig` (`CUfunc_cache`: 0 none, 1 shared, 2 L1, 3 equal).
    fn func_set_cache_config(&mut self, dev: u32, function: u64, config: i32) -> Res<()>;
    /// `cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags`.
    fn occupancy_max_active_blocks(
        &mut self,
        dev: u32,
        function: u64,
        block_size: u32,
        dynamic_smem: u64,
        flags: u32,
    ) -> Res<i32>;
    /// `cuLaunchKernel` with the parameter buffer (`CU_LAUNCH_PARAM_BUFFER_POINTER`).
    fn launch(&mut self, dev: u32, function: u64, cfg: &LaunchConfig, stream: RawStream, params: &[u8]) -> Res<()>;
}

/// Open the backend `kind` asks for. `Auto` falls back to emulated (logged) when no driver or GPU
/// is found; `Cuda` fails instead.
pub fn open(kind: BackendKind) -> Result<Box<dyn Backend>, String> {
    match kind {
        BackendKind::Emulated => Ok(Box::new(emulated::EmulatedBackend::new(emulated::DEFAULT_DEVICES))),
        BackendKind::Cuda => cuda::CudaBackend::open().map(|b| Box::new(b) as Box<dyn Backend>),
        BackendKind::Auto => match cuda::CudaBackend::open() {
            Ok(b) => Ok(Box::new(b)),
            Err(why) => {
                tracing::info!(
                    "no usable CUDA driver/GPU ({why}); using the EMULATED backend (host memory, not a GPU)"
                );
                Ok(Box::new(emulated::EmulatedBackend::new(emulated::DEFAULT_DEVICES)))
            }
        },
    }
}

/// Whether a CUDA driver with at least one GPU is present, without creating contexts.
pub fn cuda_available() -> Result<u32, String> {
    cuda::probe()
}
