//! What a transport allows with no CUDA at all: a 64-byte ping-pong and a 256 MiB stream over
//! a link of the transport crate (a listener in this process, an echo thread on the far side),
//! and a Ping round trip through a server's worker. Samples go into HDR histograms.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use remora_interpose::client::Client;
use remora_transport::{connect, listen, recv_header, send_frame, verbs, Endpoint, Error, Link};
use remora_wire::{Header, Opcode, Status, HEADER_LEN};

use super::output::Stat;
use super::Transport;

/// Frame size of the round trip (header included).
pub(crate) const RTT_FRAME: usize = 64;
/// Bytes of the stream.
pub(crate) const STREAM_BYTES: usize = 256 << 20;
/// Frames up to this size are echoed; bigger ones are read and answered with an empty reply.
const ECHO_LIMIT: usize = 4096;
/// The echo side reads a stream in pieces of this size.
const PIECE: usize = 4 << 20;

/// A transport's floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Floor {
    /// 64 B round trip, µs.
    pub(crate) rtt: Stat,
    /// 256 MiB one way (until the receiver's acknowledgement), GB/s.
    pub(crate) stream: Stat,
}

/// Latency samples in nanoseconds, 1 ns to 10 min, three significant digits.
pub(crate) struct Samples(Histogram<u64>);

impl Samples {
    pub(crate) fn new() -> anyhow::Result<Samples> {
        Ok(Samples(Histogram::new_with_bounds(1, 600_000_000_000, 3).context("creating a histogram")?))
    }

    pub(crate) fn record(&mut self, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(ns.max(1));
    }

    /// Microseconds per operation.
    pub(crate) fn micros(&self) -> Stat {
        let h = &self.0;
        Stat::new(
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.max() as f64 / 1e3,
        )
    }

    /// GB/s for `bytes` per sample, at the p50, p99 and slowest times.
    pub(crate) fn gbps(&self, bytes: usize) -> Stat {
        let h = &self.0;
        let rate = |ns: u64| if ns == 0 { 0.0 } else { bytes as f64 / ns as f64 };
        Stat::new(h.len(), rate(h.value_at_quantile(0.5)), rate(h.value_at_quantile(0.99)), rate(h.max()))
    }
}

/// Answer every frame: small ones echoed, big ones read in pieces and acknowledged empty.
fn echo(mut link: Box<dyn Link>) -> Result<(), Error> {
    let mut piece = vec![0u8; PIECE];
    loop {
        let h = match recv_header(&mut *link) {
            Ok(h) => h,
            Err(Error::PeerClosed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let n = h.payload_len();
        if n <= ECHO_LIMIT {
            link.recv_exact(&mut piece[..n])?;
            send_frame(&mut *link, &Header::reply(&h, Status::SUCCESS, n as u64, Status::SUCCESS), &piece[..n], &[])?;
        } else {
            let mut left = n;
            while left > 0 {
                let k = left.min(PIECE);
                link.recv_exact(&mut piece[..k])?;
                left -= k;
            }
            send_frame(&mut *link, &Header::reply(&h, Status::SUCCESS, 0, Status::SUCCESS), &[], &[])?;
        }
    }
}

/// Where a floor link listens: loopback tcp on a free port, a fresh shm name, or tcp on the
/// RDMA device's address (then moved to a queue pair).
fn endpoint(t: Transport) -> anyhow::Result<Endpoint> {
    Ok(match t {
        Transport::Tcp => Endpoint::Tcp("127.0.0.1:0".into()),
        Transport::Shm => {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            Endpoint::Shm(format!("remora-bench-floor-{}-{n}", std::process::id()))
        }
        Transport::Rdma => {
            let ip = super::server::rdma_ip().context("no RDMA device with an IPv4 address here")?;
            Endpoint::Tcp(format!("{ip}:0"))
        }
    })
}

/// One request and its reply; returns the reply's payload length.
fn round_trip(link: &mut dyn Link, id: u64, op: Opcode, payload: &[u8], back: &mut [u8]) -> anyhow::Result<usize> {
    send_frame(link, &Header::request(op, id, payload.len() as u64), payload, &[])?;
    let r = recv_header(link)?;
    let n = r.payload_len();
    if r.request_id.get() != id || n > back.len() {
        bail!("unexpected reply (request {}, {n} bytes) to request {id}", r.request_id.get());
    }
    link.recv_exact(&mut back[..n])?;
    Ok(n)
}

/// Measure `t`'s floor: `rtt_iters` round trips of 64 B, `streams` streams of 256 MiB.
pub(crate) fn measure(t: Transport, rtt_iters: usize, streams: usize) -> anyhow::Result<Floor> {
    let mut listener = listen(&endpoint(t)?).with_context(|| format!("listening for the {t} floor"))?;
    let ep = listener.local_endpoint();
    let (tx, rx) = std::sync::mpsc::channel();
    // Not scoped: if connecting fails, the thread stays blocked in accept and must not be joined.
    std::thread::Builder::new()
        .name("remora-bench-echo".into())
        .spawn(move || {
            let r = listener.accept().and_then(|link| match t {
                // rdma: the link moves to a queue pair, as a session's does after its Welcome.
                Transport::Rdma => verbs::serve_upgrade(link, verbs::SETUP_TIMEOUT).and_then(echo),
                _ => echo(link),
            });
            let _ = tx.send(r);
        })
        .context("starting the echo thread")?;
    let mut link = connect(&ep).with_context(|| format!("connecting to {ep}"))?;
    if t == Transport::Rdma {
        link = verbs::client_upgrade(link, verbs::SETUP_TIMEOUT).context("moving the floor link to rdma")?;
    }

    let payload = [7u8; RTT_FRAME - HEADER_LEN];
    let mut back = [0u8; RTT_FRAME - HEADER_LEN];
    let mut rtt = Samples::new()?;
    let mut id = 0u64;
    for i in 0..rtt_iters + rtt_iters / 10 {
        id += 1;
        let t0 = Instant::now();
        let n = round_trip(&mut *link, id, Opcode::Ping, &payload, &mut back)?;
        if i >= rtt_iters / 10 {
            rtt.record(t0);
        }
        if n != payload.len() {
            bail!("echo returned {n} bytes, not {}", payload.len());
        }
    }

    // Touched (not calloc'd) memory, so the sender reads real pages.
    let data = vec![1u8; STREAM_BYTES];
    let mut stream = Samples::new()?;
    for _ in 0..streams {
        id += 1;
        let t0 = Instant::now();
        round_trip(&mut *link, id, Opcode::MemcpyHtoD, &data, &mut back)?;
        stream.record(t0);
    }
    drop(link);
    match rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("{t} floor echo side: {e}"),
        Err(_) => bail!("{t} floor echo thread ended without a word"),
    }
    Ok(Floor { rtt: rtt.micros(), stream: stream.gbps(STREAM_BYTES) })
}

/// `iters` Ping round trips through a server's worker (client core → transport → worker's
/// reader and dispatch → back): remora's own per-call floor on that server, with no CUDA.
pub(crate) fn server_ping(client: &Client, iters: usize) -> anyhow::Result<Stat> {
    let mut s = Samples::new()?;
    for i in 0..iters + iters / 10 {
        let t0 = Instant::now();
        client.ping().map_err(|st| anyhow::anyhow!("ping: {st}"))?;
        if i >= iters / 10 {
            s.record(t0);
        }
    }
    Ok(s.micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_give_percentiles_in_the_right_units() {
        let mut s = Samples::new().unwrap();
        for v in 1..=100u64 {
            s.0.record(v * 1000).unwrap();
        }
        let us = s.micros();
        assert_eq!(us.count, 100);
        assert!((us.p50 - 50.0).abs() < 0.1, "{us:?}");
        assert!((us.p99 - 99.0).abs() < 0.1, "{us:?}");
        assert!((us.worst - 100.0).abs() < 0.1, "{us:?}");
        // 1 MB per sample: 50 µs at p50 is 20 GB/s; the slowest (100 µs) 10 GB/s.
        let g = s.gbps(1_000_000);
        assert!((g.p50 - 20.0).abs() < 0.05 && (g.worst - 10.0).abs() < 0.05, "{g:?}");
        assert!(g.p99 <= g.p50);
    }

    #[test]
    fn floors_are_measured_over_both_transports() {
        for t in [Transport::Tcp, Transport::Shm] {
            let f = measure(t, 50, 1).unwrap();
            assert_eq!((f.rtt.count, f.stream.count), (50, 1), "{t}");
            assert!(f.rtt.p50 > 0.0 && f.rtt.p50 <= f.rtt.p99 && f.rtt.p99 <= f.rtt.worst, "{t}: {f:?}");
            assert!(f.stream.p50 > 0.0, "{t}: {f:?}");
        }
    }
}
