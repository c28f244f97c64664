//! A mixed workload for load and churn tests: one client doing random operations (allocate,
//! free, copies in every direction, memset, kernels, streams, events, synchronisation) and
//! checking every byte it reads back against a host-side shadow of what it wrote.
//!
//! Used by the e2e robustness tests (many clients at once; clients killed at random points) and
//! by `remora-test-helper load URL CLIENTS OPS` on the GPU machine.

use std::time::{Duration, Instant};

use remora_interpose::client::{pack_params, Client, LaunchDims};
use remora_server::backend::demo_kernels::{DEMO_PTX, FILL_U32};
use remora_wire::ops::ImageKind;
use remora_wire::Status;

/// Largest allocation of the workload (bytes, a multiple of 4).
const MAX_ALLOC: usize = 64 << 10;
/// Most allocations one client holds at a time.
const MAX_LIVE: usize = 12;

/// What one client did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Operations completed.
    pub ops: u64,
    /// Bytes checked against the shadow.
    pub bytes_checked: u64,
    /// Kernel launches.
    pub launches: u64,
}

/// A failed operation: which, and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Operation index.
    pub op: u64,
    /// What was being done.
    pub what: String,
    /// The status (or `None` for a content mismatch).
    pub status: Option<Status>,
}

/// The demo module, its fill kernel and the kernel's parameter layout.
type Loaded = (u64, u64, Vec<(u32, u32)>);

struct Alloc {
    ptr: u64,
    shadow: Vec<u8>,
}

/// One client's random operations (seeded: the same seed does the same operations).
pub struct Workload {
    rng: fastrand::Rng,
    live: Vec<Alloc>,
    module: Option<Loaded>,
    report: Report,
}

fn fail(op: u64, what: &str) -> impl FnOnce(Status) -> Failure + '_ {
    move |s| Failure { op, what: what.to_string(), status: Some(s) }
}

impl Workload {
    /// A workload seeded with `seed`.
    pub fn new(seed: u64) -> Workload {
        Workload { rng: fastrand::Rng::with_seed(seed), live: Vec::new(), module: None, report: Report::default() }
    }

    /// Run `ops` operations (or until `deadline`), then check, free everything and close the
    /// session. Any error or mismatch stops it.
    pub fn run(&mut self, c: &Client, ops: u64, deadline: Option<Instant>) -> Result<Report, Failure> {
        for i in 0..ops {
            if deadline.is_some_and(|d| Instant::now() > d) {
                break;
            }
            self.step(c, i)?;
            self.report.ops += 1;
        }
        let end = self.report.ops;
        for a in std::mem::take(&mut self.live) {
            check(c, &a, end, &mut self.report)?;
            c.mem_free(a.ptr).map_err(fail(end, "final free"))?;
        }
        if let Some((m, ..)) = self.module.take() {
            c.module_unload(m).map_err(fail(end, "module unload"))?;
        }
        c.close().map_err(fail(end, "close"))?;
        Ok(self.report)
    }

    fn pick(&mut self) -> Option<usize> {
        (!self.live.is_empty()).then(|| self.rng.usize(..self.live.len()))
    }

    fn step(&mut self, c: &Client, i: u64) -> Result<(), Failure> {
        match self.rng.u32(..100) {
            0..=14 if self.live.len() < MAX_LIVE => {
                let len = self.rng.usize(1..=MAX_ALLOC / 4) * 4;
                let ptr = c.mem_alloc(0, len as u64).map_err(fail(i, "alloc"))?;
                let fill = self.rng.u8(..);
                c.memset(ptr, u32::from(fill), 1, len as u64, 0, true).map_err(fail(i, "memset new"))?;
                self.live.push(Alloc { ptr, shadow: vec![fill; len] });
            }
            0..=24 => {
                if let Some(k) = self.pick() {
                    let a = self.live.swap_remove(k);
                    check(c, &a, i, &mut self.report)?;
                    c.mem_free(a.ptr).map_err(fail(i, "free"))?;
                }
            }
            25..=39 => {
                if let Some(k) = self.pick() {
                    let a = &mut self.live[k];
                    let at = self.rng.usize(..a.shadow.len());
                    let n = self.rng.usize(1..=a.shadow.len() - at);
                    let data: Vec<u8> = (0..n).map(|_| self.rng.u8(..)).collect();
                    c.memcpy_htod(a.ptr + at as u64, &data).map_err(fail(i, "htod"))?;
                    a.shadow[at..at + n].copy_from_slice(&data);
                }
            }
            40..=54 => {
                if let Some(k) = self.pick() {
                    check(c, &self.live[k], i, &mut self.report)?;
                }
            }
            55..=62 => {
                if let Some(k) = self.pick() {
                    let a = &mut self.live[k];
                    let at = self.rng.usize(..a.shadow.len());
                    let n = self.rng.usize(1..=a.shadow.len() - at);
                    let v = self.rng.u8(..);
                    c.memset(a.ptr + at as u64, u32::from(v), 1, n as u64, 0, false).map_err(fail(i, "memset"))?;
                    a.shadow[at..at + n].fill(v);
                }
            }
            63..=70 => {
                if let (Some(s), Some(d)) = (self.pick(), self.pick()) {
                    if s != d {
                        let n = self.live[s].shadow.len().min(self.live[d].shadow.len());
                        let (sp, dp) = (self.live[s].ptr, self.live[d].ptr);
                        c.memcpy_dtod(dp, sp, n as u64, 0, false).map_err(fail(i, "dtod"))?;
                        let from = self.live[s].shadow[..n].to_vec();
                        self.live[d].shadow[..n].copy_from_slice(&from);
                    }
                }
            }
            71..=80 => {
                if let Some(k) = self.pick() {
                    let (m, f, layout) = match &self.module {
                        Some(x) => x.clone(),
                        None => {
                            let m = c.module_load(0, DEMO_PTX.as_bytes(), ImageKind::Ptx).map_err(fail(i, "load"))?;
                            let f = c.module_get_function(m, FILL_U32).map_err(fail(i, "function"))?;
                            let layout = c.func_param_info(f).map_err(fail(i, "param info"))?;
                            self.module = Some((m, f, layout.clone()));
                            (m, f, layout)
                        }
                    };
                    let _ = m;
                    let a = &mut self.live[k];
                    let words = (a.shadow.len() / 4) as u64;
                    let v = self.rng.u32(..);
                    let p = pack_params(&layout, &[&a.ptr.to_le_bytes(), &v.to_le_bytes(), &words.to_le_bytes()])
                        .map_err(fail(i, "pack"))?;
                    let dims = LaunchDims { grid: [4, 1, 1], block: [128, 1, 1], shared_mem: 0 };
                    c.launch(f, dims, 0, &p).map_err(fail(i, "launch"))?;
                    for (w, chunk) in (0u32..).zip(a.shadow.chunks_exact_mut(4)) {
                        chunk.copy_from_slice(&v.wrapping_add(w).to_le_bytes());
                    }
                    self.report.launches += 1;
                }
            }
            81..=88 => {
                // A blocking stream (flags 0): ordered after the work this client left on the
                // legacy stream, as CUDA orders them; a non-blocking one would race with it.
                let s = c.stream_create(0, 0, 0).map_err(fail(i, "stream create"))?;
                let e = c.event_create(0, 0).map_err(fail(i, "event create"))?;
                if let Some(k) = self.pick() {
                    let a = &mut self.live[k];
                    let n = self.rng.usize(1..=a.shadow.len());
                    let data: Vec<u8> = (0..n).map(|_| self.rng.u8(..)).collect();
                    c.memcpy_htod_async(a.ptr, &data, s).map_err(fail(i, "htod async"))?;
                    a.shadow[..n].copy_from_slice(&data);
                }
                c.event_record(e, s).map_err(fail(i, "event record"))?;
                c.event_synchronize(e).map_err(fail(i, "event sync"))?;
                c.stream_synchronize(s).map_err(fail(i, "stream sync"))?;
                c.event_destroy(e).map_err(fail(i, "event destroy"))?;
                c.stream_destroy(s).map_err(fail(i, "stream destroy"))?;
            }
            _ => c.device_synchronize(0).map_err(fail(i, "device sync"))?,
        }
        Ok(())
    }
}

fn check(c: &Client, a: &Alloc, op: u64, report: &mut Report) -> Result<(), Failure> {
    let mut back = vec![0u8; a.shadow.len()];
    c.memcpy_dtoh(&mut back, a.ptr).map_err(fail(op, "dtoh"))?;
    if back != a.shadow {
        let at = back.iter().zip(&a.shadow).position(|(x, y)| x != y).unwrap_or(0);
        return Err(Failure { op, what: format!("content differs from the shadow at byte {at}"), status: None });
    }
    report.bytes_checked += back.len() as u64;
    Ok(())
}

/// `clients` clients at once against `url`, each running [`Workload`] for `ops` operations
/// (seeded by its index) within `limit`. Returns the reports, or every failure.
pub fn run_many(url: &str, clients: usize, ops: u64, limit: Duration) -> Result<Vec<Report>, Vec<String>> {
    let deadline = Instant::now() + limit;
    let results: Vec<Result<Report, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|k| {
                s.spawn(move || {
                    let c = Client::connect(url, None).map_err(|e| format!("client {k}: connect: {e}"))?;
                    Workload::new(k as u64 + 1)
                        .run(&c, ops, Some(deadline))
                        .map_err(|f| format!("client {k}: op {} ({}): {:?}", f.op, f.what, f.status))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("client thread panicked".into()))).collect()
    });
    let (ok, bad): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    if bad.is_empty() {
        Ok(ok.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(bad.into_iter().filter_map(Result::err).collect())
    }
}
