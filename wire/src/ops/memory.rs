//! Device memory: allocation, copies, memset.

use zerocopy::little_endian::{U16, U32, U64};

wire_structs! {
    /// `cuMemAlloc` on a device.
    pub struct MemAlloc {
        /// Device ordinal.
        pub device: U32,
        /// Zero.
        pub reserved: U32,
        /// Bytes.
        pub size: U64,
    }

    /// Device memory mapped at an address inside a `MemReserve` range, or anywhere for address 0
    /// (`cuMemCreate` + `cuMemMap`): the device side of a client's mapped host range.
    pub struct MemAllocAt {
        /// Device ordinal.
        pub device: U32,
        /// Zero.
        pub reserved: U32,
        /// First byte of the range (any alignment; the server maps whole granules around it).
        pub addr: U64,
        /// Bytes.
        pub size: U64,
    }

    /// Map the client's shared pinned memory `/dev/shm/<name>` at `addr` in the worker.
    pub struct ArenaMap {
        /// Address (the same in both processes; page-aligned).
        pub addr: U64,
        /// Bytes (page multiple).
        pub len: U64,
        /// File name in `/dev/shm`, NUL-padded.
        pub name: [u8; 64],
    }

    /// A copy between device memory and an arena (`MemcpyHost`).
    pub struct MemcpyHost {
        /// Device address.
        pub device: U64,
        /// Arena address.
        pub host: U64,
        /// Bytes.
        pub len: U64,
        /// Stream handle.
        pub stream: U64,
        /// 1: host → device; 0: device → host.
        pub to_device: U32,
        /// Zero.
        pub reserved: U32,
    }

    /// A copy between device memory and registered client memory (`MemcpyRemote`).
    pub struct MemcpyRemote {
        /// Device address.
        pub device: U64,
        /// Client address (inside a region registered with the NIC).
        pub host: U64,
        /// Bytes.
        pub len: U64,
        /// Stream handle.
        pub stream: U64,
        /// 1: host → device; 0: device → host.
        pub to_device: U32,
        /// The region's remote key.
        pub rkey: U32,
    }

    /// The worker's offer of an RDMA connection (`RdmaOffer`).
    pub struct RdmaOffer {
        /// rdma_cm port the worker listens on (same IP address the client reached).
        pub port: U16,
        /// Zero.
        pub reserved: [u8; 6],
        /// What the client's connect request must carry as private data.
        pub secret: [u8; 32],
    }

    /// The worker's offer of extra bulk connections (`StripeOffer`).
    pub struct StripeOffer {
        /// TCP port the worker listens on (same IP address the client reached).
        pub port: U16,
        /// How many connections it will take (0: none).
        pub count: U16,
        /// Bytes per piece: a striped copy moves in pieces of this size, each split evenly.
        pub piece: U32,
        /// What each connection must send first (then its index, a little-endian u16).
        pub secret: [u8; 32],
    }

    /// How many stripes were connected (client) or accepted (worker) (`StripeJoin`).
    pub struct StripeJoin {
        /// Connections.
        pub count: U16,
        /// Zero.
        pub reserved: [u8; 6],
    }

    /// A copy whose bytes travel on the stripes (`MemcpyStriped`).
    pub struct MemcpyStriped {
        /// Device address.
        pub device: U64,
        /// Bytes.
        pub len: U64,
        /// Stream handle.
        pub stream: U64,
        /// 1: host → device; 0: device → host.
        pub to_device: U32,
        /// Zero.
        pub reserved: U32,
    }

    /// `cuMemFree`.
    pub struct MemFree {
        /// Base address of an allocation of this session.
        pub ptr: U64,
    }

    /// A device pointer argument.
    pub struct PtrRef {
        /// Address.
        pub ptr: U64,
    }

    /// Reply: a device pointer.
    pub struct PtrReply {
        /// Address.
        pub ptr: U64,
    }

    /// Reply: an address range (allocation or global).
    pub struct MemRangeReply {
        /// Base address.
        pub base: U64,
        /// Bytes.
        pub size: U64,
    }

    /// Host → device copy; `len` bytes of data follow.
    pub struct MemcpyHtoD {
        /// Destination device address.
        pub dst: U64,
        /// Bytes.
        pub len: U64,
        /// Stream handle (0: legacy default stream).
        pub stream: U64,
    }

    /// Device → host copy; the reply carries `len` bytes.
    pub struct MemcpyDtoH {
        /// Source device address.
        pub src: U64,
        /// Bytes.
        pub len: U64,
        /// Stream handle.
        pub stream: U64,
    }

    /// Device → device copy.
    pub struct MemcpyDtoD {
        /// Destination device address.
        pub dst: U64,
        /// Source device address.
        pub src: U64,
        /// Bytes.
        pub len: U64,
        /// Stream handle.
        pub stream: U64,
    }

    /// `cuMemsetD8/D16/D32`.
    pub struct Memset {
        /// Destination device address.
        pub dst: U64,
        /// Number of elements.
        pub count: U64,
        /// Value (low `element_size` bytes used).
        pub value: U32,
        /// 1, 2 or 4.
        pub element_size: U32,
        /// Stream handle.
        pub stream: U64,
    }
}

impl ArenaMap {
    /// A request to map `name` (at most 63 bytes) at `addr`; `None` if the name is too long.
    pub fn new(addr: u64, len: u64, name: &str) -> Option<ArenaMap> {
        let mut n = [0u8; 64];
        n.get_mut(..name.len()).filter(|_| name.len() < 64)?.copy_from_slice(name.as_bytes());
        Some(ArenaMap { addr: U64::new(addr), len: U64::new(len), name: n })
    }

    /// The file name (up to the first NUL).
    pub fn name_str(&self) -> Option<&str> {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..end]).ok()
    }
}

impl MemAllocAt {
    /// A request for `size` bytes of `device` memory at `addr`.
    pub fn new(device: u32, addr: u64, size: u64) -> MemAllocAt {
        MemAllocAt { device: U32::new(device), reserved: U32::new(0), addr: U64::new(addr), size: U64::new(size) }
    }
}

impl MemcpyHost {
    /// A copy of `len` bytes between `device` and the arena address `host`, on `stream`.
    pub fn new(device: u64, host: u64, len: u64, stream: u64, to_device: bool) -> MemcpyHost {
        MemcpyHost {
            device: U64::new(device),
            host: U64::new(host),
            len: U64::new(len),
            stream: U64::new(stream),
            to_device: U32::new(u32::from(to_device)),
            reserved: U32::new(0),
        }
    }
}

impl MemcpyStriped {
    /// A copy of `len` bytes to or from `device` on `stream`, its bytes on the stripes.
    pub fn new(device: u64, len: u64, stream: u64, to_device: bool) -> MemcpyStriped {
        MemcpyStriped {
            device: U64::new(device),
            len: U64::new(len),
            stream: U64::new(stream),
            to_device: U32::new(u32::from(to_device)),
            reserved: U32::new(0),
        }
    }
}

impl MemAlloc {
    /// An allocation request.
    pub fn new(device: u32, size: u64) -> MemAlloc {
        MemAlloc { device: U32::new(device), reserved: U32::new(0), size: U64::new(size) }
    }
}
