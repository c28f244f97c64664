//! Streams.

use zerocopy::little_endian::{I32, U32, U64};

wire_structs! {
    /// `cuStreamCreateWithPriority`.
    pub struct StreamCreate {
        /// Device ordinal.
        pub device: U32,
        /// `CU_STREAM_*` flags (1 = non-blocking).
        pub flags: U32,
        /// Priority (lower is higher priority).
        pub priority: I32,
        /// Zero.
        pub reserved: U32,
    }

    /// One handle argument (stream, event, module or function).
    pub struct HandleRef {
        /// Handle.
        pub handle: U64,
    }

    /// Reply: a new handle.
    pub struct HandleReply {
        /// Handle.
        pub handle: U64,
    }

    /// `cuStreamWaitEvent`.
    pub struct StreamWaitEvent {
        /// Stream that waits.
        pub stream: U64,
        /// Event waited for.
        pub event: U64,
        /// Flags.
        pub flags: U32,
        /// Zero.
        pub reserved: U32,
    }
}
