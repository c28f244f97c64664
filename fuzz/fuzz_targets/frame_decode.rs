//! Arbitrary bytes as one frame: header parsing and validation (directly and through a link,
//! as the server reads it), then every operation struct's decode of the payload, and for the
//! header's opcode the decode and inline-data checks the server does. Must never panic; the two
//! header paths must agree, and a decoded struct must be exactly the bytes it came from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use remora_transport::testing::MemLink;
use remora_transport::{recv_header, Error};
use remora_wire::handshake::{auth_transcript, negotiate, AuthProof, Challenge, Hello, Welcome};
use remora_wire::ops::{self, ImageKind};
use remora_wire::{read, split, Header, HeaderError, Opcode, Status, HEADER_LEN};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Decode `T` from the start of `p` both ways the crates offer; they must agree with the bytes.
fn decode<T>(p: &[u8]) -> Option<T>
where
    T: FromBytes + IntoBytes + KnownLayout + Immutable + Copy,
{
    let n = core::mem::size_of::<T>();
    match split::<T>(p) {
        Ok((v, rest)) => {
            assert_eq!(v.as_bytes(), &p[..n]);
            assert_eq!(rest, &p[n..]);
            let owned = read::<T>(p).ok()?;
            assert_eq!(owned.as_bytes(), v.as_bytes());
            Some(owned)
        }
        Err(e) => {
            assert!(p.len() < n, "refused a {}-byte payload for a {n}-byte struct", p.len());
            assert_eq!((e.got, e.need), (p.len(), n));
            assert!(read::<T>(p).is_err());
            let _ = e.to_string();
            None
        }
    }
}

/// Every layout the protocol has, decoded from the same bytes, with their helper methods.
fn decode_every_layout(p: &[u8]) {
    decode::<ops::Empty>(p);
    decode::<ops::ArrayCreate>(p).map(|a| ops::array_element_bytes(a.format.get(), a.channels.get()));
    decode::<ops::Loc2D>(p);
    decode::<ops::Memcpy2D>(p);
    decode::<ops::TexObjectCreate>(p);
    decode::<ops::StreamAttribute>(p);
    decode::<ops::StreamAttributeReply>(p);
    decode::<ops::DeviceRef>(p);
    decode::<ops::DevicePair>(p);
    decode::<ops::DeviceAttribute>(p);
    decode::<ops::DeviceCountReply>(p);
    decode::<ops::I32Reply>(p);
    decode::<ops::F32Reply>(p);
    if let Some(info) = decode::<ops::DeviceInfo>(p) {
        let _ = info.name_str();
        for attr in [0, 1, 159, 160, u32::MAX] {
            let _ = info.attribute(attr);
        }
    }
    decode::<ops::Limit>(p);
    decode::<ops::LimitReply>(p);
    decode::<ops::MemInfoReply>(p);
    decode::<ops::EventCreate>(p);
    decode::<ops::EventRecord>(p);
    decode::<ops::EventElapsed>(p);
    decode::<ops::Launch>(p);
    decode::<ops::MemAlloc>(p);
    decode::<ops::MemAllocAt>(p);
    decode::<ops::MemFree>(p);
    decode::<ops::PtrRef>(p);
    decode::<ops::PtrReply>(p);
    decode::<ops::MemRangeReply>(p);
    decode::<ops::MemcpyHtoD>(p);
    decode::<ops::MemcpyDtoH>(p);
    decode::<ops::MemcpyDtoD>(p);
    decode::<ops::Memset>(p);
    decode::<ops::ModuleLoad>(p).map(|m| ImageKind::try_from(m.kind.get()));
    decode::<ops::ModuleGetSymbol>(p);
    decode::<ops::ParamInfoReply>(p);
    decode::<ops::ParamInfo>(p);
    decode::<ops::FuncAttribute>(p);
    decode::<ops::Occupancy>(p);
    decode::<ops::FuncSetAttribute>(p);
    decode::<ops::StreamCreate>(p);
    decode::<ops::HandleRef>(p);
    decode::<ops::HandleReply>(p);
    decode::<ops::StreamWaitEvent>(p);
    decode::<AuthProof>(p);
    if let Some(w) = decode::<Welcome>(p) {
        let _ = w.backend_name();
    }
    let hello = decode::<Hello>(p);
    let challenge = decode::<Challenge>(p);
    if let (Some(h), Some(c)) = (hello, challenge) {
        let _ = negotiate(&h, 1, 1);
        let _ = negotiate(&h, c.version.get(), u16::MAX);
        let _ = auth_transcript(&h, &c);
    }
}

/// The payload checks the server does for `op` (session.rs), on a payload of `p`.
fn server_checks(op: Opcode, p: &[u8]) {
    match op {
        Opcode::MemcpyHtoD => {
            if let Some(o) = decode::<ops::MemcpyHtoD>(p) {
                let data = p.len() - core::mem::size_of::<ops::MemcpyHtoD>();
                let _ = o.len.get() == data as u64;
            }
        }
        Opcode::Memcpy2D => {
            if let Some(o) = decode::<ops::Memcpy2D>(p) {
                let _host = o.src.kind.get() == ops::LOC_HOST;
                let _ = o.width.get().saturating_mul(o.height.get());
            }
        }
        Opcode::ModuleLoad => {
            if let Some(o) = decode::<ops::ModuleLoad>(p) {
                let _ = ImageKind::try_from(o.kind.get());
            }
        }
        Opcode::ModuleGetFunction | Opcode::ModuleGetGlobal => {
            if let Ok((o, rest)) = split::<ops::ModuleGetSymbol>(p) {
                if let Some(name) = rest.get(..o.name_len.get() as usize) {
                    let _ = std::str::from_utf8(name);
                }
            }
        }
        Opcode::Launch => {
            if let Ok((o, params)) = split::<ops::Launch>(p) {
                let _ = params.len() == o.params_len.get() as usize;
            }
        }
        Opcode::StreamSetAttribute | Opcode::StreamGetAttribute => {
            if let Some(o) = decode::<ops::StreamAttribute>(p) {
                let word = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&o.value[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(b)
                };
                let _ = (word(0), word(1));
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = Header::parse(data);
    // The server reads headers through its link: the same verdict.
    let (mut link, _) = MemLink::new(data);
    let via_link = recv_header(&mut link);
    match (&parsed, &via_link) {
        (Ok((h, _)), Ok(h2)) => assert_eq!(*h, h2),
        (Err(HeaderError::Truncated(n)), Err(Error::PeerClosed)) => assert!(*n < HEADER_LEN),
        (Err(e), Err(Error::BadHeader(e2))) => assert_eq!(e, e2),
        (a, b) => panic!("Header::parse says {a:?}, recv_header says {b:?}"),
    }
    let payload = match parsed {
        Ok((h, rest)) => {
            assert!(h.len.get() <= remora_wire::MAX_FRAME_LEN);
            let _ = (h.flags(), h.status(), h.async_status(), h.payload_len());
            // What the frame carries after its header, as far as the bytes go.
            let payload = &rest[..rest.len().min(h.payload_len())];
            match h.opcode() {
                Ok(op) => {
                    let _ = op.name();
                    server_checks(op, payload);
                }
                Err(raw) => assert!(Opcode::try_from(raw).is_err()),
            }
            for s in [h.status(), h.async_status()] {
                let _ = (s.name(), s.description(), s.is_fatal(), s.to_string());
            }
            payload
        }
        Err(e) => {
            let _ = e.to_string();
            data
        }
    };
    decode_every_layout(payload);
    let _ = Status(u32::from_le_bytes([0, 0, 0, data.first().copied().unwrap_or(0)])).to_string();
});
