//! Pinned staging for large copies from pageable client memory: two halves of page-locked
//! memory in the worker, registered with the driver once. A host → device copy is received from
//! the link straight into one half while the previous half's DMA runs, so the bytes are copied
//! once by the CPU (link → pinned) instead of three times (link → buffer → the driver's own
//! staging → DMA), and receiving overlaps the transfer.

use std::collections::HashMap;

use remora_transport::{Link, RemoteMemory};
use remora_wire::Status;

use crate::backend::{Backend, RawStream};

/// Bytes per half.
pub const CHUNK: usize = 4 << 20;
/// Copies at least this large go through staging (smaller ones are one receive and one copy).
pub const THRESHOLD: usize = 1 << 20;

/// Two pinned halves and, per device, an event per half marking when its DMA is done.
pub struct Staging {
    base: *mut u8,
    /// Bytes per half.
    chunk: usize,
    registered: bool,
    /// Per device: the two halves' events (created on first use on that device).
    events: HashMap<u32, [u64; 2]>,
    /// Per half: the device whose event was recorded and not waited for yet.
    pending: [Option<u32>; 2],
}

// SAFETY: `base` is a private mapping owned by this value; the session that owns the value
// moves between its polling threads but is used by one thread at a time.
unsafe impl Send for Staging {}

/// The device side of a pipelined copy.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Device ordinal.
    pub dev: u32,
    /// Device address of the first byte.
    pub addr: u64,
    /// Bytes.
    pub len: usize,
    /// Stream it is ordered on.
    pub stream: RawStream,
}

/// What a pipelined copy ended with.
pub enum Outcome {
    /// Every byte was received; the status of the device side.
    Done(Result<(), Status>),
    /// The link failed (the session ends).
    Link(remora_transport::Error),
}

type LinkResult = Result<(), remora_transport::Error>;

impl Staging {
    /// Map and register halves of [`CHUNK`] bytes; `None` if the driver refuses (the caller
    /// copies plainly).
    pub fn new(backend: &mut dyn Backend) -> Option<Staging> {
        Staging::with_chunk(backend, CHUNK)
    }

    /// The same with halves of `chunk` bytes.
    pub fn with_chunk(backend: &mut dyn Backend, chunk: usize) -> Option<Staging> {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * chunk,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let mut s = Staging { base: p.cast(), chunk, registered: false, events: HashMap::new(), pending: [None, None] };
        if backend.host_register(p as u64, (2 * chunk) as u64).is_err() {
            return None; // Drop unmaps
        }
        s.registered = true;
        Some(s)
    }

    /// Bytes per half.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    fn half(&mut self, k: usize) -> &mut [u8] {
        // SAFETY: half `k` (0 or 1) of the mapping; no other reference to it exists while the
        // returned borrow of `self` lives, and its DMA was waited for by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(k * self.chunk), self.chunk) }
    }

    fn event(&mut self, backend: &mut dyn Backend, dev: u32, k: usize) -> Result<u64, Status> {
        if let Some(e) = self.events.get(&dev) {
            return Ok(e[k]);
        }
        // CU_EVENT_DISABLE_TIMING.
        let e = [backend.event_create(dev, 2)?, backend.event_create(dev, 2)?];
        self.events.insert(dev, e);
        Ok(e[k])
    }

    /// Wait until half `k`'s last DMA is done.
    fn settle(&mut self, backend: &mut dyn Backend, k: usize) -> Result<(), Status> {
        if let Some(dev) = self.pending[k].take() {
            let e = self.event(backend, dev, k)?;
            backend.event_synchronize(dev, e)?;
        }
        Ok(())
    }

    /// Host → device in halves: `fill(half, offset)` puts the bytes at `offset` of the copy
    /// into a half (received from the link or the stripes, or read with RDMA) while the
    /// previous half's DMA runs. With `wait`, returns once the data is on the device; otherwise
    /// the last DMAs may still run (the halves are waited for before their next use). After a
    /// device error the remaining bytes are still filled (and dropped), so whatever carries
    /// them stays in step.
    pub fn htod_with(
        &mut self,
        backend: &mut dyn Backend,
        to: Target,
        wait: bool,
        mut fill: impl FnMut(&mut [u8], usize) -> LinkResult,
    ) -> Outcome {
        let Target { dev, addr: dst, len, stream } = to;
        let mut status = Ok(());
        let (mut off, mut k) = (0usize, 0usize);
        while off < len {
            let n = self.chunk.min(len - off);
            if status.is_ok() {
                status = self.settle(backend, k);
            }
            if let Err(e) = fill(&mut self.half(k)[..n], off) {
                return Outcome::Link(e);
            }
            if status.is_ok() {
                let src = self.half(k).as_ptr();
                // SAFETY: half `k` is registered host memory of this process and stays mapped and
                // untouched until its event (recorded below) has been waited for.
                status = unsafe { backend.memcpy_htod_host(dev, dst + off as u64, src, n, stream) }
                    .and_then(|()| self.event(backend, dev, k))
                    .and_then(|e| backend.event_record(dev, e, stream))
                    .map(|()| self.pending[k] = Some(dev));
            }
            off += n;
            k ^= 1;
        }
        if wait && status.is_ok() {
            status = self.settle(backend, 0).and_then(|()| self.settle(backend, 1));
        }
        Outcome::Done(status)
    }

    /// [`Staging::htod_with`] receiving the bytes from `link`.
    pub fn htod(&mut self, backend: &mut dyn Backend, link: &mut dyn Link, to: Target, wait: bool) -> Outcome {
        self.htod_with(backend, to, wait, |half, _| link.recv_exact(half))
    }

    /// Enqueue the DMA of chunk `i` (of `len` bytes from `src`) into half `i % 2`.
    fn dtoh_chunk(&mut self, backend: &mut dyn Backend, from: Target, i: usize) -> Result<(), Status> {
        let Target { dev, addr: src, len, stream } = from;
        let k = i % 2;
        let off = i * self.chunk;
        let n = self.chunk.min(len - off);
        self.settle(backend, k)?;
        let dst = self.half(k).as_mut_ptr();
        // SAFETY: half `k` is registered host memory of this process, not read until its event
        // (recorded below) has been waited for.
        unsafe { backend.memcpy_dtoh_host(dev, dst, src + off as u64, n, stream) }?;
        let e = self.event(backend, dev, k)?;
        backend.event_record(dev, e, stream)?;
        self.pending[k] = Some(dev);
        Ok(())
    }

    /// Device → host in halves, each DMA overlapping the previous half's `drain(half,
    /// offset)`. The first DMA is done before anything is drained, so `drain` may send a reply
    /// head with offset 0 and a failure of that DMA can still be an ordinary error reply
    /// (`Done(Err)`, nothing drained). A device error after that ends the session (`Link` with
    /// a protocol error), since the reply is already on its way.
    pub fn dtoh_with(
        &mut self,
        backend: &mut dyn Backend,
        from: Target,
        mut drain: impl FnMut(&[u8], usize) -> LinkResult,
    ) -> Outcome {
        let len = from.len;
        let chunk = self.chunk;
        let chunks = len.div_ceil(chunk);
        let head = self.dtoh_chunk(backend, from, 0).and_then(|()| {
            if chunks > 1 {
                self.dtoh_chunk(backend, from, 1)?;
            }
            self.settle(backend, 0)
        });
        if let Err(e) = head {
            let _ = self.settle(backend, 1);
            return Outcome::Done(Err(e));
        }
        if let Err(e) = drain(&self.half(0)[..chunk.min(len)], 0) {
            let _ = self.settle(backend, 1);
            return Outcome::Link(e);
        }
        for i in 1..chunks {
            let k = i % 2;
            let next = if i + 1 < chunks { self.dtoh_chunk(backend, from, i + 1) } else { Ok(()) };
            if let Err(e) = next.and_then(|()| self.settle(backend, k)) {
                let _ = self.settle(backend, 0);
                let _ = self.settle(backend, 1);
                return Outcome::Link(remora_transport::Error::Protocol(format!(
                    "device error in the middle of a {len}-byte copy to the host: {e:?}"
                )));
            }
            let n = chunk.min(len - i * chunk);
            if let Err(e) = drain(&self.half(k)[..n], i * chunk) {
                let _ = self.settle(backend, (k + 1) % 2);
                return Outcome::Link(e);
            }
        }
        Outcome::Done(Ok(()))
    }

    /// [`Staging::dtoh_with`] sending the bytes on `link` after the reply head `first` sends.
    pub fn dtoh(
        &mut self,
        backend: &mut dyn Backend,
        link: &mut dyn Link,
        from: Target,
        first: impl FnOnce(&mut dyn Link, &[u8]) -> LinkResult,
    ) -> Outcome {
        let mut first = Some(first);
        self.dtoh_with(backend, from, |half, _| match first.take() {
            Some(head) => head(&mut *link, half),
            None => link.send(&[half]),
        })
    }

    /// Register both halves with the link's network adapter (once per link). A refusal is
    /// `NOT_SUPPORTED`: the session goes on and the client copies through the message path.
    fn registered_with(&mut self, remote: &mut dyn RemoteMemory) -> Result<(), Status> {
        let base = self.base as usize;
        if remote.registered(base, 2 * self.chunk).is_none() {
            // SAFETY: the halves stay mapped while this staging lives. Should it be unmapped
            // first, the registration only keeps its pages pinned until the link ends: its key
            // is never sent to the peer, and this side uses it only through this staging.
            if let Err(e) = unsafe { remote.register(base, 2 * self.chunk) } {
                tracing::warn!("cannot register the staging halves with the NIC ({e}); answering NOT_SUPPORTED");
                return Err(Status::NOT_SUPPORTED);
            }
        }
        Ok(())
    }

    /// Host → device from client memory registered with the NIC: each half is filled with RDMA
    /// READ while the previous half's DMA runs.
    pub fn htod_remote(
        &mut self,
        backend: &mut dyn Backend,
        remote: &mut dyn RemoteMemory,
        to: Target,
        host: u64,
        rkey: u32,
        wait: bool,
    ) -> Outcome {
        if let Err(s) = self.registered_with(remote) {
            return Outcome::Done(Err(s));
        }
        self.htod_with(backend, to, wait, |half, off| remote.read(half, host + off as u64, rkey))
    }

    /// Device → host into client memory registered with the NIC: each half's DMA overlaps the
    /// RDMA WRITE of the previous one. Returns when every byte is written (so a reply sent
    /// afterwards arrives after them).
    pub fn dtoh_remote(
        &mut self,
        backend: &mut dyn Backend,
        remote: &mut dyn RemoteMemory,
        from: Target,
        host: u64,
        rkey: u32,
    ) -> Outcome {
        if let Err(s) = self.registered_with(remote) {
            return Outcome::Done(Err(s));
        }
        self.dtoh_with(backend, from, |half, off| remote.write(half, host + off as u64, rkey))
    }

    /// A small device → host copy (at most one half) through page-locked memory, which
    /// the driver DMAs into directly (a pageable destination costs it an extra staging copy):
    /// waits for the stream, then appends the bytes to `out`.
    pub fn dtoh_small(&mut self, backend: &mut dyn Backend, from: Target, out: &mut Vec<u8>) -> Result<(), Status> {
        let Target { dev, addr, len, stream } = from;
        if len > self.chunk {
            return Err(Status::INVALID_VALUE);
        }
        self.settle(backend, 0)?;
        let dst = self.half(0).as_mut_ptr();
        // SAFETY: half 0 is registered host memory of this process, free (settled above), and
        // read only after the stream synchronisation below.
        unsafe { backend.memcpy_dtoh_host(dev, dst, addr, len, stream) }?;
        backend.stream_synchronize(dev, stream)?;
        out.extend_from_slice(&self.half(0)[..len]);
        Ok(())
    }

    /// Wait for outstanding DMAs, destroy the events and unregister (session teardown).
    pub fn release(mut self, backend: &mut dyn Backend) {
        let _ = self.settle(backend, 0);
        let _ = self.settle(backend, 1);
        for (dev, e) in std::mem::take(&mut self.events) {
            for ev in e {
                let _ = backend.event_destroy(dev, ev);
            }
        }
        if self.registered {
            let _ = backend.host_unregister(self.base as u64);
            self.registered = false;
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // A staging never released (the backend is gone): the process is ending; only unmap
        // when the driver no longer holds it.
        if !self.registered {
            // SAFETY: the mapping made in `with_chunk`, `2 * chunk` bytes, not registered any more.
            unsafe { libc::munmap(self.base.cast(), 2 * self.chunk) };
        }
    }
}
