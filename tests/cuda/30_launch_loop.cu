// remora-test: kernels=yes  flags=none  gpus=1
// 1000 small launches in a loop with one final check; 1000 launches whose scalar argument
// changes each time; 1000 launches alternating between two streams joined by events.
#include "remora_test.h"

__global__ void k_inc(int* v, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] += 1;
}

__global__ void k_add_arg(long long* acc, int k) { *acc += k; }

int main() {
  CK(cudaSetDevice(0));
  const int n = 1024;
  int* d;
  CK(cudaMalloc(&d, n * sizeof(int)));
  CK(cudaMemset(d, 0, n * sizeof(int)));
  for (int k = 0; k < 1000; k++) k_inc<<<n / 128, 128>>>(d, n);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  int h[n];
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == 1000;
  printf("after 1000 launches: %d\n", h[0]);
  check("every element incremented 1000 times", ok);

  long long* acc;
  CK(cudaMalloc(&acc, sizeof(long long)));
  CK(cudaMemset(acc, 0, sizeof(long long)));
  for (int k = 0; k < 1000; k++) k_add_arg<<<1, 1>>>(acc, k);
  CK_LAUNCH();
  long long ha = 0;
  CK(cudaMemcpy(&ha, acc, sizeof ha, cudaMemcpyDeviceToHost));
  printf("sum of launch arguments: %lld\n", ha);
  check("1000 launches with changing arguments", ha == 499500);

  cudaStream_t s[2];
  cudaEvent_t e[2];
  for (int i = 0; i < 2; i++) {
    CK(cudaStreamCreateWithFlags(&s[i], cudaStreamNonBlocking));
    CK(cudaEventCreateWithFlags(&e[i], cudaEventDisableTiming));
  }
  CK(cudaMemset(acc, 0, sizeof(long long)));
  for (int k = 0; k < 1000; k++) {
    int a = k & 1, b = a ^ 1;
    CK(cudaStreamWaitEvent(s[a], e[b], 0));  // serialise the two streams
    k_add_arg<<<1, 1, 0, s[a]>>>(acc, k);
    CK(cudaEventRecord(e[a], s[a]));
  }
  CK_LAUNCH();
  CK(cudaStreamSynchronize(s[0]));
  CK(cudaStreamSynchronize(s[1]));
  CK(cudaMemcpy(&ha, acc, sizeof ha, cudaMemcpyDeviceToHost));
  printf("sum over two event-joined streams: %lld\n", ha);
  check("1000 launches alternating between two streams", ha == 499500);
  for (int i = 0; i < 2; i++) {
    CK(cudaStreamDestroy(s[i]));
    CK(cudaEventDestroy(e[i]));
  }
  CK(cudaFree(d));
  CK(cudaFree(acc));
  return finish();
}
