// remora-test: kernels=yes  flags=none  gpus=1
// Cross-stream stream capture: fork a second stream into a capture by waiting on an event
// recorded in it, join it back the same way, replay the graph; a capture left with an unjoined
// branch fails; an event recorded in a capture cannot be queried while the capture runs.
#include "remora_test.h"

__global__ void k_fill(int* p, int n, int v) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

__global__ void k_scale(int* p, int n, int f) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] *= f;
}

__global__ void k_add(int* p, const int* q, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] += q[i];
}

static bool all_equal(const int* d, int n, int want) {
  int* h = (int*)malloc(n * sizeof(int));
  CK(cudaMemcpy(h, d, n * sizeof(int), cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == want;
  free(h);
  return ok;
}

int main() {
  CK(cudaSetDevice(0));
  const int n = 1 << 16;
  int *a, *b;
  CK(cudaMalloc(&a, n * sizeof(int)));
  CK(cudaMalloc(&b, n * sizeof(int)));
  cudaStream_t s1, s2;
  CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  cudaEvent_t fork, join;
  CK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  CK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
  cudaStreamCaptureStatus st;

  cudaGraph_t g;
  CK(cudaStreamBeginCapture(s1, cudaStreamCaptureModeGlobal));
  k_fill<<<n / 256, 256, 0, s1>>>(a, n, 1);
  CK(cudaEventRecord(fork, s1));
  CK(cudaStreamWaitEvent(s2, fork, 0));
  CK(cudaStreamIsCapturing(s2, &st));
  printf("forked stream capturing: %s\n", st == cudaStreamCaptureStatusActive ? "yes" : "no");
  k_fill<<<n / 256, 256, 0, s2>>>(b, n, 10);
  k_scale<<<n / 256, 256, 0, s1>>>(a, n, 3);
  CK(cudaEventRecord(join, s2));
  CK(cudaStreamWaitEvent(s1, join, 0));
  k_add<<<n / 256, 256, 0, s1>>>(a, b, n);
  CK(cudaStreamEndCapture(s1, &g));
  CK(cudaStreamIsCapturing(s2, &st));
  printf("forked stream capturing after the end: %s\n", st == cudaStreamCaptureStatusActive ? "yes" : "no");
  size_t nodes = 0;
  CK(cudaGraphGetNodes(g, nullptr, &nodes));
  printf("nodes: %zu\n", nodes);
  cudaGraphExec_t ge;
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int r = 0; r < 3; r++) CK(cudaGraphLaunch(ge, s1));
  CK(cudaStreamSynchronize(s1));
  check("graph with a forked branch computed a = 1*3 + 10", all_equal(a, n, 13));
  check("forked branch wrote b", all_equal(b, n, 10));
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));

  // A branch that never joins back.
  CK(cudaStreamBeginCapture(s1, cudaStreamCaptureModeGlobal));
  k_fill<<<n / 256, 256, 0, s1>>>(a, n, 2);
  CK(cudaEventRecord(fork, s1));
  CK(cudaStreamWaitEvent(s2, fork, 0));
  k_fill<<<n / 256, 256, 0, s2>>>(b, n, 3);
  cudaGraph_t bad = nullptr;
  cudaError_t e = cudaStreamEndCapture(s1, &bad);
  printf("end with an unjoined branch: %s, graph %s\n", cudaGetErrorName(e), bad ? "set" : "null");
  (void)cudaGetLastError();
  CK(cudaStreamIsCapturing(s1, &st));
  printf("origin capturing after the failed end: %s\n", st == cudaStreamCaptureStatusActive ? "yes" : "no");
  check("nothing of the failed capture ran", all_equal(a, n, 13) && all_equal(b, n, 10));

  // Querying an event recorded in a capture in progress fails and spoils the capture.
  CK(cudaStreamBeginCapture(s1, cudaStreamCaptureModeGlobal));
  k_fill<<<n / 256, 256, 0, s1>>>(a, n, 5);
  CK(cudaEventRecord(fork, s1));
  printf("query of an event recorded in a capture: %s\n", cudaGetErrorName(cudaEventQuery(fork)));
  (void)cudaGetLastError();
  bad = nullptr;
  e = cudaStreamEndCapture(s1, &bad);
  printf("end after the query: %s, graph %s\n", cudaGetErrorName(e), bad ? "set" : "null");
  (void)cudaGetLastError();

  CK(cudaEventDestroy(fork));
  CK(cudaEventDestroy(join));
  CK(cudaStreamDestroy(s1));
  CK(cudaStreamDestroy(s2));
  CK(cudaFree(a));
  CK(cudaFree(b));
  return finish();
}
