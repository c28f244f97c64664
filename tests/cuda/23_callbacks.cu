// remora-test: kernels=yes  flags=none  gpus=1
// Host callbacks: cudaLaunchHostFunc and cudaStreamAddCallback run in stream order after the work
// before them, see the data that work produced, block the work after them (a copy issued after a
// callback reads what the callback wrote), and run in order across many callbacks.
#include <atomic>
#include <chrono>
#include <thread>
#include "remora_test.h"

__global__ void k_store(int* d, int v) { *d = v; }
__global__ void k_spin(unsigned long long ns) {
  unsigned long long t0 = remora_globaltimer();
  while (remora_globaltimer() - t0 < ns) {
  }
}
__global__ void k_add(int* d, const int* src) { *d += *src; }

struct Log {
  int order[64];
  int seen[64];
  std::atomic<int> n{0};
  int* pinned;  // host copy of the device value, written by cudaMemcpyAsync before each callback
};

struct Ctx {
  Log* log;
  int id;
};

static void CUDART_CB host_fn(void* p) {
  Ctx* c = (Ctx*)p;
  int k = c->log->n.fetch_add(1);
  c->log->order[k] = c->id;
  c->log->seen[k] = *c->log->pinned;
}

static cudaError_t g_status = cudaErrorUnknown;
static void CUDART_CB stream_cb(cudaStream_t, cudaError_t status, void* p) {
  g_status = status;
  host_fn(p);
}

static int* g_gate;
static void CUDART_CB slow_writer(void*) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  *g_gate = 777;  // pinned memory the next copy in the stream reads
}

int main() {
  CK(cudaSetDevice(0));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  int* d;
  CK(cudaMalloc(&d, 4 * sizeof(int)));
  Log log;
  CK(cudaMallocHost(&log.pinned, sizeof(int)));
  *log.pinned = 0;
  Ctx c1 = {&log, 1}, c2 = {&log, 2}, c3 = {&log, 3};

  k_store<<<1, 1, 0, s>>>(d, 10);
  CK(cudaMemcpyAsync(log.pinned, d, sizeof(int), cudaMemcpyDeviceToHost, s));
  CK(cudaLaunchHostFunc(s, host_fn, &c1));
  k_spin<<<1, 1, 0, s>>>(20000000ull);
  k_store<<<1, 1, 0, s>>>(d, 20);
  CK(cudaMemcpyAsync(log.pinned, d, sizeof(int), cudaMemcpyDeviceToHost, s));
  CK(cudaStreamAddCallback(s, stream_cb, &c2, 0));
  k_store<<<1, 1, 0, s>>>(d, 30);
  CK(cudaMemcpyAsync(log.pinned, d, sizeof(int), cudaMemcpyDeviceToHost, s));
  CK(cudaLaunchHostFunc(s, host_fn, &c3));
  CK_LAUNCH();
  CK(cudaStreamSynchronize(s));
  int n = log.n.load();
  printf("callbacks run: %d\n", n);
  for (int i = 0; i < n; i++) printf("callback %d saw %d\n", log.order[i], log.seen[i]);
  check("three callbacks in stream order", n == 3 && log.order[0] == 1 && log.order[1] == 2 && log.order[2] == 3);
  check("each saw the data of the work before it", log.seen[0] == 10 && log.seen[1] == 20 && log.seen[2] == 30);
  printf("cudaStreamAddCallback status: %s\n", cudaGetErrorName(g_status));

  // A callback blocks the stream: the copy after it reads what it wrote.
  int* gate;
  CK(cudaMallocHost(&gate, sizeof(int)));
  *gate = 1;
  g_gate = gate;
  CK(cudaLaunchHostFunc(s, slow_writer, nullptr));
  CK(cudaMemcpyAsync(d + 1, gate, sizeof(int), cudaMemcpyHostToDevice, s));
  int got = 0;
  CK(cudaMemcpyAsync(log.pinned, d + 1, sizeof(int), cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
  got = *log.pinned;
  printf("device value after the slow callback: %d\n", got);
  check("copy after a callback waited for it", got == 777);

  // Many callbacks interleaved with kernels, on two streams.
  cudaStream_t s2;
  CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  Log log2;
  log2.pinned = log.pinned;
  static Ctx many[40];
  for (int i = 0; i < 40; i++) {
    many[i] = {&log2, 100 + i};
    cudaStream_t st = (i < 20) ? s : s2;
    k_spin<<<1, 1, 0, st>>>(100000ull);
    CK(cudaLaunchHostFunc(st, host_fn, &many[i]));
  }
  CK(cudaDeviceSynchronize());
  n = log2.n.load();
  int pos_a = -1, pos_b = -1;
  bool in_order = true;
  for (int i = 0; i < n; i++) {
    int id = log2.order[i] - 100;
    int& last = id < 20 ? pos_a : pos_b;
    if (id <= last) in_order = false;
    last = id;
  }
  printf("callbacks on two streams: %d\n", n);
  check("each stream's callbacks ran in order", n == 40 && in_order);

  CK(cudaStreamDestroy(s));
  CK(cudaStreamDestroy(s2));
  CK(cudaFree(d));
  CK(cudaFreeHost(log.pinned));
  CK(cudaFreeHost(gate));
  return finish();
}
