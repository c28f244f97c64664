// remora-test: kernels=yes  flags=none  gpus=1
// Dynamic shared memory: extern __shared__ sized at launch, static + dynamic together,
// cudaFuncSetAttribute(MaxDynamicSharedMemorySize) to go past 48 KiB (and the launch error
// without it), cudaFuncGetAttributes reading the new limit back.
#include "remora_test.h"

// Reverses each block's slice of the array through shared memory.
__global__ void k_reverse(const int* in, int* out) {
  extern __shared__ int sm[];
  int base = blockIdx.x * blockDim.x;
  sm[threadIdx.x] = in[base + threadIdx.x];
  __syncthreads();
  out[base + threadIdx.x] = sm[blockDim.x - 1 - threadIdx.x];
}

__global__ void k_static_dynamic(int* out, int ndyn) {
  __shared__ int st[64];
  extern __shared__ int dyn[];
  if (threadIdx.x < 64) st[threadIdx.x] = threadIdx.x;
  for (int i = threadIdx.x; i < ndyn; i += blockDim.x) dyn[i] = i * 2;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long s = 0;
    for (int i = 0; i < 64; i++) s += st[i];
    for (int i = 0; i < ndyn; i++) s += dyn[i];
    out[blockIdx.x] = (int)s;
  }
}

// Uses `bytes` of dynamic shared memory as ints.
__global__ void k_large(int* out, int nints) {
  extern __shared__ int big[];
  for (int i = threadIdx.x; i < nints; i += blockDim.x) big[i] = i;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long s = 0;
    for (int i = 0; i < nints; i++) s += big[nints - 1 - i];
    out[0] = (int)(s & 0x7fffffff);
    out[1] = (int)(s >> 31);
  }
}

int main() {
  CK(cudaSetDevice(0));
  const int threads = 512, blocks = 64, n = threads * blocks;
  int *din, *dout;
  CK(cudaMalloc(&din, n * sizeof(int)));
  CK(cudaMalloc(&dout, n * sizeof(int)));
  int* h = (int*)malloc(n * sizeof(int));
  for (int i = 0; i < n; i++) h[i] = i * 5 + 1;
  CK(cudaMemcpy(din, h, n * sizeof(int), cudaMemcpyHostToDevice));
  k_reverse<<<blocks, threads, threads * sizeof(int)>>>(din, dout);
  CK_LAUNCH();
  CK(cudaMemcpy(h, dout, n * sizeof(int), cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int blk = 0; blk < blocks; blk++)
    for (int t = 0; t < threads; t++)
      ok = ok && h[blk * threads + t] == (blk * threads + threads - 1 - t) * 5 + 1;
  check("per-block reverse through dynamic shared memory", ok);

  const int ndyn = 3000;
  k_static_dynamic<<<4, 128, ndyn * sizeof(int)>>>(dout, ndyn);
  CK_LAUNCH();
  int hs[4];
  CK(cudaMemcpy(hs, dout, sizeof hs, cudaMemcpyDeviceToHost));
  int want = 64 * 63 / 2 + ndyn * (ndyn - 1);
  printf("static+dynamic sum: %d\n", hs[0]);
  check("static and dynamic shared memory coexist", hs[0] == want && hs[3] == want);

  // 100 KiB of dynamic shared memory: fails until the function opts in.
  const int bytes = 100 * 1024, nints = bytes / 4;
  cudaFuncAttributes fa;
  CK(cudaFuncGetAttributes(&fa, k_large));
  check("default max dynamic shared < 100 KiB", fa.maxDynamicSharedSizeBytes < bytes);
  k_large<<<1, 256, bytes>>>(dout, nints);
  expect_error_recorded("launch with 100 KiB before opting in", cudaPeekAtLastError());
  CK(cudaFuncSetAttribute(k_large, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  CK(cudaFuncGetAttributes(&fa, k_large));
  printf("maxDynamicSharedSizeBytes after opt-in: %d\n", fa.maxDynamicSharedSizeBytes);
  k_large<<<1, 256, bytes>>>(dout, nints);
  CK_LAUNCH();
  CK(cudaMemcpy(hs, dout, 2 * sizeof(int), cudaMemcpyDeviceToHost));
  long long s = ((long long)hs[1] << 31) | hs[0];
  printf("100 KiB sum: %lld\n", s);
  check("100 KiB dynamic shared memory kernel", s == (long long)nints * (nints - 1) / 2);
  int optin = 0;
  CK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  expect_error_recorded("cudaFuncSetAttribute above the opt-in maximum",
                        cudaFuncSetAttribute(k_large, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             optin + 4096));
  CK(cudaDeviceSynchronize());
  CK(cudaFree(din));
  CK(cudaFree(dout));
  free(h);
  return finish();
}
