// Split evaluation, saved-prediction scoring and reports (u2pl/eval/eval_report.h). Index PNGs are
// checked from their IHDR chunk before decoding, because stb would silently convert RGB, palette
// or 16-bit files to 8-bit grey.
#include "u2pl/eval/eval_report.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <optional>
#include <sstream>

#include "data/cityscapes.h"
#include "engine/file_io.h"

namespace fs = std::filesystem;

namespace u2pl {
namespace {

std::string stem_of(const Sample& s) { return fs::path(s.image_path).stem().string(); }

Image index_image(const std::vector<int32_t>& index, int width, int height, bool label_ids) {
  Image img{width, height, 1, std::vector<uint8_t>(index.size())};
  for (size_t i = 0; i < index.size(); ++i)
    img.pixels[i] = label_ids ? cityscapes_label_id(index[i]) : static_cast<uint8_t>(index[i]);
  return img;
}

uint32_t big_endian(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

const char* png_colour_type(int t) {
  switch (t) {
    case 0: return "greyscale";
    case 2: return "RGB";
    case 3: return "palette";
    case 4: return "greyscale+alpha";
    case 6: return "RGBA";
  }
  return "unknown colour type";
}

std::string clock_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  std::ostringstream os;
  if (s >= 3600) os << s / 3600 << ":" << std::setw(2) << std::setfill('0') << (s / 60) % 60;
  else os << s / 60;
  os << ":" << std::setw(2) << std::setfill('0') << s % 60;
  return os.str();
}

}  // namespace

EvalConfig load_eval_config(const std::string& path, bool val_only, std::vector<std::string>* warnings) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    U2PL_FAIL(path << ": cannot open (missing or unreadable)");
  } catch (const YAML::Exception& e) {
    U2PL_FAIL(path << ": malformed YAML: " << e.msg);
  }
  EvalConfig c;
  const YAML::Node& top = root;
  if (val_only && top.IsMap() && top["dataset"].IsDefined() && top["dataset"].IsMap() && !top["dataset"]["train"]) {
    // The shared reader wants a train list; val's entries form a valid one, so the rest of the
    // dataset section is still checked by the one reader.
    U2PL_CHECK(top["dataset"]["val"], path << ": dataset.val: missing (required)");
    root["dataset"]["train"] = YAML::Clone(root["dataset"]["val"]);
  }
  c.data = parse_data_config(root, path, warnings);
  const YAML::Node trainer = top["trainer"];
  if (trainer.IsDefined() && trainer.IsMap() && trainer["preset"]) {
    const YAML::Node preset = trainer["preset"];
    U2PL_CHECK(preset.IsScalar() && (preset.Scalar() == "paper" || preset.Scalar() == "official"),
               path << ":" << preset.Mark().line + 1 << ": trainer.preset: expected paper or official");
    c.preset = preset.Scalar();
  }
  return c;
}

EvalOptions eval_options(const EvalConfig& c, std::optional<EvalMode> mode) {
  const CropConfig& crop = c.data.val.crop;
  const bool sized = crop.type != "none";
  EvalOptions o;
  o.mode = mode ? *mode
                : c.data.kind == DatasetKind::Cityscapes ? EvalMode::Sliding
                : sized ? EvalMode::Center : EvalMode::Whole;
  // SPEC §5: the Cityscapes window is 769 (stride ⌈769·2/3⌉ = 513), the VOC crop 513.
  const int fallback = o.mode == EvalMode::Sliding ? 769 : 513;
  o.crop_h = sized ? crop.size[0] : fallback;
  o.crop_w = sized ? crop.size[1] : fallback;
  o.label_pad = c.preset == "official" ? 0 : 255;
  return o;
}

ConfusionMatrix evaluate_split(const Dataset& ds, const LogitsFn& f, const NetConfig& cfg, const EvalOptions& opt,
                               const SaveOptions& save, const ProgressFn& progress, Shard shard) {
  const int K = ds.spec().num_classes;
  U2PL_CHECK(shard.count >= 1 && shard.index >= 0 && shard.index < shard.count,
             "evaluation shard " << shard.index << " of " << shard.count);
  U2PL_CHECK(cfg.num_classes == K, "the network predicts " << cfg.num_classes << " classes, the dataset has " << K);
  U2PL_CHECK(!save.label_ids || ds.spec().kind == DatasetKind::Cityscapes,
             "labelIds output is for Cityscapes only");
  for (const std::string& dir : {save.pred_dir, save.index_dir})
    if (!dir.empty()) fs::create_directories(dir);
  ConfusionMatrix cm(K, ds.spec().ignore_label);
  for (size_t i = size_t(shard.index); i < ds.size(); i += size_t(shard.count)) {
    const LoadedSample s = ds.load(i);
    const ScoredImage r = evaluate_image(f, cfg, s, opt);
    cm.add(r.pred, r.label);
    if (!save.pred_dir.empty() || !save.index_dir.empty()) {
      const int W = s.image.width, H = s.image.height;
      const std::vector<int32_t> pred = prediction_on_image(r, W, H);
      const std::string name = stem_of(ds.sample(i)) + ".png";
      if (!save.pred_dir.empty()) write_png((fs::path(save.pred_dir) / name).string(), colourise(pred, W, H, K));
      if (!save.index_dir.empty())
        write_png((fs::path(save.index_dir) / name).string(), index_image(pred, W, H, save.label_ids));
    }
    if (progress) progress(i + 1, ds.size(), cm);
  }
  return cm;
}

ConfusionMatrix score_saved(const Dataset& ds, const std::string& pred_dir, const ProgressFn& progress) {
  U2PL_CHECK(fs::is_directory(pred_dir), pred_dir << ": prediction folder missing");
  const int K = ds.spec().num_classes;
  ConfusionMatrix cm(K, ds.spec().ignore_label);
  for (size_t i = 0; i < ds.size(); ++i) {
    const LoadedSample s = ds.load(i);
    const std::string path = (fs::path(pred_dir) / (stem_of(ds.sample(i)) + ".png")).string();
    cm.add(read_index_png(path, s.image.width, s.image.height, K), s.label);
    if (progress) progress(i + 1, ds.size(), cm);
  }
  return cm;
}

std::vector<int32_t> read_index_png(const std::string& path, int width, int height, int num_classes) {
  std::ifstream f(path, std::ios::binary);
  U2PL_CHECK(f, path << ": missing (no prediction for this image)");
  unsigned char h[26] = {};  // signature (8), IHDR length and type (8), width, height, depth, colour type
  f.read(reinterpret_cast<char*>(h), sizeof h);
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  U2PL_CHECK(f.gcount() == sizeof h && std::equal(sig, sig + 8, h) && std::string(h + 12, h + 16) == "IHDR",
             path << ": not a PNG file");
  const uint32_t w = big_endian(h + 16), hh = big_endian(h + 20);
  const int depth = h[24], type = h[25];
  U2PL_CHECK(type == 0 && depth == 8, path << ": a " << depth << "-bit " << png_colour_type(type)
                                           << " PNG; expected an 8-bit single-channel (greyscale) index PNG");
  U2PL_CHECK(w == uint32_t(width) && hh == uint32_t(height),
             path << ": " << w << "x" << hh << ", expected the label's size " << width << "x" << height);
  const Image img = read_image(path, 1);
  std::vector<int32_t> out(img.pixels.begin(), img.pixels.end());
  for (size_t i = 0; i < out.size(); ++i)
    U2PL_CHECK(out[i] < num_classes, path << ": value " << out[i] << " at (x " << i % width << ", y " << i / width
                                          << ") is not a class index in [0, " << num_classes << ")");
  return out;
}

uint8_t cityscapes_label_id(int train_id) {
  static const std::vector<uint8_t> ids = [] {
    std::vector<uint8_t> inv(19, 0);
    for (int l = 255; l >= 0; --l)  // the smallest labelId of each trainId
      if (cityscapes_train_id(l) < 19) inv[cityscapes_train_id(l)] = static_cast<uint8_t>(l);
    return inv;
  }();
  U2PL_CHECK(train_id >= 0 && train_id < 19, "Cityscapes trainId " << train_id << " outside [0, 19)");
  return ids[train_id];
}

std::string format_scores(const Scores& s, const std::vector<std::string>& classes) {
  U2PL_CHECK(classes.size() == s.iou.size(), classes.size() << " class names for " << s.iou.size() << " classes");
  size_t width = 16;
  for (const auto& c : classes) width = std::max(width, c.size() + 2);
  std::ostringstream os;
  os << std::fixed << std::setprecision(2) << std::left;
  os << std::setw(int(width)) << "class" << std::right << std::setw(8) << "IoU" << std::setw(8) << "acc" << "\n";
  for (size_t c = 0; c < classes.size(); ++c)
    os << std::left << std::setw(int(width)) << classes[c] << std::right << std::setw(8) << 100 * s.iou[c]
       << std::setw(8) << 100 * s.acc[c] << "\n";
  os << std::string(width + 16, '-') << "\n";
  os << std::left << std::setw(int(width)) << "mIoU" << std::right << std::setw(8) << 100 * s.miou << "\n";
  os << std::left << std::setw(int(width)) << "pixel accuracy" << std::right << std::setw(8) << 100 * s.pixel_acc << "\n";
  os << std::left << std::setw(int(width)) << "mean accuracy" << std::right << std::setw(8) << 100 * s.mean_acc << "\n";
  return os.str();
}

void write_scores_json(const std::string& path, const Scores& s, const std::vector<std::string>& classes) {
  U2PL_CHECK(classes.size() == s.iou.size(), classes.size() << " class names for " << s.iou.size() << " classes");
  const nlohmann::json j = {{"miou", s.miou}, {"iou", s.iou}, {"pixel_acc", s.pixel_acc},
                            {"mean_acc", s.mean_acc}, {"classes", classes}};
  write_file_atomic(path, j.dump(2) + "\n");
}

void Progress::update(size_t done, size_t total, const ConfusionMatrix& cm) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done ? elapsed / double(done) * double(total - done) : 0;
  const double miou = 100 * score(cm).miou;
  if (terminal_) {
    const int bar = 30, filled = total ? int(bar * done / total) : bar;
    std::fprintf(out_, "\r[%s%s] %zu/%zu  mIoU %.2f  elapsed %s  ETA %s ", std::string(filled, '#').c_str(),
                 std::string(bar - filled, '.').c_str(), done, total, miou, clock_text(elapsed).c_str(),
                 clock_text(eta).c_str());
    if (done == total) std::fputc('\n', out_);
  } else if (done >= next_line_ || done == total) {
    std::fprintf(out_, "%zu/%zu images  mIoU so far %.2f  elapsed %s  ETA %s\n", done, total, miou,
                 clock_text(elapsed).c_str(), clock_text(eta).c_str());
    next_line_ = done + std::max<size_t>(1, total / 10);
  }
  std::fflush(out_);
}

}  // namespace u2pl
