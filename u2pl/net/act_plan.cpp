// ActPlan (u2pl/net/act_plan.h).
#include "u2pl/net/act_plan.h"

#include <algorithm>
#include <limits>

namespace u2pl {

namespace {
constexpr int64_t kAlignFloats = 64;  // 256-byte segments
int64_t padded(int64_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }
}  // namespace

ActPlan::ActPlan(bool backward, bool rebuild) : backward_(backward), rebuild_(rebuild) {}

void ActPlan::begin_module() {
  U2PL_CHECK(bufs_.empty(), "activation plan: begin_module() after allocate()");
  cursor_[kScratch] = 0;
  cursor_[kGradTemp] = 0;
}

// Scoped regions (scratch, gradient temporaries) have their cursor reset by begin_module(), so
// their size is the largest module's need; the others only grow.
Slot ActPlan::take(int region, Shape s) {
  U2PL_CHECK(bufs_.empty(), "activation plan: a buffer was requested after allocate()");
  Slot slot{region, cursor_[region], s};
  cursor_[region] += padded(s.numel());
  size_[region] = std::max(size_[region], cursor_[region]);
  return slot;
}

Slot ActPlan::internal(Shape s) { return backward_ ? take(kKept, s) : take(kScratch, s); }

Slot ActPlan::rebuilt(Shape s) { return rebuild() ? take(kScratch, s) : internal(s); }

OutSlot ActPlan::output(Shape s, bool tapped) {
  OutSlot o;
  if (tapped || backward_) {
    o.value = take(kKept, s);
  } else {
    const int r = ping_ ? kPingB : kPingA;
    o.value = Slot{r, 0, s};
    size_[r] = std::max(size_[r], padded(s.numel()));
  }
  if (backward_) {
    if (tapped) {
      o.grad = take(kKept, s);
    } else {
      const int r = ping_ ? kGradPingB : kGradPingA;
      o.grad = Slot{r, 0, s};
      size_[r] = std::max(size_[r], padded(s.numel()));
    }
  }
  if (!tapped) ping_ = !ping_;
  return o;
}

Slot ActPlan::grad_temp(Shape s) {
  U2PL_CHECK(backward_, "activation plan: gradient scratch requested in a plan without backward");
  return take(kGradTemp, s);
}

Slot ActPlan::state(Shape s) { return take(kState, s); }

void ActPlan::allocate(Device dev, std::vector<Buffer> spare) {
  U2PL_CHECK(bufs_.empty(), "activation plan allocated twice");
  for (int r = 0; r < kRegions; ++r) {
    const size_t need = static_cast<size_t>(size_[r]) * sizeof(float);
    const bool have = static_cast<size_t>(r) < spare.size() && spare[r].data() != nullptr;
    if (have && spare[r].device() == dev && spare[r].bytes() >= need)
      bufs_.push_back(std::move(spare[r]));
    else
      bufs_.emplace_back(dev, have ? need + need / 4 : need);
  }
  for (Buffer& b : bufs_) b.zero();
}

std::vector<Buffer> ActPlan::release() { return std::move(bufs_); }

void ActPlan::poison_scratch() {
  U2PL_CHECK(!bufs_.empty(), "activation plan: poison_scratch() before allocate()");
  const Buffer& b = bufs_[kScratch];
  if (size_[kScratch] == 0) return;
  const std::vector<float> nan(static_cast<size_t>(size_[kScratch]), std::numeric_limits<float>::quiet_NaN());
  copy_bytes(b.data(), b.device(), nan.data(), Device::CPU, nan.size() * sizeof(float));
}

TensorView ActPlan::view(const Slot& s) const {
  if (!s.defined()) return TensorView();
  U2PL_CHECK(!bufs_.empty(), "activation plan: view() before allocate()");
  const Buffer& b = bufs_[s.region];
  return TensorView(b.floats() + s.offset, s.shape, b.device());
}

size_t ActPlan::bytes() const {
  size_t n = 0;
  for (int r = 0; r < kRegions; ++r) n += static_cast<size_t>(size_[r]) * sizeof(float);
  return n;
}

size_t ActPlan::kept_bytes() const {
  return backward_ ? static_cast<size_t>(size_[kKept] + size_[kState]) * sizeof(float) : 0;
}

}  // namespace u2pl
