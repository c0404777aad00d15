// Evaluation-time inference (u2pl/eval/evaluate.h) and the u2pl_eval app end to end: window
// placement, sliding-window merging (mock networks whose logits reveal which windows covered a
// pixel), centre-crop geometry against data/augment.h's prepare_val, flip equivariance on a real
// small network, --save-index then --score agreeing with the model run, and --score's error
// messages.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "u2pl/eval/eval_report.h"
#include "u2pl/net/net_config.h"
#include "u2pl/net/weights.h"

namespace fs = std::filesystem;
using namespace u2pl;

namespace {

Planes ramp(int c, int h, int w) {  // distinct small integers: exact in float sums
  Planes p(c, h, w);
  for (size_t i = 0; i < p.v.size(); ++i) p.v[i] = float(i % 97) - 40.0f;
  return p;
}

Image test_image(int w, int h, int seed) {
  Image img{w, h, 3, std::vector<uint8_t>(size_t(w) * h * 3)};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((i * 37 + seed * 101) % 251);
  return img;
}

const char* const kNet =
    "net:\n  num_classes: 3\n  encoder:\n    type: u2pl.models.resnet.resnet18\n    kwargs:\n"
    "      width_divisor: 16\n  decoder:\n    type: u2pl.models.decoder.dec_deeplabv3_plus\n"
    "    kwargs:\n      inner_planes: 8\n      dilations: [1, 2, 3]\n";

NetConfig small_net_config(const fs::path& dir) {
  { std::ofstream(dir / "net.yaml") << kNet; }
  return load_net_config((dir / "net.yaml").string());
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("eval: window placement, the last window aligned to the border") {
  CHECK(default_stride(769) == 513);
  CHECK(default_stride(513) == 342);
  CHECK(window_starts(769, 769, 513) == std::vector<int>{0});
  CHECK(window_starts(1024, 769, 513) == std::vector<int>{0, 255});
  CHECK(window_starts(2048, 769, 513) == std::vector<int>{0, 513, 1026, 1279});
  CHECK(window_starts(1282, 769, 513) == std::vector<int>{0, 513});  // 513 + 769 = 1282 exactly
  CHECK(window_starts(10, 4, 3) == std::vector<int>{0, 3, 6});
  CHECK(window_starts(11, 4, 3) == std::vector<int>{0, 3, 6, 7});
  CHECK_THROWS_AS(window_starts(3, 4, 3), Error);
}

TEST_CASE("eval: centre-crop geometry, offsets and padding") {
  CHECK(center_offset(500, 513) == -6);   // pad 13: 6 before, 7 after
  CHECK(center_offset(366, 513) == -73);  // pad 147: 73 before
  CHECK(center_offset(513, 513) == 0);
  CHECK(center_offset(600, 513) == 43);   // crop (600 − 513) / 2 = 43 rows in

  // A 7x5 image centre-cropped to 4 wide and padded to 8 high: the network sees the normalised
  // image shifted by the offsets with zeros in the padding, the label padded with label_pad.
  LoadedSample s{"a", test_image(7, 5, 1), std::vector<uint8_t>(35)};
  for (size_t i = 0; i < s.label.size(); ++i) s.label[i] = uint8_t(i % 3);
  NetConfig cfg;
  Planes seen;
  const LogitsFn f = [&seen](const Planes& x) {
    seen = x;
    return Planes(2, x.h, x.w);
  };
  for (int pad : {0, 255}) {
    EvalOptions opt;
    opt.mode = EvalMode::Center;
    opt.crop_h = 8;
    opt.crop_w = 4;
    opt.label_pad = pad;
    const ScoredImage r = evaluate_image(f, cfg, s, opt);
    REQUIRE(r.width == 4);
    REQUIRE(r.height == 8);
    CHECK(r.off_x == 1);
    CHECK(r.off_y == -1);
    Planes image(3, 5, 7);
    image.v = normalise_rgb(s.image, cfg.mean, cfg.std);
    CHECK(seen.v == crop_planes(image, -1, 1, 8, 4, 0.0f).v);
    CHECK(seen.at(0, 0, 0) == 0.0f);                  // padded row above
    CHECK(seen.at(2, 1, 0) == image.at(2, 0, 1));    // first image row, second column
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 4; ++x) {
        const int sy = y - 1, sx = x + 1;
        const int want = (sy >= 0 && sy < 5) ? s.label[size_t(sy) * 7 + sx] : pad;
        CHECK(r.label[size_t(y) * 4 + x] == want);
      }
    // The crop does not cover the image's width, so it cannot be saved as a full prediction.
    CHECK_THROWS_WITH_AS(prediction_on_image(r, 7, 5), doctest::Contains("does not cover the 7x5 image"), Error);
  }
  // Padding only: the valid region of the prediction maps back onto the image.
  ScoredImage r;
  r.width = 4, r.height = 3, r.off_x = -1, r.off_y = -1;
  r.pred = {0, 1, 2, 0, /**/ 1, 2, 0, 1, /**/ 2, 0, 1, 2};
  CHECK(prediction_on_image(r, 2, 1) == std::vector<int32_t>{2, 0});
}

TEST_CASE("eval: sliding windows average raw logits over overlaps") {
  // Each window's logits are its call number: a pixel gets the mean number of the windows that
  // cover it. Image 5x7, window 3x4, stride 2x3: rows {0, 2}, columns {0, 3}.
  int calls = 0;
  const LogitsFn numbered = [&calls](const Planes& x) {
    Planes out(1, x.h, x.w);
    for (float& v : out.v) v = float(calls);
    ++calls;
    return out;
  };
  const Planes merged = sliding_logits(numbered, ramp(3, 5, 7), 3, 4, 2, 3);
  CHECK(calls == 4);
  REQUIRE(merged.c == 1);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x) {
      double sum = 0;
      int n = 0, k = 0;
      for (int sy : {0, 2})
        for (int sx : {0, 3}) {
          if (y >= sy && y < sy + 3 && x >= sx && x < sx + 4) sum += k, ++n;
          ++k;
        }
      CHECK(merged.at(0, y, x) == doctest::Approx(sum / n));
    }

  // A per-pixel network gives back its input whatever the windows; an image smaller than the
  // window is padded (half before, zeros) and cropped back.
  std::vector<Planes> windows;
  const LogitsFn pointwise = [&windows](const Planes& x) {
    windows.push_back(x);
    return x;
  };
  const Planes img = ramp(3, 9, 11);
  CHECK(sliding_logits(pointwise, img, 4, 5, 3, 2).v == img.v);
  windows.clear();
  const Planes small = ramp(3, 2, 3);
  CHECK(sliding_logits(pointwise, small, 5, 6, 4, 4).v == small.v);
  REQUIRE(windows.size() == 1);
  CHECK(windows[0].h == 5);
  CHECK(windows[0].w == 6);
  CHECK(windows[0].v == crop_planes(small, -1, -1, 5, 6, 0.0f).v);
  CHECK(windows[0].at(1, 0, 0) == 0.0f);
  CHECK(windows[0].at(1, 1, 1) == small.at(1, 0, 0));
  CHECK_THROWS_WITH_AS(sliding_logits(pointwise, img, 4, 5, 5, 2), doctest::Contains("exceeds the window"), Error);
}

TEST_CASE("eval: network inference, sliding equals whole when one window covers the image, flip") {
  const fs::path dir = "/tmp/u2pl_test_eval_net";
  fs::remove_all(dir);
  fs::create_directories(dir);
  U2plNet net(small_net_config(dir));
  net.allocate(Device::CPU, 5);
  Context ctx(Device::CPU);
  const LogitsFn f = network_logits(ctx, net);
  const Planes img = ramp(3, 21, 26);
  const Planes whole = f(img);
  REQUIRE(whole.c == 3);
  REQUIRE(whole.h == 21);
  REQUIRE(whole.w == 26);

  EvalOptions opt;
  opt.mode = EvalMode::Sliding;
  opt.crop_h = 21;
  opt.crop_w = 26;
  CHECK(infer_logits(f, img, opt).v == whole.v);
  opt.mode = EvalMode::Whole;
  CHECK(infer_logits(f, img, opt).v == whole.v);

  // Flip: averaging x and its mirror makes the prediction of mirror(x) the mirror of x's.
  opt.flip = true;
  const Planes a = infer_logits(f, img, opt);
  const Planes b = infer_logits(f, flip_planes(img), opt);
  CHECK(flip_planes(b).v == a.v);
  bool differs = false;  // and it is not the plain prediction
  for (size_t i = 0; i < a.v.size(); ++i) differs = differs || a.v[i] != whole.v[i];
  CHECK(differs);
  // A mirror-symmetric image gets mirror-symmetric logits: (f(x) + mirror f(x)) / 2.
  Planes sym = img;
  for (int p = 0; p < 3; ++p)
    for (int y = 0; y < sym.h; ++y)
      for (int x = sym.w / 2; x < sym.w; ++x) sym.at(p, y, x) = sym.at(p, y, sym.w - 1 - x);
  const Planes s = infer_logits(f, sym, opt);
  CHECK(flip_planes(s).v == s.v);
  const Planes fs_ = f(sym), mirrored = flip_planes(f(sym));
  for (size_t i = 0; i < s.v.size(); ++i) CHECK(s.v[i] == doctest::Approx((fs_.v[i] + mirrored.v[i]) / 2));

  // Scales: each scale's logits come back at the image size, averaged.
  opt.flip = false;
  opt.scales = {0.5f, 1.0f};
  const Planes ms = infer_logits(f, img, opt);
  const Planes half = resize_planes(f(resize_planes(img, 11, 13)), 21, 26);
  for (size_t i = 0; i < ms.v.size(); ++i) CHECK(ms.v[i] == doctest::Approx((half.v[i] + whole.v[i]) / 2));
  fs::remove_all(dir);
}

TEST_CASE("eval: protocol defaults by dataset and preset") {
  EvalConfig c;
  c.data.kind = DatasetKind::Voc;
  c.data.val.crop = {"center", {513, 513}};
  EvalOptions o = eval_options(c);
  CHECK(o.mode == EvalMode::Center);
  CHECK(o.crop_h == 513);
  CHECK(o.label_pad == 255);
  c.preset = "official";
  CHECK(eval_options(c).label_pad == 0);
  c.data.kind = DatasetKind::Cityscapes;
  c.data.val.crop = {"none", {0, 0}};
  o = eval_options(c);
  CHECK(o.mode == EvalMode::Sliding);
  CHECK(o.crop_h == 769);
  CHECK(o.crop_w == 769);
  c.data.kind = DatasetKind::Folder;
  CHECK(eval_options(c).mode == EvalMode::Whole);
  CHECK(eval_options(c, EvalMode::Center).crop_w == 513);
  CHECK(cityscapes_label_id(0) == 7);    // road
  CHECK(cityscapes_label_id(18) == 33);  // bicycle
  CHECK_THROWS_AS(cityscapes_label_id(19), Error);
}

namespace {

// A folder-layout val split of three PNG images smaller than the 48x40 centre crop.
void write_folder_set(const fs::path& root) {
  fs::create_directories(root / "images");
  fs::create_directories(root / "labels");
  { std::ofstream(root / "classes.txt") << "background\nsquare\ndisc\n"; }
  std::ofstream list(root / "val.txt");
  const int sizes[3][2] = {{37, 29}, {30, 33}, {41, 22}};
  for (int i = 0; i < 3; ++i) {
    const int w = sizes[i][0], h = sizes[i][1];
    const std::string id = "img_" + std::to_string(i);
    write_png((root / "images" / (id + ".png")).string(), test_image(w, h, i));
    Image label{w, h, 1, std::vector<uint8_t>(size_t(w) * h)};
    for (size_t p = 0; p < label.pixels.size(); ++p) label.pixels[p] = p % 11 == 0 ? 255 : uint8_t((p / 7 + i) % 3);
    write_png((root / "labels" / (id + ".png")).string(), label);
    list << id << "\n";
  }
}

std::string eval_cmd(const std::string& args, const fs::path& log) {
  return std::string(U2PL_APPS_DIR) + "/u2pl_eval " + args + " > " + log.string() + " 2>&1";
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(slurp(p)); }

}  // namespace

TEST_CASE("u2pl_eval end to end: JSON, saved index maps scored again with --score") {
  const fs::path dir = "/tmp/u2pl_test_eval_app";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path data = dir / "data";
  write_folder_set(data);
  const std::string val = "  val:\n    data_root: " + data.string() + "\n    data_list: " + (data / "val.txt").string();
  {
    std::ofstream(dir / "config.yaml") << "dataset:\n  type: folder\n  train:\n    data_root: " << data.string()
                                       << "\n    data_list: " << (data / "val.txt").string() << "\n" << val
                                       << "\n    crop:\n      type: center\n      size: [40, 48]\n" << kNet;
    std::ofstream(dir / "score.yaml") << "dataset:\n  type: folder\n" << val << "\nnet:\n  num_classes: 3\n";
  }
  const NetConfig cfg = load_net_config((dir / "config.yaml").string());
  U2plNet net(cfg);
  net.allocate(Device::CPU, 3);
  save_weights(net.params(), (dir / "w.safetensors").string(), {{"source", "test"}});
  const std::string model = "--device cpu --config " + (dir / "config.yaml").string() + " --weights " +
                            (dir / "w.safetensors").string();
  const std::string score_args = "--config " + (dir / "score.yaml").string() + " --score ";

  // Centre crop (paper: padded labels are 255, so the crop scores exactly the image's pixels).
  REQUIRE_MESSAGE(std::system(eval_cmd(model + " --json " + (dir / "center.json").string() + " --save-index " +
                                           (dir / "idx").string() + " --save-pred " + (dir / "pred").string(),
                                       dir / "log.txt").c_str()) == 0,
                  slurp(dir / "log.txt"));
  const std::string log = slurp(dir / "log.txt");
  CHECK(log.find("center 48x40 (labels padded with 255)") != std::string::npos);
  CHECK(log.find("square") != std::string::npos);
  CHECK(log.find("mIoU") != std::string::npos);
  CHECK(log.find("3/3 images") != std::string::npos);  // not a terminal: progress lines
  const nlohmann::json j = read_json(dir / "center.json");
  CHECK(j["classes"] == nlohmann::json({"background", "square", "disc"}));
  REQUIRE(j["iou"].size() == 3);
  for (const char* k : {"miou", "pixel_acc", "mean_acc"}) CHECK((j[k] >= 0.0 && j[k] <= 1.0));

  const EvalConfig ec = load_eval_config((dir / "config.yaml").string(), false, nullptr);
  const Dataset ds(ec.data.val_spec(), true);
  Context ctx(Device::CPU);
  const Scores want = score(evaluate_split(ds, network_logits(ctx, net), cfg, eval_options(ec), {}, {}));
  CHECK(j["miou"].get<double>() == doctest::Approx(want.miou).epsilon(1e-12));
  CHECK(j["pixel_acc"].get<double>() == doctest::Approx(want.pixel_acc).epsilon(1e-12));
  for (int c = 0; c < 3; ++c) CHECK(j["iou"][c].get<double>() == doctest::Approx(want.iou[c]).epsilon(1e-12));
  const Image saved = read_image((dir / "idx" / "img_1.png").string(), 3);
  CHECK(saved.width == 30);
  CHECK(saved.height == 33);
  CHECK(fs::exists(dir / "pred" / "img_2.png"));

  REQUIRE(std::system(eval_cmd(score_args + (dir / "idx").string() + " --json " + (dir / "s.json").string(),
                               dir / "slog.txt").c_str()) == 0);
  const nlohmann::json sj = read_json(dir / "s.json");
  CHECK(sj["miou"].get<double>() == doctest::Approx(j["miou"].get<double>()).epsilon(1e-12));
  CHECK(sj["mean_acc"].get<double>() == doctest::Approx(j["mean_acc"].get<double>()).epsilon(1e-12));

  // Sliding windows smaller than the images (several windows each) score the labels as stored.
  std::string slide_cfg = slurp(dir / "config.yaml");
  slide_cfg.replace(slide_cfg.find("[40, 48]"), 8, "[16, 20]");
  { std::ofstream(dir / "slide.yaml") << slide_cfg; }
  const std::string slide = "--device cpu --config " + (dir / "slide.yaml").string() + " --weights " +
                            (dir / "w.safetensors").string() + " --mode sliding --flip --scales 1,0.75";
  REQUIRE(std::system(eval_cmd(slide + " --json " + (dir / "slide.json").string() + " --save-index " +
                                   (dir / "sidx").string(), dir / "log2.txt").c_str()) == 0);
  CHECK(slurp(dir / "log2.txt").find("sliding window 20x16, stride 14x11, flip") != std::string::npos);
  REQUIRE(std::system(eval_cmd(score_args + (dir / "sidx").string() + " --json " + (dir / "s2.json").string(),
                               dir / "slog2.txt").c_str()) == 0);
  CHECK(read_json(dir / "s2.json")["miou"].get<double>() ==
        doctest::Approx(read_json(dir / "slide.json")["miou"].get<double>()).epsilon(1e-12));

  // --score errors name the file and what is wrong with it.
  auto score_error = [&](const std::string& what) {
    const fs::path out = dir / "err.txt";
    CHECK(std::system(eval_cmd(score_args + (dir / "idx").string(), out).c_str()) != 0);
    const std::string text = slurp(out);
    CHECK_MESSAGE(text.find((dir / "idx" / "img_0.png").string()) != std::string::npos, text);
    CHECK_MESSAGE(text.find(what) != std::string::npos, text);
  };
  write_png((dir / "idx" / "img_0.png").string(), Image{36, 29, 1, std::vector<uint8_t>(36 * 29)});
  score_error("36x29, expected the label's size 37x29");
  write_png((dir / "idx" / "img_0.png").string(), test_image(37, 29, 0));
  score_error("8-bit RGB PNG; expected an 8-bit single-channel (greyscale) index PNG");
  write_png((dir / "idx" / "img_0.png").string(), Image{37, 29, 1, std::vector<uint8_t>(37 * 29, 3)});
  score_error("value 3 at (x 0, y 0) is not a class index in [0, 3)");
  fs::remove(dir / "idx" / "img_0.png");
  score_error("missing (no prediction for this image)");
  fs::remove_all(dir);
}
