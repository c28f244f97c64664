// remora-test: kernels=no  flags=none  gpus=1
// cudaPointerGetAttributes on device memory (start and interior), cudaMallocHost and cudaHostAlloc
// memory, registered malloc'd memory, plain pageable memory and a stack variable.
#include "remora_test.h"

static const char* type_name(cudaMemoryType t) {
  switch (t) {
    case cudaMemoryTypeUnregistered: return "Unregistered";
    case cudaMemoryTypeHost: return "Host";
    case cudaMemoryTypeDevice: return "Device";
    case cudaMemoryTypeManaged: return "Managed";
  }
  return "?";
}

int main() {
  CK(cudaSetDevice(0));
  cudaPointerAttributes a;

  char* d = nullptr;
  CK(cudaMalloc(&d, 1 << 20));
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, d));
  printf("device memory: type %s, device %d\n", type_name(a.type), a.device);
  check("device memory: devicePointer is the pointer", a.devicePointer == d);
  check("device memory: hostPointer is null", a.hostPointer == nullptr);
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, d + 1000));
  printf("device memory + 1000: type %s, device %d\n", type_name(a.type), a.device);
  check("interior pointer: devicePointer is the pointer", a.devicePointer == d + 1000);

  void* h = nullptr;
  CK(cudaMallocHost(&h, 1 << 20));
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, h));
  printf("cudaMallocHost memory: type %s, device %d\n", type_name(a.type), a.device);
  check("cudaMallocHost memory: hostPointer is the pointer", a.hostPointer == h);
  check("cudaMallocHost memory: devicePointer is set", a.devicePointer != nullptr);

  void* ha = nullptr;
  CK(cudaHostAlloc(&ha, 1 << 16, cudaHostAllocPortable));
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, (char*)ha + 17));
  printf("cudaHostAlloc memory + 17: type %s\n", type_name(a.type));
  check("cudaHostAlloc memory + 17: hostPointer is the pointer", a.hostPointer == (char*)ha + 17);

  void* reg = aligned_alloc(4096, 1 << 16);
  CK(cudaHostRegister(reg, 1 << 16, cudaHostRegisterDefault));
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, reg));
  printf("registered memory: type %s\n", type_name(a.type));
  check("registered memory: hostPointer is the pointer", a.hostPointer == reg);
  CK(cudaHostUnregister(reg));
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, reg));
  printf("unregistered again: type %s\n", type_name(a.type));

  void* pageable = malloc(1 << 16);
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, pageable));
  printf("pageable malloc memory: type %s\n", type_name(a.type));
  printf("pageable: devicePointer is %s\n", a.devicePointer == nullptr ? "null" : "set");
  int on_stack = 5;
  memset(&a, 0xff, sizeof a);
  CK(cudaPointerGetAttributes(&a, &on_stack));
  printf("stack variable: type %s\n", type_name(a.type));
  expect_code("no error recorded by the queries", cudaGetLastError(), cudaSuccess);

  CK(cudaFree(d));
  CK(cudaFreeHost(h));
  CK(cudaFreeHost(ha));
  free(reg);
  free(pageable);
  return finish();
}
