//! Counters and per-operation latency histograms a worker keeps for its session, read by the
//! supervisor on request over the control channel (`STATS` lines, see [`crate::worker`]).
//!
//! Latencies are nanoseconds from the moment a frame's header is read to the moment its reply
//! is sent (for fire-and-forget operations: the moment the backend call returned), kept in one
//! [`Histogram`] per opcode, all allocated when the worker starts: recording takes an
//! uncontended lock and a counter increment, never an allocation. In a control line each
//! non-empty histogram is a `lat.<Opcode>=<base64>` token: hdrhistogram's V2 encoding (which
//! carries its own cookie and bounds) in standard base64 without padding. A reader ignores keys
//! it does not know, so a later format gets a new key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use remora_wire::Opcode;

/// Longest latency told apart: one hour (longer ones are recorded as one hour).
pub const LATENCY_MAX_NS: u64 = 3_600_000_000_000;
/// Significant digits of a recorded latency (2: within 1 %).
const LATENCY_DIGITS: u8 = 2;
/// Key prefix of a histogram in a control line.
const LATENCY_KEY: &str = "lat.";

/// An empty latency histogram: nanoseconds, 1 ns to [`LATENCY_MAX_NS`], 2 significant digits
/// (about 37 KiB).
pub fn latency_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_DIGITS).ok()
}

/// One preallocated latency histogram per opcode, indexed by the opcode's number.
pub struct OpLatency {
    by_opcode: Vec<Option<Histogram<u64>>>,
}

impl Default for OpLatency {
    fn default() -> OpLatency {
        let top = Opcode::ALL.iter().map(|&o| o as usize).max().unwrap_or(0);
        let mut by_opcode: Vec<Option<Histogram<u64>>> = (0..=top).map(|_| None).collect();
        for &o in Opcode::ALL {
            by_opcode[o as usize] = latency_histogram();
        }
        OpLatency { by_opcode }
    }
}

impl std::fmt::Debug for OpLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.recorded().map(|(op, h)| (op.name(), h.len()))).finish()
    }
}

impl OpLatency {
    /// Record one operation of `op` that took `nanos`.
    pub fn record(&mut self, op: Opcode, nanos: u64) {
        if let Some(Some(h)) = self.by_opcode.get_mut(op as usize) {
            h.saturating_record(nanos);
        }
    }

    /// The opcodes with at least one operation, and their histograms.
    pub fn recorded(&self) -> impl Iterator<Item = (Opcode, &Histogram<u64>)> {
        self.by_opcode.iter().enumerate().filter_map(|(i, h)| {
            let h = h.as_ref().filter(|h| !h.is_empty())?;
            let op = Opcode::try_from(u16::try_from(i).ok()?).ok()?;
            Some((op, h))
        })
    }
}

/// Latency histograms by opcode, as the supervisor keeps them (only opcodes that ran).
#[derive(Clone, Default)]
pub struct Latencies(pub Vec<(Opcode, Histogram<u64>)>);

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(op, h)| {
                (
                    op.name(),
                    format!(
                        "n={} p50={}ns p99={}ns max={}ns",
                        h.len(),
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.99),
                        h.max()
                    ),
                )
            }))
            .finish()
    }
}

impl Latencies {
    /// The `lat.<Opcode>=<base64>` tokens of a control line (unknown opcodes and undecodable
    /// values are skipped).
    pub fn from_line(line: &str) -> Latencies {
        let mut de = Deserializer::new();
        let mut out = Vec::new();
        for kv in line.split_whitespace() {
            let Some((name, b64)) = kv.strip_prefix(LATENCY_KEY).and_then(|kv| kv.split_once('=')) else { continue };
            let Some(&op) = Opcode::ALL.iter().find(|o| o.name() == name) else { continue };
            let Ok(bytes) = STANDARD_NO_PAD.decode(b64) else { continue };
            if let Ok(h) = de.deserialize::<u64, _>(&mut bytes.as_slice()) {
                out.push((op, h));
            }
        }
        Latencies(out)
    }

    /// The histograms as control-line tokens, separated by spaces.
    pub fn to_line(&self) -> String {
        let mut ser = V2Serializer::new();
        let mut bytes = Vec::new();
        let mut line = String::new();
        for (op, h) in &self.0 {
            bytes.clear();
            if ser.serialize(h, &mut bytes).is_err() {
                continue;
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(LATENCY_KEY);
            line.push_str(op.name());
            line.push('=');
            STANDARD_NO_PAD.encode_string(&bytes, &mut line);
        }
        line
    }

    /// Add `other`'s operations to these (same opcode: histograms merged).
    pub fn merge(&mut self, other: &Latencies) {
        for (op, h) in &other.0 {
            match self.0.iter_mut().find(|(o, _)| o == op) {
                Some((_, mine)) => {
                    // Same bounds everywhere, so adding cannot fail; a foreign histogram that
                    // does not fit is left out rather than half-added.
                    let _ = mine.add(h);
                }
                None => self.0.push((*op, h.clone())),
            }
        }
        self.0.sort_by_key(|(op, _)| *op as u16);
    }
}

/// Live counters of one session (updated by the polling thread, read by the control thread).
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Operations received.
    pub ops: AtomicU64,
    /// Operations that failed.
    pub errors: AtomicU64,
    /// Live device allocations.
    pub live_allocations: AtomicU64,
    /// Bytes in live allocations.
    pub live_bytes: AtomicU64,
    /// Bytes copied host → device.
    pub bytes_in: AtomicU64,
    /// Bytes copied device → host.
    pub bytes_out: AtomicU64,
    /// Operations run on a device's own polling thread (sessions with several devices).
    pub routed: AtomicU64,
    /// Latency of each operation, by opcode.
    pub latency: Mutex<OpLatency>,
}

/// A snapshot of [`SessionStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Operations received.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Live device allocations.
    pub live_allocations: u64,
    /// Bytes in live allocations.
    pub live_bytes: u64,
    /// Bytes copied host → device.
    pub bytes_in: u64,
    /// Bytes copied device → host.
    pub bytes_out: u64,
    /// Operations run on a device's own polling thread.
    pub routed: u64,
}

impl SessionStats {
    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            ops: self.ops.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            live_allocations: self.live_allocations.load(Ordering::Relaxed),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            routed: self.routed.load(Ordering::Relaxed),
        }
    }

    /// Record one operation of `op` that took `took`.
    pub fn record_latency(&self, op: Opcode, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency.lock().record(op, nanos);
    }

    /// A copy of the histograms of the opcodes that ran (copied under the lock, which is held
    /// for a memory copy only; the caller encodes them).
    pub fn latencies(&self) -> Latencies {
        Latencies(self.latency.lock().recorded().map(|(op, h)| (op, h.clone())).collect())
    }
}

impl StatsSnapshot {
    /// `key=value` text for the control channel.
    pub fn to_line(&self) -> String {
        format!(
            "ops={} errors={} allocs={} bytes={} in={} out={} routed={}",
            self.ops, self.errors, self.live_allocations, self.live_bytes, self.bytes_in, self.bytes_out, self.routed
        )
    }

    /// Parse [`StatsSnapshot::to_line`] output (unknown keys ignored).
    pub fn from_line(line: &str) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        for kv in line.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "ops" => s.ops = v,
                "errors" => s.errors = v,
                "allocs" => s.live_allocations = v,
                "bytes" => s.live_bytes = v,
                "in" => s.bytes_in = v,
                "out" => s.bytes_out = v,
                "routed" => s.routed = v,
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trip() {
        let s = StatsSnapshot {
            ops: 1,
            errors: 2,
            live_allocations: 3,
            live_bytes: 4,
            bytes_in: 5,
            bytes_out: 6,
            routed: 7,
        };
        assert_eq!(StatsSnapshot::from_line(&format!("STATS 9 {}", s.to_line())), s);
    }

    #[test]
    fn latencies_round_trip_through_a_control_line() {
        let stats = SessionStats::default();
        for us in 1..=100u64 {
            stats.record_latency(Opcode::MemAlloc, Duration::from_micros(us));
        }
        stats.record_latency(Opcode::Launch, Duration::from_nanos(700));
        stats.record_latency(Opcode::DeviceSynchronize, Duration::from_secs(2 * 3600)); // past the top
        let sent = stats.latencies();
        assert_eq!(
            sent.0.iter().map(|(op, h)| (*op, h.len())).collect::<Vec<_>>(),
            [(Opcode::DeviceSynchronize, 1), (Opcode::MemAlloc, 100), (Opcode::Launch, 1)]
        );
        let line = format!(
            "STATS 3 {} {} future=xyz lat.NoSuchOp=AAAA lat.Ping=!!",
            stats.snapshot().to_line(),
            sent.to_line()
        );
        assert!(line.len() < 1024, "a control line stays small: {} bytes", line.len());
        let got = Latencies::from_line(&line);
        assert_eq!(got.0.len(), 3, "{got:?}");
        for ((a_op, a), (b_op, b)) in sent.0.iter().zip(&got.0) {
            assert_eq!(a_op, b_op);
            assert!(a == b, "{a_op:?}: histogram changed on the way");
        }
        let alloc = &got.0[1].1;
        let p50 = alloc.value_at_quantile(0.5);
        assert!((49_500..=50_500).contains(&p50), "p50 {p50} ns");
        assert!(alloc.max() >= 100_000 && alloc.max() <= 101_000, "max {}", alloc.max());
        assert!(got.0[0].1.max() >= LATENCY_MAX_NS * 99 / 100, "clamped to the top");
        // The counters' own parser ignores the histograms.
        assert_eq!(StatsSnapshot::from_line(&line), stats.snapshot());
    }

    #[test]
    fn merging_adds_counts_per_opcode() {
        let a = SessionStats::default();
        let b = SessionStats::default();
        a.record_latency(Opcode::MemAlloc, Duration::from_micros(10));
        b.record_latency(Opcode::MemAlloc, Duration::from_micros(30));
        b.record_latency(Opcode::MemFree, Duration::from_micros(5));
        let mut all = a.latencies();
        all.merge(&b.latencies());
        let counts: Vec<(Opcode, u64, u64)> = all.0.iter().map(|(op, h)| (*op, h.len(), h.max() / 1000)).collect();
        assert_eq!(counts, [(Opcode::MemAlloc, 2, 30), (Opcode::MemFree, 1, 5)]);
    }
}
