//! Helpers shared by remora's integration tests: start a supervisor whose workers are this
//! crate's helper binary, pick the backend from `REMORA_TEST_BACKEND`.

pub mod load;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use remora_server::backend::BackendKind;
use remora_server::supervisor::{Config, ServerStats, Supervisor};
use remora_transport::Endpoint;

/// The backend tests run against: `REMORA_TEST_BACKEND` (`emulated` by default, `cuda` on the
/// GPU machine).
pub fn test_backend() -> BackendKind {
    std::env::var("REMORA_TEST_BACKEND").ok().and_then(|v| v.parse().ok()).unwrap_or(BackendKind::Emulated)
}

/// Log to stderr when `REMORA_LOG` is set.
pub fn init_logging() {
    if let Ok(f) = std::env::var("REMORA_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_test_writer()
            .try_init();
    }
}

/// A unique shm name for this test process and `tag`.
pub fn shm_name(tag: &str) -> String {
    format!("remora-test-{}-{tag}", std::process::id())
}

/// Start a supervisor on `tcp://127.0.0.1:0` and a unique `shm://`, workers from `helper`.
pub fn start_server(helper: &str, tag: &str, tweak: impl FnOnce(&mut Config)) -> Supervisor {
    start_server_on(helper, &["tcp://127.0.0.1:0", &format!("shm://{}", shm_name(tag))], tweak)
}

/// Start a supervisor on the given endpoints, workers from `helper`.
pub fn start_server_on(helper: &str, endpoints: &[&str], tweak: impl FnOnce(&mut Config)) -> Supervisor {
    init_logging();
    let listen: Vec<Endpoint> = endpoints.iter().map(|e| e.parse().expect("endpoint")).collect();
    let mut cfg = Config::new(listen, (PathBuf::from(helper), vec!["worker".into()]));
    cfg.backend = test_backend();
    cfg.pool_size = 2;
    cfg.spin = Duration::from_millis(5);
    tweak(&mut cfg);
    let sup = Supervisor::start(cfg).expect("supervisor starts");
    assert!(sup.wait_ready(1, Duration::from_secs(60)), "no worker became ready");
    sup
}

/// The tcp and shm URLs of a supervisor.
pub fn urls(sup: &Supervisor) -> Vec<String> {
    sup.endpoints().iter().map(ToString::to_string).collect()
}

/// The server's first URL with this scheme (`"tcp://"`, `"shm://"`).
pub fn url_of(sup: &Supervisor, scheme: &str) -> String {
    urls(sup).into_iter().find(|u| u.starts_with(scheme)).unwrap_or_else(|| panic!("the server has no {scheme} URL"))
}

/// A new client on `url` allocates, copies `len` bytes of `byte` there and back, and leaves:
/// the server still serves newcomers.
pub fn still_serving(url: &str, len: usize, byte: u8) {
    let c = remora_interpose::client::Client::connect(url, None).expect("a new client is served");
    let p = c.mem_alloc(0, len as u64).expect("allocation");
    c.memcpy_htod(p, &vec![byte; len]).expect("host → device copy");
    let mut b = vec![0u8; len];
    c.memcpy_dtoh(&mut b, p).expect("device → host copy");
    assert_eq!(b, vec![byte; len]);
    c.mem_free(p).expect("free");
    c.close().expect("goodbye");
}

/// Poll `stats` until `pred` holds or `timeout` passes; returns the last stats and whether it held.
pub fn wait_stats(sup: &Supervisor, timeout: Duration, pred: impl Fn(&ServerStats) -> bool) -> (ServerStats, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let st = sup.stats();
        if pred(&st) {
            return (st, true);
        }
        if Instant::now() > deadline {
            return (st, false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
