// A procedural VOC-format segmentation set for demos and tests: textured backgrounds with 1-4
// shaped, textured, coloured objects, every pixel a pure function of (seed, image index) through
// Philox (engine/rng.h). The public U2PL code's own small-scale runs used such a set (SPEC §9).
// Covered by tests/test_synth.cpp; written to disk by apps/u2pl_synth.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/image_io.h"

namespace u2pl {

// Why the task is hard enough for semi-supervision to matter, and easy enough to learn fast:
//  - The class is carried by shape (disc, square, triangle, ring, cross, star, crescent, L), a
//    property of a region, not of a pixel: a network must integrate context over the object, so
//    a handful of labeled images (8-16, i.e. 20-40 instances) under-constrains it, while the
//    unlabeled images hold the same shapes in many more poses.
//  - Colour alone is deliberately insufficient: class hue means lie only 36° apart, each instance
//    jitters its hue (σ 14°), and 30% of instances take a neighbouring class's hue; saturation and
//    brightness do not depend on the class, and backgrounds draw from the whole hue circle. A
//    per-pixel nearest-colour-mean classifier picks the right object class for 0.35-0.55 of the
//    object pixels when fit on 8 images (0.58-0.68 on all 400; chance 0.2), and a per-pixel
//    colour-histogram Bayes classifier fit on all 400 only 0.57 (tests/test_synth.cpp checks
//    the first on every run).
//  - Texture (solid, stripes, checks, dots, gradient) correlates with the class, another cue
//    that needs a neighbourhood, and background kinds (gradients, value noise, stripes, soft
//    blobs) imitate object textures without their hard outlines.
//  - Scale spans a factor of 3 (radius 11-33% of the side: 11-32 px at 96), with any rotation
//    and position, partial exits from the frame and occlusion (labels follow the visible pixels);
//    texture follows the class for 80% of the instances only. Objects cover about 20% of pixels.
//  - Yet the labels are clean and learnable: outlines are exact, images are rendered with 4x4
//    supersampling, and a pixel whose sub-samples disagree (the one-pixel band an outline
//    crosses) is labeled 255, as VOC marks its boundary band (about 3% of pixels). Objects span at
//    least ~17 px at 96 px (the thinnest parts, ring and cross arms, ~5 px), above the stride-4
//    feature grid of DeepLabv3+.
// Reproducibility: the random draws are Philox's, the same on any machine; they become pixels
// through double-precision libm calls (sin, cos, exp, log) and rounding to 8 bits, so a libm
// other than glibc's could, rarely, move a pixel by one level.
struct SynthSpec {
  uint64_t seed = 0;
  int train = 400, val = 100;
  int size = 96;                       // square images, side in pixels
  int classes = 6;                     // background + (classes − 1) object classes, 2 to 9
  std::vector<int> labeled{8, 16, 32};  // labeled-split sizes (nested subsets of train)
  int jpeg_quality = 90;
};

struct SynthSample {
  Image image;  // RGB, size × size
  Image label;  // 1 channel: 0 background, 1..classes−1 objects, 255 boundary band
  int objects = 0;
};

// Image `index` of the set (train ids 0..train−1, val ids after): a pure function of
// (seed, index, size, classes). The RNG stream of image n starts at counter n·2^32.
SynthSample synth_sample(const SynthSpec& spec, int64_t index);

std::string synth_id(int64_t index);                 // "synth_000123"
std::vector<std::string> synth_class_names(int classes);  // "background", then shape names

struct SynthSummary {
  int64_t images = 0, objects = 0;
  std::vector<int64_t> train_pixels, val_pixels;  // per class
  std::vector<int> val_images;                    // per class: val images where it is visible
  int64_t ignore_pixels = 0, total_pixels = 0;
  int split_draws = 0;  // permutations drawn until the smallest labeled split covered every class
  bool smallest_covers = false;
};

// Writes DIR/JPEGImages/<id>.jpg, DIR/SegmentationClassAug/<id>.png, DIR/classes.txt,
// DIR/splits/{train,val}.txt and DIR/splits/<n>/{labeled,unlabeled}.txt for each labeled size.
// Every file is written to a temporary name and renamed into place. `progress(done, total)` is
// called after each image.
SynthSummary write_synth_dataset(const SynthSpec& spec, const std::string& dir,
                                 const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace u2pl
