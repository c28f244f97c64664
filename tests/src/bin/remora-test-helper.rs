//! Test helper process.
//! - `worker`: a session worker (what `remora worker` runs).
//! - `client-hold URL N`: connect, allocate N × 1 MiB, print `HELD <worker pid>`, then sleep
//!   until killed.

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
        _ => {
            eprintln!("usage: remora-test-helper worker | client-hold URL N");
            std::process::exit(2);
        }
    }
}
