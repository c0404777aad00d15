// Per-class FIFO queues (u2pl/losses/memory_bank.h): one ring buffer per class inside one
// allocation, so a push costs the rows it writes. A CPU bank keeps heads and sizes on the host; a
// CUDA bank keeps them on the device, beside the rows, so the contrastive loss pushes without a
// host round trip.
#include "u2pl/losses/memory_bank.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <sstream>

namespace u2pl {

MemoryBank::MemoryBank(std::vector<int64_t> capacity, int64_t dim, Device dev)
    : capacity_(std::move(capacity)), dim_(dim), dev_(dev) {
  U2PL_CHECK(dim > 0, "memory bank: feature size must be positive, got " << dim);
  U2PL_CHECK(!capacity_.empty(), "memory bank: needs at least one class");
  int64_t rows = 0;
  for (size_t c = 0; c < capacity_.size(); ++c) {
    U2PL_CHECK(capacity_[c] > 0, "memory bank: class " << c << " has capacity " << capacity_[c]
                                                        << "; every queue needs room for a row");
    offset_.push_back(rows);
    rows += capacity_[c];
  }
  head_.assign(capacity_.size(), 0);
  size_.assign(capacity_.size(), 0);
  storage_ = Buffer(dev_, static_cast<size_t>(rows * dim_) * sizeof(float));
  if (dev_ == Device::CUDA) {
    std::vector<int64_t> state = capacity_;
    state.insert(state.end(), offset_.begin(), offset_.end());
    state.resize(4 * capacity_.size(), 0);  // heads and sizes start at 0
    state_ = Buffer(dev_, state.size() * sizeof(int64_t));
    copy_bytes(state_.data(), dev_, state.data(), Device::CPU, state.size() * sizeof(int64_t));
  }
}

size_t MemoryBank::check_class(int c) const {
  U2PL_CHECK(c >= 0 && c < classes(), "memory bank: class " << c << " outside [0, " << classes() << ")");
  return static_cast<size_t>(c);
}

int64_t MemoryBank::size(int c) const {
  const size_t k = check_class(c);
  if (dev_ == Device::CPU) return size_[k];
  int64_t n = 0;
  copy_bytes(&n, Device::CPU, device_queues().size + k, dev_, sizeof(n));
  return n;
}

int64_t MemoryBank::total_size() const {
  std::vector<int64_t> sizes = size_;
  if (dev_ == Device::CUDA)
    copy_bytes(sizes.data(), Device::CPU, device_queues().size, dev_, sizes.size() * sizeof(int64_t));
  return std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
}

int64_t MemoryBank::total_capacity() const { return std::accumulate(capacity_.begin(), capacity_.end(), int64_t(0)); }

void MemoryBank::push(int c, const float* rows, int64_t n) {
  const size_t k = check_class(c);
  U2PL_CHECK(dev_ == Device::CPU, "memory bank: a CUDA bank pushes through push(ctx, ...)");
  U2PL_CHECK(n >= 0, "memory bank: cannot push " << n << " rows");
  const int64_t cap = capacity_[k];
  const RingPush r = ring_push(cap, head_[k], size_[k], n);
  float* base = storage_.floats() + offset_[k] * dim_;
  int64_t tail = r.tail;
  for (int64_t i = r.first; i < n;) {  // at most two contiguous runs
    const int64_t run = std::min(n - i, cap - tail);
    std::memcpy(base + tail * dim_, rows + i * dim_, static_cast<size_t>(run * dim_) * sizeof(float));
    i += run;
    tail = (tail + run) % cap;
  }
  head_[k] = r.head;
  size_[k] = r.size;
}

void MemoryBank::push(Context& ctx, int c, const float* rows, int64_t n) {
  U2PL_CHECK(ctx.device() == dev_, "memory bank: a " << device_name(dev_) << " bank pushed from a "
                                                     << device_name(ctx.device()) << " context");
  if (dev_ == Device::CPU) return push(c, rows, n);
  check_class(c);
  U2PL_CHECK(n >= 0, "memory bank: cannot push " << n << " rows");
  if (n > 0) bank_push_cuda(ctx, device_queues(), c, rows, n);
}

void MemoryBank::clear() {
  std::fill(head_.begin(), head_.end(), 0);
  std::fill(size_.begin(), size_.end(), 0);
  if (dev_ == Device::CUDA)  // heads and sizes: the last two of the four state rows
    zero_bytes(static_cast<int64_t*>(state_.data()) + 2 * capacity_.size(), dev_,
               2 * capacity_.size() * sizeof(int64_t));
}

void MemoryBank::restore(int c, const float* rows, int64_t n) {
  const size_t k = check_class(c);
  U2PL_CHECK(n >= 0 && n <= capacity_[k], "memory bank: cannot restore " << n << " rows into queue " << c
                                                                          << " of capacity " << capacity_[k]);
  copy_bytes(storage_.floats() + offset_[k] * dim_, dev_, rows, Device::CPU,
             static_cast<size_t>(n * dim_) * sizeof(float));
  if (dev_ == Device::CPU) {
    head_[k] = 0;
    size_[k] = n;
    return;
  }
  const DeviceQueues q = device_queues();
  const int64_t head = 0;
  copy_bytes(q.head + k, dev_, &head, Device::CPU, sizeof(head));
  copy_bytes(q.size + k, dev_, &n, Device::CPU, sizeof(n));
}

QueueView MemoryBank::view(int c) const {
  const size_t k = check_class(c);
  U2PL_CHECK(dev_ == Device::CPU, "memory bank: view() of a CUDA bank (its heads and sizes live on the device)");
  return {storage_.floats() + offset_[k] * dim_, capacity_[k], head_[k], size_[k], dim_};
}

std::vector<float> MemoryBank::contents(int c) const {
  const size_t k = check_class(c);
  int64_t head = head_[k], size = size_[k];
  if (dev_ == Device::CUDA) {
    const DeviceQueues q = device_queues();
    copy_bytes(&head, Device::CPU, q.head + k, dev_, sizeof(head));
    copy_bytes(&size, Device::CPU, q.size + k, dev_, sizeof(size));
  }
  const int64_t cap = capacity_[k];
  const float* base = storage_.floats() + offset_[k] * dim_;
  std::vector<float> out(static_cast<size_t>(size * dim_));
  // at most two runs: [head, cap) then [0, rest)
  const int64_t first = std::min(size, cap - head);
  copy_bytes(out.data(), Device::CPU, base + head * dim_, dev_, static_cast<size_t>(first * dim_) * sizeof(float));
  copy_bytes(out.data() + first * dim_, Device::CPU, base, dev_,
             static_cast<size_t>((size - first) * dim_) * sizeof(float));
  return out;
}

DeviceQueues MemoryBank::device_queues() const {
  U2PL_CHECK(dev_ == Device::CUDA, "memory bank: device_queues() of a cpu bank");
  int64_t* s = static_cast<int64_t*>(state_.data());
  const int64_t C = classes();
  return {storage_.floats(), s, s + C, s + 2 * C, s + 3 * C, dim_, classes()};
}

std::vector<int64_t> parse_queue_sizes(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    U2PL_CHECK(used == item.size() && !item.empty(),
               "queue_size: '" << item << "' in '" << s << "' is not an integer");
    out.push_back(v);
  }
  U2PL_CHECK(!out.empty(), "queue_size: no capacities in '" << s << "'");
  return out;
}

}  // namespace u2pl
