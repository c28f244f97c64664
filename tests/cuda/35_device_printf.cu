// remora-test: kernels=yes  flags=none  gpus=1
// printf from a kernel: the device's output appears in the program's stdout when the host
// synchronises, between the host's own lines (the host flushes stdout around each launch).
#include "remora_test.h"

__global__ void k_hello(int v, double d) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    printf("device: hello %d %.3f\n", v, d);
    printf("device: second line, grid %d x %d\n", gridDim.x, blockDim.x);
  }
}

__global__ void k_one_per_block(int round) {
  if (threadIdx.x == 0) printf("device: round %d\n", round);
}

int main() {
  CK(cudaSetDevice(0));
  printf("host: before the first launch\n");
  fflush(stdout);
  k_hello<<<2, 64>>>(42, 2.5);
  CK_LAUNCH();
  CK(cudaDeviceSynchronize());
  fflush(stdout);
  printf("host: after the first launch\n");
  fflush(stdout);
  for (int r = 0; r < 3; r++) {
    k_one_per_block<<<1, 32>>>(r);
    CK_LAUNCH();
    CK(cudaDeviceSynchronize());
    fflush(stdout);
  }
  printf("host: done\n");
  return finish();
}
