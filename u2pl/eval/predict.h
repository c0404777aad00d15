// Whole-image prediction with a network in eval mode: normalise, forward, upsample the stride-4
// logits bilinearly (align_corners=True) to the image size, argmax; the per-pixel entropy and the
// reliable/unreliable partition at α (SPEC §2.2, Figure 2 of the paper) as pictures. Used by
// u2pl_infer. Covered by tests/test_predict.cpp.
#pragma once
#include <vector>

#include "data/image_io.h"
#include "u2pl/net/model.h"

namespace u2pl {

struct Prediction {
  int width = 0, height = 0;
  std::vector<int32_t> index;  // (H, W) class indices
  std::vector<float> entropy;  // (H, W) −Σ p log(p + 1e-10) of the upsampled logits' softmax
  NetOutputs raw;              // the network's outputs for this image (views into its plan)
};

// The (1, 3, H, W) normalised input of an RGB image on `dev`.
Tensor image_tensor(const Image& rgb, const NetConfig& cfg, Device dev);
Prediction predict_whole(Context& ctx, U2plNet& net, const Tensor& input);
// The entropy map as a picture: 0 dark blue through log(C) (the maximum) bright yellow.
Image entropy_image(const Prediction& p, int num_classes);
// The partition at α percent: γ = the (100 − α)-th percentile of the image's entropy; reliable
// pixels (H < γ) keep their class colour, unreliable ones are white. Returns γ through `gamma`.
Image partition_image(const Prediction& p, int num_classes, double alpha, double* gamma);

// Index of the largest logit per pixel of (1, C, H, W) host logits (first wins ties).
std::vector<int32_t> argmax_channels(const std::vector<float>& logits, Shape s);

}  // namespace u2pl
