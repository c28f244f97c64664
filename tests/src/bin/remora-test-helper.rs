//! Test helper process.
//! - `worker`: a session worker (what `remora worker` runs).
//! - `client-hold URL N`: connect, allocate N × 1 MiB, print `HELD <worker pid>`, then sleep
//!   until killed.
//! - `client-churn URL SEED`: connect, print `READY`, then run the mixed workload of
//!   `remora_tests::load` until killed (the churn test kills it at a random point).
//! - `client-cut URL`: connect (token from `REMORA_TOKEN`), allocate, print `READY`, wait for a
//!   line on stdin, then copy from the device and print `FAILED <status> <ms>` or `OK <ms>`.
//! - `load URL CLIENTS OPS`: that many clients at once, each running OPS operations of the
//!   workload with every result checked; prints a summary, exits 1 on any failure.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("worker") => {
            remora_tests::init_logging();
            std::process::exit(remora_server::worker::worker_main());
        }
        Some("client-hold") => {
            let url = args.get(2).expect("URL");
            let n: u32 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1);
            let c = remora_interpose::client::Client::connect(url, None).expect("connect");
            for i in 0..n {
                let p = c.mem_alloc(0, 1 << 20).expect("alloc");
                c.memset(p, i, 1, 1 << 20, 0, true).expect("memset");
            }
            println!("HELD {}", c.welcome().worker_pid.get());
            std::io::stdout().flush().expect("flush");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Some("client-rdma-stream") => {
            // Pinned copies through RDMA READ/WRITE for ever (the test kills this process).
            let url = args.get(2).expect("URL");
            let token = std::env::var("REMORA_TOKEN").ok();
            let c = remora_interpose::client::Client::connect(url, token.as_deref()).expect("connect");
            const LEN: usize = 16 << 20;
            let dev = c.mem_alloc(0, LEN as u64).expect("alloc");
            let mut host = vec![7u8; LEN];
            // SAFETY: `host` lives until the process is killed.
            let rkey =
                unsafe { c.register_remote(host.as_mut_ptr() as usize, LEN) }.expect("rdma link").expect("register");
            println!("READY {}", c.welcome().worker_pid.get());
            std::io::stdout().flush().expect("flush");
            loop {
                let addr = host.as_ptr() as u64;
                c.memcpy_remote(dev, addr, LEN as u64, 0, rkey, true, true).expect("host to device");
                c.memcpy_remote(dev, addr, LEN as u64, 0, rkey, false, true).expect("device to host");
            }
        }
        Some("client-churn") => {
            let url = args.get(2).expect("URL");
            let seed: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1);
            let c = remora_interpose::client::Client::connect(url, None).expect("connect");
            println!("READY {}", c.welcome().worker_pid.get());
            std::io::stdout().flush().expect("flush");
            let r = remora_tests::load::Workload::new(seed).run(&c, u64::MAX, None);
            eprintln!("churn client ended on its own: {r:?}");
            std::process::exit(3);
        }
        Some("client-cut") => {
            let url = args.get(2).expect("URL");
            let token = std::env::var("REMORA_TOKEN").ok();
            let c = remora_interpose::client::Client::connect(url, token.as_deref()).expect("connect");
            let p = c.mem_alloc(0, 4096).expect("alloc");
            println!("READY");
            std::io::stdout().flush().expect("flush");
            let mut go = String::new();
            std::io::stdin().read_line(&mut go).expect("stdin");
            let t = std::time::Instant::now();
            let mut b = [0u8; 4096];
            match c.memcpy_dtoh(&mut b, p) {
                Ok(()) => println!("OK {}", t.elapsed().as_millis()),
                Err(s) => println!("FAILED {s:?} {}", t.elapsed().as_millis()),
            }
        }
        Some("load") => {
            let url = args.get(2).expect("URL");
            let clients: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(64);
            let ops: u64 = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(2000);
            let t = std::time::Instant::now();
            match remora_tests::load::run_many(url, clients, ops, std::time::Duration::from_secs(3600)) {
                Ok(reports) => {
                    let total: u64 = reports.iter().map(|r| r.ops).sum();
                    let checked: u64 = reports.iter().map(|r| r.bytes_checked).sum();
                    let launches: u64 = reports.iter().map(|r| r.launches).sum();
                    println!(
                        "load: {} clients, {total} operations ({launches} launches), {checked} bytes checked, 0 errors, {:.1} s",
                        reports.len(),
                        t.elapsed().as_secs_f64()
                    );
                }
                Err(failures) => {
                    for f in &failures {
                        println!("FAILED {f}");
                    }
                    std::process::exit(1);
                }
            }
        }
        _ => {
            eprintln!(
                "usage: remora-test-helper worker | client-hold URL N | client-churn URL SEED | load URL CLIENTS OPS"
            );
            std::process::exit(2);
        }
    }
}
