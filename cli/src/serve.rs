//! `remora serve`.

use std::time::Duration;

use anyhow::Context;
use remora_server::backend::BackendKind;
use remora_server::supervisor::{Config, Supervisor};
use remora_transport::Endpoint;

/// Arguments of `remora serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Endpoints to listen on (tcp://host:port, shm://name); repeat for several. Listeners bind
    /// loopback unless told otherwise; a non-loopback listener requires a token.
    #[arg(long = "listen", default_values_t = ["tcp://127.0.0.1:7070".to_string(), "shm://remora".to_string()])]
    listen: Vec<String>,
    /// Backend: auto (cuda when a driver and GPU are present, else emulated), cuda, emulated.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Token clients must prove (HMAC challenge-response; never sent in clear).
    #[arg(long, env = "REMORA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Workers kept started and ready (each holds its GPU contexts).
    #[arg(long, default_value_t = 2)]
    pool: usize,
    /// Microseconds a session's polling thread busy-polls before it parks.
    #[arg(long, default_value_t = 200_000)]
    spin_us: u64,
    /// Device memory one session may hold, in bytes.
    #[arg(long)]
    max_memory: Option<u64>,
    /// Streams one session may hold.
    #[arg(long)]
    max_streams: Option<usize>,
    /// Events one session may hold.
    #[arg(long)]
    max_events: Option<usize>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<()> {
    let listen = a
        .listen
        .iter()
        .map(|u| u.parse::<Endpoint>().with_context(|| format!("--listen {u}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let backend: BackendKind = a.backend.parse().map_err(anyhow::Error::msg)?;
    let mut cfg = Config::new(listen, crate::worker_command()?);
    cfg.backend = backend;
    cfg.token = a.token;
    cfg.pool_size = a.pool.max(1);
    cfg.spin = Duration::from_micros(a.spin_us);
    cfg.max_memory = a.max_memory;
    cfg.max_streams = a.max_streams;
    cfg.max_events = a.max_events;
    let sup = Supervisor::start(cfg).context("starting the server")?;
    if !sup.wait_ready(1, Duration::from_secs(60)) {
        tracing::warn!("no worker became ready within 60 s; still accepting connections");
    }
    let st = sup.stats();
    tracing::info!(
        backend = st.backend.as_deref().unwrap_or("?"),
        endpoints = %sup.endpoints().iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        "remora serving"
    );
    sup.wait();
    Ok(())
}
