//! Sessions over `rdma://` (verbs, on rxe0 in CI's soft-RoCE VM): the message path carries the
//! CUDA calls, pinned memory moves with one-sided RDMA (counted), and failures stay inside
//! their session. Ignored by a plain `cargo test` (no RDMA device there: counted as skipped);
//! `scripts/rdma-tests` runs them with `--ignored` inside `soft-roce-setup/run-in-vm.sh`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use remora_interpose::client::Client;
use remora_tests::{start_server_on, wait_stats};
use remora_transport::verbs;

use crate::helper;

/// `rdma://IP:0` on the first RDMA device with an IPv4 address; fails saying what is missing.
fn rdma_endpoint() -> String {
    if let Err(why) = verbs::available() {
        panic!("needs an RDMA device (soft-roce-setup/run-in-vm.sh runs this on rxe0): {why}");
    }
    let (dev, ip) = verbs::ipv4_addresses()
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("needs an RDMA device with an IPv4 address (RoCE v2 GID)"));
    println!("rdma device {dev} at {ip}");
    format!("rdma://{ip}:0")
}

/// rdma:// listens on a non-loopback address, where the server requires a token.
const TOKEN: &str = "rdma-test-token";

fn server(ep: &str) -> (remora_server::supervisor::Supervisor, String) {
    let sup = start_server_on(&helper(), &[ep], |cfg| cfg.token = Some(TOKEN.into()));
    let url = sup.endpoints()[0].to_string();
    (sup, url)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

#[test]
#[ignore = "needs an RDMA device: scripts/rdma-tests runs it on rxe0"]
fn pinned_copies_move_by_rdma_without_client_copies() {
    let ep = rdma_endpoint();
    let (sup, url) = server(&ep);
    let c = Client::connect(&url, Some(TOKEN)).unwrap();
    const LEN: usize = 9 << 20; // three staging halves: the pipelined path, odd chunk count
    let dev = c.mem_alloc(0, LEN as u64).unwrap();
    let mut src = pattern(LEN, 3);
    let mut dst = vec![0u8; LEN];
    // SAFETY: both buffers outlive their registrations (deregistered below).
    let (ks, kd) = unsafe {
        (
            c.register_remote(src.as_mut_ptr() as usize, LEN).expect("an rdma link").unwrap(),
            c.register_remote(dst.as_mut_ptr() as usize, LEN).expect("an rdma link").unwrap(),
        )
    };
    let before = c.remote_counters().unwrap();
    c.memcpy_remote(dev, src.as_ptr() as u64, LEN as u64, 0, ks, true, true).unwrap();
    // Fire-and-forget, then a synchronising call: the bytes are in place when it returns.
    c.memcpy_remote(dev, dst.as_ptr() as u64, LEN as u64, 0, kd, false, false).unwrap();
    c.device_synchronize(0).unwrap();
    assert!(dst == src, "device round trip through RDMA READ and WRITE changed the bytes");
    let after = c.remote_counters().unwrap();
    let through_messages = after.sent_bytes - before.sent_bytes + after.received_bytes - before.received_bytes;
    println!("2 x {LEN} bytes copied; {through_messages} bytes through the message path");
    assert!(through_messages < 4096, "{through_messages} bytes went through the message path");
    assert_eq!(after.registered, 2);
    // The worker counted the bytes it moved.
    let (st, ok) = wait_stats(&sup, Duration::from_secs(10), |s| {
        s.sessions.iter().any(|x| x.stats.bytes_in >= LEN as u64 && x.stats.bytes_out >= LEN as u64)
    });
    assert!(ok, "the worker did not count the copies: {st:?}");
    // An error on the device side is an ordinary CUDA error: a range outside the allocation.
    let e = c.memcpy_remote(dev + 4096, src.as_ptr() as u64, LEN as u64, 0, ks, true, true).unwrap_err();
    println!("out-of-range copy: {e:?}");
    assert!(c.deregister_remote(src.as_ptr() as usize));
    assert!(c.deregister_remote(dst.as_ptr() as usize));
    assert_eq!(c.remote_counters().unwrap().registered, 0);
    c.mem_free(dev).unwrap();
    c.close().unwrap();
}

#[test]
#[ignore = "needs an RDMA device: scripts/rdma-tests runs it on rxe0"]
fn a_bad_memory_key_ends_only_that_session() {
    let ep = rdma_endpoint();
    let (sup, url) = server(&ep);
    let good = Client::connect(&url, Some(TOKEN)).unwrap();
    let bad = Client::connect(&url, Some(TOKEN)).unwrap();
    let d1 = good.mem_alloc(0, 1 << 20).unwrap();
    let d2 = bad.mem_alloc(0, 1 << 20).unwrap();
    // A key nobody registered: the worker's RDMA READ is refused by the NIC.
    let e = bad.memcpy_remote(d2, 0x1000, 1 << 20, 0, 0xdead_beef, true, true).unwrap_err();
    println!("bad key: {e:?}");
    assert!(bad.mem_alloc(0, 4096).is_err(), "the session whose queue pair failed must be over");
    // The other session goes on.
    good.memset(d1, 0x5a, 1, 1 << 20, 0, true).unwrap();
    let mut b = vec![0u8; 1 << 20];
    good.memcpy_dtoh(&mut b, d1).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a));
    let (st, ok) = wait_stats(&sup, Duration::from_secs(20), |s| s.live_sessions == 1 && s.live_allocations == 1);
    assert!(ok, "the failed session's memory was not released: {st:?}");
    good.close().unwrap();
}

#[test]
#[ignore = "needs an RDMA device: scripts/rdma-tests runs it on rxe0"]
fn a_client_killed_mid_transfer_frees_everything() {
    let ep = rdma_endpoint();
    let (sup, url) = server(&ep);
    for round in 0..3 {
        let mut child = Command::new(helper())
            .args(["client-rdma-stream", &url])
            .env("REMORA_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("READY"), "helper said {line:?}");
        std::thread::sleep(Duration::from_millis(200 + 150 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let (st, ok) = wait_stats(&sup, Duration::from_secs(30), |s| s.live_sessions == 0 && s.live_allocations == 0);
        assert!(ok, "round {round}: the killed client's session was not cleaned up: {st:?}");
    }
    // And the server still serves.
    let c = Client::connect(&url, Some(TOKEN)).unwrap();
    let p = c.mem_alloc(0, 4096).unwrap();
    c.mem_free(p).unwrap();
    c.close().unwrap();
}

#[test]
fn rdma_urls_without_a_device_fail_with_the_reason() {
    if verbs::available().is_ok() {
        println!("this host has an RDMA device: nothing to check here");
        return;
    }
    let Err(e) = Client::connect("rdma://127.0.0.1:9", None) else { panic!("no device: connect must fail") };
    let msg = e.to_string();
    println!("{msg}");
    assert!(msg.contains("rdma"), "{msg}");
}

#[test]
#[ignore = "needs an RDMA device: scripts/rdma-tests runs it on rxe0"]
fn auto_prefers_rdma_and_falls_back_to_tcp() {
    let ep = rdma_endpoint();
    // A server offering RDMA: auto:// ends up on it.
    let (_sup, url) = server(&ep);
    let addr = url.trim_start_matches("rdma://").to_string();
    let c = remora_interpose::client::connect_first(&format!("auto://{addr}"), Some(TOKEN)).unwrap();
    assert_eq!(c.endpoint().to_string(), url);
    c.close().unwrap();
    // A plain tcp:// server at that address: the rdma attempt is refused, tcp is used.
    let tcp_ep = ep.replace("rdma://", "tcp://");
    let (_sup2, url2) = server(&tcp_ep);
    let addr2 = url2.trim_start_matches("tcp://").to_string();
    let c = remora_interpose::client::connect_first(&format!("auto://{addr2}"), Some(TOKEN)).unwrap();
    assert_eq!(c.endpoint().to_string(), url2);
    let p = c.mem_alloc(0, 4096).unwrap();
    c.mem_free(p).unwrap();
    c.close().unwrap();
}

#[test]
#[ignore = "needs an RDMA device: scripts/rdma-tests runs it on rxe0"]
fn a_worker_killed_mid_transfer_fails_the_call_and_others_go_on() {
    let ep = rdma_endpoint();
    let (sup, url) = server(&ep);
    let other = Client::connect(&url, Some(TOKEN)).unwrap();
    let c = std::sync::Arc::new(Client::connect(&url, Some(TOKEN)).unwrap());
    const LEN: usize = 16 << 20;
    let dev = c.mem_alloc(0, LEN as u64).unwrap();
    let mut host = vec![1u8; LEN];
    let addr = host.as_mut_ptr() as usize;
    // SAFETY: `host` outlives the client (the thread below is joined before it drops).
    let rkey = unsafe { c.register_remote(addr, LEN) }.unwrap().unwrap();
    let worker = c.welcome().worker_pid.get();
    let c2 = std::sync::Arc::clone(&c);
    let copier = std::thread::spawn(move || loop {
        let t = std::time::Instant::now();
        if let Err(e) = c2.memcpy_remote(dev, addr as u64, LEN as u64, 0, rkey, true, true) {
            return (e, t.elapsed());
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").args(["-9", &worker.to_string()]).status().unwrap().success());
    let (e, took) = copier.join().unwrap();
    println!("call in progress when the worker died: {e:?} after {took:?}");
    assert_eq!(e, remora_wire::Status::TRANSPORT);
    assert!(took < Duration::from_secs(10), "the failing call took {took:?}");
    assert!(c.mem_alloc(0, 4096).is_err(), "later calls fail too");
    drop(c);
    drop(host);
    // The other session and new sessions are served.
    let p = other.mem_alloc(0, 4096).unwrap();
    other.mem_free(p).unwrap();
    let (st, ok) = wait_stats(&sup, Duration::from_secs(20), |s| s.live_sessions == 1);
    assert!(ok, "the dead worker's session is still listed: {st:?}");
    other.close().unwrap();
    let again = Client::connect(&url, Some(TOKEN)).unwrap();
    again.close().unwrap();
}
