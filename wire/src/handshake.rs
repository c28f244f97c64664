//! The session handshake.
//!
//! ```text
//! client                                   server
//!   Hello {versions, caps, client nonce} ──▶
//!                                        ◀── Challenge {version, caps, auth required, server nonce}
//!   Auth {HMAC-SHA256(token, transcript)} ─▶       (all-zero proof when no token is configured)
//!                                        ◀── Welcome {session id, worker pid} or an error status
//! ```
//! The `Hello` frame is always sent with header version 1 so that every server can read it;
//! versions are negotiated from its `min_version..=max_version` range. The token never crosses
//! the network: the proof is a MAC over both nonces (see [`auth_transcript`]). The MAC itself is
//! computed by the transport crate; this crate only fixes the bytes.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 32;
/// HMAC-SHA256 output length.
pub const MAC_LEN: usize = 32;
/// Domain-separation prefix of the authentication transcript.
pub const AUTH_CONTEXT: &[u8; 16] = b"remora-auth-v1\0\0";

/// Capability bits exchanged in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// Fire-and-forget operations with sticky errors reported in reply headers.
    pub const ASYNC_OPS: Capabilities = Capabilities(1);
    /// Same-host shared-memory rings.
    pub const SHM: Capabilities = Capabilities(1 << 1);
    /// RDMA verbs transport.
    pub const RDMA: Capabilities = Capabilities(1 << 2);
    /// GPUDirect RDMA into device memory.
    pub const GPUDIRECT: Capabilities = Capabilities(1 << 3);
    /// The server runs the emulated backend (a test double, not a GPU).
    pub const EMULATED: Capabilities = Capabilities(1 << 4);
    /// The client reads device output blocks in replies ([`crate::Flags::OUTPUT`]).
    pub const DEVICE_OUTPUT: Capabilities = Capabilities(1 << 5);
    /// In a Hello: this connection asks for the server's statistics, not a session; the
    /// supervisor answers the proven Auth with a [`crate::Opcode::ServerStats`] frame instead
    /// of a Welcome and closes. In a Challenge: the server answers such requests (a client
    /// that does not see it stops before its Auth, so an older server starts no session).
    pub const STATS: Capabilities = Capabilities(1 << 6);
    /// Extra TCP connections for large copies ([`crate::Opcode::StripeOffer`]).
    pub const STRIPES: Capabilities = Capabilities(1 << 7);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitAnd for Capabilities {
    type Output = Capabilities;
    fn bitand(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 & rhs.0)
    }
}

impl core::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

/// First message, client → server.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Hello {
    /// Oldest protocol version the client speaks.
    pub min_version: U16,
    /// Newest protocol version the client speaks.
    pub max_version: U16,
    /// Client process id (for logs and statistics only; never trusted).
    pub client_pid: U32,
    /// [`Capabilities`] the client supports.
    pub capabilities: U64,
    /// Fresh random bytes.
    pub client_nonce: [u8; NONCE_LEN],
}

/// Second message, server → client.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Challenge {
    /// Version chosen by the server.
    pub version: U16,
    /// 1 if a token proof is required.
    pub auth_required: u8,
    /// Zero.
    pub reserved: [u8; 5],
    /// [`Capabilities`] the server offers (intersection with the client's).
    pub capabilities: U64,
    /// Fresh random bytes.
    pub server_nonce: [u8; NONCE_LEN],
}

/// Third message, client → server.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct AuthProof {
    /// HMAC-SHA256(token, [`auth_transcript`]); zero when the client has no token.
    pub mac: [u8; MAC_LEN],
}

/// Last message, server → client, sent with status SUCCESS; failures are an empty reply with an
/// error status and a UTF-8 reason as payload.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Welcome {
    /// Server-unique session id.
    pub session_id: U64,
    /// Process id of the worker that serves this session.
    pub worker_pid: U32,
    /// Number of GPUs visible to the session.
    pub device_count: U32,
    /// Backend name, NUL-padded ASCII (`cuda`, `emulated`).
    pub backend: [u8; 16],
}

/// The bytes the authentication MAC covers: context, both nonces, chosen version.
pub fn auth_transcript(hello: &Hello, challenge: &Challenge) -> [u8; 16 + 2 * NONCE_LEN + 2] {
    let mut t = [0u8; 16 + 2 * NONCE_LEN + 2];
    t[..16].copy_from_slice(AUTH_CONTEXT);
    t[16..16 + NONCE_LEN].copy_from_slice(&hello.client_nonce);
    t[16 + NONCE_LEN..16 + 2 * NONCE_LEN].copy_from_slice(&challenge.server_nonce);
    t[16 + 2 * NONCE_LEN..].copy_from_slice(&challenge.version.get().to_le_bytes());
    t
}

/// Pick the highest version both sides speak.
pub fn negotiate(hello: &Hello, ours_min: u16, ours_max: u16) -> Option<u16> {
    let hi = hello.max_version.get().min(ours_max);
    let lo = hello.min_version.get().max(ours_min);
    (lo <= hi).then_some(hi)
}

impl Welcome {
    /// The backend name as a string.
    pub fn backend_name(&self) -> &str {
        let end = self.backend.iter().position(|&b| b == 0).unwrap_or(self.backend.len());
        core::str::from_utf8(&self.backend[..end]).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, Opcode};
    use zerocopy::IntoBytes;

    #[test]
    fn hello_bytes_are_pinned() {
        let hello = Hello {
            min_version: U16::new(1),
            max_version: U16::new(1),
            client_pid: U32::new(0x1234),
            capabilities: U64::new(Capabilities::ASYNC_OPS.0 | Capabilities::SHM.0),
            client_nonce: [0xAB; NONCE_LEN],
        };
        let hdr = Header::request(Opcode::Hello, 0, hello.as_bytes().len() as u64);
        let mut frame = hdr.as_bytes().to_vec();
        frame.extend_from_slice(hello.as_bytes());
        let mut expected = vec![
            b'R', b'M', b'R', b'A', 1, 0, 0x01, 0x00, // magic, version, opcode Hello
            0, 0, 0, 0, 0, 0, 0, 0, // flags, status
            0, 0, 0, 0, 0, 0, 0, 0, // request id
            48, 0, 0, 0, 0, 0, 0, 0, // len
            0, 0, 0, 0, 0, 0, 0, 0, // async status, reserved
            1, 0, 1, 0, // min, max version
            0x34, 0x12, 0, 0, // pid
            3, 0, 0, 0, 0, 0, 0, 0, // capabilities
        ];
        expected.extend_from_slice(&[0xAB; 32]);
        assert_eq!(frame, expected);
    }

    #[test]
    fn challenge_and_welcome_sizes_are_pinned() {
        assert_eq!(core::mem::size_of::<Challenge>(), 48);
        assert_eq!(core::mem::size_of::<AuthProof>(), 32);
        assert_eq!(core::mem::size_of::<Welcome>(), 32);
        let c = Challenge {
            version: U16::new(1),
            auth_required: 1,
            reserved: [0; 5],
            capabilities: U64::new(1),
            server_nonce: [7; NONCE_LEN],
        };
        assert_eq!(&c.as_bytes()[..16], &[1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn negotiation_and_transcript() {
        let mut hello = Hello {
            min_version: U16::new(1),
            max_version: U16::new(3),
            client_pid: U32::new(1),
            capabilities: U64::new(0),
            client_nonce: [1; NONCE_LEN],
        };
        assert_eq!(negotiate(&hello, 1, 1), Some(1));
        assert_eq!(negotiate(&hello, 1, 2), Some(2));
        hello.min_version = U16::new(4);
        hello.max_version = U16::new(5);
        assert_eq!(negotiate(&hello, 1, 2), None);
        let c = Challenge {
            version: U16::new(1),
            auth_required: 0,
            reserved: [0; 5],
            capabilities: U64::new(0),
            server_nonce: [2; NONCE_LEN],
        };
        let t = auth_transcript(&hello, &c);
        assert_eq!(&t[..14], b"remora-auth-v1");
        assert_eq!(t[16], 1);
        assert_eq!(t[48], 2);
        assert_eq!(&t[80..], &[1, 0]);
    }
}
