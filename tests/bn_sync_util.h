// Shared by the SyncBN tests of one process (test_layers_grad.cpp, test_cuda_layers.cpp) and of
// two (test_mpi.cpp): a fixed input and output gradient for a batch of 6 images of 3 channels at
// 4x5, and one train-mode BatchNorm2d forward and backward on a slice of it under a given replica
// split, on either device.
#pragma once
#include <cmath>
#include <vector>

#include "engine/context.h"
#include "engine/params.h"
#include "layers/batchnorm.h"

namespace u2pl::test {

inline const Shape kBnBatch{6, 3, 4, 5};

struct BnRun {
  std::vector<float> y, rm, rv, dx, dg, db;  // output, running mean / var, dx, dgamma, dbeta
};

// Images [first, first + n) of the batch through a fresh layer (ParamSet seed 1) on `dev`, its
// statistics merged over `sync` (null: the slice alone).
inline BnRun run_bn(const ReplicaSync* sync, int64_t first = 0, int64_t n = kBnBatch.n(), Device dev = Device::CPU) {
  const Shape xs{n, kBnBatch.c(), kBnBatch.h(), kBnBatch.w()};
  const int64_t per = xs.numel() / n, begin = first * per;
  std::vector<float> x(size_t(xs.numel())), dy(x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    const double i = double(begin + int64_t(k));
    x[k] = float(std::sin(0.37 * i) * 2 + 3 + 0.1 * double((begin + int64_t(k)) % 7));
    dy[k] = float(std::cos(0.91 * i));
  }
  ParamSet ps;
  BatchNorm2d bn(ps, "bn", int(xs.c()));
  ps.allocate(dev);
  ps.initialize(1);
  Context ctx(dev, /*deterministic=*/true);
  ctx.set_replica_sync(sync);
  Tensor tx = Tensor::from_host(xs, x, dev), tdy = Tensor::from_host(xs, dy, dev);
  Tensor y(xs, dev), dx(xs, dev), saved(bn.saved_shape(), dev);
  bn.forward(ctx, tx, y, {true, true}, saved);
  ps.zero_grad();
  bn.backward(ctx, tx, saved, true, tdy, dx, 0.f);
  return BnRun{y.to_host(), to_host(ps.value(bn.mean_id())), to_host(ps.value(bn.var_id())), dx.to_host(),
               to_host(ps.grad(bn.weight_id())), to_host(ps.grad(bn.bias_id()))};
}

}  // namespace u2pl::test
