// Training augmentation and validation pad/crop (data/augment.h). The output is computed per
// crop pixel straight from the source (resize, flip, pad and crop composed as one coordinate map),
// equal to materialising each step as the public code does. Covered by tests/test_augment.cpp.
#include "data/augment.h"

#include <algorithm>
#include <cmath>

#include "engine/math.h"
#include "engine/rng.h"

namespace u2pl {
namespace {

// Where one output axis of the crop reads the source: pad or not, bilinear taps, nearest tap.
struct AxisMap {
  std::vector<uint8_t> inside;  // (out) 0: padded cell
  std::vector<int> i0, i1;      // (out) bilinear source taps
  std::vector<float> w0, w1;    // (out) their weights
  std::vector<int> nearest;     // (out) nearest source index (labels)
};

// One axis of: resize src → size, flip (optional), pad `before` cells, crop [off, off + out).
// Bilinear taps follow PyTorch's align_corners=False rule in float32: s = in / out,
// x = max(s·(dst + 0.5) − 0.5, 0), i0 = min(floor(x), in − 1), λ = clamp(x − i0, 0, 1),
// i1 = i0 + (i0 < in − 1), weights (1 − λ, λ).
AxisMap map_axis(int src, int size, bool flip, int before, int off, int out) {
  AxisMap m;
  m.inside.assign(out, 0);
  m.i0.assign(out, 0);
  m.i1.assign(out, 0);
  m.w0.assign(out, 0.f);
  m.w1.assign(out, 0.f);
  m.nearest.assign(out, 0);
  const float s = static_cast<float>(src) / static_cast<float>(size);
  for (int o = 0; o < out; ++o) {
    const int q = o + off - before;  // coordinate in the flipped, resized image
    if (q < 0 || q >= size) continue;
    const int r = flip ? size - 1 - q : q;  // coordinate in the resized image
    const float x = std::max(s * (static_cast<float>(r) + 0.5f) - 0.5f, 0.f);
    const int i0 = std::min(static_cast<int>(std::floor(x)), src - 1);
    const float lambda = std::min(std::max(x - static_cast<float>(i0), 0.f), 1.f);
    m.inside[o] = 1;
    m.i0[o] = i0;
    m.i1[o] = i0 + (i0 < src - 1 ? 1 : 0);
    m.w0[o] = 1.f - lambda;
    m.w1[o] = lambda;
    m.nearest[o] = static_cast<int>(nearest_src(r, src, size));
  }
  return m;
}

void check_sample(const LoadedSample& s) {
  U2PL_CHECK(s.image.channels == 3 && s.image.width > 0 && s.image.height > 0,
             s.id << ": expected a non-empty RGB image, got " << s.image.width << "x"
                  << s.image.height << "x" << s.image.channels);
  U2PL_CHECK(s.label.empty() || s.label.size() == size_t(s.image.width) * s.image.height,
             s.id << ": label has " << s.label.size() << " pixels, image is " << s.image.width
                  << "x" << s.image.height);
}

// Resizes (bilinear image, nearest label) to (size_h, size_w), flips, pads by (top, left) and
// crops (out_h, out_w) at (off_y, off_x) of the padded image.
void render(const LoadedSample& s, const AugmentSpec& a, int size_h, int size_w, bool flip,
            int top, int left, int off_y, int off_x, int out_h, int out_w, ValSample* out) {
  const int h = s.image.height, w = s.image.width;
  const std::vector<float> src = normalise_rgb(s.image, a.mean, a.std);  // (3, h, w)
  const AxisMap my = map_axis(h, size_h, false, top, off_y, out_h);
  const AxisMap mx = map_axis(w, size_w, flip, left, off_x, out_w);
  out->height = out_h;
  out->width = out_w;
  out->image.assign(size_t(3) * out_h * out_w, 0.f);  // padded cells: 0 after normalisation
  for (int c = 0; c < 3; ++c) {
    const float* plane = src.data() + size_t(c) * h * w;
    float* dst = out->image.data() + size_t(c) * out_h * out_w;
    for (int y = 0; y < out_h; ++y) {
      if (!my.inside[y]) continue;
      const float* r0 = plane + size_t(my.i0[y]) * w;
      const float* r1 = plane + size_t(my.i1[y]) * w;
      for (int x = 0; x < out_w; ++x) {
        if (!mx.inside[x]) continue;
        // PyTorch's order: interpolate along the width in each row, then across the two rows.
        const float t0 = r0[mx.i0[x]] * mx.w0[x] + r0[mx.i1[x]] * mx.w1[x];
        const float t1 = r1[mx.i0[x]] * mx.w0[x] + r1[mx.i1[x]] * mx.w1[x];
        dst[size_t(y) * out_w + x] = t0 * my.w0[y] + t1 * my.w1[y];
      }
    }
  }
  out->label.clear();
  if (s.label.empty()) return;
  out->label.assign(size_t(out_h) * out_w, a.label_pad);
  for (int y = 0; y < out_h; ++y) {
    if (!my.inside[y]) continue;
    for (int x = 0; x < out_w; ++x)
      if (mx.inside[x]) out->label[size_t(y) * out_w + x] = s.label[size_t(my.nearest[y]) * w + mx.nearest[x]];
  }
}

// Uniform integer in [0, n) from draw k (Lemire's multiply-shift, as Rng::below).
int draw_below(uint64_t seed, uint64_t offset, uint64_t k, int n) {
  return static_cast<int>((static_cast<uint64_t>(philox_u32(seed, offset + k, 0)) * uint64_t(n)) >> 32);
}

void check_spec(const AugmentSpec& a) {
  U2PL_CHECK(a.crop_h > 0 && a.crop_w > 0, "augment: crop size must be positive, got "
                                               << a.crop_h << "x" << a.crop_w);
  U2PL_CHECK(a.scale[0] > 0 && a.scale[0] <= a.scale[1],
             "augment: scale range [" << a.scale[0] << ", " << a.scale[1] << "] is not 0 < lo <= hi");
  U2PL_CHECK(a.mode != AugmentSpec::ScaleMode::TwoHalves || (a.scale[0] <= 1 && a.scale[1] >= 1),
             "augment: two-halves scaling needs lo <= 1 <= hi, got [" << a.scale[0] << ", "
                                                                      << a.scale[1] << "]");
}

// Python's int(size · scale) in double precision, as the public RandResize computes it.
int scaled_size(const LoadedSample& s, int size, double scale) {
  const int n = static_cast<int>(size * scale);
  U2PL_CHECK(n > 0, s.id << ": scale " << scale << " shrinks " << s.image.width << "x" << s.image.height
                         << " to nothing");
  return n;
}

// The training sample of draws d on the sample resized to (size_h, size_w): pad, crop, render.
TrainSample render_train(const LoadedSample& s, const AugmentSpec& a, const AugmentDraws& d, int size_h,
                         int size_w) {
  const int pad_h = std::max(a.crop_h - size_h, 0), pad_w = std::max(a.crop_w - size_w, 0);
  U2PL_CHECK(d.off_y >= 0 && d.off_y <= size_h + pad_h - a.crop_h && d.off_x >= 0 &&
                 d.off_x <= size_w + pad_w - a.crop_w,
             s.id << ": crop origin (row " << d.off_y << ", column " << d.off_x << ") outside the padded image of "
                  << size_h + pad_h << " rows and " << size_w + pad_w << " columns");
  TrainSample t;
  t.draws = d;
  render(s, a, size_h, size_w, d.flip, pad_h / 2, pad_w / 2, d.off_y, d.off_x, a.crop_h, a.crop_w, &t);
  return t;
}

}  // namespace

double draw_scale(const AugmentSpec& a, uint64_t seed, uint64_t offset) {
  const double lo = a.scale[0], hi = a.scale[1];
  const double u = philox_uniform(seed, offset + 1, 0);
  if (a.mode == AugmentSpec::ScaleMode::Uniform) return lo + (hi - lo) * u;
  if (philox_uniform(seed, offset, 0) < 0.5f) return lo + (1.0 - lo) * u;
  return 1.0 + (hi - 1.0) * u;
}

TrainSample augment_train(const LoadedSample& s, const AugmentSpec& a, uint64_t seed, uint64_t offset) {
  check_spec(a);
  check_sample(s);
  AugmentDraws d;
  d.scale = draw_scale(a, seed, offset);
  d.flip = a.flip && philox_uniform(seed, offset + 2, 0) < 0.5f;
  const int size_h = scaled_size(s, s.image.height, d.scale), size_w = scaled_size(s, s.image.width, d.scale);
  d.off_y = draw_below(seed, offset, 3, std::max(size_h, a.crop_h) - a.crop_h + 1);
  d.off_x = draw_below(seed, offset, 4, std::max(size_w, a.crop_w) - a.crop_w + 1);
  return render_train(s, a, d, size_h, size_w);
}

TrainSample augment_with(const LoadedSample& s, const AugmentSpec& a, const AugmentDraws& d) {
  check_spec(a);
  check_sample(s);
  return render_train(s, a, d, scaled_size(s, s.image.height, d.scale), scaled_size(s, s.image.width, d.scale));
}

ValSample prepare_val(const LoadedSample& s, const AugmentSpec& a, ValCrop crop) {
  check_sample(s);
  ValSample v;
  const int h = s.image.height, w = s.image.width;
  if (crop == ValCrop::None) {
    v.height = h;
    v.width = w;
    v.image = normalise_rgb(s.image, a.mean, a.std);
    v.label.assign(s.label.begin(), s.label.end());
    return v;
  }
  check_spec(a);
  const int pad_h = std::max(a.crop_h - h, 0), pad_w = std::max(a.crop_w - w, 0);
  const int off_y = (h + pad_h - a.crop_h) / 2, off_x = (w + pad_w - a.crop_w) / 2;
  render(s, a, h, w, false, pad_h / 2, pad_w / 2, off_y, off_x, a.crop_h, a.crop_w, &v);
  return v;
}

}  // namespace u2pl
