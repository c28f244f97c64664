// remora-test: kernels=yes  flags=none  gpus=1
// Launch errors: invalid configurations (too many threads per block, zero-sized grid, grid y/z and
// block z past their limits, too much shared memory) reported through cudaPeekAtLastError and
// cudaGetLastError, then a valid launch still works. The programs check only that an error came
// back; the exact code is pinned by the comparison with native output. (Measured on the H200,
// CUDA 13.0, driver 580: a bad <<<>>> configuration gives cudaErrorInvalidValue, not the
// cudaErrorInvalidConfiguration of older releases.)
#include "remora_test.h"

__global__ void k_set(int* out, int v) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = v + i;
}

int main() {
  CK(cudaSetDevice(0));
  int* d;
  CK(cudaMalloc(&d, 4096 * sizeof(int)));
  CK(cudaMemset(d, 0, 4096 * sizeof(int)));

  k_set<<<1, 2048>>>(d, 1);
  expect_error("peek after <<<1, 2048>>>", cudaPeekAtLastError());
  expect_error("get after <<<1, 2048>>>", cudaGetLastError());
  expect_code("get again", cudaGetLastError(), cudaSuccess);

  k_set<<<0, 32>>>(d, 1);
  expect_error("<<<0, 32>>>", cudaGetLastError());
  k_set<<<dim3(1, 70000), 32>>>(d, 1);
  expect_error("grid y = 70000", cudaGetLastError());
  k_set<<<dim3(1, 1, 70000), 32>>>(d, 1);
  expect_error("grid z = 70000", cudaGetLastError());
  k_set<<<1, dim3(1, 1, 65)>>>(d, 1);
  expect_error("block z = 65", cudaGetLastError());
  k_set<<<1, dim3(32, 32, 2)>>>(d, 1);
  expect_error("block 32x32x2", cudaGetLastError());
  k_set<<<1, 32, 1 << 20>>>(d, 1);
  expect_error_recorded("1 MiB dynamic shared memory", cudaPeekAtLastError());

  // A failed launch never ran: the buffer is still zero.
  int h[4096];
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  check("failed launches wrote nothing", all_bytes(h, sizeof h, 0));

  // Errors are not sticky: a valid launch works and synchronising reports success.
  k_set<<<4, 1024>>>(d, 5);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int i = 0; i < 4096; i++) ok = ok && h[i] == 5 + i;
  check("valid launch after the errors", ok);

  // An error from a launch is replaced by a later API error and cleared by get.
  k_set<<<1, 4096>>>(d, 1);
  expect_code("cudaSetDevice(99) after a bad launch", cudaSetDevice(99), cudaErrorInvalidDevice);
  expect_code("get returns the later error", cudaGetLastError(), cudaErrorInvalidDevice);
  expect_code("then success", cudaGetLastError(), cudaSuccess);

  // A launch error does not disturb a stream with queued work.
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  k_set<<<4, 1024, 0, s>>>(d, 100);
  k_set<<<4, 2000, 0, s>>>(d, 1);
  expect_error("bad launch on a stream", cudaGetLastError());
  CK(cudaStreamSynchronize(s));
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  ok = true;
  for (int i = 0; i < 4096; i++) ok = ok && h[i] == 100 + i;
  check("stream work queued before the bad launch completed", ok);
  CK(cudaStreamDestroy(s));
  CK(cudaFree(d));
  expect_code("last error at the end", cudaGetLastError(), cudaSuccess);
  return finish();
}
