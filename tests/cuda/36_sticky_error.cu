// remora-test: kernels=yes  flags=none  gpus=1
// A kernel that traps makes the context unusable: the error shows up at the next synchronising
// call, is sticky (later calls return it again, cudaGetLastError does not clear it), and the
// program can still exit cleanly. Run last in its process on purpose: nothing works afterwards.
#include "remora_test.h"

__global__ void k_ok(int* p) { *p = 1; }
__global__ void k_trap(int* p) {
  if (threadIdx.x == 0) __trap();
  *p = 2;
}

int main() {
  CK(cudaSetDevice(0));
  int* d;
  CK(cudaMalloc(&d, sizeof(int)));
  k_ok<<<1, 1>>>(d);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  printf("healthy kernel: done\n");
  fflush(stdout);

  k_trap<<<1, 32>>>(d);
  expect_code("launch of the trapping kernel", cudaGetLastError(), cudaSuccess);
  cudaError_t sync = cudaDeviceSynchronize();
  expect_error("cudaDeviceSynchronize after the trap", sync);
  cudaError_t again = cudaDeviceSynchronize();
  printf("cudaDeviceSynchronize again: %s\n", cudaGetErrorName(again));
  check("the error is sticky", again == sync);
  void* p = nullptr;
  cudaError_t m = cudaMalloc(&p, 16);
  printf("cudaMalloc after the trap: %s\n", cudaGetErrorName(m));
  check("cudaMalloc fails with the same error", m == sync);
  cudaError_t l1 = cudaGetLastError();
  cudaError_t l2 = cudaGetLastError();
  printf("cudaGetLastError twice: %s, %s\n", cudaGetErrorName(l1), cudaGetErrorName(l2));
  int count = 0;
  cudaError_t c = cudaGetDeviceCount(&count);
  printf("cudaGetDeviceCount after the trap: %s\n", cudaGetErrorName(c));
  int h = 0;
  cudaError_t cp = cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
  printf("cudaMemcpy after the trap: %s\n", cudaGetErrorName(cp));
  check("cudaMemcpy fails too", cp != cudaSuccess);
  return finish();
}
