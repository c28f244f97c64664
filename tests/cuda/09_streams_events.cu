// remora-test: kernels=no  flags=none  gpus=1
// Streams and events without kernels: cudaStreamCreate, WithFlags (non-blocking), WithPriority and
// cudaDeviceGetStreamPriorityRange, cudaStreamGetFlags/GetPriority, cudaStreamQuery,
// cudaStreamSynchronize, cudaStreamWaitEvent across two streams, cudaEventCreate/WithFlags
// (DisableTiming, BlockingSync), record, query, synchronize, elapsed time, destroy.
#include "remora_test.h"

int main() {
  CK(cudaSetDevice(0));
  int least = 99, greatest = 99;
  CK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  printf("stream priority range: least %d, greatest %d\n", least, greatest);
  check("greatest <= least", greatest <= least);

  cudaStream_t s1, s2, s3;
  CK(cudaStreamCreate(&s1));
  CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithPriority(&s3, cudaStreamNonBlocking, greatest));
  unsigned int f = 99;
  CK(cudaStreamGetFlags(s1, &f));
  printf("flags of cudaStreamCreate stream: %u\n", f);
  CK(cudaStreamGetFlags(s2, &f));
  printf("flags of non-blocking stream: %u\n", f);
  int prio = 99;
  CK(cudaStreamGetPriority(s3, &prio));
  check("priority stream has the greatest priority", prio == greatest);
  CK(cudaStreamGetPriority(s1, &prio));
  check("default stream priority is 0", prio == 0);
  expect_code("cudaStreamQuery(idle stream)", cudaStreamQuery(s1), cudaSuccess);
  expect_code("cudaStreamQuery(stream 0)", cudaStreamQuery(0), cudaSuccess);

  cudaEvent_t e0, e1, nt, bs;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreateWithFlags(&e1, cudaEventDefault));
  CK(cudaEventCreateWithFlags(&nt, cudaEventDisableTiming));
  CK(cudaEventCreateWithFlags(&bs, cudaEventBlockingSync));
  expect_code("cudaEventQuery(never recorded)", cudaEventQuery(e0), cudaSuccess);

  const size_t n = 64u << 20;
  unsigned char* pinned = nullptr;
  CK(cudaMallocHost(&pinned, n));
  unsigned char *d = nullptr, *d2 = nullptr;
  CK(cudaMalloc(&d, n));
  CK(cudaMalloc(&d2, n));

  // Timing a 64 MiB copy.
  fill_pattern(pinned, n, 3);
  CK(cudaEventRecord(e0, s1));
  CK(cudaMemcpyAsync(d, pinned, n, cudaMemcpyHostToDevice, s1));
  CK(cudaEventRecord(e1, s1));
  CK(cudaEventRecord(nt, s1));
  CK(cudaEventRecord(bs, s1));
  CK(cudaEventSynchronize(e1));
  CK(cudaEventSynchronize(bs));
  expect_code("cudaEventQuery(e1) after synchronize", cudaEventQuery(e1), cudaSuccess);
  expect_code("cudaEventQuery(DisableTiming) after synchronize", cudaEventQuery(nt), cudaSuccess);
  float ms = -1.0f;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  check("elapsed > 0 for a 64 MiB copy", ms > 0.0f);
  check("elapsed < 10 s", ms < 10000.0f);
  float ms2 = -1.0f;
  expect_error_recorded("cudaEventElapsedTime with a DisableTiming event",
                        cudaEventElapsedTime(&ms2, e0, nt));

  // Cross-stream dependency: s2 (non-blocking) must wait for s1's copy before reading d.
  fill_pattern(pinned, n, 4);
  CK(cudaMemsetAsync(d, 0, n, s1));
  CK(cudaMemcpyAsync(d, pinned, n, cudaMemcpyHostToDevice, s1));
  CK(cudaEventRecord(nt, s1));
  CK(cudaStreamWaitEvent(s2, nt, 0));
  CK(cudaMemcpyAsync(d2, d, n, cudaMemcpyDeviceToDevice, s2));
  unsigned char* out = nullptr;
  CK(cudaMallocHost(&out, n));
  memset(out, 0, n);
  CK(cudaMemcpyAsync(out, d2, n, cudaMemcpyDeviceToHost, s2));
  CK(cudaStreamSynchronize(s2));
  check("s2 saw s1's data after cudaStreamWaitEvent", is_pattern(out, n, 4));
  expect_code("cudaStreamQuery(s2) after synchronize", cudaStreamQuery(s2), cudaSuccess);

  // And the other direction, on the priority stream, with the flag-less wait.
  CK(cudaMemsetAsync(d2, 0x42, n, s2));
  CK(cudaEventRecord(e0, s2));
  CK(cudaStreamWaitEvent(s3, e0));
  memset(out, 0, n);
  CK(cudaMemcpyAsync(out, d2, n, cudaMemcpyDeviceToHost, s3));
  CK(cudaStreamSynchronize(s3));
  check("s3 saw s2's memset after cudaStreamWaitEvent", all_bytes(out, n, 0x42));

  // An event recorded on the legacy default stream.
  CK(cudaMemsetAsync(d, 0x24, n, 0));
  CK(cudaEventRecord(e1, 0));
  CK(cudaEventSynchronize(e1));
  CK(cudaMemcpy(out, d, 4096, cudaMemcpyDeviceToHost));
  check("event on stream 0", all_bytes(out, 4096, 0x24));

  CK(cudaDeviceSynchronize());
  CK(cudaStreamSynchronize(s1));
  CK(cudaStreamDestroy(s1));
  CK(cudaStreamDestroy(s2));
  CK(cudaStreamDestroy(s3));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaEventDestroy(nt));
  CK(cudaEventDestroy(bs));
  CK(cudaFree(d));
  CK(cudaFree(d2));
  CK(cudaFreeHost(pinned));
  CK(cudaFreeHost(out));
  return finish();
}
