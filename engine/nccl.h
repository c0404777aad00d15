// NCCL, found at run time: the collectives of CUDA tensors between the processes of a run
// (engine/comm.h moves host memory). The library is opened with dlopen, so every build compiles
// this path and none needs NCCL to build or to run on one process: NCCL_LIBRARY (a file), the
// system's libnccl.so.2 (the loader's search path), or the nvidia/nccl/lib folder of a Python
// environment (pip's nvidia-nccl-cu* wheels: $VIRTUAL_ENV, $CONDA_PREFIX, ~/.local, /usr/local,
// /usr). A communicator is bootstrapped through the host Comm (rank 0's unique id broadcast by
// MPI). Covered by tests/test_engine.cpp (the search and its errors) and tests/test_cuda_train.cpp
// (a one-process communicator, in the cuda suite).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/comm.h"
#include "engine/context.h"

namespace u2pl {

struct NcclLibrary {
  bool found = false;
  std::string path;                // the file opened
  int version = 0;                 // ncclGetVersion, e.g. 22703 for 2.27.3
  std::vector<std::string> tried;  // every place looked at, in order, with why it failed
  std::string error;               // when not found: one line naming every place tried
};

// Looks for the library now (tests); nccl_library() does it once per process and keeps it.
NcclLibrary find_nccl();
const NcclLibrary& nccl_library();

// The CUDA device of a process that is `local_rank` of the `local_size` processes of its node,
// which shows it `devices` devices: its local rank's when there are enough, device 0 when it sees
// one only (the launcher gave each process its own: srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES);
// otherwise refused, saying how many processes the node can take.
int process_device(int local_rank, int local_size, int devices);
// Several processes on CUDA: makes this process's device (process_device) the current one, before
// any CUDA memory or context of the run. One process: nothing (device 0, as CUDA picks).
void use_process_device(const Comm& c);

// A communicator over the CUDA devices of the processes of `host`, one device each (the current
// one). Collective: every process constructs it. Throws, naming where it looked, when NCCL is
// missing. The collectives are queued on ctx's stream (in place where the API says so).
class NcclComm {
 public:
  explicit NcclComm(Comm& host);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

  void allreduce_sum(Context& ctx, float* data, int64_t n);
  void allreduce_sum(Context& ctx, double* data, int64_t n);
  // `mine` (n floats) of every process into `all` (size() · n, rank order).
  void allgather(Context& ctx, const float* mine, int64_t n, float* all);
  void allgather(Context& ctx, const double* mine, int64_t n, double* all);
  // The sum of allreduce_sum, queued on `stream` (a cudaStream_t: a SideStream's) instead of a
  // context's.
  void allreduce_sum_on(void* stream, float* data, int64_t n);
  void broadcast(Context& ctx, float* data, int64_t n, int root);

 private:
  void* comm_ = nullptr;  // ncclComm_t
  int rank_ = 0, size_ = 1;
};

}  // namespace u2pl
