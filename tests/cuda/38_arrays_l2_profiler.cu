// remora-test: kernels=no  flags=none  gpus=1
// Less common calls without kernels: cudaProfilerStart/Stop, CUDA arrays filled and read with
// cudaMemcpyToArray (deprecated but still used) and cudaMemcpy2DToArray/FromArray,
// cudaStreamSetAttribute/GetAttribute (L2 access policy window), cudaDeviceSetLimit of the
// persisting L2 size, cudaCtxResetPersistingL2Cache.
#include "remora_test.h"
#if __has_include(<cuda_profiler_api.h>)
#include <cuda_profiler_api.h>
#else  // NVIDIA's pip wheels ship no cuda_profiler_api.h; the functions are in libcudart
extern "C" cudaError_t cudaProfilerStart(void);
extern "C" cudaError_t cudaProfilerStop(void);
#endif

int main() {
  CK(cudaSetDevice(0));
  CK(cudaProfilerStart());
  CK(cudaProfilerStop());
  printf("profiler start/stop: done\n");

  // A 2D float array: whole rows through cudaMemcpyToArray, a rectangle through Memcpy2DToArray.
  const int W = 64, H = 16;
  cudaChannelFormatDesc cd = cudaCreateChannelDesc(32, 0, 0, 0, cudaChannelFormatKindFloat);
  cudaArray_t arr;
  CK(cudaMallocArray(&arr, &cd, W, H));
  float* h = (float*)malloc(W * H * sizeof(float));
  for (int i = 0; i < W * H; i++) h[i] = (float)(i * 3);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  CK(cudaMemcpyToArray(arr, 0, 0, h, W * H * sizeof(float), cudaMemcpyHostToDevice));
#pragma GCC diagnostic pop
  float* back = (float*)malloc(W * H * sizeof(float));
  CK(cudaMemcpy2DFromArray(back, W * sizeof(float), arr, 0, 0, W * sizeof(float), H, cudaMemcpyDeviceToHost));
  check("cudaMemcpyToArray of whole rows", memcmp(back, h, W * H * sizeof(float)) == 0);
  float patch[4][8];
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 8; x++) patch[y][x] = -1.0f - (y * 8 + x);
  // The rectangle starts at column 10 (an offset in bytes), row 5.
  CK(cudaMemcpy2DToArray(arr, 10 * sizeof(float), 5, patch, 8 * sizeof(float), 8 * sizeof(float), 4,
                         cudaMemcpyHostToDevice));
  CK(cudaMemcpy2DFromArray(back, W * sizeof(float), arr, 0, 0, W * sizeof(float), H, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      bool in = y >= 5 && y < 9 && x >= 10 && x < 18;
      float want = in ? patch[y - 5][x - 10] : h[y * W + x];
      ok = ok && back[y * W + x] == want;
    }
  check("cudaMemcpy2DToArray rectangle", ok);
  // Array to device memory and back to the host.
  float* d;
  CK(cudaMalloc(&d, W * H * sizeof(float)));
  CK(cudaMemcpy2DFromArray(d, W * sizeof(float), arr, 0, 0, W * sizeof(float), H, cudaMemcpyDeviceToDevice));
  memset(h, 0, W * H * sizeof(float));
  CK(cudaMemcpy(h, d, W * H * sizeof(float), cudaMemcpyDeviceToHost));
  check("array to device memory", memcmp(back, h, W * H * sizeof(float)) == 0);
  CK(cudaFreeArray(arr));

  // L2 persistence: set-aside size, an access policy window on a stream, reset.
  int max_persist = 0, max_window = 0;
  CK(cudaDeviceGetAttribute(&max_persist, cudaDevAttrMaxPersistingL2CacheSize, 0));
  CK(cudaDeviceGetAttribute(&max_window, cudaDevAttrMaxAccessPolicyWindowSize, 0));
  check("persisting L2 and window sizes > 0", max_persist > 0 && max_window > 0);
  size_t setaside = (size_t)max_persist / 2;
  CK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, setaside));
  size_t got = 0;
  CK(cudaDeviceGetLimit(&got, cudaLimitPersistingL2CacheSize));
  check("persisting L2 limit set", got > 0 && got <= (size_t)max_persist);
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  cudaStreamAttrValue v;
  memset(&v, 0, sizeof v);
  v.accessPolicyWindow.base_ptr = d;
  v.accessPolicyWindow.num_bytes = W * H * sizeof(float);
  v.accessPolicyWindow.hitRatio = 0.5f;
  v.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
  v.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
  CK(cudaStreamSetAttribute(s, cudaStreamAttributeAccessPolicyWindow, &v));
  cudaStreamAttrValue r;
  memset(&r, 0, sizeof r);
  CK(cudaStreamGetAttribute(s, cudaStreamAttributeAccessPolicyWindow, &r));
  // The driver may align or trim the window, so these two are printed rather than checked.
  printf("window base reads back: %s\n", r.accessPolicyWindow.base_ptr == d ? "yes" : "no");
  printf("window size reads back: %s\n", r.accessPolicyWindow.num_bytes == W * H * sizeof(float) ? "yes" : "no");
  check("hit property reads back", r.accessPolicyWindow.hitProp == cudaAccessPropertyPersisting);
  printf("hitRatio read back: %.2f\n", r.accessPolicyWindow.hitRatio);
  CK(cudaMemsetAsync(d, 0, W * H * sizeof(float), s));
  CK(cudaStreamSynchronize(s));
  v.accessPolicyWindow.num_bytes = 0;  // disable the window again
  CK(cudaStreamSetAttribute(s, cudaStreamAttributeAccessPolicyWindow, &v));
  CK(cudaCtxResetPersistingL2Cache());
  CK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, 0));
  CK(cudaStreamDestroy(s));
  CK(cudaFree(d));
  free(h);
  free(back);
  return finish();
}
