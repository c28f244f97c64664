// remora-test: kernels=yes  flags=none  gpus=1
// Matrix multiply with 16x16 shared-memory tiles on sizes that are not multiples of the tile
// (small integer values, so float results are exact and compared bit for bit with the CPU).
#include "remora_test.h"

#define TILE 16

__global__ void k_matmul(const float* A, const float* B, float* C, int M, int N, int K) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  int row = blockIdx.y * TILE + threadIdx.y;
  int col = blockIdx.x * TILE + threadIdx.x;
  float acc = 0.0f;
  for (int t = 0; t < (K + TILE - 1) / TILE; t++) {
    int ak = t * TILE + threadIdx.x, bk = t * TILE + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = (row < M && ak < K) ? A[row * K + ak] : 0.0f;
    Bs[threadIdx.y][threadIdx.x] = (bk < K && col < N) ? B[bk * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < TILE; k++) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

static bool run(int M, int N, int K) {
  float* A = (float*)malloc((size_t)M * K * sizeof(float));
  float* B = (float*)malloc((size_t)K * N * sizeof(float));
  float* C = (float*)malloc((size_t)M * N * sizeof(float));
  for (int i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 9 - 4);
  for (int i = 0; i < K * N; i++) B[i] = (float)((i * 5) % 7 - 3);
  float *dA, *dB, *dC;
  CK(cudaMalloc(&dA, (size_t)M * K * sizeof(float)));
  CK(cudaMalloc(&dB, (size_t)K * N * sizeof(float)));
  CK(cudaMalloc(&dC, (size_t)M * N * sizeof(float)));
  CK(cudaMemcpy(dA, A, (size_t)M * K * sizeof(float), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dB, B, (size_t)K * N * sizeof(float), cudaMemcpyHostToDevice));
  dim3 block(TILE, TILE), grid((N + TILE - 1) / TILE, (M + TILE - 1) / TILE);
  k_matmul<<<grid, block>>>(dA, dB, dC, M, N, K);
  CK_LAUNCH();
  CK(cudaMemcpy(C, dC, (size_t)M * N * sizeof(float), cudaMemcpyDeviceToHost));
  bool ok = true;
  long long checksum = 0;
  for (int i = 0; i < M && ok; i++)
    for (int j = 0; j < N; j++) {
      float ref = 0.0f;
      for (int k = 0; k < K; k++) ref += A[i * K + k] * B[k * N + j];
      if (C[i * N + j] != ref) {
        ok = false;
        break;
      }
      checksum += (long long)C[i * N + j] * ((i + j) % 13 + 1);
    }
  printf("%dx%dx%d: %s, checksum %lld\n", M, N, K, ok ? "ok" : "BAD", checksum);
  CK(cudaFree(dA));
  CK(cudaFree(dB));
  CK(cudaFree(dC));
  free(A);
  free(B);
  free(C);
  return ok;
}

int main() {
  CK(cudaSetDevice(0));
  bool ok = run(257, 257, 257);
  ok = run(64, 48, 1000) && ok;
  ok = run(1, 333, 17) && ok;
  ok = run(500, 3, 129) && ok;
  check("every product matches the CPU exactly", ok);
  return finish();
}
