// Context and Arena (engine/context.h).
#include "engine/context.h"

#include <algorithm>
#include <cstdio>

namespace u2pl {

Context::Context(Device dev, bool deterministic) : dev_(dev), deterministic_(deterministic) {
  if (dev == Device::CUDA) cuda_ = create_cuda_handles(deterministic);
}

Context::~Context() {
  destroy_cuda_handles(cuda_);
}

CudaHandles& Context::cuda() const {
  U2PL_CHECK(cuda_ != nullptr, "this context runs on the cpu; a CUDA handle was requested");
  return *cuda_;
}

void* Context::workspace(size_t bytes) {
  if (bytes > ws_.bytes()) {
    synchronize();  // ops queued on the stream may still use the old block
    size_t grown = bytes + bytes / 4;
    if (dev_ == Device::CUDA) grown = std::max(bytes, std::min(grown, ws_cap_));  // no slack past the cap
    ws_ = Buffer(dev_, grown);
  }
  return ws_.data();
}

void Context::synchronize() const {
  if (cuda_) cuda_synchronize(*cuda_);
}

int Arena::add(Shape s) {
  U2PL_CHECK(!frozen_, "arena '" << name_ << "': add() after allocate()");
  const int64_t align = 64;  // floats: 256-byte segment alignment for vector loads and cuDNN
  shapes_.push_back(s);
  offsets_.push_back(floats_);
  floats_ += (s.numel() + align - 1) / align * align;
  return static_cast<int>(shapes_.size()) - 1;
}

void Arena::allocate(Device dev) {
  U2PL_CHECK(!frozen_, "arena '" << name_ << "' allocated twice");
  frozen_ = true;
  buf_ = Buffer(dev, bytes());
  buf_.zero();
}

TensorView Arena::view(int id) const {
  U2PL_CHECK(frozen_, "arena '" << name_ << "': view() before allocate()");
  U2PL_CHECK(id >= 0 && id < segments(), "arena '" << name_ << "': no segment " << id);
  return TensorView(buf_.floats() + offsets_[id], shapes_[id], buf_.device());
}

TensorView Arena::all() const {
  U2PL_CHECK(frozen_, "arena '" << name_ << "': all() before allocate()");
  return TensorView(buf_.floats(), Shape{floats_}, buf_.device());
}

}  // namespace u2pl
