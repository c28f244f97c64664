// remora-test: kernels=no  flags=none  gpus=1
// Page-locked host memory: cudaMallocHost/cudaFreeHost, cudaHostAlloc with each flag,
// cudaHostGetFlags, cudaHostRegister/cudaHostUnregister on malloc'd memory (aligned and not),
// registering twice / unregistering twice, copies through all of them.
#include "remora_test.h"

static bool round_trip(void* host, size_t n, unsigned seed, cudaStream_t s) {
  void* d = nullptr;
  CK(cudaMalloc(&d, n));
  fill_pattern(host, n, seed);
  CK(cudaMemcpyAsync(d, host, n, cudaMemcpyHostToDevice, s));
  CK(cudaStreamSynchronize(s));
  memset(host, 0, n);
  CK(cudaMemcpyAsync(host, d, n, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  bool ok = is_pattern(host, n, seed);
  CK(cudaFree(d));
  return ok;
}

int main() {
  CK(cudaSetDevice(0));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  const size_t n = 4u << 20;

  void* h = nullptr;
  CK(cudaMallocHost(&h, n));
  check("cudaMallocHost memory is writable and round-trips", round_trip(h, n, 1, s));
  unsigned int fl = 0;
  CK(cudaHostGetFlags(&fl, h));
  printf("cudaHostGetFlags(cudaMallocHost): 0x%x\n", fl);
  CK(cudaFreeHost(h));

  struct { const char* name; unsigned flags; } kinds[] = {
      {"Default", cudaHostAllocDefault},
      {"Portable", cudaHostAllocPortable},
      {"Mapped", cudaHostAllocMapped},
      {"WriteCombined", cudaHostAllocWriteCombined},
      {"Portable|Mapped", cudaHostAllocPortable | cudaHostAllocMapped},
  };
  unsigned seed = 10;
  for (auto& k : kinds) {
    void* p = nullptr;
    CK(cudaHostAlloc(&p, n, k.flags));
    bool ok = round_trip(p, n, seed++, s);
    CK(cudaHostGetFlags(&fl, p));
    printf("cudaHostAlloc(%s): round trip %s, requested flags reported: %s\n", k.name,
           ok ? "ok" : "BAD", (fl & k.flags) == k.flags ? "yes" : "no");
    if (!ok || (fl & k.flags) != k.flags) g_failures++;
    CK(cudaFreeHost(p));
  }

  // Register page-aligned malloc'd memory.
  void* aligned = aligned_alloc(4096, n);
  CK(cudaHostRegister(aligned, n, cudaHostRegisterDefault));
  check("registered aligned memory round-trips", round_trip(aligned, n, 20, s));
  expect_error_recorded("cudaHostRegister twice", cudaHostRegister(aligned, n, cudaHostRegisterDefault));
  CK(cudaHostUnregister(aligned));
  expect_error_recorded("cudaHostUnregister twice", cudaHostUnregister(aligned));
  free(aligned);

  // Register unaligned, odd-sized malloc'd memory.
  const size_t odd = 100003;
  unsigned char* raw = (unsigned char*)malloc(odd + 64);
  unsigned char* unaligned = raw + 8;
  CK(cudaHostRegister(unaligned, odd, cudaHostRegisterPortable));
  check("registered unaligned memory round-trips", round_trip(unaligned, odd, 21, s));
  CK(cudaHostUnregister(unaligned));
  // Still ordinary memory afterwards, and pageable copies from it work.
  fill_pattern(unaligned, odd, 22);
  void* d = nullptr;
  CK(cudaMalloc(&d, odd));
  CK(cudaMemcpy(d, unaligned, odd, cudaMemcpyHostToDevice));
  memset(unaligned, 0, odd);
  CK(cudaMemcpy(unaligned, d, odd, cudaMemcpyDeviceToHost));
  check("pageable copy after unregister", is_pattern(unaligned, odd, 22));
  CK(cudaFree(d));
  free(raw);

  // Unregistering memory that was never registered.
  void* never = malloc(8192);
  expect_error_recorded("cudaHostUnregister(never registered)", cudaHostUnregister(never));
  free(never);

  // Many pinned buffers alive at once.
  void* many[32];
  for (int i = 0; i < 32; i++) CK(cudaMallocHost(&many[i], 65536 * (i + 1)));
  bool all_ok = true;
  for (int i = 0; i < 32; i++) all_ok = all_ok && round_trip(many[i], 65536 * (i + 1), 100 + i, s);
  for (int i = 0; i < 32; i++) CK(cudaFreeHost(many[i]));
  check("32 live pinned buffers", all_ok);

  CK(cudaStreamDestroy(s));
  return finish();
}
