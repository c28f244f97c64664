// remora-test: kernels=yes  flags=none  gpus=1
// Kernel parameter shapes: no parameters, mixed char/int/short/double/float/long long/pointers
// with padding, a struct by value (with internal padding), float4/double2/int2/char4, bool and
// unsigned long long, a template kernel with two instantiations.
#include "remora_test.h"

__device__ int g_hits;

__global__ void k_noparams() { atomicAdd(&g_hits, 1); }

__global__ void k_mixed(char c, int i, double d, int* out, short s, float f, long long ll,
                        double* outd, unsigned char uc) {
  out[0] = c;
  out[1] = i;
  out[2] = s;
  out[3] = uc;
  outd[0] = d;
  outd[1] = f;
  outd[2] = (double)ll;
}

struct S {
  int a;
  char b;
  double c;
  float d[3];
  short e;
  long long f;
};

__global__ void k_struct(S s, S* out, int tag) {
  *out = s;
  out->a += tag;
}

__global__ void k_vec(float4 f, double2 d, int2 i2, char4 c4, float* out) {
  out[0] = f.x;
  out[1] = f.y;
  out[2] = f.z;
  out[3] = f.w;
  out[4] = (float)d.x;
  out[5] = (float)d.y;
  out[6] = (float)i2.x;
  out[7] = (float)i2.y;
  out[8] = c4.x;
  out[9] = c4.y;
  out[10] = c4.z;
  out[11] = c4.w;
}

__global__ void k_small(bool flag, char a, short b, char c, unsigned long long u, int* out) {
  out[0] = flag ? 1 : 0;
  out[1] = a;
  out[2] = b;
  out[3] = c;
  out[4] = (int)(u >> 40);
  out[5] = (int)(u & 0xffffff);
}

template <typename T>
__global__ void k_tmpl(T* out, T v, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    out[i] = v * (T)i;
}

int main() {
  CK(cudaSetDevice(0));
  int zero = 0;
  CK(cudaMemcpyToSymbol(g_hits, &zero, sizeof zero));
  k_noparams<<<4, 32>>>();
  CK_LAUNCH();
  int hits = 0;
  CK(cudaMemcpyFromSymbol(&hits, g_hits, sizeof hits));
  printf("no-parameter kernel hits: %d\n", hits);
  check("no-parameter kernel ran 128 threads", hits == 128);

  int* di;
  double* dd;
  CK(cudaMalloc(&di, 64 * sizeof(int)));
  CK(cudaMalloc(&dd, 16 * sizeof(double)));
  k_mixed<<<1, 1>>>((char)-7, 123456789, 3.25, di, (short)-1234, 1.5f, -9876543210LL, dd,
                    (unsigned char)250);
  CK_LAUNCH();
  int hi[64];
  double hd[16];
  CK(cudaMemcpy(hi, di, 4 * sizeof(int), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hd, dd, 3 * sizeof(double), cudaMemcpyDeviceToHost));
  printf("mixed: %d %d %d %d %.2f %.2f %.0f\n", hi[0], hi[1], hi[2], hi[3], hd[0], hd[1], hd[2]);
  check("mixed parameters arrived", hi[0] == -7 && hi[1] == 123456789 && hi[2] == -1234 &&
                                        hi[3] == 250 && hd[0] == 3.25 && hd[1] == 1.5 &&
                                        hd[2] == -9876543210.0);

  S s;
  memset(&s, 0, sizeof s);
  s.a = 11;
  s.b = 'x';
  s.c = 2.75;
  s.d[0] = 1.f;
  s.d[1] = 2.f;
  s.d[2] = 3.f;
  s.e = -3;
  s.f = 1LL << 50;
  S* ds;
  CK(cudaMalloc(&ds, sizeof(S)));
  k_struct<<<1, 1>>>(s, ds, 1000);
  CK_LAUNCH();
  S hs;
  CK(cudaMemcpy(&hs, ds, sizeof hs, cudaMemcpyDeviceToHost));
  printf("struct (%zu bytes): %d %c %.2f %.0f %.0f %.0f %d %lld\n", sizeof(S), hs.a, hs.b, hs.c,
         hs.d[0], hs.d[1], hs.d[2], hs.e, hs.f);
  check("struct by value arrived", hs.a == 1011 && hs.b == 'x' && hs.c == 2.75 && hs.d[2] == 3.f &&
                                       hs.e == -3 && hs.f == (1LL << 50));

  float* df;
  CK(cudaMalloc(&df, 16 * sizeof(float)));
  k_vec<<<1, 1>>>(make_float4(1.f, 2.f, 3.f, 4.f), make_double2(5.0, 6.0), make_int2(7, 8),
                  make_char4(9, 10, 11, 12), df);
  CK_LAUNCH();
  float hf[12];
  CK(cudaMemcpy(hf, df, sizeof hf, cudaMemcpyDeviceToHost));
  bool vec_ok = true;
  for (int i = 0; i < 12; i++) vec_ok = vec_ok && hf[i] == (float)(i + 1);
  check("float4/double2/int2/char4 arrived", vec_ok);

  k_small<<<1, 1>>>(true, (char)65, (short)-300, (char)-2, 0xABCDEF0123456789ULL, di);
  CK_LAUNCH();
  CK(cudaMemcpy(hi, di, 6 * sizeof(int), cudaMemcpyDeviceToHost));
  printf("small: %d %d %d %d %x %x\n", hi[0], hi[1], hi[2], hi[3], hi[4], hi[5]);
  check("bool/char/short/u64 arrived", hi[0] == 1 && hi[1] == 65 && hi[2] == -300 && hi[3] == -2 &&
                                           hi[4] == 0xABCDEF && hi[5] == 0x456789);

  const int n = 5000;
  int* ti;
  double* td;
  CK(cudaMalloc(&ti, n * sizeof(int)));
  CK(cudaMalloc(&td, n * sizeof(double)));
  k_tmpl<int><<<8, 128>>>(ti, 3, n);
  CK_LAUNCH();
  k_tmpl<double><<<8, 128>>>(td, 0.25, n);
  CK_LAUNCH();
  int* hti = (int*)malloc(n * sizeof(int));
  double* htd = (double*)malloc(n * sizeof(double));
  CK(cudaMemcpy(hti, ti, n * sizeof(int), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(htd, td, n * sizeof(double), cudaMemcpyDeviceToHost));
  bool t_ok = true;
  for (int i = 0; i < n; i++) t_ok = t_ok && hti[i] == 3 * i && htd[i] == 0.25 * i;
  check("template kernel <int> and <double>", t_ok);
  printf("template results: %d %.2f\n", hti[n - 1], htd[n - 1]);

  CK(cudaDeviceSynchronize());
  CK(cudaFree(di));
  CK(cudaFree(dd));
  CK(cudaFree(ds));
  CK(cudaFree(df));
  CK(cudaFree(ti));
  CK(cudaFree(td));
  free(hti);
  free(htd);
  return finish();
}
