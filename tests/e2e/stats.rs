//! `remora stats`: the built binary against a running supervisor, the library call it makes,
//! and its token check. A statistics connection is answered by the supervisor: it is no
//! session and takes no worker.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use remora_interpose::client::Client;
use remora_server::backend::BackendKind;
use remora_server::report;
use remora_tests::{start_server, urls, wait_stats};
use serde_json::Value;

use crate::helper;

/// The built `remora` binary: `REMORA_BIN`, else beside this test binary (a bundle) or one
/// folder up from it (cargo's `target/<profile>/deps/`).
fn remora() -> PathBuf {
    if let Ok(p) = std::env::var("REMORA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let here = exe.parent().unwrap();
    let candidates = [here.join("remora"), here.parent().unwrap().join("remora")];
    let found = candidates.iter().find(|p| p.is_file());
    found
        .unwrap_or_else(|| panic!("{candidates:?} missing: run `cargo build --workspace` first (scripts/test does)"))
        .clone()
}

/// `remora stats --server url [args]`: its stdout.
fn remora_stats(url: &str, args: &[&str]) -> String {
    let out = Command::new(remora())
        .args(["stats", "--server", url])
        .args(args)
        .env_remove("REMORA_TOKEN")
        .output()
        .expect("remora runs");
    assert!(out.status.success(), "remora stats failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn stats_json(url: &str) -> Value {
    let text = remora_stats(url, &["--json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn session(doc: &Value, worker_pid: u32) -> &Value {
    doc["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["worker_pid"] == worker_pid)
        .unwrap_or_else(|| panic!("no session of worker {worker_pid}: {doc:#}"))
}

/// Count of `op` in an `operations` array (0 when absent).
fn op_count(ops: &Value, op: &str) -> u64 {
    ops.as_array().unwrap().iter().find(|o| o["op"] == op).map_or(0, |o| o["count"].as_u64().unwrap())
}

fn op<'a>(ops: &'a Value, op: &str) -> &'a Value {
    ops.as_array().unwrap().iter().find(|o| o["op"] == op).unwrap_or_else(|| panic!("no {op} in {ops:#}"))
}

#[test]
fn stats_cli_counts_sessions_allocations_and_operations() {
    let sup = start_server(&helper(), "stats", |_| {});
    let urls = urls(&sup);
    let (tcp, shm) = (&urls[0], &urls[1]);
    const MIB: u64 = 1 << 20;

    let a = Client::connect(tcp, None).unwrap();
    let b = Client::connect(shm, None).unwrap();
    let mut held = Vec::new();
    for i in 0..3u8 {
        let p = a.mem_alloc(0, MIB).unwrap();
        a.memcpy_htod(p, &vec![i; MIB as usize]).unwrap();
        held.push(p);
    }
    let q = b.mem_alloc(0, 4096).unwrap();
    let mut back = vec![0u8; 4096];
    b.memcpy_dtoh(&mut back, q).unwrap(); // a later round trip: every earlier op is recorded
    let mut back = vec![0u8; 16];
    a.memcpy_dtoh(&mut back, held[2]).unwrap();
    assert_eq!(back, [2u8; 16]);
    let (pa, pb) = (a.welcome().worker_pid.get(), b.welcome().worker_pid.get());
    let (ida, idb) = (a.welcome().session_id.get(), b.welcome().session_id.get());

    // The supervisor learns of a session from its worker a moment after the client does.
    let (st, ok) = wait_stats(&sup, Duration::from_secs(5), |s| s.live_sessions == 2);
    assert!(ok, "{st:?}");
    let doc = stats_json(tcp);
    assert_eq!(doc["format"], report::FORMAT);
    assert_eq!(doc["live_sessions"], 2, "{doc:#}");
    assert_eq!(doc["live_allocations"], 4, "{doc:#}");
    assert_eq!(doc["live_bytes"], 3 * MIB + 4096, "{doc:#}");
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 2);
    let sa = session(&doc, pa);
    assert_eq!((sa["id"].as_u64(), sa["live_allocations"].as_u64()), (Some(ida), Some(3)));
    assert_eq!(sa["live_bytes"], 3 * MIB);
    assert_eq!(sa["bytes_in"], 3 * MIB);
    assert_eq!(sa["bytes_out"], 16);
    assert_eq!(sa["errors"], 0);
    assert!(sa["ops"].as_u64().unwrap() >= 7, "3 allocs, 3 copies in, 1 out: {sa:#}");
    let backend = match remora_tests::test_backend() {
        BackendKind::Cuda => "cuda",
        _ => "emulated",
    };
    assert_eq!(sa["backend"], backend);
    assert!(!sa["devices"].as_array().unwrap().is_empty(), "{sa:#}");
    assert_eq!(op_count(&sa["operations"], "MemAlloc"), 3, "{sa:#}");
    assert_eq!(op_count(&sa["operations"], "MemcpyHtoD"), 3, "{sa:#}");
    let sb = session(&doc, pb);
    assert_eq!((sb["id"].as_u64(), sb["live_allocations"].as_u64()), (Some(idb), Some(1)));
    assert_eq!(sb["live_bytes"], 4096);
    assert_eq!(sb["bytes_out"], 4096);
    assert_eq!(op_count(&sb["operations"], "MemAlloc"), 1, "{sb:#}");
    // Server-wide: the sessions' operations together, with their latencies.
    assert!(op_count(&doc["operations"], "MemAlloc") >= 4, "{doc:#}");
    assert!(op_count(&doc["operations"], "MemcpyDtoH") >= 2, "{doc:#}");
    let alloc = op(&doc["operations"], "MemAlloc");
    let (p50, p99, max) =
        (alloc["p50_ns"].as_u64().unwrap(), alloc["p99_ns"].as_u64().unwrap(), alloc["max_ns"].as_u64().unwrap());
    assert!(0 < p50 && p50 <= p99 && p99 <= max && max < 60_000_000_000, "{alloc:#}");

    // Over shm too, and through the library call the command makes; neither is a session.
    let r = report::fetch(shm, None).unwrap();
    assert_eq!((r.live_sessions, r.live_allocations, r.live_bytes), (2, 4, 3 * MIB + 4096));
    let table = remora_stats(shm, &[]);
    assert!(table.contains("2 live sessions · 4 allocations (3.0 MiB)"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("MemAlloc")), "{table}");
    let st = sup.stats();
    assert_eq!(st.live_sessions, 2, "statistics connections counted as sessions: {st:?}");
    assert!(st.ended.iter().all(|e| e.session_id.is_none()), "a session ended: {st:?}");

    // One session leaves: its allocations go with it.
    b.close().unwrap();
    let (st, ok) = wait_stats(&sup, Duration::from_secs(10), |s| {
        s.live_sessions == 1 && s.ended.iter().any(|e| e.session_id == Some(idb))
    });
    assert!(ok, "the closed session is still live: {st:?}");
    let doc = stats_json(tcp);
    assert_eq!(doc["live_sessions"], 1, "{doc:#}");
    assert_eq!(doc["live_allocations"], 3, "{doc:#}");
    assert_eq!(doc["live_bytes"], 3 * MIB, "{doc:#}");
    assert_eq!(doc["sessions"][0]["worker_pid"], pa);
    assert_eq!(doc["ended_sessions"], 1);
    assert_eq!(op_count(&doc["operations"], "MemAlloc"), 3, "only the live session's operations: {doc:#}");

    // Four statistics requests took no session id and no worker: the next client is the third
    // session, and it finds a worker.
    let c = Client::connect(tcp, None).unwrap();
    assert_eq!(c.welcome().session_id.get(), idb + 1);
    c.close().unwrap();
    for p in held {
        a.mem_free(p).unwrap();
    }
    a.close().unwrap();
}

#[test]
fn stats_need_the_token() {
    let sup = start_server(&helper(), "stats-token", |c| c.token = Some("s3cret".into()));
    for url in urls(&sup) {
        let e = report::fetch(&url, None).unwrap_err();
        assert!(e.to_string().contains("requires a token"), "{e}");
        let e = report::fetch(&url, Some("wrong")).unwrap_err();
        assert!(e.to_string().contains("AUTH_FAILED"), "{e}");
        let c = Client::connect(&url, Some("s3cret")).unwrap();
        // The supervisor learns of the session from its worker a moment after the client does.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let r = loop {
            let r = report::fetch(&url, Some("s3cret")).unwrap();
            if r.live_sessions == 1 || std::time::Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(r.live_sessions, 1, "{r:?}");
        assert_eq!(r.sessions[0].worker_pid, c.welcome().worker_pid.get());
        c.close().unwrap();
    }
    // The command takes the token from REMORA_TOKEN, and fails without it.
    let url = &urls(&sup)[0];
    let out = Command::new(remora()).args(["stats", "--server", url]).env_remove("REMORA_TOKEN").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires a token"), "{out:?}");
    let out = Command::new(remora())
        .args(["stats", "--json", "--server", url])
        .env("REMORA_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["live_sessions"], 0);
}
