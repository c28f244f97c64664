//! `remora stats`: a running server's live statistics.

use remora_server::report::{self, Report};

/// Arguments of `remora stats`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server (tcp://host:port or shm://name, as clients name it; several, comma-separated,
    /// are tried in order).
    #[arg(long, env = "REMORA_SERVER", default_value = "tcp://127.0.0.1:7070")]
    server: String,
    /// Token for the server (required when it has one).
    #[arg(long, env = "REMORA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: Args) -> anyhow::Result<()> {
    let (url, r) = fetch_first(&a.server, a.token.as_deref())?;
    if a.json {
        println!("{}", r.to_json()?);
    } else {
        println!("server {url}");
        print!("{}", r.table());
    }
    Ok(())
}

/// The first server of the comma-separated list that answers.
fn fetch_first<'a>(servers: &'a str, token: Option<&str>) -> anyhow::Result<(&'a str, Report)> {
    let mut last = None;
    for url in servers.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match report::fetch(url, token) {
            Ok(r) => return Ok((url, r)),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => anyhow::bail!("no server given"),
    }
}
