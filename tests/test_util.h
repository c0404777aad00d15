// Helpers for the Tier 2 fixture tests (STYLE 13): open a PyTorch-dumped fixture from
// tests/fixtures/ (written by tools/pytorch/gen_fixtures.py), turn its tensors into engine tensors,
// and compare engine results with the stored ones, reporting how many entries differ and the worst.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/params.h"
#include "engine/rng.h"
#include "engine/safetensors.h"

namespace u2pl::test {

// Pass when |got − want| ≤ abs + rel·|want| (normwise: rel·max|want| over the tensor, the
// scale float32 rounding error follows in long reductions such as a deep network's gradients).
// max_bad_fraction: the share of entries allowed out of tolerance (default none), for full-size
// networks whose float32 forward flips a few ReLU masks near 0 (each flip moves a few gradients).
// n floats uniform in [lo, hi) from Philox stream (seed, 0).
inline std::vector<float> uniform(int64_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = lo + (hi - lo) * philox_uniform(seed, 0, i);
  return v;
}

// The message of the u2pl::Error that f() throws ("" when it does not throw).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

struct Tol {
  double abs, rel;
  bool normwise = false;
  double max_bad_fraction = 0;
};
constexpr Tol kForward{1e-5, 1e-4};
constexpr Tol kGrad{1e-5, 1e-3};
constexpr Tol kExact{0, 0};
constexpr Tol kForwardNormwise{1e-5, 1e-4, true};
constexpr Tol kGradNormwise{1e-5, 1e-3, true};

template <class T>
void check_close(const std::string& what, const std::vector<T>& got, const std::vector<T>& want,
                 Tol tol) {
  REQUIRE_MESSAGE(got.size() == want.size(),
                  what << ": " << got.size() << " entries, expected " << want.size());
  if (got.empty()) return;
  size_t bad = 0, worst = 0;
  double worst_excess = -INFINITY;  // error minus tolerance of the worst entry
  double scale = 0;
  for (const T& w : want) scale = std::max(scale, std::fabs(double(w)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    const double lim = tol.abs + tol.rel * (tol.normwise ? scale : std::fabs(double(want[i])));
    if (!(err <= lim)) ++bad;  // counts NaN
    const double excess = std::isnan(err) ? INFINITY : err - lim;
    if (excess > worst_excess) worst_excess = excess, worst = i;
  }
  std::ostringstream msg;
  msg << std::setprecision(9) << what << ": " << bad << " of " << got.size()
      << " entries out of tolerance; worst at flat index " << worst << ": got "
      << double(got[worst]) << ", expected " << double(want[worst]);
  CHECK_MESSAGE(double(bad) <= tol.max_bad_fraction * double(got.size()), msg.str());
}

class Fixture {
 public:
  // family: the file name without extension, e.g. "conv2d".
  explicit Fixture(const std::string& family)
      : f_(std::string(U2PL_FIXTURE_DIR) + "/" + family + ".safetensors") {}

  int cases(const std::string& kind) const { return std::stoi(f_.meta(kind + ".cases")); }
  std::string meta(const std::string& key) const { return f_.meta(key); }
  int meta_int(const std::string& key) const { return std::stoi(f_.meta(key)); }
  float meta_float(const std::string& key) const { return std::stof(f_.meta(key)); }
  Shape shape(const std::string& name) const { return f_.shape(name); }
  std::vector<float> floats(const std::string& name) const { return f_.floats(name); }

  Tensor tensor(const std::string& name) const {
    return Tensor::from_host(f_.shape(name), f_.floats(name), Device::CPU);
  }
  Labels labels(const std::string& name) const {
    return Labels::from_host(f_.shape(name), f_.ints(name), Device::CPU);
  }
  Mask mask(const std::string& name) const {
    return Mask::from_host(f_.shape(name), f_.bytes(name), Device::CPU);
  }
  // Copies the stored tensor into the parameter or buffer `key` of ps, by name and shape.
  void load_param(ParamSet& ps, const std::string& key, const std::string& name) const {
    const int id = ps.find(key);
    REQUIRE_MESSAGE(id >= 0, "no parameter " << key);
    const TensorView v = ps.value(id);
    REQUIRE_MESSAGE(v.shape == f_.shape(name), key << " is " << v.shape.str() << ", fixture "
                                                   << name << " is " << f_.shape(name).str());
    copy_tensor(v, tensor(name).view());
  }

  // Compares an engine result with the stored tensor: shape, then values within tol.
  void expect(const std::string& name, const TensorView& got, Tol tol) const {
    CHECK_MESSAGE(got.shape == f_.shape(name),
                  name << ": shape " << got.shape.str() << ", expected " << f_.shape(name).str());
    check_close(name, to_host(got), f_.floats(name), tol);
  }
  void expect(const std::string& name, const LabelView& got) const {
    CHECK_MESSAGE(got.shape == f_.shape(name),
                  name << ": shape " << got.shape.str() << ", expected " << f_.shape(name).str());
    check_close(name, to_host(got), f_.ints(name), kExact);
  }
  void expect(const std::string& name, const MaskView& got) const {
    CHECK_MESSAGE(got.shape == f_.shape(name),
                  name << ": shape " << got.shape.str() << ", expected " << f_.shape(name).str());
    check_close(name, to_host(got), f_.bytes(name), kExact);
  }

 private:
  SafeTensorsFile f_;
};

}  // namespace u2pl::test
