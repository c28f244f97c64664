// remora-test: kernels=no  flags=none  gpus=1
// Error handling without kernels: cudaGetLastError vs cudaPeekAtLastError, errors are not sticky,
// cudaMalloc of an absurd size, cudaSetDevice(99), cudaMemcpy with a bad kind, freeing pointers that
// were never allocated (or twice), null arguments, cudaGetErrorName/String of many codes.
#include "remora_test.h"

int main() {
  CK(cudaSetDevice(0));
  expect_code("initial cudaGetLastError", cudaGetLastError(), cudaSuccess);
  expect_code("initial cudaPeekAtLastError", cudaPeekAtLastError(), cudaSuccess);

  // cudaSetDevice(99): the error is returned and recorded; peek keeps it, get clears it.
  expect_code("cudaSetDevice(99)", cudaSetDevice(99), cudaErrorInvalidDevice);
  expect_code("peek #1", cudaPeekAtLastError(), cudaErrorInvalidDevice);
  expect_code("peek #2", cudaPeekAtLastError(), cudaErrorInvalidDevice);
  expect_code("get #1", cudaGetLastError(), cudaErrorInvalidDevice);
  expect_code("get #2", cudaGetLastError(), cudaSuccess);
  expect_code("peek after get", cudaPeekAtLastError(), cudaSuccess);
  int dev = -1;
  CK(cudaGetDevice(&dev));
  printf("device still: %d\n", dev);
  expect_code("cudaSetDevice(-1)", cudaSetDevice(-1), cudaErrorInvalidDevice);
  consume_error("get after cudaSetDevice(-1)", cudaErrorInvalidDevice);

  // A successful call does not clear a recorded error; a later error replaces it.
  expect_code("cudaSetDevice(99) again", cudaSetDevice(99), cudaErrorInvalidDevice);
  void* ok = nullptr;
  CK(cudaMalloc(&ok, 256));
  expect_code("peek after a successful cudaMalloc", cudaPeekAtLastError(), cudaErrorInvalidDevice);
  void* huge = nullptr;
  expect_code("cudaMalloc(1 << 62)", cudaMalloc(&huge, (size_t)1 << 62), cudaErrorMemoryAllocation);
  expect_code("get returns the latest error", cudaGetLastError(), cudaErrorMemoryAllocation);
  expect_code("then clear", cudaGetLastError(), cudaSuccess);

  // Absurd sizes.
  expect_error_recorded("cudaMalloc(SIZE_MAX / 2)", cudaMalloc(&huge, SIZE_MAX / 2));
  expect_code("cudaMalloc(nullptr, 16)", cudaMalloc(nullptr, 16), cudaErrorInvalidValue);
  consume_error("get after null out-pointer", cudaErrorInvalidValue);

  // The device still works: errors above were not sticky.
  int h[64], back[64];
  for (int i = 0; i < 64; i++) h[i] = 1000 - i;
  CK(cudaMemcpy(ok, h, sizeof h, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(back, ok, sizeof back, cudaMemcpyDeviceToHost));
  check("device works after non-sticky errors", memcmp(h, back, sizeof h) == 0);

  // cudaMemcpy with a bad kind.
  expect_code("cudaMemcpy(kind 42)", cudaMemcpy(ok, h, sizeof h, (cudaMemcpyKind)42),
              cudaErrorInvalidMemcpyDirection);
  consume_error("get after bad kind", cudaErrorInvalidMemcpyDirection);
  expect_code("cudaMemcpyAsync(kind 7)", cudaMemcpyAsync(ok, h, sizeof h, (cudaMemcpyKind)7, 0),
              cudaErrorInvalidMemcpyDirection);
  consume_error("get after bad async kind", cudaErrorInvalidMemcpyDirection);
  expect_code("cudaMemcpy of 0 bytes", cudaMemcpy(ok, h, 0, cudaMemcpyHostToDevice), cudaSuccess);

  // Freeing what was never allocated, and freeing twice.
  CK(cudaFree(nullptr));
  printf("cudaFree(nullptr): cudaSuccess\n");
  int* host_heap = (int*)malloc(4096);
  expect_error_recorded("cudaFree(host heap pointer)", cudaFree(host_heap));
  free(host_heap);
  void* twice = nullptr;
  CK(cudaMalloc(&twice, 1024));
  CK(cudaFree(twice));
  expect_error_recorded("cudaFree twice", cudaFree(twice));
  expect_error_recorded("cudaFree(ok + 8)", cudaFree((char*)ok + 8));
  expect_error_recorded("cudaFreeHost(device pointer)", cudaFreeHost(ok));
  CK(cudaFree(ok));
  CK(cudaDeviceSynchronize());
  expect_code("last error clear at the end of the checks", cudaGetLastError(), cudaSuccess);

  // Names and strings.
  const int codes[] = {0, 1, 2, 3, 9, 11, 12, 17, 21, 35, 46, 98, 100, 101, 200, 201, 209, 400,
                       401, 500, 600, 700, 701, 702, 709, 710, 712, 713, 715, 716, 719, 720, 900, 999};
  for (int c : codes)
    printf("code %d: %s | %s\n", c, cudaGetErrorName((cudaError_t)c),
           cudaGetErrorString((cudaError_t)c));
  // An unknown code last: what the runtime says about it is part of the expected output.
  printf("code 12345: %s | %s\n", cudaGetErrorName((cudaError_t)12345),
         cudaGetErrorString((cudaError_t)12345));
  return finish();
}
