//! Modules, functions, globals.

use zerocopy::little_endian::{I32, U32, U64};

/// What a [`ModuleLoad`] image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ImageKind {
    /// Let the server detect it (fatbinary, ELF cubin or PTX text).
    Auto = 0,
    /// A fatbinary container.
    Fatbin = 1,
    /// An ELF cubin.
    Cubin = 2,
    /// NUL-terminated PTX text.
    Ptx = 3,
}

impl TryFrom<u32> for ImageKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<ImageKind, u32> {
        match v {
            0 => Ok(ImageKind::Auto),
            1 => Ok(ImageKind::Fatbin),
            2 => Ok(ImageKind::Cubin),
            3 => Ok(ImageKind::Ptx),
            other => Err(other),
        }
    }
}

wire_structs! {
    /// `cuModuleLoadData`; `len` bytes of image follow.
    pub struct ModuleLoad {
        /// Device ordinal whose context loads it.
        pub device: U32,
        /// [`ImageKind`].
        pub kind: U32,
        /// Image bytes.
        pub len: U64,
    }

    /// `cuModuleGetFunction` / `cuModuleGetGlobal`; `name_len` bytes of name follow (no NUL).
    pub struct ModuleGetSymbol {
        /// Module handle.
        pub module: U64,
        /// Name length.
        pub name_len: U32,
        /// Zero.
        pub reserved: U32,
    }

    /// Reply header of `FuncGetParamInfo`; `count` [`ParamInfo`] follow.
    pub struct ParamInfoReply {
        /// Number of parameters.
        pub count: U32,
        /// Zero.
        pub reserved: U32,
    }

    /// One kernel parameter's place in the parameter buffer.
    pub struct ParamInfo {
        /// Byte offset.
        pub offset: U32,
        /// Byte size.
        pub size: U32,
    }

    /// `cuFuncGetAttribute`.
    pub struct FuncAttribute {
        /// Function handle.
        pub function: U64,
        /// `CUfunction_attribute`.
        pub attribute: I32,
        /// Zero.
        pub reserved: U32,
    }

    /// `cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags`.
    pub struct Occupancy {
        /// Function handle.
        pub function: U64,
        /// Threads per block.
        pub block_size: U32,
        /// `CU_OCCUPANCY_*` flags.
        pub flags: U32,
        /// Dynamic shared memory bytes per block.
        pub dynamic_smem: U64,
    }

    /// `cuFuncSetAttribute`.
    pub struct FuncSetAttribute {
        /// Function handle.
        pub function: U64,
        /// `CUfunction_attribute`.
        pub attribute: I32,
        /// Value.
        pub value: I32,
    }
}
