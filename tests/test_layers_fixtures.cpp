// Tier 2 (STYLE 13): the float32 CPU layers against PyTorch dumps in tests/fixtures/ (written by
// tools/pytorch/gen_fixtures.py): Conv2d, BatchNorm2d, ReLU, Dropout2d, MaxPool2d, global average
// pool, channel concat and SGD. Each case holds L = Σ w·y for a stored w; backward is fed dy = w.
// Resize and loss fixtures are in test_layers_fixtures_resize_loss.cpp.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/elementwise.h"
#include "layers/pool.h"
#include "layers/sgd.h"
#include "tests/test_util.h"

using namespace u2pl;
using test::Fixture;
using test::kForward;
using test::kGrad;

static std::string case_prefix(const std::string& kind, int k) {
  return kind + "." + std::to_string(k) + ".";
}

static Conv2dSpec conv_spec(const Fixture& fx, const std::string& c) {
  Conv2dSpec s;
  s.cin = fx.meta_int(c + "cin");
  s.cout = fx.meta_int(c + "cout");
  s.kh = s.kw = fx.meta_int(c + "k");
  s.stride = fx.meta_int(c + "stride");
  s.pad = fx.meta_int(c + "pad");
  s.dilation = fx.meta_int(c + "dilation");
  s.bias = fx.meta_int(c + "bias") != 0;
  return s;
}

TEST_CASE("fixture: Conv2d layer matches torch.nn.functional.conv2d") {
  const Fixture fx("conv2d");
  Context ctx(Device::CPU);
  for (int k = 0; k < fx.cases("conv2d"); ++k) {
    const std::string c = case_prefix("conv2d", k);
    const std::string name = fx.meta(c + "name");  // read here: INFO evaluates lazily
    INFO(c << " " << name);
    const Conv2dSpec s = conv_spec(fx, c);
    ParamSet ps;
    const Conv2d conv(ps, "conv", s);
    ps.allocate(Device::CPU);
    fx.load_param(ps, "conv.weight", c + "weight");
    if (s.bias) fx.load_param(ps, "conv.bias", c + "bias");
    const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w");
    Tensor y(conv.out_shape(x.shape()), Device::CPU), dx(x.shape(), Device::CPU);
    conv.forward(ctx, x, y);
    fx.expect(c + "y", y, kForward);
    ps.zero_grad();
    conv.backward(ctx, x, dy, dx, 0.f);
    fx.expect(c + "dx", dx, kGrad);
    fx.expect(c + "dweight", ps.grad(conv.weight_id()), kGrad);
    if (s.bias) fx.expect(c + "dbias", ps.grad(conv.bias_id()), kGrad);
  }
}

// The plain-loop oracle (the reference of the CUDA parity tests) on the same cases.
TEST_CASE("fixture: conv2d_forward_cpu / conv2d_backward_cpu oracle matches torch") {
  const Fixture fx("conv2d");
  for (int k = 0; k < fx.cases("conv2d"); ++k) {
    const std::string c = case_prefix("conv2d", k);
    const std::string name = fx.meta(c + "name");
    INFO(c << " " << name);
    const Conv2dSpec s = conv_spec(fx, c);
    const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w"), w = fx.tensor(c + "weight");
    const Tensor b = s.bias ? fx.tensor(c + "bias") : Tensor();
    std::vector<float> col(size_t(conv2d_col_floats(s, x.shape())));
    Tensor y(conv2d_out_shape(s, x.shape()), Device::CPU), dx(x.shape(), Device::CPU);
    Tensor dw(w.shape(), Device::CPU), db(Shape{s.cout}, Device::CPU);
    conv2d_forward_cpu<float>(s, x.shape(), x.data(), w.data(), b.data(), y.data(), col.data());
    fx.expect(c + "y", y, kForward);
    conv2d_backward_cpu<float>(s, x.shape(), x.data(), w.data(), dy.data(), dx.data(), 0.f,
                               dw.data(), s.bias ? db.data() : nullptr, col.data());
    fx.expect(c + "dx", dx, kGrad);
    fx.expect(c + "dweight", dw, kGrad);
    if (s.bias) fx.expect(c + "dbias", db, kGrad);
  }
}

TEST_CASE("fixture: batchnorm2d matches torch.nn.BatchNorm2d in train and eval mode") {
  const Fixture fx("batchnorm");
  Context ctx(Device::CPU);
  REQUIRE(fx.cases("batchnorm") == 2);
  for (int k = 0; k < fx.cases("batchnorm"); ++k) {
    const std::string c = case_prefix("batchnorm", k);
    const bool train = fx.meta(c + "mode") == "train";
    INFO(c << (train ? " train" : " eval"));
    const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w");
    ParamSet ps;
    const BatchNorm2d bn(ps, "bn", int(x.shape().c()));
    ps.allocate(Device::CPU);
    for (const char* key : {"weight", "bias", "running_mean", "running_var"})
      fx.load_param(ps, std::string("bn.") + key, c + key);
    Tensor y(x.shape(), Device::CPU), dx(x.shape(), Device::CPU);
    Tensor saved(bn.saved_shape(), Device::CPU);
    BatchNormMode mode;
    mode.batch_stats = train;
    bn.forward(ctx, x, y, mode, saved);
    fx.expect(c + "y", y, kForward);
    fx.expect(c + "running_mean_after", ps.value(bn.mean_id()), kForward);
    fx.expect(c + "running_var_after", ps.value(bn.var_id()), kForward);
    ps.zero_grad();
    bn.backward(ctx, x, saved, train, dy, dx, 0.f);
    fx.expect(c + "dx", dx, kGrad);
    fx.expect(c + "dweight", ps.grad(bn.weight_id()), kGrad);
    fx.expect(c + "dbias", ps.grad(bn.bias_id()), kGrad);
  }
}

TEST_CASE("fixture: relu and dropout2d (given mask) match torch") {
  const Fixture fx("elementwise");
  Context ctx(Device::CPU);
  {
    const std::string c = case_prefix("relu", 0);
    const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w");
    Tensor y(x.shape(), Device::CPU), dx(x.shape(), Device::CPU);
    relu_forward(ctx, x, y);
    fx.expect(c + "y", y, kForward);
    relu_backward(ctx, y, dy, dx, 0.f);
    fx.expect(c + "dx", dx, kGrad);
  }
  {
    const std::string c = case_prefix("dropout2d", 0);
    const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w"), scale = fx.tensor(c + "scale");
    Tensor y(x.shape(), Device::CPU), dx(x.shape(), Device::CPU);
    dropout2d_forward(ctx, x, scale, y);
    fx.expect(c + "y", y, kForward);
    dropout2d_backward(ctx, scale, dy, dx, 0.f);
    fx.expect(c + "dx", dx, kGrad);
  }
}

TEST_CASE("fixture: maxpool2d (ceil mode) and global average pool match torch") {
  const Fixture fx("pool");
  Context ctx(Device::CPU);
  for (int k = 0; k < fx.cases("maxpool"); ++k) {
    const std::string c = case_prefix("maxpool", k);
    const std::string name = fx.meta(c + "name");  // read here: INFO evaluates lazily
    INFO(c << " " << name);
    MaxPoolSpec s;
    s.k = fx.meta_int(c + "k");
    s.stride = fx.meta_int(c + "stride");
    s.pad = fx.meta_int(c + "pad");
    s.ceil_mode = fx.meta_int(c + "ceil_mode") != 0;
    const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w");
    REQUIRE_MESSAGE(maxpool_out_shape(s, x.shape()) == fx.shape(c + "y"),
                    "engine output shape " << maxpool_out_shape(s, x.shape()).str() << ", torch "
                                           << fx.shape(c + "y").str());
    Tensor y(fx.shape(c + "y"), Device::CPU), dx(x.shape(), Device::CPU);
    maxpool_forward(ctx, s, x, y);
    fx.expect(c + "y", y, kForward);
    maxpool_backward(ctx, s, x, dy, dx, 0.f);
    fx.expect(c + "dx", dx, kGrad);
  }
  const std::string c = case_prefix("gap", 0);
  const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w");
  Tensor y(fx.shape(c + "y"), Device::CPU), dx(x.shape(), Device::CPU);
  global_avgpool_forward(ctx, x, y);
  fx.expect(c + "y", y, kForward);
  global_avgpool_backward(ctx, dy, dx, 0.f);
  fx.expect(c + "dx", dx, kGrad);
}

TEST_CASE("fixture: channel concat and split match torch.cat(dim=1)") {
  const Fixture fx("concat");
  Context ctx(Device::CPU);
  const std::string c = case_prefix("concat", 0);
  const int parts = fx.meta_int(c + "parts");
  std::vector<Tensor> xs, dxs;
  for (int i = 0; i < parts; ++i) {
    xs.push_back(fx.tensor(c + "x" + std::to_string(i)));
    dxs.emplace_back(xs.back().shape(), Device::CPU);
  }
  const std::vector<TensorView> xv(xs.begin(), xs.end()), dxv(dxs.begin(), dxs.end());
  const Tensor dy = fx.tensor(c + "w");
  Tensor y(fx.shape(c + "y"), Device::CPU);
  concat_channels(ctx, xv, y);
  fx.expect(c + "y", y, kForward);
  split_channels(ctx, dy, dxv, 0.f);
  for (int i = 0; i < parts; ++i) fx.expect(c + "dx" + std::to_string(i), dxs[i], kGrad);
}

// SGD is a few float operations per entry with no reduction, so it is held to a few ulp: the
// weight-decay term (lr·1e-4·p) would vanish under the forward tolerance.
TEST_CASE("fixture: sgd with two learning-rate groups matches torch.optim.SGD over two steps") {
  const Fixture fx("sgd");
  Context ctx(Device::CPU);
  const std::string c = case_prefix("sgd", 0);
  const test::Tol tol{1e-6, 1e-6};
  const int n = fx.meta_int(c + "params");
  auto key = [](int i) { return "p" + std::to_string(i); };  // parameter names in the ParamSet
  ParamSet ps;
  std::vector<int> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back(ps.declare(key(i), fx.shape(c + key(i) + ".before"), Init::Zeros,
                             fx.meta_int(c + key(i) + ".group")));
  ps.allocate(Device::CPU);
  for (int i = 0; i < n; ++i) fx.load_param(ps, key(i), c + key(i) + ".before");
  const std::vector<int> g = ps.group_of_floats();
  const std::vector<uint8_t> g8(g.begin(), g.end());
  const Mask group = Mask::from_host(Shape{int64_t(g8.size())}, g8, Device::CPU);
  Tensor momentum(Shape{ps.values().floats()}, Device::CPU);
  SgdConfig cfg;
  cfg.momentum = fx.meta_float(c + "momentum");
  cfg.weight_decay = fx.meta_float(c + "weight_decay");
  const std::vector<float> lrs = {fx.meta_float(c + "lr0"), fx.meta_float(c + "lr1")};
  for (int step = 1; step <= 2; ++step) {
    const std::string st = std::to_string(step);
    for (int i = 0; i < n; ++i)
      copy_tensor(ps.grad(ids[i]), fx.tensor(c + key(i) + ".grad" + st).view());
    sgd_step(ctx, cfg, ps.values().all(), ps.grads().all(), momentum, group, lrs);
    for (int i = 0; i < n; ++i) {
      const TensorView v = ps.value(ids[i]);
      const TensorView m(momentum.data() + (v.data - ps.values().all().data), v.shape, Device::CPU);
      fx.expect(c + key(i) + ".after" + st, v, tol);
      fx.expect(c + key(i) + ".momentum" + st, m, tol);
    }
  }
}
