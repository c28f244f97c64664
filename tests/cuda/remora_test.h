// Helpers shared by remora's CUDA test programs (tests/cuda/NN_*.cu).
//
// Output rules: everything printed must be deterministic (no pointers, timings or device-specific
// numbers unless the program's header says kernels=yes and the number is fixed by the binary), so
// that a run through remora matches a native run byte for byte. Checks print "what: yes|no";
// error codes print by name. A program exits 0 after "PASS", 1 after "FAILED: N check(s)".
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>

static int g_failures = 0;

// A call that must succeed: on failure print where and what, then exit 1.
#define CK(call)                                                                      \
  do {                                                                                \
    cudaError_t ck_e_ = (call);                                                       \
    if (ck_e_ != cudaSuccess) {                                                       \
      printf("FAIL line %d: %s returned %s\n", __LINE__, #call, cudaGetErrorName(ck_e_)); \
      fflush(stdout);                                                                 \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

// A kernel launch (or anything that only reports through cudaGetLastError) must have succeeded.
#define CK_LAUNCH() CK(cudaGetLastError())

// Prints "what: yes|no"; a "no" counts as a failure.
static inline void check(const char* what, bool ok) {
  printf("%s: %s\n", what, ok ? "yes" : "no");
  if (!ok) g_failures++;
}

// Prints "what: <error name>"; anything but `want` counts as a failure.
static inline void expect_code(const char* what, cudaError_t got, cudaError_t want) {
  printf("%s: %s\n", what, cudaGetErrorName(got));
  if (got != want) {
    printf("  FAIL: wanted %s\n", cudaGetErrorName(want));
    g_failures++;
  }
}

// Prints "what: <error name>"; cudaSuccess counts as a failure (the exact code is whatever the
// native runtime says; the byte comparison with the native output pins it down).
static inline void expect_error(const char* what, cudaError_t got) {
  printf("%s: %s\n", what, cudaGetErrorName(got));
  if (got == cudaSuccess) {
    printf("  FAIL: wanted an error\n");
    g_failures++;
  }
}

// Clears the thread's last error after a call that was meant to fail, and checks that the error
// was recorded there.
static inline void consume_error(const char* what, cudaError_t want) {
  cudaError_t e = cudaGetLastError();
  expect_code(what, e, want);
}

// expect_error, then checks that cudaGetLastError returns that same error (which clears it).
static inline void expect_error_recorded(const char* what, cudaError_t got) {
  expect_error(what, got);
  cudaError_t last = cudaGetLastError();
  printf("  recorded as last error: %s\n", last == got ? "yes" : "no");
  if (last != got) g_failures++;
}

static inline int finish() {
  if (g_failures) {
    printf("FAILED: %d check(s)\n", g_failures);
    fflush(stdout);
    return 1;
  }
  printf("PASS\n");
  fflush(stdout);
  return 0;
}

// Deterministic byte pattern for buffer `seed`.
static inline unsigned char pattern_byte(size_t i, unsigned seed) {
  return (unsigned char)((i * 2654435761u + seed * 40503u + (i >> 8)) & 0xff);
}
static inline void fill_pattern(void* p, size_t n, unsigned seed) {
  unsigned char* b = (unsigned char*)p;
  for (size_t i = 0; i < n; i++) b[i] = pattern_byte(i, seed);
}
static inline bool is_pattern(const void* p, size_t n, unsigned seed) {
  const unsigned char* b = (const unsigned char*)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != pattern_byte(i, seed)) return false;
  return true;
}
static inline bool all_bytes(const void* p, size_t n, unsigned char v) {
  const unsigned char* b = (const unsigned char*)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != v) return false;
  return true;
}

#ifdef __CUDACC__
// Nanoseconds from the GPU's global timer (for spin kernels that keep a stream busy).
static __device__ __forceinline__ unsigned long long remora_globaltimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
#endif
