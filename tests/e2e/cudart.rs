//! remora's `libcudart.so.13` in front of a real program: a C program linked against the
//! library's versioned symbols (as nvcc-built programs are), run against a supervisor.
//! Needs gcc (present wherever Rust links) and the cdylib, built by `cargo build --workspace`.

use std::path::PathBuf;
use std::process::Command;

use remora_tests::{start_server, urls};

use crate::helper;

/// The built `libcudart.so` (cargo's name for the cdylib), next to this test's `deps/` folder.
fn library() -> PathBuf {
    if let Ok(p) = std::env::var("REMORA_LIB") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let lib = profile_dir.join("libcudart.so");
    assert!(lib.exists(), "{} is missing: run `cargo build --workspace` first (scripts/test does)", lib.display());
    lib
}

/// A folder of one test's own (tests run in parallel), removed when dropped.
struct TestDir(PathBuf);

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A folder with `libcudart.so.13` → the built library, and the test program linked against it.
fn build_program(name: &str, test: &str) -> (TestDir, PathBuf) {
    let lib = library();
    let dir = std::env::temp_dir().join(format!("remora-cdylib-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("libcudart.so.13");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link).unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("c").join(format!("{name}.c"));
    let exe = dir.join(name);
    let out = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg(format!("-L{}", dir.display()))
        .arg("-l:libcudart.so.13")
        .output()
        .expect("gcc runs");
    assert!(out.status.success(), "gcc failed: {}", String::from_utf8_lossy(&out.stderr));
    (TestDir(dir), exe)
}

#[test]
fn exports_carry_nvidia_versions_and_soname() {
    let lib = library();
    let out = Command::new("readelf").args(["-W", "--dyn-syms", "-d"]).arg(&lib).output().expect("readelf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Library soname: [libcudart.so.13]"), "no SONAME libcudart.so.13");
    for sym in ["cudaMalloc", "cudaMemcpy", "__cudaRegisterFatBinary", "__cudaLaunchKernel", "cudaGetErrorString"] {
        assert!(
            text.contains(&format!("{sym}@@libcudart.so.13")),
            "{sym} is not exported with version libcudart.so.13"
        );
    }
}

/// Run a test program through the library against `url`; it must succeed. (stdout, stderr).
fn run_ok(exe: &std::path::Path, dir: &TestDir, url: &str, env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(exe)
        .env("LD_LIBRARY_PATH", &dir.0)
        .env("REMORA_SERVER", url)
        .envs(env.iter().copied())
        .output()
        .expect("program runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{url}: program failed\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Every line of `want` appears, whole, in `stdout`.
fn expect_lines(url: &str, stdout: &str, want: &[&str]) {
    for line in want {
        assert!(stdout.lines().any(|l| l == *line), "{url}: missing line {line:?} in\n{stdout}");
    }
}

#[test]
fn c_program_runs_through_the_library() {
    let (dir, exe) = build_program("runtime_basics", "through-library");
    let sup = start_server(&helper(), "cdylib", |_| {});
    for url in urls(&sup) {
        // Four copying threads whatever this machine's cores, so the bounced copies' helpers run.
        let env = [("REMORA_LOG", "cudart=debug"), ("REMORA_COPY_THREADS", "4")];
        let (stdout, stderr) = run_ok(&exe, &dir, &url, &env);
        expect_lines(
            &url,
            &stdout,
            &[
                "devices>0: yes",
                "runtime 13000",
                "round trip equal: yes",
                "large round trip equal: yes",
                "default-kind copy equal: yes",
                "memset: ab bc",
                "async equal: yes, elapsed>=0: yes",
                "cudaSetDevice(99) -> cudaErrorInvalidDevice",
                "cudaGetLastError() -> cudaSuccess",
                "cudaMemcpy(back, d, N, 7) -> cudaErrorInvalidMemcpyDirection",
                "cudaMalloc(&huge, (size_t)1 << 50) -> cudaErrorMemoryAllocation",
                "cudaGraphDebugDotPrint(g, \"/dev/null\", 0) -> cudaErrorNotSupported",
                "error string: out of memory",
                "OK",
            ],
        );
        // Over shm, cudaMallocHost memory is shared with the worker (DMA, no copy through the
        // transport); over tcp it cannot be.
        assert_eq!(
            stderr.contains("shared pinned memory:"),
            url.starts_with("shm://"),
            "{url}: shared pinned memory used only on the same host: {stderr}"
        );
        // Large copies to and from pageable memory take the bounce arena on the same host.
        assert_eq!(
            stderr.contains("bounce arena for pageable copies"),
            url.starts_with("shm://"),
            "{url}: bounce arena used only on the same host: {stderr}"
        );
        assert!(
            stderr.contains("cudaGraphDebugDotPrint is not supported"),
            "unsupported calls are named once: {stderr}"
        );
    }
}

#[test]
fn managed_and_mapped_memory_without_kernels() {
    let (dir, exe) = build_program("managed_memory", "managed");
    let sup = start_server(&helper(), "managed", |_| {});
    for url in urls(&sup) {
        let (stdout, _) = run_ok(&exe, &dir, &url, &[]);
        expect_lines(
            &url,
            &stdout,
            &[
                "concurrentManagedAccess: 0",
                "device sees host writes: yes",
                "host sees device memset: yes",
                "device read sees later host write: yes",
                "copy into managed visible: yes",
                "attributes: type 3, host==device: yes",
                "range attributes: read-mostly 1, preferred 0, accessed by 0 -2, last prefetch -1",
                "cudaMemRangeGetAttribute(&mostly, 4, 1, d, 16) -> cudaErrorInvalidValue",
                "cudaMemPrefetchAsync(d, N, dev0, 0, NULL) -> cudaErrorInvalidValue",
                "cudaStreamAttachMemAsync(NULL, m + 8, 0, 1) -> cudaErrorInvalidValue",
                "mapped device pointer is the host pointer: yes",
                "copy from mapped memory: yes",
                "registered memory's device side: yes",
                "device side sees later host write: yes",
                "host sees device write: yes",
                "cudaFree(m) -> cudaErrorInvalidValue",
                "OK",
            ],
        );
    }
}

#[test]
fn unreachable_server_is_no_device_with_one_clear_line() {
    let (dir, exe) = build_program("runtime_basics", "unreachable");
    let out = Command::new(&exe)
        .env("LD_LIBRARY_PATH", &dir.0)
        .env("REMORA_SERVER", "tcp://127.0.0.1:1")
        .output()
        .expect("program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL cudaGetDeviceCount(&n): cudaErrorNoDevice"), "{stdout}");
    assert_eq!(stderr.lines().filter(|l| l.contains("remora: no GPU server reachable")).count(), 1, "{stderr}");
    assert!(stderr.contains("tcp://127.0.0.1:1"), "the line names the URL: {stderr}");
}
