//! CUDA arrays, 2D copies that involve them, texture and surface objects.
//!
//! Arrays are session handles like streams. Texture and surface objects are the driver's own
//! `CUtexObject` / `CUsurfObject` values (kernels receive them in their argument bytes), which
//! the server also records for validation and cleanup.

use zerocopy::little_endian::{F32, U32, U64};

/// [`Loc2D::kind`]: host memory; the bytes travel inline (request data or reply body), packed
/// (pitch = width).
pub const LOC_HOST: u32 = 0;
/// [`Loc2D::kind`]: device memory at `addr` with `pitch` (`x`, `y` are added by the server).
pub const LOC_DEVICE: u32 = 1;
/// [`Loc2D::kind`]: the array whose handle is `addr`; `x` in bytes, `y` in rows.
pub const LOC_ARRAY: u32 = 2;

/// [`TexObjectCreate::res_type`] (`CUresourcetype`): a CUDA array.
pub const RES_ARRAY: u32 = 0;
/// [`TexObjectCreate::res_type`]: linear device memory.
pub const RES_LINEAR: u32 = 2;
/// [`TexObjectCreate::res_type`]: pitched 2D device memory.
pub const RES_PITCH2D: u32 = 3;

/// Bytes of one channel of a `CUarray_format` (the plain numeric formats; `None` otherwise).
pub fn array_format_bytes(format: u32) -> Option<u32> {
    match format {
        0x01 | 0x08 => Some(1),        // UNSIGNED_INT8, SIGNED_INT8
        0x02 | 0x09 | 0x10 => Some(2), // UNSIGNED_INT16, SIGNED_INT16, HALF
        0x03 | 0x0a | 0x20 => Some(4), // UNSIGNED_INT32, SIGNED_INT32, FLOAT
        _ => None,
    }
}

/// Bytes of one element of an array of `format` with `channels` (1, 2 or 4) channels.
pub fn array_element_bytes(format: u32, channels: u32) -> Option<u32> {
    if !matches!(channels, 1 | 2 | 4) {
        return None;
    }
    array_format_bytes(format).map(|b| b * channels)
}

wire_structs! {
    /// `cuArray3DCreate` (a `CUDA_ARRAY3D_DESCRIPTOR`) → [`crate::ops::HandleReply`].
    pub struct ArrayCreate {
        /// Device ordinal.
        pub device: U32,
        /// `CUarray_format`.
        pub format: U32,
        /// 1, 2 or 4.
        pub channels: U32,
        /// `CUDA_ARRAY3D_*` flags.
        pub flags: U32,
        /// Width in elements.
        pub width: U64,
        /// Height in rows (0: a 1D array).
        pub height: U64,
        /// Depth (0: 1D or 2D).
        pub depth: U64,
    }

    /// One end of a [`Memcpy2D`].
    pub struct Loc2D {
        /// [`LOC_HOST`], [`LOC_DEVICE`] or [`LOC_ARRAY`].
        pub kind: U32,
        /// Slice (layer) of a 3D or layered array; zero otherwise.
        pub z: U32,
        /// Device address or array handle (0 for host).
        pub addr: U64,
        /// Row pitch in bytes (device memory only).
        pub pitch: U64,
        /// Start column, in bytes.
        pub x: U64,
        /// Start row.
        pub y: U64,
    }

    /// `cuMemcpy2D` between host, device memory and arrays. When `src` is host memory,
    /// `width × height` packed bytes follow; when `dst` is, the reply carries them.
    pub struct Memcpy2D {
        /// Source.
        pub src: Loc2D,
        /// Destination.
        pub dst: Loc2D,
        /// Bytes per row.
        pub width: U64,
        /// Rows.
        pub height: U64,
        /// Stream handle (0: legacy default stream).
        pub stream: U64,
    }

    /// `cuTexObjectCreate` (resource, texture and optional view descriptors) →
    /// [`crate::ops::HandleReply`] carrying the `CUtexObject`.
    pub struct TexObjectCreate {
        /// [`RES_ARRAY`], [`RES_LINEAR`] or [`RES_PITCH2D`].
        pub res_type: U32,
        /// `CUarray_format` (linear, pitch2D).
        pub format: U32,
        /// Channels (linear, pitch2D).
        pub channels: U32,
        /// Non-zero: the view fields below are used.
        pub has_view: U32,
        /// Array handle (array resources).
        pub array: U64,
        /// Device address (linear, pitch2D).
        pub ptr: U64,
        /// Bytes (linear) or width in elements (pitch2D).
        pub width: U64,
        /// Rows (pitch2D).
        pub height: U64,
        /// Row pitch in bytes (pitch2D).
        pub pitch: U64,
        /// `CUaddress_mode` per dimension.
        pub address_mode: [U32; 3],
        /// `CUfilter_mode`.
        pub filter_mode: U32,
        /// `CU_TRSF_*` flags.
        pub flags: U32,
        /// Maximum anisotropy.
        pub max_anisotropy: U32,
        /// `CUfilter_mode` between mipmap levels.
        pub mipmap_filter_mode: U32,
        /// Mipmap level bias.
        pub mipmap_level_bias: F32,
        /// Minimum mipmap level clamp.
        pub min_mipmap_level_clamp: F32,
        /// Maximum mipmap level clamp.
        pub max_mipmap_level_clamp: F32,
        /// Border colour.
        pub border_color: [F32; 4],
        /// `CUresourceViewFormat`.
        pub view_format: U32,
        /// View width.
        pub view_width: U64,
        /// View height.
        pub view_height: U64,
        /// View depth.
        pub view_depth: U64,
        /// First mipmap level.
        pub view_first_mip: U32,
        /// Last mipmap level.
        pub view_last_mip: U32,
        /// First layer.
        pub view_first_layer: U32,
        /// Last layer.
        pub view_last_layer: U32,
    }

    /// `cuStreamSetAttribute` / `cuStreamGetAttribute`: the 64-byte `CUstreamAttrValue`.
    pub struct StreamAttribute {
        /// Stream handle (0: legacy default stream).
        pub stream: U64,
        /// `CUstreamAttrID` (access policy window 1, synchronisation policy 3, priority 8).
        pub attr: U32,
        /// The device whose legacy default stream `stream` 0 means (ignored otherwise).
        pub device: U32,
        /// The value (set), ignored (get).
        pub value: [u8; 64],
    }

    /// Reply: a stream attribute's value.
    pub struct StreamAttributeReply {
        /// The 64-byte `CUstreamAttrValue`.
        pub value: [u8; 64],
    }
}

/// `CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW`.
pub const STREAM_ATTR_ACCESS_POLICY_WINDOW: u32 = 1;
/// `CU_LAUNCH_ATTRIBUTE_SYNCHRONIZATION_POLICY`.
pub const STREAM_ATTR_SYNCHRONIZATION_POLICY: u32 = 3;
/// `CU_LAUNCH_ATTRIBUTE_PRIORITY`.
pub const STREAM_ATTR_PRIORITY: u32 = 8;

impl Loc2D {
    /// Host memory (inline bytes).
    pub fn host() -> Loc2D {
        Loc2D::new(LOC_HOST, 0, 0, 0, 0)
    }

    /// An array location in slice (layer) `z`.
    pub fn array(handle: u64, x: u64, y: u64, z: u32) -> Loc2D {
        Loc2D { z: U32::new(z), ..Loc2D::new(LOC_ARRAY, handle, 0, x, y) }
    }

    /// A location of `kind`.
    pub fn new(kind: u32, addr: u64, pitch: u64, x: u64, y: u64) -> Loc2D {
        Loc2D {
            kind: U32::new(kind),
            z: U32::new(0),
            addr: U64::new(addr),
            pitch: U64::new(pitch),
            x: U64::new(x),
            y: U64::new(y),
        }
    }
}
