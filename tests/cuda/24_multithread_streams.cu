// remora-test: kernels=yes  flags=none  gpus=1
// Eight std::threads, each with its own stream, device buffers and pinned buffers, running
// kernels and async copies for 20 rounds at the same time; results checked after join.
#include <thread>
#include <vector>
#include "remora_test.h"

__global__ void k_affine(unsigned* v, int n, unsigned mul, unsigned add) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    v[i] = v[i] * mul + add;
}

struct Result {
  bool ok = false;
  cudaError_t err = cudaSuccess;
  long long checksum = 0;
};

static void worker(int t, Result* r) {
  const int n = 1 << 18, rounds = 20;
#define TCK(call)                         \
  do {                                    \
    cudaError_t e_ = (call);              \
    if (e_ != cudaSuccess) {              \
      r->err = e_;                        \
      return;                             \
    }                                     \
  } while (0)
  TCK(cudaSetDevice(0));
  cudaStream_t s;
  TCK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  unsigned *d, *h;
  TCK(cudaMalloc(&d, n * sizeof(unsigned)));
  TCK(cudaMallocHost(&h, n * sizeof(unsigned)));
  std::vector<unsigned> want(n);
  for (int i = 0; i < n; i++) h[i] = want[i] = t * 1000 + (i % 1000);
  TCK(cudaMemcpyAsync(d, h, n * sizeof(unsigned), cudaMemcpyHostToDevice, s));
  for (int k = 0; k < rounds; k++) {
    unsigned mul = (k % 3) + 1, add = (unsigned)(t - k);  // unsigned: wraps like the GPU
    k_affine<<<32, 256, 0, s>>>(d, n, mul, add);
    TCK(cudaGetLastError());
    for (int i = 0; i < n; i++) want[i] = want[i] * mul + add;
    if (k % 5 == 4) {  // check midway too
      TCK(cudaMemcpyAsync(h, d, n * sizeof(unsigned), cudaMemcpyDeviceToHost, s));
      TCK(cudaStreamSynchronize(s));
      for (int i = 0; i < n; i++)
        if (h[i] != want[i]) return;
    }
  }
  TCK(cudaMemcpyAsync(h, d, n * sizeof(unsigned), cudaMemcpyDeviceToHost, s));
  TCK(cudaStreamSynchronize(s));
  long long sum = 0;
  for (int i = 0; i < n; i++) {
    if (h[i] != want[i]) return;
    sum += h[i];
  }
  r->checksum = sum;
  TCK(cudaStreamDestroy(s));
  TCK(cudaFree(d));
  TCK(cudaFreeHost(h));
  r->ok = true;
#undef TCK
}

int main() {
  CK(cudaSetDevice(0));
  const int T = 8;
  Result res[T];
  std::vector<std::thread> th;
  for (int t = 0; t < T; t++) th.emplace_back(worker, t, &res[t]);
  for (auto& x : th) x.join();
  int good = 0;
  for (int t = 0; t < T; t++) {
    printf("thread %d: %s (error %s), checksum %lld\n", t, res[t].ok ? "ok" : "BAD",
           cudaGetErrorName(res[t].err), res[t].checksum);
    if (res[t].ok) good++;
  }
  check("all 8 threads got correct results", good == T);
  CK(cudaDeviceSynchronize());
  return finish();
}
