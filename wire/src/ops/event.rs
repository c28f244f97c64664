//! Events.

use zerocopy::little_endian::{U32, U64};

wire_structs! {
    /// `cuEventCreate`.
    pub struct EventCreate {
        /// Device ordinal.
        pub device: U32,
        /// `CU_EVENT_*` flags (1 blocking sync, 2 disable timing, 4 interprocess).
        pub flags: U32,
    }

    /// `cuEventRecord`.
    pub struct EventRecord {
        /// Event.
        pub event: U64,
        /// Stream.
        pub stream: U64,
    }

    /// `cuEventElapsedTime`.
    pub struct EventElapsed {
        /// Start event.
        pub start: U64,
        /// End event.
        pub end: U64,
    }
}
