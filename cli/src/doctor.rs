//! `remora doctor`: what this machine offers, and whether a server answers.

use std::time::{Duration, Instant};

/// Arguments of `remora doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also check this server: reachability, handshake, versions, devices, round-trip time.
    #[arg(long, env = "REMORA_SERVER")]
    server: Option<String>,
    /// Token for the server.
    #[arg(long, env = "REMORA_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn line(ok: bool, what: &str, detail: &str) {
    println!("  [{}] {what:<22} {detail}", if ok { " ok " } else { "warn" });
}

pub(crate) fn run(a: Args) -> anyhow::Result<()> {
    println!("remora {} — protocol v{}", env!("CARGO_PKG_VERSION"), remora_wire::PROTOCOL_VERSION);
    println!("this machine:");
    match remora_server::backend::cuda_available() {
        Ok(n) => line(true, "CUDA driver", &format!("{n} GPU(s); `remora serve` uses the cuda backend")),
        Err(why) => line(false, "CUDA driver", &format!("{why}; `remora serve` falls back to the EMULATED backend")),
    }
    let rdma = remora_transport::verbs::available();
    match &rdma {
        Ok(devs) => {
            let list: Vec<String> =
                devs.iter().map(|d| format!("{} (port 1 {}, {})", d.name, d.port_state, d.link_layer)).collect();
            line(true, "RDMA devices", &list.join(", "));
            let addrs: Vec<String> =
                remora_transport::verbs::ipv4_addresses().iter().map(|(d, a)| format!("{a} on {d}")).collect();
            line(
                !addrs.is_empty(),
                "RDMA IPv4 addresses",
                &if addrs.is_empty() {
                    "none: rdma_cm needs an IP address on the device's netdev".into()
                } else {
                    addrs.join(", ")
                },
            );
        }
        Err(why) => line(false, "RDMA devices", why),
    }
    let memlock = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Max locked memory"))
            .map(|l| l.split_whitespace().skip(3).take(2).collect::<Vec<_>>().join(" "))
    });
    match memlock {
        Some(m) if m.starts_with("unlimited") => line(true, "memlock limit", "unlimited"),
        Some(m) => line(
            false,
            "memlock limit",
            &format!("{m} (soft hard, bytes); RDMA registration needs `ulimit -l unlimited`"),
        ),
        None => line(false, "memlock limit", "unknown"),
    }
    line(true, "transport tcp://", "available");
    let shm_ok = std::fs::metadata("/dev/shm").map(|m| m.is_dir()).unwrap_or(false);
    line(shm_ok, "transport shm://", if shm_ok { "available (/dev/shm)" } else { "/dev/shm missing" });
    match &rdma {
        Ok(_) => line(
            true,
            "transport rdma://",
            "available: messages as SENDs, pinned memory by RDMA READ/WRITE through pinned staging in the \
             worker (GPUDirect RDMA into device memory is not used)",
        ),
        Err(_) => line(false, "transport rdma://", "no usable RDMA device here (see above)"),
    }

    let Some(url) = a.server else {
        println!("(pass --server URL to check a server)");
        return Ok(());
    };
    println!("server {url}:");
    let t = Instant::now();
    let c = match remora_interpose::client::connect_first(&url, a.token.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            line(false, "handshake", &e);
            anyhow::bail!("server {url} is not usable");
        }
    };
    line(true, "transport", &c.endpoint().to_string());
    let w = c.welcome();
    line(
        true,
        "handshake",
        &format!(
            "protocol v{} in {:.1} ms, session {}, worker pid {}",
            remora_wire::PROTOCOL_VERSION,
            t.elapsed().as_secs_f64() * 1e3,
            w.session_id.get(),
            w.worker_pid.get()
        ),
    );
    line(
        w.backend_name() != "emulated",
        "backend",
        &format!(
            "{}{}",
            w.backend_name(),
            if w.backend_name() == "emulated" { " (test double, not a GPU)" } else { "" }
        ),
    );
    let drv = c.driver_version().map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)).unwrap_or_else(|s| s.to_string());
    line(true, "driver version", &drv);
    for d in 0..c.device_count().unwrap_or(0) {
        if let Ok(info) = c.device_info(d) {
            line(
                true,
                &format!("device {d}"),
                &format!(
                    "{} sm_{}{} {:.1} GiB",
                    info.name_str(),
                    info.attribute(75),
                    info.attribute(76),
                    info.total_mem.get() as f64 / (1u64 << 30) as f64
                ),
            );
        }
    }
    let mut v: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let _ = c.ping();
            t.elapsed()
        })
        .collect();
    v.sort();
    line(true, "round trip p50", &format!("{:.1} µs", v[v.len() / 2].as_secs_f64() * 1e6));
    let _ = c.close();
    Ok(())
}
