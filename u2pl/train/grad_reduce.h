// The gradient all-reduce of a step over several processes, overlapping backward: the gradient
// arena is cut into buckets of whole parameters, in the order backward finishes them (the last
// parameters first); each layer reports its parameter gradients as it writes them
// (engine/context.h's GradListener) and a bucket's sum starts as soon as all of its parameters
// are in, while backward goes on. finish() starts what backward did not reach (parameters with no
// gradient this step) and waits. The sums are those of one all-reduce of the whole arena. Used by
// u2pl/train/train_step.cpp; covered by tests/test_mpi.cpp (the training comparisons) and
// tests/test_trainer.cpp (the bucket layout and its errors, one process).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/comm.h"
#include "engine/context.h"
#include "engine/params.h"

namespace u2pl {

class GradientReducer : public GradListener {
 public:
  // Buckets of at least `bucket_bytes` (but whole parameters) over ps's gradient arena.
  GradientReducer(Comm& comm, const ParamSet& ps, size_t bucket_bytes = size_t(4) << 20);

  void begin();                       // before backward: every bucket waits for its parameters
  void ready(TensorView grad) override;  // a parameter's gradient is final (from the layers)
  void finish();                      // after backward: start the rest, wait for every sum

  int buckets() const { return int(buckets_.size()); }
  // Buckets whose sum started while backward ran (the rest start in finish()), last step.
  int started_early() const { return early_; }
  double wait_ms() const { return wait_ms_; }  // what finish() waited, last step

 private:
  struct Bucket {
    int64_t lo = 0, hi = 0;  // float range of the arena
    int params = 0, pending = 0;
    bool started = false;
  };
  void start(Bucket& b);

  Comm& comm_;
  float* base_ = nullptr;
  std::vector<Bucket> buckets_;
  std::unordered_map<const float*, int> bucket_of_;  // a parameter's gradient → its bucket
  std::unordered_map<const float*, std::string> name_of_;
  std::vector<const float*> reported_;  // this step's, to refuse a second report
  int early_ = 0;
  double wait_ms_ = 0;
};

}  // namespace u2pl
