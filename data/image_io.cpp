// Image encoding, palettes and .npy output (data/image_io.h; decoding: data/image_decode.cpp).
#include "data/image_io.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include "engine/file_io.h"

namespace u2pl {
namespace {

// stb's write callback: the encoded bytes into a std::string.
void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
}

}  // namespace

void write_png(const std::string& path, const Image& img) {
  U2PL_CHECK(img.channels == 1 || img.channels == 3, path << ": PNG output needs 1 or 3 channels");
  U2PL_CHECK(img.pixels.size() == size_t(img.width) * img.height * img.channels,
             path << ": image buffer does not match " << img.width << "x" << img.height);
  std::string bytes;
  U2PL_CHECK(stbi_write_png_to_func(append_bytes, &bytes, img.width, img.height, img.channels, img.pixels.data(),
                                    img.width * img.channels),
             path << ": cannot encode the PNG");
  write_file_atomic(path, bytes);
}

void write_jpeg(const std::string& path, const Image& img, int quality) {
  U2PL_CHECK(img.channels == 1 || img.channels == 3, path << ": JPEG output needs 1 or 3 channels");
  U2PL_CHECK(quality >= 1 && quality <= 100, path << ": JPEG quality must be in [1, 100], got " << quality);
  U2PL_CHECK(img.pixels.size() == size_t(img.width) * img.height * img.channels,
             path << ": image buffer does not match " << img.width << "x" << img.height);
  std::string bytes;
  U2PL_CHECK(stbi_write_jpg_to_func(append_bytes, &bytes, img.width, img.height, img.channels, img.pixels.data(),
                                    quality),
             path << ": cannot encode the JPEG");
  write_file_atomic(path, bytes);
}

std::vector<std::array<uint8_t, 3>> class_palette(int num_classes) {
  std::vector<std::array<uint8_t, 3>> p(static_cast<size_t>(num_classes));
  if (num_classes == 19) {
    static const uint8_t city[19][3] = {{128, 64, 128}, {244, 35, 232}, {70, 70, 70},    {102, 102, 156},
                                        {190, 153, 153}, {153, 153, 153}, {250, 170, 30}, {220, 220, 0},
                                        {107, 142, 35}, {152, 251, 152}, {70, 130, 180},  {220, 20, 60},
                                        {255, 0, 0},    {0, 0, 142},     {0, 0, 70},      {0, 60, 100},
                                        {0, 80, 100},   {0, 0, 230},     {119, 11, 32}};
    for (int i = 0; i < 19; ++i) p[i] = {city[i][0], city[i][1], city[i][2]};
    return p;
  }
  if (num_classes == 21) {
    // The VOC colour map: the bits of the class index spread over R, G, B from the high bit down.
    for (int i = 0; i < 21; ++i) {
      int c = i, r = 0, g = 0, b = 0;
      for (int j = 0; j < 8; ++j, c >>= 3) {
        r |= (c & 1) << (7 - j);
        g |= ((c >> 1) & 1) << (7 - j);
        b |= ((c >> 2) & 1) << (7 - j);
      }
      p[i] = {uint8_t(r), uint8_t(g), uint8_t(b)};
    }
    return p;
  }
  // Otherwise hues a golden-ratio step apart, alternating two brightness levels.
  for (int i = 0; i < num_classes; ++i) {
    const double h = std::fmod(i * 0.618033988749895, 1.0) * 6, v = i % 2 ? 0.75 : 1.0, s = 0.8;
    const double f = h - std::floor(h), pp = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    const double rgb[6][3] = {{v, t, pp}, {q, v, pp}, {pp, v, t}, {pp, q, v}, {t, pp, v}, {v, pp, q}};
    const int k = static_cast<int>(h) % 6;
    p[i] = {uint8_t(255 * rgb[k][0]), uint8_t(255 * rgb[k][1]), uint8_t(255 * rgb[k][2])};
  }
  return p;
}

Image colourise(const std::vector<int32_t>& index, int width, int height, int num_classes) {
  U2PL_CHECK(index.size() == size_t(width) * height, "colourise: " << index.size() << " indices for "
                                                                   << width << "x" << height);
  const auto pal = class_palette(num_classes);
  Image img{width, height, 3, std::vector<uint8_t>(index.size() * 3, 0)};
  for (size_t i = 0; i < index.size(); ++i)
    if (index[i] >= 0 && index[i] < num_classes)
      for (int c = 0; c < 3; ++c) img.pixels[3 * i + c] = pal[index[i]][c];
  return img;
}

std::vector<float> normalise_rgb(const Image& rgb, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  U2PL_CHECK(rgb.channels == 3, "normalise_rgb: expected an RGB image, got " << rgb.channels << " channels");
  const size_t hw = size_t(rgb.width) * rgb.height;
  std::vector<float> out(3 * hw);
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < hw; ++i) out[c * hw + i] = (float(rgb.pixels[3 * i + c]) - mean[c]) / std[c];
  return out;
}

void write_npy(const std::string& path, const TensorView& t) {
  const std::vector<float> v = to_host(t);
  std::string shape = "(";
  for (int i = 0; i < t.shape.ndim; ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  if (t.shape.ndim == 1) shape += ",";
  shape += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // magic (6) + version (2) + length (2), 64-aligned
  header += '\n';
  const uint16_t n = static_cast<uint16_t>(header.size());
  const char len[2] = {char(n & 0xff), char(n >> 8)};
  write_file_atomic(path, {{"\x93NUMPY\x01\x00", 8}, {len, 2}, {header.data(), header.size()},
                           {v.data(), v.size() * sizeof(float)}});
}

}  // namespace u2pl
