// Evaluation-time inference (u2pl/eval/evaluate.h). Window placement and padding follow the public
// eval.py (scale_crop_process) and the public centre Crop (u2pl/dataset/augmentation.py); merging
// and the test-time augmentations run on host maps, so every device shares them.
#include "u2pl/eval/evaluate.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "data/augment.h"
#include "layers/resize.h"
#include "u2pl/eval/predict.h"

namespace u2pl {

EvalMode parse_eval_mode(const std::string& s) {
  if (s == "center") return EvalMode::Center;
  if (s == "sliding") return EvalMode::Sliding;
  if (s == "whole") return EvalMode::Whole;
  U2PL_FAIL("unknown evaluation mode '" << s << "' (expected center, sliding or whole)");
}

const char* eval_mode_name(EvalMode m) {
  switch (m) {
    case EvalMode::Center: return "center";
    case EvalMode::Sliding: return "sliding";
    case EvalMode::Whole: return "whole";
  }
  return "?";
}

namespace {

// Memory reused from image to image: grown to the largest request, viewed at each one's shape.
class Reused {
 public:
  TensorView view(Shape s, Device dev) {
    const size_t bytes = static_cast<size_t>(s.numel()) * sizeof(float);
    if (buf_.bytes() < bytes || buf_.device() != dev) buf_ = Buffer(dev, bytes + bytes / 4);
    return TensorView(buf_.floats(), s, dev);
  }

 private:
  Buffer buf_;
};

}  // namespace

LogitsFn network_logits(Context& ctx, U2plNet& net) {
  // The input and the upsampled logits live in device memory kept across calls, so evaluating a
  // split allocates only when an image is larger than every one before it (the network's plans
  // reuse their memory the same way).
  auto input_mem = std::make_shared<Reused>(), up_mem = std::make_shared<Reused>();
  return [&ctx, &net, input_mem, up_mem](const Planes& image) {
    U2PL_CHECK(image.c == 3, "network input: expected 3 planes, got " << image.c);
    const TensorView input = input_mem->view(Shape{1, 3, image.h, image.w}, ctx.device());
    copy_bytes(input.data, input.device, image.v.data(), Device::CPU, image.v.size() * sizeof(float));
    const NetOutputs out = net.forward(ctx, input, NetMode::Eval, nullptr);
    const int C = static_cast<int>(out.pred.shape.c());
    const TensorView up = up_mem->view(Shape{1, C, image.h, image.w}, ctx.device());
    bilinear_forward(ctx, out.pred, up);
    Planes logits(C, image.h, image.w);
    logits.v = to_host(up);
    return logits;
  };
}

int center_offset(int size, int crop) {
  U2PL_CHECK(size > 0 && crop > 0, "centre crop of " << size << " to " << crop);
  return size >= crop ? (size - crop) / 2 : -((crop - size) / 2);
}

int default_stride(int window) { return (2 * window + 2) / 3; }

std::vector<int> window_starts(int size, int window, int stride) {
  U2PL_CHECK(window > 0 && stride > 0 && size >= window,
             "sliding windows: size " << size << ", window " << window << ", stride " << stride);
  const int n = (size - window + stride - 1) / stride + 1;
  std::vector<int> starts(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) starts[i] = std::min(i * stride + window, size) - window;
  return starts;
}

Planes crop_planes(const Planes& x, int y0, int x0, int h, int w, float pad) {
  Planes out(x.c, h, w);
  for (int p = 0; p < x.c; ++p)
    for (int y = 0; y < h; ++y)
      for (int xx = 0; xx < w; ++xx) {
        const int sy = y0 + y, sx = x0 + xx;
        out.at(p, y, xx) = (sy >= 0 && sy < x.h && sx >= 0 && sx < x.w) ? x.at(p, sy, sx) : pad;
      }
  return out;
}

Planes flip_planes(const Planes& x) {
  Planes out(x.c, x.h, x.w);
  for (int p = 0; p < x.c; ++p)
    for (int y = 0; y < x.h; ++y)
      for (int xx = 0; xx < x.w; ++xx) out.at(p, y, xx) = x.at(p, y, x.w - 1 - xx);
  return out;
}

Planes resize_planes(const Planes& x, int h, int w) {
  if (h == x.h && w == x.w) return x;
  Planes out(x.c, h, w);
  bilinear_forward_cpu<float>(Shape{1, x.c, x.h, x.w}, Shape{1, x.c, h, w}, x.v.data(), out.v.data());
  return out;
}

Planes sliding_logits(const LogitsFn& f, const Planes& image, int wh, int ww, int sh, int sw) {
  // The image padded to (NH, NW), `top`/`left` rows/columns before it, as the public code pads.
  U2PL_CHECK(sh <= wh && sw <= ww, "sliding windows: stride " << sw << "x" << sh << " exceeds the window "
                                                            << ww << "x" << wh << " (pixels would be skipped)");
  const int NH = std::max(image.h, wh), NW = std::max(image.w, ww);
  const int top = (NH - image.h) / 2, left = (NW - image.w) / 2;
  Planes sum;
  std::vector<float> count(static_cast<size_t>(image.h) * image.w, 0.0f);  // (H, W) windows per pixel
  for (int sy : window_starts(NH, wh, sh))
    for (int sx : window_starts(NW, ww, sw)) {
      const Planes logits = f(crop_planes(image, sy - top, sx - left, wh, ww, 0.0f));
      U2PL_CHECK(logits.h == wh && logits.w == ww, "window logits " << logits.w << "x" << logits.h
                                                                    << " for a " << ww << "x" << wh << " window");
      if (sum.c == 0) sum = Planes(logits.c, image.h, image.w);
      const int y_lo = std::max(0, sy - top), y_hi = std::min(image.h, sy - top + wh);
      const int x_lo = std::max(0, sx - left), x_hi = std::min(image.w, sx - left + ww);
      for (int p = 0; p < sum.c; ++p)
        for (int y = y_lo; y < y_hi; ++y)
          for (int x = x_lo; x < x_hi; ++x) sum.at(p, y, x) += logits.at(p, y - sy + top, x - sx + left);
      for (int y = y_lo; y < y_hi; ++y)
        for (int x = x_lo; x < x_hi; ++x) count[static_cast<size_t>(y) * image.w + x] += 1.0f;
    }
  const size_t hw = count.size();
  for (size_t i = 0; i < sum.v.size(); ++i) sum.v[i] /= count[i % hw];
  return sum;
}

Planes infer_logits(const LogitsFn& f, const Planes& image, const EvalOptions& opt) {
  U2PL_CHECK(!opt.scales.empty(), "evaluation needs at least one scale");
  const int sh = opt.stride_h > 0 ? opt.stride_h : default_stride(opt.crop_h);
  const int sw = opt.stride_w > 0 ? opt.stride_w : default_stride(opt.crop_w);
  auto run = [&](const Planes& x) {
    return opt.mode == EvalMode::Sliding ? sliding_logits(f, x, opt.crop_h, opt.crop_w, sh, sw) : f(x);
  };
  Planes sum;
  int runs = 0;
  auto add = [&](const Planes& logits) {
    if (sum.c == 0) sum = Planes(logits.c, image.h, image.w);
    for (size_t i = 0; i < sum.v.size(); ++i) sum.v[i] += logits.v[i];
    ++runs;
  };
  for (float s : opt.scales) {
    U2PL_CHECK(s > 0 && std::isfinite(s), "evaluation scale " << s << " is not a positive number");
    const int h = std::max(1, static_cast<int>(std::lround(s * image.h)));
    const int w = std::max(1, static_cast<int>(std::lround(s * image.w)));
    const Planes scaled = resize_planes(image, h, w);
    add(resize_planes(run(scaled), image.h, image.w));
    if (opt.flip) add(resize_planes(flip_planes(run(flip_planes(scaled))), image.h, image.w));
  }
  for (float& v : sum.v) v /= static_cast<float>(runs);
  return sum;
}

ScoredImage evaluate_image(const LogitsFn& f, const NetConfig& cfg, const LoadedSample& s, const EvalOptions& opt) {
  AugmentSpec a;  // the validation loader's centre pad/crop (data/augment.h), our geometry's oracle
  a.crop_h = opt.crop_h;
  a.crop_w = opt.crop_w;
  a.label_pad = opt.label_pad;
  a.mean = cfg.mean;
  a.std = cfg.std;
  const bool center = opt.mode == EvalMode::Center;
  const ValSample v = prepare_val(s, a, center ? ValCrop::Center : ValCrop::None);
  ScoredImage r;
  r.height = v.height;
  r.width = v.width;
  if (center) {
    r.off_y = center_offset(s.image.height, opt.crop_h);
    r.off_x = center_offset(s.image.width, opt.crop_w);
  }
  r.label.assign(v.label.begin(), v.label.end());
  Planes image(3, v.height, v.width);
  image.v = v.image;
  const Planes logits = infer_logits(f, image, opt);
  r.pred = argmax_channels(logits.v, Shape{1, logits.c, logits.h, logits.w});
  return r;
}

std::vector<int32_t> prediction_on_image(const ScoredImage& r, int width, int height) {
  U2PL_CHECK(r.off_x <= 0 && r.off_y <= 0 && r.off_x + r.width >= width && r.off_y + r.height >= height,
             "the scored " << r.width << "x" << r.height << " region does not cover the " << width << "x"
                           << height << " image (centre crop smaller than the image: use --mode sliding or whole)");
  std::vector<int32_t> out(static_cast<size_t>(width) * height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      out[static_cast<size_t>(y) * width + x] = r.pred[static_cast<size_t>(y - r.off_y) * r.width + (x - r.off_x)];
  return out;
}

}  // namespace u2pl
