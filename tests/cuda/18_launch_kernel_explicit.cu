// remora-test: kernels=yes  flags=none  gpus=1
// Explicit launches: cudaLaunchKernel(func, grid, block, args, shmem, stream) (C API with a void*
// function, and the C++ template overload), with dynamic shared memory and a non-default stream;
// cudaLaunchCooperativeKernel.
#include "remora_test.h"

struct Params {
  int offset;
  double scale;
};

__global__ void k_axpb(float* out, const float* in, int n, Params p) {
  extern __shared__ float tile[];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = i < n ? in[i] : 0.0f;
  __syncthreads();
  if (i < n) out[i] = (float)(tile[threadIdx.x] * p.scale) + (float)p.offset;
}

__global__ void k_cells(int* out, int W) {
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  out[y * W + x] = x * 100 + y;
}

__global__ void k_coop(unsigned int* counter, int* per_block) {
  if (threadIdx.x == 0) {
    atomicAdd(counter, 1u);
    per_block[blockIdx.x] = 1;
  }
}

int main() {
  CK(cudaSetDevice(0));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const int n = 10000, threads = 128;
  float *din, *dout;
  CK(cudaMalloc(&din, n * sizeof(float)));
  CK(cudaMalloc(&dout, n * sizeof(float)));
  float* h = (float*)malloc(n * sizeof(float));
  for (int i = 0; i < n; i++) h[i] = (float)i;
  CK(cudaMemcpy(din, h, n * sizeof(float), cudaMemcpyHostToDevice));

  Params p = {7, 0.5};
  int nn = n;
  void* args[] = {&dout, &din, &nn, &p};
  dim3 grid((n + threads - 1) / threads), block(threads);
  CK(cudaLaunchKernel((const void*)k_axpb, grid, block, args, threads * sizeof(float), s));
  CK(cudaStreamSynchronize(s));
  CK(cudaMemcpy(h, dout, n * sizeof(float), cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == (float)(i * 0.5) + 7.0f;
  check("cudaLaunchKernel (C API) on a stream with shared memory", ok);

  // The C++ template overload, on the legacy default stream.
  Params p2 = {-3, 2.0};
  void* args2[] = {&dout, &din, &nn, &p2};
  CK(cudaLaunchKernel(k_axpb, grid, block, args2, threads * sizeof(float), 0));
  CK(cudaMemcpy(h, dout, n * sizeof(float), cudaMemcpyDeviceToHost));
  ok = true;
  for (int i = 0; i < n; i++) ok = ok && h[i] == (float)(i * 2.0) - 3.0f;
  check("cudaLaunchKernel (C++ template) on stream 0", ok);

  // 2D configuration through cudaLaunchKernel.
  const int W = 64, H = 48;
  int* dc;
  CK(cudaMalloc(&dc, W * H * sizeof(int)));
  int w = W;
  void* args3[] = {&dc, &w};
  CK(cudaLaunchKernel((const void*)k_cells, dim3(W / 16, H / 16), dim3(16, 16), args3, 0, s));
  int* hc = (int*)malloc(W * H * sizeof(int));
  CK(cudaMemcpyAsync(hc, dc, W * H * sizeof(int), cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  ok = true;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) ok = ok && hc[y * W + x] == x * 100 + y;
  check("cudaLaunchKernel with a 2D grid", ok);

  // A bad configuration through cudaLaunchKernel is returned directly.
  expect_error_recorded("cudaLaunchKernel with 2048 threads per block",
                        cudaLaunchKernel((const void*)k_cells, dim3(1), dim3(2048), args3, 0, s));

  // Cooperative launch: grid no larger than what fits at once.
  int coop = 0, sms = 0, per_sm = 0;
  CK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, 0));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_coop, 64, 0));
  printf("cooperative launch supported: %d\n", coop);
  check("k_coop fits at least one block per SM", per_sm >= 1);
  int blocks = sms;  // one block per SM always fits
  unsigned int* counter;
  int* per_block;
  CK(cudaMalloc(&counter, sizeof(unsigned int)));
  CK(cudaMalloc(&per_block, blocks * sizeof(int)));
  CK(cudaMemset(counter, 0, sizeof(unsigned int)));
  CK(cudaMemset(per_block, 0, blocks * sizeof(int)));
  void* cargs[] = {&counter, &per_block};
  CK(cudaLaunchCooperativeKernel((const void*)k_coop, dim3(blocks), dim3(64), cargs, 0, s));
  CK(cudaStreamSynchronize(s));
  unsigned int hcount = 0;
  CK(cudaMemcpy(&hcount, counter, sizeof hcount, cudaMemcpyDeviceToHost));
  int* hb = (int*)malloc(blocks * sizeof(int));
  CK(cudaMemcpy(hb, per_block, blocks * sizeof(int), cudaMemcpyDeviceToHost));
  int ran = 0;
  for (int i = 0; i < blocks; i++) ran += hb[i];
  check("cooperative kernel ran one block per SM", (int)hcount == blocks && ran == blocks);

  CK(cudaStreamDestroy(s));
  CK(cudaFree(din));
  CK(cudaFree(dout));
  CK(cudaFree(dc));
  CK(cudaFree(counter));
  CK(cudaFree(per_block));
  free(h);
  free(hc);
  free(hb);
  return finish();
}
