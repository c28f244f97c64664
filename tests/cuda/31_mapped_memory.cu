// remora-test: kernels=yes  flags=none  gpus=1
// Zero-copy host memory: cudaSetDeviceFlags(cudaDeviceMapHost), cudaHostAlloc(Mapped) +
// cudaHostGetDevicePointer written by a kernel, cudaHostRegister(Mapped) on malloc'd memory read
// by a kernel, and a kernel given a cudaMallocHost pointer directly (unified addressing).
#include "remora_test.h"

__global__ void k_write(int* p, int n, int base) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = base + i;
}

__global__ void k_sum(const int* p, int n, long long* out) {
  __shared__ long long part[256];
  long long s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += p[i];
  part[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long t = 0;
    for (int i = 0; i < blockDim.x; i++) t += part[i];
    *out = t;
  }
}

int main() {
  CK(cudaSetDeviceFlags(cudaDeviceMapHost));
  CK(cudaSetDevice(0));
  const int n = 1 << 16;

  int* h = nullptr;
  CK(cudaHostAlloc(&h, n * sizeof(int), cudaHostAllocMapped));
  memset(h, 0, n * sizeof(int));
  int* dp = nullptr;
  CK(cudaHostGetDevicePointer(&dp, h, 0));
  check("device pointer of mapped memory is not null", dp != nullptr);
  k_write<<<n / 256, 256>>>(dp, n, 5000);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  bool ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == 5000 + i;
  check("kernel wrote mapped host memory", ok);

  int* reg = (int*)aligned_alloc(4096, n * sizeof(int));
  long long want = 0;
  for (int i = 0; i < n; i++) {
    reg[i] = (i % 777) - 300;
    want += reg[i];
  }
  CK(cudaHostRegister(reg, n * sizeof(int), cudaHostRegisterMapped));
  int* dreg = nullptr;
  CK(cudaHostGetDevicePointer(&dreg, reg, 0));
  long long* out;
  CK(cudaMalloc(&out, sizeof(long long)));
  k_sum<<<1, 256>>>(dreg, n, out);
  CK_LAUNCH();
  long long got = 0;
  CK(cudaMemcpy(&got, out, sizeof got, cudaMemcpyDeviceToHost));
  printf("sum of registered memory: %lld\n", got);
  check("kernel read registered host memory", got == want);
  // The host changes the data; the next kernel sees the change without any copy.
  for (int i = 0; i < n; i++) reg[i] = 1;
  k_sum<<<1, 256>>>(dreg, n, out);
  CK_LAUNCH();
  CK(cudaMemcpy(&got, out, sizeof got, cudaMemcpyDeviceToHost));
  check("kernel saw the host's later writes", got == n);
  CK(cudaHostUnregister(reg));
  free(reg);

  // cudaMallocHost memory passed straight to a kernel (the same address works on the device).
  int* pinned = nullptr;
  CK(cudaMallocHost(&pinned, n * sizeof(int)));
  k_write<<<n / 256, 256>>>(pinned, n, -7);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  ok = true;
  for (int i = 0; i < n; i++) ok = ok && pinned[i] == -7 + i;
  check("kernel wrote cudaMallocHost memory through the host pointer", ok);

  CK(cudaFree(out));
  CK(cudaFreeHost(h));
  CK(cudaFreeHost(pinned));
  return finish();
}
