//! Large device → host copies into pageable memory over `shm://`, through a bounce arena: a
//! small shared pinned region (an arena, `arena.rs`) the worker has registered with the driver.
//! The worker DMAs chunk k straight into slot k % [`SLOTS`] and answers; meanwhile this process
//! copies the chunks already there into the caller's memory. One DMA and one CPU copy per byte,
//! overlapped — the shape of the driver's own pageable copy — where the message path costs a
//! DMA into the worker's staging, a copy into the ring and a copy out of it.

use parking_lot::Mutex;
use remora_transport::Endpoint;
use remora_wire::Status;

use crate::state::Runtime;

/// Copies at least this large take the bounce arena.
pub(crate) const MIN: usize = 1 << 20;
/// Largest chunk (one slot).
const SLOT: usize = 4 << 20;
/// Slots: chunks in flight.
const SLOTS: usize = 3;
/// Smallest chunk: a copy is cut into at least four chunks, so its first DMA is short.
const MIN_CHUNK: usize = 256 << 10;

enum State {
    Untried,
    /// The worker could not map it (or `REMORA_SHM_BOUNCE=0`): the message path is used.
    Unavailable,
    Ready(usize),
}

static BOUNCE: Mutex<State> = Mutex::new(State::Untried);

/// `REMORA_SHM_BOUNCE=0` turns the bounce arena off (to compare with the message path).
fn enabled() -> bool {
    std::env::var_os("REMORA_SHM_BOUNCE").is_none_or(|v| v != "0")
}

/// `REMORA_COPY_THREADS` (default 1, at most 8): threads that copy each chunk out.
fn copy_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("REMORA_COPY_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).clamp(1, 8)
    })
}

/// Copy `from` into `to` (equal lengths), split over `copy_threads()` threads when large.
fn copy_out(from: &[u8], to: &mut [u8]) {
    copy_split(from, to, copy_threads());
}

fn copy_split(from: &[u8], to: &mut [u8], threads: usize) {
    if threads <= 1 || from.len() < MIN_CHUNK {
        to.copy_from_slice(from);
        return;
    }
    let part = from.len().div_ceil(threads).next_multiple_of(4096);
    std::thread::scope(|s| {
        let mut pieces = from.chunks(part).zip(to.chunks_mut(part));
        let first = pieces.next();
        for (f, t) in pieces {
            s.spawn(move || t.copy_from_slice(f));
        }
        if let Some((f, t)) = first {
            t.copy_from_slice(f);
        }
    });
}

/// The chunk size for a copy of `len` bytes: a quarter of it, between [`MIN_CHUNK`] and [`SLOT`],
/// in whole pages.
fn chunk_for(len: usize) -> usize {
    (len / 4).clamp(MIN_CHUNK, SLOT).next_multiple_of(4096).min(SLOT)
}

/// Copy `dst.len()` bytes from device address `src` on `stream` into `dst` through the bounce
/// arena. `None` when it does not apply (not `shm://`, smaller than [`MIN`], the arena busy
/// with another thread's copy or unavailable): the caller takes the message path.
pub(crate) fn dtoh(rt: &Runtime, dst: &mut [u8], src: u64, stream: u64) -> Option<Result<(), Status>> {
    if dst.len() < MIN || !matches!(rt.client.endpoint(), Endpoint::Shm(_)) {
        return None;
    }
    let mut state = BOUNCE.try_lock()?;
    let base = match *state {
        State::Ready(base) => base,
        State::Unavailable => return None,
        State::Untried => {
            let made = if enabled() { crate::arena::create(rt, SLOT * SLOTS) } else { None };
            match made {
                Some(base) => {
                    tracing::debug!("bounce arena for device → host copies: {SLOTS} × {SLOT} bytes at {base:#x}");
                    *state = State::Ready(base);
                    base
                }
                None => {
                    *state = State::Unavailable;
                    return None;
                }
            }
        }
    };
    // SAFETY: `[base, base + SLOT * SLOTS)` is an arena the worker mapped (made above, never
    // freed), and holding `state` keeps every other thread out of it.
    let r = unsafe {
        rt.client.memcpy_dtoh_bounced(dst, src, stream, (base as u64, chunk_for(dst.len()), SLOTS), &copy_out)
    };
    drop(state);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fit_a_slot_and_are_pages() {
        for len in [MIN, MIN + 1, 3 << 20, 16 << 20, 64 << 20, 1 << 30] {
            let c = chunk_for(len);
            assert!((MIN_CHUNK..=SLOT).contains(&c), "{len}: {c}");
            assert_eq!(c % 4096, 0);
        }
        assert_eq!(chunk_for(MIN), MIN_CHUNK);
        assert_eq!(chunk_for(64 << 20), SLOT);
    }

    #[test]
    fn copy_out_copies_every_byte() {
        let from: Vec<u8> = (0..(3 << 20) + 77).map(|i| (i % 251) as u8).collect();
        for threads in [1, 2, 3, 8] {
            let mut to = vec![0u8; from.len()];
            copy_split(&from, &mut to, threads);
            assert!(from == to, "{threads} threads");
        }
    }
}
