// Image files: decoding PNG with libpng and JPEG with libjpeg-turbo (data/image_decode.cpp, the
// decoders PIL uses), writing PNG/JPEG with stb_image_write (Debian libstb-dev), colour palettes
// for predictions, and float32 .npy output. Errors name the file. Covered by
// tests/test_predict.cpp (PNG, palettes, .npy), tests/test_dataset.cpp (decoding) and the fuzz
// target fuzz/fuzz_image.cpp.
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

// What an image file's header says, read without decoding its pixels.
struct ImageHeader {
  int width = 0, height = 0;
  int channels = 0;     // as stored: 1 grey / index, 3 or 4 RGB(A) and palette PNGs, 2 grey + alpha
  bool bits16 = false;  // a 16-bit PNG (decoding keeps the high byte)
};
// The header of a PNG or JPEG file; anything else, and an image over 2^27 pixels, is an error
// naming the file.
ImageHeader read_image_header(const std::string& path);

// Decodes a PNG or JPEG file into `want_channels`: 3, RGB (grey and palettes expanded, alpha
// dropped, 16-bit samples cut to their high byte, CMYK JPEGs converted as PIL converts them); 1, a
// single-channel file as stored (a file of more channels is an error). Corrupt or truncated files
// are errors naming the file.
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
