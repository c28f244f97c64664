//! The worker process: one per client session.
//!
//! Started by the supervisor before any client arrives (a pool), it opens the backend (on CUDA:
//! retains every device's primary context), connects to the supervisor's private control socket
//! and reports `READY`. When a session is assigned it receives the client connection's file
//! descriptors, pins its polling thread to the chosen core, sends the Welcome, redirects its
//! stdout into an [`OutputCapture`] (device `printf` output travels to the client with the
//! replies), serves the session, releases everything, reports `END` and exits. A fault in the
//! session's kernels poisons only this process.
//!
//! Control lines (UTF-8, one per line):
//! - worker → supervisor: `READY <pid> <secret> <backend> <devices> <pci,...|->`
//! - supervisor → worker (with the connection's fds): `SESSION <id> <version> <caps> <core,...>`
//! - supervisor → worker: `STATS <seq>`; worker → supervisor: `STATS <seq> key=value...`, the
//!   counters (`ops=`, `errors=`, `allocs=`, `bytes=`, `in=`, `out=`, `routed=`) then one
//!   `lat.<Opcode>=<base64>` per operation that ran: its latency histogram (see [`crate::stats`]);
//!   readers skip keys they do not know
//! - worker → supervisor: `END <allocs freed> <bytes freed> <reason>`

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use remora_transport::{fdpass, from_handoff, handshake, verbs, PollPolicy};
use remora_wire::handshake::Capabilities;
use remora_wire::{Welcome, U32, U64};

use crate::backend::{self, BackendKind};
use crate::output::OutputCapture;
use crate::session::{self, End, Limits, Session};
use crate::stats::SessionStats;
use crate::{placement, polling};

/// Environment variables the supervisor passes to a worker.
pub mod env {
    /// Abstract Unix socket name of the supervisor's control listener.
    pub const CONTROL: &str = "REMORA_WORKER_CONTROL";
    /// Secret the worker proves itself with.
    pub const SECRET: &str = "REMORA_WORKER_SECRET";
    /// `cuda`, `emulated` or `auto`.
    pub const BACKEND: &str = "REMORA_WORKER_BACKEND";
    /// Busy-poll time in microseconds before parking.
    pub const SPIN_US: &str = "REMORA_WORKER_SPIN_US";
    /// Maximum device memory per session in bytes.
    pub const MAX_MEMORY: &str = "REMORA_WORKER_MAX_MEMORY";
    /// Maximum streams per session.
    pub const MAX_STREAMS: &str = "REMORA_WORKER_MAX_STREAMS";
    /// Maximum events per session.
    pub const MAX_EVENTS: &str = "REMORA_WORKER_MAX_EVENTS";
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Run the worker (called by the `remora worker` subcommand or a test binary). Returns the
/// process exit code.
pub fn worker_main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("worker {}: {e}", std::process::id());
            1
        }
    }
}

fn run() -> Result<(), String> {
    let control = std::env::var(env::CONTROL)
        .map_err(|_| format!("{} not set: workers are started by `remora serve`", env::CONTROL))?;
    let secret = std::env::var(env::SECRET).map_err(|_| format!("{} not set", env::SECRET))?;
    let kind: BackendKind = std::env::var(env::BACKEND).unwrap_or_else(|_| "auto".into()).parse()?;
    let spin = Duration::from_micros(env_parse(env::SPIN_US).unwrap_or(200_000));
    let mut limits = Limits::default();
    if let Some(m) = env_parse(env::MAX_MEMORY) {
        limits.max_memory = m;
    }
    if let Some(s) = env_parse(env::MAX_STREAMS) {
        limits.max_streams = s;
    }
    if let Some(e) = env_parse(env::MAX_EVENTS) {
        limits.max_events = e;
    }

    let mut backend = backend::open(kind)?;
    // Allocated before the session (latency histograms): the session's hot path never allocates.
    let stats = Arc::new(SessionStats::default());
    let devices = backend.device_count();
    let pci: Vec<String> = (0..devices).map(|d| backend.pci_bus_id(d).unwrap_or_else(|| "-".into())).collect();

    let addr = SocketAddr::from_abstract_name(control.as_bytes()).map_err(|e| format!("control socket name: {e}"))?;
    let ctl = UnixStream::connect_addr(&addr).map_err(|e| format!("connect to supervisor: {e}"))?;
    let mut w = ctl.try_clone().map_err(|e| e.to_string())?;
    send_line(&mut w, &format!("READY {} {secret} {} {devices} {}", std::process::id(), backend.name(), pci.join(",")))
        .map_err(|e| format!("report ready: {e}"))?;

    // Wait for a session (or for the supervisor to go away).
    let mut extra = Vec::new();
    let handoff = match fdpass::recv_handoff(&ctl, &mut extra) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(format!("receive session: {e}")),
    };
    let line = String::from_utf8_lossy(&extra).into_owned();
    let mut it = line.split_whitespace();
    if it.next() != Some("SESSION") {
        return Err(format!("unexpected control message {line:?}"));
    }
    let session_id: u64 = it.next().and_then(|v| v.parse().ok()).ok_or("SESSION without id")?;
    let _version: u16 = it.next().and_then(|v| v.parse().ok()).unwrap_or(1);
    let caps = Capabilities(it.next().and_then(|v| v.parse().ok()).unwrap_or(0));
    let cores: Vec<usize> = it.next().unwrap_or("").split(',').filter_map(|c| c.parse().ok()).collect();
    if let Some(&core) = cores.first() {
        if placement::pin_current_thread(core) {
            tracing::info!(session_id, core, "polling thread pinned");
        } else {
            tracing::warn!(session_id, core, "could not pin polling thread");
        }
    }

    let mut link = from_handoff(handoff).map_err(|e| format!("rebuild link: {e}"))?;
    link.set_poll_policy(PollPolicy { spin: Duration::from_micros(50) });
    let mut name = [0u8; 16];
    let b = backend.name().as_bytes();
    name[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
    let welcome = Welcome {
        session_id: U64::new(session_id),
        worker_pid: U32::new(std::process::id()),
        device_count: U32::new(devices),
        backend: name,
    };
    handshake::send_welcome(&mut *link, &welcome).map_err(|e| format!("send welcome: {e}"))?;
    let mut stripes = remora_transport::stripes::Stripes::default();
    if caps.contains(Capabilities::STRIPES) && !caps.contains(Capabilities::RDMA) {
        // tcp://: extra connections for large copies, straight to this process.
        let n = std::env::var("REMORA_WORKER_STRIPES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
        stripes = remora_transport::stripes::offer(&mut *link, n).map_err(|e| format!("offer stripes: {e}"))?;
        tracing::info!(session_id, stripes = stripes.len(), "extra tcp connections for large copies");
    }
    if caps.contains(Capabilities::RDMA) {
        // rdma://: the session continues on a queue pair of this process.
        link =
            verbs::serve_upgrade(link, verbs::SETUP_TIMEOUT).map_err(|e| format!("move the session to rdma: {e}"))?;
        link.set_poll_policy(PollPolicy { spin: Duration::from_micros(50) });
    }

    spawn_control_thread(ctl, Arc::clone(&stats));

    // The link stays in this process from here on: bursts of small frames are read in one go.
    link.set_read_ahead(true);
    let mut session = Session::new(&mut *backend, link, limits, &stats);
    session.set_stripes(stripes);
    // Device printf output is printed by the driver on this process's stdout: capture it and
    // send it to the client with the replies, for the application's own stdout.
    // Only for clients that read output blocks (older ones would misread the replies).
    if caps.contains(Capabilities::DEVICE_OUTPUT) {
        match OutputCapture::start() {
            Ok(capture) => session.set_output_capture(capture),
            Err(e) => tracing::warn!(session_id, "device printf output stays on the worker's stdout: {e}"),
        }
    } else {
        tracing::info!(session_id, "the client does not read device output; it stays on the worker's stdout");
    }
    let end = polling::serve(&mut session, &cores, spin, Duration::from_millis(100));
    let (n, bytes) = session.release_all();
    tracing::info!(session_id, allocations = n, bytes, "session ended: {end}; released everything");
    let reason = end.to_string().replace('\n', " ");
    if let End::Goodbye(Some(hdr)) = end {
        // Release the contexts too before answering, so the client's GPU memory is free when
        // its Goodbye returns.
        let (mut link, reply, mut capture) = session.into_goodbye(&hdr);
        drop(backend);
        // Releasing the contexts flushes the last device printf output: it goes with the reply.
        let mut output = Vec::new();
        if let Some(c) = &mut capture {
            c.drain(&mut output);
        }
        let _ = session::send_reply(&mut *link, reply, &output, &[]);
    } else {
        drop(session);
    }
    let _ = send_line(&mut w, &format!("END {n} {bytes} {reason}"));
    Ok(())
}

fn spawn_control_thread(ctl: UnixStream, stats: Arc<SessionStats>) {
    let Ok(mut w) = ctl.try_clone() else { return };
    let spawned = std::thread::Builder::new().name("remora-worker-control".into()).spawn(move || {
        for line in BufReader::new(ctl).lines() {
            let Ok(line) = line else { break };
            let mut it = line.split_whitespace();
            if it.next() == Some("STATS") {
                let seq = it.next().unwrap_or("0");
                let counters = stats.snapshot().to_line();
                let latencies = stats.latencies().to_line();
                if send_line(&mut w, &format!("STATS {seq} {counters} {latencies}")).is_err() {
                    break;
                }
            }
        }
        // The supervisor is gone: nobody can reach this session's results; the session itself
        // keeps going until its client leaves.
    });
    if let Err(e) = spawned {
        tracing::warn!("no control thread: {e}");
    }
}

/// Write one control line with a single `write_all`, so lines from two threads never interleave.
pub(crate) fn send_line(w: &mut UnixStream, line: &str) -> std::io::Result<()> {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    w.write_all(buf.as_bytes())
}
