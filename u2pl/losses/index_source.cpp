// Philox-backed and replayed index sources (u2pl/losses/index_source.h).
#include "u2pl/losses/index_source.h"

#include "engine/check.h"

namespace u2pl {

std::vector<int64_t> PhiloxIndexSource::draw(int64_t n, int64_t high) {
  U2PL_CHECK(n >= 0 && high > 0 && high <= int64_t(UINT32_MAX),
             "index draw: need n >= 0 and 0 < high < 2^32, got n " << n << ", high " << high);
  const uint64_t seed = rng_.seed(), offset = rng_.reserve(uint64_t(n));
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = philox_below(seed, offset, uint64_t(i), high);
  return out;
}

void PhiloxIndexSource::begin_step(int64_t max_terms, int64_t M, int64_t N) {
  U2PL_CHECK(max_terms >= 0 && M > 0 && N > 0,
             "index draw step: need max_terms >= 0, M > 0, N > 0, got " << max_terms << ", " << M << ", " << N);
  step_.seed = rng_.seed();
  step_.base = rng_.offset();
  step_.anchor_counters = (uint64_t(M) + 3) / 4;  // what draw(M, ·) reserves
  step_.stride = step_.anchor_counters + (uint64_t(M) * uint64_t(N) + 3) / 4;
  step_end_ = step_.base + uint64_t(max_terms) * step_.stride;
  in_step_ = true;
}

void PhiloxIndexSource::end_step() {
  U2PL_CHECK(in_step_, "index draw step: end_step() without begin_step()");
  in_step_ = false;
  U2PL_CHECK(rng_.offset() <= step_end_, "index draw step: the draws ran " << rng_.offset() - step_end_
                                             << " counters past the step's end");
  rng_.reserve(4 * (step_end_ - rng_.offset()));  // four words a counter
}

ReplayIndexSource::ReplayIndexSource(std::vector<std::vector<int64_t>> draws, std::vector<int64_t> highs)
    : draws_(std::move(draws)), highs_(std::move(highs)) {
  U2PL_CHECK(highs_.empty() || highs_.size() == draws_.size(),
             "replayed draws: " << highs_.size() << " bounds for " << draws_.size() << " draws");
}

std::vector<int64_t> ReplayIndexSource::draw(int64_t n, int64_t high) {
  U2PL_CHECK(next_ < draws_.size(), "replayed draws: call " << next_ << " asks for " << n
                                        << " indices below " << high << ", but only " << draws_.size()
                                        << " draws were recorded");
  const size_t k = next_++;
  const std::vector<int64_t>& d = draws_[k];
  U2PL_CHECK(int64_t(d.size()) == n,
             "replayed draws: call " << k << " asks for " << n << " indices, the recording holds " << d.size());
  U2PL_CHECK(highs_.empty() || highs_[k] == high,
             "replayed draws: call " << k << " draws below " << high << ", the recording below " << highs_[k]);
  for (size_t i = 0; i < d.size(); ++i)
    U2PL_CHECK(d[i] >= 0 && d[i] < high, "replayed draws: call " << k << " index " << i << " is "
                                             << d[i] << ", outside [0, " << high << ")");
  return d;
}

}  // namespace u2pl
