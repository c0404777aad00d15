// GradientReducer (u2pl/train/grad_reduce.h).
#include "u2pl/train/grad_reduce.h"

#include <algorithm>
#include <chrono>

namespace u2pl {

namespace {

// Host memory through MPI's non-blocking sums.
class HostSums final : public BucketSums {
 public:
  explicit HostSums(Comm& comm) : comm_(comm) {}
  void begin(Context&) override {}
  void start(float* data, int64_t n) override { comm_.start_allreduce_sum(data, n); }
  void progress() override { comm_.progress(); }
  void wait_all() override { comm_.wait_all(); }

 private:
  Comm& comm_;
};

// Device memory through NCCL on a side stream: each bucket after the backward kernels queued so
// far (its gradients among them), the context's stream after every bucket.
class DeviceSums final : public BucketSums {
 public:
  explicit DeviceSums(NcclComm& nccl) : nccl_(nccl) {}
  void begin(Context& ctx) override {
    U2PL_CHECK(ctx.device() == Device::CUDA, "gradient all-reduce: NCCL sums a CUDA gradient arena");
    ctx_ = &ctx;
  }
  void start(float* data, int64_t n) override {
    U2PL_CHECK(ctx_, "gradient all-reduce: a bucket started outside a step");
    side_.follow(*ctx_);
    nccl_.allreduce_sum_on(side_.handle(), data, n);
  }
  void progress() override {}
  void wait_all() override {
    U2PL_CHECK(ctx_, "gradient all-reduce: waited for outside a step");
    side_.join(*ctx_);
    ctx_ = nullptr;
  }

 private:
  NcclComm& nccl_;
  SideStream side_;
  Context* ctx_ = nullptr;
};

}  // namespace

GradientReducer::GradientReducer(Comm& comm, const ParamSet& ps, size_t bucket_bytes)
    : GradientReducer(std::make_unique<HostSums>(comm), ps, bucket_bytes) {
  U2PL_CHECK(ps.grads().all().device == Device::CPU, "gradient all-reduce: MPI sums host memory; a CUDA gradient "
                                                     "arena goes through NCCL");
}

GradientReducer::GradientReducer(NcclComm& nccl, const ParamSet& ps, size_t bucket_bytes)
    : GradientReducer(std::make_unique<DeviceSums>(nccl), ps, bucket_bytes) {
  U2PL_CHECK(ps.grads().all().device == Device::CUDA, "gradient all-reduce: NCCL sums a CUDA gradient arena");
}

GradientReducer::GradientReducer(std::unique_ptr<BucketSums> sums, const ParamSet& ps, size_t bucket_bytes)
    : sums_(std::move(sums)) {
  const TensorView all = ps.grads().all();
  base_ = all.data;
  // Trainable parameters by arena offset, last first: the order backward finishes them in.
  struct Seg {
    int64_t off, n;
    const float* data;
    std::string name;
  };
  std::vector<Seg> segs;
  for (size_t id = 0; id < ps.decls().size(); ++id) {
    const ParamDecl& d = ps.decls()[id];
    if (!d.trainable) continue;
    const TensorView g = ps.grad(int(id));
    segs.push_back({int64_t(g.data - base_), g.numel(), g.data, d.name});
  }
  std::sort(segs.begin(), segs.end(), [](const Seg& a, const Seg& b) { return a.off > b.off; });
  int64_t end = all.numel();  // a bucket runs to the next one's start: padding travels with it
  Bucket cur;
  for (const Seg& s : segs) {
    if (cur.params == 0) cur.hi = end;
    cur.lo = s.off;
    ++cur.params;
    bucket_of_[s.data] = int(buckets_.size());
    name_of_[s.data] = s.name;
    if (size_t(cur.hi - cur.lo) * sizeof(float) >= bucket_bytes) {
      buckets_.push_back(cur);
      end = cur.lo;
      cur = Bucket{};
    }
  }
  if (cur.params > 0) {
    cur.lo = 0;  // the first bucket also takes whatever precedes the first parameter
    buckets_.push_back(cur);
  } else if (!buckets_.empty()) {
    buckets_.back().lo = 0;
  }
}

void GradientReducer::begin(Context& ctx) {
  sums_->begin(ctx);
  for (Bucket& b : buckets_) {
    b.pending = b.params;
    b.started = false;
  }
  reported_.clear();
  early_ = 0;
  wait_ms_ = 0;
}

void GradientReducer::start(Bucket& b) {
  b.started = true;
  sums_->start(base_ + b.lo, b.hi - b.lo);
}

void GradientReducer::ready(TensorView grad) {
  const auto it = bucket_of_.find(grad.data);
  U2PL_CHECK(it != bucket_of_.end(), "gradient all-reduce: a layer reported a gradient that is no parameter of "
                                     "this network (" << grad.shape.str() << ")");
  U2PL_CHECK(std::find(reported_.begin(), reported_.end(), grad.data) == reported_.end(),
             "gradient all-reduce: the gradient of " << name_of_[grad.data]
                                                     << " was written twice in one backward; its sum may have started");
  reported_.push_back(grad.data);
  Bucket& b = buckets_[size_t(it->second)];
  if (--b.pending == 0) {
    start(b);
    ++early_;
  }
  sums_->progress();
}

void GradientReducer::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  for (Bucket& b : buckets_)
    if (!b.started) start(b);
  sums_->wait_all();
  wait_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace u2pl
