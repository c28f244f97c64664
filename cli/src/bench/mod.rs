//! `remora bench`: one CUDA program (`benches/cuda/remora_bench.cu`), built once, run natively
//! (when this machine has a GPU and NVIDIA's `libcudart.so.13`) and through remora over each
//! transport; plus each transport's bare floor with no CUDA. Prints a table; optionally writes
//! CSV and an SVG chart. docs/BENCHMARKS.md describes the rows and the method.
//!
//! Pieces: [`program`] finds nvcc, builds and runs the program; [`output`] parses what it
//! prints; [`server`] starts a server when none is given; [`floor`] measures the transports;
//! [`report`] builds and renders the comparison.

mod floor;
mod output;
mod program;
mod report;
mod server;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use output::{Outcome, Row, Unit};
use report::{Column, State};

/// Arguments of `remora bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Server to measure (tcp://host:port, shm://name, rdma://host:port); repeat for several. Without it, bench
    /// starts its own (`remora serve`, --backend) on a free loopback port and a fresh shm name.
    #[arg(long = "server")]
    servers: Vec<String>,
    /// Token for the servers.
    #[arg(long, env = "REMORA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Transports to measure: tcp, shm, rdma or all (rdma included where this machine has a
    /// usable RDMA device with an IPv4 address).
    #[arg(long, value_enum, default_value_t = Which::All)]
    transport: Which,
    /// Write the table as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write an SVG bar chart of remote/native ratios to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Fewer iterations, copies up to 16 MiB (CI).
    #[arg(long)]
    quick: bool,
    /// Run the program this many times per column, native and remote interleaved, and report
    /// each row's median p50 with the range of the runs' p50s (for a machine whose speed
    /// drifts between runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// A remora_bench program already built (default: build benches/cuda/remora_bench.cu with
    /// nvcc: $NVCC, nvcc on PATH, /usr/local/cuda/bin/nvcc, or NVIDIA's pip wheels).
    #[arg(long)]
    program: Option<PathBuf>,
    /// remora's libcudart.so.13, or a folder holding it (default: REMORA_LIB, else next to this
    /// executable).
    #[arg(long)]
    lib: Option<PathBuf>,
    /// Folder with NVIDIA's libcudart.so.13 for the native run (default: beside nvcc,
    /// /usr/local/cuda/lib64, the system's library folders).
    #[arg(long)]
    cuda_lib: Option<PathBuf>,
    /// Backend of the server bench starts itself: auto, cuda, emulated.
    #[arg(long, default_value = "auto")]
    backend: String,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Tcp,
    Shm,
    Rdma,
    All,
}

impl Which {
    fn transports(self) -> Vec<Transport> {
        match self {
            Which::Tcp => vec![Transport::Tcp],
            Which::Shm => vec![Transport::Shm],
            Which::Rdma => vec![Transport::Rdma],
            Which::All if server::rdma_ip().is_some() => vec![Transport::Tcp, Transport::Shm, Transport::Rdma],
            Which::All => vec![Transport::Tcp, Transport::Shm],
        }
    }
}

/// A transport remora has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Transport {
    Tcp,
    Shm,
    Rdma,
}

impl Transport {
    fn of(url: &str) -> Option<Transport> {
        match url.split_once("://")?.0 {
            "tcp" => Some(Transport::Tcp),
            "shm" => Some(Transport::Shm),
            "rdma" => Some(Transport::Rdma),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Shm => "shm",
            Transport::Rdma => "rdma",
        })
    }
}

/// Why kernel rows are skipped on the emulated backend.
const EMULATED: &str = "emulated backend (no GPU): it runs no nvcc-built kernels";

/// How many iterations remora's own measurements take.
struct Iters {
    ping: usize,
    rtt: usize,
    streams: usize,
}

/// A scratch folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!("remora-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn column(label: &str, about: String, state: State) -> Column {
    Column { label: label.into(), about, state, extra: Vec::new(), floor_us: None, floor_gbps: None }
}

fn device_of(state: &State) -> String {
    match state {
        State::Ran(o) | State::Failed { partial: Some(o), .. } => {
            let dev = o.info("device").unwrap_or("?");
            match o.info("driver_version") {
                Some(v) => format!("device {dev}, driver {v}"),
                None => format!("device {dev}"),
            }
        }
        _ => "no device".into(),
    }
}

/// The native run, when this machine has a GPU and NVIDIA's library.
fn native_column(a: &Args, program: &Path, args: &[String], nvcc: Option<&Path>, remora_lib: &Path) -> Column {
    let no_gpu = |why: String| column("native", format!("not run: {why}"), State::NotRun("n/a (no GPU)".into()));
    match remora_server::backend::cuda_available() {
        Ok(n) if n > 0 => {}
        Ok(_) => return no_gpu("the CUDA driver sees no GPU".into()),
        Err(why) => return no_gpu(why),
    }
    let dir = match program::nvidia_cudart_dir(a.cuda_lib.as_deref(), nvcc, remora_lib) {
        Ok(d) => d,
        Err(why) => return column("native", format!("not run: {why}"), State::NotRun(format!("n/a ({why})"))),
    };
    eprintln!("remora bench: native run (NVIDIA libcudart.so.13 from {})", dir.display());
    let mut cmd = Command::new(program);
    cmd.args(args).env("LD_LIBRARY_PATH", program::ld_library_path(&dir)).env_remove("REMORA_SERVER");
    let state = program::check_library(program::run("native", cmd), remora_lib, false);
    column("native", format!("NVIDIA libcudart.so.13 from {}, {}", dir.display(), device_of(&state)), state)
}

/// Where remora runs: one server URL.
struct Target<'a> {
    label: String,
    url: &'a str,
    transport: Transport,
}

/// remora over one server: the server's Ping round trip, then the program.
fn remote_column(
    a: &Args,
    t: &Target<'_>,
    own: Option<&mut server::OwnServer>,
    program: &Path,
    args: &[String],
    (remora_lib, remora_dir): (&Path, &Path),
    iters: &Iters,
) -> Column {
    eprintln!("remora bench: {} run over {}", t.label, t.url);
    let patience = Duration::from_secs(120);
    let token = a.token.clone().or_else(|| own.as_ref().and_then(|s| s.token.clone()));
    let client = match server::connect(t.url, token.as_deref(), own, patience) {
        Ok(c) => c,
        Err(e) => return column(&t.label, t.url.to_string(), State::Failed { why: format!("{e:#}"), partial: None }),
    };
    let backend = client.welcome().backend_name().to_string();
    let ping = floor::server_ping(&client, iters.ping);
    let _ = client.close();
    drop(client);
    let mut args = args.to_vec();
    if backend == "emulated" {
        args.extend(["--skip-kernels".to_string(), EMULATED.to_string()]);
    }
    let mut cmd = Command::new(program);
    cmd.args(&args).env("LD_LIBRARY_PATH", program::ld_library_path(remora_dir)).env("REMORA_SERVER", t.url);
    if let Some(tok) = &token {
        cmd.env("REMORA_TOKEN", tok);
    }
    let state = program::check_library(program::run(&t.label, cmd), remora_lib, true);
    let mut c = column(&t.label, format!("remora over {}, backend {backend}, {}", t.url, device_of(&state)), state);
    let outcome = match ping {
        Ok(s) => Outcome::Measured(s),
        Err(e) => {
            let why = format!("{e:#}");
            if let State::Ran(o) = &c.state {
                c.state = State::Failed { why: format!("server ping: {why}"), partial: Some(o.clone()) };
            }
            Outcome::Skipped(format!("failed: {why}"))
        }
    };
    c.extra.push(Row { name: "server_ping".into(), unit: Unit::Micros, outcome });
    c
}

/// One column's runs as one: rows merged (median p50 and p99, the p50s' range); the first run
/// that failed or did not run stands for the column, so its reason is shown.
fn merge_columns(mut runs: Vec<Column>) -> Column {
    if runs.len() == 1 {
        return runs.remove(0);
    }
    if let Some(i) = runs.iter().position(|c| !matches!(c.state, State::Ran(_))) {
        let mut c = runs.swap_remove(i);
        c.about = format!("{} (the run that failed, of {})", c.about, runs.len() + 1);
        return c;
    }
    let outputs: Vec<output::Output> = runs
        .iter()
        .filter_map(|c| match &c.state {
            State::Ran(o) => Some(o.clone()),
            _ => None,
        })
        .collect();
    let extras: Vec<&[Row]> = runs.iter().map(|c| &c.extra[..]).collect();
    let extra = output::merge_rows(&extras);
    let n = runs.len();
    let first = runs.swap_remove(0);
    Column { about: format!("{} ({n} runs)", first.about), state: State::Ran(output::merge(&outputs)), extra, ..first }
}

pub(crate) fn run(a: Args) -> anyhow::Result<()> {
    let transports = a.transport.transports();
    let iters = if a.quick {
        Iters { ping: 200, rtt: 2000, streams: 2 }
    } else {
        Iters { ping: 2000, rtt: 20_000, streams: 5 }
    };
    let mut targets: Vec<(Transport, String)> = Vec::new();
    for url in &a.servers {
        let t = Transport::of(url)
            .with_context(|| format!("--server {url}: expected tcp://host:port, shm://name or rdma://host:port"))?;
        if transports.contains(&t) {
            targets.push((t, url.clone()));
        } else {
            eprintln!("remora bench: leaving out {url} (--transport {})", a.transport_name());
        }
    }
    if !a.servers.is_empty() && targets.is_empty() {
        bail!("no --server uses the transports asked for (--transport {})", a.transport_name());
    }
    let tmp = TempDir::create()?;

    let nvcc = program::find_nvcc();
    let program = match &a.program {
        Some(p) => p.canonicalize().with_context(|| format!("--program {}", p.display()))?,
        None => {
            let nvcc = nvcc.as_ref().map_err(|why| anyhow::anyhow!("{why}; set NVCC or pass --program PATH"))?;
            eprintln!("remora bench: building remora_bench with {}", nvcc.display());
            program::build(nvcc, &tmp.0)?
        }
    };
    let remora_lib = program::remora_library(a.lib.as_deref())?;
    let remora_dir = program::library_dir(&remora_lib, &tmp.0)?;
    let args: Vec<String> = if a.quick { vec!["--quick".into()] } else { Vec::new() };

    let mut natives = vec![native_column(&a, &program, &args, nvcc.as_deref().ok(), &remora_lib)];
    if let State::NotRun(why) = &natives[0].state {
        eprintln!("remora bench: native: {why} ({})", natives[0].about);
    }

    let mut own = None;
    if targets.is_empty() {
        eprintln!("remora bench: starting a server (remora serve --backend {})", a.backend);
        let s = server::OwnServer::start(&transports, &a.backend, &tmp.0)?;
        targets.clone_from(&s.urls);
        own = Some(s);
    }
    let targets: Vec<Target<'_>> = targets
        .iter()
        .map(|(t, url)| {
            let shared = targets.iter().filter(|(u, _)| u == t).count() > 1;
            Target { label: if shared { url.clone() } else { t.to_string() }, url, transport: *t }
        })
        .collect();
    // Run by run: native (after the first run) and every target, so a drift of the machine's
    // speed touches every column alike.
    let mut runs: Vec<Vec<Column>> = vec![Vec::new(); targets.len()];
    for run in 0..a.runs {
        if run > 0 {
            eprintln!("remora bench: run {} of {}", run + 1, a.runs);
            if !matches!(natives[0].state, State::NotRun(_)) {
                natives.push(native_column(&a, &program, &args, nvcc.as_deref().ok(), &remora_lib));
            }
        }
        for (t, columns) in targets.iter().zip(&mut runs) {
            columns.push(remote_column(&a, t, own.as_mut(), &program, &args, (&remora_lib, &remora_dir), &iters));
        }
    }
    let native = merge_columns(natives);
    let mut remotes: Vec<Column> = runs.into_iter().map(merge_columns).collect();

    let mut failures: Vec<String> = Vec::new();
    let mut kinds: Vec<Transport> = targets.iter().map(|t| t.transport).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        eprintln!("remora bench: {k} floor (64 B round trip, 256 MiB stream; no CUDA)");
        let floor = floor::measure(k, iters.rtt, iters.streams);
        if let Err(e) = &floor {
            failures.push(format!("{k} floor: {e:#}"));
        }
        for (c, t) in remotes.iter_mut().zip(&targets) {
            if t.transport != k {
                continue;
            }
            let (rtt, stream) = match &floor {
                Ok(f) => {
                    c.floor_us = Some(f.rtt.p50);
                    c.floor_gbps = Some(f.stream.p50);
                    (Outcome::Measured(f.rtt), Outcome::Measured(f.stream))
                }
                Err(e) => (Outcome::Skipped(format!("failed: {e:#}")), Outcome::Skipped(format!("failed: {e:#}"))),
            };
            c.extra.insert(0, Row { name: "floor_rtt_64B".into(), unit: Unit::Micros, outcome: rtt });
            c.extra.insert(1, Row { name: "floor_stream_256MiB".into(), unit: Unit::GigabytesPerSec, outcome: stream });
        }
    }
    if let Some(s) = own.take() {
        if remotes.iter().any(|c| matches!(c.state, State::Failed { .. })) {
            eprintln!("remora bench: the end of the server's log:\n{}", s.log_tail());
        }
        drop(s);
    }

    let table = report::build(&native, &remotes);
    print!("{}", report::render_text(&table));
    if let Some(p) = &a.csv {
        std::fs::write(p, report::render_csv(&table)).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("remora bench: wrote {}", p.display());
    }
    if let Some(p) = &a.plot {
        std::fs::write(p, report::render_svg(&table)).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("remora bench: wrote {}", p.display());
    }
    for c in std::iter::once(&native).chain(&remotes) {
        if let State::Failed { why, .. } = &c.state {
            failures.push(format!("{}: {why}", c.label));
        }
    }
    if !failures.is_empty() {
        bail!("{} part(s) of the benchmark failed:\n  {}", failures.len(), failures.join("\n  "));
    }
    Ok(())
}

impl Args {
    fn transport_name(&self) -> &'static str {
        match self.transport {
            Which::Tcp => "tcp",
            Which::Shm => "shm",
            Which::Rdma => "rdma",
            Which::All => "all",
        }
    }
}
