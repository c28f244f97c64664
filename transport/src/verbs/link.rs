//! The verbs link: remora's byte stream over an RC queue pair, and one-sided access to the
//! peer's registered memory.

// Narrowing casts here are of constants (slot counts, 32-byte secrets, address families) or of
// lengths bounded by `SLOT` / `RDMA_CHUNK`, and of completion fields the C API declares wider.
#![allow(clippy::cast_possible_truncation)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rdma_sys::*;

use super::cm::{Connection, Mr, RDMA_DEPTH, RECV_SLOTS, SEND_SLOTS};
use super::ffi::text;
use crate::{sys, Error, Handoff, Link, PollPolicy, RemoteCounters, RemoteMemory, Result};

/// Bytes per send or receive slot: a frame larger than this goes as several SENDs.
pub(crate) const SLOT: usize = 32 << 10;
/// One send in this many asks for a completion (the others are covered by it: completions of
/// an RC send queue come in order).
const SIGNAL_EVERY: u64 = 16;
/// Send completions are `wr_id`s with this bit; RDMA READ/WRITE completions without it.
const SEND_TAG: u64 = 1 << 63;
/// Largest single RDMA READ or WRITE.
const RDMA_CHUNK: usize = 1 << 20;
/// Least time between two end-of-stream checks of the liveness socket while spinning.
const EOF_CHECK_INTERVAL: Duration = Duration::from_millis(1);
/// How long completions are still looked for after the peer's socket closed.
const PEER_GONE_GRACE: Duration = Duration::from_millis(20);
/// How long a dropped link waits for its last sends to complete before disconnecting.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest sleep before the queues are checked again while parked.
const PARK_SLICE: Duration = Duration::from_millis(100);

/// What a waiting side waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A received message to read.
    Data,
    /// A free send slot and `n` credits.
    Send(u32),
    /// Every RDMA READ/WRITE posted has completed.
    Rdma,
}

/// One side of a verbs connection. See the module documentation of [`crate::verbs`].
pub struct VerbsLink {
    // Memory regions first: dropped before the buffers they cover and the connection whose
    // protection domain they belong to.
    regions: BTreeMap<usize, Mr>,
    send_mr: Mr,
    recv_mr: Mr,
    send_buf: Box<[u8]>,
    recv_buf: Box<[u8]>,
    conn: Connection,
    /// The TCP connection the session started on: kept open only to learn at once that the
    /// peer's process is gone (end of stream), and for keep-alive probes.
    tcp: TcpStream,
    credits: u32,
    owed: u32,
    sent: u64,
    done: u64,
    rdma_posted: u64,
    rdma_done: u64,
    ready: VecDeque<(u32, usize)>,
    /// The message being read: slot, offset, length.
    cur: Option<(u32, usize, usize)>,
    /// Received bytes moved out of their slots (from `spill_at` on) by a sender waiting for
    /// credits; they come before anything in `cur` and `ready`.
    spill: Vec<u8>,
    spill_at: usize,
    policy: PollPolicy,
    recv_timeout: Option<Duration>,
    peer_closed: bool,
    last_eof_check: Instant,
    /// A completion error: the queue pair is in the error state and the link is dead.
    broken: Option<String>,
    peer: String,
    counters: RemoteCounters,
}

impl fmt::Debug for VerbsLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerbsLink")
            .field("peer", &self.peer)
            .field("credits", &self.credits)
            .field("regions", &self.regions.len())
            .finish()
    }
}

fn completion_error(conn: &Connection, wc: &ibv_wc) -> Error {
    // SAFETY: ibv_wc_status_str returns a static string for any value.
    let what = text(unsafe { (conn.v.ibv_wc_status_str)(wc.status) });
    match wc.status {
        ibv_wc_status::IBV_WC_WR_FLUSH_ERR | ibv_wc_status::IBV_WC_RETRY_EXC_ERR => Error::PeerClosed,
        ibv_wc_status::IBV_WC_REM_ACCESS_ERR | ibv_wc_status::IBV_WC_LOC_PROT_ERR => {
            Error::Protocol(format!("rdma: {what}: a memory key or range the registration does not allow"))
        }
        _ => Error::Io { op: "rdma completion", source: std::io::Error::other(what) },
    }
}

impl VerbsLink {
    /// Build the link on a connection whose receives `post_all_receives` posted.
    pub(crate) fn new(
        conn: Connection,
        send: (Mr, Box<[u8]>),
        recv: (Mr, Box<[u8]>),
        tcp: TcpStream,
        peer: String,
    ) -> VerbsLink {
        let device = conn.device_name();
        VerbsLink {
            regions: BTreeMap::new(),
            send_mr: send.0,
            recv_mr: recv.0,
            send_buf: send.1,
            recv_buf: recv.1,
            conn,
            tcp,
            credits: RECV_SLOTS,
            owed: 0,
            sent: 0,
            done: 0,
            rdma_posted: 0,
            rdma_done: 0,
            ready: VecDeque::new(),
            cur: None,
            spill: Vec::new(),
            spill_at: 0,
            policy: PollPolicy::default(),
            recv_timeout: None,
            peer_closed: false,
            last_eof_check: Instant::now(),
            broken: None,
            peer: format!("{peer} over {device}"),
            counters: RemoteCounters::default(),
        }
    }

    /// Buffers for one side: `slots` slots of [`SLOT`] bytes, registered with the connection.
    pub(crate) fn buffers(conn: &Connection, slots: u32) -> Result<(Mr, Box<[u8]>)> {
        let mut buf = vec![0u8; slots as usize * SLOT].into_boxed_slice();
        // SAFETY: the buffer is moved into the link next to the region, and the link drops the
        // region first; moving a Box does not move its heap memory.
        let mr = unsafe { Mr::register(conn.v, conn.pd, buf.as_mut_ptr(), buf.len()) }?;
        Ok((mr, buf))
    }

    /// Post the receive of slot `slot`.
    pub(crate) fn post_recv(conn: &Connection, mr: &Mr, buf: &mut [u8], slot: u32) -> Result<()> {
        let off = slot as usize * SLOT;
        let mut sge = ibv_sge { addr: buf[off..].as_mut_ptr() as u64, length: SLOT as u32, lkey: mr.lkey() };
        let mut wr = ibv_recv_wr { wr_id: u64::from(slot), next: std::ptr::null_mut(), sg_list: &mut sge, num_sge: 1 };
        let mut bad = std::ptr::null_mut();
        // SAFETY: the queue pair is live; `sge` names registered memory of the receive buffer
        // that nobody reads until this receive completes.
        if unsafe { ibv_post_recv(conn.qp, &mut wr, &mut bad) } != 0 {
            return Err(super::cm::fail("ibv_post_recv"));
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(Error::Io { op: "rdma", source: std::io::Error::other(why.clone()) }),
            None => Ok(()),
        }
    }

    fn set_broken(&mut self, e: Error) -> Error {
        if self.broken.is_none() {
            self.broken = Some(e.to_string());
        }
        e
    }

    /// Poll `cq` into `wcs`; the completions got, all successful (an error breaks the link).
    fn poll<'w>(&mut self, cq: *mut ibv_cq, wcs: &'w mut [ibv_wc; 16]) -> Result<&'w [ibv_wc]> {
        // SAFETY: `cq` is one of this connection's live CQs; at most 16 entries are written.
        let n = unsafe { ibv_poll_cq(cq, 16, wcs.as_mut_ptr()) };
        if n < 0 {
            return Err(self.set_broken(super::cm::fail("ibv_poll_cq")));
        }
        let got = &wcs[..n as usize];
        if let Some(wc) = got.iter().find(|wc| wc.status != ibv_wc_status::IBV_WC_SUCCESS) {
            let e = completion_error(&self.conn, wc);
            return Err(self.set_broken(e));
        }
        Ok(got)
    }

    /// Harvest completions from both queues.
    fn progress(&mut self) -> Result<()> {
        self.check()?;
        // SAFETY: all-zero is a valid ibv_wc; only the entries a poll wrote are read.
        let mut wcs: [ibv_wc; 16] = unsafe { std::mem::zeroed() };
        for wc in self.poll(self.conn.send_cq, &mut wcs)? {
            if wc.wr_id & SEND_TAG != 0 {
                self.done = self.done.max((wc.wr_id & !SEND_TAG) + 1);
            } else {
                self.rdma_done += 1;
            }
        }
        let n = self.poll(self.conn.recv_cq, &mut wcs)?.len();
        for wc in &wcs[..n] {
            if wc.wc_flags & ibv_wc_flags::IBV_WC_WITH_IMM.0 != 0 {
                // SAFETY: with IBV_WC_WITH_IMM the union holds the immediate data.
                let imm = u32::from_be(unsafe { wc.imm_data_invalidated_rkey_union.imm_data });
                self.credits = self.credits.saturating_add(imm).min(RECV_SLOTS);
            }
            let slot = wc.wr_id as u32;
            if slot >= RECV_SLOTS {
                return Err(self.set_broken(Error::Protocol(format!("rdma: receive completion for slot {slot}"))));
            }
            if wc.byte_len == 0 {
                // A credit update only: the slot is free again at once.
                self.repost(slot)?;
            } else {
                self.counters.received_bytes += u64::from(wc.byte_len);
                self.ready.push_back((slot, wc.byte_len as usize));
            }
        }
        self.return_credits()
    }

    fn repost(&mut self, slot: u32) -> Result<()> {
        if let Err(e) = VerbsLink::post_recv(&self.conn, &self.recv_mr, &mut self.recv_buf, slot) {
            return Err(self.set_broken(e));
        }
        self.owed += 1;
        self.return_credits()
    }

    /// Return credits without waiting for data to carry them once half the slots are owed (the
    /// last credit is kept for exactly this message). Tried again at every harvest, so an update
    /// skipped for a full send window still goes out.
    fn return_credits(&mut self) -> Result<()> {
        if self.owed >= RECV_SLOTS / 2 && self.credits >= 1 && self.sent - self.done < SEND_SLOTS as u64 {
            self.post_send(0, 0)?;
        }
        Ok(())
    }

    fn satisfied(&self, want: Want) -> bool {
        match want {
            Want::Data => self.spill_at < self.spill.len() || self.cur.is_some() || !self.ready.is_empty(),
            Want::Send(n) => self.sent - self.done < SEND_SLOTS as u64 && self.credits >= n,
            Want::Rdma => self.rdma_done == self.rdma_posted,
        }
    }

    /// Whether the liveness socket reached end of stream (checked at most every
    /// [`EOF_CHECK_INTERVAL`] unless `now`).
    fn peer_gone(&mut self, now: bool) -> bool {
        if self.peer_closed {
            return true;
        }
        if !now && self.last_eof_check.elapsed() < EOF_CHECK_INTERVAL {
            return false;
        }
        self.last_eof_check = Instant::now();
        let mut b = [0u8; 1];
        match sys::recv(self.tcp.as_raw_fd(), &mut b, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => self.peer_closed = true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => self.peer_closed = true,
        }
        self.peer_closed || self.conn.disconnected()
    }

    /// Wait for `want`: spin, then park on the receive queue's completion channel and the
    /// liveness socket. `Ok(false)` when `deadline` passed first.
    fn wait(&mut self, want: Want, deadline: Option<Instant>) -> Result<bool> {
        let start = Instant::now();
        loop {
            self.progress()?;
            if self.satisfied(want) {
                return Ok(true);
            }
            if self.peer_gone(false) {
                // The peer's last sends may complete here a moment after its socket closed.
                let grace = Instant::now() + PEER_GONE_GRACE;
                while Instant::now() < grace {
                    self.progress()?;
                    if self.satisfied(want) {
                        return Ok(true);
                    }
                    std::thread::yield_now();
                }
                return Err(Error::PeerClosed);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            if let Want::Send(n) = want {
                if self.credits < n && (self.cur.is_some() || !self.ready.is_empty()) {
                    // The peer may itself be blocked sending to us, waiting for the credits
                    // of slots this side has not read: free them.
                    self.spill_received()?;
                    continue;
                }
            }
            if start.elapsed() < self.policy.spin || want == Want::Rdma {
                // RDMA completions come from the NIC without the peer's software: spin for them.
                std::hint::spin_loop();
                continue;
            }
            if let Want::Send(_) = want {
                if self.sent - self.done >= SEND_SLOTS as u64 {
                    // Send completions come from the NIC too.
                    std::thread::yield_now();
                    continue;
                }
            }
            self.park(want, deadline)?;
        }
    }

    /// Copy every received message out of its slot (in stream order) and re-post the slots.
    fn spill_received(&mut self) -> Result<()> {
        if self.spill_at == self.spill.len() {
            self.spill.clear();
            self.spill_at = 0;
        }
        while let Some((slot, off, len)) = self.cur.take().or_else(|| self.ready.pop_front().map(|(s, l)| (s, 0, l))) {
            let at = slot as usize * SLOT;
            self.spill.extend_from_slice(&self.recv_buf[at + off..at + len]);
            self.repost(slot)?;
        }
        Ok(())
    }

    /// Sleep until the receive queue has a completion, the peer goes, or a slice passes.
    fn park(&mut self, want: Want, deadline: Option<Instant>) -> Result<()> {
        // SAFETY: the receive CQ is live and has a completion channel.
        if unsafe { ibv_req_notify_cq(self.conn.recv_cq, 0) } != 0 {
            return Err(self.set_broken(super::cm::fail("ibv_req_notify_cq")));
        }
        // A completion that arrived before the request was armed raises no event: look again.
        self.progress()?;
        if self.satisfied(want) || !self.ready.is_empty() {
            return Ok(());
        }
        let mut slice = PARK_SLICE;
        if let Some(d) = deadline {
            slice = slice.min(d.saturating_duration_since(Instant::now()));
        }
        // SAFETY: the completion channel is live.
        let comp_fd = unsafe { (*self.conn.comp).fd };
        let mut fds = [
            libc::pollfd { fd: comp_fd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.tcp.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 },
        ];
        let ms = i32::try_from(slice.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n > 0 && fds[0].revents & libc::POLLIN != 0 {
            let mut cq = std::ptr::null_mut();
            let mut ctx = std::ptr::null_mut();
            // SAFETY: the channel's fd is nonblocking; on success the event is acknowledged.
            if unsafe { (self.conn.v.ibv_get_cq_event)(self.conn.comp, &mut cq, &mut ctx) } == 0 {
                // SAFETY: one event got above for this CQ.
                unsafe { (self.conn.v.ibv_ack_cq_events)(cq, 1) };
            }
        }
        if n > 0 && fds[1].revents != 0 {
            self.peer_gone(true);
        }
        Ok(())
    }

    /// Post one SEND of `len` bytes of send slot `slot` (0 bytes: a credit update).
    fn post_send(&mut self, slot: usize, len: usize) -> Result<()> {
        self.post_send_flagged(slot, len, false)
    }

    /// A bare credit update that asks for a completion (covering every earlier send).
    fn post_signaled_update(&mut self) -> Result<()> {
        self.post_send_flagged(0, 0, true)
    }

    fn post_send_flagged(&mut self, slot: usize, len: usize, signaled: bool) -> Result<()> {
        let seq = self.sent;
        let mut flags = 0;
        if signaled || seq % SIGNAL_EVERY == SIGNAL_EVERY - 1 {
            flags |= ibv_send_flags::IBV_SEND_SIGNALED.0;
        }
        if len > 0 && len <= self.conn.max_inline as usize {
            flags |= ibv_send_flags::IBV_SEND_INLINE.0;
        }
        let off = slot * SLOT;
        let mut sge =
            ibv_sge { addr: self.send_buf[off..].as_ptr() as u64, length: len as u32, lkey: self.send_mr.lkey() };
        // SAFETY: all-zero is a valid ibv_send_wr; the fields that matter are set below.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = SEND_TAG | seq;
        wr.sg_list = &mut sge;
        wr.num_sge = i32::from(len > 0);
        wr.opcode = ibv_wr_opcode::IBV_WR_SEND_WITH_IMM;
        wr.send_flags = flags;
        wr.imm_data_invalidated_rkey_union.imm_data = self.owed.to_be();
        let mut bad = std::ptr::null_mut();
        // SAFETY: the queue pair is live; the slot is not reused before this send completes
        // (`sent - done` bounds it), and inline data is copied by the call.
        if unsafe { ibv_post_send(self.conn.qp, &mut wr, &mut bad) } != 0 {
            return Err(self.set_broken(super::cm::fail("ibv_post_send")));
        }
        self.owed = 0;
        self.credits -= 1;
        self.sent += 1;
        self.counters.sent_bytes += len as u64;
        Ok(())
    }

    /// Post RDMA READ (`read`) or WRITE operations between `local` (inside a registered
    /// region) and the peer's `remote` (key `rkey`), and wait until all are done.
    fn rdma(&mut self, read: bool, local: *mut u8, len: usize, remote: u64, rkey: u32) -> Result<()> {
        self.check()?;
        if len == 0 {
            return Ok(());
        }
        let addr = local as usize;
        let lkey = match self.regions.range(..=addr).next_back() {
            Some((_, mr)) if addr + len <= mr.addr() + mr.len() => mr.lkey(),
            _ => {
                return Err(Error::Protocol(format!(
                    "rdma: local buffer {addr:#x}+{len} is not inside a registered region"
                )))
            }
        };
        let mut off = 0usize;
        while off < len {
            if self.rdma_posted - self.rdma_done >= u64::from(RDMA_DEPTH) {
                self.progress()?;
                std::hint::spin_loop();
                continue;
            }
            let n = RDMA_CHUNK.min(len - off);
            let mut sge = ibv_sge { addr: (addr + off) as u64, length: n as u32, lkey };
            // SAFETY: all-zero is a valid ibv_send_wr; the fields that matter are set below.
            let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
            wr.wr_id = self.rdma_posted;
            wr.sg_list = &mut sge;
            wr.num_sge = 1;
            wr.opcode = if read { ibv_wr_opcode::IBV_WR_RDMA_READ } else { ibv_wr_opcode::IBV_WR_RDMA_WRITE };
            wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
            wr.wr.rdma = rdma_t { remote_addr: remote + off as u64, rkey };
            let mut bad = std::ptr::null_mut();
            // SAFETY: the local range is inside a registered region (checked above) that the
            // caller keeps untouched until this function returns. On success that is after every
            // operation posted here has completed; on an error the link is broken for good and
            // its queue pair is destroyed (flushing what is left) before the region goes.
            if unsafe { ibv_post_send(self.conn.qp, &mut wr, &mut bad) } != 0 {
                return Err(self.set_broken(super::cm::fail("ibv_post_send (rdma)")));
            }
            self.rdma_posted += 1;
            off += n;
        }
        self.wait(Want::Rdma, None)?;
        if read {
            self.counters.rdma_read_bytes += len as u64;
        } else {
            self.counters.rdma_write_bytes += len as u64;
        }
        Ok(())
    }
}

impl Drop for VerbsLink {
    /// Let the last sends (a Goodbye's reply, say) reach the peer before the regions go and the
    /// queue pair is disconnected, which would flush them.
    fn drop(&mut self) {
        if self.broken.is_some() || self.sent == self.done {
            return;
        }
        // Unsignaled sends complete only through a later signaled one: a bare credit update,
        // signaled, when a credit is left (there is one unless a credit update took it).
        if self.credits >= 1 && self.sent - self.done < SEND_SLOTS as u64 && self.post_signaled_update().is_err() {
            return;
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.done < self.sent && Instant::now() < deadline && self.progress().is_ok() {
            if self.peer_gone(false) {
                break;
            }
            std::thread::yield_now();
        }
    }
}

impl Link for VerbsLink {
    fn send(&mut self, parts: &[&[u8]]) -> Result<()> {
        let mut fill = 0usize;
        let mut slot = (self.sent % SEND_SLOTS as u64) as usize;
        let mut have_slot = false;
        for part in parts {
            let mut p = *part;
            while !p.is_empty() {
                if !have_slot {
                    // A data send keeps one credit back for a credit update.
                    self.wait(Want::Send(2), None)?;
                    slot = (self.sent % SEND_SLOTS as u64) as usize;
                    have_slot = true;
                    fill = 0;
                }
                let n = p.len().min(SLOT - fill);
                let off = slot * SLOT + fill;
                self.send_buf[off..off + n].copy_from_slice(&p[..n]);
                fill += n;
                p = &p[n..];
                if fill == SLOT {
                    self.post_send(slot, fill)?;
                    have_slot = false;
                }
            }
        }
        if have_slot && fill > 0 {
            self.post_send(slot, fill)?;
        }
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let deadline = self.recv_timeout.map(|t| Instant::now() + t);
        let mut got = 0;
        while got < buf.len() {
            if self.spill_at < self.spill.len() {
                let n = (self.spill.len() - self.spill_at).min(buf.len() - got);
                buf[got..got + n].copy_from_slice(&self.spill[self.spill_at..self.spill_at + n]);
                self.spill_at += n;
                got += n;
                continue;
            }
            if let Some((slot, off, len)) = self.cur {
                let n = (len - off).min(buf.len() - got);
                let at = slot as usize * SLOT + off;
                buf[got..got + n].copy_from_slice(&self.recv_buf[at..at + n]);
                got += n;
                if off + n == len {
                    self.cur = None;
                    self.repost(slot)?;
                } else {
                    self.cur = Some((slot, off + n, len));
                }
                continue;
            }
            if let Some((slot, len)) = self.ready.pop_front() {
                self.cur = Some((slot, 0, len));
                continue;
            }
            if !self.wait(Want::Data, deadline)? {
                return Err(Error::Timeout(self.recv_timeout.unwrap_or_default()));
            }
        }
        Ok(())
    }

    fn poll_readable(&mut self) -> Result<bool> {
        self.progress()?;
        if self.satisfied(Want::Data) {
            return Ok(true);
        }
        if self.peer_gone(false) {
            self.progress()?;
            return if self.satisfied(Want::Data) { Ok(true) } else { Err(Error::PeerClosed) };
        }
        Ok(false)
    }

    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.wait(Want::Data, timeout.map(|t| Instant::now() + t))
    }

    fn set_poll_policy(&mut self, policy: PollPolicy) {
        self.policy = policy;
    }

    fn set_recv_timeout(&mut self, timeout: Option<Duration>) {
        self.recv_timeout = timeout;
    }

    fn set_dead_peer_timeout(&mut self, timeout: Duration) -> Result<()> {
        crate::tcp::set_dead_peer_timeout(&self.tcp, timeout)
    }

    fn kind(&self) -> &'static str {
        "rdma"
    }

    fn peer(&self) -> String {
        self.peer.clone()
    }

    fn into_handoff(self: Box<Self>) -> Result<Handoff> {
        Err(Error::Protocol("an rdma link cannot move to another process (its queue pair stays here)".into()))
    }

    fn remote_memory(&mut self) -> Option<&mut dyn RemoteMemory> {
        Some(self)
    }
}

impl RemoteMemory for VerbsLink {
    unsafe fn register(&mut self, addr: usize, len: usize) -> Result<u32> {
        if len == 0 || self.regions.contains_key(&addr) {
            return Err(Error::Protocol(format!(
                "rdma: cannot register {addr:#x}+{len} (empty or already registered)"
            )));
        }
        // SAFETY: per this function's contract the memory stays mapped until deregistered.
        let mr = unsafe { Mr::register(self.conn.v, self.conn.pd, addr as *mut u8, len) }?;
        let rkey = mr.rkey();
        self.regions.insert(addr, mr);
        self.counters.registrations += 1;
        Ok(rkey)
    }

    fn deregister(&mut self, addr: usize) -> bool {
        self.regions.remove(&addr).is_some()
    }

    fn registered(&self, addr: usize, len: usize) -> Option<u32> {
        let (_, mr) = self.regions.range(..=addr).next_back()?;
        (addr.checked_add(len)? <= mr.addr() + mr.len()).then(|| mr.rkey())
    }

    fn read(&mut self, dst: &mut [u8], remote: u64, rkey: u32) -> Result<()> {
        self.rdma(true, dst.as_mut_ptr(), dst.len(), remote, rkey)
    }

    fn write(&mut self, src: &[u8], remote: u64, rkey: u32) -> Result<()> {
        self.rdma(false, src.as_ptr().cast_mut(), src.len(), remote, rkey)
    }

    fn counters(&self) -> RemoteCounters {
        RemoteCounters { registered: self.regions.len() as u64, ..self.counters }
    }
}
