// remora-test: kernels=yes  flags=none  gpus=1
// CUDA arrays and texture objects: cudaCreateChannelDesc, cudaMallocArray, cudaMemcpy2DToArray,
// cudaMemcpy2DFromArray, cudaCreateTextureObject (point filtering, clamp and wrap), tex2D in a
// kernel, linear filtering at texel centres, cudaDestroyTextureObject, cudaFreeArray.
#include "remora_test.h"

__global__ void k_fetch(cudaTextureObject_t t, float* out, int W, int H, float dx, float dy) {
  int x = blockIdx.x * blockDim.x + threadIdx.x;
  int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x < W && y < H) out[y * W + x] = tex2D<float>(t, x + 0.5f + dx, y + 0.5f + dy);
}

int main() {
  CK(cudaSetDevice(0));
  const int W = 100, H = 60;
  float* h = (float*)malloc(W * H * sizeof(float));
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) h[y * W + x] = (float)(y * 1000 + x);
  cudaChannelFormatDesc cd = cudaCreateChannelDesc<float>();
  printf("channel desc: %d %d %d %d kind %d\n", cd.x, cd.y, cd.z, cd.w, (int)cd.f);
  cudaArray_t arr;
  CK(cudaMallocArray(&arr, &cd, W, H));
  CK(cudaMemcpy2DToArray(arr, 0, 0, h, W * sizeof(float), W * sizeof(float), H, cudaMemcpyHostToDevice));
  float* back = (float*)malloc(W * H * sizeof(float));
  CK(cudaMemcpy2DFromArray(back, W * sizeof(float), arr, 0, 0, W * sizeof(float), H, cudaMemcpyDeviceToHost));
  check("array round trip", memcmp(back, h, W * H * sizeof(float)) == 0);

  cudaResourceDesc rd = {};
  rd.resType = cudaResourceTypeArray;
  rd.res.array.array = arr;
  cudaTextureDesc td = {};
  td.addressMode[0] = cudaAddressModeClamp;
  td.addressMode[1] = cudaAddressModeClamp;
  td.filterMode = cudaFilterModePoint;
  td.readMode = cudaReadModeElementType;
  td.normalizedCoords = 0;
  cudaTextureObject_t tex = 0;
  CK(cudaCreateTextureObject(&tex, &rd, &td, nullptr));
  float* dout;
  CK(cudaMalloc(&dout, W * H * sizeof(float)));
  dim3 b(16, 16), g((W + 15) / 16, (H + 15) / 16);
  k_fetch<<<g, b>>>(tex, dout, W, H, 0.f, 0.f);
  CK_LAUNCH();
  CK(cudaMemcpy(back, dout, W * H * sizeof(float), cudaMemcpyDeviceToHost));
  check("point-filtered fetches", memcmp(back, h, W * H * sizeof(float)) == 0);
  // Shifted by 3 texels: clamped at the edge.
  k_fetch<<<g, b>>>(tex, dout, W, H, 3.f, 0.f);
  CK_LAUNCH();
  CK(cudaMemcpy(back, dout, W * H * sizeof(float), cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int sx = x + 3 < W ? x + 3 : W - 1;
      ok = ok && back[y * W + x] == h[y * W + sx];
    }
  check("clamp addressing", ok);
  CK(cudaDestroyTextureObject(tex));

  // Linear filtering halfway between two texels in x.
  td.filterMode = cudaFilterModeLinear;
  CK(cudaCreateTextureObject(&tex, &rd, &td, nullptr));
  k_fetch<<<g, b>>>(tex, dout, W, H, 0.5f, 0.f);
  CK_LAUNCH();
  CK(cudaMemcpy(back, dout, W * H * sizeof(float), cudaMemcpyDeviceToHost));
  ok = true;
  for (int y = 0; y < H; y++)
    for (int x = 0; x + 1 < W; x++) {
      float want = h[y * W + x] + 0.5f;
      float diff = back[y * W + x] - want;
      ok = ok && diff < 0.01f && diff > -0.01f;
    }
  check("linear filtering between texels", ok);
  CK(cudaDestroyTextureObject(tex));
  CK(cudaFreeArray(arr));
  CK(cudaFree(dout));
  free(h);
  free(back);
  return finish();
}
