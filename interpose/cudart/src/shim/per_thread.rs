//! The `_ptsz` / `_ptds` exports that programs built with `nvcc --default-stream per-thread`
//! call instead of the plain names: the same functions, with stream 0 meaning the calling
//! thread's own default stream.

use std::ffi::{c_int, c_void};

use remora_interpose::cudart::types::{CudaExtent, CudaMemcpy3DParms, CudaPitchedPtr, Dim3};

use super::managed::{self, CudaMemLocation};
use super::{array, event, graph, launch, memory, mempool, stream};
use crate::state::{per_thread as with_per_thread_stream, CudaError};

/// `per_thread!(export => base(args))`: an export that runs `base` with the per-thread stream.
macro_rules! per_thread {
    ($name:ident => $base:path, ($($arg:ident : $ty:ty),* $(,)?)) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> CudaError {
            // SAFETY: same contract as the base function, which receives the arguments unchanged.
            with_per_thread_stream(|| unsafe { $base($($arg),*) })
        }
    };
}

type Stream = *mut c_void;

per_thread!(__cudaLaunchKernel_ptsz => launch::__cudaLaunchKernel, (kernel: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Stream));
per_thread!(cudaLaunchKernel_ptsz => launch::cudaLaunchKernel, (func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Stream));
per_thread!(cudaLaunchCooperativeKernel_ptsz => launch::cudaLaunchCooperativeKernel, (func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Stream));
per_thread!(cudaMemcpy_ptds => memory::cudaMemcpy, (dst: *mut c_void, src: *const c_void, count: usize, kind: i32));
per_thread!(cudaMemcpyAsync_ptsz => memory::cudaMemcpyAsync, (dst: *mut c_void, src: *const c_void, count: usize, kind: i32, stream: Stream));
per_thread!(cudaMemset_ptds => memory::cudaMemset, (ptr: *mut c_void, value: i32, count: usize));
per_thread!(cudaMemsetAsync_ptsz => memory::cudaMemsetAsync, (ptr: *mut c_void, value: i32, count: usize, stream: Stream));
per_thread!(cudaMemcpy2D_ptds => memory::cudaMemcpy2D, (dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: i32));
per_thread!(cudaMemcpy2DAsync_ptsz => memory::cudaMemcpy2DAsync, (dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: i32, stream: Stream));
per_thread!(cudaMemset2D_ptds => memory::cudaMemset2D, (ptr: *mut c_void, pitch: usize, value: i32, width: usize, height: usize));
per_thread!(cudaMemset2DAsync_ptsz => memory::cudaMemset2DAsync, (ptr: *mut c_void, pitch: usize, value: i32, width: usize, height: usize, stream: Stream));
per_thread!(cudaMemcpyToSymbol_ptds => memory::cudaMemcpyToSymbol, (sym: *const c_void, src: *const c_void, count: usize, offset: usize, kind: i32));
per_thread!(cudaMemcpyFromSymbol_ptds => memory::cudaMemcpyFromSymbol, (dst: *mut c_void, sym: *const c_void, count: usize, offset: usize, kind: i32));
per_thread!(cudaMemcpyToSymbolAsync_ptsz => memory::cudaMemcpyToSymbolAsync, (sym: *const c_void, src: *const c_void, count: usize, offset: usize, kind: i32, stream: Stream));
per_thread!(cudaMemcpyFromSymbolAsync_ptsz => memory::cudaMemcpyFromSymbolAsync, (dst: *mut c_void, sym: *const c_void, count: usize, offset: usize, kind: i32, stream: Stream));
per_thread!(cudaMemcpy3D_ptds => memory::cudaMemcpy3D, (p: *const CudaMemcpy3DParms));
per_thread!(cudaMemcpy3DAsync_ptsz => memory::cudaMemcpy3DAsync, (p: *const CudaMemcpy3DParms, stream: Stream));
per_thread!(cudaMemset3D_ptds => memory::cudaMemset3D, (p: CudaPitchedPtr, value: i32, extent: CudaExtent));
per_thread!(cudaMemset3DAsync_ptsz => memory::cudaMemset3DAsync, (p: CudaPitchedPtr, value: i32, extent: CudaExtent, stream: Stream));
per_thread!(cudaMallocAsync_ptsz => mempool::cudaMallocAsync, (ptr: *mut *mut c_void, size: usize, stream: Stream));
per_thread!(cudaMallocFromPoolAsync_ptsz => mempool::cudaMallocFromPoolAsync, (ptr: *mut *mut c_void, size: usize, pool: *mut c_void, stream: Stream));
per_thread!(cudaFreeAsync_ptsz => mempool::cudaFreeAsync, (ptr: *mut c_void, stream: Stream));
per_thread!(cudaStreamSynchronize_ptsz => stream::cudaStreamSynchronize, (stream: Stream));
per_thread!(cudaStreamQuery_ptsz => stream::cudaStreamQuery, (stream: Stream));
per_thread!(cudaStreamWaitEvent_ptsz => stream::cudaStreamWaitEvent, (stream: Stream, event: *mut c_void, flags: u32));
per_thread!(cudaStreamGetFlags_ptsz => stream::cudaStreamGetFlags, (stream: Stream, flags: *mut u32));
per_thread!(cudaStreamGetPriority_ptsz => stream::cudaStreamGetPriority, (stream: Stream, priority: *mut c_int));
per_thread!(cudaEventRecord_ptsz => event::cudaEventRecord, (event: *mut c_void, stream: Stream));
per_thread!(cudaEventRecordWithFlags_ptsz => event::cudaEventRecordWithFlags, (event: *mut c_void, stream: Stream, flags: u32));
per_thread!(cudaLaunchHostFunc_ptsz => stream::cudaLaunchHostFunc, (stream: Stream, f: Option<stream::HostFn>, user_data: *mut c_void));
per_thread!(cudaStreamAddCallback_ptsz => stream::cudaStreamAddCallback, (stream: Stream, cb: Option<stream::StreamCallback>, user_data: *mut c_void, flags: u32));
per_thread!(cudaGraphLaunch_ptsz => graph::cudaGraphLaunch, (exec: *mut c_void, stream: Stream));
per_thread!(cudaStreamBeginCapture_ptsz => graph::cudaStreamBeginCapture, (stream: Stream, mode: c_int));
per_thread!(cudaStreamEndCapture_ptsz => graph::cudaStreamEndCapture, (stream: Stream, graph: *mut *mut c_void));
per_thread!(cudaStreamIsCapturing_ptsz => graph::cudaStreamIsCapturing, (stream: Stream, status: *mut c_int));
per_thread!(cudaStreamGetCaptureInfo_ptsz => graph::cudaStreamGetCaptureInfo, (stream: Stream, status: *mut c_int, id: *mut u64, graph: *mut *mut c_void, deps: *mut *const *mut c_void, edge_data: *mut *const c_void, num_deps: *mut usize));
per_thread!(cudaMemcpyToArray_ptds => array::cudaMemcpyToArray, (dst: *mut c_void, w_offset: usize, h_offset: usize, src: *const c_void, count: usize, kind: i32));
per_thread!(cudaMemcpyToArrayAsync_ptsz => array::cudaMemcpyToArrayAsync, (dst: *mut c_void, w_offset: usize, h_offset: usize, src: *const c_void, count: usize, kind: i32, stream: Stream));
per_thread!(cudaMemcpyFromArray_ptds => array::cudaMemcpyFromArray, (dst: *mut c_void, src: *const c_void, w_offset: usize, h_offset: usize, count: usize, kind: i32));
per_thread!(cudaMemcpyFromArrayAsync_ptsz => array::cudaMemcpyFromArrayAsync, (dst: *mut c_void, src: *const c_void, w_offset: usize, h_offset: usize, count: usize, kind: i32, stream: Stream));
per_thread!(cudaMemcpy2DToArray_ptds => array::cudaMemcpy2DToArray, (dst: *mut c_void, w_offset: usize, h_offset: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: i32));
per_thread!(cudaMemcpy2DToArrayAsync_ptsz => array::cudaMemcpy2DToArrayAsync, (dst: *mut c_void, w_offset: usize, h_offset: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: i32, stream: Stream));
per_thread!(cudaMemcpy2DFromArray_ptds => array::cudaMemcpy2DFromArray, (dst: *mut c_void, dpitch: usize, src: *const c_void, w_offset: usize, h_offset: usize, width: usize, height: usize, kind: i32));
per_thread!(cudaMemcpy2DFromArrayAsync_ptsz => array::cudaMemcpy2DFromArrayAsync, (dst: *mut c_void, dpitch: usize, src: *const c_void, w_offset: usize, h_offset: usize, width: usize, height: usize, kind: i32, stream: Stream));
per_thread!(cudaMemcpy2DArrayToArray_ptds => array::cudaMemcpy2DArrayToArray, (dst: *mut c_void, w_offset_dst: usize, h_offset_dst: usize, src: *const c_void, w_offset_src: usize, h_offset_src: usize, width: usize, height: usize, kind: i32));
per_thread!(cudaStreamSetAttribute_ptsz => stream::cudaStreamSetAttribute, (stream: Stream, attr: c_int, value: *const [u8; 64]));
per_thread!(cudaStreamGetAttribute_ptsz => stream::cudaStreamGetAttribute, (stream: Stream, attr: c_int, value: *mut [u8; 64]));
per_thread!(cudaMemPrefetchAsync_ptsz => managed::cudaMemPrefetchAsync, (ptr: *const c_void, count: usize, location: CudaMemLocation, flags: u32, stream: Stream));
per_thread!(cudaStreamAttachMemAsync_ptsz => managed::cudaStreamAttachMemAsync, (stream: Stream, ptr: *mut c_void, length: usize, flags: u32));
