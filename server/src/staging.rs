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

impl Staging {
    /// Map and register the halves; `None` if the driver refuses (the caller copies plainly).
    pub fn new(backend: &mut dyn Backend) -> Option<Staging> {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * CHUNK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let mut s = Staging { base: p.cast(), registered: false, events: HashMap::new(), pending: [None, None] };
        if backend.host_register(p as u64, (2 * CHUNK) as u64).is_err() {
            return None; // Drop unmaps
        }
        s.registered = true;
        Some(s)
    }

    fn half(&mut self, k: usize) -> &mut [u8] {
        // SAFETY: half `k` (0 or 1) of the mapping; no other reference to it exists while the
        // returned borrow of `self` lives, and its DMA was waited for by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(k * CHUNK), CHUNK) }
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

    /// Receive `len` bytes from `link` and copy them to device address `dst` on `stream`, in
    /// halves, overlapping each receive with the previous DMA. With `wait`, returns once the
    /// data is on the device; otherwise the last DMAs may still run (the halves are waited for
    /// before their next use). After a device error the rest of the bytes are still received
    /// (and dropped), so the link stays in step.
    pub fn htod(&mut self, backend: &mut dyn Backend, link: &mut dyn Link, to: Target, wait: bool) -> Outcome {
        let Target { dev, addr: dst, len, stream } = to;
        let mut status = Ok(());
        let (mut off, mut k) = (0usize, 0usize);
        while off < len {
            let n = CHUNK.min(len - off);
            if status.is_ok() {
                status = self.settle(backend, k);
            }
            if let Err(e) = link.recv_exact(&mut self.half(k)[..n]) {
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

    /// Enqueue the DMA of chunk `i` (of `len` bytes from `src`) into half `i % 2`.
    fn dtoh_chunk(&mut self, backend: &mut dyn Backend, from: Target, i: usize) -> Result<(), Status> {
        let Target { dev, addr: src, len, stream } = from;
        let k = i % 2;
        let off = i * CHUNK;
        let n = CHUNK.min(len - off);
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

    /// Copy `len` bytes from device address `src` to the link in halves, each DMA overlapping
    /// the previous half's send. `first` sends the reply's head with the first half (so a
    /// failure of the first DMA can still be an ordinary error reply: `Done(Err)` then, with
    /// nothing sent). A device error after that ends the session (`Link` with a protocol
    /// error), since the reply is already on its way.
    pub fn dtoh(
        &mut self,
        backend: &mut dyn Backend,
        link: &mut dyn Link,
        from: Target,
        first: impl FnOnce(&mut dyn Link, &[u8]) -> Result<(), remora_transport::Error>,
    ) -> Outcome {
        let len = from.len;
        let chunks = len.div_ceil(CHUNK);
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
        if let Err(e) = first(link, &self.half(0)[..CHUNK.min(len)]) {
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
            let n = CHUNK.min(len - i * CHUNK);
            if let Err(e) = link.send(&[&self.half(k)[..n]]) {
                return Outcome::Link(e);
            }
        }
        Outcome::Done(Ok(()))
    }

    /// Register both halves with the link's network adapter (once per link).
    fn registered_with(&mut self, remote: &mut dyn RemoteMemory) -> Result<(), remora_transport::Error> {
        let base = self.base as usize;
        if remote.registered(base, 2 * CHUNK).is_none() {
            // SAFETY: the halves stay mapped while this staging lives. Should it be unmapped
            // first, the registration only keeps its pages pinned until the link ends: its key
            // is never sent to the peer, and this side uses it only through this staging.
            unsafe { remote.register(base, 2 * CHUNK) }?;
        }
        Ok(())
    }

    /// Host → device from client memory registered with the NIC: each half is filled with RDMA
    /// READ while the previous half's DMA runs. With `wait`, returns once the data is on the
    /// device. A device error stops the copy (nothing is left on the link to drain).
    pub fn htod_remote(
        &mut self,
        backend: &mut dyn Backend,
        remote: &mut dyn RemoteMemory,
        to: Target,
        host: u64,
        rkey: u32,
        wait: bool,
    ) -> Outcome {
        if let Err(e) = self.registered_with(remote) {
            return Outcome::Link(e);
        }
        let Target { dev, addr: dst, len, stream } = to;
        let (mut off, mut k) = (0usize, 0usize);
        while off < len {
            let n = CHUNK.min(len - off);
            if let Err(e) = self.settle(backend, k) {
                return Outcome::Done(Err(e));
            }
            if let Err(e) = remote.read(&mut self.half(k)[..n], host + off as u64, rkey) {
                return Outcome::Link(e);
            }
            let src = self.half(k).as_ptr();
            // SAFETY: half `k` is registered host memory of this process and stays mapped and
            // untouched until its event (recorded below) has been waited for.
            let r = unsafe { backend.memcpy_htod_host(dev, dst + off as u64, src, n, stream) }
                .and_then(|()| self.event(backend, dev, k))
                .and_then(|e| backend.event_record(dev, e, stream))
                .map(|()| self.pending[k] = Some(dev));
            if let Err(e) = r {
                return Outcome::Done(Err(e));
            }
            off += n;
            k ^= 1;
        }
        if wait {
            return Outcome::Done(self.settle(backend, 0).and_then(|()| self.settle(backend, 1)));
        }
        Outcome::Done(Ok(()))
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
        if let Err(e) = self.registered_with(remote) {
            return Outcome::Link(e);
        }
        let len = from.len;
        let chunks = len.div_ceil(CHUNK);
        for i in 0..chunks {
            let k = i % 2;
            let step = if i == 0 { self.dtoh_chunk(backend, from, 0) } else { Ok(()) }
                .and_then(|()| if i + 1 < chunks { self.dtoh_chunk(backend, from, i + 1) } else { Ok(()) })
                .and_then(|()| self.settle(backend, k));
            if let Err(e) = step {
                let _ = self.settle(backend, 0);
                let _ = self.settle(backend, 1);
                return Outcome::Done(Err(e));
            }
            let n = CHUNK.min(len - i * CHUNK);
            if let Err(e) = remote.write(&self.half(k)[..n], host + (i * CHUNK) as u64, rkey) {
                let _ = self.settle(backend, (i + 1) % 2);
                return Outcome::Link(e);
            }
        }
        Outcome::Done(Ok(()))
    }

    /// A small device → host copy (at most [`CHUNK`] bytes) through page-locked memory, which
    /// the driver DMAs into directly (a pageable destination costs it an extra staging copy):
    /// waits for the stream, then appends the bytes to `out`.
    pub fn dtoh_small(&mut self, backend: &mut dyn Backend, from: Target, out: &mut Vec<u8>) -> Result<(), Status> {
        let Target { dev, addr, len, stream } = from;
        if len > CHUNK {
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
            // SAFETY: the mapping made in `new`, `2 * CHUNK` bytes, not registered any more.
            unsafe { libc::munmap(self.base.cast(), 2 * CHUNK) };
        }
    }
}
