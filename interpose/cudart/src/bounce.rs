//! Large copies between pageable memory and the device over `shm://`, through a bounce arena: a
//! small shared pinned region (an arena, `arena.rs`) the worker has registered with the driver.
//! The worker DMAs chunk k straight into slot k % [`SLOTS`] and answers; meanwhile this process
//! copies the chunks already there into the caller's memory (`parallel_copy.rs`). One DMA and
//! one CPU copy per byte, overlapped — the shape of the driver's own pageable copy — where the
//! message path costs a DMA into the worker's staging, a copy into the ring and a copy out of
//! it. Host → device copies take the same arena the other way round when they are waited for,
//! or when their stream is idle ([`idle_stream`]).

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
    /// Turned off (`REMORA_SHM_BOUNCE=0`): the message path is used.
    Off,
    /// The worker could not map it (its pinned-memory budget, say): the next this many large
    /// copies take the message path, then it is tried again.
    Unavailable(u32),
    Ready(usize),
}

/// Large copies that take the message path after a failed attempt before the next one.
const RETRY_AFTER: u32 = 64;

static BOUNCE: Mutex<State> = Mutex::new(State::Untried);

/// `REMORA_SHM_BOUNCE=0` (or `off`, `false`, `no`) turns the bounce arena off (to compare with
/// the message path).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("REMORA_SHM_BOUNCE")
            .map_or(true, |v| !matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "off" | "false" | "no"))
    })
}

/// Whether an asynchronous host → device copy of `len` bytes on `stream` should take the bounce
/// arena: large enough, over shm, and its stream has nothing queued (one round trip to ask).
/// The arena path returns once the bytes are on the device, so on a busy stream it would wait
/// for the work ahead (CUDA allows that for pageable memory, but the ring takes the bytes at
/// once); on an idle stream it costs the caller nothing and copies two to three times faster.
/// `Err`: the query failed — an earlier asynchronous error its reply carried, which the caller
/// must report.
pub(crate) fn idle_stream(rt: &Runtime, len: usize, stream: u64) -> Result<bool, Status> {
    if len < MIN || !enabled() || !matches!(rt.client.endpoint(), Endpoint::Shm(_)) {
        return Ok(false);
    }
    rt.client.stream_query(stream)
}

/// The chunk size for a copy of `len` bytes: a quarter of it, between [`MIN_CHUNK`] and [`SLOT`],
/// in whole pages.
fn chunk_for(len: usize) -> usize {
    (len / 4).clamp(MIN_CHUNK, SLOT).next_multiple_of(4096).min(SLOT)
}

/// Run `copy` with the bounce arena's address, making it on first use. `None` when it does not
/// apply (not `shm://`, fewer than [`MIN`] bytes, the arena busy with another thread's copy or
/// unavailable): the caller takes the message path.
fn with_arena(rt: &Runtime, len: usize, copy: impl FnOnce(u64) -> Result<(), Status>) -> Option<Result<(), Status>> {
    if len < MIN || !matches!(rt.client.endpoint(), Endpoint::Shm(_)) {
        return None;
    }
    let mut state = BOUNCE.try_lock()?;
    let base = match *state {
        State::Ready(base) => base,
        State::Off => return None,
        State::Unavailable(left) if left > 0 => {
            *state = State::Unavailable(left - 1);
            return None;
        }
        State::Untried | State::Unavailable(_) if !enabled() => {
            *state = State::Off;
            return None;
        }
        State::Untried | State::Unavailable(_) => match crate::arena::create(rt, SLOT * SLOTS) {
            Some(base) => {
                tracing::debug!("bounce arena for pageable copies: {SLOTS} × {SLOT} bytes at {base:#x}");
                *state = State::Ready(base);
                base
            }
            None => {
                tracing::debug!("no bounce arena (the worker cannot map it now); copying through the ring");
                *state = State::Unavailable(RETRY_AFTER);
                return None;
            }
        },
    };
    // `state` stays locked while `copy` runs: the arena is this copy's alone.
    Some(copy(base as u64))
}

/// Copy `dst.len()` bytes from device address `src` on `stream` into `dst` through the bounce
/// arena (`None`: see [`with_arena`]).
pub(crate) fn dtoh(rt: &Runtime, dst: &mut [u8], src: u64, stream: u64) -> Option<Result<(), Status>> {
    let chunk = chunk_for(dst.len());
    with_arena(rt, dst.len(), |base| {
        // SAFETY: `[base, base + SLOT * SLOTS)` is an arena the worker mapped (made in
        // `with_arena`, never freed) and this thread holds it.
        unsafe { rt.client.memcpy_dtoh_bounced(dst, src, stream, (base, chunk, SLOTS), &crate::parallel_copy::copy) }
    })
}

/// Copy `src` to device address `dst` on `stream` through the bounce arena, returning when the
/// bytes are on the device (`None`: see [`with_arena`]).
pub(crate) fn htod(rt: &Runtime, src: &[u8], dst: u64, stream: u64) -> Option<Result<(), Status>> {
    let chunk = chunk_for(src.len());
    with_arena(rt, src.len(), |base| {
        // SAFETY: as in `dtoh`.
        unsafe { rt.client.memcpy_htod_bounced(dst, src, stream, (base, chunk, SLOTS), &crate::parallel_copy::copy) }
    })
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
}
