// SGD step on CUDA: one grid-stride kernel over the whole parameter arena with the SgdStep functor
// of engine/math.h and the learning-rate table passed by value. Must match torch.optim.SGD
// (momentum, weight decay, dampening 0, no Nesterov) with parameter groups. Covered by
// tests/test_cuda_layers.cpp ("sgd").
#include <math_constants.h>

#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "layers/sgd.h"

namespace u2pl {
namespace {

// params, grads, momentum, group (n). A group index past the table reads NaN, never past the
// array, so a misfiled float poisons its parameter visibly (the kernel cannot throw).
__global__ void sgd_kernel(int64_t n, SgdStep f, float* params, const float* grads, float* momentum,
                           const uint8_t* group, LrTable lrs) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int gi = group[i];
    const float lr = gi < kMaxLrGroups ? lrs.lr[gi] : CUDART_NAN_F;
    f(params[i], grads[i], momentum[i], lr);
  }
}

}  // namespace

void sgd_step_cuda(Context& ctx, const SgdConfig& cfg, TensorView params, TensorView grads,
                   TensorView momentum, MaskView group, const LrTable& lrs) {
  const int64_t n = params.numel();
  const SgdStep f{cfg.momentum, cfg.weight_decay};
  sgd_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, f, params.data, grads.data,
                                                               momentum.data, group.data, lrs);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
