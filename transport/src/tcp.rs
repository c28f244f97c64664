//! `tcp://host:port` backend.
//!
//! - `TCP_NODELAY` (frames are written whole, so Nagle only adds latency) and `SO_KEEPALIVE` on
//!   both sides.
//! - [`Link::send`] gathers the frame's parts with `sendmsg(2)` (no concatenation copy),
//!   continuing after partial writes; `MSG_NOSIGNAL`, so a dead peer is an error, not `SIGPIPE`.
//! - [`Link::recv_exact`] reads straight into the caller's buffer, so a link can be handed to
//!   another process ([`Link::into_handoff`]) mid-stream without losing a byte. It spins on
//!   nonblocking reads (`MSG_DONTWAIT`) for the [`PollPolicy`]'s spin time, then blocks in the
//!   kernel (`recv(MSG_WAITALL)`: one call sleeps until the rest of a large payload is in,
//!   rather than one `poll` + `read` per segment).
//! - Where the link stays in its process ([`Link::set_read_ahead`]: the worker once its session
//!   runs, the client), small reads take whatever has arrived into a 64 KiB buffer and are
//!   served from it: a burst of small frames (launches, asynchronous copies) costs one `recv`
//!   instead of two per frame, a small reply one instead of two. Large reads still go straight
//!   into the caller's buffer.
//! - The socket itself stays in blocking mode: its file status flags are shared with any process
//!   the descriptor is handed to, so per-call flags are used instead.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use std::{fmt, io};

use crate::{sys, Endpoint, Error, Handoff, Link, LinkKind, Listener, PollPolicy, Result};

/// One TCP connection.
pub struct TcpLink {
    sock: TcpStream,
    policy: PollPolicy,
    recv_timeout: Option<Duration>,
    peer: String,
    server_side: bool,
    /// Bytes received ahead of the reads that want them ([`Link::set_read_ahead`]).
    ahead: Option<ReadAhead>,
}

/// Size of the read-ahead buffer; reads of half of it or more bypass it.
const AHEAD: usize = 64 << 10;

struct ReadAhead {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadAhead {
    /// Move buffered bytes into `out`; how many.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        n
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }
}

/// Receive into `buf` until at least `min` bytes are in (more, up to `buf.len()`, if they have
/// arrived): spin with nonblocking reads for the policy's spin time, then block (or wait at
/// most `timeout` for each next byte). Returns how many bytes were received.
fn recv_at_least(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    min: usize,
    policy: PollPolicy,
    timeout: Option<Duration>,
) -> Result<usize> {
    let mut off = 0;
    let mut spin_until: Option<Instant> = None;
    let mut spinning = !policy.spin.is_zero();
    while off < min {
        if !spinning {
            if let Some(t) = timeout {
                // Wait for the next bytes at most `t`, then take what is there.
                let revents = sys::poll_one(fd, libc::POLLIN, Some(t)).map_err(|e| Error::io("tcp poll", e))?;
                if revents == 0 {
                    return Err(Error::Timeout(t));
                }
            }
        }
        let flags = if spinning || timeout.is_some() {
            libc::MSG_DONTWAIT
        } else if min == buf.len() {
            libc::MSG_WAITALL
        } else {
            0
        };
        match sys::recv(fd, &mut buf[off..], flags) {
            Ok(0) => return Err(Error::PeerClosed),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !spinning => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                let until = *spin_until.get_or_insert(now + policy.spin);
                if now >= until {
                    spinning = false;
                } else {
                    std::hint::spin_loop();
                }
            }
            Err(e) => return Err(Error::io("tcp recv", e)),
        }
    }
    Ok(off)
}

impl fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpLink").field("fd", &self.sock.as_raw_fd()).field("peer", &self.peer).finish()
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// How long a silent peer (host down, network cut) lives by default: 5 s.
pub const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Keep-alive probes every second after a second idle, as many as fit `timeout`, and
/// `TCP_USER_TIMEOUT` = `timeout` for data (or probes) left unacknowledged: the kernel then ends
/// the connection and a blocked `recv` returns an error. A busy but live peer's kernel answers
/// the probes, so long operations are not cut short.
pub(crate) fn set_dead_peer_timeout(sock: &TcpStream, timeout: Duration) -> Result<()> {
    let fd = sock.as_raw_fd();
    let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX).max(2);
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX).max(2000);
    for (name, what, v) in [
        (libc::TCP_KEEPIDLE, "set TCP_KEEPIDLE", 1),
        (libc::TCP_KEEPINTVL, "set TCP_KEEPINTVL", 1),
        (libc::TCP_KEEPCNT, "set TCP_KEEPCNT", secs - 1),
        (libc::TCP_USER_TIMEOUT, "set TCP_USER_TIMEOUT", ms),
    ] {
        sys::set_int_opt(fd, libc::IPPROTO_TCP, name, v).map_err(|e| Error::io(what, e))?;
    }
    Ok(())
}

impl TcpLink {
    /// Connect to `addr` (`host:port`).
    pub fn connect(addr: &str) -> Result<TcpLink> {
        let sock =
            TcpStream::connect(addr).map_err(|e| Error::Io { op: "tcp connect", source: with_context(e, addr) })?;
        TcpLink::from_stream(sock, false)
    }

    /// Connect to the first address `addr` resolves to that answers within `timeout` each.
    pub fn connect_timeout(addr: &str, timeout: Duration) -> Result<TcpLink> {
        let addrs =
            addr.to_socket_addrs().map_err(|e| Error::Io { op: "tcp resolve", source: with_context(e, addr) })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: resolves to no address"));
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(sock) => return TcpLink::from_stream(sock, false),
                Err(e) => last = with_context(e, addr),
            }
        }
        Err(Error::Io { op: "tcp connect", source: last })
    }

    /// Wrap a connected stream, setting `TCP_NODELAY` and `SO_KEEPALIVE`. `server_side` is only
    /// carried through [`Handoff::server_side`].
    pub fn from_stream(sock: TcpStream, server_side: bool) -> Result<TcpLink> {
        let peer = sock.peer_addr().map_err(|e| Error::io("tcp peer address", e))?.to_string();
        sock.set_nodelay(true).map_err(|e| Error::io("set TCP_NODELAY", e))?;
        sys::set_int_opt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
            .map_err(|e| Error::io("set SO_KEEPALIVE", e))?;
        set_dead_peer_timeout(&sock, DEAD_PEER_TIMEOUT)?;
        Ok(TcpLink { sock, policy: PollPolicy::default(), recv_timeout: None, peer, server_side, ahead: None })
    }

    /// Rebuild a link from a [`Handoff`] of kind [`LinkKind::Tcp`] (one descriptor: the socket).
    pub fn from_handoff(h: Handoff) -> Result<TcpLink> {
        if h.kind != LinkKind::Tcp {
            return Err(Error::Protocol(format!("a {:?} handoff is not a tcp link", h.kind)));
        }
        let server_side = h.server_side;
        let [fd]: [OwnedFd; 1] = h.fds.try_into().map_err(|v: Vec<OwnedFd>| {
            Error::Protocol(format!("a tcp handoff carries 1 descriptor, not {}", v.len()))
        })?;
        let ty = sys::get_int_opt(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::SOL_SOCKET, libc::SO_TYPE)
            .map_err(|e| Error::io("tcp handoff: not a socket", e))?;
        if ty != libc::SOCK_STREAM {
            return Err(Error::Protocol("tcp handoff: the descriptor is not a stream socket".into()));
        }
        TcpLink::from_stream(TcpStream::from(fd), server_side)
    }

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        &self.sock
    }
}

impl Link for TcpLink {
    fn send(&mut self, parts: &[&[u8]]) -> Result<()> {
        sys::send_all_vectored(self.sock.as_raw_fd(), parts).map_err(|e| Error::io("tcp send", e))
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let fd = self.sock.as_raw_fd();
        let (policy, timeout) = (self.policy, self.recv_timeout);
        let Some(ahead) = &mut self.ahead else {
            return recv_at_least(fd, buf, buf.len(), policy, timeout).map(drop);
        };
        let mut off = ahead.take(buf);
        while off < buf.len() {
            let rest = buf.len() - off;
            if rest >= AHEAD / 2 {
                // Large: straight into the caller's buffer.
                return recv_at_least(fd, &mut buf[off..], rest, policy, timeout).map(drop);
            }
            // The buffer is empty: take what has arrived, at least what this read needs.
            let n = recv_at_least(fd, &mut ahead.buf, rest, policy, timeout)?;
            (ahead.start, ahead.end) = (0, n);
            off += ahead.take(&mut buf[off..]);
        }
        Ok(())
    }

    fn send_half(&self) -> Option<crate::SendHalf> {
        self.sock.try_clone().ok().map(|s| crate::SendHalf::new(OwnedFd::from(s)))
    }

    fn set_read_ahead(&mut self, on: bool) {
        match (on, &self.ahead) {
            (true, None) => self.ahead = Some(ReadAhead { buf: vec![0; AHEAD].into_boxed_slice(), start: 0, end: 0 }),
            (false, Some(a)) if a.buffered() == 0 => self.ahead = None,
            _ => {}
        }
    }

    fn poll_readable(&mut self) -> Result<bool> {
        if self.ahead.as_ref().is_some_and(|a| a.buffered() > 0) {
            return Ok(true);
        }
        let mut b = [0u8; 1];
        match sys::recv(self.sock.as_raw_fd(), &mut b, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => Err(Error::PeerClosed),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(Error::io("tcp poll", e)),
        }
    }

    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<bool> {
        if self.ahead.as_ref().is_some_and(|a| a.buffered() > 0) {
            return Ok(true);
        }
        let revents =
            sys::poll_one(self.sock.as_raw_fd(), libc::POLLIN, timeout).map_err(|e| Error::io("tcp poll", e))?;
        if revents == 0 {
            return Ok(false);
        }
        // Readable, hung up or in error: the peek tells data from end of stream or reset.
        self.poll_readable()
    }

    fn set_poll_policy(&mut self, policy: PollPolicy) {
        self.policy = policy;
    }

    fn set_recv_timeout(&mut self, timeout: Option<Duration>) {
        self.recv_timeout = timeout;
    }

    fn set_dead_peer_timeout(&mut self, timeout: Duration) -> Result<()> {
        set_dead_peer_timeout(&self.sock, timeout)
    }

    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn peer(&self) -> String {
        format!("tcp://{}", self.peer)
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.sock.local_addr().ok()
    }

    fn into_handoff(self: Box<Self>) -> Result<Handoff> {
        if self.ahead.as_ref().is_some_and(|a| a.buffered() > 0) {
            return Err(Error::Protocol("tcp handoff: bytes read ahead would be lost".into()));
        }
        let server_side = self.server_side;
        Ok(Handoff { kind: LinkKind::Tcp, fds: vec![OwnedFd::from(self.sock)], server_side })
    }
}

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpListener {
    sock: std::net::TcpListener,
    endpoint: Endpoint,
}

impl TcpListener {
    /// Listen on `addr` (`host:port`; port 0 picks a free port, see [`Listener::local_endpoint`]).
    pub fn bind(addr: &str) -> Result<TcpListener> {
        let sock = std::net::TcpListener::bind(addr)
            .map_err(|e| Error::Io { op: "tcp bind", source: with_context(e, addr) })?;
        let local = sock.local_addr().map_err(|e| Error::io("tcp local address", e))?;
        Ok(TcpListener { sock, endpoint: Endpoint::Tcp(local.to_string()) })
    }

    /// The same listener, reported as `rdma://` (whose sessions start over TCP).
    pub fn into_rdma(mut self) -> TcpListener {
        if let Endpoint::Tcp(a) = &self.endpoint {
            self.endpoint = Endpoint::Rdma(a.clone());
        }
        self
    }

    /// The listening socket (e.g. to poll it beside other descriptors).
    pub fn socket(&self) -> &std::net::TcpListener {
        &self.sock
    }
}

impl Listener for TcpListener {
    fn accept(&mut self) -> Result<Box<dyn Link>> {
        loop {
            match self.sock.accept() {
                Ok((sock, _)) => match TcpLink::from_stream(sock, true) {
                    Ok(link) => return Ok(Box::new(link)),
                    // The client left between connect and accept: not the listener's failure.
                    Err(Error::PeerClosed) => continue,
                    Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => return Err(e),
                },
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => continue,
                Err(e) => return Err(Error::Io { op: "tcp accept", source: e }),
            }
        }
    }

    fn local_endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pair() -> (Box<dyn Link>, Box<dyn Link>) {
        let mut l = TcpListener::bind("127.0.0.1:0").unwrap();
        let Endpoint::Tcp(addr) = l.local_endpoint() else { panic!("not tcp") };
        assert_ne!(addr, "127.0.0.1:0");
        let c = TcpLink::connect(&addr).unwrap();
        (Box::new(c), l.accept().unwrap())
    }

    #[test]
    fn options_are_set() {
        let (c, s) = pair();
        for l in [&c, &s] {
            assert!(l.peer().starts_with("tcp://127.0.0.1:"));
            assert_eq!(l.kind(), "tcp");
        }
        let h = c.into_handoff().unwrap();
        let link = TcpLink::from_handoff(h).unwrap();
        assert!(link.stream().nodelay().unwrap());
        let ka = sys::get_int_opt(link.stream().as_raw_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE).unwrap();
        assert_eq!(ka, 1);
        let fd = link.stream().as_raw_fd();
        let opt = |name| sys::get_int_opt(fd, libc::IPPROTO_TCP, name).unwrap();
        assert_eq!(opt(libc::TCP_USER_TIMEOUT), 5000, "dead-peer timeout by default");
        assert_eq!((opt(libc::TCP_KEEPIDLE), opt(libc::TCP_KEEPINTVL), opt(libc::TCP_KEEPCNT)), (1, 1, 4));
        let mut link: Box<dyn Link> = Box::new(link);
        link.set_dead_peer_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(opt(libc::TCP_USER_TIMEOUT), 30_000);
        assert_eq!(opt(libc::TCP_KEEPCNT), 29);
        drop(s);
    }

    #[test]
    fn read_ahead_serves_small_reads_from_one_recv_and_large_ones_directly() {
        for spin in [Duration::ZERO, Duration::from_micros(50)] {
            let (mut c, mut s) = pair();
            s.set_poll_policy(PollPolicy { spin });
            s.set_read_ahead(true);
            // A burst of small frames, a large one, then small ones again.
            let small: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i.to_le_bytes()[0]; 40 + (i as usize % 97)]).collect();
            let large: Vec<u8> = (0..(3 * AHEAD + 11)).map(|i| u8::try_from(i % 253).unwrap()).collect();
            let writer = std::thread::spawn(move || {
                for f in &small {
                    c.send(&[f]).unwrap();
                }
                c.send(&[&large]).unwrap();
                c.send(&[b"tail"]).unwrap();
                (c, small, large)
            });
            let mut got = Vec::new();
            for i in 0..300u32 {
                let mut b = vec![0u8; 40 + (i as usize % 97)];
                s.recv_exact(&mut b).unwrap();
                got.push(b);
            }
            let mut big = vec![0u8; 3 * AHEAD + 11];
            s.recv_exact(&mut big).unwrap();
            let mut tail = [0u8; 4];
            s.recv_exact(&mut tail).unwrap();
            let (c, small, large) = writer.join().unwrap();
            assert!(got == small, "small frames in order");
            assert!(big == large, "the large frame whole");
            assert_eq!(&tail, b"tail");
            // Buffered bytes count as readable, and block a handoff.
            let mut c = c;
            c.send(&[b"12345678"]).unwrap();
            let mut one = [0u8; 1];
            s.recv_exact(&mut one).unwrap();
            assert!(s.poll_readable().unwrap() && s.wait_readable(Some(Duration::ZERO)).unwrap());
            s.set_read_ahead(false);
            let mut rest = [0u8; 7];
            s.recv_exact(&mut rest).unwrap();
            assert_eq!((&one, &rest), (b"1", b"2345678"));
            // Nothing buffered any more: turning it off takes effect.
            s.set_read_ahead(false);
            c.send(&[b"x"]).unwrap();
            s.recv_exact(&mut one).unwrap();
            assert_eq!(&one, b"x");
        }
    }

    #[test]
    fn read_ahead_bytes_block_a_handoff() {
        let (mut c, mut s) = pair();
        s.set_read_ahead(true);
        c.send(&[b"abcdef"]).unwrap();
        let mut b = [0u8; 2];
        s.recv_exact(&mut b).unwrap();
        assert!(matches!(s.into_handoff(), Err(Error::Protocol(_))), "four bytes would be lost");
        let (mut c2, mut s2) = pair();
        s2.set_read_ahead(true);
        c2.send(&[b"ab"]).unwrap();
        s2.recv_exact(&mut b).unwrap();
        assert!(s2.into_handoff().is_ok(), "nothing buffered: the handoff loses nothing");
    }

    #[test]
    fn vectored_send_partial_reads_and_eof() {
        let (mut c, mut s) = pair();
        assert!(!s.poll_readable().unwrap());
        assert!(!s.wait_readable(Some(Duration::from_millis(10))).unwrap());
        c.send(&[b"", b"ab", b"", b"cdef"]).unwrap();
        c.send(&[]).unwrap();
        assert!(s.wait_readable(Some(Duration::from_secs(5))).unwrap());
        let mut b = [0u8; 4];
        s.recv_exact(&mut b).unwrap();
        assert_eq!(&b, b"abcd");
        s.set_poll_policy(PollPolicy { spin: Duration::ZERO });
        let mut b = [0u8; 2];
        s.recv_exact(&mut b).unwrap();
        assert_eq!(&b, b"ef");
        drop(c);
        assert!(matches!(s.wait_readable(None), Err(Error::PeerClosed)));
        assert!(matches!(s.recv_exact(&mut b), Err(Error::PeerClosed)));
        // Writing to a closed peer eventually fails instead of raising SIGPIPE.
        let big = vec![0u8; 1 << 20];
        let mut failed = false;
        for _ in 0..64 {
            if let Err(e) = s.send(&[&big]) {
                assert!(matches!(e, Error::PeerClosed), "{e}");
                failed = true;
                break;
            }
        }
        assert!(failed);
    }

    #[test]
    fn bad_handoffs_and_addresses() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let h = Handoff { kind: LinkKind::Tcp, fds: vec![OwnedFd::from(a)], server_side: false };
        assert!(matches!(TcpLink::from_handoff(h), Err(Error::Protocol(_))));
        let h = Handoff { kind: LinkKind::Shm, fds: vec![], server_side: false };
        assert!(matches!(TcpLink::from_handoff(h), Err(Error::Protocol(_))));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let Endpoint::Tcp(addr) = l.local_endpoint() else { panic!("not tcp") };
        let e = TcpListener::bind(&addr).unwrap_err();
        assert!(e.to_string().contains(&addr), "{e}");
        drop(l);
        let e = TcpLink::connect(&addr).unwrap_err();
        assert!(matches!(e, Error::Io { op: "tcp connect", .. }), "{e}");
    }
}
