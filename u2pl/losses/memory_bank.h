// The category-wise memory bank of U2PL (SPEC §2.3): one FIFO queue of D-float rows per class
// with its own capacity; a push appends and keeps the newest rows. Must match the public code's
// dequeue_and_enqueue (torch.cat then keep the last queue_size rows). On CUDA the queues are device
// ring buffers whose heads and sizes stay on the device. Tests: test_unsup_contrastive.cpp,
// test_reference.cpp (contrastive cases, out.bank.<c>), test_cuda_losses.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/context.h"
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

// One push of n rows into a ring (capacity cap, oldest at head, size rows): rows [first, n) of
// the batch survive, row i landing at (tail + i − first) % cap; head and size are the state
// after it. The CPU push and the CUDA kernels share it.
struct RingPush {
  int64_t first, tail, head, size;
};
U2PL_HD RingPush ring_push(int64_t cap, int64_t head, int64_t size, int64_t n) {
  if (n >= cap) return {n - cap, 0, 0, cap};  // only the newest cap rows survive
  const int64_t drop = size + n > cap ? size + n - cap : 0;
  return {0, (head + size) % cap, (head + drop) % cap, size + n - drop};
}

// All queues of a bank on the CUDA device, for the kernels of u2pl/losses/*.cu (plain data).
struct DeviceQueues {
  float* data = nullptr;                                  // (Σ capacity, dim)
  const int64_t* capacity = nullptr, *offset = nullptr;   // (classes); offset in rows
  int64_t* head = nullptr, *size = nullptr;               // (classes)
  int64_t dim = 0;
  int classes = 0;
};

class MemoryBank {
 public:
  MemoryBank() = default;
  // capacity[c] rows of `dim` floats for each class c, on `dev`; storage is allocated here, once.
  MemoryBank(std::vector<int64_t> capacity, int64_t dim, Device dev = Device::CPU);

  Device device() const { return dev_; }
  int classes() const { return static_cast<int>(capacity_.size()); }
  int64_t dim() const { return dim_; }
  int64_t capacity(int c) const { return capacity_[check_class(c)]; }
  // On CUDA this reads the size back from the device (synchronous).
  int64_t size(int c) const;
  // Rows held and capacity over all queues (the log's fill); on CUDA one read for every queue.
  int64_t total_size() const;
  int64_t total_capacity() const;

  // Appends rows (n, dim) (host memory) to queue c of a CPU bank, dropping the oldest beyond its
  // capacity.
  void push(int c, const float* rows, int64_t n);
  // The same on either device: rows (n, dim) in the bank's device memory; on CUDA the push is
  // queued on ctx's stream (head and size are updated on the device).
  void push(Context& ctx, int c, const float* rows, int64_t n);
  void clear();  // empties every queue (CUDA: on the legacy stream, after the work queued on the contexts' blocking streams and before later work)
  // Sets queue c to rows (n, dim) from host memory, oldest first (checkpoint resume); n must not
  // exceed the capacity. Both devices, synchronous.
  void restore(int c, const float* rows, int64_t n);
  QueueView view(int c) const;  // CPU bank only
  // Queue c's contents (size, dim), oldest first, as one host vector (tests, checkpoints; CUDA:
  // synchronous copy).
  std::vector<float> contents(int c) const;
  DeviceQueues device_queues() const;  // CUDA bank only

 private:
  size_t check_class(int c) const;
  std::vector<int64_t> capacity_, offset_, head_, size_;  // per class; offset_ in rows; head_, size_ CPU only
  int64_t dim_ = 0;
  Device dev_ = Device::CPU;
  Buffer storage_;  // Σ capacity rows of dim floats
  Buffer state_;    // CUDA: int64 (4, classes): capacity, offset, head, size
};

// Appends rows (n, dim) in device memory to queue c of a CUDA bank, on ctx's stream: a one-thread
// kernel plans the push from the device head and size (ring_push) and commits them, a second
// copies the surviving rows (u2pl/losses/memory_bank.cu).
void bank_push_cuda(Context& ctx, const DeviceQueues& q, int c, const float* rows, int64_t n);

// queue_size metadata / config text: "50000,30000,..." (one capacity per class).
std::vector<int64_t> parse_queue_sizes(const std::string& s);

}  // namespace u2pl
