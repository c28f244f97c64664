//! `shm://name` backend: same-host shared memory.
//!
//! # Design
//! - **Setup, wake-ups and peer death go through a Unix socket**; data never does. `shm://NAME`
//!   is the stream socket `\0remora-NAME` in the abstract namespace (no file to clean up: the
//!   name disappears with the listener). [`ShmListener::bind`] fails with a clear error when
//!   another listener holds the name.
//! - **Data flows through a shared region** (layout in `shm/region.rs`). On accept the server
//!   creates it: a new file in `/dev/shm` (unique name, `O_EXCL`, mode 0600), unlinked
//!   *immediately* so nothing is left behind if either process is killed, sized with `set_len`
//!   and mapped. Its descriptor
//!   goes to the client with `SCM_RIGHTS` ([`crate::fdpass`]) in an 8-byte setup message; the
//!   client validates the header (magic, layout version, ring size against the file size) before
//!   touching a ring. A header page (counters and parked flags, each on its own 64-byte line) is
//!   followed by two rings, client→server and server→client, [`DEFAULT_RING_SIZE`] each unless
//!   [`ShmListener::with_ring_size`] says otherwise.
//! - **Rings** (`shm/ring.rs`) are single-producer/single-consumer byte streams with
//!   monotonically increasing `u64` head/tail counters (Release/Acquire). [`Link::send`] streams its parts in,
//!   waiting for space when the ring is full, so a payload larger than the ring (256 MiB through
//!   8 MiB) flows through; it publishes the head at least every [`PUBLISH_STEP`] bytes so the
//!   reader starts early. [`Link::recv_exact`] copies out as data arrives.
//! - **Waiting**: spin (`std::hint::spin_loop`) for the [`PollPolicy`]'s spin time, then park:
//!   set our `parked` flag (SeqCst + fence), re-check the ring, and `poll(2)` the socket in
//!   slices of [`PARK_SLICE`], re-checking between slices. After publishing, the other side
//!   fences, reads our flag and, if set, clears it and writes one byte (the doorbell). Doorbell
//!   bytes are only hints; whoever wakes drains them with nonblocking reads.
//! - **Peer death**: the socket reaching end of stream (or `POLLHUP`) means the peer is gone,
//!   killed or not. It is reported as [`Error::PeerClosed`] once the ring holds nothing more to
//!   read. While spinning, and in [`Link::poll_readable`], the socket is checked at most every
//!   [`EOF_CHECK_INTERVAL`], so busy-polling costs an atomic load and a clock read, not a
//!   system call.
//! - **Handoff**: [`Link::into_handoff`] gives `[control socket, region]` and `server_side`;
//!   every counter lives in the region and reads publish their tail at once, so the link is
//!   rebuilt elsewhere ([`ShmLink::from_handoff`]) without losing a byte.
//!
//! # Trust
//! Anyone who can connect to the abstract socket (same host, same network namespace) gets a
//! region; authentication is the handshake's job. A peer cannot make this side read or write
//! outside the mapping: counters are validated on every load and positions masked. A hostile
//! peer *could* truncate the shared file and make accesses fault (`SIGBUS`); peers are
//! processes of the same deployment.

mod region;
mod ring;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use region::{DEFAULT_RING_SIZE, MAX_RING_SIZE, MIN_RING_SIZE};

use self::region::{Dir, Region};
use self::ring::{Consumer, Producer};
use crate::{fdpass, sys, Endpoint, Error, Handoff, Link, LinkKind, Listener, PollPolicy, Result};

/// Longest single sleep in `poll(2)` before the ring is re-checked (a lost doorbell costs at
/// most this much).
pub const PARK_SLICE: Duration = Duration::from_millis(100);
/// Least time between two end-of-stream checks of the socket while spinning or polling.
pub const EOF_CHECK_INTERVAL: Duration = Duration::from_millis(1);
/// Most bytes written (or read) before the counter is published, so the peer can start early.
pub const PUBLISH_STEP: usize = 512 << 10;
/// The setup message that carries the region's descriptor.
const SETUP_MAGIC: [u8; 8] = *b"RMSHM\x01\0\0";

fn socket_name(name: &str) -> String {
    format!("remora-{name}")
}

fn check_name(name: &str) -> Result<()> {
    format!("shm://{name}").parse::<Endpoint>().map(|_| ())
}

/// What a waiting side waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Bytes to read in our receive ring.
    Data,
    /// Space to write in our send ring.
    Space,
}

/// One side of a shared-memory connection.
pub struct ShmLink {
    sock: UnixStream,
    tx: Producer,
    rx: Consumer,
    region: Arc<Region>,
    server_side: bool,
    policy: PollPolicy,
    recv_timeout: Option<Duration>,
    /// The socket reached end of stream: the peer is gone (its last bytes may still be in `rx`).
    peer_closed: bool,
    last_eof_check: Instant,
    peer: String,
}

impl fmt::Debug for ShmLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmLink")
            .field("peer", &self.peer)
            .field("server_side", &self.server_side)
            .field("ring_size", &self.region.ring_size())
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

impl ShmLink {
    /// Connect to `shm://name` and map the region the server sends.
    pub fn connect(name: &str) -> Result<ShmLink> {
        check_name(name)?;
        let addr = SocketAddr::from_abstract_name(socket_name(name)).map_err(|e| Error::io("shm socket address", e))?;
        let sock = UnixStream::connect_addr(&addr).map_err(|e| Error::Io {
            op: "shm connect",
            source: io::Error::new(e.kind(), format!("shm://{name}: {e} (is a server listening there?)")),
        })?;
        let mut msg = [0u8; SETUP_MAGIC.len()];
        let (n, fds) = fdpass::recv_fds(&sock, &mut msg, 1).map_err(|e| Error::Io { op: "shm setup", source: e })?;
        if n == 0 {
            return Err(Error::Io {
                op: "shm setup",
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("shm://{name} closed before sending its region"),
                ),
            });
        }
        (&sock).read_exact(&mut msg[n..]).map_err(|e| Error::Io { op: "shm setup", source: e })?;
        if msg != SETUP_MAGIC {
            return Err(Error::Protocol(format!("shm://{name}: unexpected setup message {msg:02x?}")));
        }
        let [fd]: [OwnedFd; 1] = fds
            .try_into()
            .map_err(|v: Vec<OwnedFd>| Error::Protocol(format!("shm setup carried {} descriptors, not 1", v.len())))?;
        let region = Region::open(File::from(fd))?;
        ShmLink::new(sock, region, false)
    }

    /// Rebuild a link from a [`Handoff`] of kind [`LinkKind::Shm`]: descriptors `[control
    /// socket, region]`; `server_side` says which ring is ours.
    pub fn from_handoff(h: Handoff) -> Result<ShmLink> {
        if h.kind != LinkKind::Shm {
            return Err(Error::Protocol(format!("a {:?} handoff is not an shm link", h.kind)));
        }
        let [sock, region]: [OwnedFd; 2] = h.fds.try_into().map_err(|v: Vec<OwnedFd>| {
            Error::Protocol(format!("an shm handoff carries 2 descriptors, not {}", v.len()))
        })?;
        let ty = sys::get_int_opt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TYPE)
            .map_err(|e| Error::io("shm handoff: control descriptor is not a socket", e))?;
        if ty != libc::SOCK_STREAM {
            return Err(Error::Protocol("shm handoff: control descriptor is not a stream socket".into()));
        }
        let sock = UnixStream::from(sock);
        sock.local_addr().map_err(|e| Error::io("shm handoff: control descriptor is not a Unix socket", e))?;
        let region = Region::open(File::from(region))?;
        ShmLink::new(sock, region, h.server_side)
    }

    fn new(sock: UnixStream, region: Region, server_side: bool) -> Result<ShmLink> {
        let region = Arc::new(region);
        let (tx_dir, rx_dir) = if server_side {
            (Dir::ServerToClient, Dir::ClientToServer)
        } else {
            (Dir::ClientToServer, Dir::ServerToClient)
        };
        let tx = Producer::new(region.clone(), tx_dir)?;
        let rx = Consumer::new(region.clone(), rx_dir)?;
        let addr = if server_side { sock.local_addr() } else { sock.peer_addr() };
        let name = addr
            .ok()
            .and_then(|a| a.as_abstract_name().map(|n| String::from_utf8_lossy(n).into_owned()))
            .map_or_else(|| "?".to_string(), |n| n.strip_prefix("remora-").unwrap_or(&n).to_string());
        let peer = match sys::peer_pid(sock.as_raw_fd()) {
            Some(pid) => format!("shm://{name} (pid {pid})"),
            None => format!("shm://{name}"),
        };
        Ok(ShmLink {
            sock,
            tx,
            rx,
            region,
            server_side,
            policy: PollPolicy::default(),
            recv_timeout: None,
            peer_closed: false,
            last_eof_check: Instant::now(),
            peer,
        })
    }

    /// Bytes in each ring.
    pub fn ring_size(&self) -> usize {
        self.region.ring_size()
    }

    /// Whether this is the server's side of the rings.
    pub fn is_server_side(&self) -> bool {
        self.server_side
    }

    /// Drain doorbell bytes without blocking, noting end of stream.
    fn check_socket(&mut self) -> Result<()> {
        let mut buf = [0u8; 64];
        loop {
            match sys::recv(self.sock.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT) {
                Ok(0) => {
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(n) if n == buf.len() => continue,
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    return match Error::io("shm control socket", e) {
                        Error::PeerClosed => {
                            self.peer_closed = true;
                            Ok(())
                        }
                        e => Err(e),
                    }
                }
            }
        }
    }

    /// [`ShmLink::check_socket`], at most every [`EOF_CHECK_INTERVAL`].
    fn maybe_check_socket(&mut self, now: Instant) -> Result<()> {
        if now.saturating_duration_since(self.last_eof_check) >= EOF_CHECK_INTERVAL {
            self.last_eof_check = now;
            self.check_socket()?;
        }
        Ok(())
    }

    /// Wake the parked peer. A full socket buffer means wake-ups are already pending; a closed
    /// one means the peer is gone, which the next wait reports.
    fn ring_doorbell(&mut self) -> Result<()> {
        match sys::send(self.sock.as_raw_fd(), &[1], libc::MSG_DONTWAIT) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => match Error::io("shm doorbell", e) {
                Error::PeerClosed => {
                    self.peer_closed = true;
                    Ok(())
                }
                e => Err(e),
            },
        }
    }

    fn publish(&mut self) -> Result<()> {
        if self.tx.publish() {
            self.ring_doorbell()?;
        }
        Ok(())
    }

    fn ready(&mut self, want: Want) -> Result<bool> {
        Ok(match want {
            Want::Data => self.rx.available()? > 0,
            Want::Space => self.tx.free(1)? > 0,
        })
    }

    fn set_parked(&self, want: Want, on: bool) {
        match want {
            Want::Data => self.rx.set_parked(on),
            Want::Space => self.tx.set_parked(on),
        }
    }

    /// Wait until `want` holds (true), `deadline` passes (false), or the peer is gone with
    /// nothing left to read (`PeerClosed`). Spins first, then parks.
    fn wait(&mut self, want: Want, deadline: Option<Instant>) -> Result<bool> {
        let start = Instant::now();
        let spin_until = deadline.map_or(start + self.policy.spin, |d| d.min(start + self.policy.spin));
        loop {
            if self.ready(want)? {
                return Ok(true);
            }
            if self.peer_closed {
                return Err(Error::PeerClosed);
            }
            let now = Instant::now();
            if now >= spin_until {
                break;
            }
            self.maybe_check_socket(now)?;
            std::hint::spin_loop();
        }
        loop {
            self.set_parked(want, true);
            let r = self.park_once(want, deadline);
            self.set_parked(want, false);
            if let Some(ready) = r? {
                return Ok(ready);
            }
        }
    }

    /// One sleep of at most [`PARK_SLICE`]; the caller has set our parked flag. `None`: go on.
    fn park_once(&mut self, want: Want, deadline: Option<Instant>) -> Result<Option<bool>> {
        if self.ready(want)? {
            return Ok(Some(true));
        }
        if self.peer_closed {
            return Err(Error::PeerClosed);
        }
        let slice = deadline.map_or(PARK_SLICE, |d| d.saturating_duration_since(Instant::now()).min(PARK_SLICE));
        let revents =
            sys::poll_one(self.sock.as_raw_fd(), libc::POLLIN, Some(slice)).map_err(|e| Error::io("shm poll", e))?;
        if revents != 0 {
            self.check_socket()?;
            if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.peer_closed = true;
            }
        }
        let now = Instant::now();
        self.last_eof_check = now;
        if self.ready(want)? {
            return Ok(Some(true));
        }
        if self.peer_closed {
            return Err(Error::PeerClosed);
        }
        Ok(deadline.is_some_and(|d| now >= d).then_some(false))
    }
}

impl Link for ShmLink {
    fn send(&mut self, parts: &[&[u8]]) -> Result<()> {
        if self.peer_closed {
            return Err(Error::PeerClosed);
        }
        let step = PUBLISH_STEP.min(self.region.ring_size() / 4);
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let n = self.tx.write(rest, step)?;
                if n == 0 {
                    // Full: let the reader see what we have, then wait for it to make room.
                    self.publish()?;
                    self.wait(Want::Space, None)?;
                    continue;
                }
                rest = &rest[n..];
                if self.tx.unpublished() >= step {
                    self.publish()?;
                }
            }
        }
        self.publish()
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let step = PUBLISH_STEP.min(self.region.ring_size() / 4);
        let mut off = 0;
        while off < buf.len() {
            let n = self.rx.read(&mut buf[off..], step)?;
            if n == 0 {
                let deadline = self.recv_timeout.map(|t| Instant::now() + t);
                if !self.wait(Want::Data, deadline)? {
                    return Err(Error::Timeout(self.recv_timeout.unwrap_or_default()));
                }
                continue;
            }
            off += n;
            if self.rx.take_writer_parked() {
                self.ring_doorbell()?;
            }
        }
        Ok(())
    }

    fn poll_readable(&mut self) -> Result<bool> {
        if self.rx.available()? > 0 {
            return Ok(true);
        }
        if !self.peer_closed {
            self.maybe_check_socket(Instant::now())?;
            if !self.peer_closed {
                return Ok(false);
            }
        }
        // Gone: whatever it wrote before dying is still ours to read.
        if self.rx.available()? > 0 {
            Ok(true)
        } else {
            Err(Error::PeerClosed)
        }
    }

    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait(Want::Data, deadline)
    }

    fn set_poll_policy(&mut self, policy: PollPolicy) {
        self.policy = policy;
    }

    fn set_recv_timeout(&mut self, timeout: Option<Duration>) {
        self.recv_timeout = timeout;
    }

    fn kind(&self) -> &'static str {
        "shm"
    }

    fn peer(&self) -> String {
        self.peer.clone()
    }

    fn into_handoff(mut self: Box<Self>) -> Result<Handoff> {
        // Everything sent is already published (send publishes before returning) and every read
        // published its tail; make sure anyway, so the next holder resumes exactly here.
        self.publish()?;
        let ShmLink { sock, tx, rx, region, server_side, .. } = *self;
        drop((tx, rx));
        let file = match Arc::try_unwrap(region) {
            Ok(r) => r.into_file(),
            Err(r) => r.file().try_clone().map_err(|e| Error::io("duplicate shm region descriptor", e))?,
        };
        Ok(Handoff { kind: LinkKind::Shm, fds: vec![OwnedFd::from(sock), OwnedFd::from(file)], server_side })
    }
}

/// Listens on `shm://name` (the abstract Unix socket `\0remora-name`).
#[derive(Debug)]
pub struct ShmListener {
    sock: UnixListener,
    name: String,
    ring_size: usize,
}

impl ShmListener {
    /// Listen on `shm://name` with [`DEFAULT_RING_SIZE`] rings.
    pub fn bind(name: &str) -> Result<ShmListener> {
        ShmListener::with_ring_size(name, DEFAULT_RING_SIZE)
    }

    /// Listen on `shm://name`; each connection gets two rings of `ring_size` bytes (a power of
    /// two in [`MIN_RING_SIZE`]`..=`[`MAX_RING_SIZE`]).
    pub fn with_ring_size(name: &str, ring_size: usize) -> Result<ShmListener> {
        check_name(name)?;
        if region::region_len(ring_size).is_none() {
            return Err(Error::BadEndpoint {
                url: format!("shm://{name}"),
                why: format!("ring size {ring_size} must be a power of two in {MIN_RING_SIZE}..={MAX_RING_SIZE}"),
            });
        }
        let addr = SocketAddr::from_abstract_name(socket_name(name)).map_err(|e| Error::io("shm socket address", e))?;
        let sock = UnixListener::bind_addr(&addr).map_err(|e| {
            let source = if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(e.kind(), format!("shm://{name} is already in use by another listener"))
            } else {
                io::Error::new(e.kind(), format!("shm://{name}: {e}"))
            };
            Error::Io { op: "shm bind", source }
        })?;
        Ok(ShmListener { sock, name: name.to_string(), ring_size })
    }

    /// The listening socket (e.g. to poll it beside other descriptors).
    pub fn socket(&self) -> &UnixListener {
        &self.sock
    }

    fn setup(&self, sock: UnixStream) -> Result<ShmLink> {
        let region = Region::create(self.ring_size)?;
        fdpass::send_fds(&sock, &SETUP_MAGIC, &[region.file().as_fd()]).map_err(|e| Error::io("shm setup", e))?;
        ShmLink::new(sock, region, true)
    }
}

impl Listener for ShmListener {
    fn accept(&mut self) -> Result<Box<dyn Link>> {
        loop {
            let sock = match self.sock.accept() {
                Ok((s, _)) => s,
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => continue,
                Err(e) => return Err(Error::Io { op: "shm accept", source: e }),
            };
            match self.setup(sock) {
                Ok(link) => return Ok(Box::new(link)),
                // The client left during setup: not the listener's failure.
                Err(Error::PeerClosed) => tracing::debug!(name = %self.name, "shm client left during setup"),
                Err(e) => return Err(e),
            }
        }
    }

    fn local_endpoint(&self) -> Endpoint {
        Endpoint::Shm(self.name.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        format!("unit-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
    }

    fn pair(ring: usize) -> (ShmLink, Box<dyn Link>) {
        let name = unique("pair");
        let mut l = ShmListener::with_ring_size(&name, ring).unwrap();
        std::thread::scope(|s| {
            let t = s.spawn(|| l.accept().unwrap());
            let c = ShmLink::connect(&name).unwrap();
            (c, t.join().unwrap())
        })
    }

    #[test]
    fn name_in_use_and_nobody_listening() {
        let name = unique("busy");
        let l = ShmListener::bind(&name).unwrap();
        assert_eq!(l.local_endpoint(), Endpoint::Shm(name.clone()));
        let e = ShmListener::bind(&name).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        drop(l);
        let e = ShmLink::connect(&name).unwrap_err();
        assert!(e.to_string().contains("is a server listening"), "{e}");
        assert!(ShmListener::bind("bad/name").is_err());
        assert!(ShmListener::with_ring_size(&unique("x"), 5000).is_err());
    }

    #[test]
    fn parks_and_wakes_both_ways() {
        let (mut c, mut s) = pair(MIN_RING_SIZE);
        assert_eq!(c.ring_size(), MIN_RING_SIZE);
        assert!(c.peer().starts_with("shm://unit-") && c.peer().contains("pid"), "{}", c.peer());
        c.set_poll_policy(PollPolicy { spin: Duration::ZERO });
        s.set_poll_policy(PollPolicy { spin: Duration::ZERO });
        assert!(!s.poll_readable().unwrap());
        assert!(!s.wait_readable(Some(Duration::from_millis(5))).unwrap());
        // 64 KiB through a 4 KiB ring with both sides parking: exercises both doorbells.
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                let mut got = vec![0u8; data.len()];
                for chunk in got.chunks_mut(10_000) {
                    s.recv_exact(chunk).unwrap();
                }
                assert!(got == data);
                s.send(&[b"done"]).unwrap();
            });
            c.send(&[&data[..1], &data[1..]]).unwrap();
            let mut b = [0u8; 4];
            c.recv_exact(&mut b).unwrap();
            assert_eq!(&b, b"done");
        });
        drop(s);
        assert!(matches!(c.wait_readable(Some(Duration::from_secs(5))), Err(Error::PeerClosed)));
        assert!(matches!(c.send(&[b"x"]), Err(Error::PeerClosed)));
    }

    #[test]
    fn last_bytes_of_a_closed_peer_are_delivered() {
        let (mut c, mut s) = pair(MIN_RING_SIZE);
        s.send(&[b"bye"]).unwrap();
        drop(s);
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.poll_readable().unwrap());
        let mut b = [0u8; 3];
        c.recv_exact(&mut b).unwrap();
        assert_eq!(&b, b"bye");
        assert!(matches!(c.recv_exact(&mut b), Err(Error::PeerClosed)));
        assert!(matches!(c.poll_readable(), Err(Error::PeerClosed)));
    }

    #[test]
    fn bad_handoffs() {
        let h = Handoff { kind: LinkKind::Tcp, fds: vec![], server_side: true };
        assert!(matches!(ShmLink::from_handoff(h), Err(Error::Protocol(_))));
        let (a, b) = UnixStream::pair().unwrap();
        let h = Handoff { kind: LinkKind::Shm, fds: vec![OwnedFd::from(a)], server_side: true };
        assert!(matches!(ShmLink::from_handoff(h), Err(Error::Protocol(_))));
        // A region that is not a region.
        let (c, _d) = UnixStream::pair().unwrap();
        let h = Handoff { kind: LinkKind::Shm, fds: vec![OwnedFd::from(b), OwnedFd::from(c)], server_side: true };
        assert!(matches!(ShmLink::from_handoff(h), Err(Error::Protocol(_))));
    }
}
