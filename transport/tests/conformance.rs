//! Conformance suite: every test below runs against both backends (`tcp::*` and `shm::*`),
//! through the `Link`/`Listener` traits only.
//!
//! The peer-death tests re-run this test binary as a child process (the ignored test
//! `child_role`, selected with the `REMORA_CONFORMANCE_CHILD` environment variable) and kill it
//! with SIGKILL.

#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use remora_transport::handshake::{
    client_handshake, client_stats, send_server_stats, send_welcome, server_authenticate,
};
use remora_transport::proto::{ClientProto, ServerProto};
use remora_transport::{
    connect, fdpass, from_handoff, listen, recv_header, send_frame, Endpoint, Error, Link, LinkKind, Listener,
};
use remora_wire::{
    Capabilities, Header, HeaderError, Opcode, Status, Welcome, MAX_FRAME_LEN, PROTOCOL_VERSION, U32, U64,
};
use zerocopy::IntoBytes;

const CHILD_ENV: &str = "REMORA_CONFORMANCE_CHILD";
/// Peer death must be noticed within this long.
const DEATH_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Shm,
}

fn unique_shm_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("conf-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn listener(kind: Kind) -> Box<dyn Listener> {
    let ep = match kind {
        Kind::Tcp => Endpoint::Tcp("127.0.0.1:0".into()),
        Kind::Shm => Endpoint::Shm(unique_shm_name()),
    };
    let l = listen(&ep).expect("listen");
    let got = l.local_endpoint();
    match (kind, &got) {
        (Kind::Tcp, Endpoint::Tcp(a)) => assert!(!a.ends_with(":0"), "tcp listener reports port 0: {a}"),
        (Kind::Shm, Endpoint::Shm(_)) => assert_eq!(got, ep),
        _ => panic!("listener for {kind:?} reports {got}"),
    }
    l
}

/// A connected (client, server) pair.
fn pair(kind: Kind) -> (Box<dyn Link>, Box<dyn Link>) {
    let mut l = listener(kind);
    let ep = l.local_endpoint();
    std::thread::scope(|s| {
        let server = s.spawn(|| l.accept().expect("accept"));
        let client = connect(&ep).expect("connect");
        let server = server.join().expect("accept thread");
        assert_eq!(client.kind(), server.kind());
        (client, server)
    })
}

/// A cheap position-dependent pattern, built and compared a word at a time (fast in debug builds).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut words = vec![0u64; len.div_ceil(8)];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for w in words.iter_mut() {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        *w = x ^ (x >> 29);
    }
    let mut bytes = words.as_bytes().to_vec();
    bytes.truncate(len);
    bytes
}

fn elapsed_ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

// ---------------------------------------------------------------------------------------------
// The tests, each generic over the backend.

/// Frames of 0 B, 1 B, 4 KiB and 1 MiB, echoed back, with `send_frame`/`recv_header`.
fn frames_round_trip(kind: Kind) {
    let (mut c, mut s) = pair(kind);
    let sizes = [0usize, 1, 4096, 1 << 20];
    std::thread::scope(|sc| {
        sc.spawn(move || {
            for _ in sizes {
                let h = recv_header(&mut *s).unwrap();
                assert_eq!(h.opcode(), Ok(Opcode::MemcpyHtoD));
                let mut p = vec![0u8; h.payload_len()];
                s.recv_exact(&mut p).unwrap();
                let r = Header::reply(&h, Status::SUCCESS, p.len() as u64, Status::SUCCESS);
                send_frame(&mut *s, &r, &[], &p).unwrap();
            }
        });
        for (i, &n) in sizes.iter().enumerate() {
            let data = pattern(n, i as u64);
            // The payload as two parts: an 8-byte "operation struct" (when it fits) and data.
            let (op, rest) = data.split_at(n.min(8));
            let h = Header::request(Opcode::MemcpyHtoD, i as u64 + 1, n as u64);
            send_frame(&mut *c, &h, op, rest).unwrap();
            let r = recv_header(&mut *c).unwrap();
            assert_eq!((r.request_id.get(), r.len.get(), r.status()), (i as u64 + 1, n as u64, Status::SUCCESS));
            let mut got = vec![0u8; n];
            c.recv_exact(&mut got).unwrap();
            assert!(got == data, "{kind:?}: {n}-byte payload corrupted");
        }
    });
}

/// 64 MiB each way, each read with one `recv_exact` into its destination.
fn payload_64mib_echo(kind: Kind) {
    const N: usize = 64 << 20;
    let (mut c, mut s) = pair(kind);
    let data = pattern(N, 64);
    let t = Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let h = recv_header(&mut *s).unwrap();
            let mut p = vec![0u8; h.payload_len()];
            s.recv_exact(&mut p).unwrap();
            assert!(p == data, "{kind:?}: 64 MiB request corrupted");
            let r = Header::reply(&h, Status::SUCCESS, p.len() as u64, Status::SUCCESS);
            send_frame(&mut *s, &r, &p, &[]).unwrap();
        });
        send_frame(&mut *c, &Header::request(Opcode::MemcpyHtoD, 9, N as u64), &[], &data).unwrap();
        let r = recv_header(&mut *c).unwrap();
        assert_eq!(r.payload_len(), N);
        let mut got = vec![0u8; N];
        c.recv_exact(&mut got).unwrap();
        assert!(got == data, "{kind:?}: 64 MiB reply corrupted");
    });
    eprintln!("{kind:?}: 64 MiB echo in {} ms", elapsed_ms(t));
}

/// 256 MiB in one `send` (far more than the 8 MiB shm ring), received in 4 MiB pieces.
fn payload_256mib_streams(kind: Kind) {
    const N: usize = 256 << 20;
    const PIECE: usize = 4 << 20;
    let (mut c, mut s) = pair(kind);
    let data = pattern(N, 256);
    let t = Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            send_frame(&mut *c, &Header::request(Opcode::MemcpyHtoD, 1, N as u64), &[], &data).unwrap();
            let r = recv_header(&mut *c).unwrap();
            assert_eq!(r.status(), Status::SUCCESS);
        });
        let h = recv_header(&mut *s).unwrap();
        assert_eq!(h.payload_len(), N);
        let mut piece = vec![0u8; PIECE];
        for (i, want) in data.chunks(PIECE).enumerate() {
            s.recv_exact(&mut piece[..want.len()]).unwrap();
            assert!(&piece[..want.len()] == want, "{kind:?}: 256 MiB stream corrupted in piece {i}");
        }
        send_frame(&mut *s, &Header::reply(&h, Status::SUCCESS, 0, Status::SUCCESS), &[], &[]).unwrap();
    });
    eprintln!("{kind:?}: 256 MiB in {} ms", elapsed_ms(t));
}

/// 1000 requests sent before any reply is read; replies matched by the session cores, with a
/// fire-and-forget failure reported by the next reply.
fn many_in_flight(kind: Kind) {
    const N: usize = 1000;
    let (mut c, mut s) = pair(kind);
    std::thread::scope(|sc| {
        sc.spawn(move || {
            let mut sp = ServerProto::new();
            let mut replies = 0;
            while replies < N {
                let h = recv_header(&mut *s).unwrap();
                let inc = sp.on_request(&h).unwrap();
                let mut p = vec![0u8; usize::try_from(inc.len).unwrap()];
                s.recv_exact(&mut p).unwrap();
                if !inc.wants_reply {
                    sp.on_async_error(Status::LAUNCH_FAILED);
                    continue;
                }
                let r = sp.reply(&h, Status::SUCCESS, p.len() as u64);
                send_frame(&mut *s, &r, &p, &[]).unwrap();
                replies += 1;
            }
            assert_eq!(sp.counts(), (N as u64 + 1, N as u64));
        });
        let mut cp = ClientProto::new(N, u64::MAX, u64::MAX, 0);
        let mut ids = Vec::new();
        for i in 0..N {
            let h = cp.start(Opcode::Ping, 8, true, i as u64).unwrap();
            ids.push(h.request_id.get());
            send_frame(&mut *c, &h, &(i as u64).to_le_bytes(), &[]).unwrap();
            if i == N / 2 {
                let f = cp.start(Opcode::Launch, 0, false, i as u64).unwrap();
                send_frame(&mut *c, &f, &[], &[]).unwrap();
            }
        }
        assert_eq!(cp.in_flight(), N);
        assert!(cp.start(Opcode::Ping, 0, true, N as u64).is_err(), "credit limit not enforced");
        let mut async_errors = 0;
        for (i, id) in ids.iter().enumerate() {
            let r = recv_header(&mut *c).unwrap();
            assert_eq!(r.request_id.get(), *id);
            assert_eq!(cp.on_reply(&r, (N + i) as u64).unwrap(), Status::SUCCESS);
            if cp.take_async_error() == Status::LAUNCH_FAILED {
                async_errors += 1;
                assert!(i > N / 2, "async error reported before it happened");
            }
            let mut p = [0u8; 8];
            c.recv_exact(&mut p).unwrap();
            assert_eq!(u64::from_le_bytes(p), i as u64);
        }
        assert_eq!(async_errors, 1);
        assert_eq!(cp.in_flight(), 0);
    });
}

/// `poll_readable`/`wait_readable` on an idle, then busy, link; empty sends and reads.
fn polling(kind: Kind) {
    let (mut c, mut s) = pair(kind);
    assert!(!s.poll_readable().unwrap());
    let t = Instant::now();
    assert!(!s.wait_readable(Some(Duration::from_millis(30))).unwrap());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(25) && waited < Duration::from_secs(2), "{kind:?}: waited {waited:?}");
    c.send(&[]).unwrap();
    c.send(&[b"", b""]).unwrap();
    s.recv_exact(&mut []).unwrap();
    assert!(!s.poll_readable().unwrap());
    c.send(&[b"x"]).unwrap();
    assert!(s.wait_readable(Some(Duration::from_secs(5))).unwrap());
    assert!(s.poll_readable().unwrap());
    assert!(s.poll_readable().unwrap(), "poll_readable must not consume");
    let mut b = [0u8; 1];
    s.recv_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
    assert!(!s.poll_readable().unwrap());
    // A reader parked with no spin at all is woken by the writer.
    s.set_poll_policy(remora_transport::PollPolicy { spin: Duration::ZERO });
    std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            c.send(&[b"late"]).unwrap();
        });
        let mut b = [0u8; 4];
        s.recv_exact(&mut b).unwrap();
        assert_eq!(&b, b"late");
    });
    assert!(s.peer().starts_with(&format!("{}://", s.kind())), "{}", s.peer());
}

/// Garbage, a wrong version, an over-long announced length, and a truncated header.
fn malformed_frames(kind: Kind) {
    let (mut c, mut s) = pair(kind);
    c.send(&[&[0xAB; 40]]).unwrap();
    assert!(matches!(recv_header(&mut *s), Err(Error::BadHeader(HeaderError::BadMagic(0xABAB_ABAB)))));

    let mut h = Header::request(Opcode::Ping, 1, 0);
    h.version = remora_wire::U16::new(PROTOCOL_VERSION + 7);
    c.send(&[h.as_bytes()]).unwrap();
    assert!(
        matches!(recv_header(&mut *s), Err(Error::BadHeader(HeaderError::BadVersion(v))) if v == PROTOCOL_VERSION + 7)
    );

    let h = Header::request(Opcode::MemcpyHtoD, 2, MAX_FRAME_LEN + 1);
    c.send(&[h.as_bytes()]).unwrap();
    assert!(matches!(recv_header(&mut *s), Err(Error::BadHeader(HeaderError::TooLong(n))) if n == MAX_FRAME_LEN + 1));

    // A good frame still parses after the bad ones (each bad one was exactly 40 bytes).
    send_frame(&mut *c, &Header::request(Opcode::Ping, 3, 0), &[], &[]).unwrap();
    assert_eq!(recv_header(&mut *s).unwrap().request_id.get(), 3);

    // Half a header, then the peer goes away.
    c.send(&[&Header::request(Opcode::Ping, 4, 0).as_bytes()[..10]]).unwrap();
    drop(c);
    assert!(matches!(recv_header(&mut *s), Err(Error::PeerClosed)));
}

/// A server link taken apart mid-frame, passed over a Unix socket with `fdpass`, rebuilt, and
/// the conversation goes on with no byte lost.
fn handoff_mid_stream(kind: Kind) {
    let (mut c, mut s) = pair(kind);
    let a = pattern(1000, 1);
    send_frame(&mut *c, &Header::request(Opcode::MemcpyHtoD, 1, 1000), &[], &a).unwrap();
    send_frame(&mut *c, &Header::request(Opcode::Ping, 2, 0), &[], &[]).unwrap();

    let h = recv_header(&mut *s).unwrap();
    assert_eq!(h.request_id.get(), 1);
    let mut first = vec![0u8; 300];
    s.recv_exact(&mut first).unwrap();

    let handoff = s.into_handoff().unwrap();
    match kind {
        Kind::Tcp => assert_eq!((handoff.kind, handoff.fds.len()), (LinkKind::Tcp, 1)),
        Kind::Shm => assert_eq!((handoff.kind, handoff.fds.len(), handoff.server_side), (LinkKind::Shm, 2, true)),
    }
    let (tx, rx) = UnixStream::pair().unwrap();
    fdpass::send_handoff(&tx, &handoff, h.as_bytes()).unwrap();
    drop(handoff);
    let mut extra = Vec::new();
    let handoff = fdpass::recv_handoff(&rx, &mut extra).unwrap();
    assert_eq!(extra, h.as_bytes());
    let mut s = from_handoff(handoff).unwrap();
    assert_eq!(s.kind(), c.kind());

    let mut rest = vec![0u8; 700];
    s.recv_exact(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert!(first == a, "{kind:?}: payload split across the handoff corrupted");
    assert_eq!(recv_header(&mut *s).unwrap().request_id.get(), 2);

    // Both directions keep working, including a reply larger than the shm ring (so both sides
    // of the rebuilt link park and wake each other).
    let big = pattern(20 << 20, 2);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            send_frame(&mut *s, &Header::reply(&h, Status::SUCCESS, big.len() as u64, Status::SUCCESS), &big, &[])
                .unwrap();
            let q = recv_header(&mut *s).unwrap();
            assert_eq!(q.request_id.get(), 3);
            send_frame(&mut *s, &Header::reply(&q, Status::SUCCESS, 0, Status::SUCCESS), &[], &[]).unwrap();
        });
        let r = recv_header(&mut *c).unwrap();
        assert_eq!(r.request_id.get(), 1);
        let mut got = vec![0u8; r.payload_len()];
        c.recv_exact(&mut got).unwrap();
        assert!(got == big, "{kind:?}: reply after handoff corrupted");
        send_frame(&mut *c, &Header::request(Opcode::Ping, 3, 0), &[], &[]).unwrap();
        assert_eq!(recv_header(&mut *c).unwrap().request_id.get(), 3);
    });
}

fn welcome() -> Welcome {
    let mut backend = [0u8; 16];
    backend[..8].copy_from_slice(b"emulated");
    Welcome { session_id: U64::new(77), worker_pid: U32::new(std::process::id()), device_count: U32::new(2), backend }
}

const CLIENT_CAPS: Capabilities = Capabilities(Capabilities::ASYNC_OPS.0 | Capabilities::SHM.0);
const SERVER_CAPS: Capabilities = Capabilities(Capabilities::ASYNC_OPS.0 | Capabilities::EMULATED.0);

/// Runs the handshake with the given tokens; returns (client result, server result).
#[allow(clippy::type_complexity)]
fn run_handshake(
    kind: Kind,
    client_token: Option<&'static [u8]>,
    server_token: Option<&'static [u8]>,
) -> (
    remora_transport::Result<(Welcome, Capabilities)>,
    remora_transport::Result<remora_transport::handshake::Negotiated>,
) {
    let (mut c, mut s) = pair(kind);
    std::thread::scope(|sc| {
        let server = sc.spawn(move || {
            let n = server_authenticate(&mut *s, server_token, SERVER_CAPS)?;
            send_welcome(&mut *s, &welcome())?;
            Ok(n)
        });
        let client = client_handshake(&mut *c, client_token, CLIENT_CAPS);
        drop(c);
        (client, server.join().unwrap())
    })
}

fn handshake_without_token(kind: Kind) {
    let (client, server) = run_handshake(kind, None, None);
    let (w, caps) = client.unwrap();
    let n = server.unwrap();
    assert_eq!((w.session_id.get(), w.device_count.get(), w.backend_name()), (77, 2, "emulated"));
    assert_eq!(caps, Capabilities::ASYNC_OPS | Capabilities::EMULATED);
    assert_eq!(n.capabilities, caps);
    assert_eq!((n.version, n.client_pid), (PROTOCOL_VERSION, std::process::id()));
}

fn handshake_with_token(kind: Kind) {
    let (client, server) = run_handshake(kind, Some(b"s3cret"), Some(b"s3cret"));
    assert_eq!(client.unwrap().0.session_id.get(), 77);
    assert_eq!(server.unwrap().version, PROTOCOL_VERSION);
    // A client with a token talking to a server without one is fine.
    let (client, server) = run_handshake(kind, Some(b"s3cret"), None);
    assert!(client.is_ok() && server.is_ok());
}

fn handshake_wrong_token(kind: Kind) {
    let (client, server) = run_handshake(kind, Some(b"wrong"), Some(b"right"));
    match server {
        Err(Error::Handshake(m)) => assert!(m.contains("token proof does not match"), "server: {m}"),
        other => panic!("server: expected a handshake error, got {other:?}"),
    }
    match client {
        Err(Error::Handshake(m)) => {
            assert!(m.contains("refused by server") && m.contains("token"), "client: {m}")
        }
        other => panic!("client: expected a refusal, got {other:?}"),
    }
}

fn handshake_missing_token(kind: Kind) {
    let (client, server) = run_handshake(kind, None, Some(b"right"));
    match client {
        Err(Error::Handshake(m)) => assert!(m.contains("requires a token"), "client: {m}"),
        other => panic!("client: expected a handshake error, got {other:?}"),
    }
    // The client gave up and closed the link.
    assert!(matches!(server, Err(Error::PeerClosed)), "server: {server:?}");
}

/// A statistics request: the server sees `STATS` among the capabilities after the proof and
/// answers with the document instead of a Welcome.
fn stats_request(kind: Kind) {
    let (mut c, mut s) = pair(kind);
    let doc = br#"{"format":1}"#;
    std::thread::scope(|sc| {
        let server = sc.spawn(move || {
            let n = server_authenticate(&mut *s, Some(b"s3cret"), SERVER_CAPS | Capabilities::STATS)?;
            assert!(n.capabilities.contains(Capabilities::STATS), "{:?}", n.capabilities);
            send_server_stats(&mut *s, doc)?;
            Ok::<_, Error>(())
        });
        assert_eq!(client_stats(&mut *c, Some(b"s3cret")).unwrap(), doc);
        server.join().unwrap().unwrap();
    });
    // Without the token: refused like a session.
    let (mut c, mut s) = pair(kind);
    std::thread::scope(|sc| {
        let server = sc.spawn(move || server_authenticate(&mut *s, Some(b"s3cret"), SERVER_CAPS | Capabilities::STATS));
        let e = client_stats(&mut *c, None).unwrap_err();
        assert!(e.to_string().contains("requires a token"), "{e}");
        drop(c);
        assert!(matches!(server.join().unwrap(), Err(Error::PeerClosed)));
    });
}

/// A server that does not offer `STATS` (an older one) gets no Auth: it never starts a session.
fn stats_request_to_a_server_without_it(kind: Kind) {
    let (mut c, mut s) = pair(kind);
    std::thread::scope(|sc| {
        let server = sc.spawn(move || server_authenticate(&mut *s, None, SERVER_CAPS));
        let e = client_stats(&mut *c, None).unwrap_err();
        assert!(e.to_string().contains("does not answer statistics requests"), "{e}");
        drop(c);
        assert!(matches!(server.join().unwrap(), Err(Error::PeerClosed)));
    });
}

// ---------------------------------------------------------------------------------------------
// Peer death: a child process connects, then is killed.

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Listen, start a child that connects and sends one Ping, and return the server's link to it.
fn connected_child(kind: Kind) -> (KillOnDrop, Box<dyn Link>) {
    let mut l = listener(kind);
    let ep = l.local_endpoint();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_role", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, ep.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");
    let guard = KillOnDrop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(l.accept());
    });
    let mut link = rx.recv_timeout(Duration::from_secs(20)).expect("child never connected").expect("accept");
    let h = recv_header(&mut *link).expect("child's ping");
    assert_eq!(h.opcode(), Ok(Opcode::Ping));
    (guard, link)
}

/// The child's side (run only as a child: see `connected_child`).
#[test]
#[ignore = "helper: runs only as the child process of the peer-death tests"]
fn child_role() {
    let Ok(ep) = std::env::var(CHILD_ENV) else {
        eprintln!("child_role: {CHILD_ENV} not set; nothing to do");
        return;
    };
    let mut link = connect(&ep.parse().unwrap()).unwrap();
    send_frame(&mut *link, &Header::request(Opcode::Ping, 1, 0), &[], &[]).unwrap();
    // Wait to be killed; never exit on our own (that would close the link gracefully).
    std::thread::sleep(Duration::from_secs(120));
}

fn peer_killed_while_receiving(kind: Kind) {
    let (mut child, mut link) = connected_child(kind);
    let t = Instant::now();
    child.0.kill().unwrap();
    let mut b = [0u8; 1];
    let r = link.recv_exact(&mut b);
    let took = t.elapsed();
    assert!(matches!(r, Err(Error::PeerClosed)), "{kind:?}: {r:?}");
    assert!(took < DEATH_LIMIT, "{kind:?}: peer death noticed after {took:?}");
    eprintln!("{kind:?}: killed peer noticed by recv_exact in {} ms", took.as_millis());
}

fn peer_killed_while_polling(kind: Kind) {
    let (mut child, mut link) = connected_child(kind);
    assert!(!link.poll_readable().unwrap());
    let t = Instant::now();
    child.0.kill().unwrap();
    loop {
        match link.poll_readable() {
            Ok(false) => {
                assert!(t.elapsed() < DEATH_LIMIT, "{kind:?}: poll_readable never noticed the peer died");
                std::hint::spin_loop();
            }
            Ok(true) => panic!("{kind:?}: a killed peer became readable"),
            Err(Error::PeerClosed) => break,
            Err(e) => panic!("{kind:?}: {e}"),
        }
    }
    eprintln!("{kind:?}: killed peer noticed by poll_readable in {} ms", elapsed_ms(t));
    assert!(matches!(link.wait_readable(Some(Duration::from_secs(1))), Err(Error::PeerClosed)));
    assert!(matches!(link.recv_exact(&mut [0u8; 1]), Err(Error::PeerClosed)));
    // Sending to a dead peer fails (tcp may accept one write into the socket buffer first).
    let mut failed = false;
    for _ in 0..16 {
        if link.send(&[&[0u8; 1 << 16]]).is_err() {
            failed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(failed, "{kind:?}: sends to a dead peer keep succeeding");
}

// ---------------------------------------------------------------------------------------------

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod tcp {
            $(#[test] fn $test() { super::$test(super::Kind::Tcp) })*
        }
        mod shm {
            $(#[test] fn $test() { super::$test(super::Kind::Shm) })*
        }
    };
}

for_each_backend!(
    frames_round_trip,
    payload_64mib_echo,
    payload_256mib_streams,
    many_in_flight,
    polling,
    malformed_frames,
    handoff_mid_stream,
    handshake_without_token,
    handshake_with_token,
    handshake_wrong_token,
    handshake_missing_token,
    stats_request,
    stats_request_to_a_server_without_it,
    peer_killed_while_receiving,
    peer_killed_while_polling,
);
