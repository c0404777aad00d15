// NCCL through dlopen (engine/nccl.h). The few types and entry points used are declared here from
// NCCL's public API (nccl.h), so no NCCL header is needed to build.
#include "engine/nccl.h"

#include <dlfcn.h>
#include <glob.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>

#include "engine/check.h"
#include "engine/device_memory.h"

namespace u2pl {

namespace {

// From nccl.h: results, data types, reduction operations, the unique id.
using NcclResult = int;  // ncclResult_t; 0 = ncclSuccess
constexpr int kNcclFloat32 = 7, kNcclFloat64 = 8, kNcclSum = 0;
struct NcclUniqueId {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
};

struct NcclApi {
  NcclResult (*get_version)(int*) = nullptr;
  NcclResult (*get_unique_id)(NcclUniqueId*) = nullptr;
  NcclResult (*comm_init_rank)(void**, int, NcclUniqueId, int) = nullptr;
  NcclResult (*comm_destroy)(void*) = nullptr;
  const char* (*error_string)(NcclResult) = nullptr;
  NcclResult (*all_reduce)(const void*, void*, size_t, int, int, void*, void*) = nullptr;
  NcclResult (*all_gather)(const void*, void*, size_t, int, void*, void*) = nullptr;
  NcclResult (*broadcast)(const void*, void*, size_t, int, int, void*, void*) = nullptr;
};

// Opens `file` and takes every entry point; on failure the reason (and the library closed).
bool open_nccl(const std::string& file, NcclApi* api, int* version, std::string* why) {
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    *why = e ? e : "dlopen failed";
    return false;
  }
  const std::pair<const char*, void**> entries[] = {
      {"ncclGetVersion", reinterpret_cast<void**>(&api->get_version)},
      {"ncclGetUniqueId", reinterpret_cast<void**>(&api->get_unique_id)},
      {"ncclCommInitRank", reinterpret_cast<void**>(&api->comm_init_rank)},
      {"ncclCommDestroy", reinterpret_cast<void**>(&api->comm_destroy)},
      {"ncclGetErrorString", reinterpret_cast<void**>(&api->error_string)},
      {"ncclAllReduce", reinterpret_cast<void**>(&api->all_reduce)},
      {"ncclAllGather", reinterpret_cast<void**>(&api->all_gather)},
      {"ncclBroadcast", reinterpret_cast<void**>(&api->broadcast)}};
  for (const auto& [name, slot] : entries) {
    *slot = dlsym(h, name);
    if (!*slot) {
      *why = "does not export " + std::string(name) + " (not NCCL?)";
      dlclose(h);
      return false;
    }
  }
  if (api->get_version(version) != 0) *version = 0;
  return true;  // kept open for the process's life
}

// The nvidia/nccl/lib/libnccl.so.2 files of Python environments, in the order of the header.
std::vector<std::string> python_candidates() {
  std::vector<std::string> roots;
  for (const char* env : {"VIRTUAL_ENV", "CONDA_PREFIX"})
    if (const char* v = std::getenv(env); v && *v) roots.push_back(v);
  if (const char* home = std::getenv("HOME"); home && *home) roots.push_back(std::string(home) + "/.local");
  roots.push_back("/usr/local");
  roots.push_back("/usr");
  std::vector<std::string> out;
  for (const std::string& r : roots)
    for (const char* pattern : {"/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
                                "/lib/python3*/dist-packages/nvidia/nccl/lib/libnccl.so.2"}) {
      glob_t g{};
      if (glob((r + pattern).c_str(), 0, nullptr, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
      globfree(&g);
    }
  return out;
}

NcclApi g_api;  // set once, by nccl_library()

NcclLibrary search_nccl(NcclApi* chosen) {
  NcclLibrary lib;
  std::vector<std::string> candidates;
  if (const char* f = std::getenv("NCCL_LIBRARY"); f && *f) candidates.emplace_back(f);
  candidates.emplace_back("libnccl.so.2");  // the loader's search path: LD_LIBRARY_PATH, ld.so.cache
  for (const std::string& p : python_candidates()) candidates.push_back(p);
  for (const std::string& c : candidates) {
    NcclApi api;
    std::string why;
    int version = 0;
    if (open_nccl(c, &api, &version, &why)) {
      lib.found = true;
      lib.path = c;
      lib.version = version;
      *chosen = api;
      return lib;
    }
    lib.tried.push_back(c + ": " + why);
  }
  std::ostringstream e;
  e << "NCCL not found (it moves CUDA tensors between processes); looked at";
  for (size_t i = 0; i < lib.tried.size(); ++i) e << (i ? "; " : " ") << lib.tried[i];
  e << " (without NCCL_LIBRARY set: the system's libnccl.so.2, then the nvidia/nccl/lib folders of Python "
       "environments). Install NCCL (NVIDIA's libnccl2 package or pip's nvidia-nccl-cu12) or set NCCL_LIBRARY "
       "to the file";
  lib.error = e.str();
  return lib;
}

}  // namespace

NcclLibrary find_nccl() {
  NcclApi unused;
  return search_nccl(&unused);
}

// The entry points used are those of the library found here, once.
const NcclLibrary& nccl_library() {
  static const NcclLibrary lib = search_nccl(&g_api);
  return lib;
}

namespace {

void nccl_check(NcclResult r, const char* what) {
  if (r == 0) return;
  const char* s = g_api.error_string ? g_api.error_string(r) : "unknown";
  U2PL_FAIL("NCCL: " << what << " failed: " << s << " (" << r << ")");
}

void* stream_handle(Context& ctx) {
  U2PL_CHECK(ctx.device() == Device::CUDA, "NCCL collectives run on a CUDA context");
  return cuda_stream_handle(ctx.cuda());
}

}  // namespace

int process_device(int local_rank, int local_size, int devices) {
  U2PL_CHECK(devices > 0, "process " << local_rank << " of " << local_size << " on its node sees no CUDA device");
  if (local_size <= devices) return local_rank;
  U2PL_CHECK(devices == 1, local_size << " processes were started on a node with " << devices
                                      << " CUDA devices: start at most " << devices
                                      << " processes per node (one device each), or train on the cpu");
  return 0;
}

void use_process_device(const Comm& c) {
  if (c.size() == 1) return;
  cuda_use_device(process_device(c.local_rank(), c.local_size(), cuda_device_count()));
}

NcclComm::NcclComm(Comm& host) : rank_(host.rank()), size_(host.size()) {
  const NcclLibrary& lib = nccl_library();
  // Every process must agree before any waits in ncclCommInitRank.
  const std::vector<int32_t> found = host.gather_all(int32_t(lib.found));
  for (size_t r = 0; r < found.size(); ++r)
    U2PL_CHECK(found[r], (int(r) == rank_ ? lib.error : "process " + std::to_string(r) + ": NCCL not found"));
  // Rank 0's id, with whether it could make one: the others must not wait for an id that never comes.
  struct {
    NcclUniqueId id;
    NcclResult status;
  } made{};
  if (rank_ == 0) made.status = g_api.get_unique_id(&made.id);
  host.broadcast(&made, sizeof(made), 0);
  nccl_check(made.status, "ncclGetUniqueId (on process 0)");
  const NcclUniqueId id = made.id;
  nccl_check(g_api.comm_init_rank(&comm_, size_, id, rank_),
             "ncclCommInitRank (each process needs a CUDA device of its own: two processes on one device are "
             "refused)");
}

NcclComm::~NcclComm() {
  if (comm_) g_api.comm_destroy(comm_);
}

void NcclComm::allreduce_sum(Context& ctx, float* data, int64_t n) {
  nccl_check(g_api.all_reduce(data, data, size_t(n), kNcclFloat32, kNcclSum, comm_, stream_handle(ctx)),
             "ncclAllReduce");
}

void NcclComm::allreduce_sum(Context& ctx, double* data, int64_t n) {
  nccl_check(g_api.all_reduce(data, data, size_t(n), kNcclFloat64, kNcclSum, comm_, stream_handle(ctx)),
             "ncclAllReduce");
}

void NcclComm::allgather(Context& ctx, const float* mine, int64_t n, float* all) {
  nccl_check(g_api.all_gather(mine, all, size_t(n), kNcclFloat32, comm_, stream_handle(ctx)), "ncclAllGather");
}

void NcclComm::allgather(Context& ctx, const double* mine, int64_t n, double* all) {
  nccl_check(g_api.all_gather(mine, all, size_t(n), kNcclFloat64, comm_, stream_handle(ctx)), "ncclAllGather");
}

void NcclComm::allreduce_sum_on(void* stream, float* data, int64_t n) {
  nccl_check(g_api.all_reduce(data, data, size_t(n), kNcclFloat32, kNcclSum, comm_, stream), "ncclAllReduce");
}

void NcclComm::broadcast(Context& ctx, float* data, int64_t n, int root) {
  nccl_check(g_api.broadcast(data, data, size_t(n), kNcclFloat32, root, comm_, stream_handle(ctx)), "ncclBroadcast");
}

}  // namespace u2pl
