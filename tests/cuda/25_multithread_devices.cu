// remora-test: kernels=yes  flags=none  gpus=2
// Threads calling cudaSetDevice independently: the current device is per thread. Uses devices 0
// and 1 when there are two or more, device 0 only otherwise; the output is the same either way.
#include <thread>
#include <vector>
#include "remora_test.h"

__global__ void k_iota(int* v, int n, int base) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] = base + i;
}

struct Result {
  bool device_ok = false, data_ok = false, props_ok = false;
  cudaError_t err = cudaSuccess;
};

static void worker(int t, int dev, Result* r) {
#define TCK(call)            \
  do {                       \
    cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) { \
      r->err = e_;           \
      return;                \
    }                        \
  } while (0)
  TCK(cudaSetDevice(dev));
  // Give the other threads time to call cudaSetDevice with their own device.
  for (int k = 0; k < 5; k++) {
    int cur = -1;
    TCK(cudaGetDevice(&cur));
    if (cur != dev) return;
    std::this_thread::yield();
  }
  r->device_ok = true;
  cudaDeviceProp p;
  TCK(cudaGetDeviceProperties(&p, dev));
  r->props_ok = p.warpSize == 32;
  const int n = 100000;
  int* d;
  TCK(cudaMalloc(&d, n * sizeof(int)));
  cudaPointerAttributes a;
  TCK(cudaPointerGetAttributes(&a, d));
  if (a.device != dev) return;
  k_iota<<<(n + 255) / 256, 256>>>(d, n, t * 1000000);
  TCK(cudaGetLastError());
  std::vector<int> h(n);
  TCK(cudaMemcpy(h.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost));
  for (int i = 0; i < n; i++)
    if (h[i] != t * 1000000 + i) return;
  TCK(cudaFree(d));
  int cur = -1;
  TCK(cudaGetDevice(&cur));
  r->data_ok = cur == dev;
#undef TCK
}

int main() {
  int count = 0;
  CK(cudaGetDeviceCount(&count));
  int ndev = count >= 2 ? 2 : 1;
  CK(cudaSetDevice(0));
  const int T = 8;
  Result res[T];
  std::vector<std::thread> th;
  for (int t = 0; t < T; t++) th.emplace_back(worker, t, t % ndev, &res[t]);
  for (auto& x : th) x.join();
  int good = 0;
  for (int t = 0; t < T; t++) {
    printf("thread %d: device %s, properties %s, data %s, error %s\n", t,
           res[t].device_ok ? "ok" : "BAD", res[t].props_ok ? "ok" : "BAD",
           res[t].data_ok ? "ok" : "BAD", cudaGetErrorName(res[t].err));
    if (res[t].device_ok && res[t].props_ok && res[t].data_ok) good++;
  }
  check("all threads used their own device", good == T);
  int cur = -1;
  CK(cudaGetDevice(&cur));
  check("main thread's device is still 0", cur == 0);
  // A thread that never calls cudaSetDevice uses device 0.
  int seen = -1;
  std::thread fresh([&] { cudaGetDevice(&seen); });
  fresh.join();
  check("a new thread starts on device 0", seen == 0);
  // The main thread switches devices and back.
  CK(cudaSetDevice(ndev - 1));
  CK(cudaGetDevice(&cur));
  check("main thread switched to the last used device", cur == ndev - 1);
  CK(cudaSetDevice(0));
  return finish();
}
