// remora-test: kernels=no  flags=none  gpus=1
// Driver/runtime versions, cudaMemGetInfo before/after allocations, cudaDeviceSynchronize.
#include "remora_test.h"

int main() {
  int drv = 0, rt = 0;
  CK(cudaDriverGetVersion(&drv));
  CK(cudaRuntimeGetVersion(&rt));
  check("driver version >= 13000", drv >= 13000);
  printf("runtime version: %d\n", rt);
  check("driver version >= runtime version", drv >= rt);

  CK(cudaSetDevice(0));
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  size_t free0 = 0, total0 = 0;
  CK(cudaMemGetInfo(&free0, &total0));
  check("total > 0", total0 > 0);
  check("free <= total", free0 <= total0);
  check("free > 4 GiB", free0 > (4ull << 30));
  check("total == totalGlobalMem", total0 == p.totalGlobalMem);

  // The GPU may be shared (through remora: other sessions' worker processes start and end while
  // this runs, each with a context of a few hundred MiB), so the drop and the rise are checked
  // against half of a 4 GiB allocation: what this program did, not the exact byte count.
  const size_t big = 4ull << 30;
  void* d = nullptr;
  CK(cudaMalloc(&d, big));
  size_t free1 = 0, total1 = 0;
  CK(cudaMemGetInfo(&free1, &total1));
  check("total unchanged by cudaMalloc", total1 == total0);
  check("free dropped by >= 2 GiB", free1 + big / 2 <= free0);
  CK(cudaDeviceSynchronize());
  CK(cudaFree(d));
  size_t free2 = 0, total2 = 0;
  CK(cudaMemGetInfo(&free2, &total2));
  check("free rose again after cudaFree", free2 >= free1 + big / 2);

  // Many small allocations.
  void* ptrs[64];
  for (int i = 0; i < 64; i++) CK(cudaMalloc(&ptrs[i], 4096 + 256 * i));
  bool distinct = true;
  for (int i = 0; i < 64; i++)
    for (int j = i + 1; j < 64; j++)
      if (ptrs[i] == ptrs[j]) distinct = false;
  check("64 allocations are distinct", distinct);
  bool aligned = true;
  for (int i = 0; i < 64; i++)
    if ((uintptr_t)ptrs[i] % 256 != 0) aligned = false;
  check("allocations are 256-byte aligned", aligned);
  for (int i = 0; i < 64; i++) CK(cudaFree(ptrs[i]));
  CK(cudaDeviceSynchronize());
  return finish();
}
