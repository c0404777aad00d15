// The batch loader (data/loader.h): epoch orders from Philox, worker threads filling a bounded
// ring of batch slots claimed in order, in-order hand-out, error forwarding and skip_bad.
// Covered by tests/test_loader.cpp (also under AddressSanitizer).
#include "data/loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "engine/log.h"
#include "engine/rng.h"

namespace u2pl {
namespace {

// Fisher-Yates, one Rng draw per swap (from the back).
void shuffle(std::vector<int64_t>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(static_cast<uint32_t>(i))]);
}

int64_t epoch_samples(const LoaderSpec& spec, int64_t dataset_size) {
  return spec.order == LoaderOrder::Repeated ? spec.epoch_length : dataset_size;
}

}  // namespace

uint64_t epoch_counter_base(uint64_t stream, int64_t epoch) {
  U2PL_CHECK(stream < 256, "loader: stream " << stream << " out of range [0, 256)");
  U2PL_CHECK(epoch >= 0 && epoch < (int64_t(1) << 24), "loader: epoch " << epoch << " out of range");
  return (stream << 56) | (static_cast<uint64_t>(epoch) << 32);
}

std::vector<int64_t> epoch_order(const LoaderSpec& spec, int64_t dataset_size, int64_t epoch) {
  const int64_t n = dataset_size, len = epoch_samples(spec, n);
  U2PL_CHECK(n > 0 && len > 0, "loader: empty epoch (" << n << " samples, epoch length " << len << ")");
  // Shuffle draws (at most n + len counters) must stay below the augmentation region.
  U2PL_CHECK(n + len < int64_t(kAugmentRegion) && n < int64_t(1) << 32,
             "loader: " << n << " samples, epoch length " << len << ": too many for the draw layout");
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(len));
  if (spec.order != LoaderOrder::Repeated) {
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t(0));
    if (spec.order == LoaderOrder::Shuffled) {
      Rng rng(spec.seed, epoch_counter_base(spec.stream, epoch));
      shuffle(order, rng);
    }
    return order;
  }
  Rng rng(spec.seed, epoch_counter_base(spec.stream, epoch));
  for (int64_t r = 0; r < len / n; ++r)
    for (int64_t i = 0; i < n; ++i) order.push_back(i);
  if (len % n) {
    std::vector<int64_t> extra(static_cast<size_t>(n));
    std::iota(extra.begin(), extra.end(), int64_t(0));
    shuffle(extra, rng);
    order.insert(order.end(), extra.begin(), extra.begin() + len % n);
  }
  shuffle(order, rng);
  return order;
}

Loader::Loader(const Dataset& ds, const AugmentSpec& aug, const LoaderSpec& spec)
    : ds_(ds), aug_(aug), spec_(spec) {
  const int64_t n = static_cast<int64_t>(ds.size());
  U2PL_CHECK(spec.batch_size >= 1, "loader: batch size must be >= 1, got " << spec.batch_size);
  U2PL_CHECK(spec.workers >= 1, "loader: workers must be >= 1, got " << spec.workers);
  U2PL_CHECK(spec.prefetch >= 0, "loader: prefetch must be >= 0, got " << spec.prefetch);
  U2PL_CHECK(spec.epochs >= 0 && spec.first_epoch >= 0,
             "loader: epochs " << spec.epochs << ", first epoch " << spec.first_epoch);
  U2PL_CHECK(spec.order != LoaderOrder::Repeated || spec.epoch_length > 0,
             "loader: a repeated order needs an epoch length, got " << spec.epoch_length);
  U2PL_CHECK(n > 0, "loader: the dataset " << ds.spec().data_list << " is empty");
  U2PL_CHECK(spec.take_count == 0 || (spec.order != LoaderOrder::InOrder && spec.take_first >= 0 &&
                                      spec.take_count > 0 && spec.take_first + spec.take_count <= spec.batch_size),
             "loader: positions [" << spec.take_first << ", " << spec.take_first + spec.take_count
                                   << ") of training batches of " << spec.batch_size);
  // The stream and the last epoch must fit the counter layout (epoch_counter_base checks both).
  epoch_counter_base(spec.stream, spec.first_epoch + std::max<int64_t>(spec.epochs, 1) - 1);
  const int64_t len = epoch_samples(spec, n);
  U2PL_CHECK(len * int64_t(kAugmentCounters) <= int64_t(kAugmentRegion),
             "loader: epoch length " << len << " exceeds the augmentation draw region");
  if (spec.order == LoaderOrder::InOrder) {
    batches_per_epoch_ = (len + spec.batch_size - 1) / spec.batch_size;
  } else {
    U2PL_CHECK(len >= spec.batch_size, "loader: an epoch of " << len << " samples holds no full batch of "
                                                             << spec.batch_size);
    batches_per_epoch_ = len / spec.batch_size;  // training batches are full; the rest is dropped
  }
  U2PL_CHECK(spec.first_batch >= 0 && spec.first_batch < batches_per_epoch_,
             "loader: first batch " << spec.first_batch << " outside the epoch's " << batches_per_epoch_ << " batches");
  total_ = spec.epochs > 0 ? spec.epochs * batches_per_epoch_ - spec.first_batch : -1;
  capacity_ = spec.prefetch > 0 ? spec.prefetch : 2 * spec.workers;
  slots_.resize(static_cast<size_t>(capacity_));
  try {
    for (int i = 0; i < spec.workers; ++i) threads_.emplace_back([this] { work(); });
  } catch (...) {
    stop_and_join();
    throw;
  }
}

Loader::~Loader() { stop_and_join(); }

void Loader::stop_and_join() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  space_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

int64_t Loader::skipped() const {
  std::lock_guard<std::mutex> lk(mu_);
  return static_cast<int64_t>(bad_.size());
}

std::optional<Batch> Loader::next() {
  std::unique_lock<std::mutex> lk(mu_);
  if (error_) std::rethrow_exception(error_);
  if (total_ >= 0 && consumed_ >= total_) return std::nullopt;
  Slot& slot = slots_[static_cast<size_t>(consumed_ % capacity_)];
  ready_cv_.wait(lk, [&] { return slot.ready; });
  Slot taken = std::move(slot);
  slot = Slot{};
  ++consumed_;
  if (taken.error) error_ = taken.error;
  lk.unlock();
  space_cv_.notify_all();
  if (taken.error) std::rethrow_exception(taken.error);
  return std::move(taken.batch);
}

void Loader::work() {
  for (;;) {
    int64_t g = 0;
    {
      std::unique_lock<std::mutex> lk(mu_);
      const auto done = [&] { return stop_ || failed_ || (total_ >= 0 && claimed_ >= total_); };
      space_cv_.wait(lk, [&] { return done() || claimed_ < consumed_ + capacity_; });
      if (done()) return;
      g = claimed_++;
    }
    Slot s;
    s.ready = true;
    try {
      s.batch = build(g);
    } catch (...) {
      s.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (s.error) failed_ = true;  // later batches are not started; earlier ones are claimed already
      slots_[static_cast<size_t>(g % capacity_)] = std::move(s);
    }
    ready_cv_.notify_all();
    space_cv_.notify_all();
  }
}

std::shared_ptr<const std::vector<int64_t>> Loader::order_of(int64_t epoch) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = orders_.find(epoch);
  if (it != orders_.end()) return it->second;
  // Batches in flight span at most two epochs: drop the orders of those before the consumer's.
  const int64_t current = spec_.first_epoch + (spec_.first_batch + consumed_) / batches_per_epoch_;
  orders_.erase(orders_.begin(), orders_.lower_bound(current));
  auto order = std::make_shared<const std::vector<int64_t>>(
      epoch_order(spec_, static_cast<int64_t>(ds_.size()), epoch));
  orders_[epoch] = order;
  return order;
}

LoadedSample Loader::load_or_skip(const std::vector<int64_t>& order, int64_t pos) {
  const int64_t n = static_cast<int64_t>(order.size());
  const bool skip = ds_.spec().skip_bad;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t idx = order[static_cast<size_t>((pos + t) % n)];
    if (skip) {
      std::lock_guard<std::mutex> lk(mu_);
      if (bad_.count(idx)) continue;
    }
    try {
      return ds_.load(static_cast<size_t>(idx));
    } catch (const std::exception& e) {
      const std::string what = "loader: sample '" + ds_.sample(static_cast<size_t>(idx)).id + "': " + e.what();
      if (!skip) throw Error(what);
      bool first = false;
      {
        std::lock_guard<std::mutex> lk(mu_);
        first = bad_.insert(idx).second;
      }
      if (first) U2PL_LOG("warning: skipping an unreadable sample (skip_bad): " << what);
    }
  }
  U2PL_FAIL("loader: no loadable sample left in the epoch order of " << ds_.spec().data_list);
}

Batch Loader::build(int64_t g) {
  g += spec_.first_batch;
  Batch b;
  b.epoch = spec_.first_epoch + g / batches_per_epoch_;
  b.index = g % batches_per_epoch_;
  const std::shared_ptr<const std::vector<int64_t>> order = order_of(b.epoch);
  const int64_t start = b.index * spec_.batch_size + spec_.take_first;
  const int64_t count = spec_.take_count > 0
                            ? spec_.take_count
                            : std::min<int64_t>(spec_.batch_size, static_cast<int64_t>(order->size()) - start);
  const uint64_t draws = epoch_counter_base(spec_.stream, b.epoch) + kAugmentRegion;
  std::vector<ValSample> samples;
  samples.reserve(static_cast<size_t>(count));
  bool labeled = true;
  for (int64_t k = 0; k < count; ++k) {
    const LoadedSample s = load_or_skip(*order, start + k);
    if (spec_.order == LoaderOrder::InOrder)
      samples.push_back(prepare_val(s, aug_, spec_.val_crop));
    else
      samples.push_back(augment_train(s, aug_, spec_.seed, draws + uint64_t(start + k) * kAugmentCounters));
    labeled = labeled && !samples.back().label.empty();
    b.ids.push_back(s.id);
  }
  const int h = samples[0].height, w = samples[0].width;
  for (int64_t k = 1; k < count; ++k)
    U2PL_CHECK(samples[k].height == h && samples[k].width == w,
               "loader: " << b.ids[k] << " is " << samples[k].width << "x" << samples[k].height << ", "
                          << b.ids[0] << " " << w << "x" << h
                          << ": uncropped samples of one batch must share a size (use batch 1)");
  const size_t image_numel = size_t(3) * h * w, label_numel = size_t(h) * w;
  b.images = Tensor(Shape::nchw(count, 3, h, w), Device::CPU);
  if (labeled) b.labels = Labels(Shape{count, h, w}, Device::CPU);
  for (int64_t k = 0; k < count; ++k) {
    std::memcpy(b.images.data() + k * image_numel, samples[k].image.data(), image_numel * sizeof(float));
    if (labeled)
      std::memcpy(b.labels.data() + k * label_numel, samples[k].label.data(), label_numel * sizeof(int32_t));
  }
  return b;
}

}  // namespace u2pl
