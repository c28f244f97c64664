//! The CUDA 13.0 runtime ABI: the C structs and constants of `driver_types.h`, `vector_types.h` and
//! `cuda_runtime_api.h` that the `libcudart.so.13` shims read and write, exact to NVIDIA's CUDA 13.0
//! headers (the `nvidia-cuda-runtime` 13.0.96 wheel).
//!
//! Type names are Rust's (`CudaDeviceProp` for `struct cudaDeviceProp`), but fields and constants
//! keep CUDA's spelling (`totalGlobalMem`, `cudaMemcpyHostToDevice`): a name found in NVIDIA's
//! documentation is found here unchanged. C enums are plain integers (`i32`, the size of a C
//! enum on every CUDA platform), never Rust enums: an application may pass any number, and a
//! shim must be able to refuse it rather than meet undefined behaviour. Flags that C passes as
//! `unsigned int` are `u32`.
//!
//! # How this is checked
//! `tests/abi_layout.rs` compiles `tests/abi/offsets.c` with gcc against NVIDIA's headers and
//! compares, with what C sees, every field's offset and size, every struct's size and alignment
//! and every constant here; it also checks that each enum this module copies in full
//! (`cudaDeviceAttr`, `cudaMemcpyKind`, `cudaLimit`, ...) has no enumerator missing here. It needs
//! the headers, so it is `#[ignore]`d unless asked for:
//!
//! ```text
//! pip install nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
//! REMORA_CUDA_INCLUDE=<site-packages>/nvidia/cu13/include \
//!     cargo test -p remora-interpose --test abi_layout -- --include-ignored
//! ```
//!
//! [`device_prop_from_attributes`] is checked, without a GPU, against what NVIDIA's libcudart
//! returned from `cudaGetDeviceProperties` on real GPUs (`tests/abi/device-prop-*.txt`, recorded
//! with `tests/abi/prop_dump.c`).

// C's names, on purpose (see above).
#![allow(non_upper_case_globals, non_snake_case)]

use core::ffi::{c_char, c_int, c_long, c_uint, c_void};

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Defines a group of constants plus a table of them by C name (for diagnostics and for the ABI
/// check, which compares every table entry with the C headers).
macro_rules! consts {
    ($(#[$tm:meta])* $table:ident: $ty:ty { $($(#[$m:meta])* $name:ident = $value:expr;)* }) => {
        $($(#[$m])* pub const $name: $ty = $value;)*
        $(#[$tm])*
        pub const $table: &[(&str, i64)] = &[$((stringify!($name), $name as i64)),*];
    };
}

// ---------------------------------------------------------------------------------------------
// Structs
// ---------------------------------------------------------------------------------------------

/// `dim3` (`vector_types.h`): grid and block dimensions. C++'s constructor defaults every
/// component to 1 while C leaves them uninitialised, so there is no `Default`: say [`Dim3::new`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dim3 {
    pub x: c_uint,
    pub y: c_uint,
    pub z: c_uint,
}

impl Dim3 {
    /// `dim3(x, y, z)`.
    pub const fn new(x: u32, y: u32, z: u32) -> Dim3 {
        Dim3 { x, y, z }
    }

    /// `x * y * z` (at most 2⁹⁶, so in a `u128`).
    pub const fn volume(&self) -> u128 {
        self.x as u128 * self.y as u128 * self.z as u128
    }
}

/// `struct cudaDeviceProp` as CUDA 13.0 declares it: 1008 bytes on x86-64 Linux.
///
/// CUDA 13 dropped eight fields that CUDA 12 had (`clockRate`, `deviceOverlap`,
/// `kernelExecTimeoutEnabled`, `computeMode`, `maxTexture1DLinear`, `memoryClockRate`,
/// `singleToDoublePrecisionPerfRatio`, `cooperativeMultiDeviceLaunch`; programs now ask
/// `cudaDeviceGetAttribute` for them) and added seven before `reserved` (`deviceNumaConfig` to
/// `hostNumaMultinodeIpcSupported`), so most offsets differ from CUDA 12's.
///
/// [`device_prop_from_attributes`] fills one as libcudart's `cudaGetDeviceProperties` does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, Immutable, KnownLayout)]
pub struct CudaDeviceProp {
    /// ASCII string identifying device.
    pub name: [c_char; 256],
    /// 16-byte unique identifier.
    pub uuid: [u8; 16],
    /// 8-byte locally unique identifier. Value is undefined on TCC and non-Windows platforms.
    pub luid: [c_char; 8],
    /// LUID device node mask. Value is undefined on TCC and non-Windows platforms.
    pub luidDeviceNodeMask: c_uint,
    /// Global memory available on device in bytes.
    pub totalGlobalMem: usize,
    /// Shared memory available per block in bytes.
    pub sharedMemPerBlock: usize,
    /// 32-bit registers available per block.
    pub regsPerBlock: c_int,
    /// Warp size in threads.
    pub warpSize: c_int,
    /// Maximum pitch in bytes allowed by memory copies.
    pub memPitch: usize,
    /// Maximum number of threads per block.
    pub maxThreadsPerBlock: c_int,
    /// Maximum size of each dimension of a block.
    pub maxThreadsDim: [c_int; 3],
    /// Maximum size of each dimension of a grid.
    pub maxGridSize: [c_int; 3],
    /// Constant memory available on device in bytes.
    pub totalConstMem: usize,
    /// Major compute capability.
    pub major: c_int,
    /// Minor compute capability.
    pub minor: c_int,
    /// Alignment requirement for textures.
    pub textureAlignment: usize,
    /// Pitch alignment requirement for texture references bound to pitched memory.
    pub texturePitchAlignment: usize,
    /// Number of multiprocessors on device.
    pub multiProcessorCount: c_int,
    /// Device is integrated as opposed to discrete.
    pub integrated: c_int,
    /// Device can map host memory with cudaHostAlloc/cudaHostGetDevicePointer.
    pub canMapHostMemory: c_int,
    /// Maximum 1D texture size.
    pub maxTexture1D: c_int,
    /// Maximum 1D mipmapped texture size.
    pub maxTexture1DMipmap: c_int,
    /// Maximum 2D texture dimensions.
    pub maxTexture2D: [c_int; 2],
    /// Maximum 2D mipmapped texture dimensions.
    pub maxTexture2DMipmap: [c_int; 2],
    /// Maximum dimensions (width, height, pitch) for 2D textures bound to pitched memory.
    pub maxTexture2DLinear: [c_int; 3],
    /// Maximum 2D texture dimensions if texture gather operations have to be performed.
    pub maxTexture2DGather: [c_int; 2],
    /// Maximum 3D texture dimensions.
    pub maxTexture3D: [c_int; 3],
    /// Maximum alternate 3D texture dimensions.
    pub maxTexture3DAlt: [c_int; 3],
    /// Maximum Cubemap texture dimensions.
    pub maxTextureCubemap: c_int,
    /// Maximum 1D layered texture dimensions.
    pub maxTexture1DLayered: [c_int; 2],
    /// Maximum 2D layered texture dimensions.
    pub maxTexture2DLayered: [c_int; 3],
    /// Maximum Cubemap layered texture dimensions.
    pub maxTextureCubemapLayered: [c_int; 2],
    /// Maximum 1D surface size.
    pub maxSurface1D: c_int,
    /// Maximum 2D surface dimensions.
    pub maxSurface2D: [c_int; 2],
    /// Maximum 3D surface dimensions.
    pub maxSurface3D: [c_int; 3],
    /// Maximum 1D layered surface dimensions.
    pub maxSurface1DLayered: [c_int; 2],
    /// Maximum 2D layered surface dimensions.
    pub maxSurface2DLayered: [c_int; 3],
    /// Maximum Cubemap surface dimensions.
    pub maxSurfaceCubemap: c_int,
    /// Maximum Cubemap layered surface dimensions.
    pub maxSurfaceCubemapLayered: [c_int; 2],
    /// Alignment requirements for surfaces.
    pub surfaceAlignment: usize,
    /// Device can possibly execute multiple kernels concurrently.
    pub concurrentKernels: c_int,
    /// Device has ECC support enabled.
    pub ECCEnabled: c_int,
    /// PCI bus ID of the device.
    pub pciBusID: c_int,
    /// PCI device ID of the device.
    pub pciDeviceID: c_int,
    /// PCI domain ID of the device.
    pub pciDomainID: c_int,
    /// 1 if device is a Tesla device using TCC driver, 0 otherwise.
    pub tccDriver: c_int,
    /// Number of asynchronous engines.
    pub asyncEngineCount: c_int,
    /// Device shares a unified address space with the host.
    pub unifiedAddressing: c_int,
    /// Global memory bus width in bits.
    pub memoryBusWidth: c_int,
    /// Size of L2 cache in bytes.
    pub l2CacheSize: c_int,
    /// Device's maximum l2 persisting lines capacity setting in bytes.
    pub persistingL2CacheMaxSize: c_int,
    /// Maximum resident threads per multiprocessor.
    pub maxThreadsPerMultiProcessor: c_int,
    /// Device supports stream priorities.
    pub streamPrioritiesSupported: c_int,
    /// Device supports caching globals in L1.
    pub globalL1CacheSupported: c_int,
    /// Device supports caching locals in L1.
    pub localL1CacheSupported: c_int,
    /// Shared memory available per multiprocessor in bytes.
    pub sharedMemPerMultiprocessor: usize,
    /// 32-bit registers available per multiprocessor.
    pub regsPerMultiprocessor: c_int,
    /// Device supports allocating managed memory on this system.
    pub managedMemory: c_int,
    /// Device is on a multi-GPU board.
    pub isMultiGpuBoard: c_int,
    /// Unique identifier for a group of devices on the same multi-GPU board.
    pub multiGpuBoardGroupID: c_int,
    /// Link between the device and the host supports native atomic operations.
    pub hostNativeAtomicSupported: c_int,
    /// Device supports coherently accessing pageable memory without calling cudaHostRegister on it.
    pub pageableMemoryAccess: c_int,
    /// Device can coherently access managed memory concurrently with the CPU.
    pub concurrentManagedAccess: c_int,
    /// Device supports Compute Preemption.
    pub computePreemptionSupported: c_int,
    /// Device can access host registered memory at the same virtual address as the CPU.
    pub canUseHostPointerForRegisteredMem: c_int,
    /// Device supports launching cooperative kernels via cudaLaunchCooperativeKernel.
    pub cooperativeLaunch: c_int,
    /// Per device maximum shared memory per block usable by special opt in.
    pub sharedMemPerBlockOptin: usize,
    /// Device accesses pageable memory via the host's page tables.
    pub pageableMemoryAccessUsesHostPageTables: c_int,
    /// Host can directly access managed memory on the device without migration.
    pub directManagedMemAccessFromHost: c_int,
    /// Maximum number of resident blocks per multiprocessor.
    pub maxBlocksPerMultiProcessor: c_int,
    /// The maximum value of `cudaAccessPolicyWindow::num_bytes`.
    pub accessPolicyMaxWindowSize: c_int,
    /// Shared memory reserved by CUDA driver per block in bytes.
    pub reservedSharedMemPerBlock: usize,
    /// Device supports host memory registration via cudaHostRegister.
    pub hostRegisterSupported: c_int,
    /// 1 if the device supports sparse CUDA arrays and sparse CUDA mipmapped arrays, 0 otherwise.
    pub sparseCudaArraySupported: c_int,
    /// Device supports using the cudaHostRegister flag cudaHostRegisterReadOnly to register memory
    /// that must be mapped as read-only to the GPU.
    pub hostRegisterReadOnlySupported: c_int,
    /// External timeline semaphore interop is supported on the device.
    pub timelineSemaphoreInteropSupported: c_int,
    /// 1 if the device supports using the cudaMallocAsync and cudaMemPool family of APIs, 0 otherwise.
    pub memoryPoolsSupported: c_int,
    /// 1 if the device supports GPUDirect RDMA APIs, 0 otherwise.
    pub gpuDirectRDMASupported: c_int,
    /// Bitmask to be interpreted according to the cudaFlushGPUDirectRDMAWritesOptions enum.
    pub gpuDirectRDMAFlushWritesOptions: c_uint,
    /// See the cudaGPUDirectRDMAWritesOrdering enum for numerical values.
    pub gpuDirectRDMAWritesOrdering: c_int,
    /// Bitmask of handle types supported with mempool-based IPC.
    pub memoryPoolSupportedHandleTypes: c_uint,
    /// 1 if the device supports deferred mapping CUDA arrays and CUDA mipmapped arrays.
    pub deferredMappingCudaArraySupported: c_int,
    /// Device supports IPC Events.
    pub ipcEventSupported: c_int,
    /// Indicates device supports cluster launch.
    pub clusterLaunch: c_int,
    /// Indicates device supports unified pointers.
    pub unifiedFunctionPointers: c_int,
    /// NUMA configuration of a device: value is of type cudaDeviceNumaConfig enum.
    pub deviceNumaConfig: c_int,
    /// NUMA node ID of the GPU memory.
    pub deviceNumaId: c_int,
    /// Indicates if contexts created on this device will be shared via MPS.
    pub mpsEnabled: c_int,
    /// NUMA ID of the host node closest to the device or -1 when system does not support NUMA.
    pub hostNumaId: c_int,
    /// The combined 16-bit PCI device ID and 16-bit PCI vendor ID.
    pub gpuPciDeviceID: c_uint,
    /// The combined 16-bit PCI subsystem ID and 16-bit PCI subsystem vendor ID.
    pub gpuPciSubsystemID: c_uint,
    /// 1 if the device supports HostNuma location IPC between nodes in a multi-node system.
    pub hostNumaMultinodeIpcSupported: c_int,
    /// Reserved for future use.
    pub reserved: [c_int; 56],
}

/// `struct cudaPointerAttributes` (`cudaPointerGetAttributes`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaPointerAttributes {
    /// `enum cudaMemoryType type`: one of the `cudaMemoryType*` constants.
    pub type_: c_int,
    /// The device the memory was allocated on or registered with.
    pub device: c_int,
    /// The address the current device can dereference, or null.
    pub devicePointer: *mut c_void,
    /// The address the host can dereference, or null.
    pub hostPointer: *mut c_void,
    /// Must be zero.
    pub reserved: [c_long; 8],
}

/// `struct cudaFuncAttributes` (`cudaFuncGetAttributes`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, Immutable, KnownLayout)]
pub struct CudaFuncAttributes {
    /// Statically allocated shared memory per block, in bytes.
    pub sharedSizeBytes: usize,
    /// User-allocated constant memory, in bytes.
    pub constSizeBytes: usize,
    /// Local memory per thread, in bytes.
    pub localSizeBytes: usize,
    /// Most threads per block a launch of this function can have on this device.
    pub maxThreadsPerBlock: c_int,
    /// Registers per thread.
    pub numRegs: c_int,
    /// PTX virtual architecture, major × 10 + minor.
    pub ptxVersion: c_int,
    /// Binary architecture, major × 10 + minor.
    pub binaryVersion: c_int,
    /// Whether it was compiled with `-Xptxas --dlcm=ca`.
    pub cacheModeCA: c_int,
    /// Most dynamic shared memory per block, in bytes.
    pub maxDynamicSharedSizeBytes: c_int,
    /// Preferred shared-memory carveout, in percent of the maximum.
    pub preferredShmemCarveout: c_int,
    /// Whether a launch must give a cluster dimension.
    pub clusterDimMustBeSet: c_int,
    /// Required cluster width in blocks (0: none).
    pub requiredClusterWidth: c_int,
    /// Required cluster height in blocks (0: none).
    pub requiredClusterHeight: c_int,
    /// Required cluster depth in blocks (0: none).
    pub requiredClusterDepth: c_int,
    /// Block scheduling policy (a `cudaClusterSchedulingPolicy`).
    pub clusterSchedulingPolicyPreference: c_int,
    /// Whether a non-portable cluster size is allowed.
    pub nonPortableClusterSizeAllowed: c_int,
    /// Reserved.
    pub reserved: [c_int; 16],
}

/// `struct cudaChannelFormatDesc` (`cudaCreateChannelDesc`, arrays, textures).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaChannelFormatDesc {
    pub x: c_int,
    pub y: c_int,
    pub z: c_int,
    pub w: c_int,
    /// `enum cudaChannelFormatKind f`: one of the `cudaChannelFormatKind*` constants.
    pub f: c_int,
}

/// `struct cudaResourceDesc` (`cudaCreateTextureObject`, `cudaCreateSurfaceObject`). The `res`
/// union is kept as its 128 bytes; [`CudaResourceDesc::array`], [`CudaResourceDesc::linear`] and
/// [`CudaResourceDesc::pitch2D`] read its members at their C offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaResourceDesc {
    /// `enum cudaResourceType resType`: one of the `cudaResourceType*` constants.
    pub resType: c_int,
    /// Padding before the union (C aligns it to 8).
    pub _pad: c_int,
    /// `union { array; mipmap; linear; pitch2D; reserved }`, as 16 words.
    pub res: [u64; 16],
    /// `unsigned int flags` (must be zero).
    pub flags: c_uint,
    /// Tail padding.
    pub _pad2: c_uint,
}

/// `res.linear` of a [`CudaResourceDesc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaResourceLinear {
    /// `void *devPtr`.
    pub devPtr: u64,
    /// `struct cudaChannelFormatDesc desc`.
    pub desc: CudaChannelFormatDesc,
    /// `size_t sizeInBytes`.
    pub sizeInBytes: u64,
}

/// `res.pitch2D` of a [`CudaResourceDesc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaResourcePitch2D {
    /// `void *devPtr`.
    pub devPtr: u64,
    /// `struct cudaChannelFormatDesc desc`.
    pub desc: CudaChannelFormatDesc,
    /// `size_t width` (elements).
    pub width: u64,
    /// `size_t height`.
    pub height: u64,
    /// `size_t pitchInBytes`.
    pub pitchInBytes: u64,
}

impl CudaResourceDesc {
    /// The channel descriptor that `linear` and `pitch2D` keep at union offset 8.
    fn union_desc(&self) -> CudaChannelFormatDesc {
        let bytes = self.res.as_bytes();
        CudaChannelFormatDesc::read_from_bytes(&bytes[8..8 + core::mem::size_of::<CudaChannelFormatDesc>()])
            .unwrap_or_default()
    }

    /// `res.array.array` (also `res.mipmap.mipmap`): the handle.
    pub fn array(&self) -> u64 {
        self.res[0]
    }

    /// `res.linear`: devPtr at 0, desc at 8, sizeInBytes at 32.
    pub fn linear(&self) -> CudaResourceLinear {
        CudaResourceLinear { devPtr: self.res[0], desc: self.union_desc(), sizeInBytes: self.res[4] }
    }

    /// `res.pitch2D`: devPtr at 0, desc at 8, width at 32, height at 40, pitchInBytes at 48.
    pub fn pitch2D(&self) -> CudaResourcePitch2D {
        CudaResourcePitch2D {
            devPtr: self.res[0],
            desc: self.union_desc(),
            width: self.res[4],
            height: self.res[5],
            pitchInBytes: self.res[6],
        }
    }
}

/// `struct cudaTextureDesc` (`cudaCreateTextureObject`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaTextureDesc {
    /// `enum cudaTextureAddressMode addressMode[3]`.
    pub addressMode: [c_int; 3],
    /// `enum cudaTextureFilterMode filterMode`.
    pub filterMode: c_int,
    /// `enum cudaTextureReadMode readMode`.
    pub readMode: c_int,
    pub sRGB: c_int,
    pub borderColor: [f32; 4],
    pub normalizedCoords: c_int,
    pub maxAnisotropy: c_uint,
    /// `enum cudaTextureFilterMode mipmapFilterMode`.
    pub mipmapFilterMode: c_int,
    pub mipmapLevelBias: f32,
    pub minMipmapLevelClamp: f32,
    pub maxMipmapLevelClamp: f32,
    pub disableTrilinearOptimization: c_int,
    pub seamlessCubemap: c_int,
}

/// `struct cudaResourceViewDesc` (`cudaCreateTextureObject`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaResourceViewDesc {
    /// `enum cudaResourceViewFormat format`.
    pub format: c_int,
    /// Padding before `width`.
    pub _pad: c_int,
    pub width: usize,
    pub height: usize,
    pub depth: usize,
    pub firstMipmapLevel: c_uint,
    pub lastMipmapLevel: c_uint,
    pub firstLayer: c_uint,
    pub lastLayer: c_uint,
    pub reserved: [c_uint; 16],
}

/// `struct cudaPitchedPtr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaPitchedPtr {
    /// The allocation.
    pub ptr: *mut c_void,
    /// Its pitch, in bytes.
    pub pitch: usize,
    /// Logical width, in elements.
    pub xsize: usize,
    /// Logical height, in elements.
    pub ysize: usize,
}

/// `struct cudaExtent`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaExtent {
    /// In elements for array memory, in bytes for linear memory.
    pub width: usize,
    pub height: usize,
    pub depth: usize,
}

/// `struct cudaPos`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaPos {
    pub x: usize,
    pub y: usize,
    pub z: usize,
}

/// `struct cudaMemcpy3DParms` (`cudaMemcpy3D`, memcpy graph nodes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaMemcpy3DParms {
    /// `cudaArray_t srcArray` (an opaque handle).
    pub srcArray: *mut c_void,
    pub srcPos: CudaPos,
    pub srcPtr: CudaPitchedPtr,
    /// `cudaArray_t dstArray` (an opaque handle).
    pub dstArray: *mut c_void,
    pub dstPos: CudaPos,
    pub dstPtr: CudaPitchedPtr,
    pub extent: CudaExtent,
    /// `enum cudaMemcpyKind kind`: one of the `cudaMemcpy*` kind constants.
    pub kind: c_int,
}

/// `cudaHostFn_t`: a host function a graph's host node (or `cudaLaunchHostFunc`) calls.
pub type CudaHostFn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// `struct cudaKernelNodeParams` (`cudaGraphAddKernelNode`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaKernelNodeParams {
    /// The kernel: its host stub (or a `cudaKernel_t`).
    pub func: *mut c_void,
    pub gridDim: Dim3,
    pub blockDim: Dim3,
    /// Dynamic shared memory per block, in bytes.
    pub sharedMemBytes: c_uint,
    /// One pointer per kernel argument, or null when `extra` is used.
    pub kernelParams: *mut *mut c_void,
    /// Arguments in the `CU_LAUNCH_PARAM_*` "extra" format, or null.
    pub extra: *mut *mut c_void,
}

/// `struct cudaMemsetParams` (`cudaGraphAddMemsetNode`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaMemsetParams {
    pub dst: *mut c_void,
    /// Row pitch in bytes; unused when `height` is 1.
    pub pitch: usize,
    pub value: c_uint,
    /// 1, 2 or 4.
    pub elementSize: c_uint,
    /// Row width, in elements.
    pub width: usize,
    pub height: usize,
}

/// `struct cudaHostNodeParams` (`cudaGraphAddHostNode`).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromZeros, Immutable, KnownLayout)]
pub struct CudaHostNodeParams {
    pub fn_: CudaHostFn,
    pub userData: *mut c_void,
}

/// `struct cudaMemLocation`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaMemLocation {
    /// `enum cudaMemLocationType type`.
    pub type_: c_int,
    pub id: c_int,
}

/// `struct cudaMemAccessDesc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CudaMemAccessDesc {
    pub location: CudaMemLocation,
    /// `enum cudaMemAccessFlags flags`.
    pub flags: c_int,
}

/// `struct cudaMemPoolProps`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaMemPoolProps {
    /// `enum cudaMemAllocationType allocType`.
    pub allocType: c_int,
    /// `enum cudaMemAllocationHandleType handleTypes`.
    pub handleTypes: c_int,
    pub location: CudaMemLocation,
    pub win32SecurityAttributes: *mut c_void,
    pub maxSize: usize,
    pub usage: u16,
    pub reserved: [u8; 54],
}

/// `struct cudaMemAllocNodeParams` (`cudaGraphAddMemAllocNode`); `dptr` is written by the call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaMemAllocNodeParams {
    pub poolProps: CudaMemPoolProps,
    pub accessDescs: *const CudaMemAccessDesc,
    pub accessDescCount: usize,
    pub bytesize: usize,
    pub dptr: *mut c_void,
}

/// `struct cudaGraphExecUpdateResultInfo_st` (`cudaGraphExecUpdate`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromZeros, Immutable, KnownLayout)]
pub struct CudaGraphExecUpdateResultInfo {
    /// `enum cudaGraphExecUpdateResult result`.
    pub result: c_int,
    /// `cudaGraphNode_t errorNode`.
    pub errorNode: *mut c_void,
    /// `cudaGraphNode_t errorFromNode`.
    pub errorFromNode: *mut c_void,
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

consts! {
    /// `enum cudaMemcpyKind`, complete.
    MEMCPY_KINDS: i32 {
        /// Host → host.
        cudaMemcpyHostToHost = 0;
        /// Host → device.
        cudaMemcpyHostToDevice = 1;
        /// Device → host.
        cudaMemcpyDeviceToHost = 2;
        /// Device → device.
        cudaMemcpyDeviceToDevice = 3;
        /// Direction inferred from the pointers (unified virtual addressing).
        cudaMemcpyDefault = 4;
    }
}

consts! {
    /// `cudaStreamCreateWithFlags` flags.
    STREAM_FLAGS: u32 {
        /// Default stream flag.
        cudaStreamDefault = 0x00;
        /// The stream does not synchronise with the legacy default stream.
        cudaStreamNonBlocking = 0x01;
    }
}

consts! {
    /// The special `cudaStream_t` values, as integers (C: `((cudaStream_t)0x1)`, `((cudaStream_t)0x2)`).
    /// The null stream (0) means the legacy default stream unless the program was built with
    /// `--default-stream per-thread` (then it calls the `_ptsz`/`_ptds` entry points).
    STREAM_HANDLES: usize {
        /// The legacy default stream, whatever the compilation mode.
        cudaStreamLegacy = 0x1;
        /// The calling thread's default stream, whatever the compilation mode.
        cudaStreamPerThread = 0x2;
    }
}

consts! {
    /// `cudaEventCreateWithFlags`, `cudaEventRecordWithFlags` and `cudaStreamWaitEvent` flags.
    EVENT_FLAGS: u32 {
        /// Default event flag.
        cudaEventDefault = 0x00;
        /// The event uses blocking synchronisation.
        cudaEventBlockingSync = 0x01;
        /// The event records no timing data.
        cudaEventDisableTiming = 0x02;
        /// The event can be used between processes (needs `cudaEventDisableTiming`).
        cudaEventInterprocess = 0x04;
        /// Default event record flag.
        cudaEventRecordDefault = 0x00;
        /// Captured as an external event node during stream capture.
        cudaEventRecordExternal = 0x01;
        /// Default event wait flag.
        cudaEventWaitDefault = 0x00;
        /// Captured as an external event node during stream capture.
        cudaEventWaitExternal = 0x01;
    }
}

consts! {
    /// `cudaHostAlloc` flags.
    HOST_ALLOC_FLAGS: u32 {
        /// Default page-locked allocation.
        cudaHostAllocDefault = 0x00;
        /// Pinned memory accessible by all CUDA contexts.
        cudaHostAllocPortable = 0x01;
        /// Map the allocation into device space.
        cudaHostAllocMapped = 0x02;
        /// Write-combined memory.
        cudaHostAllocWriteCombined = 0x04;
    }
}

consts! {
    /// `cudaHostRegister` flags.
    HOST_REGISTER_FLAGS: u32 {
        /// Default host memory registration.
        cudaHostRegisterDefault = 0x00;
        /// Pinned memory accessible by all CUDA contexts.
        cudaHostRegisterPortable = 0x01;
        /// Map the registered memory into device space.
        cudaHostRegisterMapped = 0x02;
        /// Memory-mapped I/O space.
        cudaHostRegisterIoMemory = 0x04;
        /// Memory-mapped read-only.
        cudaHostRegisterReadOnly = 0x08;
    }
}

consts! {
    /// `cudaSetDeviceFlags` / `cudaGetDeviceFlags` flags.
    DEVICE_FLAGS: u32 {
        /// Automatic scheduling.
        cudaDeviceScheduleAuto = 0x00;
        /// Spin while waiting.
        cudaDeviceScheduleSpin = 0x01;
        /// Yield while waiting.
        cudaDeviceScheduleYield = 0x02;
        /// Block on a synchronisation primitive while waiting.
        cudaDeviceScheduleBlockingSync = 0x04;
        /// Deprecated spelling of `cudaDeviceScheduleBlockingSync`.
        cudaDeviceBlockingSync = 0x04;
        /// The scheduling bits.
        cudaDeviceScheduleMask = 0x07;
        /// Support mapped pinned allocations.
        cudaDeviceMapHost = 0x08;
        /// Keep local memory allocated after a launch.
        cudaDeviceLmemResizeToMax = 0x10;
        /// Synchronous memory operations synchronise.
        cudaDeviceSyncMemops = 0x80;
        /// All device flags.
        cudaDeviceMask = 0xff;
    }
}

consts! {
    /// `cudaMallocManaged` / `cudaStreamAttachMemAsync` flags.
    MEM_ATTACH_FLAGS: u32 {
        /// Any stream on any device may access the memory.
        cudaMemAttachGlobal = 0x01;
        /// No device stream may access the memory.
        cudaMemAttachHost = 0x02;
        /// Only one stream of the associated device may access the memory.
        cudaMemAttachSingle = 0x04;
    }
}

consts! {
    /// `cudaMallocArray` / `cudaMalloc3DArray` flags.
    ARRAY_FLAGS: u32 {
        /// Default array allocation.
        cudaArrayDefault = 0x00;
        /// A layered array (`cudaMalloc3DArray`).
        cudaArrayLayered = 0x01;
        /// Surfaces may be bound to the array.
        cudaArraySurfaceLoadStore = 0x02;
        /// A cubemap array (`cudaMalloc3DArray`).
        cudaArrayCubemap = 0x04;
        /// Texture gather operations may be done on the array.
        cudaArrayTextureGather = 0x08;
        /// The array is used as a colour target by a graphics API.
        cudaArrayColorAttachment = 0x20;
        /// A sparse array.
        cudaArraySparse = 0x40;
        /// A deferred-mapping array.
        cudaArrayDeferredMapping = 0x80;
    }
}

consts! {
    /// Other flags: occupancy, peer access, IPC, `cudaInitDevice`.
    MISC_FLAGS: u32 {
        /// `cudaOccupancy*WithFlags`: default behaviour.
        cudaOccupancyDefault = 0x00;
        /// `cudaOccupancy*WithFlags`: assume global caching is on and cannot be turned off.
        cudaOccupancyDisableCachingOverride = 0x01;
        /// `cudaDeviceEnablePeerAccess`: the only flag.
        cudaPeerAccessDefault = 0x00;
        /// `cudaIpcOpenMemHandle`: enable peer access lazily.
        cudaIpcMemLazyEnablePeerAccess = 0x01;
        /// `cudaInitDevice`: the `deviceFlags` argument is valid.
        cudaInitDeviceFlagsAreValid = 0x01;
    }
}

consts! {
    /// Special device ordinals.
    DEVICE_IDS: i32 {
        /// The CPU, as a device (`cudaMemPrefetchAsync`, `cudaMemAdvise`).
        cudaCpuDeviceId = -1;
        /// No device.
        cudaInvalidDeviceId = -2;
    }
}

consts! {
    /// `enum cudaDeviceAttr` (`cudaDeviceGetAttribute`), complete. Every number equals the
    /// driver's `CU_DEVICE_ATTRIBUTE_*` number for the same attribute (the ABI check compares
    /// them), so the server asks the driver with the application's number unchanged.
    DEVICE_ATTRS: i32 {
        /// Maximum number of threads per block.
        cudaDevAttrMaxThreadsPerBlock = 1;
        /// Maximum block dimension X.
        cudaDevAttrMaxBlockDimX = 2;
        /// Maximum block dimension Y.
        cudaDevAttrMaxBlockDimY = 3;
        /// Maximum block dimension Z.
        cudaDevAttrMaxBlockDimZ = 4;
        /// Maximum grid dimension X.
        cudaDevAttrMaxGridDimX = 5;
        /// Maximum grid dimension Y.
        cudaDevAttrMaxGridDimY = 6;
        /// Maximum grid dimension Z.
        cudaDevAttrMaxGridDimZ = 7;
        /// Maximum shared memory available per block in bytes.
        cudaDevAttrMaxSharedMemoryPerBlock = 8;
        /// Memory available on device for `__constant__` variables in a CUDA C kernel in bytes.
        cudaDevAttrTotalConstantMemory = 9;
        /// Warp size in threads.
        cudaDevAttrWarpSize = 10;
        /// Maximum pitch in bytes allowed by memory copies.
        cudaDevAttrMaxPitch = 11;
        /// Maximum number of 32-bit registers available per block.
        cudaDevAttrMaxRegistersPerBlock = 12;
        /// Peak clock frequency in kilohertz.
        cudaDevAttrClockRate = 13;
        /// Alignment requirement for textures.
        cudaDevAttrTextureAlignment = 14;
        /// Device can possibly copy memory and execute a kernel concurrently.
        cudaDevAttrGpuOverlap = 15;
        /// Number of multiprocessors on device.
        cudaDevAttrMultiProcessorCount = 16;
        /// Specifies whether there is a run time limit on kernels.
        cudaDevAttrKernelExecTimeout = 17;
        /// Device is integrated with host memory.
        cudaDevAttrIntegrated = 18;
        /// Device can map host memory into CUDA address space.
        cudaDevAttrCanMapHostMemory = 19;
        /// Compute mode (See cudaComputeMode for details).
        cudaDevAttrComputeMode = 20;
        /// Maximum 1D texture width.
        cudaDevAttrMaxTexture1DWidth = 21;
        /// Maximum 2D texture width.
        cudaDevAttrMaxTexture2DWidth = 22;
        /// Maximum 2D texture height.
        cudaDevAttrMaxTexture2DHeight = 23;
        /// Maximum 3D texture width.
        cudaDevAttrMaxTexture3DWidth = 24;
        /// Maximum 3D texture height.
        cudaDevAttrMaxTexture3DHeight = 25;
        /// Maximum 3D texture depth.
        cudaDevAttrMaxTexture3DDepth = 26;
        /// Maximum 2D layered texture width.
        cudaDevAttrMaxTexture2DLayeredWidth = 27;
        /// Maximum 2D layered texture height.
        cudaDevAttrMaxTexture2DLayeredHeight = 28;
        /// Maximum layers in a 2D layered texture.
        cudaDevAttrMaxTexture2DLayeredLayers = 29;
        /// Alignment requirement for surfaces.
        cudaDevAttrSurfaceAlignment = 30;
        /// Device can possibly execute multiple kernels concurrently.
        cudaDevAttrConcurrentKernels = 31;
        /// Device has ECC support enabled.
        cudaDevAttrEccEnabled = 32;
        /// PCI bus ID of the device.
        cudaDevAttrPciBusId = 33;
        /// PCI device ID of the device.
        cudaDevAttrPciDeviceId = 34;
        /// Device is using TCC driver model.
        cudaDevAttrTccDriver = 35;
        /// Peak memory clock frequency in kilohertz.
        cudaDevAttrMemoryClockRate = 36;
        /// Global memory bus width in bits.
        cudaDevAttrGlobalMemoryBusWidth = 37;
        /// Size of L2 cache in bytes.
        cudaDevAttrL2CacheSize = 38;
        /// Maximum resident threads per multiprocessor.
        cudaDevAttrMaxThreadsPerMultiProcessor = 39;
        /// Number of asynchronous engines.
        cudaDevAttrAsyncEngineCount = 40;
        /// Device shares a unified address space with the host.
        cudaDevAttrUnifiedAddressing = 41;
        /// Maximum 1D layered texture width.
        cudaDevAttrMaxTexture1DLayeredWidth = 42;
        /// Maximum layers in a 1D layered texture.
        cudaDevAttrMaxTexture1DLayeredLayers = 43;
        /// Maximum 2D texture width if cudaArrayTextureGather is set.
        cudaDevAttrMaxTexture2DGatherWidth = 45;
        /// Maximum 2D texture height if cudaArrayTextureGather is set.
        cudaDevAttrMaxTexture2DGatherHeight = 46;
        /// Alternate maximum 3D texture width.
        cudaDevAttrMaxTexture3DWidthAlt = 47;
        /// Alternate maximum 3D texture height.
        cudaDevAttrMaxTexture3DHeightAlt = 48;
        /// Alternate maximum 3D texture depth.
        cudaDevAttrMaxTexture3DDepthAlt = 49;
        /// PCI domain ID of the device.
        cudaDevAttrPciDomainId = 50;
        /// Pitch alignment requirement for textures.
        cudaDevAttrTexturePitchAlignment = 51;
        /// Maximum cubemap texture width/height.
        cudaDevAttrMaxTextureCubemapWidth = 52;
        /// Maximum cubemap layered texture width/height.
        cudaDevAttrMaxTextureCubemapLayeredWidth = 53;
        /// Maximum layers in a cubemap layered texture.
        cudaDevAttrMaxTextureCubemapLayeredLayers = 54;
        /// Maximum 1D surface width.
        cudaDevAttrMaxSurface1DWidth = 55;
        /// Maximum 2D surface width.
        cudaDevAttrMaxSurface2DWidth = 56;
        /// Maximum 2D surface height.
        cudaDevAttrMaxSurface2DHeight = 57;
        /// Maximum 3D surface width.
        cudaDevAttrMaxSurface3DWidth = 58;
        /// Maximum 3D surface height.
        cudaDevAttrMaxSurface3DHeight = 59;
        /// Maximum 3D surface depth.
        cudaDevAttrMaxSurface3DDepth = 60;
        /// Maximum 1D layered surface width.
        cudaDevAttrMaxSurface1DLayeredWidth = 61;
        /// Maximum layers in a 1D layered surface.
        cudaDevAttrMaxSurface1DLayeredLayers = 62;
        /// Maximum 2D layered surface width.
        cudaDevAttrMaxSurface2DLayeredWidth = 63;
        /// Maximum 2D layered surface height.
        cudaDevAttrMaxSurface2DLayeredHeight = 64;
        /// Maximum layers in a 2D layered surface.
        cudaDevAttrMaxSurface2DLayeredLayers = 65;
        /// Maximum cubemap surface width.
        cudaDevAttrMaxSurfaceCubemapWidth = 66;
        /// Maximum cubemap layered surface width.
        cudaDevAttrMaxSurfaceCubemapLayeredWidth = 67;
        /// Maximum layers in a cubemap layered surface.
        cudaDevAttrMaxSurfaceCubemapLayeredLayers = 68;
        /// Maximum 1D linear texture width.
        cudaDevAttrMaxTexture1DLinearWidth = 69;
        /// Maximum 2D linear texture width.
        cudaDevAttrMaxTexture2DLinearWidth = 70;
        /// Maximum 2D linear texture height.
        cudaDevAttrMaxTexture2DLinearHeight = 71;
        /// Maximum 2D linear texture pitch in bytes.
        cudaDevAttrMaxTexture2DLinearPitch = 72;
        /// Maximum mipmapped 2D texture width.
        cudaDevAttrMaxTexture2DMipmappedWidth = 73;
        /// Maximum mipmapped 2D texture height.
        cudaDevAttrMaxTexture2DMipmappedHeight = 74;
        /// Major compute capability version number.
        cudaDevAttrComputeCapabilityMajor = 75;
        /// Minor compute capability version number.
        cudaDevAttrComputeCapabilityMinor = 76;
        /// Maximum mipmapped 1D texture width.
        cudaDevAttrMaxTexture1DMipmappedWidth = 77;
        /// Device supports stream priorities.
        cudaDevAttrStreamPrioritiesSupported = 78;
        /// Device supports caching globals in L1.
        cudaDevAttrGlobalL1CacheSupported = 79;
        /// Device supports caching locals in L1.
        cudaDevAttrLocalL1CacheSupported = 80;
        /// Maximum shared memory available per multiprocessor in bytes.
        cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81;
        /// Maximum number of 32-bit registers available per multiprocessor.
        cudaDevAttrMaxRegistersPerMultiprocessor = 82;
        /// Device can allocate managed memory on this system.
        cudaDevAttrManagedMemory = 83;
        /// Device is on a multi-GPU board.
        cudaDevAttrIsMultiGpuBoard = 84;
        /// Unique identifier for a group of devices on the same multi-GPU board.
        cudaDevAttrMultiGpuBoardGroupID = 85;
        /// Link between the device and the host supports native atomic operations.
        cudaDevAttrHostNativeAtomicSupported = 86;
        /// Ratio of single precision performance (in floating-point operations per second) to double
        /// precision performance.
        cudaDevAttrSingleToDoublePrecisionPerfRatio = 87;
        /// Device supports coherently accessing pageable memory without calling cudaHostRegister on it.
        cudaDevAttrPageableMemoryAccess = 88;
        /// Device can coherently access managed memory concurrently with the CPU.
        cudaDevAttrConcurrentManagedAccess = 89;
        /// Device supports Compute Preemption.
        cudaDevAttrComputePreemptionSupported = 90;
        /// Device can access host registered memory at the same virtual address as the CPU.
        cudaDevAttrCanUseHostPointerForRegisteredMem = 91;
        cudaDevAttrReserved92 = 92;
        cudaDevAttrReserved93 = 93;
        cudaDevAttrReserved94 = 94;
        /// Device supports launching cooperative kernels via cudaLaunchCooperativeKernel.
        cudaDevAttrCooperativeLaunch = 95;
        cudaDevAttrReserved96 = 96;
        /// The maximum optin shared memory per block. This value may vary by chip. See cudaFuncSetAttribute.
        cudaDevAttrMaxSharedMemoryPerBlockOptin = 97;
        /// Device supports flushing of outstanding remote writes.
        cudaDevAttrCanFlushRemoteWrites = 98;
        /// Device supports host memory registration via cudaHostRegister.
        cudaDevAttrHostRegisterSupported = 99;
        /// Device accesses pageable memory via the host's page tables.
        cudaDevAttrPageableMemoryAccessUsesHostPageTables = 100;
        /// Host can directly access managed memory on the device without migration.
        cudaDevAttrDirectManagedMemAccessFromHost = 101;
        /// Maximum number of blocks per multiprocessor.
        cudaDevAttrMaxBlocksPerMultiprocessor = 106;
        /// Maximum L2 persisting lines capacity setting in bytes.
        cudaDevAttrMaxPersistingL2CacheSize = 108;
        /// Maximum value of cudaAccessPolicyWindownum_bytes.
        cudaDevAttrMaxAccessPolicyWindowSize = 109;
        /// Shared memory reserved by CUDA driver per block in bytes.
        cudaDevAttrReservedSharedMemoryPerBlock = 111;
        /// Device supports sparse CUDA arrays and sparse CUDA mipmapped arrays.
        cudaDevAttrSparseCudaArraySupported = 112;
        /// Device supports using the cudaHostRegister flag cudaHostRegisterReadOnly to register memory
        /// that must be mapped as read-only to the GPU.
        cudaDevAttrHostRegisterReadOnlySupported = 113;
        /// External timeline semaphore interop is supported on the device.
        cudaDevAttrTimelineSemaphoreInteropSupported = 114;
        /// Device supports using the cudaMallocAsync and cudaMemPool family of APIs.
        cudaDevAttrMemoryPoolsSupported = 115;
        /// Device supports GPUDirect RDMA APIs, like `nvidia_p2p_get_pages`
        /// (<https://docs.nvidia.com/cuda/gpudirect-rdma>).
        cudaDevAttrGPUDirectRDMASupported = 116;
        /// A bitmask of cudaFlushGPUDirectRDMAWritesOptions bits.
        cudaDevAttrGPUDirectRDMAFlushWritesOptions = 117;
        /// The scope (a cudaGPUDirectRDMAWritesOrdering value) within which GPUDirect RDMA writes to the
        /// device need no flush.
        cudaDevAttrGPUDirectRDMAWritesOrdering = 118;
        /// Handle types supported with mempool based IPC.
        cudaDevAttrMemoryPoolSupportedHandleTypes = 119;
        /// Indicates device supports cluster launch.
        cudaDevAttrClusterLaunch = 120;
        /// Device supports deferred mapping CUDA arrays and CUDA mipmapped arrays.
        cudaDevAttrDeferredMappingCudaArraySupported = 121;
        cudaDevAttrReserved122 = 122;
        cudaDevAttrReserved123 = 123;
        cudaDevAttrReserved124 = 124;
        /// Device supports IPC Events.
        cudaDevAttrIpcEventSupport = 125;
        /// Number of memory synchronization domains the device supports.
        cudaDevAttrMemSyncDomainCount = 126;
        cudaDevAttrReserved127 = 127;
        cudaDevAttrReserved128 = 128;
        cudaDevAttrReserved129 = 129;
        /// NUMA configuration of a device: value is of type cudaDeviceNumaConfig enum.
        cudaDevAttrNumaConfig = 130;
        /// NUMA node ID of the GPU memory.
        cudaDevAttrNumaId = 131;
        cudaDevAttrReserved132 = 132;
        /// Contexts created on this device will be shared via MPS.
        cudaDevAttrMpsEnabled = 133;
        /// NUMA ID of the host node closest to the device or -1 when system does not support NUMA.
        cudaDevAttrHostNumaId = 134;
        /// Device supports CIG with D3D12.
        cudaDevAttrD3D12CigSupported = 135;
        /// Device supports CIG with Vulkan.
        cudaDevAttrVulkanCigSupported = 138;
        /// The combined 16-bit PCI device ID and 16-bit PCI vendor ID.
        cudaDevAttrGpuPciDeviceId = 139;
        /// The combined 16-bit PCI subsystem ID and 16-bit PCI subsystem vendor ID.
        cudaDevAttrGpuPciSubsystemId = 140;
        cudaDevAttrReserved141 = 141;
        /// Device supports HOST_NUMA location with the cudaMallocAsync and cudaMemPool family of APIs.
        cudaDevAttrHostNumaMemoryPoolsSupported = 142;
        /// Device supports HostNuma location IPC between nodes in a multi-node system.
        cudaDevAttrHostNumaMultinodeIpcSupported = 143;
        /// Device suports HOST location with the cuMemAllocAsync and cuMemPool family of APIs.
        cudaDevAttrHostMemoryPoolsSupported = 144;
        cudaDevAttrReserved145 = 145;
        /// Link between the device and the host supports only some native atomic operations.
        cudaDevAttrOnlyPartialHostNativeAtomicSupported = 147;
        cudaDevAttrMax = 148;
    }
}

consts! {
    /// `enum cudaFuncAttribute` (`cudaFuncSetAttribute`), complete.
    FUNC_ATTRIBUTES: i32 {
        /// Maximum dynamic shared memory size.
        cudaFuncAttributeMaxDynamicSharedMemorySize = 8;
        /// Preferred shared memory / L1 cache split.
        cudaFuncAttributePreferredSharedMemoryCarveout = 9;
        /// A launch must give a valid cluster dimension.
        cudaFuncAttributeClusterDimMustBeSet = 10;
        /// Required cluster width.
        cudaFuncAttributeRequiredClusterWidth = 11;
        /// Required cluster height.
        cudaFuncAttributeRequiredClusterHeight = 12;
        /// Required cluster depth.
        cudaFuncAttributeRequiredClusterDepth = 13;
        /// Whether non-portable cluster sizes are allowed.
        cudaFuncAttributeNonPortableClusterSizeAllowed = 14;
        /// Required cluster scheduling policy preference.
        cudaFuncAttributeClusterSchedulingPolicyPreference = 15;
        /// One past the last attribute.
        cudaFuncAttributeMax = 16;
    }
}

consts! {
    /// `enum cudaFuncCache` (`cudaFuncSetCacheConfig`, `cudaDeviceSetCacheConfig`), complete.
    FUNC_CACHES: i32 {
        /// No preference.
        cudaFuncCachePreferNone = 0;
        /// Prefer larger shared memory, smaller L1.
        cudaFuncCachePreferShared = 1;
        /// Prefer larger L1, smaller shared memory.
        cudaFuncCachePreferL1 = 2;
        /// Prefer equal L1 and shared memory.
        cudaFuncCachePreferEqual = 3;
    }
}

consts! {
    /// `enum cudaSharedCarveout` (values of `cudaFuncAttributePreferredSharedMemoryCarveout`), complete.
    SHARED_CARVEOUTS: i32 {
        /// No preference.
        cudaSharedmemCarveoutDefault = -1;
        /// Prefer the most shared memory.
        cudaSharedmemCarveoutMaxShared = 100;
        /// Prefer the most L1 cache.
        cudaSharedmemCarveoutMaxL1 = 0;
    }
}

consts! {
    /// `enum cudaLimit` (`cudaDeviceSetLimit`, `cudaDeviceGetLimit`), complete.
    LIMITS: i32 {
        /// GPU thread stack size.
        cudaLimitStackSize = 0x00;
        /// GPU `printf` FIFO size.
        cudaLimitPrintfFifoSize = 0x01;
        /// GPU `malloc` heap size.
        cudaLimitMallocHeapSize = 0x02;
        /// Device runtime synchronise depth.
        cudaLimitDevRuntimeSyncDepth = 0x03;
        /// Device runtime pending launch count.
        cudaLimitDevRuntimePendingLaunchCount = 0x04;
        /// Maximum L2 fetch granularity hint, 0–128 bytes.
        cudaLimitMaxL2FetchGranularity = 0x05;
        /// L2 persisting lines cache size, in bytes.
        cudaLimitPersistingL2CacheSize = 0x06;
    }
}

consts! {
    /// `enum cudaMemoryType` (`CudaPointerAttributes::type_`), complete.
    MEMORY_TYPES: i32 {
        /// Memory CUDA does not know.
        cudaMemoryTypeUnregistered = 0;
        /// Page-locked host memory.
        cudaMemoryTypeHost = 1;
        /// Device memory.
        cudaMemoryTypeDevice = 2;
        /// Managed memory.
        cudaMemoryTypeManaged = 3;
    }
}

consts! {
    /// `enum cudaComputeMode` (`cudaDevAttrComputeMode`), complete.
    COMPUTE_MODES: i32 {
        /// Many threads and processes may use the device.
        cudaComputeModeDefault = 0;
        /// One thread of one process may use the device.
        cudaComputeModeExclusive = 1;
        /// No thread may use the device.
        cudaComputeModeProhibited = 2;
        /// Many threads of one process may use the device.
        cudaComputeModeExclusiveProcess = 3;
    }
}

consts! {
    /// `enum cudaStreamCaptureMode` (`cudaStreamBeginCapture`), complete.
    STREAM_CAPTURE_MODES: i32 {
        /// Potentially unsafe API calls are prohibited in any thread while any capture is active.
        cudaStreamCaptureModeGlobal = 0;
        /// Potentially unsafe API calls are prohibited in this thread while it captures.
        cudaStreamCaptureModeThreadLocal = 1;
        /// No prohibition.
        cudaStreamCaptureModeRelaxed = 2;
    }
}

consts! {
    /// `enum cudaStreamCaptureStatus` (`cudaStreamIsCapturing`), complete.
    STREAM_CAPTURE_STATUSES: i32 {
        /// Not capturing.
        cudaStreamCaptureStatusNone = 0;
        /// Capturing.
        cudaStreamCaptureStatusActive = 1;
        /// Part of an invalidated capture sequence that has not ended yet.
        cudaStreamCaptureStatusInvalidated = 2;
    }
}

consts! {
    /// `enum cudaChannelFormatKind` (`CudaChannelFormatDesc::f`), complete.
    CHANNEL_FORMAT_KINDS: i32 {
        /// Signed channel format.
        cudaChannelFormatKindSigned = 0;
        /// Unsigned channel format.
        cudaChannelFormatKindUnsigned = 1;
        /// Float channel format.
        cudaChannelFormatKindFloat = 2;
        /// No channel format.
        cudaChannelFormatKindNone = 3;
        /// Unsigned 8-bit integers, planar 4:2:0 YUV format.
        cudaChannelFormatKindNV12 = 4;
        /// 1 channel unsigned 8-bit normalized integer.
        cudaChannelFormatKindUnsignedNormalized8X1 = 5;
        /// 2 channel unsigned 8-bit normalized integer.
        cudaChannelFormatKindUnsignedNormalized8X2 = 6;
        /// 4 channel unsigned 8-bit normalized integer.
        cudaChannelFormatKindUnsignedNormalized8X4 = 7;
        /// 1 channel unsigned 16-bit normalized integer.
        cudaChannelFormatKindUnsignedNormalized16X1 = 8;
        /// 2 channel unsigned 16-bit normalized integer.
        cudaChannelFormatKindUnsignedNormalized16X2 = 9;
        /// 4 channel unsigned 16-bit normalized integer.
        cudaChannelFormatKindUnsignedNormalized16X4 = 10;
        /// 1 channel signed 8-bit normalized integer.
        cudaChannelFormatKindSignedNormalized8X1 = 11;
        /// 2 channel signed 8-bit normalized integer.
        cudaChannelFormatKindSignedNormalized8X2 = 12;
        /// 4 channel signed 8-bit normalized integer.
        cudaChannelFormatKindSignedNormalized8X4 = 13;
        /// 1 channel signed 16-bit normalized integer.
        cudaChannelFormatKindSignedNormalized16X1 = 14;
        /// 2 channel signed 16-bit normalized integer.
        cudaChannelFormatKindSignedNormalized16X2 = 15;
        /// 4 channel signed 16-bit normalized integer.
        cudaChannelFormatKindSignedNormalized16X4 = 16;
        /// 4 channel unsigned normalized block-compressed (BC1 compression) format.
        cudaChannelFormatKindUnsignedBlockCompressed1 = 17;
        /// 4 channel unsigned normalized block-compressed (BC1 compression) format with sRGB encoding.
        cudaChannelFormatKindUnsignedBlockCompressed1SRGB = 18;
        /// 4 channel unsigned normalized block-compressed (BC2 compression) format.
        cudaChannelFormatKindUnsignedBlockCompressed2 = 19;
        /// 4 channel unsigned normalized block-compressed (BC2 compression) format with sRGB encoding.
        cudaChannelFormatKindUnsignedBlockCompressed2SRGB = 20;
        /// 4 channel unsigned normalized block-compressed (BC3 compression) format.
        cudaChannelFormatKindUnsignedBlockCompressed3 = 21;
        /// 4 channel unsigned normalized block-compressed (BC3 compression) format with sRGB encoding.
        cudaChannelFormatKindUnsignedBlockCompressed3SRGB = 22;
        /// 1 channel unsigned normalized block-compressed (BC4 compression) format.
        cudaChannelFormatKindUnsignedBlockCompressed4 = 23;
        /// 1 channel signed normalized block-compressed (BC4 compression) format.
        cudaChannelFormatKindSignedBlockCompressed4 = 24;
        /// 2 channel unsigned normalized block-compressed (BC5 compression) format.
        cudaChannelFormatKindUnsignedBlockCompressed5 = 25;
        /// 2 channel signed normalized block-compressed (BC5 compression) format.
        cudaChannelFormatKindSignedBlockCompressed5 = 26;
        /// 3 channel unsigned half-float block-compressed (BC6H compression) format.
        cudaChannelFormatKindUnsignedBlockCompressed6H = 27;
        /// 3 channel signed half-float block-compressed (BC6H compression) format.
        cudaChannelFormatKindSignedBlockCompressed6H = 28;
        /// 4 channel unsigned normalized block-compressed (BC7 compression) format.
        cudaChannelFormatKindUnsignedBlockCompressed7 = 29;
        /// 4 channel unsigned normalized block-compressed (BC7 compression) format with sRGB encoding.
        cudaChannelFormatKindUnsignedBlockCompressed7SRGB = 30;
        /// 4 channel unsigned normalized (10-bit, 10-bit, 10-bit, 2-bit) format.
        cudaChannelFormatKindUnsignedNormalized1010102 = 31;
    }
}

/// All constant tables, for the ABI check and for diagnostics.
pub const ALL_CONSTANTS: &[&[(&str, i64)]] = &[
    MEMCPY_KINDS,
    STREAM_FLAGS,
    STREAM_HANDLES,
    EVENT_FLAGS,
    HOST_ALLOC_FLAGS,
    HOST_REGISTER_FLAGS,
    DEVICE_FLAGS,
    MEM_ATTACH_FLAGS,
    ARRAY_FLAGS,
    MISC_FLAGS,
    DEVICE_IDS,
    DEVICE_ATTRS,
    FUNC_ATTRIBUTES,
    FUNC_CACHES,
    SHARED_CARVEOUTS,
    LIMITS,
    MEMORY_TYPES,
    COMPUTE_MODES,
    STREAM_CAPTURE_MODES,
    STREAM_CAPTURE_STATUSES,
    CHANNEL_FORMAT_KINDS,
    CU_DEVICE_ATTRIBUTES,
];

/// The C name of a `cudaDeviceAttr` value (`"cudaDevAttrWarpSize"`), for logs.
pub fn device_attr_name(attr: i32) -> Option<&'static str> {
    DEVICE_ATTRS.iter().find(|&&(_, v)| v == i64::from(attr)).map(|&(n, _)| n)
}

// ---------------------------------------------------------------------------------------------
// cudaGetDeviceProperties from driver attributes
// ---------------------------------------------------------------------------------------------

consts! {
    /// The driver's `CUdevice_attribute` numbers (`cuda.h`) that [`device_prop_from_attributes`]
    /// reads: one per [`CudaDeviceProp`] field that libcudart fills from an attribute.
    CU_DEVICE_ATTRIBUTES: u32 {
        CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1;
        CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X = 2;
        CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y = 3;
        CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z = 4;
        CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X = 5;
        CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y = 6;
        CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z = 7;
        CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8;
        CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY = 9;
        CU_DEVICE_ATTRIBUTE_WARP_SIZE = 10;
        CU_DEVICE_ATTRIBUTE_MAX_PITCH = 11;
        CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK = 12;
        CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT = 14;
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
        CU_DEVICE_ATTRIBUTE_INTEGRATED = 18;
        CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY = 19;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_WIDTH = 21;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_WIDTH = 22;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_HEIGHT = 23;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH = 24;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT = 25;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH = 26;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_WIDTH = 27;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_HEIGHT = 28;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_LAYERS = 29;
        CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT = 30;
        CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS = 31;
        CU_DEVICE_ATTRIBUTE_ECC_ENABLED = 32;
        CU_DEVICE_ATTRIBUTE_PCI_BUS_ID = 33;
        CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID = 34;
        CU_DEVICE_ATTRIBUTE_TCC_DRIVER = 35;
        CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37;
        CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38;
        CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR = 39;
        CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT = 40;
        CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING = 41;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LAYERED_WIDTH = 42;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LAYERED_LAYERS = 43;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_GATHER_WIDTH = 45;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_GATHER_HEIGHT = 46;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH_ALTERNATE = 47;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT_ALTERNATE = 48;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH_ALTERNATE = 49;
        CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID = 50;
        CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT = 51;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_WIDTH = 52;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_LAYERED_WIDTH = 53;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_LAYERED_LAYERS = 54;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_WIDTH = 55;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_WIDTH = 56;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_HEIGHT = 57;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_WIDTH = 58;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_HEIGHT = 59;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_DEPTH = 60;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_LAYERED_WIDTH = 61;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_LAYERED_LAYERS = 62;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_WIDTH = 63;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_HEIGHT = 64;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_LAYERS = 65;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_WIDTH = 66;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_LAYERED_WIDTH = 67;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_LAYERED_LAYERS = 68;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_WIDTH = 70;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_HEIGHT = 71;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_PITCH = 72;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_MIPMAPPED_WIDTH = 73;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_MIPMAPPED_HEIGHT = 74;
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
        CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_MIPMAPPED_WIDTH = 77;
        CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED = 78;
        CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED = 79;
        CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED = 80;
        CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81;
        CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR = 82;
        CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY = 83;
        CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD = 84;
        CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD_GROUP_ID = 85;
        CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED = 86;
        CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS = 88;
        CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS = 89;
        CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED = 90;
        CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM = 91;
        CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = 95;
        CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
        CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED = 99;
        CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES = 100;
        CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST = 101;
        CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR = 106;
        CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE = 108;
        CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE = 109;
        CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK = 111;
        CU_DEVICE_ATTRIBUTE_SPARSE_CUDA_ARRAY_SUPPORTED = 112;
        CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED = 113;
        CU_DEVICE_ATTRIBUTE_TIMELINE_SEMAPHORE_INTEROP_SUPPORTED = 114;
        CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115;
        CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED = 116;
        CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_FLUSH_WRITES_OPTIONS = 117;
        CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WRITES_ORDERING = 118;
        CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES = 119;
        CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH = 120;
        CU_DEVICE_ATTRIBUTE_DEFERRED_MAPPING_CUDA_ARRAY_SUPPORTED = 121;
        CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED = 125;
        CU_DEVICE_ATTRIBUTE_UNIFIED_FUNCTION_POINTERS = 129;
        CU_DEVICE_ATTRIBUTE_NUMA_CONFIG = 130;
        CU_DEVICE_ATTRIBUTE_NUMA_ID = 131;
        CU_DEVICE_ATTRIBUTE_MPS_ENABLED = 133;
        CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID = 134;
        CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID = 139;
        CU_DEVICE_ATTRIBUTE_GPU_PCI_SUBSYSTEM_ID = 140;
        CU_DEVICE_ATTRIBUTE_HOST_NUMA_MULTINODE_IPC_SUPPORTED = 143;
    }
}

/// How many leading bytes of a `cudaDeviceProp` libcudart's `cudaGetDeviceProperties` writes:
/// all but `reserved` (784 of 1008).
pub const DEVICE_PROP_WRITTEN: usize = core::mem::offset_of!(CudaDeviceProp, reserved);

/// A `cudaDeviceProp` as libcudart's `cudaGetDeviceProperties` fills it: `name`, `uuid` and
/// `totalGlobalMem` from `cuDeviceGetName`, `cuDeviceGetUuid` and `cuDeviceTotalMem`, every
/// other field from one `cuDeviceGetAttribute` (`attr` gets the driver's attribute number, one of
/// [`CU_DEVICE_ATTRIBUTES`], and returns its value), `luid` and `luidDeviceNodeMask` zero (they
/// are Windows-only) and `reserved` zero.
///
/// `name` is cut to 255 bytes and NUL-terminated. A `size_t` field takes its attribute's bits
/// as an unsigned 32-bit number.
///
/// libcudart 13.0.96 writes the first [`DEVICE_PROP_WRITTEN`] bytes (everything before
/// `reserved`, padding zeroed) and leaves `reserved` as the caller had it; a shim that copies
/// out only that prefix behaves identically.
pub fn device_prop_from_attributes(
    name: &str,
    uuid: [u8; 16],
    total_mem: u64,
    attr: impl Fn(u32) -> i32,
) -> CudaDeviceProp {
    let a = |n: u32| -> c_int { attr(n) };
    let u = |n: u32| -> c_uint { attr(n) as c_uint };
    let size = |n: u32| -> usize { attr(n) as c_uint as usize };
    let mut c_name: [c_char; 256] = [0; 256];
    for (dst, &b) in c_name.iter_mut().zip(name.as_bytes().iter().take(255)) {
        *dst = b as c_char;
    }
    CudaDeviceProp {
        name: c_name,
        uuid,
        luid: [0; 8],
        luidDeviceNodeMask: 0,
        totalGlobalMem: usize::try_from(total_mem).unwrap_or(usize::MAX),
        sharedMemPerBlock: size(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK),
        regsPerBlock: a(CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK),
        warpSize: a(CU_DEVICE_ATTRIBUTE_WARP_SIZE),
        memPitch: size(CU_DEVICE_ATTRIBUTE_MAX_PITCH),
        maxThreadsPerBlock: a(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
        maxThreadsDim: [
            a(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X),
            a(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y),
            a(CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z),
        ],
        maxGridSize: [
            a(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X),
            a(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y),
            a(CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z),
        ],
        totalConstMem: size(CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY),
        major: a(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
        minor: a(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        textureAlignment: size(CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT),
        texturePitchAlignment: size(CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT),
        multiProcessorCount: a(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
        integrated: a(CU_DEVICE_ATTRIBUTE_INTEGRATED),
        canMapHostMemory: a(CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY),
        maxTexture1D: a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_WIDTH),
        maxTexture1DMipmap: a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_MIPMAPPED_WIDTH),
        maxTexture2D: [a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_WIDTH), a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_HEIGHT)],
        maxTexture2DMipmap: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_MIPMAPPED_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_MIPMAPPED_HEIGHT),
        ],
        maxTexture2DLinear: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_HEIGHT),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LINEAR_PITCH),
        ],
        maxTexture2DGather: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_GATHER_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_GATHER_HEIGHT),
        ],
        maxTexture3D: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH),
        ],
        maxTexture3DAlt: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH_ALTERNATE),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT_ALTERNATE),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH_ALTERNATE),
        ],
        maxTextureCubemap: a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_WIDTH),
        maxTexture1DLayered: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LAYERED_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_LAYERED_LAYERS),
        ],
        maxTexture2DLayered: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_HEIGHT),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_LAYERED_LAYERS),
        ],
        maxTextureCubemapLayered: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_LAYERED_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURECUBEMAP_LAYERED_LAYERS),
        ],
        maxSurface1D: a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_WIDTH),
        maxSurface2D: [a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_WIDTH), a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_HEIGHT)],
        maxSurface3D: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_HEIGHT),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE3D_DEPTH),
        ],
        maxSurface1DLayered: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_LAYERED_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE1D_LAYERED_LAYERS),
        ],
        maxSurface2DLayered: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_HEIGHT),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACE2D_LAYERED_LAYERS),
        ],
        maxSurfaceCubemap: a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_WIDTH),
        maxSurfaceCubemapLayered: [
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_LAYERED_WIDTH),
            a(CU_DEVICE_ATTRIBUTE_MAXIMUM_SURFACECUBEMAP_LAYERED_LAYERS),
        ],
        surfaceAlignment: size(CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT),
        concurrentKernels: a(CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS),
        ECCEnabled: a(CU_DEVICE_ATTRIBUTE_ECC_ENABLED),
        pciBusID: a(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID),
        pciDeviceID: a(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID),
        pciDomainID: a(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID),
        tccDriver: a(CU_DEVICE_ATTRIBUTE_TCC_DRIVER),
        asyncEngineCount: a(CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT),
        unifiedAddressing: a(CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING),
        memoryBusWidth: a(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH),
        l2CacheSize: a(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
        persistingL2CacheMaxSize: a(CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE),
        maxThreadsPerMultiProcessor: a(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR),
        streamPrioritiesSupported: a(CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED),
        globalL1CacheSupported: a(CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED),
        localL1CacheSupported: a(CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED),
        sharedMemPerMultiprocessor: size(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR),
        regsPerMultiprocessor: a(CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR),
        managedMemory: a(CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY),
        isMultiGpuBoard: a(CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD),
        multiGpuBoardGroupID: a(CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD_GROUP_ID),
        hostNativeAtomicSupported: a(CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED),
        pageableMemoryAccess: a(CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS),
        concurrentManagedAccess: a(CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS),
        computePreemptionSupported: a(CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED),
        canUseHostPointerForRegisteredMem: a(CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM),
        cooperativeLaunch: a(CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH),
        sharedMemPerBlockOptin: size(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
        pageableMemoryAccessUsesHostPageTables: a(CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES),
        directManagedMemAccessFromHost: a(CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST),
        maxBlocksPerMultiProcessor: a(CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR),
        accessPolicyMaxWindowSize: a(CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE),
        reservedSharedMemPerBlock: size(CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK),
        hostRegisterSupported: a(CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED),
        sparseCudaArraySupported: a(CU_DEVICE_ATTRIBUTE_SPARSE_CUDA_ARRAY_SUPPORTED),
        hostRegisterReadOnlySupported: a(CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED),
        timelineSemaphoreInteropSupported: a(CU_DEVICE_ATTRIBUTE_TIMELINE_SEMAPHORE_INTEROP_SUPPORTED),
        memoryPoolsSupported: a(CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED),
        gpuDirectRDMASupported: a(CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED),
        gpuDirectRDMAFlushWritesOptions: u(CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_FLUSH_WRITES_OPTIONS),
        gpuDirectRDMAWritesOrdering: a(CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WRITES_ORDERING),
        memoryPoolSupportedHandleTypes: u(CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES),
        deferredMappingCudaArraySupported: a(CU_DEVICE_ATTRIBUTE_DEFERRED_MAPPING_CUDA_ARRAY_SUPPORTED),
        ipcEventSupported: a(CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED),
        clusterLaunch: a(CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH),
        unifiedFunctionPointers: a(CU_DEVICE_ATTRIBUTE_UNIFIED_FUNCTION_POINTERS),
        deviceNumaConfig: a(CU_DEVICE_ATTRIBUTE_NUMA_CONFIG),
        deviceNumaId: a(CU_DEVICE_ATTRIBUTE_NUMA_ID),
        mpsEnabled: a(CU_DEVICE_ATTRIBUTE_MPS_ENABLED),
        hostNumaId: a(CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID),
        gpuPciDeviceID: u(CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID),
        gpuPciSubsystemID: u(CU_DEVICE_ATTRIBUTE_GPU_PCI_SUBSYSTEM_ID),
        hostNumaMultinodeIpcSupported: a(CU_DEVICE_ATTRIBUTE_HOST_NUMA_MULTINODE_IPC_SUPPORTED),
        reserved: [0; 56],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_on_x86_64_linux() {
        // The full check is tests/abi_layout.rs (against the headers); these are its results.
        assert_eq!(size_of::<Dim3>(), 12);
        assert_eq!(size_of::<CudaDeviceProp>(), 1008);
        assert_eq!(core::mem::offset_of!(CudaDeviceProp, totalGlobalMem), 288);
        assert_eq!(DEVICE_PROP_WRITTEN, 784);
        assert_eq!(size_of::<CudaPointerAttributes>(), 88);
        assert_eq!(size_of::<CudaFuncAttributes>(), 144);
        assert_eq!(size_of::<CudaChannelFormatDesc>(), 20);
        assert_eq!(size_of::<CudaPitchedPtr>(), 32);
        assert_eq!(size_of::<CudaExtent>(), 24);
        assert_eq!(size_of::<CudaPos>(), 24);
        assert_eq!(size_of::<CudaMemcpy3DParms>(), 160);
        assert_eq!(size_of::<CudaKernelNodeParams>(), 56);
        assert_eq!(size_of::<CudaMemsetParams>(), 40);
        assert_eq!(size_of::<CudaHostNodeParams>(), 16);
        assert_eq!(size_of::<CudaMemPoolProps>(), 88);
        assert_eq!(size_of::<CudaMemAllocNodeParams>(), 120);
        assert_eq!(size_of::<CudaGraphExecUpdateResultInfo>(), 24);
    }

    #[test]
    fn constant_names_are_unique_within_tables_and_values_match() {
        let mut seen = std::collections::HashMap::new();
        for table in ALL_CONSTANTS {
            for &(name, value) in *table {
                assert_eq!(*seen.entry(name).or_insert(value), value, "{name}");
            }
        }
        assert_eq!(seen["cudaMemcpyDefault"], 4);
        assert_eq!(seen["cudaStreamPerThread"], 2);
        assert_eq!(seen["cudaDevAttrMax"], 148);
        assert_eq!(device_attr_name(cudaDevAttrWarpSize), Some("cudaDevAttrWarpSize"));
        assert_eq!(device_attr_name(44), None);
    }

    #[test]
    fn every_device_attr_with_a_prop_field_has_the_same_driver_number() {
        // cudaDeviceAttr and CUdevice_attribute share numbers; the prop filler relies on it
        // only through CU_DEVICE_ATTRIBUTES, which the ABI check compares with cuda.h.
        for &(name, value) in CU_DEVICE_ATTRIBUTES {
            assert!(
                DEVICE_ATTRS.iter().any(|&(_, v)| v == value),
                "{name} = {value} has no cudaDeviceAttr with that number"
            );
        }
    }

    #[test]
    fn device_prop_fills_every_field_from_its_attribute() {
        // Each attribute returns its own number, so each field shows which one it read.
        let p = device_prop_from_attributes("NVIDIA H100 80GB HBM3", [7; 16], 85_000_000_000, |n| n as i32);
        let name: Vec<u8> = p.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        assert_eq!(name, b"NVIDIA H100 80GB HBM3");
        assert_eq!(p.uuid, [7; 16]);
        assert_eq!(p.totalGlobalMem, 85_000_000_000);
        assert_eq!((p.major, p.minor), (75, 76));
        assert_eq!(p.maxThreadsDim, [2, 3, 4]);
        assert_eq!(p.maxGridSize, [5, 6, 7]);
        assert_eq!(p.sharedMemPerBlock, 8);
        assert_eq!(p.sharedMemPerBlockOptin, 97);
        assert_eq!(p.maxTexture2DLinear, [70, 71, 72]);
        assert_eq!(p.hostNumaMultinodeIpcSupported, 143);
        assert_eq!(p.gpuPciDeviceID, 139);
        assert_eq!(p.luid, [0; 8]);
        assert_eq!(p.reserved, [0; 56]);
        // Negative attribute values: ints keep them, size_t fields take the unsigned bits.
        let p = device_prop_from_attributes("", [0; 16], 0, |_| -1);
        assert_eq!(p.hostNumaId, -1);
        assert_eq!(p.memPitch, 0xffff_ffff);
        assert_eq!(p.gpuPciSubsystemID, u32::MAX);
        assert_eq!(p.name[0], 0);
    }

    #[test]
    fn long_names_are_cut_and_terminated() {
        let long = "x".repeat(300);
        let p = device_prop_from_attributes(&long, [0; 16], 0, |_| 0);
        assert_eq!(p.name[254], b'x' as c_char);
        assert_eq!(p.name[255], 0);
    }

    #[test]
    fn zeroed_structs() {
        let p = CudaPointerAttributes::new_zeroed();
        assert!(p.devicePointer.is_null());
        assert_eq!(p.type_, cudaMemoryTypeUnregistered);
        assert_eq!(CudaDeviceProp::new_zeroed().major, 0);
        assert_eq!(Dim3::new(2, 3, 4).volume(), 24);
        assert_eq!(Dim3::new(u32::MAX, u32::MAX, u32::MAX).volume(), u128::from(u32::MAX).pow(3));
    }
}
