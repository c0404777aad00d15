// Byte offsets of 256-byte aligned pieces of one Context::workspace() block: the CUDA ops lay
// their scratch out with it, and the memory figures lay it out the same way on the host.
#pragma once
#include <cstddef>

namespace u2pl {

class WorkspacePlan {
 public:
  size_t add(size_t bytes) {
    const size_t at = total_;
    total_ += (bytes + 255) / 256 * 256;
    return at;
  }
  size_t bytes() const { return total_; }

 private:
  size_t total_ = 0;
};

}  // namespace u2pl
