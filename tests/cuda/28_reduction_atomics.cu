// remora-test: kernels=yes  flags=none  gpus=1
// Reductions: warp-shuffle + shared-memory block reduction finished with atomicAdd on a 64-bit
// counter; atomicMin/atomicMax/atomicCAS/atomicExch/atomicOr; a two-pass reduction without atomics.
#include "remora_test.h"

__global__ void k_sum(const int* v, int n, unsigned long long* total) {
  __shared__ long long warp_sums[32];
  long long s = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) s += v[i];
  for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = s;
  __syncthreads();
  if (warp == 0) {
    s = lane < (blockDim.x + 31) / 32 ? warp_sums[lane] : 0;
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) atomicAdd(total, (unsigned long long)s);
  }
}

__global__ void k_minmax(const int* v, int n, int* mn, int* mx, unsigned int* bits, int* cas_winner) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    atomicMin(mn, v[i]);
    atomicMax(mx, v[i]);
    atomicOr(bits, 1u << (v[i] & 31));
  }
  if (threadIdx.x == 0) atomicCAS(cas_winner, -1, 1);  // only the first block to get here wins
}

__global__ void k_partial(const int* v, int n, long long* partial) {
  extern __shared__ long long sh[];
  long long s = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) s += v[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) sh[threadIdx.x] += sh[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

__global__ void k_count(int* counter, int* slots) {
  int old = atomicAdd(counter, 1);
  slots[old] = 1;  // every ticket handed out exactly once
}

int main() {
  CK(cudaSetDevice(0));
  const int n = 10000000;
  int* h = (int*)malloc(n * sizeof(int));
  long long want = 0;
  int wmin = 1 << 30, wmax = -(1 << 30);
  unsigned int wbits = 0;
  for (int i = 0; i < n; i++) {
    h[i] = (int)((i * 2654435761u) % 2001) - 1000;
    want += h[i];
    wmin = h[i] < wmin ? h[i] : wmin;
    wmax = h[i] > wmax ? h[i] : wmax;
    wbits |= 1u << (h[i] & 31);
  }
  int* d;
  CK(cudaMalloc(&d, n * sizeof(int)));
  CK(cudaMemcpy(d, h, n * sizeof(int), cudaMemcpyHostToDevice));

  unsigned long long* total;
  CK(cudaMalloc(&total, sizeof(unsigned long long)));
  CK(cudaMemset(total, 0, sizeof(unsigned long long)));
  k_sum<<<256, 512>>>(d, n, total);
  CK_LAUNCH();
  unsigned long long got = 0;
  CK(cudaMemcpy(&got, total, sizeof got, cudaMemcpyDeviceToHost));
  printf("sum: %lld (expected %lld)\n", (long long)got, want);
  check("shuffle + atomicAdd reduction", (long long)got == want);

  int *mn, *mx, *cas;
  unsigned int* bits;
  CK(cudaMalloc(&mn, sizeof(int)));
  CK(cudaMalloc(&mx, sizeof(int)));
  CK(cudaMalloc(&cas, sizeof(int)));
  CK(cudaMalloc(&bits, sizeof(unsigned int)));
  int init_min = 1 << 30, init_max = -(1 << 30), init_cas = -1;
  CK(cudaMemcpy(mn, &init_min, sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(mx, &init_max, sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(cas, &init_cas, sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaMemset(bits, 0, sizeof(unsigned int)));
  k_minmax<<<128, 256>>>(d, n, mn, mx, bits, cas);
  CK_LAUNCH();
  int hmn, hmx, hcas;
  unsigned int hbits;
  CK(cudaMemcpy(&hmn, mn, sizeof(int), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(&hmx, mx, sizeof(int), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(&hcas, cas, sizeof(int), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(&hbits, bits, sizeof(unsigned int), cudaMemcpyDeviceToHost));
  printf("min %d, max %d, bits 0x%08x, cas %d\n", hmn, hmx, hbits, hcas);
  check("atomicMin/atomicMax/atomicOr/atomicCAS", hmn == wmin && hmx == wmax && hbits == wbits && hcas == 1);

  const int blocks = 200, threads = 256;
  long long* partial;
  CK(cudaMalloc(&partial, blocks * sizeof(long long)));
  k_partial<<<blocks, threads, threads * sizeof(long long)>>>(d, n, partial);
  CK_LAUNCH();
  long long hp[blocks];
  CK(cudaMemcpy(hp, partial, sizeof hp, cudaMemcpyDeviceToHost));
  long long s2 = 0;
  for (int i = 0; i < blocks; i++) s2 += hp[i];
  check("two-pass tree reduction", s2 == want);

  const int tickets = 1 << 20;
  int *counter, *slots;
  CK(cudaMalloc(&counter, sizeof(int)));
  CK(cudaMalloc(&slots, tickets * sizeof(int)));
  CK(cudaMemset(counter, 0, sizeof(int)));
  CK(cudaMemset(slots, 0, tickets * sizeof(int)));
  k_count<<<tickets / 256, 256>>>(counter, slots);
  CK_LAUNCH();
  int hc = 0;
  CK(cudaMemcpy(&hc, counter, sizeof(int), cudaMemcpyDeviceToHost));
  int* hs = (int*)malloc(tickets * sizeof(int));
  CK(cudaMemcpy(hs, slots, tickets * sizeof(int), cudaMemcpyDeviceToHost));
  long long filled = 0;
  for (int i = 0; i < tickets; i++) filled += hs[i];
  printf("tickets: %d, slots filled: %lld\n", hc, filled);
  check("atomicAdd hands out every ticket once", hc == tickets && filled == tickets);

  CK(cudaFree(d));
  CK(cudaFree(total));
  CK(cudaFree(mn));
  CK(cudaFree(mx));
  CK(cudaFree(cas));
  CK(cudaFree(bits));
  CK(cudaFree(partial));
  CK(cudaFree(counter));
  CK(cudaFree(slots));
  free(h);
  free(hs);
  return finish();
}
