//! Extra TCP connections ("stripes") for large copies over `tcp://`.
//!
//! One TCP connection moves about 4 GB/s on loopback (one core copies on each side), well
//! below a GPU's copy rate. A `tcp://` session may therefore add a few bulk connections: right
//! after the Welcome the worker listens on a port of its own (same IP address the client
//! reached) and sends an [`Opcode::StripeOffer`] with that port, how many connections it
//! takes, the piece size and a fresh secret; the client connects that many times (each
//! connection sends the secret and its index), reports how many it made in an
//! [`Opcode::StripeJoin`], and the worker answers with how many it accepted (all or none).
//! Nothing goes through the supervisor: like an RDMA queue pair, the stripes belong to the
//! worker process.
//!
//! A large copy then sends only its request on the main link; its bytes move in pieces of the
//! offered size, each piece split evenly over the stripes and carried by one thread per stripe
//! on both sides ([`send_piece`], [`recv_piece`]). Small calls never touch the stripes.
//! Where the extra connections cannot be made (a firewall, a refusal), the session goes on
//! without them.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use remora_wire::{ops, Header, Opcode, U16, U32};
use zerocopy::{FromBytes, IntoBytes};

use crate::{send_frame, Error, Link, Result};

/// Bytes per piece.
pub const PIECE: usize = 16 << 20;
const PIECE_U32: u32 = 16 << 20;
const _: () = assert!(PIECE == PIECE_U32 as usize);
/// Copies at least this large go on the stripes.
pub const MIN_STRIPED: usize = 4 << 20;
/// Most stripes a worker takes.
pub const MAX_STRIPES: usize = 16;
/// How long the worker waits for the connections the client says it made.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client tries to reach the worker's port (a firewall or a port mapping may hide
/// it; the session then goes on without stripes, so a short wait costs little).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Parts are split on this boundary (except the last).
const ALIGN: usize = 4096;

/// The extra connections of one session, in index order.
#[derive(Debug, Default)]
pub struct Stripes {
    conns: Vec<TcpStream>,
    piece: usize,
}

impl Stripes {
    /// How many there are (0: none).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Bytes per piece.
    pub fn piece(&self) -> usize {
        self.piece
    }

    /// Whether a copy of `len` bytes should go on the stripes.
    pub fn wants(&self, len: usize) -> bool {
        !self.conns.is_empty() && len >= MIN_STRIPED
    }

    /// Send `data` (at most one piece) split over the stripes, one thread per stripe.
    pub fn send_piece(&self, data: &[u8]) -> Result<()> {
        let part = part_len(data.len(), self.conns.len());
        run_parts(&self.conns, data.chunks(part), |mut s, chunk| {
            s.write_all(chunk).map_err(|e| Error::io("stripe send", e))
        })
    }

    /// Receive one piece into `buf`, split over the stripes as [`Stripes::send_piece`] sends it.
    pub fn recv_piece(&self, buf: &mut [u8]) -> Result<()> {
        let part = part_len(buf.len(), self.conns.len());
        run_parts(&self.conns, buf.chunks_mut(part), |mut s, chunk| {
            s.read_exact(chunk).map_err(|e| Error::io("stripe receive", e))
        })
    }

    /// Receive one piece of `len` bytes and drop it (a copy that failed before its data).
    pub fn discard_piece(&self, len: usize) -> Result<()> {
        let part = part_len(len, self.conns.len());
        let sizes: Vec<usize> = (0..len).step_by(part.max(1)).map(|o| part.min(len - o)).collect();
        run_parts(&self.conns, sizes.into_iter(), |mut s, mut n| {
            let mut scratch = [0u8; 64 << 10];
            while n > 0 {
                let k = n.min(scratch.len());
                s.read_exact(&mut scratch[..k]).map_err(|e| Error::io("stripe receive", e))?;
                n -= k;
            }
            Ok(())
        })
    }
}

/// Each stripe's share of `len` bytes: equal, rounded up to [`ALIGN`].
fn part_len(len: usize, stripes: usize) -> usize {
    len.div_ceil(stripes.max(1)).next_multiple_of(ALIGN).max(ALIGN)
}

/// Run `f` on each (stripe, part) pair, the first on this thread and the others on their own.
fn run_parts<T: Send>(
    conns: &[TcpStream],
    parts: impl Iterator<Item = T>,
    f: impl Fn(&TcpStream, T) -> Result<()> + Sync,
) -> Result<()> {
    let mut parts = conns.iter().zip(parts);
    let Some((first_conn, first)) = parts.next() else { return Ok(()) };
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts.map(|(c, p)| scope.spawn(|| f(c, p))).collect();
        let mut r = f(first_conn, first);
        for h in handles {
            let other = h.join().unwrap_or_else(|_| Err(Error::Protocol("a stripe thread panicked".into())));
            if r.is_ok() {
                r = other;
            }
        }
        r
    })
}

fn local_ip(link: &mut dyn Link) -> Option<IpAddr> {
    link.local_addr().map(|a| a.ip())
}

/// Worker side, right after the Welcome: offer `count` stripes on the main `link` and take
/// them. Returns no stripes (and the session goes on) when they cannot be made.
pub fn offer(link: &mut dyn Link, count: usize) -> Result<Stripes> {
    let count = count.min(MAX_STRIPES);
    let listener = local_ip(link).and_then(|ip| TcpListener::bind(SocketAddr::new(ip, 0)).ok());
    let port = listener.as_ref().and_then(|l| l.local_addr().ok()).map_or(0, |a| a.port());
    let count = if listener.is_some() { count } else { 0 };
    let secret = crate::auth::nonce();
    let o = ops::StripeOffer {
        port: U16::new(port),
        count: U16::new(u16::try_from(count).unwrap_or(0)),
        piece: U32::new(PIECE_U32),
        secret,
    };
    send_frame(link, &Header::request(Opcode::StripeOffer, 0, o.as_bytes().len() as u64), o.as_bytes(), &[])?;
    let made = recv_join(link)?;
    let accepted = match listener {
        Some(l) if made > 0 && made <= count => match accept(&l, made, &secret) {
            Ok(conns) => conns,
            Err(e) => {
                tracing::warn!("no stripes for this session: {e}");
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    send_join(link, accepted.len())?;
    Ok(Stripes { conns: accepted, piece: PIECE })
}

fn accept(l: &TcpListener, n: usize, secret: &[u8; 32]) -> Result<Vec<TcpStream>> {
    l.set_nonblocking(true).map_err(|e| Error::io("stripe listener", e))?;
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    let mut slots: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut got = 0;
    while got < n {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| Error::io("stripe socket", e))?;
                s.set_read_timeout(Some(ACCEPT_TIMEOUT)).map_err(|e| Error::io("stripe socket", e))?;
                let mut hello = [0u8; 34];
                (&s).read_exact(&mut hello).map_err(|e| Error::io("stripe hello", e))?;
                let idx = usize::from(u16::from_le_bytes([hello[32], hello[33]]));
                let same = crate::auth::same_secret(&hello[..32], secret);
                if !same || idx >= n || slots[idx].is_some() {
                    return Err(Error::Protocol("a stripe connection without this session's secret".into()));
                }
                s.set_read_timeout(None).map_err(|e| Error::io("stripe socket", e))?;
                crate::tcp::set_dead_peer_timeout(&s, crate::tcp::DEAD_PEER_TIMEOUT)?;
                slots[idx] = Some(s);
                got += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(Error::Timeout(ACCEPT_TIMEOUT));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(Error::io("stripe accept", e)),
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

fn send_join(link: &mut dyn Link, n: usize) -> Result<()> {
    let j = ops::StripeJoin { count: U16::new(u16::try_from(n).unwrap_or(0)), reserved: [0; 6] };
    send_frame(link, &Header::request(Opcode::StripeJoin, 0, j.as_bytes().len() as u64), j.as_bytes(), &[])
}

fn recv_join(link: &mut dyn Link) -> Result<usize> {
    let p = recv_frame(link, Opcode::StripeJoin)?;
    let j = ops::StripeJoin::read_from_prefix(&p).map_err(|_| Error::Handshake("short StripeJoin".into()))?.0;
    Ok(usize::from(j.count.get()))
}

fn recv_frame(link: &mut dyn Link, want: Opcode) -> Result<Vec<u8>> {
    crate::handshake::recv_payload_of(link, want, 4096).map(|(_, p)| p)
}

/// Client side, right after the Welcome of a session whose worker offers stripes: connect up
/// to `wanted` of them. Returns none (and the session goes on) when they cannot be made.
pub fn join(link: &mut dyn Link, server: IpAddr, wanted: usize) -> Result<Stripes> {
    let p = recv_frame(link, Opcode::StripeOffer)?;
    let o = ops::StripeOffer::read_from_prefix(&p).map_err(|_| Error::Handshake("short StripeOffer".into()))?.0;
    let n = wanted.min(usize::from(o.count.get()));
    let mut conns = Vec::new();
    if n > 1 {
        let to = SocketAddr::new(server, o.port.get());
        for i in 0..n {
            let made = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT).and_then(|s| {
                let mut hello = [0u8; 34];
                hello[..32].copy_from_slice(&o.secret);
                hello[32..].copy_from_slice(&u16::try_from(i).unwrap_or(0).to_le_bytes());
                (&s).write_all(&hello)?;
                Ok(s)
            });
            match made {
                Ok(s) => conns.push(s),
                Err(e) => {
                    tracing::info!(
                        "stripe {i} to {to}: {e}; going on without extra connections (REMORA_TCP_STREAMS=1 skips trying)"
                    );
                    conns.clear();
                    break;
                }
            }
        }
    }
    send_join(link, conns.len())?;
    let accepted = recv_join(link)?;
    if accepted != conns.len() {
        conns.clear();
    }
    for s in &conns {
        crate::tcp::set_dead_peer_timeout(s, crate::tcp::DEAD_PEER_TIMEOUT)?;
    }
    let piece = usize::try_from(o.piece.get()).unwrap_or(PIECE).max(ALIGN);
    Ok(Stripes { conns, piece })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_piece_in_aligned_shares() {
        assert_eq!(part_len(64 << 20, 4), 16 << 20);
        assert_eq!(part_len(10, 4), 4096);
        assert_eq!(part_len((4 << 20) + 1, 3) % ALIGN, 0);
        for (len, k) in [(1usize, 1usize), (4097, 2), (64 << 20, 3), ((5 << 20) + 123, 4)] {
            let part = part_len(len, k);
            let n = len.div_ceil(part);
            assert!(n <= k, "{len} bytes over {k}: {n} parts");
        }
    }

    #[test]
    fn offer_and_join_then_pieces_arrive_whole() {
        let l = crate::tcp::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = crate::Listener::local_endpoint(&l);
        let mut l = l;
        let server = std::thread::spawn(move || {
            let mut link = crate::Listener::accept(&mut l).unwrap();
            let s = offer(&mut *link, 4).unwrap();
            assert_eq!(s.len(), 3, "the client asked for 3 of the 4 offered");
            let mut buf = vec![0u8; (5 << 20) + 77];
            s.recv_piece(&mut buf).unwrap();
            s.send_piece(&buf).unwrap();
            s.discard_piece(12345).unwrap();
            (link, s)
        });
        let mut c = crate::connect(&ep).unwrap();
        let s = join(&mut *c, "127.0.0.1".parse().unwrap(), 3).unwrap();
        assert_eq!(s.len(), 3);
        let data: Vec<u8> = (0..(5 << 20) + 77).map(|i: usize| (i % 251) as u8).collect();
        s.send_piece(&data).unwrap();
        let mut back = vec![0u8; data.len()];
        s.recv_piece(&mut back).unwrap();
        assert!(back == data);
        s.send_piece(&vec![1u8; 12345]).unwrap();
        drop(server.join().unwrap());
    }

    /// A server side that offers 4 and reports what it accepted; then a ping on the main link.
    fn serve_offer() -> (crate::Endpoint, std::thread::JoinHandle<usize>) {
        let mut l = crate::tcp::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = crate::Listener::local_endpoint(&l);
        let t = std::thread::spawn(move || {
            let mut link = crate::Listener::accept(&mut l).unwrap();
            let s = offer(&mut *link, 4).unwrap();
            let mut b = [0u8; 4];
            link.recv_exact(&mut b).unwrap();
            assert_eq!(&b, b"ping", "the main link is in step after the offer");
            s.len()
        });
        (ep, t)
    }

    #[test]
    fn a_client_that_wants_none_gets_none_and_goes_on() {
        let (ep, server) = serve_offer();
        let mut c = crate::connect(&ep).unwrap();
        let s = join(&mut *c, "127.0.0.1".parse().unwrap(), 1).unwrap();
        assert!(s.is_empty() && !s.wants(64 << 20));
        c.send(&[b"ping"]).unwrap();
        assert_eq!(server.join().unwrap(), 0);
    }

    #[test]
    fn connections_without_the_secret_are_refused_and_the_session_goes_on() {
        let (ep, server) = serve_offer();
        let mut c = crate::connect(&ep).unwrap();
        let p = recv_frame(&mut *c, Opcode::StripeOffer).unwrap();
        let o = ops::StripeOffer::read_from_prefix(&p).unwrap().0;
        let port = o.port.get();
        let bad = TcpStream::connect(("127.0.0.1", port)).unwrap();
        (&bad).write_all(&[0u8; 34]).unwrap();
        send_join(&mut *c, 1).unwrap();
        assert_eq!(recv_join(&mut *c).unwrap(), 0, "the worker accepted a connection without the secret");
        c.send(&[b"ping"]).unwrap();
        assert_eq!(server.join().unwrap(), 0);
    }
}
