// remora-test: kernels=yes  flags=--default-stream=per-thread  gpus=1
// Built with --default-stream per-thread: stream 0 means each thread's own default stream (the
// program imports the _ptsz/_ptds entry points). Four threads launch kernels and async copies on
// their default stream and synchronise it; cudaStreamPerThread and cudaStreamLegacy handles.
#include <thread>
#include <vector>
#include "remora_test.h"

__global__ void k_spin_fill(int* v, int n, int val, unsigned long long ns) {
  unsigned long long t0 = remora_globaltimer();
  while (remora_globaltimer() - t0 < ns) {
  }
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) v[i] = val;
}

struct Result {
  bool ok = false;
  cudaError_t err = cudaSuccess;
};

static void worker(int t, Result* r) {
#define TCK(call)            \
  do {                       \
    cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) { \
      r->err = e_;           \
      return;                \
    }                        \
  } while (0)
  TCK(cudaSetDevice(0));
  const int n = 1 << 16;
  int *d, *h;
  TCK(cudaMalloc(&d, n * sizeof(int)));
  TCK(cudaMallocHost(&h, n * sizeof(int)));
  for (int k = 0; k < 10; k++) {
    k_spin_fill<<<16, 256>>>(d, n, t * 100 + k, 200000ull);  // default = per-thread stream
    TCK(cudaGetLastError());
    TCK(cudaMemcpyAsync(h, d, n * sizeof(int), cudaMemcpyDeviceToHost, 0));
    TCK(cudaStreamSynchronize(0));
    for (int i = 0; i < n; i++)
      if (h[i] != t * 100 + k) return;
  }
  k_spin_fill<<<16, 256, 0, cudaStreamPerThread>>>(d, n, -t, 0);
  TCK(cudaGetLastError());
  TCK(cudaMemcpy(h, d, n * sizeof(int), cudaMemcpyDeviceToHost));  // synchronous copy
  for (int i = 0; i < n; i++)
    if (h[i] != -t) return;
  TCK(cudaStreamQuery(cudaStreamPerThread));
  TCK(cudaFree(d));
  TCK(cudaFreeHost(h));
  r->ok = true;
#undef TCK
}

int main() {
  CK(cudaSetDevice(0));
  const int T = 4;
  Result res[T];
  std::vector<std::thread> th;
  for (int t = 0; t < T; t++) th.emplace_back(worker, t, &res[t]);
  for (auto& x : th) x.join();
  int good = 0;
  for (int t = 0; t < T; t++) {
    printf("thread %d: %s (error %s)\n", t, res[t].ok ? "ok" : "BAD", cudaGetErrorName(res[t].err));
    if (res[t].ok) good++;
  }
  check("all threads used their per-thread default stream", good == T);

  // The main thread's own default stream, plus explicit handles.
  int* d;
  CK(cudaMalloc(&d, 1024 * sizeof(int)));
  k_spin_fill<<<1, 256>>>(d, 1024, 42, 100000000ull);  // 100 ms
  CK_LAUNCH();
  expect_code("cudaStreamQuery(cudaStreamPerThread) while a kernel runs",
              cudaStreamQuery(cudaStreamPerThread), cudaErrorNotReady);
  CK(cudaStreamSynchronize(cudaStreamPerThread));
  expect_code("cudaStreamQuery(0) after synchronising", cudaStreamQuery(0), cudaSuccess);
  int h[1024];
  CK(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, cudaStreamPerThread));
  CK(cudaStreamSynchronize(cudaStreamPerThread));
  check("main thread's per-thread stream", h[0] == 42 && h[1023] == 42);
  k_spin_fill<<<1, 256, 0, cudaStreamLegacy>>>(d, 1024, 43, 0);
  CK_LAUNCH();
  CK(cudaStreamSynchronize(cudaStreamLegacy));
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  check("kernel on cudaStreamLegacy", h[0] == 43 && h[1023] == 43);
  cudaEvent_t e;
  CK(cudaEventCreate(&e));
  CK(cudaEventRecord(e, 0));
  CK(cudaEventSynchronize(e));
  CK(cudaEventDestroy(e));
  CK(cudaFree(d));
  return finish();
}
