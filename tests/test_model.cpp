// Tier 2 for the whole network: the engine's U2plNet against tools/pytorch/torch_u2pl_net.py on the
// dump tests/fixtures/model_small.safetensors (tools/pytorch/gen_model_fixture.py): weights loaded
// through the normal weight path, eval and train outputs, running statistics after the train
// forward, and the gradient of every parameter for L = Σ w·pred + Σ w·rep + Σ w·aux. The expected
// train outputs and gradients are the exact (float64) values; at these tiny widths float32 error is
// judged against each tensor's scale (PyTorch's own float32 step is 1.7e-3 of max off at worst).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "tests/model_fixture.h"
#include "u2pl/net/act_plan.h"
#include "u2pl/net/decoder.h"
#include "u2pl/net/resnet.h"

using namespace u2pl;
using namespace u2pl::test;

namespace {
const std::string kSmall = std::string(U2PL_FIXTURE_DIR) + "/model_small.safetensors";
}

TEST_CASE("network matches the PyTorch reference: eval, train, running stats, every gradient") {
  const SafeTensorsFile f(kSmall);
  U2plNet net(config_of(f));
  net.allocate(Device::CPU, 1);
  load_dump_weights(f, net);
  Context ctx(Device::CPU);
  const Tensor x = tensor_of(f, "in.x");

  const NetOutputs ev = net.forward(ctx, x, NetMode::Eval, nullptr);
  expect_tensor(f, "eval.pred", ev.pred, kForward);
  expect_tensor(f, "eval.rep", ev.rep, kForward);
  expect_tensor(f, "eval.aux", ev.aux, kForward);

  load_dump_dropout(f, net, x.shape());
  const NetOutputs tr = net.forward(ctx, x, NetMode::Train, nullptr);
  expect_tensor(f, "train.pred", tr.pred, kForwardNormwise);
  expect_tensor(f, "train.rep", tr.rep, kForwardNormwise);
  expect_tensor(f, "train.aux", tr.aux, kForwardNormwise);
  for (const ParamDecl& d : net.params().decls())
    if (!d.trainable) expect_tensor(f, "after." + d.name, net.params().value(net.params().find(d.name)), kForward);

  net.params().zero_grad();
  net.backward(ctx, tensor_of(f, "loss.w_pred"), tensor_of(f, "loss.w_rep"), tensor_of(f, "loss.w_aux"));
  int checked = 0, in_fixture = 0;
  for (const ParamDecl& d : net.params().decls()) {
    if (!d.trainable) continue;
    expect_tensor(f, "grad." + d.name, net.params().grad(net.params().find(d.name)), kGradNormwise);
    ++checked;
  }
  for (const auto& kv : f.entries())  // every parameter gradient PyTorch dumped was compared
    in_fixture += kv.first.rfind("grad.", 0) == 0 && kv.first != "grad.in.x";
  CHECK(checked == in_fixture);
}

TEST_CASE("network memory modes: recompute_bn and recompute_blocks equal keep bit for bit, in less memory") {
  // Outputs, running statistics and every gradient of one train forward and backward; backward
  // must rebuild each BN, ReLU and dropout output (and, replaying, each block's convolution
  // output) it reads (the scratch holds later modules' data).
  const SafeTensorsFile f(kSmall);
  const MemoryRun keep = run_memory_mode(f, MemoryMode::Keep, Device::CPU);
  const MemoryRun rebuilt = run_memory_mode(f, MemoryMode::RecomputeBn, Device::CPU);
  const MemoryRun replayed = run_memory_mode(f, MemoryMode::RecomputeBlocks, Device::CPU);
  expect_same_as_keep(rebuilt, keep);
  expect_same_as_keep(replayed, keep);
  CHECK(replayed.bytes < rebuilt.bytes);
  MESSAGE("train plan: keep " << keep.bytes << " bytes, recompute_bn " << rebuilt.bytes << ", recompute_blocks "
                              << replayed.bytes);
  CHECK_THROWS_WITH_AS(parse_memory_mode("smallest", "trainer.memory"),
                       doctest::Contains("memory mode 'smallest' (expected keep, recompute_bn or recompute_blocks)"),
                       Error);
}

TEST_CASE("network: train-statistics mode updates BN buffers without backward state") {
  const SafeTensorsFile f(kSmall);
  U2plNet net(config_of(f));
  net.allocate(Device::CPU, 1);
  Context ctx(Device::CPU);
  const Tensor x = tensor_of(f, "in.x");
  const std::vector<float> before = to_host(net.params().buffers().all());
  Rng rng(5);
  net.forward(ctx, x, NetMode::TrainStats, &rng);
  CHECK(to_host(net.params().buffers().all()) != before);
  CHECK(net.plan_bytes(x.shape(), NetMode::TrainStats) < net.plan_bytes(x.shape(), NetMode::Train));
  CHECK(net.estimate_plan_bytes(x.shape(), NetMode::Train) == net.plan_bytes(x.shape(), NetMode::Train));
  CHECK(net.estimate_plan_bytes(Shape{2, 3, 97, 97}, NetMode::Eval) > net.plan_bytes(x.shape(), NetMode::Eval));
  // Many input sizes (whole-image evaluation): old plans are dropped, the Train plan is kept.
  for (int s = 17; s < 40; s += 3) net.forward(ctx, Tensor(Shape{1, 3, s, s}, Device::CPU), NetMode::Eval, nullptr);
  CHECK(net.plan_bytes(x.shape(), NetMode::Train) > 0);
  CHECK_THROWS_WITH_AS(net.backward(ctx, TensorView(), TensorView(), TensorView()),
                       doctest::Contains("without a Train forward"), Error);
  U2plNet frozen(config_of(f));  // inference / teacher: no gradient arena
  frozen.allocate(Device::CPU, 1, /*trainable=*/false);
  CHECK(frozen.params().grads().bytes() > 0);  // planned, not allocated
  CHECK_THROWS_WITH_AS(frozen.params().grad(0), doctest::Contains("without gradients"), Error);
  CHECK_THROWS_WITH_AS(frozen.forward(ctx, x, NetMode::Train, &rng), doctest::Contains("without gradients"), Error);
  frozen.forward(ctx, x, NetMode::TrainStats, &rng);
}

TEST_CASE("network: shapes of SPEC §1 at full width, OS8 and OS16") {
  NetConfig c;  // the public VOC network
  U2plNet net(c);
  net.allocate(Device::CPU, 3);
  CHECK(net.params().find("encoder.layer3.22.conv2.weight") >= 0);
  CHECK(net.params().find("decoder.classifier.8.bias") >= 0);
  CHECK(net.params().find("decoder.aspp.conv1.1.weight") >= 0);
  CHECK(net.params().find("auxor.aux.0.weight") < 0);
  CHECK(net.params().value(net.params().find("decoder.head.0.weight")).shape == Shape{256, 1280, 3, 3});
  CHECK(net.params().value(net.params().find("decoder.low_conv.0.bias")).shape == Shape{256});
  CHECK(net.params().value(net.params().find("encoder.layer4.2.conv2.weight")).shape == Shape{512, 512, 3, 3});
  // zero_init_residual zeroes the last BN weight of every block.
  CHECK(to_host(net.params().value(net.params().find("encoder.layer2.1.bn3.weight")))[0] == 0.f);
  CHECK(to_host(net.params().value(net.params().find("encoder.layer2.1.bn2.weight")))[0] == 1.f);
  NetConfig os16;
  os16.replace_stride_with_dilation = {false, false, true};
  os16.dilations = {6, 12, 18};
  os16.depth = 50;
  os16.width_divisor = 16;
  os16.inner_planes = 8;
  os16.aux = true;
  U2plNet small(os16);
  small.allocate(Device::CPU, 3);
  Context ctx(Device::CPU);
  const Tensor x(Shape{2, 3, 65, 49}, Device::CPU);
  const NetOutputs o = small.forward(ctx, x, NetMode::Eval, nullptr);
  CHECK(o.pred.shape == Shape{2, 21, 17, 13});  // 65 -> 33 (stem) -> 17 (pool)
  CHECK(o.aux.shape == Shape{2, 21, 5, 4});      // OS16: layer3 at 1/16
}

TEST_CASE("network: the initialisation of the public code: kaiming fan-out encoder, nn.Conv2d's default decoder") {
  NetConfig c;
  c.depth = 18;
  c.width_divisor = 4;
  c.inner_planes = 64;
  c.aux = true;
  U2plNet net(c);
  net.allocate(Device::CPU, 11);
  const auto values = [&](const std::string& name) {
    const int id = net.params().find(name);
    REQUIRE(id >= 0);
    return to_host(net.params().value(id));
  };
  const auto moments = [](const std::vector<float>& v, double* max_abs) {
    double s2 = 0;
    *max_abs = 0;
    for (const float x : v) s2 += double(x) * x, *max_abs = std::max(*max_abs, double(std::fabs(x)));
    return std::sqrt(s2 / double(v.size()));
  };
  double m = 0;
  // encoder: N(0, 2 / fan_out), fan_out = cout·kh·kw
  const std::vector<float> enc = values("encoder.layer1.0.conv1.weight");
  const double enc_std = std::sqrt(2.0 / (16.0 * 9));
  CHECK(moments(enc, &m) == doctest::Approx(enc_std).epsilon(0.05));
  CHECK(m > 2 * enc_std);  // a normal's tails, not a uniform's
  // decoder and heads: weight and bias U(−1/√fan_in, 1/√fan_in), standard deviation bound/√3
  for (const auto& [name, fan_in] : std::vector<std::pair<std::string, double>>{
           {"decoder.head.0", 5 * 64 * 9.0}, {"decoder.classifier.0", 128 * 9.0}, {"decoder.classifier.4", 64 * 9.0}, {"auxor.aux.0", 64 * 9.0}}) {
    INFO(name);
    const double bound = 1 / std::sqrt(fan_in);
    const std::vector<float> w = values(name + ".weight");
    CHECK(moments(w, &m) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.05));
    CHECK(m <= bound);
    CHECK(m > 0.95 * bound);
  }
  const std::vector<float> b = values("decoder.classifier.8.bias");
  CHECK(moments(b, &m) > 0);
  CHECK(m <= 1 / std::sqrt(64.0));  // 1x1 from 64 channels
  CHECK(values("decoder.low_conv.0.bias") != std::vector<float>(values("decoder.low_conv.0.bias").size(), 0.f));
}

TEST_CASE("resnet plan: replaying keeps the tapped outputs and the ends of runs of replayed blocks") {
  // recompute_blocks forms runs of block outputs again in backward from the kept output before
  // them. The parity tests (network memory modes, trainer) must see runs of several blocks, and
  // layer3 of ResNet-101 runs of about √23.
  NetConfig r101;  // the public VOC network at a width the test can declare fast
  r101.width_divisor = 8;
  const SafeTensorsFile small(kSmall);
  const std::pair<NetConfig, Shape> cases[] = {{config_of(small), tensor_of(small, "in.x").shape()},
                                               {r101, Shape{2, 3, 513, 513}}};
  for (const auto& [cfg, image] : cases) {
    INFO("ResNet-" << cfg.depth << ", " << image.str());
    ParamSet ps;
    const ResNet enc(ps, cfg);
    ActPlan p(true, true, true);
    const ResNet::Bufs b = enc.plan(p, image);
    std::string pattern;  // per block: k kept, t tapped, r replayed
    int longest = 0, run = 0;
    for (size_t i = 0; i < b.blocks.size(); ++i) {
      const bool tapped = int(i) == b.last[0] || int(i) == b.last[2] || int(i) == b.last[3];
      const bool replayed = b.blocks[i].out_rebuilt;
      CHECK_FALSE((tapped && replayed));
      pattern += tapped ? 't' : replayed ? 'r' : 'k';
      run = replayed ? run + 1 : 0;
      longest = std::max(longest, run);
    }
    MESSAGE("blocks: " << pattern);
    CHECK(longest >= 2);
    if (cfg.depth == 101) {
      const std::string layer3 = pattern.substr(size_t(b.last[1]) + 1, 23);
      CHECK(std::count(layer3.begin(), layer3.end(), 'k') >= 3);
      CHECK(std::count(layer3.begin(), layer3.end(), 'k') <= 6);
    }
  }
}

TEST_CASE("decoder plan: the gradient temporaries its backward keeps at once never share memory") {
  // The decoder's own gradients (ASPP branches, pooled branch, head, upsampling, low-level) and
  // those of its ConvBn units are written and read across the units' backward calls, so no two may
  // overlap; the heads' scopes may reuse this memory (their backward runs first). A plan whose
  // heads reset the scope before the decoder's temporaries were laid out overlapped the pooled
  // branch's gradient with the other branches' and corrupted the ASPP gradient (found by comparing
  // two processes with one, at output stride 8).
  NetConfig voc;  // the public VOC network (inner planes 256), at a width the test can declare fast
  voc.width_divisor = 8;
  for (const NetConfig& cfg : {config_of(SafeTensorsFile(kSmall)), voc})
  for (const int side : {5, 65}) {  // layer4 of a 33 and a 513 crop at output stride 8
    ParamSet ps;
    const ResNet enc(ps, cfg);
    const Decoder dec(ps, cfg, enc.layer1_channels(), enc.layer4_channels());
    const Shape x1{8, enc.layer1_channels(), 2 * side - 1, 2 * side - 1}, x4{8, enc.layer4_channels(), side, side};
    INFO("inner planes " << cfg.inner_planes << ", x4 " << x4.str());
    ActPlan p(true);
    const Decoder::Bufs b = dec.plan(p, x1, x4);
    std::vector<std::pair<std::string, Slot>> temps = {
        {"g_b1small", b.g_b1small}, {"g_pooled", b.g_pooled}, {"g_aspp", b.g_aspp},   {"g_head_a", b.g_head_a},
        {"g_head_drop", b.g_head_drop}, {"g_up", b.g_up},     {"head.gc", b.head.gc}, {"low.gc", b.low.gc}};
    for (int k = 0; k < 5; ++k) {
      temps.emplace_back("g_branch" + std::to_string(k), b.g_branch[k]);
      temps.emplace_back("branch" + std::to_string(k) + ".gc", b.branch[k].gc);
    }
    temps.emplace_back("g_low", b.g_low);
    // The units' conv-output gradients share one slot on purpose: each lives inside one unit's
    // backward call.
    const auto unit_temp = [](const std::string& name) {
      return name.size() > 3 && name.substr(name.size() - 3) == ".gc";
    };
    for (size_t i = 0; i < temps.size(); ++i)
      for (size_t j = i + 1; j < temps.size(); ++j) {
        const Slot &a = temps[i].second, &c = temps[j].second;
        if (!a.defined() || !c.defined() || a.region != c.region) continue;
        if (unit_temp(temps[i].first) && unit_temp(temps[j].first)) continue;
        const bool apart = a.offset + a.shape.numel() <= c.offset || c.offset + c.shape.numel() <= a.offset;
        CHECK_MESSAGE(apart, temps[i].first << " and " << temps[j].first << " share memory");
      }
  }
}
