//! The CUDA program `remora_bench`: find nvcc and build it, find the two libraries it runs
//! against (NVIDIA's and remora's `libcudart.so.13`), run it and follow its output.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::output::{self, Line, Output, Unit};
use super::report::{num, State};

/// The program's source, built into this binary so `remora bench` needs no source tree.
pub(crate) const SOURCE: &str = include_str!("../../../benches/cuda/remora_bench.cu");

/// nvcc flags: those of tests/cuda/build.sh (sm_90 code and compute_90 PTX), plus `NVCC_EXTRA`.
/// (`-ldl` for the program's dladdr on a glibc older than 2.34.)
const NVCC_FLAGS: [&str; 8] = [
    "-O2",
    "-cudart",
    "shared",
    "-gencode",
    "arch=compute_90,code=sm_90",
    "-gencode",
    "arch=compute_90,code=compute_90",
    "-ldl",
];

fn is_file(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| m.is_file())
}

/// The nvcc of NVIDIA's pip wheels in a virtual environment, if there is one.
fn venv_nvcc(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut found: Vec<PathBuf> = lib
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/nvidia/cu13/bin/nvcc"))
        .filter(|p| is_file(p))
        .collect();
    found.sort();
    found.pop()
}

/// Where nvcc is looked for, in order: `$NVCC`, `nvcc` on `PATH`, /usr/local/cuda/bin/nvcc,
/// then NVIDIA's pip wheels: `.venv-cuda` (what scripts/nvidia-wheels makes) in the source tree
/// this binary was built from and in the current folder, `$NVCC_VENV`, /opt/nvcc-venv.
/// Returns the first that exists, or a description of where it looked.
pub(crate) fn find_nvcc() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("NVCC").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_file(&p) { Ok(p) } else { Err(format!("NVCC={} does not exist", p.display())) };
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nvcc")).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(p) = on_path.into_iter().find(|p| is_file(p)) {
        return Ok(p);
    }
    let toolkit = PathBuf::from("/usr/local/cuda/bin/nvcc");
    if is_file(&toolkit) {
        return Ok(toolkit);
    }
    let mut venvs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-cuda"), PathBuf::from(".venv-cuda")];
    if let Some(v) = std::env::var_os("NVCC_VENV") {
        venvs.push(PathBuf::from(v));
    }
    venvs.push(PathBuf::from("/opt/nvcc-venv"));
    if let Some(p) = venvs.iter().find_map(|v| venv_nvcc(v)) {
        return Ok(p);
    }
    Err(format!(
        "no nvcc: NVCC unset, none on PATH, no /usr/local/cuda/bin/nvcc, no pip wheels in {}",
        venvs.iter().map(|v| v.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

/// Build the program with `nvcc` into `dir`; returns its path.
pub(crate) fn build(nvcc: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let src = dir.join("remora_bench.cu");
    std::fs::write(&src, SOURCE).with_context(|| format!("writing {}", src.display()))?;
    let exe = dir.join("remora_bench");
    let mut cmd = Command::new(nvcc);
    cmd.args(NVCC_FLAGS);
    if let Ok(extra) = std::env::var("NVCC_EXTRA") {
        cmd.args(extra.split_whitespace());
    }
    // NVIDIA's pip wheels have libcudart.so.13 but not the link-time name libcudart.so.
    let cuda = nvcc.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let wheel_lib = cuda.join("lib");
    if wheel_lib.join("libcudart.so.13").exists()
        && !wheel_lib.join("libcudart.so").exists()
        && !cuda.join("lib64/libcudart.so").exists()
    {
        let link_dir = dir.join("link");
        std::fs::create_dir_all(&link_dir).with_context(|| format!("creating {}", link_dir.display()))?;
        let link = link_dir.join("libcudart.so");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(wheel_lib.join("libcudart.so.13"), &link)
            .with_context(|| format!("linking {}", link.display()))?;
        cmd.arg(format!("-L{}", wheel_lib.display())).arg(format!("-L{}", link_dir.display()));
    }
    cmd.arg("-o").arg(&exe).arg(&src);
    let out = cmd.output().with_context(|| format!("running {}", nvcc.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed to build remora_bench ({}):\n{}{}",
            nvcc.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(exe)
}

/// The folder holding NVIDIA's `libcudart.so.13` for the native run: `explicit` (a folder or
/// the file), else the toolkit's beside nvcc, /usr/local/cuda/lib64, the usual system folders.
/// Never remora's own library (`remora_lib`).
pub(crate) fn nvidia_cudart_dir(
    explicit: Option<&Path>,
    nvcc: Option<&Path>,
    remora_lib: &Path,
) -> Result<PathBuf, String> {
    let mine = remora_lib.canonicalize().ok();
    let holds_nvidia = |dir: &Path| {
        let f = dir.join("libcudart.so.13");
        f.exists() && f.canonicalize().ok() != mine
    };
    if let Some(p) = explicit {
        let dir = if p.is_dir() { p.to_path_buf() } else { p.parent().map(Path::to_path_buf).unwrap_or_default() };
        return if holds_nvidia(&dir) {
            Ok(dir)
        } else {
            Err(format!("--cuda-lib {}: no NVIDIA libcudart.so.13 there", p.display()))
        };
    }
    let mut dirs = Vec::new();
    if let Some(cuda) = nvcc.and_then(Path::parent).and_then(Path::parent) {
        dirs.extend([cuda.join("lib64"), cuda.join("lib"), cuda.join("targets/x86_64-linux/lib")]);
    }
    dirs.extend(
        [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
        ]
        .map(PathBuf::from),
    );
    dirs.iter().find(|d| holds_nvidia(d)).cloned().ok_or_else(|| {
        format!(
            "NVIDIA's libcudart.so.13 not found in {} (pass --cuda-lib DIR)",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// remora's `libcudart.so.13`: `explicit` (the file, or a folder holding `libcudart.so.13` or
/// cargo's `libcudart.so`), else where `remora run` finds it.
pub(crate) fn remora_library(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let Some(p) = explicit else { return crate::run::built_library() };
    let file = if p.is_dir() {
        [p.join("libcudart.so.13"), p.join("libcudart.so")].into_iter().find(|f| f.exists())
    } else {
        Some(p.to_path_buf()).filter(|f| f.exists())
    };
    file.with_context(|| format!("--lib {}: remora's libcudart.so.13 is not there", p.display()))
}

/// A folder in `dir` holding `libcudart.so.13` → `lib`, for `LD_LIBRARY_PATH`.
pub(crate) fn library_dir(lib: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let lib = lib.canonicalize().with_context(|| format!("resolving {}", lib.display()))?;
    let d = dir.join("remora-lib");
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let link = d.join("libcudart.so.13");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link).with_context(|| format!("linking {}", link.display()))?;
    Ok(d)
}

/// `dir` in front of the current `LD_LIBRARY_PATH`.
pub(crate) fn ld_library_path(dir: &Path) -> OsString {
    let mut v = dir.as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

/// One line of progress on stderr for an output line of the program.
fn progress(label: &str, line: &str) {
    match output::parse_line(line) {
        Ok(Line::Row(r)) => match r.outcome {
            output::Outcome::Measured(s) => {
                let what = if r.unit == Unit::Micros { "p50" } else { "p50 rate" };
                eprintln!("  {label}: {:<26} {what} {} {}", r.name, num(s.p50), r.unit);
            }
            output::Outcome::Skipped(why) => eprintln!("  {label}: {:<26} skipped: {why}", r.name),
        },
        Ok(Line::Info(k, v)) if k == "device" => eprintln!("  {label}: device {v}"),
        Ok(Line::Error(e)) => eprintln!("  {label}: error: {e}"),
        _ => {}
    }
}

/// The last `n` non-empty lines of `text`, joined with " | ".
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Judge a finished run from its exit status, stdout and stderr.
pub(crate) fn judge(status: Result<std::process::ExitStatus, String>, stdout: &str, stderr: &str) -> State {
    let parsed = output::parse(stdout);
    let detail = |o: Option<&Output>| {
        o.and_then(|o| o.error.clone()).unwrap_or_else(|| {
            let t = tail(stderr, 5);
            if t.is_empty() {
                "no message".into()
            } else {
                format!("stderr: {t}")
            }
        })
    };
    match (status, parsed) {
        (Err(e), p) => State::Failed { why: e, partial: p.ok() },
        (Ok(st), Err(e)) if st.success() => State::Failed { why: format!("{e} ({})", detail(None)), partial: None },
        (Ok(st), Err(_)) => State::Failed { why: format!("{st}: {}", detail(None)), partial: None },
        (Ok(st), Ok(o)) if !st.success() => {
            State::Failed { why: format!("{st}: {}", detail(Some(&o))), partial: Some(o) }
        }
        (Ok(_), Ok(o)) if !o.complete => {
            State::Failed { why: format!("output ended before `done` ({})", detail(Some(&o))), partial: Some(o) }
        }
        (Ok(_), Ok(o)) => State::Ran(o),
    }
}

/// Whether a run used the right `libcudart.so.13` (its `info cudart` line): remora's library
/// (`remora_lib`) when `through_remora`, any other otherwise. A run on the wrong library (a
/// dangling link, a stray `LD_LIBRARY_PATH`) would give numbers for the wrong column.
pub(crate) fn check_library(state: State, remora_lib: &Path, through_remora: bool) -> State {
    let State::Ran(o) = state else { return state };
    let mine = remora_lib.canonicalize().ok();
    let why = match o.info("cudart") {
        None => "the program did not say which libcudart.so.13 it loaded (no `info cudart` line)".to_string(),
        Some(p) => {
            let is_remora = mine.is_some() && Path::new(p).canonicalize().ok() == mine;
            match (through_remora, is_remora) {
                (true, true) | (false, false) => return State::Ran(o),
                (true, false) => format!("it loaded {p}, not remora's library: the run did not go through remora"),
                (false, true) => format!("it loaded remora's library ({p}) for the native run"),
            }
        }
    };
    State::Failed { why, partial: None }
}

/// Run the program (`cmd`, arguments and environment set) and follow it; `label` prefixes its
/// progress lines. Its stderr is echoed, prefixed, once it ends.
pub(crate) fn run(label: &str, mut cmd: Command) -> State {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return State::Failed { why: format!("cannot start {:?}: {e}", cmd.get_program()), partial: None },
    };
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut text = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            progress(label, &line);
            text.push_str(&line);
            text.push('\n');
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for the program: {e}"));
    let err_text = err_reader.join().unwrap_or_default();
    for l in err_text.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("  {label} (stderr): {l}");
    }
    judge(status, &text, &err_text)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    const OK: &str = "bench remora_bench 1\nresult a us 1 1 1 1\ndone\n";

    #[test]
    fn judges_runs() {
        let ok = || Ok(ExitStatus::from_raw(0));
        let exit1 = || Ok(ExitStatus::from_raw(1 << 8));
        assert!(matches!(judge(ok(), OK, ""), State::Ran(o) if o.rows.len() == 1));
        let cut = "bench remora_bench 1\nresult a us 1 1 1 1\nerror cudaMalloc(...): cudaErrorMemoryAllocation\n";
        match judge(exit1(), cut, "") {
            State::Failed { why, partial: Some(o) } => {
                assert!(why.contains("exit status: 1") && why.contains("cudaErrorMemoryAllocation"), "{why}");
                assert_eq!(o.rows.len(), 1);
            }
            s => panic!("{s:?}"),
        }
        match judge(exit1(), "", "line one\n\nerror while loading shared libraries: libcudart.so.13\n") {
            State::Failed { why, partial: None } => assert!(why.contains("libcudart.so.13"), "{why}"),
            s => panic!("{s:?}"),
        }
        match judge(ok(), "bench remora_bench 1\n", "") {
            State::Failed { why, .. } => assert!(why.contains("before `done`"), "{why}"),
            s => panic!("{s:?}"),
        }
        match judge(ok(), "garbage\n", "") {
            State::Failed { why, partial: None } => assert!(why.contains("header"), "{why}"),
            s => panic!("{s:?}"),
        }
        assert!(matches!(judge(Err("lost".into()), OK, ""), State::Failed { partial: Some(_), .. }));
    }

    #[test]
    fn a_run_on_the_wrong_library_fails() {
        let dir = std::env::temp_dir().join(format!("remora-bench-checklib-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        let remora = dir.join("libcudart.so");
        std::fs::write(&remora, b"remora").unwrap();
        let nvidia = dir.join("nvidia.so.13");
        std::fs::write(&nvidia, b"nvidia").unwrap();
        // What the program reports is the path it was loaded from: a link to remora's library.
        std::os::unix::fs::symlink(&remora, dir.join("lib/libcudart.so.13")).unwrap();
        let ran = |cudart: &Path| {
            let text = format!("bench remora_bench 1\ninfo cudart {}\ndone\n", cudart.display());
            State::Ran(output::parse(&text).unwrap())
        };
        let via_link = dir.join("lib/libcudart.so.13");
        assert!(matches!(check_library(ran(&via_link), &remora, true), State::Ran(_)));
        assert!(matches!(check_library(ran(&nvidia), &remora, false), State::Ran(_)));
        match check_library(ran(&nvidia), &remora, true) {
            State::Failed { why, .. } => assert!(why.contains("did not go through remora"), "{why}"),
            s => panic!("{s:?}"),
        }
        match check_library(ran(&via_link), &remora, false) {
            State::Failed { why, .. } => assert!(why.contains("for the native run"), "{why}"),
            s => panic!("{s:?}"),
        }
        let silent = State::Ran(output::parse("bench remora_bench 1\ndone\n").unwrap());
        assert!(matches!(check_library(silent, &remora, true), State::Failed { .. }));
        let failed = State::NotRun("n/a".into());
        assert_eq!(check_library(failed.clone(), &remora, true), failed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn source_is_the_program_in_the_tree() {
        assert!(SOURCE.contains("bench remora_bench 1"));
        assert!(SOURCE.contains("--skip-kernels"));
    }

    #[test]
    fn explicit_nvidia_library_folder_is_checked() {
        let dir = std::env::temp_dir().join(format!("remora-bench-libtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mine = dir.join("mine.so");
        std::fs::write(&mine, b"remora").unwrap();
        assert!(nvidia_cudart_dir(Some(&dir), None, &mine).is_err(), "no libcudart.so.13 yet");
        std::fs::write(dir.join("libcudart.so.13"), b"nvidia").unwrap();
        assert_eq!(nvidia_cudart_dir(Some(&dir), None, &mine).unwrap(), dir);
        // remora's own library is never taken for NVIDIA's.
        assert!(nvidia_cudart_dir(Some(&dir), None, &dir.join("libcudart.so.13")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
