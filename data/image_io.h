// Image files: decoding JPEG/PNG with stb_image and writing PNG/JPEG with stb_image_write (Debian
// libstb-dev), colour palettes for predictions, and float32 .npy output. Errors name the file.
// Covered by tests/test_predict.cpp (PNG, palettes, .npy) and tests/test_dataset.cpp (JPEG).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace u2pl {

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;  // row-major, interleaved channels
};

// Decodes an image file into `want_channels` (3: RGB, 1: single channel as stored).
Image read_image(const std::string& path, int want_channels);
// Writes an 8-bit PNG with 1 (grey/index) or 3 (RGB) channels, atomically.
void write_png(const std::string& path, const Image& img);
// Writes a baseline JPEG (quality 1-100) with 1 or 3 channels, atomically.
void write_jpeg(const std::string& path, const Image& img, int quality);

// RGB colours for class indices: the VOC palette for 21 classes, the Cityscapes colours for 19, a
// fixed distinct palette otherwise. Indices outside [0, num_classes) (255: ignore) are black.
std::vector<std::array<uint8_t, 3>> class_palette(int num_classes);
Image colourise(const std::vector<int32_t>& index, int width, int height, int num_classes);

// (1, 3, H, W) float32: (pixel − mean) / std per RGB channel.
std::vector<float> normalise_rgb(const Image& rgb, const std::array<float, 3>& mean, const std::array<float, 3>& std);

// A float32 C-order .npy (version 1.0) that numpy.load reads, written atomically.
void write_npy(const std::string& path, const TensorView& t);

}  // namespace u2pl
