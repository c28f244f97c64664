//! What a call costs the client library, against an in-process server (a session on the
//! emulated backend, served by the same polling code as a worker, over tcp and shm loopback):
//! a round trip with no work, a fire-and-forget launch of the empty demo kernel, a 4 B copy each
//! way, and a 1 MiB host-to-device copy.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use remora_interpose::client::{Client, LaunchDims};
use remora_server::backend::demo_kernels::{DEMO_PTX, EMPTY};
use remora_server::backend::emulated::EmulatedBackend;
use remora_server::polling;
use remora_server::session::{Limits, Session};
use remora_server::stats::SessionStats;
use remora_transport::handshake;
use remora_transport::{listen, Endpoint};
use remora_wire::handshake::{Capabilities, Welcome};
use remora_wire::ops::ImageKind;
use remora_wire::{U32, U64};

/// Accept one client on `url`, authenticate it (no token) and serve its session in a thread.
fn in_process_server(url: &str) -> String {
    let ep: Endpoint = url.parse().expect("endpoint");
    let mut l = listen(&ep).expect("listen");
    let local = l.local_endpoint().to_string();
    std::thread::spawn(move || {
        let mut link = l.accept().expect("accept");
        let caps = Capabilities::ASYNC_OPS | Capabilities::SHM;
        handshake::server_authenticate(&mut *link, None, caps).expect("handshake");
        let mut backend = EmulatedBackend::new(1);
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(b"emulated");
        let welcome = Welcome {
            session_id: U64::new(1),
            worker_pid: U32::new(std::process::id()),
            device_count: U32::new(1),
            backend: name,
        };
        handshake::send_welcome(&mut *link, &welcome).expect("welcome");
        let stats = SessionStats::default();
        let mut session = Session::new(&mut backend, link, Limits::default(), &stats);
        let _ = polling::serve(&mut session, &[], Duration::from_millis(50), Duration::from_millis(10));
    });
    local
}

fn calls(c: &mut Criterion) {
    for url in ["tcp://127.0.0.1:0", "shm://remora-bench-calls"] {
        let kind = url.split("://").next().unwrap_or("?");
        let server = in_process_server(url);
        let client = Client::connect(&server, None).expect("connect");
        let m = client.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx).expect("module");
        let f = client.module_get_function(m, EMPTY).expect("kernel");
        let dims = LaunchDims { grid: [1, 1, 1], block: [1, 1, 1], shared_mem: 0 };
        let p = client.mem_alloc(0, 1 << 20).expect("alloc");
        let big = vec![7u8; 1 << 20];
        let mut four = [0u8; 4];
        c.bench_function(&format!("client round trip {kind}"), |b| b.iter(|| client.ping().expect("ping")));
        c.bench_function(&format!("client launch (fire-and-forget) {kind}"), |b| {
            b.iter(|| client.launch(black_box(f), dims, 0, &[]).expect("launch"));
            client.device_synchronize(0).expect("sync");
        });
        c.bench_function(&format!("client 4 B host-to-device {kind}"), |b| {
            b.iter(|| client.memcpy_htod(p, black_box(&[1, 2, 3, 4])).expect("htod"))
        });
        c.bench_function(&format!("client 4 B device-to-host {kind}"), |b| {
            b.iter(|| client.memcpy_dtoh(black_box(&mut four), p).expect("dtoh"))
        });
        c.bench_function(&format!("client 1 MiB host-to-device {kind}"), |b| {
            b.iter(|| client.memcpy_htod(p, black_box(&big)).expect("htod"))
        });
        let _ = client.close();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(2));
    targets = calls
}
criterion_main!(benches);
