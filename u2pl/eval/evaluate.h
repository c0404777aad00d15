// Evaluation-time inference on one image (SPEC §5): `center` (centre pad/crop to the crop size,
// scored on the crop, as the public validation loader does), `sliding` (public eval.py
// scale_crop_process: windows with the last one aligned to the border, raw logits averaged over
// overlaps) and `whole`, each optionally with horizontal flip and several scales. Logits are
// host (C, H, W) maps. Covered by tests/test_evaluate.cpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "u2pl/net/model.h"

namespace u2pl {

enum class EvalMode { Center, Sliding, Whole };
EvalMode parse_eval_mode(const std::string& s);  // "center" | "sliding" | "whole"
const char* eval_mode_name(EvalMode m);

struct EvalOptions {
  EvalMode mode = EvalMode::Whole;
  int crop_h = 513, crop_w = 513;   // center: the crop; sliding: the window
  int stride_h = 0, stride_w = 0;   // sliding: 0 means ⌈window·2/3⌉ (public stride_rate 2/3)
  int label_pad = 255;              // center: label value of the padded border (official 0, paper 255)
  bool flip = false;                // also run the mirrored image, logits mirrored back and averaged
  std::vector<float> scales{1.0f};  // image resized by each (bilinear), logits resized back, averaged
};

// planes × (h, w), row-major: a normalised image (3 planes) or logits (C planes) on the host.
struct Planes {
  int c = 0, h = 0, w = 0;
  std::vector<float> v;
  Planes() = default;
  Planes(int c_, int h_, int w_) : c(c_), h(h_), w(w_), v(static_cast<size_t>(c_) * h_ * w_, 0.0f) {}
  float& at(int p, int y, int x) { return v[(static_cast<size_t>(p) * h + y) * w + x]; }
  float at(int p, int y, int x) const { return v[(static_cast<size_t>(p) * h + y) * w + x]; }
};

// The network as evaluation sees it: a normalised image (3, h, w) -> logits (C, h, w).
using LogitsFn = std::function<Planes(const Planes& image)>;
// Eval-mode forward on ctx's device, stride-4 logits upsampled bilinearly (align_corners=True)
// to the input size, copied to the host.
LogitsFn network_logits(Context& ctx, U2plNet& net);

// Geometry. center_offset: the source index of a centre crop's first row (or column) along an
// axis of length `size` (public Crop, crop_type center): ⌊(size − crop)/2⌋ when the image is at
// least the crop, else −⌊(crop − size)/2⌋ (padding: half before, the rest after).
int center_offset(int size, int crop);
// Window origins along an axis of length `size` ≥ window: ⌈(size − window)/stride⌉ + 1 windows
// at i·stride, each pulled back to end inside the axis (the last one ends at the border).
std::vector<int> window_starts(int size, int window, int stride);
int default_stride(int window);  // ⌈window·2/3⌉

// The (h, w) region of x whose origin is (y0, x0) in x's coordinates (either may be negative or
// reach past the border); pixels outside x get `pad`.
Planes crop_planes(const Planes& x, int y0, int x0, int h, int w, float pad);
Planes flip_planes(const Planes& x);                // mirrored left-right
Planes resize_planes(const Planes& x, int h, int w);  // bilinear, align_corners=True

// Sliding windows (wh, ww) with strides (sh, sw) over an image padded to at least the window
// (half before, value 0); each window's logits summed into place, divided by the count map,
// cropped back to the image. Returns (C, H, W).
Planes sliding_logits(const LogitsFn& f, const Planes& image, int wh, int ww, int sh, int sw);
// Logits (C, H, W) of a normalised image in `whole` or `sliding` mode (center: the crop comes
// first, in evaluate_image), averaged over opt.scales × {plain, flipped when opt.flip}.
Planes infer_logits(const LogitsFn& f, const Planes& image, const EvalOptions& opt);

// One val image as scored: in center mode the crop of data/augment.h's prepare_val (image padded
// with 0 after normalisation, label with opt.label_pad), otherwise the image and label as stored.
struct ScoredImage {
  int width = 0, height = 0;    // the scored region
  int off_x = 0, off_y = 0;     // its origin in image coordinates (center: negative when padded)
  std::vector<int32_t> pred;    // (height, width) argmax of the logits
  std::vector<uint8_t> label;   // (height, width)
};
ScoredImage evaluate_image(const LogitsFn& f, const NetConfig& cfg, const LoadedSample& s, const EvalOptions& opt);
// The prediction over the whole image (width × height) for saving; throws when the scored
// region does not cover it (center mode on an image larger than the crop).
std::vector<int32_t> prediction_on_image(const ScoredImage& r, int width, int height);

}  // namespace u2pl
