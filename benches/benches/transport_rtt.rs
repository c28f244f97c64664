//! Transport round trips with no CUDA: a 64-byte ping-pong per backend (rdma where this machine
//! has a usable RDMA device with an IPv4 address; otherwise it says why and skips it).

use std::thread;

use criterion::{criterion_group, criterion_main, Criterion};
use remora_transport::tcp::TcpLink;
use remora_transport::{connect, listen, recv_header, send_frame, verbs, Endpoint, Link};
use remora_wire::{Header, Opcode, Status};
use std::hint::black_box;

fn echo_server(mut link: Box<dyn Link>) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let Ok(h) = recv_header(&mut *link) else { return };
        let n = h.payload_len();
        if n > buf.len() || link.recv_exact(&mut buf[..n]).is_err() {
            return;
        }
        let r = Header::reply(&h, Status::SUCCESS, n as u64, Status::SUCCESS);
        if send_frame(&mut *link, &r, &buf[..n], &[]).is_err() {
            return;
        }
    }
}

fn pair(url: &str) -> Box<dyn Link> {
    let ep: Endpoint = url.parse().expect("endpoint");
    let mut l = listen(&ep).expect("listen");
    let ep = l.local_endpoint();
    let t = thread::spawn(move || echo_server(l.accept().expect("accept")));
    std::mem::forget(t);
    connect(&ep).expect("connect")
}

/// A verbs pair on this machine's first RDMA device, or why there is none.
fn rdma_pair() -> Result<Box<dyn Link>, String> {
    verbs::available()?;
    let (_, ip) = verbs::ipv4_addresses().first().cloned().ok_or("no RDMA device has an IPv4 address")?;
    let l = std::net::TcpListener::bind((ip, 0)).map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let t = thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let link: Box<dyn Link> = Box::new(TcpLink::from_stream(s, true).expect("tcp"));
        echo_server(verbs::serve_upgrade(link, verbs::SETUP_TIMEOUT).expect("rdma server"))
    });
    std::mem::forget(t);
    let link: Box<dyn Link> = Box::new(TcpLink::connect(&addr.to_string()).map_err(|e| e.to_string())?);
    verbs::client_upgrade(link, verbs::SETUP_TIMEOUT).map_err(|e| e.to_string())
}

fn rtt(c: &mut Criterion) {
    let name = format!("shm://remora-bench-{}", std::process::id());
    for url in ["tcp://127.0.0.1:0", name.as_str(), "rdma"] {
        let mut link = if url == "rdma" {
            match rdma_pair() {
                Ok(l) => l,
                Err(why) => {
                    eprintln!("round trip 64 B rdma: skipped: {why}");
                    continue;
                }
            }
        } else {
            pair(url)
        };
        let payload = [7u8; 64 - 40];
        let mut back = [0u8; 64 - 40];
        let mut id = 0u64;
        c.bench_function(&format!("round trip 64 B {}", url.split("://").next().unwrap_or("?")), |b| {
            b.iter(|| {
                id += 1;
                let h = Header::request(Opcode::Ping, id, payload.len() as u64);
                send_frame(&mut *link, &h, &payload, &[]).expect("send");
                let r = recv_header(&mut *link).expect("reply");
                link.recv_exact(&mut back).expect("payload");
                black_box(r.request_id.get())
            })
        });
    }
}

criterion_group!(benches, rtt);
criterion_main!(benches);
