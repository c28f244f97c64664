//! `remora demo`: allocate, copy, launch a kernel with arguments, verify, time a few things.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use remora_interpose::client::{pack_params, LaunchDims};
use remora_server::backend::demo_kernels::DEMO_PTX;
use remora_server::backend::BackendKind;
use remora_server::supervisor::{Config, Supervisor};
use remora_wire::ops::ImageKind;

/// Arguments of `remora demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Server to use (tcp://host:port, shm://name). Without it the demo starts its own server
    /// and runs over both tcp and shm.
    #[arg(long, env = "REMORA_SERVER")]
    server: Option<String>,
    /// Token for the server.
    #[arg(long, env = "REMORA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Backend of the server the demo starts itself: auto, cuda, emulated.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Elements in the vectors.
    #[arg(long, default_value_t = 1 << 20)]
    elements: usize,
}

pub(crate) fn run(a: Args) -> anyhow::Result<()> {
    let (_own, urls) = match &a.server {
        Some(u) => (None, vec![u.clone()]),
        None => {
            let name = format!("remora-demo-{}", std::process::id());
            let listen = vec!["tcp://127.0.0.1:0".parse()?, format!("shm://{name}").parse()?];
            let mut cfg = Config::new(listen, crate::worker_command()?);
            cfg.backend = a.backend.parse::<BackendKind>().map_err(anyhow::Error::msg)?;
            cfg.pool_size = 1;
            if std::env::var_os("REMORA_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
                cfg.worker_env.push(("REMORA_LOG".into(), "warn".into()));
            }
            let sup = Supervisor::start(cfg).context("starting a local server")?;
            let urls = sup.endpoints().iter().map(ToString::to_string).collect();
            println!("started a local server (pass --server URL to use another)");
            (Some(sup), urls)
        }
    };
    let mut failed = false;
    for url in &urls {
        if let Err(e) = workload(url, a.token.as_deref(), a.elements) {
            println!("  FAILED: {e:#}");
            failed = true;
        }
    }
    if failed {
        bail!("the demo failed");
    }
    Ok(())
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn workload(url: &str, token: Option<&str>, n: usize) -> anyhow::Result<()> {
    println!("\n== {url}");
    let t0 = Instant::now();
    let c =
        remora_interpose::client::connect_first(url, token).map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?;
    let connect = t0.elapsed();
    let w = c.welcome();
    let backend = w.backend_name().to_string();
    let ndev = c.device_count().map_err(|s| anyhow::anyhow!("device count: {s}"))?;
    let info = c.device_info(0).map_err(|s| anyhow::anyhow!("device info: {s}"))?;
    let (free, total) = c.mem_get_info(0).map_err(|s| anyhow::anyhow!("memory info: {s}"))?;
    let cc = (info.attribute(75), info.attribute(76));
    println!(
        "  backend {backend}{} · {ndev} device(s) · device 0: {} (sm_{}{}), {:.1} GiB free of {:.1} · session {} on worker pid {} · connected in {:.1} ms",
        if backend == "emulated" { " (host-memory test double, not a GPU)" } else { "" },
        info.name_str(),
        cc.0,
        cc.1,
        free as f64 / (1u64 << 30) as f64,
        total as f64 / (1u64 << 30) as f64,
        w.session_id.get(),
        w.worker_pid.get(),
        connect.as_secs_f64() * 1e3
    );

    let bytes = (n * 4) as u64;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let dx = c.mem_alloc(0, bytes).map_err(|s| anyhow::anyhow!("allocating x: {s}"))?;
    let dy = c.mem_alloc(0, bytes).map_err(|s| anyhow::anyhow!("allocating y: {s}"))?;
    let tc = Instant::now();
    c.memcpy_htod(dx, as_bytes(&x)).map_err(|s| anyhow::anyhow!("copy x: {s}"))?;
    c.memcpy_htod(dy, as_bytes(&y)).map_err(|s| anyhow::anyhow!("copy y: {s}"))?;
    let h2d = tc.elapsed();

    let module = c
        .module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx)
        .map_err(|s| anyhow::anyhow!("loading the demo module: {s}"))?;
    let saxpy = c.module_get_function(module, "remora_saxpy").map_err(|s| anyhow::anyhow!("remora_saxpy: {s}"))?;
    let layout = c.func_param_info(saxpy).map_err(|s| anyhow::anyhow!("parameter info: {s}"))?;
    let alpha = 2.0f32;
    let params =
        pack_params(&layout, &[&alpha.to_le_bytes(), &dx.to_le_bytes(), &dy.to_le_bytes(), &(n as u64).to_le_bytes()])
            .map_err(|s| anyhow::anyhow!("packing parameters for layout {layout:?}: {s}"))?;
    let ev0 = c.event_create(0, 0).map_err(|s| anyhow::anyhow!("event: {s}"))?;
    let ev1 = c.event_create(0, 0).map_err(|s| anyhow::anyhow!("event: {s}"))?;
    let blocks = u32::try_from(n.div_ceil(256).min(65535)).unwrap_or(65535);
    c.event_record(ev0, 0).map_err(|s| anyhow::anyhow!("record: {s}"))?;
    c.launch(saxpy, LaunchDims { grid: [blocks, 1, 1], block: [256, 1, 1], shared_mem: 0 }, 0, &params)
        .map_err(|s| anyhow::anyhow!("launch: {s}"))?;
    c.event_record(ev1, 0).map_err(|s| anyhow::anyhow!("record: {s}"))?;
    c.event_synchronize(ev1).map_err(|s| anyhow::anyhow!("kernel: {s}"))?;
    let kernel_ms = c.event_elapsed(ev0, ev1).map_err(|s| anyhow::anyhow!("elapsed: {s}"))?;

    let mut out = vec![0f32; n];
    let td = Instant::now();
    c.memcpy_dtoh(as_bytes_mut(&mut out), dy).map_err(|s| anyhow::anyhow!("copy back: {s}"))?;
    let d2h = td.elapsed();
    let bad = (0..n).filter(|&i| out[i] != alpha * x[i] + y[i]).count();
    if bad != 0 {
        bail!(
            "saxpy result wrong in {bad} of {n} elements (first: y[{}] = {})",
            (0..n).find(|&i| out[i] != alpha * x[i] + y[i]).unwrap_or(0),
            out[0]
        );
    }
    println!(
        "  saxpy on {n} floats: launched remora_saxpy (params {layout:?}), verified all {n} results · kernel {kernel_ms:.3} ms"
    );
    println!(
        "  copies: H2D {:.2} GB/s ({} MiB in 2 copies), D2H {:.2} GB/s",
        2.0 * bytes as f64 / h2d.as_secs_f64() / 1e9,
        (2 * bytes) >> 20,
        bytes as f64 / d2h.as_secs_f64() / 1e9
    );

    let mut pings = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        c.ping().map_err(|s| anyhow::anyhow!("ping: {s}"))?;
        pings.push(t.elapsed());
    }
    let mut small = Vec::with_capacity(1000);
    let mut four = [0u8; 4];
    for _ in 0..1000 {
        let t = Instant::now();
        c.memcpy_dtoh(&mut four, dy).map_err(|s| anyhow::anyhow!("4 B copy: {s}"))?;
        small.push(t.elapsed());
    }
    println!(
        "  latency p50: empty round trip {:.1} µs · 4 B D2H copy {:.1} µs",
        p50(pings).as_secs_f64() * 1e6,
        p50(small).as_secs_f64() * 1e6
    );

    for ev in [ev0, ev1] {
        c.event_destroy(ev).map_err(|s| anyhow::anyhow!("event destroy: {s}"))?;
    }
    c.module_unload(module).map_err(|s| anyhow::anyhow!("unload: {s}"))?;
    c.mem_free(dx).map_err(|s| anyhow::anyhow!("free: {s}"))?;
    c.mem_free(dy).map_err(|s| anyhow::anyhow!("free: {s}"))?;
    c.close().map_err(|s| anyhow::anyhow!("close: {s}"))?;
    println!("  OK");
    Ok(())
}

fn as_bytes(v: &[f32]) -> &[u8] {
    zerocopy::IntoBytes::as_bytes(v)
}

fn as_bytes_mut(v: &mut [f32]) -> &mut [u8] {
    zerocopy::IntoBytes::as_mut_bytes(v)
}
