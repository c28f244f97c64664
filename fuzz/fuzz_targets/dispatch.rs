//! Arbitrary bytes as everything a client sent on its connection after the handshake, served by
//! a session on the EMULATED backend as a worker serves it (two devices, so frames are routed
//! between polling threads; `remora serve`'s default limits) until the bytes are used up.
//!
//! Must never panic, hang or allocate without bound (libFuzzer's -rss_limit_mb and
//! -malloc_limit_mb catch that); the session must end with a Goodbye, a protocol violation or
//! the client gone, send only well-formed replies, and leave nothing held in the backend
//! (`remora_server::testing::StreamOutcome::check`).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use remora_server::stats::SessionStats;
use remora_server::testing::{run_client_stream, StreamConfig};

/// One set of counters and latency histograms for every run (they take a few MiB to set up).
static STATS: OnceLock<SessionStats> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let stats = STATS.get_or_init(SessionStats::default);
    let outcome = run_client_stream(data, &StreamConfig::default(), stats);
    if let Err(why) = outcome.check() {
        panic!("{why} (session ended: {})", outcome.end);
    }
});
