//! One connection to a remora server and the calls made over it.
//!
//! # Thread safety
//! [`Client`] is `Send + Sync`. A call holds the connection's lock from sending its request to
//! reading its reply, so concurrent callers are serialised on the wire and replies cannot be
//! mixed up; fire-and-forget calls hold it only while their frame is written (over tcp: added
//! to the batch, `batch.rs`, which leaves before any later request).
//!
//! # Errors
//! Calls return the server's [`Status`] (`CUresult` numbering). A fire-and-forget operation
//! that fails is reported by the next call that waits for a reply, as CUDA reports
//! asynchronous errors. A fatal device error (assert, illegal address) and a lost connection
//! are sticky: every later call fails with them at once.
//!
//! # Device output
//! What the GPU work printed (device `printf`) arrives with the replies (`Flags::OUTPUT`) and
//! is handed to the output sink ([`Client::set_output_sink`]; standard output by default)
//! before the call returns, in the order the replies arrived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use remora_transport::proto::ClientProto;
use remora_transport::stripes::Stripes;
use remora_transport::{connect, handshake, recv_header, Endpoint, Link, SendHalf};
use remora_wire::handshake::Capabilities;
use remora_wire::ops::{self, DeviceInfo, ImageKind, ParamInfo};
use remora_wire::{Flags, Header, Opcode, Status, Welcome, I32, OUTPUT_PREFIX_LEN, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::batch::{self, Batch, Flusher};

/// Why [`Client::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("bad server URL: {0}")]
    Url(remora_transport::Error),
    /// The server could not be reached.
    #[error("cannot reach {url}: {source}")]
    Connect {
        /// The endpoint.
        url: String,
        /// Why.
        source: remora_transport::Error,
    },
    /// The handshake failed (version, token, busy server).
    #[error("{url}: {source}")]
    Handshake {
        /// The endpoint.
        url: String,
        /// Why.
        source: remora_transport::Error,
    },
}

/// Launch geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    /// Grid dimensions.
    pub grid: [u32; 3],
    /// Block dimensions.
    pub block: [u32; 3],
    /// Dynamic shared memory bytes.
    pub shared_mem: u32,
}

struct Conn {
    link: Box<dyn Link>,
    /// Fire-and-forget frames not sent yet (tcp; see `batch.rs`).
    batch: Batch,
    /// Frames that went into a batch, and sends that carried batched frames.
    batch_counters: BatchCounters,
    /// Extra TCP connections for large copies (none on other transports, or when refused).
    stripes: Stripes,
    proto: ClientProto,
    /// Sticky: fatal device error or lost connection.
    broken: Option<Status>,
}

/// Where device output goes: see [`Client::set_output_sink`].
pub type OutputSink = Box<dyn Fn(&[u8]) + Send + Sync>;

fn stdout_sink(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// A connection to a remora server.
pub struct Client {
    conn: Arc<Mutex<Conn>>,
    /// Held while bytes go onto the connection (always taken with `conn` held, after it): the
    /// flusher takes it before letting `conn` go and sends outside `conn`, so calls can add to
    /// the next batch meanwhile while every later send still waits for the batch to be out.
    wire: Arc<Mutex<()>>,
    /// Sends batched frames a short window after the first (tcp only; `None`: no batching).
    /// It holds its own handle on the connection: when it is dropped it sends what is still
    /// batched, then lets the connection go.
    flusher: Option<Flusher>,
    /// Taken while the connection lock is still held and kept while the sink runs, so output
    /// reaches the sink in reply order without the connection waiting on the sink.
    output: Mutex<OutputSink>,
    endpoint: Endpoint,
    welcome: Welcome,
    capabilities: Capabilities,
    epoch: Instant,
    /// Whether the session has stripes (fixed at connect time).
    striping: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("session", &self.welcome.session_id.get())
            .field("backend", &self.welcome.backend_name())
            .finish_non_exhaustive()
    }
}

/// Replies whose payload is read into a caller's buffer rather than a fresh vector.
enum Into<'a> {
    Vec,
    Slice(&'a mut [u8]),
    /// A successful reply's data follows on the stripes ([`Opcode::MemcpyStriped`]).
    Stripes(&'a mut [u8]),
}

/// A query's answer: done, not yet (`NOT_READY`), or an error.
fn completed(r: Result<(), Status>) -> Result<bool, Status> {
    match r {
        Ok(()) => Ok(true),
        Err(Status::NOT_READY) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What [`Client::batch_counters`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchCounters {
    /// Frames that went into a batch.
    pub frames: u64,
    /// Sends that carried batched frames.
    pub sends: u64,
}

/// Most slots a bounced copy may use (requests in flight; the connection allows 64).
const MAX_SLOTS: usize = 16;

/// The chunks of a copy through a bounce arena ([`Client::memcpy_dtoh_bounced`]).
struct Bounce {
    base: u64,
    slot: usize,
    slots: usize,
    device: u64,
    len: usize,
    chunks: usize,
    stream: u64,
    to_device: bool,
}

impl Bounce {
    fn new(
        (base, slot, slots): (u64, usize, usize),
        device: u64,
        len: usize,
        stream: u64,
        to_device: bool,
    ) -> Result<Bounce, Status> {
        // At most MAX_SLOTS requests are in flight, well inside the connection's credit.
        if slot == 0 || slots == 0 || slots > MAX_SLOTS || usize::try_from(base).is_err() {
            return Err(Status::INVALID_VALUE);
        }
        Ok(Bounce { base, slot, slots, device, len, chunks: len.div_ceil(slot), stream, to_device })
    }

    /// Offset and length of chunk k.
    fn range(&self, k: usize) -> (usize, usize) {
        let off = k * self.slot;
        (off, (self.len - off).min(self.slot))
    }

    fn slot_addr(&self, k: usize) -> u64 {
        self.base + ((k % self.slots) * self.slot) as u64
    }

    fn request(&self, k: usize) -> ops::MemcpyHost {
        let (off, n) = self.range(k);
        ops::MemcpyHost::new(self.device + off as u64, self.slot_addr(k), n as u64, self.stream, self.to_device)
    }

    /// The first `n` bytes of chunk k's slot.
    ///
    /// # Safety
    /// The arena is mapped, and the worker does not write the slot while the slice lives.
    unsafe fn slot(&self, k: usize, n: usize) -> &[u8] {
        let at: *const u8 = std::ptr::with_exposed_provenance(usize::try_from(self.slot_addr(k)).unwrap_or(0));
        // SAFETY: per this function's contract; `n` is at most one slot.
        unsafe { std::slice::from_raw_parts(at, n) }
    }

    /// The first `n` bytes of chunk k's slot, to fill.
    ///
    /// # Safety
    /// The arena is mapped, and the worker does not read or write the slot while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot_mut(&self, k: usize, n: usize) -> &mut [u8] {
        let at: *mut u8 = std::ptr::with_exposed_provenance_mut(usize::try_from(self.slot_addr(k)).unwrap_or(0));
        // SAFETY: per this function's contract; `n` is at most one slot.
        unsafe { std::slice::from_raw_parts_mut(at, n) }
    }
}

/// Requests sent and replies read during a bounced copy, its first failed chunk, and the
/// first asynchronous error of earlier work that a reply carried.
#[derive(Default)]
struct Pending {
    sent: usize,
    received: usize,
    error: Option<Status>,
    deferred: Option<Status>,
}

impl Pending {
    /// What the copy returns: a failed chunk first, else an earlier asynchronous error.
    fn outcome(&self) -> Result<Vec<u8>, Status> {
        match self.error.or(self.deferred) {
            Some(s) => Err(s),
            None => Ok(Vec::new()),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(90);
const KEEPALIVE: Duration = Duration::from_secs(10);
const DEAD_AFTER: Duration = Duration::from_secs(3600);

/// `REMORA_TCP_STREAMS` (default 4): connections a `tcp://` session may use for large copies
/// (the main one's bytes plus extra ones; 0 or 1: the main connection only).
fn tcp_streams() -> usize {
    match std::env::var("REMORA_TCP_STREAMS") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            tracing::warn!("REMORA_TCP_STREAMS={v:?} is not a number; using 4");
            4
        }),
        Err(_) => 4,
    }
}

/// `REMORA_TIMEOUT` (seconds, default 5): how long a server that stopped answering at the
/// transport level (host down, network cut) may keep a call waiting before it fails.
fn dead_peer_timeout() -> Duration {
    match std::env::var("REMORA_TIMEOUT") {
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s.min(86_400.0)),
            _ => {
                tracing::warn!("REMORA_TIMEOUT={v:?} is not a positive number of seconds; using 5");
                remora_transport::tcp::DEAD_PEER_TIMEOUT
            }
        },
        Err(_) => remora_transport::tcp::DEAD_PEER_TIMEOUT,
    }
}

impl Client {
    /// Connect to `url` (`tcp://host:port`, `shm://name`) and run the handshake.
    pub fn connect(url: &str, token: Option<&str>) -> Result<Client, ConnectError> {
        let endpoint: Endpoint = url.parse().map_err(ConnectError::Url)?;
        let rdma = matches!(endpoint, Endpoint::Rdma(_));
        if rdma {
            // Say what is missing here before bothering the server.
            remora_transport::verbs::available().map_err(|why| ConnectError::Connect {
                url: url.into(),
                source: remora_transport::Error::Io { op: "rdma", source: std::io::Error::other(why) },
            })?;
        }
        let mut link = connect(&endpoint).map_err(|source| ConnectError::Connect { url: url.into(), source })?;
        let mut caps = Capabilities::ASYNC_OPS | Capabilities::SHM | Capabilities::DEVICE_OUTPUT;
        if rdma {
            caps = caps | Capabilities::RDMA;
        }
        let wanted_stripes = tcp_streams();
        if matches!(endpoint, Endpoint::Tcp(_)) && wanted_stripes > 1 {
            caps = caps | Capabilities::STRIPES;
        }
        // The server may need to start a worker first; after the handshake, calls may wait on
        // the GPU for as long as the work takes.
        link.set_recv_timeout(Some(HANDSHAKE_TIMEOUT));
        let (welcome, capabilities) = handshake::client_handshake(&mut *link, token.map(str::as_bytes), caps)
            .map_err(|source| ConnectError::Handshake { url: url.into(), source })?;
        if rdma {
            if !capabilities.contains(Capabilities::RDMA) {
                return Err(ConnectError::Handshake {
                    url: url.into(),
                    source: remora_transport::Error::Handshake(
                        "the server does not offer RDMA at this address (is it listening on rdma://, not tcp://?)"
                            .into(),
                    ),
                });
            }
            link = remora_transport::verbs::client_upgrade(link, remora_transport::verbs::SETUP_TIMEOUT)
                .map_err(|source| ConnectError::Handshake { url: url.into(), source })?;
        }
        let mut stripes = Stripes::default();
        if capabilities.contains(Capabilities::STRIPES) {
            let peer = link.peer();
            let server = peer.trim_start_matches("tcp://").parse::<std::net::SocketAddr>().map(|a| a.ip());
            let server = server.map_err(|_| ConnectError::Handshake {
                url: url.into(),
                source: remora_transport::Error::Protocol(format!("tcp peer {peer:?} is not an address")),
            })?;
            stripes = remora_transport::stripes::join(&mut *link, server, wanted_stripes)
                .map_err(|source| ConnectError::Handshake { url: url.into(), source })?;
            tracing::debug!(stripes = stripes.len(), "extra tcp connections for large copies");
        }
        link.set_recv_timeout(None);
        // The link stays in this process: a reply's header and body come in one `recv` (tcp).
        link.set_read_ahead(true);
        link.set_dead_peer_timeout(dead_peer_timeout())
            .map_err(|source| ConnectError::Connect { url: url.into(), source })?;
        tracing::debug!(%endpoint, session = welcome.session_id.get(), worker = welcome.worker_pid.get(), backend = welcome.backend_name(), "connected");
        let epoch = Instant::now();
        let striping = !stripes.is_empty();
        let conn = Arc::new(Mutex::new(Conn {
            link,
            batch: Batch::default(),
            batch_counters: BatchCounters::default(),
            stripes,
            proto: ClientProto::new(64, nanos(KEEPALIVE), nanos(DEAD_AFTER), 0),
            broken: None,
        }));
        let wire = Arc::new(Mutex::new(()));
        let flusher = match (&endpoint, batch::window()) {
            (Endpoint::Tcp(_), Some(window)) => {
                let half = conn.lock().link.send_half();
                match half {
                    Some(half) => Flusher::start(window, Self::flush_job(Arc::clone(&conn), Arc::clone(&wire), half)),
                    None => None,
                }
            }
            _ => None,
        };
        Ok(Client {
            conn,
            wire,
            flusher,
            output: Mutex::new(Box::new(stdout_sink)),
            endpoint,
            welcome,
            capabilities,
            epoch,
            striping,
        })
    }

    /// The server's Welcome (session id, worker pid, device count, backend).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Capabilities both sides share.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Send device output (what the GPU work printed with `printf`, delivered with the reply of
    /// the synchronising call that flushed it) to `sink` instead of standard output. The sink
    /// runs on the calling thread before that call returns, one reply's output at a time, in
    /// reply order; it must not call back into this client.
    pub fn set_output_sink(&self, sink: OutputSink) {
        *self.output.lock() = sink;
    }

    /// Whether the server runs the emulated backend (a test double, not a GPU).
    pub fn is_emulated(&self) -> bool {
        self.welcome.backend_name() == "emulated"
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fail(conn: &mut Conn, e: remora_transport::Error) -> Status {
        tracing::warn!("connection to the remora server lost: {e}");
        conn.broken = Some(Status::TRANSPORT);
        Status::TRANSPORT
    }

    /// Send a request and wait for its reply; reply payload into a vector or the given slice.
    /// Device output that came with the reply goes to the output sink before this returns.
    fn call_inner(&self, opcode: Opcode, req: &[u8], data: &[u8], into: Into<'_>) -> Result<Vec<u8>, Status> {
        self.call_with(|c, output| self.exchange(c, opcode, req, data, into, output))
    }

    /// Run `f` on the connection; device output that came with its reply goes to the output
    /// sink before this returns.
    fn call_with(&self, f: impl FnOnce(&mut Conn, &mut Vec<u8>) -> Result<Vec<u8>, Status>) -> Result<Vec<u8>, Status> {
        let mut guard = self.conn.lock();
        let mut output = Vec::new();
        let r = f(&mut guard, &mut output);
        if !output.is_empty() {
            // Take the sink before letting the connection go: a later reply's output cannot
            // overtake this one, and other calls need not wait for the sink's writes.
            let sink = self.output.lock();
            drop(guard);
            sink(&output);
        }
        r
    }

    fn exchange(
        &self,
        c: &mut Conn,
        opcode: Opcode,
        req: &[u8],
        data: &[u8],
        into: Into<'_>,
        output: &mut Vec<u8>,
    ) -> Result<Vec<u8>, Status> {
        self.send_request(c, opcode, req, data, true)?;
        self.receive_reply(c, into, output)
    }

    /// Send one request frame (header, operation struct, inline data), after the batched
    /// frames, in the same send.
    fn send_request(&self, c: &mut Conn, opcode: Opcode, req: &[u8], data: &[u8], reply: bool) -> Result<(), Status> {
        let hdr = self.start_frame(c, opcode, req.len() + data.len(), reply)?;
        self.send_after_batch(c, [hdr.as_bytes(), req, data])
    }

    /// The header of a new frame of `len` payload bytes (`reply`: a request waited for), or the
    /// connection's sticky error.
    fn start_frame(&self, c: &mut Conn, opcode: Opcode, len: usize, reply: bool) -> Result<Header, Status> {
        if let Some(s) = c.broken {
            return Err(s);
        }
        c.proto.start(opcode, len as u64, reply, self.now()).map_err(|_| Status::LIMIT_EXCEEDED)
    }

    /// Send the batched frames, then `frame` (header, operation struct, inline data; any part
    /// may be empty), in one send under the wire lock; the batch is emptied either way.
    fn send_after_batch(&self, c: &mut Conn, frame: [&[u8]; 3]) -> Result<(), Status> {
        let Conn { link, batch, batch_counters, .. } = c;
        if !batch.is_empty() {
            batch_counters.sends += 1;
        }
        let [hdr, req, data] = frame;
        let wire = self.wire.lock();
        let r = link.send(&[batch.bytes(), hdr, req, data]);
        drop(wire);
        batch.clear();
        r.map_err(|e| Self::fail(c, e))
    }

    /// Send the batched frames, if any.
    fn flush_batch(&self, c: &mut Conn) -> Result<(), Status> {
        if c.batch.is_empty() {
            return Ok(());
        }
        if let Some(s) = c.broken {
            c.batch.clear();
            return Err(s);
        }
        self.send_after_batch(c, [&[], &[], &[]])
    }

    /// The flusher's job: take the batch under the connection lock, take the wire before
    /// letting the connection go, and send on `half` outside it — a call posting meanwhile
    /// adds to the next batch instead of waiting for this send, and any later send waits for
    /// the wire, so frames stay in order. A failed send marks the connection broken; the next
    /// call reports it.
    fn flush_job(conn: Arc<Mutex<Conn>>, wire: Arc<Mutex<()>>, half: SendHalf) -> impl FnMut() + Send + 'static {
        let mut out = Vec::new();
        move || {
            let mut c = conn.lock();
            if c.batch.is_empty() {
                return;
            }
            if c.broken.is_some() {
                c.batch.clear();
                return;
            }
            c.batch.take_into(&mut out);
            c.batch_counters.sends += 1;
            let w = wire.lock();
            drop(c);
            let r = half.send(&[&out]);
            drop(w);
            out.clear();
            if let Err(e) = r {
                Self::fail(&mut conn.lock(), e);
            }
        }
    }

    /// Receive the reply to the oldest request waiting for one: its body, or its status; an
    /// asynchronous error it carries (from earlier fire-and-forget work) is returned in place
    /// of a successful body, as CUDA reports such errors at the next call.
    fn receive_reply(&self, c: &mut Conn, into: Into<'_>, output: &mut Vec<u8>) -> Result<Vec<u8>, Status> {
        let (out, async_err) = self.receive_reply_split(c, into, output)?;
        if !async_err.is_ok() {
            return Err(async_err);
        }
        Ok(out)
    }

    /// [`Client::receive_reply`], with the asynchronous error the reply carries apart: `Err` is
    /// this request's own failure (or a lost connection); `Ok((body, async_error))` otherwise.
    fn receive_reply_split(
        &self,
        c: &mut Conn,
        into: Into<'_>,
        output: &mut Vec<u8>,
    ) -> Result<(Vec<u8>, Status), Status> {
        let rh = match recv_header(&mut *c.link) {
            Ok(h) => h,
            Err(e) => return Err(Self::fail(c, e)),
        };
        let status = match c.proto.on_reply(&rh, self.now()) {
            Ok(s) => s,
            Err(e) => return Err(Self::fail(c, remora_transport::Error::Protocol(e.to_string()))),
        };
        let len = match Self::recv_output(c, &rh, output) {
            Ok(len) => len,
            Err(e) => {
                output.clear();
                return Err(Self::fail(c, e));
            }
        };
        let mut out = Vec::new();
        let r = match into {
            Into::Slice(dst) if status.is_ok() => {
                if len != dst.len() {
                    return Err(Self::fail(
                        c,
                        remora_transport::Error::Protocol(format!(
                            "reply of {len} bytes for a {}-byte read",
                            dst.len()
                        )),
                    ));
                }
                c.link.recv_exact(dst)
            }
            Into::Stripes(dst) if status.is_ok() => {
                if len != 0 {
                    return Err(Self::fail(
                        c,
                        remora_transport::Error::Protocol(format!("striped copy reply carries {len} bytes")),
                    ));
                }
                let piece = c.stripes.piece();
                dst.chunks_mut(piece).try_for_each(|p| c.stripes.recv_piece(p))
            }
            _ => {
                out.resize(len, 0);
                c.link.recv_exact(&mut out)
            }
        };
        if let Err(e) = r {
            return Err(Self::fail(c, e));
        }
        let async_err = c.proto.take_async_error();
        if async_err.is_fatal() || status.is_fatal() {
            c.broken = Some(if async_err.is_fatal() { async_err } else { status });
        }
        if !status.is_ok() {
            // This request failed (or, for a query, answered "not ready"): its own status is
            // the answer, and an asynchronous error the reply carried waits for the next call
            // that succeeds — a `cudaStreamQuery` polling loop must not swallow it.
            if !async_err.is_ok() && c.broken.is_none() {
                c.proto.defer_async_error(async_err);
            }
            return Err(status);
        }
        Ok((out, async_err))
    }

    /// Read the device output that starts the payload of a reply with [`Flags::OUTPUT`] into
    /// `output`. Returns the length of the reply's own body, which follows.
    fn recv_output(c: &mut Conn, rh: &Header, output: &mut Vec<u8>) -> Result<usize, remora_transport::Error> {
        let len = rh.payload_len();
        if !rh.flags().contains(Flags::OUTPUT) {
            return Ok(len);
        }
        let bad = || remora_transport::Error::Protocol(format!("output block does not fit a {len}-byte reply"));
        let rest = len.checked_sub(OUTPUT_PREFIX_LEN).ok_or_else(bad)?;
        let mut prefix = [0u8; OUTPUT_PREFIX_LEN];
        c.link.recv_exact(&mut prefix)?;
        let n = usize::try_from(u32::from_le_bytes(prefix)).map_err(|_| bad())?;
        let body = rest.checked_sub(n).ok_or_else(bad)?;
        output.resize(n, 0);
        c.link.recv_exact(output)?;
        Ok(body)
    }

    fn call<R: FromBytes + KnownLayout + Immutable + Copy>(
        &self,
        opcode: Opcode,
        req: &[u8],
        data: &[u8],
    ) -> Result<R, Status> {
        let out = self.call_inner(opcode, req, data, Into::Vec)?;
        remora_wire::read::<R>(&out).map_err(|_| Status::PROTOCOL)
    }

    fn call_unit(&self, opcode: Opcode, req: &[u8]) -> Result<(), Status> {
        self.call_inner(opcode, req, &[], Into::Vec).map(drop)
    }

    /// Send a fire-and-forget request: its failure surfaces at the next replying call.
    /// A request with an empty reply: waited for when `wait`, else fire-and-forget.
    fn unit_or_post(&self, opcode: Opcode, req: &[u8], wait: bool) -> Result<(), Status> {
        if wait {
            self.call_unit(opcode, req)
        } else {
            self.post(opcode, req, &[])
        }
    }

    fn post(&self, opcode: Opcode, req: &[u8], data: &[u8]) -> Result<(), Status> {
        let mut c = self.conn.lock();
        let Some(flusher) = self.flusher.as_ref().filter(|_| data.len() <= batch::INLINE_MAX) else {
            return self.send_request(&mut c, opcode, req, data, false);
        };
        let hdr = self.start_frame(&mut c, opcode, req.len() + data.len(), false)?;
        c.batch_counters.frames += 1;
        if c.batch.push(&[hdr.as_bytes(), req, data]) {
            flusher.notify();
        }
        if c.batch.len() >= batch::MAX {
            self.flush_batch(&mut c)?;
        }
        Ok(())
    }

    /// A large host → device copy whose bytes go on the stripes; waited for when `wait`.
    fn striped_htod(&self, dst: u64, src: &[u8], stream: u64, wait: bool) -> Result<(), Status> {
        let o = ops::MemcpyStriped::new(dst, src.len() as u64, stream, true);
        self.call_with(|c, output| {
            self.send_request(c, Opcode::MemcpyStriped, o.as_bytes(), &[], wait)?;
            for piece in src.chunks(c.stripes.piece()) {
                if let Err(e) = c.stripes.send_piece(piece) {
                    return Err(Self::fail(c, e));
                }
            }
            if wait {
                self.receive_reply(c, Into::Vec, output)
            } else {
                Ok(Vec::new())
            }
        })
        .map(drop)
    }

    /// A large device → host copy whose bytes come on the stripes.
    fn striped_dtoh(&self, dst: &mut [u8], src: u64, stream: u64) -> Result<(), Status> {
        let o = ops::MemcpyStriped::new(src, dst.len() as u64, stream, false);
        self.call_with(|c, output| {
            self.send_request(c, Opcode::MemcpyStriped, o.as_bytes(), &[], true)?;
            self.receive_reply(c, Into::Stripes(dst), output)
        })
        .map(drop)
    }

    fn striped(&self, len: usize) -> bool {
        self.striping && len >= remora_transport::stripes::MIN_STRIPED
    }

    /// How many extra TCP connections carry this session's large copies (0: none).
    pub fn stripe_count(&self) -> usize {
        self.conn.lock().stripes.len()
    }

    /// Fire-and-forget frames batched so far, and the sends that carried them (tcp; zeros where
    /// frames are sent one by one). Diagnostics: a burst of N batched frames costs far fewer
    /// than N sends.
    pub fn batch_counters(&self) -> BatchCounters {
        self.conn.lock().batch_counters
    }

    /// The sticky error, if the session is broken (fatal device fault or lost connection).
    pub fn sticky_error(&self) -> Option<Status> {
        self.conn.lock().broken
    }

    /// Round trip with no work (keep-alive, latency probe).
    pub fn ping(&self) -> Result<(), Status> {
        self.call_unit(Opcode::Ping, &[])
    }

    /// End the session cleanly. The server answers once everything the session held, GPU
    /// contexts included, is released; later calls fail with `TRANSPORT`.
    pub fn close(&self) -> Result<(), Status> {
        let r = self.call_unit(Opcode::Goodbye, &[]);
        let mut c = self.conn.lock();
        c.broken.get_or_insert(Status::TRANSPORT);
        r
    }

    /// [`Client::close`] for process exit: gives up if another thread holds the connection for
    /// longer than `wait` (a call still in progress), and waits at most `wait` for the reply.
    pub fn close_within(&self, wait: Duration) -> Result<(), Status> {
        let Some(mut c) = self.conn.try_lock_for(wait) else { return Err(Status::TRANSPORT) };
        if c.broken.is_some() {
            return Ok(());
        }
        c.link.set_recv_timeout(Some(wait));
        drop(c);
        self.close()
    }

    // --- devices ---

    /// Number of devices.
    pub fn device_count(&self) -> Result<u32, Status> {
        self.call::<ops::DeviceCountReply>(Opcode::DeviceGetCount, &[], &[]).map(|r| r.count.get())
    }

    /// Name, UUID, memory and every attribute of a device.
    pub fn device_info(&self, dev: u32) -> Result<DeviceInfo, Status> {
        self.call::<DeviceInfo>(Opcode::DeviceGetInfo, ops::DeviceRef { device: U32::new(dev) }.as_bytes(), &[])
    }

    /// One device attribute.
    pub fn device_attribute(&self, dev: u32, attr: u32) -> Result<i32, Status> {
        let req = ops::DeviceAttribute { device: U32::new(dev), attribute: U32::new(attr) };
        self.call::<ops::I32Reply>(Opcode::DeviceGetAttribute, req.as_bytes(), &[]).map(|r| r.value.get())
    }

    /// Free and total device memory.
    pub fn mem_get_info(&self, dev: u32) -> Result<(u64, u64), Status> {
        self.call::<ops::MemInfoReply>(Opcode::MemGetInfo, ops::DeviceRef { device: U32::new(dev) }.as_bytes(), &[])
            .map(|r| (r.free.get(), r.total.get()))
    }

    /// The server's CUDA driver version.
    pub fn driver_version(&self) -> Result<i32, Status> {
        self.call::<ops::I32Reply>(Opcode::DriverGetVersion, &[], &[]).map(|r| r.value.get())
    }

    /// Wait for all work on a device.
    pub fn device_synchronize(&self, dev: u32) -> Result<(), Status> {
        self.call_unit(Opcode::DeviceSynchronize, ops::DeviceRef { device: U32::new(dev) }.as_bytes())
    }

    /// Free everything this session holds on a device.
    pub fn device_reset(&self, dev: u32) -> Result<(), Status> {
        self.call_unit(Opcode::DeviceReset, ops::DeviceRef { device: U32::new(dev) }.as_bytes())
    }

    /// Whether `dev` can access `peer`'s memory.
    pub fn can_access_peer(&self, dev: u32, peer: u32) -> Result<bool, Status> {
        let req = ops::DevicePair { device: U32::new(dev), peer: U32::new(peer) };
        self.call::<ops::I32Reply>(Opcode::DeviceCanAccessPeer, req.as_bytes(), &[]).map(|r| r.value.get() != 0)
    }

    /// Let `dev`'s context access `peer`'s memory (`enable`), or stop it.
    pub fn set_peer_access(&self, dev: u32, peer: u32, enable: bool) -> Result<(), Status> {
        let req = ops::DevicePair { device: U32::new(dev), peer: U32::new(peer) };
        let op = if enable { Opcode::DeviceEnablePeerAccess } else { Opcode::DeviceDisablePeerAccess };
        self.call_unit(op, req.as_bytes())
    }

    /// A context limit (`CUlimit`) of a device.
    pub fn ctx_get_limit(&self, dev: u32, limit: u32) -> Result<u64, Status> {
        let req = ops::Limit { device: U32::new(dev), limit: U32::new(limit), value: U64::new(0) };
        self.call::<ops::LimitReply>(Opcode::CtxGetLimit, req.as_bytes(), &[]).map(|r| r.value.get())
    }

    /// Set a context limit (`CUlimit`) of a device.
    pub fn ctx_set_limit(&self, dev: u32, limit: u32, value: u64) -> Result<(), Status> {
        let req = ops::Limit { device: U32::new(dev), limit: U32::new(limit), value: U64::new(value) };
        self.call_unit(Opcode::CtxSetLimit, req.as_bytes())
    }

    /// `cuCtxResetPersistingL2Cache` on a device's context.
    pub fn ctx_reset_persisting_l2(&self, dev: u32) -> Result<(), Status> {
        let req = ops::DeviceRef { device: U32::new(dev) };
        self.call_unit(Opcode::CtxResetPersistingL2Cache, req.as_bytes())
    }

    // --- arrays, textures, surfaces ---

    /// Create a CUDA array (`CUarray_format`, 1/2/4 channels, `CUDA_ARRAY3D_*` flags).
    #[allow(clippy::too_many_arguments)]
    pub fn array_create(
        &self,
        dev: u32,
        format: u32,
        channels: u32,
        flags: u32,
        width: u64,
        height: u64,
        depth: u64,
    ) -> Result<u64, Status> {
        let req = ops::ArrayCreate {
            device: U32::new(dev),
            format: U32::new(format),
            channels: U32::new(channels),
            flags: U32::new(flags),
            width: U64::new(width),
            height: U64::new(height),
            depth: U64::new(depth),
        };
        self.call::<ops::HandleReply>(Opcode::ArrayCreate, req.as_bytes(), &[]).map(|r| r.handle.get())
    }

    /// Destroy a CUDA array.
    pub fn array_destroy(&self, array: u64) -> Result<(), Status> {
        self.call_unit(Opcode::ArrayDestroy, ops::HandleRef { handle: U64::new(array) }.as_bytes())
    }

    /// A 2D copy of `height` rows of `width` bytes. A host source is `host_src` (packed), a host
    /// destination `host_dst` (packed, filled before this returns). `wait` false makes a copy
    /// without a host destination fire-and-forget.
    #[allow(clippy::too_many_arguments)]
    pub fn memcpy_2d(
        &self,
        src: ops::Loc2D,
        dst: ops::Loc2D,
        width: u64,
        height: u64,
        host_src: &[u8],
        host_dst: Option<&mut [u8]>,
        stream: u64,
        wait: bool,
    ) -> Result<(), Status> {
        let req =
            ops::Memcpy2D { src, dst, width: U64::new(width), height: U64::new(height), stream: U64::new(stream) };
        match host_dst {
            Some(out) => self.call_inner(Opcode::Memcpy2D, req.as_bytes(), host_src, Into::Slice(out)).map(drop),
            None if wait => self.call_inner(Opcode::Memcpy2D, req.as_bytes(), host_src, Into::Vec).map(drop),
            None => self.post(Opcode::Memcpy2D, req.as_bytes(), host_src),
        }
    }

    /// Create a texture object; returns the driver's `CUtexObject`.
    pub fn tex_object_create(&self, desc: &ops::TexObjectCreate) -> Result<u64, Status> {
        self.call::<ops::HandleReply>(Opcode::TexObjectCreate, desc.as_bytes(), &[]).map(|r| r.handle.get())
    }

    /// Destroy a texture object.
    pub fn tex_object_destroy(&self, tex: u64) -> Result<(), Status> {
        self.call_unit(Opcode::TexObjectDestroy, ops::HandleRef { handle: U64::new(tex) }.as_bytes())
    }

    /// Create a surface object over an array; returns the driver's `CUsurfObject`.
    pub fn surf_object_create(&self, array: u64) -> Result<u64, Status> {
        let req = ops::HandleRef { handle: U64::new(array) };
        self.call::<ops::HandleReply>(Opcode::SurfObjectCreate, req.as_bytes(), &[]).map(|r| r.handle.get())
    }

    /// Destroy a surface object.
    pub fn surf_object_destroy(&self, surf: u64) -> Result<(), Status> {
        self.call_unit(Opcode::SurfObjectDestroy, ops::HandleRef { handle: U64::new(surf) }.as_bytes())
    }

    // --- memory ---

    /// Allocate device memory.
    pub fn mem_alloc(&self, dev: u32, size: u64) -> Result<u64, Status> {
        self.call::<ops::PtrReply>(Opcode::MemAlloc, ops::MemAlloc::new(dev, size).as_bytes(), &[]).map(|r| r.ptr.get())
    }

    /// Device memory at `[addr, addr + size)` (the device side of a host range): inside a
    /// [`Client::mem_reserve`] range, or anywhere for `addr` 0; `ADDRESS_IN_USE` when the worker
    /// cannot place it. Returns its address; freed with [`Client::mem_free`].
    pub fn mem_alloc_at(&self, dev: u32, addr: u64, size: u64) -> Result<u64, Status> {
        self.call::<ops::PtrReply>(Opcode::MemAllocAt, ops::MemAllocAt::new(dev, addr, size).as_bytes(), &[])
            .map(|r| r.ptr.get())
    }

    /// Same host only: have the worker map `/dev/shm/<name>` (made by this process, `len`
    /// bytes, mapped here at `addr`) at the same address and register it with the driver.
    pub fn arena_map(&self, addr: u64, len: u64, name: &str) -> Result<(), Status> {
        let o = ops::ArenaMap::new(addr, len, name).ok_or(Status::INVALID_VALUE)?;
        self.call_unit(Opcode::ArenaMap, o.as_bytes())
    }

    /// Undo [`Client::arena_map`] (the worker waits for its devices first).
    pub fn arena_unmap(&self, addr: u64) -> Result<(), Status> {
        self.call_unit(Opcode::ArenaUnmap, ops::MemFree { ptr: U64::new(addr) }.as_bytes())
    }

    /// A copy between device memory and an arena, ordered on `stream`: finished when this
    /// returns if `wait`, else fire-and-forget (the DMA runs when the stream reaches it).
    pub fn memcpy_host(
        &self,
        device: u64,
        host: u64,
        len: u64,
        stream: u64,
        to_device: bool,
        wait: bool,
    ) -> Result<(), Status> {
        let o = ops::MemcpyHost::new(device, host, len, stream, to_device);
        self.unit_or_post(Opcode::MemcpyHost, o.as_bytes(), wait)
    }

    /// A device → host copy into `dst` through a bounce arena `(address, slot bytes, slots)`
    /// (`shm://`): the worker DMAs chunk k into slot k % slots, answering when it is there,
    /// while this thread copies earlier chunks out with `copy_out(slot, dst_chunk)`, so the DMA
    /// and the one CPU copy overlap and no byte crosses the transport. Ordered on `stream`;
    /// returns when every byte is in `dst` (the first error otherwise, once the replies still
    /// owed are read).
    ///
    /// # Safety
    /// The bounce range must be an arena the worker has mapped, used by nobody else until this
    /// returns.
    pub unsafe fn memcpy_dtoh_bounced(
        &self,
        dst: &mut [u8],
        src: u64,
        stream: u64,
        bounce: (u64, usize, usize),
        copy_out: &dyn Fn(&[u8], &mut [u8]),
    ) -> Result<(), Status> {
        let b = Bounce::new(bounce, src, dst.len(), stream, false)?;
        self.call_with(|c, output| {
            let mut pending = Pending::default();
            for k in 0..b.chunks {
                // Keep every slot busy: request chunks up to k + slots - 1.
                while pending.error.is_none() && pending.sent < b.chunks && pending.sent < k + b.slots {
                    // A failed send breaks the connection: nothing more is owed.
                    self.send_request(c, Opcode::MemcpyHost, b.request(pending.sent).as_bytes(), &[], true)?;
                    pending.sent += 1;
                }
                if k >= pending.sent {
                    break;
                }
                if self.bounce_reply(c, &mut pending, output)? {
                    let (off, n) = b.range(k);
                    // SAFETY: the slot holds chunk k: the worker answered after its DMA, and
                    // writes the slot again only for chunk k + slots, requested after this.
                    copy_out(unsafe { b.slot(k, n) }, &mut dst[off..off + n]);
                }
            }
            pending.outcome()
        })
        .map(drop)
    }

    /// A host → device copy from `src` through a bounce arena (see
    /// [`Client::memcpy_dtoh_bounced`]): this thread copies chunk k into slot k % slots with
    /// `copy_in(src_chunk, slot)` and asks the worker to DMA it, reusing a slot once the worker
    /// has answered for its last chunk. Returns when every chunk is on the device.
    ///
    /// # Safety
    /// As for [`Client::memcpy_dtoh_bounced`].
    pub unsafe fn memcpy_htod_bounced(
        &self,
        dst: u64,
        src: &[u8],
        stream: u64,
        bounce: (u64, usize, usize),
        copy_in: &dyn Fn(&[u8], &mut [u8]),
    ) -> Result<(), Status> {
        let b = Bounce::new(bounce, dst, src.len(), stream, true)?;
        self.call_with(|c, output| {
            let mut pending = Pending::default();
            for k in 0..b.chunks {
                if k >= b.slots {
                    // Slot k % slots is free once chunk k - slots is on the device.
                    self.bounce_reply(c, &mut pending, output)?;
                }
                if pending.error.is_some() {
                    break;
                }
                let (off, n) = b.range(k);
                // SAFETY: the slot is free (above) and this thread's alone until its request.
                copy_in(&src[off..off + n], unsafe { b.slot_mut(k, n) });
                self.send_request(c, Opcode::MemcpyHost, b.request(k).as_bytes(), &[], true)?;
                pending.sent += 1;
            }
            while pending.received < pending.sent {
                self.bounce_reply(c, &mut pending, output)?;
            }
            pending.outcome()
        })
        .map(drop)
    }

    /// Read the next reply of a bounced copy: `Ok(true)` when its chunk was copied and no
    /// earlier chunk failed. A failed chunk is kept as the copy's error (the replies still owed
    /// are read, no more chunks are asked for); an asynchronous error of earlier work that a
    /// reply carries is kept for the end and the copy goes on, as on the message path; a broken
    /// connection ends the copy.
    fn bounce_reply(&self, c: &mut Conn, pending: &mut Pending, output: &mut Vec<u8>) -> Result<bool, Status> {
        let mut more = Vec::new();
        let r = self.receive_reply_split(c, Into::Vec, &mut more);
        output.append(&mut more);
        pending.received += 1;
        match r {
            Err(s) if c.broken.is_some() => Err(s),
            Err(s) => {
                pending.error.get_or_insert(s);
                Ok(false)
            }
            Ok((_, deferred)) => {
                if !deferred.is_ok() {
                    if c.broken.is_some() {
                        return Err(deferred);
                    }
                    pending.deferred.get_or_insert(deferred);
                }
                Ok(pending.error.is_none())
            }
        }
    }

    /// Register `len` bytes at `addr` with the network adapter so the worker can read and
    /// write them directly (rdma:// only; `None` on other links). Returns the remote key.
    ///
    /// # Safety
    /// The memory must stay mapped until [`Client::deregister_remote`] or the session's end.
    pub unsafe fn register_remote(&self, addr: usize, len: usize) -> Option<Result<u32, String>> {
        let mut c = self.conn.lock();
        let remote = c.link.remote_memory()?;
        // SAFETY: per this function's contract.
        Some(unsafe { remote.register(addr, len) }.map_err(|e| e.to_string()))
    }

    /// Undo [`Client::register_remote`]; false if `addr` was not registered.
    pub fn deregister_remote(&self, addr: usize) -> bool {
        let mut c = self.conn.lock();
        c.link.remote_memory().is_some_and(|r| r.deregister(addr))
    }

    /// What the link's one-sided path has moved (rdma:// only).
    pub fn remote_counters(&self) -> Option<remora_transport::RemoteCounters> {
        let mut c = self.conn.lock();
        c.link.remote_memory().map(|r| r.counters())
    }

    /// A copy between device memory and registered client memory (see
    /// [`Client::register_remote`]), moved by the worker with RDMA; finished when this returns
    /// if `wait`, else fire-and-forget (ordered on `stream`, done by the next synchronisation).
    #[allow(clippy::too_many_arguments)]
    pub fn memcpy_remote(
        &self,
        device: u64,
        host: u64,
        len: u64,
        stream: u64,
        rkey: u32,
        to_device: bool,
        wait: bool,
    ) -> Result<(), Status> {
        let o = ops::MemcpyRemote {
            device: U64::new(device),
            host: U64::new(host),
            len: U64::new(len),
            stream: U64::new(stream),
            to_device: U32::new(u32::from(to_device)),
            rkey: U32::new(rkey),
        };
        self.unit_or_post(Opcode::MemcpyRemote, o.as_bytes(), wait)
    }

    /// Reserve device address space (no memory) in the worker; released with
    /// [`Client::mem_free`] of its base.
    pub fn mem_reserve(&self, dev: u32, size: u64) -> Result<u64, Status> {
        self.call::<ops::PtrReply>(Opcode::MemReserve, ops::MemAlloc::new(dev, size).as_bytes(), &[])
            .map(|r| r.ptr.get())
    }

    /// Free device memory (0 is a no-op).
    pub fn mem_free(&self, ptr: u64) -> Result<(), Status> {
        self.call_unit(Opcode::MemFree, ops::MemFree { ptr: U64::new(ptr) }.as_bytes())
    }

    /// The allocation containing `ptr`: (base, size).
    pub fn mem_get_address_range(&self, ptr: u64) -> Result<(u64, u64), Status> {
        self.call::<ops::MemRangeReply>(Opcode::MemGetAddressRange, ops::PtrRef { ptr: U64::new(ptr) }.as_bytes(), &[])
            .map(|r| (r.base.get(), r.size.get()))
    }

    /// Host → device copy, waiting for completion.
    pub fn memcpy_htod(&self, dst: u64, src: &[u8]) -> Result<(), Status> {
        if self.striped(src.len()) {
            return self.striped_htod(dst, src, 0, true);
        }
        let req = ops::MemcpyHtoD { dst: U64::new(dst), len: U64::new(src.len() as u64), stream: U64::new(0) };
        self.call_inner(Opcode::MemcpyHtoD, req.as_bytes(), src, Into::Vec).map(drop)
    }

    /// Host → device copy ordered on `stream`, not waited for. The bytes are taken before this
    /// returns, so `src` may be reused at once.
    pub fn memcpy_htod_async(&self, dst: u64, src: &[u8], stream: u64) -> Result<(), Status> {
        if self.striped(src.len()) {
            return self.striped_htod(dst, src, stream, false);
        }
        let req = ops::MemcpyHtoD { dst: U64::new(dst), len: U64::new(src.len() as u64), stream: U64::new(stream) };
        self.post(Opcode::MemcpyHtoD, req.as_bytes(), src)
    }

    /// Device → host copy into `dst`, ordered on the default stream.
    pub fn memcpy_dtoh(&self, dst: &mut [u8], src: u64) -> Result<(), Status> {
        self.memcpy_dtoh_on(dst, src, 0)
    }

    /// Device → host copy into `dst`, ordered on `stream`; returns when the bytes are in `dst`.
    pub fn memcpy_dtoh_on(&self, dst: &mut [u8], src: u64, stream: u64) -> Result<(), Status> {
        if self.striped(dst.len()) {
            return self.striped_dtoh(dst, src, stream);
        }
        let req = ops::MemcpyDtoH { src: U64::new(src), len: U64::new(dst.len() as u64), stream: U64::new(stream) };
        self.call_inner(Opcode::MemcpyDtoH, req.as_bytes(), &[], Into::Slice(dst)).map(drop)
    }

    /// Device → device copy; `wait` false makes it fire-and-forget.
    pub fn memcpy_dtod(&self, dst: u64, src: u64, len: u64, stream: u64, wait: bool) -> Result<(), Status> {
        let req =
            ops::MemcpyDtoD { dst: U64::new(dst), src: U64::new(src), len: U64::new(len), stream: U64::new(stream) };
        self.unit_or_post(Opcode::MemcpyDtoD, req.as_bytes(), wait)
    }

    /// Set `count` elements of `element_size` (1, 2, 4) bytes; `wait` false: fire-and-forget.
    pub fn memset(
        &self,
        dst: u64,
        value: u32,
        element_size: u32,
        count: u64,
        stream: u64,
        wait: bool,
    ) -> Result<(), Status> {
        let req = ops::Memset {
            dst: U64::new(dst),
            count: U64::new(count),
            value: U32::new(value),
            element_size: U32::new(element_size),
            stream: U64::new(stream),
        };
        self.unit_or_post(Opcode::Memset, req.as_bytes(), wait)
    }

    // --- streams ---

    /// Create a stream.
    pub fn stream_create(&self, dev: u32, flags: u32, priority: i32) -> Result<u64, Status> {
        let req = ops::StreamCreate {
            device: U32::new(dev),
            flags: U32::new(flags),
            priority: I32::new(priority),
            reserved: U32::new(0),
        };
        self.call::<ops::HandleReply>(Opcode::StreamCreate, req.as_bytes(), &[]).map(|r| r.handle.get())
    }

    /// Destroy a stream.
    pub fn stream_destroy(&self, stream: u64) -> Result<(), Status> {
        self.call_unit(Opcode::StreamDestroy, ops::HandleRef { handle: U64::new(stream) }.as_bytes())
    }

    /// Wait for a stream (0: the legacy default stream).
    pub fn stream_synchronize(&self, stream: u64) -> Result<(), Status> {
        self.call_unit(Opcode::StreamSynchronize, ops::HandleRef { handle: U64::new(stream) }.as_bytes())
    }

    /// Whether a stream's work is complete.
    pub fn stream_query(&self, stream: u64) -> Result<bool, Status> {
        completed(self.call_unit(Opcode::StreamQuery, ops::HandleRef { handle: U64::new(stream) }.as_bytes()))
    }

    /// `cuStreamSetAttribute` (`value`: a `CUstreamAttrValue`).
    /// `dev` names the device whose legacy default stream `stream` 0 is.
    pub fn stream_set_attribute(&self, dev: u32, stream: u64, attr: u32, value: [u8; 64]) -> Result<(), Status> {
        let req = ops::StreamAttribute { stream: U64::new(stream), attr: U32::new(attr), device: U32::new(dev), value };
        self.call_unit(Opcode::StreamSetAttribute, req.as_bytes())
    }

    /// `cuStreamGetAttribute`: the 64-byte `CUstreamAttrValue`.
    pub fn stream_get_attribute(&self, dev: u32, stream: u64, attr: u32) -> Result<[u8; 64], Status> {
        let req = ops::StreamAttribute {
            stream: U64::new(stream),
            attr: U32::new(attr),
            device: U32::new(dev),
            value: [0; 64],
        };
        self.call::<ops::StreamAttributeReply>(Opcode::StreamGetAttribute, req.as_bytes(), &[]).map(|r| r.value)
    }

    /// Make `stream` wait for `event` (fire-and-forget).
    pub fn stream_wait_event(&self, stream: u64, event: u64, flags: u32) -> Result<(), Status> {
        let req = ops::StreamWaitEvent {
            stream: U64::new(stream),
            event: U64::new(event),
            flags: U32::new(flags),
            reserved: U32::new(0),
        };
        self.post(Opcode::StreamWaitEvent, req.as_bytes(), &[])
    }

    // --- events ---

    /// Create an event.
    pub fn event_create(&self, dev: u32, flags: u32) -> Result<u64, Status> {
        let req = ops::EventCreate { device: U32::new(dev), flags: U32::new(flags) };
        self.call::<ops::HandleReply>(Opcode::EventCreate, req.as_bytes(), &[]).map(|r| r.handle.get())
    }

    /// Record an event on a stream (fire-and-forget).
    pub fn event_record(&self, event: u64, stream: u64) -> Result<(), Status> {
        let req = ops::EventRecord { event: U64::new(event), stream: U64::new(stream) };
        self.post(Opcode::EventRecord, req.as_bytes(), &[])
    }

    /// Wait for an event.
    pub fn event_synchronize(&self, event: u64) -> Result<(), Status> {
        self.call_unit(Opcode::EventSynchronize, ops::HandleRef { handle: U64::new(event) }.as_bytes())
    }

    /// Whether an event has completed.
    pub fn event_query(&self, event: u64) -> Result<bool, Status> {
        completed(self.call_unit(Opcode::EventQuery, ops::HandleRef { handle: U64::new(event) }.as_bytes()))
    }

    /// Milliseconds between two recorded events.
    pub fn event_elapsed(&self, start: u64, end: u64) -> Result<f32, Status> {
        let req = ops::EventElapsed { start: U64::new(start), end: U64::new(end) };
        self.call::<ops::F32Reply>(Opcode::EventElapsedTime, req.as_bytes(), &[]).map(|r| r.value.get())
    }

    /// Destroy an event.
    pub fn event_destroy(&self, event: u64) -> Result<(), Status> {
        self.call_unit(Opcode::EventDestroy, ops::HandleRef { handle: U64::new(event) }.as_bytes())
    }

    // --- modules and launch ---

    /// Load a module image (fatbinary, cubin or PTX) on a device.
    pub fn module_load(&self, dev: u32, image: &[u8], kind: ImageKind) -> Result<u64, Status> {
        let req =
            ops::ModuleLoad { device: U32::new(dev), kind: U32::new(kind as u32), len: U64::new(image.len() as u64) };
        let out = self.call_inner(Opcode::ModuleLoad, req.as_bytes(), image, Into::Vec)?;
        remora_wire::read::<ops::HandleReply>(&out).map(|r| r.handle.get()).map_err(|_| Status::PROTOCOL)
    }

    /// Unload a module.
    pub fn module_unload(&self, module: u64) -> Result<(), Status> {
        self.call_unit(Opcode::ModuleUnload, ops::HandleRef { handle: U64::new(module) }.as_bytes())
    }

    fn symbol_req(module: u64, name: &str) -> Result<ops::ModuleGetSymbol, Status> {
        let name_len = u32::try_from(name.len()).map_err(|_| Status::INVALID_VALUE)?;
        Ok(ops::ModuleGetSymbol { module: U64::new(module), name_len: U32::new(name_len), reserved: U32::new(0) })
    }

    /// A kernel of a module.
    pub fn module_get_function(&self, module: u64, name: &str) -> Result<u64, Status> {
        let req = Self::symbol_req(module, name)?;
        self.call::<ops::HandleReply>(Opcode::ModuleGetFunction, req.as_bytes(), name.as_bytes())
            .map(|r| r.handle.get())
    }

    /// A global of a module: (address, size). The range becomes copyable by this session.
    pub fn module_get_global(&self, module: u64, name: &str) -> Result<(u64, u64), Status> {
        let req = Self::symbol_req(module, name)?;
        self.call::<ops::MemRangeReply>(Opcode::ModuleGetGlobal, req.as_bytes(), name.as_bytes())
            .map(|r| (r.base.get(), r.size.get()))
    }

    /// A kernel's parameters: (offset, size) each.
    pub fn func_param_info(&self, function: u64) -> Result<Vec<(u32, u32)>, Status> {
        let out = self.call_inner(
            Opcode::FuncGetParamInfo,
            ops::HandleRef { handle: U64::new(function) }.as_bytes(),
            &[],
            Into::Vec,
        )?;
        let (head, rest) = remora_wire::split::<ops::ParamInfoReply>(&out).map_err(|_| Status::PROTOCOL)?;
        let n = head.count.get() as usize;
        let list = <[ParamInfo]>::ref_from_prefix_with_elems(rest, n).map_err(|_| Status::PROTOCOL)?.0;
        Ok(list.iter().map(|p| (p.offset.get(), p.size.get())).collect())
    }

    /// A function attribute (`CUfunction_attribute`).
    pub fn func_get_attribute(&self, function: u64, attr: i32) -> Result<i32, Status> {
        let req = ops::FuncAttribute { function: U64::new(function), attribute: I32::new(attr), reserved: U32::new(0) };
        self.call::<ops::I32Reply>(Opcode::FuncGetAttribute, req.as_bytes(), &[]).map(|r| r.value.get())
    }

    /// Set a function attribute.
    pub fn func_set_attribute(&self, function: u64, attr: i32, value: i32) -> Result<(), Status> {
        let req =
            ops::FuncSetAttribute { function: U64::new(function), attribute: I32::new(attr), value: I32::new(value) };
        self.call_unit(Opcode::FuncSetAttribute, req.as_bytes())
    }

    /// `cuFuncSetCacheConfig`.
    pub fn func_set_cache_config(&self, function: u64, config: i32) -> Result<(), Status> {
        let req =
            ops::FuncAttribute { function: U64::new(function), attribute: I32::new(config), reserved: U32::new(0) };
        self.call_unit(Opcode::FuncSetCacheConfig, req.as_bytes())
    }

    /// Blocks of `function` that fit on one multiprocessor at `block_size` threads.
    pub fn occupancy_max_active_blocks(
        &self,
        function: u64,
        block_size: u32,
        dynamic_smem: u64,
        flags: u32,
    ) -> Result<i32, Status> {
        let req = ops::Occupancy {
            function: U64::new(function),
            block_size: U32::new(block_size),
            flags: U32::new(flags),
            dynamic_smem: U64::new(dynamic_smem),
        };
        self.call::<ops::I32Reply>(Opcode::OccupancyMaxActiveBlocks, req.as_bytes(), &[]).map(|r| r.value.get())
    }

    /// Launch a kernel (fire-and-forget) with its parameter buffer laid out at the kernel's
    /// parameter offsets.
    pub fn launch(&self, function: u64, dims: LaunchDims, stream: u64, params: &[u8]) -> Result<(), Status> {
        let req = Self::launch_req(function, dims, stream, params, 0)?;
        self.post(Opcode::Launch, req.as_bytes(), params)
    }

    /// Launch a cooperative kernel (`cuLaunchCooperativeKernel`), fire-and-forget.
    pub fn launch_cooperative(
        &self,
        function: u64,
        dims: LaunchDims,
        stream: u64,
        params: &[u8],
    ) -> Result<(), Status> {
        let req = Self::launch_req(function, dims, stream, params, ops::LAUNCH_COOPERATIVE)?;
        self.post(Opcode::Launch, req.as_bytes(), params)
    }

    /// Launch and wait for the launch itself to be accepted (not for the kernel to finish).
    pub fn launch_checked(&self, function: u64, dims: LaunchDims, stream: u64, params: &[u8]) -> Result<(), Status> {
        let req = Self::launch_req(function, dims, stream, params, 0)?;
        self.call_inner(Opcode::Launch, req.as_bytes(), params, Into::Vec).map(drop)
    }

    fn launch_req(function: u64, d: LaunchDims, stream: u64, params: &[u8], flags: u32) -> Result<ops::Launch, Status> {
        let params_len = u32::try_from(params.len()).map_err(|_| Status::INVALID_VALUE)?;
        Ok(ops::Launch {
            function: U64::new(function),
            stream: U64::new(stream),
            grid: d.grid.map(U32::new),
            block: d.block.map(U32::new),
            shared_mem: U32::new(d.shared_mem),
            params_len: U32::new(params_len),
            flags: U32::new(flags),
            reserved: U32::new(0),
        })
    }
}
