// remora-test: kernels=no  flags=none  gpus=1
// CUDA graphs without kernels: a hand-built graph of memset, 3D and 1D memcpy, host, and
// memory alloc/free nodes; cudaGraphInstantiate, cudaGraphLaunch, cudaGraphClone,
// cudaGraphNodeFindInClone, cudaGraphMemsetNodeSetParams, cudaGraphExecUpdate, cudaGraphGetNodes;
// stream capture of copies and memsets.
#include "remora_test.h"

static int g_host_runs = 0;
static void CUDART_CB on_host(void*) { g_host_runs++; }

int main() {
  CK(cudaSetDevice(0));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const size_t n = 1 << 20;
  unsigned char *d, *pin;
  CK(cudaMalloc(&d, n));
  CK(cudaMallocHost(&pin, n));
  fill_pattern(pin, n, 9);

  // pin -> d (3D memcpy node) -> memset the first 4 KiB -> host node -> d -> pin (1D node),
  // with a scratch allocation made and freed inside the graph.
  cudaGraph_t g;
  CK(cudaGraphCreate(&g, 0));
  cudaGraphNode_t up, set, host, alloc, mid, fr, down;
  cudaMemcpy3DParms p = {};
  p.srcPtr = make_cudaPitchedPtr(pin, n, n, 1);
  p.dstPtr = make_cudaPitchedPtr(d, n, n, 1);
  p.extent = make_cudaExtent(n, 1, 1);
  p.kind = cudaMemcpyHostToDevice;
  CK(cudaGraphAddMemcpyNode(&up, g, nullptr, 0, &p));
  cudaMemsetParams mp = {};
  mp.dst = d;
  mp.value = 0x77;
  mp.elementSize = 1;
  mp.width = 4096;
  mp.height = 1;
  CK(cudaGraphAddMemsetNode(&set, g, &up, 1, &mp));
  cudaHostNodeParams hp = {};
  hp.fn = on_host;
  CK(cudaGraphAddHostNode(&host, g, &set, 1, &hp));
  cudaMemAllocNodeParams ap = {};
  ap.poolProps.allocType = cudaMemAllocationTypePinned;
  ap.poolProps.location.type = cudaMemLocationTypeDevice;
  ap.poolProps.location.id = 0;
  ap.bytesize = n;
  CK(cudaGraphAddMemAllocNode(&alloc, g, &host, 1, &ap));
  check("alloc node returned an address", ap.dptr != nullptr);
  // d -> scratch -> (freed) ; then scratch's copy goes back to pin via d2h from d.
  CK(cudaGraphAddMemcpyNode1D(&mid, g, &alloc, 1, ap.dptr, d, n, cudaMemcpyDeviceToDevice));
  CK(cudaGraphAddMemFreeNode(&fr, g, &mid, 1, ap.dptr));
  CK(cudaGraphAddMemcpyNode1D(&down, g, &fr, 1, pin, d, n, cudaMemcpyDeviceToHost));
  size_t nodes = 0;
  CK(cudaGraphGetNodes(g, nullptr, &nodes));
  printf("nodes: %zu\n", nodes);
  cudaGraphExec_t ge;
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  bool ok = all_bytes(pin, 4096, 0x77);
  for (size_t i = 4096; i < n && ok; i++) ok = pin[i] == pattern_byte(i, 9);
  check("graph of copies, memset, host, alloc/free nodes", ok);
  printf("host node runs: %d\n", g_host_runs);

  // Launch twice more: the pattern must be restored in pin first (the graph copies pin -> d).
  fill_pattern(pin, n, 10);
  CK(cudaGraphLaunch(ge, s));
  CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  ok = all_bytes(pin, 4096, 0x77);
  for (size_t i = 4096; i < n && ok; i++) ok = pin[i] == pattern_byte(i, 10);
  check("two more launches", ok && g_host_runs == 3);

  // A smaller graph (graphs with alloc/free nodes cannot be cloned): clone it, change the
  // memset value in the clone, update the executable graph from the clone.
  cudaGraph_t g2;
  CK(cudaGraphCreate(&g2, 0));
  cudaGraphNode_t u2, s2, d2;
  CK(cudaGraphAddMemcpyNode(&u2, g2, nullptr, 0, &p));
  mp.value = 0x11;
  CK(cudaGraphAddMemsetNode(&s2, g2, &u2, 1, &mp));
  CK(cudaGraphAddMemcpyNode1D(&d2, g2, &s2, 1, pin, d, n, cudaMemcpyDeviceToHost));
  cudaGraphExec_t ge2;
  CK(cudaGraphInstantiate(&ge2, g2, 0));
  mp.value = 0x22;
  cudaGraph_t g3;
  CK(cudaGraphClone(&g3, g2));
  size_t cnodes = 0;
  CK(cudaGraphGetNodes(g3, nullptr, &cnodes));
  printf("clone nodes: %zu\n", cnodes);
  cudaGraphNode_t clone_set;
  CK(cudaGraphNodeFindInClone(&clone_set, s2, g3));
  CK(cudaGraphMemsetNodeSetParams(clone_set, &mp));
  cudaGraphExecUpdateResultInfo info;
  CK(cudaGraphExecUpdate(ge2, g3, &info));
  printf("update result: %d\n", (int)info.result);
  fill_pattern(pin, n, 11);
  CK(cudaGraphLaunch(ge2, s));
  CK(cudaStreamSynchronize(s));
  ok = all_bytes(pin, 4096, 0x22);
  for (size_t i = 4096; i < n && ok; i++) ok = pin[i] == pattern_byte(i, 11);
  check("executable graph updated from a modified clone", ok);

  // Stream capture of copies and memsets only.
  unsigned char* d2buf;
  CK(cudaMalloc(&d2buf, n));
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  CK(cudaMemcpyAsync(d, pin, n, cudaMemcpyHostToDevice, s));
  CK(cudaMemsetAsync(d + 100, 0x5e, 50, s));
  CK(cudaMemcpyAsync(d2buf, d, n, cudaMemcpyDeviceToDevice, s));
  CK(cudaMemcpyAsync(pin, d2buf, n, cudaMemcpyDeviceToHost, s));
  cudaGraph_t cap;
  CK(cudaStreamEndCapture(s, &cap));
  CK(cudaGraphGetNodes(cap, nullptr, &nodes));
  printf("captured nodes: %zu\n", nodes);
  cudaGraphExec_t cape;
  CK(cudaGraphInstantiate(&cape, cap, 0));
  fill_pattern(pin, n, 12);
  CK(cudaGraphLaunch(cape, s));
  CK(cudaStreamSynchronize(s));
  ok = all_bytes(pin + 100, 50, 0x5e);
  for (size_t i = 0; i < n && ok; i++)
    if (i < 100 || i >= 150) ok = pin[i] == pattern_byte(i, 12);
  check("captured copy/memset graph", ok);

  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphExecDestroy(ge2));
  CK(cudaGraphExecDestroy(cape));
  CK(cudaGraphDestroy(g));
  CK(cudaGraphDestroy(g2));
  CK(cudaGraphDestroy(g3));
  CK(cudaGraphDestroy(cap));
  CK(cudaStreamDestroy(s));
  CK(cudaFree(d));
  CK(cudaFree(d2buf));
  CK(cudaFreeHost(pin));
  return finish();
}
