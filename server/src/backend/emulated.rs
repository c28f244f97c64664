//! The emulated backend: a test double that keeps "device" memory in host memory.
//!
//! It exists so that the whole remoting path (client → transport → worker → backend) can run on
//! machines without a GPU. It is not a GPU: it says so in its name, in every device name and in a
//! warning when it is created.
//!
//! # What it models
//! - **Memory**: each allocation is a `Vec<u8>` keyed by a fake device address. Device `d` hands
//!   out addresses from `ADDRESS_BASE + (d << 40)` upwards, 256-byte aligned, with a monotonic
//!   bump pointer so a freed address is not handed out again soon (use-after-free shows up as an
//!   error, not as someone else's data). Each device reports [`DEVICE_MEMORY`] bytes (or what
//!   [`EmulatedBackend::with_memory`] says); `mem_get_info` reflects the allocations, and
//!   allocating past the total fails with `OUT_OF_MEMORY`. Addresses are unified: a copy may name
//!   memory of any device, as with CUDA's unified addressing. Arrays count as used memory, as
//!   in CUDA. Address-space reservations (`mem_reserve`) are zeroed host memory too, so one is
//!   at most the device's memory.
//! - **Streams and events**: work runs synchronously inside the call, so every stream is always
//!   idle. Recording an event takes a monotonic timestamp, so `event_elapsed` measures real time.
//! - **Modules**: `module_load` accepts images that contain PTX `.entry` names (PTX text, or
//!   fatbins/cubins with uncompressed PTX or `.text.<name>` sections); it parses entry points,
//!   their parameter layouts and `.global`/`.const` variables (allocated as zeroed emulated
//!   memory). Only the demo kernels ([`super::demo_kernels`]) can be looked up and launched; they
//!   are implemented here in Rust and read their arguments from the parameter buffer at the real
//!   PTX offsets. Other names fail with `NOT_FOUND` at `module_get_function`.
//! - **Faults**: a kernel that touches memory outside an allocation fails with
//!   `ILLEGAL_ADDRESS`, a misaligned one with `MISALIGNED_ADDRESS`, and `remora_assert` with a
//!   non-zero flag with `ASSERT`. As in CUDA, such a fault is sticky: that launch and every later
//!   call (except `device_count` and `driver_version`) return the same status.
//!
//! Unlike CUDA, a faulting launch reports its fault from the launch call itself (CUDA reports it
//! at the next synchronising call); callers that handle both should accept either.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use remora_wire::ops::{DeviceInfo, DEVICE_ATTRIBUTE_SLOTS};
use remora_wire::{Status, I32, U64};
use zerocopy::FromZeros;

use super::demo_kernels as demo;
use super::{ArrayDesc, Backend, Copy2D, LaunchConfig, Mem2D, RawStream, Res};
use remora_wire::ops::{self as wire_ops, TexObjectCreate};

/// Devices an [`EmulatedBackend`] has unless told otherwise.
pub const DEFAULT_DEVICES: u32 = 2;
/// Memory each emulated device reports (16 GiB).
pub const DEVICE_MEMORY: u64 = 16 << 30;
/// Most devices one backend emulates (each gets a 1 TiB address window).
pub const MAX_DEVICES: u32 = 64;
/// First address of device 0; device `d` starts at `ADDRESS_BASE + (d << 40)`.
pub const ADDRESS_BASE: u64 = 0x7e00_0000_0000;
/// Alignment of every allocation.
pub const ALLOC_ALIGN: u64 = 256;
/// What `driver_version` reports (CUDA 13.0's numbering).
pub const DRIVER_VERSION: i32 = 13000;

const WINDOW_SHIFT: u32 = 40;
const WINDOW: u64 = 1 << WINDOW_SHIFT;
/// Reservations are aligned like the CUDA VMM granule.
const RESERVE_ALIGN: u64 = 2 << 20;
const HANDLE_BASE: u64 = 0x5e00_0000_0000;
const STATUS_COOPERATIVE_LAUNCH_TOO_LARGE: Status = Status(720);
const EVENT_DISABLE_TIMING: u32 = 0x2;

/// Emulated streaming multiprocessors per device (attribute 16); bounds cooperative grids.
const MULTIPROCESSORS: u32 = 4;
/// Default dynamic shared memory limit of a function (48 KiB), as on real devices.
const DEFAULT_MAX_DYNAMIC_SHARED: i32 = 48 << 10;
/// Opt-in dynamic shared memory limit per block on sm_90 (227 KiB, attribute 97).
const OPTIN_MAX_SHARED: i32 = 227 << 10;

/// `CUdevice_attribute` values of an sm_90 device: those an NVIDIA H200 reported (driver
/// 580.159, CUDA 13.0, 2026-11), except the multiprocessor count ([`MULTIPROCESSORS`] instead of
/// 132) and the PCI ids (0: there is no PCI device). Unlisted attributes read as 0.
const SM90_ATTRIBUTES: &[(u32, i32)] = &[
    (1, 1024),              // MAX_THREADS_PER_BLOCK
    (2, 1024),              // MAX_BLOCK_DIM_X
    (3, 1024),              // MAX_BLOCK_DIM_Y
    (4, 64),                // MAX_BLOCK_DIM_Z
    (5, i32::MAX),          // MAX_GRID_DIM_X
    (6, 65535),             // MAX_GRID_DIM_Y
    (7, 65535),             // MAX_GRID_DIM_Z
    (8, 48 << 10),          // MAX_SHARED_MEMORY_PER_BLOCK
    (9, 64 << 10),          // TOTAL_CONSTANT_MEMORY
    (10, 32),               // WARP_SIZE
    (11, i32::MAX),         // MAX_PITCH
    (12, 65536),            // MAX_REGISTERS_PER_BLOCK
    (13, 1_980_000),        // CLOCK_RATE (kHz)
    (14, 512),              // TEXTURE_ALIGNMENT
    (15, 1),                // GPU_OVERLAP
    (16, 4),                // MULTIPROCESSOR_COUNT (= MULTIPROCESSORS)
    (17, 0),                // KERNEL_EXEC_TIMEOUT
    (18, 0),                // INTEGRATED
    (19, 1),                // CAN_MAP_HOST_MEMORY
    (20, 0),                // COMPUTE_MODE (default)
    (21, 131_072),          // MAXIMUM_TEXTURE1D_WIDTH
    (22, 131_072),          // MAXIMUM_TEXTURE2D_WIDTH
    (23, 65536),            // MAXIMUM_TEXTURE2D_HEIGHT
    (24, 16384),            // MAXIMUM_TEXTURE3D_WIDTH
    (25, 16384),            // MAXIMUM_TEXTURE3D_HEIGHT
    (26, 16384),            // MAXIMUM_TEXTURE3D_DEPTH
    (27, 32768),            // MAXIMUM_TEXTURE2D_LAYERED_WIDTH
    (28, 32768),            // MAXIMUM_TEXTURE2D_LAYERED_HEIGHT
    (29, 2048),             // MAXIMUM_TEXTURE2D_LAYERED_LAYERS
    (30, 512),              // SURFACE_ALIGNMENT
    (31, 1),                // CONCURRENT_KERNELS
    (32, 1),                // ECC_ENABLED
    (35, 0),                // TCC_DRIVER
    (36, 3_201_000),        // MEMORY_CLOCK_RATE (kHz)
    (37, 6016),             // GLOBAL_MEMORY_BUS_WIDTH (bits)
    (38, 60 << 20),         // L2_CACHE_SIZE
    (39, 2048),             // MAX_THREADS_PER_MULTIPROCESSOR
    (40, 3),                // ASYNC_ENGINE_COUNT
    (41, 1),                // UNIFIED_ADDRESSING
    (42, 32768),            // MAXIMUM_TEXTURE1D_LAYERED_WIDTH
    (43, 2048),             // MAXIMUM_TEXTURE1D_LAYERED_LAYERS
    (44, 1),                // CAN_TEX2D_GATHER
    (45, 32768),            // MAXIMUM_TEXTURE2D_GATHER_WIDTH
    (46, 32768),            // MAXIMUM_TEXTURE2D_GATHER_HEIGHT
    (47, 8192),             // MAXIMUM_TEXTURE3D_WIDTH_ALTERNATE
    (48, 8192),             // MAXIMUM_TEXTURE3D_HEIGHT_ALTERNATE
    (49, 32768),            // MAXIMUM_TEXTURE3D_DEPTH_ALTERNATE
    (51, 32),               // TEXTURE_PITCH_ALIGNMENT
    (52, 32768),            // MAXIMUM_TEXTURECUBEMAP_WIDTH
    (53, 32768),            // MAXIMUM_TEXTURECUBEMAP_LAYERED_WIDTH
    (54, 2046),             // MAXIMUM_TEXTURECUBEMAP_LAYERED_LAYERS
    (55, 32768),            // MAXIMUM_SURFACE1D_WIDTH
    (56, 131_072),          // MAXIMUM_SURFACE2D_WIDTH
    (57, 65536),            // MAXIMUM_SURFACE2D_HEIGHT
    (58, 16384),            // MAXIMUM_SURFACE3D_WIDTH
    (59, 16384),            // MAXIMUM_SURFACE3D_HEIGHT
    (60, 16384),            // MAXIMUM_SURFACE3D_DEPTH
    (61, 32768),            // MAXIMUM_SURFACE1D_LAYERED_WIDTH
    (62, 2048),             // MAXIMUM_SURFACE1D_LAYERED_LAYERS
    (63, 32768),            // MAXIMUM_SURFACE2D_LAYERED_WIDTH
    (64, 32768),            // MAXIMUM_SURFACE2D_LAYERED_HEIGHT
    (65, 2048),             // MAXIMUM_SURFACE2D_LAYERED_LAYERS
    (66, 32768),            // MAXIMUM_SURFACECUBEMAP_WIDTH
    (67, 32768),            // MAXIMUM_SURFACECUBEMAP_LAYERED_WIDTH
    (68, 2046),             // MAXIMUM_SURFACECUBEMAP_LAYERED_LAYERS
    (69, 268_435_456),      // MAXIMUM_TEXTURE1D_LINEAR_WIDTH
    (70, 131_072),          // MAXIMUM_TEXTURE2D_LINEAR_WIDTH
    (71, 65000),            // MAXIMUM_TEXTURE2D_LINEAR_HEIGHT
    (72, 2_097_120),        // MAXIMUM_TEXTURE2D_LINEAR_PITCH
    (73, 32768),            // MAXIMUM_TEXTURE2D_MIPMAPPED_WIDTH
    (74, 32768),            // MAXIMUM_TEXTURE2D_MIPMAPPED_HEIGHT
    (75, 9),                // COMPUTE_CAPABILITY_MAJOR
    (76, 0),                // COMPUTE_CAPABILITY_MINOR
    (77, 32768),            // MAXIMUM_TEXTURE1D_MIPMAPPED_WIDTH
    (78, 1),                // STREAM_PRIORITIES_SUPPORTED
    (79, 1),                // GLOBAL_L1_CACHE_SUPPORTED
    (80, 1),                // LOCAL_L1_CACHE_SUPPORTED
    (81, 228 << 10),        // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    (82, 65536),            // MAX_REGISTERS_PER_MULTIPROCESSOR
    (83, 1),                // MANAGED_MEMORY
    (84, 0),                // MULTI_GPU_BOARD
    (86, 0),                // HOST_NATIVE_ATOMIC_SUPPORTED
    (87, 2),                // SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO
    (88, 0),                // PAGEABLE_MEMORY_ACCESS
    (89, 1),                // CONCURRENT_MANAGED_ACCESS
    (90, 1),                // COMPUTE_PREEMPTION_SUPPORTED
    (91, 1),                // CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM
    (95, 1),                // COOPERATIVE_LAUNCH
    (96, 1),                // COOPERATIVE_MULTI_DEVICE_LAUNCH
    (97, OPTIN_MAX_SHARED), // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    (98, 0),                // CAN_FLUSH_REMOTE_WRITES
    (99, 1),                // HOST_REGISTER_SUPPORTED
    (100, 0),               // PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES
    (101, 0),               // DIRECT_MANAGED_MEM_ACCESS_FROM_HOST
    (102, 1),               // VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED
    (103, 1),               // HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED
    (106, 32),              // MAX_BLOCKS_PER_MULTIPROCESSOR
    (107, 1),               // GENERIC_COMPRESSION_SUPPORTED
    (108, 39_321_600),      // MAX_PERSISTING_L2_CACHE_SIZE
    (109, 134_217_728),     // MAX_ACCESS_POLICY_WINDOW_SIZE
    (110, 1),               // GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED
    (111, 1024),            // RESERVED_SHARED_MEMORY_PER_BLOCK
    (112, 1),               // SPARSE_CUDA_ARRAY_SUPPORTED
    (113, 1),               // READ_ONLY_HOST_REGISTER_SUPPORTED
    (114, 1),               // TIMELINE_SEMAPHORE_INTEROP_SUPPORTED
    (115, 1),               // MEMORY_POOLS_SUPPORTED
    (116, 1),               // GPU_DIRECT_RDMA_SUPPORTED
    (117, 1),               // GPU_DIRECT_RDMA_FLUSH_WRITES_OPTIONS
    (118, 100),             // GPU_DIRECT_RDMA_WRITES_ORDERING (owner)
    (119, 9),               // MEMPOOL_SUPPORTED_HANDLE_TYPES (POSIX fd | fabric)
    (120, 1),               // CLUSTER_LAUNCH
    (121, 1),               // DEFERRED_MAPPING_CUDA_ARRAY_SUPPORTED
    (122, 1),               // CAN_USE_64_BIT_STREAM_MEM_OPS
    (123, 1),               // CAN_USE_STREAM_WAIT_VALUE_NOR
    (124, 1),               // DMA_BUF_SUPPORTED
    (125, 1),               // IPC_EVENT_SUPPORTED
    (126, 4),               // MEM_SYNC_DOMAIN_COUNT
    (127, 1),               // TENSOR_MAP_ACCESS_SUPPORTED
    (128, 1),               // HANDLE_TYPE_FABRIC_SUPPORTED
    (129, 1),               // UNIFIED_FUNCTION_POINTERS
    (131, -1),              // NUMA_ID (none)
    (134, 0),               // HOST_NUMA_ID
    (141, 1),               // HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED
    (142, 1),               // HOST_NUMA_MEMORY_POOLS_SUPPORTED
    (144, 1),               // HOST_MEMORY_POOLS_SUPPORTED
    (145, 1),               // HOST_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED
];

/// Who owns an allocation: `mem_free` frees only what `mem_alloc` made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    User,
    ModuleGlobal,
    /// Address space only (`mem_reserve`): never copied to unless mapped (the session checks).
    Reserved,
}

#[derive(Debug)]
struct Allocation {
    bytes: Vec<u8>,
    owner: Owner,
    dev: u32,
}

/// All devices' memory in one address-ordered map (addresses are unified).
#[derive(Debug)]
struct Memory {
    allocs: BTreeMap<u64, Allocation>,
    /// Memory mapped inside reservations: address → (rounded length, reservation base).
    mapped: BTreeMap<u64, (u64, u64)>,
    /// Bytes in use per device (sizes rounded up to [`ALLOC_ALIGN`]).
    used: Vec<u64>,
    /// Next address to try per device.
    cursor: Vec<u64>,
    total: u64,
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

fn window_start(dev: u32) -> u64 {
    ADDRESS_BASE + (u64::from(dev) << WINDOW_SHIFT)
}

impl Memory {
    fn new(devices: u32, total: u64) -> Memory {
        Memory {
            allocs: BTreeMap::new(),
            mapped: BTreeMap::new(),
            used: vec![0; devices as usize],
            cursor: (0..devices).map(window_start).collect(),
            total,
        }
    }

    /// The first address at or after `from` (inside `dev`'s window) where `size` bytes fit.
    fn find_gap(&self, from: u64, size: u64, end: u64) -> Option<u64> {
        if from >= end {
            return None;
        }
        let mut cand = from;
        // An allocation that starts before `from` may still cover it.
        if let Some((&b, a)) = self.allocs.range(..from).next_back() {
            let a_end = align_up(b + a.bytes.len() as u64, ALLOC_ALIGN)?;
            cand = cand.max(a_end);
        }
        if cand >= end {
            return None;
        }
        for (&b, a) in self.allocs.range(cand..end) {
            if b >= cand.checked_add(size)? {
                break;
            }
            cand = align_up(b + (a.bytes.len() as u64).max(1), ALLOC_ALIGN)?;
        }
        (cand.checked_add(size)? <= end).then_some(cand)
    }

    fn alloc(&mut self, dev: u32, size: u64, owner: Owner) -> Res<u64> {
        let d = dev as usize;
        let rounded = align_up(size.max(1), ALLOC_ALIGN).ok_or(Status::OUT_OF_MEMORY)?;
        if rounded > self.total - self.used[d] {
            return Err(Status::OUT_OF_MEMORY);
        }
        let len = usize::try_from(size).map_err(|_| Status::OUT_OF_MEMORY)?;
        let (start, end) = (window_start(dev), window_start(dev) + WINDOW);
        // Bump first; wrap to the window's start only when the bump pointer reaches its end.
        let base = self
            .find_gap(self.cursor[d], rounded, end)
            .or_else(|| self.find_gap(start, rounded, end))
            .ok_or(Status::OUT_OF_MEMORY)?;
        // `vec!` of zeros is calloc: pages are only touched when written.
        self.allocs.insert(base, Allocation { bytes: vec![0; len], owner, dev });
        self.used[d] += rounded;
        self.cursor[d] = base + rounded;
        Ok(base)
    }

    /// Address space of `size` bytes on `dev` (zero pages that are only touched when written;
    /// not counted as used memory). Unlike CUDA's, an emulated reservation is backed by host
    /// memory at once, so one is at most the device's memory: a client cannot make the worker
    /// ask for terabytes (and abort when it does not get them).
    fn reserve(&mut self, dev: u32, size: u64) -> Res<u64> {
        let d = dev as usize;
        let rounded = align_up(size.max(1), RESERVE_ALIGN).ok_or(Status::OUT_OF_MEMORY)?;
        if rounded > self.total {
            return Err(Status::OUT_OF_MEMORY);
        }
        let len = usize::try_from(rounded).map_err(|_| Status::OUT_OF_MEMORY)?;
        let (start, end) = (window_start(dev), window_start(dev) + WINDOW);
        let base = self
            .find_gap(align_up(self.cursor[d], RESERVE_ALIGN).ok_or(Status::OUT_OF_MEMORY)?, rounded, end)
            .or_else(|| self.find_gap(start, rounded, end))
            .ok_or(Status::OUT_OF_MEMORY)?;
        self.allocs.insert(base, Allocation { bytes: vec![0; len], owner: Owner::Reserved, dev });
        self.cursor[d] = base + rounded;
        Ok(base)
    }

    /// `size` bytes at `addr` inside one of `dev`'s reservations, mapped there (counted as
    /// used); `ADDRESS_IN_USE` anywhere else or over memory already mapped there.
    fn alloc_at(&mut self, dev: u32, addr: u64, size: u64) -> Res<()> {
        let d = dev as usize;
        let end = addr.checked_add(size).ok_or(Status::INVALID_VALUE)?;
        let rounded = align_up(size.max(1), ALLOC_ALIGN).ok_or(Status::OUT_OF_MEMORY)?;
        if rounded > self.total - self.used[d] {
            return Err(Status::OUT_OF_MEMORY);
        }
        if let Some((&b, a)) = self.allocs.range(..end).next_back() {
            let a_end = b + (a.bytes.len() as u64).max(1);
            if a.owner == Owner::Reserved && a.dev == dev && b <= addr && end <= a_end {
                if self.mapped.range(..end).next_back().is_some_and(|(&m, &(len, _))| m + len > addr) {
                    return Err(Status::ADDRESS_IN_USE);
                }
                self.mapped.insert(addr, (rounded, b));
                self.used[d] += rounded;
                return Ok(());
            }
        }
        // Only inside a reservation: an address elsewhere is not one this device can promise.
        Err(Status::ADDRESS_IN_USE)
    }

    /// Release a reservation and whatever is still mapped in it.
    fn unreserve(&mut self, base: u64) -> Res<()> {
        match self.allocs.get(&base) {
            Some(a) if a.owner == Owner::Reserved => {}
            _ => return Err(Status::INVALID_VALUE),
        }
        let a = self.allocs.remove(&base).ok_or(Status::INVALID_VALUE)?;
        let inside: Vec<u64> = self.mapped.iter().filter(|(_, &(_, r))| r == base).map(|(&m, _)| m).collect();
        for m in inside {
            if let Some((len, _)) = self.mapped.remove(&m) {
                self.used[a.dev as usize] -= len;
            }
        }
        Ok(())
    }

    fn free(&mut self, ptr: u64, owner: Owner) -> Res<()> {
        if owner == Owner::User {
            if let Some((len, res)) = self.mapped.remove(&ptr) {
                let dev = self.allocs.get(&res).map_or(0, |a| a.dev);
                self.used[dev as usize] -= len;
                return Ok(());
            }
        }
        match self.allocs.get(&ptr) {
            Some(a) if a.owner == owner => {}
            _ => return Err(Status::INVALID_VALUE),
        }
        let a = self.allocs.remove(&ptr).ok_or(Status::INVALID_VALUE)?;
        let d = a.dev as usize;
        let rounded = align_up((a.bytes.len() as u64).max(1), ALLOC_ALIGN).unwrap_or(0);
        self.used[d] -= rounded;
        Ok(())
    }

    /// The allocation holding `[ptr, ptr + len)` and the offset of `ptr` in it.
    fn locate(&self, ptr: u64, len: u64) -> Option<(u64, usize)> {
        let (&base, a) = self.allocs.range(..=ptr).next_back()?;
        let off = ptr - base;
        let end = off.checked_add(len)?;
        (end <= a.bytes.len() as u64).then_some((base, usize::try_from(off).ok()?))
    }

    fn slice(&self, ptr: u64, len: u64) -> Option<&[u8]> {
        let (base, off) = self.locate(ptr, len)?;
        let len = usize::try_from(len).ok()?;
        self.allocs.get(&base)?.bytes.get(off..off + len)
    }

    fn slice_mut(&mut self, ptr: u64, len: u64) -> Option<&mut [u8]> {
        let (base, off) = self.locate(ptr, len)?;
        let len = usize::try_from(len).ok()?;
        self.allocs.get_mut(&base)?.bytes.get_mut(off..off + len)
    }
}

#[derive(Debug)]
struct StreamRec {
    dev: u32,
}

/// A CUDA array: rows of `row_bytes`, `rows × layers` of them, in host memory.
#[derive(Debug)]
struct ArrayRec {
    dev: u32,
    row_bytes: u64,
    /// Rows of one slice (layer).
    rows: u64,
    /// Slices (1 for 1D and 2D arrays); stored one after the other.
    slices: u64,
    data: Vec<u8>,
}

impl ArrayRec {
    /// The row of the whole storage where row `y` of slice `z` is, if both are in range.
    fn row_of(&self, y: u64, z: u64) -> Option<u64> {
        (y < self.rows && z < self.slices).then(|| z * self.rows + y)
    }
}

#[derive(Debug)]
struct EventRec {
    dev: u32,
    flags: u32,
    recorded: Option<Instant>,
}

#[derive(Debug)]
struct ModuleRec {
    dev: u32,
    /// Entry name → parameter layout, when the image states it (PTX does, cubins do not here).
    entries: HashMap<String, Option<Vec<(u32, u32)>>>,
    /// Variable name → (address, size).
    globals: HashMap<String, (u64, u64)>,
    /// Function handles handed out for this module, by name.
    functions: HashMap<String, u64>,
}

/// A built-in kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Saxpy,
    FillU32,
    Assert,
    Empty,
    /// Adds to the module's `remora_counter` at this address.
    Count {
        counter: u64,
    },
}

#[derive(Debug)]
struct FunctionRec {
    dev: u32,
    kernel: Kernel,
    params: &'static [(u32, u32)],
    max_dynamic_shared: i32,
    carveout: i32,
}

/// What an [`EmulatedBackend`] holds, by kind ([`EmulatedBackend::held`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Allocations, module globals and reservations.
    pub allocations: usize,
    /// Memory mapped inside reservations.
    pub mapped: usize,
    /// Device memory counted as used, all devices.
    pub used_bytes: u64,
    /// Streams.
    pub streams: usize,
    /// Events.
    pub events: usize,
    /// Modules.
    pub modules: usize,
    /// Function handles.
    pub functions: usize,
    /// Arrays.
    pub arrays: usize,
    /// Texture and surface objects.
    pub objects: usize,
}

impl Held {
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        *self == Held::default()
    }
}

/// The host-memory test double (see the module docs). Not a GPU.
#[derive(Debug)]
pub struct EmulatedBackend {
    devices: u32,
    mem: Memory,
    streams: HashMap<u64, StreamRec>,
    events: HashMap<u64, EventRec>,
    modules: HashMap<u64, ModuleRec>,
    functions: HashMap<u64, FunctionRec>,
    next_handle: u64,
    /// The sticky fault, once a kernel has faulted.
    poisoned: Option<Status>,
    /// `CUlimit` values (one table for every device).
    limits: Vec<u64>,
    arrays: HashMap<u64, ArrayRec>,
    /// Texture and surface objects: handle → device.
    objects: HashMap<u64, u32>,
    /// Stream attributes set: (stream, `CUstreamAttrID`) → value.
    stream_attrs: HashMap<(RawStream, u32), [u8; 64]>,
    /// (device, peer) pairs with peer access enabled.
    peers: std::collections::HashSet<(u32, u32)>,
}

/// An sm_90 context's default `CUlimit` values: stack size, printf FIFO, malloc heap, device
/// runtime sync depth, pending launches, max L2 fetch granularity, persisting L2 size.
const DEFAULT_LIMITS: [u64; 7] = [1024, 1 << 20, 8 << 20, 2, 2048, 32, 0];

impl EmulatedBackend {
    /// An emulated backend with `devices` devices of [`DEVICE_MEMORY`] bytes each.
    pub fn new(devices: u32) -> EmulatedBackend {
        EmulatedBackend::with_memory(devices, DEVICE_MEMORY)
    }

    /// An emulated backend with `devices` devices (at most [`MAX_DEVICES`]) of `memory` bytes
    /// each (at most 1 TiB).
    pub fn with_memory(devices: u32, memory: u64) -> EmulatedBackend {
        let devices = devices.min(MAX_DEVICES);
        let memory = memory.min(WINDOW);
        tracing::info!(
            devices,
            memory,
            "using the EMULATED backend: a test double in host memory, not a GPU; only the demo kernels run"
        );
        EmulatedBackend {
            devices,
            mem: Memory::new(devices, memory),
            streams: HashMap::new(),
            events: HashMap::new(),
            modules: HashMap::new(),
            functions: HashMap::new(),
            next_handle: HANDLE_BASE,
            poisoned: None,
            limits: DEFAULT_LIMITS.to_vec(),
            arrays: HashMap::new(),
            objects: HashMap::new(),
            stream_attrs: HashMap::new(),
            peers: std::collections::HashSet::new(),
        }
    }

    /// The sticky fault, if a kernel has faulted.
    pub fn poisoned(&self) -> Option<Status> {
        self.poisoned
    }

    /// No array, texture or surface object is left (for tests).
    pub fn arrays_and_objects_released(&self) -> bool {
        self.arrays.is_empty() && self.objects.is_empty()
    }

    /// Everything the backend still holds (for tests and fuzz targets: after a session released
    /// everything, all of it is zero unless a fault poisoned the backend).
    pub fn held(&self) -> Held {
        Held {
            allocations: self.mem.allocs.len(),
            mapped: self.mem.mapped.len(),
            used_bytes: self.mem.used.iter().sum(),
            streams: self.streams.len(),
            events: self.events.len(),
            modules: self.modules.len(),
            functions: self.functions.len(),
            arrays: self.arrays.len(),
            objects: self.objects.len(),
        }
    }

    fn live(&self) -> Res<()> {
        self.poisoned.map_or(Ok(()), Err)
    }

    /// Not poisoned, and `dev` exists.
    fn enter(&self, dev: u32) -> Res<()> {
        self.live()?;
        if dev < self.devices {
            Ok(())
        } else {
            Err(Status::INVALID_DEVICE)
        }
    }

    fn handle(&mut self) -> u64 {
        self.next_handle += 0x10;
        self.next_handle
    }

    /// `stream` is the legacy stream or a stream of `dev`.
    fn check_stream(&self, dev: u32, stream: RawStream) -> Res<()> {
        match stream {
            None => Ok(()),
            Some(s) => match self.streams.get(&s) {
                Some(r) if r.dev == dev => Ok(()),
                _ => Err(Status::INVALID_HANDLE),
            },
        }
    }

    /// Read row `r` of a 2D copy's source into `row`.
    fn read_row(&self, c: &Copy2D, host: &[u8], r: u64, row: &mut [u8]) -> Res<()> {
        let w = c.width;
        let from: &[u8] = match c.src {
            Mem2D::Host => {
                let start = usize::try_from(r * w).map_err(|_| Status::INVALID_VALUE)?;
                host.get(start..start + row.len()).ok_or(Status::INVALID_VALUE)?
            }
            Mem2D::Device { ptr, pitch } => {
                let at = r.checked_mul(pitch).and_then(|o| o.checked_add(ptr)).ok_or(Status::INVALID_VALUE)?;
                self.mem.slice(at, w).ok_or(Status::INVALID_VALUE)?
            }
            Mem2D::Array { raw, x, y, z } => {
                let a = self.arrays.get(&raw).ok_or(Status::INVALID_HANDLE)?;
                a.row_of(y + r, z)
                    .and_then(|row| array_span(a, x, row, w))
                    .and_then(|span| a.data.get(span))
                    .ok_or(Status::INVALID_VALUE)?
            }
        };
        row.copy_from_slice(from);
        Ok(())
    }

    /// Write row `r` of a 2D copy's destination from `row`.
    fn write_row(&mut self, c: &Copy2D, host: &mut [u8], r: u64, row: &[u8]) -> Res<()> {
        let w = c.width;
        let to: &mut [u8] = match c.dst {
            Mem2D::Host => {
                let start = usize::try_from(r * w).map_err(|_| Status::INVALID_VALUE)?;
                host.get_mut(start..start + row.len()).ok_or(Status::INVALID_VALUE)?
            }
            Mem2D::Device { ptr, pitch } => {
                let at = r.checked_mul(pitch).and_then(|o| o.checked_add(ptr)).ok_or(Status::INVALID_VALUE)?;
                self.mem.slice_mut(at, w).ok_or(Status::INVALID_VALUE)?
            }
            Mem2D::Array { raw, x, y, z } => {
                let a = self.arrays.get_mut(&raw).ok_or(Status::INVALID_HANDLE)?;
                let span = a.row_of(y + r, z).and_then(|row| array_span(a, x, row, w)).ok_or(Status::INVALID_VALUE)?;
                a.data.get_mut(span).ok_or(Status::INVALID_VALUE)?
            }
        };
        to.copy_from_slice(row);
        Ok(())
    }

    /// Every location of a 2D copy is in bounds (checked before anything is written).
    fn check_2d(&self, c: &Copy2D, host_src: &[u8], host_dst: &[u8]) -> Res<()> {
        let packed = c.width.checked_mul(c.height).ok_or(Status::INVALID_VALUE)?;
        for (end, host) in [(c.src, host_src.len()), (c.dst, host_dst.len())] {
            let ok = match end {
                Mem2D::Host => host as u64 == packed,
                Mem2D::Device { ptr, pitch } => (c.height - 1)
                    .checked_mul(pitch)
                    .and_then(|o| o.checked_add(c.width))
                    .is_some_and(|span| self.mem.locate(ptr, span).is_some()),
                Mem2D::Array { raw, x, y, z } => {
                    let a = self.arrays.get(&raw).ok_or(Status::INVALID_HANDLE)?;
                    y.checked_add(c.height).is_some_and(|end| end <= a.rows)
                        && z < a.slices
                        && x.checked_add(c.width).is_some_and(|end| end <= a.row_bytes)
                }
            };
            if !ok {
                return Err(Status::INVALID_VALUE);
            }
        }
        Ok(())
    }

    fn fault(&mut self, status: Status, what: &str) -> Status {
        tracing::error!(%status, "emulated device fault: {what}; the backend is now poisoned");
        self.poisoned = Some(status);
        status
    }

    /// Device memory a kernel reads: `ILLEGAL_ADDRESS` or `MISALIGNED_ADDRESS` (both fatal).
    fn kernel_range(&mut self, ptr: u64, len: u64, align: u64, what: &str) -> Res<()> {
        if !ptr.is_multiple_of(align) {
            return Err(self.fault(Status::MISALIGNED_ADDRESS, what));
        }
        if self.mem.locate(ptr, len).is_none() {
            return Err(self.fault(Status::ILLEGAL_ADDRESS, what));
        }
        Ok(())
    }

    fn run_kernel(&mut self, kernel: Kernel, cfg: &LaunchConfig, p: &[u8]) -> Res<()> {
        // Every thread of the grid runs the kernel; the grid-stride loops cover `i < n` once
        // whatever the geometry. Threads that differ only in y/z repeat the same indices: for
        // saxpy that is a benign race on real hardware (each writes `a*x+y` of the old value),
        // so the update is applied once; remora_count's atomics add once per thread.
        let threads = cfg.grid.iter().chain(&cfg.block).map(|&d| u64::from(d)).product::<u64>();
        match kernel {
            Kernel::Empty => Ok(()),
            Kernel::Saxpy => {
                let (a, x, y, n) = (param_f32(p, 0), param_u64(p, 8), param_u64(p, 16), param_u64(p, 24));
                if n == 0 {
                    return Ok(());
                }
                let bytes = n.saturating_mul(4);
                self.kernel_range(x, bytes, 4, "remora_saxpy read x out of bounds")?;
                self.kernel_range(y, bytes, 4, "remora_saxpy touched y out of bounds")?;
                let xs: Vec<f32> = self.mem.slice(x, bytes).map(f32s).unwrap_or_default();
                let ys = self.mem.slice_mut(y, bytes).ok_or(Status::ILLEGAL_ADDRESS)?;
                for (yb, &xv) in ys.chunks_exact_mut(4).zip(&xs) {
                    let yv = f32::from_le_bytes([yb[0], yb[1], yb[2], yb[3]]);
                    // fma.rn.f32, as the PTX does.
                    yb.copy_from_slice(&a.mul_add(xv, yv).to_le_bytes());
                }
                Ok(())
            }
            Kernel::FillU32 => {
                let (ptr, v, n) = (param_u64(p, 0), param_u32(p, 8), param_u64(p, 16));
                if n == 0 {
                    return Ok(());
                }
                let bytes = n.saturating_mul(4);
                self.kernel_range(ptr, bytes, 4, "remora_fill_u32 wrote out of bounds")?;
                let out = self.mem.slice_mut(ptr, bytes).ok_or(Status::ILLEGAL_ADDRESS)?;
                for (i, w) in out.chunks_exact_mut(4).enumerate() {
                    // Wraps modulo 2^32, as `v + (unsigned)i` does.
                    #[allow(clippy::cast_possible_truncation)]
                    let i = i as u32;
                    w.copy_from_slice(&v.wrapping_add(i).to_le_bytes());
                }
                Ok(())
            }
            Kernel::Assert => {
                let flag = param_u64(p, 0);
                self.kernel_range(flag, 4, 4, "remora_assert read its flag out of bounds")?;
                let v = self.mem.slice(flag, 4).map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                if v != 0 {
                    return Err(self.fault(Status::ASSERT, "remora_assert: device-side assert `*flag == 0` failed"));
                }
                Ok(())
            }
            Kernel::Count { counter } => {
                let add = param_u32(p, 0);
                self.kernel_range(counter, 4, 4, "remora_count: remora_counter is gone")?;
                // Every thread adds once: the sum wraps modulo 2^32 like the atomics do.
                #[allow(clippy::cast_possible_truncation)]
                let total = add.wrapping_mul(threads as u32);
                let c = self.mem.slice_mut(counter, 4).ok_or(Status::ILLEGAL_ADDRESS)?;
                let old = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                c.copy_from_slice(&old.wrapping_add(total).to_le_bytes());
                Ok(())
            }
        }
    }
}

/// The bytes `[x, x + len)` of row `row` of an array.
/// Bytes of storage row `row` (slices one after the other), from byte column `x`.
fn array_span(a: &ArrayRec, x: u64, row: u64, len: u64) -> Option<std::ops::Range<usize>> {
    if row >= a.rows.checked_mul(a.slices)? || x.checked_add(len)? > a.row_bytes {
        return None;
    }
    let start = usize::try_from(row.checked_mul(a.row_bytes)?.checked_add(x)?).ok()?;
    Some(start..start.checked_add(usize::try_from(len).ok()?)?)
}

/// `CU_LAUNCH_ATTRIBUTE_*` values a stream accepts.
fn stream_attribute_known(attr: u32) -> bool {
    matches!(
        attr,
        wire_ops::STREAM_ATTR_ACCESS_POLICY_WINDOW
            | wire_ops::STREAM_ATTR_SYNCHRONIZATION_POLICY
            | wire_ops::STREAM_ATTR_PRIORITY
    )
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn param_bytes<const N: usize>(p: &[u8], off: usize) -> [u8; N] {
    p.get(off..off + N).and_then(|s| s.try_into().ok()).unwrap_or([0; N])
}

fn param_u32(p: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(param_bytes(p, off))
}

fn param_u64(p: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(param_bytes(p, off))
}

fn param_f32(p: &[u8], off: usize) -> f32 {
    f32::from_le_bytes(param_bytes(p, off))
}

fn kernel_named(name: &str) -> Option<Kernel> {
    Some(match name {
        demo::SAXPY => Kernel::Saxpy,
        demo::FILL_U32 => Kernel::FillU32,
        demo::ASSERT => Kernel::Assert,
        demo::EMPTY => Kernel::Empty,
        demo::COUNT => Kernel::Count { counter: 0 },
        _ => return None,
    })
}

/// Validates launch geometry the way `cuLaunchKernel` does (`INVALID_VALUE`, not fatal).
fn check_geometry(cfg: &LaunchConfig) -> Res<()> {
    let [gx, gy, gz] = cfg.grid;
    let [bx, by, bz] = cfg.block;
    let zero = cfg.grid.contains(&0) || cfg.block.contains(&0);
    let block_ok = bx <= 1024 && by <= 1024 && bz <= 64 && u64::from(bx) * u64::from(by) * u64::from(bz) <= 1024;
    let grid_ok = gx <= i32::MAX as u32 && gy <= 65535 && gz <= 65535;
    if zero || !block_ok || !grid_ok {
        return Err(Status::INVALID_VALUE);
    }
    Ok(())
}

impl Backend for EmulatedBackend {
    fn name(&self) -> &'static str {
        "emulated"
    }

    fn device_count(&self) -> u32 {
        self.devices
    }

    fn driver_version(&self) -> i32 {
        DRIVER_VERSION
    }

    fn device_info(&mut self, dev: u32) -> Res<DeviceInfo> {
        self.enter(dev)?;
        let mut info = DeviceInfo::new_zeroed();
        let name = format!("remora emulated device {dev}");
        info.name[..name.len()].copy_from_slice(name.as_bytes());
        info.uuid[..15].copy_from_slice(b"remora-emulated");
        #[allow(clippy::cast_possible_truncation)]
        let last = dev as u8; // dev < MAX_DEVICES = 64
        info.uuid[15] = last;
        info.total_mem = U64::new(self.mem.total);
        for n in 1..DEVICE_ATTRIBUTE_SLOTS {
            let n = u32::try_from(n).unwrap_or(0);
            info.attributes[n as usize] = I32::new(self.device_attribute(dev, n)?);
        }
        Ok(info)
    }

    fn device_attribute(&mut self, dev: u32, attr: u32) -> Res<i32> {
        self.enter(dev)?;
        if attr == 0 || attr as usize >= DEVICE_ATTRIBUTE_SLOTS {
            return Err(Status::INVALID_VALUE);
        }
        if attr == 85 {
            // MULTI_GPU_BOARD_GROUP_ID: a distinct group per device.
            return Ok(i32::try_from(dev).unwrap_or(0));
        }
        Ok(SM90_ATTRIBUTES.iter().find(|&&(n, _)| n == attr).map_or(0, |&(_, v)| v))
    }

    fn mem_get_info(&mut self, dev: u32) -> Res<(u64, u64)> {
        self.enter(dev)?;
        Ok((self.mem.total - self.mem.used[dev as usize], self.mem.total))
    }

    fn device_synchronize(&mut self, dev: u32) -> Res<()> {
        self.enter(dev)
    }

    fn can_access_peer(&mut self, dev: u32, peer: u32) -> Res<bool> {
        self.enter(dev)?;
        self.enter(peer)?;
        Ok(dev != peer)
    }

    fn set_peer_access(&mut self, dev: u32, peer: u32, enable: bool) -> Res<()> {
        self.enter(dev)?;
        self.enter(peer)?;
        if dev == peer {
            return Err(Status::INVALID_DEVICE);
        }
        // CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED (704) / _NOT_ENABLED (705).
        let changed = if enable { self.peers.insert((dev, peer)) } else { self.peers.remove(&(dev, peer)) };
        if changed {
            Ok(())
        } else {
            Err(Status(if enable { 704 } else { 705 }))
        }
    }

    fn ctx_reset_persisting_l2(&mut self, dev: u32) -> Res<()> {
        self.enter(dev)
    }

    fn pci_bus_id(&mut self, _dev: u32) -> Option<String> {
        None
    }

    fn mem_alloc(&mut self, dev: u32, size: u64) -> Res<u64> {
        self.enter(dev)?;
        if size == 0 {
            return Err(Status::INVALID_VALUE);
        }
        self.mem.alloc(dev, size, Owner::User)
    }

    fn mem_reserve(&mut self, dev: u32, size: u64) -> Res<u64> {
        self.enter(dev)?;
        if size == 0 {
            return Err(Status::INVALID_VALUE);
        }
        self.mem.reserve(dev, size)
    }

    fn mem_unreserve(&mut self, dev: u32, base: u64) -> Res<()> {
        self.enter(dev)?;
        self.mem.unreserve(base)
    }

    fn mem_alloc_at(&mut self, dev: u32, addr: u64, size: u64) -> Res<u64> {
        self.enter(dev)?;
        if size == 0 {
            return Err(Status::INVALID_VALUE);
        }
        if addr == 0 {
            return self.mem.alloc(dev, size, Owner::User);
        }
        self.mem.alloc_at(dev, addr, size)?;
        Ok(addr)
    }

    fn mem_free(&mut self, dev: u32, ptr: u64) -> Res<()> {
        self.enter(dev)?;
        self.mem.free(ptr, Owner::User)
    }

    fn host_register(&mut self, _ptr: u64, len: u64) -> Res<()> {
        // Emulated device memory is host memory: nothing to pin.
        if len == 0 {
            return Err(Status::INVALID_VALUE);
        }
        Ok(())
    }

    fn host_unregister(&mut self, _ptr: u64) -> Res<()> {
        Ok(())
    }

    unsafe fn memcpy_htod_host(
        &mut self,
        dev: u32,
        dst: u64,
        src: *const u8,
        len: usize,
        stream: RawStream,
    ) -> Res<()> {
        // SAFETY: the caller guarantees `[src, src + len)` is mapped host memory of this process.
        let from = unsafe { std::slice::from_raw_parts(src, len) };
        self.memcpy_htod(dev, dst, from, stream)
    }

    unsafe fn memcpy_dtoh_host(&mut self, dev: u32, dst: *mut u8, src: u64, len: usize, stream: RawStream) -> Res<()> {
        // SAFETY: as above, for the destination (no Rust reference aliases the arena).
        let to = unsafe { std::slice::from_raw_parts_mut(dst, len) };
        self.memcpy_dtoh(dev, to, src, stream)
    }

    fn memcpy_htod(&mut self, dev: u32, dst: u64, src: &[u8], stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        if src.is_empty() {
            return Ok(());
        }
        let out = self.mem.slice_mut(dst, src.len() as u64).ok_or(Status::INVALID_VALUE)?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn memcpy_dtoh(&mut self, dev: u32, dst: &mut [u8], src: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        if dst.is_empty() {
            return Ok(());
        }
        let from = self.mem.slice(src, dst.len() as u64).ok_or(Status::INVALID_VALUE)?;
        dst.copy_from_slice(from);
        Ok(())
    }

    fn memcpy_dtod(&mut self, dev: u32, dst: u64, src: u64, len: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        if len == 0 {
            return Ok(());
        }
        // Check both ends before touching anything; copy through a buffer (memmove semantics).
        if self.mem.locate(dst, len).is_none() {
            return Err(Status::INVALID_VALUE);
        }
        let tmp = self.mem.slice(src, len).ok_or(Status::INVALID_VALUE)?.to_vec();
        self.mem.slice_mut(dst, len).ok_or(Status::INVALID_VALUE)?.copy_from_slice(&tmp);
        Ok(())
    }

    fn memset(&mut self, dev: u32, dst: u64, value: u32, element_size: u32, count: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        if !matches!(element_size, 1 | 2 | 4) || !dst.is_multiple_of(u64::from(element_size)) {
            return Err(Status::INVALID_VALUE);
        }
        if count == 0 {
            return Ok(());
        }
        let len = count.checked_mul(u64::from(element_size)).ok_or(Status::INVALID_VALUE)?;
        let out = self.mem.slice_mut(dst, len).ok_or(Status::INVALID_VALUE)?;
        let bytes = value.to_le_bytes();
        // cuMemsetD8/D16 use the low 8/16 bits of the value.
        for chunk in out.chunks_exact_mut(element_size as usize) {
            chunk.copy_from_slice(&bytes[..element_size as usize]);
        }
        Ok(())
    }

    fn array_create(&mut self, dev: u32, d: &ArrayDesc) -> Res<u64> {
        self.enter(dev)?;
        let elem = wire_ops::array_element_bytes(d.format, d.channels).ok_or(Status::INVALID_VALUE)?;
        if d.width == 0 || (d.depth > 0 && d.height == 0) {
            return Err(Status::INVALID_VALUE);
        }
        let row_bytes = d.width.checked_mul(u64::from(elem)).ok_or(Status::INVALID_VALUE)?;
        let (rows, slices) = (d.height.max(1), d.depth.max(1));
        let bytes = row_bytes.checked_mul(rows).and_then(|b| b.checked_mul(slices)).ok_or(Status::INVALID_VALUE)?;
        // Arrays take device memory, as in CUDA (and here host memory: counting them bounds it).
        let rounded = align_up(bytes, ALLOC_ALIGN).ok_or(Status::OUT_OF_MEMORY)?;
        let (free, _) = self.mem_get_info(dev)?;
        if rounded > free {
            return Err(Status::OUT_OF_MEMORY);
        }
        let data = vec![0u8; usize::try_from(bytes).map_err(|_| Status::OUT_OF_MEMORY)?];
        let h = self.handle();
        self.arrays.insert(h, ArrayRec { dev, row_bytes, rows, slices, data });
        self.mem.used[dev as usize] += rounded;
        Ok(h)
    }

    fn array_destroy(&mut self, dev: u32, array: u64) -> Res<()> {
        self.enter(dev)?;
        match self.arrays.get(&array) {
            Some(a) if a.dev == dev => {
                let bytes = align_up(a.data.len() as u64, ALLOC_ALIGN).unwrap_or(0);
                self.arrays.remove(&array);
                self.mem.used[dev as usize] -= bytes;
                Ok(())
            }
            _ => Err(Status::INVALID_HANDLE),
        }
    }

    fn memcpy_2d(&mut self, dev: u32, c: &Copy2D, host_src: &[u8], host_dst: &mut [u8], stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        if c.width == 0 || c.height == 0 {
            return Ok(());
        }
        self.check_2d(c, host_src, host_dst)?;
        let mut row = vec![0u8; usize::try_from(c.width).map_err(|_| Status::INVALID_VALUE)?];
        for r in 0..c.height {
            self.read_row(c, host_src, r, &mut row)?;
            self.write_row(c, host_dst, r, &row)?;
        }
        Ok(())
    }

    fn tex_object_create(&mut self, dev: u32, d: &TexObjectCreate) -> Res<u64> {
        self.enter(dev)?;
        match d.res_type.get() {
            wire_ops::RES_ARRAY => {
                self.arrays.get(&d.array.get()).filter(|a| a.dev == dev).ok_or(Status::INVALID_HANDLE)?;
            }
            wire_ops::RES_LINEAR | wire_ops::RES_PITCH2D => {
                wire_ops::array_element_bytes(d.format.get(), d.channels.get()).ok_or(Status::INVALID_VALUE)?;
                self.mem.locate(d.ptr.get(), 1).ok_or(Status::INVALID_VALUE)?;
            }
            _ => return Err(Status::INVALID_VALUE),
        }
        let h = self.handle();
        self.objects.insert(h, dev);
        Ok(h)
    }

    fn tex_object_destroy(&mut self, dev: u32, tex: u64) -> Res<()> {
        self.enter(dev)?;
        self.objects.remove(&tex).map(drop).ok_or(Status::INVALID_HANDLE)
    }

    fn surf_object_create(&mut self, dev: u32, array: u64) -> Res<u64> {
        self.enter(dev)?;
        self.arrays.get(&array).filter(|a| a.dev == dev).ok_or(Status::INVALID_HANDLE)?;
        let h = self.handle();
        self.objects.insert(h, dev);
        Ok(h)
    }

    fn surf_object_destroy(&mut self, dev: u32, surf: u64) -> Res<()> {
        self.tex_object_destroy(dev, surf)
    }

    fn stream_set_attribute(&mut self, dev: u32, stream: RawStream, attr: u32, value: &[u8; 64]) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        if !stream_attribute_known(attr) {
            return Err(Status::INVALID_VALUE);
        }
        self.stream_attrs.insert((stream, attr), *value);
        Ok(())
    }

    fn stream_get_attribute(&mut self, dev: u32, stream: RawStream, attr: u32) -> Res<[u8; 64]> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        if !stream_attribute_known(attr) {
            return Err(Status::INVALID_VALUE);
        }
        Ok(self.stream_attrs.get(&(stream, attr)).copied().unwrap_or([0; 64]))
    }

    fn stream_create(&mut self, dev: u32, _flags: u32, _priority: i32) -> Res<u64> {
        self.enter(dev)?;
        let h = self.handle();
        self.streams.insert(h, StreamRec { dev });
        Ok(h)
    }

    fn stream_destroy(&mut self, dev: u32, stream: u64) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, Some(stream))?;
        self.streams.remove(&stream);
        self.stream_attrs.retain(|(s, _), _| *s != Some(stream));
        Ok(())
    }

    fn stream_synchronize(&mut self, dev: u32, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)
    }

    fn stream_query(&mut self, dev: u32, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        // Work runs inside each call, so a stream is always idle.
        self.check_stream(dev, stream)
    }

    fn stream_wait_event(&mut self, dev: u32, stream: RawStream, event: u64, _flags: u32) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        // The event may belong to another device, as in CUDA.
        if self.events.contains_key(&event) {
            Ok(())
        } else {
            Err(Status::INVALID_HANDLE)
        }
    }

    fn event_create(&mut self, dev: u32, flags: u32) -> Res<u64> {
        self.enter(dev)?;
        if flags & !0x7 != 0 {
            return Err(Status::INVALID_VALUE);
        }
        let h = self.handle();
        self.events.insert(h, EventRec { dev, flags, recorded: None });
        Ok(h)
    }

    fn event_record(&mut self, dev: u32, event: u64, stream: RawStream) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        match self.events.get_mut(&event) {
            Some(e) if e.dev == dev => {
                e.recorded = Some(Instant::now());
                Ok(())
            }
            _ => Err(Status::INVALID_HANDLE),
        }
    }

    fn event_synchronize(&mut self, dev: u32, event: u64) -> Res<()> {
        self.event_query(dev, event)
    }

    fn event_query(&mut self, dev: u32, event: u64) -> Res<()> {
        self.enter(dev)?;
        // Recorded work has already run; an event never recorded is complete too (as in CUDA).
        if self.events.contains_key(&event) {
            Ok(())
        } else {
            Err(Status::INVALID_HANDLE)
        }
    }

    fn event_elapsed(&mut self, dev: u32, start: u64, end: u64) -> Res<f32> {
        self.enter(dev)?;
        let (s, e) = match (self.events.get(&start), self.events.get(&end)) {
            (Some(s), Some(e)) => (s, e),
            _ => return Err(Status::INVALID_HANDLE),
        };
        if (s.flags | e.flags) & EVENT_DISABLE_TIMING != 0 {
            return Err(Status::INVALID_HANDLE);
        }
        match (s.recorded, e.recorded) {
            (Some(s), Some(e)) => {
                let ms = if e >= s {
                    e.duration_since(s).as_secs_f64() * 1e3
                } else {
                    -(s.duration_since(e).as_secs_f64() * 1e3)
                };
                #[allow(clippy::cast_possible_truncation)]
                Ok(ms as f32)
            }
            _ => Err(Status::INVALID_HANDLE),
        }
    }

    fn event_destroy(&mut self, dev: u32, event: u64) -> Res<()> {
        self.enter(dev)?;
        self.events.remove(&event).map(|_| ()).ok_or(Status::INVALID_HANDLE)
    }

    fn module_load(&mut self, dev: u32, image: &[u8]) -> Res<u64> {
        self.enter(dev)?;
        let parsed = scan_image(image);
        if parsed.entries.is_empty() {
            return Err(Status::INVALID_IMAGE);
        }
        let mut vars = parsed.globals;
        if parsed.entries.iter().any(|(n, _)| n == demo::COUNT) && !vars.iter().any(|(n, _)| n == demo::COUNTER) {
            // A cubin's variables are not parsed here; remora_count still needs its counter.
            vars.push((demo::COUNTER.to_owned(), 4));
        }
        let mut globals = HashMap::new();
        for (name, size) in vars {
            if globals.contains_key(&name) {
                continue;
            }
            match self.mem.alloc(dev, size, Owner::ModuleGlobal) {
                Ok(addr) => {
                    globals.insert(name, (addr, size));
                }
                Err(e) => {
                    for (addr, _) in globals.into_values() {
                        let _ = self.mem.free(addr, Owner::ModuleGlobal);
                    }
                    return Err(e);
                }
            }
        }
        let h = self.handle();
        let rec = ModuleRec { dev, entries: parsed.entries.into_iter().collect(), globals, functions: HashMap::new() };
        self.modules.insert(h, rec);
        Ok(h)
    }

    fn module_unload(&mut self, dev: u32, module: u64) -> Res<()> {
        self.enter(dev)?;
        let m = self.modules.remove(&module).ok_or(Status::INVALID_HANDLE)?;
        for f in m.functions.values() {
            self.functions.remove(f);
        }
        for (addr, _) in m.globals.values() {
            let _ = self.mem.free(*addr, Owner::ModuleGlobal);
        }
        Ok(())
    }

    fn module_get_function(&mut self, dev: u32, module: u64, name: &str) -> Res<u64> {
        self.enter(dev)?;
        let m = self.modules.get(&module).ok_or(Status::INVALID_HANDLE)?;
        if let Some(&f) = m.functions.get(name) {
            return Ok(f);
        }
        let stated = m.entries.get(name).ok_or(Status::NOT_FOUND)?;
        let (Some(kernel), Some(params)) = (kernel_named(name), demo::param_layout(name)) else {
            tracing::warn!(name, "the emulated backend runs only the demo kernels; reporting NOT_FOUND");
            return Err(Status::NOT_FOUND);
        };
        if stated.as_deref().is_some_and(|s| s != params) {
            tracing::warn!(name, ?stated, "the image's parameters differ from the emulated demo kernel's; NOT_FOUND");
            return Err(Status::NOT_FOUND);
        }
        let kernel = match kernel {
            Kernel::Count { .. } => {
                let &(counter, _) = m.globals.get(demo::COUNTER).ok_or(Status::NOT_FOUND)?;
                Kernel::Count { counter }
            }
            k => k,
        };
        let m_dev = m.dev;
        let h = self.handle();
        let rec =
            FunctionRec { dev: m_dev, kernel, params, max_dynamic_shared: DEFAULT_MAX_DYNAMIC_SHARED, carveout: -1 };
        self.functions.insert(h, rec);
        if let Some(m) = self.modules.get_mut(&module) {
            m.functions.insert(name.to_owned(), h);
        }
        Ok(h)
    }

    fn module_get_global(&mut self, dev: u32, module: u64, name: &str) -> Res<(u64, u64)> {
        self.enter(dev)?;
        let m = self.modules.get(&module).ok_or(Status::INVALID_HANDLE)?;
        m.globals.get(name).copied().ok_or(Status::NOT_FOUND)
    }

    fn func_param_info(&mut self, dev: u32, function: u64) -> Res<Vec<(u32, u32)>> {
        self.enter(dev)?;
        let f = self.functions.get(&function).ok_or(Status::INVALID_HANDLE)?;
        Ok(f.params.to_vec())
    }

    fn func_get_attribute(&mut self, dev: u32, function: u64, attr: i32) -> Res<i32> {
        self.enter(dev)?;
        let f = self.functions.get(&function).ok_or(Status::INVALID_HANDLE)?;
        Ok(match attr {
            0 => 1024,                 // MAX_THREADS_PER_BLOCK
            1..=3 => 0,                // SHARED/CONST/LOCAL_SIZE_BYTES
            4 => 16,                   // NUM_REGS
            5 => 80,                   // PTX_VERSION (compute_80)
            6 => 90,                   // BINARY_VERSION (sm_90)
            7 => 0,                    // CACHE_MODE_CA
            8 => f.max_dynamic_shared, // MAX_DYNAMIC_SHARED_SIZE_BYTES
            9 => f.carveout,           // PREFERRED_SHARED_MEMORY_CARVEOUT
            10..=15 => 0,              // cluster attributes
            _ => return Err(Status::INVALID_VALUE),
        })
    }

    fn func_set_attribute(&mut self, dev: u32, function: u64, attr: i32, value: i32) -> Res<()> {
        self.enter(dev)?;
        let f = self.functions.get_mut(&function).ok_or(Status::INVALID_HANDLE)?;
        match (attr, value) {
            (8, 0..=OPTIN_MAX_SHARED) => f.max_dynamic_shared = value,
            (9, -1..=100) => f.carveout = value,
            (14, 0..=1) | (15, 0..=2) => {}
            _ => return Err(Status::INVALID_VALUE),
        }
        Ok(())
    }

    fn ctx_get_limit(&mut self, dev: u32, limit: u32) -> Res<u64> {
        self.enter(dev)?;
        self.limits.get(limit as usize).copied().ok_or(Status::INVALID_VALUE)
    }

    fn ctx_set_limit(&mut self, dev: u32, limit: u32, value: u64) -> Res<()> {
        self.enter(dev)?;
        let slot = self.limits.get_mut(limit as usize).ok_or(Status::INVALID_VALUE)?;
        *slot = value;
        Ok(())
    }

    fn func_set_cache_config(&mut self, dev: u32, function: u64, config: i32) -> Res<()> {
        self.enter(dev)?;
        self.functions.get(&function).ok_or(Status::INVALID_HANDLE)?;
        if (0..=3).contains(&config) {
            Ok(())
        } else {
            Err(Status::INVALID_VALUE)
        }
    }

    fn occupancy_max_active_blocks(
        &mut self,
        dev: u32,
        function: u64,
        block_size: u32,
        dynamic_smem: u64,
        _flags: u32,
    ) -> Res<i32> {
        self.enter(dev)?;
        self.functions.get(&function).ok_or(Status::INVALID_HANDLE)?;
        if block_size == 0 || block_size > 1024 {
            return Ok(0);
        }
        // An sm_90-like multiprocessor: 2048 threads, 32 blocks, 228 KiB of shared memory.
        let by_threads = 2048 / block_size;
        let by_smem = (228 * 1024u64).checked_div(dynamic_smem).map_or(32, |n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(i32::try_from(by_threads.min(by_smem).min(32)).unwrap_or(0))
    }

    fn launch(&mut self, dev: u32, function: u64, cfg: &LaunchConfig, stream: RawStream, params: &[u8]) -> Res<()> {
        self.enter(dev)?;
        self.check_stream(dev, stream)?;
        let f = match self.functions.get(&function) {
            Some(f) if f.dev == dev => f,
            _ => return Err(Status::INVALID_HANDLE),
        };
        check_geometry(cfg)?;
        if i64::from(cfg.shared_mem) > i64::from(f.max_dynamic_shared) {
            return Err(Status::INVALID_VALUE);
        }
        let need = f.params.iter().map(|&(o, s)| o + s).max().unwrap_or(0);
        if (params.len() as u64) < u64::from(need) {
            return Err(Status::INVALID_VALUE);
        }
        if cfg.cooperative {
            let threads = cfg.block.iter().map(|&d| u64::from(d)).product::<u64>();
            let per_sm = (2048 / threads).min(32);
            let blocks = cfg.grid.iter().map(|&d| u64::from(d)).product::<u64>();
            if blocks > per_sm * u64::from(MULTIPROCESSORS) {
                return Err(STATUS_COOPERATIVE_LAUNCH_TOO_LARGE);
            }
        }
        let kernel = f.kernel;
        self.run_kernel(kernel, cfg, params)
    }
}

/// An entry point and its parameter layout, where the image states it.
type Entry = (String, Option<Vec<(u32, u32)>>);

/// What [`scan_image`] found.
#[derive(Debug, Default, PartialEq, Eq)]
struct ScannedImage {
    /// Entry points, with their parameter layout where the image states it.
    entries: Vec<Entry>,
    /// Module-scope `.global`/`.const` variables: (name, size in bytes).
    globals: Vec<(String, u64)>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.')
}

/// Finds entry points and variables in a module image: PTX text is parsed (names, parameter
/// layouts, variables); in binary images PTX text and cubin `.text.<name>` section names are
/// searched for. Best effort by design: this is the emulator's view, not a PTX compiler.
fn scan_image(image: &[u8]) -> ScannedImage {
    let text = String::from_utf8_lossy(image);
    let mut out = scan_ptx(&text);
    if image.windows(4).any(|w| w == b"\x7fELF") {
        let mut rest = &text[..];
        while let Some(i) = rest.find(".text.") {
            rest = &rest[i + 6..];
            let name: String = rest.chars().take_while(|&c| is_ident(c) && c != '.').collect();
            if !name.is_empty() && !out.entries.iter().any(|(n, _)| *n == name) {
                out.entries.push((name, None));
            }
        }
    }
    out
}

/// PTX text: splits module-scope statements (function bodies and initialisers skipped) and reads
/// `.entry` headers and `.global`/`.const` declarations.
fn scan_ptx(text: &str) -> ScannedImage {
    let mut out = ScannedImage::default();
    let mut stmt = String::new();
    let mut depth = 0usize;
    let mut initialiser = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        for c in line.chars().chain(std::iter::once('\n')) {
            match c {
                '{' => {
                    if depth == 0 && !stmt.contains('=') {
                        // A function body follows its header.
                        scan_statement(&stmt, &mut out);
                        stmt.clear();
                        initialiser = false;
                    } else if depth == 0 {
                        initialiser = true;
                    }
                    depth += 1;
                }
                '}' => depth = depth.saturating_sub(1),
                ';' if depth == 0 => {
                    scan_statement(&stmt, &mut out);
                    stmt.clear();
                    initialiser = false;
                }
                _ if depth == 0 && !initialiser => stmt.push(c),
                _ => {}
            }
        }
    }
    out
}

fn scalar_size(ty: &str) -> Option<u32> {
    Some(match ty {
        ".b8" | ".u8" | ".s8" | ".pred" => 1,
        ".b16" | ".u16" | ".s16" | ".f16" | ".bf16" => 2,
        ".b32" | ".u32" | ".s32" | ".f32" | ".f16x2" | ".bf16x2" => 4,
        ".b64" | ".u64" | ".s64" | ".f64" => 8,
        ".b128" => 16,
        _ => return None,
    })
}

/// One declaration `[.align N] .type name[dims]`: (name, size, alignment).
fn declaration(tokens: &[&str]) -> Option<(String, u64, u64)> {
    let mut align = None;
    let mut elem = None;
    let mut ptr = false;
    let mut i = 0;
    while i < tokens.len().saturating_sub(1) {
        match tokens[i] {
            ".align" => {
                let n = tokens.get(i + 1)?.parse::<u64>().ok()?;
                // After `.ptr`, `.align` is the pointee's alignment, not the parameter's.
                if !ptr {
                    align = Some(n);
                }
                i += 1;
            }
            ".ptr" => ptr = true,
            t => {
                if let Some(s) = scalar_size(t) {
                    elem = Some(u64::from(s));
                }
            }
        }
        i += 1;
    }
    let last = tokens.last()?;
    let (name, dims) = match last.find('[') {
        Some(b) => (&last[..b], &last[b..]),
        None => (*last, ""),
    };
    let elem = elem?;
    let mut count = 1u64;
    for d in dims.split('[').filter(|d| !d.is_empty()) {
        count = count.checked_mul(d.trim_end_matches(']').trim().parse::<u64>().ok()?)?;
    }
    Some((name.to_owned(), elem.checked_mul(count)?, align.unwrap_or(elem).max(1)))
}

fn scan_statement(stmt: &str, out: &mut ScannedImage) {
    let stmt = stmt.trim();
    if let Some(i) = stmt.find(".entry") {
        let head = &stmt[i + ".entry".len()..];
        if !head.starts_with(char::is_whitespace) {
            return;
        }
        let head = head.trim_start();
        let name: String = head.chars().take_while(|&c| is_ident(c)).collect();
        if name.is_empty() {
            return;
        }
        let params = head[name.len()..].trim_start().strip_prefix('(').and_then(|rest| {
            let list = &rest[..rest.find(')')?];
            let mut layout = Vec::new();
            let mut off = 0u64;
            for decl in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let tokens: Vec<&str> = decl.split_whitespace().filter(|&t| t != ".param").collect();
                let (_, size, align) = declaration(&tokens)?;
                off = align_up(off, align)?;
                layout.push((u32::try_from(off).ok()?, u32::try_from(size).ok()?));
                off += size;
            }
            Some(layout)
        });
        out.entries.push((name, params));
        return;
    }
    let tokens: Vec<&str> = stmt.split('=').next().unwrap_or("").split_whitespace().collect();
    let first = tokens.iter().position(|t| !matches!(*t, ".visible" | ".weak" | ".common"));
    let Some(first) = first else { return };
    if !matches!(tokens[first], ".global" | ".const") || tokens[..first].contains(&".extern") {
        return;
    }
    if let Some((name, size, _)) = declaration(&tokens[first + 1..]) {
        if size > 0 {
            out.globals.push((name, size));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backend::conformance;

    fn backend() -> EmulatedBackend {
        EmulatedBackend::new(DEFAULT_DEVICES)
    }

    #[test]
    fn conformance_suite() {
        conformance::run_all(&mut backend());
    }

    #[test]
    fn conformance_assert_poisons() {
        conformance::assert_poisons(&mut backend());
    }

    #[test]
    fn demo_ptx_layouts_match_the_emulated_kernels() {
        let img = scan_image(demo::DEMO_PTX.as_bytes());
        let names: Vec<&str> = img.entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, demo::KERNELS);
        for (name, layout) in &img.entries {
            assert_eq!(layout.as_deref(), demo::param_layout(name), "{name}");
        }
        assert!(img.globals.contains(&(demo::COUNTER.to_owned(), 4)), "{:?}", img.globals);
    }

    #[test]
    fn ptx_scanner_handles_aligned_arrays_pointers_and_initialisers() {
        let ptx = "
            .global .align 8 .b8 table[3][4] = {1, 2, 3};
            .const .align 4 .f32 coeffs[16];
            .extern .global .u32 elsewhere;
            .visible .entry k(
                .param .u8 k_param_0,
                .param .align 16 .b8 k_param_1[24],
                .param .u64 .ptr .global .align 1 k_param_2,
                .param .u32 k_param_3
            )
            .maxntid 128, 1, 1
            { ld.global.u32 %r1, [x]; }
            .entry empty() { ret; }
        ";
        let img = scan_ptx(ptx);
        assert_eq!(
            img.entries,
            vec![("k".to_owned(), Some(vec![(0, 1), (16, 24), (40, 8), (48, 4)])), ("empty".to_owned(), Some(vec![]))]
        );
        assert_eq!(img.globals, vec![("table".to_owned(), 12), ("coeffs".to_owned(), 64)]);
    }

    #[test]
    fn cubin_section_names_count_as_entries() {
        let mut img = b"\x7fELF\x02\x01\x01\0garbage\0.text.remora_empty\0.nv.info.remora_empty\0".to_vec();
        img.extend_from_slice(&[0xff; 16]);
        let s = scan_image(&img);
        assert_eq!(s.entries, vec![("remora_empty".to_owned(), None)]);
        let mut b = backend();
        let m = b.module_load(0, &img).unwrap();
        let f = b.module_get_function(0, m, demo::EMPTY).unwrap();
        b.launch(0, f, &cfg1(1, 1), None, &[]).unwrap();
    }

    fn cfg1(grid: u32, block: u32) -> LaunchConfig {
        LaunchConfig { grid: [grid, 1, 1], block: [block, 1, 1], shared_mem: 0, cooperative: false }
    }

    #[test]
    fn allocations_are_aligned_per_device_and_not_reused() {
        let mut b = backend();
        let a = b.mem_alloc(0, 10).unwrap();
        let c = b.mem_alloc(0, 1000).unwrap();
        let d1 = b.mem_alloc(1, 8).unwrap();
        assert_eq!(a, ADDRESS_BASE);
        assert_eq!(a % ALLOC_ALIGN, 0);
        assert_eq!(c % ALLOC_ALIGN, 0);
        assert!(c >= a + 256);
        assert_eq!(d1, ADDRESS_BASE + (1 << 40));
        b.mem_free(0, a).unwrap();
        let e = b.mem_alloc(0, 10).unwrap();
        assert_ne!(e, a, "a freed address is not handed out again at once");
        assert_eq!(b.mem_free(0, a), Err(Status::INVALID_VALUE), "double free");
        assert_eq!(b.mem_free(0, c + 4), Err(Status::INVALID_VALUE), "not a base");
        assert_eq!(b.mem_alloc(0, 0), Err(Status::INVALID_VALUE));
    }

    #[test]
    fn mem_info_tracks_allocations_and_oom() {
        let mut b = EmulatedBackend::with_memory(1, 1 << 20);
        assert_eq!(b.mem_get_info(0).unwrap(), (1 << 20, 1 << 20));
        let a = b.mem_alloc(0, 1000).unwrap();
        assert_eq!(b.mem_get_info(0).unwrap(), ((1 << 20) - 1024, 1 << 20));
        assert_eq!(b.mem_alloc(0, 1 << 20), Err(Status::OUT_OF_MEMORY));
        let big = b.mem_alloc(0, (1 << 20) - 1024).unwrap();
        assert_eq!(b.mem_get_info(0).unwrap().0, 0);
        assert_eq!(b.mem_alloc(0, 1), Err(Status::OUT_OF_MEMORY));
        b.mem_free(0, a).unwrap();
        b.mem_free(0, big).unwrap();
        assert_eq!(b.mem_get_info(0).unwrap().0, 1 << 20);
        assert!(b.poisoned().is_none(), "OOM is not fatal");
        // The default reports 16 GiB without allocating it.
        assert_eq!(backend().mem_get_info(1).unwrap(), (DEVICE_MEMORY, DEVICE_MEMORY));
        assert_eq!(backend().mem_alloc(0, DEVICE_MEMORY + 1), Err(Status::OUT_OF_MEMORY));
    }

    #[test]
    fn the_bump_pointer_wraps_within_the_window() {
        let mut m = Memory::new(1, 1 << 20);
        m.cursor[0] = ADDRESS_BASE + WINDOW - 512;
        let a = m.alloc(0, 256, Owner::User).unwrap();
        assert_eq!(a, ADDRESS_BASE + WINDOW - 512);
        let b = m.alloc(0, 512, Owner::User).unwrap();
        assert_eq!(b, ADDRESS_BASE, "wrapped to the start of the window");
        let c = m.alloc(0, 256, Owner::User).unwrap();
        assert_eq!(c, ADDRESS_BASE + 512);
    }

    #[test]
    fn out_of_range_copies_are_invalid_and_not_fatal() {
        let mut b = backend();
        let a = b.mem_alloc(0, 100).unwrap();
        let c = b.mem_alloc(0, 100).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.memcpy_htod(0, a + 96, &[1; 8], None), Err(Status::INVALID_VALUE), "past the end");
        assert_eq!(b.memcpy_dtoh(0, &mut buf, a + 200, None), Err(Status::INVALID_VALUE), "in the alignment gap");
        assert_eq!(b.memcpy_dtoh(0, &mut buf, 0x1000, None), Err(Status::INVALID_VALUE), "unallocated");
        assert_eq!(b.memcpy_dtod(0, c, a + 50, 100, None), Err(Status::INVALID_VALUE), "straddles");
        assert_eq!(b.memcpy_dtod(0, c + 50, a, 100, None), Err(Status::INVALID_VALUE));
        assert_eq!(b.memset(0, a, 0, 4, 26, None), Err(Status::INVALID_VALUE));
        assert_eq!(b.memset(0, a + 1, 0, 2, 1, None), Err(Status::INVALID_VALUE), "misaligned D16");
        assert_eq!(b.memset(0, a, 0, 3, 1, None), Err(Status::INVALID_VALUE), "element size");
        b.mem_free(0, a).unwrap();
        assert_eq!(b.memcpy_htod(0, a, &[1; 8], None), Err(Status::INVALID_VALUE), "use after free");
        assert!(b.poisoned().is_none());
        b.memcpy_htod(0, c, &[7; 100], None).unwrap();
    }

    #[test]
    fn array_copies_are_bounded_and_handles_checked() {
        let mut b = backend();
        let desc = ArrayDesc { width: 4, height: 2, depth: 0, format: 0x20, channels: 1, flags: 0 };
        let arr = b.array_create(0, &desc).unwrap();
        let at = |x, y| Mem2D::Array { raw: arr, x, y, z: 0 };
        let c = |src, dst, width, height| Copy2D { src, dst, width, height };
        // 16-byte rows, 2 of them.
        assert_eq!(
            b.memcpy_2d(0, &c(Mem2D::Host, at(4, 0), 16, 1), &[1; 16], &mut [], None),
            Err(Status::INVALID_VALUE)
        );
        assert_eq!(
            b.memcpy_2d(0, &c(Mem2D::Host, at(0, 1), 16, 2), &[1; 32], &mut [], None),
            Err(Status::INVALID_VALUE)
        );
        assert_eq!(
            b.memcpy_2d(0, &c(Mem2D::Host, at(0, 0), 16, 2), &[1; 8], &mut [], None),
            Err(Status::INVALID_VALUE)
        );
        let stale = Mem2D::Array { raw: arr + 1, x: 0, y: 0, z: 0 };
        assert_eq!(b.memcpy_2d(0, &c(Mem2D::Host, stale, 4, 1), &[1; 4], &mut [], None), Err(Status::INVALID_HANDLE));
        b.memcpy_2d(0, &c(Mem2D::Host, at(12, 1), 4, 1), &[9; 4], &mut [], None).unwrap();
        let mut out = [0u8; 32];
        b.memcpy_2d(0, &c(at(0, 0), Mem2D::Host, 16, 2), &[], &mut out, None).unwrap();
        assert_eq!(&out[28..], &[9; 4]);
        assert!(out[..28].iter().all(|&v| v == 0), "arrays start zeroed");
        assert_eq!(b.array_create(0, &ArrayDesc { channels: 3, ..desc }), Err(Status::INVALID_VALUE));
        assert_eq!(b.array_create(0, &ArrayDesc { format: 0x77, ..desc }), Err(Status::INVALID_VALUE));
        assert_eq!(b.array_create(0, &ArrayDesc { width: 0, ..desc }), Err(Status::INVALID_VALUE));
        assert_eq!(b.array_destroy(1, arr), Err(Status::INVALID_HANDLE), "another device's array");
        assert_eq!(b.surf_object_create(0, arr + 1), Err(Status::INVALID_HANDLE));
        assert_eq!(b.stream_set_attribute(0, None, 99, &[0; 64]), Err(Status::INVALID_VALUE));
        b.array_destroy(0, arr).unwrap();
        assert!(b.poisoned().is_none());
    }

    #[test]
    fn copies_cross_devices_and_overlap() {
        let mut b = backend();
        let a = b.mem_alloc(0, 16).unwrap();
        let d = b.mem_alloc(1, 16).unwrap();
        let data: Vec<u8> = (0..16).collect();
        b.memcpy_htod(0, a, &data, None).unwrap();
        b.memcpy_dtod(1, d, a, 16, None).unwrap();
        b.memcpy_dtod(1, d + 4, d, 8, None).unwrap(); // overlapping: memmove
        let mut out = [0u8; 16];
        b.memcpy_dtoh(1, &mut out, d, None).unwrap();
        assert_eq!(out, [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15]);
    }

    #[test]
    fn kernel_faults_poison_everything_but_device_count() {
        let mut b = backend();
        let m = b.module_load(0, demo::DEMO_PTX.as_bytes()).unwrap();
        let f = b.module_get_function(0, m, demo::FILL_U32).unwrap();
        let p = b.mem_alloc(0, 16).unwrap();
        let mut params = [0u8; 24];
        params[..8].copy_from_slice(&p.to_le_bytes());
        params[16..].copy_from_slice(&5u64.to_le_bytes()); // 5 elements into 16 bytes
        assert_eq!(b.launch(0, f, &cfg1(1, 32), None, &params), Err(Status::ILLEGAL_ADDRESS));
        assert_eq!(b.mem_alloc(0, 4), Err(Status::ILLEGAL_ADDRESS));
        assert_eq!(b.device_info(1).map(|_| ()), Err(Status::ILLEGAL_ADDRESS));
        assert_eq!(b.device_count(), 2);
        assert_eq!(b.driver_version(), DRIVER_VERSION);

        let mut b = backend();
        let m = b.module_load(0, demo::DEMO_PTX.as_bytes()).unwrap();
        let f = b.module_get_function(0, m, demo::FILL_U32).unwrap();
        let p = b.mem_alloc(0, 16).unwrap();
        params[..8].copy_from_slice(&(p + 2).to_le_bytes());
        params[16..].copy_from_slice(&1u64.to_le_bytes());
        assert_eq!(b.launch(0, f, &cfg1(1, 1), None, &params), Err(Status::MISALIGNED_ADDRESS));
        assert_eq!(b.stream_query(0, None), Err(Status::MISALIGNED_ADDRESS));
    }

    #[test]
    fn launch_validation_is_not_fatal() {
        let mut b = backend();
        let m = b.module_load(0, demo::DEMO_PTX.as_bytes()).unwrap();
        let empty = b.module_get_function(0, m, demo::EMPTY).unwrap();
        let count = b.module_get_function(0, m, demo::COUNT).unwrap();
        assert_eq!(b.module_get_function(0, m, demo::COUNT), Ok(count), "same handle twice");
        assert_eq!(b.launch(0, empty, &cfg1(1, 2048), None, &[]), Err(Status::INVALID_VALUE));
        assert_eq!(b.launch(0, empty, &cfg1(0, 1), None, &[]), Err(Status::INVALID_VALUE));
        let tall = LaunchConfig { block: [1, 1, 65], ..cfg1(1, 1) };
        assert_eq!(b.launch(0, empty, &tall, None, &[]), Err(Status::INVALID_VALUE));
        let shm = LaunchConfig { shared_mem: 64 << 10, ..cfg1(1, 1) };
        assert_eq!(b.launch(0, empty, &shm, None, &[]), Err(Status::INVALID_VALUE));
        b.func_set_attribute(0, empty, 8, 64 << 10).unwrap();
        b.launch(0, empty, &shm, None, &[]).unwrap();
        assert_eq!(b.func_get_attribute(0, empty, 8), Ok(64 << 10));
        assert_eq!(b.func_set_attribute(0, empty, 8, 1 << 20), Err(Status::INVALID_VALUE));
        assert_eq!(b.func_get_attribute(0, empty, 99), Err(Status::INVALID_VALUE));
        assert_eq!(b.launch(0, count, &cfg1(1, 1), None, &[0; 3]), Err(Status::INVALID_VALUE), "short params");
        assert_eq!(b.launch(1, count, &cfg1(1, 1), None, &[0; 4]), Err(Status::INVALID_HANDLE), "other device");
        let coop = LaunchConfig { cooperative: true, ..cfg1(9, 1024) };
        assert_eq!(b.launch(0, empty, &coop, None, &[]), Err(STATUS_COOPERATIVE_LAUNCH_TOO_LARGE));
        b.launch(0, empty, &LaunchConfig { cooperative: true, ..cfg1(8, 1024) }, None, &[]).unwrap();
        assert!(b.poisoned().is_none());
    }

    /// Arrays take device memory, as in CUDA: `mem_get_info` shows it, creating past the
    /// device's memory fails with `OUT_OF_MEMORY`, destroying gives it back. Before, arrays were
    /// checked against free memory but not counted, so a client could create array after array
    /// (65536 by default) of the device's whole memory, each one zeroed host memory, until the
    /// worker's address space ran out and it aborted.
    #[test]
    fn arrays_count_against_device_memory() {
        let mut b = EmulatedBackend::with_memory(1, 1 << 20);
        let desc = |w: u64| ArrayDesc { width: w, height: 1024, depth: 0, format: 0x01, channels: 1, flags: 0 };
        let (free0, total) = b.mem_get_info(0).unwrap();
        assert_eq!(free0, total);
        let a = b.array_create(0, &desc(512)).unwrap();
        assert_eq!(b.mem_get_info(0).unwrap().0, free0 - (512 << 10));
        assert_eq!(b.array_create(0, &desc(768)), Err(Status::OUT_OF_MEMORY), "only half the memory is left");
        let c = b.array_create(0, &desc(512)).unwrap();
        assert_eq!(b.mem_get_info(0).unwrap().0, 0);
        assert_eq!(b.mem_alloc(0, 256), Err(Status::OUT_OF_MEMORY));
        b.array_destroy(0, a).unwrap();
        b.array_destroy(0, c).unwrap();
        assert_eq!(b.mem_get_info(0).unwrap().0, free0);
        assert!(b.held().is_empty(), "{:?}", b.held());
    }

    #[test]
    fn module_images_and_lifetimes() {
        let mut b = backend();
        assert_eq!(b.module_load(0, b"\x00\x01garbage"), Err(Status::INVALID_IMAGE));
        let (free0, _) = b.mem_get_info(0).unwrap();
        let m = b.module_load(0, demo::DEMO_PTX.as_bytes()).unwrap();
        assert!(b.mem_get_info(0).unwrap().0 < free0, "globals take device memory");
        let f = b.module_get_function(0, m, demo::SAXPY).unwrap();
        let (g, size) = b.module_get_global(0, m, demo::COUNTER).unwrap();
        assert_eq!(size, 4);
        assert_eq!(b.mem_free(0, g), Err(Status::INVALID_VALUE), "a module's global is not mem_free'd");
        b.module_unload(0, m).unwrap();
        assert_eq!(b.mem_get_info(0).unwrap().0, free0);
        assert_eq!(b.launch(0, f, &cfg1(1, 1), None, &[0; 32]), Err(Status::INVALID_HANDLE));
        assert_eq!(b.module_unload(0, m), Err(Status::INVALID_HANDLE));
        // A kernel the emulator does not implement.
        let other = ".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry mine(.param .u64 p)\n{ ret; }\n";
        let m = b.module_load(1, other.as_bytes()).unwrap();
        assert_eq!(b.module_get_function(1, m, "mine"), Err(Status::NOT_FOUND));
        // A demo kernel's name with another signature.
        let fake = ".visible .entry remora_saxpy(.param .u64 p)\n{ ret; }\n";
        let m = b.module_load(1, fake.as_bytes()).unwrap();
        assert_eq!(b.module_get_function(1, m, demo::SAXPY), Err(Status::NOT_FOUND));
    }

    #[test]
    fn events_measure_real_time() {
        let mut b = backend();
        let s = b.stream_create(0, 1, -1).unwrap();
        let e0 = b.event_create(0, 0).unwrap();
        let e1 = b.event_create(0, 0).unwrap();
        assert_eq!(b.event_elapsed(0, e0, e1), Err(Status::INVALID_HANDLE), "not recorded");
        b.event_record(0, e0, Some(s)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        b.event_record(0, e1, Some(s)).unwrap();
        let ms = b.event_elapsed(0, e0, e1).unwrap();
        assert!((19.0..2000.0).contains(&ms), "{ms}");
        assert!(b.event_elapsed(0, e1, e0).unwrap() < 0.0);
        let nt = b.event_create(0, EVENT_DISABLE_TIMING).unwrap();
        b.event_record(0, nt, None).unwrap();
        assert_eq!(b.event_elapsed(0, e0, nt), Err(Status::INVALID_HANDLE), "timing disabled");
        assert_eq!(b.event_record(1, e0, None), Err(Status::INVALID_HANDLE), "event of another device");
        let e_other = b.event_create(1, 0).unwrap();
        assert_eq!(b.event_record(1, e_other, Some(s)), Err(Status::INVALID_HANDLE), "stream of another device");
        b.stream_wait_event(0, Some(s), e1, 0).unwrap();
        b.stream_destroy(0, s).unwrap();
        assert_eq!(b.stream_query(0, Some(s)), Err(Status::INVALID_HANDLE));
        b.event_destroy(0, e0).unwrap();
        assert_eq!(b.event_query(0, e0), Err(Status::INVALID_HANDLE));
    }

    #[test]
    fn device_info_looks_like_sm90() {
        let mut b = backend();
        let info = b.device_info(1).unwrap();
        assert_eq!(info.name_str(), "remora emulated device 1");
        assert_eq!(info.total_mem.get(), DEVICE_MEMORY);
        assert_eq!((info.attribute(75), info.attribute(76)), (9, 0));
        assert_eq!(info.attribute(1), 1024);
        assert_eq!(info.attribute(16), i32::try_from(MULTIPROCESSORS).unwrap());
        assert_eq!(info.attribute(41), 1);
        assert_eq!(info.attribute(85), 1);
        assert_ne!(b.device_info(0).unwrap().uuid, info.uuid);
        assert_eq!(b.device_info(2).map(|_| ()), Err(Status::INVALID_DEVICE));
        assert_eq!(b.device_attribute(0, 0), Err(Status::INVALID_VALUE));
        assert_eq!(b.device_attribute(0, 9999), Err(Status::INVALID_VALUE));
        assert_eq!(b.pci_bus_id(0), None);
        assert_eq!(b.can_access_peer(0, 1), Ok(true));
        assert_eq!(b.can_access_peer(0, 0), Ok(false));
        assert_eq!(b.can_access_peer(0, 5), Err(Status::INVALID_DEVICE));
        assert_eq!(b.name(), "emulated");
    }
}
