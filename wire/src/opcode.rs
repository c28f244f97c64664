//! Operation codes. Driver-level operations, grouped by hundreds-of-hex ranges.

macro_rules! opcodes {
    ($($(#[doc = $doc:expr])* $name:ident = $value:expr,)*) => {
        /// An operation. On the wire it is a raw `u16` in the header so that an unknown value
        /// is reported (with [`crate::Status::UNSUPPORTED_OPCODE`]) rather than failing to parse.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum Opcode {
            $($(#[doc = $doc])* $name = $value,)*
        }

        impl Opcode {
            /// Every opcode, in numeric order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name,)*];

            /// The operation's name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Opcode::$name => stringify!($name),)*
                }
            }
        }

        impl TryFrom<u16> for Opcode {
            type Error = u16;
            fn try_from(v: u16) -> Result<Opcode, u16> {
                match v {
                    $($value => Ok(Opcode::$name),)*
                    other => Err(other),
                }
            }
        }
    };
}

opcodes! {
    // --- session (0x00xx) ---
    /// Handshake, client → server: [`crate::Hello`].
    Hello = 0x0001,
    /// Handshake, server → client: [`crate::Challenge`].
    Challenge = 0x0002,
    /// Handshake, client → server: [`crate::AuthProof`].
    Auth = 0x0003,
    /// Handshake, server → client: [`crate::Welcome`].
    Welcome = 0x0004,
    /// Keep-alive; empty request and reply.
    Ping = 0x0005,
    /// Clean end of session; empty request and reply.
    Goodbye = 0x0006,
    /// Handshake, server → client, in place of the Welcome when the Hello asked for
    /// [`crate::handshake::Capabilities::STATS`]: a UTF-8 JSON document (its `format` field
    /// versions it), then the server closes. Never valid inside a session.
    ServerStats = 0x0007,
    /// Session start over `rdma://`, worker → client, right after the Welcome when both sides
    /// have [`crate::handshake::Capabilities::RDMA`]: [`crate::ops::RdmaOffer`] (the worker's
    /// rdma_cm port and the secret the client's connect request must carry), or an error status
    /// with a reason. Never valid inside a session.
    RdmaOffer = 0x0008,
    /// Session start over `tcp://`, worker → client, right after the Welcome when both sides
    /// have [`crate::handshake::Capabilities::STRIPES`]: [`crate::ops::StripeOffer`] (a port of
    /// the worker's for extra bulk connections, how many, and the secret they must present).
    StripeOffer = 0x0009,
    /// Client → worker after connecting to a [`Opcode::StripeOffer`], then worker → client as
    /// the answer: [`crate::ops::StripeJoin`] (how many connections were made, then accepted).
    StripeJoin = 0x000A,
    // --- device (0x001x) ---
    /// [`crate::ops::Empty`] → [`crate::ops::DeviceCountReply`].
    DeviceGetCount = 0x0010,
    /// [`crate::ops::DeviceAttribute`] → [`crate::ops::I32Reply`].
    DeviceGetAttribute = 0x0011,
    /// [`crate::ops::DeviceRef`] → [`crate::ops::DeviceInfo`]: name, UUID, memory and every attribute at once.
    DeviceGetInfo = 0x0012,
    /// [`crate::ops::DeviceRef`] → [`crate::ops::MemInfoReply`].
    MemGetInfo = 0x0013,
    /// [`crate::ops::Empty`] → [`crate::ops::I32Reply`].
    DriverGetVersion = 0x0014,
    /// [`crate::ops::DeviceRef`] → empty: `cuCtxSynchronize` on the device's context.
    DeviceSynchronize = 0x0015,
    /// [`crate::ops::DeviceRef`] → empty: frees everything the session holds on the device.
    DeviceReset = 0x0016,
    /// [`crate::ops::DevicePair`] → [`crate::ops::I32Reply`]: can `device` access `peer`'s memory.
    DeviceCanAccessPeer = 0x0017,
    /// [`crate::ops::Limit`] (`value` ignored) → [`crate::ops::LimitReply`]: `cuCtxGetLimit`.
    CtxGetLimit = 0x0018,
    /// [`crate::ops::Limit`] → empty: `cuCtxSetLimit`.
    CtxSetLimit = 0x0019,
    /// [`crate::ops::DevicePair`] → empty: `cuCtxEnablePeerAccess` (device's context may access peer's memory).
    DeviceEnablePeerAccess = 0x001C,
    /// [`crate::ops::DevicePair`] → empty: `cuCtxDisablePeerAccess`.
    DeviceDisablePeerAccess = 0x001D,
    /// [`crate::ops::DeviceRef`] → empty: `cuCtxResetPersistingL2Cache`.
    CtxResetPersistingL2Cache = 0x001a,
    // --- memory (0x002x) ---
    /// [`crate::ops::MemAlloc`] → [`crate::ops::PtrReply`].
    MemAlloc = 0x0020,
    /// [`crate::ops::MemFree`] → empty.
    MemFree = 0x0021,
    /// [`crate::ops::MemcpyHtoD`] + data → empty. Async when flagged `NO_REPLY`.
    MemcpyHtoD = 0x0022,
    /// [`crate::ops::MemcpyDtoH`] → data.
    MemcpyDtoH = 0x0023,
    /// [`crate::ops::MemcpyDtoD`] → empty.
    MemcpyDtoD = 0x0024,
    /// [`crate::ops::Memset`] → empty.
    Memset = 0x0025,
    /// [`crate::ops::PtrRef`] → [`crate::ops::MemRangeReply`]: the allocation containing a pointer.
    MemGetAddressRange = 0x0026,
    /// [`crate::ops::MemAllocAt`] → [`crate::ops::PtrReply`]: device memory at the given address
    /// inside a `MemReserve` range (elsewhere: `ADDRESS_IN_USE`) or, for address 0, anywhere.
    /// Freed with `MemFree`.
    MemAllocAt = 0x0027,
    /// [`crate::ops::MemAlloc`] → [`crate::ops::PtrReply`]: device address space only
    /// (`cuMemAddressReserve`), for a client host range to take the same address; `MemAllocAt`
    /// maps memory in it, `MemFree` of its base releases it.
    MemReserve = 0x0028,
    /// [`crate::ops::ArenaMap`] → empty: map the client's shared pinned memory (same host) at
    /// the same address and register it with the driver; `ADDRESS_IN_USE` if taken there.
    ArenaMap = 0x0029,
    /// [`crate::ops::MemFree`] (the arena's address) → empty: unregister and unmap it.
    ArenaUnmap = 0x002A,
    /// [`crate::ops::MemcpyHost`] → empty: a copy between device memory and an arena, ordered
    /// on a stream; asynchronous when flagged `NO_REPLY`, else finished before the reply.
    MemcpyHost = 0x002B,
    /// [`crate::ops::MemcpyRemote`] → empty: a copy between device memory and client memory
    /// registered with the NIC (`rdma://` only), moved by the worker with RDMA READ (host →
    /// device) or RDMA WRITE (device → host); asynchronous when flagged `NO_REPLY`.
    MemcpyRemote = 0x002C,
    /// [`crate::ops::MemcpyStriped`] → empty: a large copy whose bytes travel on the session's
    /// extra TCP connections (the stripes) instead of the main link, in pieces of the offered
    /// size, each split evenly over the stripes. Host → device: the data follows on the stripes
    /// (asynchronous when flagged `NO_REPLY`). Device → host: the reply comes first, and the data
    /// follows on the stripes only when it is a success.
    MemcpyStriped = 0x002D,
    // --- streams (0x003x) ---
    /// [`crate::ops::StreamCreate`] → [`crate::ops::HandleReply`].
    StreamCreate = 0x0030,
    /// [`crate::ops::HandleRef`] → empty.
    StreamDestroy = 0x0031,
    /// [`crate::ops::HandleRef`] → empty.
    StreamSynchronize = 0x0032,
    /// [`crate::ops::HandleRef`] → empty (`NOT_READY` while work is pending).
    StreamQuery = 0x0033,
    /// [`crate::ops::StreamWaitEvent`] → empty.
    StreamWaitEvent = 0x0034,
    /// [`crate::ops::StreamAttribute`] → empty: `cuStreamSetAttribute`.
    StreamSetAttribute = 0x0035,
    /// [`crate::ops::StreamAttribute`] (`value` ignored) → [`crate::ops::StreamAttributeReply`].
    StreamGetAttribute = 0x0036,
    // --- events (0x004x) ---
    /// [`crate::ops::EventCreate`] → [`crate::ops::HandleReply`].
    EventCreate = 0x0040,
    /// [`crate::ops::EventRecord`] → empty.
    EventRecord = 0x0041,
    /// [`crate::ops::HandleRef`] → empty.
    EventSynchronize = 0x0042,
    /// [`crate::ops::HandleRef`] → empty (`NOT_READY` while pending).
    EventQuery = 0x0043,
    /// [`crate::ops::EventElapsed`] → [`crate::ops::F32Reply`] (milliseconds).
    EventElapsedTime = 0x0044,
    /// [`crate::ops::HandleRef`] → empty.
    EventDestroy = 0x0045,
    // --- modules and launch (0x005x) ---
    /// [`crate::ops::ModuleLoad`] + image → [`crate::ops::HandleReply`].
    ModuleLoad = 0x0050,
    /// [`crate::ops::HandleRef`] → empty.
    ModuleUnload = 0x0051,
    /// [`crate::ops::ModuleGetSymbol`] + name → [`crate::ops::HandleReply`].
    ModuleGetFunction = 0x0052,
    /// [`crate::ops::ModuleGetSymbol`] + name → [`crate::ops::MemRangeReply`].
    ModuleGetGlobal = 0x0053,
    /// [`crate::ops::HandleRef`] → [`crate::ops::ParamInfoReply`] + `count` × [`crate::ops::ParamInfo`].
    FuncGetParamInfo = 0x0054,
    /// [`crate::ops::FuncAttribute`] → [`crate::ops::I32Reply`].
    FuncGetAttribute = 0x0055,
    /// [`crate::ops::FuncSetAttribute`] → empty.
    FuncSetAttribute = 0x0056,
    /// [`crate::ops::Launch`] + parameter buffer → empty. Usually `NO_REPLY`.
    Launch = 0x0057,
    /// [`crate::ops::Occupancy`] → [`crate::ops::I32Reply`]: `cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags`.
    OccupancyMaxActiveBlocks = 0x0058,
    /// [`crate::ops::FuncAttribute`] (`attribute` = `CUfunc_cache`) → empty: `cuFuncSetCacheConfig`.
    FuncSetCacheConfig = 0x0059,
    // --- arrays, textures, surfaces (0x006x) ---
    /// [`crate::ops::ArrayCreate`] → [`crate::ops::HandleReply`]: `cuArray3DCreate`.
    ArrayCreate = 0x0060,
    /// [`crate::ops::HandleRef`] → empty: `cuArrayDestroy`.
    ArrayDestroy = 0x0061,
    /// [`crate::ops::Memcpy2D`] (+ data from host) → empty or data to host: `cuMemcpy2D`.
    /// Async when flagged `NO_REPLY` (only without a host destination).
    Memcpy2D = 0x0062,
    /// [`crate::ops::TexObjectCreate`] → [`crate::ops::HandleReply`] (the `CUtexObject`).
    TexObjectCreate = 0x0063,
    /// [`crate::ops::HandleRef`] (a `CUtexObject`) → empty.
    TexObjectDestroy = 0x0064,
    /// [`crate::ops::HandleRef`] (an array handle) → [`crate::ops::HandleReply`] (the `CUsurfObject`).
    SurfObjectCreate = 0x0065,
    /// [`crate::ops::HandleRef`] (a `CUsurfObject`) → empty.
    SurfObjectDestroy = 0x0066,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown() {
        for &op in Opcode::ALL {
            assert_eq!(Opcode::try_from(op as u16), Ok(op));
        }
        assert_eq!(Opcode::try_from(0x7777), Err(0x7777));
        assert_eq!(Opcode::MemAlloc.name(), "MemAlloc");
    }
}
