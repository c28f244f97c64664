//! Property tests of the sans-IO session core (`remora_transport::proto`): arbitrary
//! interleavings of requests, server processing, reply delivery (in order, out of order and
//! forged), asynchronous errors and clock ticks, checked step by step against a plain model.
//!
//! 256 cases per property unless `PROPTEST_CASES` says otherwise.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;

use proptest::prelude::*;
use remora_transport::proto::{ClientProto, KeepAlive, ProtoError, ServerProto};
use remora_wire::{Flags, Header, Opcode, Status};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

const KEEPALIVE_NS: u64 = 1_000;
const DEAD_NS: u64 = 10_000;

#[derive(Debug, Clone)]
enum Step {
    /// The client starts a request (with or without a reply wanted).
    Start { op: usize, want_reply: bool },
    /// The server takes the oldest request off the wire; a fire-and-forget one may fail.
    Serve { fail: Option<u32> },
    /// The oldest reply on the wire reaches the client.
    Deliver,
    /// The second reply on the wire overtakes the first (must be refused, then delivered later).
    Overtake,
    /// A reply with an arbitrary id, or a request, arrives where a reply is expected.
    Forge { id: u64, as_request: bool },
    /// The application reads the asynchronous error.
    TakeAsync,
    /// Time passes; keep-alive is polled.
    Tick(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..Opcode::ALL.len(), any::<bool>()).prop_map(|(op, want_reply)| Step::Start { op, want_reply }),
        3 => proptest::option::weighted(0.3, 1..1000u32).prop_map(|fail| Step::Serve { fail }),
        3 => Just(Step::Deliver),
        1 => Just(Step::Overtake),
        1 => (prop_oneof![0..64u64, any::<u64>()], any::<bool>())
            .prop_map(|(id, as_request)| Step::Forge { id, as_request }),
        1 => Just(Step::TakeAsync),
        2 => prop_oneof![0..2 * KEEPALIVE_NS, 0..2 * DEAD_NS].prop_map(Step::Tick),
    ]
}

/// The model: what the core must hold after each step.
#[derive(Debug, Default)]
struct Model {
    /// Ids awaiting replies, oldest first.
    awaiting: VecDeque<u64>,
    /// Requests on the wire to the server.
    to_server: VecDeque<Header>,
    /// Replies on the wire to the client, with the status the server gave.
    to_client: VecDeque<Header>,
    last_id: u64,
    /// The client's sticky asynchronous error.
    sticky: Option<Status>,
    /// The server's pending asynchronous error.
    server_pending: Option<Status>,
    requests: u64,
    replies: u64,
    now: u64,
    last_rx: u64,
    last_tx: u64,
}

fn run(max_in_flight: usize, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut c = ClientProto::new(max_in_flight, KEEPALIVE_NS, DEAD_NS, 0);
    let mut s = ServerProto::new();
    let mut m = Model::default();
    let max = max_in_flight.max(1);
    for st in steps {
        match *st {
            Step::Start { op, want_reply } => {
                let op = Opcode::ALL[op];
                let r = c.start(op, 0, want_reply, m.now);
                if want_reply && m.awaiting.len() >= max {
                    prop_assert_eq!(r, Err(ProtoError::NoCredit(m.awaiting.len())));
                    continue;
                }
                let h = r.unwrap();
                let id = h.request_id.get();
                prop_assert!(id > m.last_id, "ids grow: {} after {}", id, m.last_id);
                m.last_id = id;
                prop_assert_eq!(h.opcode(), Ok(op));
                prop_assert_eq!(h.flags().contains(Flags::NO_REPLY), !want_reply);
                prop_assert!(!h.flags().contains(Flags::REPLY));
                if want_reply {
                    m.awaiting.push_back(id);
                }
                m.last_tx = m.now;
                m.to_server.push_back(h);
            }
            Step::Serve { fail } => {
                let Some(req) = m.to_server.pop_front() else { continue };
                let inc = s.on_request(&req).unwrap();
                m.requests += 1;
                prop_assert_eq!(inc.opcode, req.opcode());
                prop_assert_eq!(inc.wants_reply, !req.flags().contains(Flags::NO_REPLY));
                if inc.wants_reply {
                    let status = fail.map_or(Status::SUCCESS, Status);
                    let rep = s.reply(&req, status, 0);
                    m.replies += 1;
                    prop_assert_eq!(rep.async_status(), m.server_pending.take().unwrap_or(Status::SUCCESS));
                    prop_assert_eq!(rep.request_id, req.request_id);
                    prop_assert_eq!(rep.status(), status);
                    m.to_client.push_back(rep);
                } else if let Some(f) = fail {
                    s.on_async_error(Status(f));
                    m.server_pending.get_or_insert(Status(f));
                }
                // The server refuses replies posing as requests.
                let rep = Header::reply(&req, Status::SUCCESS, 0, Status::SUCCESS);
                prop_assert_eq!(s.on_request(&rep), Err(ProtoError::WrongDirection(req.opcode.get())));
                prop_assert_eq!(s.counts(), (m.requests, m.replies));
            }
            Step::Deliver => {
                let Some(rep) = m.to_client.pop_front() else { continue };
                let want = m.awaiting.pop_front();
                prop_assert_eq!(want, Some(rep.request_id.get()), "replies come in request order");
                prop_assert_eq!(c.on_reply(&rep, m.now), Ok(rep.status()));
                m.last_rx = m.now;
                if !rep.async_status().is_ok() && m.sticky.is_none() {
                    m.sticky = Some(rep.async_status());
                }
            }
            Step::Overtake => {
                if m.to_client.len() < 2 {
                    continue;
                }
                let second = m.to_client[1];
                let r = c.on_reply(&second, m.now);
                prop_assert_eq!(
                    r,
                    Err(ProtoError::UnexpectedReply {
                        got: second.request_id.get(),
                        expected: m.awaiting.front().copied()
                    })
                );
            }
            Step::Forge { id, as_request } => {
                let expected = m.awaiting.front().copied();
                if as_request {
                    let h = Header::request(Opcode::Ping, id, 0);
                    prop_assert_eq!(c.on_reply(&h, m.now), Err(ProtoError::WrongDirection(Opcode::Ping as u16)));
                } else if Some(id) != expected {
                    let h = Header::reply(&Header::request(Opcode::Ping, id, 0), Status::SUCCESS, 0, Status::ASSERT);
                    prop_assert_eq!(c.on_reply(&h, m.now), Err(ProtoError::UnexpectedReply { got: id, expected }));
                }
            }
            Step::TakeAsync => {
                prop_assert_eq!(c.take_async_error(), m.sticky.take().unwrap_or(Status::SUCCESS));
            }
            Step::Tick(dt) => {
                m.now += dt;
                let quiet = m.now.saturating_sub(m.last_rx.max(m.last_tx));
                let want = if !m.awaiting.is_empty() && quiet > DEAD_NS {
                    KeepAlive::PeerDead
                } else if m.awaiting.is_empty() && quiet > KEEPALIVE_NS {
                    KeepAlive::SendPing
                } else {
                    KeepAlive::Idle
                };
                prop_assert_eq!(c.poll_keepalive(m.now), want);
            }
        }
        // Credits: exactly the requests that wait for replies, never more than allowed.
        prop_assert_eq!(c.in_flight(), m.awaiting.len());
        prop_assert!(c.in_flight() <= max);
    }
    // Drain: serve and deliver everything; every credit comes back.
    while let Some(req) = m.to_server.pop_front() {
        if s.on_request(&req).unwrap().wants_reply {
            m.to_client.push_back(s.reply(&req, Status::SUCCESS, 0));
        }
    }
    while let Some(rep) = m.to_client.pop_front() {
        prop_assert_eq!(m.awaiting.pop_front(), Some(rep.request_id.get()));
        prop_assert!(c.on_reply(&rep, m.now).is_ok());
    }
    prop_assert_eq!(c.in_flight(), 0);
    prop_assert!(m.awaiting.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn interleavings_keep_order_credits_and_sticky_errors(
        max_in_flight in 0..6usize,
        steps in proptest::collection::vec(step(), 0..200),
    ) {
        run(max_in_flight, &steps)?;
    }
}
