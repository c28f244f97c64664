//! The demo kernels (`server/kernels/demo.cu`), embedded as PTX.
//!
//! The PTX is generated with `nvcc -ptx -arch=compute_80` (see `server/kernels/README.md`), so
//! the driver JIT-compiles it for whatever GPU it finds. The emulated backend implements the same
//! kernels in Rust with the same names and parameter layouts.

/// `server/kernels/demo.ptx`. Not NUL-terminated: backends that need a C string append the NUL.
pub const DEMO_PTX: &str = include_str!("../../kernels/demo.ptx");

/// `remora_saxpy(float a, const float* x, float* y, unsigned long long n)`: `y[i] = a*x[i] + y[i]`.
pub const SAXPY: &str = "remora_saxpy";
/// `remora_fill_u32(unsigned int* p, unsigned int v, unsigned long long n)`: `p[i] = v + i`.
pub const FILL_U32: &str = "remora_fill_u32";
/// `remora_assert(const int* flag)`: device-side `assert(*flag == 0)` (`CUDA_ERROR_ASSERT`).
pub const ASSERT: &str = "remora_assert";
/// `remora_empty()`: does nothing.
pub const EMPTY: &str = "remora_empty";
/// `remora_count(unsigned int add)`: `atomicAdd(&remora_counter, add)` once per thread.
pub const COUNT: &str = "remora_count";
/// The `__device__ unsigned int` that [`COUNT`] adds to.
pub const COUNTER: &str = "remora_counter";

/// Every kernel name, in source order.
pub const KERNELS: [&str; 5] = [SAXPY, FILL_U32, ASSERT, EMPTY, COUNT];

/// Each kernel's parameter table as `cuFuncGetParamInfo` reports it: (offset, size) per
/// parameter, at the natural C ABI alignment.
pub fn param_layout(kernel: &str) -> Option<&'static [(u32, u32)]> {
    Some(match kernel {
        SAXPY => &[(0, 4), (8, 8), (16, 8), (24, 8)],
        FILL_U32 => &[(0, 8), (8, 4), (16, 8)],
        ASSERT => &[(0, 8)],
        EMPTY => &[],
        COUNT => &[(0, 4)],
        _ => return None,
    })
}
