// remora-test: kernels=yes  flags=none  gpus=1
// cudaFuncGetAttributes (static shared size, launch bounds, PTX/binary version, registers),
// cudaFuncSetAttribute (max dynamic shared memory, preferred carveout), cudaFuncSetCacheConfig,
// cudaOccupancyMaxActiveBlocksPerMultiprocessor (+WithFlags), cudaOccupancyMaxPotentialBlockSize.
#include "remora_test.h"

__global__ void __launch_bounds__(256) k_bounded(float* out) {
  __shared__ float buf[1024];  // 4096 bytes static shared memory
  for (int i = threadIdx.x; i < 1024; i += blockDim.x) buf[i] = (float)i;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = buf[(threadIdx.x * 7) % 1024];
}

__global__ void k_plain(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = threadIdx.x; }

__global__ void k_dyn(int* out) {
  extern __shared__ int dyn[];
  dyn[threadIdx.x] = threadIdx.x;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = dyn[blockDim.x - 1 - threadIdx.x];
}

int main() {
  CK(cudaSetDevice(0));
  cudaFuncAttributes a;
  CK(cudaFuncGetAttributes(&a, k_bounded));
  printf("k_bounded: sharedSizeBytes %zu, maxThreadsPerBlock %d, ptxVersion %d, binaryVersion %d, "
         "localSizeBytes %zu\n",
         a.sharedSizeBytes, a.maxThreadsPerBlock, a.ptxVersion, a.binaryVersion, a.localSizeBytes);
  check("k_bounded: numRegs > 0", a.numRegs > 0);
  check("k_bounded: sharedSizeBytes == 4096", a.sharedSizeBytes == 4096);
  check("k_bounded: maxThreadsPerBlock == 256", a.maxThreadsPerBlock == 256);
  CK(cudaFuncGetAttributes(&a, k_plain));
  printf("k_plain: sharedSizeBytes %zu, maxThreadsPerBlock %d, numRegs %d, "
         "maxDynamicSharedSizeBytes %d\n",
         a.sharedSizeBytes, a.maxThreadsPerBlock, a.numRegs, a.maxDynamicSharedSizeBytes);
  check("k_plain: maxThreadsPerBlock == 1024", a.maxThreadsPerBlock == 1024);

  CK(cudaFuncSetAttribute(k_dyn, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
  CK(cudaFuncSetAttribute(k_dyn, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
  CK(cudaFuncGetAttributes(&a, k_dyn));
  printf("k_dyn: maxDynamicSharedSizeBytes %d, preferredShmemCarveout %d\n",
         a.maxDynamicSharedSizeBytes, a.preferredShmemCarveout);
  CK(cudaFuncSetCacheConfig(k_plain, cudaFuncCachePreferShared));
  CK(cudaFuncSetCacheConfig(k_plain, cudaFuncCachePreferL1));

  int nb = 0, nb2 = 0, nb3 = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, k_bounded, 256, 0));
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb2, k_bounded, 256, 0, cudaOccupancyDefault));
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&nb3, k_bounded, 256, 0,
                                                            cudaOccupancyDisableCachingOverride));
  printf("k_bounded 256 threads: %d blocks/SM (flags: %d, %d)\n", nb, nb2, nb3);
  check("occupancy > 0 and the same with default flags", nb > 0 && nb == nb2);
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, k_plain, 1024, 0));
  printf("k_plain 1024 threads: %d blocks/SM\n", nb);
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, k_plain, 32, 0));
  printf("k_plain 32 threads: %d blocks/SM\n", nb);
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, k_dyn, 256, 60 * 1024));
  printf("k_dyn 256 threads, 60 KiB dynamic: %d blocks/SM\n", nb);
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, k_dyn, 256, 0));
  printf("k_dyn 256 threads, no dynamic: %d blocks/SM\n", nb);

  int min_grid = 0, block = 0;
  CK(cudaOccupancyMaxPotentialBlockSize(&min_grid, &block, k_plain, 0, 0));
  printf("k_plain potential block size: %d\n", block);
  check("k_plain min grid size > 0", min_grid > 0);
  CK(cudaOccupancyMaxPotentialBlockSize(&min_grid, &block, k_bounded, 0, 0));
  printf("k_bounded potential block size: %d\n", block);

  // The kernels still run as expected after all the attribute changes.
  float* df;
  int* di;
  CK(cudaMalloc(&df, 4 * 256 * sizeof(float)));
  CK(cudaMalloc(&di, 4 * 1024 * sizeof(int)));
  k_bounded<<<4, 256>>>(df);
  CK_LAUNCH();
  k_dyn<<<4, 1024, 62 * 1024>>>(di);
  CK_LAUNCH();
  float hf[1024];
  static int hi[4096];
  CK(cudaMemcpy(hf, df, sizeof hf, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hi, di, sizeof hi, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int i = 0; i < 1024; i++) ok = ok && hf[i] == (float)(((i % 256) * 7) % 1024);
  for (int i = 0; i < 4096; i++) ok = ok && hi[i] == 1023 - (i % 1024);
  check("kernels run after attribute changes", ok);
  // Too many threads for the launch bounds.
  k_bounded<<<1, 512>>>(df);
  expect_error_recorded("k_bounded with 512 threads (bound 256)", cudaPeekAtLastError());
  CK(cudaFree(df));
  CK(cudaFree(di));
  return finish();
}
