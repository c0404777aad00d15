// ActPlan (u2pl/net/act_plan.h).
#include "u2pl/net/act_plan.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace u2pl {

namespace {
constexpr int64_t kAlignFloats = 64;  // 256-byte segments
int64_t padded(int64_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }
}  // namespace

int64_t slot_floats(Shape s) { return padded(s.numel()); }

Shape largest(const std::vector<Shape>& shapes) {
  U2PL_CHECK(!shapes.empty(), "activation plan: the largest of no shapes");
  Shape l = shapes[0];
  for (const Shape& s : shapes)
    if (s.numel() > l.numel()) l = s;
  return l;
}

Slot alias(const Slot& s, Shape shape, int64_t at) {
  U2PL_CHECK(at >= 0 && at % kAlignFloats == 0 && at + shape.numel() <= s.shape.numel(),
             "activation plan: " << shape.str() << " at " << at << " does not fit a slot of " << s.shape.str());
  return Slot{s.region, s.offset + at, shape};
}

ActPlan::ActPlan(bool backward, bool rebuild, bool replay)
    : backward_(backward), rebuild_(rebuild), replay_(replay) {}

void ActPlan::begin_module() {
  U2PL_CHECK(!laid_, "activation plan: begin_module() after allocate()");
  cursor_[kScratch] = 0;
  cursor_[kGradTemp] = 0;
}

// Scoped regions (scratch, gradient temporaries) have their cursor reset by begin_module(), so
// their size is the largest module's need; the others only grow.
Slot ActPlan::take(int region, Shape s) {
  U2PL_CHECK(!laid_, "activation plan: a buffer was requested after allocate()");
  Slot slot{region, cursor_[region], s};
  cursor_[region] += padded(s.numel());
  size_[region] = std::max(size_[region], cursor_[region]);
  return slot;
}

Slot ActPlan::internal(Shape s) { return backward_ ? take(kKept, s) : take(kScratch, s); }

Slot ActPlan::rebuilt(Shape s) { return rebuild() ? take(kScratch, s) : internal(s); }

Slot ActPlan::replayed(Shape s) { return replay() ? take(kScratch, s) : internal(s); }

// A slot at the start of a region that many tensors share in turn: the region is the largest's size.
Slot ActPlan::shared(int region, Shape s) {
  size_[region] = std::max(size_[region], padded(s.numel()));
  return Slot{region, 0, s};
}

OutSlot ActPlan::output(Shape s, bool tapped) {
  OutSlot o;
  if (tapped || backward_)
    o.value = take(kKept, s);
  else
    o.value = shared(ping_ ? kPingB : kPingA, s);
  if (backward_) o.grad = tapped ? take(kGradTapped, s) : shared(ping_ ? kGradPingB : kGradPingA, s);
  if (!tapped) ping_ = !ping_;
  return o;
}

Slot ActPlan::result(Shape s) { return take(kKept, s); }

OutSlot ActPlan::rebuilt_output(Shape s, int64_t at) {
  if (!rebuild()) return output(s);
  U2PL_CHECK(at >= 0 && at % kAlignFloats == 0, "activation plan: a rebuilt output at float " << at);
  OutSlot o;
  o.value = Slot{kOutRebuilt, at, s};
  size_[kOutRebuilt] = std::max(size_[kOutRebuilt], at + padded(s.numel()));
  o.grad = shared(ping_ ? kGradPingB : kGradPingA, s);
  ping_ = !ping_;
  return o;
}

Slot ActPlan::grad_temp(Shape s) {
  U2PL_CHECK(backward_, "activation plan: gradient scratch requested in a plan without backward");
  return take(kGradTemp, s);
}

Slot ActPlan::state(Shape s) { return take(kState, s); }

void ActPlan::layout(int64_t* at) const {
  at[0] = 0;
  for (int r = 0; r < kRegions; ++r) at[r + 1] = at[r] + size_[r];
  if (!backward_) return;
  const int64_t before = at[kKept] + idle_floor_[int(Idle::BeforeForward)];
  const int64_t between = at[kOutRebuilt] + idle_floor_[int(Idle::BetweenForwardAndBackward)];
  at[kRegions] = std::max({at[kRegions], before, between});
}

void ActPlan::reserve_idle(size_t before_forward, size_t between) {
  U2PL_CHECK(backward_, "activation plan: only a train plan lends idle memory");
  U2PL_CHECK(!laid_ || owns(), "activation plan: reserve_idle() on a plan laid out in memory it does not own");
  const auto floats = [](size_t bytes) { return padded(int64_t((bytes + sizeof(float) - 1) / sizeof(float))); };
  idle_floor_[int(Idle::BeforeForward)] = floats(before_forward);
  idle_floor_[int(Idle::BetweenForwardAndBackward)] = floats(between);
  if (!laid_) return;
  if (own_.bytes() < this->bytes())
    move_to(TensorView());  // a larger block, the saved state along
  else
    layout(start_);
}

void ActPlan::allocate(Device dev, Buffer spare, bool grow) {
  U2PL_CHECK(!laid_, "activation plan allocated twice");
  layout(start_);
  const size_t need = bytes();
  const bool have = spare.data() != nullptr;
  if (have && spare.device() == dev && spare.bytes() >= need)
    own_ = std::move(spare);
  else
    own_ = Buffer(dev, have && grow ? need + need / 4 : need);
  own_.zero();
  base_ = own_.floats();
  dev_ = dev;
  laid_ = true;
}

void ActPlan::place(TensorView block) {
  U2PL_CHECK(!laid_, "activation plan: placed after allocate() or place() (release() first)");
  U2PL_CHECK(size_t(block.numel()) * sizeof(float) >= bytes(),
             "activation plan: placed in " << block.numel() * 4 << " bytes, needs " << bytes());
  layout(start_);
  base_ = block.data;
  dev_ = block.device;
  laid_ = true;
}

void ActPlan::move_to(TensorView block) {
  U2PL_CHECK(laid_, "activation plan: move_to() before allocate() or place()");
  const Device dev = dev_;
  // Only a block of its own is known to hold the state still (another plan's memory may have
  // been written or freed since).
  const size_t state = owns() ? size_t(size_[kState]) * sizeof(float) : 0;
  std::vector<float> saved(state / sizeof(float));
  if (state > 0) copy_bytes(saved.data(), Device::CPU, base_ + start(kState), dev, state);
  Buffer old = release();  // freed on return
  if (block.defined())
    place(block);
  else
    allocate(dev);
  if (state > 0) copy_bytes(base_ + start(kState), dev_, saved.data(), Device::CPU, state);
}

Buffer ActPlan::release() {
  base_ = nullptr;
  laid_ = false;
  return std::move(own_);
}

TensorView ActPlan::view(const Slot& s) const {
  if (!s.defined()) return TensorView();
  U2PL_CHECK(laid_, "activation plan: view() before allocate() or place()");
  return TensorView(base_ + start(s.region) + s.offset, s.shape, dev_);
}

TensorView ActPlan::idle(Idle when) const {
  U2PL_CHECK(backward_, "activation plan: only a train plan lends idle memory");
  U2PL_CHECK(laid_, "activation plan: idle() before allocate() or place()");
  const int64_t lo = start(when == Idle::BeforeForward ? kKept : kOutRebuilt), hi = start_[kRegions];
  return TensorView(base_ + lo, Shape{hi - lo}, dev_);
}

void ActPlan::poison(Idle when) {
  const TensorView v = idle(when);
  if (v.numel() == 0) return;
  const std::vector<float> nan(size_t(v.numel()), std::numeric_limits<float>::quiet_NaN());
  copy_bytes(v.data, v.device, nan.data(), Device::CPU, nan.size() * sizeof(float));
}

size_t ActPlan::bytes() const {
  int64_t at[kRegions + 1];
  layout(at);
  return static_cast<size_t>(at[kRegions]) * sizeof(float);
}

size_t ActPlan::kept_bytes() const {
  return backward_ ? static_cast<size_t>(size_[kKept] + size_[kState]) * sizeof(float) : 0;
}

}  // namespace u2pl
