// remora-test: kernels=yes  flags=none  gpus=1
// CUDA graphs: stream capture (cudaStreamBeginCapture/EndCapture) of kernels, a memset and a
// copy, cudaGraphInstantiate, cudaGraphLaunch 10 times, cudaGraphGetNodes; a graph built by hand
// (memset, kernel, host and 1D memcpy nodes), cudaGraphExecKernelNodeSetParams, destroy.
#include "remora_test.h"

__global__ void k_axpy(int* y, const int* x, int a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += a * x[i];
}

static int g_host_node_runs = 0;
static void CUDART_CB host_node(void*) { g_host_node_runs++; }

int main() {
  CK(cudaSetDevice(0));
  const int n = 4096;
  int *x, *y, *h;
  CK(cudaMalloc(&x, n * sizeof(int)));
  CK(cudaMalloc(&y, n * sizeof(int)));
  CK(cudaMallocHost(&h, n * sizeof(int)));
  for (int i = 0; i < n; i++) h[i] = i;
  CK(cudaMemcpy(x, h, n * sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaMemset(y, 0, n * sizeof(int)));

  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  cudaStreamCaptureStatus cs;
  CK(cudaStreamIsCapturing(s, &cs));
  check("stream reports capturing", cs == cudaStreamCaptureStatusActive);
  k_axpy<<<n / 256, 256, 0, s>>>(y, x, 2, n);
  k_axpy<<<n / 256, 256, 0, s>>>(y, x, 3, n);
  CK(cudaMemcpyAsync(h, y, n * sizeof(int), cudaMemcpyDeviceToHost, s));
  cudaGraph_t g;
  CK(cudaStreamEndCapture(s, &g));
  size_t nodes = 0;
  CK(cudaGraphGetNodes(g, nullptr, &nodes));
  printf("captured nodes: %zu\n", nodes);
  memset(h, 0xff, n * sizeof(int));
  // Nothing ran during capture.
  int y0 = -1;
  CK(cudaMemcpy(&y0, y + 7, sizeof(int), cudaMemcpyDeviceToHost));
  check("capture did not execute the work", y0 == 0);
  cudaGraphExec_t ge;
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int k = 0; k < 10; k++) CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  bool ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == 50 * i;
  printf("y[100] after 10 graph launches: %d\n", h[100]);
  check("10 launches of the captured graph", ok);
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));

  // A graph built by hand: memset y -> kernel (y += 5x) -> host node -> copy y to x2.
  int* x2;
  CK(cudaMalloc(&x2, n * sizeof(int)));
  cudaGraph_t hg;
  CK(cudaGraphCreate(&hg, 0));
  cudaMemsetParams mp = {};
  mp.dst = y;
  mp.value = 0;
  mp.elementSize = 4;
  mp.width = n;
  mp.height = 1;
  mp.pitch = 0;
  cudaGraphNode_t nset, nker, nhost, ncopy;
  CK(cudaGraphAddMemsetNode(&nset, hg, nullptr, 0, &mp));
  int a = 5, nn = n;
  void* kargs[] = {&y, &x, &a, &nn};
  cudaKernelNodeParams kp = {};
  kp.func = (void*)k_axpy;
  kp.gridDim = dim3(n / 256);
  kp.blockDim = dim3(256);
  kp.sharedMemBytes = 0;
  kp.kernelParams = kargs;
  kp.extra = nullptr;
  CK(cudaGraphAddKernelNode(&nker, hg, &nset, 1, &kp));
  cudaHostNodeParams hp = {};
  hp.fn = host_node;
  hp.userData = nullptr;
  CK(cudaGraphAddHostNode(&nhost, hg, &nker, 1, &hp));
  CK(cudaGraphAddMemcpyNode1D(&ncopy, hg, &nhost, 1, x2, y, n * sizeof(int), cudaMemcpyDeviceToDevice));
  CK(cudaGraphGetNodes(hg, nullptr, &nodes));
  printf("hand-built nodes: %zu\n", nodes);
  cudaGraphExec_t hge;
  CK(cudaGraphInstantiate(&hge, hg, 0));
  CK(cudaGraphLaunch(hge, s));
  CK(cudaStreamSynchronize(s));
  CK(cudaMemcpy(h, x2, n * sizeof(int), cudaMemcpyDeviceToHost));
  ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == 5 * i;
  check("hand-built graph", ok);

  // Change the kernel node's argument in the executable graph and launch again.
  a = 9;
  CK(cudaGraphExecKernelNodeSetParams(hge, nker, &kp));
  CK(cudaGraphLaunch(hge, s));
  CK(cudaStreamSynchronize(s));
  CK(cudaMemcpy(h, x2, n * sizeof(int), cudaMemcpyDeviceToHost));
  ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == 9 * i;
  check("after cudaGraphExecKernelNodeSetParams", ok);
  printf("host node runs: %d\n", g_host_node_runs);
  check("host node ran once per launch", g_host_node_runs == 2);

  CK(cudaGraphExecDestroy(hge));
  CK(cudaGraphDestroy(hg));
  CK(cudaStreamDestroy(s));
  CK(cudaFree(x));
  CK(cudaFree(y));
  CK(cudaFree(x2));
  CK(cudaFreeHost(h));
  return finish();
}
