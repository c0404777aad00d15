// Tier 2 for the whole network: the engine's U2plNet against tools/torch_u2pl_net.py on the dump
// tests/fixtures/model_small.safetensors (tools/gen_model_fixture.py): weights loaded through the
// normal weight path, eval and train outputs, running statistics after the train forward, and
// the gradient of every parameter for L = Σ w·pred + Σ w·rep + Σ w·aux. The expected train
// outputs and gradients are the exact (float64) values; at these tiny widths float32 error is
// judged against each tensor's scale (PyTorch's own float32 step is 1.7e-3 of max off at worst).
#include <doctest/doctest.h>

#include <cstdio>
#include <sstream>

#include "test_util.h"
#include "u2pl/model.h"
#include "u2pl/weights.h"

using namespace u2pl;
using test::Fixture;

namespace {

std::vector<int> ints_of(const std::string& csv) {
  std::vector<int> v;
  std::stringstream ss(csv);
  for (std::string t; std::getline(ss, t, ',');) v.push_back(std::stoi(t));
  return v;
}

NetConfig config_of(const Fixture& fx) {
  NetConfig c;
  c.depth = fx.meta_int("depth");
  c.stem = fx.meta("stem");
  c.width_divisor = fx.meta_int("width_divisor");
  c.inner_planes = fx.meta_int("inner_planes");
  c.dilations = ints_of(fx.meta("dilations"));
  c.num_classes = fx.meta_int("num_classes");
  c.rep_head = fx.meta_int("rep_head") != 0;
  c.aux = fx.meta_int("aux") != 0;
  c.multi_grid = fx.meta_int("multi_grid") != 0;
  c.replace_stride_with_dilation = fx.meta_int("output_stride") == 8 ? std::array<bool, 3>{false, true, true}
                                                                     : std::array<bool, 3>{false, false, true};
  return c;
}

// The fixture stores `weights.<key>`; the engine reads engine files: write one, load it.
void load_fixture_weights(const std::string& fixture_path, U2plNet& net) {
  const SafeTensorsFile f(fixture_path);
  SafeTensorsWriter w;
  for (const auto& [name, e] : f.entries()) {
    if (name.rfind("weights.", 0) != 0) continue;
    const std::vector<float> v = f.floats(name);
    w.add(name.substr(8), DType::F32, e.shape, v.data());
  }
  w.set_metadata("source", "fixture:model_small");
  const std::string tmp = "/tmp/u2pl_test_model_small_weights.safetensors";
  w.write(tmp);
  const WeightReport r = load_weights(net.params(), tmp, WeightScope::Model);
  CHECK(r.scope == WeightScope::Model);
  CHECK(r.loaded == static_cast<int>(net.params().decls().size()));
  std::remove(tmp.c_str());
}

}  // namespace

TEST_CASE("network matches the PyTorch reference: eval, train, running stats, every gradient") {
  const Fixture fx("model_small");
  U2plNet net(config_of(fx));
  net.allocate(Device::CPU, 1);
  load_fixture_weights(std::string(U2PL_FIXTURE_DIR) + "/model_small.safetensors", net);
  Context ctx(Device::CPU);
  const Tensor x = fx.tensor("in.x");

  const NetOutputs ev = net.forward(ctx, x, NetMode::Eval, nullptr);
  fx.expect("eval.pred", ev.pred, test::kForward);
  fx.expect("eval.rep", ev.rep, test::kForward);
  fx.expect("eval.aux", ev.aux, test::kForward);

  for (const std::string& site : net.dropout_sites())
    copy_tensor(net.dropout_scale(x.shape(), NetMode::Train, site), fx.tensor("dropout." + site).view());
  const NetOutputs tr = net.forward(ctx, x, NetMode::Train, nullptr);
  fx.expect("train.pred", tr.pred, test::kForwardNormwise);
  fx.expect("train.rep", tr.rep, test::kForwardNormwise);
  fx.expect("train.aux", tr.aux, test::kForwardNormwise);
  for (const ParamDecl& d : net.params().decls())
    if (!d.trainable) fx.expect("after." + d.name, net.params().value(net.params().find(d.name)), test::kForward);

  net.params().zero_grad();
  net.backward(ctx, fx.tensor("loss.w_pred"), fx.tensor("loss.w_rep"), fx.tensor("loss.w_aux"));
  int checked = 0;
  for (const ParamDecl& d : net.params().decls()) {
    if (!d.trainable) continue;
    fx.expect("grad." + d.name, net.params().grad(net.params().find(d.name)), test::kGradNormwise);
    ++checked;
  }
  int in_fixture = 0;  // every parameter gradient PyTorch dumped (grad.in.x aside) was compared
  const SafeTensorsFile file(std::string(U2PL_FIXTURE_DIR) + "/model_small.safetensors");
  for (const auto& kv : file.entries())
    in_fixture += kv.first.rfind("grad.", 0) == 0 && kv.first != "grad.in.x";
  CHECK(checked == in_fixture);
}

TEST_CASE("network: train-statistics mode updates BN buffers without backward state") {
  const Fixture fx("model_small");
  U2plNet net(config_of(fx));
  net.allocate(Device::CPU, 1);
  Context ctx(Device::CPU);
  const Tensor x = fx.tensor("in.x");
  const std::vector<float> before = to_host(net.params().buffers().all());
  Rng rng(5);
  net.forward(ctx, x, NetMode::TrainStats, &rng);
  CHECK(to_host(net.params().buffers().all()) != before);
  CHECK(net.plan_bytes(x.shape(), NetMode::TrainStats) < net.plan_bytes(x.shape(), NetMode::Train));
  CHECK_THROWS_WITH_AS(net.backward(ctx, TensorView(), TensorView(), TensorView()),
                       doctest::Contains("without a Train forward"), Error);
}
