//! Single-producer/single-consumer byte ring over raw shared memory.
//!
//! `head` (bytes ever written) is stored only by the producer, `tail` (bytes ever read) only by
//! the consumer. The producer copies bytes in, then publishes `head` with Release; the consumer
//! loads `head` with Acquire, copies bytes out, then publishes `tail` with Release, which the
//! producer loads with Acquire before reusing the space. Both sides keep a private copy of their
//! own counter and a cached copy of the other's, so the common path touches the peer's cache
//! line only when the cached value says the ring is empty (or full).
//!
//! The peer is another process and may be buggy: every counter read from the region is checked
//! (`0 <= head - tail <= size`), and positions are masked into the ring, so a corrupt region is
//! an [`Error::Protocol`], never an access outside the mapping.
//!
//! Parking (see `mod.rs`): a side about to sleep sets its `*_parked` flag (SeqCst), issues a
//! SeqCst fence and re-checks the ring; the other side, after publishing, issues a SeqCst fence
//! and reads the flag. The two fences order "flag set → re-check" against "publish → flag read",
//! so at least one side sees the other's write: either the sleeper sees the data, or the
//! publisher sees the flag and rings the doorbell.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use super::region::{Dir, Region, RingCtrl};
use crate::{Error, Result};

fn corrupt(what: &str, head: u64, tail: u64, size: usize) -> Error {
    Error::Protocol(format!("shm ring corrupt ({what}): head {head}, tail {tail}, ring size {size}"))
}

/// Check `head - tail` against the ring size; returns the bytes in the ring.
fn used(what: &str, head: u64, tail: u64, size: usize) -> Result<usize> {
    usize::try_from(head.wrapping_sub(tail)).ok().filter(|&u| u <= size).ok_or_else(|| corrupt(what, head, tail, size))
}

/// A counter's position in a ring of `size` bytes (a power of two).
#[expect(clippy::cast_possible_truncation, reason = "only the low bits, below `size` (a usize), are kept")]
fn position(counter: u64, size: usize) -> usize {
    (counter as usize) & (size - 1)
}

/// Take a flag that the peer set when it went to sleep: true if it was set (and is now clear),
/// meaning the caller must ring the doorbell.
fn take_flag(flag: &std::sync::atomic::AtomicU32) -> bool {
    // The fence orders the caller's preceding publish (head or tail) before this load; it pairs
    // with the fence the sleeper issues between setting its flag and re-checking the ring.
    fence(Ordering::SeqCst);
    flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::AcqRel) != 0
}

/// Set or clear a parked flag. Setting is followed by a SeqCst fence (see module docs); the
/// caller must then re-check the ring before sleeping.
fn set_flag(flag: &std::sync::atomic::AtomicU32, on: bool) {
    flag.store(u32::from(on), Ordering::SeqCst);
    if on {
        fence(Ordering::SeqCst);
    }
}

/// The writing end of one direction.
#[derive(Debug)]
pub(crate) struct Producer {
    region: Arc<Region>,
    dir: Dir,
    size: usize,
    /// Bytes ever written by us, published or not.
    head: u64,
    /// `head` as last stored into the region.
    published: u64,
    /// The consumer's `tail` as last loaded.
    cached_tail: u64,
}

impl Producer {
    /// Attach to direction `dir`, continuing from the counters in the region (so a link rebuilt
    /// from a handoff resumes where the previous holder stopped).
    pub(crate) fn new(region: Arc<Region>, dir: Dir) -> Result<Producer> {
        let size = region.ring_size();
        let c = region.ctrl(dir);
        let head = c.head.load(Ordering::Acquire);
        let tail = c.tail.load(Ordering::Acquire);
        used("attach producer", head, tail, size)?;
        Ok(Producer { region, dir, size, head, published: head, cached_tail: tail })
    }

    fn ctrl(&self) -> RingCtrl<'_> {
        self.region.ctrl(self.dir)
    }

    /// Free bytes, reloading the consumer's tail when the cached value shows fewer than `want`.
    pub(crate) fn free(&mut self, want: usize) -> Result<usize> {
        let mut free = self.size - used("producer", self.head, self.cached_tail, self.size)?;
        if free < want {
            let tail = self.ctrl().tail.load(Ordering::Acquire);
            // The tail may only move forward, and never past what we published.
            if tail.wrapping_sub(self.cached_tail) > self.published.wrapping_sub(self.cached_tail) {
                return Err(corrupt("tail moved backwards or past head", self.head, tail, self.size));
            }
            self.cached_tail = tail;
            free = self.size - used("producer", self.head, tail, self.size)?;
        }
        Ok(free)
    }

    /// Copy up to `max` bytes of `src` into the ring (as many as fit); does not publish.
    /// Returns the bytes copied (0 when the ring is full).
    pub(crate) fn write(&mut self, src: &[u8], max: usize) -> Result<usize> {
        let want = src.len().min(max);
        let n = want.min(self.free(want)?);
        if n == 0 {
            return Ok(0);
        }
        let pos = position(self.head, self.size);
        let first = n.min(self.size - pos);
        let ring = self.region.ring_ptr(self.dir);
        // SAFETY: `ring` points to `size` bytes inside the mapping, which `self.region` keeps
        // alive. `pos < size` and `first <= size - pos`, and `n - first <= pos` (because
        // `n <= size`), so both destination ranges are inside the ring. They lie in the free
        // part of the ring (`n <= free`), which the consumer does not read until we publish,
        // and `src` is a Rust slice, which cannot alias the private mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), ring.add(pos), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), ring, n - first);
        }
        self.head = self.head.wrapping_add(n as u64);
        Ok(n)
    }

    /// Bytes written but not yet published.
    pub(crate) fn unpublished(&self) -> usize {
        // At most `size`: `write` never gets more than `size` bytes ahead of the tail.
        used("producer", self.head, self.published, self.size).unwrap_or(self.size)
    }

    /// Publish written bytes. Returns true when the consumer was parked and must be woken.
    pub(crate) fn publish(&mut self) -> bool {
        if self.head == self.published {
            return false;
        }
        self.ctrl().head.store(self.head, Ordering::Release);
        self.published = self.head;
        take_flag(self.ctrl().reader_parked)
    }

    /// Mark ourselves parked (waiting for space) or not.
    pub(crate) fn set_parked(&self, on: bool) {
        set_flag(self.ctrl().writer_parked, on);
    }
}

/// The reading end of one direction.
#[derive(Debug)]
pub(crate) struct Consumer {
    region: Arc<Region>,
    dir: Dir,
    size: usize,
    /// Bytes ever read by us (always published: see [`Consumer::read`]).
    tail: u64,
    /// The producer's `head` as last loaded.
    cached_head: u64,
}

impl Consumer {
    /// Attach to direction `dir`, continuing from the counters in the region.
    pub(crate) fn new(region: Arc<Region>, dir: Dir) -> Result<Consumer> {
        let size = region.ring_size();
        let c = region.ctrl(dir);
        let tail = c.tail.load(Ordering::Acquire);
        let head = c.head.load(Ordering::Acquire);
        used("attach consumer", head, tail, size)?;
        Ok(Consumer { region, dir, size, tail, cached_head: head })
    }

    fn ctrl(&self) -> RingCtrl<'_> {
        self.region.ctrl(self.dir)
    }

    /// Bytes readable now: one Acquire load of the producer's head (plus checks).
    pub(crate) fn available(&mut self) -> Result<usize> {
        let head = self.ctrl().head.load(Ordering::Acquire);
        let n = used("consumer", head, self.tail, self.size)?;
        // The head may only move forward.
        if head.wrapping_sub(self.cached_head) > head.wrapping_sub(self.tail) {
            return Err(corrupt("head moved backwards", head, self.tail, self.size));
        }
        self.cached_head = head;
        Ok(n)
    }

    /// Copy up to `max` readable bytes into `dst` and publish the new tail. Returns the bytes
    /// copied (0 when the ring is empty).
    pub(crate) fn read(&mut self, dst: &mut [u8], max: usize) -> Result<usize> {
        let want = dst.len().min(max);
        let mut avail = used("consumer", self.cached_head, self.tail, self.size)?;
        if avail < want {
            avail = self.available()?;
        }
        let n = want.min(avail);
        if n == 0 {
            return Ok(0);
        }
        let pos = position(self.tail, self.size);
        let first = n.min(self.size - pos);
        let ring = self.region.ring_ptr(self.dir);
        // SAFETY: as in `Producer::write`: both source ranges are inside the ring, which the
        // region keeps mapped; they hold published bytes (`n <= head - tail`, head loaded with
        // Acquire) that the producer does not touch until we publish a tail past them; `dst` is
        // an exclusive Rust slice, which cannot alias the mapping. (A misbehaving peer writing
        // there concurrently can only make us copy garbage bytes: `u8` has no invalid values.)
        unsafe {
            std::ptr::copy_nonoverlapping(ring.add(pos), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(ring, dst.as_mut_ptr().add(first), n - first);
        }
        self.tail = self.tail.wrapping_add(n as u64);
        self.ctrl().tail.store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// Whether the producer is parked waiting for space; clears the flag (ring the doorbell).
    pub(crate) fn take_writer_parked(&self) -> bool {
        take_flag(self.ctrl().writer_parked)
    }

    /// Mark ourselves parked (waiting for data) or not.
    pub(crate) fn set_parked(&self, on: bool) {
        set_flag(self.ctrl().reader_parked, on);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::region::MIN_RING_SIZE;
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)).to_le_bytes()[0]).collect()
    }

    #[test]
    fn streams_through_a_small_ring_with_odd_chunks() {
        let region = Arc::new(Region::create(MIN_RING_SIZE).unwrap());
        let mut p = Producer::new(region.clone(), Dir::ClientToServer).unwrap();
        let mut c = Consumer::new(region.clone(), Dir::ClientToServer).unwrap();
        let data = pattern(1 << 20);
        let expect = data.clone();
        let writer = std::thread::spawn(move || {
            let mut off = 0;
            let mut step = 1;
            while off < data.len() {
                let n = p.write(&data[off..], step).unwrap();
                off += n;
                p.publish();
                step = step % 5000 + 7;
                if n == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let mut got = vec![0u8; expect.len()];
        let mut off = 0;
        let mut step = 3;
        while off < got.len() {
            let n = c.read(&mut got[off..], step).unwrap();
            off += n;
            step = step % 3000 + 11;
            if n == 0 {
                std::thread::yield_now();
            }
        }
        writer.join().unwrap();
        assert!(got == expect, "stream corrupted");
        assert_eq!(c.available().unwrap(), 0);
        // The other direction is untouched.
        assert_eq!(region.ctrl(Dir::ServerToClient).head.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn full_and_empty_and_resume() {
        let region = Arc::new(Region::create(MIN_RING_SIZE).unwrap());
        let mut p = Producer::new(region.clone(), Dir::ServerToClient).unwrap();
        let mut c = Consumer::new(region.clone(), Dir::ServerToClient).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(c.read(&mut buf, 16).unwrap(), 0);
        let big = pattern(MIN_RING_SIZE + 100);
        assert_eq!(p.write(&big, usize::MAX).unwrap(), MIN_RING_SIZE);
        assert_eq!(p.write(&big, usize::MAX).unwrap(), 0);
        assert_eq!(p.unpublished(), MIN_RING_SIZE);
        // Nothing is visible before publishing.
        assert_eq!(c.available().unwrap(), 0);
        c.set_parked(true);
        assert!(p.publish(), "a parked reader must be woken");
        assert!(!p.publish());
        assert_eq!(c.available().unwrap(), MIN_RING_SIZE);
        assert_eq!(c.read(&mut buf, 10).unwrap(), 10);
        assert_eq!(&buf[..10], &big[..10]);
        // A fresh consumer (as after a handoff) resumes at the published tail.
        drop(c);
        let mut c = Consumer::new(region.clone(), Dir::ServerToClient).unwrap();
        assert_eq!(c.read(&mut buf, 16).unwrap(), 16);
        assert_eq!(&buf[..], &big[10..26]);
        p.set_parked(true);
        assert!(c.take_writer_parked());
        assert!(!c.take_writer_parked());
        assert_eq!(p.write(&big, usize::MAX).unwrap(), 26);
    }

    #[test]
    fn corrupt_counters_are_errors() {
        let region = Arc::new(Region::create(MIN_RING_SIZE).unwrap());
        let mut p = Producer::new(region.clone(), Dir::ClientToServer).unwrap();
        let mut c = Consumer::new(region.clone(), Dir::ClientToServer).unwrap();
        let ctrl = region.ctrl(Dir::ClientToServer);
        ctrl.head.store(MIN_RING_SIZE as u64 + 1, Ordering::Release);
        assert!(matches!(c.available(), Err(Error::Protocol(_))));
        let mut buf = [0u8; 8];
        assert!(matches!(c.read(&mut buf, 8), Err(Error::Protocol(_))));
        ctrl.head.store(0, Ordering::Release);
        assert_eq!(p.write(&[0; MIN_RING_SIZE], usize::MAX).unwrap(), MIN_RING_SIZE);
        p.publish();
        // A tail past the head.
        ctrl.tail.store(MIN_RING_SIZE as u64 + 5, Ordering::Release);
        assert!(matches!(p.write(&[0; 1], usize::MAX), Err(Error::Protocol(_))));
        assert!(matches!(Consumer::new(region.clone(), Dir::ClientToServer), Err(Error::Protocol(_))));
        assert!(matches!(Producer::new(region.clone(), Dir::ClientToServer), Err(Error::Protocol(_))));
    }
}
