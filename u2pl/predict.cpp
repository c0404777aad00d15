// Whole-image prediction (u2pl/predict.h).
#include "u2pl/predict.h"

#include "layers/resize.h"

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
  return p;
}

}  // namespace u2pl
