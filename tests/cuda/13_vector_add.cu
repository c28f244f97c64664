// remora-test: kernels=yes  flags=none  gpus=1
// Classic vector add: one thread per element, then a grid-stride version with a small grid.
#include "remora_test.h"

__global__ void vec_add(const float* a, const float* b, float* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

__global__ void vec_add_stride(const float* a, const float* b, float* c, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    c[i] = 2.0f * a[i] - b[i];
}

int main() {
  CK(cudaSetDevice(0));
  const int n = (1 << 20) + 123;
  const size_t bytes = n * sizeof(float);
  float* a = (float*)malloc(bytes);
  float* b = (float*)malloc(bytes);
  float* c = (float*)malloc(bytes);
  for (int i = 0; i < n; i++) {
    a[i] = 0.5f * i;
    b[i] = 2.0f * (i % 1000);
  }
  float *da, *db, *dc;
  CK(cudaMalloc(&da, bytes));
  CK(cudaMalloc(&db, bytes));
  CK(cudaMalloc(&dc, bytes));
  CK(cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice));
  int threads = 256, blocks = (n + threads - 1) / threads;
  vec_add<<<blocks, threads>>>(da, db, dc, n);
  CK_LAUNCH();
  CK(cudaMemcpy(c, dc, bytes, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int i = 0; i < n; i++)
    if (c[i] != a[i] + b[i]) bad++;
  printf("n: %d, blocks: %d\n", n, blocks);
  check("c = a + b exactly", bad == 0);

  vec_add_stride<<<13, 128>>>(da, db, dc, n);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(c, dc, bytes, cudaMemcpyDeviceToHost));
  bad = 0;
  double sum = 0;
  for (int i = 0; i < n; i++) {
    if (c[i] != 2.0f * a[i] - b[i]) bad++;
    sum += c[i];
  }
  check("grid-stride c = 2a - b exactly", bad == 0);
  printf("sum: %.1f\n", sum);
  CK(cudaFree(da));
  CK(cudaFree(db));
  CK(cudaFree(dc));
  free(a);
  free(b);
  free(c);
  return finish();
}
