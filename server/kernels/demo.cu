// remora's demo kernels: small, deterministic kernels that exercise the whole remoting path
// (module load, function lookup, parameter buffers, globals, device-side faults).
//
// The emulated backend (server/src/backend/emulated.rs) implements the same kernels in Rust, with
// the same names and parameter layouts; keep the two in step. Regenerate demo.ptx after any
// change (see README.md).

#include <assert.h>

// A device global, read with cuModuleGetGlobal.
__device__ unsigned int remora_counter;

// y[i] = a * x[i] + y[i] for i < n (grid-stride loop).
extern "C" __global__ void remora_saxpy(float a, const float* x, float* y, unsigned long long n)
{
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        y[i] = a * x[i] + y[i];
    }
}

// p[i] = v + i for i < n (grid-stride loop; wraps modulo 2^32).
extern "C" __global__ void remora_fill_u32(unsigned int* p, unsigned int v, unsigned long long n)
{
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        p[i] = v + (unsigned int)i;
    }
}

// Device-side assert: fails (CUDA_ERROR_ASSERT, poisoning the context) when *flag != 0.
extern "C" __global__ void remora_assert(const int* flag)
{
    assert(*flag == 0);
}

// Does nothing: launch-latency measurements.
extern "C" __global__ void remora_empty()
{
}

// Adds `add` to remora_counter once per thread.
extern "C" __global__ void remora_count(unsigned int add)
{
    atomicAdd(&remora_counter, add);
}
