// Tier 1 (STYLE 12): finite-difference gradient checks in double of every layer's CPU backward,
// for the input and every parameter, at several shapes (stride 2, dilation > 1, odd and
// non-square sizes, the ceil_mode border, ignore pixels). Loss = Σ w·y with fixed random w.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "engine/math.h"
#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/elementwise.h"
#include "layers/loss.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "tests/bn_sync_util.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace u2pl;
using u2pl::test::error_of;
using test::check_gradient;
using test::dot;
using test::random_vec;

namespace {

void conv_case(const Conv2dSpec& s, Shape xs) {
  const Shape ys = conv2d_out_shape(s, xs);
  auto x = random_vec(xs.numel(), 1);
  auto w = random_vec(size_t(s.cout) * s.cin * s.kh * s.kw, 2);
  auto b = random_vec(s.cout, 3);
  const auto wy = random_vec(ys.numel(), 4);
  std::vector<double> col(std::max<int64_t>(1, conv2d_col_floats(s, xs))), y(ys.numel());
  auto loss = [&] {
    conv2d_forward_cpu<double>(s, xs, x.data(), w.data(), s.bias ? b.data() : nullptr, y.data(), col.data());
    return dot(wy, y);
  };
  std::vector<double> dx(x.size(), 0.5), dw(w.size(), 0.0), db(b.size(), 0.0);
  conv2d_backward_cpu<double>(s, xs, x.data(), w.data(), wy.data(), dx.data(), 0.0, dw.data(),
                              s.bias ? db.data() : nullptr, col.data());
  check_gradient("conv dx", x, dx, loss);
  check_gradient("conv dw", w, dw, loss);
  if (s.bias) check_gradient("conv db", b, db, loss);
  // beta = 1 accumulates onto what dx held; dw accumulates across calls.
  std::vector<double> dx2(x.size(), 0.5), dw2(dw);
  conv2d_backward_cpu<double>(s, xs, x.data(), w.data(), wy.data(), dx2.data(), 1.0, dw2.data(),
                              nullptr, col.data());
  for (size_t i = 0; i < dx.size(); ++i) REQUIRE(dx2[i] == doctest::Approx(dx[i] + 0.5));
  for (size_t i = 0; i < dw.size(); ++i) REQUIRE(dw2[i] == doctest::Approx(2 * dw[i]));
}

}  // namespace

TEST_CASE("conv2d gradients") {
  SUBCASE("3x3 stride 1 pad 1 bias") { conv_case({3, 4, 3, 3, 1, 1, 1, true}, Shape{2, 3, 5, 6}); }
  SUBCASE("3x3 stride 2 odd non-square") { conv_case({2, 3, 3, 3, 2, 1, 1, false}, Shape{2, 2, 7, 9}); }
  SUBCASE("3x3 dilation 2") { conv_case({2, 3, 3, 3, 1, 2, 2, true}, Shape{1, 2, 6, 5}); }
  SUBCASE("3x3 dilation 4 larger than input") { conv_case({2, 2, 3, 3, 1, 4, 4, false}, Shape{1, 2, 3, 4}); }
  SUBCASE("1x1 pointwise") { conv_case({4, 3, 1, 1, 1, 0, 1, true}, Shape{2, 4, 3, 5}); }
  SUBCASE("1x1 stride 2") { conv_case({3, 2, 1, 1, 2, 0, 1, false}, Shape{2, 3, 5, 5}); }
  SUBCASE("rectangular 3x1 kernel") { conv_case({2, 2, 3, 1, 1, 1, 1, true}, Shape{1, 2, 4, 4}); }
}

TEST_CASE("conv2d rejects bad shapes") {
  CHECK_THROWS_WITH_AS(conv2d_out_shape({3, 4, 3, 3}, Shape{1, 2, 5, 5}), doctest::Contains("3 input channels"), Error);
  CHECK_THROWS_WITH_AS(conv2d_out_shape({3, 4, 3, 3}, Shape{1, 3, 1, 5}), doctest::Contains("smaller than"), Error);
  CHECK_THROWS_WITH_AS(conv2d_out_shape({3, 4, 3, 3}, Shape{3, 5, 5}), doctest::Contains("4-D"), Error);
  CHECK_THROWS_AS(conv2d_out_shape({3, 4, 3, 3, 0}, Shape{1, 3, 5, 5}), Error);
}

// The activation plans share memory between tensors never alive at once; a convolution that read
// and wrote the same memory would be wrong on cuDNN even where oneDNN's reorders hide it.
TEST_CASE("conv2d refuses an output that shares memory with its input (or an input gradient with dy or x)") {
  ParamSet ps;
  const Conv2d conv(ps, "conv", Conv2dSpec{2, 2, 3, 3, 1, 1, 1, false});
  ps.allocate(Device::CPU);
  Context ctx(Device::CPU);
  Tensor buf(Shape{3, 2, 4, 4}, Device::CPU);
  const TensorView a = buf.view().batch_slice(0, 1), b = buf.view().batch_slice(1, 1);
  const TensorView half = TensorView(a.data + 16, a.shape, Device::CPU);  // overlaps a and b
  CHECK_NOTHROW(conv.forward(ctx, a, b));
  CHECK_THROWS_WITH_AS(conv.forward(ctx, a, a), doctest::Contains("shares memory with the input"), Error);
  CHECK_THROWS_WITH_AS(conv.forward(ctx, a, half), doctest::Contains("shares memory with the input"), Error);
  CHECK_NOTHROW(conv.backward(ctx, a, b, buf.view().batch_slice(2, 1), 0.f));
  CHECK_THROWS_WITH_AS(conv.backward(ctx, a, b, half, 0.f), doctest::Contains("shares memory"), Error);
  CHECK_THROWS_WITH_AS(conv.backward(ctx, a, b, b, 0.f), doctest::Contains("shares memory"), Error);
}

static void bn_case(Shape xs, bool batch_stats) {
  const int64_t C = xs.c();
  auto x = random_vec(xs.numel(), 11, -2, 2);
  auto g = random_vec(C, 12, 0.5, 1.5);
  auto be = random_vec(C, 13);
  const auto wy = random_vec(xs.numel(), 14);
  std::vector<double> rm0 = random_vec(C, 15), rv0 = random_vec(C, 16, 0.5, 2), y(xs.numel());
  std::vector<double> sm(C), si(C);
  auto loss = [&] {
    std::vector<double> rm = rm0, rv = rv0;
    batchnorm_forward_cpu<double>(xs, x.data(), g.data(), be.data(), rm.data(), rv.data(), batch_stats,
                                  y.data(), nullptr, nullptr);
    return dot(wy, y);
  };
  {
    std::vector<double> rm = rm0, rv = rv0;
    batchnorm_forward_cpu<double>(xs, x.data(), g.data(), be.data(), rm.data(), rv.data(), batch_stats,
                                  y.data(), sm.data(), si.data());
  }
  std::vector<double> dx(x.size()), dg(C, 0.0), db(C, 0.0);
  batchnorm_backward_cpu<double>(xs, x.data(), g.data(), sm.data(), si.data(), batch_stats, wy.data(),
                                 dx.data(), 0.0, dg.data(), db.data());
  check_gradient("bn dx", x, dx, loss);
  check_gradient("bn dgamma", g, dg, loss);
  check_gradient("bn dbeta", be, db, loss);
}

TEST_CASE("batchnorm gradients, batch statistics and running statistics") {
  SUBCASE("train") { bn_case(Shape{3, 2, 3, 5}, true); }
  SUBCASE("train, one pixel per image") { bn_case(Shape{4, 3, 1, 1}, true); }
  SUBCASE("eval") { bn_case(Shape{2, 3, 4, 3}, false); }
}

TEST_CASE("batchnorm running statistics: biased to normalise, unbiased into running_var") {
  const Shape xs{2, 1, 1, 2};
  const std::vector<double> x{1, 2, 3, 6};  // mean 3, biased var 3.5, unbiased 14/3
  std::vector<double> rm{0}, rv{1}, y(4), sm(1), si(1);
  const double g = 1, b = 0;
  batchnorm_forward_cpu<double>(xs, x.data(), &g, &b, rm.data(), rv.data(), true, y.data(), sm.data(), si.data());
  CHECK(rm[0] == doctest::Approx(0.3));
  CHECK(rv[0] == doctest::Approx(0.9 + 0.1 * 14.0 / 3.0));
  CHECK(si[0] == doctest::Approx(1 / std::sqrt(3.5 + 1e-5)));
  CHECK(y[3] == doctest::Approx(3 / std::sqrt(3.5 + 1e-5)));
}

TEST_CASE("batchnorm over replicas (SyncBN in one process): the merged statistics are the whole batch's") {
  // Three replicas of 2 images: the replicas' (count, mean, M2) merged in order must give the
  // whole batch's statistics, output, running statistics and gradients (within float rounding).
  const test::BnRun whole = test::run_bn(nullptr);
  const ReplicaSync three{nullptr, 3, 0, 3};
  const test::BnRun merged = test::run_bn(&three);
  auto close = [](const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK_MESSAGE(a[i] == doctest::Approx(b[i]).epsilon(1e-5), what << " " << i);
  };
  close(merged.y, whole.y, "y");
  close(merged.rm, whole.rm, "running mean");
  close(merged.rv, whole.rv, "running var");
  close(merged.dx, whole.dx, "dx");
  close(merged.dg, whole.dg, "dgamma");
  close(merged.db, whole.db, "dbeta");
  // A batch that does not split into the replicas is refused.
  const ReplicaSync four{nullptr, 4, 0, 4};
  CHECK(error_of([&] { test::run_bn(&four); }).find("does not split into 4 replicas") != std::string::npos);
}

TEST_CASE("dropout2d scales from `first` on are a slice of the whole batch's") {
  Context ctx(Device::CPU);
  Tensor whole(Shape{6, 10}, Device::CPU), part(Shape{2, 10}, Device::CPU);
  dropout2d_make_scale(ctx, 0.3f, 9, 100, whole);
  dropout2d_make_scale(ctx, 0.3f, 9, 100, part, 3 * 10);  // images 3 and 4 of the 6
  const auto w = whole.to_host(), p = part.to_host();
  CHECK(std::vector<float>(w.begin() + 30, w.begin() + 50) == p);
}

TEST_CASE("relu, dropout2d and global average pool gradients") {
  const Shape xs{2, 3, 4, 5};
  auto x = random_vec(xs.numel(), 21);
  const auto wy = random_vec(xs.numel(), 22);
  std::vector<double> y(x.size()), dx(x.size());
  auto relu_loss = [&] { relu_forward_cpu<double>(int64_t(x.size()), x.data(), y.data()); return dot(wy, y); };
  relu_loss();
  relu_backward_cpu<double>(int64_t(x.size()), y.data(), wy.data(), dx.data(), 0.0);
  check_gradient("relu dx", x, dx, relu_loss, [&](size_t i) { return std::fabs(x[i]) < 1e-4; });

  std::vector<double> scale{0, 1 / 0.9, 1 / 0.9, 1 / 0.9, 0, 1 / 0.9};
  auto drop_loss = [&] { channel_scale_cpu<double>(xs, x.data(), scale.data(), y.data(), 0.0); return dot(wy, y); };
  channel_scale_cpu<double>(xs, wy.data(), scale.data(), dx.data(), 0.0);
  check_gradient("dropout2d dx", x, dx, drop_loss);

  const auto wg = random_vec(6, 23);
  std::vector<double> g(6);
  auto gap_loss = [&] { global_avgpool_forward_cpu<double>(xs, x.data(), g.data()); return dot(wg, g); };
  global_avgpool_backward_cpu<double>(xs, wg.data(), dx.data(), 0.0);
  check_gradient("gap dx", x, dx, gap_loss);
}

TEST_CASE("dropout2d keeps whole channels and scales survivors by 1/(1-p)") {
  Context ctx(Device::CPU);
  Tensor scale(Shape{4, 64}, Device::CPU);
  dropout2d_make_scale(ctx, 0.1f, 5, 0, scale);
  int zeros = 0;
  for (float s : scale.to_host()) {
    CHECK((s == 0.f || s == doctest::Approx(1 / 0.9f)));
    zeros += s == 0.f;
  }
  CHECK(zeros > 5);
  CHECK(zeros < 55);  // ≈ 25.6 expected of 256
  Tensor x = Tensor::from_host(Shape{4, 64, 1, 2}, std::vector<float>(512, 2.f), Device::CPU);
  dropout2d_forward(ctx, x, scale, x);  // in place
  const auto y = x.to_host(), s = scale.to_host();
  for (int k = 0; k < 256; ++k) CHECK(y[2 * k] == y[2 * k + 1]);
  CHECK(y[0] == 2.f * s[0]);
  CHECK_THROWS_AS(dropout2d_make_scale(ctx, 1.f, 0, 0, scale), Error);
}

static void maxpool_case(MaxPoolSpec s, Shape xs) {
  const Shape ys = maxpool_out_shape(s, xs);
  // Distinct values 0.01 apart: no ties, so a 1e-6 step never moves an argmax.
  std::vector<double> x(xs.numel());
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01 * double((i * 7919) % x.size());
  const auto wy = random_vec(ys.numel(), 31);
  std::vector<double> y(ys.numel()), dx(x.size());
  auto loss = [&] { maxpool_forward_cpu<double>(s, xs, x.data(), y.data()); return dot(wy, y); };
  maxpool_backward_cpu<double>(s, xs, x.data(), wy.data(), dx.data(), 0.0);
  check_gradient("maxpool dx", x, dx, loss);
}

TEST_CASE("maxpool: PyTorch ceil_mode sizes and gradients") {
  const MaxPoolSpec s{3, 2, 1, true};
  CHECK(maxpool_out_size(257, s) == 129);  // the stem at crop 513
  CHECK(maxpool_out_size(250, s) == 126);  // 500 x 375 image: 250 x 188 after the stem
  CHECK(maxpool_out_size(188, s) == 95);
  CHECK(maxpool_out_size(6, s) == 4);      // ceil: 3.5 -> 4 (the last window starts at 5 < 6+1)
  CHECK(maxpool_out_size(5, {2, 2, 0, true}) == 3);
  CHECK(maxpool_out_size(4, {2, 2, 1, true}) == 3);  // last window would start at 5 >= 4+1: dropped
  CHECK(maxpool_out_size(6, {3, 2, 1, false}) == 3);
  // Values: the max of each clipped window; padded cells never win even when all are negative.
  std::vector<double> x(9), y(4);
  for (int i = 0; i < 9; ++i) x[i] = i - 20.0;
  maxpool_forward_cpu<double>(s, Shape{1, 1, 3, 3}, x.data(), y.data());
  CHECK(y == std::vector<double>{-16, -15, -13, -12});
  maxpool_case(s, Shape{2, 2, 7, 9});
  maxpool_case(s, Shape{1, 2, 6, 6});
  maxpool_case({2, 2, 1, true}, Shape{1, 1, 4, 5});
  CHECK_THROWS_AS(maxpool_out_shape({3, 2, 2, true}, Shape{1, 1, 5, 5}), Error);
}

static void bilinear_case(Shape xs, Shape ys) {
  auto x = random_vec(xs.numel(), 41);
  const auto wy = random_vec(ys.numel(), 42);
  std::vector<double> y(ys.numel()), dx(x.size(), 3.0);
  auto loss = [&] { bilinear_forward_cpu<double>(xs, ys, x.data(), y.data()); return dot(wy, y); };
  bilinear_backward_cpu<double>(xs, ys, wy.data(), dx.data(), 0.0);
  check_gradient("bilinear dx", x, dx, loss);
}

TEST_CASE("bilinear align_corners gradients, up, down and to one pixel") {
  bilinear_case(Shape{1, 2, 3, 4}, Shape{1, 2, 7, 9});
  bilinear_case(Shape{2, 1, 9, 7}, Shape{2, 1, 4, 3});
  bilinear_case(Shape{1, 1, 1, 1}, Shape{1, 1, 5, 4});  // the ASPP pooled branch
  bilinear_case(Shape{1, 1, 4, 5}, Shape{1, 1, 1, 1});
  // align_corners: corners map to corners exactly.
  const Shape xs{1, 1, 2, 2}, ys{1, 1, 3, 3};
  const std::vector<double> x{0, 1, 2, 3};
  std::vector<double> y(9);
  bilinear_forward_cpu<double>(xs, ys, x.data(), y.data());
  CHECK(y[0] == 0);
  CHECK(y[2] == 1);
  CHECK(y[4] == doctest::Approx(1.5));
  CHECK(y[8] == 3);
}

TEST_CASE("nearest resize follows PyTorch's float32 index rule") {
  CHECK(nearest_src(21, 513, 189) == 56);  // exact arithmetic would give 57 (SPEC)
  CHECK(nearest_src(0, 5, 3) == 0);
  CHECK(nearest_src(2, 5, 3) == 3);
  CHECK(nearest_src(6, 3, 7) == 2);
  Context ctx(Device::CPU);
  Labels a = Labels::from_host(Shape{1, 2, 3}, {0, 1, 2, 3, 4, 255}, Device::CPU);
  Labels b(Shape{1, 4, 6}, Device::CPU);
  nearest_forward(ctx, a.view(), b.view());
  const auto v = b.to_host();
  CHECK(v[0] == 0);
  CHECK(v[5] == 2);
  CHECK(v[23] == 255);
  Labels bad(Shape{2, 4, 6}, Device::CPU);
  CHECK_THROWS_WITH_AS(nearest_forward(ctx, a.view(), bad.view()), doctest::Contains("leading"), Error);
}

TEST_CASE("concat and split are adjoint") {
  Context ctx(Device::CPU);
  Tensor a = Tensor::from_host(Shape{2, 1, 1, 2}, {1, 2, 3, 4}, Device::CPU);
  Tensor b = Tensor::from_host(Shape{2, 2, 1, 2}, {5, 6, 7, 8, 9, 10, 11, 12}, Device::CPU);
  Tensor y(Shape{2, 3, 1, 2}, Device::CPU);
  concat_channels(ctx, {a, b}, y);
  CHECK(y.to_host() == std::vector<float>{1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12});
  Tensor da = Tensor::from_host(Shape{2, 1, 1, 2}, {1, 1, 1, 1}, Device::CPU);
  Tensor db(Shape{2, 2, 1, 2}, Device::CPU);
  split_channels(ctx, y, {da, db}, 1.f);  // beta 1 onto da
  CHECK(da.to_host() == std::vector<float>{2, 3, 4, 5});
  CHECK(db.to_host() == b.to_host());
  Tensor wrong(Shape{2, 4, 1, 2}, Device::CPU);
  CHECK_THROWS_WITH_AS(concat_channels(ctx, {a, b}, wrong), doctest::Contains("channels"), Error);
}

TEST_CASE("concat gradient: split is its adjoint, checked by finite differences") {
  // y = [a | b] along channels of (2, ·, 2, 3): channel_block_copy is the op of both directions.
  const int64_t N = 2, HW = 6, ca = 2, cb = 3, cy = ca + cb;
  auto a = random_vec(N * ca * HW, 61), b = random_vec(N * cb * HW, 62);
  const auto wy = random_vec(N * cy * HW, 63);
  std::vector<double> y(N * cy * HW);
  auto loss = [&] {
    channel_block_copy_cpu<double>(N, ca, HW, a.data(), ca, 0, y.data(), cy, 0, 0.0);
    channel_block_copy_cpu<double>(N, cb, HW, b.data(), cb, 0, y.data(), cy, ca, 0.0);
    return dot(wy, y);
  };
  std::vector<double> da(a.size()), db(b.size());
  channel_block_copy_cpu<double>(N, ca, HW, wy.data(), cy, 0, da.data(), ca, 0, 0.0);
  channel_block_copy_cpu<double>(N, cb, HW, wy.data(), cy, ca, db.data(), cb, 0, 0.0);
  check_gradient("concat da", a, da, loss);
  check_gradient("concat db", b, db, loss);
}

TEST_CASE("softmax and cross-entropy gradients with ignore pixels") {
  const Shape xs{2, 4, 2, 3};
  auto x = random_vec(xs.numel(), 51, -3, 3);
  const auto wy = random_vec(xs.numel(), 52);
  std::vector<double> y(x.size()), dx(x.size());
  auto sm_loss = [&] { softmax_forward_cpu<double>(xs, x.data(), y.data()); return dot(wy, y); };
  sm_loss();
  softmax_backward_cpu<double>(xs, y.data(), wy.data(), dx.data(), 0.0);
  check_gradient("softmax dx", x, dx, sm_loss);

  const std::vector<int32_t> labels{0, 3, 255, 1, 2, 2, 255, 255, 1, 0, 3, 3};
  auto ce_loss = [&] { return double(cross_entropy_forward_cpu<double>(xs, x.data(), labels.data(), 255).loss); };
  const CeResult r = cross_entropy_forward_cpu<double>(xs, x.data(), labels.data(), 255);
  CHECK(r.valid == 9);
  cross_entropy_backward_cpu<double>(xs, x.data(), labels.data(), 255, r.valid, 1.0, dx.data(), 0.0);
  // The float loss value limits the finite-difference precision: compare in double directly.
  auto ce_loss_d = [&] {
    double s = 0;
    for (int64_t k = 0; k < 12; ++k) {
      if (labels[k] == 255) continue;
      const int64_t n = k / 6, i = k % 6;
      double m = -1e300, z = 0;
      for (int c = 0; c < 4; ++c) m = std::max(m, x[(n * 4 + c) * 6 + i]);
      for (int c = 0; c < 4; ++c) z += std::exp(x[(n * 4 + c) * 6 + i] - m);
      s += std::log(z) + m - x[(n * 4 + labels[k]) * 6 + i];
    }
    return s / 9;
  };
  CHECK(ce_loss() == doctest::Approx(ce_loss_d()).epsilon(1e-6));
  check_gradient("cross-entropy dx", x, dx, ce_loss_d);
  for (int c = 0; c < 4; ++c) CHECK(dx[(0 * 4 + c) * 6 + 2] == 0.0);  // ignored pixel
}

TEST_CASE("channel argmax: the largest logit per pixel, the first on ties") {
  Context ctx(Device::CPU);
  // (1, 3, 1, 4): pixel 0 → 2, pixel 1 → 0 (tie of 0 and 1), pixel 2 → 1, pixel 3 → 0 (all equal)
  const Tensor x = Tensor::from_host(Shape{1, 3, 1, 4}, {0, 5, 1, 7, 1, 5, 3, 7, 2, 4, 2, 7}, Device::CPU);
  Labels out(Shape{1, 1, 4}, Device::CPU);
  argmax_channels(ctx, x, out);
  CHECK(out.to_host() == std::vector<int32_t>{2, 0, 1, 0});
  Labels wrong(Shape{1, 1, 3}, Device::CPU);
  CHECK_THROWS_AS(argmax_channels(ctx, x, wrong), Error);
}

TEST_CASE("cross-entropy: all pixels ignored gives 0 and zero gradient; bad labels throw") {
  Context ctx(Device::CPU);
  Tensor logits = Tensor::from_host(Shape{1, 3, 1, 2}, {1, 2, 3, 4, 5, 6}, Device::CPU);
  Labels none = Labels::from_host(Shape{1, 1, 2}, {255, 255}, Device::CPU);
  const CeResult r = cross_entropy_forward(ctx, logits, none);
  CHECK(r.loss == 0.f);
  CHECK(r.valid == 0);
  Tensor d = Tensor::from_host(Shape{1, 3, 1, 2}, std::vector<float>(6, 7.f), Device::CPU);
  cross_entropy_backward(ctx, logits, none, 1.f, d, 0.f);
  for (float v : d.to_host()) CHECK(v == 0.f);
  Labels bad = Labels::from_host(Shape{1, 1, 2}, {1, 3}, Device::CPU);
  CHECK_THROWS_WITH_AS(cross_entropy_forward(ctx, logits, bad), doctest::Contains("label 3 at pixel 1"), Error);
  Labels neg = Labels::from_host(Shape{1, 1, 2}, {-1, 0}, Device::CPU);
  CHECK_THROWS_AS(cross_entropy_forward(ctx, logits, neg), Error);
  Labels wrong = Labels::from_host(Shape{1, 2, 1}, {0, 0}, Device::CPU);
  CHECK_THROWS_WITH_AS(cross_entropy_forward(ctx, logits, wrong), doctest::Contains("expected shape"), Error);
  CHECK_THROWS_AS(ohem_select(ctx, logits, bad, 0.7f, 1, bad), Error);
}

TEST_CASE("cross-entropy and OHEM device variants on CPU: the host figures; bad labels, the same error") {
  Context ctx(Device::CPU);
  const Shape xs{2, 4, 5, 6}, ls{2, 5, 6};
  const Tensor logits = Tensor::from_host(xs, test::random_floats(xs.numel(), 11, -2, 2), Device::CPU);
  std::vector<int32_t> lv(ls.numel());
  for (size_t i = 0; i < lv.size(); ++i) lv[i] = i % 5 == 0 ? 255 : int32_t(i % 4);
  const Labels labels = Labels::from_host(ls, lv, Device::CPU);
  const CeResult host = cross_entropy_forward(ctx, logits, labels);
  CeResult dev;
  cross_entropy_forward(ctx, logits, labels, &dev);
  CHECK(dev.loss == host.loss);
  CHECK(dev.valid == host.valid);
  CHECK(dev.bad_pixel == -1);
  CHECK_NOTHROW(dev.check(4, 255));
  for (const int64_t min_kept : {int64_t(0), int64_t(7), int64_t(1000)}) {
    Labels a(ls, Device::CPU), b(ls, Device::CPU);
    ohem_select(ctx, logits, labels, 0.3f, min_kept, a);
    ohem_select_deferred(ctx, logits, labels, 0.3f, min_kept, b);
    CHECK(a.to_host() == b.to_host());
  }

  // Heads: main + aux_weight · aux in float, the main term's count.
  CeResult aux;
  aux.loss = 0.37f;
  aux.valid = 3;
  CeHeadsResult h;
  cross_entropy_heads(ctx, &dev, &aux, 0.4f, 4, 255, &h);
  CHECK(h.loss == dev.loss + 0.4f * 0.37f);
  CHECK(h.main == dev.loss);
  CHECK(h.aux == 0.37f);
  CHECK(h.valid == dev.valid);
  CHECK_NOTHROW(h.check());
  cross_entropy_heads(ctx, &dev, nullptr, 0.4f, 4, 255, &h);
  CHECK(h.loss == dev.loss);
  CHECK(h.aux == 0.f);

  // A bad label: the CPU variants throw at once; the record the CUDA kernels write makes
  // check() throw the very same error (message, file and line).
  lv[7] = 9, lv[12] = -2;
  const Labels bad = Labels::from_host(ls, lv, Device::CPU);
  const std::string want = error_of([&] { cross_entropy_forward(ctx, logits, bad); });
  CHECK(want.find("label 9 at pixel 7 is outside [0, 4) and is not the ignore index 255") != std::string::npos);
  CHECK(error_of([&] { cross_entropy_forward(ctx, logits, bad, &dev); }) == want);
  Labels kept(ls, Device::CPU);
  CHECK(error_of([&] { ohem_select(ctx, logits, bad, 0.7f, 5, kept); }) == want);
  CHECK(error_of([&] { ohem_select_deferred(ctx, logits, bad, 0.7f, 5, kept); }) == want);
  CeResult rec;
  rec.bad_pixel = 7;
  rec.bad_label = 9;
  CHECK(error_of([&] { rec.check(4, 255); }) == want);
  cross_entropy_heads(ctx, &host, &rec, 0.4f, 4, 255, &h);  // the aux term's record, main clean
  CHECK(error_of([&] { h.check(); }) == want);
  cross_entropy_heads(ctx, &rec, nullptr, 0.4f, 4, 255, &h);
  CHECK(error_of([&] { h.check(); }) == want);
}
