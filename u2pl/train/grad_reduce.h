// The gradient all-reduce of a step over several processes, overlapping backward: the gradient
// arena is cut into buckets of whole parameters, in the order backward finishes them (the last
// parameters first); each layer reports its parameter gradients as it writes them
// (engine/context.h's GradListener) and a bucket's sum starts as soon as all of its parameters
// are in, while backward goes on. finish() starts what backward did not reach (parameters with no
// gradient this step) and waits. The sums are those of one all-reduce of the whole arena. Host
// arenas sum through MPI (Comm); device arenas through NCCL on a side stream (engine/side_stream.h)
// that follows the context's stream before each bucket, which the context's stream joins in
// finish(), so on CUDA nothing on the host waits. Used by u2pl/train/train_step.cpp; covered by
// tests/test_mpi.cpp (the training comparisons), tests/test_trainer.cpp (the bucket layout and its
// errors, one process) and tests/test_cuda_train.cpp (device buckets, one process).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/comm.h"
#include "engine/context.h"
#include "engine/nccl.h"
#include "engine/params.h"
#include "engine/side_stream.h"

namespace u2pl {

// Where the buckets' sums run: started, advanced, waited for.
class BucketSums {
 public:
  virtual ~BucketSums() = default;
  virtual void begin(Context& ctx) = 0;  // the step's context
  virtual void start(float* data, int64_t n) = 0;
  virtual void progress() = 0;
  virtual void wait_all() = 0;
};

class GradientReducer : public GradListener {
 public:
  // Buckets of at least `bucket_bytes` (but whole parameters) over ps's gradient arena, summed
  // over the processes of `comm` (a host arena) or of `nccl` (a CUDA arena).
  GradientReducer(Comm& comm, const ParamSet& ps, size_t bucket_bytes = size_t(4) << 20);
  GradientReducer(NcclComm& nccl, const ParamSet& ps, size_t bucket_bytes = size_t(4) << 20);

  void begin(Context& ctx);           // before backward: every bucket waits for its parameters
  void ready(TensorView grad) override;  // a parameter's gradient is final (from the layers)
  void finish();                      // after backward: start the rest, wait for every sum

  int buckets() const { return int(buckets_.size()); }
  // Buckets whose sum started while backward ran (the rest start in finish()), last step.
  int started_early() const { return early_; }
  // What finish() waited, last step (on CUDA: the time to queue the rest, the device waits).
  double wait_ms() const { return wait_ms_; }

 private:
  struct Bucket {
    int64_t lo = 0, hi = 0;  // float range of the arena
    int params = 0, pending = 0;
    bool started = false;
  };
  GradientReducer(std::unique_ptr<BucketSums> sums, const ParamSet& ps, size_t bucket_bytes);
  void start(Bucket& b);

  std::unique_ptr<BucketSums> sums_;
  float* base_ = nullptr;
  std::vector<Bucket> buckets_;
  std::unordered_map<const float*, int> bucket_of_;  // a parameter's gradient → its bucket
  std::unordered_map<const float*, std::string> name_of_;
  std::vector<const float*> reported_;  // this step's, to refuse a second report
  int early_ = 0;
  double wait_ms_ = 0;
};

}  // namespace u2pl
