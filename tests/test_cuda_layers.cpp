// Tier 3 (STYLE 14): every CUDA layer (layers/*.cu) against the CPU oracle through the public
// layer APIs, forward and backward, in a deterministic CUDA context (deterministic cuDNN
// algorithms, no TF32). The `cuda` suite: tests/test_main.cpp excludes it when no GPU is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/params.h"
#include "engine/rng.h"
#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/elementwise.h"
#include "layers/loss.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "layers/sgd.h"
#include "tests/test_util.h"
#include "u2pl/losses/sup_loss.h"
#include "u2pl/losses/unsup_loss.h"

using namespace u2pl;
using u2pl::test::error_of;

namespace {

constexpr Device CPU = Device::CPU, GPU = Device::CUDA;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

using test::check_close;
using test::kExact;
using test::Tol;
using test::uniform;
constexpr Tol kTight{1e-6, 1e-6};  // the same arithmetic, at most FMA contraction apart
constexpr Tol kFwd{1e-5, 1e-4};    // forward values
constexpr Tol kBwd{2e-5, 1e-4};    // input gradients (short sums)
constexpr Tol kSum{1e-4, 1e-4};    // long reductions: weight, bias, BN parameter gradients

template <class T>
std::vector<T> host(const Context& ctx, View<T> v) {
  ctx.synchronize();
  return to_host(v);
}

void set(TensorView v, std::vector<float> values) { copy_tensor(v, TensorView(values.data(), v.shape, CPU)); }

// A CPU and a CUDA context; both(f) runs f on each, so every op below is written once.
struct Devices {
  Context cpu{CPU};
  Context gpu{GPU, /*deterministic=*/true};
  template <class F>
  void both(F f) {
    f(cpu);
    f(gpu);
  }
};

// The same contents on both devices; on(ctx) is the copy on ctx's device.
template <class T>
struct Twin {
  Owned<T> c, g;
  explicit Twin(Shape s) : c(s, CPU), g(s, GPU) {}
  Twin(Shape s, const std::vector<T>& v) : c(Owned<T>::from_host(s, v, CPU)), g(Owned<T>::from_host(s, v, GPU)) {}
  View<T> on(const Context& ctx) const { return ctx.device() == GPU ? g.view() : c.view(); }
};
using TwinT = Twin<float>;

template <class T>
void expect_same(const Devices& d, const std::string& what, const Twin<T>& t, Tol tol) {
  check_close(what, host(d.gpu, t.g.view()), t.c.to_host(), tol);
}

// An input gradient for `beta`: for beta 0 the CPU starts from zeros and CUDA from NaN (beta 0
// must never read dx); otherwise both start from the same values.
TwinT grad_twin(Shape s, float beta, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.numel());
  if (beta != 0.f) return TwinT(s, uniform(s.numel(), seed));
  TwinT t(s, std::vector<float>(n, 0.f));
  t.g = Tensor::from_host(s, std::vector<float>(n, kNaN), GPU);
  return t;
}

// For beta 0, 0.5 and 1: op(ctx, dx, beta) on both devices, then dx compared.
template <class Op>
void each_beta(Devices& d, const std::string& what, Shape s, Tol tol, Op op) {
  for (const float beta : {0.f, 0.5f, 1.f}) {
    INFO(what << ", beta " << beta);
    TwinT dx = grad_twin(s, beta, 77);
    d.both([&](Context& ctx) { op(ctx, dx.on(ctx), beta); });
    expect_same(d, what, dx, tol);
  }
}

// A layer declared in one ParamSet per device; allocate() draws the CPU values and random
// starting gradients (parameter gradients accumulate onto them); upload() mirrors them to CUDA.
template <class Layer>
struct TwinLayer {
  ParamSet pc, pg;
  Layer c, g;
  template <class... A>
  explicit TwinLayer(const A&... a) : c(pc, a...), g(pg, a...) {}
  const Layer& on(const Context& ctx) const { return ctx.device() == GPU ? g : c; }
  void allocate(uint64_t seed) {
    pc.allocate(CPU);
    pc.initialize(seed);
    set(pc.grads().all(), uniform(pc.grads().floats(), seed + 1));
  }
  void upload() {
    pg.allocate(GPU);
    copy_tensor(pg.values().all(), pc.values().all());
    copy_tensor(pg.grads().all(), pc.grads().all());
    copy_tensor(pg.buffers().all(), pc.buffers().all());
  }
  void expect_grad(const Devices& d, const std::string& what, int id, Tol tol) const {
    check_close(what, host(d.gpu, pg.grad(id)), to_host(pc.grad(id)), tol);
  }
  void expect_value(const Devices& d, const std::string& what, int id, Tol tol) const {
    check_close(what, host(d.gpu, pg.value(id)), to_host(pc.value(id)), tol);
  }
};

// Labels (N, H, W) in [0, C) with about a quarter set to `ignore`.
std::vector<int32_t> random_labels(Shape s, int C, int ignore, uint64_t seed) {
  std::vector<int32_t> v(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = philox_uniform(seed, 1, i) < 0.25f ? ignore : int32_t(philox_u32(seed, 0, i) % uint32_t(C));
  return v;
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("conv2d: forward, input/weight/bias gradients; stride, dilation up to 36, odd sizes") {
  Devices d;
  const std::vector<std::pair<Conv2dSpec, Shape>> cases = {
      {{3, 5, 3, 3, 1, 1, 1, true}, Shape{2, 3, 13, 11}},
      {{4, 6, 3, 3, 2, 1, 1, false}, Shape{2, 4, 13, 11}},   // stride 2
      {{4, 4, 3, 3, 1, 2, 2, true}, Shape{1, 4, 9, 14}},     // dilation 2
      {{3, 4, 3, 3, 1, 12, 12, true}, Shape{2, 3, 33, 29}},  // ASPP rates: padding = dilation
      {{3, 4, 3, 3, 1, 36, 36, true}, Shape{1, 3, 13, 11}},  // most taps in the padding
      {{5, 7, 1, 1, 1, 0, 1, true}, Shape{2, 5, 7, 9}},      // pointwise
      {{4, 3, 1, 1, 2, 0, 1, false}, Shape{2, 4, 13, 11}},   // strided 1x1 shortcut
      {{3, 8, 7, 7, 2, 3, 1, false}, Shape{2, 3, 23, 17}},   // the stem
      {{2, 3, 1, 3, 1, 1, 1, true}, Shape{1, 2, 6, 7}},      // non-square kernel
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Conv2dSpec s = cases[k].first;
    const Shape xs = cases[k].second;
    INFO("case " << k << ": x " << xs.str() << " k " << s.kh << "x" << s.kw << " stride " << s.stride
                 << " pad " << s.pad << " dilation " << s.dilation << " bias " << s.bias);
    TwinLayer<Conv2d> L("conv", s);
    L.allocate(10 + k);
    if (s.bias) set(L.pc.value(L.c.bias_id()), uniform(s.cout, 20 + k));
    L.upload();
    const Shape ys = L.c.out_shape(xs);
    const TwinT x(xs, uniform(xs.numel(), 30 + k)), dy(ys, uniform(ys.numel(), 40 + k));
    TwinT y(ys);
    d.both([&](Context& ctx) { L.on(ctx).forward(ctx, x.on(ctx), y.on(ctx)); });
    expect_same(d, "conv2d forward", y, kFwd);
    each_beta(d, "conv2d dx", xs, kBwd, [&](Context& ctx, TensorView dx, float beta) {
      L.on(ctx).backward(ctx, x.on(ctx), dy.on(ctx), dx, beta);
    });
    // No input gradient: weights only.
    d.both([&](Context& ctx) { L.on(ctx).backward(ctx, x.on(ctx), dy.on(ctx), TensorView(), 0.f); });
    L.expect_grad(d, "conv2d dw", L.c.weight_id(), kSum);
    if (s.bias) L.expect_grad(d, "conv2d db", L.c.bias_id(), kSum);
  }
}

TEST_CASE("batchnorm: batch statistics, running statistics, eval mode, in place") {
  Devices d;
  for (const Shape xs : {Shape{2, 5, 7, 9}, Shape{4, 3, 1, 1}, Shape{1, 6, 13, 11}}) {
    INFO("x " << xs.str());
    const int C = int(xs.c());
    TwinLayer<BatchNorm2d> L("bn", C);
    L.allocate(1);
    set(L.pc.value(L.c.weight_id()), uniform(C, 2, 0.5f, 1.5f));
    set(L.pc.value(L.c.bias_id()), uniform(C, 3, -0.5f, 0.5f));
    set(L.pc.value(L.c.mean_id()), uniform(C, 4, -0.2f, 0.2f));
    std::vector<float> var = uniform(C, 5, 0.5f, 2.f);
    var[0] = 2e-5f;  // eps matters here in eval mode
    set(L.pc.value(L.c.var_id()), var);
    L.upload();
    const TwinT x(xs, uniform(xs.numel(), 6, 2.f, 6.f));  // mean far from 0: the two-pass variance
    const TwinT dy(xs, uniform(xs.numel(), 7));
    TwinT y(xs), saved(L.c.saved_shape());
    auto expect_state = [&](const std::string& what) {
      expect_same(d, what + ": y", y, kFwd);
      L.expect_value(d, what + ": running mean", L.c.mean_id(), kFwd);
      L.expect_value(d, what + ": running var", L.c.var_id(), kFwd);
    };
    for (const bool batch_stats : {false, true}) {  // eval first: running var still has var[0]
      const std::string mode = batch_stats ? "train" : "eval";
      const std::vector<float> run_var = host(d.gpu, L.pg.value(L.c.var_id()));
      d.both([&](Context& ctx) { L.on(ctx).forward(ctx, x.on(ctx), y.on(ctx), {batch_stats, true}, saved.on(ctx)); });
      expect_state(mode + " forward");
      expect_same(d, mode + " saved mean, invstd", saved, kFwd);
      if (!batch_stats)
        check_close("eval leaves running var", host(d.gpu, L.pg.value(L.c.var_id())), run_var, kExact);
      each_beta(d, mode + " dx", xs, kBwd, [&](Context& ctx, TensorView dx, float beta) {
        L.on(ctx).backward(ctx, x.on(ctx), saved.on(ctx), batch_stats, dy.on(ctx), dx, beta);
      });
      L.expect_grad(d, mode + " dgamma", L.c.weight_id(), kSum);
      L.expect_grad(d, mode + " dbeta", L.c.bias_id(), kSum);
    }
    // The teacher's train-mode BN without backward, in place (y aliases x).
    d.both([&](Context& ctx) {
      copy_tensor(y.on(ctx), x.on(ctx));
      L.on(ctx).forward(ctx, y.on(ctx), y.on(ctx), {true, false}, TensorView());
    });
    expect_state("in-place forward without state");
  }
}

TEST_CASE("SyncBN: each replica's moments and gradient sums merged in replica order, as on the CPU") {
  Devices d;
  // Planes above 2048 values split into several parts per image (each replica split by itself).
  for (const auto& [xs, replicas] : {std::pair{Shape{6, 3, 4, 5}, 3}, std::pair{Shape{4, 2, 48, 50}, 2},
                                     std::pair{Shape{6, 2, 70, 90}, 3}}) {
    INFO("x " << xs.str() << ", " << replicas << " replicas");
    const int C = int(xs.c());
    TwinLayer<BatchNorm2d> L("bn", C);
    L.allocate(1);
    set(L.pc.value(L.c.weight_id()), uniform(C, 2, 0.5f, 1.5f));
    set(L.pc.value(L.c.bias_id()), uniform(C, 3, -0.5f, 0.5f));
    L.upload();
    std::vector<float> xv = uniform(xs.numel(), 6, 2.f, 6.f);
    const int64_t per_replica = xs.numel() / replicas;
    for (size_t k = 0; k < xv.size(); ++k) xv[k] += float(int64_t(k) / per_replica);  // replicas' means differ
    const TwinT x(xs, xv), dy(xs, uniform(xs.numel(), 7));
    TwinT y(xs), saved(L.c.saved_shape());
    const ReplicaSync sync{nullptr, replicas, 0, replicas};
    d.both([&](Context& ctx) {
      ctx.set_replica_sync(&sync);
      L.on(ctx).forward(ctx, x.on(ctx), y.on(ctx), {true, true}, saved.on(ctx));
      ctx.set_replica_sync(nullptr);
    });
    expect_same(d, "y", y, kFwd);
    expect_same(d, "saved mean, invstd", saved, kFwd);
    L.expect_value(d, "running mean", L.c.mean_id(), kFwd);
    L.expect_value(d, "running var", L.c.var_id(), kFwd);
    each_beta(d, "dx", xs, kBwd, [&](Context& ctx, TensorView dx, float beta) {
      ctx.set_replica_sync(&sync);
      L.on(ctx).backward(ctx, x.on(ctx), saved.on(ctx), true, dy.on(ctx), dx, beta);
      ctx.set_replica_sync(nullptr);
    });
    L.expect_grad(d, "dgamma", L.c.weight_id(), kSum);
    L.expect_grad(d, "dbeta", L.c.bias_id(), kSum);
  }
}

TEST_CASE("relu, add, accumulate: forward, in place, beta 0 / 0.5 / 1") {
  Devices d;
  const Shape s{2, 3, 7, 5};
  const TwinT x(s, uniform(s.numel(), 1)), dy(s, uniform(s.numel(), 2));
  TwinT y(s), inplace(s, x.c.to_host()), a(s, uniform(s.numel(), 3));
  d.both([&](Context& ctx) {
    relu_forward(ctx, x.on(ctx), y.on(ctx));
    relu_forward(ctx, inplace.on(ctx), inplace.on(ctx));
    add_forward(ctx, a.on(ctx), dy.on(ctx), a.on(ctx));  // y aliases a
  });
  expect_same(d, "relu", y, kExact);
  expect_same(d, "relu in place", inplace, kExact);
  expect_same(d, "add in place", a, kExact);
  each_beta(d, "relu backward", s, kTight, [&](Context& ctx, TensorView dx, float beta) {
    relu_backward(ctx, y.on(ctx), dy.on(ctx), dx, beta);
  });
  each_beta(d, "accumulate", s, kTight,
            [&](Context& ctx, TensorView dx, float beta) { accumulate(ctx, dy.on(ctx), dx, beta); });
}

TEST_CASE("dropout2d: identical Philox channel masks, forward and backward") {
  Devices d;
  const Shape s{3, 37, 5, 4};
  struct Draw {
    float p;
    uint64_t seed, offset;
  };
  for (const Draw& w : {Draw{0.5f, 7, 0}, Draw{0.1f, 123456789012ull, 99}, Draw{0.f, 1, 5},
                        Draw{0.9f, 42, uint64_t(1) << 40}}) {
    INFO("p " << w.p << " seed " << w.seed << " offset " << w.offset);
    const TwinT x(s, uniform(s.numel(), 8));
    TwinT scale(Shape{3, 37}), y(s);
    d.both([&](Context& ctx) {
      dropout2d_make_scale(ctx, w.p, w.seed, w.offset, scale.on(ctx));
      dropout2d_forward(ctx, x.on(ctx), scale.on(ctx), y.on(ctx));
    });
    expect_same(d, "dropout2d scale", scale, kExact);
    expect_same(d, "dropout2d forward", y, kTight);
    each_beta(d, "dropout2d backward", s, kFwd, [&](Context& ctx, TensorView dx, float beta) {
      dropout2d_backward(ctx, scale.on(ctx), x.on(ctx), dx, beta);
    });
  }
}

TEST_CASE("maxpool: ceil-mode borders, dropped last window, ties; global average pool") {
  Devices d;
  const std::vector<std::pair<MaxPoolSpec, Shape>> cases = {
      {{3, 2, 1, true}, Shape{2, 3, 13, 11}},  // ResNet stem pool: partial windows at the far edge
      {{2, 3, 1, true}, Shape{1, 2, 5, 8}},    // a ceil window starting past in + pad is dropped
      {{3, 2, 0, false}, Shape{1, 2, 13, 11}},
      {{3, 1, 1, true}, Shape{1, 2, 6, 5}},
      {{2, 2, 0, true}, Shape{1, 3, 7, 9}},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const MaxPoolSpec s = cases[k].first;
    const Shape xs = cases[k].second, ys = maxpool_out_shape(s, xs);
    for (const bool ties : {false, true}) {
      INFO("case " << k << ": " << xs.str() << " -> " << ys.str() << (ties ? ", with ties" : ""));
      std::vector<float> v = uniform(xs.numel(), 1 + k);
      if (ties)
        for (float& e : v) e = std::floor(e * 1.5f);  // four levels: the first maximum must win
      const TwinT x(xs, v), dy(ys, uniform(ys.numel(), 2 + k));
      TwinT y(ys);
      d.both([&](Context& ctx) { maxpool_forward(ctx, s, x.on(ctx), y.on(ctx)); });
      expect_same(d, "maxpool forward", y, kExact);
      // Sums the same dy values in the CPU's order: equal up to contraction of beta·dx.
      each_beta(d, "maxpool backward", xs, kTight, [&](Context& ctx, TensorView dx, float beta) {
        maxpool_backward(ctx, s, x.on(ctx), dy.on(ctx), dx, beta);
      });
    }
  }
  for (const Shape xs : {Shape{2, 5, 7, 9}, Shape{3, 4, 1, 1}, Shape{1, 2, 65, 65}}) {
    INFO("global average pool " << xs.str());
    const Shape ys{xs.n(), xs.c(), 1, 1};
    const TwinT x(xs, uniform(xs.numel(), 4)), dy(ys, uniform(ys.numel(), 5));
    TwinT y(ys);
    d.both([&](Context& ctx) { global_avgpool_forward(ctx, x.on(ctx), y.on(ctx)); });
    expect_same(d, "global average pool", y, kFwd);
    each_beta(d, "global average pool backward", xs, kTight, [&](Context& ctx, TensorView dx, float beta) {
      global_avgpool_backward(ctx, dy.on(ctx), dx, beta);
    });
  }
}

TEST_CASE("bilinear align_corners: up, down, to and from one pixel, gathered backward") {
  Devices d;
  const std::vector<std::pair<Shape, Shape>> cases = {
      {Shape{2, 3, 7, 5}, Shape{2, 3, 13, 11}},    {Shape{2, 3, 13, 11}, Shape{2, 3, 5, 4}},
      {Shape{1, 2, 9, 7}, Shape{1, 2, 1, 1}},      {Shape{1, 2, 1, 1}, Shape{1, 2, 6, 5}},
      {Shape{1, 2, 1, 7}, Shape{1, 2, 4, 1}},      {Shape{2, 2, 33, 33}, Shape{2, 2, 129, 129}},
      {Shape{1, 3, 65, 65}, Shape{1, 3, 33, 17}},  {Shape{1, 2, 6, 6}, Shape{1, 2, 6, 6}},
      {Shape{1, 1, 5, 97}, Shape{1, 1, 11, 3}},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Shape xs = cases[k].first, ys = cases[k].second;
    INFO("case " << k << ": " << xs.str() << " -> " << ys.str());
    const TwinT x(xs, uniform(xs.numel(), 1 + k)), dy(ys, uniform(ys.numel(), 2 + k));
    TwinT y(ys);
    d.both([&](Context& ctx) { bilinear_forward(ctx, x.on(ctx), y.on(ctx)); });
    expect_same(d, "bilinear forward", y, kFwd);
    each_beta(d, "bilinear backward", xs, kBwd,
              [&](Context& ctx, TensorView dx, float beta) { bilinear_backward(ctx, dy.on(ctx), dx, beta); });
  }
}

TEST_CASE("nearest: float maps, int32 labels, uint8 masks, up and down") {
  Devices d;
  const std::vector<std::pair<Shape, Shape>> cases = {
      {Shape{2, 7, 5}, Shape{2, 13, 11}}, {Shape{2, 13, 11}, Shape{2, 5, 4}},
      {Shape{1, 9, 7}, Shape{1, 1, 1}}, {Shape{2, 33, 33}, Shape{2, 65, 129}}};
  for (const auto& c : cases) {
    const Shape in = c.first, out = c.second;
    INFO(in.str() << " -> " << out.str());
    std::vector<int32_t> lv(static_cast<size_t>(in.numel()));
    std::vector<uint8_t> mv(lv.size());
    for (size_t i = 0; i < lv.size(); ++i) lv[i] = int32_t(philox_u32(2, 0, i) % 300), mv[i] = uint8_t(lv[i]);
    const TwinT x(Shape{in[0], 3, in[1], in[2]}, uniform(3 * in.numel(), 1));
    const Twin<int32_t> labels(in, lv);
    const Twin<uint8_t> mask(in, mv);
    TwinT y(Shape{out[0], 3, out[1], out[2]});
    Twin<int32_t> labels_out(out);
    Twin<uint8_t> mask_out(out);
    d.both([&](Context& ctx) {
      nearest_forward(ctx, x.on(ctx), y.on(ctx));
      nearest_forward(ctx, labels.on(ctx), labels_out.on(ctx));
      nearest_forward(ctx, mask.on(ctx), mask_out.on(ctx));
    });
    expect_same(d, "nearest maps", y, kExact);
    expect_same(d, "nearest labels", labels_out, kExact);
    expect_same(d, "nearest masks", mask_out, kExact);
  }
}

TEST_CASE("concat and split, with an absent part gradient") {
  Devices d;
  const TwinT p0(Shape{2, 2, 5, 7}, uniform(140, 1)), p1(Shape{2, 3, 5, 7}, uniform(210, 2)),
      p2(Shape{2, 1, 5, 7}, uniform(70, 3));
  TwinT y(Shape{2, 6, 5, 7});
  d.both([&](Context& ctx) { concat_channels(ctx, {p0.on(ctx), p1.on(ctx), p2.on(ctx)}, y.on(ctx)); });
  expect_same(d, "concat", y, kExact);
  for (const float beta : {0.f, 1.f}) {
    INFO("beta " << beta);
    TwinT d0 = grad_twin(p0.c.shape(), beta, 4), d2 = grad_twin(p2.c.shape(), beta, 5);
    d.both([&](Context& ctx) {
      const TensorView absent(nullptr, p1.c.shape(), ctx.device());
      split_channels(ctx, y.on(ctx), {d0.on(ctx), absent, d2.on(ctx)}, beta);
    });
    expect_same(d, "split part 0", d0, kTight);
    expect_same(d, "split part 2", d2, kTight);
  }
}

TEST_CASE("softmax forward and backward") {
  Devices d;
  const Shape s{2, 5, 7, 9};
  const TwinT x(s, uniform(s.numel(), 1, -4.f, 4.f)), dy(s, uniform(s.numel(), 2));
  TwinT y(s);
  d.both([&](Context& ctx) { softmax_forward(ctx, x.on(ctx), y.on(ctx)); });
  expect_same(d, "softmax", y, kFwd);
  each_beta(d, "softmax backward", s, kBwd, [&](Context& ctx, TensorView dx, float beta) {
    softmax_backward(ctx, y.on(ctx), dy.on(ctx), dx, beta);
  });
}

TEST_CASE("channel argmax, with ties") {
  Devices d;
  const Shape s{2, 5, 7, 9};
  std::vector<float> v = uniform(s.numel(), 1, -4.f, 4.f);
  for (size_t i = 0; i < v.size(); i += 3) v[i] = std::round(v[i]);  // ties between channels
  const TwinT x(s, v);
  Twin<int32_t> labels(Shape{2, 7, 9});
  d.both([&](Context& ctx) { argmax_channels(ctx, x.on(ctx), labels.on(ctx)); });
  expect_same(d, "argmax", labels, kExact);
}

TEST_CASE("cross-entropy: ignore pixels, mean over valid, none valid, bad labels throw on cuda") {
  Devices d;
  const Shape s{2, 5, 9, 7}, ls{2, 9, 7};
  const TwinT x(s, uniform(s.numel(), 1, -3.f, 3.f));
  for (const int ignore : {kIgnoreLabel, -1}) {
    for (const bool none_valid : {false, true}) {
      INFO("ignore " << ignore << (none_valid ? ", every pixel ignored" : ""));
      const Twin<int32_t> labels(ls, none_valid ? std::vector<int32_t>(size_t(ls.numel()), ignore)
                                                : random_labels(ls, 5, ignore, 2));
      const CeResult rc = cross_entropy_forward(d.cpu, x.c, labels.c, ignore);
      const CeResult rg = cross_entropy_forward(d.gpu, x.g, labels.g, ignore);
      CHECK(rg.valid == rc.valid);
      CHECK(rg.loss == doctest::Approx(rc.loss).epsilon(1e-5));
      each_beta(d, "cross-entropy backward", s, kBwd, [&](Context& ctx, TensorView dx, float beta) {
        cross_entropy_backward(ctx, x.on(ctx), labels.on(ctx), 0.7f, dx, beta, ignore);
      });
    }
  }
  std::vector<int32_t> lv = random_labels(ls, 5, kIgnoreLabel, 4);
  lv[5] = 7, lv[20] = -3;  // the first bad label is the one reported
  const Labels bad = Labels::from_host(ls, lv, GPU);
  Labels kept(ls, GPU);
  CHECK_THROWS_WITH_AS(cross_entropy_forward(d.gpu, x.g, bad), doctest::Contains("label 7 at pixel 5"), Error);
  CHECK_THROWS_WITH_AS(ohem_select(d.gpu, x.g, bad, 0.7f, 10, kept), doctest::Contains("label 7 at pixel 5"), Error);
}

TEST_CASE("ohem selection: threshold from thresh or the min_kept-th smallest p_gt, all branches") {
  Devices d;
  const Shape s{2, 5, 17, 13}, ls{2, 17, 13};
  const int64_t HW = ls[1] * ls[2];
  const TwinT x(s, uniform(s.numel(), 1, -3.f, 3.f));
  const std::vector<int32_t> lv = random_labels(ls, 5, kIgnoreLabel, 2);
  const Twin<int32_t> labels(ls, lv);
  // p_gt per pixel (1 when ignored) from the CPU softmax, to tell real differences from p_gt
  // within float rounding of the threshold.
  Tensor prob(s, CPU);
  softmax_forward(d.cpu, x.c, prob);
  std::vector<float> pgt(lv.size(), 1.f);
  for (size_t k = 0; k < lv.size(); ++k)
    if (lv[k] != kIgnoreLabel) pgt[k] = prob.data()[(int64_t(k) / HW * 5 + lv[k]) * HW + int64_t(k) % HW];
  const int64_t valid = std::count_if(lv.begin(), lv.end(), [](int32_t l) { return l != kIgnoreLabel; });
  std::vector<float> sorted = pgt;
  std::sort(sorted.begin(), sorted.end());
  // min_kept 441 = P − 1: sorted on the device but more than the valid pixels, so not selecting.
  const std::vector<std::pair<float, int64_t>> cases = {{0.7f, 0},  {0.7f, 30},     {0.3f, 200}, {0.05f, 50},
                                                         {1.0f, 10}, {0.7f, 100000}, {0.3f, 441}};
  for (const auto& c : cases) {
    const float th = c.first;
    const int64_t mk = c.second;
    INFO("thresh " << th << " min_kept " << mk);
    Twin<int32_t> kept(ls);
    d.both([&](Context& ctx) { ohem_select(ctx, x.on(ctx), labels.on(ctx), th, mk, kept.on(ctx)); });
    const std::vector<int32_t> want = kept.c.to_host(), got = host(d.gpu, kept.g.view());
    const bool select = mk > 0 && mk <= valid;
    const float threshold = select ? std::max(th, sorted[size_t(mk - 1)]) : 0.f;
    size_t differ = 0, real = 0;  // real: not a p_gt within float rounding of the threshold
    for (size_t k = 0; k < want.size(); ++k) {
      if (got[k] == want[k]) continue;
      ++differ;
      if (!select || std::fabs(pgt[k] - threshold) > 1e-5f) ++real;
    }
    CHECK(real == 0);
    CHECK(differ <= 2);
  }
}

TEST_CASE("cross-entropy and OHEM device variants: the host figures, bad labels recorded for check()") {
  Devices d;
  const Shape s{2, 5, 17, 13}, ls{2, 17, 13};
  const TwinT x(s, uniform(s.numel(), 3, -3.f, 3.f));
  for (const int ignore : {kIgnoreLabel, -1}) {
    for (const bool none_valid : {false, true}) {
      INFO("ignore " << ignore << (none_valid ? ", every pixel ignored" : ""));
      const Twin<int32_t> labels(ls, none_valid ? std::vector<int32_t>(size_t(ls.numel()), ignore)
                                                : random_labels(ls, 5, ignore, 8));
      const CeResult rc = cross_entropy_forward(d.cpu, x.c, labels.c, ignore);
      const CeResult rg = cross_entropy_forward(d.gpu, x.g, labels.g, ignore);
      const DeviceSlot<CeResult> slot(GPU);
      cross_entropy_forward(d.gpu, x.g, labels.g, slot.get(), ignore);
      const CeResult r = slot.read(d.gpu);
      CHECK(r.loss == rg.loss);  // the same kernels
      CHECK(r.valid == rc.valid);
      CHECK(r.loss == doctest::Approx(rc.loss).epsilon(1e-5));
      CHECK(r.bad_pixel == -1);
      CHECK_NOTHROW(r.check(5, ignore));
    }
  }
  // OHEM decided on the device: the same kept labels as the checked path, every branch.
  const Twin<int32_t> labels(ls, random_labels(ls, 5, kIgnoreLabel, 9));
  const std::vector<std::pair<float, int64_t>> cases = {{0.7f, 0},  {0.7f, 30},  {0.05f, 200},
                                                         {1.0f, 10}, {0.3f, 442}, {0.7f, 100000}};
  for (const auto& c : cases) {
    const float th = c.first;
    const int64_t mk = c.second;
    INFO("thresh " << th << " min_kept " << mk);
    Labels a(ls, GPU), b(ls, GPU);
    ohem_select(d.gpu, x.g, labels.g, th, mk, a);
    ohem_select_deferred(d.gpu, x.g, labels.g, th, mk, b);
    CHECK(host(d.gpu, b.view()) == host(d.gpu, a.view()));
  }

  // Bad labels: nothing throws while queuing; check() throws the host-returning path's error.
  std::vector<int32_t> lv = random_labels(ls, 5, kIgnoreLabel, 4);
  lv[5] = 7, lv[20] = -3;  // the first bad label is the one reported
  const Labels bad = Labels::from_host(ls, lv, GPU);
  const std::string want = error_of([&] { cross_entropy_forward(d.gpu, x.g, bad); });
  CHECK(want.find("label 7 at pixel 5 is outside [0, 5)") != std::string::npos);
  CHECK(error_of([&] { cross_entropy_forward(d.cpu, x.c, Labels::from_host(ls, lv, CPU)); }) == want);
  const DeviceSlot<CeResult> slot(GPU);
  CHECK_NOTHROW(cross_entropy_forward(d.gpu, x.g, bad, slot.get()));
  const CeResult r = slot.read(d.gpu);
  CHECK(r.bad_pixel == 5);
  CHECK(r.bad_label == 7);
  CHECK(error_of([&] { r.check(5, kIgnoreLabel); }) == want);
  for (const auto& c : cases) {
    const float th = c.first;
    const int64_t mk = c.second;
    INFO("bad labels, thresh " << th << " min_kept " << mk);
    Labels kept(ls, GPU);
    CHECK(error_of([&] { ohem_select(d.gpu, x.g, bad, th, mk, kept); }) == want);
    CHECK_NOTHROW(ohem_select_deferred(d.gpu, x.g, bad, th, mk, kept));
    const std::vector<int32_t> k = host(d.gpu, kept.view());
    CHECK(k[5] == 7);  // passed through for the cross-entropy's record
    CHECK(k[20] == -3);
    const DeviceSlot<CeResult> ks(GPU);
    cross_entropy_forward(d.gpu, x.g, kept, ks.get());
    const CeResult kr = ks.read(d.gpu);
    CHECK(error_of([&] { kr.check(5, kIgnoreLabel); }) == want);
  }
}

TEST_CASE("supervised loss device variant: CPU parity with and without OHEM and aux; bad labels deferred") {
  Devices d;
  const Shape ps{2, 4, 5, 6}, as{2, 4, 3, 4}, ls{2, 17, 19};
  const TwinT pred(ps, uniform(ps.numel(), 11, -3.f, 3.f)), aux(as, uniform(as.numel(), 12, -3.f, 3.f));
  const std::vector<int32_t> lv = random_labels(ls, 4, kIgnoreLabel, 13);
  const Twin<int32_t> labels(ls, lv);
  // (ohem, thresh, min_kept): plain CE; OHEM cut at thresh; at the min_kept-th p_gt; keeping all.
  const std::vector<std::tuple<bool, float, int64_t>> cases = {
      {false, 0.7f, 0}, {true, 0.7f, 30}, {true, 0.05f, 200}, {true, 0.7f, 100000}};
  for (const auto& c : cases) {
    const bool ohem = std::get<0>(c);
    const float th = std::get<1>(c);
    const int64_t mk = std::get<2>(c);
    for (const bool with_aux : {true, false}) {
      INFO((ohem ? "ohem" : "ce") << " thresh " << th << " min_kept " << mk << (with_aux ? ", aux" : ""));
      SupLossOptions o;
      o.ohem = ohem;
      o.thresh = th;
      o.min_kept = mk;
      SupLossBuffers bc, bg;
      TwinT dp(ps), da(as);
      const SupLossResult rc = supervised_loss(d.cpu, pred.c, with_aux ? aux.c.view() : TensorView(), labels.c, o,
                                               bc, 1.f, dp.c, with_aux ? da.c.view() : TensorView(), 0.f);
      const DeviceSlot<SupLossResult> slot(GPU);
      supervised_loss(d.gpu, pred.g, with_aux ? aux.g.view() : TensorView(), labels.g, o, bg, 1.f, dp.g,
                      with_aux ? da.g.view() : TensorView(), 0.f, slot.get());
      const SupLossResult r = slot.read(d.gpu);
      CHECK(r.valid == rc.valid);
      CHECK(r.main == doctest::Approx(rc.main).epsilon(1e-5));
      CHECK(r.aux == doctest::Approx(rc.aux).epsilon(1e-5));
      CHECK(r.loss == doctest::Approx(rc.loss).epsilon(1e-5));
      CHECK(r.loss == doctest::Approx(r.main + (with_aux ? 0.4f * r.aux : 0.f)).epsilon(1e-6));
      CHECK(r.bad_pixel == -1);
      CHECK_NOTHROW(r.check());
      expect_same(d, "supervised loss main gradient", dp, kBwd);
      if (with_aux) expect_same(d, "supervised loss aux gradient", da, kBwd);
      // The host-returning variant on CUDA: the same kernels, the same figures.
      const SupLossResult rh = supervised_loss(d.gpu, pred.g, with_aux ? aux.g.view() : TensorView(), labels.g, o,
                                               bg, 1.f, dp.g, with_aux ? da.g.view() : TensorView(), 0.f);
      CHECK(rh.loss == r.loss);
      CHECK(rh.main == r.main);
      CHECK(rh.aux == r.aux);
      CHECK(rh.valid == r.valid);
    }
  }
  std::vector<int32_t> wrong = lv;
  wrong[5] = 7, wrong[20] = -3;
  const Labels bad_c = Labels::from_host(ls, wrong, CPU), bad_g = Labels::from_host(ls, wrong, GPU);
  for (const bool ohem : {false, true}) {
    INFO((ohem ? "ohem" : "ce"));
    SupLossOptions o;
    o.ohem = ohem;
    o.min_kept = 30;
    SupLossBuffers bc, bg;
    TwinT dp(ps), da(as);
    const std::string want =
        error_of([&] { supervised_loss(d.cpu, pred.c, aux.c, bad_c, o, bc, 1.f, dp.c, da.c, 0.f); });
    CHECK(want.find("label 7 at pixel 5 is outside [0, 4) and is not the ignore index 255") != std::string::npos);
    CHECK(error_of([&] { supervised_loss(d.gpu, pred.g, aux.g, bad_g, o, bg, 1.f, dp.g, da.g, 0.f); }) == want);
    const DeviceSlot<SupLossResult> slot(GPU);
    CHECK_NOTHROW(supervised_loss(d.gpu, pred.g, aux.g, bad_g, o, bg, 1.f, dp.g, da.g, 0.f, slot.get()));
    const SupLossResult r = slot.read(d.gpu);
    CHECK(r.bad_pixel == 5);
    CHECK(error_of([&] { r.check(); }) == want);
  }
}

TEST_CASE("sgd: three steps over groups; a group without a learning rate gives NaN on cuda") {
  Devices d;
  const int64_t n = 1000;
  const Shape s{n};
  std::vector<uint8_t> gv(static_cast<size_t>(n));
  for (size_t i = 0; i < gv.size(); ++i) gv[i] = uint8_t(philox_u32(1, 0, i) % 3);
  const std::vector<float> lrs = {0.01f, 0.1f, 0.001f};
  const SgdConfig cfg{0.9f, 1e-4f};
  TwinT p(s, uniform(n, 2)), m(s);
  const Twin<uint8_t> groups(s, gv);
  for (int step = 0; step < 3; ++step) {
    const TwinT g(s, uniform(n, 10 + step));
    d.both([&](Context& ctx) { sgd_step(ctx, cfg, p.on(ctx), g.on(ctx), m.on(ctx), groups.on(ctx), lrs); });
  }
  expect_same(d, "sgd parameters", p, kFwd);
  expect_same(d, "sgd momentum", m, kFwd);
  gv[3] = 3;    // no learning rate given for group 3
  gv[7] = 200;  // past kMaxLrGroups: must read NaN, not past the table
  const Twin<uint8_t> bad(s, gv);
  const TwinT g(s, uniform(n, 20));
  CHECK_THROWS_AS(sgd_step(d.cpu, cfg, p.c, g.c, m.c, bad.c, lrs), Error);
  sgd_step(d.gpu, cfg, p.g, g.g, m.g, bad.g, lrs);
  const std::vector<float> after = host(d.gpu, p.g.view());
  CHECK(std::isnan(after[3]));
  CHECK(std::isnan(after[7]));
  CHECK(std::count_if(after.begin(), after.end(), [](float v) { return std::isnan(v); }) == 2);
}

TEST_CASE("cuda reductions and gathers are bitwise reproducible") {
  Devices d;
  const Shape xs{2, 4, 17, 15}, ls{2, 17, 15};
  ParamSet ps;
  const Conv2d conv(ps, "conv", Conv2dSpec{4, 6, 3, 3, 1, 2, 2, true});
  const BatchNorm2d bn(ps, "bn", 4);
  ps.allocate(GPU);
  ps.initialize(3);
  const Shape ys = conv.out_shape(xs), us{2, 4, 61, 53};
  const Tensor x = Tensor::from_host(xs, uniform(xs.numel(), 1, 0.f, 3.f), GPU);
  const Tensor dy = Tensor::from_host(ys, uniform(ys.numel(), 2), GPU);
  const Tensor dbn = Tensor::from_host(xs, uniform(xs.numel(), 4), GPU);
  const Tensor dup = Tensor::from_host(us, uniform(us.numel(), 5), GPU);
  const Shape ps_shape = maxpool_out_shape(MaxPoolSpec{}, xs);
  const Tensor dpool = Tensor::from_host(ps_shape, uniform(ps_shape.numel(), 7), GPU);
  const Labels labels = Labels::from_host(ls, random_labels(ls, 4, kIgnoreLabel, 6), GPU);
  Tensor saved(bn.saved_shape(), GPU), y(xs, GPU);
  std::vector<std::vector<float>> runs;
  std::vector<float> losses;
  for (int run = 0; run < 2; ++run) {
    ps.zero_grad();
    Tensor dx(xs, GPU);
    conv.backward(d.gpu, x, dy, dx, 0.f);
    bn.forward(d.gpu, x, y, BatchNormMode{true, true}, saved);
    bn.backward(d.gpu, x, saved, true, dbn, dx, 1.f);
    bilinear_backward(d.gpu, dup, dx, 1.f);
    maxpool_backward(d.gpu, MaxPoolSpec{}, x, dpool, dx, 1.f);
    losses.push_back(cross_entropy_forward(d.gpu, x, labels).loss);
    std::vector<float> all = host(d.gpu, ps.grads().all()), v = host(d.gpu, dx.view());
    all.insert(all.end(), v.begin(), v.end());
    runs.push_back(all);
  }
  CHECK(runs[0] == runs[1]);
  CHECK(losses[0] == losses[1]);
}

}  // TEST_SUITE("cuda")
