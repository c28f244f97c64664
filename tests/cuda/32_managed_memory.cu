// remora-test: kernels=yes  flags=none  gpus=1
// Managed memory (small): cudaMallocManaged, host writes, kernel updates, host reads after
// cudaDeviceSynchronize; cudaPointerGetAttributes reports Managed; cudaStreamAttachMemAsync;
// cudaMemPrefetchAsync to the device and back; a __managed__ variable.
#include "remora_test.h"

__managed__ int m_counter = 5;

__global__ void k_scale(int* v, int n, int f) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] *= f;
  if (i == 0) m_counter += 10;
}

int main() {
  CK(cudaSetDevice(0));
  const int n = 1 << 18;  // 1 MiB
  int* m = nullptr;
  CK(cudaMallocManaged(&m, n * sizeof(int)));
  for (int i = 0; i < n; i++) m[i] = i;
  cudaPointerAttributes a;
  CK(cudaPointerGetAttributes(&a, m));
  printf("managed memory type is Managed: %s\n", a.type == cudaMemoryTypeManaged ? "yes" : "no");
  k_scale<<<n / 256, 256>>>(m, n, 3);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  bool ok = true;
  for (int i = 0; i < n; i++) ok = ok && m[i] == 3 * i;
  check("kernel updated managed memory, host sees it", ok);
  printf("m_counter: %d\n", m_counter);
  check("__managed__ variable updated by the kernel", m_counter == 15);

  int concurrent = 0;
  CK(cudaDeviceGetAttribute(&concurrent, cudaDevAttrConcurrentManagedAccess, 0));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  CK(cudaStreamAttachMemAsync(s, m, 0, cudaMemAttachGlobal));
  if (concurrent) {
    cudaMemLocation dev = {};
    dev.type = cudaMemLocationTypeDevice;
    dev.id = 0;
    CK(cudaMemPrefetchAsync(m, n * sizeof(int), dev, 0, s));
  }
  k_scale<<<n / 256, 256, 0, s>>>(m, n, -1);
  CK_LAUNCH();
  if (concurrent) {
    cudaMemLocation host = {};
    host.type = cudaMemLocationTypeHost;
    host.id = 0;
    CK(cudaMemPrefetchAsync(m, n * sizeof(int), host, 0, s));
  }
  CK(cudaStreamSynchronize(s));
  ok = true;
  for (int i = 0; i < n; i++) ok = ok && m[i] == -3 * i;
  check("second kernel on a stream (with prefetches where supported)", ok);
  // cudaMemcpy works on managed memory too.
  int* d;
  CK(cudaMalloc(&d, n * sizeof(int)));
  CK(cudaMemcpy(d, m, n * sizeof(int), cudaMemcpyDefault));
  CK(cudaMemset(m, 0, n * sizeof(int)));
  CK(cudaMemcpy(m, d, n * sizeof(int), cudaMemcpyDefault));
  CK(cudaDeviceSynchronize());
  check("cudaMemcpy to and from managed memory", m[n - 1] == -3 * (n - 1) && m[1] == -3);
  CK(cudaStreamDestroy(s));
  CK(cudaFree(d));
  CK(cudaFree(m));
  return finish();
}
