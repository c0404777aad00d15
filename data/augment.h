// Training augmentation (random scale, horizontal flip, pad, random crop) and validation
// centre pad/crop, as the public U2PL transforms do them (SPEC §4, §5): normalise, resize
// (image: F.interpolate bilinear, align_corners=False; label: PyTorch nearest), flip, pad, crop.
// Every draw comes from Philox. Covered by tests/test_augment.cpp.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "data/dataset.h"

namespace u2pl {

struct AugmentSpec {
  enum class ScaleMode {
    Uniform,    // paper: s ~ U[lo, hi]
    TwoHalves,  // official: with probability 1/2 s ~ U[lo, 1), else s ~ U[1, hi)
  };
  std::array<float, 2> scale{0.5f, 2.0f};  // {lo, hi}; {1, 1} disables scaling
  ScaleMode mode = ScaleMode::Uniform;
  bool flip = true;  // horizontal flip with probability 1/2
  int crop_h = 513, crop_w = 513;
  int label_pad = 255;  // label value of padded pixels: paper 255, official 0
  std::array<float, 3> mean{123.675f, 116.28f, 103.53f};  // RGB, on 0–255 values
  std::array<float, 3> std{58.395f, 57.12f, 57.375f};
};

// Philox draws of one training sample: draw k is word 0 of counter offset + k (philox_u32):
//   k = 0 scale half (TwoHalves: u < 1/2 takes the lower half), 1 scale value, 2 flip (u < 1/2),
//   3 crop row offset, 4 crop column offset (Lemire's multiply-shift on the 32-bit word).
// Every sample consumes kAugmentCounters counters whatever the spec, so sample p of a stream
// starts at base + p · kAugmentCounters.
constexpr uint64_t kAugmentCounters = 5;

struct AugmentDraws {
  double scale = 1;  // resized size = int(size · scale), Python's truncation
  bool flip = false;
  int off_y = 0, off_x = 0;  // crop origin in the padded, resized image
};

// A prepared sample: planar normalised image (3, height, width) and labels (height, width),
// the latter empty when the sample has none.
struct ValSample {
  int height = 0, width = 0;
  std::vector<float> image;
  std::vector<int32_t> label;
};
struct TrainSample : ValSample {
  AugmentDraws draws;
};

// The scale of draw k = 0, 1 at (seed, offset).
double draw_scale(const AugmentSpec& a, uint64_t seed, uint64_t offset);

// Random scale → flip → pad to the crop size (split half before, the rest after; image 0 after
// normalisation, label label_pad) → random crop of (crop_h, crop_w). Unlabeled samples get the
// same geometry. Draws: see kAugmentCounters.
TrainSample augment_train(const LoadedSample& s, const AugmentSpec& a, uint64_t seed, uint64_t offset);

// The same with given draws instead of Philox ones (the crop origin must lie in the padded,
// resized image): what the public transforms make of the same random outcomes.
TrainSample augment_with(const LoadedSample& s, const AugmentSpec& a, const AugmentDraws& d);

enum class ValCrop {
  Center,  // pad (as in training) and centre-crop to (crop_h, crop_w): VOC validation
  None,    // the whole image, normalised
};
ValSample prepare_val(const LoadedSample& s, const AugmentSpec& a, ValCrop crop);

}  // namespace u2pl
