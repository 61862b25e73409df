// The standard path's step loop, replayed from a cached CUDA graph (rnn_cuda.h,
// run_step_loop), and what the paths read from the environment and the device.
//
// Why a graph: a step is a few microseconds of GPU work, about what a kernel launch costs
// the host, so T launches per call would be bound by the host. The step kernels read every
// pointer and size from a device copy of the call's argument struct, never from their
// launch parameters, so the graph captured for one key (shape, cell, dtype, launch
// configuration) serves every call with that key: a call enqueues the copy of its argument
// struct into the graph's own argument block, then launches the graph.
//
// Safety of the shared argument block: CUDA orders the launches of one executable graph one
// after another (whatever streams they are enqueued on), and each call makes its stream wait
// for the previous launch of the graph (an event recorded after it) before it overwrites the
// block; both happen under the cache's lock. Entries live until the process ends (never
// destroyed while a launch may be pending); past kMaxEntries keys, calls run directly.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "rnn_cuda.h"

namespace fastrnn::cuda {

PathChoice path_from_env() {
  const char* v = std::getenv("FASTRNN_CUDA_PATH");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return PathChoice::Auto;
  if (std::strcmp(v, "standard") == 0) return PathChoice::Standard;
  if (std::strcmp(v, "persistent") == 0) return PathChoice::Persistent;
  throw std::invalid_argument(std::string("FASTRNN_CUDA_PATH must be auto, standard or ") +
                              "persistent, got '" + v + "'");
}

bool graphs_from_env() {
  const char* v = std::getenv("FASTRNN_CUDA_GRAPHS");
  return !(v != nullptr && std::strcmp(v, "0") == 0);
}

const DeviceInfo& current_device_info() {
  static std::mutex mutex;
  static std::map<int, DeviceInfo> cache;
  int dev = 0;
  FASTRNN_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(dev);
  if (it == cache.end()) {
    DeviceInfo info;
    info.device = dev;
    FASTRNN_CUDA_CHECK(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, dev));
    int optin = 0;
    FASTRNN_CUDA_CHECK(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    info.smem_optin = (std::size_t)optin;
    it = cache.emplace(dev, info).first;
  }
  return it->second;  // std::map nodes never move
}

namespace {

constexpr std::size_t kMaxEntries = 64;

struct GraphEntry {
  cudaGraphExec_t exec = nullptr;
  void* args = nullptr;  // the graph's argument block (device memory)
  cudaEvent_t done = nullptr;
};

struct GraphCache {
  std::mutex mutex;
  std::map<std::string, GraphEntry> entries;
  std::map<int, cudaStream_t> capture_streams;  // one private stream per device
};

GraphCache& cache() {
  static GraphCache* c = new GraphCache;  // never destroyed: entries may outlive main()
  return *c;
}

bool is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  FASTRNN_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Captures `steps` (reading its arguments from `args`) into an executable graph.
cudaGraphExec_t capture(cudaStream_t cs, StepsFn steps, const void* ctx, const void* args) {
  FASTRNN_CUDA_CHECK(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    steps(args, cs, ctx);
  } catch (...) {
    (void)cudaStreamEndCapture(cs, &graph);  // leaves the stream out of capture mode
    if (graph) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    throw;
  }
  FASTRNN_CUDA_CHECK(cudaStreamEndCapture(cs, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  FASTRNN_CUDA_CHECK(err);
  return exec;
}

}  // namespace

void run_step_loop(const std::string& key, std::size_t args_bytes, LoadFn load, StepsFn steps,
                   const void* ctx, void* scratch_args, cudaStream_t stream) {
  auto direct = [&] {
    load(scratch_args, stream, ctx);
    steps(scratch_args, stream, ctx);
  };
  if (!graphs_from_env() || is_capturing(stream)) return direct();
  GraphCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.entries.find(key);
  if (it == c.entries.end()) {
    if (c.entries.size() >= kMaxEntries) return direct();
    int dev = 0;
    FASTRNN_CUDA_CHECK(cudaGetDevice(&dev));
    auto cs = c.capture_streams.find(dev);
    if (cs == c.capture_streams.end()) {
      cudaStream_t s = nullptr;
      FASTRNN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      cs = c.capture_streams.emplace(dev, s).first;
    }
    GraphEntry e;
    FASTRNN_CUDA_CHECK(cudaMalloc(&e.args, args_bytes));
    try {
      FASTRNN_CUDA_CHECK(cudaEventCreateWithFlags(&e.done, cudaEventDisableTiming));
      e.exec = capture(cs->second, steps, ctx, e.args);
    } catch (...) {
      if (e.done) (void)cudaEventDestroy(e.done);
      (void)cudaFree(e.args);
      throw;
    }
    it = c.entries.emplace(key, e).first;
  }
  const GraphEntry& e = it->second;
  // The previous launch of this graph has finished reading its argument block.
  FASTRNN_CUDA_CHECK(cudaStreamWaitEvent(stream, e.done, 0));
  load(e.args, stream, ctx);
  FASTRNN_CUDA_CHECK(cudaGraphLaunch(e.exec, stream));
  FASTRNN_CUDA_CHECK(cudaEventRecord(e.done, stream));
}

}  // namespace fastrnn::cuda
