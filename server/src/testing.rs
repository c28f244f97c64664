//! A whole client byte stream through a session, as a worker serves it (cargo feature
//! `testing`): the fuzz target `dispatch` (`fuzz/`) and the tests below share it.
//!
//! [`run_client_stream`] builds a [`Session`] on the EMULATED backend over an in-memory link
//! ([`MemLink`]) that yields the given bytes and then reports the client gone, serves it with
//! [`polling::serve`] (so frames of the second device go through its polling thread, as in a
//! worker), releases everything and answers a Goodbye the way the worker does.
//! [`StreamOutcome::check`] then states what must hold whatever the bytes were.

use std::time::Duration;

use remora_transport::testing::{MemLink, Sent};
use remora_wire::{Flags, Status};

use crate::backend::emulated::{EmulatedBackend, Held};
use crate::polling;
use crate::session::{send_reply, End, Limits, Session};
use crate::stats::SessionStats;

/// How [`run_client_stream`] sets the session up.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    /// Emulated devices (two, so frames are routed between polling threads).
    pub devices: u32,
    /// Memory of each emulated device. Small by default: the emulated backend keeps device
    /// memory in host memory, and a fuzz target must not need gigabytes.
    pub device_memory: u64,
    /// The session's limits: [`Limits::default`], what `remora serve` uses unless told.
    pub limits: Limits,
    /// Bytes of the session's output kept for [`StreamOutcome::sent`] (the rest is counted).
    pub keep: usize,
}

impl Default for StreamConfig {
    fn default() -> StreamConfig {
        StreamConfig { devices: 2, device_memory: 8 << 20, limits: Limits::default(), keep: 256 << 10 }
    }
}

/// What happened to one client byte stream.
#[derive(Debug)]
pub struct StreamOutcome {
    /// Why the session ended.
    pub end: End,
    /// What the session sent back.
    pub sent: Sent,
    /// The backend's sticky fault, if a kernel faulted.
    pub poisoned: Option<Status>,
    /// What the backend still held after the session released everything.
    pub held: Held,
    /// Allocations and bytes the session's release freed.
    pub released: (usize, u64),
}

/// Serve `input` as everything a client sent on its connection after the handshake, then
/// closed. Never blocks: the link reports the client gone once `input` is used up.
pub fn run_client_stream(input: &[u8], cfg: &StreamConfig, stats: &SessionStats) -> StreamOutcome {
    let mut backend = EmulatedBackend::with_memory(cfg.devices, cfg.device_memory);
    let (link, sent) = MemLink::with_keep(input, cfg.keep);
    let mut session = Session::new(&mut backend, Box::new(link), cfg.limits, stats);
    let end = polling::serve(&mut session, &[], Duration::ZERO, Duration::from_millis(1));
    let released = session.release_all();
    if let End::Goodbye(Some(hdr)) = &end {
        let (mut link, reply, _) = session.into_goodbye(hdr);
        // The in-memory link keeps what it is sent; it cannot fail.
        let _ = send_reply(&mut *link, reply, &[], &[]);
    } else {
        drop(session);
    }
    StreamOutcome { end, sent, poisoned: backend.poisoned(), held: backend.held(), released }
}

impl StreamOutcome {
    /// What must hold for any input: the session ended because the client said Goodbye, left
    /// or broke the protocol (never a transport failure: the in-memory link has none); what it
    /// sent is well-formed reply frames; and unless a kernel fault poisoned the backend (after
    /// which the driver refuses frees and the worker's exit releases memory), nothing is left
    /// held in the backend.
    pub fn check(&self) -> Result<(), String> {
        if let End::Transport(e) = &self.end {
            return Err(format!("the session ended with a transport error: {e}"));
        }
        let frames = self.sent.frames().map_err(|e| format!("the session sent a malformed frame: {e}"))?;
        for (i, (hdr, _)) in frames.iter().enumerate() {
            if !hdr.flags().contains(Flags::REPLY) {
                return Err(format!("frame {i} the session sent is not a reply: {hdr:?}"));
            }
        }
        if self.poisoned.is_none() && !self.held.is_empty() {
            return Err(format!("the backend still holds {:?} after the session released everything", self.held));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use remora_wire::handshake::{AuthProof, Challenge, Hello, Welcome, NONCE_LEN};
    use remora_wire::ops::{self, ImageKind};
    use remora_wire::{Header, Opcode, I32, U16, U32, U64};
    use zerocopy::IntoBytes;

    use super::*;

    /// The smallest PTX the emulated backend takes for `remora_fill_u32` (its parameter layout
    /// is read from this header).
    const FILL_PTX: &[u8] =
        b".visible .entry remora_fill_u32(.param .u64 p, .param .u32 v, .param .u64 n)\n{\n\tret;\n}\n";

    /// Builds a client stream frame by frame, learning each reply (handles, addresses) by
    /// serving the stream so far, as the client would.
    struct Script {
        bytes: Vec<u8>,
        next_id: u64,
    }

    impl Script {
        fn new() -> Script {
            Script { bytes: Vec::new(), next_id: 1 }
        }

        fn frame(&mut self, opcode: Opcode, reply: bool, parts: &[&[u8]]) {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            let id = self.next_id;
            self.next_id += 1;
            let hdr = if reply {
                Header::request(opcode, id, len as u64)
            } else {
                Header::request_no_reply(opcode, id, len as u64)
            };
            self.bytes.extend_from_slice(hdr.as_bytes());
            for p in parts {
                self.bytes.extend_from_slice(p);
            }
        }

        /// Append a request and return its (successful) reply's body.
        fn call(&mut self, opcode: Opcode, parts: &[&[u8]]) -> Vec<u8> {
            self.frame(opcode, true, parts);
            let out = run_client_stream(&self.bytes, &StreamConfig::default(), &SessionStats::default());
            let frames = out.sent.frames().unwrap();
            let (hdr, body) = frames.last().unwrap();
            assert_eq!(hdr.opcode(), Ok(opcode));
            assert_eq!(hdr.status(), Status::SUCCESS, "{opcode:?}");
            body.clone()
        }

        fn send(&mut self, opcode: Opcode, parts: &[&[u8]]) {
            self.frame(opcode, false, parts);
        }

        fn finish(mut self) -> Vec<u8> {
            self.frame(Opcode::Goodbye, true, &[]);
            self.bytes
        }
    }

    fn u64_reply(body: &[u8]) -> u64 {
        remora_wire::read::<U64>(body).unwrap().get()
    }

    /// Allocate, copy in, copy out, set, copy device to device, free.
    fn seed_memory() -> Vec<u8> {
        let mut s = Script::new();
        let a = u64_reply(&s.call(Opcode::MemAlloc, &[ops::MemAlloc::new(0, 64).as_bytes()]));
        let b = u64_reply(&s.call(Opcode::MemAlloc, &[ops::MemAlloc::new(1, 64).as_bytes()]));
        let htod = ops::MemcpyHtoD { dst: U64::new(a), len: U64::new(16), stream: U64::new(0) };
        s.call(Opcode::MemcpyHtoD, &[htod.as_bytes(), &[7; 16]]);
        let set = ops::Memset {
            dst: U64::new(a + 16),
            count: U64::new(4),
            value: U32::new(0xab),
            element_size: U32::new(4),
            stream: U64::new(0),
        };
        s.call(Opcode::Memset, &[set.as_bytes()]);
        let dtod = ops::MemcpyDtoD { dst: U64::new(b), src: U64::new(a), len: U64::new(32), stream: U64::new(0) };
        s.call(Opcode::MemcpyDtoD, &[dtod.as_bytes()]);
        let dtoh = ops::MemcpyDtoH { src: U64::new(b), len: U64::new(32), stream: U64::new(0) };
        assert_eq!(s.call(Opcode::MemcpyDtoH, &[dtoh.as_bytes()])[..16], [7; 16]);
        s.call(Opcode::MemFree, &[ops::MemFree { ptr: U64::new(a) }.as_bytes()]);
        s.finish()
    }

    /// Load a module, look up the demo kernel `remora_fill_u32`, launch it on a stream, read
    /// the result back.
    fn seed_launch() -> Vec<u8> {
        let mut s = Script::new();
        let load = ops::ModuleLoad {
            device: U32::new(0),
            kind: U32::new(ImageKind::Ptx as u32),
            len: U64::new(FILL_PTX.len() as u64),
        };
        let m = u64_reply(&s.call(Opcode::ModuleLoad, &[load.as_bytes(), FILL_PTX]));
        let name = b"remora_fill_u32";
        let sym = ops::ModuleGetSymbol { module: U64::new(m), name_len: U32::new(15), reserved: U32::new(0) };
        let f = u64_reply(&s.call(Opcode::ModuleGetFunction, &[sym.as_bytes(), name]));
        let create =
            ops::StreamCreate { device: U32::new(0), flags: U32::new(1), priority: I32::new(0), reserved: U32::new(0) };
        let stream = u64_reply(&s.call(Opcode::StreamCreate, &[create.as_bytes()]));
        let p = u64_reply(&s.call(Opcode::MemAlloc, &[ops::MemAlloc::new(0, 64).as_bytes()]));
        let mut params = [0u8; 24];
        params[..8].copy_from_slice(&p.to_le_bytes());
        params[8..12].copy_from_slice(&100u32.to_le_bytes());
        params[16..].copy_from_slice(&16u64.to_le_bytes());
        let launch = ops::Launch {
            function: U64::new(f),
            stream: U64::new(stream),
            grid: [U32::new(1), U32::new(1), U32::new(1)],
            block: [U32::new(16), U32::new(1), U32::new(1)],
            shared_mem: U32::new(0),
            params_len: U32::new(24),
            flags: U32::new(0),
            reserved: U32::new(0),
        };
        s.send(Opcode::Launch, &[launch.as_bytes(), &params]);
        s.call(Opcode::StreamSynchronize, &[ops::HandleRef { handle: U64::new(stream) }.as_bytes()]);
        let dtoh = ops::MemcpyDtoH { src: U64::new(p), len: U64::new(8), stream: U64::new(0) };
        assert_eq!(s.call(Opcode::MemcpyDtoH, &[dtoh.as_bytes()]), [100, 0, 0, 0, 101, 0, 0, 0]);
        s.finish()
    }

    /// Events, an array with a 2D copy into it, a reservation with memory mapped in it.
    fn seed_objects() -> Vec<u8> {
        let mut s = Script::new();
        let ev =
            |s: &mut Script| {
                u64_reply(&s.call(
                    Opcode::EventCreate,
                    &[ops::EventCreate { device: U32::new(0), flags: U32::new(0) }.as_bytes()],
                ))
            };
        let (e0, e1) = (ev(&mut s), ev(&mut s));
        s.send(Opcode::EventRecord, &[ops::EventRecord { event: U64::new(e0), stream: U64::new(0) }.as_bytes()]);
        s.call(Opcode::EventRecord, &[ops::EventRecord { event: U64::new(e1), stream: U64::new(0) }.as_bytes()]);
        s.call(Opcode::EventElapsedTime, &[ops::EventElapsed { start: U64::new(e0), end: U64::new(e1) }.as_bytes()]);
        let create = ops::ArrayCreate {
            device: U32::new(0),
            format: U32::new(0x01),
            channels: U32::new(1),
            flags: U32::new(0),
            width: U64::new(8),
            height: U64::new(2),
            depth: U64::new(0),
        };
        let arr = u64_reply(&s.call(Opcode::ArrayCreate, &[create.as_bytes()]));
        let copy = ops::Memcpy2D {
            src: ops::Loc2D::host(),
            dst: ops::Loc2D::array(arr, 0, 0, 0),
            width: U64::new(8),
            height: U64::new(2),
            stream: U64::new(0),
        };
        s.call(Opcode::Memcpy2D, &[copy.as_bytes(), &[3; 16]]);
        let base = u64_reply(&s.call(Opcode::MemReserve, &[ops::MemAlloc::new(0, 4096).as_bytes()]));
        s.call(Opcode::MemAllocAt, &[ops::MemAllocAt::new(0, base, 256).as_bytes()]);
        s.finish()
    }

    fn hello() -> Hello {
        Hello {
            min_version: U16::new(1),
            max_version: U16::new(1),
            client_pid: U32::new(1),
            capabilities: U64::new(1),
            client_nonce: [1; NONCE_LEN],
        }
    }

    fn frame_bytes(hdr: Header, payload: &[u8]) -> Vec<u8> {
        let mut v = hdr.as_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// Every seed, by fuzz target and file name.
    fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let alloc = ops::MemAlloc::new(0, 4096);
        let htod = ops::MemcpyHtoD { dst: U64::new(0x7e00_0000_0000), len: U64::new(8), stream: U64::new(0) };
        let launch = ops::Launch {
            function: U64::new(1),
            stream: U64::new(0),
            grid: [U32::new(1); 3],
            block: [U32::new(32), U32::new(1), U32::new(1)],
            shared_mem: U32::new(0),
            params_len: U32::new(4),
            flags: U32::new(0),
            reserved: U32::new(0),
        };
        let mut htod_payload = htod.as_bytes().to_vec();
        htod_payload.extend_from_slice(&[9; 8]);
        let mut launch_payload = launch.as_bytes().to_vec();
        launch_payload.extend_from_slice(&[1, 0, 0, 0]);

        let h = hello();
        let client_side = [
            frame_bytes(Header::request(Opcode::Hello, 0, 48), h.as_bytes()),
            frame_bytes(Header::request(Opcode::Auth, 1, 32), AuthProof { mac: [0; 32] }.as_bytes()),
        ]
        .concat();
        let challenge = Challenge {
            version: U16::new(1),
            auth_required: 0,
            reserved: [0; 5],
            capabilities: U64::new(1),
            server_nonce: [2; NONCE_LEN],
        };
        let welcome = Welcome {
            session_id: U64::new(1),
            worker_pid: U32::new(2),
            device_count: U32::new(1),
            backend: *b"emulated\0\0\0\0\0\0\0\0",
        };
        let mut ch = Header::reply(&Header::request(Opcode::Hello, 0, 0), Status::SUCCESS, 48, Status::SUCCESS);
        ch.opcode = U16::new(Opcode::Challenge as u16);
        let mut wh = Header::request(Opcode::Welcome, 1, 32);
        wh.flags = U32::new(Flags::REPLY.0);
        let server_side = [frame_bytes(ch, challenge.as_bytes()), frame_bytes(wh, welcome.as_bytes())].concat();

        vec![
            ("frame_decode", "mem_alloc", frame_bytes(Header::request(Opcode::MemAlloc, 1, 16), alloc.as_bytes())),
            ("frame_decode", "memcpy_htod", frame_bytes(Header::request(Opcode::MemcpyHtoD, 2, 32), &htod_payload)),
            ("frame_decode", "launch", frame_bytes(Header::request_no_reply(Opcode::Launch, 3, 60), &launch_payload)),
            ("handshake", "server_no_token", [&[0u8][..], &client_side].concat()),
            ("handshake", "server_token", [&[1u8][..], &client_side].concat()),
            ("handshake", "client", [&[2u8][..], &server_side].concat()),
            ("dispatch", "memory", seed_memory()),
            ("dispatch", "launch", seed_launch()),
            ("dispatch", "objects", seed_objects()),
        ]
    }

    /// The seed corpora in `fuzz/corpus/<target>/` are what [`seeds`] makes; set
    /// `REMORA_WRITE_FUZZ_SEEDS=1` to (re)write them.
    #[test]
    fn fuzz_seed_corpora_are_current() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let write = std::env::var_os("REMORA_WRITE_FUZZ_SEEDS").is_some();
        for (target, name, bytes) in seeds() {
            let path = root.join(target).join(name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let on_disk = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (REMORA_WRITE_FUZZ_SEEDS=1 writes the seeds)", path.display()));
            assert!(on_disk == bytes, "{} is stale: REMORA_WRITE_FUZZ_SEEDS=1 rewrites it", path.display());
        }
    }

    /// The dispatch seeds are whole sessions that succeed: every reply SUCCESS, ended by the
    /// Goodbye, everything released.
    #[test]
    fn dispatch_seeds_run_cleanly() {
        for (target, name, bytes) in seeds() {
            if target != "dispatch" {
                continue;
            }
            let out = run_client_stream(&bytes, &StreamConfig::default(), &SessionStats::default());
            out.check().unwrap();
            assert!(matches!(out.end, End::Goodbye(Some(_))), "{name}: {}", out.end);
            let frames = out.sent.frames().unwrap();
            assert!(frames.len() >= 5, "{name}");
            for (hdr, _) in &frames {
                assert_eq!((hdr.status(), hdr.async_status()), (Status::SUCCESS, Status::SUCCESS), "{name}: {hdr:?}");
            }
            assert_eq!(frames.last().unwrap().0.opcode(), Ok(Opcode::Goodbye));
            assert!(out.released.0 > 0, "{name} ended holding memory that the release freed");
        }
    }

    /// Streams that end mid-frame, carry garbage or break the protocol end the session without
    /// a panic, with nothing left behind.
    #[test]
    fn broken_streams_end_the_session_cleanly() {
        let stats = SessionStats::default();
        let cfg = StreamConfig::default();
        let good = seed_memory();
        for cut in [0, 1, 39, 40, 41, 56, 100, good.len() - 1] {
            let out = run_client_stream(&good[..cut], &cfg, &stats);
            out.check().unwrap();
            assert!(matches!(out.end, End::PeerClosed), "cut at {cut}: {}", out.end);
        }
        let out = run_client_stream(&[0xee; 200], &cfg, &stats);
        out.check().unwrap();
        assert!(matches!(out.end, End::Protocol(_)), "{}", out.end);
        assert!(out.sent.bytes().is_empty());
        // A reply sent by the client is a protocol violation.
        let mut rep = Header::request(Opcode::Ping, 1, 0);
        rep.flags = U32::new(Flags::REPLY.0);
        let out = run_client_stream(rep.as_bytes(), &cfg, &stats);
        assert!(matches!(out.end, End::Protocol(_)), "{}", out.end);
        // An unknown opcode is answered and the session goes on.
        let unknown = frame_bytes(Header::new(0x7777, Flags::default(), Status::SUCCESS, 1, 3), b"abc");
        let out = run_client_stream(&unknown, &cfg, &stats);
        out.check().unwrap();
        assert!(matches!(out.end, End::PeerClosed));
        assert_eq!(out.sent.frames().unwrap()[0].0.status(), Status::UNSUPPORTED_OPCODE);
    }

    /// Found by the `dispatch` fuzz target: a `MemReserve` of 124 GiB (within the default
    /// per-session limit of 64 TiB) made the emulated backend allocate its backing host memory
    /// at once, and the worker aborted when the allocation failed. Now refused like any
    /// allocation the device cannot hold, and the session goes on.
    #[test]
    fn regression_huge_reservation_is_refused_and_the_session_goes_on() {
        let cfg = StreamConfig { device_memory: crate::backend::emulated::DEVICE_MEMORY, ..StreamConfig::default() };
        let mut bytes =
            frame_bytes(Header::request(Opcode::MemReserve, 1, 16), ops::MemAlloc::new(0, 0x1f_0020_0000).as_bytes());
        bytes
            .extend(frame_bytes(Header::request(Opcode::MemReserve, 2, 16), ops::MemAlloc::new(0, 1 << 20).as_bytes()));
        let out = run_client_stream(&bytes, &cfg, &SessionStats::default());
        out.check().unwrap();
        let frames = out.sent.frames().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0.status(), Status::OUT_OF_MEMORY);
        assert_eq!(frames[1].0.status(), Status::SUCCESS, "a reservation the device can back still works");
    }
}
