/*
 * Records what NVIDIA's libcudart returns from cudaGetDeviceProperties next to the driver
 * attributes it is made from, so that remora-interpose's device_prop_from_attributes can be
 * checked without a GPU (tests/abi_layout.rs reads the output, tests/abi/device-prop-*.txt).
 *
 *   gcc -std=c11 -Wall -Wextra -Werror -I$CU/include -o prop_dump prop_dump.c -ldl
 *   ./prop_dump $CU/lib/libcudart.so.13 [device] > device-prop-<gpu>.txt   # on the GPU machine
 *
 * It dlopens libcuda.so.1 and the given libcudart, so it builds without either. Output lines:
 *   version driver <cuDriverGetVersion> runtime <cudaRuntimeGetVersion>
 *   name <cuDeviceGetName>
 *   uuid <cuDeviceGetUuid, hex>
 *   total_mem <cuDeviceTotalMem>
 *   attr <n> <cuDeviceGetAttribute(n)>         for every n the driver answers
 *   rattr <n> <cudaDeviceGetAttribute(n)>      for every n the runtime answers
 *   field <name> <bytes of that cudaDeviceProp field, hex>
 *   padding <offset> <byte, hex>               bytes between fields (pre-filled with 0xab)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cuda_runtime_api.h>

static void *sym(void *lib, const char *a, const char *b) {
    void *p = dlsym(lib, a);
    if (!p && b) p = dlsym(lib, b);
    if (!p) { fprintf(stderr, "missing %s\n", a); exit(2); }
    return p;
}

static void hex(const char *tag, const void *p, size_t n) {
    const unsigned char *b = p;
    printf("%s ", tag);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

static struct cudaDeviceProp prop;
static unsigned char covered[sizeof(struct cudaDeviceProp)];
#define HEX(f) do { \
    char tag[96]; snprintf(tag, sizeof tag, "field %s", #f); \
    hex(tag, &prop.f, sizeof prop.f); \
    memset(covered + offsetof(struct cudaDeviceProp, f), 1, sizeof prop.f); \
} while (0)

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s <libcudart.so.13> [device]\n", argv[0]); return 2; }
    int ord = argc > 2 ? atoi(argv[2]) : 0;
    void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!cu) { fprintf(stderr, "dlopen libcuda.so.1: %s\n", dlerror()); return 2; }
    void *rt = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!rt) { fprintf(stderr, "dlopen %s: %s\n", argv[1], dlerror()); return 2; }

    CUresult (*cuInit_)(unsigned) = sym(cu, "cuInit", NULL);
    CUresult (*cuDriverGetVersion_)(int *) = sym(cu, "cuDriverGetVersion", NULL);
    CUresult (*cuDeviceGet_)(CUdevice *, int) = sym(cu, "cuDeviceGet", NULL);
    CUresult (*cuDeviceGetName_)(char *, int, CUdevice) = sym(cu, "cuDeviceGetName", NULL);
    CUresult (*cuDeviceGetUuid_)(CUuuid *, CUdevice) = sym(cu, "cuDeviceGetUuid_v2", "cuDeviceGetUuid");
    CUresult (*cuDeviceTotalMem_)(size_t *, CUdevice) = sym(cu, "cuDeviceTotalMem_v2", "cuDeviceTotalMem");
    CUresult (*cuDeviceGetAttribute_)(int *, int, CUdevice) = sym(cu, "cuDeviceGetAttribute", NULL);
    cudaError_t (*cudaRuntimeGetVersion_)(int *) = sym(rt, "cudaRuntimeGetVersion", NULL);
    cudaError_t (*cudaGetDeviceProperties_)(struct cudaDeviceProp *, int) =
        sym(rt, "cudaGetDeviceProperties", "cudaGetDeviceProperties_v2");
    cudaError_t (*cudaDeviceGetAttribute_)(int *, int, int) = sym(rt, "cudaDeviceGetAttribute", NULL);

    CUresult r = cuInit_(0);
    if (r) { fprintf(stderr, "cuInit: %d\n", r); return 1; }
    int dv = 0, rv = 0;
    cuDriverGetVersion_(&dv);
    cudaRuntimeGetVersion_(&rv);
    printf("version driver %d runtime %d\n", dv, rv);
    CUdevice dev;
    if ((r = cuDeviceGet_(&dev, ord))) { fprintf(stderr, "cuDeviceGet: %d\n", r); return 1; }
    char name[256] = {0};
    cuDeviceGetName_(name, sizeof name, dev);
    printf("name %s\n", name);
    CUuuid uuid;
    cuDeviceGetUuid_(&uuid, dev);
    hex("uuid", uuid.bytes, 16);
    size_t total = 0;
    cuDeviceTotalMem_(&total, dev);
    printf("total_mem %zu\n", total);
    for (int n = 1; n < 256; n++) {
        int v;
        if (cuDeviceGetAttribute_(&v, n, dev) == CUDA_SUCCESS) printf("attr %d %d\n", n, v);
    }
    for (int n = 1; n < 256; n++) {
        int v;
        if (cudaDeviceGetAttribute_(&v, n, ord) == cudaSuccess) printf("rattr %d %d\n", n, v);
    }
    memset(&prop, 0xab, sizeof prop);
    cudaError_t e = cudaGetDeviceProperties_(&prop, ord);
    if (e) { fprintf(stderr, "cudaGetDeviceProperties: %d\n", e); return 1; }
    HEX(name);
    HEX(uuid);
    HEX(luid);
    HEX(luidDeviceNodeMask);
    HEX(totalGlobalMem);
    HEX(sharedMemPerBlock);
    HEX(regsPerBlock);
    HEX(warpSize);
    HEX(memPitch);
    HEX(maxThreadsPerBlock);
    HEX(maxThreadsDim);
    HEX(maxGridSize);
    HEX(totalConstMem);
    HEX(major);
    HEX(minor);
    HEX(textureAlignment);
    HEX(texturePitchAlignment);
    HEX(multiProcessorCount);
    HEX(integrated);
    HEX(canMapHostMemory);
    HEX(maxTexture1D);
    HEX(maxTexture1DMipmap);
    HEX(maxTexture2D);
    HEX(maxTexture2DMipmap);
    HEX(maxTexture2DLinear);
    HEX(maxTexture2DGather);
    HEX(maxTexture3D);
    HEX(maxTexture3DAlt);
    HEX(maxTextureCubemap);
    HEX(maxTexture1DLayered);
    HEX(maxTexture2DLayered);
    HEX(maxTextureCubemapLayered);
    HEX(maxSurface1D);
    HEX(maxSurface2D);
    HEX(maxSurface3D);
    HEX(maxSurface1DLayered);
    HEX(maxSurface2DLayered);
    HEX(maxSurfaceCubemap);
    HEX(maxSurfaceCubemapLayered);
    HEX(surfaceAlignment);
    HEX(concurrentKernels);
    HEX(ECCEnabled);
    HEX(pciBusID);
    HEX(pciDeviceID);
    HEX(pciDomainID);
    HEX(tccDriver);
    HEX(asyncEngineCount);
    HEX(unifiedAddressing);
    HEX(memoryBusWidth);
    HEX(l2CacheSize);
    HEX(persistingL2CacheMaxSize);
    HEX(maxThreadsPerMultiProcessor);
    HEX(streamPrioritiesSupported);
    HEX(globalL1CacheSupported);
    HEX(localL1CacheSupported);
    HEX(sharedMemPerMultiprocessor);
    HEX(regsPerMultiprocessor);
    HEX(managedMemory);
    HEX(isMultiGpuBoard);
    HEX(multiGpuBoardGroupID);
    HEX(hostNativeAtomicSupported);
    HEX(pageableMemoryAccess);
    HEX(concurrentManagedAccess);
    HEX(computePreemptionSupported);
    HEX(canUseHostPointerForRegisteredMem);
    HEX(cooperativeLaunch);
    HEX(sharedMemPerBlockOptin);
    HEX(pageableMemoryAccessUsesHostPageTables);
    HEX(directManagedMemAccessFromHost);
    HEX(maxBlocksPerMultiProcessor);
    HEX(accessPolicyMaxWindowSize);
    HEX(reservedSharedMemPerBlock);
    HEX(hostRegisterSupported);
    HEX(sparseCudaArraySupported);
    HEX(hostRegisterReadOnlySupported);
    HEX(timelineSemaphoreInteropSupported);
    HEX(memoryPoolsSupported);
    HEX(gpuDirectRDMASupported);
    HEX(gpuDirectRDMAFlushWritesOptions);
    HEX(gpuDirectRDMAWritesOrdering);
    HEX(memoryPoolSupportedHandleTypes);
    HEX(deferredMappingCudaArraySupported);
    HEX(ipcEventSupported);
    HEX(clusterLaunch);
    HEX(unifiedFunctionPointers);
    HEX(deviceNumaConfig);
    HEX(deviceNumaId);
    HEX(mpsEnabled);
    HEX(hostNumaId);
    HEX(gpuPciDeviceID);
    HEX(gpuPciSubsystemID);
    HEX(hostNumaMultinodeIpcSupported);
    HEX(reserved);
    for (size_t i = 0; i < sizeof prop; i++)
        if (!covered[i]) printf("padding %zu %02x\n", i, ((unsigned char *)&prop)[i]);
    return 0;
}
