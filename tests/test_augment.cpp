// Tests of data/augment.h: crop sizes, padding (image 0 after normalisation, label pad per
// preset), label values, PyTorch's half-pixel bilinear and nearest rules, flips, both scale modes,
// validation centre pad/crop, and determinism of the Philox draws.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "data/augment.h"
#include "engine/safetensors.h"

using namespace u2pl;

namespace {

// A w×h sample with distinct pixel values and labels drawn from {0, 3, 7}.
LoadedSample make_sample(int w, int h, bool labeled = true) {
  LoadedSample s;
  s.id = "s";
  s.image = Image{w, h, 3, std::vector<uint8_t>(size_t(w) * h * 3)};
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) s.image.pixels[3 * i + c] = uint8_t((i * 7 + c * 50) % 256);
  if (labeled)
    for (int i = 0; i < w * h; ++i) s.label.push_back(uint8_t((i % w + i / w) % 3 == 0 ? 0 : i % 2 ? 3 : 7));
  return s;
}

// The horizontal mirror of a sample.
LoadedSample mirror(const LoadedSample& s) {
  LoadedSample m = s;
  const int w = s.image.width, h = s.image.height;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c)
        m.image.pixels[3 * (y * w + x) + c] = s.image.pixels[3 * (y * w + w - 1 - x) + c];
      if (!s.label.empty()) m.label[y * w + x] = s.label[y * w + w - 1 - x];
    }
  return m;
}

AugmentSpec spec(int crop_h, int crop_w) {
  AugmentSpec a;
  a.crop_h = crop_h;
  a.crop_w = crop_w;
  return a;
}

// The first offset (in steps of kAugmentCounters) whose flip draw is `want`.
uint64_t offset_with_flip(const AugmentSpec& a, const LoadedSample& s, bool want) {
  for (uint64_t k = 0;; ++k)
    if (augment_train(s, a, 7, k * kAugmentCounters).draws.flip == want) return k * kAugmentCounters;
}

}  // namespace

TEST_CASE("augment: crop size, label values and padding under random scales") {
  const LoadedSample s = make_sample(20, 16);
  for (int pad : {255, 0}) {
    AugmentSpec a = spec(40, 48);  // larger than the image below scale 2: always some padding
    a.label_pad = pad;
    for (uint64_t k = 0; k < 60; ++k) {
      const TrainSample t = augment_train(s, a, 11, k * kAugmentCounters);
      REQUIRE(t.height == 40);
      REQUIRE(t.width == 48);
      REQUIRE(t.image.size() == size_t(3 * 40 * 48));
      REQUIRE(t.label.size() == size_t(40 * 48));
      // The resized image is int(16·s)×int(20·s), padded half before and the rest after.
      const int nh = int(16 * t.draws.scale), nw = int(20 * t.draws.scale);
      const int top = std::max(40 - nh, 0) / 2 - t.draws.off_y, left = std::max(48 - nw, 0) / 2 - t.draws.off_x;
      for (int y = 0; y < 40; ++y)
        for (int x = 0; x < 48; ++x) {
          const bool inside = y >= top && y < top + nh && x >= left && x < left + nw;
          const int32_t l = t.label[y * 48 + x];
          if (inside) {
            CHECK((l == 0 || l == 3 || l == 7));
          } else {
            CHECK(l == pad);
            for (int c = 0; c < 3; ++c) CHECK(t.image[(c * 40 + y) * 48 + x] == 0.f);
          }
        }
    }
  }
}

TEST_CASE("augment: scale 1 without flip crops the normalised source exactly") {
  const LoadedSample s = make_sample(20, 16);
  AugmentSpec a = spec(9, 13);
  a.scale = {1, 1};
  a.flip = false;
  const std::vector<float> src = normalise_rgb(s.image, a.mean, a.std);
  std::set<int> rows, cols;
  for (uint64_t k = 0; k < 40; ++k) {
    const TrainSample t = augment_train(s, a, 3, k * kAugmentCounters);
    const int oy = t.draws.off_y, ox = t.draws.off_x;
    REQUIRE((oy >= 0 && oy <= 16 - 9 && ox >= 0 && ox <= 20 - 13));
    rows.insert(oy);
    cols.insert(ox);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 9; ++y)
        for (int x = 0; x < 13; ++x) {
          CHECK(t.image[(c * 9 + y) * 13 + x] == src[(c * 16 + y + oy) * 20 + x + ox]);
          if (c == 0) CHECK(t.label[y * 13 + x] == s.label[(y + oy) * 20 + x + ox]);
        }
  }
  CHECK(rows.size() >= 6);  // crop offsets spread over their 8 and 8 possible values
  CHECK(cols.size() >= 6);
}

TEST_CASE("augment: padding is split half before, the rest after (scale 1)") {
  const LoadedSample s = make_sample(10, 6);
  AugmentSpec a = spec(9, 15);  // pad 3 rows (1 above, 2 below) and 5 columns (2 left, 3 right)
  a.scale = {1, 1};
  a.flip = false;
  a.label_pad = 0;  // official
  const std::vector<float> src = normalise_rgb(s.image, a.mean, a.std);
  const TrainSample t = augment_train(s, a, 1, 0);
  CHECK(t.draws.off_y == 0);
  CHECK(t.draws.off_x == 0);
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 15; ++x) {
      const bool inside = y >= 1 && y < 7 && x >= 2 && x < 12;
      CHECK(t.label[y * 15 + x] == (inside ? s.label[(y - 1) * 10 + x - 2] : 0));
      for (int c = 0; c < 3; ++c)
        CHECK(t.image[(c * 9 + y) * 15 + x] == (inside ? src[(c * 6 + y - 1) * 10 + x - 2] : 0.f));
    }
}

TEST_CASE("augment: bilinear follows the half-pixel rule, labels PyTorch's nearest") {
  // A 4×1 ramp 0, 10, 20, 30 resized ×2 and ×0.5: F.interpolate(align_corners=False) gives
  // 0, 2.5, 7.5, ..., 27.5, 30 and, for an 8-ramp halved, 5, 25, 45, 65.
  LoadedSample up;
  up.image = Image{4, 1, 3, {}};
  for (int x = 0; x < 4; ++x)
    for (int c = 0; c < 3; ++c) up.image.pixels.push_back(uint8_t(10 * x));
  up.label = {0, 1, 2, 3};
  AugmentSpec a = spec(2, 8);
  a.scale = {2, 2};
  a.flip = false;
  a.mean = {0, 0, 0};
  a.std = {1, 1, 1};
  const TrainSample t = augment_train(up, a, 0, 0);
  const float want[8] = {0, 2.5f, 7.5f, 12.5f, 17.5f, 22.5f, 27.5f, 30};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 8; ++x) {
      CHECK(t.image[y * 8 + x] == doctest::Approx(want[x]).epsilon(1e-6));
      CHECK(t.label[y * 8 + x] == x / 2);
    }
  LoadedSample down;
  down.image = Image{8, 2, 3, {}};
  for (int i = 0; i < 16; ++i)
    for (int c = 0; c < 3; ++c) down.image.pixels.push_back(uint8_t(10 * (i % 8)));
  a = spec(1, 4);
  a.scale = {0.5f, 0.5f};
  a.flip = false;
  a.mean = {0, 0, 0};
  a.std = {1, 1, 1};
  const TrainSample d = augment_train(down, a, 0, 0);
  const float half[4] = {5, 25, 45, 65};
  for (int x = 0; x < 4; ++x) CHECK(d.image[x] == doctest::Approx(half[x]).epsilon(1e-6));
}

TEST_CASE("augment: a flipped draw equals the unflipped draw of the mirrored sample") {
  const LoadedSample s = make_sample(20, 16), m = mirror(s);
  AugmentSpec a = spec(12, 14);
  AugmentSpec no_flip = a;
  no_flip.flip = false;
  SUBCASE("scale 1: exact, labels too") {
    a.scale = no_flip.scale = {1, 1};
    const uint64_t o = offset_with_flip(a, s, true);
    const TrainSample f = augment_train(s, a, 7, o), g = augment_train(m, no_flip, 7, o);
    CHECK(f.image == g.image);
    CHECK(f.label == g.label);
    const uint64_t p = offset_with_flip(a, s, false);
    CHECK(augment_train(s, a, 7, p).image == augment_train(s, no_flip, 7, p).image);
  }
  SUBCASE("random scale: the image up to float rounding") {
    const uint64_t o = offset_with_flip(a, s, true);
    const TrainSample f = augment_train(s, a, 7, o), g = augment_train(m, no_flip, 7, o);
    REQUIRE(f.image.size() == g.image.size());
    for (size_t i = 0; i < f.image.size(); ++i) CHECK(f.image[i] == doctest::Approx(g.image[i]).epsilon(1e-5));
  }
  int flips = 0;
  for (uint64_t k = 0; k < 400; ++k) flips += augment_train(s, a, 5, k * kAugmentCounters).draws.flip;
  CHECK(flips > 150);
  CHECK(flips < 250);
}

TEST_CASE("augment: scale modes stay in range and hit both halves") {
  AugmentSpec a;
  int below_one = 0;
  double lo = 10, hi = 0;
  for (uint64_t k = 0; k < 3000; ++k) {
    const double s = draw_scale(a, 9, k * kAugmentCounters);
    lo = std::min(lo, s), hi = std::max(hi, s);
    below_one += s < 1;
  }
  CHECK(lo >= 0.5);
  CHECK(hi <= 2.0);
  CHECK(lo < 0.52);
  CHECK(hi > 1.98);
  CHECK(below_one == doctest::Approx(1000).epsilon(0.12));  // uniform: one third below 1
  a.mode = AugmentSpec::ScaleMode::TwoHalves;
  int low_half = 0;
  double low_sum = 0, high_sum = 0;
  for (uint64_t k = 0; k < 3000; ++k) {
    const double s = draw_scale(a, 9, k * kAugmentCounters);
    CHECK(s >= 0.5);
    CHECK(s < 2.0);
    if (s < 1) ++low_half, low_sum += s;
    else high_sum += s;
  }
  CHECK(low_half == doctest::Approx(1500).epsilon(0.08));  // each half with probability 1/2
  CHECK(low_sum / low_half == doctest::Approx(0.75).epsilon(0.03));
  CHECK(high_sum / (3000 - low_half) == doctest::Approx(1.5).epsilon(0.03));
  const LoadedSample s = make_sample(20, 16);
  AugmentSpec b = spec(8, 8);
  b.mode = AugmentSpec::ScaleMode::TwoHalves;
  CHECK(augment_train(s, b, 9, 35).draws.scale == draw_scale(b, 9, 35));
}

TEST_CASE("augment: draws are a function of (seed, offset); unlabeled samples share them") {
  const LoadedSample s = make_sample(20, 16), u = make_sample(20, 16, false);
  const AugmentSpec a = spec(12, 12);
  const TrainSample t1 = augment_train(s, a, 42, 100), t2 = augment_train(s, a, 42, 100);
  CHECK(t1.image == t2.image);
  CHECK(t1.label == t2.label);
  CHECK(augment_train(s, a, 42, 100 + kAugmentCounters).image != t1.image);
  CHECK(augment_train(s, a, 43, 100).image != t1.image);
  const TrainSample tu = augment_train(u, a, 42, 100);
  CHECK(tu.label.empty());
  CHECK(tu.image == t1.image);
}

TEST_CASE("augment: validation centre pad/crop and the uncropped mode") {
  const LoadedSample s = make_sample(10, 5);
  for (int pad : {255, 0}) {
    AugmentSpec a = spec(8, 8);  // rows: pad 3 (1 above, 2 below); columns: crop from 1
    a.label_pad = pad;
    const std::vector<float> src = normalise_rgb(s.image, a.mean, a.std);
    const ValSample v = prepare_val(s, a, ValCrop::Center);
    REQUIRE(v.height == 8);
    REQUIRE(v.width == 8);
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) {
        const bool inside = y >= 1 && y < 6;
        CHECK(v.label[y * 8 + x] == (inside ? s.label[(y - 1) * 10 + x + 1] : pad));
        for (int c = 0; c < 3; ++c)
          CHECK(v.image[(c * 8 + y) * 8 + x] == (inside ? src[(c * 5 + y - 1) * 10 + x + 1] : 0.f));
      }
    const ValSample n = prepare_val(s, a, ValCrop::None);
    CHECK(n.height == 5);
    CHECK(n.width == 10);
    CHECK(n.image == src);
    CHECK(n.label == std::vector<int32_t>(s.label.begin(), s.label.end()));
  }
  AugmentSpec bad = spec(0, 8);
  CHECK_THROWS_WITH_AS(prepare_val(s, bad, ValCrop::Center), doctest::Contains("crop size"), Error);
}

// The public code's own transforms (tools/pytorch/gen_official_fixtures.py: its ToTensor,
// Normalize, RandResize, RandomHorizontalFlip and Crop, with their random outcomes chosen) on six
// samples: padded and cropped, both scale halves, flipped or not. Same draws, same images (float32
// rounding of the normalise-then-interpolate order) and the same labels, padding 0 included.
TEST_CASE("augment: the public transforms' outputs for the same draws (official)") {
  const SafeTensorsFile f(std::string(U2PL_FIXTURE_DIR) + "/official_augment.safetensors");
  const int cases = std::stoi(f.meta("cases"));
  REQUIRE(cases >= 6);
  for (int k = 0; k < cases; ++k) {
    CAPTURE(k);
    const std::string p = "case." + std::to_string(k) + ".";
    const Shape in = f.shape(p + "image");  // (h, w, 3)
    LoadedSample s;
    s.id = "case" + std::to_string(k);
    s.image = Image{int(in[1]), int(in[0]), 3, f.bytes(p + "image")};
    s.label = f.bytes(p + "label");
    AugmentSpec a;
    a.mode = AugmentSpec::ScaleMode::TwoHalves;
    a.crop_h = std::stoi(f.meta(p + "crop_h"));
    a.crop_w = std::stoi(f.meta(p + "crop_w"));
    a.label_pad = 0;  // the public Crop pads labels with 0 whatever its ignore_label
    AugmentDraws d;
    d.scale = std::stod(f.meta(p + "scale"));
    d.flip = f.meta(p + "flip") == "1";
    d.off_y = std::stoi(f.meta(p + "off_y"));
    d.off_x = std::stoi(f.meta(p + "off_x"));
    const TrainSample t = augment_with(s, a, d);
    REQUIRE(t.height == a.crop_h);
    REQUIRE(t.width == a.crop_w);
    const std::vector<float> want = f.floats(p + "out_image");
    REQUIRE(t.image.size() == want.size());
    double worst = 0;  // relative to max(1, |want|): normalised values lie within about ±2.7
    for (size_t i = 0; i < want.size(); ++i)
      worst = std::max(worst, std::fabs(double(t.image[i]) - want[i]) / std::max(1.0, std::fabs(double(want[i]))));
    CHECK_MESSAGE(worst < 1e-5, "the image deviates by up to " << worst);
    CHECK(t.label == f.ints(p + "out_label"));
  }
  LoadedSample s = make_sample(10, 5);
  AugmentSpec a = spec(8, 8);
  AugmentDraws d;
  d.off_y = 1;  // the padded image has 8 rows, so the origin's row can only be 0
  CHECK_THROWS_WITH_AS(augment_with(s, a, d), doctest::Contains("crop origin (row 1, column 0) outside the padded image of 8 rows and 10 columns"), Error);
}
