// remora-test: kernels=yes  flags=none  gpus=1
// 3D and layered CUDA arrays: cudaMalloc3DArray, cudaMemcpy3D host ↔ array (whole and a
// sub-box at an offset), array → pitched device memory, tex3D and tex2DLayered reads in kernels.
#include "remora_test.h"

__global__ void k_read3d(cudaTextureObject_t t, float* out, int w, int h, int d) {
  int x = threadIdx.x, y = blockIdx.x, z = blockIdx.y;
  if (x < w && y < h && z < d) out[(z * h + y) * w + x] = tex3D<float>(t, x + 0.5f, y + 0.5f, z + 0.5f);
}

__global__ void k_read_layers(cudaTextureObject_t t, float* out, int w, int h, int layers) {
  int x = threadIdx.x, y = blockIdx.x, l = blockIdx.y;
  if (x < w && y < h && l < layers) out[(l * h + y) * w + x] = tex2DLayered<float>(t, x + 0.5f, y + 0.5f, l);
}

static cudaTextureObject_t texture_of(cudaArray_t a) {
  cudaResourceDesc r = {};
  r.resType = cudaResourceTypeArray;
  r.res.array.array = a;
  cudaTextureDesc t = {};
  t.filterMode = cudaFilterModePoint;
  t.readMode = cudaReadModeElementType;
  t.normalizedCoords = 0;
  cudaTextureObject_t tex = 0;
  CK(cudaCreateTextureObject(&tex, &r, &t, nullptr));
  return tex;
}

int main() {
  CK(cudaSetDevice(0));
  const int w = 16, h = 8, d = 4, n = w * h * d;
  float* host = (float*)malloc(n * sizeof(float));
  for (int i = 0; i < n; i++) host[i] = i * 0.25f;
  cudaChannelFormatDesc f = cudaCreateChannelDesc<float>();

  cudaArray_t vol;
  CK(cudaMalloc3DArray(&vol, &f, make_cudaExtent(w, h, d)));
  cudaMemcpy3DParms p = {};
  p.srcPtr = make_cudaPitchedPtr(host, w * sizeof(float), w, h);
  p.dstArray = vol;
  p.extent = make_cudaExtent(w, h, d);
  p.kind = cudaMemcpyHostToDevice;
  CK(cudaMemcpy3D(&p));

  float* back = (float*)calloc(n, sizeof(float));
  cudaMemcpy3DParms q = {};
  q.srcArray = vol;
  q.dstPtr = make_cudaPitchedPtr(back, w * sizeof(float), w, h);
  q.extent = make_cudaExtent(w, h, d);
  q.kind = cudaMemcpyDeviceToHost;
  CK(cudaMemcpy3D(&q));
  check("3D array round trip", memcmp(back, host, n * sizeof(float)) == 0);

  // A 4×2×2 box of -1 at (x 3, y 5, z 1) of the array, from the start of a host buffer.
  float box[16];
  for (int i = 0; i < 16; i++) box[i] = -1.0f;
  cudaMemcpy3DParms b = {};
  b.srcPtr = make_cudaPitchedPtr(box, 4 * sizeof(float), 4, 2);
  b.dstArray = vol;
  b.dstPos = make_cudaPos(3, 5, 1);
  b.extent = make_cudaExtent(4, 2, 2);
  b.kind = cudaMemcpyHostToDevice;
  CK(cudaMemcpy3D(&b));
  for (int z = 1; z < 3; z++)
    for (int y = 5; y < 7; y++)
      for (int x = 3; x < 7; x++) host[(z * h + y) * w + x] = -1.0f;

  // The array into pitched device memory, then read by the host.
  cudaPitchedPtr dev;
  CK(cudaMalloc3D(&dev, make_cudaExtent(w * sizeof(float), h, d)));
  cudaMemcpy3DParms c = {};
  c.srcArray = vol;
  c.dstPtr = dev;
  c.extent = make_cudaExtent(w, h, d);
  c.kind = cudaMemcpyDeviceToDevice;
  CK(cudaMemcpy3D(&c));
  cudaMemcpy3DParms c2 = {};
  c2.srcPtr = dev;
  c2.dstPtr = make_cudaPitchedPtr(back, w * sizeof(float), w, h);
  c2.extent = make_cudaExtent(w * sizeof(float), h, d);
  c2.kind = cudaMemcpyDeviceToHost;
  CK(cudaMemcpy3D(&c2));
  check("sub-box written at its offset, array copied to pitched memory", memcmp(back, host, n * sizeof(float)) == 0);

  float* out;
  CK(cudaMalloc(&out, n * sizeof(float)));
  cudaTextureObject_t t3 = texture_of(vol);
  k_read3d<<<dim3(h, d), w>>>(t3, out, w, h, d);
  CK_LAUNCH();
  CK(cudaMemcpy(back, out, n * sizeof(float), cudaMemcpyDeviceToHost));
  check("tex3D reads every voxel", memcmp(back, host, n * sizeof(float)) == 0);
  printf("voxel (5,6,2): %.2f\n", back[(2 * h + 6) * w + 5]);

  // A layered 2D array: 3 layers of 16×8.
  cudaArray_t layered;
  CK(cudaMalloc3DArray(&layered, &f, make_cudaExtent(w, h, 3), cudaArrayLayered));
  cudaMemcpy3DParms l = {};
  l.srcPtr = make_cudaPitchedPtr(host, w * sizeof(float), w, h);
  l.dstArray = layered;
  l.extent = make_cudaExtent(w, h, 3);
  l.kind = cudaMemcpyHostToDevice;
  CK(cudaMemcpy3D(&l));
  cudaTextureObject_t tl = texture_of(layered);
  CK(cudaMemset(out, 0, n * sizeof(float)));
  k_read_layers<<<dim3(h, 3), w>>>(tl, out, w, h, 3);
  CK_LAUNCH();
  CK(cudaMemcpy(back, out, 3 * w * h * sizeof(float), cudaMemcpyDeviceToHost));
  check("tex2DLayered reads every layer", memcmp(back, host, 3 * w * h * sizeof(float)) == 0);

  CK(cudaDestroyTextureObject(t3));
  CK(cudaDestroyTextureObject(tl));
  CK(cudaFreeArray(vol));
  CK(cudaFreeArray(layered));
  CK(cudaFree(dev.ptr));
  CK(cudaFree(out));
  free(host);
  free(back);
  return finish();
}
