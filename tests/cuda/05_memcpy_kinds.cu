// remora-test: kernels=no  flags=none  gpus=1
// cudaMalloc/cudaFree, cudaMemset, cudaMemcpy of every kind (HostToHost, HostToDevice,
// DeviceToHost, DeviceToDevice, Default in each direction), odd sizes and offsets, a 64 MiB copy.
#include "remora_test.h"

static bool run_size(size_t n, unsigned seed) {
  bool ok = true;
  unsigned char* src = (unsigned char*)malloc(n + 64);
  unsigned char* dst = (unsigned char*)malloc(n + 64);
  fill_pattern(src, n, seed);
  unsigned char *d1 = nullptr, *d2 = nullptr, *d3 = nullptr;
  CK(cudaMalloc(&d1, n + 64));
  CK(cudaMalloc(&d2, n + 64));
  CK(cudaMalloc(&d3, n + 64));

  // Explicit kinds: H2D, D2D, D2H.
  CK(cudaMemcpy(d1, src, n, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d2, d1, n, cudaMemcpyDeviceToDevice));
  memset(dst, 0, n);
  CK(cudaMemcpy(dst, d2, n, cudaMemcpyDeviceToHost));
  bool explicit_ok = is_pattern(dst, n, seed);

  // cudaMemcpyDefault: the runtime infers the direction from the pointers.
  CK(cudaMemcpy(d3 + 7, src, n, cudaMemcpyDefault));          // host -> device, odd offset
  CK(cudaMemcpy(d1 + 1, d3 + 7, n, cudaMemcpyDefault));       // device -> device
  memset(dst, 0, n + 64);
  CK(cudaMemcpy(dst + 3, d1 + 1, n, cudaMemcpyDefault));      // device -> host
  bool default_ok = is_pattern(dst + 3, n, seed) && all_bytes(dst, 3, 0) && all_bytes(dst + 3 + n, 61, 0);

  // Host to host, both ways of saying it.
  memset(dst, 0, n);
  CK(cudaMemcpy(dst, src, n, cudaMemcpyHostToHost));
  bool h2h_ok = is_pattern(dst, n, seed);
  memset(dst, 0, n);
  CK(cudaMemcpy(dst, src, n, cudaMemcpyDefault));
  h2h_ok = h2h_ok && is_pattern(dst, n, seed);

  // cudaMemset of the whole buffer, then of a middle range.
  CK(cudaMemset(d2, 0xab, n));
  if (n >= 3) CK(cudaMemset(d2 + 1, 0x11, n - 2));
  CK(cudaMemcpy(dst, d2, n, cudaMemcpyDeviceToHost));
  bool memset_ok = dst[0] == 0xab && dst[n - 1] == 0xab &&
                   (n < 3 || all_bytes(dst + 1, n - 2, 0x11));

  printf("size %zu: explicit %s, default %s, host-to-host %s, memset %s\n", n,
         explicit_ok ? "ok" : "BAD", default_ok ? "ok" : "BAD", h2h_ok ? "ok" : "BAD",
         memset_ok ? "ok" : "BAD");
  ok = explicit_ok && default_ok && h2h_ok && memset_ok;
  CK(cudaFree(d1));
  CK(cudaFree(d2));
  CK(cudaFree(d3));
  free(src);
  free(dst);
  return ok;
}

int main() {
  CK(cudaSetDevice(0));
  const size_t sizes[] = {1, 3, 4, 255, 4096, 4101, 65536 + 17, (1u << 20) + 3, 64u << 20};
  int bad = 0;
  unsigned seed = 1;
  for (size_t n : sizes)
    if (!run_size(n, seed++)) bad++;
  check("every size copied correctly", bad == 0);

  // Chained device-to-device copies between regions of one allocation (non-overlapping).
  const size_t n = 1 << 16;
  unsigned char* d = nullptr;
  CK(cudaMalloc(&d, 4 * n));
  unsigned char* h = (unsigned char*)malloc(4 * n);
  fill_pattern(h, n, 99);
  CK(cudaMemset(d, 0, 4 * n));
  CK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d + n, d, n, cudaMemcpyDeviceToDevice));
  CK(cudaMemcpy(d + 2 * n, d + n, n, cudaMemcpyDeviceToDevice));
  CK(cudaMemcpy(d + 3 * n, d + 2 * n, n, cudaMemcpyDefault));
  memset(h, 0, 4 * n);
  CK(cudaMemcpy(h, d, 4 * n, cudaMemcpyDeviceToHost));
  bool chain = true;
  for (int k = 0; k < 4; k++) chain = chain && is_pattern(h + k * n, n, 99);
  check("chained device-to-device copies", chain);
  CK(cudaFree(d));
  free(h);

  // An allocation and free in a loop leaves nothing behind.
  for (int i = 0; i < 200; i++) {
    void* p = nullptr;
    CK(cudaMalloc(&p, (size_t)(i + 1) * 1000));
    CK(cudaMemset(p, i & 0xff, (size_t)(i + 1) * 1000));
    CK(cudaFree(p));
  }
  printf("200 malloc/memset/free cycles: done\n");
  CK(cudaDeviceSynchronize());
  return finish();
}
