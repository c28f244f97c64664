//! Large host memory copies split over a few persistent helper threads: one core copies
//! 8–10 GB/s, below what the DMA engine and the memory sustain (the driver's own pageable copies
//! reach 14–18 GB/s on the H100/H200 machines, docs/BENCHMARKS.md). Used by `bounce.rs`.
//!
//! `REMORA_COPY_THREADS` (1–8) sets how many threads copy, the caller included; the default is
//! half this machine's cores, at most 4.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Parts smaller than this are not worth a helper's wake-up.
const MIN_PART: usize = 512 << 10;

/// Threads that copy (the caller and its helpers).
fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let default = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4));
        match std::env::var("REMORA_COPY_THREADS") {
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) => n.clamp(1, 8),
                Err(_) => {
                    tracing::warn!("REMORA_COPY_THREADS={v:?} is not a whole number; using {default}");
                    default
                }
            },
            Err(_) => default,
        }
    })
}

/// Counts parts still being copied; the caller waits for zero.
struct Latch {
    left: Mutex<usize>,
    zero: Condvar,
}

impl Latch {
    fn done(&self) {
        let mut left = self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *left -= 1;
        if *left == 0 {
            self.zero.notify_all();
        }
    }

    fn wait(&self) {
        let mut left = self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *left > 0 {
            left = self.zero.wait(left).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// One part for a helper.
struct Job {
    from: *const u8,
    to: *mut u8,
    len: usize,
    latch: Arc<Latch>,
}

// SAFETY: a job's pointers stay valid until its latch is released: `copy` waits for the latch
// (also when unwinding) before its borrows of `from` and `to` end.
unsafe impl Send for Job {}

/// The helpers' queues, started on first use; empty when none could be started, and in a
/// child forked after they started (its helpers do not exist: fork copies only the caller).
fn helpers() -> &'static [Mutex<Sender<Job>>] {
    static HELPERS: OnceLock<(u32, Vec<Mutex<Sender<Job>>>)> = OnceLock::new();
    let (pid, helpers) = HELPERS.get_or_init(|| (std::process::id(), start_helpers(threads() - 1)));
    if *pid == std::process::id() {
        helpers
    } else {
        &[]
    }
}

/// Start `n` helper threads (fewer if the system refuses); their queues.
fn start_helpers(n: usize) -> Vec<Mutex<Sender<Job>>> {
    (1..=n)
        .map_while(|i| {
            let (tx, rx) = mpsc::channel::<Job>();
            let spawned = std::thread::Builder::new().name(format!("remora-copy-{i}")).spawn(move || {
                for job in rx {
                    // SAFETY: per `Job`'s contract, both ranges are valid and disjoint until
                    // the latch is released, which happens after this copy.
                    unsafe { std::ptr::copy_nonoverlapping(job.from, job.to, job.len) };
                    job.latch.done();
                }
            });
            spawned.ok().map(|_| Mutex::new(tx))
        })
        .collect()
}

/// Waits for the helpers' parts when dropped, so no helper touches the buffers after `copy`
/// returns or unwinds.
struct WaitOnDrop(Arc<Latch>);

impl Drop for WaitOnDrop {
    fn drop(&mut self) {
        self.0.wait();
    }
}

/// Copy `from` into `to` (equal lengths), split over the helper threads when large.
pub(crate) fn copy(from: &[u8], to: &mut [u8]) {
    copy_with(helpers(), from, to);
}

/// [`copy`] with these helpers.
fn copy_with(helpers: &[Mutex<Sender<Job>>], from: &[u8], to: &mut [u8]) {
    assert_eq!(from.len(), to.len(), "parallel copy of unequal lengths");
    let parts = (helpers.len() + 1).min(from.len() / MIN_PART).max(1);
    if parts == 1 {
        to.copy_from_slice(from);
        return;
    }
    let part = from.len().div_ceil(parts).next_multiple_of(4096);
    let latch = Arc::new(Latch { left: Mutex::new(0), zero: Condvar::new() });
    let guard = WaitOnDrop(latch.clone());
    let mut pieces = from.chunks(part).zip(to.chunks_mut(part));
    let Some((first_from, first_to)) = pieces.next() else { return };
    for ((f, t), helper) in pieces.zip(helpers) {
        *latch.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        let job = Job { from: f.as_ptr(), to: t.as_mut_ptr(), len: f.len(), latch: latch.clone() };
        if let Err(mpsc::SendError(job)) = helper.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(job) {
            // The helper is gone: copy its part here.
            t.copy_from_slice(f);
            job.latch.done();
        }
    }
    first_to.copy_from_slice(first_from);
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| u8::try_from(i % 251).unwrap() ^ seed).collect()
    }

    #[test]
    fn every_byte_is_copied_whatever_the_size_and_helpers() {
        // Helpers started here, whatever this machine's default (CI has 2 cores: one thread).
        for pool in [start_helpers(0), start_helpers(1), start_helpers(3)] {
            for len in [0, 1, MIN_PART - 1, MIN_PART * 2 + 77, (9 << 20) + 123] {
                let from = pattern(len, 0);
                let mut to = vec![0u8; len];
                copy_with(&pool, &from, &mut to);
                assert!(from == to, "{len} bytes, {} helpers", pool.len());
            }
        }
        // The process-wide pool (its size from REMORA_COPY_THREADS or the cores).
        let from = pattern(3 << 20, 7);
        let mut to = vec![0u8; from.len()];
        copy(&from, &mut to);
        assert!(from == to);
    }

    #[test]
    fn concurrent_callers_share_the_helpers() {
        let pool = start_helpers(3);
        assert_eq!(pool.len(), 3);
        let len = 4 << 20;
        std::thread::scope(|s| {
            for k in 0..4u8 {
                let pool = &pool;
                s.spawn(move || {
                    let from = pattern(len, k.wrapping_mul(37).wrapping_add(1));
                    for _ in 0..8 {
                        let mut to = vec![0u8; len];
                        copy_with(pool, &from, &mut to);
                        assert!(from == to, "caller {k}");
                    }
                });
            }
        });
    }
}
