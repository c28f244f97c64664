// remora-test: kernels=no  flags=none  gpus=1
// Pitched memory: cudaMallocPitch, cudaMemcpy2D (H2D, D2D, D2H with different pitches),
// cudaMemset2D, cudaMemcpy2DAsync, a bad pitch; cudaMalloc3D, cudaMemcpy3D (whole and a sub-box),
// cudaMemset3D.
#include "remora_test.h"

int main() {
  CK(cudaSetDevice(0));
  const size_t W = 300, H = 37;  // floats per row, rows
  const size_t row = W * sizeof(float);
  float* host = (float*)malloc(row * H);
  for (size_t y = 0; y < H; y++)
    for (size_t x = 0; x < W; x++) host[y * W + x] = (float)(y * 1000 + x);

  float* d = nullptr;
  size_t pitch = 0;
  CK(cudaMallocPitch((void**)&d, &pitch, row, H));
  check("pitch >= row bytes", pitch >= row);
  check("pitch is a multiple of 4", pitch % 4 == 0);
  CK(cudaMemcpy2D(d, pitch, host, row, row, H, cudaMemcpyHostToDevice));

  // D2H into a host buffer with a wider pitch; the gaps stay untouched.
  const size_t hp = row + 64;
  unsigned char* wide = (unsigned char*)malloc(hp * H);
  memset(wide, 0x7f, hp * H);
  CK(cudaMemcpy2D(wide, hp, d, pitch, row, H, cudaMemcpyDeviceToHost));
  bool ok = true;
  for (size_t y = 0; y < H; y++) {
    if (memcmp(wide + y * hp, host + y * W, row) != 0) ok = false;
    if (!all_bytes(wide + y * hp + row, 64, 0x7f)) ok = false;
  }
  check("2D H2D then D2H with a wider host pitch", ok);

  // D2D into a second pitched allocation, a sub-rectangle of it.
  float* d2 = nullptr;
  size_t pitch2 = 0;
  CK(cudaMallocPitch((void**)&d2, &pitch2, row, H));
  CK(cudaMemset2D(d2, pitch2, 0, row, H));
  // Copy columns [10, 110) of rows [5, 25) to the same place.
  CK(cudaMemcpy2D((char*)d2 + 5 * pitch2 + 10 * sizeof(float), pitch2,
                  (char*)d + 5 * pitch + 10 * sizeof(float), pitch, 100 * sizeof(float), 20,
                  cudaMemcpyDeviceToDevice));
  float* back = (float*)malloc(row * H);
  CK(cudaMemcpy2D(back, row, d2, pitch2, row, H, cudaMemcpyDeviceToHost));
  ok = true;
  for (size_t y = 0; y < H; y++)
    for (size_t x = 0; x < W; x++) {
      bool inside = y >= 5 && y < 25 && x >= 10 && x < 110;
      float want = inside ? host[y * W + x] : 0.0f;
      if (back[y * W + x] != want) ok = false;
    }
  check("2D D2D sub-rectangle", ok);

  // cudaMemset2D on a band of each row.
  CK(cudaMemset2D((char*)d + 40, pitch, 0xff, 80, H));
  CK(cudaMemcpy2D(back, row, d, pitch, row, H, cudaMemcpyDeviceToHost));
  ok = true;
  for (size_t y = 0; y < H; y++) {
    const unsigned char* r = (const unsigned char*)(back + y * W);
    const unsigned char* o = (const unsigned char*)(host + y * W);
    if (!all_bytes(r + 40, 80, 0xff) || memcmp(r, o, 40) != 0 || memcmp(r + 120, o + 120, row - 120) != 0)
      ok = false;
  }
  check("cudaMemset2D band", ok);

  // Async 2D copy on a stream, into pinned memory.
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  float* pinned = nullptr;
  CK(cudaMallocHost((void**)&pinned, row * H));
  CK(cudaMemcpy2DAsync(d, pitch, host, row, row, H, cudaMemcpyHostToDevice, s));
  CK(cudaMemcpy2DAsync(pinned, row, d, pitch, row, H, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  check("cudaMemcpy2DAsync round trip", memcmp(pinned, host, row * H) == 0);

  // A width larger than the destination pitch is an error.
  expect_error_recorded("cudaMemcpy2D(width > dpitch)",
                        cudaMemcpy2D(d, 16, host, row, row, H, cudaMemcpyHostToDevice));

  // 3D.
  const size_t X = 50, Y = 20, Z = 6;  // X in ints
  cudaExtent ext = make_cudaExtent(X * sizeof(int), Y, Z);
  cudaPitchedPtr pp;
  CK(cudaMalloc3D(&pp, ext));
  check("3D pitch >= row bytes", pp.pitch >= X * sizeof(int));
  check("3D xsize/ysize as asked", pp.xsize == X * sizeof(int) && pp.ysize == Y);
  int* h3 = (int*)malloc(X * Y * Z * sizeof(int));
  for (size_t i = 0; i < X * Y * Z; i++) h3[i] = (int)(i * 7 + 3);
  cudaMemcpy3DParms up = {};
  up.srcPtr = make_cudaPitchedPtr(h3, X * sizeof(int), X * sizeof(int), Y);
  up.dstPtr = pp;
  up.extent = ext;
  up.kind = cudaMemcpyHostToDevice;
  CK(cudaMemcpy3D(&up));
  int* b3 = (int*)malloc(X * Y * Z * sizeof(int));
  memset(b3, 0, X * Y * Z * sizeof(int));
  cudaMemcpy3DParms down = {};
  down.srcPtr = pp;
  down.dstPtr = make_cudaPitchedPtr(b3, X * sizeof(int), X * sizeof(int), Y);
  down.extent = ext;
  down.kind = cudaMemcpyDeviceToHost;
  CK(cudaMemcpy3D(&down));
  check("3D round trip", memcmp(h3, b3, X * Y * Z * sizeof(int)) == 0);

  // Memset a sub-box, then copy just a sub-box back (srcPos / dstPos).
  cudaPitchedPtr sub = pp;
  sub.ptr = (char*)pp.ptr + 2 * pp.pitch * Y + 3 * pp.pitch + 4 * sizeof(int);
  CK(cudaMemset3D(sub, 0, make_cudaExtent(10 * sizeof(int), 5, 2)));
  memset(b3, 0xff, X * Y * Z * sizeof(int));
  CK(cudaMemcpy3D(&down));
  ok = true;
  for (size_t z = 0; z < Z; z++)
    for (size_t y = 0; y < Y; y++)
      for (size_t x = 0; x < X; x++) {
        size_t i = (z * Y + y) * X + x;
        bool in = z >= 2 && z < 4 && y >= 3 && y < 8 && x >= 4 && x < 14;
        if (b3[i] != (in ? 0 : h3[i])) ok = false;
      }
  check("cudaMemset3D sub-box", ok);
  int box[2][3][5];
  memset(box, 0, sizeof box);
  cudaMemcpy3DParms part = {};
  part.srcPtr = pp;
  part.srcPos = make_cudaPos(1 * sizeof(int), 2, 3);
  part.dstPtr = make_cudaPitchedPtr(box, 5 * sizeof(int), 5 * sizeof(int), 3);
  part.extent = make_cudaExtent(5 * sizeof(int), 3, 2);
  part.kind = cudaMemcpyDeviceToHost;
  CK(cudaMemcpy3D(&part));
  ok = true;
  for (int z = 0; z < 2; z++)
    for (int y = 0; y < 3; y++)
      for (int x = 0; x < 5; x++)
        if (box[z][y][x] != b3[((z + 3) * Y + (y + 2)) * X + (x + 1)]) ok = false;
  check("cudaMemcpy3D sub-box with srcPos", ok);

  CK(cudaStreamDestroy(s));
  CK(cudaFree(pp.ptr));
  CK(cudaFree(d));
  CK(cudaFree(d2));
  CK(cudaFreeHost(pinned));
  free(host);
  free(wide);
  free(back);
  free(h3);
  free(b3);
  return finish();
}
