//! Token authentication, listener defaults, and isolation between sessions.

use remora_interpose::client::{Client, ConnectError};
use remora_server::supervisor::{Config, Supervisor};
use remora_tests::{start_server, urls};
use remora_wire::Status;

use crate::helper;

#[test]
fn token_is_required_and_checked() {
    let sup = start_server(&helper(), "token", |c| c.token = Some("s3cret".into()));
    for url in urls(&sup) {
        let e = Client::connect(&url, None).unwrap_err();
        assert!(matches!(e, ConnectError::Handshake { .. }), "{e}");
        assert!(e.to_string().contains("requires a token"), "{e}");
        let e = Client::connect(&url, Some("wrong")).unwrap_err();
        assert!(e.to_string().contains("AUTH_FAILED"), "{e}");
        let c = Client::connect(&url, Some("s3cret")).unwrap();
        c.ping().unwrap();
        c.close().unwrap();
    }
}

#[test]
fn non_loopback_listener_needs_a_token() {
    let cfg = Config::new(vec!["tcp://0.0.0.0:0".parse().unwrap()], (helper().into(), vec!["worker".into()]));
    let e = Supervisor::start(cfg).unwrap_err();
    assert!(e.to_string().contains("token is required"), "{e}");
}

/// A session cannot read, write, set, copy or free memory it did not allocate (another
/// session's): every such call is refused and the session goes on. A kernel given another
/// session's pointer faults in its own session only (separate worker process and context); the
/// owner's data is intact.
#[test]
fn a_session_cannot_touch_another_sessions_memory() {
    use remora_interpose::client::{pack_params, LaunchDims};
    use remora_server::backend::demo_kernels::{DEMO_PTX, FILL_U32};
    use remora_wire::ops::ImageKind;

    let sup = start_server(&helper(), "isolation", |_| {});
    for url in urls(&sup) {
        let a = Client::connect(&url, None).unwrap();
        let b = Client::connect(&url, None).unwrap();
        let pb = b.mem_alloc(0, 4096).unwrap();
        // Each session's worker has its own address space, so a's pointer may be a number b
        // also owns; take one of a's allocations that b does not.
        let pa = (0..16)
            .map(|_| a.mem_alloc(0, 4096).unwrap())
            .find(|&p| b.mem_get_address_range(p).is_err())
            .expect("one of a's allocations is not an address b owns");
        a.memcpy_htod(pa, &[0x42; 4096]).unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(b.memcpy_dtoh(&mut buf, pa), Err(Status::OUT_OF_RANGE), "{url}: read");
        assert_eq!(b.memcpy_htod(pa, &[1; 16]), Err(Status::OUT_OF_RANGE), "{url}: write");
        assert_eq!(b.memset(pa, 0, 1, 16, 0, true), Err(Status::OUT_OF_RANGE), "{url}: memset");
        assert_eq!(b.memcpy_dtod(pb, pa, 16, 0, true), Err(Status::OUT_OF_RANGE), "{url}: copy from");
        assert_eq!(b.memcpy_dtod(pa, pb, 16, 0, true), Err(Status::OUT_OF_RANGE), "{url}: copy to");
        assert_eq!(b.mem_free(pa), Err(Status::INVALID_VALUE), "{url}: free");
        b.memcpy_htod(pb, &[3; 16]).expect("the refused session goes on");

        // A kernel of b writing at a's address.
        let m = b.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx).unwrap();
        let f = b.module_get_function(m, FILL_U32).unwrap();
        let layout = b.func_param_info(f).unwrap();
        let p = pack_params(&layout, &[&pa.to_le_bytes(), &7u32.to_le_bytes(), &1024u64.to_le_bytes()]).unwrap();
        let _ = b.launch(f, LaunchDims { grid: [1, 1, 1], block: [32, 1, 1], shared_mem: 0 }, 0, &p);
        let fault = b.device_synchronize(0);
        a.memcpy_dtoh(&mut buf, pa).unwrap();
        assert_eq!(buf, [0x42; 4096], "{url}: the owner's data is intact (b's launch: {fault:?})");
        a.close().unwrap();
    }
}
