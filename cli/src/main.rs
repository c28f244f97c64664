//! `remora`: serve GPUs to remote CUDA programs, try it, check a machine, measure it.

mod bench;
mod demo;
mod doctor;
mod run;
mod serve;
mod stats;

use clap::{Parser, Subcommand};

/// remora — run CUDA programs on GPUs in other machines.
#[derive(Debug, Parser)]
#[command(name = "remora", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve this machine's GPUs (or the emulated device) to remote clients.
    Serve(serve::Args),
    /// Run a short workload against a server (starts its own when --server is not given).
    Demo(demo::Args),
    /// Check this machine: GPUs, driver, RDMA devices, memlock limit, transports; and a server.
    Doctor(doctor::Args),
    /// Live statistics of a running server: sessions, allocations, operations and latencies.
    Stats(stats::Args),
    /// Run an unmodified CUDA program (built with `nvcc -cudart shared`) on a remote GPU.
    Run(run::Args),
    /// Measure: one CUDA program natively and through remora over each transport, and each
    /// transport's floor; a table, optionally CSV and an SVG chart (docs/BENCHMARKS.md).
    Bench(bench::Args),
    /// Print the two variables that put remora in front of programs started by hand.
    Env(run::EnvArgs),
    /// Internal: a session worker process, started by `remora serve`.
    #[command(hide = true)]
    Worker,
}

fn init_logging(default: &str) {
    let filter =
        std::env::var("REMORA_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Worker => {
            init_logging("info");
            remora_server::worker::worker_main()
        }
        Command::Serve(a) => {
            init_logging("info");
            report(serve::run(a))
        }
        Command::Demo(a) => {
            init_logging("warn");
            report(demo::run(a))
        }
        Command::Doctor(a) => {
            init_logging("warn");
            report(doctor::run(a))
        }
        Command::Stats(a) => {
            init_logging("warn");
            report(stats::run(a))
        }
        Command::Bench(a) => {
            init_logging("warn");
            report(bench::run(a))
        }
        Command::Run(a) => report(run::run(a)),
        Command::Env(a) => report(run::env(a)),
    };
    std::process::exit(code);
}

fn report(r: anyhow::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("remora: error: {e:#}");
            1
        }
    }
}

/// How this binary starts a worker process.
pub(crate) fn worker_command() -> anyhow::Result<(std::path::PathBuf, Vec<String>)> {
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find my own executable: {e}"))?;
    Ok((exe, vec!["worker".to_string()]))
}
