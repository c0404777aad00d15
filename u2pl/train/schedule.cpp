// Schedules and CutMix boxes (u2pl/train/schedule.h).
#include "u2pl/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace u2pl {

double poly_lr(double base, int64_t it, int64_t max_it, double power) {
  U2PL_CHECK(max_it > 0 && it >= 0 && it <= max_it, "poly lr: iteration " << it << " of " << max_it);
  return base * std::pow(1.0 - double(it) / double(max_it), power);
}

float ema_decay(int64_t k, float cap) {
  U2PL_CHECK(k >= 0, "ema: negative iteration count " << k);
  return std::min(1.0f - 1.0f / float(k + 1), cap);
}

double alpha_t(double alpha0, int epoch, int epochs) {
  U2PL_CHECK(epochs > 0 && epoch >= 0, "alpha_t: epoch " << epoch << " of " << epochs);
  return alpha0 * (1.0 - double(epoch) / double(epochs));
}

int64_t np_randint(Rng& rng, double low, double high) {
  const int64_t lo = static_cast<int64_t>(low), hi = static_cast<int64_t>(high);  // truncation, as numpy
  U2PL_CHECK(hi > lo, "randint: empty range [" << lo << ", " << hi << ")");
  return lo + static_cast<int64_t>(rng.below(static_cast<uint32_t>(hi - lo)));
}

Box cutmix_box(Rng& rng, int H, int W) {
  U2PL_CHECK(H >= 2 && W >= 3, "cutmix: image " << H << "x" << W << " is too small for a box");
  const double area = double(H) * W / 2.0;
  const int64_t w = np_randint(rng, W / 2.0 + 1, W);
  const int64_t h = static_cast<int64_t>(std::nearbyint(area / double(w)));  // half to even (default rounding)
  const int64_t x0 = np_randint(rng, 0, double(W - w + 1));
  const int64_t y0 = np_randint(rng, 0, double(H) - double(h) + 1);
  return {int(x0), int(y0), int(w), int(h)};  // h < H since w > W/2, so the box fits
}

std::vector<Box> cutmix_boxes(Rng& rng, int batch, int H, int W) {
  std::vector<Box> b;
  for (int i = 0; i < batch; ++i) b.push_back(cutmix_box(rng, H, W));
  return b;
}

}  // namespace u2pl
