// remora-test: kernels=yes  flags=none  gpus=1
// 256-bin histogram of 16 MiB of pseudo-random bytes: per-block shared-memory histograms merged
// with global atomics; a second pass with global atomics only; both compared with the CPU.
#include "remora_test.h"

__global__ void k_hist_shared(const unsigned char* data, size_t n, unsigned int* bins) {
  __shared__ unsigned int local[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0;
  __syncthreads();
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)blockDim.x * gridDim.x)
    atomicAdd(&local[data[i]], 1u);
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    if (local[i]) atomicAdd(&bins[i], local[i]);
}

__global__ void k_hist_global(const unsigned char* data, size_t n, unsigned int* bins) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)blockDim.x * gridDim.x)
    atomicAdd(&bins[data[i]], 1u);
}

int main() {
  CK(cudaSetDevice(0));
  const size_t n = 16u << 20;
  unsigned char* h = (unsigned char*)malloc(n);
  unsigned int x = 12345;
  unsigned int ref[256] = {0};
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    unsigned char b = (unsigned char)((x >> 24) ^ (x >> 11));
    if (i % 7 == 0) b = (unsigned char)(b & 0x0f);  // skew the distribution a little
    h[i] = b;
    ref[b]++;
  }
  unsigned char* d;
  unsigned int* bins;
  CK(cudaMalloc(&d, n));
  CK(cudaMalloc(&bins, 256 * sizeof(unsigned int)));
  CK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
  CK(cudaMemset(bins, 0, 256 * sizeof(unsigned int)));
  k_hist_shared<<<240, 512>>>(d, n, bins);
  CK_LAUNCH();
  unsigned int got[256];
  CK(cudaMemcpy(got, bins, sizeof got, cudaMemcpyDeviceToHost));
  unsigned long long total = 0, weighted = 0;
  for (int i = 0; i < 256; i++) {
    total += got[i];
    weighted += (unsigned long long)got[i] * (i + 1);
  }
  printf("bins total %llu, weighted %llu, bin[0] %u, bin[255] %u\n", total, weighted, got[0], got[255]);
  check("shared-memory histogram matches the CPU", memcmp(got, ref, sizeof ref) == 0);

  CK(cudaMemset(bins, 0, 256 * sizeof(unsigned int)));
  k_hist_global<<<1024, 256>>>(d, n, bins);
  CK_LAUNCH();
  CK(cudaMemcpy(got, bins, sizeof got, cudaMemcpyDeviceToHost));
  check("global-atomics histogram matches the CPU", memcmp(got, ref, sizeof ref) == 0);
  CK(cudaFree(d));
  CK(cudaFree(bins));
  free(h);
  return finish();
}
