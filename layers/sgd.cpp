// SGD step: checks, CPU loop and dispatch (layers/sgd.h).
#include "layers/sgd.h"

#include <limits>

#include "engine/math.h"

namespace u2pl {

void sgd_step(Context& ctx, const SgdConfig& cfg, TensorView params, TensorView grads,
              TensorView momentum, MaskView group, const std::vector<float>& lrs) {
  const int64_t n = params.numel();
  U2PL_CHECK(grads.numel() == n && momentum.numel() == n && group.numel() == n,
             "sgd: parameters (" << n << "), gradients (" << grads.numel() << "), momentum ("
                                 << momentum.numel() << ") and groups (" << group.numel()
                                 << ") must have one entry per parameter");
  U2PL_CHECK(!lrs.empty() && lrs.size() <= kMaxLrGroups,
             "sgd: expected 1 to " << kMaxLrGroups << " learning-rate groups, got " << lrs.size());
  for (const TensorView* t : {&params, &grads, &momentum}) check_device(*t, ctx.device(), "sgd");
  check_device(group, ctx.device(), "sgd groups");
  // Unused groups hold NaN, so a float filed under a group with no learning rate poisons its
  // parameter visibly on CUDA (where the kernel cannot throw) instead of training silently.
  LrTable table;
  for (int i = 0; i < kMaxLrGroups; ++i)
    table.lr[i] = i < static_cast<int>(lrs.size()) ? lrs[i] : std::numeric_limits<float>::quiet_NaN();
  if (ctx.device() == Device::CUDA) return sgd_step_cuda(ctx, cfg, params, grads, momentum, group, table);
  for (int64_t i = 0; i < n; ++i)
    U2PL_CHECK(group.data[i] < lrs.size(), "sgd: parameter " << i << " is in group "
                                               << int(group.data[i]) << " but only " << lrs.size()
                                               << " learning rates were given");
  const SgdStep f{cfg.momentum, cfg.weight_decay};
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(params.data[i], grads.data[i], momentum.data[i], table.lr[group.data[i]]);
}

}  // namespace u2pl
