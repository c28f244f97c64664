// remora-test: kernels=no  flags=none  gpus=1
// Stream-ordered allocation: cudaMallocAsync/cudaFreeAsync, cudaDeviceGetDefaultMemPool,
// cudaMemPoolSetAttribute/GetAttribute (release threshold), reuse across many cycles.
#include "remora_test.h"

int main() {
  CK(cudaSetDevice(0));
  int supported = 0;
  CK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, 0));
  printf("memory pools supported: %d\n", supported);
  cudaMemPool_t pool;
  CK(cudaDeviceGetDefaultMemPool(&pool, 0));
  uint64_t thr = UINT64_MAX;
  CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &thr));
  uint64_t back = 0;
  CK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &back));
  check("release threshold reads back", back == UINT64_MAX);

  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const size_t n = 1 << 20;
  unsigned char* pin = nullptr;
  CK(cudaMallocHost(&pin, n));
  unsigned char* d = nullptr;
  CK(cudaMallocAsync((void**)&d, n, s));
  fill_pattern(pin, n, 77);
  CK(cudaMemcpyAsync(d, pin, n, cudaMemcpyHostToDevice, s));
  CK(cudaMemsetAsync(d + 100, 0, 100, s));
  unsigned char* d2 = nullptr;
  CK(cudaMallocAsync((void**)&d2, n, s));
  CK(cudaMemcpyAsync(d2, d, n, cudaMemcpyDeviceToDevice, s));
  CK(cudaFreeAsync(d, s));
  memset(pin, 0xff, n);
  CK(cudaMemcpyAsync(pin, d2, n, cudaMemcpyDeviceToHost, s));
  CK(cudaFreeAsync(d2, s));
  CK(cudaStreamSynchronize(s));
  bool ok = all_bytes(pin + 100, 100, 0);
  for (size_t i = 0; i < n && ok; i++)
    if ((i < 100 || i >= 200) && pin[i] != pattern_byte(i, 77)) ok = false;
  check("stream-ordered alloc, copy, free", ok);

  // 100 alloc/free cycles of varying size on the stream, one sync at the end.
  for (int i = 0; i < 100; i++) {
    void* p = nullptr;
    CK(cudaMallocAsync(&p, 4096 * (i % 10 + 1), s));
    CK(cudaMemsetAsync(p, i, 4096, s));
    CK(cudaFreeAsync(p, s));
  }
  CK(cudaStreamSynchronize(s));
  printf("100 async alloc/free cycles: done\n");

  // cudaMallocAsync on the legacy default stream, freed on another stream after a sync.
  void* p0 = nullptr;
  CK(cudaMallocAsync(&p0, 65536, 0));
  CK(cudaMemsetAsync(p0, 0x61, 65536, 0));
  CK(cudaStreamSynchronize(0));
  CK(cudaMemcpy(pin, p0, 65536, cudaMemcpyDeviceToHost));
  check("allocation on stream 0", all_bytes(pin, 65536, 0x61));
  CK(cudaFreeAsync(p0, s));
  CK(cudaStreamSynchronize(s));
  CK(cudaStreamDestroy(s));
  CK(cudaFreeHost(pin));
  return finish();
}
