//! The verbs link on a real (or soft-RoCE) RDMA device: message path, credits, one-sided
//! READ/WRITE, and failures. Ignored (so counted as skipped) by a plain `cargo test`; CI runs
//! them with `--ignored` inside `soft-roce-setup/run-in-vm.sh`, on rxe0, where a missing device
//! is a failure that says what is missing.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use remora_transport::tcp::TcpLink;
use remora_transport::verbs::{self, client_upgrade, serve_upgrade};
use remora_transport::{Error, Link};

const TIMEOUT: Duration = Duration::from_secs(30);

const NEEDS: &str = "needs an RDMA device: soft-roce-setup/run-in-vm.sh runs it on rxe0";

/// The address to test on; fails saying what is missing.
fn device_address(test: &str) -> Option<std::net::Ipv4Addr> {
    if let Err(why) = verbs::available() {
        panic!("{test} {NEEDS}: {why}");
    }
    match verbs::ipv4_addresses().first() {
        Some((dev, ip)) => {
            println!("{test}: on {dev} at {ip}");
            Some(*ip)
        }
        None => panic!("{test} {NEEDS}: no RDMA device has an IPv4 address (RoCE v2 GID)"),
    }
}

/// A connected pair: (client side, server side), the server side made on another thread.
fn pair(ip: std::net::Ipv4Addr) -> (Box<dyn Link>, Box<dyn Link>) {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let link: Box<dyn Link> = Box::new(TcpLink::from_stream(s, true).unwrap());
        serve_upgrade(link, TIMEOUT).unwrap()
    });
    let c: Box<dyn Link> = Box::new(TcpLink::connect(&addr.to_string()).unwrap());
    let c = client_upgrade(c, TIMEOUT).unwrap();
    (c, server.join().unwrap())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
#[ignore = "needs an RDMA device: soft-roce-setup/run-in-vm.sh runs it on rxe0"]
fn frames_of_every_size_arrive_in_order() {
    let Some(ip) = device_address("frames_of_every_size_arrive_in_order") else { return };
    let (mut c, mut s) = pair(ip);
    assert_eq!(c.kind(), "rdma");
    let echo = thread::spawn(move || {
        let mut len = [0u8; 8];
        loop {
            s.recv_exact(&mut len).unwrap();
            let n = u64::from_le_bytes(len) as usize;
            if n == u64::MAX as usize {
                return s;
            }
            let mut buf = vec![0u8; n];
            s.recv_exact(&mut buf).unwrap();
            s.send(&[&len, &buf]).unwrap();
        }
    });
    let sizes = [0usize, 1, 7, 64, 219, 220, 221, 4096, 32 << 10, (32 << 10) + 1, 1 << 20, 5 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        let data = pattern(n, i as u8);
        c.send(&[&(n as u64).to_le_bytes(), &data[..n / 2], &data[n / 2..]]).unwrap();
        let mut len = [0u8; 8];
        c.recv_exact(&mut len).unwrap();
        assert_eq!(u64::from_le_bytes(len) as usize, n);
        let mut back = vec![0u8; n];
        c.recv_exact(&mut back).unwrap();
        assert!(back == data, "payload of {n} bytes came back changed");
    }
    c.send(&[&u64::MAX.to_le_bytes()]).unwrap();
    let s = echo.join().unwrap();
    let counters = c.remote_memory().unwrap().counters();
    let total: usize = sizes.iter().map(|n| n + 8).sum::<usize>() + 8;
    assert_eq!(counters.sent_bytes as usize, total);
    drop(s);
}

#[test]
#[ignore = "needs an RDMA device: soft-roce-setup/run-in-vm.sh runs it on rxe0"]
fn credits_never_deadlock_when_neither_side_reads() {
    let Some(ip) = device_address("credits_never_deadlock_when_neither_side_reads") else { return };
    let (mut c, mut s) = pair(ip);
    const N: u32 = 500;
    // The server answers every frame at once; the client sends all of them before reading
    // any answer: both sides' receive slots fill up while both are sending.
    let server = thread::spawn(move || {
        for i in 0..N {
            let mut b = [0u8; 4];
            s.recv_exact(&mut b).unwrap();
            assert_eq!(u32::from_le_bytes(b), i);
            s.send(&[&b, &[0xab; 100]]).unwrap();
        }
        s
    });
    for i in 0..N {
        c.send(&[&i.to_le_bytes()]).unwrap();
    }
    for i in 0..N {
        let mut b = [0u8; 104];
        c.recv_exact(&mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), i);
        assert!(b[4..].iter().all(|&x| x == 0xab));
    }
    drop(server.join().unwrap());
}

#[test]
#[ignore = "needs an RDMA device: soft-roce-setup/run-in-vm.sh runs it on rxe0"]
fn one_sided_read_and_write_of_registered_memory() {
    let Some(ip) = device_address("one_sided_read_and_write_of_registered_memory") else { return };
    let (mut c, mut s) = pair(ip);
    const LEN: usize = 3 << 20;
    let mut client_mem = pattern(LEN, 7);
    let addr = client_mem.as_mut_ptr() as usize;
    // SAFETY: `client_mem` outlives the registration (deregistered below before it drops).
    let rkey = unsafe { c.remote_memory().unwrap().register(addr, LEN) }.unwrap();
    assert_eq!(c.remote_memory().unwrap().registered(addr + 10, 100), Some(rkey));
    assert_eq!(c.remote_memory().unwrap().registered(addr + LEN - 1, 2), None);
    c.send(&[&(addr as u64).to_le_bytes(), &rkey.to_le_bytes()]).unwrap();

    let server = thread::spawn(move || {
        let mut m = [0u8; 12];
        s.recv_exact(&mut m).unwrap();
        let remote = u64::from_le_bytes(m[..8].try_into().unwrap());
        let rkey = u32::from_le_bytes(m[8..].try_into().unwrap());
        let mut staging = vec![0u8; LEN];
        let base = staging.as_mut_ptr() as usize;
        // SAFETY: `staging` lives until after the link is dropped at the end of this thread.
        unsafe { s.remote_memory().unwrap().register(base, LEN) }.unwrap();
        s.remote_memory().unwrap().read(&mut staging, remote, rkey).unwrap();
        assert!(staging == pattern(LEN, 7), "RDMA READ brought other bytes");
        for b in staging.iter_mut() {
            *b = b.wrapping_add(1);
        }
        s.remote_memory().unwrap().write(&staging[..LEN / 2], remote, rkey).unwrap();
        // A message sent after the write arrives after its bytes.
        s.send(&[b"done"]).unwrap();
        let k = s.remote_memory().unwrap().counters();
        assert_eq!((k.rdma_read_bytes, k.rdma_write_bytes), (LEN as u64, LEN as u64 / 2));
        // A buffer that is not registered here is refused before anything is posted.
        let mut other = vec![0u8; 16];
        assert!(matches!(s.remote_memory().unwrap().read(&mut other, remote, rkey), Err(Error::Protocol(_))));
        let mut b = [0u8; 3];
        s.recv_exact(&mut b).unwrap();
        drop(s);
        drop(staging);
    });
    let mut done = [0u8; 4];
    c.recv_exact(&mut done).unwrap();
    assert_eq!(&done, b"done");
    let want: Vec<u8> =
        pattern(LEN, 7).iter().enumerate().map(|(i, &b)| if i < LEN / 2 { b.wrapping_add(1) } else { b }).collect();
    assert!(client_mem == want, "RDMA WRITE did not land as sent");
    let k = c.remote_memory().unwrap().counters();
    assert!(k.sent_bytes < 64, "the client sent {} bytes through the message path", k.sent_bytes);
    assert!(c.remote_memory().unwrap().deregister(addr));
    assert!(!c.remote_memory().unwrap().deregister(addr));
    c.send(&[b"bye"]).unwrap();
    server.join().unwrap();
}

#[test]
#[ignore = "needs an RDMA device: soft-roce-setup/run-in-vm.sh runs it on rxe0"]
fn a_bad_memory_key_fails_that_connection_only() {
    let Some(ip) = device_address("a_bad_memory_key_fails_that_connection_only") else { return };
    let (mut c, mut s) = pair(ip);
    let (mut c2, mut s2) = pair(ip);
    let mut mem = vec![0u8; 4096];
    let addr = mem.as_mut_ptr() as usize;
    // SAFETY: `mem` outlives the links.
    let rkey = unsafe { c.remote_memory().unwrap().register(addr, mem.len()) }.unwrap();
    let mut staging = vec![0u8; 8192];
    // SAFETY: `staging` outlives the link `s`.
    unsafe { s.remote_memory().unwrap().register(staging.as_mut_ptr() as usize, staging.len()) }.unwrap();
    // Past the end of the client's region: the NIC refuses, and the queue pair is dead.
    let e = s.remote_memory().unwrap().read(&mut staging, addr as u64, rkey).unwrap_err();
    println!("out-of-range READ: {e}");
    assert!(s.send(&[b"x"]).is_err(), "a link whose queue pair failed must fail later calls");
    drop(s);
    let mut b = [0u8; 1];
    let e = c.recv_exact(&mut b).unwrap_err();
    println!("client after the server's link failed: {e}");
    // The other connection is untouched.
    c2.send(&[b"ping"]).unwrap();
    let mut p = [0u8; 4];
    s2.recv_exact(&mut p).unwrap();
    assert_eq!(&p, b"ping");
    drop(mem);
}

#[test]
#[ignore = "needs an RDMA device: soft-roce-setup/run-in-vm.sh runs it on rxe0"]
fn a_peer_that_goes_away_is_reported_at_once() {
    let Some(ip) = device_address("a_peer_that_goes_away_is_reported_at_once") else { return };
    let (mut c, s) = pair(ip);
    let t = std::time::Instant::now();
    drop(s);
    let mut b = [0u8; 1];
    assert!(matches!(c.recv_exact(&mut b), Err(Error::PeerClosed)));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    // A registration with a dead peer still works locally and is freed with the link.
    let mut mem = vec![0u8; 4096];
    // SAFETY: `mem` outlives the link.
    unsafe { c.remote_memory().unwrap().register(mem.as_mut_ptr() as usize, 4096) }.unwrap();
    drop(c);
    drop(mem);
}

#[test]
fn devices_are_listed_or_the_reason_given() {
    match verbs::devices() {
        Ok(d) => println!("rdma devices: {d:?}"),
        Err(why) => {
            assert!(!why.is_empty());
            println!("no rdma-core: {why}");
        }
    }
}
