// The full-width ResNet-101 DeepLabv3+ (deep stem, OS8, 21 classes, rep head) against PyTorch at
// a small input, where PyTorch is installed: tools/pytorch/check_full_r101.sh generates the ~0.5 GB
// dump with tools/pytorch/gen_model_fixture.py --full-r101 and runs this suite ("torch") on it;
// elsewhere the CTest entry reports skipped. Eval and train outputs and running statistics are
// compared tightly. Gradients are compared for the decoder only: even with the dump's damped
// residual branches, PyTorch's own float32 encoder gradients are up to 8% of max off the float64
// values in layer3 (the generator prints these errors), while the decoder's are within 1e-2; there
// a few entries (at most 1 in 10^4) may move with ReLU masks that float32 rounding flips near 0,
// and conv biases feeding a train-mode BN, zero in exact arithmetic, must stay below 1e-4.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "tests/model_fixture.h"

using namespace u2pl;
using namespace u2pl::test;

TEST_SUITE("torch") {
  TEST_CASE("full-width ResNet-101 matches PyTorch") {
    const char* path = std::getenv("U2PL_FULL_R101");
    REQUIRE_MESSAGE(path != nullptr, "U2PL_FULL_R101 must name the dump (tools/pytorch/check_full_r101.sh sets it)");
    const SafeTensorsFile f(path);
    U2plNet net(config_of(f));
    net.allocate(Device::CPU, 1);
    load_dump_weights(f, net);
    Context ctx(Device::CPU);
    const Tensor x = tensor_of(f, "in.x");
    const NetOutputs ev = net.forward(ctx, x, NetMode::Eval, nullptr);
    expect_tensor(f, "eval.pred", ev.pred, kForwardNormwise);
    expect_tensor(f, "eval.rep", ev.rep, kForwardNormwise);
    load_dump_dropout(f, net, x.shape());
    const NetOutputs tr = net.forward(ctx, x, NetMode::Train, nullptr);
    const Tol train{1e-5, 2e-3, true};  // PyTorch's own float32 train outputs are 5e-4 of max off
    expect_tensor(f, "train.pred", tr.pred, train);
    expect_tensor(f, "train.rep", tr.rep, train);
    for (const ParamDecl& d : net.params().decls())
      if (!d.trainable) expect_tensor(f, "after." + d.name, net.params().value(net.params().find(d.name)), train);
    net.params().zero_grad();
    net.backward(ctx, tensor_of(f, "loss.w_pred"), tensor_of(f, "loss.w_rep"), TensorView());
    int checked = 0;
    for (const ParamDecl& d : net.params().decls()) {
      if (!d.trainable || d.name.rfind("decoder.", 0) != 0) continue;
      const std::vector<float> want = f.floats("grad." + d.name);
      double scale = 0;
      for (float v : want) scale = std::max(scale, std::fabs(double(v)));
      const Tol tol = scale < 1e-10 ? Tol{1e-4, 0, false} : Tol{1e-5, 1e-2, true, 1e-4};
      expect_tensor(f, "grad." + d.name, net.params().grad(net.params().find(d.name)), tol);
      ++checked;
    }
    int in_dump = 0;
    for (const auto& kv : f.entries()) in_dump += kv.first.rfind("grad.decoder.", 0) == 0;
    CHECK(checked == in_dump);
  }
}
