//! The handshake over any [`Link`]: version negotiation, capabilities, token proof.
//!
//! Client: [`client_handshake`] runs all four steps. Server: the supervisor runs
//! [`server_authenticate`] (Hello → Challenge → Auth, checked) and hands the link to a worker,
//! which sends the [`Welcome`] with [`send_welcome`]; the client sends nothing until the Welcome
//! arrives, so no request is read by the wrong process.
//!
//! Statistics (`remora stats`): [`client_stats`] sends a Hello with
//! [`Capabilities::STATS`] and the same proof; the supervisor answers the Auth itself with
//! [`send_server_stats`] (a JSON document in an [`Opcode::ServerStats`] frame) and closes. No
//! worker is involved and no session is counted.

use remora_wire::handshake::{negotiate, Capabilities, MAC_LEN};
use remora_wire::{AuthProof, Challenge, Header, Hello, Opcode, Status, Welcome, PROTOCOL_VERSION, U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use crate::{auth, recv_header, send_frame, Error, Link, Result};

/// Largest handshake payload accepted (a refusal carries a short reason).
const MAX_HANDSHAKE_PAYLOAD: usize = 4096;
/// Largest statistics document accepted (a few hundred bytes per live session).
pub const MAX_STATS_PAYLOAD: usize = 64 << 20;

/// What the server learned from a successful authentication.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// Version both sides speak.
    pub version: u16,
    /// Capabilities both sides have.
    pub capabilities: Capabilities,
    /// The client's claimed pid (logs only).
    pub client_pid: u32,
}

/// Read one handshake-phase frame of opcode `expect` (at most `max` payload bytes); an error
/// status is the peer's refusal, its payload the reason.
pub(crate) fn recv_payload_of(link: &mut dyn Link, expect: Opcode, max: usize) -> Result<(Header, Vec<u8>)> {
    let hdr = recv_header(link)?;
    let len = hdr.payload_len();
    if len > max {
        return Err(Error::Handshake(format!("handshake frame of {len} bytes is too large")));
    }
    let mut payload = vec![0u8; len];
    link.recv_exact(&mut payload)?;
    if !hdr.status().is_ok() {
        let reason = String::from_utf8_lossy(&payload).into_owned();
        return Err(Error::Handshake(format!("refused by server: {} — {reason}", hdr.status())));
    }
    if hdr.opcode() != Ok(expect) {
        return Err(Error::Handshake(format!("expected {:?}, got opcode {:#06x}", expect, hdr.opcode.get())));
    }
    Ok((hdr, payload))
}

/// Send a refusal: an error status and a reason, then the caller drops the link.
pub fn refuse(link: &mut dyn Link, to: &Header, status: Status, reason: &str) -> Result<()> {
    let hdr = Header::reply(to, status, reason.len() as u64, Status::SUCCESS);
    send_frame(link, &hdr, reason.as_bytes(), &[])
}

/// Client side: the whole handshake. `token` is required when the server asks for one.
pub fn client_handshake(
    link: &mut dyn Link,
    token: Option<&[u8]>,
    caps: Capabilities,
) -> Result<(Welcome, Capabilities)> {
    let server_caps = client_authenticate(link, token, caps, None)?;
    let (_, p) = recv_payload_of(link, Opcode::Welcome, MAX_HANDSHAKE_PAYLOAD)?;
    let welcome = Welcome::read_from_prefix(&p).map_err(|_| Error::Handshake("short Welcome".into()))?.0;
    Ok((welcome, server_caps))
}

/// Client side: ask for the server's statistics instead of a session. Runs Hello → Challenge
/// → Auth like [`client_handshake`] (a token is required when the server asks for one) and
/// returns the JSON document of the [`Opcode::ServerStats`] frame that answers it.
pub fn client_stats(link: &mut dyn Link, token: Option<&[u8]>) -> Result<Vec<u8>> {
    client_authenticate(link, token, Capabilities::STATS, Some((Capabilities::STATS, "statistics requests")))?;
    let (_, p) = recv_payload_of(link, Opcode::ServerStats, MAX_STATS_PAYLOAD)?;
    Ok(p)
}

/// Client side, Hello → Challenge → Auth. Stops before the proof when the server lacks the
/// `required` capabilities (named for the error). Returns the capabilities of the Challenge.
fn client_authenticate(
    link: &mut dyn Link,
    token: Option<&[u8]>,
    caps: Capabilities,
    required: Option<(Capabilities, &str)>,
) -> Result<Capabilities> {
    let hello = Hello {
        min_version: U16::new(PROTOCOL_VERSION),
        max_version: U16::new(PROTOCOL_VERSION),
        client_pid: U32::new(std::process::id()),
        capabilities: U64::new(caps.0),
        client_nonce: auth::nonce(),
    };
    send_frame(link, &Header::request(Opcode::Hello, 0, hello.as_bytes().len() as u64), hello.as_bytes(), &[])?;
    let (_, p) = recv_payload_of(link, Opcode::Challenge, MAX_HANDSHAKE_PAYLOAD)?;
    let challenge = Challenge::read_from_prefix(&p).map_err(|_| Error::Handshake("short Challenge".into()))?.0;
    let server_caps = Capabilities(challenge.capabilities.get());
    if let Some((required, what)) = required.filter(|(r, _)| !server_caps.contains(*r)) {
        return Err(Error::Handshake(format!(
            "the server does not answer {what} (capability {:#x} missing: an older version?)",
            required.0
        )));
    }
    let mac = match (token, challenge.auth_required != 0) {
        (Some(t), _) => auth::proof(t, &hello, &challenge),
        (None, true) => {
            return Err(Error::Handshake("the server requires a token: set REMORA_TOKEN or pass --token".into()))
        }
        (None, false) => [0u8; MAC_LEN],
    };
    let proof = AuthProof { mac };
    send_frame(link, &Header::request(Opcode::Auth, 1, proof.as_bytes().len() as u64), proof.as_bytes(), &[])?;
    Ok(server_caps)
}

/// Server side, in the supervisor: read Hello, send Challenge, read and check the proof.
/// On failure a refusal with a reason has been sent and an error is returned; drop the link.
pub fn server_authenticate(link: &mut dyn Link, token: Option<&[u8]>, caps: Capabilities) -> Result<Negotiated> {
    let hdr = recv_header(link)?;
    let len = hdr.payload_len();
    if hdr.opcode() != Ok(Opcode::Hello) || len > MAX_HANDSHAKE_PAYLOAD {
        let why = format!("first frame must be Hello, got opcode {:#06x} with {len} bytes", hdr.opcode.get());
        let _ = refuse(link, &hdr, Status::PROTOCOL, &why);
        return Err(Error::Handshake(why));
    }
    let mut p = vec![0u8; len];
    link.recv_exact(&mut p)?;
    let Ok((hello, _)) = Hello::read_from_prefix(&p) else {
        let _ = refuse(link, &hdr, Status::PROTOCOL, "short Hello");
        return Err(Error::Handshake("short Hello".into()));
    };
    let Some(version) = negotiate(&hello, PROTOCOL_VERSION, PROTOCOL_VERSION) else {
        let why = format!(
            "client speaks versions {}..={}, server speaks {PROTOCOL_VERSION}",
            hello.min_version.get(),
            hello.max_version.get()
        );
        let _ = refuse(link, &hdr, Status::VERSION_MISMATCH, &why);
        return Err(Error::Handshake(why));
    };
    let common = Capabilities(hello.capabilities.get() & caps.0) | (caps & Capabilities::EMULATED);
    let challenge = Challenge {
        version: U16::new(version),
        auth_required: u8::from(token.is_some()),
        reserved: [0; 5],
        capabilities: U64::new(common.0),
        server_nonce: auth::nonce(),
    };
    let reply = Header::reply(&hdr, Status::SUCCESS, challenge.as_bytes().len() as u64, Status::SUCCESS);
    let mut reply = reply;
    reply.opcode = U16::new(Opcode::Challenge as u16);
    send_frame(link, &reply, challenge.as_bytes(), &[])?;
    let ahdr = recv_header(link)?;
    let alen = ahdr.payload_len();
    if ahdr.opcode() != Ok(Opcode::Auth) || alen != MAC_LEN {
        let why = format!(
            "expected Auth with a {MAC_LEN}-byte proof, got opcode {:#06x} with {alen} bytes",
            ahdr.opcode.get()
        );
        let _ = refuse(link, &ahdr, Status::PROTOCOL, &why);
        return Err(Error::Handshake(why));
    }
    let mut mac = [0u8; MAC_LEN];
    link.recv_exact(&mut mac)?;
    if let Some(t) = token {
        if !auth::verify(t, &hello, &challenge, &mac) {
            let why = "token proof does not match (wrong or missing token)";
            let _ = refuse(link, &ahdr, Status::AUTH_FAILED, why);
            return Err(Error::Handshake(why.into()));
        }
    }
    Ok(Negotiated { version, capabilities: common, client_pid: hello.client_pid.get() })
}

/// Server side, in the worker: the last handshake message.
pub fn send_welcome(link: &mut dyn Link, welcome: &Welcome) -> Result<()> {
    let mut hdr = Header::request(Opcode::Welcome, 1, welcome.as_bytes().len() as u64);
    hdr.flags = U32::new(remora_wire::Flags::REPLY.0);
    send_frame(link, &hdr, welcome.as_bytes(), &[])
}

/// Server side, in the supervisor: answer an authenticated statistics request (the Hello
/// asked for [`Capabilities::STATS`]) with `document`, in place of the Welcome.
pub fn send_server_stats(link: &mut dyn Link, document: &[u8]) -> Result<()> {
    if document.len() > MAX_STATS_PAYLOAD {
        return Err(Error::Protocol(format!("statistics document of {} bytes is too large", document.len())));
    }
    let mut hdr = Header::request(Opcode::ServerStats, 1, document.len() as u64);
    hdr.flags = U32::new(remora_wire::Flags::REPLY.0);
    send_frame(link, &hdr, document, &[])
}
