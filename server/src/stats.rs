//! Counters a worker keeps for its session, read by the supervisor on request.

use std::sync::atomic::{AtomicU64, Ordering};

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
}
