// Where the contrastive loss gets its random indices (uniform, with replacement): Philox for
// training, or a replay of recorded draws so a step can be compared with a dump of the public
// code's torch.randint calls. Tests: test_losses.cpp, test_reference.cpp (contrastive cases).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/rng.h"

namespace u2pl {

class IndexSource {
 public:
  virtual ~IndexSource() = default;
  // n indices, each uniform in [0, high); high > 0.
  virtual std::vector<int64_t> draw(int64_t n, int64_t high) = 0;
};

// Draws from a Philox stream: element i of a call is philox_u32(seed, offset, i) scaled to
// [0, high) by Lemire's multiply-shift; the Rng's offset then moves past the call.
class PhiloxIndexSource : public IndexSource {
 public:
  explicit PhiloxIndexSource(Rng& rng) : rng_(rng) {}
  std::vector<int64_t> draw(int64_t n, int64_t high) override;

 private:
  Rng& rng_;
};

// Replays recorded draws in call order. Each call must ask for as many indices as the next
// recording holds (and, where `highs` is given, with the recorded bound); every index must lie
// in [0, high). Anything else throws, naming the call.
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
