//! The server `remora bench` starts when given none: `remora serve` as a child process, on a
//! free loopback tcp port and a fresh shm name, stopped (with its idle workers) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use remora_interpose::client::Client;

use super::Transport;

/// A `remora serve` child.
pub(crate) struct OwnServer {
    child: Child,
    log: PathBuf,
    /// Its endpoints, one per transport asked for.
    pub(crate) urls: Vec<(Transport, String)>,
    /// The token it requires (made up when it listens on rdma://, which is not loopback).
    pub(crate) token: Option<String>,
}

/// The IPv4 address of this machine's first RDMA device, where rdma:// can be measured.
pub(crate) fn rdma_ip() -> Option<std::net::Ipv4Addr> {
    remora_transport::verbs::available().ok()?;
    remora_transport::verbs::ipv4_addresses().first().map(|(_, ip)| *ip)
}

/// A tcp port nobody listens on now (the kernel's pick; free again once dropped).
fn free_port_on(ip: std::net::IpAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0)).context("finding a free tcp port")?;
    Ok(l.local_addr().context("finding a free tcp port")?.port())
}

impl OwnServer {
    /// Start `remora serve --backend BACKEND` listening on one endpoint per transport; its
    /// output goes to `dir/serve.log`.
    pub(crate) fn start(transports: &[Transport], backend: &str, dir: &Path) -> anyhow::Result<OwnServer> {
        let mut urls = Vec::new();
        for &t in transports {
            urls.push((
                t,
                match t {
                    Transport::Tcp => format!("tcp://127.0.0.1:{}", free_port_on([127, 0, 0, 1].into())?),
                    Transport::Shm => format!("shm://remora-bench-{}", std::process::id()),
                    Transport::Rdma => {
                        let ip = rdma_ip().context("no RDMA device with an IPv4 address here")?;
                        format!("rdma://{ip}:{}", free_port_on(ip.into())?)
                    }
                },
            ));
        }
        let exe = std::env::current_exe().context("cannot find my own executable")?;
        let log = dir.join("serve.log");
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        let mut cmd = Command::new(&exe);
        cmd.args(["serve", "--backend", backend, "--pool", "2"]);
        for (_, u) in &urls {
            cmd.args(["--listen", u]);
        }
        // A listener off loopback needs a token; make one up for this run.
        let token = urls.iter().any(|(t, _)| *t == Transport::Rdma).then(|| {
            let n = remora_transport::auth::nonce();
            n.iter().map(|b| format!("{b:02x}")).collect::<String>()
        });
        if let Some(t) = &token {
            cmd.env("REMORA_TOKEN", t);
        }
        if std::env::var_os("REMORA_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
            cmd.env("REMORA_LOG", "warn");
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().with_context(|| format!("starting {} serve", exe.display()))?;
        Ok(OwnServer { child, log, urls, token })
    }

    /// The end of the server's log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Fail if the server process has ended.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(st) = self.child.try_wait().context("checking on the server")? {
            bail!("the server it started ended ({st}):\n{}", self.log_tail());
        }
        Ok(())
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // Idle workers exit when their supervisor's control socket closes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect to `url`; with `own`, keep trying (the server is starting) until `patience` passes
/// or the server process ends.
pub(crate) fn connect(
    url: &str,
    token: Option<&str>,
    mut own: Option<&mut OwnServer>,
    patience: Duration,
) -> anyhow::Result<Client> {
    let deadline = Instant::now() + patience;
    loop {
        match Client::connect(url, token) {
            Ok(c) => return Ok(c),
            Err(e) => {
                // The error names the URL and its cause already.
                let Some(s) = own.as_deref_mut() else { bail!("{e}") };
                s.check_alive()?;
                if Instant::now() > deadline {
                    bail!("the server it started did not answer within {patience:?}: {e}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
