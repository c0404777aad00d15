// ParamSet (engine/params.h).
#include "engine/params.h"

#include <cmath>

#include "engine/rng.h"

namespace u2pl {

int ParamSet::declare(const std::string& name, Shape shape, Init init, int group, float bound) {
  U2PL_CHECK(!allocated_, "parameter '" << name << "' declared after allocate()");
  U2PL_CHECK(find(name) < 0, "parameter '" << name << "' declared twice");
  const int seg = values_.add(shape);
  grads_.add(shape);
  decls_.push_back({name, shape, init, true, group, bound, seg});
  return static_cast<int>(decls_.size()) - 1;
}

int ParamSet::declare_buffer(const std::string& name, Shape shape, Init init) {
  U2PL_CHECK(!allocated_, "buffer '" << name << "' declared after allocate()");
  U2PL_CHECK(find(name) < 0, "buffer '" << name << "' declared twice");
  const int seg = buffers_.add(shape);
  decls_.push_back({name, shape, init, false, 0, 0.f, seg});
  return static_cast<int>(decls_.size()) - 1;
}

void ParamSet::allocate(Device dev, bool with_grads) {
  U2PL_CHECK(!allocated_, "parameter set allocated twice");
  with_grads_ = with_grads;
  values_.allocate(dev);
  if (with_grads) grads_.allocate(dev);
  buffers_.allocate(dev);
  allocated_ = true;
}

// Box-Muller on two Philox uniforms; u1 is moved into (0, 1] so log() is finite.
static float normal_at(uint64_t seed, uint64_t off, uint64_t i) {
  const float u1 = 1.0f - philox_uniform(seed, off, 2 * i);
  const float u2 = philox_uniform(seed, off, 2 * i + 1);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.283185307179586f * u2);
}

void ParamSet::initialize(uint64_t seed) {
  U2PL_CHECK(allocated_, "initialize() before allocate()");
  for (size_t k = 0; k < decls_.size(); ++k) {
    const ParamDecl& d = decls_[k];
    std::vector<float> v(static_cast<size_t>(d.shape.numel()));
    const uint64_t off = static_cast<uint64_t>(k) << 32;  // one disjoint counter range per tensor
    switch (d.init) {
      case Init::Zeros: break;
      case Init::Ones: std::fill(v.begin(), v.end(), 1.0f); break;
      case Init::KaimingNormalFanOut: {
        // PyTorch kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out),
        // fan_out = out_channels * kernel area.
        U2PL_CHECK(d.shape.ndim == 4, "kaiming init needs a 4-D weight: " << d.name);
        const double fan_out = double(d.shape[0]) * d.shape[2] * d.shape[3];
        const float std = static_cast<float>(std::sqrt(2.0 / fan_out));
        for (size_t i = 0; i < v.size(); ++i) v[i] = std * normal_at(seed, off, i);
        break;
      }
      case Init::Uniform:
        for (size_t i = 0; i < v.size(); ++i)
          v[i] = d.init_bound * (2.0f * philox_uniform(seed, off, i) - 1.0f);
        break;
    }
    copy_tensor(value(static_cast<int>(k)), TensorView(v.data(), d.shape, Device::CPU));
  }
}

TensorView ParamSet::value(int id) const {
  U2PL_CHECK(id >= 0 && id < static_cast<int>(decls_.size()), "no parameter with id " << id);
  const ParamDecl& d = decls_[id];
  return d.trainable ? values_.view(d.segment) : buffers_.view(d.segment);
}

TensorView ParamSet::grad(int id) const {
  U2PL_CHECK(id >= 0 && id < static_cast<int>(decls_.size()), "no parameter with id " << id);
  U2PL_CHECK(decls_[id].trainable, "'" << decls_[id].name << "' is a buffer and has no gradient");
  U2PL_CHECK(with_grads_, "'" << decls_[id].name << "': this parameter set was allocated without gradients");
  return grads_.view(decls_[id].segment);
}

int ParamSet::find(const std::string& name) const {
  for (size_t i = 0; i < decls_.size(); ++i)
    if (decls_[i].name == name) return static_cast<int>(i);
  return -1;
}

void ParamSet::zero_grad() {
  U2PL_CHECK(with_grads_, "zero_grad: this parameter set was allocated without gradients");
  fill_zero(grads_.all());
}

std::vector<int> ParamSet::group_of_floats() const {
  std::vector<int> g(static_cast<size_t>(values_.floats()), 0);
  for (const ParamDecl& d : decls_) {
    if (!d.trainable) continue;
    const TensorView v = values_.view(d.segment);
    const int64_t start = v.data - values_.all().data;
    std::fill(g.begin() + start, g.begin() + start + v.numel(), d.group);
  }
  return g;
}

}  // namespace u2pl
