// Per-class FIFO queues on host memory (u2pl/memory_bank.h): one ring buffer per class inside
// one allocation, so a push costs the rows it writes.
#include "u2pl/memory_bank.h"

#include <algorithm>
#include <cstring>
#include <sstream>

namespace u2pl {

MemoryBank::MemoryBank(std::vector<int64_t> capacity, int64_t dim)
    : capacity_(std::move(capacity)), dim_(dim) {
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
  storage_ = Buffer(Device::CPU, static_cast<size_t>(rows * dim_) * sizeof(float));
}

size_t MemoryBank::check_class(int c) const {
  U2PL_CHECK(c >= 0 && c < classes(), "memory bank: class " << c << " outside [0, " << classes() << ")");
  return static_cast<size_t>(c);
}

void MemoryBank::push(int c, const float* rows, int64_t n) {
  const size_t k = check_class(c);
  U2PL_CHECK(n >= 0, "memory bank: cannot push " << n << " rows");
  const int64_t cap = capacity_[k];
  if (n >= cap) {  // only the newest `cap` rows survive
    rows += (n - cap) * dim_;
    head_[k] = 0;
    size_[k] = 0;
    n = cap;
  }
  float* base = storage_.floats() + offset_[k] * dim_;
  const int64_t drop = std::max<int64_t>(0, size_[k] + n - cap);
  int64_t tail = (head_[k] + size_[k]) % cap;
  for (int64_t i = 0; i < n;) {  // at most two contiguous runs
    const int64_t run = std::min(n - i, cap - tail);
    std::memcpy(base + tail * dim_, rows + i * dim_, static_cast<size_t>(run * dim_) * sizeof(float));
    i += run;
    tail = (tail + run) % cap;
  }
  head_[k] = (head_[k] + drop) % cap;
  size_[k] += n - drop;
}

void MemoryBank::clear() {
  std::fill(head_.begin(), head_.end(), 0);
  std::fill(size_.begin(), size_.end(), 0);
}

QueueView MemoryBank::view(int c) const {
  const size_t k = check_class(c);
  return {storage_.floats() + offset_[k] * dim_, capacity_[k], head_[k], size_[k], dim_};
}

std::vector<float> MemoryBank::contents(int c) const {
  const QueueView q = view(c);
  std::vector<float> out(static_cast<size_t>(q.size * dim_));
  for (int64_t i = 0; i < q.size; ++i)
    std::memcpy(out.data() + i * dim_, q.row(i), static_cast<size_t>(dim_) * sizeof(float));
  return out;
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
