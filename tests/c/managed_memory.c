/* Managed and mapped memory through remora's libcudart.so.13, with no kernel (gcc-built, runs on
 * the emulated backend in CI): the host writes managed memory and device-side copies see it;
 * device-side writes come back at synchronisation; pointer attributes, prefetch, advice and
 * attachment; mapped pinned memory's device pointer. Prints deterministic lines; exits non-zero
 * on the first failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
struct cudaMemLocation { int type; int id; };
struct cudaPointerAttributes { int type; int device; void *devicePointer; void *hostPointer; long reserved[8]; };
extern cudaError_t cudaMalloc(void **, size_t);
extern cudaError_t cudaMallocManaged(void **, size_t, unsigned int);
extern cudaError_t cudaFree(void *);
extern cudaError_t cudaMemcpy(void *, const void *, size_t, int);
extern cudaError_t cudaMemset(void *, int, size_t);
extern cudaError_t cudaDeviceSynchronize(void);
extern cudaError_t cudaDeviceGetAttribute(int *, int, int);
extern cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *, const void *);
extern cudaError_t cudaMemPrefetchAsync(const void *, size_t, struct cudaMemLocation, unsigned int, void *);
extern cudaError_t cudaMemAdvise(const void *, size_t, int, struct cudaMemLocation);
extern cudaError_t cudaStreamAttachMemAsync(void *, void *, size_t, unsigned int);
extern cudaError_t cudaMemRangeGetAttribute(void *, size_t, int, const void *, size_t);
extern cudaError_t cudaMemRangeGetAttributes(void **, size_t *, int *, size_t, const void *, size_t);
extern cudaError_t cudaHostAlloc(void **, size_t, unsigned int);
extern cudaError_t cudaHostGetDevicePointer(void **, void *, unsigned int);
extern cudaError_t cudaFreeHost(void *);
extern cudaError_t cudaHostRegister(void *, size_t, unsigned int);
extern cudaError_t cudaHostUnregister(void *);
extern cudaError_t cudaGetLastError(void);
extern const char *cudaGetErrorName(cudaError_t);

#define CHECK(x) do { cudaError_t e_ = (x); if (e_) { printf("FAIL %s: %s\n", #x, cudaGetErrorName(e_)); return 1; } } while (0)
#define EXPECT(x, want) do { cudaError_t e_ = (x); if (e_ != (want)) { printf("FAIL %s: got %s, want %d\n", #x, cudaGetErrorName(e_), want); return 1; } printf("%s -> %s\n", #x, cudaGetErrorName(e_)); } while (0)

enum { N = 3 << 20 }; /* 3 MiB: more than one granule */

int main(void) {
    int concurrent = -1;
    CHECK(cudaDeviceGetAttribute(&concurrent, 89, 0));
    printf("concurrentManagedAccess: %d\n", concurrent);

    unsigned char *m = NULL, *d = NULL, *back = malloc(N);
    CHECK(cudaMallocManaged((void **)&m, N, 1));
    CHECK(cudaMalloc((void **)&d, N));
    for (int i = 0; i < N; i++) m[i] = (unsigned char)(i * 7);
    CHECK(cudaMemcpy(d, m, N, 4)); /* default kind: managed is device memory */
    CHECK(cudaMemcpy(back, d, N, 2));
    printf("device sees host writes: %s\n", memcmp(back, m, N) == 0 ? "yes" : "no");

    CHECK(cudaMemset(m + 4096, 0x5a, 100));
    CHECK(cudaDeviceSynchronize());
    printf("host sees device memset: %s\n", m[4096] == 0x5a && m[4195] == 0x5a && m[4196] == (unsigned char)(4196 * 7) ? "yes" : "no");

    m[N - 1] = 0xee; /* the host's turn again: the next device read must see it */
    CHECK(cudaMemcpy(back, m, N, 2));
    printf("device read sees later host write: %s\n", back[N - 1] == 0xee && back[4096] == 0x5a ? "yes" : "no");
    CHECK(cudaMemcpy(m + 10, d, 16, 3)); /* device-to-device into managed memory, then visible */
    printf("copy into managed visible: %s\n", m[10] == back[0] && m[25] == back[15] ? "yes" : "no");

    struct cudaPointerAttributes a;
    CHECK(cudaPointerGetAttributes(&a, m + 5));
    printf("attributes: type %d, host==device: %s\n", a.type, a.hostPointer == a.devicePointer ? "yes" : "no");
    struct cudaMemLocation dev0 = {1, 0}, host = {2, 0};
    CHECK(cudaMemPrefetchAsync(m, N, dev0, 0, NULL));
    CHECK(cudaMemPrefetchAsync(m, N, host, 0, NULL));
    CHECK(cudaMemAdvise(m, N, 1, dev0));
    CHECK(cudaMemAdvise(m, N, 3, dev0));
    CHECK(cudaMemAdvise(m, N, 5, dev0));
    int mostly = -9, preferred = -9, accessed[2] = {-9, -9}, last = -9;
    CHECK(cudaMemRangeGetAttribute(&mostly, 4, 1, m, N));
    CHECK(cudaMemRangeGetAttribute(accessed, sizeof accessed, 3, m + 64, 100));
    void *outs[2] = {&preferred, &last};
    size_t sizes[2] = {4, 4};
    int attrs[2] = {2, 4};
    CHECK(cudaMemRangeGetAttributes(outs, sizes, attrs, 2, m, N));
    printf("range attributes: read-mostly %d, preferred %d, accessed by %d %d, last prefetch %d\n", mostly, preferred,
           accessed[0], accessed[1], last);
    EXPECT(cudaMemRangeGetAttribute(&mostly, 4, 1, d, 16), 1);
    CHECK(cudaStreamAttachMemAsync(NULL, m, 0, 1));
    EXPECT(cudaMemPrefetchAsync(d, N, dev0, 0, NULL), 1);
    EXPECT(cudaMemPrefetchAsync(m, N + 1, dev0, 0, NULL), 1);
    EXPECT(cudaStreamAttachMemAsync(NULL, m + 8, 0, 1), 1);
    EXPECT(cudaMallocManaged((void **)&back, 16, 0), 1);

    unsigned char *h = NULL, *dp = NULL;
    CHECK(cudaHostAlloc((void **)&h, 1 << 16, 2));
    for (int i = 0; i < 1 << 16; i++) h[i] = (unsigned char)(i ^ 0x3c);
    CHECK(cudaHostGetDevicePointer((void **)&dp, h, 0));
    printf("mapped device pointer is the host pointer: %s\n", dp == h ? "yes" : "no");
    CHECK(cudaMemcpy(d, dp, 1 << 16, 3));
    CHECK(cudaMemcpy(back, d, 1 << 16, 2));
    printf("copy from mapped memory: %s\n", memcmp(back, h, 1 << 16) == 0 ? "yes" : "no");
    EXPECT(cudaHostGetDevicePointer((void **)&dp, back, 0), 1);
    CHECK(cudaFreeHost(h));

    /* Registered memory: its device side is elsewhere, and device work through it stays
     * coherent with the host's copy. */
    unsigned char *reg = aligned_alloc(4096, 1 << 16), *dreg = NULL;
    for (int i = 0; i < 1 << 16; i++) reg[i] = (unsigned char)(i * 13);
    CHECK(cudaHostRegister(reg, 1 << 16, 2));
    CHECK(cudaHostGetDevicePointer((void **)&dreg, reg + 16, 0));
    CHECK(cudaMemcpy(d, dreg, 4096, 3));
    CHECK(cudaMemcpy(back, d, 4096, 2));
    printf("registered memory's device side: %s\n", memcmp(back, reg + 16, 4096) == 0 ? "yes" : "no");
    reg[100] = 0x77;
    CHECK(cudaMemcpy(back, dreg + 84, 1, 2));
    printf("device side sees later host write: %s\n", back[0] == 0x77 ? "yes" : "no");
    CHECK(cudaMemset(dreg, 0x11, 8));
    CHECK(cudaDeviceSynchronize());
    printf("host sees device write: %s\n", reg[16] == 0x11 && reg[23] == 0x11 && reg[24] == (unsigned char)(24 * 13) ? "yes" : "no");
    CHECK(cudaHostUnregister(reg));
    free(reg);

    CHECK(cudaFree(m));
    EXPECT(cudaFree(m), 1);
    CHECK(cudaFree(d));
    (void)cudaGetLastError();
    free(back);
    printf("OK\n");
    return 0;
}
