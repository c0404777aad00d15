// Whole-image prediction (u2pl/eval/predict.h).
#include "u2pl/eval/predict.h"

#include <algorithm>
#include <cmath>

#include "layers/resize.h"
#include "u2pl/losses/unsup_loss.h"

namespace u2pl {

Tensor image_tensor(const Image& rgb, const NetConfig& cfg, Device dev) {
  return Tensor::from_host(Shape{1, 3, rgb.height, rgb.width}, normalise_rgb(rgb, cfg.mean, cfg.std), dev);
}

std::vector<int32_t> argmax_channels(const std::vector<float>& logits, Shape s) {
  U2PL_CHECK(s.ndim == 4 && s.n() == 1 && static_cast<int64_t>(logits.size()) == s.numel(),
             "argmax: expected (1, C, H, W) logits, got " << s.str());
  const int64_t C = s.c(), HW = s.h() * s.w();
  std::vector<int32_t> out(static_cast<size_t>(HW), 0);
  for (int64_t i = 0; i < HW; ++i) {
    float best = logits[i];
    for (int64_t c = 1; c < C; ++c)
      if (logits[c * HW + i] > best) best = logits[c * HW + i], out[i] = static_cast<int32_t>(c);
  }
  return out;
}

Prediction predict_whole(Context& ctx, U2plNet& net, const Tensor& input) {
  Prediction p;
  p.height = static_cast<int>(input.shape().h());
  p.width = static_cast<int>(input.shape().w());
  p.raw = net.forward(ctx, input, NetMode::Eval, nullptr);
  Tensor up(Shape{1, p.raw.pred.shape.c(), p.height, p.width}, ctx.device());
  bilinear_forward(ctx, p.raw.pred, up);
  p.index = argmax_channels(up.to_host(), up.shape());
  Tensor h(Shape{1, p.height, p.width}, ctx.device());
  entropy_forward(ctx, up, h);
  p.entropy = h.to_host();
  return p;
}

Image entropy_image(const Prediction& p, int num_classes) {
  const float top = std::log(float(num_classes));
  Image img{p.width, p.height, 3, std::vector<uint8_t>(p.entropy.size() * 3)};
  for (size_t i = 0; i < p.entropy.size(); ++i) {
    const float t = std::clamp(p.entropy[i] / top, 0.f, 1.f);  // a blue → red → yellow ramp
    img.pixels[3 * i] = uint8_t(255 * std::min(1.f, 2 * t));
    img.pixels[3 * i + 1] = uint8_t(255 * std::max(0.f, 2 * t - 1));
    img.pixels[3 * i + 2] = uint8_t(255 * std::max(0.f, 0.5f - t));
  }
  return img;
}

Image partition_image(const Prediction& p, int num_classes, double alpha, double* gamma) {
  U2PL_CHECK(alpha > 0 && alpha < 100, "partition: alpha must be a percentage in (0, 100), got " << alpha);
  const double g = percentile_linear(p.entropy, 100 - alpha);
  if (gamma) *gamma = g;
  Image img = colourise(p.index, p.width, p.height, num_classes);
  for (size_t i = 0; i < p.entropy.size(); ++i)
    if (p.entropy[i] >= g) std::fill(img.pixels.begin() + 3 * i, img.pixels.begin() + 3 * i + 3, uint8_t(255));
  return img;
}

}  // namespace u2pl
