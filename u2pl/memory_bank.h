// The category-wise memory bank of U2PL (SPEC §2.3): one FIFO queue of D-float rows per class
// with its own capacity; a push appends and keeps the newest rows. Must match the public code's
// dequeue_and_enqueue (torch.cat then keep the last queue_size rows). Tests: test_losses.cpp,
// test_reference.cpp (contrastive cases, out.bank.<c>).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/hd.h"
#include "engine/tensor.h"

namespace u2pl {

// A read-only window on one queue: a ring of `capacity` rows, the oldest at `head`. Plain data,
// so a CUDA kernel can gather rows through it the same way as the CPU loop.
struct QueueView {
  const float* data = nullptr;  // (capacity, dim)
  int64_t capacity = 0, head = 0, size = 0, dim = 0;
  // Row i of the contents, 0 = oldest.
  U2PL_HD const float* row(int64_t i) const { return data + ((head + i) % capacity) * dim; }
};

class MemoryBank {
 public:
  MemoryBank() = default;
  // capacity[c] rows of `dim` floats for each class c; storage is allocated here, once.
  MemoryBank(std::vector<int64_t> capacity, int64_t dim);

  int classes() const { return static_cast<int>(capacity_.size()); }
  int64_t dim() const { return dim_; }
  int64_t capacity(int c) const { return capacity_[check_class(c)]; }
  int64_t size(int c) const { return size_[check_class(c)]; }

  // Appends rows (n, dim) (host memory) to queue c, dropping the oldest beyond its capacity.
  void push(int c, const float* rows, int64_t n);
  void clear();
  QueueView view(int c) const;
  // Queue c's contents (size, dim), oldest first, as one host vector (tests, checkpoints).
  std::vector<float> contents(int c) const;

 private:
  size_t check_class(int c) const;
  std::vector<int64_t> capacity_, offset_, head_, size_;  // per class; offset_ in rows
  int64_t dim_ = 0;
  Buffer storage_;  // Σ capacity rows of dim floats, host memory
};

// queue_size metadata / config text: "50000,30000,..." (one capacity per class).
std::vector<int64_t> parse_queue_sizes(const std::string& s);

}  // namespace u2pl
