//! A kernel fault in one session leaves every other session, and every later one, working.

use remora_interpose::client::{pack_params, Client, LaunchDims};
use remora_server::backend::demo_kernels::DEMO_PTX;
use remora_tests::{start_server, test_backend, urls};
use remora_wire::ops::ImageKind;
use remora_wire::Status;

use crate::helper;

fn assert_kernel(c: &Client, flag_value: i32) -> Result<(), Status> {
    let flag = c.mem_alloc(0, 4)?;
    c.memcpy_htod(flag, &flag_value.to_le_bytes())?;
    let m = c.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx)?;
    let f = c.module_get_function(m, "remora_assert")?;
    let layout = c.func_param_info(f)?;
    c.launch(
        f,
        LaunchDims { grid: [1, 1, 1], block: [1, 1, 1], shared_mem: 0 },
        0,
        &pack_params(&layout, &[&flag.to_le_bytes()])?,
    )?;
    c.device_synchronize(0)
}

fn busy_work(c: &Client) {
    let p = c.mem_alloc(0, 1 << 16).unwrap();
    for i in 0..20u8 {
        c.memcpy_htod(p, &[i; 1 << 16]).unwrap();
        let mut b = vec![0u8; 1 << 16];
        c.memcpy_dtoh(&mut b, p).unwrap();
        assert!(b.iter().all(|&v| v == i));
    }
    c.mem_free(p).unwrap();
}

#[test]
fn device_assert_poisons_only_its_session() {
    eprintln!("backend under test: {:?}", test_backend());
    let sup = start_server(&helper(), "faults", |c| c.pool_size = 3);
    for url in urls(&sup) {
        let bystander = Client::connect(&url, None).unwrap();
        busy_work(&bystander);
        let victim = Client::connect(&url, None).unwrap();
        assert_eq!(assert_kernel(&victim, 0), Ok(()), "a passing assert is fine");
        assert_eq!(assert_kernel(&victim, 1), Err(Status::ASSERT), "the failing assert surfaces at the sync");
        assert_eq!(victim.ping(), Err(Status::ASSERT), "and is sticky for the session");
        busy_work(&bystander);
        let later = Client::connect(&url, None).unwrap();
        busy_work(&later);
        assert_eq!(assert_kernel(&later, 0), Ok(()));
        for c in [bystander, later] {
            c.close().unwrap();
        }
    }
}

/// A kernel writing through a bad pointer (`CUDA_ERROR_ILLEGAL_ADDRESS`, sticky, like the assert).
fn illegal_address_kernel(c: &Client) -> Result<(), Status> {
    let m = c.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx)?;
    let f = c.module_get_function(m, "remora_fill_u32")?;
    let layout = c.func_param_info(f)?;
    let bad: u64 = 0x10; // never a device allocation
    let p = pack_params(&layout, &[&bad.to_le_bytes(), &1u32.to_le_bytes(), &256u64.to_le_bytes()])?;
    c.launch(f, LaunchDims { grid: [1, 1, 1], block: [64, 1, 1], shared_mem: 0 }, 0, &p)?;
    c.device_synchronize(0)
}

/// Eight sessions run the checked mixed workload while, one after another, sessions inject
/// device asserts and illegal-address faults: every faulting session is poisoned (sticky error),
/// every running session finishes with zero errors, and a session opened afterwards works.
#[test]
fn faults_injected_while_many_sessions_run_hit_only_their_own_session() {
    let sup = start_server(&helper(), "faultload", |c| {
        c.pool_size = 4;
        c.spin = std::time::Duration::ZERO;
        c.worker_wait = std::time::Duration::from_secs(120);
    });
    for url in urls(&sup) {
        let (load, faults) = std::thread::scope(|s| {
            let load = s.spawn(|| remora_tests::load::run_many(&url, 8, 600, std::time::Duration::from_secs(300)));
            let mut faults = Vec::new();
            for k in 0..6 {
                let c = Client::connect(&url, None).unwrap();
                busy_work(&c);
                let r = if k % 2 == 0 { assert_kernel(&c, 1) } else { illegal_address_kernel(&c) };
                faults.push((r, c.ping()));
            }
            (load.join().unwrap(), faults)
        });
        for (k, (r, after)) in faults.iter().enumerate() {
            let want = if k % 2 == 0 { Status::ASSERT } else { Status::ILLEGAL_ADDRESS };
            assert_eq!(*r, Err(want), "{url}: fault {k}");
            assert_eq!(*after, Err(want), "{url}: fault {k} is sticky for its session");
        }
        match load {
            Ok(reports) => assert!(reports.iter().all(|r| r.ops == 600), "{url}: {reports:?}"),
            Err(failures) => panic!("{url}: sessions running beside the faults failed:\n{}", failures.join("\n")),
        }
        let later = Client::connect(&url, None).unwrap();
        busy_work(&later);
        assert_eq!(assert_kernel(&later, 0), Ok(()));
        later.close().unwrap();
    }
}
