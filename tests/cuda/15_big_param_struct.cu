// remora-test: kernels=yes  flags=none  gpus=1
// Kernel parameters larger than the classic 4 KB limit: a 4400-byte struct by value, an 8000-byte
// struct between scalar parameters, and a 16 KB one.
#include "remora_test.h"

struct Big {
  int v[1100];  // 4400 bytes
};
struct Huge {
  double v[1000];  // 8000 bytes
};
struct Giant {
  int v[4096];  // 16384 bytes
};

__global__ void k_big(Big b, long long* out) {
  __shared__ long long part[256];
  long long s = 0;
  for (int i = threadIdx.x; i < 1100; i += blockDim.x) s += (long long)b.v[i] * (i + 1);
  part[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long t = 0;
    for (int i = 0; i < blockDim.x; i++) t += part[i];
    out[0] = t;
    out[1] = b.v[0];
    out[2] = b.v[1099];
  }
}

__global__ void k_huge(int before, Huge h, double after, double* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double s = 0;
    for (int i = 0; i < 1000; i++) s += h.v[i];
    out[0] = before;
    out[1] = s;
    out[2] = after;
    out[3] = h.v[999];
  }
}

__global__ void k_giant(Giant g, int* out) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < 4096) out[i] = g.v[i] * 2;
}

int main() {
  CK(cudaSetDevice(0));
  printf("sizes: %zu %zu %zu\n", sizeof(Big), sizeof(Huge), sizeof(Giant));
  static Big b;
  long long want = 0;
  for (int i = 0; i < 1100; i++) {
    b.v[i] = i * 3 - 500;
    want += (long long)b.v[i] * (i + 1);
  }
  long long* dl;
  CK(cudaMalloc(&dl, 3 * sizeof(long long)));
  k_big<<<1, 256>>>(b, dl);
  CK_LAUNCH();
  long long hl[3];
  CK(cudaMemcpy(hl, dl, sizeof hl, cudaMemcpyDeviceToHost));
  printf("big: weighted sum %lld, first %lld, last %lld\n", hl[0], hl[1], hl[2]);
  check("4400-byte struct arrived", hl[0] == want && hl[1] == -500 && hl[2] == 1099 * 3 - 500);

  static Huge h;
  double hs = 0;
  for (int i = 0; i < 1000; i++) {
    h.v[i] = i * 0.5;
    hs += h.v[i];
  }
  double* dd;
  CK(cudaMalloc(&dd, 4 * sizeof(double)));
  k_huge<<<1, 32>>>(-42, h, 9.5, dd);
  CK_LAUNCH();
  double hd[4];
  CK(cudaMemcpy(hd, dd, sizeof hd, cudaMemcpyDeviceToHost));
  printf("huge: before %.1f, sum %.1f, after %.1f, last %.1f\n", hd[0], hd[1], hd[2], hd[3]);
  check("8000-byte struct between scalars arrived", hd[0] == -42 && hd[1] == hs && hd[2] == 9.5 &&
                                                       hd[3] == 499.5);

  static Giant g;
  for (int i = 0; i < 4096; i++) g.v[i] = i ^ 0x5a5;
  int* di;
  CK(cudaMalloc(&di, 4096 * sizeof(int)));
  k_giant<<<16, 256>>>(g, di);
  CK_LAUNCH();
  static int hi[4096];
  CK(cudaMemcpy(hi, di, sizeof hi, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int i = 0; i < 4096; i++) ok = ok && hi[i] == (i ^ 0x5a5) * 2;
  check("16384-byte struct arrived", ok);

  // The same big kernel launched repeatedly with different contents.
  bool again = true;
  for (int r = 0; r < 20; r++) {
    for (int i = 0; i < 1100; i++) b.v[i] = r * 7 + i;
    long long w = 0;
    for (int i = 0; i < 1100; i++) w += (long long)b.v[i] * (i + 1);
    k_big<<<1, 256>>>(b, dl);
    CK_LAUNCH();
    CK(cudaMemcpy(hl, dl, sizeof(long long), cudaMemcpyDeviceToHost));
    again = again && hl[0] == w;
  }
  check("20 relaunches with new 4400-byte contents", again);
  CK(cudaFree(dl));
  CK(cudaFree(dd));
  CK(cudaFree(di));
  return finish();
}
