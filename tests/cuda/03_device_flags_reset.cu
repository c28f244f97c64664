// remora-test: kernels=no  flags=none  gpus=1
// cudaSetDeviceFlags before first use, cudaGetDeviceFlags, device limits (stack, printf FIFO,
// malloc heap), cudaDeviceSynchronize, cudaDeviceReset and using the device again afterwards.
#include "remora_test.h"

int main() {
  // Flags must be set before the primary context becomes active.
  CK(cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync));
  CK(cudaSetDevice(0));
  unsigned int flags = 0xffffffffu;
  CK(cudaGetDeviceFlags(&flags));
  printf("device flags: 0x%x\n", flags);
  check("schedule bits are BlockingSync",
        (flags & cudaDeviceScheduleMask) == cudaDeviceScheduleBlockingSync);

  // First real use: an allocation and a copy.
  int* d = nullptr;
  CK(cudaMalloc(&d, 1024 * sizeof(int)));
  int h[1024];
  for (int i = 0; i < 1024; i++) h[i] = i * 3 + 1;
  CK(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice));
  int back[1024] = {0};
  CK(cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost));
  check("round trip before reset", memcmp(h, back, sizeof h) == 0);
  CK(cudaGetDeviceFlags(&flags));
  check("schedule bits still BlockingSync after first use",
        (flags & cudaDeviceScheduleMask) == cudaDeviceScheduleBlockingSync);

  // Limits.
  size_t v = 0;
  CK(cudaDeviceGetLimit(&v, cudaLimitStackSize));
  check("stack size limit > 0", v > 0);
  CK(cudaDeviceSetLimit(cudaLimitStackSize, 8192));
  CK(cudaDeviceGetLimit(&v, cudaLimitStackSize));
  check("stack size limit >= 8192 after set", v >= 8192);
  CK(cudaDeviceSetLimit(cudaLimitPrintfFifoSize, 4u << 20));
  CK(cudaDeviceGetLimit(&v, cudaLimitPrintfFifoSize));
  check("printf FIFO limit >= 4 MiB after set", v >= (4u << 20));
  CK(cudaDeviceSetLimit(cudaLimitMallocHeapSize, 32u << 20));
  CK(cudaDeviceGetLimit(&v, cudaLimitMallocHeapSize));
  check("malloc heap limit >= 32 MiB after set", v >= (32u << 20));
  expect_error_recorded("cudaDeviceGetLimit(bad limit)", cudaDeviceGetLimit(&v, (cudaLimit)999));

  CK(cudaDeviceSynchronize());
  CK(cudaDeviceReset());
  printf("cudaDeviceReset: done\n");

  // The device works again after a reset (old allocations are gone; do not touch them).
  int cur = -1;
  CK(cudaGetDevice(&cur));
  printf("current device after reset: %d\n", cur);
  int* d2 = nullptr;
  CK(cudaMalloc(&d2, 1024 * sizeof(int)));
  CK(cudaMemset(d2, 0, 1024 * sizeof(int)));
  CK(cudaMemcpy(d2, h, sizeof h, cudaMemcpyHostToDevice));
  memset(back, 0, sizeof back);
  CK(cudaMemcpy(back, d2, sizeof back, cudaMemcpyDeviceToHost));
  check("round trip after reset", memcmp(h, back, sizeof h) == 0);
  CK(cudaFree(d2));
  CK(cudaDeviceSynchronize());
  // A second reset in a row is fine too.
  CK(cudaDeviceReset());
  CK(cudaDeviceReset());
  printf("double reset: done\n");
  CK(cudaMalloc(&d2, 16));
  CK(cudaFree(d2));
  return finish();
}
