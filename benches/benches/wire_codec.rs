//! Encoding and decoding frames: header + op struct, as the client and server do per call.

use criterion::{criterion_group, criterion_main, Criterion};
use remora_wire::ops::{Launch, MemcpyHtoD};
use remora_wire::{split, Header, Opcode, U32, U64};
use std::hint::black_box;
use zerocopy::IntoBytes;

fn codec(c: &mut Criterion) {
    let launch = Launch {
        function: U64::new(1),
        stream: U64::new(0),
        grid: [U32::new(128), U32::new(1), U32::new(1)],
        block: [U32::new(256), U32::new(1), U32::new(1)],
        shared_mem: U32::new(0),
        params_len: U32::new(32),
        flags: U32::new(0),
        reserved: U32::new(0),
    };
    c.bench_function("encode launch frame", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            buf.clear();
            let h = Header::request_no_reply(Opcode::Launch, black_box(42), 56 + 32);
            buf.extend_from_slice(h.as_bytes());
            buf.extend_from_slice(black_box(&launch).as_bytes());
            buf.extend_from_slice(&[0u8; 32]);
            black_box(buf.len())
        })
    });
    let mut frame = Header::request(Opcode::MemcpyHtoD, 7, 24 + 4).as_bytes().to_vec();
    frame.extend_from_slice(MemcpyHtoD { dst: U64::new(1), len: U64::new(4), stream: U64::new(0) }.as_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    c.bench_function("decode memcpy frame", |b| {
        b.iter(|| {
            let (h, rest) = Header::parse(black_box(&frame)).expect("valid");
            let (op, data) = split::<MemcpyHtoD>(rest).expect("valid");
            black_box((h.opcode(), op.dst.get(), data.len()))
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
