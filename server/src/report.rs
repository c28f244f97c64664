//! What `remora stats` shows: the statistics document the supervisor sends to a connection
//! whose Hello asked for [`remora_wire::handshake::Capabilities::STATS`], the client call that
//! asks for it ([`fetch`]) and its table form.
//!
//! The document is JSON; its `format` field versions it ([`FORMAT`]): fields may be added
//! within a format, any other change takes a new number. Latencies are nanoseconds from a
//! frame's header read to its reply sent (see [`crate::stats`]); `operations` at the top merges
//! the live sessions' histograms, each session also has its own.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use remora_transport::{handshake, Endpoint};
use remora_wire::Opcode;
use serde::{Deserialize, Serialize};

use crate::stats::Latencies;
use crate::supervisor::ServerStats;

/// The document format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Server-wide statistics, as `remora stats --json` prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Document format ([`FORMAT`]).
    pub format: u32,
    /// Backend the workers run (`cuda`, `emulated`), once one has reported.
    pub backend: Option<String>,
    /// Live sessions (a statistics connection is none of them).
    pub live_sessions: u64,
    /// Live device allocations, all sessions together.
    pub live_allocations: u64,
    /// Bytes in those allocations.
    pub live_bytes: u64,
    /// Workers started and waiting for a session.
    pub idle_workers: u64,
    /// Sessions that ended since the server started (of the last 4096 workers).
    pub ended_sessions: u64,
    /// Operations of the live sessions, by opcode.
    pub operations: Vec<OpReport>,
    /// Every live session, by id.
    pub sessions: Vec<SessionReport>,
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionReport {
    /// Session id.
    pub id: u64,
    /// The worker process serving it.
    pub worker_pid: u32,
    /// The client's claimed pid.
    pub client_pid: u32,
    /// The client's address.
    pub peer: String,
    /// Backend the worker runs.
    pub backend: String,
    /// The session's devices: PCI bus ids (`-` where the backend has none).
    pub devices: Vec<String>,
    /// Core of its polling thread.
    pub core: Option<usize>,
    /// Seconds since it started.
    pub age_s: f64,
    /// Live device allocations.
    pub live_allocations: u64,
    /// Bytes in them.
    pub live_bytes: u64,
    /// Operations received.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Bytes copied host → device.
    pub bytes_in: u64,
    /// Bytes copied device → host.
    pub bytes_out: u64,
    /// Operations by opcode.
    pub operations: Vec<OpReport>,
}

/// Count and latency of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpReport {
    /// The opcode's name (`MemAlloc`, `Launch`).
    pub op: String,
    /// Operations run.
    pub count: u64,
    /// Median latency, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile latency, nanoseconds.
    pub p99_ns: u64,
    /// Longest latency, nanoseconds.
    pub max_ns: u64,
}

impl OpReport {
    fn new(op: Opcode, h: &Histogram<u64>) -> OpReport {
        OpReport {
            op: op.name().to_string(),
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
        }
    }
}

fn ops(l: &Latencies) -> Vec<OpReport> {
    l.0.iter().map(|(op, h)| OpReport::new(*op, h)).collect()
}

impl Report {
    /// The report of `s`.
    pub fn from_stats(s: &ServerStats) -> Report {
        Report {
            format: FORMAT,
            backend: s.backend.clone(),
            live_sessions: s.live_sessions as u64,
            live_allocations: s.live_allocations,
            live_bytes: s.live_bytes,
            idle_workers: s.idle_workers as u64,
            ended_sessions: s.ended.iter().filter(|e| e.session_id.is_some()).count() as u64,
            operations: ops(&s.latency),
            sessions: s
                .sessions
                .iter()
                .map(|x| SessionReport {
                    id: x.id,
                    worker_pid: x.worker_pid,
                    client_pid: x.client_pid,
                    peer: x.peer.clone(),
                    backend: x.backend.clone(),
                    devices: x.devices.clone(),
                    core: x.core,
                    age_s: x.age_s,
                    live_allocations: x.stats.live_allocations,
                    live_bytes: x.stats.live_bytes,
                    ops: x.stats.ops,
                    errors: x.stats.errors,
                    bytes_in: x.stats.bytes_in,
                    bytes_out: x.stats.bytes_out,
                    operations: ops(&x.latency),
                })
                .collect(),
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Read a JSON document; refuses a format this build does not know.
    pub fn from_json(doc: &[u8]) -> Result<Report, String> {
        let v: serde_json::Value = serde_json::from_slice(doc).map_err(|e| e.to_string())?;
        match v.get("format").and_then(serde_json::Value::as_u64) {
            Some(f) if f == u64::from(FORMAT) => serde_json::from_value(v).map_err(|e| e.to_string()),
            Some(f) => Err(format!("statistics format {f}; this remora reads format {FORMAT}")),
            None => Err("no statistics format".into()),
        }
    }

    /// The report as text tables: a summary line, one row per session, one per operation.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "backend {} · {} live session{} · {} allocation{} ({}) · {} idle worker{} · {} ended",
            self.backend.as_deref().unwrap_or("?"),
            self.live_sessions,
            plural(self.live_sessions),
            self.live_allocations,
            plural(self.live_allocations),
            bytes(self.live_bytes),
            self.idle_workers,
            plural(self.idle_workers),
            self.ended_sessions,
        );
        if !self.sessions.is_empty() {
            out.push('\n');
            let mut t = Table::new(&[
                "SESSION", "WORKER", "CLIENT", "BACKEND", "DEVICES", "ALLOCS", "BYTES", "OPS", "ERRORS", "IN", "OUT",
                "AGE",
            ]);
            for s in &self.sessions {
                t.row(vec![
                    s.id.to_string(),
                    s.worker_pid.to_string(),
                    s.client_pid.to_string(),
                    s.backend.clone(),
                    devices(&s.devices),
                    s.live_allocations.to_string(),
                    bytes(s.live_bytes),
                    s.ops.to_string(),
                    s.errors.to_string(),
                    bytes(s.bytes_in),
                    bytes(s.bytes_out),
                    format!("{:.1} s", s.age_s),
                ]);
            }
            t.render(&mut out, &[3, 4]);
        }
        if !self.operations.is_empty() {
            out.push('\n');
            let mut t = Table::new(&["OPERATION", "COUNT", "P50", "P99", "MAX"]);
            for o in &self.operations {
                t.row(vec![o.op.clone(), o.count.to_string(), nanos(o.p50_ns), nanos(o.p99_ns), nanos(o.max_ns)]);
            }
            t.render(&mut out, &[0]);
        }
        out
    }
}

/// Errors of [`fetch`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting, the handshake or the transfer failed (a missing or wrong token included).
    #[error("{url}: {source}")]
    Transport {
        /// The server.
        url: String,
        /// Why.
        source: remora_transport::Error,
    },
    /// The server's document does not parse.
    #[error("{url}: bad statistics document: {why}")]
    Document {
        /// The server.
        url: String,
        /// Why.
        why: String,
    },
}

/// Ask the server at `url` (`tcp://`, `shm://`, as clients name it) for its statistics, proving
/// `token` when it requires one. The server answers it itself: no worker, no session.
pub fn fetch(url: &str, token: Option<&str>) -> Result<Report, FetchError> {
    let transport = |source| FetchError::Transport { url: url.to_string(), source };
    let ep: Endpoint = url.parse().map_err(transport)?;
    let mut link = remora_transport::connect(&ep).map_err(transport)?;
    // The supervisor waits at most 1 s for its workers' counters.
    link.set_recv_timeout(Some(Duration::from_secs(10)));
    let doc = handshake::client_stats(&mut *link, token.map(str::as_bytes)).map_err(transport)?;
    Report::from_json(&doc).map_err(|why| FetchError::Document { url: url.to_string(), why })
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn devices(d: &[String]) -> String {
    if d.iter().all(|p| p == "-") {
        format!("{} device{}", d.len(), plural(d.len() as u64))
    } else {
        d.join(",")
    }
}

/// `1.5 MiB`, `512 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
fn nanos(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

/// Columns padded to their widest cell.
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Table {
        Table { head: head.iter().map(|h| (*h).to_string()).collect(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Columns in `left` are left-aligned, the others (numbers) right-aligned.
    fn render(&self, out: &mut String, left: &[usize]) {
        let mut width: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(&width).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(w - c.chars().count());
                if left.contains(&i) {
                    line.push_str(c);
                    line.push_str(&pad);
                } else {
                    line.push_str(&pad);
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stats::SessionStats;

    fn sample() -> Report {
        let st = SessionStats::default();
        for us in [10, 20, 30] {
            st.record_latency(Opcode::MemAlloc, Duration::from_micros(us));
        }
        let session = SessionReport {
            id: 7,
            worker_pid: 1234,
            client_pid: 99,
            peer: "127.0.0.1:5555".into(),
            backend: "emulated".into(),
            devices: vec!["-".into()],
            core: Some(1),
            age_s: 1.5,
            live_allocations: 3,
            live_bytes: 3 << 20,
            ops: 9,
            errors: 1,
            bytes_in: 4096,
            bytes_out: 0,
            operations: ops(&st.latencies()),
        };
        Report {
            format: FORMAT,
            backend: Some("emulated".into()),
            live_sessions: 1,
            live_allocations: 3,
            live_bytes: 3 << 20,
            idle_workers: 2,
            ended_sessions: 4,
            operations: session.operations.clone(),
            sessions: vec![session],
        }
    }

    #[test]
    fn json_round_trip() {
        let r = sample();
        let doc = r.to_json().unwrap();
        assert_eq!(Report::from_json(doc.as_bytes()).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["live_bytes"], 3 << 20);
        assert_eq!(v["sessions"][0]["operations"][0]["op"], "MemAlloc");
        assert_eq!(v["sessions"][0]["operations"][0]["count"], 3);
        let p50 = v["operations"][0]["p50_ns"].as_u64().unwrap();
        assert!((19_800..=20_200).contains(&p50), "p50 {p50}");
        // Fields added later within the format are ignored; another format is refused.
        let newer = doc.replacen('{', r#"{"added_later": [1, 2],"#, 1);
        assert_eq!(Report::from_json(newer.as_bytes()).unwrap(), r);
        let other = doc.replacen("\"format\": 1", "\"format\": 2", 1);
        assert!(Report::from_json(other.as_bytes()).unwrap_err().contains("format 2"));
    }

    #[test]
    fn table_shows_sessions_and_operations() {
        let t = sample().table();
        assert!(t.starts_with("backend emulated · 1 live session · 3 allocations (3.0 MiB) · 2 idle workers"), "{t}");
        let row = t.lines().find(|l| l.trim_start().starts_with("7 ")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..6], ["7", "1234", "99", "emulated", "1", "device"], "{t}");
        let op = t.lines().find(|l| l.starts_with("MemAlloc")).unwrap();
        let o = &sample().operations[0];
        assert!(op.contains(" 3 ") && op.contains(&nanos(o.p50_ns)) && op.ends_with(&nanos(o.max_ns)), "{op}");
        assert!(nanos(o.max_ns).starts_with("30."), "{op}");
    }

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(nanos(850), "850 ns");
        assert_eq!(nanos(12_345), "12.3 µs");
        assert_eq!(nanos(4_560_000), "4.56 ms");
    }
}
