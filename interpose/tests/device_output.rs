//! Device output (`Flags::OUTPUT` replies) reaching the client's output sink: a hand-made server
//! over a real link answers each request from a script, and the test checks what the sink got,
//! in which order, and that the reply bodies after the output block still land where they should.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use remora_interpose::client::Client;
use remora_transport::handshake::{send_welcome, server_authenticate};
use remora_transport::{discard, listen, recv_header, Endpoint, Link};
use remora_wire::ops::DeviceCountReply;
use remora_wire::{Capabilities, Header, Opcode, Status, Welcome, U32, U64};
use zerocopy::IntoBytes;

/// One scripted reply.
struct Reply {
    expect: Opcode,
    status: Status,
    output: &'static [u8],
    body: Vec<u8>,
    /// Announce this many output bytes instead of `output.len()` (a malformed reply).
    lie: Option<u32>,
}

fn reply(expect: Opcode, output: &'static [u8], body: Vec<u8>) -> Reply {
    Reply { expect, status: Status::SUCCESS, output, body, lie: None }
}

/// Serve the handshake, then answer one request per scripted reply.
fn fake_server(mut link: Box<dyn Link>, script: Vec<Reply>) {
    server_authenticate(&mut *link, None, Capabilities::ASYNC_OPS).unwrap();
    let mut name = [0u8; 16];
    name[..4].copy_from_slice(b"fake");
    let welcome = Welcome {
        session_id: U64::new(1),
        worker_pid: U32::new(std::process::id()),
        device_count: U32::new(1),
        backend: name,
    };
    send_welcome(&mut *link, &welcome).unwrap();
    for r in script {
        let req = recv_header(&mut *link).unwrap();
        assert_eq!(req.opcode(), Ok(r.expect));
        discard(&mut *link, req.payload_len()).unwrap();
        let mut hdr = Header::reply(&req, r.status, r.body.len() as u64, Status::SUCCESS);
        if r.output.is_empty() && r.lie.is_none() {
            link.send(&[hdr.as_bytes(), &r.body]).unwrap();
            continue;
        }
        let n = u32::try_from(r.output.len()).unwrap();
        let prefix = hdr.attach_output(n);
        let prefix = r.lie.map_or(prefix, u32::to_le_bytes);
        link.send(&[hdr.as_bytes(), &prefix, r.output, &r.body]).unwrap();
    }
}

type Got = Arc<Mutex<Vec<Vec<u8>>>>;

/// A client connected to a fake server running `script`, with a sink that records each delivery.
fn connect(kind: &str, script: Vec<Reply>) -> (Client, Got, std::thread::JoinHandle<()>) {
    let ep = match kind {
        "tcp" => Endpoint::Tcp("127.0.0.1:0".into()),
        _ => {
            static N: AtomicUsize = AtomicUsize::new(0);
            Endpoint::Shm(format!("device-output-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
        }
    };
    let mut listener = listen(&ep).unwrap();
    let url = listener.local_endpoint().to_string();
    let server = std::thread::spawn(move || {
        let link = listener.accept().unwrap();
        fake_server(link, script);
    });
    let client = Client::connect(&url, None).unwrap();
    let got: Got = Arc::default();
    let sink = Arc::clone(&got);
    client.set_output_sink(Box::new(move |b: &[u8]| sink.lock().unwrap().push(b.to_vec())));
    (client, got, server)
}

fn output_reaches_the_sink(kind: &str) {
    let count = DeviceCountReply { count: U32::new(3) }.as_bytes().to_vec();
    let script = vec![
        reply(Opcode::DeviceSynchronize, b"device: hello 42\n", vec![]),
        reply(Opcode::DeviceSynchronize, b"", vec![]),
        reply(Opcode::MemcpyDtoH, b"device: round 0\n", vec![1, 2, 3, 4]),
        reply(Opcode::DeviceGetCount, b"x", count),
        Reply {
            expect: Opcode::StreamSynchronize,
            status: Status::INVALID_HANDLE,
            output: b"printed before the failure\n",
            body: vec![],
            lie: None,
        },
    ];
    let (client, got, server) = connect(kind, script);
    client.device_synchronize(0).unwrap();
    assert_eq!(*got.lock().unwrap(), vec![b"device: hello 42\n".to_vec()]);
    client.device_synchronize(0).unwrap();
    assert_eq!(got.lock().unwrap().len(), 1, "a reply without output calls no sink");
    // The body after the output block lands in the caller's buffer.
    let mut dst = [0u8; 4];
    client.memcpy_dtoh(&mut dst, 0x1000).unwrap();
    assert_eq!(dst, [1, 2, 3, 4]);
    // ...and in a decoded reply.
    assert_eq!(client.device_count().unwrap(), 3);
    // Output comes with a failed call too.
    assert_eq!(client.stream_synchronize(7), Err(Status::INVALID_HANDLE));
    assert_eq!(
        *got.lock().unwrap(),
        vec![
            b"device: hello 42\n".to_vec(),
            b"device: round 0\n".to_vec(),
            b"x".to_vec(),
            b"printed before the failure\n".to_vec(),
        ]
    );
    assert_eq!(client.sticky_error(), None);
    server.join().unwrap();
}

fn output_block_larger_than_the_reply_breaks_the_connection(kind: &str) {
    let script = vec![Reply {
        expect: Opcode::DeviceSynchronize,
        status: Status::SUCCESS,
        output: b"abc",
        body: vec![],
        lie: Some(1000),
    }];
    let (client, got, server) = connect(kind, script);
    assert_eq!(client.device_synchronize(0), Err(Status::TRANSPORT));
    assert_eq!(client.sticky_error(), Some(Status::TRANSPORT));
    assert!(got.lock().unwrap().is_empty(), "nothing from a malformed reply reaches the sink");
    server.join().unwrap();
}

#[test]
fn tcp_output_reaches_the_sink() {
    output_reaches_the_sink("tcp");
}

#[test]
fn shm_output_reaches_the_sink() {
    output_reaches_the_sink("shm");
}

#[test]
fn tcp_output_block_larger_than_the_reply_breaks_the_connection() {
    output_block_larger_than_the_reply_breaks_the_connection("tcp");
}

#[test]
fn shm_output_block_larger_than_the_reply_breaks_the_connection() {
    output_block_larger_than_the_reply_breaks_the_connection("shm");
}
