//! `remora run [--server URL] -- PROGRAM ARGS...` and `remora env`: put remora's
//! `libcudart.so.13` in front of a program.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Arguments of `remora run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Server (tcp://host:port, shm://name; several, comma-separated, are tried in order).
    /// Default: REMORA_SERVER, else shm://remora then tcp://127.0.0.1:7070.
    #[arg(long)]
    server: Option<String>,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// Arguments of `remora env`.
#[derive(Debug, clap::Args)]
pub(crate) struct EnvArgs {
    /// Server to name in REMORA_SERVER.
    #[arg(long)]
    server: Option<String>,
}

/// The cdylib cargo built (`libcudart.so`): `REMORA_LIB`, else next to this executable.
pub(crate) fn built_library() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("REMORA_LIB") {
        let p = PathBuf::from(p);
        let f = if p.is_dir() { p.join("libcudart.so.13") } else { p };
        if f.exists() {
            return Ok(f);
        }
        bail!("REMORA_LIB={} does not hold remora's libcudart.so.13", f.display());
    }
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let dir = exe.parent().context("executable has no folder")?;
    for candidate in [dir.join("libcudart.so.13"), dir.join("libcudart.so"), dir.join("../lib/libcudart.so.13")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "remora's libcudart.so.13 was not found next to {} (build it with `cargo build -p remora-cudart`, or set REMORA_LIB)",
        exe.display()
    )
}

/// A folder holding `libcudart.so.13` (a link to the built library), for `LD_LIBRARY_PATH`.
pub(crate) fn library_dir() -> anyhow::Result<PathBuf> {
    let lib = built_library()?.canonicalize().context("resolving the library path")?;
    if lib.file_name().is_some_and(|n| n == "libcudart.so.13") {
        return Ok(lib.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("remora-{uid}")).join("lib");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = dir.join("libcudart.so.13");
    if std::fs::read_link(&link).ok().as_deref() != Some(lib.as_path()) {
        let tmp = dir.join(format!(".libcudart.so.13.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&lib, &tmp).with_context(|| format!("linking {}", tmp.display()))?;
        std::fs::rename(&tmp, &link).with_context(|| format!("placing {}", link.display()))?;
    }
    Ok(dir)
}

fn ld_library_path(dir: &Path) -> String {
    match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", dir.display()),
        _ => dir.display().to_string(),
    }
}

pub(crate) fn run(a: Args) -> anyhow::Result<()> {
    let dir = library_dir()?;
    let (program, args) = a.command.split_first().context("no program given")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env("LD_LIBRARY_PATH", ld_library_path(&dir));
    if let Some(s) = a.server {
        cmd.env("REMORA_SERVER", s);
    }
    let err = cmd.exec();
    bail!("cannot run {program}: {err}")
}

pub(crate) fn env(a: EnvArgs) -> anyhow::Result<()> {
    let dir = library_dir()?;
    println!("export LD_LIBRARY_PATH={}", ld_library_path(&dir));
    let server = a
        .server
        .or_else(|| std::env::var("REMORA_SERVER").ok())
        .unwrap_or_else(|| "shm://remora,tcp://127.0.0.1:7070".into());
    println!("export REMORA_SERVER={server}");
    Ok(())
}
