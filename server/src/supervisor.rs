//! The supervisor: accepts connections, authenticates them, hands each to a pre-started worker
//! process, tracks workers and why they exit, and answers statistics ([`Supervisor::stats`] in
//! process; `remora stats` over a connection whose Hello asks for [`Capabilities::STATS`],
//! answered here without a worker). It never calls CUDA, so a device fault can never take it
//! down.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use remora_transport::handshake::{self, Negotiated};
use remora_transport::{fdpass, Endpoint, Link, Listener};
use remora_wire::handshake::Capabilities;
use remora_wire::{Header, Opcode, Status};

use crate::backend::BackendKind;
use crate::placement::Placement;
use crate::report::Report;
use crate::stats::{Latencies, StatsSnapshot};
use crate::worker::{env, send_line};
use crate::Error;

/// Supervisor configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Endpoints to listen on.
    pub listen: Vec<Endpoint>,
    /// Backend the workers open.
    pub backend: BackendKind,
    /// Token clients must prove; required when any endpoint is reachable from other hosts.
    pub token: Option<String>,
    /// Workers kept started and ready.
    pub pool_size: usize,
    /// Program and arguments that run a worker (`remora worker`).
    pub worker_command: (PathBuf, Vec<String>),
    /// Busy-poll time of a session's polling thread before it parks.
    pub spin: Duration,
    /// Device memory a session may hold.
    pub max_memory: Option<u64>,
    /// Streams a session may hold.
    pub max_streams: Option<usize>,
    /// Events a session may hold.
    pub max_events: Option<usize>,
    /// How long an authenticated client waits for a free worker before it is refused.
    pub worker_wait: Duration,
    /// Extra environment for worker processes (e.g. `REMORA_LOG`).
    pub worker_env: Vec<(String, String)>,
    /// A connection whose handshake stalls this long is closed.
    pub handshake_timeout: Duration,
}

impl Config {
    /// Defaults for `listen`, running workers with `worker_command`.
    pub fn new(listen: Vec<Endpoint>, worker_command: (PathBuf, Vec<String>)) -> Config {
        Config {
            listen,
            backend: BackendKind::Auto,
            token: None,
            pool_size: 2,
            worker_command,
            spin: Duration::from_millis(200),
            max_memory: None,
            max_streams: None,
            max_events: None,
            worker_wait: Duration::from_secs(30),
            worker_env: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// One ended session or worker.
#[derive(Debug, Clone)]
pub struct EndRecord {
    /// Session id, if the worker had one.
    pub session_id: Option<u64>,
    /// Worker pid.
    pub worker_pid: u32,
    /// How the process ended (`exit 0`, `signal 9`).
    pub exit: String,
    /// The worker's own account (`END` line), if it gave one.
    pub report: Option<String>,
    /// Allocations the worker freed at the end.
    pub freed_allocations: u64,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    /// Session id.
    pub id: u64,
    /// Worker pid.
    pub worker_pid: u32,
    /// Client address.
    pub peer: String,
    /// Client's claimed pid.
    pub client_pid: u32,
    /// Backend the worker runs (`cuda`, `emulated`).
    pub backend: String,
    /// The session's devices: PCI bus ids (`-` where the backend has none).
    pub devices: Vec<String>,
    /// Polling core.
    pub core: Option<usize>,
    /// Seconds since start.
    pub age_s: f64,
    /// Latest counters.
    pub stats: StatsSnapshot,
    /// Latest latency histograms, by opcode.
    pub latency: Latencies,
}

/// Server-wide statistics.
#[derive(Debug, Clone)]
pub struct ServerStats {
    /// Live sessions.
    pub live_sessions: usize,
    /// Live allocations over all sessions.
    pub live_allocations: u64,
    /// Bytes in live allocations.
    pub live_bytes: u64,
    /// Workers started and waiting for a session.
    pub idle_workers: usize,
    /// Backend the workers run (`cuda`, `emulated`), once one has reported.
    pub backend: Option<String>,
    /// Per-session details.
    pub sessions: Vec<SessionSummary>,
    /// Latency histograms of the live sessions' operations, merged, by opcode.
    pub latency: Latencies,
    /// Recently ended sessions and workers (newest last).
    pub ended: Vec<EndRecord>,
}

struct ReadyWorker {
    pid: u32,
    ctl: UnixStream,
    backend: String,
    pci: Vec<String>,
}

struct LiveSession {
    id: u64,
    worker_pid: u32,
    peer: String,
    client_pid: u32,
    backend: String,
    pci: Vec<String>,
    cores: Vec<usize>,
    started: Instant,
    ctl: UnixStream,
    stats: StatsSnapshot,
    latency: Latencies,
    stats_seq: u64,
    report: Option<String>,
    /// The worker's control connection reached its end and every line was read (the reaper
    /// waits for this before recording the end, so an `END` line written just before exit is
    /// not lost to the race between reading it and reaping the process).
    ctl_closed: bool,
}

struct Shared {
    cfg: Config,
    control_name: String,
    secret: String,
    pool: Mutex<VecDeque<ReadyWorker>>,
    pool_cv: Condvar,
    children: Mutex<HashMap<u32, Child>>,
    starting: AtomicUsize,
    startup_failures: AtomicUsize,
    sessions: Mutex<HashMap<u32, LiveSession>>,
    stats_cv: Condvar,
    ended: Mutex<VecDeque<EndRecord>>,
    placement: Mutex<Placement>,
    next_session: AtomicU64,
    stats_seq: AtomicU64,
    backend_name: Mutex<Option<String>>,
    capabilities: Mutex<Capabilities>,
    shutting_down: AtomicBool,
}

/// A running supervisor. Dropping it kills its workers.
pub struct Supervisor {
    shared: Arc<Shared>,
    endpoints: Vec<Endpoint>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

const ENDED_KEPT: usize = 4096;

impl Supervisor {
    /// Bind every endpoint, start the worker pool and begin serving.
    pub fn start(cfg: Config) -> Result<Supervisor, Error> {
        if cfg.listen.is_empty() {
            return Err(Error::Config("no endpoint to listen on".into()));
        }
        if cfg.token.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Config("the token is empty".into()));
        }
        if let Some(ep) = cfg.listen.iter().find(|ep| !ep.is_local_only()) {
            if cfg.token.is_none() {
                return Err(Error::Config(format!(
                    "{ep} is reachable from other hosts: a token is required (--token or REMORA_TOKEN)"
                )));
            }
        }
        let nonce = remora_transport::auth::nonce();
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let control_name = format!("remora-ctl-{}-{}", std::process::id(), &hex[..12]);
        let addr =
            SocketAddr::from_abstract_name(control_name.as_bytes()).map_err(|e| Error::Io("control socket", e))?;
        let control = UnixListener::bind_addr(&addr).map_err(|e| Error::Io("bind control socket", e))?;

        let mut listeners: Vec<Box<dyn Listener>> = Vec::new();
        for ep in &cfg.listen {
            listeners.push(
                remora_transport::listen(ep).map_err(|source| Error::Listen { endpoint: ep.to_string(), source })?,
            );
        }
        let endpoints: Vec<Endpoint> = listeners.iter().map(|l| l.local_endpoint()).collect();

        let shared = Arc::new(Shared {
            control_name,
            secret: hex[12..].to_string(),
            pool: Mutex::new(VecDeque::new()),
            pool_cv: Condvar::new(),
            children: Mutex::new(HashMap::new()),
            starting: AtomicUsize::new(0),
            startup_failures: AtomicUsize::new(0),
            sessions: Mutex::new(HashMap::new()),
            stats_cv: Condvar::new(),
            ended: Mutex::new(VecDeque::new()),
            placement: Mutex::new(Placement::default()),
            next_session: AtomicU64::new(1),
            stats_seq: AtomicU64::new(0),
            backend_name: Mutex::new(None),
            capabilities: Mutex::new(
                Capabilities::ASYNC_OPS | Capabilities::SHM | Capabilities::DEVICE_OUTPUT | Capabilities::STATS,
            ),
            shutting_down: AtomicBool::new(false),
            cfg,
        });

        let s = Arc::clone(&shared);
        spawn_named("remora-registrar", move || registrar(&s, control));
        let s = Arc::clone(&shared);
        spawn_named("remora-reaper", move || reaper(&s));
        for (listener, ep) in listeners.into_iter().zip(&endpoints) {
            let s = Arc::clone(&shared);
            let ep = ep.clone();
            tracing::info!("listening on {ep}");
            // Sessions that start on an rdma:// listener move to a queue pair after the Welcome.
            // tcp:// sessions may add connections for large copies.
            let extra = match ep {
                Endpoint::Rdma(_) => Capabilities::RDMA | Capabilities::STRIPES,
                Endpoint::Tcp(_) => Capabilities::STRIPES,
                _ => Capabilities(0),
            };
            spawn_named("remora-accept", move || acceptor(&s, listener, extra));
        }
        shared.ensure_pool();
        Ok(Supervisor { shared, endpoints })
    }

    /// The endpoints actually bound (real ports).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Wait until at least `n` workers are ready (or `timeout` passes). Returns whether they are.
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pool = self.shared.pool.lock();
        while pool.len() < n {
            if self.shared.pool_cv.wait_until(&mut pool, deadline).timed_out() {
                return pool.len() >= n;
            }
        }
        true
    }

    /// Current statistics; asks every live worker for fresh counters (waits at most 1 s).
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// Serve until the process is stopped.
    pub fn wait(&self) {
        loop {
            std::thread::park();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let mut children = self.shared.children.lock();
        for (_, c) in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        children.clear();
        self.shared.pool.lock().clear();
    }
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        tracing::error!("cannot start thread {name}: {e}");
    }
}

impl Shared {
    /// Start workers until `pool_size` are ready or starting.
    fn ensure_pool(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let want = self.cfg.pool_size.max(1);
        loop {
            let have = self.pool.lock().len() + self.starting.load(Ordering::SeqCst);
            if have >= want {
                return;
            }
            let failures = self.startup_failures.load(Ordering::SeqCst);
            if failures >= 3 && self.starting.load(Ordering::SeqCst) > 0 {
                return; // back off: one attempt at a time while workers keep failing
            }
            if let Err(e) = self.spawn_worker() {
                tracing::error!("cannot start a worker: {e}");
                return;
            }
        }
    }

    fn spawn_worker(&self) -> std::io::Result<()> {
        let (exe, args) = &self.cfg.worker_command;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env(env::CONTROL, &self.control_name)
            .env(env::SECRET, &self.secret)
            .env(env::BACKEND, backend_arg(self.cfg.backend))
            .env(env::SPIN_US, self.cfg.spin.as_micros().to_string())
            .envs(self.cfg.worker_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if let Some(m) = self.cfg.max_memory {
            cmd.env(env::MAX_MEMORY, m.to_string());
        }
        if let Some(s) = self.cfg.max_streams {
            cmd.env(env::MAX_STREAMS, s.to_string());
        }
        if let Some(e) = self.cfg.max_events {
            cmd.env(env::MAX_EVENTS, e.to_string());
        }
        let child = cmd.spawn()?;
        self.starting.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(pid = child.id(), "worker started");
        self.children.lock().insert(child.id(), child);
        Ok(())
    }

    fn take_worker(self: &Arc<Self>) -> Option<ReadyWorker> {
        let deadline = Instant::now() + self.cfg.worker_wait;
        let mut pool = self.pool.lock();
        loop {
            if let Some(w) = pool.pop_front() {
                drop(pool);
                self.ensure_pool();
                return Some(w);
            }
            drop(pool);
            self.ensure_pool();
            pool = self.pool.lock();
            if pool.is_empty() && self.pool_cv.wait_until(&mut pool, deadline).timed_out() && pool.is_empty() {
                return None;
            }
        }
    }

    fn stats(&self) -> ServerStats {
        let seq = self.stats_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut sessions = self.sessions.lock();
        for s in sessions.values_mut() {
            let _ = send_line(&mut s.ctl, &format!("STATS {seq}"));
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while sessions.values().any(|s| s.stats_seq < seq && s.report.is_none()) {
            if self.stats_cv.wait_until(&mut sessions, deadline).timed_out() {
                break;
            }
        }
        let mut out = ServerStats {
            live_sessions: 0,
            live_allocations: 0,
            live_bytes: 0,
            idle_workers: self.pool.lock().len(),
            backend: self.backend_name.lock().clone(),
            sessions: Vec::new(),
            ended: self.ended.lock().iter().cloned().collect(),
            latency: Latencies::default(),
        };
        for s in sessions.values().filter(|s| s.report.is_none()) {
            out.live_sessions += 1;
            out.live_allocations += s.stats.live_allocations;
            out.live_bytes += s.stats.live_bytes;
            out.latency.merge(&s.latency);
            out.sessions.push(SessionSummary {
                id: s.id,
                worker_pid: s.worker_pid,
                peer: s.peer.clone(),
                client_pid: s.client_pid,
                backend: s.backend.clone(),
                devices: s.pci.clone(),
                core: s.cores.first().copied(),
                age_s: s.started.elapsed().as_secs_f64(),
                stats: s.stats,
                latency: s.latency.clone(),
            });
        }
        out.sessions.sort_by_key(|s| s.id);
        out
    }

    fn assign(self: &Arc<Self>, mut link: Box<dyn Link>, neg: Negotiated) {
        let peer = link.peer();
        let Some(worker) = self.take_worker() else {
            tracing::warn!(%peer, "refused: no worker became ready in {:?}", self.cfg.worker_wait);
            let to = Header::request(Opcode::Welcome, 1, 0);
            let _ = handshake::refuse(&mut *link, &to, Status::SERVER_BUSY, "no worker is available; try again later");
            return;
        };
        let id = self.next_session.fetch_add(1, Ordering::SeqCst);
        let cores: Vec<usize> = {
            let mut p = self.placement.lock();
            let pcis: Vec<Option<&str>> = if worker.pci.is_empty() {
                vec![None]
            } else {
                worker.pci.iter().map(|s| (s != "-").then_some(s.as_str())).collect()
            };
            pcis.into_iter().filter_map(|pci| p.pick(pci)).collect()
        };
        let core_list = cores.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let line = format!(
            "SESSION {id} {} {} {}",
            neg.version,
            neg.capabilities.0,
            if core_list.is_empty() { "-" } else { &core_list }
        );
        let handoff = match link.into_handoff() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(%peer, "cannot hand the connection over: {e}");
                self.pool.lock().push_front(worker);
                self.release_cores(&cores);
                return;
            }
        };
        let reader = match worker.ctl.try_clone() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("control socket clone: {e}");
                self.release_cores(&cores);
                return;
            }
        };
        if let Err(e) = fdpass::send_handoff(&worker.ctl, &handoff, line.as_bytes()) {
            tracing::warn!(%peer, pid = worker.pid, "handing the session to the worker failed: {e}");
            self.release_cores(&cores);
            return;
        }
        drop(handoff);
        tracing::info!(session = id, %peer, client_pid = neg.client_pid, worker = worker.pid, cores = %core_list, "session started");
        self.sessions.lock().insert(
            worker.pid,
            LiveSession {
                id,
                worker_pid: worker.pid,
                peer,
                client_pid: neg.client_pid,
                backend: worker.backend,
                pci: worker.pci,
                cores,
                started: Instant::now(),
                ctl: worker.ctl,
                stats: StatsSnapshot::default(),
                latency: Latencies::default(),
                stats_seq: 0,
                report: None,
                ctl_closed: false,
            },
        );
        let s = Arc::clone(self);
        let pid = worker.pid;
        spawn_named("remora-monitor", move || monitor(&s, pid, reader));
    }

    /// Answer an authenticated statistics request (`remora stats`) here: no worker is taken and
    /// no session counted. The caller drops the link.
    fn answer_stats(&self, link: &mut dyn Link, peer: &str) {
        let report = Report::from_stats(&self.stats());
        let sent = match report.to_json() {
            Ok(doc) => handshake::send_server_stats(link, doc.as_bytes()),
            Err(e) => {
                let to = Header::request(Opcode::ServerStats, 1, 0);
                handshake::refuse(link, &to, Status::PROTOCOL, &format!("cannot encode statistics: {e}"))
            }
        };
        match sent {
            Ok(()) => tracing::debug!(%peer, sessions = report.live_sessions, "statistics sent"),
            Err(e) => tracing::warn!(%peer, "statistics not sent: {e}"),
        }
    }

    fn release_cores(&self, cores: &[usize]) {
        let mut p = self.placement.lock();
        for &c in cores {
            p.release(c);
        }
    }

    fn record_end(&self, rec: EndRecord) {
        let mut ended = self.ended.lock();
        if ended.len() >= ENDED_KEPT {
            ended.pop_front();
        }
        ended.push_back(rec);
    }
}

fn backend_arg(k: BackendKind) -> &'static str {
    match k {
        BackendKind::Auto => "auto",
        BackendKind::Cuda => "cuda",
        BackendKind::Emulated => "emulated",
    }
}

/// Accepts workers' control connections and checks their `READY` line.
fn registrar(shared: &Arc<Shared>, control: UnixListener) {
    for conn in control.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let Ok(reader) = conn.try_clone() else { continue };
        let mut reader = BufReader::new(reader);
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        if !reader.buffer().is_empty() {
            tracing::warn!("worker sent more than its READY line; dropped");
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let pid = f.get(1).and_then(|p| p.parse::<u32>().ok());
        let (Some("READY"), Some(pid), Some(&secret)) = (f.first().copied(), pid, f.get(2)) else {
            tracing::warn!("control connection without a valid READY line: dropped");
            continue;
        };
        if secret != shared.secret || !shared.children.lock().contains_key(&pid) {
            tracing::warn!(pid, "control connection from an unknown process: dropped");
            continue;
        }
        let _ = conn.set_read_timeout(None);
        let backend = f.get(3).copied().unwrap_or("?").to_string();
        let pci: Vec<String> = f.get(5).map(|s| s.split(',').map(String::from).collect()).unwrap_or_default();
        {
            let mut b = shared.backend_name.lock();
            if b.is_none() {
                tracing::info!(backend = %backend, devices = f.get(4).copied().unwrap_or("?"), "first worker ready");
                if backend == "emulated" {
                    tracing::warn!("workers run the EMULATED backend: host memory, not a GPU (a test double)");
                    *shared.capabilities.lock() = Capabilities::ASYNC_OPS
                        | Capabilities::SHM
                        | Capabilities::DEVICE_OUTPUT
                        | Capabilities::STATS
                        | Capabilities::EMULATED;
                }
            }
            *b = Some(backend.clone());
        }
        shared.starting.fetch_sub(1, Ordering::SeqCst);
        shared.startup_failures.store(0, Ordering::SeqCst);
        shared.pool.lock().push_back(ReadyWorker { pid, ctl: conn, backend, pci });
        shared.pool_cv.notify_all();
    }
}

/// Reads a session worker's control lines.
fn monitor(shared: &Arc<Shared>, pid: u32, ctl: UnixStream) {
    for line in BufReader::new(ctl).lines() {
        let Ok(line) = line else { break };
        // Decoded before taking the lock that every statistics request and session start waits on.
        let stats = line.strip_prefix("STATS ").map(|rest| {
            let seq: u64 = rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
            (seq, StatsSnapshot::from_line(rest), Latencies::from_line(rest))
        });
        let mut sessions = shared.sessions.lock();
        let Some(s) = sessions.get_mut(&pid) else { break };
        if let Some((seq, counters, latency)) = stats {
            s.stats = counters;
            s.latency = latency;
            s.stats_seq = s.stats_seq.max(seq);
            shared.stats_cv.notify_all();
        } else if let Some(rest) = line.strip_prefix("END ") {
            s.report = Some(rest.to_string());
            shared.stats_cv.notify_all();
        }
    }
    if let Some(s) = shared.sessions.lock().get_mut(&pid) {
        s.ctl_closed = true;
    }
}

/// How long the reaper waits, after a session's worker exited, for its control lines to be
/// read before recording the end without them.
const CTL_DRAIN: Duration = Duration::from_secs(2);

/// Reaps exited workers and records why they ended.
fn reaper(shared: &Arc<Shared>) {
    // Exited session workers whose control lines are still being read, and since when.
    let mut draining: Vec<(u32, std::process::ExitStatus, Instant)> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let mut exited = Vec::new();
        {
            let mut children = shared.children.lock();
            children.retain(|&pid, c| match c.try_wait() {
                Ok(Some(st)) => {
                    draining.push((pid, st, Instant::now()));
                    false
                }
                _ => true,
            });
        }
        {
            let sessions = shared.sessions.lock();
            draining.retain(|&(pid, st, since)| {
                let read = sessions.get(&pid).is_none_or(|s| s.ctl_closed);
                if read || since.elapsed() >= CTL_DRAIN {
                    exited.push((pid, st));
                    false
                } else {
                    true
                }
            });
        }
        for (pid, st) in exited {
            let exit = match (st.code(), st.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "unknown".into(),
            };
            let session = shared.sessions.lock().remove(&pid);
            let was_idle = {
                let mut pool = shared.pool.lock();
                let before = pool.len();
                pool.retain(|w| w.pid != pid);
                before != pool.len()
            };
            match session {
                Some(s) => {
                    shared.release_cores(&s.cores);
                    let freed =
                        s.report.as_deref().and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0);
                    if s.report.is_some() {
                        tracing::info!(session = s.id, pid, %exit, report = s.report.as_deref().unwrap_or(""), "session worker exited");
                    } else {
                        tracing::warn!(session = s.id, pid, %exit, "session worker died without reporting; the OS reclaimed its resources");
                    }
                    shared.record_end(EndRecord {
                        session_id: Some(s.id),
                        worker_pid: pid,
                        exit,
                        report: s.report,
                        freed_allocations: freed,
                    });
                    shared.stats_cv.notify_all();
                }
                None => {
                    if !was_idle {
                        // Never reported READY: a start-up failure.
                        shared.starting.fetch_sub(1, Ordering::SeqCst);
                        shared.startup_failures.fetch_add(1, Ordering::SeqCst);
                        tracing::error!(pid, %exit, "worker exited before it was ready");
                    } else if !shared.shutting_down.load(Ordering::SeqCst) {
                        tracing::warn!(pid, %exit, "idle worker exited");
                    }
                    shared.record_end(EndRecord {
                        session_id: None,
                        worker_pid: pid,
                        exit,
                        report: None,
                        freed_allocations: 0,
                    });
                }
            }
            if shared.startup_failures.load(Ordering::SeqCst) >= 3 {
                std::thread::sleep(Duration::from_secs(1));
            }
            shared.ensure_pool();
        }
    }
}

/// Accepts connections on one listener; each is authenticated on its own thread.
fn acceptor(shared: &Arc<Shared>, mut listener: Box<dyn Listener>, extra: Capabilities) {
    loop {
        if shared.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let link = match listener.accept() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("accept on {}: {e}", listener.local_endpoint());
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let s = Arc::clone(shared);
        spawn_named("remora-handshake", move || {
            let mut link = link;
            let peer = link.peer();
            link.set_recv_timeout(Some(s.cfg.handshake_timeout));
            let token = s.cfg.token.clone();
            let caps = *s.capabilities.lock() | extra;
            match handshake::server_authenticate(&mut *link, token.as_deref().map(str::as_bytes), caps) {
                Ok(neg) if neg.capabilities.contains(Capabilities::STATS) => s.answer_stats(&mut *link, &peer),
                Ok(neg) => s.assign(link, neg),
                Err(e) => tracing::warn!(%peer, "connection closed: {e}"),
            }
        });
    }
}
