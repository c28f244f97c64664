//! CUDA graphs and stream capture (the exports; the model and replay are `crate::graph`).
//!
//! Graphs are recorded on the client and replayed onto the launch stream with the ordinary
//! client calls; see `crate::graph` for what each node type keeps and when memory alloc nodes
//! allocate. Per-thread-stream variants: `per_thread.rs`.

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use remora_interpose::cudart::types::{
    CudaGraphExecUpdateResultInfo, CudaHostNodeParams, CudaKernelNodeParams, CudaMemAllocNodeParams, CudaMemcpy3DParms,
    CudaMemsetParams,
};

use super::launch;
use crate::ffi;
use crate::graph::{self, Copy3D, Exec, GraphAlloc, Host, Memcpy, Memset, Op};
use crate::state::{cuda, guard, rt, CudaError, INVALID_DEVICE, INVALID_RESOURCE_HANDLE, INVALID_VALUE, NOT_SUPPORTED};

type Handle = *mut c_void;

/// cudaGraphInstantiateFlag{AutoFreeOnLaunch, Upload, DeviceLaunch, UseNodePriority}.
const INSTANTIATE_FLAGS: u64 = 0xf;

/// The dependency list of a node being added.
fn deps(p: *const Handle, n: usize) -> Result<Vec<u64>, CudaError> {
    if n > 0 && p.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: `p` holds `n` node handles (the API contract; checked non-null when n > 0).
    (0..n).map(|i| unsafe { ffi::get(p.add(i)) }.map(|h| h as u64)).collect()
}

/// Add a node built by `op` to `graph` and write its handle to `node`.
fn add(node: *mut Handle, graph: Handle, dep: *const Handle, n: usize, op: Op) -> Result<(), CudaError> {
    if node.is_null() {
        return Err(INVALID_VALUE);
    }
    let deps = deps(dep, n)?;
    let id = graph::with(|s| {
        let id = s.next_handle();
        s.graphs.get_mut(&(graph as u64)).ok_or(INVALID_VALUE)?.add(id, op, &deps)?;
        Ok::<_, CudaError>(id)
    })?;
    // SAFETY: the caller's cudaGraphNode_t slot (checked non-null).
    unsafe { ffi::put(node, id as Handle) }
}

fn kernel_op(p: *const CudaKernelNodeParams) -> Result<Op, CudaError> {
    // SAFETY: the caller's cudaKernelNodeParams.
    let k = unsafe { ffi::get(p) }?;
    if k.kernelParams.is_null() {
        // Arguments in the "extra" format are not packed here.
        return Err(if k.extra.is_null() { INVALID_VALUE } else { NOT_SUPPORTED });
    }
    let packed = launch::prepare(k.func as usize, k.gridDim, k.blockDim, k.kernelParams, k.sharedMemBytes as usize)?;
    Ok(Op::Kernel(packed))
}

fn memset_op(p: *const CudaMemsetParams) -> Result<Op, CudaError> {
    // SAFETY: the caller's cudaMemsetParams.
    let m = unsafe { ffi::get(p) }?;
    if !matches!(m.elementSize, 1 | 2 | 4) || m.height == 0 {
        return Err(INVALID_VALUE);
    }
    if rt()?.allocation(m.dst as u64).is_none() {
        return Err(INVALID_VALUE);
    }
    Ok(Op::Memset(Memset {
        dst: m.dst as u64,
        pitch: m.pitch,
        value: m.value,
        element_size: m.elementSize,
        width: m.width,
        height: m.height,
    }))
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphCreate(graph: *mut Handle, flags: u32) -> CudaError {
    guard("cudaGraphCreate", || {
        if graph.is_null() || flags != 0 {
            return Err(INVALID_VALUE);
        }
        let id = graph::with(|s| {
            let id = s.next_handle();
            s.graphs.insert(id, graph::Graph::default());
            id
        });
        // SAFETY: the caller's cudaGraph_t slot (checked non-null).
        unsafe { ffi::put(graph, id as Handle) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphDestroy(graph: Handle) -> CudaError {
    guard("cudaGraphDestroy", || {
        // Alloc nodes' memory may be freed here (never connecting): outside the store's lock.
        let g = graph::with(|s| s.graphs.remove(&(graph as u64))).ok_or(INVALID_VALUE)?;
        drop(g);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphAddKernelNode(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
    params: *const CudaKernelNodeParams,
) -> CudaError {
    guard("cudaGraphAddKernelNode", || add(node, graph, dep, n, kernel_op(params)?))
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphKernelNodeSetParams(node: Handle, params: *const CudaKernelNodeParams) -> CudaError {
    guard("cudaGraphKernelNodeSetParams", || {
        let op = kernel_op(params)?;
        set_node(node, op)
    })
}

/// Replace a graph node's operation with one of the same type.
fn set_node(node: Handle, op: Op) -> Result<(), CudaError> {
    graph::with(|s| {
        let n = s.graph_of(node as u64).and_then(|g| g.node_mut(node as u64)).ok_or(INVALID_VALUE)?;
        if std::mem::discriminant(&n.op) != std::mem::discriminant(&op) {
            return Err(INVALID_VALUE);
        }
        n.op = op;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphExecKernelNodeSetParams(
    exec: Handle,
    node: Handle,
    params: *const CudaKernelNodeParams,
) -> CudaError {
    guard("cudaGraphExecKernelNodeSetParams", || {
        let op = kernel_op(params)?;
        graph::with(|s| s.execs.get_mut(&(exec as u64)).ok_or(INVALID_VALUE)?.set(node as u64, op))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphAddMemcpyNode(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
    params: *const CudaMemcpy3DParms,
) -> CudaError {
    guard("cudaGraphAddMemcpyNode", || {
        // SAFETY: the caller's cudaMemcpy3DParms.
        let p = unsafe { ffi::get(params) }?;
        if !p.srcArray.is_null() || !p.dstArray.is_null() {
            // CUDA arrays come with the advanced-features work.
            return Err(NOT_SUPPORTED);
        }
        add(node, graph, dep, n, Op::Memcpy3D(Copy3D(p)))
    })
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cudaGraphAddMemcpyNode1D(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    kind: c_int,
) -> CudaError {
    guard("cudaGraphAddMemcpyNode1D", || {
        if !(0..=4).contains(&kind) {
            return Err(crate::state::INVALID_MEMCPY_DIRECTION);
        }
        add(node, graph, dep, n, Op::Memcpy(Memcpy { dst: dst as u64, src: src as u64, count, kind }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphAddMemsetNode(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
    params: *const CudaMemsetParams,
) -> CudaError {
    guard("cudaGraphAddMemsetNode", || add(node, graph, dep, n, memset_op(params)?))
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphMemsetNodeSetParams(node: Handle, params: *const CudaMemsetParams) -> CudaError {
    guard("cudaGraphMemsetNodeSetParams", || {
        let op = memset_op(params)?;
        set_node(node, op)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphExecMemsetNodeSetParams(
    exec: Handle,
    node: Handle,
    params: *const CudaMemsetParams,
) -> CudaError {
    guard("cudaGraphExecMemsetNodeSetParams", || {
        let op = memset_op(params)?;
        graph::with(|s| s.execs.get_mut(&(exec as u64)).ok_or(INVALID_VALUE)?.set(node as u64, op))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphAddHostNode(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
    params: *const CudaHostNodeParams,
) -> CudaError {
    guard("cudaGraphAddHostNode", || {
        // SAFETY: the caller's cudaHostNodeParams.
        let h = unsafe { ffi::get(params) }?;
        let f = h.fn_.ok_or(INVALID_VALUE)?;
        add(node, graph, dep, n, Op::Host(Host { f, user_data: h.userData as usize }))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphAddEmptyNode(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
) -> CudaError {
    guard("cudaGraphAddEmptyNode", || add(node, graph, dep, n, Op::Empty))
}

/// `cudaMemAllocationTypePinned`, `cudaMemLocationTypeDevice`.
const ALLOCATION_TYPE_PINNED: c_int = 1;
const LOCATION_TYPE_DEVICE: c_int = 1;

#[no_mangle]
pub unsafe extern "C" fn cudaGraphAddMemAllocNode(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
    params: *mut CudaMemAllocNodeParams,
) -> CudaError {
    guard("cudaGraphAddMemAllocNode", || {
        // SAFETY: the caller's cudaMemAllocNodeParams.
        let mut p = unsafe { ffi::get(params) }?;
        let props = p.poolProps;
        if p.bytesize == 0
            || props.allocType != ALLOCATION_TYPE_PINNED
            || props.location.type_ != LOCATION_TYPE_DEVICE
            || props.handleTypes != 0
        {
            return Err(INVALID_VALUE);
        }
        let rt = rt()?;
        let dev = u32::try_from(props.location.id).map_err(|_| INVALID_DEVICE)?;
        if dev >= rt.device_count {
            return Err(INVALID_DEVICE);
        }
        if !graph::with(|s| s.graphs.contains_key(&(graph as u64))) {
            return Err(INVALID_VALUE);
        }
        // The address is fixed now and kept for the graph's life (see `crate::graph`).
        let ptr = rt.client.mem_alloc(dev, p.bytesize as u64).map_err(cuda)?;
        rt.allocations.lock().insert(ptr, (p.bytesize as u64, dev));
        let alloc = Arc::new(GraphAlloc { ptr });
        add(node, graph, dep, n, Op::MemAlloc(alloc))?;
        p.dptr = ptr as *mut c_void;
        // SAFETY: as above; `dptr` is the call's output.
        unsafe { ffi::put(params, p) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphAddMemFreeNode(
    node: *mut Handle,
    graph: Handle,
    dep: *const Handle,
    n: usize,
    dptr: *mut c_void,
) -> CudaError {
    guard("cudaGraphAddMemFreeNode", || {
        if rt()?.allocation(dptr as u64).is_none_or(|(base, _, _)| base != dptr as u64) {
            return Err(INVALID_VALUE);
        }
        add(node, graph, dep, n, Op::MemFree(dptr as u64))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphGetNodes(graph: Handle, nodes: *mut Handle, count: *mut usize) -> CudaError {
    guard("cudaGraphGetNodes", || {
        let ids: Vec<u64> = graph::with(|s| {
            s.graphs.get(&(graph as u64)).map(|g| g.nodes.iter().map(|n| n.id).collect()).ok_or(INVALID_VALUE)
        })?;
        if nodes.is_null() {
            // SAFETY: the caller's size_t.
            return unsafe { ffi::put(count, ids.len()) };
        }
        // SAFETY: as above.
        let room = unsafe { ffi::get(count) }?;
        for i in 0..room {
            let h = ids.get(i).map_or(std::ptr::null_mut(), |&id| id as Handle);
            // SAFETY: `nodes` has room for `*count` handles (the API contract).
            unsafe { ffi::put(nodes.add(i), h) }?;
        }
        // SAFETY: as above.
        unsafe { ffi::put(count, room.min(ids.len())) }
    })
}

fn instantiate(exec: *mut Handle, graph: Handle, flags: u64) -> Result<(), CudaError> {
    if exec.is_null() || flags & !INSTANTIATE_FLAGS != 0 {
        return Err(INVALID_VALUE);
    }
    let id = graph::with(|s| {
        let e = Exec::new(s.graphs.get(&(graph as u64)).ok_or(INVALID_VALUE)?)?;
        let id = s.next_handle();
        s.execs.insert(id, e);
        Ok::<_, CudaError>(id)
    })?;
    // SAFETY: the caller's cudaGraphExec_t slot (checked non-null).
    unsafe { ffi::put(exec, id as Handle) }
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphInstantiate(exec: *mut Handle, graph: Handle, flags: u64) -> CudaError {
    guard("cudaGraphInstantiate", || instantiate(exec, graph, flags))
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphInstantiateWithFlags(exec: *mut Handle, graph: Handle, flags: u64) -> CudaError {
    guard("cudaGraphInstantiateWithFlags", || instantiate(exec, graph, flags))
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphLaunch(exec: Handle, stream: *mut c_void) -> CudaError {
    guard("cudaGraphLaunch", || {
        let rt = rt()?;
        let s = rt.stream(stream as usize)?;
        // A snapshot, so host nodes may call CUDA (graphs included) while this replays.
        let ops: Vec<Op> =
            graph::with(|st| st.execs.get(&(exec as u64)).map(|e| e.nodes.iter().map(|(_, op)| op.clone()).collect()))
                .ok_or(INVALID_RESOURCE_HANDLE)?;
        graph::replay(&ops, s)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphExecDestroy(exec: Handle) -> CudaError {
    guard("cudaGraphExecDestroy", || {
        let e = graph::with(|s| s.execs.remove(&(exec as u64))).ok_or(INVALID_RESOURCE_HANDLE)?;
        drop(e);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphClone(clone: *mut Handle, original: Handle) -> CudaError {
    guard("cudaGraphClone", || {
        if clone.is_null() {
            return Err(INVALID_VALUE);
        }
        let id = graph::with(|s| s.clone_graph(original as u64))?;
        // SAFETY: the caller's cudaGraph_t slot (checked non-null).
        unsafe { ffi::put(clone, id as Handle) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphNodeFindInClone(node: *mut Handle, original: Handle, cloned: Handle) -> CudaError {
    guard("cudaGraphNodeFindInClone", || {
        let id =
            graph::with(|s| s.graphs.get(&(cloned as u64)).and_then(|g| g.clone_of.get(&(original as u64)).copied()))
                .ok_or(INVALID_VALUE)?;
        // SAFETY: the caller's cudaGraphNode_t slot.
        unsafe { ffi::put(node, id as Handle) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGraphExecUpdate(
    exec: Handle,
    graph: Handle,
    info: *mut CudaGraphExecUpdateResultInfo,
) -> CudaError {
    guard("cudaGraphExecUpdate", || {
        let r = graph::with(|s| {
            let g = s.graphs.get(&(graph as u64)).ok_or(INVALID_VALUE)?;
            let e = s.execs.get_mut(&(exec as u64)).ok_or(INVALID_VALUE)?;
            Ok::<_, CudaError>(e.update(g))
        })?;
        let (result, node) = match r {
            Ok(()) => (0, 0),
            Err(fault) => fault,
        };
        let out =
            CudaGraphExecUpdateResultInfo { result, errorNode: node as Handle, errorFromNode: std::ptr::null_mut() };
        if !info.is_null() {
            // SAFETY: the caller's cudaGraphExecUpdateResultInfo (checked non-null).
            unsafe { ffi::put(info, out) }?;
        }
        if result == 0 {
            Ok(())
        } else {
            Err(graph::GRAPH_EXEC_UPDATE_FAILURE)
        }
    })
}

// ---- stream capture -----------------------------------------------------------------------

/// The wire handle of a stream that may capture: not the legacy default stream.
fn capture_stream(stream: *mut c_void) -> Result<u64, CudaError> {
    let s = rt()?.stream(stream as usize)?;
    if s == 0 {
        return Err(graph::STREAM_CAPTURE_UNSUPPORTED);
    }
    Ok(s)
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamBeginCapture(stream: *mut c_void, mode: c_int) -> CudaError {
    guard("cudaStreamBeginCapture", || {
        if !(0..=graph::CAPTURE_MODE_RELAXED).contains(&mode) {
            return Err(INVALID_VALUE);
        }
        graph::begin_capture(capture_stream(stream)?, mode)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamEndCapture(stream: *mut c_void, graph_out: *mut Handle) -> CudaError {
    guard("cudaStreamEndCapture", || {
        if graph_out.is_null() {
            return Err(INVALID_VALUE);
        }
        let s = rt()?.stream(stream as usize)?;
        let g = graph::end_capture(s);
        // SAFETY: the caller's cudaGraph_t slot (checked non-null); null when the capture failed.
        unsafe { ffi::put(graph_out, g.map_or(std::ptr::null_mut(), |g| g as Handle)) }?;
        g.map(drop)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamIsCapturing(stream: *mut c_void, status: *mut c_int) -> CudaError {
    guard("cudaStreamIsCapturing", || {
        let s = rt()?.stream(stream as usize)?;
        let (st, ..) = graph::capture_info(s);
        // SAFETY: the caller's cudaStreamCaptureStatus.
        unsafe { ffi::put(status, st) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaStreamGetCaptureInfo(
    stream: *mut c_void,
    status: *mut c_int,
    id: *mut u64,
    graph_out: *mut Handle,
    deps: *mut *const Handle,
    edge_data: *mut *const c_void,
    num_deps: *mut usize,
) -> CudaError {
    guard("cudaStreamGetCaptureInfo", || {
        let s = rt()?.stream(stream as usize)?;
        let (st, cid, g, d, n) = graph::capture_info(s);
        // SAFETY: the caller's out-parameters; all but `status` are optional (null: not wanted).
        unsafe {
            ffi::put(status, st)?;
            if st == 0 {
                return Ok(());
            }
            if !id.is_null() {
                ffi::put(id, cid)?;
            }
            if !graph_out.is_null() {
                ffi::put(graph_out, g as Handle)?;
            }
            if !deps.is_null() {
                ffi::put(deps, d as *const Handle)?;
            }
            if !edge_data.is_null() {
                // Every captured edge is a default one: CUDA reports no edge data then.
                ffi::put(edge_data, std::ptr::null())?;
            }
            if !num_deps.is_null() {
                ffi::put(num_deps, n)?;
            }
        }
        Ok(())
    })
}
