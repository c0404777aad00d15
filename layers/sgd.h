// SGD with momentum, weight decay and per-group learning rates over the flat parameter,
// gradient and momentum arenas: one loop (one kernel on CUDA) per step, not one per tensor.
// Must match torch.optim.SGD(momentum, weight_decay, dampening 0, nesterov False) with
// parameter groups. Tests: test_layers_fixtures.cpp (two PyTorch steps), test_cuda_layers.cpp.
#pragma once
#include <vector>

#include "engine/context.h"

namespace u2pl {

constexpr int kMaxLrGroups = 8;

struct SgdConfig {
  float momentum = 0.9f;
  float weight_decay = 0.f;
};

// params, grads, momentum: 1-D views of equal length; group (same length) holds each float's
// learning-rate group, an index into lrs.
void sgd_step(Context& ctx, const SgdConfig& cfg, TensorView params, TensorView grads,
              TensorView momentum, MaskView group, const std::vector<float>& lrs);

struct LrTable {
  float lr[kMaxLrGroups];
};
void sgd_step_cuda(Context& ctx, const SgdConfig& cfg, TensorView params, TensorView grads,
                   TensorView momentum, MaskView group, const LrTable& lrs);

}  // namespace u2pl
