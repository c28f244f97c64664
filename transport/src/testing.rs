//! An in-memory [`Link`] for tests and fuzz targets (cargo feature `testing`).
//!
//! [`MemLink`] plays a peer that has already written its whole byte stream and closed: reads
//! take bytes from that stream in order, and once it is used up every read fails with
//! [`Error::PeerClosed`] at once (never blocks), as does [`Link::poll_readable`], so a server
//! loop driven by it always ends. What the server sends is kept (up to a cap) in a [`Sent`]
//! handle the caller holds on to, so replies can be inspected after the link was moved into a
//! session.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use remora_wire::{Header, HEADER_LEN};
use zerocopy::FromBytes;

use crate::{Error, Handoff, Link, PollPolicy, Result};

/// Bytes of sent data a [`MemLink`] keeps unless told otherwise (the rest is only counted).
pub const DEFAULT_KEEP: usize = 1 << 20;

#[derive(Debug, Default)]
struct SentState {
    bytes: Vec<u8>,
    total: u64,
    sends: u64,
}

/// What a [`MemLink`] sent: the first bytes (up to the link's cap) and the total count.
#[derive(Debug, Clone, Default)]
pub struct Sent(Arc<Mutex<SentState>>);

impl Sent {
    fn lock(&self) -> MutexGuard<'_, SentState> {
        // A test thread that panicked while holding the lock leaves valid bytes behind.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bytes kept (the first ones sent, at most the link's cap).
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    /// Every byte sent, kept or not.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// Number of [`Link::send`] calls.
    pub fn sends(&self) -> u64 {
        self.lock().sends
    }

    /// Whether some sent bytes were counted but not kept.
    pub fn truncated(&self) -> bool {
        let s = self.lock();
        s.total > s.bytes.len() as u64
    }

    /// The complete frames among the kept bytes: each header (validated) with its payload.
    /// A kept tail too short to be a whole frame is left out; a header that does not validate
    /// is an error (the sender broke the framing).
    pub fn frames(&self) -> Result<Vec<(Header, Vec<u8>)>> {
        let bytes = self.bytes();
        let mut rest = &bytes[..];
        let mut frames = Vec::new();
        while rest.len() >= HEADER_LEN {
            let (hdr, after) = Header::read_from_prefix(rest).map_err(|_| Error::Protocol("short header".into()))?;
            hdr.validate()?;
            let Some(payload) = after.get(..hdr.payload_len()) else { break };
            frames.push((hdr, payload.to_vec()));
            rest = &after[payload.len()..];
        }
        Ok(frames)
    }
}

/// An in-memory link over a fixed input stream (see the module docs).
#[derive(Debug)]
pub struct MemLink {
    input: Vec<u8>,
    pos: usize,
    sent: Sent,
    keep: usize,
}

impl MemLink {
    /// A link that reads `input` and then reports the peer closed; keeps [`DEFAULT_KEEP`] sent bytes.
    pub fn new(input: impl Into<Vec<u8>>) -> (MemLink, Sent) {
        MemLink::with_keep(input, DEFAULT_KEEP)
    }

    /// As [`MemLink::new`], keeping at most `keep` of the bytes sent (all are counted).
    pub fn with_keep(input: impl Into<Vec<u8>>, keep: usize) -> (MemLink, Sent) {
        let sent = Sent::default();
        (MemLink { input: input.into(), pos: 0, sent: sent.clone(), keep }, sent)
    }

    /// Input bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }
}

impl Link for MemLink {
    fn send(&mut self, parts: &[&[u8]]) -> Result<()> {
        let mut s = self.sent.lock();
        s.sends += 1;
        for part in parts {
            s.total += part.len() as u64;
            let room = self.keep.saturating_sub(s.bytes.len());
            s.bytes.extend_from_slice(&part[..part.len().min(room)]);
        }
        Ok(())
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let Some(src) = self.input.get(self.pos..self.pos.saturating_add(buf.len())) else {
            // The peer wrote no more: it is gone, and what it left is not a whole read.
            self.pos = self.input.len();
            return Err(Error::PeerClosed);
        };
        buf.copy_from_slice(src);
        self.pos += buf.len();
        Ok(())
    }

    fn poll_readable(&mut self) -> Result<bool> {
        if self.remaining() > 0 {
            Ok(true)
        } else {
            Err(Error::PeerClosed)
        }
    }

    fn wait_readable(&mut self, _timeout: Option<Duration>) -> Result<bool> {
        self.poll_readable()
    }

    fn set_poll_policy(&mut self, _policy: PollPolicy) {}

    fn set_recv_timeout(&mut self, _timeout: Option<Duration>) {}

    fn kind(&self) -> &'static str {
        "mem"
    }

    fn peer(&self) -> String {
        "mem://test".into()
    }

    fn into_handoff(self: Box<Self>) -> Result<Handoff> {
        Err(Error::Protocol("an in-memory link has no file descriptors to hand off".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{recv_header, send_frame};
    use remora_wire::Opcode;
    use zerocopy::IntoBytes;

    #[test]
    fn reads_in_order_then_reports_the_peer_closed() {
        let (mut link, _) = MemLink::new(vec![1, 2, 3, 4, 5]);
        let mut two = [0u8; 2];
        link.recv_exact(&mut two).unwrap();
        assert_eq!(two, [1, 2]);
        assert!(link.poll_readable().unwrap());
        let mut four = [0u8; 4];
        assert!(matches!(link.recv_exact(&mut four), Err(Error::PeerClosed)), "a short read fails, never blocks");
        assert_eq!(link.remaining(), 0);
        assert!(matches!(link.poll_readable(), Err(Error::PeerClosed)));
        assert!(matches!(link.wait_readable(None), Err(Error::PeerClosed)));
        link.recv_exact(&mut []).unwrap();
    }

    #[test]
    fn keeps_sent_frames_up_to_the_cap() {
        let (mut link, sent) = MemLink::with_keep(Vec::new(), HEADER_LEN + 3);
        let h = Header::request(Opcode::Ping, 7, 3);
        send_frame(&mut link, &h, b"abc", &[]).unwrap();
        send_frame(&mut link, &Header::request(Opcode::Ping, 8, 0), &[], &[]).unwrap();
        assert_eq!((sent.total(), sent.sends()), (2 * HEADER_LEN as u64 + 3, 2));
        assert!(sent.truncated());
        let frames = sent.frames().unwrap();
        assert_eq!(frames, vec![(h, b"abc".to_vec())]);

        let (mut link, _) = MemLink::new(h.as_bytes().to_vec());
        assert_eq!(recv_header(&mut link).unwrap(), h);
        assert!(Box::new(link).into_handoff().is_err());
    }

    #[test]
    fn frames_reports_broken_framing() {
        let (mut link, sent) = MemLink::new(Vec::new());
        link.send(&[&[0xee; HEADER_LEN]]).unwrap();
        assert!(sent.frames().is_err());
    }
}
