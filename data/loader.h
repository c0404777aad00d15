// A batch loader: worker threads decode and augment whole batches into a bounded window of
// slots; next() hands them out in order, so a seed gives the same batches for any worker count.
// Epoch orders follow SPEC §3 (labeled list repeated and shuffled to the unlabeled length).
// Covered by tests/test_loader.cpp.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/tensor.h"

namespace u2pl {

enum class LoaderOrder {
  InOrder,   // validation: the list in order, one batch per ceil(N / B), the last one partial
  Shuffled,  // unlabeled stream: a fresh permutation each epoch, floor(N / B) full batches
  Repeated,  // labeled stream: the list repeated to epoch_length and shuffled each epoch
};

struct LoaderSpec {
  LoaderOrder order = LoaderOrder::Shuffled;
  int batch_size = 1;
  int workers = 1;             // >= 1 (the config's `workers`)
  int prefetch = 0;            // batches built ahead of the consumer; 0: 2 per worker
  uint64_t seed = 0;           // trainer.seed
  uint64_t stream = 0;         // separates loaders sharing a seed (e.g. labeled 0, unlabeled 1); < 256
  int64_t epoch_length = 0;    // Repeated: samples per epoch (|unlabeled|)
  int64_t first_epoch = 0;     // where a resumed run starts
  int64_t first_batch = 0;     // ... and its first batch within first_epoch (< batches per epoch)
  int64_t epochs = 0;          // epochs to produce, counting first_epoch whole; 0: without end
  ValCrop val_crop = ValCrop::Center;  // InOrder batches use prepare_val, the others augment_train
  // Training orders over several processes: each batch is positions [take_first, take_first +
  // take_count) of the batch of batch_size (one process's replicas); 0: the whole batch.
  int64_t take_first = 0, take_count = 0;
};

struct Batch {
  Tensor images;                 // (B, 3, H, W) normalised, CPU
  Labels labels;                 // (B, H, W); empty unless every sample of the batch has labels
  std::vector<std::string> ids;  // (B) split entries
  int64_t epoch = 0;
  int64_t index = 0;  // batch number within the epoch
};

// Counter layout of the Philox stream (seed, offset) of a loader, offset a 64-bit counter:
// bits 56-63 the stream, bits 32-55 the epoch, bits 0-31 within the epoch: [0, 2^31) the epoch's
// shuffle (Rng, one counter per draw), [2^31, 2^32) augmentation, kAugmentCounters per position
// of the epoch order (a sample's draws depend on its position, not on the thread that builds it).
uint64_t epoch_counter_base(uint64_t stream, int64_t epoch);
constexpr uint64_t kAugmentRegion = uint64_t(1) << 31;

// The dataset indices of epoch `epoch`, in order (length N, or epoch_length for Repeated).
// Repeated: each of the L entries appears floor(E / L) times, plus once more for E mod L of them
// (a random subset), then the whole list is shuffled (Fisher-Yates).
std::vector<int64_t> epoch_order(const LoaderSpec& spec, int64_t dataset_size, int64_t epoch);

class Loader {
 public:
  // `ds` must outlive the loader. With ds.spec().skip_bad a sample that fails to load is replaced
  // by the next loadable one of the epoch order, with a warning; otherwise the error reaches the
  // caller from next(). Starts the workers at once.
  Loader(const Dataset& ds, const AugmentSpec& aug, const LoaderSpec& spec);
  ~Loader();  // stops and joins the workers, also while they wait on a full window
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  // The next batch in order, blocking until it is built; empty after the last epoch. An error
  // while building it is rethrown here (naming the sample and file) and again on later calls.
  // One consumer thread.
  std::optional<Batch> next();
  // Distinct samples skipped as unreadable so far (skip_bad).
  int64_t skipped() const;

 private:
  struct Slot {
    bool ready = false;
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  void work();
  void stop_and_join();
  Batch build(int64_t global);
  std::shared_ptr<const std::vector<int64_t>> order_of(int64_t epoch);
  LoadedSample load_or_skip(const std::vector<int64_t>& order, int64_t pos);

  const Dataset& ds_;
  AugmentSpec aug_;
  LoaderSpec spec_;
  int64_t batches_per_epoch_ = 0;
  int64_t total_ = -1;  // batches to produce; -1: without end
  int capacity_ = 0;    // slots in the window

  mutable std::mutex mu_;
  std::condition_variable space_cv_, ready_cv_;
  std::vector<Slot> slots_;  // batch g lives in slots_[g % capacity_]
  int64_t claimed_ = 0;      // batches handed to workers
  int64_t consumed_ = 0;     // batches returned by next()
  bool stop_ = false;
  bool failed_ = false;  // a batch failed: no new batches are started
  std::exception_ptr error_;  // the failure next() met, rethrown by every later call
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;  // by epoch
  std::set<int64_t> bad_;  // dataset indices that failed to load
  std::vector<std::thread> threads_;
};

}  // namespace u2pl
