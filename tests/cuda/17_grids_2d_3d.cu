// remora-test: kernels=yes  flags=none  gpus=1
// 2D and 3D grids and blocks (every cell written exactly once with its coordinates), a grid wider
// than 65535 blocks in x, the 65535 limit in y, and a grid-stride loop.
#include "remora_test.h"

__global__ void k_2d(int* out, int W, int H) {
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x < W && y < H) atomicAdd(&out[y * W + x], y * 10000 + x + 1);
}

__global__ void k_3d(int* out, int X, int Y, int Z) {
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  int z = blockIdx.z * blockDim.z + threadIdx.z;
  if (x < X && y < Y && z < Z) atomicAdd(&out[(z * Y + y) * X + x], z * 1000000 + y * 1000 + x + 1);
}

__global__ void k_count_blocks(unsigned long long* count) {
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) atomicAdd(count, 1ull + blockIdx.x + blockIdx.y + blockIdx.z);
}

__global__ void k_stride(float* v, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    v[i] = v[i] * 2.0f + 1.0f;
}

int main() {
  CK(cudaSetDevice(0));
  const int W = 333, H = 77;
  int* d;
  CK(cudaMalloc(&d, W * H * sizeof(int)));
  CK(cudaMemset(d, 0, W * H * sizeof(int)));
  dim3 b2(16, 8), g2((W + 15) / 16, (H + 7) / 8);
  k_2d<<<g2, b2>>>(d, W, H);
  CK_LAUNCH();
  int* h = (int*)malloc(W * H * sizeof(int));
  CK(cudaMemcpy(h, d, W * H * sizeof(int), cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) ok = ok && h[y * W + x] == y * 10000 + x + 1;
  check("2D grid (21x10 blocks of 16x8)", ok);
  CK(cudaFree(d));
  free(h);

  const int X = 45, Y = 30, Z = 13;
  CK(cudaMalloc(&d, X * Y * Z * sizeof(int)));
  CK(cudaMemset(d, 0, X * Y * Z * sizeof(int)));
  dim3 b3(8, 4, 2), g3((X + 7) / 8, (Y + 3) / 4, (Z + 1) / 2);
  k_3d<<<g3, b3>>>(d, X, Y, Z);
  CK_LAUNCH();
  h = (int*)malloc(X * Y * Z * sizeof(int));
  CK(cudaMemcpy(h, d, X * Y * Z * sizeof(int), cudaMemcpyDeviceToHost));
  ok = true;
  for (int z = 0; z < Z; z++)
    for (int y = 0; y < Y; y++)
      for (int x = 0; x < X; x++) ok = ok && h[(z * Y + y) * X + x] == z * 1000000 + y * 1000 + x + 1;
  check("3D grid (6x8x7 blocks of 8x4x2)", ok);
  CK(cudaFree(d));
  free(h);

  unsigned long long* dc;
  CK(cudaMalloc(&dc, sizeof(unsigned long long)));
  unsigned long long hc = 0;
  CK(cudaMemset(dc, 0, sizeof hc));
  k_count_blocks<<<100000, 32>>>(dc);
  CK_LAUNCH();
  CK(cudaMemcpy(&hc, dc, sizeof hc, cudaMemcpyDeviceToHost));
  printf("100000 blocks in x: %llu\n", hc);
  check("grid of 100000 blocks in x", hc == 100000ull + 99999ull * 100000ull / 2);
  CK(cudaMemset(dc, 0, sizeof hc));
  k_count_blocks<<<dim3(2, 65535, 1), 32>>>(dc);
  CK_LAUNCH();
  CK(cudaMemcpy(&hc, dc, sizeof hc, cudaMemcpyDeviceToHost));
  unsigned long long want = 0;
  for (unsigned long long y = 0; y < 65535; y++) want += 2 * (1 + y) + 1;
  printf("2x65535 blocks: %llu\n", hc);
  check("grid of 65535 blocks in y", hc == want);
  CK(cudaMemset(dc, 0, sizeof hc));
  k_count_blocks<<<dim3(1, 3, 65535), dim3(1, 1, 64)>>>(dc);
  CK_LAUNCH();
  CK(cudaMemcpy(&hc, dc, sizeof hc, cudaMemcpyDeviceToHost));
  want = 0;
  for (unsigned long long z = 0; z < 65535; z++)
    for (unsigned long long y = 0; y < 3; y++) want += 1 + y + z;
  check("grid of 65535 blocks in z with 64-deep blocks", hc == want);
  CK(cudaFree(dc));

  const int n = 1000003;
  float* v;
  CK(cudaMalloc(&v, n * sizeof(float)));
  float* hv = (float*)malloc(n * sizeof(float));
  for (int i = 0; i < n; i++) hv[i] = (float)(i % 4096);
  CK(cudaMemcpy(v, hv, n * sizeof(float), cudaMemcpyHostToDevice));
  k_stride<<<7, 96>>>(v, n);
  CK_LAUNCH();
  k_stride<<<1, 1>>>(v, 1000);  // one thread over the first 1000 elements
  CK_LAUNCH();
  CK(cudaMemcpy(hv, v, n * sizeof(float), cudaMemcpyDeviceToHost));
  ok = true;
  for (int i = 0; i < n; i++) {
    float want_v = (float)(i % 4096) * 2.0f + 1.0f;
    if (i < 1000) want_v = want_v * 2.0f + 1.0f;
    ok = ok && hv[i] == want_v;
  }
  check("grid-stride loop over 1000003 elements", ok);
  CK(cudaFree(v));
  free(hv);
  return finish();
}
