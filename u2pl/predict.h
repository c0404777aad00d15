// Whole-image prediction with a network in eval mode: normalise, forward, upsample the stride-4
// logits bilinearly (align_corners=True) to the image size, argmax. Used by u2pl_infer (and the
// evaluation app later). Covered by tests/test_predict.cpp.
#pragma once
#include <vector>

#include "data/image_io.h"
#include "u2pl/model.h"

namespace u2pl {

struct Prediction {
  int width = 0, height = 0;
  std::vector<int32_t> index;  // (H, W) class indices
  NetOutputs raw;              // the network's outputs for this image (views into its plan)
};

// The (1, 3, H, W) normalised input of an RGB image on `dev`.
Tensor image_tensor(const Image& rgb, const NetConfig& cfg, Device dev);
Prediction predict_whole(Context& ctx, U2plNet& net, const Tensor& input);
// Index of the largest logit per pixel of (1, C, H, W) host logits (first wins ties).
std::vector<int32_t> argmax_channels(const std::vector<float>& logits, Shape s);

}  // namespace u2pl
