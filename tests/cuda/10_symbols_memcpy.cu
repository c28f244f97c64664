// remora-test: kernels=no  flags=none  gpus=1
// __constant__ and __device__ variables without kernels: static initialisers visible through
// cudaMemcpyFromSymbol, cudaMemcpyToSymbol (with offsets), cudaGetSymbolSize, cudaGetSymbolAddress
// + plain cudaMemcpy, the Async variants, an out-of-range copy.
#include "remora_test.h"

struct Pair {
  int a;
  double b;
};

__constant__ float c_coeffs[16];
__constant__ int c_init[4] = {1, 2, 3, 4};
__device__ int d_counter = 42;
__device__ double d_table[256];
__device__ Pair d_pair = {7, 2.5};
__device__ unsigned char d_bytes[1000];

int main() {
  CK(cudaSetDevice(0));
  size_t sz = 0;
  CK(cudaGetSymbolSize(&sz, c_coeffs));
  printf("size of c_coeffs: %zu\n", sz);
  CK(cudaGetSymbolSize(&sz, c_init));
  printf("size of c_init: %zu\n", sz);
  CK(cudaGetSymbolSize(&sz, d_counter));
  printf("size of d_counter: %zu\n", sz);
  CK(cudaGetSymbolSize(&sz, d_table));
  printf("size of d_table: %zu\n", sz);
  CK(cudaGetSymbolSize(&sz, d_pair));
  printf("size of d_pair: %zu\n", sz);

  // Static initialisers.
  int init[4] = {0};
  CK(cudaMemcpyFromSymbol(init, c_init, sizeof init));
  printf("c_init: %d %d %d %d\n", init[0], init[1], init[2], init[3]);
  int counter = 0;
  CK(cudaMemcpyFromSymbol(&counter, d_counter, sizeof counter));
  printf("d_counter: %d\n", counter);
  Pair pr = {0, 0.0};
  CK(cudaMemcpyFromSymbol(&pr, d_pair, sizeof pr));
  printf("d_pair: %d %.3f\n", pr.a, pr.b);
  double zeros[256];
  memset(zeros, 0xff, sizeof zeros);
  CK(cudaMemcpyFromSymbol(zeros, d_table, sizeof zeros));
  bool z = true;
  for (double v : zeros) z = z && v == 0.0;
  check("d_table starts zeroed", z);

  // To and from, whole and with an offset.
  float coeffs[16];
  for (int i = 0; i < 16; i++) coeffs[i] = 0.5f * i;
  CK(cudaMemcpyToSymbol(c_coeffs, coeffs, sizeof coeffs));
  float part[4] = {100.f, 101.f, 102.f, 103.f};
  CK(cudaMemcpyToSymbol(c_coeffs, part, sizeof part, 8 * sizeof(float)));
  float got[16];
  CK(cudaMemcpyFromSymbol(got, c_coeffs, sizeof got));
  bool ok = true;
  for (int i = 0; i < 16; i++) {
    float want = (i >= 8 && i < 12) ? 100.f + (i - 8) : 0.5f * i;
    if (got[i] != want) ok = false;
  }
  check("cudaMemcpyToSymbol with offset", ok);
  float tail[2];
  CK(cudaMemcpyFromSymbol(tail, c_coeffs, sizeof tail, 14 * sizeof(float)));
  check("cudaMemcpyFromSymbol with offset", tail[0] == 7.0f && tail[1] == 7.5f);
  counter = -5;
  CK(cudaMemcpyToSymbol(d_counter, &counter, sizeof counter, 0, cudaMemcpyHostToDevice));
  counter = 0;
  CK(cudaMemcpyFromSymbol(&counter, d_counter, sizeof counter, 0, cudaMemcpyDeviceToHost));
  printf("d_counter after write: %d\n", counter);

  // cudaGetSymbolAddress, then ordinary copies to and from that address.
  void* addr = nullptr;
  CK(cudaGetSymbolAddress(&addr, d_table));
  check("symbol address is not null", addr != nullptr);
  double table[256];
  for (int i = 0; i < 256; i++) table[i] = i * 1.25;
  CK(cudaMemcpy(addr, table, sizeof table, cudaMemcpyHostToDevice));
  double tb[256];
  CK(cudaMemcpyFromSymbol(tb, d_table, sizeof tb));
  check("memcpy to the symbol address is seen through the symbol", memcmp(tb, table, sizeof tb) == 0);
  double one = 0;
  CK(cudaMemcpy(&one, (double*)addr + 200, sizeof one, cudaMemcpyDeviceToHost));
  printf("d_table[200] via address: %.2f\n", one);
  void* caddr = nullptr;
  CK(cudaGetSymbolAddress(&caddr, c_coeffs));
  float c5 = 0;
  CK(cudaMemcpy(&c5, (float*)caddr + 5, sizeof c5, cudaMemcpyDeviceToHost));
  printf("c_coeffs[5] via address: %.2f\n", c5);
  // Device-to-device between two symbols' addresses.
  void* baddr = nullptr;
  CK(cudaGetSymbolAddress(&baddr, d_bytes));
  CK(cudaMemset(baddr, 0x3c, 1000));
  CK(cudaMemcpyToSymbol(d_pair, baddr, sizeof(Pair), 0, cudaMemcpyDeviceToDevice));
  unsigned char pb[sizeof(Pair)];
  CK(cudaMemcpyFromSymbol(pb, d_pair, sizeof pb));
  check("device-to-device cudaMemcpyToSymbol", all_bytes(pb, sizeof pb, 0x3c));

  // Async variants on a stream.
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  unsigned char* pin = nullptr;
  CK(cudaMallocHost(&pin, 1000));
  fill_pattern(pin, 1000, 5);
  CK(cudaMemcpyToSymbolAsync(d_bytes, pin, 1000, 0, cudaMemcpyHostToDevice, s));
  unsigned char* pin2 = nullptr;
  CK(cudaMallocHost(&pin2, 1000));
  memset(pin2, 0, 1000);
  CK(cudaMemcpyFromSymbolAsync(pin2, d_bytes, 1000, 0, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  check("async symbol round trip", is_pattern(pin2, 1000, 5));

  // Past the end of the symbol.
  float big[17] = {0};
  expect_error_recorded("cudaMemcpyToSymbol past the end", cudaMemcpyToSymbol(c_coeffs, big, sizeof big));
  expect_error_recorded("cudaMemcpyFromSymbol past the end (offset)",
                        cudaMemcpyFromSymbol(big, c_coeffs, 8, 15 * sizeof(float)));

  CK(cudaStreamDestroy(s));
  CK(cudaFreeHost(pin));
  CK(cudaFreeHost(pin2));
  return finish();
}
