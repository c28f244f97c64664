//! Kernel launch.

use zerocopy::little_endian::{U32, U64};

/// [`Launch::flags`] bit: cooperative launch (`cuLaunchCooperativeKernel`).
pub const LAUNCH_COOPERATIVE: u32 = 1;

wire_structs! {
    /// `cuLaunchKernel`; `params_len` bytes of the kernel's parameter buffer follow, laid out at the
    /// offsets of the kernel's parameter table (what `CU_LAUNCH_PARAM_BUFFER_POINTER` takes).
    pub struct Launch {
        /// Function handle.
        pub function: U64,
        /// Stream handle.
        pub stream: U64,
        /// Grid dimensions.
        pub grid: [U32; 3],
        /// Block dimensions.
        pub block: [U32; 3],
        /// Dynamic shared memory bytes.
        pub shared_mem: U32,
        /// Parameter buffer bytes that follow.
        pub params_len: U32,
        /// `LAUNCH_*` flags.
        pub flags: U32,
        /// Zero.
        pub reserved: U32,
    }
}
