// remora-test: kernels=no  flags=none  gpus=1
// cudaMemcpyAsync and cudaMemsetAsync on a created stream and on the legacy default stream, with
// pinned and pageable host memory; stream order of a chain of async operations.
#include "remora_test.h"

int main() {
  CK(cudaSetDevice(0));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  const size_t n = 8u << 20;
  unsigned char *pinned = nullptr, *pinned2 = nullptr;
  CK(cudaMallocHost(&pinned, n));
  CK(cudaMallocHost(&pinned2, n));
  unsigned char* pageable = (unsigned char*)malloc(n);
  unsigned char *d = nullptr, *d2 = nullptr;
  CK(cudaMalloc(&d, n));
  CK(cudaMalloc(&d2, n));

  // memset async, then copy back async into pinned memory.
  CK(cudaMemsetAsync(d, 0x5a, n, s));
  memset(pinned, 0, n);
  CK(cudaMemcpyAsync(pinned, d, n, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  check("memsetAsync + memcpyAsync D2H (pinned)", all_bytes(pinned, n, 0x5a));

  // H2D pinned -> D2D -> D2H pageable, all async on one stream.
  fill_pattern(pinned, n, 7);
  CK(cudaMemcpyAsync(d, pinned, n, cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(d2, d, n, cudaMemcpyDeviceToDevice, s));
  memset(pageable, 0, n);
  CK(cudaMemcpyAsync(pageable, d2, n, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  check("H2D pinned, D2D, D2H pageable on one stream", is_pattern(pageable, n, 7));

  // Pageable source, cudaMemcpyDefault, legacy default stream (0).
  fill_pattern(pageable, n, 8);
  CK(cudaMemcpyAsync(d, pageable, n, cudaMemcpyDefault, 0));
  memset(pinned2, 0, n);
  CK(cudaMemcpyAsync(pinned2, d, n, cudaMemcpyDefault, 0));
  CK(cudaStreamSynchronize(0));
  check("pageable H2D + pinned D2H on stream 0", is_pattern(pinned2, n, 8));

  // 16 memsetAsync calls on 4 KiB chunks, later ones overwriting part of earlier ones.
  const size_t chunk = 4096;
  CK(cudaMemsetAsync(d, 0, 16 * chunk, s));
  for (int i = 0; i < 16; i++) CK(cudaMemsetAsync(d + i * chunk, i + 1, chunk, s));
  CK(cudaMemsetAsync(d + 2 * chunk + 100, 0xee, chunk, s));  // spans chunks 2 and 3
  CK(cudaMemcpyAsync(pinned, d, 16 * chunk, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  bool order = true;
  for (size_t i = 0; i < 16 * chunk; i++) {
    unsigned char want = (unsigned char)(i / chunk + 1);
    if (i >= 2 * chunk + 100 && i < 3 * chunk + 100) want = 0xee;
    if (pinned[i] != want) order = false;
  }
  check("memsetAsync chain applied in stream order", order);

  // Ordering: copy, overwrite source on the device, copy again; both copies see their version.
  fill_pattern(pinned, n, 11);
  CK(cudaMemcpyAsync(d, pinned, n, cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(d2, d, n, cudaMemcpyDeviceToDevice, s));
  CK(cudaMemsetAsync(d, 0x33, n, s));
  CK(cudaMemcpyAsync(pinned, d2, n, cudaMemcpyDeviceToHost, s));
  CK(cudaMemcpyAsync(pinned2, d, n, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  check("copy made before an overwrite keeps the old data", is_pattern(pinned, n, 11));
  check("overwrite visible afterwards", all_bytes(pinned2, n, 0x33));

  // Many small async copies of different sizes.
  bool small_ok = true;
  for (int i = 1; i <= 100; i++) {
    fill_pattern(pinned, i * 37, i);
    CK(cudaMemcpyAsync(d + i * 64, pinned, i * 37, cudaMemcpyHostToDevice, s));
    CK(cudaMemcpyAsync(pinned2, d + i * 64, i * 37, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    if (!is_pattern(pinned2, i * 37, i)) small_ok = false;
  }
  check("100 small async round trips", small_ok);

  CK(cudaStreamDestroy(s));
  CK(cudaFree(d));
  CK(cudaFree(d2));
  CK(cudaFreeHost(pinned));
  CK(cudaFreeHost(pinned2));
  free(pageable);
  return finish();
}
