//! Fire-and-forget frames gathered into one send (`tcp://`).
//!
//! Over TCP every send is a system call that also runs the receiver's TCP input path, and a
//! worker fed one small segment per launch spends longer per frame than the launch itself
//! (docs/BENCHMARKS.md, `launch_burst_100`). So fire-and-forget frames — launches, memsets,
//! small asynchronous copies — are appended to the connection's [`Batch`] instead of sent. The
//! batch leaves:
//! - with the next request that waits for a reply, in the same send (a launch followed by a
//!   synchronisation still costs one system call);
//! - when it reaches [`MAX`] bytes;
//! - at the latest a short window after its first frame: the [`Flusher`] thread sends it, so a
//!   launch followed by a long stretch of host work still reaches the GPU within microseconds.
//!   It sends outside the connection lock (on a second handle of the socket, in order with
//!   every other send through the connection's wire lock), so a call posting meanwhile is not
//!   held up by that send.
//!
//! `REMORA_BATCH_US` sets the window in microseconds (default 10; 0 sends every frame at once,
//! as shm and rdma links always do). The flusher spins through short windows and for 50 µs
//! after each batch (the next frame of a burst, or of a launch-and-synchronise loop, finds it
//! awake), then parks; windows of 100 µs or more are slept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A batch is sent once it holds this many bytes.
pub(super) const MAX: usize = 64 << 10;
/// Frames carrying more inline data than this are sent at once (after the batch).
pub(super) const INLINE_MAX: usize = 16 << 10;
/// How long the flusher spins for the next batch before it parks: as long as the client spins
/// for a reply. A parked flusher costs the next batch's first frame a wake-up (a system call
/// of 1–2 µs on the caller's thread: measured on an H100 host as launch + synchronize over tcp
/// ~2 µs slower with a 20 µs spin, where one iteration takes ~20 µs).
const SPIN: Duration = Duration::from_micros(50);
/// Windows at least this long are slept, not spun.
const SLEEP_FROM: Duration = Duration::from_micros(100);

/// The window from `REMORA_BATCH_US`; `None`: batching off.
pub(super) fn window() -> Option<Duration> {
    window_from(std::env::var("REMORA_BATCH_US").ok())
}

fn window_from(v: Option<String>) -> Option<Duration> {
    let us = match v {
        Some(v) => match v.trim().parse::<u64>() {
            Ok(us) => us.min(10_000),
            Err(_) => {
                tracing::warn!("REMORA_BATCH_US={v:?} is not a whole number of microseconds; using 10");
                10
            }
        },
        None => 10,
    };
    (us > 0).then(|| Duration::from_micros(us))
}

/// Encoded frames waiting to be sent, oldest first.
#[derive(Debug, Default)]
pub(super) struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    /// Append one frame's parts; whether the batch was empty before.
    pub(super) fn push(&mut self, parts: &[&[u8]]) -> bool {
        let was_empty = self.bytes.is_empty();
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        was_empty
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Move the frames into `out` (empty), leaving this batch empty with `out`'s old buffer.
    pub(super) fn take_into(&mut self, out: &mut Vec<u8>) {
        debug_assert!(out.is_empty());
        std::mem::swap(&mut self.bytes, out);
    }

    /// Forget the frames (sent, or the connection is gone); the buffer is kept.
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
    }
}

struct State {
    /// A batch was started and not handed to the flusher yet.
    pending: AtomicBool,
    stop: AtomicBool,
}

/// The thread that sends a batch a window after its first frame.
pub(super) struct Flusher {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Start the thread; `flush` sends whatever is batched. `None` if no thread can be started
    /// (the caller then sends every frame at once).
    pub(super) fn start(window: Duration, mut flush: impl FnMut() + Send + 'static) -> Option<Flusher> {
        let state = Arc::new(State { pending: AtomicBool::new(false), stop: AtomicBool::new(false) });
        let s = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("remora-batch".into())
            .spawn(move || run(&s, window, &mut flush))
            .map_err(|e| tracing::warn!("no batching of fire-and-forget frames: {e}"))
            .ok()?;
        Some(Flusher { state, thread: Some(thread) })
    }

    /// A batch has started: it must leave within the window.
    pub(super) fn notify(&self) {
        self.state.pending.store(true, Ordering::Release);
        if let Some(t) = &self.thread {
            // Cheap unless the flusher is parked (then one wake-up).
            t.thread().unpark();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn run(state: &State, window: Duration, flush: &mut dyn FnMut()) {
    loop {
        let idle_since = Instant::now();
        while !state.pending.swap(false, Ordering::AcqRel) {
            if state.stop.load(Ordering::Acquire) {
                // The client is going: what is batched still leaves.
                flush();
                return;
            }
            if idle_since.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::park_timeout(Duration::from_millis(100));
            }
        }
        // Let the batch grow for the window, then send it.
        if window >= SLEEP_FROM {
            std::thread::sleep(window);
        } else {
            let until = Instant::now() + window;
            while Instant::now() < until && !state.stop.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
        }
        flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_batch_grows_and_clears() {
        let mut b = Batch::default();
        assert!(b.is_empty());
        assert!(b.push(&[b"ab", b"", b"c"]));
        assert!(!b.push(&[b"de"]));
        assert_eq!((b.bytes(), b.len()), (&b"abcde"[..], 5));
        b.clear();
        assert!(b.is_empty() && b.push(&[b"x"]));
    }

    #[test]
    fn the_flusher_sends_within_the_window_and_on_drop() {
        let sent = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&sent);
        let f = Flusher::start(Duration::from_micros(10), move || {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        // Let it park, then wake it: the flush comes without any other call.
        std::thread::sleep(Duration::from_millis(5));
        f.notify();
        let t0 = Instant::now();
        while sent.load(Ordering::SeqCst) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(5), "no flush after a notify");
            std::thread::yield_now();
        }
        let before = sent.load(Ordering::SeqCst);
        drop(f);
        assert!(sent.load(Ordering::SeqCst) > before, "dropping the flusher flushes once more");
    }

    #[test]
    fn the_window_has_a_default_an_off_switch_and_a_cap() {
        let w = |v: Option<&str>| window_from(v.map(String::from));
        assert_eq!(w(None), Some(Duration::from_micros(10)));
        assert_eq!(w(Some(" 25 ")), Some(Duration::from_micros(25)));
        assert_eq!(w(Some("0")), None);
        assert_eq!(w(Some("junk")), Some(Duration::from_micros(10)));
        assert_eq!(w(Some("99999999")), Some(Duration::from_millis(10)));
    }
}
