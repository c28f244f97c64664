// remora-test: kernels=yes  flags=none  gpus=1
// Events around kernels: elapsed time of a 20 ms kernel, cudaEventQuery NotReady then Success,
// cudaEventSynchronize, BlockingSync and DisableTiming events, re-recording an event, events on
// the legacy default stream, many events in a row.
#include "remora_test.h"

__global__ void k_spin(unsigned long long ns) {
  unsigned long long t0 = remora_globaltimer();
  while (remora_globaltimer() - t0 < ns) {
  }
}

int main() {
  CK(cudaSetDevice(0));
  const unsigned long long ms = 1000000ull;
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  cudaEvent_t start, stop, bsync, notime;
  CK(cudaEventCreate(&start));
  CK(cudaEventCreate(&stop));
  CK(cudaEventCreateWithFlags(&bsync, cudaEventBlockingSync));
  CK(cudaEventCreateWithFlags(&notime, cudaEventDisableTiming | cudaEventBlockingSync));

  CK(cudaEventRecord(start, s));
  k_spin<<<1, 32, 0, s>>>(20 * ms);
  CK_LAUNCH();
  CK(cudaEventRecord(stop, s));
  CK(cudaEventRecord(bsync, s));
  CK(cudaEventRecord(notime, s));
  expect_code("cudaEventQuery(stop) while the kernel runs", cudaEventQuery(stop), cudaErrorNotReady);
  CK(cudaEventSynchronize(bsync));
  expect_code("cudaEventQuery(stop) after the BlockingSync event", cudaEventQuery(stop), cudaSuccess);
  CK(cudaEventSynchronize(notime));
  float t = 0;
  CK(cudaEventElapsedTime(&t, start, stop));
  check("elapsed > 0", t > 0.0f);
  check("elapsed >= 19 ms for a 20 ms kernel", t >= 19.0f);
  check("elapsed < 5 s", t < 5000.0f);
  float back = 0;
  cudaError_t re = cudaEventElapsedTime(&back, stop, start);
  printf("elapsed(stop, start): %s, %s\n", cudaGetErrorName(re), back < 0.0f ? "negative" : "not negative");
  cudaGetLastError();
  float same = -1;
  CK(cudaEventElapsedTime(&same, start, start));
  check("an event against itself gives 0", same == 0.0f);
  expect_error_recorded("elapsed with a DisableTiming event", cudaEventElapsedTime(&t, start, notime));

  // Re-recording moves the event.
  CK(cudaEventRecord(start, s));
  k_spin<<<1, 32, 0, s>>>(5 * ms);
  CK(cudaEventRecord(stop, s));
  CK(cudaEventSynchronize(stop));
  CK(cudaEventElapsedTime(&t, start, stop));
  check("re-recorded events time a 5 ms kernel (>= 4.5 ms)", t >= 4.5f);
  check("and not the earlier 20 ms one (< 19 ms)", t < 19.0f);

  // Events on the legacy default stream.
  CK(cudaEventRecord(start));
  k_spin<<<2, 64>>>(2 * ms);
  CK(cudaEventRecord(stop, 0));
  CK(cudaEventSynchronize(stop));
  CK(cudaEventElapsedTime(&t, start, stop));
  check("default-stream events time a 2 ms kernel (>= 1.5 ms)", t >= 1.5f);

  // Many events recorded in a row; elapsed times are non-decreasing along the chain.
  cudaEvent_t chain[16];
  for (int i = 0; i < 16; i++) CK(cudaEventCreate(&chain[i]));
  for (int i = 0; i < 16; i++) {
    CK(cudaEventRecord(chain[i], s));
    k_spin<<<1, 1, 0, s>>>(ms / 2);
  }
  CK(cudaStreamSynchronize(s));
  bool mono = true;
  for (int i = 1; i < 16; i++) {
    float dt = 0;
    CK(cudaEventElapsedTime(&dt, chain[i - 1], chain[i]));
    if (dt < 0.4f) mono = false;
  }
  check("16 chained events, each step >= 0.4 ms", mono);
  for (int i = 0; i < 16; i++) CK(cudaEventDestroy(chain[i]));

  CK(cudaEventDestroy(start));
  CK(cudaEventDestroy(stop));
  CK(cudaEventDestroy(bsync));
  CK(cudaEventDestroy(notime));
  CK(cudaStreamDestroy(s));
  return finish();
}
