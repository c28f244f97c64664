//! CUDA graphs and stream capture, emulated on the client.
//!
//! A graph is a client-side record of operations ([`Op`]) with their dependencies; an
//! executable graph is a snapshot of its nodes in a topological order, and `cudaGraphLaunch`
//! replays them ([`replay`]) onto the launch stream with the same client calls the plain API
//! uses (fire-and-forget where the plain call is). One stream serialises everything, so a
//! topological order gives exactly a local GPU's results; what is not kept is the speed benefit
//! of graphs. Handles (`cudaGraph_t`, `cudaGraphNode_t`, `cudaGraphExec_t`) are numbers from one
//! counter, never addresses.
//!
//! Semantics kept:
//! - Memcpy nodes record pointers, not data: a host → device node reads host memory at replay.
//! - Kernel nodes record the kernel and a copy of its argument bytes, packed when the node is
//!   added or captured (`launch::prepare`, the same packing and limit checks as a launch).
//! - Host nodes run on the client, in the replaying thread, once the stream has reached them
//!   (the stream is synchronised first, as `cudaLaunchHostFunc` does).
//! - Memory alloc nodes: CUDA fixes the address when the node is added (`dptr` is written by
//!   `cudaGraphAddMemAllocNode`), so the memory is allocated then and kept, at the same address,
//!   for as long as a graph or executable graph holding the node exists ([`GraphAlloc`]). At
//!   replay an alloc node does nothing and a free node does nothing either: the memory stays
//!   reserved for the next launch, as the driver's graph memory pool keeps it. A program that
//!   `cudaFree`s it itself is honoured (the graph then frees nothing).
//!
//! Stream capture: [`capture`] is the hook the stream-ordered shims call with the wire stream
//! handle. While that stream is capturing, the shim's operation becomes a node depending on the
//! previously captured one and nothing runs; otherwise the shim does the work itself.
//! Synchronising or querying a capturing stream fails with `cudaErrorStreamCaptureUnsupported`
//! and invalidates the capture, as CUDA does. Cross-stream capture: an event recorded on a
//! capturing stream marks a point of the capture ([`record_event`]); another stream waiting on
//! it joins the capture from that point (fork), and the origin waiting on an event recorded on
//! a joined stream merges that branch back (join) — [`wait_event`]. Ending the capture checks
//! that every joined stream joined back.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::Mutex;
use remora_interpose::cudart::types::CudaMemcpy3DParms;

use crate::shim::launch::{self, Packed};
use crate::shim::memory;
use crate::shim::stream::HostFn;
use crate::state::{cuda, rt, CudaError, INVALID_VALUE, NOT_SUPPORTED};

/// `cudaErrorIllegalState`.
pub(crate) const ILLEGAL_STATE: CudaError = 401;
/// `cudaErrorStreamCaptureUnsupported`.
pub(crate) const STREAM_CAPTURE_UNSUPPORTED: CudaError = 900;
/// `cudaErrorStreamCaptureInvalidated`.
pub(crate) const STREAM_CAPTURE_INVALIDATED: CudaError = 901;
/// `cudaErrorStreamCaptureUnmatched`.
pub(crate) const STREAM_CAPTURE_UNMATCHED: CudaError = 903;
/// `cudaErrorStreamCaptureUnjoined`.
pub(crate) const STREAM_CAPTURE_UNJOINED: CudaError = 904;
/// `cudaErrorStreamCaptureIsolation`.
pub(crate) const STREAM_CAPTURE_ISOLATION: CudaError = 905;
/// `cudaErrorStreamCaptureImplicit`.
pub(crate) const STREAM_CAPTURE_IMPLICIT: CudaError = 906;
/// `cudaErrorCapturedEvent`.
pub(crate) const CAPTURED_EVENT: CudaError = 907;
/// `cudaErrorStreamCaptureWrongThread`.
pub(crate) const STREAM_CAPTURE_WRONG_THREAD: CudaError = 908;
/// `cudaErrorGraphExecUpdateFailure`.
pub(crate) const GRAPH_EXEC_UPDATE_FAILURE: CudaError = 910;

/// `cudaGraphExecUpdateResult` values.
pub(crate) const UPDATE_TOPOLOGY_CHANGED: i32 = 2;
pub(crate) const UPDATE_NODE_TYPE_CHANGED: i32 = 3;

/// `cudaStreamCaptureModeRelaxed`.
pub(crate) const CAPTURE_MODE_RELAXED: i32 = 2;

/// A 1D copy node: `count` bytes, direction `kind` (resolved at replay, as the plain call does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Memcpy {
    pub(crate) dst: u64,
    pub(crate) src: u64,
    pub(crate) count: usize,
    pub(crate) kind: i32,
}

/// A 3D (pitched or linear) copy node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Copy3D(pub(crate) CudaMemcpy3DParms);

// SAFETY: the pointers inside are addresses the application passed; the store only keeps them
// as numbers, and they are dereferenced only at replay, under the same API contract as the call
// that recorded them (the application keeps the memory valid while the graph can run).
unsafe impl Send for Copy3D {}

/// A memset node: `height` rows of `width` elements of `element_size` bytes, `pitch` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Memset {
    pub(crate) dst: u64,
    pub(crate) pitch: usize,
    pub(crate) value: u32,
    pub(crate) element_size: u32,
    pub(crate) width: usize,
    pub(crate) height: usize,
}

impl Memset {
    /// A byte memset (what `cudaMemset*Async` capture): the value's low byte.
    pub(crate) fn bytes(dst: u64, value: i32, pitch: usize, height: usize, width: usize) -> Memset {
        Memset { dst, pitch, value: (value & 0xff) as u32, element_size: 1, width, height }
    }
}

/// A host node: the function and its user data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Host {
    pub(crate) f: HostFn,
    pub(crate) user_data: usize,
}

/// Memory of an alloc node: allocated when the node was added, freed when the last graph or
/// executable graph holding the node is gone (unless the program freed it first).
#[derive(Debug)]
pub(crate) struct GraphAlloc {
    pub(crate) ptr: u64,
}

impl Drop for GraphAlloc {
    fn drop(&mut self) {
        // Never connect for this; only free what is still ours.
        let Some(rt) = crate::state::rt_if_connected() else { return };
        if rt.allocations.lock().remove(&self.ptr).is_some() {
            let _ = rt.client.mem_free(self.ptr);
        }
    }
}

/// What a node does.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Empty,
    Kernel(Packed),
    Memcpy(Memcpy),
    Memcpy3D(Copy3D),
    Memset(Memset),
    Host(Host),
    /// Holds the memory (read by no one: owning it is the point).
    MemAlloc(#[allow(dead_code)] Arc<GraphAlloc>),
    /// The pointer freed (kept for diagnostics: replay frees nothing).
    MemFree(#[allow(dead_code)] u64),
}

impl Op {
    fn same_kind(&self, other: &Op) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A node: its handle, operation and the nodes it depends on.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) op: Op,
    pub(crate) deps: Vec<u64>,
}

/// A graph: nodes in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    /// For a clone: original node → its copy here (`cudaGraphNodeFindInClone`).
    pub(crate) clone_of: HashMap<u64, u64>,
}

impl Graph {
    /// Add a node depending on `deps`, which must be nodes of this graph.
    pub(crate) fn add(&mut self, id: u64, op: Op, deps: &[u64]) -> Result<(), CudaError> {
        if deps.iter().any(|d| !self.nodes.iter().any(|n| n.id == *d)) {
            return Err(INVALID_VALUE);
        }
        let mut unique = Vec::with_capacity(deps.len());
        for &d in deps {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        self.nodes.push(Node { id, op, deps: unique });
        Ok(())
    }

    /// `from` and every node they depend on, directly or not.
    fn ancestors(&self, from: impl Iterator<Item = u64>) -> std::collections::HashSet<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut todo: Vec<u64> = from.collect();
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                if let Some(n) = self.nodes.iter().find(|n| n.id == id) {
                    todo.extend(n.deps.iter().copied());
                }
            }
        }
        seen
    }

    pub(crate) fn node_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Node indices in a topological order: Kahn's algorithm, taking the earliest-added ready
    /// node each time, so the order is deterministic (and the same for a graph and its clone).
    pub(crate) fn order(&self) -> Result<Vec<usize>, CudaError> {
        let n = self.nodes.len();
        let deps: Vec<Vec<usize>> =
            self.nodes.iter().map(|x| x.deps.iter().filter_map(|&d| self.index(d)).collect()).collect();
        let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut done = vec![false; n];
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = (0..n).find(|&i| !done[i] && pending[i] == 0).ok_or(INVALID_VALUE)?; // a cycle
            done[next] = true;
            out.push(next);
            for (i, d) in deps.iter().enumerate() {
                pending[i] -= d.iter().filter(|&&x| x == next).count();
            }
        }
        Ok(out)
    }

    /// A copy with fresh node handles from `next`, remembering which node each came from.
    /// Graphs with memory alloc or free nodes cannot be cloned (as in CUDA).
    pub(crate) fn duplicate(&self, mut next: impl FnMut() -> u64) -> Result<Graph, CudaError> {
        if self.nodes.iter().any(|n| matches!(n.op, Op::MemAlloc(_) | Op::MemFree(_))) {
            return Err(NOT_SUPPORTED);
        }
        let clone_of: HashMap<u64, u64> = self.nodes.iter().map(|n| (n.id, next())).collect();
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node { id: clone_of[&n.id], op: n.op.clone(), deps: n.deps.iter().map(|d| clone_of[d]).collect() })
            .collect();
        Ok(Graph { nodes, clone_of })
    }
}

/// An executable graph: the nodes in replay order, with each one's dependencies as positions
/// (to compare topologies in `cudaGraphExecUpdate`). Node handles are the original graph's.
#[derive(Debug)]
pub(crate) struct Exec {
    pub(crate) nodes: Vec<(u64, Op)>,
    deps: Vec<Vec<usize>>,
}

impl Exec {
    pub(crate) fn new(g: &Graph) -> Result<Exec, CudaError> {
        let (nodes, deps) = Self::snapshot(g)?;
        Ok(Exec { nodes: nodes.into_iter().map(|n| (n.id, n.op)).collect(), deps })
    }

    fn snapshot(g: &Graph) -> Result<(Vec<Node>, Vec<Vec<usize>>), CudaError> {
        let order = g.order()?;
        let pos: HashMap<u64, usize> = order.iter().enumerate().map(|(p, &i)| (g.nodes[i].id, p)).collect();
        let nodes: Vec<Node> = order.iter().map(|&i| g.nodes[i].clone()).collect();
        let deps = nodes
            .iter()
            .map(|n| {
                let mut d: Vec<usize> = n.deps.iter().map(|x| pos[x]).collect();
                d.sort_unstable();
                d
            })
            .collect();
        Ok((nodes, deps))
    }

    /// `cudaGraphExecUpdate`: take `g`'s parameters if it has this graph's topology and node
    /// types (nodes matched in replay order). On failure: the `cudaGraphExecUpdateResult` and
    /// the node of `g` at fault (0 when none), and nothing changes.
    pub(crate) fn update(&mut self, g: &Graph) -> Result<(), (i32, u64)> {
        let (nodes, deps) = Self::snapshot(g).map_err(|_| (UPDATE_TOPOLOGY_CHANGED, 0))?;
        if nodes.len() != self.nodes.len() {
            return Err((UPDATE_TOPOLOGY_CHANGED, 0));
        }
        for (i, n) in nodes.iter().enumerate() {
            if deps[i] != self.deps[i] {
                return Err((UPDATE_TOPOLOGY_CHANGED, n.id));
            }
            if !n.op.same_kind(&self.nodes[i].1) {
                return Err((UPDATE_NODE_TYPE_CHANGED, n.id));
            }
        }
        for (slot, n) in self.nodes.iter_mut().zip(nodes) {
            slot.1 = n.op;
        }
        Ok(())
    }

    /// Replace one node's operation (`cudaGraphExec*NodeSetParams`): same node type only.
    pub(crate) fn set(&mut self, node: u64, op: Op) -> Result<(), CudaError> {
        let slot = self.nodes.iter_mut().find(|(id, _)| *id == node).ok_or(INVALID_VALUE)?;
        if !slot.1.same_kind(&op) {
            return Err(INVALID_VALUE);
        }
        slot.1 = op;
        Ok(())
    }
}

/// A capture in progress on one stream: the stream that began it (`origin`), or one that joined
/// it by waiting on an event recorded in it (fork/join through events).
struct Capture {
    graph: u64,
    id: u64,
    origin: bool,
    /// The node the next captured one depends on (as `cudaGraphNode_t` values, so
    /// `cudaStreamGetCaptureInfo` can hand out a pointer to it).
    last: Vec<usize>,
    thread: ThreadId,
    mode: i32,
    invalidated: bool,
}

/// Every graph, executable graph and capture of the process.
#[derive(Default)]
pub(crate) struct Store {
    next: u64,
    pub(crate) graphs: HashMap<u64, Graph>,
    pub(crate) execs: HashMap<u64, Exec>,
    captures: HashMap<u64, Capture>,
    /// Events last recorded on a capturing stream: event → (capture id, the nodes a waiter
    /// depends on). Recording in a capture runs nothing; it only marks that point.
    captured_events: HashMap<u64, (u64, Vec<usize>)>,
}

/// Handles start here, so they are recognisable in logs and never null.
const HANDLE_BASE: u64 = 0x6752_0000_0000;

impl Store {
    pub(crate) fn next_handle(&mut self) -> u64 {
        self.next += 1;
        HANDLE_BASE + self.next
    }

    /// `cudaGraphClone`: a copy of graph `g` with fresh node handles; returns the clone's handle.
    pub(crate) fn clone_graph(&mut self, g: u64) -> Result<u64, CudaError> {
        let original = self.graphs.get(&g).ok_or(INVALID_VALUE)?;
        let mut next = self.next;
        let copy = original.duplicate(|| {
            next += 1;
            HANDLE_BASE + next
        })?;
        self.next = next;
        let id = self.next_handle();
        self.graphs.insert(id, copy);
        Ok(id)
    }

    /// The graph holding `node`.
    pub(crate) fn graph_of(&mut self, node: u64) -> Option<&mut Graph> {
        self.graphs.values_mut().find(|g| g.nodes.iter().any(|n| n.id == node))
    }
}

static STORE: Mutex<Option<Store>> = Mutex::new(None);

/// Run `f` on the store (never call the server or the application inside).
pub(crate) fn with<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    let mut g = STORE.lock();
    f(g.get_or_insert_with(Store::default))
}

/// The capture hook. While `stream` (a wire handle) is capturing, the operation `make` builds
/// becomes a node of the capture's graph, after the previously captured one, and the result is
/// `Some` (the shim must not run the work); otherwise `None` and the shim runs it.
pub(crate) fn capture(stream: u64, make: impl FnOnce() -> Result<Op, CudaError>) -> Option<Result<(), CudaError>> {
    if !is_capturing(stream) {
        return None;
    }
    let op = match make() {
        Ok(op) => op,
        Err(e) => return Some(Err(e)),
    };
    Some(with(|s| {
        let id = s.next_handle();
        let c = s.captures.get_mut(&stream).ok_or(ILLEGAL_STATE)?;
        if c.invalidated {
            return Err(STREAM_CAPTURE_INVALIDATED);
        }
        let deps: Vec<u64> = c.last.iter().map(|&d| d as u64).collect();
        c.last = vec![usize::try_from(id).map_err(|_| INVALID_VALUE)?];
        let g = c.graph;
        s.graphs.get_mut(&g).ok_or(ILLEGAL_STATE)?.add(id, op, &deps)
    }))
}

/// Whether `stream` (a wire handle) is capturing.
pub(crate) fn is_capturing(stream: u64) -> bool {
    with(|s| s.captures.contains_key(&stream))
}

/// Mark every stream of capture `id` invalidated.
fn invalidate(s: &mut Store, id: u64) {
    for c in s.captures.values_mut().filter(|c| c.id == id) {
        c.invalidated = true;
    }
}

/// A synchronising call on `stream`: refused, invalidating the capture, while it captures.
pub(crate) fn refuse_if_capturing(stream: u64) -> Result<(), CudaError> {
    with(|s| match s.captures.get(&stream).map(|c| c.id) {
        Some(id) => {
            invalidate(s, id);
            Err(STREAM_CAPTURE_UNSUPPORTED)
        }
        None => Ok(()),
    })
}

/// `cudaEventRecord` of `event` on `stream`: while the stream captures, the record marks the
/// capture's current point (nothing runs) and the result is `Some`; otherwise `None` (the shim
/// records it on the server, and the event is no longer a captured one).
pub(crate) fn record_event(event: u64, stream: u64) -> Option<Result<(), CudaError>> {
    with(|s| match s.captures.get(&stream) {
        Some(c) if c.invalidated => Some(Err(STREAM_CAPTURE_INVALIDATED)),
        Some(c) => {
            let mark = (c.id, c.last.clone());
            s.captured_events.insert(event, mark);
            Some(Ok(()))
        }
        None => {
            s.captured_events.remove(&event);
            None
        }
    })
}

/// `cudaStreamWaitEvent(stream, event)` where capture is involved: an event recorded in a
/// capture makes `stream` depend on that point — joining the capture if it was not capturing
/// (a fork) — and the result is `Some`. A capturing stream waiting on an event recorded outside
/// any capture fails with `cudaErrorStreamCaptureIsolation` (unless `external`). `None`: no
/// capture involved, the shim forwards the wait.
pub(crate) fn wait_event(stream: u64, event: u64, external: bool) -> Option<Result<(), CudaError>> {
    with(|s| {
        let mark = s.captured_events.get(&event).cloned().filter(|(id, _)| s.captures.values().any(|c| c.id == *id));
        match (mark, s.captures.get_mut(&stream)) {
            (None, None) => None,
            (None, Some(_)) if external => Some(Ok(())),
            (None, Some(c)) => {
                let id = c.id;
                invalidate(s, id);
                Some(Err(STREAM_CAPTURE_ISOLATION))
            }
            (Some((id, deps)), Some(c)) => {
                if c.id != id {
                    let own = c.id;
                    invalidate(s, own);
                    return Some(Err(STREAM_CAPTURE_ISOLATION));
                }
                for d in deps {
                    if !c.last.contains(&d) {
                        c.last.push(d);
                    }
                }
                Some(Ok(()))
            }
            (Some((id, deps)), None) => {
                if stream == 0 {
                    invalidate(s, id);
                    return Some(Err(STREAM_CAPTURE_IMPLICIT));
                }
                let origin = s.captures.values().find(|c| c.id == id && c.origin)?;
                let joined = Capture {
                    graph: origin.graph,
                    id,
                    origin: false,
                    last: deps,
                    thread: std::thread::current().id(),
                    mode: origin.mode,
                    invalidated: origin.invalidated,
                };
                s.captures.insert(stream, joined);
                Some(Ok(()))
            }
        }
    })
}

/// An event last recorded in a capture still in progress cannot be queried or waited for from
/// the host: `cudaErrorCapturedEvent`, and the capture is invalidated (as CUDA does).
pub(crate) fn refuse_captured_event(event: u64) -> Result<(), CudaError> {
    with(|s| match s.captured_events.get(&event).map(|&(id, _)| id) {
        Some(id) if s.captures.values().any(|c| c.id == id) => {
            invalidate(s, id);
            Err(CAPTURED_EVENT)
        }
        _ => Ok(()),
    })
}

/// `cudaStreamBeginCapture` on a wire stream handle (not the legacy stream).
pub(crate) fn begin_capture(stream: u64, mode: i32) -> Result<(), CudaError> {
    with(|s| {
        if s.captures.contains_key(&stream) {
            return Err(ILLEGAL_STATE);
        }
        let graph = s.next_handle();
        let id = s.next_handle();
        s.graphs.insert(graph, Graph::default());
        let thread = std::thread::current().id();
        s.captures
            .insert(stream, Capture { graph, id, origin: true, last: Vec::new(), thread, mode, invalidated: false });
        Ok(())
    })
}

/// `cudaStreamEndCapture` on the stream that began the capture: the captured graph. Every
/// stream that joined it must have joined back (its last node an ancestor of the origin's
/// last), else `cudaErrorStreamCaptureUnjoined`; either way the capture ends on every stream.
pub(crate) fn end_capture(stream: u64) -> Result<u64, CudaError> {
    with(|s| {
        let c = s.captures.get(&stream).ok_or(ILLEGAL_STATE)?;
        if !c.origin {
            let id = c.id;
            invalidate(s, id);
            return Err(STREAM_CAPTURE_UNMATCHED);
        }
        if c.mode != CAPTURE_MODE_RELAXED && c.thread != std::thread::current().id() {
            return Err(STREAM_CAPTURE_WRONG_THREAD);
        }
        let c = s.captures.remove(&stream).ok_or(ILLEGAL_STATE)?;
        let joined: Vec<u64> = s.captures.iter().filter(|(_, j)| j.id == c.id).map(|(&k, _)| k).collect();
        let joined: Vec<Capture> = joined.into_iter().filter_map(|k| s.captures.remove(&k)).collect();
        s.captured_events.retain(|_, (id, _)| *id != c.id);
        let outcome = if c.invalidated || joined.iter().any(|j| j.invalidated) {
            Err(STREAM_CAPTURE_INVALIDATED)
        } else {
            let g = s.graphs.get(&c.graph).ok_or(ILLEGAL_STATE)?;
            let reach = g.ancestors(c.last.iter().map(|&d| d as u64));
            if joined.iter().all(|j| j.last.iter().all(|&d| reach.contains(&(d as u64)))) {
                Ok(c.graph)
            } else {
                Err(STREAM_CAPTURE_UNJOINED)
            }
        };
        if outcome.is_err() {
            s.graphs.remove(&c.graph);
        }
        outcome
    })
}

/// What `cudaStreamGetCaptureInfo` reports: (status, capture id, graph, dependencies pointer,
/// their count). The pointer stays valid until the next operation on the capture.
pub(crate) fn capture_info(stream: u64) -> (i32, u64, u64, *const usize, usize) {
    with(|s| match s.captures.get(&stream) {
        None => (0, 0, 0, std::ptr::null(), 0),
        Some(c) => (if c.invalidated { 2 } else { 1 }, c.id, c.graph, c.last.as_ptr(), c.last.len()),
    })
}

/// Replay an executable graph's operations onto `stream` (a wire handle). A capturing stream
/// records them instead, as nodes in the same order.
pub(crate) fn replay(ops: &[Op], stream: u64) -> Result<(), CudaError> {
    if is_capturing(stream) {
        for op in ops {
            capture(stream, || Ok(op.clone())).unwrap_or(Ok(()))?;
        }
        return Ok(());
    }
    let rt = rt()?;
    for op in ops {
        match op {
            Op::Empty | Op::MemAlloc(_) | Op::MemFree(_) => {}
            Op::Kernel(p) => launch::send(p, stream, false)?,
            Op::Memcpy(m) => {
                memory::copy(rt, m.dst as *mut c_void, m.src as *const c_void, m.count, m.kind, stream, false)?
            }
            Op::Memcpy3D(c) => memory::copy_3d(rt, &c.0, stream, false)?,
            Op::Memset(m) => {
                memory::memset_rows(rt, m.dst, m.pitch, m.value, m.element_size, m.width, m.height, stream)?
            }
            Op::Host(h) => {
                rt.client.stream_synchronize(stream).map_err(cuda)?;
                crate::mirror::synced(rt)?;
                // SAFETY: the application's host function with its own user data, called once the
                // stream has reached the node, as CUDA calls it.
                unsafe { (h.f)(h.user_data as *mut c_void) };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memset(value: u32) -> Op {
        Op::Memset(Memset { dst: 0x1000, pitch: 16, value, element_size: 1, width: 16, height: 1 })
    }

    fn value(op: &Op) -> u32 {
        match op {
            Op::Memset(m) => m.value,
            _ => u32::MAX,
        }
    }

    #[test]
    fn topological_order_respects_dependencies() {
        let mut g = Graph::default();
        g.add(1, Op::Empty, &[]).unwrap();
        g.add(2, memset(2), &[1]).unwrap();
        g.add(3, memset(3), &[]).unwrap();
        g.add(4, memset(4), &[2, 3, 2]).unwrap();
        assert_eq!(g.nodes[3].deps, vec![2, 3]);
        assert_eq!(g.add(5, Op::Empty, &[99]), Err(INVALID_VALUE));
        let order = g.order().unwrap();
        assert_eq!(order, vec![0, 1, 2, 3]);
        // Edges added out of insertion order (as cudaGraphAddDependencies would) are honoured.
        g.nodes[0].deps = vec![3];
        let order: Vec<u64> = g.order().unwrap().iter().map(|&i| g.nodes[i].id).collect();
        assert_eq!(order, vec![3, 1, 2, 4]);
        // A cycle has no order.
        g.nodes[2].deps = vec![4];
        assert_eq!(g.order(), Err(INVALID_VALUE));
    }

    #[test]
    fn clone_and_find_in_clone() {
        let mut g = Graph::default();
        g.add(10, memset(1), &[]).unwrap();
        g.add(11, memset(2), &[10]).unwrap();
        let mut n = 100;
        let c = g
            .duplicate(|| {
                n += 1;
                n
            })
            .unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.clone_of[&10], 101);
        assert_eq!(c.clone_of[&11], 102);
        assert_eq!(c.nodes[1].deps, vec![101]);
        assert_eq!(value(&c.nodes[1].op), 2);
        // Alloc/free nodes make a graph uncloneable.
        g.add(12, Op::MemFree(0x1000), &[11]).unwrap();
        assert_eq!(g.duplicate(|| 1).map(|_| ()), Err(NOT_SUPPORTED));
    }

    #[test]
    fn exec_update_takes_parameters_of_a_matching_graph() {
        let mut g = Graph::default();
        g.add(1, memset(1), &[]).unwrap();
        g.add(2, Op::Empty, &[1]).unwrap();
        let mut e = Exec::new(&g).unwrap();
        let mut n = 10;
        let mut c = g
            .duplicate(|| {
                n += 1;
                n
            })
            .unwrap();
        c.node_mut(11).unwrap().op = memset(7);
        e.update(&c).unwrap();
        assert_eq!(value(&e.nodes[0].1), 7);
        assert_eq!(e.nodes[0].0, 1, "the executable graph keeps its own node handles");
        // Another node type at the same place.
        c.node_mut(12).unwrap().op = memset(3);
        assert_eq!(e.update(&c), Err((UPDATE_NODE_TYPE_CHANGED, 12)));
        // Another topology.
        c.node_mut(12).unwrap().op = Op::Empty;
        c.node_mut(12).unwrap().deps.clear();
        assert_eq!(e.update(&c), Err((UPDATE_TOPOLOGY_CHANGED, 12)));
        c.add(13, Op::Empty, &[]).unwrap();
        assert_eq!(e.update(&c).map_err(|(r, _)| r), Err(UPDATE_TOPOLOGY_CHANGED));
        // Per-node parameter changes keep the node type.
        e.set(1, memset(9)).unwrap();
        assert_eq!(value(&e.nodes[0].1), 9);
        assert_eq!(e.set(1, Op::Empty), Err(INVALID_VALUE));
        assert_eq!(e.set(77, memset(1)), Err(INVALID_VALUE));
    }

    #[test]
    fn capture_appends_a_chain() {
        let stream = 0xdead_0001;
        assert!(capture(stream, || Ok(Op::Empty)).is_none());
        begin_capture(stream, 1).unwrap();
        assert_eq!(begin_capture(stream, 1), Err(ILLEGAL_STATE));
        capture(stream, || Ok(memset(1))).unwrap().unwrap();
        capture(stream, || Ok(memset(2))).unwrap().unwrap();
        let (status, _, graph, _, n) = capture_info(stream);
        assert_eq!((status, n), (1, 1));
        let g = end_capture(stream).unwrap();
        assert_eq!(g, graph);
        with(|s| {
            let g = &s.graphs[&g];
            assert_eq!(g.nodes.len(), 2);
            assert_eq!(g.nodes[1].deps, vec![g.nodes[0].id]);
        });
        assert_eq!(end_capture(stream), Err(ILLEGAL_STATE));
        // A synchronisation invalidates the capture.
        begin_capture(stream, 0).unwrap();
        assert_eq!(refuse_if_capturing(stream), Err(STREAM_CAPTURE_UNSUPPORTED));
        assert_eq!(capture(stream, || Ok(Op::Empty)), Some(Err(STREAM_CAPTURE_INVALIDATED)));
        assert_eq!(end_capture(stream), Err(STREAM_CAPTURE_INVALIDATED));
        assert!(!is_capturing(stream));
    }

    #[test]
    fn fork_and_join_through_events() {
        let (a, b) = (0xdead_0101, 0xdead_0102);
        let (e1, e2) = (0xe1e1, 0xe2e2);
        begin_capture(a, CAPTURE_MODE_RELAXED).unwrap();
        capture(a, || Ok(memset(1))).unwrap().unwrap();
        record_event(e1, a).unwrap().unwrap();
        // b was not capturing: waiting on e1 makes it join the capture (fork).
        wait_event(b, e1, false).unwrap().unwrap();
        assert!(is_capturing(b));
        capture(b, || Ok(memset(2))).unwrap().unwrap();
        capture(a, || Ok(memset(3))).unwrap().unwrap();
        record_event(e2, b).unwrap().unwrap();
        assert_eq!(end_capture(b), Err(STREAM_CAPTURE_UNMATCHED), "only the origin ends a capture");
        // That invalidated the capture; a fresh one for the join.
        assert_eq!(end_capture(a), Err(STREAM_CAPTURE_INVALIDATED));
        assert!(!is_capturing(b));

        begin_capture(a, CAPTURE_MODE_RELAXED).unwrap();
        capture(a, || Ok(memset(1))).unwrap().unwrap();
        record_event(e1, a).unwrap().unwrap();
        wait_event(b, e1, false).unwrap().unwrap();
        capture(b, || Ok(memset(2))).unwrap().unwrap();
        capture(a, || Ok(memset(3))).unwrap().unwrap();
        record_event(e2, b).unwrap().unwrap();
        wait_event(a, e2, false).unwrap().unwrap(); // join
        capture(a, || Ok(memset(4))).unwrap().unwrap();
        let g = end_capture(a).unwrap();
        assert!(!is_capturing(b), "the joined stream's capture ended with the origin's");
        with(|s| {
            let g = &s.graphs[&g];
            let id = |v: u32| g.nodes.iter().find(|n| value(&n.op) == v).unwrap().id;
            let deps = |v: u32| g.nodes.iter().find(|n| value(&n.op) == v).unwrap().deps.clone();
            assert_eq!(g.nodes.len(), 4);
            assert_eq!(deps(2), vec![id(1)], "the fork depends on the recorded point");
            assert_eq!(deps(3), vec![id(1)]);
            let mut join = deps(4);
            join.sort_unstable();
            let mut want = vec![id(3), id(2)];
            want.sort_unstable();
            assert_eq!(join, want, "the join depends on both branches");
        });
        assert_eq!(refuse_captured_event(e1), Ok(()), "the capture is over");
        assert!(wait_event(b, e1, false).is_none(), "a finished capture's event is a plain one");

        // A branch that never joins back.
        begin_capture(a, CAPTURE_MODE_RELAXED).unwrap();
        capture(a, || Ok(memset(1))).unwrap().unwrap();
        record_event(e1, a).unwrap().unwrap();
        wait_event(b, e1, false).unwrap().unwrap();
        capture(b, || Ok(memset(2))).unwrap().unwrap();
        assert_eq!(end_capture(a), Err(STREAM_CAPTURE_UNJOINED));
        assert!(!is_capturing(b));

        // Querying a captured event spoils the capture.
        begin_capture(a, CAPTURE_MODE_RELAXED).unwrap();
        record_event(e1, a).unwrap().unwrap();
        assert_eq!(refuse_captured_event(e1), Err(CAPTURED_EVENT));
        assert_eq!(end_capture(a), Err(STREAM_CAPTURE_INVALIDATED));

        // Waiting on an event from outside the capture isolates it (unless external).
        begin_capture(a, CAPTURE_MODE_RELAXED).unwrap();
        assert_eq!(wait_event(a, 0xfeed, true), Some(Ok(())));
        assert_eq!(wait_event(a, 0xfeed, false), Some(Err(STREAM_CAPTURE_ISOLATION)));
        assert_eq!(end_capture(a), Err(STREAM_CAPTURE_INVALIDATED));
    }
}
