// Image I/O (PNG/JPEG through stb, palettes, .npy), whole-image prediction and the u2pl_infer
// app end to end: a random small network saved as engine weights, a PNG written by the test,
// the colourised output and the --dump logits checked against the network run directly.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/gradcheck.h"
#include "u2pl/eval/predict.h"
#include "u2pl/net/weights.h"

namespace fs = std::filesystem;
using namespace u2pl;

namespace {

Image test_image(int w, int h) {
  Image img{w, h, 3, std::vector<uint8_t>(size_t(w) * h * 3)};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((i * 37) % 251);
  return img;
}

std::vector<float> read_npy(const std::string& path, std::string* header) {
  std::ifstream f(path, std::ios::binary);
  char magic[8];
  f.read(magic, 8);
  REQUIRE(std::string(magic, 6) == "\x93NUMPY");
  unsigned char len[2];
  f.read(reinterpret_cast<char*>(len), 2);
  const size_t n = len[0] | (len[1] << 8);
  header->assign(n, '\0');
  f.read(header->data(), static_cast<std::streamsize>(n));
  CHECK((10 + n) % 64 == 0);
  std::vector<float> v;
  float x;
  while (f.read(reinterpret_cast<char*>(&x), 4)) v.push_back(x);
  return v;
}

}  // namespace

TEST_CASE("PNG round trip, errors name the file") {
  const std::string p = "/tmp/u2pl_test_img.png";
  const Image a = test_image(7, 5);
  write_png(p, a);
  const Image b = read_image(p, 3);
  CHECK(b.width == 7);
  CHECK(b.height == 5);
  CHECK(b.pixels == a.pixels);
  CHECK_THROWS_WITH_AS(read_image("/nonexistent.png", 3), doctest::Contains("/nonexistent.png: cannot open"), Error);
  { std::ofstream f(p, std::ios::binary); f << "not an image at all"; }
  CHECK_THROWS_WITH_AS(read_image(p, 3), doctest::Contains((p + ": not a PNG or JPEG file").c_str()), Error);
  std::remove(p.c_str());
}

TEST_CASE("palettes: VOC, Cityscapes, generic; ignore is black") {
  const auto voc = class_palette(21);
  CHECK(voc[1] == std::array<uint8_t, 3>{128, 0, 0});
  CHECK(voc[15] == std::array<uint8_t, 3>{192, 128, 128});  // person
  const auto city = class_palette(19);
  CHECK(city[0] == std::array<uint8_t, 3>{128, 64, 128});   // road
  const auto gen = class_palette(7);
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < i; ++j) CHECK(gen[i] != gen[j]);
  const Image c = colourise({1, 255}, 2, 1, 21);
  CHECK(c.pixels == std::vector<uint8_t>{128, 0, 0, 0, 0, 0});
}

TEST_CASE("argmax over channels, first maximum wins") {
  const std::vector<float> l{0, 5, 2, /*c1*/ 1, 5, 3};
  CHECK(argmax_channels(l, Shape{1, 2, 1, 3}) == std::vector<int32_t>{1, 0, 1});
}

TEST_CASE("u2pl_infer writes colourised predictions and the raw logits") {
  const fs::path dir = "/tmp/u2pl_test_infer";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream cfg(dir / "config.yaml");
    cfg << "net:\n  num_classes: 3\n  encoder:\n    type: u2pl.models.resnet.resnet18\n    kwargs:\n"
           "      width_divisor: 16\n  decoder:\n    type: u2pl.models.decoder.dec_deeplabv3_plus\n"
           "    kwargs:\n      inner_planes: 8\n      dilations: [1, 2, 3]\n";
  }
  NetConfig cfg = load_net_config((dir / "config.yaml").string());
  U2plNet net(cfg);
  net.allocate(Device::CPU, 11);
  save_weights(net.params(), (dir / "w.safetensors").string(), {{"source", "test"}});
  write_png((dir / "a.png").string(), test_image(37, 29));

  const std::string cmd = std::string(U2PL_APPS_DIR) + "/u2pl_infer --device cpu --config " +
                          (dir / "config.yaml").string() + " --weights " + (dir / "w.safetensors").string() +
                          " --out " + (dir / "out").string() + " --dump " + (dir / "dump").string() + " --alpha 20 " +
                          (dir / "a.png").string() + " > " + (dir / "log.txt").string() + " 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const Image pred = read_image((dir / "out" / "a.png").string(), 3);
  CHECK(pred.width == 37);
  CHECK(pred.height == 29);

  Context ctx(Device::CPU);
  const Tensor input = image_tensor(read_image((dir / "a.png").string(), 3), cfg, Device::CPU);
  const Prediction p = predict_whole(ctx, net, input);
  std::string header;
  const std::vector<float> dumped = read_npy((dir / "dump" / "a.pred.npy").string(), &header);
  CHECK(header.find("'shape': (1, 3, 8, 10)") != std::string::npos);
  CHECK(dumped == to_host(p.raw.pred));
  CHECK(fs::exists(dir / "dump" / "a.rep.npy"));
  const Image expect = colourise(p.index, p.width, p.height, 3);
  CHECK(pred.pixels == expect.pixels);
  // Entropy pictures: the partition marks the top 20 % entropy pixels white.
  const Image part = read_image((dir / "out" / "a.partition.png").string(), 3);
  CHECK(read_image((dir / "out" / "a.entropy.png").string(), 3).width == 37);
  size_t white = 0;
  for (size_t i = 0; i < part.pixels.size(); i += 3)
    white += part.pixels[i] == 255 && part.pixels[i + 1] == 255 && part.pixels[i + 2] == 255;
  CHECK(double(white) / (37 * 29) == doctest::Approx(0.2).epsilon(0.1));
  for (float h : p.entropy) REQUIRE((h >= 0.f && h <= std::log(3.f) + 1e-5f));

  // Bad input: a missing image fails before any work, naming it.
  const std::string bad = std::string(U2PL_APPS_DIR) + "/u2pl_infer --device cpu --config " +
                          (dir / "config.yaml").string() + " --weights " + (dir / "w.safetensors").string() +
                          " /nonexistent.png > " + (dir / "bad.txt").string() + " 2>&1";
  CHECK(std::system(bad.c_str()) != 0);
  std::ifstream log(dir / "bad.txt");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK(text.find("/nonexistent.png: no such image file") != std::string::npos);
  fs::remove_all(dir);
}
