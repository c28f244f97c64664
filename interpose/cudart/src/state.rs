//! Process-wide and per-thread state of the runtime front door: the lazy connection, the
//! per-thread current device and last error, cached device information, and the client-side
//! record of device and pinned host allocations (for `cudaMemcpyDefault` and pointer queries).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use remora_interpose::client::Client;
use remora_interpose::cudart::errors;
use remora_wire::ops::DeviceInfo;
use remora_wire::Status;

/// `cudaError_t`.
pub(crate) type CudaError = i32;

pub(crate) const SUCCESS: CudaError = 0;
pub(crate) const INVALID_VALUE: CudaError = 1;
pub(crate) const MEMORY_ALLOCATION: CudaError = 2;
pub(crate) const INVALID_CONFIGURATION: CudaError = 9;
pub(crate) const INVALID_MEMCPY_DIRECTION: CudaError = 21;
pub(crate) const INVALID_DEVICE_FUNCTION: CudaError = 98;
pub(crate) const NO_DEVICE: CudaError = 100;
pub(crate) const INVALID_DEVICE: CudaError = 101;
pub(crate) const INVALID_RESOURCE_HANDLE: CudaError = 400;
pub(crate) const SYMBOL_NOT_FOUND: CudaError = 500;
pub(crate) const NOT_SUPPORTED: CudaError = 801;
pub(crate) const UNKNOWN: CudaError = 999;

/// The connection and what is cached about the server.
pub(crate) struct Runtime {
    pub(crate) client: Client,
    pub(crate) device_count: u32,
    info: Mutex<HashMap<u32, Arc<DeviceInfo>>>,
    /// Device allocations: base → (size, device).
    pub(crate) allocations: Mutex<BTreeMap<u64, (u64, u32)>>,
    /// Pinned (page-locked) host ranges: base → (size, flags, allocated by us).
    pub(crate) pinned: Mutex<BTreeMap<usize, (usize, u32, bool)>>,
    /// Streams this process created: handle → (flags, priority).
    pub(crate) streams: Mutex<HashMap<u64, (u32, i32)>>,
}

/// Attributes that describe the link between the device and *this* host, which for a remote GPU
/// differ from what its driver reports: the host reaches managed and mapped memory through
/// remora's coherence at synchronisation points (`mirror.rs`), not concurrently, not through
/// its page tables and not atomically.
const REMOTE_ATTRIBUTES: [(usize, i32); 8] = [
    (19, 1),  // CAN_MAP_HOST_MEMORY
    (83, 1),  // MANAGED_MEMORY
    (86, 0),  // HOST_NATIVE_ATOMIC_SUPPORTED
    (88, 0),  // PAGEABLE_MEMORY_ACCESS
    (89, 0),  // CONCURRENT_MANAGED_ACCESS
    (91, 0),  // CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM
    (100, 0), // PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES
    (101, 0), // DIRECT_MANAGED_MEM_ACCESS_FROM_HOST
];

static RUNTIME: OnceLock<Result<Runtime, CudaError>> = OnceLock::new();

thread_local! {
    static DEVICE: Cell<u32> = const { Cell::new(0) };
    static LAST_ERROR: Cell<CudaError> = const { Cell::new(SUCCESS) };
    static PER_THREAD_STREAMS: RefCell<HashMap<u32, u64>> = RefCell::new(HashMap::new());
    static PER_THREAD_DEFAULT: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with the per-thread default stream standing for stream 0 (the `_ptsz`/`_ptds`
/// exports that `nvcc --default-stream per-thread` programs call).
pub(crate) fn per_thread(f: impl FnOnce() -> CudaError) -> CudaError {
    let before = PER_THREAD_DEFAULT.with(|p| p.replace(true));
    let r = f();
    PER_THREAD_DEFAULT.with(|p| p.set(before));
    r
}

/// Server URLs to try, in order: `REMORA_SERVER` (comma-separated), else a GVirtuS
/// `properties.json` named by `GVIRTUS_CONFIG`, else the local defaults.
pub(crate) fn server_urls() -> Vec<String> {
    if let Ok(v) = std::env::var("REMORA_SERVER") {
        let urls = remora_interpose::client::candidates(&v);
        if !urls.is_empty() {
            return urls;
        }
    }
    if let Ok(path) = std::env::var("GVIRTUS_CONFIG") {
        match std::fs::read_to_string(&path).map(|t| gvirtus_url(&t)) {
            Ok(Some(url)) => return vec![url],
            Ok(None) => eprintln!("remora: {path} (GVIRTUS_CONFIG) names no server_address/port; using defaults"),
            Err(e) => eprintln!("remora: cannot read GVIRTUS_CONFIG {path}: {e}; using defaults"),
        }
    }
    vec!["shm://remora".into(), "tcp://127.0.0.1:7070".into()]
}

/// The server of a GVirtuS `properties.json`: its first endpoint's `server_address` and `port`.
pub(crate) fn gvirtus_url(json: &str) -> Option<String> {
    fn value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
        let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
        let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        let end = rest.find(|c: char| c == '"' || c == ',' || c == '}' || c.is_whitespace())?;
        Some(&rest[..end])
    }
    let host = value(json, "server_address")?;
    let port: u16 = value(json, "port")?.parse().ok()?;
    Some(format!("tcp://{host}:{port}"))
}

fn init_logging() {
    let filter = std::env::var("REMORA_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

extern "C" {
    /// C stdio's standard output stream (glibc exports the pointer as a data symbol).
    static mut stdout: *mut libc::FILE;
}

/// The client's output sink here: device `printf` output goes through C stdio's `stdout`, the
/// buffer the application's own `printf` writes to, so the two interleave as on a local GPU
/// (the driver prints there at the same synchronising calls), then is flushed.
fn write_c_stdout(bytes: &[u8]) {
    // SAFETY: `stdout` is initialised by libc before any code of the process runs and only ever
    // points at a live FILE; the pointer is read by value (no reference to the static is made).
    // fwrite and fflush take the stream's own lock and read `bytes.len()` bytes from `bytes`.
    unsafe {
        let f = std::ptr::addr_of!(stdout).read();
        if f.is_null() {
            return;
        }
        libc::fwrite(bytes.as_ptr().cast(), 1, bytes.len(), f);
        libc::fflush(f);
    }
}

/// At exit: end the session cleanly, so the server has released this program's GPU memory by
/// the time it is gone.
extern "C" fn goodbye_at_exit() {
    if let Some(rt) = rt_if_connected() {
        let _ = rt.client.close_within(std::time::Duration::from_secs(5));
    }
}

fn connect() -> Result<Runtime, CudaError> {
    init_logging();
    let token = std::env::var("REMORA_TOKEN").ok();
    let urls = server_urls();
    let mut reasons = Vec::new();
    for url in &urls {
        match Client::connect(url, token.as_deref()) {
            Ok(client) => {
                client.set_output_sink(Box::new(write_c_stdout));
                let device_count = client.device_count().map_err(errors::from_status)?;
                tracing::debug!(%url, device_count, "remora: connected");
                // SAFETY: registers a plain extern "C" fn with no arguments; libc keeps it.
                if unsafe { libc::atexit(goodbye_at_exit) } != 0 {
                    tracing::warn!(
                        "remora: could not register the exit handler; the session ends when the process does"
                    );
                }
                return Ok(Runtime {
                    client,
                    device_count,
                    info: Mutex::new(HashMap::new()),
                    allocations: Mutex::new(BTreeMap::new()),
                    pinned: Mutex::new(BTreeMap::new()),
                    streams: Mutex::new(HashMap::new()),
                });
            }
            Err(e) => reasons.push(format!("{url}: {e}")),
        }
    }
    eprintln!("remora: no GPU server reachable ({}); CUDA calls fail with cudaErrorNoDevice", reasons.join("; "));
    Err(NO_DEVICE)
}

/// The runtime, connecting on first use.
pub(crate) fn rt() -> Result<&'static Runtime, CudaError> {
    RUNTIME.get_or_init(connect).as_ref().map_err(|&e| e)
}

/// The runtime if a connection was made already (for teardown paths that must not connect).
pub(crate) fn rt_if_connected() -> Option<&'static Runtime> {
    RUNTIME.get().and_then(|r| r.as_ref().ok())
}

impl Runtime {
    /// Cached device information.
    pub(crate) fn info(&self, dev: u32) -> Result<Arc<DeviceInfo>, CudaError> {
        if dev >= self.device_count {
            return Err(INVALID_DEVICE);
        }
        if let Some(i) = self.info.lock().get(&dev) {
            return Ok(Arc::clone(i));
        }
        let mut i = self.client.device_info(dev).map_err(cuda)?;
        for (attr, value) in REMOTE_ATTRIBUTES {
            if let Some(slot) = i.attributes.get_mut(attr) {
                slot.set(value);
            }
        }
        let i = Arc::new(i);
        self.info.lock().insert(dev, Arc::clone(&i));
        Ok(i)
    }

    /// The device allocation containing `ptr`: (base, size, device).
    pub(crate) fn allocation(&self, ptr: u64) -> Option<(u64, u64, u32)> {
        let a = self.allocations.lock();
        let (&base, &(size, dev)) = a.range(..=ptr).next_back()?;
        (ptr < base + size.max(1)).then_some((base, size, dev))
    }

    /// The pinned host range containing `ptr`: (base, size, flags).
    pub(crate) fn pinned_range(&self, ptr: usize) -> Option<(usize, usize, u32)> {
        let p = self.pinned.lock();
        let (&base, &(size, flags, _)) = p.range(..=ptr).next_back()?;
        (ptr < base + size.max(1)).then_some((base, size, flags))
    }

    /// The stream handle on the wire for a `cudaStream_t` value.
    pub(crate) fn stream(&self, s: usize) -> Result<u64, CudaError> {
        let s = if s == 0 && PER_THREAD_DEFAULT.with(Cell::get) { 2 } else { s };
        match s {
            0 | 1 => Ok(0),
            2 => {
                let dev = current_device();
                if let Some(h) = PER_THREAD_STREAMS.with(|m| m.borrow().get(&dev).copied()) {
                    return Ok(h);
                }
                let h = self.client.stream_create(dev, 0, 0).map_err(cuda)?;
                PER_THREAD_STREAMS.with(|m| m.borrow_mut().insert(dev, h));
                Ok(h)
            }
            other => Ok(other as u64),
        }
    }
}

/// A server status as a `cudaError_t`.
pub(crate) fn cuda(s: Status) -> CudaError {
    errors::from_status(s)
}

/// The calling thread's current device.
pub(crate) fn current_device() -> u32 {
    DEVICE.with(Cell::get)
}

/// Set the calling thread's current device.
pub(crate) fn set_current_device(dev: u32) {
    DEVICE.with(|d| d.set(dev));
}

/// `cudaErrorNotReady`: an answer, not a failure; libcudart does not record it as last error.
pub(crate) const NOT_READY: CudaError = 600;

/// Record `e` as the thread's last error (unless success or not-ready) and return it.
pub(crate) fn record(e: CudaError) -> CudaError {
    if e != SUCCESS && e != NOT_READY {
        LAST_ERROR.with(|l| l.set(e));
    }
    e
}

/// `cudaGetLastError`: return and clear. As with libcudart, a sticky error is returned once
/// here; the calls that need the broken context keep failing with it.
pub(crate) fn take_last_error() -> CudaError {
    LAST_ERROR.with(|l| l.replace(SUCCESS))
}

/// `cudaPeekAtLastError`.
pub(crate) fn peek_last_error() -> CudaError {
    LAST_ERROR.with(Cell::get)
}

/// Run a shim body: panics become `cudaErrorUnknown`, errors are recorded as the last error.
pub(crate) fn guard(name: &str, f: impl FnOnce() -> Result<(), CudaError>) -> CudaError {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SUCCESS,
        Ok(Err(e)) => record(e),
        Err(_) => {
            eprintln!("remora: internal error in {name} (panic); returning cudaErrorUnknown");
            record(UNKNOWN)
        }
    }
}

/// The body of every export remora does not implement: log the name once, return
/// `cudaErrorNotSupported`.
pub(crate) fn not_supported(name: &'static str) -> CudaError {
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock();
    if !seen.contains(&name) {
        seen.push(name);
        eprintln!("remora: {name} is not supported yet; returning cudaErrorNotSupported");
    }
    record(NOT_SUPPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvirtus_properties() {
        let json = r#"{ "communicator": [ { "endpoint": { "suite": "tcp/ip", "protocol": "tcp",
            "server_address": "10.0.0.7", "port": "9999" }, "plugins": ["cudart"] } ],
            "secure_application": false }"#;
        assert_eq!(gvirtus_url(json).as_deref(), Some("tcp://10.0.0.7:9999"));
        assert_eq!(gvirtus_url(r#"{"server_address":"h","port":8888}"#).as_deref(), Some("tcp://h:8888"));
        assert_eq!(gvirtus_url("{}"), None);
        assert_eq!(gvirtus_url(r#"{"server_address":"h","port":"x"}"#), None);
    }

    #[test]
    fn last_error_semantics() {
        assert_eq!(record(INVALID_VALUE), INVALID_VALUE);
        assert_eq!(record(SUCCESS), SUCCESS);
        assert_eq!(peek_last_error(), INVALID_VALUE);
        assert_eq!(take_last_error(), INVALID_VALUE);
        assert_eq!(take_last_error(), SUCCESS);
        assert_eq!(guard("t", || Err(INVALID_DEVICE)), INVALID_DEVICE);
        assert_eq!(guard("t", || panic!("boom")), UNKNOWN);
        assert_eq!(take_last_error(), UNKNOWN);
    }
}
