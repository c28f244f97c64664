// remora-test: kernels=yes  flags=none  gpus=1
// Streams with kernels: cudaStreamQuery/cudaEventQuery report cudaErrorNotReady while a 200 ms
// kernel runs, cudaStreamWaitEvent makes a non-blocking stream wait for it, a blocking stream
// synchronises with the legacy default stream, a priority stream, cudaStreamDestroy with work
// still queued, four streams in parallel.
#include "remora_test.h"

__global__ void k_spin_then_set(unsigned long long ns, int* flag, int value) {
  unsigned long long t0 = remora_globaltimer();
  while (remora_globaltimer() - t0 < ns) {
  }
  if (flag) *flag = value;
}

__global__ void k_fill(int* out, int n, int v) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) out[i] = v;
}

int main() {
  CK(cudaSetDevice(0));
  const unsigned long long ms = 1000000ull;
  int* flag;
  CK(cudaMalloc(&flag, 16 * sizeof(int)));
  CK(cudaMemset(flag, 0, 16 * sizeof(int)));
  int* pin;
  CK(cudaMallocHost(&pin, 16 * sizeof(int)));

  cudaStream_t a, b;
  CK(cudaStreamCreate(&a));
  CK(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
  cudaEvent_t ev;
  CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  k_spin_then_set<<<1, 1, 0, a>>>(200 * ms, flag, 1);
  CK_LAUNCH();
  CK(cudaEventRecord(ev, a));
  expect_code("cudaStreamQuery while a 200 ms kernel runs", cudaStreamQuery(a), cudaErrorNotReady);
  expect_code("cudaEventQuery while it runs", cudaEventQuery(ev), cudaErrorNotReady);
  printf("last error after the queries: %s\n", cudaGetErrorName(cudaGetLastError()));
  CK(cudaStreamWaitEvent(b, ev, 0));
  pin[0] = -1;
  CK(cudaMemcpyAsync(pin, flag, sizeof(int), cudaMemcpyDeviceToHost, b));
  CK(cudaStreamSynchronize(b));
  printf("value seen by the waiting stream: %d\n", pin[0]);
  check("non-blocking stream waited for the event", pin[0] == 1);
  expect_code("cudaStreamQuery after the wait", cudaStreamQuery(a), cudaSuccess);
  expect_code("cudaEventQuery after the wait", cudaEventQuery(ev), cudaSuccess);

  // A blocking stream (cudaStreamCreate) and the legacy default stream synchronise implicitly.
  k_spin_then_set<<<1, 1, 0, a>>>(100 * ms, flag + 1, 2);
  CK_LAUNCH();
  pin[1] = -1;
  CK(cudaMemcpyAsync(pin + 1, flag + 1, sizeof(int), cudaMemcpyDeviceToHost, 0));
  CK(cudaStreamSynchronize(0));
  printf("value seen by the legacy default stream: %d\n", pin[1]);
  check("legacy default stream waited for the blocking stream", pin[1] == 2);

  // A priority stream.
  int least, greatest;
  CK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  cudaStream_t hi;
  CK(cudaStreamCreateWithPriority(&hi, cudaStreamNonBlocking, greatest));
  k_spin_then_set<<<1, 1, 0, hi>>>(1 * ms, flag + 2, 3);
  CK_LAUNCH();
  CK(cudaStreamSynchronize(hi));
  CK(cudaMemcpy(pin + 2, flag + 2, sizeof(int), cudaMemcpyDeviceToHost));
  check("kernel on the high-priority stream", pin[2] == 3);
  CK(cudaStreamDestroy(hi));

  // Destroying a stream with work still queued: the work completes.
  cudaStream_t c;
  CK(cudaStreamCreate(&c));
  k_spin_then_set<<<1, 1, 0, c>>>(50 * ms, flag + 3, 4);
  CK_LAUNCH();
  CK(cudaStreamDestroy(c));
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(pin + 3, flag + 3, sizeof(int), cudaMemcpyDeviceToHost));
  check("work queued on a destroyed stream completed", pin[3] == 4);

  // Four streams, each filling its own buffer, some waiting on others.
  const int n = 1 << 20;
  cudaStream_t st[4];
  int* buf[4];
  cudaEvent_t done[4];
  for (int i = 0; i < 4; i++) {
    CK(cudaStreamCreateWithFlags(&st[i], cudaStreamNonBlocking));
    CK(cudaMalloc(&buf[i], n * sizeof(int)));
    CK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
  }
  for (int i = 0; i < 4; i++) {
    k_spin_then_set<<<1, 1, 0, st[i]>>>((unsigned long long)(4 - i) * 10 * ms, nullptr, 0);
    k_fill<<<64, 256, 0, st[i]>>>(buf[i], n, i + 1);
    CK_LAUNCH();
    CK(cudaEventRecord(done[i], st[i]));
  }
  // Stream 0 copies every other buffer into its own after waiting for all of them.
  for (int i = 1; i < 4; i++) CK(cudaStreamWaitEvent(st[0], done[i], 0));
  int* sum;
  CK(cudaMallocHost(&sum, 4 * sizeof(int)));
  for (int i = 0; i < 4; i++)
    CK(cudaMemcpyAsync(sum + i, buf[i] + n - 1, sizeof(int), cudaMemcpyDeviceToHost, st[0]));
  CK(cudaStreamSynchronize(st[0]));
  printf("last elements: %d %d %d %d\n", sum[0], sum[1], sum[2], sum[3]);
  check("four streams each filled their buffer", sum[0] == 1 && sum[1] == 2 && sum[2] == 3 && sum[3] == 4);
  for (int i = 0; i < 4; i++) {
    CK(cudaStreamSynchronize(st[i]));
    CK(cudaStreamDestroy(st[i]));
    CK(cudaEventDestroy(done[i]));
    CK(cudaFree(buf[i]));
  }
  CK(cudaStreamDestroy(a));
  CK(cudaStreamDestroy(b));
  CK(cudaEventDestroy(ev));
  CK(cudaFree(flag));
  CK(cudaFreeHost(pin));
  CK(cudaFreeHost(sum));
  return finish();
}
