// Where the contrastive loss gets its random indices (uniform, with replacement): Philox for
// training, laid out per step so the CUDA loss draws the same indices on the device, or a replay
// of recorded draws so a step can be compared with a dump of the public code's torch.randint
// calls. Tests: test_unsup_contrastive.cpp, test_reference.cpp (contrastive cases),
// test_cuda_losses.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/hd.h"
#include "engine/rng.h"

namespace u2pl {

// Word i of the Philox stream (seed, offset) scaled to [0, high) by Lemire's multiply-shift
// (bias < high / 2^32); 0 < high < 2^32. PhiloxIndexSource and the CUDA kernels both use it.
U2PL_HD int64_t philox_below(uint64_t seed, uint64_t offset, uint64_t i, int64_t high) {
  return static_cast<int64_t>((static_cast<uint64_t>(philox_u32(seed, offset, i)) * static_cast<uint64_t>(high)) >> 32);
}

// The Philox counters of one contrastive step: term t (0-based, in the order the terms are formed)
// draws its M anchor indices at counter offset anchors(t) and its M·N negative indices at
// negatives(t), which is what successive draw() calls give; the step spans a fixed number of
// terms, however many are formed.
struct PhiloxStep {
  uint64_t seed = 0, base = 0;
  uint64_t anchor_counters = 0;  // ⌈M / 4⌉: four words a counter
  uint64_t stride = 0;           // ⌈M / 4⌉ + ⌈M·N / 4⌉ counters a term
  U2PL_HD uint64_t anchors(int64_t t) const { return base + static_cast<uint64_t>(t) * stride; }
  U2PL_HD uint64_t negatives(int64_t t) const { return anchors(t) + anchor_counters; }
};

class IndexSource {
 public:
  virtual ~IndexSource() = default;
  // n indices, each uniform in [0, high); high > 0.
  virtual std::vector<int64_t> draw(int64_t n, int64_t high) = 0;
  // Bracket one contrastive step of at most `max_terms` terms, each drawing M anchor indices then
  // M·N negative ones. PhiloxIndexSource ends the step max_terms terms after its start however
  // many terms drew, so the CUDA loss, which never reads the term count back, stays in step with
  // the CPU; a replay has nothing to align and ignores them.
  virtual void begin_step(int64_t /*max_terms*/, int64_t /*M*/, int64_t /*N*/) {}
  virtual void end_step() {}
};

// Draws from a Philox stream: element i of a call is philox_below(seed, offset, i, high); the
// Rng's offset then moves past the call.
class PhiloxIndexSource : public IndexSource {
 public:
  explicit PhiloxIndexSource(Rng& rng) : rng_(rng) {}
  std::vector<int64_t> draw(int64_t n, int64_t high) override;
  void begin_step(int64_t max_terms, int64_t M, int64_t N) override;
  void end_step() override;  // moves the Rng to the step's end; throws if the draws ran past it
  // The layout of the step begun last: the CUDA loss draws from it directly.
  const PhiloxStep& step() const { return step_; }

 private:
  Rng& rng_;
  PhiloxStep step_;
  uint64_t step_end_ = 0;
  bool in_step_ = false;
};

// Replays recorded draws in call order. Each call must ask for as many indices as the next
// recording holds (and, where `highs` is given, with the recorded bound); every index must lie
// in [0, high). Anything else throws, naming the call. CPU only: the CUDA loss refuses it.
class ReplayIndexSource : public IndexSource {
 public:
  explicit ReplayIndexSource(std::vector<std::vector<int64_t>> draws, std::vector<int64_t> highs = {});
  std::vector<int64_t> draw(int64_t n, int64_t high) override;
  size_t used() const { return next_; }
  size_t recorded() const { return draws_.size(); }

 private:
  std::vector<std::vector<int64_t>> draws_;
  std::vector<int64_t> highs_;
  size_t next_ = 0;
};

}  // namespace u2pl
