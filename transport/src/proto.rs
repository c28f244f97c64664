//! The sans-IO session core: request ids, reply matching, credits, sticky asynchronous errors,
//! keep-alive and peer-death timers. Owns no socket and reads no clock; `now` is passed in as
//! nanoseconds from any fixed origin.
//!
//! Inputs are `on_*` calls, outputs `poll_*`/return values. The client core calls, per request:
//! [`ClientProto::start`] → (send) → for each reply header [`ClientProto::on_reply`]; and, whenever
//! it is idle, [`ClientProto::poll_keepalive`].

use std::collections::VecDeque;

use remora_wire::{Flags, Header, Opcode, Status};

/// Protocol-level failures detected by the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// Too many requests await replies.
    #[error("no credit: {0} requests already await replies")]
    NoCredit(usize),
    /// A reply arrived that matches no outstanding request.
    #[error("unexpected reply id {got} (expected {expected:?})")]
    UnexpectedReply {
        /// Id received.
        got: u64,
        /// Oldest outstanding id.
        expected: Option<u64>,
    },
    /// A frame without the reply flag where a reply was expected (or the reverse).
    #[error("frame direction wrong: opcode {0:#06x}")]
    WrongDirection(u16),
}

/// Client-side session state.
#[derive(Debug)]
pub struct ClientProto {
    next_id: u64,
    awaiting: VecDeque<(u64, u16)>,
    max_in_flight: usize,
    sticky: Status,
    last_rx_ns: u64,
    last_tx_ns: u64,
    keepalive_ns: u64,
    dead_after_ns: u64,
}

/// What [`ClientProto::poll_keepalive`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Nothing to do.
    Idle,
    /// Send a [`Opcode::Ping`]: the link has been quiet for the keep-alive interval.
    SendPing,
    /// Replies are overdue beyond the dead-peer limit: treat the peer as dead.
    PeerDead,
}

impl ClientProto {
    /// A new session core. `max_in_flight` caps requests awaiting replies; keep-alive and
    /// dead-peer limits are in nanoseconds.
    pub fn new(max_in_flight: usize, keepalive_ns: u64, dead_after_ns: u64, now: u64) -> ClientProto {
        ClientProto {
            next_id: 1,
            awaiting: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            sticky: Status::SUCCESS,
            last_rx_ns: now,
            last_tx_ns: now,
            keepalive_ns,
            dead_after_ns,
        }
    }

    /// Allocate a request header for `opcode` with `len` payload bytes. With `want_reply` false
    /// the request is fire-and-forget and consumes no credit.
    pub fn start(&mut self, opcode: Opcode, len: u64, want_reply: bool, now: u64) -> Result<Header, ProtoError> {
        if want_reply && self.awaiting.len() >= self.max_in_flight {
            return Err(ProtoError::NoCredit(self.awaiting.len()));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.last_tx_ns = now;
        if want_reply {
            self.awaiting.push_back((id, opcode as u16));
            Ok(Header::request(opcode, id, len))
        } else {
            Ok(Header::request_no_reply(opcode, id, len))
        }
    }

    /// A reply header arrived. Replies come in request order. Returns the reply's status; the
    /// reply's fire-and-forget error, if any, is kept as the session's sticky error.
    pub fn on_reply(&mut self, hdr: &Header, now: u64) -> Result<Status, ProtoError> {
        if !hdr.flags().contains(Flags::REPLY) {
            return Err(ProtoError::WrongDirection(hdr.opcode.get()));
        }
        let expected = self.awaiting.front().map(|&(id, _)| id);
        if expected != Some(hdr.request_id.get()) {
            return Err(ProtoError::UnexpectedReply { got: hdr.request_id.get(), expected });
        }
        self.awaiting.pop_front();
        self.last_rx_ns = now;
        let a = hdr.async_status();
        if !a.is_ok() && self.sticky.is_ok() {
            self.sticky = a;
        }
        Ok(hdr.status())
    }

    /// Take the first asynchronous error reported since the last call (CUDA's "last error" for
    /// asynchronous work; fatal errors are also kept by the caller).
    pub fn take_async_error(&mut self) -> Status {
        core::mem::replace(&mut self.sticky, Status::SUCCESS)
    }

    /// Keep `status` (taken with [`ClientProto::take_async_error`]) for a later call, unless an
    /// error is already kept: a reply that failed itself reports its own status, and the
    /// asynchronous error it carried waits for the next call that succeeds.
    pub fn defer_async_error(&mut self, status: Status) {
        if self.sticky.is_ok() {
            self.sticky = status;
        }
    }

    /// Requests awaiting replies.
    pub fn in_flight(&self) -> usize {
        self.awaiting.len()
    }

    /// Keep-alive and dead-peer timers.
    pub fn poll_keepalive(&self, now: u64) -> KeepAlive {
        if !self.awaiting.is_empty() && now.saturating_sub(self.last_rx_ns.max(self.last_tx_ns)) > self.dead_after_ns {
            return KeepAlive::PeerDead;
        }
        if self.awaiting.is_empty() && now.saturating_sub(self.last_rx_ns.max(self.last_tx_ns)) > self.keepalive_ns {
            return KeepAlive::SendPing;
        }
        KeepAlive::Idle
    }
}

/// What the server does with an incoming request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// The opcode, or the raw unknown value.
    pub opcode: Result<Opcode, u16>,
    /// Whether a reply must be sent.
    pub wants_reply: bool,
    /// Payload bytes to read (or discard).
    pub len: u64,
}

/// Server-side session state.
#[derive(Debug)]
pub struct ServerProto {
    pending_async: Status,
    requests: u64,
    replies: u64,
}

impl Default for ServerProto {
    fn default() -> ServerProto {
        ServerProto::new()
    }
}

impl ServerProto {
    /// A new server-side core.
    pub fn new() -> ServerProto {
        ServerProto { pending_async: Status::SUCCESS, requests: 0, replies: 0 }
    }

    /// A request header arrived (already validated for magic, version and length).
    pub fn on_request(&mut self, hdr: &Header) -> Result<Incoming, ProtoError> {
        if hdr.flags().contains(Flags::REPLY) {
            return Err(ProtoError::WrongDirection(hdr.opcode.get()));
        }
        self.requests += 1;
        Ok(Incoming { opcode: hdr.opcode(), wants_reply: !hdr.flags().contains(Flags::NO_REPLY), len: hdr.len.get() })
    }

    /// A fire-and-forget request failed: keep its status for the next reply (first error wins).
    pub fn on_async_error(&mut self, status: Status) {
        if self.pending_async.is_ok() {
            self.pending_async = status;
        }
    }

    /// Build the reply header for `req`, attaching (and clearing) the pending asynchronous error.
    pub fn reply(&mut self, req: &Header, status: Status, len: u64) -> Header {
        self.replies += 1;
        let a = core::mem::replace(&mut self.pending_async, Status::SUCCESS);
        Header::reply(req, status, len, a)
    }

    /// Requests seen and replies built.
    pub fn counts(&self) -> (u64, u64) {
        (self.requests, self.replies)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_credits_and_matching() {
        let mut c = ClientProto::new(2, 1_000, 10_000, 0);
        let a = c.start(Opcode::MemAlloc, 16, true, 1).unwrap();
        let _l = c.start(Opcode::Launch, 56, false, 1).unwrap();
        let b = c.start(Opcode::MemFree, 8, true, 1).unwrap();
        assert_eq!(c.start(Opcode::Ping, 0, true, 1), Err(ProtoError::NoCredit(2)));
        assert_eq!(c.in_flight(), 2);
        let mut s = ServerProto::new();
        assert!(s.on_request(&a).unwrap().wants_reply);
        s.on_async_error(Status::LAUNCH_FAILED);
        s.on_async_error(Status::ILLEGAL_ADDRESS);
        // Out-of-order reply is refused.
        let rb = s.reply(&b, Status::SUCCESS, 0);
        assert!(
            matches!(c.on_reply(&rb, 2), Err(ProtoError::UnexpectedReply { got, expected: Some(e) }) if got == b.request_id.get() && e == a.request_id.get())
        );
        let ra = Header::reply(&a, Status::SUCCESS, 8, Status::LAUNCH_FAILED);
        assert_eq!(c.on_reply(&ra, 2), Ok(Status::SUCCESS));
        assert_eq!(c.take_async_error(), Status::LAUNCH_FAILED);
        assert_eq!(c.take_async_error(), Status::SUCCESS);
        // Deferred for a later call, and the first error kept stays first.
        c.defer_async_error(Status::LAUNCH_FAILED);
        c.defer_async_error(Status::ILLEGAL_ADDRESS);
        assert_eq!(c.take_async_error(), Status::LAUNCH_FAILED);
        assert_eq!(c.take_async_error(), Status::SUCCESS);
        assert_eq!(c.on_reply(&rb, 3), Ok(Status::SUCCESS));
        assert_eq!(c.in_flight(), 0);
        // A request frame is not a reply.
        assert_eq!(c.on_reply(&a, 3), Err(ProtoError::WrongDirection(Opcode::MemAlloc as u16)));
    }

    #[test]
    fn server_attaches_first_async_error_once() {
        let mut s = ServerProto::new();
        let req = Header::request(Opcode::Ping, 5, 0);
        s.on_async_error(Status::ASSERT);
        s.on_async_error(Status::LAUNCH_FAILED);
        assert_eq!(s.reply(&req, Status::SUCCESS, 0).async_status(), Status::ASSERT);
        assert_eq!(s.reply(&req, Status::SUCCESS, 0).async_status(), Status::SUCCESS);
        let rep = s.reply(&req, Status::SUCCESS, 0);
        assert!(s.on_request(&rep).is_err());
        assert_eq!(s.counts(), (0, 3));
    }

    #[test]
    fn keepalive_and_dead_peer() {
        let mut c = ClientProto::new(4, 100, 1_000, 0);
        assert_eq!(c.poll_keepalive(50), KeepAlive::Idle);
        assert_eq!(c.poll_keepalive(150), KeepAlive::SendPing);
        c.start(Opcode::Ping, 0, true, 200).unwrap();
        assert_eq!(c.poll_keepalive(900), KeepAlive::Idle);
        assert_eq!(c.poll_keepalive(1_300), KeepAlive::PeerDead);
    }
}
