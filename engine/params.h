// Named parameters and buffers in flat arenas (STYLE 7): a layer declares each tensor under its
// PyTorch state-dict key; the set lays out values, gradients (same layout, so zeroing is one
// memset) and buffers, then hands out views. Covered by tests/test_engine.cpp.
#pragma once
#include <string>
#include <vector>

#include "engine/context.h"

namespace u2pl {

enum class Init { Zeros, Ones, KaimingNormalFanOut, Uniform };

struct ParamDecl {
  std::string name;     // state-dict key, e.g. "encoder.layer1.0.conv1.weight"
  Shape shape;
  Init init;
  bool trainable;       // false: a buffer (BN running statistics)
  int group;            // learning-rate group (0 backbone, 1 decoder/heads)
  float init_bound;     // Uniform: U(-b, b)
  int segment;          // segment id in the value/grad arena (trainable) or the buffer arena
};

class ParamSet {
 public:
  int declare(const std::string& name, Shape shape, Init init, int group = 0, float bound = 0.f);
  int declare_buffer(const std::string& name, Shape shape, Init init);
  // with_grads false: no gradient arena (inference, the EMA teacher); grad() then throws.
  void allocate(Device dev, bool with_grads = true);
  void initialize(uint64_t seed);  // draws every tensor from its Init with the engine RNG
  bool allocated() const { return allocated_; }

  TensorView value(int id) const;
  TensorView grad(int id) const;  // trainable only
  int find(const std::string& name) const;  // -1 when absent
  const std::vector<ParamDecl>& decls() const { return decls_; }
  void zero_grad();

  const Arena& values() const { return values_; }
  const Arena& grads() const { return grads_; }
  const Arena& buffers() const { return buffers_; }
  // Per-float learning-rate group of the value arena (padding floats get group 0).
  std::vector<int> group_of_floats() const;

 private:
  std::vector<ParamDecl> decls_;
  Arena values_{"parameters"}, grads_{"gradients"}, buffers_{"buffers"};
  bool allocated_ = false;
  bool with_grads_ = true;
};

}  // namespace u2pl
