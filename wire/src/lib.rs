//! remora's wire format.
//!
//! Plain data and no I/O: every message is a fixed [`Header`] followed by an
//! operation struct and, for some operations, inline bytes (a copy's data, a
//! module image, a kernel's parameter buffer). All layouts are `#[repr(C)]`
//! structs of little-endian, unaligned integer types, so they have no padding
//! and decode with `ref_from_prefix`, never a copy.
//!
//! # Quick start
//! ```
//! use remora_wire::{Header, Opcode, ops::MemAlloc};
//! use zerocopy::IntoBytes;
//!
//! let op = MemAlloc::new(0, 1 << 20);
//! let hdr = Header::request(Opcode::MemAlloc, 7, op.as_bytes().len() as u64);
//! let mut frame = hdr.as_bytes().to_vec();
//! frame.extend_from_slice(op.as_bytes());
//!
//! let (hdr, rest) = Header::parse(&frame).unwrap();
//! assert_eq!(hdr.opcode(), Ok(Opcode::MemAlloc));
//! let (op, _data) = remora_wire::split::<MemAlloc>(rest).unwrap();
//! assert_eq!(op.size.get(), 1 << 20);
//! ```
#![forbid(unsafe_code)]

pub mod handshake;
pub mod header;
pub mod opcode;
pub mod ops;
pub mod status;

pub use handshake::{AuthProof, Capabilities, Challenge, Hello, Welcome};
pub use header::{Flags, Header, HeaderError, HEADER_LEN, MAGIC, MAX_FRAME_LEN, OUTPUT_PREFIX_LEN, PROTOCOL_VERSION};
pub use opcode::Opcode;
pub use status::Status;

pub use zerocopy::little_endian::{I32, I64, U16, U32, U64};

use zerocopy::{FromBytes, Immutable, KnownLayout};

/// Error when a payload is shorter than the operation struct it must start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payload of {got} bytes is shorter than the {need}-byte {what}")]
pub struct ShortPayload {
    /// Bytes present.
    pub got: usize,
    /// Bytes the struct needs.
    pub need: usize,
    /// The struct's name.
    pub what: &'static str,
}

/// Split a payload into its leading operation struct and the inline bytes after it.
pub fn split<T>(payload: &[u8]) -> Result<(&T, &[u8]), ShortPayload>
where
    T: FromBytes + KnownLayout + Immutable,
{
    T::ref_from_prefix(payload).map_err(|_| ShortPayload {
        got: payload.len(),
        need: core::mem::size_of::<T>(),
        what: core::any::type_name::<T>().rsplit("::").next().unwrap_or("struct"),
    })
}

/// Read an operation struct from the start of a payload by value (for payloads that are not aligned
/// or must outlive their buffer). All wire structs are `Unaligned`, so this never fails on alignment.
pub fn read<T>(payload: &[u8]) -> Result<T, ShortPayload>
where
    T: FromBytes + KnownLayout + Immutable + Copy,
{
    split::<T>(payload).map(|(t, _)| *t)
}
