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
