//! Behaviour every backend must share, run against the emulated backend in every test run and
//! against the CUDA backend on a GPU machine (`gpu_conformance`, run with `--ignored`). Only checks that hold on
//! real hardware belong here; emulator-only details live in `emulated.rs`'s tests.

#![allow(clippy::unwrap_used)]

use super::demo_kernels as demo;
use super::{ArrayDesc, Backend, Copy2D, LaunchConfig, Mem2D};
use remora_wire::ops::{self, TexObjectCreate};
use remora_wire::Status;
use remora_wire::{U32, U64};

fn cfg(grid: u32, block: u32) -> LaunchConfig {
    LaunchConfig { grid: [grid, 1, 1], block: [block, 1, 1], shared_mem: 0, cooperative: false }
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn read_u32(b: &mut dyn Backend, dev: u32, ptr: u64) -> u32 {
    let mut w = [0u8; 4];
    b.memcpy_dtoh(dev, &mut w, ptr, None).unwrap();
    u32::from_le_bytes(w)
}

/// Everything except faults (run [`assert_poisons`] last: it poisons the backend).
pub(super) fn run_all(b: &mut dyn Backend) {
    devices(b);
    memory(b);
    streams_and_events(b);
    arrays_and_textures(b);
    kernels(b);
}

/// A 16 × 8 float array: host ↔ array copies (whole and a rectangle), array ↔ device memory,
/// array → array, a texture and a surface object over it, a stream's access policy window.
fn arrays_and_textures(b: &mut dyn Backend) {
    let desc = ArrayDesc { width: 16, height: 8, depth: 0, format: 0x20, channels: 1, flags: 0 };
    let arr = b.array_create(0, &desc).unwrap();
    let arr2 = b.array_create(0, &desc).unwrap();
    let host: Vec<u8> = (0..16 * 8 * 4).map(|i| (i % 251) as u8).collect();
    let whole = |src, dst| Copy2D { src, dst, width: 64, height: 8 };
    let at = |raw, x, y| Mem2D::Array { raw, x, y, z: 0 };
    b.memcpy_2d(0, &whole(Mem2D::Host, at(arr, 0, 0)), &host, &mut [], None).unwrap();
    let mut back = vec![0u8; host.len()];
    b.memcpy_2d(0, &whole(at(arr, 0, 0), Mem2D::Host), &[], &mut back, None).unwrap();
    assert_eq!(back, host);
    // A 2 × 3 rectangle at byte column 8, row 2.
    let patch = [0xeeu8; 24];
    let rect = Copy2D { src: Mem2D::Host, dst: at(arr, 8, 2), width: 8, height: 3 };
    b.memcpy_2d(0, &rect, &patch, &mut [], None).unwrap();
    b.memcpy_2d(0, &whole(at(arr, 0, 0), Mem2D::Host), &[], &mut back, None).unwrap();
    for (i, (&got, &was)) in back.iter().zip(&host).enumerate() {
        let (row, col) = (i / 64, i % 64);
        let inside = (2..5).contains(&row) && (8..16).contains(&col);
        assert_eq!(got, if inside { 0xee } else { was }, "byte {i}");
    }
    // Array → device (pitch 128) → array2 → host.
    let d = b.mem_alloc(0, 128 * 8).unwrap();
    let dev_end = Mem2D::Device { ptr: d, pitch: 128 };
    b.memcpy_2d(0, &whole(at(arr, 0, 0), dev_end), &[], &mut [], None).unwrap();
    b.memcpy_2d(0, &whole(dev_end, at(arr2, 0, 0)), &[], &mut [], None).unwrap();
    let mut back2 = vec![0u8; host.len()];
    b.memcpy_2d(0, &whole(at(arr2, 0, 0), Mem2D::Host), &[], &mut back2, None).unwrap();
    assert_eq!(back2, back);
    b.memcpy_2d(0, &whole(at(arr, 0, 0), at(arr2, 0, 0)), &[], &mut [], None).unwrap();

    let mut t: TexObjectCreate = zerocopy::FromZeros::new_zeroed();
    t.res_type = U32::new(ops::RES_ARRAY);
    t.array = U64::new(arr);
    t.address_mode = [U32::new(1); 3];
    let tex = b.tex_object_create(0, &t).unwrap();
    assert_ne!(tex, 0);
    b.tex_object_destroy(0, tex).unwrap();
    assert_eq!(b.tex_object_destroy(0, tex), Err(Status::INVALID_HANDLE));
    let surf_desc = ArrayDesc { flags: 2, ..desc };
    let sarr = b.array_create(0, &surf_desc).unwrap();
    let surf = b.surf_object_create(0, sarr).unwrap();
    b.surf_object_destroy(0, surf).unwrap();

    // An access policy window on a stream reads back (hitProp persisting = 2).
    let s = b.stream_create(0, 0, 0).unwrap();
    let mut v = [0u8; 64];
    v[..8].copy_from_slice(&d.to_le_bytes());
    v[8..16].copy_from_slice(&1024u64.to_le_bytes());
    v[16..20].copy_from_slice(&0.5f32.to_le_bytes());
    v[20..24].copy_from_slice(&2u32.to_le_bytes());
    v[24..28].copy_from_slice(&1u32.to_le_bytes());
    b.stream_set_attribute(0, Some(s), ops::STREAM_ATTR_ACCESS_POLICY_WINDOW, &v).unwrap();
    let r = b.stream_get_attribute(0, Some(s), ops::STREAM_ATTR_ACCESS_POLICY_WINDOW).unwrap();
    assert_eq!(r[20..24], v[20..24], "hitProp");
    v[8..16].fill(0);
    b.stream_set_attribute(0, Some(s), ops::STREAM_ATTR_ACCESS_POLICY_WINDOW, &v).unwrap();
    b.ctx_reset_persisting_l2(0).unwrap();
    b.stream_destroy(0, s).unwrap();

    for a in [arr, arr2, sarr] {
        b.array_destroy(0, a).unwrap();
    }
    assert_eq!(b.array_destroy(0, arr), Err(Status::INVALID_HANDLE));
    b.mem_free(0, d).unwrap();

    // A 3D array (8 × 4 × 3 floats): each slice written on its own, one read back through device
    // memory, a rectangle of one slice overwritten in place.
    let desc = ArrayDesc { width: 8, height: 4, depth: 3, format: 0x20, channels: 1, flags: 0 };
    let vol = b.array_create(0, &desc).unwrap();
    let slice = |z: u8| -> Vec<u8> { (0..128u8).map(|i| i.wrapping_mul(3).wrapping_add(z * 50)).collect() };
    let whole = |src, dst| Copy2D { src, dst, width: 32, height: 4 };
    for z in 0..3u8 {
        let to = Mem2D::Array { raw: vol, x: 0, y: 0, z: u64::from(z) };
        b.memcpy_2d(0, &whole(Mem2D::Host, to), &slice(z), &mut [], None).unwrap();
    }
    let lin = b.mem_alloc(0, 128).unwrap();
    let from = Mem2D::Array { raw: vol, x: 0, y: 0, z: 2 };
    b.memcpy_2d(0, &whole(from, Mem2D::Device { ptr: lin, pitch: 32 }), &[], &mut [], None).unwrap();
    let mut got = vec![0u8; 128];
    b.memcpy_dtoh(0, &mut got, lin, None).unwrap();
    assert_eq!(got, slice(2), "slice 2 through device memory");
    let patch = Copy2D { src: Mem2D::Host, dst: Mem2D::Array { raw: vol, x: 4, y: 1, z: 1 }, width: 8, height: 2 };
    b.memcpy_2d(0, &patch, &[0xee; 16], &mut [], None).unwrap();
    for z in 0..3u8 {
        let from = Mem2D::Array { raw: vol, x: 0, y: 0, z: u64::from(z) };
        b.memcpy_2d(0, &whole(from, Mem2D::Host), &[], &mut got, None).unwrap();
        let mut want = slice(z);
        if z == 1 {
            for row in 1..3 {
                want[row * 32 + 4..row * 32 + 12].fill(0xee);
            }
        }
        assert_eq!(got, want, "slice {z}");
    }
    b.mem_free(0, lin).unwrap();
    b.array_destroy(0, vol).unwrap();
}

fn devices(b: &mut dyn Backend) {
    assert!(b.device_count() >= 1);
    assert!(b.driver_version() >= 12000, "{}", b.driver_version());
    let info = b.device_info(0).unwrap();
    assert!(!info.name_str().is_empty());
    assert!(info.total_mem.get() > 0);
    assert!(info.attribute(75) >= 7, "compute capability major {}", info.attribute(75));
    assert_eq!(info.attribute(1), 1024, "max threads per block");
    assert_eq!(info.attribute(10), 32, "warp size");
    assert_eq!(b.device_attribute(0, 75).unwrap(), info.attribute(75));
    let (free, total) = b.mem_get_info(0).unwrap();
    assert!(free <= total && total > 0);
    assert_eq!(b.device_info(b.device_count()).map(|_| ()), Err(Status::INVALID_DEVICE));
    b.device_synchronize(0).unwrap();
}

fn memory(b: &mut dyn Backend) {
    let n = 1 << 20;
    let a = b.mem_alloc(0, n).unwrap();
    let c = b.mem_alloc(0, n).unwrap();
    assert_eq!(a % 256, 0);
    assert_ne!(a, c);
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    b.memcpy_htod(0, a, &data, None).unwrap();
    b.memcpy_dtod(0, c, a, n, None).unwrap();
    let mut back = vec![0u8; data.len()];
    b.memcpy_dtoh(0, &mut back, c, None).unwrap();
    assert!(back == data, "round trip through two allocations");
    // Offsets inside an allocation.
    let mut part = [0u8; 16];
    b.memcpy_dtoh(0, &mut part, a + 1000, None).unwrap();
    assert_eq!(part[..], data[1000..1016]);

    b.memset(0, a, 0xab, 1, 5, None).unwrap();
    b.memset(0, a + 6, 0xbeef, 2, 3, None).unwrap();
    b.memset(0, a + 12, 0xdead_beef, 4, 2, None).unwrap();
    let mut m = [0u8; 24];
    b.memcpy_dtoh(0, &mut m, a, None).unwrap();
    assert_eq!(m[..5], [0xab; 5]);
    assert_eq!(m[5], data[5], "memset stops at its count");
    assert_eq!(m[6..12], [0xef, 0xbe, 0xef, 0xbe, 0xef, 0xbe]);
    assert_eq!(u32s(&m[12..20]), [0xdead_beef, 0xdead_beef]);
    assert_eq!(m[20..24], data[20..24]);

    // Address space reserved first, memory mapped at a chosen address inside it later (not
    // granule-aligned), as for a client's pinned host range; and memory anywhere.
    let res = b.mem_reserve(0, 8 << 20).unwrap();
    let at = res + (2 << 20) + 0x1230;
    assert_eq!(b.mem_alloc_at(0, at, 3 << 20).unwrap(), at);
    assert_eq!(b.mem_alloc_at(0, at, 16), Err(Status::ADDRESS_IN_USE));
    assert_eq!(b.mem_alloc_at(0, at + 4096, 16), Err(Status::ADDRESS_IN_USE));
    b.memcpy_htod(0, at + (2 << 20), &data[..4096], None).unwrap();
    b.memcpy_dtod(0, a, at + (2 << 20), 4096, None).unwrap();
    b.memcpy_dtoh(0, &mut back[..4096], a, None).unwrap();
    assert!(back[..4096] == data[..4096], "through the mapping in the reservation");
    b.mem_free(0, at).unwrap();
    assert_eq!(b.mem_free(0, at), Err(Status::INVALID_VALUE), "freed once");
    assert_eq!(b.mem_alloc_at(0, at, 64).unwrap(), at, "mapped again after the free");
    b.mem_unreserve(0, res).unwrap();
    assert_eq!(b.mem_unreserve(0, res), Err(Status::INVALID_VALUE));
    let anywhere = b.mem_alloc_at(0, 0, 4096).unwrap();
    b.memcpy_htod(0, anywhere, &data[..4096], None).unwrap();
    b.mem_free(0, anywhere).unwrap();

    let (free_before, _) = b.mem_get_info(0).unwrap();
    let big = b.mem_alloc(0, 64 << 20).unwrap();
    let (free_after, _) = b.mem_get_info(0).unwrap();
    assert!(free_after + (60 << 20) <= free_before, "{free_before} → {free_after}");
    b.mem_free(0, big).unwrap();
    b.mem_free(0, a).unwrap();
    b.mem_free(0, c).unwrap();
    assert_eq!(b.mem_alloc(0, 0), Err(Status::INVALID_VALUE));
}

fn streams_and_events(b: &mut dyn Backend) {
    let s = b.stream_create(0, 1, 0).unwrap();
    let e0 = b.event_create(0, 0).unwrap();
    let e1 = b.event_create(0, 0).unwrap();
    let buf = b.mem_alloc(0, 4 << 20).unwrap();
    b.event_record(0, e0, Some(s)).unwrap();
    for _ in 0..8 {
        b.memset(0, buf, 1, 4, 1 << 20, Some(s)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    b.event_record(0, e1, Some(s)).unwrap();
    b.event_synchronize(0, e1).unwrap();
    b.event_query(0, e1).unwrap();
    b.stream_query(0, Some(s)).unwrap();
    let ms = b.event_elapsed(0, e0, e1).unwrap();
    assert!((0.0..10_000.0).contains(&ms), "{ms}");
    b.stream_wait_event(0, None, e1, 0).unwrap();
    b.stream_synchronize(0, None).unwrap();
    b.stream_synchronize(0, Some(s)).unwrap();
    b.event_destroy(0, e0).unwrap();
    b.event_destroy(0, e1).unwrap();
    b.stream_destroy(0, s).unwrap();
    b.mem_free(0, buf).unwrap();
}

fn kernels(b: &mut dyn Backend) {
    let m = b.module_load(0, demo::DEMO_PTX.as_bytes()).unwrap();
    for name in demo::KERNELS {
        let f = b.module_get_function(0, m, name).unwrap();
        assert_eq!(b.func_param_info(0, f).unwrap(), demo::param_layout(name).unwrap(), "{name}");
        assert!(b.func_get_attribute(0, f, 0).unwrap() > 0, "{name}: max threads per block");
    }
    assert_eq!(b.module_get_function(0, m, "no_such_kernel"), Err(Status::NOT_FOUND));
    assert_eq!(b.module_get_global(0, m, "no_such_global"), Err(Status::NOT_FOUND));
    let s = b.stream_create(0, 0, 0).unwrap();

    // saxpy, grid-stride: fewer threads than elements.
    let n: u64 = 10_000;
    let n_us = 10_000usize;
    let x = b.mem_alloc(0, n * 4).unwrap();
    let y = b.mem_alloc(0, n * 4).unwrap();
    let xs: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let ys: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 / 2.0).collect();
    b.memcpy_htod(0, x, &xs.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(), Some(s)).unwrap();
    b.memcpy_htod(0, y, &ys.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(), Some(s)).unwrap();
    let saxpy = b.module_get_function(0, m, demo::SAXPY).unwrap();
    let mut p = vec![0u8; 32];
    p[..4].copy_from_slice(&2.5f32.to_le_bytes());
    p[8..16].copy_from_slice(&x.to_le_bytes());
    p[16..24].copy_from_slice(&y.to_le_bytes());
    p[24..].copy_from_slice(&n.to_le_bytes());
    b.launch(0, saxpy, &cfg(4, 128), Some(s), &p).unwrap();
    let mut out = vec![0u8; n_us * 4];
    b.memcpy_dtoh(0, &mut out, y, Some(s)).unwrap();
    for (i, c) in out.chunks_exact(4).enumerate() {
        let got = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        assert_eq!(got, 2.5f32.mul_add(xs[i], ys[i]), "saxpy y[{i}]");
    }

    // fill_u32, wrapping, through the legacy stream.
    let fill = b.module_get_function(0, m, demo::FILL_U32).unwrap();
    let cnt: u64 = 1000;
    let cnt_us = 1000usize;
    let ptr = b.mem_alloc(0, cnt * 4 + 4).unwrap();
    b.memset(0, ptr, 0x5555_5555, 4, cnt + 1, None).unwrap();
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&ptr.to_le_bytes());
    p[8..12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    p[16..].copy_from_slice(&cnt.to_le_bytes());
    b.launch(0, fill, &cfg(2, 64), None, &p).unwrap();
    let mut out = vec![0u8; cnt_us * 4 + 4];
    b.memcpy_dtoh(0, &mut out, ptr, None).unwrap();
    let words = u32s(&out);
    for (i, (&w, k)) in words[..cnt_us].iter().zip(0u32..).enumerate() {
        assert_eq!(w, 0xffff_fff0u32.wrapping_add(k), "fill p[{i}]");
    }
    assert_eq!(words[cnt_us], 0x5555_5555, "fill stops at n");

    // empty, plain and cooperative.
    let empty = b.module_get_function(0, m, demo::EMPTY).unwrap();
    b.launch(0, empty, &cfg(1, 1), None, &[]).unwrap();
    b.launch(0, empty, &LaunchConfig { cooperative: true, ..cfg(2, 32) }, Some(s), &[]).unwrap();
    assert_eq!(b.launch(0, empty, &cfg(1, 2048), None, &[]), Err(Status::INVALID_VALUE));

    // count: the global adds once per thread; cooperative launches pass parameters too.
    let count = b.module_get_function(0, m, demo::COUNT).unwrap();
    let (counter, size) = b.module_get_global(0, m, demo::COUNTER).unwrap();
    assert_eq!(size, 4);
    b.memset(0, counter, 0, 4, 1, None).unwrap();
    b.launch(0, count, &cfg(2, 64), None, &3u32.to_le_bytes()).unwrap();
    assert_eq!(read_u32(b, 0, counter), 384);
    let grid3 = LaunchConfig { grid: [2, 2, 1], block: [8, 2, 2], shared_mem: 0, cooperative: false };
    b.launch(0, count, &grid3, None, &1u32.to_le_bytes()).unwrap();
    assert_eq!(read_u32(b, 0, counter), 384 + 128);
    b.launch(0, count, &LaunchConfig { cooperative: true, ..cfg(2, 32) }, None, &10u32.to_le_bytes()).unwrap();
    assert_eq!(read_u32(b, 0, counter), 384 + 128 + 640);
    // A second load of the module has its own counter.
    let m2 = b.module_load(0, demo::DEMO_PTX.as_bytes()).unwrap();
    let (counter2, _) = b.module_get_global(0, m2, demo::COUNTER).unwrap();
    assert_ne!(counter2, counter);
    b.module_unload(0, m2).unwrap();

    // assert with a zero flag passes.
    let flag = b.mem_alloc(0, 4).unwrap();
    b.memset(0, flag, 0, 4, 1, None).unwrap();
    let assert_fn = b.module_get_function(0, m, demo::ASSERT).unwrap();
    b.launch(0, assert_fn, &cfg(1, 32), None, &flag.to_le_bytes()).unwrap();
    b.device_synchronize(0).unwrap();

    b.stream_synchronize(0, Some(s)).unwrap();
    b.stream_destroy(0, s).unwrap();
    for p in [x, y, ptr, flag] {
        b.mem_free(0, p).unwrap();
    }
    b.module_unload(0, m).unwrap();

    // Other devices work the same way.
    if b.device_count() > 1 {
        let m = b.module_load(1, demo::DEMO_PTX.as_bytes()).unwrap();
        let fill = b.module_get_function(1, m, demo::FILL_U32).unwrap();
        let ptr = b.mem_alloc(1, 16).unwrap();
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&ptr.to_le_bytes());
        p[8..12].copy_from_slice(&7u32.to_le_bytes());
        p[16..].copy_from_slice(&4u64.to_le_bytes());
        b.launch(1, fill, &cfg(1, 4), None, &p).unwrap();
        let mut out = [0u8; 16];
        b.memcpy_dtoh(1, &mut out, ptr, None).unwrap();
        assert_eq!(u32s(&out), [7, 8, 9, 10]);
        b.mem_free(1, ptr).unwrap();
        b.module_unload(1, m).unwrap();
    }
}

/// A failing device-side assert is sticky: the launch or the next synchronising call reports
/// `ASSERT`, and so does every later call. Poisons the backend (on CUDA: the whole process).
pub(super) fn assert_poisons(b: &mut dyn Backend) {
    let m = b.module_load(0, demo::DEMO_PTX.as_bytes()).unwrap();
    let f = b.module_get_function(0, m, demo::ASSERT).unwrap();
    let flag = b.mem_alloc(0, 4).unwrap();
    b.memcpy_htod(0, flag, &1i32.to_le_bytes(), None).unwrap();
    match b.launch(0, f, &cfg(1, 1), None, &flag.to_le_bytes()) {
        Ok(()) => assert_eq!(b.device_synchronize(0), Err(Status::ASSERT)),
        Err(e) => assert_eq!(e, Status::ASSERT),
    }
    assert_eq!(b.device_synchronize(0), Err(Status::ASSERT));
    assert_eq!(b.mem_alloc(0, 16), Err(Status::ASSERT));
    let mut w = [0u8; 4];
    assert_eq!(b.memcpy_dtoh(0, &mut w, flag, None), Err(Status::ASSERT));
    assert_eq!(b.module_load(0, demo::DEMO_PTX.as_bytes()), Err(Status::ASSERT));
    assert!(b.device_count() >= 1, "device_count still answers");
}
