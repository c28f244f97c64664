//! The whole path: allocate, copy, launch with arguments, streams, events, errors.

use remora_interpose::client::{pack_params, Client, LaunchDims};
use remora_server::backend::demo_kernels::DEMO_PTX;
use remora_tests::{start_server, url_of, urls};
use remora_wire::ops::ImageKind;
use remora_wire::Status;
use zerocopy::IntoBytes;

use crate::helper;

fn saxpy_round(c: &Client, n: usize) {
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
    let bytes = (n * 4) as u64;
    let dx = c.mem_alloc(0, bytes).unwrap();
    let dy = c.mem_alloc(0, bytes).unwrap();
    let s = c.stream_create(0, 1, 0).unwrap();
    c.memcpy_htod_async(dx, x.as_bytes(), s).unwrap();
    c.memcpy_htod(dy, y.as_bytes()).unwrap();
    let m = c.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx).unwrap();
    let f = c.module_get_function(m, "remora_saxpy").unwrap();
    let layout = c.func_param_info(f).unwrap();
    assert_eq!(layout, vec![(0, 4), (8, 8), (16, 8), (24, 8)]);
    let params =
        pack_params(&layout, &[&3.0f32.to_le_bytes(), &dx.to_le_bytes(), &dy.to_le_bytes(), &(n as u64).to_le_bytes()])
            .unwrap();
    let (e0, e1) = (c.event_create(0, 0).unwrap(), c.event_create(0, 0).unwrap());
    c.event_record(e0, s).unwrap();
    c.launch(f, LaunchDims { grid: [(n as u32).div_ceil(256), 1, 1], block: [256, 1, 1], shared_mem: 0 }, s, &params)
        .unwrap();
    c.event_record(e1, s).unwrap();
    c.stream_synchronize(s).unwrap();
    assert!(c.event_query(e1).unwrap());
    assert!(c.event_elapsed(e0, e1).unwrap() >= 0.0);
    let mut out = vec![0f32; n];
    c.memcpy_dtoh_on(out.as_mut_bytes(), dy, s).unwrap();
    for i in 0..n {
        assert_eq!(out[i], 3.0 * x[i] + y[i], "element {i}");
    }
    // memset + device-to-device copy
    c.memset(dx, 0x01020304, 4, n as u64, 0, true).unwrap();
    c.memcpy_dtod(dy, dx, bytes, 0, true).unwrap();
    let mut w = vec![0u32; n];
    c.memcpy_dtoh(w.as_mut_bytes(), dy).unwrap();
    assert!(w.iter().all(|&v| v == 0x01020304));
    // a global
    let (g, gsize) = c.module_get_global(m, "remora_counter").unwrap();
    assert_eq!(gsize, 4);
    c.memcpy_htod(g, &5u32.to_le_bytes()).unwrap();
    let count = c.module_get_function(m, "remora_count").unwrap();
    let cl = c.func_param_info(count).unwrap();
    c.launch(
        count,
        LaunchDims { grid: [2, 1, 1], block: [32, 1, 1], shared_mem: 0 },
        0,
        &pack_params(&cl, &[&2u32.to_le_bytes()]).unwrap(),
    )
    .unwrap();
    let mut gv = [0u8; 4];
    c.memcpy_dtoh(&mut gv, g).unwrap();
    assert_eq!(u32::from_le_bytes(gv), 5 + 2 * 64);
    for e in [e0, e1] {
        c.event_destroy(e).unwrap();
    }
    c.stream_destroy(s).unwrap();
    c.module_unload(m).unwrap();
    // The global is no longer copyable once its module is gone.
    assert_eq!(c.memcpy_htod(g, &[0; 4]), Err(Status::OUT_OF_RANGE));
    c.mem_free(dx).unwrap();
    c.mem_free(dy).unwrap();
}

#[test]
fn saxpy_over_tcp_and_shm() {
    let sup = start_server(&helper(), "basics", |_| {});
    for url in urls(&sup) {
        let c = Client::connect(&url, None).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(c.device_count().unwrap() >= 1);
        let info = c.device_info(0).unwrap();
        assert!(!info.name_str().is_empty());
        assert!(info.total_mem.get() > 0);
        saxpy_round(&c, 100_000);
        c.close().unwrap();
    }
}

#[test]
fn bad_arguments_get_errors_and_the_session_goes_on() {
    let sup = start_server(&helper(), "badargs", |_| {});
    for url in urls(&sup) {
        let c = Client::connect(&url, None).unwrap();
        let p = c.mem_alloc(0, 4096).unwrap();
        // Out of range, past the end, overflowing, unowned.
        assert_eq!(c.memcpy_htod(p + 4000, &[0u8; 200]), Err(Status::OUT_OF_RANGE));
        assert_eq!(c.memcpy_dtoh(&mut [0u8; 8], p + 4095), Err(Status::OUT_OF_RANGE));
        assert_eq!(c.memcpy_dtod(p, u64::MAX - 2, 8, 0, true), Err(Status::OUT_OF_RANGE));
        assert_eq!(c.memset(0x1234, 0, 1, 16, 0, true), Err(Status::OUT_OF_RANGE));
        assert_eq!(c.mem_free(p + 8), Err(Status::INVALID_VALUE));
        assert_eq!(c.memset(p, 0, 3, 16, 0, true), Err(Status::INVALID_VALUE));
        // Bad handles and devices.
        assert_eq!(c.stream_synchronize(0xdead_0000_0001), Err(Status::INVALID_HANDLE));
        assert_eq!(c.event_destroy(7), Err(Status::INVALID_HANDLE));
        assert_eq!(c.mem_alloc(999, 16), Err(Status::INVALID_DEVICE));
        assert_eq!(c.module_get_function(12345, "x"), Err(Status::INVALID_HANDLE));
        let m = c.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx).unwrap();
        assert_eq!(c.module_get_function(m, "no_such_kernel"), Err(Status::NOT_FOUND));
        // A stale handle is refused after destroy.
        let s = c.stream_create(0, 0, 0).unwrap();
        c.stream_destroy(s).unwrap();
        assert_eq!(c.stream_destroy(s), Err(Status::INVALID_HANDLE));
        // Fire-and-forget failure surfaces at the next replying call, once.
        c.memcpy_htod_async(p + 4096, &[1, 2, 3], 0).unwrap();
        assert_eq!(c.ping(), Err(Status::OUT_OF_RANGE));
        assert_eq!(c.ping(), Ok(()));
        // Still fully working.
        c.memcpy_htod(p, &[9u8; 4096]).unwrap();
        let mut back = [0u8; 4096];
        c.memcpy_dtoh(&mut back, p).unwrap();
        assert!(back.iter().all(|&b| b == 9));
        c.mem_free(p).unwrap();
        c.close().unwrap();
    }
}

#[test]
fn unloading_one_module_keeps_every_other_handle() {
    let sup = start_server(&helper(), "handles", |_| {});
    for url in urls(&sup) {
        let c = Client::connect(&url, None).unwrap();
        let m1 = c.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx).unwrap();
        let m2 = c.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx).unwrap();
        let f1 = c.module_get_function(m1, "remora_fill_u32").unwrap();
        let f2 = c.module_get_function(m2, "remora_fill_u32").unwrap();
        let s = c.stream_create(0, 0, 0).unwrap();
        let e = c.event_create(0, 0).unwrap();
        c.module_unload(m2).unwrap();
        assert_eq!(c.func_get_attribute(f2, 0), Err(Status::INVALID_HANDLE), "the unloaded module's function is gone");
        assert!(c.func_get_attribute(f1, 0).unwrap() > 0, "the other module's function keeps its handle");
        let p = c.mem_alloc(0, 4 * 1024).unwrap();
        let params = pack_params(
            &c.func_param_info(f1).unwrap(),
            &[&p.to_le_bytes(), &7u32.to_le_bytes(), &1024u64.to_le_bytes()],
        )
        .unwrap();
        c.launch(f1, LaunchDims { grid: [4, 1, 1], block: [256, 1, 1], shared_mem: 0 }, s, &params).unwrap();
        c.event_record(e, s).unwrap();
        c.event_synchronize(e).unwrap();
        let mut out = vec![0u32; 1024];
        c.memcpy_dtoh(out.as_mut_bytes(), p).unwrap();
        assert!(out.iter().enumerate().all(|(i, &v)| v == 7 + i as u32));
        c.close().unwrap();
    }
}

#[test]
fn many_threads_share_one_client() {
    let sup = start_server(&helper(), "threads", |_| {});
    let url = urls(&sup)[0].clone();
    let c = std::sync::Arc::new(Client::connect(&url, None).unwrap());
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let c = std::sync::Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let len = 1 + (i as usize * 37) % 5000;
                    let p = c.mem_alloc(0, len as u64).unwrap();
                    let data = vec![t ^ (i as u8); len];
                    c.memcpy_htod(p, &data).unwrap();
                    let mut back = vec![0u8; len];
                    c.memcpy_dtoh(&mut back, p).unwrap();
                    assert_eq!(back, data);
                    c.mem_free(p).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = sup.stats();
    assert_eq!(st.live_sessions, 1);
    assert_eq!(st.live_allocations, 0);
}

#[test]
fn one_session_uses_every_device() {
    let sup = start_server(&helper(), "multidev", |_| {});
    for url in urls(&sup) {
        let c = Client::connect(&url, None).unwrap();
        let n = c.device_count().unwrap();
        if n < 2 {
            eprintln!("skipped one_session_uses_every_device on {url}: the server has {n} device(s)");
            continue;
        }
        let len = 1 << 16;
        let mut bufs = Vec::new();
        for dev in 0..n {
            let p = c.mem_alloc(dev, 4 * len as u64).unwrap();
            let m = c.module_load(dev, DEMO_PTX.as_bytes(), ImageKind::Ptx).unwrap();
            let f = c.module_get_function(m, "remora_fill_u32").unwrap();
            let layout = c.func_param_info(f).unwrap();
            let params =
                pack_params(&layout, &[&p.to_le_bytes(), &(dev * 1000).to_le_bytes(), &(len as u64).to_le_bytes()])
                    .unwrap();
            let s = c.stream_create(dev, 1, 0).unwrap();
            c.launch(f, LaunchDims { grid: [64, 1, 1], block: [256, 1, 1], shared_mem: 0 }, s, &params).unwrap();
            c.stream_synchronize(s).unwrap();
            bufs.push((dev, p, m, s));
        }
        for &(dev, p, _, _) in &bufs {
            let mut out = vec![0u32; len];
            c.memcpy_dtoh(out.as_mut_bytes(), p).unwrap();
            assert!(out.iter().enumerate().all(|(i, &v)| v == dev * 1000 + i as u32), "device {dev} result");
        }
        // Device 1's data copied into device 0's buffer.
        let (_, p0, _, _) = bufs[0];
        let (_, p1, _, _) = bufs[1];
        c.memcpy_dtod(p0, p1, 4 * len as u64, 0, true).unwrap();
        let mut out = vec![0u32; len];
        c.memcpy_dtoh(out.as_mut_bytes(), p0).unwrap();
        assert!(out.iter().enumerate().all(|(i, &v)| v == 1000 + i as u32), "cross-device copy");
        // Work for devices other than 0 ran on their own polling threads.
        let routed: u64 = sup.stats().sessions.iter().map(|s| s.stats.routed).sum();
        assert!(routed >= 5, "device 1's operations should run on its polling thread (routed {routed})");
        for (dev, p, m, s) in bufs {
            c.stream_destroy(s).unwrap();
            c.module_unload(m).unwrap();
            c.mem_free(p).unwrap();
            c.device_synchronize(dev).unwrap();
        }
        c.close().unwrap();
    }
}

#[test]
fn peer_access_enable_and_disable() {
    let sup = start_server(&helper(), "peers", |_| {});
    let url = urls(&sup)[0].clone();
    let c = Client::connect(&url, None).unwrap();
    if c.device_count().unwrap() < 2 {
        eprintln!("skipped peer_access_enable_and_disable: fewer than 2 devices");
        return;
    }
    assert!(c.can_access_peer(0, 1).unwrap());
    assert_eq!(c.set_peer_access(0, 1, true), Ok(()));
    assert_eq!(c.set_peer_access(0, 1, true), Err(Status(704)), "already enabled");
    assert_eq!(c.set_peer_access(0, 1, false), Ok(()));
    assert_eq!(c.set_peer_access(0, 1, false), Err(Status(705)), "not enabled");
    assert_eq!(c.set_peer_access(0, 0, true), Err(Status::INVALID_DEVICE));
    assert_eq!(c.set_peer_access(0, 9, true), Err(Status::INVALID_DEVICE));
    c.close().unwrap();
}

/// Copies of several pinned staging halves (and a remainder) from pageable memory, waited-for
/// and asynchronous, land byte for byte; a bad destination is refused without losing the
/// stream (the next call works).
#[test]
fn large_pageable_copies_through_pinned_staging() {
    let sup = start_server(&helper(), "staging", |_| {});
    for url in urls(&sup) {
        let c = Client::connect(&url, None).unwrap();
        let n = (9 << 20) + 1;
        let data: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        let p = c.mem_alloc(0, n as u64).unwrap();
        c.memcpy_htod(p, &data).unwrap();
        let mut back = vec![0u8; n];
        c.memcpy_dtoh(&mut back, p).unwrap();
        assert!(back == data, "{url}: waited-for copy");
        let s = c.stream_create(0, 1, 0).unwrap();
        let rev: Vec<u8> = data.iter().rev().copied().collect();
        c.memcpy_htod_async(p, &rev, s).unwrap();
        c.memcpy_htod_async(p + 4096, &rev[..3 << 20], s).unwrap();
        c.stream_synchronize(s).unwrap();
        c.memcpy_dtoh(&mut back, p).unwrap();
        let mut want = rev.clone();
        want[4096..4096 + (3 << 20)].copy_from_slice(&rev[..3 << 20]);
        assert!(back == want, "{url}: asynchronous copies in stream order");
        assert_eq!(c.memcpy_htod(p + 1, &data), Err(Status::OUT_OF_RANGE), "{url}: one byte too far");
        c.memcpy_htod(p, &data[..2 << 20]).expect("the link stayed in step");
        c.stream_destroy(s).unwrap();
        c.mem_free(p).unwrap();
        c.close().unwrap();
    }
}

/// Over tcp, copies of 4 MiB and more travel on extra connections (the stripes), in pieces
/// split over them; the bytes arrive whole in both directions, refused copies leave the stripes
/// in step, and small copies keep using the main connection.
#[test]
fn large_tcp_copies_travel_on_the_stripes() {
    let sup = start_server(&helper(), "stripes", |_| {});
    let url = url_of(&sup, "tcp://");
    let c = Client::connect(&url, None).unwrap();
    assert!(c.stripe_count() >= 2, "a tcp session gets extra connections (got {})", c.stripe_count());
    let shm = url_of(&sup, "shm://");
    assert_eq!(Client::connect(&shm, None).unwrap().stripe_count(), 0, "shm sessions have none");
    let max = (40 << 20) + 3;
    let dev = c.mem_alloc(0, max as u64).unwrap();
    let s = c.stream_create(0, 1, 0).unwrap();
    for (i, len) in [4usize << 20, (4 << 20) + 1, 16 << 20, (16 << 20) + 4097, max].into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|j| (j.wrapping_mul(7) + i) as u8).collect();
        if i % 2 == 0 {
            c.memcpy_htod(dev, &data).unwrap();
        } else {
            c.memcpy_htod_async(dev, &data, s).unwrap();
            c.stream_synchronize(s).unwrap();
        }
        let mut back = vec![0u8; len];
        c.memcpy_dtoh(&mut back, dev).unwrap();
        assert!(back == data, "a {len}-byte round trip over the stripes changed the bytes");
        // A refused copy in each direction, then the stripes are still in step.
        let big = vec![1u8; len];
        assert_eq!(c.memcpy_htod(dev + 4096, &vec![0u8; max]).unwrap_err(), Status::OUT_OF_RANGE);
        let mut sink = vec![0u8; max];
        assert_eq!(c.memcpy_dtoh(&mut sink, dev + 4096).unwrap_err(), Status::OUT_OF_RANGE);
        c.memcpy_htod(dev, &big).unwrap();
        let mut again = vec![0u8; len];
        c.memcpy_dtoh(&mut again, dev).unwrap();
        assert!(again == big);
    }
    // Small copies still work beside them.
    c.memcpy_htod(dev, &[9u8; 100]).unwrap();
    let mut small = [0u8; 100];
    c.memcpy_dtoh(&mut small, dev).unwrap();
    assert_eq!(small, [9u8; 100]);
    c.mem_free(dev).unwrap();
    c.close().unwrap();
}

/// A shared file mapped here, which the worker maps at the same address (an arena, as the
/// client library makes for `cudaMallocHost` over shm).
fn shared_arena(c: &Client, len: usize) -> u64 {
    let name = format!("remora-arena-e2e-{}-{len}", std::process::id());
    let path = std::ffi::CString::new(format!("/dev/shm/{name}")).unwrap();
    // SAFETY: a fresh file of this test; the mapping is never unmapped (the test process ends).
    let addr = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600 as libc::c_uint);
        assert!(fd >= 0, "creating {name}");
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        assert_ne!(p, libc::MAP_FAILED);
        libc::close(fd);
        p as u64
    };
    c.arena_map(addr, len as u64, &name).expect("the worker maps the arena");
    // SAFETY: as above.
    unsafe { libc::unlink(path.as_ptr()) };
    addr
}

/// Over shm, large pageable copies can go through a shared bounce arena in chunks, several in
/// flight: every byte arrives, and a chunk the worker refuses fails the copy with its status
/// while the replies still owed are read, so the session stays in step.
#[test]
fn bounced_copies_arrive_whole_and_fail_cleanly() {
    let sup = start_server(&helper(), "bounce", |_| {});
    let url = url_of(&sup, "shm://");
    let c = Client::connect(&url, None).unwrap();
    let (slot, slots) = (1 << 20, 3);
    let arena = shared_arena(&c, slot * slots);
    let copy = |from: &[u8], to: &mut [u8]| to.copy_from_slice(from);
    let n = (7 << 20) + 5;
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 253) as u8).collect();
    let dev = c.mem_alloc(0, n as u64).unwrap();
    // SAFETY: the arena is mapped by both processes and used by this thread alone.
    unsafe { c.memcpy_htod_bounced(dev, &data, 0, (arena, slot, slots), &copy) }.unwrap();
    let mut back = vec![0u8; n];
    c.memcpy_dtoh(&mut back, dev).unwrap();
    assert!(back == data, "bounced in, read by the message path");
    let mut bounced = vec![0u8; n - 3];
    // SAFETY: as above.
    unsafe { c.memcpy_dtoh_bounced(&mut bounced, dev + 3, 0, (arena, slot, slots), &copy) }.unwrap();
    assert!(bounced[..] == data[3..], "read back through the arena");

    // An earlier fire-and-forget failure is reported by the bounced copy, as by any call,
    // and the copy still moves every byte (as the message path does).
    let bad = c.memset(0x10, 0, 1, 4, 0, true).unwrap_err();
    for to_device in [false, true] {
        let mut got = vec![0u8; n - 3];
        if to_device {
            c.memset(dev, 0, 1, n as u64, 0, true).unwrap();
        }
        c.memset(0x10, 0, 1, 4, 0, false).unwrap();
        // SAFETY: as above.
        let r = unsafe {
            if to_device {
                c.memcpy_htod_bounced(dev, &data, 0, (arena, slot, slots), &copy)
            } else {
                c.memcpy_dtoh_bounced(&mut got, dev + 3, 0, (arena, slot, slots), &copy)
            }
        };
        assert_eq!(r, Err(bad), "the earlier failure is reported (to device: {to_device})");
        if !to_device {
            assert!(got[..] == data[3..], "every byte arrived despite the earlier failure");
        }
        c.ping().expect("reported once");
    }
    c.memcpy_dtoh(&mut back, dev).unwrap();
    assert!(back == data, "the bounced copy to the device moved every byte despite the earlier failure");

    // Past the end of the allocation from the third chunk on: refused, the session goes on.
    let small = c.mem_alloc(0, (2 << 20) + 100).unwrap();
    let mut out = vec![0u8; 6 << 20];
    // SAFETY: as above.
    let r = unsafe { c.memcpy_dtoh_bounced(&mut out, small, 0, (arena, slot, slots), &copy) };
    assert_eq!(r, Err(Status::OUT_OF_RANGE));
    // SAFETY: as above.
    let r = unsafe { c.memcpy_htod_bounced(small, &data[..6 << 20], 0, (arena, slot, slots), &copy) };
    assert_eq!(r, Err(Status::OUT_OF_RANGE));
    c.ping().expect("every reply was read: the session is in step");
    let mut head = vec![0u8; 2 << 20];
    c.memcpy_dtoh(&mut head, small).unwrap();
    assert!(head[..] == data[..2 << 20], "the chunks before the refused one were copied");
    c.mem_free(small).unwrap();
    c.mem_free(dev).unwrap();
    c.close().unwrap();
}

/// Over tcp, fire-and-forget frames are batched (several per send), yet each leaves within the
/// batch window without any later call: the worker sees small asynchronous copies while the
/// client makes no other call, in order, and a waiting call still finds everything before it.
#[test]
fn batched_frames_leave_without_a_later_call() {
    let sup = start_server(&helper(), "batch", |_| {});
    let url = url_of(&sup, "tcp://");
    let c = Client::connect(&url, None).unwrap();
    // Fewer bytes than a batch holds, so only the window can send them.
    let (pieces, size, stride) = (32usize, 512usize, 400usize);
    let len = (pieces - 1) * stride + size;
    let dev = c.mem_alloc(0, len as u64).unwrap();
    let s = c.stream_create(0, 1, 0).unwrap();
    let mut want = vec![0u8; len];
    for i in 0..pieces {
        // Overlapping pieces: the last one written to a byte wins only if order holds.
        let piece = vec![u8::try_from(i + 1).unwrap(); size];
        let at = i * stride;
        c.memcpy_htod_async(dev + at as u64, &piece, s).unwrap();
        want[at..at + size].copy_from_slice(&piece);
    }
    let want_in = (pieces * size) as u64;
    let (st, ok) = remora_tests::wait_stats(&sup, std::time::Duration::from_secs(5), |st| {
        st.sessions.iter().any(|x| x.stats.bytes_in >= want_in)
    });
    assert!(ok, "the batched copies did not reach the worker without a later call: {st:?}");
    let counted = c.batch_counters();
    assert_eq!(counted.frames, pieces as u64, "every copy went into a batch");
    assert!(counted.sends < counted.frames, "several frames per send: {counted:?}");
    c.stream_synchronize(s).unwrap();
    let mut back = vec![0u8; len];
    c.memcpy_dtoh(&mut back, dev).unwrap();
    assert!(back == want, "batched copies applied in order");
    c.close().unwrap();
}

/// Over tcp, the flusher sends batches outside the connection lock while other threads post
/// and wait: every waiting call still finds each frame its thread posted before it applied.
#[test]
fn batched_frames_keep_their_order_across_threads() {
    let sup = start_server(&helper(), "batch-order", |_| {});
    let url = url_of(&sup, "tcp://");
    let c = Client::connect(&url, None).unwrap();
    let threads = 4u64;
    let dev = c.mem_alloc(0, threads * 64).unwrap();
    std::thread::scope(|s| {
        for t in 0..threads {
            let c = &c;
            s.spawn(move || {
                let at = dev + t * 64;
                for i in 0..2000u32 {
                    let v = [u8::try_from((i + u32::try_from(t).unwrap() * 7) % 251).unwrap(); 64];
                    c.memcpy_htod_async(at, &v, 0).unwrap();
                    if i % 2 == 0 {
                        // Wait about one batch window, so the flusher is often in the middle of
                        // sending this frame when the read below is sent.
                        let wait = std::time::Duration::from_micros(u64::from(8 + i % 7));
                        let t0 = std::time::Instant::now();
                        while t0.elapsed() < wait {
                            std::hint::spin_loop();
                        }
                    }
                    let mut back = [0u8; 64];
                    c.memcpy_dtoh(&mut back, at).unwrap();
                    assert_eq!(back, v, "thread {t} copy {i}: a later request overtook its batch");
                }
            });
        }
    });
    assert!(c.batch_counters().frames > 0, "the copies were batched");
    c.close().unwrap();
}

/// An asynchronous error carried by a reply that fails on its own (or answers "not ready") is
/// not lost: the next call that succeeds reports it, once.
#[test]
fn an_async_error_behind_a_failed_reply_is_reported_later() {
    let sup = start_server(&helper(), "deferred", |_| {});
    for url in urls(&sup) {
        let c = Client::connect(&url, None).unwrap();
        let bad = c.memset(0x10, 0, 1, 4, 0, true).unwrap_err();
        c.memset(0x10, 0, 1, 4, 0, false).unwrap(); // fails on the worker, reported later
        let own = c.mem_free(0xdead_0000).unwrap_err();
        assert_ne!(own, Status::SUCCESS);
        assert_eq!(c.ping(), Err(bad), "{url}: the earlier failure is reported by the next call that succeeds");
        c.ping().expect("reported once");
        c.close().unwrap();
    }
}
