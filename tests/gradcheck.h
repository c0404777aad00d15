// Finite-difference gradient checking in double (STYLE 12): loss = Σ w·y with fixed random w,
// central differences with eps 1e-6, pass when |a − n| ≤ 1e-5 + 1e-3·|n|, points near kinks
// skipped by the caller's predicate, large tensors subsampled with a seeded RNG.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/rng.h"

namespace u2pl::test {

inline std::vector<double> random_vec(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * philox_uniform(seed, 0, i);
  return v;
}

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1, float hi = 1) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * philox_uniform(seed, 0, i);
  return v;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Checks `analytic` (dL/dx for L = loss()) against central differences of loss() in x.
// skip(i) marks points near kinks. At most `max_points` entries are probed (seeded subsample).
inline void check_gradient(const std::string& what, std::vector<double>& x,
                           const std::vector<double>& analytic, const std::function<double()>& loss,
                           const std::function<bool(size_t)>& skip = nullptr, size_t max_points = 60,
                           uint64_t seed = 99) {
  REQUIRE(analytic.size() == x.size());
  const double eps = 1e-6;
  size_t probed = 0, failed = 0;
  const size_t n = x.size();
  const size_t stride_pts = n <= max_points ? n : max_points;
  for (size_t k = 0; k < stride_pts; ++k) {
    const size_t i = n <= max_points ? k : size_t(philox_u32(seed, 0, k) % n);
    if (skip && skip(i)) continue;
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double lp = loss();
    x[i] = x0 - eps;
    const double lm = loss();
    x[i] = x0;
    const double num = (lp - lm) / (2 * eps);
    ++probed;
    if (std::fabs(analytic[i] - num) > 1e-5 + 1e-3 * std::fabs(num)) {
      if (failed++ < 5)
        MESSAGE(what << "[" << i << "]: analytic " << analytic[i] << ", numeric " << num);
    }
  }
  INFO(what << ": " << failed << " of " << probed << " probed entries differ");
  CHECK(failed == 0);
  CHECK(probed > 0);
}

}  // namespace u2pl::test
