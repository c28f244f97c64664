//! Sessions that end badly: a client killed with SIGKILL, a worker killed with SIGKILL,
//! garbage on a listener. The server must free everything and keep serving.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remora_interpose::client::Client;
use remora_tests::{start_server, urls, wait_stats};
use remora_wire::Status;

use crate::helper;

fn still_serving(url: &str) {
    remora_tests::still_serving(url, 64, 7);
}

#[test]
fn killed_client_leaves_nothing_behind() {
    let sup = start_server(&helper(), "killclient", |_| {});
    for url in urls(&sup) {
        let mut child = Command::new(helper()).args(["client-hold", &url, "3"]).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("HELD "), "helper said {line:?}");
        let (st, ok) = wait_stats(&sup, Duration::from_secs(5), |s| s.live_allocations == 3);
        assert!(ok, "expected 3 live allocations while the client holds them: {st:?}");
        assert_eq!(st.live_sessions, 1);
        assert_eq!(st.live_bytes, 3 << 20);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let pid: u32 = line.trim().trim_start_matches("HELD ").parse().unwrap();
        let (st, ok) = wait_stats(&sup, Duration::from_secs(10), |s| {
            s.live_sessions == 0 && s.ended.iter().any(|e| e.worker_pid == pid)
        });
        assert!(ok, "session of a killed client still live: {st:?}");
        assert_eq!(st.live_allocations, 0);
        assert_eq!(st.live_bytes, 0);
        let end = st.ended.iter().find(|e| e.worker_pid == pid).expect("the killed client's session ended");
        assert_eq!(end.freed_allocations, 3, "worker freed what the client held: {end:?}");
        assert_eq!(end.exit, "exit 0");
        still_serving(&url);
    }
}

#[test]
fn killed_worker_fails_its_client_only() {
    let sup = start_server(&helper(), "killworker", |_| {});
    for url in urls(&sup) {
        let other = Client::connect(&url, None).unwrap();
        let c = Client::connect(&url, None).unwrap();
        let p = c.mem_alloc(0, 1 << 20).unwrap();
        let pid = c.welcome().worker_pid.get();
        assert_ne!(pid, other.welcome().worker_pid.get(), "one worker process per session");
        let st = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        assert!(st.success());
        let t = Instant::now();
        let mut err = Ok(());
        while t.elapsed() < Duration::from_secs(5) {
            err = c.memcpy_htod(p, &[1u8; 16]);
            if err.is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(err, Err(Status::TRANSPORT), "the killed worker's client gets a transport error");
        assert_eq!(c.ping(), Err(Status::TRANSPORT), "and it is sticky");
        let (st, ok) = wait_stats(&sup, Duration::from_secs(10), |s| s.ended.iter().any(|e| e.worker_pid == pid));
        assert!(ok, "supervisor did not record the dead worker: {st:?}");
        let rec = st.ended.iter().find(|e| e.worker_pid == pid).unwrap();
        assert_eq!(rec.exit, "signal 9");
        other.ping().expect("the other session is untouched");
        other.close().unwrap();
        still_serving(&url);
    }
}

/// End of stream or a reset (the server closed with our garbage unread) both mean closed; a
/// read timeout means the server kept the connection.
fn closed(r: &std::io::Result<usize>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn garbage_on_a_listener_closes_only_that_connection() {
    let sup = start_server(&helper(), "garbage", |c| c.handshake_timeout = Duration::from_secs(1));
    let url = urls(&sup)[0].clone();
    let addr = url.trim_start_matches("tcp://").to_string();
    let good = Client::connect(&url, None).unwrap();
    let p = good.mem_alloc(0, 16).unwrap();
    for garbage in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0xffu8; 64][..], &[0u8; 40][..]] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(garbage).unwrap();
        let mut buf = Vec::new();
        // The server answers with at most a refusal frame, then closes (at once for a bad
        // header, after the handshake timeout for a short one): read_to_end ends.
        let r = s.read_to_end(&mut buf);
        assert!(closed(&r), "server did not close a garbage connection: {r:?}");
        good.memcpy_htod(p, &[1u8; 16]).expect("the good session continues");
    }
    // A frame announcing an absurd length.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut hdr = remora_wire::Header::request(remora_wire::Opcode::Hello, 0, 0);
    hdr.len = remora_wire::U64::new(1 << 40);
    s.write_all(zerocopy::IntoBytes::as_bytes(&hdr)).unwrap();
    let mut buf = Vec::new();
    let r = s.read_to_end(&mut buf);
    assert!(closed(&r), "server did not close an over-long frame: {r:?}");
    good.mem_free(p).unwrap();
    good.close().unwrap();
    still_serving(&url);
}

#[test]
fn a_session_that_breaks_the_protocol_is_closed_alone() {
    let sup = start_server(&helper(), "protobreak", |_| {});
    for url in urls(&sup) {
        let good = Client::connect(&url, None).unwrap();
        // Handshake properly, then send a frame with a bad magic.
        let ep: remora_transport::Endpoint = url.parse().unwrap();
        let mut link = remora_transport::connect(&ep).unwrap();
        remora_transport::handshake::client_handshake(
            &mut *link,
            None,
            remora_wire::handshake::Capabilities::ASYNC_OPS,
        )
        .unwrap();
        // An unknown opcode first: answered, not fatal.
        let h = remora_wire::Header::new(0x7abc, remora_wire::Flags::default(), Status::SUCCESS, 1, 3);
        remora_transport::send_frame(&mut *link, &h, &[1, 2, 3], &[]).unwrap();
        let r = remora_transport::recv_header(&mut *link).unwrap();
        assert_eq!(r.status(), Status::UNSUPPORTED_OPCODE);
        assert_eq!(r.request_id.get(), 1);
        link.send(&[&[0x55u8; 40]]).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 1];
        let closed = loop {
            match link.recv_exact(&mut buf) {
                Err(remora_transport::Error::PeerClosed) => break true,
                Err(_) => break true,
                Ok(()) => {}
            }
            if t.elapsed() > Duration::from_secs(5) {
                break false;
            }
        };
        assert!(closed, "worker did not close a session that sent garbage");
        good.ping().unwrap();
        good.close().unwrap();
    }
}
