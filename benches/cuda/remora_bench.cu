// remora_bench: the CUDA program `remora bench` runs natively and through remora, unchanged, so
// both sides of every comparison are the same binary doing the same calls.
//
// Build (what `remora bench` does; see docs/BENCHMARKS.md):
//   nvcc -O2 -cudart shared -gencode arch=compute_90,code=sm_90 \
//        -gencode arch=compute_90,code=compute_90 -ldl -o remora_bench remora_bench.cu
//
// Usage: remora_bench [--quick] [--skip-kernels REASON]
//   --quick          fewer iterations and sizes up to 16 MiB (CI)
//   --skip-kernels   report every row that launches a kernel as skipped, with REASON
//                    (remora's emulated backend runs no nvcc-built kernels)
//
// Output, on stdout, one line per item, fields separated by single spaces:
//   bench remora_bench 1                              format version; always the first line
//   info KEY VALUE...                                 the libcudart.so.13 loaded (cudart), mode,
//                                                     device name, versions
//   result NAME UNIT COUNT P50 P99 WORST              one measurement
//   skip NAME UNIT REASON...                          a measurement not taken, and why
//   error WHAT...                                     a CUDA call failed; the program exits 1
//   done                                              always the last line of a complete run
// Every operation is timed on its own (steady_clock around each call or round), COUNT times
// after a few untimed warm-up iterations; P50/P99 are nearest-rank percentiles and WORST the
// slowest one. UNIT `us`: microseconds per operation. UNIT `GB/s` (copies): bytes / time of one
// copy, at the P50, P99 and slowest copy times (so P99 <= P50 there; 1 GB = 1e9 bytes).
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;

bool g_quick = false;
const char *g_skip_kernels = nullptr;  // reason, or null when kernels run

[[noreturn]] void fail(const char *what, cudaError_t e, int line) {
  std::printf("error %s (line %d): %s %s\n", what, line, cudaGetErrorName(e), cudaGetErrorString(e));
  std::fflush(stdout);
  std::exit(1);
}

#define CK(x)                         \
  do {                                \
    cudaError_t e_ = (x);             \
    if (e_ != cudaSuccess) {          \
      fail(#x, e_, __LINE__);         \
    }                                 \
  } while (0)

__global__ void empty_kernel() {}

__global__ void vector_add(const float *a, const float *b, float *c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

double seconds(clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Nearest-rank percentile of sorted samples.
double pct(const std::vector<double> &sorted, double p) {
  size_t n = sorted.size();
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(n) + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

// Print a latency row from per-operation times in seconds.
void report_us(const char *name, std::vector<double> t) {
  std::sort(t.begin(), t.end());
  std::printf("result %s us %zu %.3f %.3f %.3f\n", name, t.size(), pct(t, 50) * 1e6, pct(t, 99) * 1e6,
              t.back() * 1e6);
  std::fflush(stdout);
}

// Print a throughput row from per-copy times in seconds.
void report_gbps(const std::string &name, size_t bytes, std::vector<double> t) {
  std::sort(t.begin(), t.end());
  double b = static_cast<double>(bytes) / 1e9;
  std::printf("result %s GB/s %zu %.4f %.4f %.4f\n", name.c_str(), t.size(), b / pct(t, 50), b / pct(t, 99),
              b / t.back());
  std::fflush(stdout);
}

void skip(const char *name, const char *unit, const char *reason) {
  std::printf("skip %s %s %s\n", name, unit, reason);
  std::fflush(stdout);
}

// Time `f` `iters` times after `iters / 10` (at least 3) untimed calls.
template <class F>
std::vector<double> time_each(int iters, F f) {
  for (int i = 0; i < std::max(3, iters / 10); i++) f();
  std::vector<double> t;
  t.reserve(static_cast<size_t>(iters));
  for (int i = 0; i < iters; i++) {
    auto t0 = clk::now();
    f();
    auto t1 = clk::now();
    t.push_back(seconds(t0, t1));
  }
  return t;
}

std::string size_name(size_t bytes) {
  char buf[32];
  if (bytes >= (size_t(1) << 20)) {
    std::snprintf(buf, sizeof buf, "%zuMiB", bytes >> 20);
  } else {
    std::snprintf(buf, sizeof buf, "%zuKiB", bytes >> 10);
  }
  return buf;
}

}  // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      g_quick = true;
    } else if (std::strcmp(argv[i], "--skip-kernels") == 0 && i + 1 < argc) {
      g_skip_kernels = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--skip-kernels REASON]\n", argv[0]);
      return 2;
    }
  }
  const bool kernels = g_skip_kernels == nullptr;
  const int lat_iters = g_quick ? 200 : 2000;
  const int alloc_iters = g_quick ? 50 : 500;

  std::printf("bench remora_bench 1\n");
  // Which libcudart.so.13 this process runs on: remora bench checks that a remote run really
  // went through remora's library and a native run through NVIDIA's.
  Dl_info dl;
  void *sym = dlsym(RTLD_DEFAULT, "cudaGetDeviceCount");
  if (sym != nullptr && dladdr(sym, &dl) != 0 && dl.dli_fname != nullptr) {
    std::printf("info cudart %s\n", dl.dli_fname);
  }
  std::printf("info mode %s\n", g_quick ? "quick" : "full");
  int devices = 0;
  CK(cudaGetDeviceCount(&devices));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int runtime = 0, driver = 0;
  CK(cudaRuntimeGetVersion(&runtime));
  CK(cudaDriverGetVersion(&driver));
  std::printf("info device %s\n", prop.name);
  std::printf("info compute_capability %d.%d\n", prop.major, prop.minor);
  std::printf("info devices %d\n", devices);
  std::printf("info runtime_version %d\n", runtime);
  std::printf("info driver_version %d\n", driver);
  std::fflush(stdout);
  CK(cudaSetDevice(0));
  CK(cudaFree(nullptr));  // context creation, out of every timed loop

  std::vector<size_t> sizes = {size_t(4) << 10, size_t(64) << 10, size_t(1) << 20, size_t(16) << 20,
                               size_t(256) << 20};
  if (g_quick) sizes = {size_t(4) << 10, size_t(1) << 20, size_t(16) << 20};
  const size_t big = sizes.back();
  char *dev = nullptr;
  CK(cudaMalloc(&dev, big));
  char *pageable = static_cast<char *>(std::malloc(big));
  if (pageable == nullptr) {
    std::printf("error malloc(%zu) failed\n", big);
    return 1;
  }
  std::memset(pageable, 1, big);
  char *pinned = nullptr;
  CK(cudaMallocHost(&pinned, big));
  std::memset(pinned, 1, big);
  CK(cudaMemcpy(dev, pageable, big, cudaMemcpyHostToDevice));

  // Calls that do no device work. cudaGetDeviceCount: a runtime call (remora answers it from
  // the client's cache). cudaStreamQuery / cudaDeviceSynchronize on an idle device: the cheapest
  // calls remora forwards to the server (one round trip each).
  report_us("get_device_count", time_each(lat_iters, [] {
              int n = 0;
              CK(cudaGetDeviceCount(&n));
            }));
  report_us("stream_query_idle", time_each(lat_iters, [] { CK(cudaStreamQuery(0)); }));
  report_us("device_sync_idle", time_each(lat_iters, [] { CK(cudaDeviceSynchronize()); }));

  // 4-byte copies: the latency of one synchronous copy.
  report_us("memcpy_h2d_4B_pageable",
            time_each(lat_iters, [&] { CK(cudaMemcpy(dev, pageable, 4, cudaMemcpyHostToDevice)); }));
  report_us("memcpy_d2h_4B_pageable",
            time_each(lat_iters, [&] { CK(cudaMemcpy(pageable, dev, 4, cudaMemcpyDeviceToHost)); }));
  report_us("memcpy_h2d_4B_pinned",
            time_each(lat_iters, [&] { CK(cudaMemcpy(dev, pinned, 4, cudaMemcpyHostToDevice)); }));
  report_us("memcpy_d2h_4B_pinned",
            time_each(lat_iters, [&] { CK(cudaMemcpy(pinned, dev, 4, cudaMemcpyDeviceToHost)); }));

  // Launches: what the caller pays for an asynchronous launch, and a launch waited for.
  if (kernels) {
    report_us("launch_async", time_each(lat_iters, [] { empty_kernel<<<1, 1>>>(); }));
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    report_us("launch_sync", time_each(lat_iters, [] {
                empty_kernel<<<1, 1>>>();
                CK(cudaDeviceSynchronize());
              }));
    // Throughput: 100 launches back to back, then one synchronisation; time per launch.
    auto burst = time_each(g_quick ? 20 : 200, [] {
      for (int i = 0; i < 100; i++) empty_kernel<<<1, 1>>>();
      CK(cudaDeviceSynchronize());
    });
    for (double &t : burst) t /= 100;
    report_us("launch_burst_100", burst);
  } else {
    skip("launch_async", "us", g_skip_kernels);
    skip("launch_sync", "us", g_skip_kernels);
    skip("launch_burst_100", "us", g_skip_kernels);
  }

  report_us("malloc_free_1MiB", time_each(alloc_iters, [] {
              void *p = nullptr;
              CK(cudaMalloc(&p, size_t(1) << 20));
              CK(cudaFree(p));
            }));

  // Bulk copies, both directions, pageable and pinned host memory.
  for (size_t sz : sizes) {
    int iters = sz <= (size_t(64) << 10) ? 500 : sz <= (size_t(1) << 20) ? 100 : sz <= (size_t(16) << 20) ? 30 : 10;
    if (g_quick) iters = sz <= (size_t(1) << 20) ? 20 : 5;
    for (int pin = 0; pin < 2; pin++) {
      char *host = pin ? pinned : pageable;
      std::string suffix = std::string(pin ? "pinned_" : "pageable_") + size_name(sz);
      report_gbps("copy_h2d_" + suffix, sz,
                  time_each(iters, [&] { CK(cudaMemcpy(dev, host, sz, cudaMemcpyHostToDevice)); }));
      report_gbps("copy_d2h_" + suffix, sz,
                  time_each(iters, [&] { CK(cudaMemcpy(host, dev, sz, cudaMemcpyDeviceToHost)); }));
    }
  }
  // An asynchronous copy from pageable memory on an idle stream, then a synchronisation.
  {
    const size_t sz = size_t(16) << 20;
    report_gbps("copy_h2d_pageable_async_16MiB", sz, time_each(g_quick ? 5 : 30, [&] {
                  CK(cudaMemcpyAsync(dev, pageable, sz, cudaMemcpyHostToDevice, 0));
                  CK(cudaStreamSynchronize(0));
                }));
  }
  CK(cudaFreeHost(pinned));
  std::free(pageable);
  CK(cudaFree(dev));

  // End to end: vector add on 16 Mi floats; each round copies both inputs in, adds, copies the
  // sum back (pageable host memory, as most programs use).
  if (kernels) {
    const int n = 1 << 24;
    const size_t bytes = size_t(n) * sizeof(float);
    float *a = nullptr, *b = nullptr, *c = nullptr;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMalloc(&c, bytes));
    std::vector<float> ha(n, 1.0f), hb(n, 2.0f), hc(n, 0.0f);
    auto rounds = time_each(g_quick ? 3 : 20, [&] {
      CK(cudaMemcpy(a, ha.data(), bytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(b, hb.data(), bytes, cudaMemcpyHostToDevice));
      vector_add<<<(n + 255) / 256, 256>>>(a, b, c, n);
      CK(cudaPeekAtLastError());
      CK(cudaMemcpy(hc.data(), c, bytes, cudaMemcpyDeviceToHost));
    });
    for (int i = 0; i < n; i++) {
      if (hc[static_cast<size_t>(i)] != 3.0f) {
        std::printf("error vector_add result wrong at %d: %f\n", i, hc[static_cast<size_t>(i)]);
        return 1;
      }
    }
    report_us("vector_add_16Mi_round", rounds);
    CK(cudaFree(a));
    CK(cudaFree(b));
    CK(cudaFree(c));
  } else {
    skip("vector_add_16Mi_round", "us", g_skip_kernels);
  }

  std::printf("done\n");
  return 0;
}
