//! Property tests of the wire format: every layout round-trips for arbitrary field values, and
//! header validation accepts exactly the well-formed headers.
//!
//! Case counts are kept modest (see `config`) so `cargo test` stays quick on small machines;
//! `PROPTEST_CASES` raises them for a longer run.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use remora_wire::handshake::{AuthProof, Challenge, Hello, Welcome};
use remora_wire::ops::*;
use remora_wire::{
    read, split, Flags, Header, HeaderError, Opcode, Status, HEADER_LEN, MAGIC, MAX_FRAME_LEN, PROTOCOL_VERSION, U32,
    U64,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

fn config() -> ProptestConfig {
    // An explicit PROPTEST_CASES wins; otherwise 256 cases per property.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// `T` decoded from `bytes` (exactly its size, then `tail`) is those bytes again, with the tail
/// left as the inline data; and anything shorter than `T` is refused with the right sizes.
fn layout_round_trips<T>(bytes: &[u8], tail: &[u8]) -> Result<(), TestCaseError>
where
    T: FromBytes + IntoBytes + KnownLayout + Immutable + Copy + core::fmt::Debug,
{
    let n = core::mem::size_of::<T>();
    prop_assert_eq!(bytes.len(), n);
    let mut frame = bytes.to_vec();
    frame.extend_from_slice(tail);
    let (v, rest) = split::<T>(&frame).unwrap();
    prop_assert_eq!(v.as_bytes(), bytes);
    prop_assert_eq!(rest, tail);
    let owned: T = read::<T>(&frame).unwrap();
    prop_assert_eq!(owned.as_bytes(), bytes);
    // Encode the decoded value and decode it again: the same value.
    let again = T::read_from_bytes(owned.as_bytes()).unwrap();
    prop_assert_eq!(again.as_bytes(), owned.as_bytes());
    if n > 0 {
        let short = &bytes[..n - 1];
        let err = split::<T>(short).unwrap_err();
        prop_assert_eq!((err.got, err.need), (n - 1, n));
    }
    Ok(())
}

/// A strategy for `size_of::<T>()` arbitrary bytes and a short arbitrary tail.
fn bytes_for<T>() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (proptest::collection::vec(any::<u8>(), core::mem::size_of::<T>()), proptest::collection::vec(any::<u8>(), 0..16))
}

/// One property per layout: arbitrary bytes are arbitrary field values for these structs (all
/// fields are integers, floats or byte arrays, so every bit pattern is a valid value).
macro_rules! every_layout_round_trips {
    ($($name:ident: $t:ty,)*) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name((bytes, tail) in bytes_for::<$t>()) {
                    layout_round_trips::<$t>(&bytes, &tail)?;
                }
            )*
        }
    };
}

every_layout_round_trips! {
    header: Header,
    hello: Hello,
    challenge: Challenge,
    auth_proof: AuthProof,
    welcome: Welcome,
    empty: Empty,
    array_create: ArrayCreate,
    loc_2d: Loc2D,
    memcpy_2d: Memcpy2D,
    tex_object_create: TexObjectCreate,
    stream_attribute: StreamAttribute,
    stream_attribute_reply: StreamAttributeReply,
    device_ref: DeviceRef,
    device_pair: DevicePair,
    device_attribute: DeviceAttribute,
    device_count_reply: DeviceCountReply,
    i32_reply: I32Reply,
    f32_reply: F32Reply,
    device_info: DeviceInfo,
    limit: Limit,
    limit_reply: LimitReply,
    mem_info_reply: MemInfoReply,
    event_create: EventCreate,
    event_record: EventRecord,
    event_elapsed: EventElapsed,
    launch: Launch,
    mem_alloc: MemAlloc,
    mem_alloc_at: MemAllocAt,
    mem_free: MemFree,
    ptr_ref: PtrRef,
    ptr_reply: PtrReply,
    mem_range_reply: MemRangeReply,
    memcpy_htod: MemcpyHtoD,
    memcpy_dtoh: MemcpyDtoH,
    memcpy_dtod: MemcpyDtoD,
    memset: Memset,
    module_load: ModuleLoad,
    module_get_symbol: ModuleGetSymbol,
    param_info_reply: ParamInfoReply,
    param_info: ParamInfo,
    func_attribute: FuncAttribute,
    occupancy: Occupancy,
    func_set_attribute: FuncSetAttribute,
    stream_create: StreamCreate,
    handle_ref: HandleRef,
    handle_reply: HandleReply,
    stream_wait_event: StreamWaitEvent,
}

/// What [`Header::validate`] must say about a header with these fields (magic checked first,
/// then version, then length).
fn expected_validation(magic: u32, version: u16, len: u64) -> Result<(), HeaderError> {
    if magic != MAGIC {
        Err(HeaderError::BadMagic(magic))
    } else if version != PROTOCOL_VERSION {
        Err(HeaderError::BadVersion(version))
    } else if len > MAX_FRAME_LEN {
        Err(HeaderError::TooLong(len))
    } else {
        Ok(())
    }
}

/// Mostly the real magic and version and lengths near the limit, sometimes anything.
fn magic() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(MAGIC), 1 => any::<u32>()]
}
fn version() -> impl Strategy<Value = u16> {
    prop_oneof![3 => Just(PROTOCOL_VERSION), 1 => any::<u16>()]
}
fn frame_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0..=4096u64,
        1 => (MAX_FRAME_LEN - 2)..=(MAX_FRAME_LEN + 2),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Header fields set through the constructors come back from the bytes unchanged.
    #[test]
    fn header_fields_round_trip(
        opcode in any::<u16>(),
        flags in any::<u32>(),
        status in any::<u32>(),
        id in any::<u64>(),
        len in 0..=MAX_FRAME_LEN,
        async_status in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = Header::new(opcode, Flags(flags), Status(status), id, len);
        h.async_status = U32::new(async_status);
        let mut frame = h.as_bytes().to_vec();
        prop_assert_eq!(frame.len(), HEADER_LEN);
        frame.extend_from_slice(&payload);
        let (back, rest) = Header::parse(&frame).unwrap();
        prop_assert_eq!(back, &h);
        prop_assert_eq!(rest, &payload[..]);
        prop_assert_eq!(back.opcode.get(), opcode);
        prop_assert_eq!(back.flags(), Flags(flags));
        prop_assert_eq!(back.status(), Status(status));
        prop_assert_eq!(back.request_id.get(), id);
        prop_assert_eq!(back.len.get(), len);
        prop_assert_eq!(back.async_status(), Status(async_status));
        prop_assert_eq!(back.payload_len() as u64, len);
        prop_assert_eq!(back.opcode(), Opcode::try_from(opcode));
    }

    /// A reply echoes its request's opcode and id whatever they are, and carries both statuses.
    #[test]
    fn replies_echo_requests(op_index in 0..Opcode::ALL.len(), id in any::<u64>(), len in 0..=MAX_FRAME_LEN,
                             status in any::<u32>(), async_status in any::<u32>()) {
        let op = Opcode::ALL[op_index];
        let req = if id % 2 == 0 { Header::request(op, id, len) } else { Header::request_no_reply(op, id, len) };
        prop_assert_eq!(req.flags().contains(Flags::NO_REPLY), id % 2 == 1);
        let rep = Header::reply(&req, Status(status), 7, Status(async_status));
        let (rep, _) = Header::parse(rep.as_bytes()).unwrap();
        prop_assert_eq!(rep.opcode(), Ok(op));
        prop_assert_eq!(rep.request_id.get(), id);
        prop_assert!(rep.flags().contains(Flags::REPLY));
        prop_assert_eq!((rep.status(), rep.async_status()), (Status(status), Status(async_status)));
    }

    /// Validation accepts a header exactly when magic, version and length are good, and names
    /// the first thing wrong; the other fields never matter.
    #[test]
    fn header_validation_is_exact(
        magic in magic(),
        version in version(),
        len in frame_len(),
        rest in proptest::collection::vec(any::<u8>(), 28),
    ) {
        let mut bytes = Vec::with_capacity(HEADER_LEN);
        bytes.extend_from_slice(&magic.to_le_bytes());
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&rest[..18]); // opcode, flags, status, request id
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&rest[18..26]); // async status, reserved
        prop_assert_eq!(bytes.len(), HEADER_LEN);
        let want = expected_validation(magic, version, len);
        let got = Header::parse(&bytes).map(|(h, rest)| {
            assert!(rest.is_empty());
            assert_eq!(h.len.get(), len);
        });
        prop_assert_eq!(got, want);
        let h = Header::read_from_bytes(&bytes).unwrap();
        prop_assert_eq!(h.validate(), want);
    }

    /// Anything shorter than a header is reported as truncated, never read.
    #[test]
    fn short_headers_are_truncated(bytes in proptest::collection::vec(any::<u8>(), 0..HEADER_LEN)) {
        prop_assert_eq!(Header::parse(&bytes).unwrap_err(), HeaderError::Truncated(bytes.len()));
    }

    /// Output blocks: `len` grows by exactly the prefix and the output, and saturates instead of
    /// wrapping.
    #[test]
    fn attach_output_accounts_for_every_byte(len in any::<u64>(), n in any::<u32>()) {
        let req = Header::request(Opcode::DeviceSynchronize, 1, 0);
        let mut rep = Header::reply(&req, Status::SUCCESS, len, Status::SUCCESS);
        let prefix = rep.attach_output(n);
        prop_assert_eq!(u32::from_le_bytes(prefix), n);
        prop_assert!(rep.flags().contains(Flags::OUTPUT | Flags::REPLY));
        let want = len.saturating_add(4 + u64::from(n));
        prop_assert_eq!(rep.len.get(), want);
    }

    /// Every opcode number either names an opcode that maps back to it, or is reported as unknown.
    #[test]
    fn opcodes_round_trip_or_are_unknown(raw in any::<u16>()) {
        match Opcode::try_from(raw) {
            Ok(op) => {
                prop_assert_eq!(op as u16, raw);
                prop_assert!(Opcode::ALL.contains(&op));
            }
            Err(v) => {
                prop_assert_eq!(v, raw);
                prop_assert!(Opcode::ALL.iter().all(|&op| op as u16 != raw));
            }
        }
    }

    /// Field-level round trips through the constructors of the bulk operations, with their
    /// inline data after the struct, as a whole frame.
    #[test]
    fn bulk_frames_round_trip(
        dev in any::<u32>(),
        addr in any::<u64>(),
        size in any::<u64>(),
        stream in any::<u64>(),
        grid in any::<[u32; 3]>(),
        block in any::<[u32; 3]>(),
        data in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let alloc = MemAllocAt::new(dev, addr, size);
        let back: MemAllocAt = read(alloc.as_bytes()).unwrap();
        prop_assert_eq!((back.device.get(), back.addr.get(), back.size.get()), (dev, addr, size));
        let alloc = MemAlloc::new(dev, size);
        let back: MemAlloc = read(alloc.as_bytes()).unwrap();
        prop_assert_eq!((back.device.get(), back.reserved.get(), back.size.get()), (dev, 0, size));

        let htod = MemcpyHtoD { dst: U64::new(addr), len: U64::new(data.len() as u64), stream: U64::new(stream) };
        let launch = Launch {
            function: U64::new(size),
            stream: U64::new(stream),
            grid: grid.map(U32::new),
            block: block.map(U32::new),
            shared_mem: U32::new(dev),
            params_len: U32::new(u32::try_from(data.len()).unwrap()),
            flags: U32::new(LAUNCH_COOPERATIVE),
            reserved: U32::new(0),
        };
        for (opcode, fixed) in [(Opcode::MemcpyHtoD, htod.as_bytes()), (Opcode::Launch, launch.as_bytes())] {
            let hdr = Header::request_no_reply(opcode, stream, (fixed.len() + data.len()) as u64);
            let mut frame = hdr.as_bytes().to_vec();
            frame.extend_from_slice(fixed);
            frame.extend_from_slice(&data);
            let (h, payload) = Header::parse(&frame).unwrap();
            prop_assert_eq!(h.opcode(), Ok(opcode));
            prop_assert_eq!(h.payload_len(), payload.len());
            if opcode == Opcode::MemcpyHtoD {
                let (o, inline) = split::<MemcpyHtoD>(payload).unwrap();
                prop_assert_eq!(o, &htod);
                prop_assert_eq!(o.len.get(), inline.len() as u64);
                prop_assert_eq!(inline, &data[..]);
            } else {
                let (o, params) = split::<Launch>(payload).unwrap();
                prop_assert_eq!(o.grid.map(|v| v.get()), grid);
                prop_assert_eq!(o.block.map(|v| v.get()), block);
                prop_assert_eq!(o.params_len.get() as usize, params.len());
                prop_assert_eq!(params, &data[..]);
            }
        }

        let loc = Loc2D::array(addr, size, stream, dev);
        let back: Loc2D = read(loc.as_bytes()).unwrap();
        prop_assert_eq!(
            (back.kind.get(), back.addr.get(), back.x.get(), back.y.get(), back.z.get()),
            (LOC_ARRAY, addr, size, stream, dev)
        );
    }
}
