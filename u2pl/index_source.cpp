// Philox-backed and replayed index sources (u2pl/index_source.h).
#include "u2pl/index_source.h"

#include "engine/check.h"

namespace u2pl {

std::vector<int64_t> PhiloxIndexSource::draw(int64_t n, int64_t high) {
  U2PL_CHECK(n >= 0 && high > 0 && high <= int64_t(UINT32_MAX),
             "index draw: need n >= 0 and 0 < high < 2^32, got n " << n << ", high " << high);
  const uint64_t seed = rng_.seed(), offset = rng_.reserve(uint64_t(n));
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    out[size_t(i)] = int64_t((uint64_t(philox_u32(seed, offset, uint64_t(i))) * uint64_t(high)) >> 32);
  return out;
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
