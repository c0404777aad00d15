// The supervised loss: upsample-then-CE equals the composition of the layers, its gradient matches
// finite differences in double through the CPU oracles, OHEM and the aux weight combine as the
// public CriterionOhem does, and an all-ignored batch gives 0 with zero gradient.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "layers/resize.h"
#include "tests/gradcheck.h"
#include "u2pl/losses/sup_loss.h"

using namespace u2pl;

namespace {

// Σ over valid pixels of CE(upsample(x)) / valid, in double (the oracle's CeResult carries a
// float loss, too coarse for finite differences, so the CE sum is written out here).
double ce_of_upsampled(const std::vector<double>& x, Shape xs, const std::vector<int32_t>& labels, Shape ls) {
  const Shape up{xs.n(), xs.c(), ls[1], ls[2]};
  std::vector<double> u(up.numel());
  bilinear_forward_cpu<double>(xs, up, x.data(), u.data());
  const int64_t C = up.c(), HW = up.h() * up.w();
  double sum = 0;
  int64_t valid = 0;
  for (int64_t k = 0; k < up.n() * HW; ++k) {
    if (labels[k] == 255) continue;
    const double* px = u.data() + (k / HW) * C * HW + k % HW;
    double m = px[0], z = 0;
    for (int64_t c = 1; c < C; ++c) m = std::max(m, px[c * HW]);
    for (int64_t c = 0; c < C; ++c) z += std::exp(px[c * HW] - m);
    sum += std::log(z) + m - px[labels[k] * HW];
    ++valid;
  }
  return sum / double(valid);
}

}  // namespace

TEST_CASE("supervised loss: CE on logits upsampled to the crop, gradient by finite differences") {
  Context ctx(Device::CPU);
  const Shape xs{2, 3, 4, 5}, ls{2, 13, 17};
  const auto xv = test::random_floats(xs.numel(), 1, -2, 2);
  std::vector<int32_t> lab(ls.numel());
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = i % 7 == 0 ? 255 : int32_t(philox_u32(3, 0, i) % 3);
  const Tensor x = Tensor::from_host(xs, xv, Device::CPU);
  const Labels labels = Labels::from_host(ls, lab, Device::CPU);
  Tensor dx(xs, Device::CPU);
  SupLossBuffers buf;
  const SupLossResult r = supervised_loss(ctx, x, TensorView(), labels, {}, buf, 1.f, dx, TensorView(), 0.f);
  std::vector<double> xd(xv.begin(), xv.end());
  CHECK(r.loss == doctest::Approx(ce_of_upsampled(xd, xs, lab, ls)).epsilon(1e-5));
  CHECK(r.valid == int64_t(std::count_if(lab.begin(), lab.end(), [](int32_t v) { return v != 255; })));
  const auto g = dx.to_host();
  // Finite differences of the double oracle; the analytic gradient is float, hence the tolerance.
  for (size_t i = 0; i < xd.size(); i += 7) {
    const double x0 = xd[i], eps = 1e-4;
    xd[i] = x0 + eps;
    const double lp = ce_of_upsampled(xd, xs, lab, ls);
    xd[i] = x0 - eps;
    const double lm = ce_of_upsampled(xd, xs, lab, ls);
    xd[i] = x0;
    CHECK(g[i] == doctest::Approx((lp - lm) / (2 * eps)).epsilon(1e-3).scale(1e-4));
  }
}

TEST_CASE("supervised loss: OHEM on main and aux, weighted 0.4, and the all-ignored batch") {
  Context ctx(Device::CPU);
  const Shape ps{1, 4, 3, 3}, as{1, 4, 2, 2}, ls{1, 9, 9};
  const Tensor pred = Tensor::from_host(ps, test::random_floats(ps.numel(), 5, -3, 3), Device::CPU);
  const Tensor aux = Tensor::from_host(as, test::random_floats(as.numel(), 6, -3, 3), Device::CPU);
  std::vector<int32_t> lab(ls.numel());
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = int32_t(i % 4);
  const Labels labels = Labels::from_host(ls, lab, Device::CPU);
  SupLossOptions o;
  o.ohem = true;
  o.min_kept = 20;
  SupLossBuffers buf;
  Tensor dp(ps, Device::CPU), da(as, Device::CPU);
  const SupLossResult r = supervised_loss(ctx, pred, aux, labels, o, buf, 1.f, dp, da, 0.f);
  CHECK(r.loss == doctest::Approx(r.main + 0.4f * r.aux));
  CHECK(r.valid >= 20);  // OHEM keeps at least min_kept pixels
  CHECK(r.valid <= 81);
  // The aux gradient is the main-style gradient of its own loss scaled by 0.4.
  Tensor da1(as, Device::CPU);
  SupLossOptions only_aux = o;
  only_aux.aux_weight = 1.f;
  supervised_loss(ctx, pred, aux, labels, only_aux, buf, 1.f, dp, da1, 0.f);
  const auto a04 = da.to_host(), a1 = da1.to_host();
  for (size_t i = 0; i < a04.size(); ++i) CHECK(a04[i] == doctest::Approx(0.4f * a1[i]).epsilon(1e-5));

  const Labels none = Labels::from_host(ls, std::vector<int32_t>(ls.numel(), 255), Device::CPU);
  const SupLossResult z = supervised_loss(ctx, pred, aux, none, o, buf, 1.f, dp, da, 0.f);
  CHECK(z.loss == 0.f);
  for (float v : dp.to_host()) CHECK(v == 0.f);
  const Labels wrong = Labels::from_host(Shape{2, 9, 9}, std::vector<int32_t>(162, 0), Device::CPU);
  CHECK_THROWS_AS(supervised_loss(ctx, pred, aux, wrong, o, buf, 1.f, dp, da, 0.f), Error);
}

TEST_CASE("supervised loss, device variant on CPU: the host figures and gradients; bad labels, the same error") {
  Context ctx(Device::CPU);
  const Shape ps{2, 4, 3, 4}, as{2, 4, 2, 3}, ls{2, 9, 11};
  const Tensor pred = Tensor::from_host(ps, test::random_floats(ps.numel(), 7, -3, 3), Device::CPU);
  const Tensor aux = Tensor::from_host(as, test::random_floats(as.numel(), 8, -3, 3), Device::CPU);
  std::vector<int32_t> lab(ls.numel());
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = i % 6 == 0 ? 255 : int32_t(philox_u32(9, 0, i) % 4);
  const Labels labels = Labels::from_host(ls, lab, Device::CPU);
  for (const bool ohem : {false, true}) {
    for (const bool with_aux : {false, true}) {
      INFO((ohem ? "ohem" : "ce") << (with_aux ? " with aux" : ""));
      SupLossOptions o;
      o.ohem = ohem;
      o.min_kept = 50;
      SupLossBuffers buf;
      Tensor dp(ps, Device::CPU), da(as, Device::CPU), dp2(ps, Device::CPU), da2(as, Device::CPU);
      const TensorView a = with_aux ? aux.view() : TensorView();
      const SupLossResult h =
          supervised_loss(ctx, pred, a, labels, o, buf, 1.f, dp, with_aux ? da.view() : TensorView(), 0.f);
      SupLossResult d;
      supervised_loss(ctx, pred, a, labels, o, buf, 1.f, dp2, with_aux ? da2.view() : TensorView(), 0.f, &d);
      CHECK(d.loss == h.loss);
      CHECK(d.main == h.main);
      CHECK(d.aux == h.aux);
      CHECK(d.valid == h.valid);
      CHECK(d.bad_pixel == -1);
      CHECK_NOTHROW(d.check());
      CHECK(d.loss == h.main + (with_aux ? 0.4f * h.aux : 0.f));
      CHECK(dp2.to_host() == dp.to_host());
      if (with_aux) CHECK(da2.to_host() == da.to_host());
    }
  }
  std::vector<int32_t> wrong = lab;
  wrong[13] = 4, wrong[40] = -1;
  const Labels bad = Labels::from_host(ls, wrong, Device::CPU);
  for (const bool ohem : {false, true}) {
    SupLossOptions o;
    o.ohem = ohem;
    SupLossBuffers buf;
    Tensor dp(ps, Device::CPU), da(as, Device::CPU);
    std::string host_msg, dev_msg;
    try {
      supervised_loss(ctx, pred, aux, bad, o, buf, 1.f, dp, da, 0.f);
    } catch (const Error& e) {
      host_msg = e.what();
    }
    SupLossResult d;
    try {
      supervised_loss(ctx, pred, aux, bad, o, buf, 1.f, dp, da, 0.f, &d);
    } catch (const Error& e) {
      dev_msg = e.what();
    }
    CHECK(host_msg.find("label 4 at pixel 13 is outside [0, 4) and is not the ignore index 255") != std::string::npos);
    CHECK(dev_msg == host_msg);
    // What the CUDA kernels record for these labels: check() throws the same error.
    d = SupLossResult();
    d.bad_pixel = 13;
    d.bad_label = 4;
    d.classes = 4;
    d.ignore = 255;
    std::string check_msg;
    try {
      d.check();
    } catch (const Error& e) {
      check_msg = e.what();
    }
    CHECK(check_msg == host_msg);
  }
}
