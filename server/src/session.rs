//! One client session inside a worker process: read frames, check them, dispatch them to the
//! backend, reply. Everything the session creates is recorded here and released in
//! [`Session::release_all`], whichever way the session ends.

use std::sync::atomic::Ordering;
use std::time::Instant;

use remora_transport::proto::ServerProto;
use remora_transport::{discard, recv_header, Link};
use remora_wire::ops::{self, DeviceInfo, ImageKind, ParamInfo};
use remora_wire::{split, Header, Opcode, Status, I32, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use std::collections::HashMap;

use crate::backend::{ArrayDesc, Backend, Copy2D, LaunchConfig, Mem2D, RawStream};
use crate::handles::{Range, RangeKind, Ranges, Slab};
use crate::output::OutputCapture;
use crate::stats::SessionStats;

/// Per-session limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of device memory the session may hold.
    pub max_memory: u64,
    /// Streams the session may hold.
    pub max_streams: usize,
    /// Events the session may hold.
    pub max_events: usize,
    /// Largest module image.
    pub max_module_bytes: u64,
    /// Arrays the session may hold.
    pub max_arrays: usize,
    /// Bytes of device address space the session may reserve (pinned host memory of the
    /// client takes its addresses from there): 64 TiB by default, a quarter of the GPU's VA.
    pub max_reserved: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_memory: u64::MAX,
            max_streams: 4096,
            max_events: 65536,
            max_module_bytes: 1 << 30,
            max_arrays: 65536,
            max_reserved: 64 << 40,
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The client said Goodbye; the reply (if one is wanted) is sent by the worker once the
    /// session's resources, contexts included, are released, so that a client that waits for it
    /// knows its GPU memory is free again.
    Goodbye(Option<Header>),
    /// The client went away (closed, killed, network gone).
    PeerClosed,
    /// The client broke the protocol; the reason is logged.
    Protocol(String),
    /// A transport error.
    Transport(remora_transport::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Goodbye(_) => write!(f, "client said goodbye"),
            End::PeerClosed => write!(f, "client disconnected"),
            End::Protocol(why) => write!(f, "protocol violation: {why}"),
            End::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl From<remora_transport::Error> for End {
    fn from(e: remora_transport::Error) -> End {
        match e {
            remora_transport::Error::PeerClosed => End::PeerClosed,
            remora_transport::Error::BadHeader(h) => End::Protocol(h.to_string()),
            other => End::Transport(other),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Owned {
    dev: u32,
    raw: u64,
}

#[derive(Debug, Clone, Copy)]
struct Array {
    dev: u32,
    raw: u64,
    /// Bytes per row.
    row_bytes: u64,
    /// Rows of one slice (at least 1).
    rows: u64,
    /// Slices of a 3D or layered array (1 otherwise).
    slices: u64,
}

#[derive(Debug, Clone, Copy)]
struct Function {
    dev: u32,
    raw: u64,
    module: u64,
}

/// A session's state.
pub struct Session<'s> {
    backend: &'s mut dyn Backend,
    link: Box<dyn Link>,
    proto: ServerProto,
    limits: Limits,
    stats: &'s SessionStats,
    ranges: Ranges,
    /// Device address space reserved for the client (`MemReserve`): base → (bytes, device).
    /// Not memory: copies there are refused until `MemAllocAt` maps some.
    reservations: std::collections::BTreeMap<u64, (u64, u32)>,
    /// The client's shared pinned memory mapped here (same host only).
    arenas: crate::arena::Arenas,
    /// Pinned staging for copies of pageable data: made at the first one; `Some(None)` once the
    /// driver refused it (not asked again).
    staging: Option<Option<crate::staging::Staging>>,
    /// Extra TCP connections for large copies ([`remora_transport::stripes`]); none by default.
    stripes: remora_transport::stripes::Stripes,
    /// Pinned staging with halves of one stripe piece: made at the first striped copy.
    striped_staging: Option<Option<crate::staging::Staging>>,
    streams: Slab<Owned>,
    events: Slab<Owned>,
    modules: Slab<Owned>,
    functions: Slab<Function>,
    arrays: Slab<Array>,
    /// Texture objects (the driver's values) → device.
    textures: HashMap<u64, u32>,
    /// Surface objects (the driver's values) → device.
    surfaces: HashMap<u64, u32>,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Whether the operation being dispatched waits for its reply.
    replying: bool,
    /// The worker's captured stdout (device `printf`), sent with replies.
    output: Option<OutputCapture>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("link", &self.link).finish_non_exhaustive()
    }
}

/// An operation's outcome; its reply body, if any, is in `Session::out`.
type Reply = Result<(), Status>;

/// A frame read and checked, waiting to run.
#[derive(Debug)]
pub struct Frame {
    hdr: Header,
    wants_reply: bool,
    work: Work,
    /// When its header was read (the start of its latency).
    read_at: Instant,
}

/// What a frame asks the backend to do (its bytes are in `Session::buf`).
#[derive(Debug, Clone, Copy)]
enum Work {
    /// A small operation; its whole payload is in `buf`.
    Small(Opcode),
    /// Host → device; the data is in `buf`.
    HtoD { dev: u32, dst: u64, stream: RawStream },
    /// A large host → device copy whose `len` data bytes are still on the link: received in
    /// pinned halves, each copied while the next arrives ([`crate::staging`]).
    HtoDStream { dev: u32, dst: u64, stream: RawStream, len: usize },
    /// Device → host into `out`.
    DtoH { dev: u32, src: u64, len: usize, stream: RawStream },
    /// A copy between device memory and client memory registered with the NIC (rdma://),
    /// moved with RDMA READ/WRITE through the pinned staging halves ([`crate::staging`]).
    Remote { to: crate::staging::Target, host: u64, rkey: u32, to_device: bool },
    /// A large copy whose bytes travel on the session's stripes (tcp://), through pinned
    /// staging halves of one piece each ([`remora_transport::stripes`]).
    Striped { to: crate::staging::Target, to_device: bool },
    /// A striped host → device copy refused before its data: the pieces are read and dropped.
    StripedRefused { len: usize, status: Status },
    /// A 2D copy; host source data is in `buf`, host destination data (`out_len` bytes) goes
    /// to `out`.
    Copy2D { dev: u32, copy: Copy2D, stream: RawStream, out_len: usize },
    /// Module image in `buf`.
    ModuleLoad { dev: u32 },
    /// Refused before any backend call.
    Failed(Status),
    /// Clean end.
    Goodbye,
}

/// Whether CUDA flushes device `printf` output during `op` (the points the CUDA programming
/// guide lists: synchronisation, blocking copies, module load/unload, launch, context
/// destruction; plus a free, which synchronises). Its reply waits for a full drain of the
/// capture (a flush and a system call); other replies carry only what the collector already
/// has, which costs one atomic load when there is nothing.
fn flushes_device_output(op: Opcode) -> bool {
    matches!(
        op,
        Opcode::DeviceSynchronize
            | Opcode::DeviceReset
            | Opcode::StreamSynchronize
            | Opcode::EventSynchronize
            | Opcode::MemcpyDtoH
            | Opcode::MemcpyHtoD
            | Opcode::MemcpyDtoD
            | Opcode::MemcpyHost
            | Opcode::MemcpyRemote
            | Opcode::MemcpyStriped
            | Opcode::Memcpy2D
            | Opcode::Memset
            | Opcode::MemFree
            | Opcode::ModuleLoad
            | Opcode::ModuleUnload
            | Opcode::Launch
            | Opcode::Goodbye
    )
}

/// Send `reply` with its `body`, and `output` (captured device `printf` output) ahead of the
/// body under [`remora_wire::Flags::OUTPUT`] when there is any. One vectored send.
pub fn send_reply(
    link: &mut dyn Link,
    mut reply: Header,
    output: &[u8],
    body: &[u8],
) -> Result<(), remora_transport::Error> {
    if output.is_empty() {
        return link.send(&[reply.as_bytes(), body]);
    }
    // The capture keeps at most 64 MiB between drains, far below u32::MAX; cut defensively.
    let n = u32::try_from(output.len()).unwrap_or(u32::MAX);
    let output = &output[..n as usize];
    let prefix = reply.attach_output(n);
    link.send(&[reply.as_bytes(), &prefix, output, body])
}

fn op<T: FromBytes + KnownLayout + Immutable + Copy>(payload: &[u8]) -> Result<T, Status> {
    remora_wire::read::<T>(payload).map_err(|_| Status::PROTOCOL)
}

impl<'s> Session<'s> {
    /// A session over `link`, executing on `backend`.
    pub fn new(
        backend: &'s mut dyn Backend,
        link: Box<dyn Link>,
        limits: Limits,
        stats: &'s SessionStats,
    ) -> Session<'s> {
        Session {
            backend,
            link,
            proto: ServerProto::new(),
            limits,
            stats,
            ranges: Ranges::default(),
            reservations: std::collections::BTreeMap::new(),
            arenas: crate::arena::Arenas::default(),
            staging: None,
            stripes: remora_transport::stripes::Stripes::default(),
            striped_staging: None,
            streams: Slab::default(),
            events: Slab::default(),
            modules: Slab::default(),
            functions: Slab::default(),
            arrays: Slab::default(),
            textures: HashMap::new(),
            surfaces: HashMap::new(),
            buf: Vec::new(),
            out: Vec::new(),
            replying: false,
            output: None,
        }
    }

    /// Send what `capture` collects (the worker's stdout: device `printf` output) with the
    /// replies, for the client to print. See [`send_reply`].
    pub fn set_output_capture(&mut self, capture: OutputCapture) {
        self.output = Some(capture);
    }

    /// Use `stripes` for the session's large copies (tcp://, after the offer was taken).
    pub fn set_stripes(&mut self, stripes: remora_transport::stripes::Stripes) {
        self.stripes = stripes;
    }

    /// The link.
    pub fn link(&mut self) -> &mut dyn Link {
        &mut *self.link
    }

    /// Count an operation run on a device's own polling thread.
    pub(crate) fn note_routed(&self) {
        self.stats.routed.fetch_add(1, Ordering::Relaxed);
    }

    /// The reply to a Goodbye (carrying any pending asynchronous error), the link to send it
    /// on and the output capture: the session is over, its backend may be dropped before the
    /// reply goes out (drain the capture after that, and send with [`send_reply`]).
    pub fn into_goodbye(mut self, hdr: &Header) -> (Box<dyn Link>, Header, Option<OutputCapture>) {
        let reply = self.proto.reply(hdr, Status::SUCCESS, 0);
        (self.link, reply, self.output)
    }

    /// Devices the session can use.
    pub fn device_count(&self) -> u32 {
        self.backend.device_count()
    }

    /// Read one frame and check it: the payload is in `buf`, ranges and handles of bulk
    /// operations are checked, and what is left to do is returned. No backend call happens
    /// here, so the work can run on its device's thread.
    pub(crate) fn read_frame(&mut self) -> Result<Frame, End> {
        let hdr = recv_header(&mut *self.link)?;
        let read_at = Instant::now();
        let inc = self.proto.on_request(&hdr).map_err(|e| End::Protocol(e.to_string()))?;
        self.stats.ops.fetch_add(1, Ordering::Relaxed);
        let len = hdr.payload_len();
        let frame = |work| Frame { hdr, wants_reply: inc.wants_reply, work, read_at };
        let opcode = match inc.opcode {
            Ok(o) => o,
            Err(raw) => {
                tracing::debug!(opcode = raw, "unsupported opcode");
                discard(&mut *self.link, len)?;
                return Ok(frame(Work::Failed(Status::UNSUPPORTED_OPCODE)));
            }
        };
        let work = match opcode {
            Opcode::MemcpyHtoD => self.read_htod(len)?,
            Opcode::ModuleLoad => self.read_module(len)?,
            Opcode::Memcpy2D => self.read_copy_2d(len)?,
            Opcode::MemcpyDtoH => {
                self.read_small(len, 64)?;
                let o: ops::MemcpyDtoH =
                    op(&self.buf).map_err(|_| End::Protocol("malformed MemcpyDtoH payload".into()))?;
                self.copy_target(o.src.get(), o.len.get(), o.stream.get())
                    .map(|t| Work::DtoH { dev: t.dev, src: t.addr, len: t.len, stream: t.stream })
                    .unwrap_or_else(Work::Failed)
            }
            Opcode::Goodbye => {
                discard(&mut *self.link, len)?;
                Work::Goodbye
            }
            Opcode::MemcpyStriped => {
                self.read_small(len, 64)?;
                if self.stripes.is_empty() {
                    return Err(End::Protocol("a striped copy on a session without stripes".into()));
                }
                let o: ops::MemcpyStriped =
                    op(&self.buf).map_err(|_| End::Protocol("malformed MemcpyStriped payload".into()))?;
                let to_device = o.to_device.get() == 1;
                let n = usize::try_from(o.len.get()).map_err(|_| End::Protocol("striped copy too large".into()))?;
                match self.copy_target(o.device.get(), o.len.get(), o.stream.get()) {
                    Ok(to) => Work::Striped { to, to_device },
                    Err(status) if to_device => Work::StripedRefused { len: n, status },
                    Err(status) => Work::Failed(status),
                }
            }
            Opcode::MemcpyRemote => {
                self.read_small(len, 64)?;
                let o: ops::MemcpyRemote =
                    op(&self.buf).map_err(|_| End::Protocol("malformed MemcpyRemote payload".into()))?;
                self.copy_target(o.device.get(), o.len.get(), o.stream.get())
                    .map(|to| Work::Remote {
                        to,
                        host: o.host.get(),
                        rkey: o.rkey.get(),
                        to_device: o.to_device.get() == 1,
                    })
                    .unwrap_or_else(Work::Failed)
            }
            _ => {
                self.read_small(len, 64 * 1024)?;
                Work::Small(opcode)
            }
        };
        Ok(frame(work))
    }

    /// The device whose thread should run `f` (`None`: any thread).
    pub(crate) fn device_of(&self, f: &Frame) -> Option<u32> {
        let b = &self.buf;
        let first_u32 = || remora_wire::read::<U32>(b).ok().map(|v| v.get());
        let first_u64 = || remora_wire::read::<U64>(b).ok().map(|v| v.get());
        let ptr_dev = |p: u64| self.ranges.containing(p).map(|(_, r)| r.dev);
        match f.work {
            Work::HtoD { dev, .. }
            | Work::HtoDStream { dev, .. }
            | Work::DtoH { dev, .. }
            | Work::Remote { to: crate::staging::Target { dev, .. }, .. }
            | Work::Striped { to: crate::staging::Target { dev, .. }, .. }
            | Work::ModuleLoad { dev }
            | Work::Copy2D { dev, .. } => Some(dev),
            Work::Failed(_) | Work::Goodbye | Work::StripedRefused { .. } => None,
            Work::Small(op) => match op {
                Opcode::DeviceGetAttribute
                | Opcode::DeviceGetInfo
                | Opcode::MemGetInfo
                | Opcode::DeviceSynchronize
                | Opcode::DeviceReset
                | Opcode::DeviceCanAccessPeer
                | Opcode::CtxGetLimit
                | Opcode::CtxSetLimit
                | Opcode::DeviceEnablePeerAccess
                | Opcode::DeviceDisablePeerAccess
                | Opcode::CtxResetPersistingL2Cache
                | Opcode::ArrayCreate
                | Opcode::MemAlloc
                | Opcode::MemAllocAt
                | Opcode::MemReserve
                | Opcode::StreamCreate
                | Opcode::EventCreate => first_u32(),
                Opcode::MemFree | Opcode::MemcpyDtoD | Opcode::Memset | Opcode::MemcpyHost => {
                    first_u64().and_then(ptr_dev)
                }
                Opcode::ArrayDestroy | Opcode::SurfObjectCreate => {
                    first_u64().and_then(|h| self.arrays.get(h).ok()).map(|a| a.dev)
                }
                Opcode::TexObjectDestroy => first_u64().and_then(|h| self.textures.get(&h).copied()),
                Opcode::SurfObjectDestroy => first_u64().and_then(|h| self.surfaces.get(&h).copied()),
                Opcode::StreamDestroy
                | Opcode::StreamSynchronize
                | Opcode::StreamQuery
                | Opcode::StreamWaitEvent
                | Opcode::StreamSetAttribute
                | Opcode::StreamGetAttribute => first_u64().and_then(|h| self.streams.get(h).ok()).map(|s| s.dev),
                Opcode::EventRecord
                | Opcode::EventSynchronize
                | Opcode::EventQuery
                | Opcode::EventDestroy
                | Opcode::EventElapsedTime => first_u64().and_then(|h| self.events.get(h).ok()).map(|e| e.dev),
                Opcode::ModuleUnload | Opcode::ModuleGetFunction | Opcode::ModuleGetGlobal => {
                    first_u64().and_then(|h| self.modules.get(h).ok()).map(|m| m.dev)
                }
                Opcode::FuncGetParamInfo
                | Opcode::FuncGetAttribute
                | Opcode::FuncSetAttribute
                | Opcode::OccupancyMaxActiveBlocks
                | Opcode::FuncSetCacheConfig
                | Opcode::Launch => first_u64().and_then(|h| self.functions.get(h).ok()).map(|f| f.dev),
                _ => None,
            },
        }
    }

    /// Run a frame's work on the backend and reply. `Some(end)`: the session is over.
    pub(crate) fn execute(&mut self, f: Frame) -> Result<Option<End>, End> {
        let result = match f.work {
            Work::Failed(status) => Err(status),
            Work::Goodbye => return Ok(Some(End::Goodbye(f.wants_reply.then_some(f.hdr)))),
            Work::HtoD { dev, dst, stream } => {
                let r = self.backend.memcpy_htod(dev, dst, &self.buf, stream);
                if r.is_ok() {
                    self.stats.bytes_in.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                }
                r
            }
            Work::HtoDStream { dev, dst, stream, len } => {
                self.ensure_staging();
                let r = match self.staging.as_mut().and_then(Option::as_mut) {
                    Some(st) => {
                        let to = crate::staging::Target { dev, addr: dst, len, stream };
                        match st.htod(&mut *self.backend, &mut *self.link, to, f.wants_reply) {
                            crate::staging::Outcome::Link(e) => return Err(End::from(e)),
                            crate::staging::Outcome::Done(r) => r,
                        }
                    }
                    None => {
                        // No pinned staging (the driver refused): one receive, one copy.
                        self.read_payload(len)?;
                        self.backend.memcpy_htod(dev, dst, &self.buf, stream)
                    }
                };
                if r.is_ok() {
                    self.stats.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
                }
                r
            }
            Work::DtoH { dev, src, len, stream } => {
                self.ensure_staging();
                self.out.clear();
                let from = crate::staging::Target { dev, addr: src, len, stream };
                let r = match self.staging.as_mut().and_then(Option::as_mut) {
                    // Large: DMA into one half while the other is sent; this replies itself.
                    Some(st) if len >= crate::staging::THRESHOLD && f.wants_reply => {
                        let output = Self::captured(&mut self.output);
                        let proto = &mut self.proto;
                        let hdr = f.hdr;
                        let first = |link: &mut dyn Link, body: &[u8]| {
                            let reply = proto.reply(&hdr, Status::SUCCESS, len as u64);
                            send_reply(link, reply, &output, body)
                        };
                        let outcome = st.dtoh(&mut *self.backend, &mut *self.link, from, first);
                        return self.finish_replied_copy(&f, len, outcome, &output);
                    }
                    Some(st) if f.wants_reply => st.dtoh_small(&mut *self.backend, from, &mut self.out),
                    _ => {
                        self.out.resize(len, 0);
                        self.backend.memcpy_dtoh(dev, &mut self.out, src, stream)
                    }
                };
                if r.is_ok() {
                    self.stats.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
                }
                r
            }
            Work::Remote { to, host, rkey, to_device } => {
                self.ensure_staging();
                let staging = self.staging.as_mut().and_then(Option::as_mut);
                match (staging, self.link.remote_memory()) {
                    (Some(st), Some(remote)) => {
                        let outcome = if to_device {
                            st.htod_remote(&mut *self.backend, remote, to, host, rkey, f.wants_reply)
                        } else {
                            st.dtoh_remote(&mut *self.backend, remote, to, host, rkey)
                        };
                        match outcome {
                            crate::staging::Outcome::Link(e) => return Err(End::from(e)),
                            crate::staging::Outcome::Done(r) => {
                                if r.is_ok() {
                                    let counter = if to_device { &self.stats.bytes_in } else { &self.stats.bytes_out };
                                    counter.fetch_add(to.len as u64, Ordering::Relaxed);
                                }
                                r
                            }
                        }
                    }
                    // Not an rdma session, or no pinned staging: the client copies through
                    // the message path instead.
                    _ => Err(Status::NOT_SUPPORTED),
                }
            }
            Work::StripedRefused { len, status } => {
                self.discard_striped(len)?;
                Err(status)
            }
            Work::Striped { to, to_device } => {
                if self.striped_staging.is_none() {
                    self.striped_staging =
                        Some(crate::staging::Staging::with_chunk(&mut *self.backend, self.stripes.piece()));
                }
                let Some(Some(st)) = self.striped_staging.as_mut() else {
                    // No pinned memory for the pieces: the client's bytes still arrive; drop them.
                    tracing::warn!("no pinned staging for striped copies; refusing them");
                    if to_device {
                        self.discard_striped(to.len)?;
                    }
                    return self.finish(&f.hdr, f.wants_reply, Err(Status::OUT_OF_MEMORY)).map(|()| None);
                };
                let stripes = &self.stripes;
                if to_device {
                    match st.htod_with(&mut *self.backend, to, f.wants_reply, |half, _| stripes.recv_piece(half)) {
                        crate::staging::Outcome::Link(e) => return Err(End::from(e)),
                        crate::staging::Outcome::Done(r) => {
                            if r.is_ok() {
                                self.stats.bytes_in.fetch_add(to.len as u64, Ordering::Relaxed);
                            }
                            r
                        }
                    }
                } else {
                    // The reply goes first (on the main link), then the pieces on the stripes.
                    let output = Self::captured(&mut self.output);
                    let proto = &mut self.proto;
                    let link = &mut self.link;
                    let hdr = f.hdr;
                    let drain = |half: &[u8], off: usize| {
                        if off == 0 {
                            let reply = proto.reply(&hdr, Status::SUCCESS, 0);
                            send_reply(&mut **link, reply, &output, &[])?;
                        }
                        stripes.send_piece(half)
                    };
                    let outcome = st.dtoh_with(&mut *self.backend, to, drain);
                    return self.finish_replied_copy(&f, to.len, outcome, &output);
                }
            }
            Work::Copy2D { dev, copy, stream, out_len } => {
                self.out.clear();
                self.out.resize(out_len, 0);
                let r = self.backend.memcpy_2d(dev, &copy, &self.buf, &mut self.out, stream);
                if r.is_ok() {
                    self.stats.bytes_in.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                    self.stats.bytes_out.fetch_add(out_len as u64, Ordering::Relaxed);
                }
                r
            }
            Work::ModuleLoad { dev } => self.backend.module_load(dev, &self.buf).map(|raw| {
                let h = self.modules.insert(Owned { dev, raw });
                self.put(&ops::HandleReply { handle: U64::new(h) });
            }),
            Work::Small(opcode) => match self.dispatch_replying(opcode, f.wants_reply) {
                Err(Status::PROTOCOL) => return Err(End::Protocol(format!("malformed {} payload", opcode.name()))),
                r => r,
            },
        };
        self.finish(&f.hdr, f.wants_reply, result)?;
        if let Ok(op) = f.hdr.opcode() {
            self.stats.record_latency(op, f.read_at.elapsed());
        }
        Ok(None)
    }

    /// The device output captured so far, for a reply a copy sends itself.
    fn captured(capture: &mut Option<OutputCapture>) -> Vec<u8> {
        let mut output = Vec::new();
        if let Some(c) = capture {
            c.drain(&mut output);
        }
        output
    }

    /// The end of a device → host copy that sent its own reply head: count its bytes, or, when
    /// the first DMA failed and nothing was sent, answer with the error (and the device
    /// output); its latency either way.
    fn finish_replied_copy(
        &mut self,
        f: &Frame,
        len: usize,
        outcome: crate::staging::Outcome,
        output: &[u8],
    ) -> Result<Option<End>, End> {
        match outcome {
            crate::staging::Outcome::Link(e) => return Err(End::from(e)),
            crate::staging::Outcome::Done(Ok(())) => {
                self.stats.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
            }
            crate::staging::Outcome::Done(Err(e)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let reply = self.proto.reply(&f.hdr, e, 0);
                send_reply(&mut *self.link, reply, output, &[]).map_err(End::from)?;
            }
        }
        if let Ok(op) = f.hdr.opcode() {
            self.stats.record_latency(op, f.read_at.elapsed());
        }
        Ok(None)
    }

    /// The checked device side of a copy: `len` bytes at `addr` of this session, on `stream`.
    fn copy_target(&self, addr: u64, len: u64, stream: u64) -> Result<crate::staging::Target, Status> {
        let (dev, _) = self.ranges.check(addr, len)?;
        let (dev, stream) = self.stream_for(stream, dev)?;
        let len = usize::try_from(len).map_err(|_| Status::INVALID_VALUE)?;
        Ok(crate::staging::Target { dev, addr, len, stream })
    }

    /// Read and drop the `len` bytes of a striped host → device copy that was refused.
    fn discard_striped(&mut self, len: usize) -> Result<(), End> {
        let piece = self.stripes.piece();
        let mut left = len;
        while left > 0 {
            let n = piece.min(left);
            self.stripes.discard_piece(n).map_err(End::from)?;
            left -= n;
        }
        Ok(())
    }

    /// Read a whole payload of at most `max` bytes into `buf`.
    fn read_small(&mut self, len: usize, max: usize) -> Result<(), End> {
        if len > max {
            return Err(End::Protocol(format!("payload of {len} bytes exceeds {max} for this operation")));
        }
        self.buf.clear();
        self.buf.resize(len, 0);
        self.link.recv_exact(&mut self.buf).map_err(End::from)
    }

    /// Read the `len` data bytes of a bulk payload into `buf`, growing it as they arrive (1 MiB,
    /// then doubling): a frame that announces more than it sends costs the worker about what
    /// was sent, not the announced size. `buf` keeps its capacity between frames, so a session
    /// that copies the same sizes again does not grow it again.
    fn read_payload(&mut self, len: usize) -> Result<(), End> {
        const FIRST_STEP: usize = 1 << 20;
        self.buf.clear();
        while self.buf.len() < len {
            let have = self.buf.len();
            let step = (len - have).min(have.max(FIRST_STEP));
            self.buf.reserve_exact(step);
            self.buf.resize(have + step, 0);
            self.link.recv_exact(&mut self.buf[have..])?;
        }
        Ok(())
    }

    /// Send the reply (or record an asynchronous error).
    fn finish(&mut self, hdr: &Header, wants_reply: bool, result: Reply) -> Result<(), End> {
        let status = result.err().unwrap_or(Status::SUCCESS);
        if !status.is_ok() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(opcode = hdr.opcode.get(), %status, "operation failed");
        }
        if !wants_reply {
            if !status.is_ok() {
                self.proto.on_async_error(status);
            }
            self.out.clear();
            return Ok(());
        }
        let mut output = Vec::new();
        if let Some(capture) = &mut self.output {
            if hdr.opcode().is_ok_and(flushes_device_output) {
                capture.drain(&mut output);
            } else {
                capture.take_collected(&mut output);
            }
        }
        let body: &[u8] = if status.is_ok() { &self.out } else { &[] };
        let reply = self.proto.reply(hdr, status, body.len() as u64);
        let r = send_reply(&mut *self.link, reply, &output, body);
        self.out.clear();
        r.map_err(End::from)
    }

    /// Whether `size` more bytes fit the session's memory limit (`OUT_OF_MEMORY`, logged, if not).
    fn memory_budget(&self, size: u64) -> Result<(), Status> {
        let (_, held) = self.ranges.allocation_totals();
        if held.saturating_add(size) > self.limits.max_memory {
            tracing::warn!(
                limit = self.limits.max_memory,
                held,
                size,
                "session memory limit reached; refusing the allocation"
            );
            return Err(Status::OUT_OF_MEMORY);
        }
        Ok(())
    }

    /// Make the pinned staging at the first copy that wants it (one attempt per session).
    fn ensure_staging(&mut self) {
        if self.staging.is_none() {
            self.staging = Some(crate::staging::Staging::new(&mut *self.backend));
        }
    }

    fn put<T: IntoBytes + Immutable>(&mut self, v: &T) {
        self.out.extend_from_slice(v.as_bytes());
    }

    fn stream(&self, handle: u64) -> Result<(Option<u32>, RawStream), Status> {
        if handle == 0 {
            return Ok((None, None));
        }
        let s = self.streams.get(handle)?;
        Ok((Some(s.dev), Some(s.raw)))
    }

    /// The device for an operation on `stream` touching memory of `mem_dev`.
    fn stream_for(&self, handle: u64, mem_dev: u32) -> Result<(u32, RawStream), Status> {
        let (dev, raw) = self.stream(handle)?;
        Ok((dev.unwrap_or(mem_dev), raw))
    }

    /// Read the fixed struct `T` that starts a bulk payload of `len` bytes and check that the
    /// length it states (`stated`) matches the bytes that follow. Returns it and the data length.
    fn read_fixed<T>(&mut self, len: usize, stated: impl Fn(&T) -> u64) -> Result<(T, usize), End>
    where
        T: FromBytes + KnownLayout + Immutable + Copy,
    {
        let name = core::any::type_name::<T>().rsplit("::").next().unwrap_or("operation");
        let n = core::mem::size_of::<T>();
        if len < n {
            return Err(End::Protocol(format!("short {name} payload")));
        }
        let mut fixed = [0u8; 128];
        let fixed = fixed.get_mut(..n).ok_or_else(|| End::Protocol(format!("{name} too large")))?;
        self.link.recv_exact(fixed)?;
        let o: T = op(fixed).map_err(|_| End::Protocol(format!("malformed {name}")))?;
        let data_len = len - n;
        if stated(&o) != data_len as u64 {
            return Err(End::Protocol(format!("{name} says {} bytes but carries {data_len}", stated(&o))));
        }
        Ok((o, data_len))
    }

    /// Read a host → device copy: the fixed part, the range check, then the data straight from
    /// the link (or past it, when the check failed).
    fn read_htod(&mut self, len: usize) -> Result<Work, End> {
        let (o, data_len) = self.read_fixed::<ops::MemcpyHtoD>(len, |o| o.len.get())?;
        match self.ranges.check(o.dst.get(), o.len.get()).and_then(|(dev, _)| self.stream_for(o.stream.get(), dev)) {
            Ok((dev, stream)) if data_len >= crate::staging::THRESHOLD => {
                Ok(Work::HtoDStream { dev, dst: o.dst.get(), stream, len: data_len })
            }
            Ok((dev, stream)) => {
                self.read_payload(data_len)?;
                Ok(Work::HtoD { dev, dst: o.dst.get(), stream })
            }
            Err(e) => {
                discard(&mut *self.link, data_len)?;
                Ok(Work::Failed(e))
            }
        }
    }

    /// Read a 2D copy: the fixed part, the checks of both ends, then any host data.
    fn read_copy_2d(&mut self, len: usize) -> Result<Work, End> {
        let (o, data_len) = self.read_fixed::<ops::Memcpy2D>(len, |o| {
            if o.src.kind.get() == ops::LOC_HOST {
                o.width.get().saturating_mul(o.height.get())
            } else {
                0
            }
        })?;
        match self.check_copy_2d(&o) {
            Ok(work) => {
                self.read_payload(data_len)?;
                Ok(work)
            }
            Err(e) => {
                discard(&mut *self.link, data_len)?;
                Ok(Work::Failed(e))
            }
        }
    }

    /// One end of a 2D copy: where it is, and the device it belongs to (`None`: host).
    fn loc_2d(&self, l: &ops::Loc2D, width: u64, height: u64) -> Result<(Mem2D, Option<u32>), Status> {
        let (x, y) = (l.x.get(), l.y.get());
        match l.kind.get() {
            ops::LOC_HOST => Ok((Mem2D::Host, None)),
            ops::LOC_DEVICE => {
                let pitch = l.pitch.get();
                if height > 1 && pitch < width {
                    return Err(Status::INVALID_VALUE);
                }
                let start = y
                    .checked_mul(pitch)
                    .and_then(|o| o.checked_add(x))
                    .and_then(|o| o.checked_add(l.addr.get()))
                    .ok_or(Status::INVALID_VALUE)?;
                let span =
                    (height - 1).checked_mul(pitch).and_then(|o| o.checked_add(width)).ok_or(Status::INVALID_VALUE)?;
                let (dev, _) = self.ranges.check(start, span)?;
                Ok((Mem2D::Device { ptr: start, pitch }, Some(dev)))
            }
            ops::LOC_ARRAY => {
                let a = *self.arrays.get(l.addr.get())?;
                let z = u64::from(l.z.get());
                let fits_x = x.checked_add(width).is_some_and(|e| e <= a.row_bytes);
                let fits_y = y.checked_add(height).is_some_and(|e| e <= a.rows);
                if !fits_x || !fits_y || z >= a.slices {
                    return Err(Status::INVALID_VALUE);
                }
                Ok((Mem2D::Array { raw: a.raw, x, y, z }, Some(a.dev)))
            }
            _ => Err(Status::INVALID_VALUE),
        }
    }

    fn check_copy_2d(&self, o: &ops::Memcpy2D) -> Result<Work, Status> {
        let (width, height) = (o.width.get(), o.height.get());
        let empty = width == 0 || height == 0;
        let (src, sdev) = if empty { (Mem2D::Host, None) } else { self.loc_2d(&o.src, width, height)? };
        let (dst, ddev) = if empty { (Mem2D::Host, None) } else { self.loc_2d(&o.dst, width, height)? };
        if empty {
            return Ok(Work::Small(Opcode::Ping));
        }
        let mem_dev = match (sdev, ddev) {
            (Some(a), Some(b)) => a.min(b),
            (Some(d), None) | (None, Some(d)) => d,
            // Host to host is the client's business.
            (None, None) => return Err(Status::INVALID_VALUE),
        };
        let (dev, stream) = self.stream_for(o.stream.get(), mem_dev)?;
        let out_len = if dst == Mem2D::Host {
            usize::try_from(width.checked_mul(height).ok_or(Status::INVALID_VALUE)?)
                .map_err(|_| Status::INVALID_VALUE)?
        } else {
            0
        };
        Ok(Work::Copy2D { dev, copy: Copy2D { src, dst, width, height }, stream, out_len })
    }

    /// Read a module image after checking its size and device.
    fn read_module(&mut self, len: usize) -> Result<Work, End> {
        let (o, data_len) = self.read_fixed::<ops::ModuleLoad>(len, |o| o.len.get())?;
        let dev = o.device.get();
        let refused = if dev >= self.backend.device_count() {
            Some(Status::INVALID_DEVICE)
        } else if data_len as u64 > self.limits.max_module_bytes || ImageKind::try_from(o.kind.get()).is_err() {
            Some(Status::INVALID_VALUE)
        } else {
            None
        };
        if let Some(e) = refused {
            discard(&mut *self.link, data_len)?;
            return Ok(Work::Failed(e));
        }
        self.read_payload(data_len)?;
        Ok(Work::ModuleLoad { dev })
    }

    fn check_dev(&self, dev: u32) -> Result<u32, Status> {
        if dev < self.backend.device_count() {
            Ok(dev)
        } else {
            Err(Status::INVALID_DEVICE)
        }
    }

    /// [`Session::dispatch`], telling the operation whether its caller waits for it.
    fn dispatch_replying(&mut self, opcode: Opcode, replying: bool) -> Reply {
        self.replying = replying;
        self.dispatch(opcode)
    }

    /// Every small operation.
    fn dispatch(&mut self, opcode: Opcode) -> Reply {
        let p = std::mem::take(&mut self.buf);
        let r = self.dispatch_small(opcode, &p);
        self.buf = p;
        r
    }

    fn dispatch_small(&mut self, opcode: Opcode, p: &[u8]) -> Reply {
        match opcode {
            Opcode::Ping => Ok(()),
            Opcode::DeviceGetCount => {
                let n = self.backend.device_count();
                self.put(&ops::DeviceCountReply { count: U32::new(n) });
                Ok(())
            }
            Opcode::DriverGetVersion => {
                let v = self.backend.driver_version();
                self.put(&ops::I32Reply { value: I32::new(v) });
                Ok(())
            }
            Opcode::DeviceGetAttribute => {
                let o: ops::DeviceAttribute = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let v = self.backend.device_attribute(dev, o.attribute.get())?;
                self.put(&ops::I32Reply { value: I32::new(v) });
                Ok(())
            }
            Opcode::DeviceGetInfo => {
                let o: ops::DeviceRef = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let info: DeviceInfo = self.backend.device_info(dev)?;
                self.put(&info);
                Ok(())
            }
            Opcode::MemGetInfo => {
                let o: ops::DeviceRef = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let (free, total) = self.backend.mem_get_info(dev)?;
                self.put(&ops::MemInfoReply { free: U64::new(free), total: U64::new(total) });
                Ok(())
            }
            Opcode::DeviceSynchronize => {
                let o: ops::DeviceRef = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                self.backend.device_synchronize(dev)
            }
            Opcode::DeviceReset => {
                let o: ops::DeviceRef = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                self.release_device(dev);
                Ok(())
            }
            Opcode::CtxGetLimit => {
                let o: ops::Limit = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let v = self.backend.ctx_get_limit(dev, o.limit.get())?;
                self.put(&ops::LimitReply { value: U64::new(v) });
                Ok(())
            }
            Opcode::CtxSetLimit => {
                let o: ops::Limit = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                self.backend.ctx_set_limit(dev, o.limit.get(), o.value.get())
            }
            Opcode::CtxResetPersistingL2Cache => {
                let o: ops::DeviceRef = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                self.backend.ctx_reset_persisting_l2(dev)
            }
            Opcode::ArrayCreate => {
                let o: ops::ArrayCreate = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                if self.arrays.len() >= self.limits.max_arrays {
                    tracing::warn!(limit = self.limits.max_arrays, "session limit on arrays reached; refusing another");
                    return Err(Status::LIMIT_EXCEEDED);
                }
                let elem = ops::array_element_bytes(o.format.get(), o.channels.get()).ok_or(Status::INVALID_VALUE)?;
                let desc = ArrayDesc {
                    width: o.width.get(),
                    height: o.height.get(),
                    depth: o.depth.get(),
                    format: o.format.get(),
                    channels: o.channels.get(),
                    flags: o.flags.get(),
                };
                let row_bytes = desc.width.checked_mul(u64::from(elem)).ok_or(Status::INVALID_VALUE)?;
                let (rows, slices) = (desc.height.max(1), desc.depth.max(1));
                let raw = self.backend.array_create(dev, &desc)?;
                let h = self.arrays.insert(Array { dev, raw, row_bytes, rows, slices });
                self.put(&ops::HandleReply { handle: U64::new(h) });
                Ok(())
            }
            Opcode::ArrayDestroy => {
                let o: ops::HandleRef = op(p)?;
                let a = self.arrays.remove(o.handle.get())?;
                self.backend.array_destroy(a.dev, a.raw)
            }
            Opcode::TexObjectCreate => {
                let mut o: ops::TexObjectCreate = op(p)?;
                let dev = match o.res_type.get() {
                    ops::RES_ARRAY => {
                        let a = *self.arrays.get(o.array.get())?;
                        o.array = U64::new(a.raw);
                        a.dev
                    }
                    ops::RES_LINEAR => self.ranges.check(o.ptr.get(), o.width.get())?.0,
                    ops::RES_PITCH2D => {
                        let elem =
                            ops::array_element_bytes(o.format.get(), o.channels.get()).ok_or(Status::INVALID_VALUE)?;
                        let row = o.width.get().checked_mul(u64::from(elem)).ok_or(Status::INVALID_VALUE)?;
                        let span = o
                            .height
                            .get()
                            .saturating_sub(1)
                            .checked_mul(o.pitch.get())
                            .and_then(|v| v.checked_add(row))
                            .ok_or(Status::INVALID_VALUE)?;
                        self.ranges.check(o.ptr.get(), span)?.0
                    }
                    _ => return Err(Status::INVALID_VALUE),
                };
                let t = self.backend.tex_object_create(dev, &o)?;
                self.textures.insert(t, dev);
                self.put(&ops::HandleReply { handle: U64::new(t) });
                Ok(())
            }
            Opcode::TexObjectDestroy => {
                let o: ops::HandleRef = op(p)?;
                let dev = self.textures.remove(&o.handle.get()).ok_or(Status::INVALID_HANDLE)?;
                self.backend.tex_object_destroy(dev, o.handle.get())
            }
            Opcode::SurfObjectCreate => {
                let o: ops::HandleRef = op(p)?;
                let a = *self.arrays.get(o.handle.get())?;
                let t = self.backend.surf_object_create(a.dev, a.raw)?;
                self.surfaces.insert(t, a.dev);
                self.put(&ops::HandleReply { handle: U64::new(t) });
                Ok(())
            }
            Opcode::SurfObjectDestroy => {
                let o: ops::HandleRef = op(p)?;
                let dev = self.surfaces.remove(&o.handle.get()).ok_or(Status::INVALID_HANDLE)?;
                self.backend.surf_object_destroy(dev, o.handle.get())
            }
            Opcode::StreamSetAttribute | Opcode::StreamGetAttribute => {
                let o: ops::StreamAttribute = op(p)?;
                let attr = o.attr.get();
                let known = [
                    ops::STREAM_ATTR_ACCESS_POLICY_WINDOW,
                    ops::STREAM_ATTR_SYNCHRONIZATION_POLICY,
                    ops::STREAM_ATTR_PRIORITY,
                ];
                if !known.contains(&attr) {
                    return Err(Status::INVALID_VALUE);
                }
                let (dev, raw) = self.stream(o.stream.get())?;
                let dev = match dev {
                    Some(d) => d,
                    None => self.check_dev(o.device.get())?,
                };
                if opcode == Opcode::StreamGetAttribute {
                    let value = self.backend.stream_get_attribute(dev, raw, attr)?;
                    self.put(&ops::StreamAttributeReply { value });
                    return Ok(());
                }
                if attr == ops::STREAM_ATTR_ACCESS_POLICY_WINDOW {
                    // base_ptr, num_bytes: a window must lie in the session's memory.
                    let word = |i: usize| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&o.value[i * 8..i * 8 + 8]);
                        u64::from_le_bytes(b)
                    };
                    let (base, len) = (word(0), word(1));
                    if len > 0 && self.ranges.containing(base).is_none() {
                        return Err(Status::INVALID_VALUE);
                    }
                }
                self.backend.stream_set_attribute(dev, raw, attr, &o.value)
            }
            Opcode::DeviceEnablePeerAccess | Opcode::DeviceDisablePeerAccess => {
                let o: ops::DevicePair = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let peer = self.check_dev(o.peer.get())?;
                self.backend.set_peer_access(dev, peer, opcode == Opcode::DeviceEnablePeerAccess)
            }
            Opcode::DeviceCanAccessPeer => {
                let o: ops::DevicePair = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let peer = self.check_dev(o.peer.get())?;
                let v = self.backend.can_access_peer(dev, peer)?;
                self.put(&ops::I32Reply { value: I32::new(i32::from(v)) });
                Ok(())
            }
            Opcode::MemAlloc => {
                let o: ops::MemAlloc = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let size = o.size.get();
                self.memory_budget(size)?;
                let ptr = self.backend.mem_alloc(dev, size)?;
                self.ranges.insert(ptr, Range { dev, size, kind: RangeKind::Allocation });
                self.publish_totals();
                self.put(&ops::PtrReply { ptr: U64::new(ptr) });
                Ok(())
            }
            Opcode::ArenaMap => {
                let o: ops::ArenaMap = op(p)?;
                let name = o.name_str().ok_or(Status::INVALID_VALUE)?;
                let (addr, len) = (o.addr.get(), o.len.get());
                self.arenas.map(name, addr, len, self.limits.max_reserved)?;
                if let Err(e) = self.backend.host_register(addr, len) {
                    let _ = self.arenas.unmap(addr);
                    return Err(e);
                }
                Ok(())
            }
            Opcode::ArenaUnmap => {
                let o: ops::MemFree = op(p)?;
                let addr = o.ptr.get();
                if !self.arenas.contains(addr, 1) {
                    return Err(Status::INVALID_VALUE);
                }
                // Copies into or out of it may still be queued: let every device finish first.
                for d in 0..self.backend.device_count() {
                    let _ = self.backend.device_synchronize(d);
                }
                let _ = self.backend.host_unregister(addr);
                self.arenas.unmap(addr).map(drop)
            }
            Opcode::MemcpyHost => {
                let o: ops::MemcpyHost = op(p)?;
                let (device, host, len) = (o.device.get(), o.host.get(), o.len.get());
                if !self.arenas.contains(host, len) {
                    return Err(Status::OUT_OF_RANGE);
                }
                let (dev, _) = self.ranges.check(device, len)?;
                let (dev, stream) = self.stream_for(o.stream.get(), dev)?;
                let n = usize::try_from(len).map_err(|_| Status::INVALID_VALUE)?;
                let at: *mut u8 =
                    std::ptr::with_exposed_provenance_mut(usize::try_from(host).map_err(|_| Status::INVALID_VALUE)?);
                // SAFETY: `[host, host + len)` lies in an arena this session mapped and
                // registered; it stays mapped until `ArenaUnmap`, which waits for every device.
                unsafe {
                    if o.to_device.get() == 1 {
                        self.backend.memcpy_htod_host(dev, device, at, n, stream)?;
                        self.stats.bytes_in.fetch_add(len, Ordering::Relaxed);
                    } else {
                        self.backend.memcpy_dtoh_host(dev, at, device, n, stream)?;
                        self.stats.bytes_out.fetch_add(len, Ordering::Relaxed);
                    }
                }
                if self.replying {
                    self.backend.stream_synchronize(dev, stream)?;
                }
                Ok(())
            }
            Opcode::MemReserve => {
                let o: ops::MemAlloc = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let size = o.size.get();
                if size == 0 {
                    return Err(Status::INVALID_VALUE);
                }
                let reserved: u64 = self.reservations.values().map(|&(s, _)| s).sum();
                if reserved.saturating_add(size) > self.limits.max_reserved {
                    return Err(Status::OUT_OF_MEMORY);
                }
                let base = self.backend.mem_reserve(dev, size)?;
                self.reservations.insert(base, (size, dev));
                self.put(&ops::PtrReply { ptr: U64::new(base) });
                Ok(())
            }
            Opcode::MemAllocAt => {
                let o: ops::MemAllocAt = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                let (addr, size) = (o.addr.get(), o.size.get());
                let end = addr.checked_add(size).ok_or(Status::INVALID_VALUE)?;
                if size == 0 {
                    return Err(Status::INVALID_VALUE);
                }
                // Not over anything this session already owns (the backend checks the rest).
                if addr != 0 && self.ranges.overlaps(addr, end) {
                    return Err(Status::ADDRESS_IN_USE);
                }
                self.memory_budget(size)?;
                let at = self.backend.mem_alloc_at(dev, addr, size)?;
                self.ranges.insert(at, Range { dev, size, kind: RangeKind::Allocation });
                self.publish_totals();
                self.put(&ops::PtrReply { ptr: U64::new(at) });
                Ok(())
            }
            Opcode::MemFree => {
                let o: ops::MemFree = op(p)?;
                if o.ptr.get() == 0 {
                    return Ok(());
                }
                if self.ranges.containing(o.ptr.get()).is_none() {
                    if let Some((_, dev)) = self.reservations.remove(&o.ptr.get()) {
                        return self.backend.mem_unreserve(dev, o.ptr.get());
                    }
                }
                let r = self.ranges.remove_allocation(o.ptr.get())?;
                self.publish_totals();
                self.backend.mem_free(r.dev, o.ptr.get())
            }
            Opcode::MemGetAddressRange => {
                let o: ops::PtrRef = op(p)?;
                let (base, r) = self.ranges.containing(o.ptr.get()).ok_or(Status::NOT_FOUND)?;
                self.put(&ops::MemRangeReply { base: U64::new(base), size: U64::new(r.size) });
                Ok(())
            }
            Opcode::MemcpyDtoD => {
                let o: ops::MemcpyDtoD = op(p)?;
                let (sdev, _) = self.ranges.check(o.src.get(), o.len.get())?;
                let (ddev, _) = self.ranges.check(o.dst.get(), o.len.get())?;
                let (dev, stream) = self.stream_for(o.stream.get(), ddev.min(sdev))?;
                self.backend.memcpy_dtod(dev, o.dst.get(), o.src.get(), o.len.get(), stream)
            }
            Opcode::Memset => {
                let o: ops::Memset = op(p)?;
                let es = o.element_size.get();
                if !matches!(es, 1 | 2 | 4) {
                    return Err(Status::INVALID_VALUE);
                }
                let bytes = o.count.get().checked_mul(u64::from(es)).ok_or(Status::INVALID_VALUE)?;
                let (mdev, _) = self.ranges.check(o.dst.get(), bytes)?;
                let (dev, stream) = self.stream_for(o.stream.get(), mdev)?;
                self.backend.memset(dev, o.dst.get(), o.value.get(), es, o.count.get(), stream)?;
                if self.replying && stream.is_none() {
                    // A waited-for memset on the legacy stream (`cudaMemset`) is complete when
                    // it returns: work the client then sends to a non-blocking stream must see
                    // it, and over a network that work can reach the GPU within microseconds.
                    self.backend.stream_synchronize(dev, None)?;
                }
                Ok(())
            }
            Opcode::StreamCreate => {
                let o: ops::StreamCreate = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                if self.streams.len() >= self.limits.max_streams {
                    tracing::warn!(
                        limit = self.limits.max_streams,
                        "session limit on streams reached; refusing another"
                    );
                    return Err(Status::LIMIT_EXCEEDED);
                }
                let raw = self.backend.stream_create(dev, o.flags.get(), o.priority.get())?;
                let h = self.streams.insert(Owned { dev, raw });
                self.put(&ops::HandleReply { handle: U64::new(h) });
                Ok(())
            }
            Opcode::StreamDestroy => {
                let o: ops::HandleRef = op(p)?;
                let s = self.streams.remove(o.handle.get())?;
                self.backend.stream_destroy(s.dev, s.raw)
            }
            Opcode::StreamSynchronize | Opcode::StreamQuery => {
                let o: ops::HandleRef = op(p)?;
                let (dev, raw) = self.stream(o.handle.get())?;
                let devs: Vec<u32> = match dev {
                    Some(d) => vec![d],
                    // The legacy default stream of every device this session could use.
                    None => (0..self.backend.device_count()).collect(),
                };
                for d in devs {
                    if opcode == Opcode::StreamSynchronize {
                        self.backend.stream_synchronize(d, raw)?;
                    } else {
                        self.backend.stream_query(d, raw)?;
                    }
                }
                Ok(())
            }
            Opcode::StreamWaitEvent => {
                let o: ops::StreamWaitEvent = op(p)?;
                let e = *self.events.get(o.event.get())?;
                let (dev, stream) = self.stream_for(o.stream.get(), e.dev)?;
                self.backend.stream_wait_event(dev, stream, e.raw, o.flags.get())
            }
            Opcode::EventCreate => {
                let o: ops::EventCreate = op(p)?;
                let dev = self.check_dev(o.device.get())?;
                if self.events.len() >= self.limits.max_events {
                    tracing::warn!(limit = self.limits.max_events, "session limit on events reached; refusing another");
                    return Err(Status::LIMIT_EXCEEDED);
                }
                let raw = self.backend.event_create(dev, o.flags.get())?;
                let h = self.events.insert(Owned { dev, raw });
                self.put(&ops::HandleReply { handle: U64::new(h) });
                Ok(())
            }
            Opcode::EventRecord => {
                let o: ops::EventRecord = op(p)?;
                let e = *self.events.get(o.event.get())?;
                let (dev, stream) = self.stream_for(o.stream.get(), e.dev)?;
                if dev != e.dev {
                    return Err(Status::INVALID_HANDLE);
                }
                self.backend.event_record(dev, e.raw, stream)
            }
            Opcode::EventSynchronize | Opcode::EventQuery | Opcode::EventDestroy => {
                let o: ops::HandleRef = op(p)?;
                let e = if opcode == Opcode::EventDestroy {
                    self.events.remove(o.handle.get())?
                } else {
                    *self.events.get(o.handle.get())?
                };
                match opcode {
                    Opcode::EventSynchronize => self.backend.event_synchronize(e.dev, e.raw),
                    Opcode::EventQuery => self.backend.event_query(e.dev, e.raw),
                    _ => self.backend.event_destroy(e.dev, e.raw),
                }
            }
            Opcode::EventElapsedTime => {
                let o: ops::EventElapsed = op(p)?;
                let a = *self.events.get(o.start.get())?;
                let b = *self.events.get(o.end.get())?;
                if a.dev != b.dev {
                    return Err(Status::INVALID_HANDLE);
                }
                let ms = self.backend.event_elapsed(a.dev, a.raw, b.raw)?;
                self.put(&ops::F32Reply { value: ops::F32::new(ms) });
                Ok(())
            }
            Opcode::ModuleUnload => {
                let o: ops::HandleRef = op(p)?;
                let h = o.handle.get();
                let m = self.modules.remove(h)?;
                self.drop_functions_of(h);
                self.ranges.remove_globals_of(h);
                self.backend.module_unload(m.dev, m.raw)
            }
            Opcode::ModuleGetFunction | Opcode::ModuleGetGlobal => {
                let (o, rest) = split::<ops::ModuleGetSymbol>(p).map_err(|_| Status::PROTOCOL)?;
                let n = o.name_len.get() as usize;
                let name = rest.get(..n).ok_or(Status::PROTOCOL)?;
                let name = std::str::from_utf8(name).map_err(|_| Status::INVALID_VALUE)?;
                let mh = o.module.get();
                let m = *self.modules.get(mh)?;
                if opcode == Opcode::ModuleGetFunction {
                    let raw = self.backend.module_get_function(m.dev, m.raw, name)?;
                    let h = self.functions.insert(Function { dev: m.dev, raw, module: mh });
                    self.put(&ops::HandleReply { handle: U64::new(h) });
                } else {
                    let (base, size) = self.backend.module_get_global(m.dev, m.raw, name)?;
                    if self.ranges.containing(base).is_none() {
                        self.ranges.insert(base, Range { dev: m.dev, size, kind: RangeKind::Global { module: mh } });
                    }
                    self.put(&ops::MemRangeReply { base: U64::new(base), size: U64::new(size) });
                }
                Ok(())
            }
            Opcode::FuncGetParamInfo => {
                let o: ops::HandleRef = op(p)?;
                let f = *self.functions.get(o.handle.get())?;
                let params = self.backend.func_param_info(f.dev, f.raw)?;
                self.put(&ops::ParamInfoReply {
                    count: U32::new(u32::try_from(params.len()).map_err(|_| Status::INVALID_VALUE)?),
                    reserved: U32::new(0),
                });
                for (offset, size) in params {
                    self.put(&ParamInfo { offset: U32::new(offset), size: U32::new(size) });
                }
                Ok(())
            }
            Opcode::FuncGetAttribute => {
                let o: ops::FuncAttribute = op(p)?;
                let f = *self.functions.get(o.function.get())?;
                let v = self.backend.func_get_attribute(f.dev, f.raw, o.attribute.get())?;
                self.put(&ops::I32Reply { value: I32::new(v) });
                Ok(())
            }
            Opcode::FuncSetCacheConfig => {
                let o: ops::FuncAttribute = op(p)?;
                let f = *self.functions.get(o.function.get())?;
                self.backend.func_set_cache_config(f.dev, f.raw, o.attribute.get())
            }
            Opcode::OccupancyMaxActiveBlocks => {
                let o: ops::Occupancy = op(p)?;
                let f = *self.functions.get(o.function.get())?;
                let n = self.backend.occupancy_max_active_blocks(
                    f.dev,
                    f.raw,
                    o.block_size.get(),
                    o.dynamic_smem.get(),
                    o.flags.get(),
                )?;
                self.put(&ops::I32Reply { value: I32::new(n) });
                Ok(())
            }
            Opcode::FuncSetAttribute => {
                let o: ops::FuncSetAttribute = op(p)?;
                let f = *self.functions.get(o.function.get())?;
                self.backend.func_set_attribute(f.dev, f.raw, o.attribute.get(), o.value.get())
            }
            Opcode::Launch => {
                let (o, params) = split::<ops::Launch>(p).map_err(|_| Status::PROTOCOL)?;
                if params.len() != o.params_len.get() as usize {
                    return Err(Status::PROTOCOL);
                }
                let f = *self.functions.get(o.function.get())?;
                let (dev, stream) = self.stream_for(o.stream.get(), f.dev)?;
                if dev != f.dev {
                    return Err(Status::INVALID_HANDLE);
                }
                let cfg = LaunchConfig {
                    grid: o.grid.map(|v| v.get()),
                    block: o.block.map(|v| v.get()),
                    shared_mem: o.shared_mem.get(),
                    cooperative: o.flags.get() & ops::LAUNCH_COOPERATIVE != 0,
                };
                self.backend.launch(dev, f.raw, &cfg, stream, params)
            }
            // Handshake frames after the handshake, and frames handled in serve_one.
            Opcode::Hello
            | Opcode::Challenge
            | Opcode::Auth
            | Opcode::Welcome
            | Opcode::ServerStats
            | Opcode::RdmaOffer => Err(Status::PROTOCOL),
            Opcode::MemcpyHtoD | Opcode::MemcpyDtoH | Opcode::ModuleLoad | Opcode::Goodbye => Err(Status::PROTOCOL),
            _ => Err(Status::UNSUPPORTED_OPCODE),
        }
    }

    fn drop_functions_of(&mut self, module: u64) {
        self.functions.extract_if(|f| f.module == module);
    }

    /// Destroy the texture and surface objects and the arrays of `dev` (`None`: of every device).
    fn release_objects(&mut self, dev: Option<u32>) {
        let mine = |d: u32| dev.is_none_or(|x| x == d);
        let textures: Vec<(u64, u32)> = self.textures.iter().map(|(&t, &d)| (t, d)).filter(|&(_, d)| mine(d)).collect();
        for (t, d) in textures {
            self.textures.remove(&t);
            let _ = self.backend.tex_object_destroy(d, t);
        }
        let surfaces: Vec<(u64, u32)> = self.surfaces.iter().map(|(&t, &d)| (t, d)).filter(|&(_, d)| mine(d)).collect();
        for (t, d) in surfaces {
            self.surfaces.remove(&t);
            let _ = self.backend.surf_object_destroy(d, t);
        }
        for a in self.arrays.extract_if(|a| mine(a.dev)) {
            let _ = self.backend.array_destroy(a.dev, a.raw);
        }
    }

    fn publish_totals(&self) {
        let (n, bytes) = self.ranges.allocation_totals();
        self.stats.live_allocations.store(n as u64, Ordering::Relaxed);
        self.stats.live_bytes.store(bytes, Ordering::Relaxed);
    }

    fn release_device(&mut self, dev: u32) {
        let _ = self.backend.device_synchronize(dev);
        // Everything else keeps its handle: the client may still hold them.
        for e in self.events.extract_if(|e| e.dev == dev) {
            let _ = self.backend.event_destroy(e.dev, e.raw);
        }
        for s in self.streams.extract_if(|s| s.dev == dev) {
            let _ = self.backend.stream_destroy(s.dev, s.raw);
        }
        self.release_objects(Some(dev));
        self.functions.extract_if(|f| f.dev == dev);
        for m in self.modules.extract_if(|m| m.dev == dev) {
            let _ = self.backend.module_unload(m.dev, m.raw);
        }
        for (base, r) in self.ranges.remove_device(dev) {
            let _ = self.backend.mem_free(r.dev, base);
        }
        let gone: Vec<u64> = self.reservations.iter().filter(|(_, &(_, d))| d == dev).map(|(&b, _)| b).collect();
        for base in gone {
            self.reservations.remove(&base);
            let _ = self.backend.mem_unreserve(dev, base);
        }
        self.publish_totals();
    }

    /// Release everything the session holds, in dependency order. Returns (allocations, bytes)
    /// freed. Errors are logged, not fatal: after a device fault the driver refuses frees, and
    /// the worker process exiting releases the memory anyway.
    pub fn release_all(&mut self) -> (usize, u64) {
        let (n, bytes) = self.ranges.allocation_totals();
        for d in 0..self.backend.device_count() {
            let _ = self.backend.device_synchronize(d);
        }
        for e in self.events.drain() {
            let _ = self.backend.event_destroy(e.dev, e.raw);
        }
        for s in self.streams.drain() {
            let _ = self.backend.stream_destroy(s.dev, s.raw);
        }
        self.release_objects(None);
        self.functions.drain();
        for m in self.modules.drain() {
            let _ = self.backend.module_unload(m.dev, m.raw);
        }
        let mut failed = 0usize;
        for (base, r) in self.ranges.drain_allocations() {
            if self.backend.mem_free(r.dev, base).is_err() {
                failed += 1;
            }
        }
        for (base, (_, dev)) in std::mem::take(&mut self.reservations) {
            let _ = self.backend.mem_unreserve(dev, base);
        }
        for (addr, _) in self.arenas.all() {
            let _ = self.backend.host_unregister(addr);
            let _ = self.arenas.unmap(addr);
        }
        if let Some(st) = self.staging.take().flatten() {
            st.release(&mut *self.backend);
        }
        if let Some(st) = self.striped_staging.take().flatten() {
            st.release(&mut *self.backend);
        }
        if failed > 0 {
            tracing::warn!(failed, "frees refused by the backend (device fault?); process exit releases them");
        }
        self.publish_totals();
        (n, bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    use remora_transport::{connect, listen, Endpoint};
    use remora_wire::{Flags, OUTPUT_PREFIX_LEN};

    use super::*;
    use crate::backend::emulated::EmulatedBackend;
    use crate::output::MAX_PENDING;

    fn pair() -> (Box<dyn Link>, Box<dyn Link>) {
        let mut l = listen(&Endpoint::Tcp("127.0.0.1:0".into())).unwrap();
        let ep = l.local_endpoint();
        std::thread::scope(|s| {
            let server = s.spawn(|| l.accept().unwrap());
            let client = connect(&ep).unwrap();
            (client, server.join().unwrap())
        })
    }

    /// Send `opcode` with `payload`, run it through the session, return the reply's header,
    /// output block (if any) and body.
    fn round_trip(
        s: &mut Session<'_>,
        client: &mut dyn Link,
        opcode: Opcode,
        payload: &[u8],
    ) -> (Header, Vec<u8>, Vec<u8>) {
        let req = Header::request(opcode, 1, payload.len() as u64);
        client.send(&[req.as_bytes(), payload]).unwrap();
        let f = s.read_frame().unwrap();
        assert!(s.execute(f).unwrap().is_none());
        let hdr = recv_header(client).unwrap();
        let mut rest = vec![0u8; hdr.payload_len()];
        client.recv_exact(&mut rest).unwrap();
        if !hdr.flags().contains(Flags::OUTPUT) {
            return (hdr, Vec::new(), rest);
        }
        let (prefix, rest) = rest.split_at(OUTPUT_PREFIX_LEN);
        let n = u32::from_le_bytes(prefix.try_into().unwrap()) as usize;
        (hdr, rest[..n].to_vec(), rest[n..].to_vec())
    }

    #[test]
    fn replies_carry_captured_output() {
        // A spare descriptor stands for the worker's stdout (the test harness keeps its own).
        let fake_stdout: OwnedFd = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap().into();
        let mut backend = EmulatedBackend::new(1);
        let stats = SessionStats::default();
        let (mut client, server) = pair();
        let mut s = Session::new(&mut backend, server, Limits::default(), &stats);
        s.set_output_capture(OutputCapture::redirect(fake_stdout.as_raw_fd(), MAX_PENDING).unwrap());
        let print = |b: &[u8]| {
            // SAFETY: `b` is valid for reads of its length; the descriptor is open.
            let n = unsafe { libc::write(fake_stdout.as_raw_fd(), b.as_ptr().cast(), b.len()) };
            assert_eq!(usize::try_from(n).unwrap(), b.len());
        };
        let dev0 = ops::DeviceRef { device: U32::new(0) };

        let (hdr, output, body) = round_trip(&mut s, &mut *client, Opcode::DeviceSynchronize, dev0.as_bytes());
        assert!(!hdr.flags().contains(Flags::OUTPUT), "no output, no block");
        assert!(output.is_empty() && body.is_empty());

        // A synchronising reply drains everything printed so far.
        print(b"device: hello 42\n");
        let (hdr, output, body) = round_trip(&mut s, &mut *client, Opcode::DeviceSynchronize, dev0.as_bytes());
        assert_eq!(hdr.status(), Status::SUCCESS);
        assert_eq!(hdr.payload_len(), OUTPUT_PREFIX_LEN + 17);
        assert_eq!(output, b"device: hello 42\n");
        assert!(body.is_empty());

        // Any reply carries what the collector already has, ahead of its own body.
        print(b"at launch\n");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, output, body) = round_trip(&mut s, &mut *client, Opcode::DeviceGetCount, &[]);
            assert_eq!(remora_wire::read::<ops::DeviceCountReply>(&body).unwrap().count.get(), 1);
            if !output.is_empty() {
                assert_eq!(output, b"at launch\n");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "collected output never sent");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn reply_status(s: &mut Session<'_>, client: &mut dyn Link, opcode: Opcode, payload: &[u8]) -> (Status, Vec<u8>) {
        let (hdr, _, body) = round_trip(s, client, opcode, payload);
        (hdr.status(), body)
    }

    fn handle_of(body: &[u8]) -> u64 {
        remora_wire::read::<ops::HandleReply>(body).unwrap().handle.get()
    }

    #[test]
    fn arrays_copies_textures_and_release() {
        let mut backend = EmulatedBackend::new(1);
        let stats = SessionStats::default();
        let (mut client, server) = pair();
        let mut s = Session::new(&mut backend, server, Limits::default(), &stats);
        let c = &mut *client;
        let create = ops::ArrayCreate {
            device: U32::new(0),
            format: U32::new(0x20),
            channels: U32::new(1),
            flags: U32::new(0),
            width: U64::new(8),
            height: U64::new(4),
            depth: U64::new(0),
        };
        let (st, body) = reply_status(&mut s, c, Opcode::ArrayCreate, create.as_bytes());
        assert_eq!(st, Status::SUCCESS);
        let arr = handle_of(&body);
        let bad_format = ops::ArrayCreate { channels: U32::new(3), ..create };
        assert_eq!(reply_status(&mut s, c, Opcode::ArrayCreate, bad_format.as_bytes()).0, Status::INVALID_VALUE);

        // Host → array: 2 rows of 8 bytes at byte column 24, row 2, then read back the whole array.
        let copy = |src, dst, width: u64, height: u64| ops::Memcpy2D {
            src,
            dst,
            width: U64::new(width),
            height: U64::new(height),
            stream: U64::new(0),
        };
        let to_arr = copy(ops::Loc2D::host(), ops::Loc2D::new(ops::LOC_ARRAY, arr, 0, 24, 2), 8, 2);
        let mut req = to_arr.as_bytes().to_vec();
        req.extend_from_slice(&[5u8; 16]);
        assert_eq!(reply_status(&mut s, c, Opcode::Memcpy2D, &req).0, Status::SUCCESS);
        let read_all = copy(ops::Loc2D::new(ops::LOC_ARRAY, arr, 0, 0, 0), ops::Loc2D::host(), 32, 4);
        let (st, body) = reply_status(&mut s, c, Opcode::Memcpy2D, read_all.as_bytes());
        assert_eq!(st, Status::SUCCESS);
        assert_eq!(body.len(), 128);
        for (i, &v) in body.iter().enumerate() {
            let inside = (2..4).contains(&(i / 32)) && i % 32 >= 24;
            assert_eq!(v, if inside { 5 } else { 0 }, "byte {i}");
        }

        // Out of range: past the row, past the last row, into a stale handle, past device memory.
        let past_row = copy(ops::Loc2D::host(), ops::Loc2D::new(ops::LOC_ARRAY, arr, 0, 28, 0), 8, 1);
        let mut req = past_row.as_bytes().to_vec();
        req.extend_from_slice(&[1u8; 8]);
        assert_eq!(reply_status(&mut s, c, Opcode::Memcpy2D, &req).0, Status::INVALID_VALUE);
        let past_end = copy(ops::Loc2D::new(ops::LOC_ARRAY, arr, 0, 0, 3), ops::Loc2D::host(), 32, 2);
        assert_eq!(reply_status(&mut s, c, Opcode::Memcpy2D, past_end.as_bytes()).0, Status::INVALID_VALUE);
        let stale = copy(ops::Loc2D::new(ops::LOC_ARRAY, arr + 1, 0, 0, 0), ops::Loc2D::host(), 4, 1);
        assert_eq!(reply_status(&mut s, c, Opcode::Memcpy2D, stale.as_bytes()).0, Status::INVALID_HANDLE);
        let (_, body) = reply_status(&mut s, c, Opcode::MemAlloc, ops::MemAlloc::new(0, 64).as_bytes());
        let d = remora_wire::read::<ops::PtrReply>(&body).unwrap().ptr.get();
        let too_far =
            copy(ops::Loc2D::new(ops::LOC_ARRAY, arr, 0, 0, 0), ops::Loc2D::new(ops::LOC_DEVICE, d, 32, 0, 0), 32, 3);
        assert_eq!(reply_status(&mut s, c, Opcode::Memcpy2D, too_far.as_bytes()).0, Status::OUT_OF_RANGE);
        let fits =
            copy(ops::Loc2D::new(ops::LOC_ARRAY, arr, 0, 0, 0), ops::Loc2D::new(ops::LOC_DEVICE, d, 32, 0, 0), 32, 2);
        assert_eq!(reply_status(&mut s, c, Opcode::Memcpy2D, fits.as_bytes()).0, Status::SUCCESS);

        // Texture and surface objects: created over the array, destroyed once.
        let mut t: ops::TexObjectCreate = zerocopy::FromZeros::new_zeroed();
        t.res_type = U32::new(ops::RES_ARRAY);
        t.array = U64::new(arr);
        let (st, body) = reply_status(&mut s, c, Opcode::TexObjectCreate, t.as_bytes());
        assert_eq!(st, Status::SUCCESS);
        let tex = handle_of(&body);
        let tex_ref = ops::HandleRef { handle: U64::new(tex) };
        assert_eq!(reply_status(&mut s, c, Opcode::TexObjectDestroy, tex_ref.as_bytes()).0, Status::SUCCESS);
        assert_eq!(reply_status(&mut s, c, Opcode::TexObjectDestroy, tex_ref.as_bytes()).0, Status::INVALID_HANDLE);
        t.res_type = U32::new(ops::RES_LINEAR);
        t.ptr = U64::new(d);
        t.format = U32::new(0x20);
        t.channels = U32::new(1);
        t.width = U64::new(65);
        assert_eq!(reply_status(&mut s, c, Opcode::TexObjectCreate, t.as_bytes()).0, Status::OUT_OF_RANGE);
        t.width = U64::new(64);
        assert_eq!(reply_status(&mut s, c, Opcode::TexObjectCreate, t.as_bytes()).0, Status::SUCCESS);
        let arr_ref = ops::HandleRef { handle: U64::new(arr) };
        assert_eq!(reply_status(&mut s, c, Opcode::SurfObjectCreate, arr_ref.as_bytes()).0, Status::SUCCESS);

        // An access policy window must lie in the session's memory.
        let mut attr = ops::StreamAttribute {
            stream: U64::new(0),
            attr: U32::new(ops::STREAM_ATTR_ACCESS_POLICY_WINDOW),
            device: U32::new(0),
            value: [0; 64],
        };
        attr.value[..8].copy_from_slice(&0x1234u64.to_le_bytes());
        attr.value[8..16].copy_from_slice(&64u64.to_le_bytes());
        assert_eq!(reply_status(&mut s, c, Opcode::StreamSetAttribute, attr.as_bytes()).0, Status::INVALID_VALUE);
        attr.value[..8].copy_from_slice(&d.to_le_bytes());
        assert_eq!(reply_status(&mut s, c, Opcode::StreamSetAttribute, attr.as_bytes()).0, Status::SUCCESS);
        let (st, body) = reply_status(&mut s, c, Opcode::StreamGetAttribute, attr.as_bytes());
        assert_eq!(st, Status::SUCCESS);
        assert_eq!(remora_wire::read::<ops::StreamAttributeReply>(&body).unwrap().value, attr.value);
        attr.attr = U32::new(2);
        assert_eq!(reply_status(&mut s, c, Opcode::StreamSetAttribute, attr.as_bytes()).0, Status::INVALID_VALUE);

        // The session ends with an array, a texture and a surface alive: all released.
        assert_eq!((s.arrays.len(), s.textures.len(), s.surfaces.len()), (1, 1, 1));
        s.release_all();
        assert_eq!((s.arrays.len(), s.textures.len(), s.surfaces.len()), (0, 0, 0));
        drop(s);
        assert!(backend.arrays_and_objects_released());
    }

    /// A frame that announces a large payload and then stops (the client stalls or leaves)
    /// costs the worker about what it sent, not what it announced: a 72-byte module load
    /// that claims 1 GiB (the default limit) used to make the worker allocate and zero 1 GiB
    /// before reading a byte of it, and a copy claiming a large allocation's size the same.
    #[test]
    fn announced_payloads_are_read_as_they_arrive() {
        use remora_transport::testing::MemLink;
        let mut backend = EmulatedBackend::new(1);
        let stats = SessionStats::default();
        let frame = |op: Opcode, fixed: &[u8], data_len: u64, sent: &[u8]| {
            let mut v = Header::request(op, 1, fixed.len() as u64 + data_len).as_bytes().to_vec();
            v.extend_from_slice(fixed);
            v.extend_from_slice(sent);
            v
        };
        let big = (1u64 << 30) - 16;
        let load = ops::ModuleLoad { device: U32::new(0), kind: U32::new(0), len: U64::new(big) };
        let (link, _) = MemLink::new(frame(Opcode::ModuleLoad, load.as_bytes(), big, &[b'x'; 100]));
        let mut s = Session::new(&mut backend, Box::new(link), Limits::default(), &stats);
        assert!(matches!(s.read_frame(), Err(End::PeerClosed)));
        assert!(s.buf.capacity() <= 2 << 20, "{} bytes held for 100 received", s.buf.capacity());
        drop(s);

        // A copy into a 256 MiB allocation, announced whole, 4 KiB of it sent.
        let mut alloc = Header::request(Opcode::MemAlloc, 1, 16).as_bytes().to_vec();
        alloc.extend_from_slice(ops::MemAlloc::new(0, 256 << 20).as_bytes());
        let (link, sent) = MemLink::new(alloc);
        let mut s = Session::new(&mut backend, Box::new(link), Limits::default(), &stats);
        let f = s.read_frame().unwrap();
        s.execute(f).unwrap();
        let ptr = remora_wire::read::<ops::PtrReply>(&sent.frames().unwrap()[0].1).unwrap().ptr.get();
        let htod = ops::MemcpyHtoD { dst: U64::new(ptr), len: U64::new(256 << 20), stream: U64::new(0) };
        s.link = Box::new(MemLink::new(frame(Opcode::MemcpyHtoD, htod.as_bytes(), 256 << 20, &[1; 4096])).0);
        // A copy this large is received while it executes, through the fixed pinned staging.
        let f = s.read_frame().expect("the copy's fixed part");
        assert!(matches!(s.execute(f), Err(End::PeerClosed)));
        assert!(s.buf.capacity() <= 2 << 20, "{} bytes held for 4096 received", s.buf.capacity());
        s.release_all();
    }
}
