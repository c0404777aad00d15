// The device context: which device runs the ops and, on CUDA, the stream, the cuDNN and cuBLAS
// handles and the one workspace every op borrows. In CPU-only builds a CUDA context throws
// "built without CUDA" (engine/cuda_stub.cpp). Covered by tests/test_engine.cpp.
#pragma once
#include <cstddef>

#include "engine/tensor.h"

namespace u2pl {

struct CudaHandles;  // engine/cuda/cuda_context.h: stream, cudnn, cublas
class Profiler;      // engine/profile.h
class Comm;          // engine/comm.h
class NcclComm;      // engine/nccl.h

// Told by each layer's backward when it has written a parameter gradient (the trainer starts
// that gradient's all-reduce while backward goes on; u2pl/train/grad_reduce.h).
class GradListener {
 public:
  virtual ~GradListener() = default;
  virtual void ready(TensorView grad) = 0;
};

// SyncBN (layers/batchnorm.h): a batch-statistics layer's batch holds `local` replicas, equal
// slices in order, and the other processes of `comm` (null: none) hold the others, process r's
// after process r − 1's, so that statistics are over all replicas' images.
struct ReplicaSync {
  Comm* comm = nullptr;
  int local = 1;
  int first = 0;  // this process's first replica
  int total = 1;  // replicas over all processes
  NcclComm* device_comm = nullptr;  // CUDA tensors: the same processes as comm, through NCCL
};

// The CUDA workspace's default cap (trainer.conv_workspace_mib): convolution algorithms that need
// more scratch are passed over for others.
constexpr size_t kDefaultWorkspaceCap = size_t(256) << 20;

class Context {
 public:
  // deterministic: pick deterministic cuDNN algorithms and disable TF32 (tests and parity).
  explicit Context(Device dev, bool deterministic = false);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return dev_; }
  bool deterministic() const { return deterministic_; }
  CudaHandles& cuda() const;  // throws on a CPU context
  // The shared scratch memory, at least `bytes` long. It grows when a shape needs more than any
  // before, so after the first step of a fixed-shape loop it never reallocates. The memory is
  // valid until the next call. On CUDA convolutions choose algorithms whose scratch is within the
  // cap, and the block grows with slack only up to it (the losses' own scratch may exceed it).
  void* workspace(size_t bytes);
  size_t workspace_bytes() const { return ws_.bytes(); }
  void set_workspace_cap(size_t bytes) { ws_cap_ = bytes; }
  size_t workspace_cap() const { return ws_cap_; }
  void synchronize() const;  // waits for the stream (no-op on CPU)
  // The profiler timing this context's ops, or null (engine/profile.h attaches and detaches it).
  Profiler* profiler() const { return profiler_; }
  void set_profiler(Profiler* p) { profiler_ = p; }
  // The replicas batch-statistics layers merge over, or null: the batch alone (the trainer sets it
  // around its steps).
  const ReplicaSync* replica_sync() const { return sync_; }
  void set_replica_sync(const ReplicaSync* s) { sync_ = s; }
  // Where layers report finished parameter gradients, or null (nobody listens).
  void set_grad_listener(GradListener* l) { grads_ = l; }
  GradListener* grad_listener() const { return grads_; }
  void grad_ready(TensorView g) const {
    if (grads_) grads_->ready(g);
  }

 private:
  Device dev_;
  bool deterministic_;
  Profiler* profiler_ = nullptr;
  const ReplicaSync* sync_ = nullptr;
  GradListener* grads_ = nullptr;
  CudaHandles* cuda_ = nullptr;  // owned; destroyed through destroy_cuda_handles
  Buffer ws_;
  size_t ws_cap_ = kDefaultWorkspaceCap;
};

CudaHandles* create_cuda_handles(bool deterministic);
void destroy_cuda_handles(CudaHandles* h) noexcept;
void cuda_synchronize(const CudaHandles& h);
void* cuda_stream_handle(const CudaHandles& h);  // the cudaStream_t, for libraries opened at run time

// A role-specific flat buffer (parameters, gradients, teacher, BN buffers, activations, saved
// state), planned segment by segment and allocated once. Views index into it by segment id.
class Arena {
 public:
  explicit Arena(std::string name) : name_(std::move(name)) {}
  int add(Shape s);  // before allocate(); returns the segment id
  void allocate(Device dev);
  bool allocated() const { return buf_.data() != nullptr || floats_ == 0; }
  TensorView view(int id) const;
  TensorView all() const;  // the whole arena as one 1-D view
  int64_t floats() const { return floats_; }
  size_t bytes() const { return static_cast<size_t>(floats_) * sizeof(float); }
  int segments() const { return static_cast<int>(shapes_.size()); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::vector<Shape> shapes_;
  std::vector<int64_t> offsets_;
  int64_t floats_ = 0;
  bool frozen_ = false;
  Buffer buf_;
};

}  // namespace u2pl
