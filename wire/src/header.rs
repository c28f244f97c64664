//! The fixed frame header that starts every message in both directions.

use crate::{Opcode, Status};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `b"RMRA"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"RMRA");
/// The protocol version this crate speaks. Bumped on any incompatible layout change.
pub const PROTOCOL_VERSION: u16 = 1;
/// Size of [`Header`] on the wire.
pub const HEADER_LEN: usize = core::mem::size_of::<Header>();
/// Largest payload a peer may announce (4 GiB). Anything larger is a malformed frame.
pub const MAX_FRAME_LEN: u64 = 4 << 30;
/// Size of the byte count that starts the payload of a reply with [`Flags::OUTPUT`].
pub const OUTPUT_PREFIX_LEN: usize = 4;

/// Frame flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// The frame is a reply to the request with the same id.
    pub const REPLY: Flags = Flags(1);
    /// The sender expects no reply: errors become sticky and are reported with the next reply.
    pub const NO_REPLY: Flags = Flags(2);
    /// Replies only: the payload starts with output the worker's GPU work wrote to its stdout
    /// (device `printf`) since the last reply, to be written to the application's stdout before
    /// the call returns. Layout: a little-endian `u32` byte count `n`
    /// ([`OUTPUT_PREFIX_LEN`] bytes), the `n` output bytes, then the reply's own body. `len`
    /// counts all three, so a frame is still exactly `len` bytes after its header.
    pub const OUTPUT: Flags = Flags(4);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// Frame header: 40 bytes, little-endian.
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | magic | `b"RMRA"` |
/// | 4 | version | [`PROTOCOL_VERSION`] |
/// | 6 | opcode | [`Opcode`] as `u16` (unknown values decode to an "unsupported" reply) |
/// | 8 | flags | [`Flags`] |
/// | 12 | status | replies: the operation's [`Status`]; requests: 0 |
/// | 16 | request_id | chosen by the requester, echoed in the reply |
/// | 24 | len | bytes that follow the header: operation struct + inline data (+ output block, [`Flags::OUTPUT`]) |
/// | 32 | async_status | replies: first error of fire-and-forget operations since the last reply |
/// | 36 | reserved | 0 |
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: U32,
    /// [`PROTOCOL_VERSION`].
    pub version: U16,
    /// Raw opcode; see [`Header::opcode`].
    pub opcode: U16,
    /// Raw [`Flags`].
    pub flags: U32,
    /// Raw [`Status`] (replies only).
    pub status: U32,
    /// Request id, echoed in the reply.
    pub request_id: U64,
    /// Payload length after the header.
    pub len: U64,
    /// Raw [`Status`] of the first failed fire-and-forget operation since the last reply.
    pub async_status: U32,
    /// Must be zero.
    pub reserved: U32,
}

/// Why a header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("truncated header: {0} of {HEADER_LEN} bytes")]
    Truncated(usize),
    /// The magic did not match: not a remora peer, or a desynchronised stream.
    #[error("bad magic {0:#010x} (expected {MAGIC:#010x})")]
    BadMagic(u32),
    /// A protocol version this side does not speak.
    #[error("protocol version {0} not supported (this side speaks {PROTOCOL_VERSION})")]
    BadVersion(u16),
    /// The announced payload is larger than [`MAX_FRAME_LEN`].
    #[error("announced payload of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLong(u64),
}

impl Header {
    /// A request header.
    pub fn request(opcode: Opcode, request_id: u64, len: u64) -> Header {
        Header::new(opcode as u16, Flags::default(), Status::SUCCESS, request_id, len)
    }

    /// A fire-and-forget request header (no reply expected).
    pub fn request_no_reply(opcode: Opcode, request_id: u64, len: u64) -> Header {
        Header::new(opcode as u16, Flags::NO_REPLY, Status::SUCCESS, request_id, len)
    }

    /// A reply to `req` carrying `status`, `len` payload bytes and the pending fire-and-forget error.
    pub fn reply(req: &Header, status: Status, len: u64, async_status: Status) -> Header {
        let mut h = Header::new(req.opcode.get(), Flags::REPLY, status, req.request_id.get(), len);
        h.async_status = U32::new(async_status.0);
        h
    }

    /// A header with every field given.
    pub fn new(opcode: u16, flags: Flags, status: Status, request_id: u64, len: u64) -> Header {
        Header {
            magic: U32::new(MAGIC),
            version: U16::new(PROTOCOL_VERSION),
            opcode: U16::new(opcode),
            flags: U32::new(flags.0),
            status: U32::new(status.0),
            request_id: U64::new(request_id),
            len: U64::new(len),
            async_status: U32::new(0),
            reserved: U32::new(0),
        }
    }

    /// Split `buf` into a validated header and the bytes after it.
    pub fn parse(buf: &[u8]) -> Result<(&Header, &[u8]), HeaderError> {
        let (h, rest) = Header::ref_from_prefix(buf).map_err(|_| HeaderError::Truncated(buf.len()))?;
        h.validate()?;
        Ok((h, rest))
    }

    /// Check magic, version and length.
    pub fn validate(&self) -> Result<(), HeaderError> {
        if self.magic.get() != MAGIC {
            return Err(HeaderError::BadMagic(self.magic.get()));
        }
        if self.version.get() != PROTOCOL_VERSION {
            return Err(HeaderError::BadVersion(self.version.get()));
        }
        if self.len.get() > MAX_FRAME_LEN {
            return Err(HeaderError::TooLong(self.len.get()));
        }
        Ok(())
    }

    /// The opcode, or the raw value when this side does not know it.
    pub fn opcode(&self) -> Result<Opcode, u16> {
        Opcode::try_from(self.opcode.get())
    }

    /// Attach `output_len` bytes of captured output to a reply (see [`Flags::OUTPUT`]): sets the
    /// flag and grows `len` by the prefix and the output. Returns the prefix, to be sent right
    /// after the header and followed by the output, then the reply's body.
    pub fn attach_output(&mut self, output_len: u32) -> [u8; OUTPUT_PREFIX_LEN] {
        self.flags = U32::new(self.flags.get() | Flags::OUTPUT.0);
        self.len = U64::new(self.len.get().saturating_add(OUTPUT_PREFIX_LEN as u64 + u64::from(output_len)));
        output_len.to_le_bytes()
    }

    /// The flags.
    pub fn flags(&self) -> Flags {
        Flags(self.flags.get())
    }

    /// The reply status.
    pub fn status(&self) -> Status {
        Status(self.status.get())
    }

    /// The pending fire-and-forget error carried by a reply.
    pub fn async_status(&self) -> Status {
        Status(self.async_status.get())
    }

    /// Payload length as `usize` (validated headers always fit on 64-bit targets).
    pub fn payload_len(&self) -> usize {
        usize::try_from(self.len.get()).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn header_bytes_are_pinned() {
        let h = Header::request(Opcode::MemAlloc, 0x0102_0304_0506_0708, 16);
        let expected: [u8; 40] = [
            b'R', b'M', b'R', b'A', // magic
            1, 0, // version
            0x20, 0x00, // opcode MemAlloc = 0x0020
            0, 0, 0, 0, // flags
            0, 0, 0, 0, // status
            8, 7, 6, 5, 4, 3, 2, 1, // request id
            16, 0, 0, 0, 0, 0, 0, 0, // len
            0, 0, 0, 0, // async status
            0, 0, 0, 0, // reserved
        ];
        assert_eq!(h.as_bytes(), &expected);
        assert_eq!(HEADER_LEN, 40);
    }

    #[test]
    fn output_reply_bytes_are_pinned() {
        let req = Header::request(Opcode::DeviceSynchronize, 7, 4);
        let mut rep = Header::reply(&req, Status::SUCCESS, 2, Status::SUCCESS);
        let prefix = rep.attach_output(3);
        let mut frame = rep.as_bytes().to_vec();
        frame.extend_from_slice(&prefix);
        frame.extend_from_slice(b"hi\n");
        frame.extend_from_slice(&[0xaa, 0xbb]); // the reply's own body
        let expected: [u8; 49] = [
            b'R', b'M', b'R', b'A', // magic
            1, 0, // version
            0x15, 0x00, // opcode DeviceSynchronize = 0x0015
            5, 0, 0, 0, // flags: REPLY | OUTPUT
            0, 0, 0, 0, // status
            7, 0, 0, 0, 0, 0, 0, 0, // request id
            9, 0, 0, 0, 0, 0, 0, 0, // len: 4 (count) + 3 (output) + 2 (body)
            0, 0, 0, 0, // async status
            0, 0, 0, 0, // reserved
            3, 0, 0, 0, // output byte count
            b'h', b'i', b'\n', // output
            0xaa, 0xbb, // body
        ];
        assert_eq!(frame, expected);
        assert_eq!(Flags::OUTPUT.0, 4);
        assert!(rep.flags().contains(Flags::REPLY | Flags::OUTPUT));
        assert_eq!(rep.payload_len(), 9);
    }

    #[test]
    fn reply_echoes_request() {
        let req = Header::request_no_reply(Opcode::Launch, 9, 0);
        assert!(req.flags().contains(Flags::NO_REPLY));
        let rep = Header::reply(&req, Status::INVALID_VALUE, 4, Status::LAUNCH_FAILED);
        assert_eq!(rep.request_id.get(), 9);
        assert_eq!(rep.opcode(), Ok(Opcode::Launch));
        assert!(rep.flags().contains(Flags::REPLY));
        assert_eq!(rep.status(), Status::INVALID_VALUE);
        assert_eq!(rep.async_status(), Status::LAUNCH_FAILED);
        assert_eq!(rep.as_bytes()[12..16], [1, 0, 0, 0]);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Header::parse(&[0; 10]).unwrap_err(), HeaderError::Truncated(10));
        let mut bytes = Header::request(Opcode::Ping, 1, 0).as_bytes().to_vec();
        bytes[0] = b'X';
        assert!(matches!(Header::parse(&bytes), Err(HeaderError::BadMagic(_))));
        let mut bytes = Header::request(Opcode::Ping, 1, 0).as_bytes().to_vec();
        bytes[4] = 99;
        assert_eq!(Header::parse(&bytes).unwrap_err(), HeaderError::BadVersion(99));
        let h = Header::request(Opcode::Ping, 1, MAX_FRAME_LEN + 1);
        assert!(matches!(Header::parse(h.as_bytes()), Err(HeaderError::TooLong(_))));
    }

    #[test]
    fn unknown_opcode_is_reported_not_panicking() {
        let h = Header::new(0xfffe, Flags::default(), Status::SUCCESS, 1, 0);
        let (h, _) = Header::parse(h.as_bytes()).unwrap();
        assert_eq!(h.opcode(), Err(0xfffe));
    }
}
