/* A plain C program against the CUDA runtime ABI, built with gcc (no nvcc, no CUDA headers), so
 * CI checks remora's libcudart.so.13 on a machine without a GPU: it links against the library's
 * versioned symbols exactly as an nvcc-built program does, and runs against the emulated backend.
 * Prints deterministic lines; exits non-zero on the first failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
extern cudaError_t cudaGetDeviceCount(int *);
extern cudaError_t cudaSetDevice(int);
extern cudaError_t cudaGetDevice(int *);
extern cudaError_t cudaMalloc(void **, size_t);
extern cudaError_t cudaFree(void *);
extern cudaError_t cudaMemcpy(void *, const void *, size_t, int);
extern cudaError_t cudaMemset(void *, int, size_t);
extern cudaError_t cudaMemGetInfo(size_t *, size_t *);
extern cudaError_t cudaGetLastError(void);
extern cudaError_t cudaPeekAtLastError(void);
extern const char *cudaGetErrorName(cudaError_t);
extern const char *cudaGetErrorString(cudaError_t);
extern cudaError_t cudaStreamCreate(void **);
extern cudaError_t cudaStreamDestroy(void *);
extern cudaError_t cudaStreamSynchronize(void *);
extern cudaError_t cudaMemcpyAsync(void *, const void *, size_t, int, void *);
extern cudaError_t cudaEventCreate(void **);
extern cudaError_t cudaEventRecord(void *, void *);
extern cudaError_t cudaEventSynchronize(void *);
extern cudaError_t cudaEventElapsedTime(float *, void *, void *);
extern cudaError_t cudaEventDestroy(void *);
extern cudaError_t cudaMallocHost(void **, size_t);
extern cudaError_t cudaFreeHost(void *);
extern cudaError_t cudaRuntimeGetVersion(int *);
extern cudaError_t cudaDeviceSynchronize(void);
extern cudaError_t cudaGraphDebugDotPrint(void *, const char *, unsigned int);

#define CHECK(x) do { cudaError_t e_ = (x); if (e_) { printf("FAIL %s: %s (%s)\n", #x, cudaGetErrorName(e_), cudaGetErrorString(e_)); return 1; } } while (0)
#define EXPECT(x, want) do { cudaError_t e_ = (x); if (e_ != (want)) { printf("FAIL %s: got %s, want %d\n", #x, cudaGetErrorName(e_), want); return 1; } printf("%s -> %s\n", #x, cudaGetErrorName(e_)); } while (0)

int main(void) {
    int n = 0, dev = -1, rv = 0;
    CHECK(cudaGetDeviceCount(&n));
    printf("devices>0: %s\n", n > 0 ? "yes" : "no");
    CHECK(cudaSetDevice(0));
    CHECK(cudaGetDevice(&dev));
    printf("device %d\n", dev);
    CHECK(cudaRuntimeGetVersion(&rv));
    printf("runtime %d\n", rv);
    size_t fr = 0, tot = 0;
    CHECK(cudaMemGetInfo(&fr, &tot));
    printf("free<=total: %s\n", fr <= tot && tot > 0 ? "yes" : "no");

    enum { N = 1 << 20 };
    unsigned char *h = malloc(N), *back = malloc(N), *pinned = NULL;
    for (int i = 0; i < N; i++) h[i] = (unsigned char)(i * 7);
    void *d = NULL, *d2 = NULL;
    CHECK(cudaMalloc(&d, N));
    CHECK(cudaMalloc(&d2, N));
    CHECK(cudaMemcpy(d, h, N, 1));
    CHECK(cudaMemcpy(d2, d, N, 3));
    CHECK(cudaMemcpy(back, d2, N, 2));
    printf("round trip equal: %s\n", memcmp(h, back, N) == 0 ? "yes" : "no");
    CHECK(cudaMemcpy(back, d, N, 4)); /* cudaMemcpyDefault */
    printf("default-kind copy equal: %s\n", memcmp(h, back, N) == 0 ? "yes" : "no");
    /* Large copies into pageable memory (over shm: through the bounce arena, in chunks; an
       odd length and an odd device offset leave a short last chunk). */
    enum { L = (9 << 20) + 123, OFF = 4097 };
    unsigned char *lh = malloc(L), *lb = malloc(L);
    for (int i = 0; i < L; i++) lh[i] = (unsigned char)(i * 13 ^ (i >> 11));
    void *ld = NULL;
    CHECK(cudaMalloc(&ld, L));
    /* In asynchronously on an idle stream (over shm: the bounce arena too), out in one large
       copy. */
    CHECK(cudaMemcpyAsync(ld, lh, L, 1, 0));
    CHECK(cudaDeviceSynchronize());
    memset(lb, 0, L);
    CHECK(cudaMemcpy(lb, ld, L, 2));
    int large_ok = memcmp(lh, lb, L) == 0;
    /* In by one large synchronous copy, out in pieces below the bounce size. */
    CHECK(cudaMemset(ld, 0, L));
    CHECK(cudaMemcpy(ld, lh, L, 1));
    memset(lb, 0, L);
    for (size_t at = 0; at < L; at += 300000) {
        size_t n = L - at < 300000 ? L - at : 300000;
        CHECK(cudaMemcpy(lb + at, (unsigned char *)ld + at, n, 2));
    }
    large_ok = large_ok && memcmp(lh, lb, L) == 0;
    /* At an odd device offset. */
    memset(lb, 0, L);
    CHECK(cudaMemcpy(lb, (unsigned char *)ld + OFF, L - OFF, 2));
    large_ok = large_ok && memcmp(lh + OFF, lb, L - OFF) == 0 && lb[L - OFF] == 0;
    printf("large round trip equal: %s\n", large_ok ? "yes" : "no");
    CHECK(cudaFree(ld));
    free(lh);
    free(lb);
    CHECK(cudaMemset(d, 0xab, 100));
    CHECK(cudaMemcpy(back, d, 101, 2));
    printf("memset: %02x %02x\n", back[99], back[100]);

    void *s = NULL, *e0 = NULL, *e1 = NULL;
    CHECK(cudaStreamCreate(&s));
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    CHECK(cudaMallocHost((void **)&pinned, N));
    CHECK(cudaEventRecord(e0, s));
    CHECK(cudaMemcpyAsync(d, h, N, 1, s));
    CHECK(cudaMemcpyAsync(pinned, d, N, 2, s));
    CHECK(cudaEventRecord(e1, s));
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaEventSynchronize(e1));
    float ms = -1;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    printf("async equal: %s, elapsed>=0: %s\n", memcmp(h, pinned, N) == 0 ? "yes" : "no", ms >= 0 ? "yes" : "no");

    /* Errors: the runtime's codes, and last-error semantics. */
    EXPECT(cudaSetDevice(99), 101);
    EXPECT(cudaPeekAtLastError(), 101);
    EXPECT(cudaGetLastError(), 101);
    EXPECT(cudaGetLastError(), 0);
    EXPECT(cudaFree((char *)d + 8), 1);
    EXPECT(cudaMemcpy(back, d, N, 7), 21);
    EXPECT(cudaMemcpy(back, (char *)d + N - 4, 8, 2), 1);
    void *huge = NULL;
    EXPECT(cudaMalloc(&huge, (size_t)1 << 50), 2);
    void *g = NULL;
    EXPECT(cudaGraphDebugDotPrint(g, "/dev/null", 0), 801);
    (void)cudaGetLastError();
    printf("error string: %s\n", cudaGetErrorString(2));

    CHECK(cudaEventDestroy(e0));
    CHECK(cudaEventDestroy(e1));
    CHECK(cudaStreamDestroy(s));
    CHECK(cudaFreeHost(pinned));
    CHECK(cudaFree(d));
    CHECK(cudaFree(d2));
    CHECK(cudaDeviceSynchronize());
    free(h);
    free(back);
    printf("OK\n");
    return 0;
}
