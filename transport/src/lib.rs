//! remora's transports.
//!
//! A transport carries frames ([`remora_wire::Header`] + payload) between a client and a server
//! as an ordered, reliable byte stream. Every backend implements the small polled [`Link`]
//! trait; protocol logic that needs no I/O (request ids, reply matching, credits, keep-alive,
//! peer-death timers, handshake checks) lives in [`proto`] and reads no clock: time is passed in.
//!
//! Backends:
//! - [`tcp`]: `tcp://host:port`: TCP_NODELAY, vectored writes, payloads read straight into the
//!   caller's destination buffer.
//! - [`shm`]: `shm://name`: same-host shared memory. Two single-producer/single-consumer byte rings
//!   in a memory region both processes map, polled with atomics; a Unix socket beside it carries
//!   only the region's file descriptor at setup, wake-ups for a parked peer, and peer death (EOF).
//! - [`verbs`]: `rdma://host:port`: an RC queue pair set up with rdma_cm after the handshake
//!   (which runs over TCP on the same address); inline SENDs into pre-posted receive slots with
//!   credits, busy-polled completion queues, and one-sided RDMA READ/WRITE of memory the peer
//!   registered ([`RemoteMemory`]).
//!
//! # Quick start
//! ```no_run
//! use remora_transport::{connect, Endpoint, send_frame, recv_header};
//! use remora_wire::{Header, Opcode};
//!
//! let ep: Endpoint = "tcp://127.0.0.1:7070".parse().unwrap();
//! let mut link = connect(&ep).unwrap();
//! send_frame(&mut *link, &Header::request(Opcode::Ping, 1, 0), &[], &[]).unwrap();
//! let reply = recv_header(&mut *link).unwrap();
//! assert_eq!(reply.request_id.get(), 1);
//! ```
//!
//! # Thread safety
//! A [`Link`] is `Send` but not `Sync`: one thread drives it at a time. The client core puts its
//! link behind a lock; the server's worker owns its link on its polling thread.
//!
//! # Resource cleanup
//! Dropping a link closes it; the peer sees [`Error::PeerClosed`]. A shared-memory region is an
//! unlinked file: the kernel frees it when the last process holding it exits, killed or not.

pub mod auth;
pub mod fdpass;
pub mod handshake;
pub mod proto;
pub mod shm;
pub mod stripes;
mod sys;
pub mod tcp;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verbs;

use std::fmt;
use std::os::fd::OwnedFd;
use std::str::FromStr;
use std::time::Duration;

use remora_wire::{Header, HeaderError, HEADER_LEN};
use zerocopy::{FromBytes, IntoBytes};

/// Transport errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed the connection or its process died.
    #[error("peer closed the connection")]
    PeerClosed,
    /// An I/O error on the underlying socket or region.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A frame header that does not parse.
    #[error("malformed frame: {0}")]
    BadHeader(#[from] HeaderError),
    /// A frame that parses but breaks the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A URL that names no transport this build has.
    #[error("bad endpoint {url:?}: {why}")]
    BadEndpoint {
        /// The text given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// No reply or keep-alive within the configured time.
    #[error("peer silent for {0:?}")]
    Timeout(Duration),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

impl Error {
    /// Wrap an I/O error with what was being done; maps connection-loss kinds to [`Error::PeerClosed`].
    pub fn io(op: &'static str, source: std::io::Error) -> Error {
        use std::io::ErrorKind::*;
        match source.kind() {
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => Error::PeerClosed,
            _ => Error::Io { op, source },
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where to connect or listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `tcp://host:port`.
    Tcp(String),
    /// `shm://name`: a Unix socket named `name` in the abstract namespace sets up the region.
    Shm(String),
    /// `rdma://host:port`: the handshake runs over TCP at `host:port`, then the session moves
    /// to an RDMA queue pair the worker offers ([`verbs`]).
    Rdma(String),
}

impl FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::BadEndpoint { url: s.to_string(), why: why.to_string() };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("expected scheme://address"))?;
        if rest.is_empty() {
            return Err(bad("empty address"));
        }
        match scheme {
            "tcp" | "rdma" => {
                let (_, port) = rest.rsplit_once(':').ok_or_else(|| bad("expected host:port"))?;
                port.parse::<u16>().map_err(|_| bad("port is not a number 0-65535"))?;
                Ok(if scheme == "tcp" { Endpoint::Tcp(rest.to_string()) } else { Endpoint::Rdma(rest.to_string()) })
            }
            "shm" => {
                if rest.len() > 100 || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                    return Err(bad("shm names are at most 100 characters of [A-Za-z0-9._-]"));
                }
                Ok(Endpoint::Shm(rest.to_string()))
            }
            _ => Err(bad("unknown scheme (expected tcp://, shm:// or rdma://)")),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Shm(n) => write!(f, "shm://{n}"),
            Endpoint::Rdma(a) => write!(f, "rdma://{a}"),
        }
    }
}

impl Endpoint {
    /// Whether the endpoint can only be reached from this host (shm, or tcp on a loopback address).
    pub fn is_local_only(&self) -> bool {
        match self {
            Endpoint::Shm(_) => true,
            Endpoint::Tcp(a) | Endpoint::Rdma(a) => {
                let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

/// Which backend a [`Handoff`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkKind {
    /// [`tcp::TcpLink`]: one fd, the socket.
    Tcp = 1,
    /// [`shm::ShmLink`]: two fds, the control socket then the region.
    Shm = 2,
}

/// Sends on a link's connection from another thread ([`Link::send_half`]): the frames go out
/// on the same stream, so the caller orders them with the link's own sends.
#[derive(Debug)]
pub struct SendHalf {
    fd: std::os::fd::OwnedFd,
}

impl SendHalf {
    pub(crate) fn new(fd: std::os::fd::OwnedFd) -> SendHalf {
        SendHalf { fd }
    }

    /// Send `parts` whole, as [`Link::send`] does.
    pub fn send(&self, parts: &[&[u8]]) -> Result<()> {
        use std::os::fd::AsRawFd;
        sys::send_all_vectored(self.fd.as_raw_fd(), parts).map_err(|e| Error::io("send", e))
    }
}

/// A link taken apart into file descriptors, to be passed to another process ([`fdpass`]) and
/// rebuilt there with [`from_handoff`]. A link buffers no bytes unless read-ahead was turned on
/// ([`Link::set_read_ahead`]), and then refuses the handoff while it holds any, so none are lost.
#[derive(Debug)]
pub struct Handoff {
    /// Backend.
    pub kind: LinkKind,
    /// The descriptors, in the backend's order.
    pub fds: Vec<OwnedFd>,
    /// Which side of the rings the holder is (shm only: true for the server side).
    pub server_side: bool,
}

/// How a waiting side spends its time: spin on shared state first, then sleep in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// Busy-poll this long before parking.
    pub spin: Duration,
}

impl Default for PollPolicy {
    fn default() -> PollPolicy {
        PollPolicy { spin: Duration::from_micros(50) }
    }
}

/// One side of a connection: an ordered, reliable byte stream with polling.
///
/// Frames are written with one [`Link::send`] call (header, operation struct and data as
/// separate parts, gathered without copying them together) and read piecewise with
/// [`Link::recv_exact`], so a payload can land straight in its destination.
pub trait Link: Send + fmt::Debug {
    /// Write every byte of `parts`, in order. Blocks while the peer's receive window is full.
    fn send(&mut self, parts: &[&[u8]]) -> Result<()>;
    /// Read exactly `buf.len()` bytes, spinning then parking per the link's [`PollPolicy`].
    fn recv_exact(&mut self, buf: &mut [u8]) -> Result<()>;
    /// Whether at least one byte can be read now, without blocking. Detects peer death.
    fn poll_readable(&mut self) -> Result<bool>;
    /// Sleep until readable or until `timeout` passes; returns whether readable.
    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<bool>;
    /// Set the spin-then-park policy.
    fn set_poll_policy(&mut self, policy: PollPolicy);
    /// Make [`Link::recv_exact`] fail with [`Error::Timeout`] when no byte arrives for `timeout`
    /// (`None`: wait for ever). Used around handshakes, so a silent peer cannot hold a thread.
    fn set_recv_timeout(&mut self, timeout: Option<Duration>);
    /// Declare the peer dead when it stops answering *at the transport level* (its host or the
    /// network gone, not a long operation) for about `timeout`, even while blocked in
    /// [`Link::recv_exact`]. TCP: keep-alive probes and `TCP_USER_TIMEOUT`. Links whose peer's
    /// death is reported at once (shm: the doorbell socket closes) ignore it.
    fn set_dead_peer_timeout(&mut self, _timeout: Duration) -> Result<()> {
        Ok(())
    }
    /// The backend's name (`tcp`, `shm`).
    fn kind(&self) -> &'static str;
    /// The peer, for logs.
    fn peer(&self) -> String;
    /// Take the link apart into descriptors for another process.
    fn into_handoff(self: Box<Self>) -> Result<Handoff>;
    /// A second handle that sends on this link from another thread ([`SendHalf`]), where the
    /// backend has one (tcp: the same socket). Whoever uses it must order its sends with the
    /// link's own.
    fn send_half(&self) -> Option<SendHalf> {
        None
    }
    /// Let [`Link::recv_exact`] take more than it was asked for and keep the rest for the next
    /// reads, where the backend gains from it (tcp: one `recv` for a burst of small frames).
    /// Only for a link that stays in this process: a handoff fails while bytes are buffered.
    /// Turning it off keeps it on while bytes are buffered.
    fn set_read_ahead(&mut self, _on: bool) {}
    /// This side's socket address, where the backend has one (tcp).
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
    /// One-sided access to the peer's registered memory, where the backend has it (verbs).
    fn remote_memory(&mut self) -> Option<&mut dyn RemoteMemory> {
        None
    }
}

/// What a link with [`RemoteMemory`] has moved, for tests and statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteCounters {
    /// Bytes sent through the message path (frames).
    pub sent_bytes: u64,
    /// Bytes received through the message path.
    pub received_bytes: u64,
    /// Bytes this side pulled from the peer with RDMA READ.
    pub rdma_read_bytes: u64,
    /// Bytes this side pushed into the peer with RDMA WRITE.
    pub rdma_write_bytes: u64,
    /// Regions registered now.
    pub registered: u64,
    /// Regions registered since the link was made.
    pub registrations: u64,
}

/// Memory registered with the network adapter: the peer reads and writes it without this
/// side's CPU, and this side moves bytes between its own registered memory and the peer's.
pub trait RemoteMemory {
    /// Register `len` bytes at `addr` of this process; returns the key the peer names it with.
    ///
    /// # Safety
    /// The memory must stay mapped until [`RemoteMemory::deregister`] (or the link's end).
    unsafe fn register(&mut self, addr: usize, len: usize) -> Result<u32>;
    /// Forget the region registered at `addr`; false if there is none.
    fn deregister(&mut self, addr: usize) -> bool;
    /// The key of the registered region holding `[addr, addr + len)`, if one does.
    fn registered(&self, addr: usize, len: usize) -> Option<u32>;
    /// Pull `dst.len()` bytes of the peer's memory at `remote` (key `rkey`) into `dst`, which
    /// must lie inside a region registered here. Returns when the bytes are in.
    fn read(&mut self, dst: &mut [u8], remote: u64, rkey: u32) -> Result<()>;
    /// Push `src` (inside a region registered here) to the peer's memory at `remote`. Returns
    /// when the write has completed; a message sent afterwards arrives after the bytes.
    fn write(&mut self, src: &[u8], remote: u64, rkey: u32) -> Result<()>;
    /// What has moved so far.
    fn counters(&self) -> RemoteCounters;
}

/// Accepts connections on one endpoint.
pub trait Listener: Send + fmt::Debug {
    /// Block until a peer connects.
    fn accept(&mut self) -> Result<Box<dyn Link>>;
    /// The endpoint actually bound (with the real port when port 0 was asked).
    fn local_endpoint(&self) -> Endpoint;
}

/// Connect to `ep`.
pub fn connect(ep: &Endpoint) -> Result<Box<dyn Link>> {
    match ep {
        // rdma: the handshake runs over TCP; [`verbs::client_upgrade`] moves the session after it.
        Endpoint::Tcp(addr) | Endpoint::Rdma(addr) => Ok(Box::new(tcp::TcpLink::connect(addr)?)),
        Endpoint::Shm(name) => Ok(Box::new(shm::ShmLink::connect(name)?)),
    }
}

/// Listen on `ep`.
pub fn listen(ep: &Endpoint) -> Result<Box<dyn Listener>> {
    match ep {
        Endpoint::Tcp(addr) => Ok(Box::new(tcp::TcpListener::bind(addr)?)),
        Endpoint::Rdma(addr) => Ok(Box::new(tcp::TcpListener::bind(addr)?.into_rdma())),
        Endpoint::Shm(name) => Ok(Box::new(shm::ShmListener::bind(name)?)),
    }
}

/// Rebuild a link from a [`Handoff`] received from another process.
pub fn from_handoff(h: Handoff) -> Result<Box<dyn Link>> {
    match h.kind {
        LinkKind::Tcp => Ok(Box::new(tcp::TcpLink::from_handoff(h)?)),
        LinkKind::Shm => Ok(Box::new(shm::ShmLink::from_handoff(h)?)),
    }
}

/// Send one frame: header, operation struct, inline data.
pub fn send_frame(link: &mut dyn Link, hdr: &Header, op: &[u8], data: &[u8]) -> Result<()> {
    debug_assert_eq!(hdr.payload_len(), op.len() + data.len());
    link.send(&[hdr.as_bytes(), op, data])
}

/// Read and validate one frame header. The payload (`hdr.len` bytes) must be read next.
pub fn recv_header(link: &mut dyn Link) -> Result<Header> {
    let mut buf = [0u8; HEADER_LEN];
    link.recv_exact(&mut buf)?;
    let hdr = Header::read_from_bytes(&buf).map_err(|_| HeaderError::Truncated(buf.len()))?;
    hdr.validate()?;
    Ok(hdr)
}

/// Read `n` payload bytes and throw them away (a payload nobody wants, e.g. after an error).
pub fn discard(link: &mut dyn Link, mut n: usize) -> Result<()> {
    let mut scratch = [0u8; 4096];
    while n > 0 {
        let k = n.min(scratch.len());
        link.recv_exact(&mut scratch[..k])?;
        n -= k;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!("tcp://127.0.0.1:7070".parse::<Endpoint>().unwrap(), Endpoint::Tcp("127.0.0.1:7070".into()));
        assert_eq!("shm://remora-1".parse::<Endpoint>().unwrap(), Endpoint::Shm("remora-1".into()));
        assert!("tcp://nope".parse::<Endpoint>().is_err());
        assert!("udp://1.2.3.4:5".parse::<Endpoint>().is_err());
        assert!("shm://a/b".parse::<Endpoint>().is_err());
        assert!("127.0.0.1:80".parse::<Endpoint>().is_err());
        assert!("tcp://127.0.0.1:7070".parse::<Endpoint>().unwrap().is_local_only());
        assert!("tcp://[::1]:7070".parse::<Endpoint>().unwrap().is_local_only());
        assert!(!"tcp://0.0.0.0:7070".parse::<Endpoint>().unwrap().is_local_only());
        assert!(!"tcp://10.1.2.3:7070".parse::<Endpoint>().unwrap().is_local_only());
        assert_eq!("rdma://10.0.0.1:7070".parse::<Endpoint>().unwrap(), Endpoint::Rdma("10.0.0.1:7070".into()));
        assert_eq!("rdma://10.0.0.1:7070".parse::<Endpoint>().unwrap().to_string(), "rdma://10.0.0.1:7070");
        assert!("rdma://nope".parse::<Endpoint>().is_err());
    }
}
