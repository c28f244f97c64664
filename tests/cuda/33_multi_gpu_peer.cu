// remora-test: kernels=yes  flags=none  gpus=2
// Two devices when present (device 0 twice otherwise; the output is the same either way):
// allocations and kernels on each device, cudaMemcpyPeer/cudaMemcpyPeerAsync between them,
// cudaMemcpy with cudaMemcpyDefault across devices, cudaDeviceCanAccessPeer and (when allowed)
// cudaDeviceEnablePeerAccess with a kernel reading the other device's memory.
#include "remora_test.h"

__global__ void k_fill(int* v, int n, int base) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] = base + i;
}
__global__ void k_copy_add(int* dst, const int* src, int n, int add) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = src[i] + add;
}

int main() {
  int count = 0;
  CK(cudaGetDeviceCount(&count));
  const int d0 = 0, d1 = count >= 2 ? 1 : 0;
  const int n = 1 << 20;
  int *a, *b, *c;
  CK(cudaSetDevice(d0));
  CK(cudaMalloc(&a, n * sizeof(int)));
  k_fill<<<n / 256, 256>>>(a, n, 100);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  CK(cudaSetDevice(d1));
  CK(cudaMalloc(&b, n * sizeof(int)));
  CK(cudaMalloc(&c, n * sizeof(int)));
  cudaPointerAttributes pa;
  CK(cudaPointerGetAttributes(&pa, b));
  check("allocation belongs to the second device", pa.device == d1);

  CK(cudaMemcpyPeer(b, d1, a, d0, n * sizeof(int)));
  int* h = (int*)malloc(n * sizeof(int));
  CK(cudaMemcpy(h, b, n * sizeof(int), cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == 100 + i;
  check("cudaMemcpyPeer", ok);

  cudaStream_t s;
  CK(cudaStreamCreate(&s));  // on d1
  k_fill<<<n / 256, 256, 0, s>>>(b, n, -5);
  CK(cudaMemcpyPeerAsync(a, d0, b, d1, n * sizeof(int), s));
  CK(cudaStreamSynchronize(s));
  CK(cudaSetDevice(d0));
  CK(cudaMemcpy(h, a, n * sizeof(int), cudaMemcpyDeviceToHost));
  ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == -5 + i;
  check("cudaMemcpyPeerAsync back", ok);

  CK(cudaMemcpy(c, a, n * sizeof(int), cudaMemcpyDefault));  // across devices, unified addressing
  CK(cudaMemcpy(h, c, n * sizeof(int), cudaMemcpyDefault));
  ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == -5 + i;
  check("cudaMemcpyDefault between devices", ok);

  int can = 0;
  if (d1 != d0) CK(cudaDeviceCanAccessPeer(&can, d1, d0));
  bool peer_kernel_ok = true;
  if (d1 != d0 && can) {
    CK(cudaSetDevice(d1));
    CK(cudaDeviceEnablePeerAccess(d0, 0));
    k_copy_add<<<n / 256, 256>>>(c, a, n, 1000);  // runs on d1, reads d0's memory
    CK_LAUNCH();
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(h, c, n * sizeof(int), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) peer_kernel_ok = peer_kernel_ok && h[i] == 995 + i;
    CK(cudaDeviceDisablePeerAccess(d0));
  } else {
    CK(cudaSetDevice(d0));
    k_copy_add<<<n / 256, 256>>>(a, a, n, 1000);
    CK_LAUNCH();
    CK(cudaMemcpy(h, a, n * sizeof(int), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) peer_kernel_ok = peer_kernel_ok && h[i] == 995 + i;
  }
  check("kernel reading data that came from the other device", peer_kernel_ok);

  CK(cudaSetDevice(d1));
  CK(cudaStreamDestroy(s));
  CK(cudaFree(b));
  CK(cudaFree(c));
  CK(cudaSetDevice(d0));
  CK(cudaFree(a));
  free(h);
  return finish();
}
