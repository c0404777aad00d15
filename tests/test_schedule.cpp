// The pieces of a U2PL iteration around the losses: EMA update and decay schedule, poly learning
// rate, α_t, CutMix boxes (numpy semantics, size and area bounds) and box mixing of images and
// labels (labels mixed like pixels), on the CPU; the `cuda` cases compare the CUDA kernels.
#include <doctest/doctest.h>

#include <cmath>

#include "layers/elementwise.h"
#include "tests/gradcheck.h"
#include "u2pl/train/schedule.h"

using namespace u2pl;

TEST_CASE("EMA teacher update and decay schedule") {
  Context ctx(Device::CPU);
  Tensor t = Tensor::from_host(Shape{3}, {1.f, 2.f, 3.f}, Device::CPU);
  Tensor s = Tensor::from_host(Shape{3}, {3.f, 2.f, 1.f}, Device::CPU);
  ema_update(ctx, t, s, 0.75f);
  CHECK(t.to_host() == std::vector<float>{1.5f, 2.f, 2.5f});
  ema_update(ctx, t, s, 0.f);  // k = 0: the teacher becomes the student
  CHECK(t.to_host() == s.to_host());
  CHECK(ema_decay(0, 0.99f) == 0.f);
  CHECK(ema_decay(1, 0.99f) == doctest::Approx(0.5f));
  CHECK(ema_decay(9, 0.99f) == doctest::Approx(0.9f));
  CHECK(ema_decay(1000, 0.99f) == 0.99f);
  Tensor short_t(Shape{2}, Device::CPU);
  CHECK_THROWS_AS(ema_update(ctx, short_t, s, 0.5f), Error);
  CHECK_THROWS_AS(ema_update(ctx, t, s, 1.5f), Error);
}

TEST_CASE("poly learning rate and the dynamic partition") {
  CHECK(poly_lr(0.01, 0, 100, 0.9) == doctest::Approx(0.01));
  CHECK(poly_lr(0.01, 50, 100, 0.9) == doctest::Approx(0.01 * std::pow(0.5, 0.9)));
  CHECK(poly_lr(0.01, 100, 100, 0.9) == 0.0);
  CHECK_THROWS_AS(poly_lr(0.01, 101, 100, 0.9), Error);
  CHECK(alpha_t(20, 0, 80) == 20.0);
  CHECK(alpha_t(20, 40, 80) == 10.0);
  CHECK(alpha_t(20, 79, 80) == doctest::Approx(0.25));
}

TEST_CASE("numpy randint semantics and CutMix box bounds") {
  Rng rng(3);
  for (int i = 0; i < 2000; ++i) {
    const int64_t v = np_randint(rng, 2.7, 5.9);  // numpy truncates both bounds: [2, 5)
    REQUIRE(v >= 2);
    REQUIRE(v < 5);
  }
  CHECK_THROWS_AS(np_randint(rng, 3, 3), Error);
  const int H = 65, W = 65;
  bool saw_min = false, saw_max = false;
  for (int i = 0; i < 4000; ++i) {
    const Box b = cutmix_box(rng, H, W);
    REQUIRE(b.w >= W / 2 + 1);  // randint(W/2 + 1, W): [33, 65)
    REQUIRE(b.w < W);
    REQUIRE(b.h == static_cast<int>(std::nearbyint(H * W / 2.0 / b.w)));
    REQUIRE(b.x0 >= 0);
    REQUIRE(b.x0 + b.w <= W);
    REQUIRE(b.y0 >= 0);
    REQUIRE(b.y0 + b.h <= H);
    const double area = double(b.w) * b.h / (H * W);  // about half the image
    REQUIRE(area > 0.45);
    REQUIRE(area < 0.55);
    saw_min |= b.w == 33;
    saw_max |= b.w == 64;
  }
  CHECK(saw_min);
  CHECK(saw_max);
  Rng a(11), b(11);
  const auto ba = cutmix_boxes(a, 4, 33, 47), bb = cutmix_boxes(b, 4, 33, 47);
  for (int i = 0; i < 4; ++i) CHECK((ba[i].x0 == bb[i].x0 && ba[i].w == bb[i].w && ba[i].y0 == bb[i].y0));
}

TEST_CASE("box mix takes the next image inside the box, labels like pixels") {
  Context ctx(Device::CPU);
  const int B = 3, H = 4, W = 5;
  std::vector<float> img(B * 2 * H * W);
  std::vector<int32_t> lab(B * H * W);
  for (size_t i = 0; i < img.size(); ++i) img[i] = float(i / (H * W));  // value = image·2 + channel
  for (size_t i = 0; i < lab.size(); ++i) lab[i] = int32_t(i / (H * W));
  const Tensor x = Tensor::from_host(Shape{B, 2, H, W}, img, Device::CPU);
  const Labels l = Labels::from_host(Shape{B, H, W}, lab, Device::CPU);
  Tensor y(x.shape(), Device::CPU);
  Labels m(l.shape(), Device::CPU);
  const std::vector<Box> boxes{{1, 1, 3, 2}, {0, 0, 5, 4}, {0, 0, 0, 0}};
  box_mix(ctx, boxes, x, y);
  box_mix(ctx, boxes, l, m);
  const auto yv = y.to_host();
  const auto mv = m.to_host();
  auto at = [&](int b, int c, int yy, int xx) { return yv[((b * 2 + c) * H + yy) * W + xx]; };
  CHECK(at(0, 1, 0, 0) == 1.f);  // outside: own image 0, channel 1
  CHECK(at(0, 1, 1, 2) == 3.f);  // inside: image 1, channel 1
  CHECK(at(1, 0, 3, 4) == 4.f);  // whole box: image 2
  CHECK(at(2, 0, 2, 2) == 4.f);  // empty box: itself
  for (int b = 0; b < B; ++b)
    for (int yy = 0; yy < H; ++yy)
      for (int xx = 0; xx < W; ++xx) REQUIRE(float(mv[(b * H + yy) * W + xx]) * 2 == at(b, 0, yy, xx));
  const std::vector<Box> bad{{3, 0, 3, 1}, {0, 0, 1, 1}, {0, 0, 1, 1}};
  CHECK_THROWS_WITH_AS(box_mix(ctx, bad, x, y), doctest::Contains("outside"), Error);
  CHECK_THROWS_AS(box_mix(ctx, boxes, x, x), Error);
}

TEST_SUITE("cuda") {
  TEST_CASE("EMA update and box mix: CUDA matches CPU") {
    Context cpu(Device::CPU), gpu(Device::CUDA, true);
    const auto tv = test::random_floats(1000, 1), sv = test::random_floats(1000, 2);
    Tensor tc = Tensor::from_host(Shape{1000}, tv, Device::CPU), sc = Tensor::from_host(Shape{1000}, sv, Device::CPU);
    Tensor tg = Tensor::from_host(Shape{1000}, tv, Device::CUDA), sg = Tensor::from_host(Shape{1000}, sv, Device::CUDA);
    ema_update(cpu, tc, sc, 0.99f);
    ema_update(gpu, tg, sg, 0.99f);
    gpu.synchronize();
    CHECK(tg.to_host() == tc.to_host());
    Rng rng(4);
    const auto boxes = cutmix_boxes(rng, 3, 17, 19);
    const auto xv = test::random_floats(3 * 3 * 17 * 19, 3);
    const Tensor xc = Tensor::from_host(Shape{3, 3, 17, 19}, xv, Device::CPU);
    const Tensor xg = Tensor::from_host(Shape{3, 3, 17, 19}, xv, Device::CUDA);
    Tensor yc(xc.shape(), Device::CPU), yg(xc.shape(), Device::CUDA);
    box_mix(cpu, boxes, xc, yc);
    box_mix(gpu, boxes, xg, yg);
    gpu.synchronize();
    CHECK(yg.to_host() == yc.to_host());
  }
}
