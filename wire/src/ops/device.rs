//! Device queries.

pub use zerocopy::little_endian::F32;
use zerocopy::little_endian::{I32, U32, U64};

/// Number of `CUdevice_attribute` slots in [`DeviceInfo`]; attribute `n` is at index `n`.
pub const DEVICE_ATTRIBUTE_SLOTS: usize = 160;

wire_structs! {
    /// Names one device (ordinal as the session sees it).
    pub struct DeviceRef {
        /// Device ordinal.
        pub device: U32,
    }

    /// Two devices (peer queries).
    pub struct DevicePair {
        /// Accessing device.
        pub device: U32,
        /// Device whose memory is accessed.
        pub peer: U32,
    }

    /// `cuDeviceGetAttribute`.
    pub struct DeviceAttribute {
        /// Device ordinal.
        pub device: U32,
        /// `CUdevice_attribute` value.
        pub attribute: U32,
    }

    /// Reply: number of devices.
    pub struct DeviceCountReply {
        /// Count.
        pub count: U32,
    }

    /// Reply: one `i32`.
    pub struct I32Reply {
        /// Value.
        pub value: I32,
    }

    /// Reply: one `f32` (elapsed milliseconds).
    pub struct F32Reply {
        /// Value.
        pub value: F32,
    }

    /// Reply: everything the runtime needs to build `cudaDeviceProp` without further round trips.
    pub struct DeviceInfo {
        /// NUL-terminated device name.
        pub name: [u8; 256],
        /// Device UUID.
        pub uuid: [u8; 16],
        /// Total global memory in bytes.
        pub total_mem: U64,
        /// `attributes[n]` = value of `CUdevice_attribute` n (0 where the driver has none).
        pub attributes: [I32; DEVICE_ATTRIBUTE_SLOTS],
    }

    /// `cuCtxGetLimit` / `cuCtxSetLimit` on a device's context.
    pub struct Limit {
        /// Device ordinal.
        pub device: U32,
        /// `CUlimit`.
        pub limit: U32,
        /// New value (set only).
        pub value: U64,
    }

    /// Reply: a limit's value.
    pub struct LimitReply {
        /// Value.
        pub value: U64,
    }

    /// Reply: `cuMemGetInfo`.
    pub struct MemInfoReply {
        /// Free bytes.
        pub free: U64,
        /// Total bytes.
        pub total: U64,
    }
}

impl DeviceInfo {
    /// The name as a string.
    pub fn name_str(&self) -> &str {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..end]).unwrap_or("?")
    }

    /// An attribute's value, 0 when out of range.
    pub fn attribute(&self, attr: u32) -> i32 {
        usize::try_from(attr).ok().and_then(|i| self.attributes.get(i)).map_or(0, |v| v.get())
    }
}
