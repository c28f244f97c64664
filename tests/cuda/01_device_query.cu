// remora-test: kernels=no  flags=none  gpus=1
// Device management: count, set/get device, cudaGetDeviceProperties fields, cudaDeviceGetAttribute
// for many attributes (values fixed by the sm_90 architecture are printed; device-specific ones
// only as facts and as agreement with the properties), invalid attribute/device arguments.
#include "remora_test.h"

struct AttrCase {
  const char* name;
  cudaDeviceAttr attr;
  long long prop;  // the matching cudaDeviceProp field
  bool print;      // value fixed by the architecture: print it
};

int main() {
  int count = 0;
  CK(cudaGetDeviceCount(&count));
  check("device count >= 1", count >= 1);
  CK(cudaSetDevice(0));
  int dev = -1;
  CK(cudaGetDevice(&dev));
  printf("current device: %d\n", dev);

  cudaDeviceProp p;
  memset(&p, 0, sizeof p);
  CK(cudaGetDeviceProperties(&p, 0));
  size_t name_len = strnlen(p.name, sizeof p.name);
  check("name is non-empty and terminated", name_len > 0 && name_len < sizeof p.name);
  printf("compute capability: %d.%d\n", p.major, p.minor);
  check("totalGlobalMem > 1 GiB", p.totalGlobalMem > (1ull << 30));
  printf("warpSize: %d\n", p.warpSize);
  printf("maxThreadsPerBlock: %d\n", p.maxThreadsPerBlock);
  printf("maxThreadsDim: %d %d %d\n", p.maxThreadsDim[0], p.maxThreadsDim[1], p.maxThreadsDim[2]);
  printf("maxGridSize: %d %d %d\n", p.maxGridSize[0], p.maxGridSize[1], p.maxGridSize[2]);
  printf("sharedMemPerBlock: %zu\n", p.sharedMemPerBlock);
  printf("sharedMemPerBlockOptin: %zu\n", p.sharedMemPerBlockOptin);
  printf("sharedMemPerMultiprocessor: %zu\n", p.sharedMemPerMultiprocessor);
  printf("regsPerBlock: %d\n", p.regsPerBlock);
  printf("regsPerMultiprocessor: %d\n", p.regsPerMultiprocessor);
  printf("totalConstMem: %zu\n", p.totalConstMem);
  printf("maxThreadsPerMultiProcessor: %d\n", p.maxThreadsPerMultiProcessor);
  printf("maxBlocksPerMultiProcessor: %d\n", p.maxBlocksPerMultiProcessor);
  printf("unifiedAddressing: %d\n", p.unifiedAddressing);
  printf("canMapHostMemory: %d\n", p.canMapHostMemory);
  printf("concurrentKernels: %d\n", p.concurrentKernels);
  printf("integrated: %d\n", p.integrated);
  printf("cooperativeLaunch: %d\n", p.cooperativeLaunch);
  printf("streamPrioritiesSupported: %d\n", p.streamPrioritiesSupported);
  check("multiProcessorCount > 0", p.multiProcessorCount > 0);
  check("l2CacheSize > 0", p.l2CacheSize > 0);
  check("memoryBusWidth > 0", p.memoryBusWidth > 0);
  check("asyncEngineCount > 0", p.asyncEngineCount > 0);
  check("memPitch > 0", p.memPitch > 0);

  const AttrCase cases[] = {
      {"MaxThreadsPerBlock", cudaDevAttrMaxThreadsPerBlock, p.maxThreadsPerBlock, true},
      {"MaxBlockDimX", cudaDevAttrMaxBlockDimX, p.maxThreadsDim[0], true},
      {"MaxBlockDimY", cudaDevAttrMaxBlockDimY, p.maxThreadsDim[1], true},
      {"MaxBlockDimZ", cudaDevAttrMaxBlockDimZ, p.maxThreadsDim[2], true},
      {"MaxGridDimX", cudaDevAttrMaxGridDimX, p.maxGridSize[0], true},
      {"MaxGridDimY", cudaDevAttrMaxGridDimY, p.maxGridSize[1], true},
      {"MaxGridDimZ", cudaDevAttrMaxGridDimZ, p.maxGridSize[2], true},
      {"MaxSharedMemoryPerBlock", cudaDevAttrMaxSharedMemoryPerBlock, (long long)p.sharedMemPerBlock, true},
      {"TotalConstantMemory", cudaDevAttrTotalConstantMemory, (long long)p.totalConstMem, true},
      {"WarpSize", cudaDevAttrWarpSize, p.warpSize, true},
      {"MaxRegistersPerBlock", cudaDevAttrMaxRegistersPerBlock, p.regsPerBlock, true},
      {"ComputeCapabilityMajor", cudaDevAttrComputeCapabilityMajor, p.major, true},
      {"ComputeCapabilityMinor", cudaDevAttrComputeCapabilityMinor, p.minor, true},
      {"UnifiedAddressing", cudaDevAttrUnifiedAddressing, p.unifiedAddressing, true},
      {"ConcurrentKernels", cudaDevAttrConcurrentKernels, p.concurrentKernels, true},
      {"CanMapHostMemory", cudaDevAttrCanMapHostMemory, p.canMapHostMemory, true},
      {"Integrated", cudaDevAttrIntegrated, p.integrated, true},
      {"MaxThreadsPerMultiProcessor", cudaDevAttrMaxThreadsPerMultiProcessor, p.maxThreadsPerMultiProcessor, true},
      {"MaxSharedMemoryPerMultiprocessor", cudaDevAttrMaxSharedMemoryPerMultiprocessor, (long long)p.sharedMemPerMultiprocessor, true},
      {"MaxRegistersPerMultiprocessor", cudaDevAttrMaxRegistersPerMultiprocessor, p.regsPerMultiprocessor, true},
      {"MaxSharedMemoryPerBlockOptin", cudaDevAttrMaxSharedMemoryPerBlockOptin, (long long)p.sharedMemPerBlockOptin, true},
      {"MaxBlocksPerMultiprocessor", cudaDevAttrMaxBlocksPerMultiprocessor, p.maxBlocksPerMultiProcessor, true},
      {"CooperativeLaunch", cudaDevAttrCooperativeLaunch, p.cooperativeLaunch, true},
      {"StreamPrioritiesSupported", cudaDevAttrStreamPrioritiesSupported, p.streamPrioritiesSupported, true},
      {"TextureAlignment", cudaDevAttrTextureAlignment, (long long)p.textureAlignment, true},
      {"TexturePitchAlignment", cudaDevAttrTexturePitchAlignment, (long long)p.texturePitchAlignment, true},
      {"MultiProcessorCount", cudaDevAttrMultiProcessorCount, p.multiProcessorCount, false},
      {"L2CacheSize", cudaDevAttrL2CacheSize, p.l2CacheSize, false},
      {"GlobalMemoryBusWidth", cudaDevAttrGlobalMemoryBusWidth, p.memoryBusWidth, false},
      {"AsyncEngineCount", cudaDevAttrAsyncEngineCount, p.asyncEngineCount, false},
      {"PciBusId", cudaDevAttrPciBusId, p.pciBusID, false},
      {"PciDeviceId", cudaDevAttrPciDeviceId, p.pciDeviceID, false},
  };
  int mismatches = 0;
  for (const AttrCase& c : cases) {
    int v = -12345;
    CK(cudaDeviceGetAttribute(&v, c.attr, 0));
    if (c.print) printf("attr %s: %d\n", c.name, v);
    if ((long long)v != c.prop) {
      printf("  attr %s differs from cudaDeviceProp\n", c.name);
      mismatches++;
    }
  }
  check("every attribute agrees with cudaDeviceProp", mismatches == 0);

  // Device-specific attributes: facts only.
  int v = 0;
  CK(cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, 0));
  check("attr ClockRate > 0", v > 0);
  CK(cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, 0));
  check("attr MemoryClockRate > 0", v > 0);
  CK(cudaDeviceGetAttribute(&v, cudaDevAttrComputeMode, 0));
  printf("attr ComputeMode: %d\n", v);
  CK(cudaDeviceGetAttribute(&v, cudaDevAttrMemoryPoolsSupported, 0));
  printf("attr MemoryPoolsSupported: %d\n", v);

  // Bad arguments.
  v = 0;
  expect_code("cudaDeviceGetAttribute(bad attribute)",
              cudaDeviceGetAttribute(&v, (cudaDeviceAttr)100000, 0), cudaErrorInvalidValue);
  consume_error("last error after bad attribute", cudaErrorInvalidValue);
  expect_code("cudaDeviceGetAttribute(device 99)",
              cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, 99), cudaErrorInvalidDevice);
  consume_error("last error after device 99", cudaErrorInvalidDevice);
  expect_code("cudaGetDeviceProperties(device 99)", cudaGetDeviceProperties(&p, 99),
              cudaErrorInvalidDevice);
  consume_error("last error after properties of device 99", cudaErrorInvalidDevice);
  expect_code("cudaGetDeviceProperties(device -1)", cudaGetDeviceProperties(&p, -1),
              cudaErrorInvalidDevice);
  consume_error("last error after properties of device -1", cudaErrorInvalidDevice);
  expect_code("cudaGetLastError is clear", cudaGetLastError(), cudaSuccess);

  // Every device answers the same basic queries.
  int ok_devices = 0;
  for (int d = 0; d < count; d++) {
    cudaDeviceProp q;
    if (cudaGetDeviceProperties(&q, d) == cudaSuccess && q.warpSize == 32 && q.totalGlobalMem > 0)
      ok_devices++;
  }
  check("every device reports warpSize 32 and memory", ok_devices == count);
  CK(cudaGetDevice(&dev));
  printf("current device at the end: %d\n", dev);
  return finish();
}
