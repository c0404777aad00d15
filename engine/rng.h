// Counter-based Philox4x32-10 (Salmon et al., SC'11): element i of stream (seed, offset) is the
// same number on CPU and GPU, so dropout masks, sampling and augmentation are reproducible
// across devices. Covered by tests/test_engine.cpp (known-answer vector and uniformity).
#pragma once
#include <cstdint>

#include "engine/hd.h"

namespace u2pl {

struct Philox4 {
  uint32_t v[4];
};

U2PL_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Ten rounds of Philox4x32 on counter (c0..c3) with key (k0, k1).
U2PL_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                             uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;  // Philox round multipliers
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;  // Weyl key increments
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(M0, c0, &hi0);
    const uint32_t lo1 = philox_mulhilo(M1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += W0;
    k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The i-th 32-bit word of the stream for (seed, offset): counter = (offset + i / 4), lane i % 4.
U2PL_HD uint32_t philox_u32(uint64_t seed, uint64_t offset, uint64_t i) {
  const uint64_t ctr = offset + (i >> 2);
  const Philox4 r = philox4x32_10(static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32),
                                  0u, 0u, static_cast<uint32_t>(seed),
                                  static_cast<uint32_t>(seed >> 32));
  return r.v[i & 3];
}

// Uniform in [0, 1) with 24 random bits: exactly representable in float32.
U2PL_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  return static_cast<float>(philox_u32(seed, offset, i) >> 8) * (1.0f / 16777216.0f);
}

// A host-side generator: a seed plus a running offset, advanced by what each consumer draws.
// Consumers take a (seed, offset) pair and draw elements 0..n-1; the offset then moves past them.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  // Reserves n words; returns the offset at which they start (counters, i.e. words / 4).
  uint64_t reserve(uint64_t n) {
    const uint64_t start = offset_;
    offset_ += (n + 3) / 4;
    return start;
  }
  float uniform() { return philox_uniform(seed_, reserve(1), 0); }
  // Per-image draws (dropout scales) of a batch split over processes: this process holds images
  // [first, first + its count) of a batch of `total` (0: its batch is the whole). A consumer
  // reserves the words of all `total` images and draws its images' share, so an image's draws
  // do not depend on which process holds it.
  void set_images(int64_t first, int64_t total) {
    image_first_ = first;
    image_total_ = total;
  }
  int64_t image_first() const { return image_first_; }
  int64_t image_total() const { return image_total_; }
  // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < n / 2^32).
  uint32_t below(uint32_t n) {
    return static_cast<uint32_t>((static_cast<uint64_t>(philox_u32(seed_, reserve(1), 0)) * n) >> 32);
  }

 private:
  uint64_t seed_;
  uint64_t offset_;
  int64_t image_first_ = 0, image_total_ = 0;
};

}  // namespace u2pl
