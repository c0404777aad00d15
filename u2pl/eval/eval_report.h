// Evaluation of a whole val split and its reports: the loop that scores (and optionally saves)
// every prediction, scoring saved index PNGs without a model, the per-class table, the JSON
// summary and a progress display. Used by apps/u2pl_eval.cpp (and the trainer's validation).
// Covered by tests/test_evaluate.cpp.
#pragma once
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "data/data_config.h"
#include "u2pl/eval/evaluate.h"
#include "u2pl/eval/metrics.h"

namespace u2pl {

// What evaluation reads from a config.yaml: the dataset section (data/data_config.h) and
// trainer.preset (paper | official, default paper). With `val_only` (scoring saved predictions)
// dataset.train may be absent: only dataset.type, dataset.val and net.num_classes are needed.
struct EvalConfig {
  DataConfig data;
  std::string preset = "paper";
};
EvalConfig load_eval_config(const std::string& path, bool val_only, std::vector<std::string>* warnings);
// The protocol (SPEC §5): `mode`, or by default sliding windows for Cityscapes, else the centre
// crop when the config crops val, else the whole image. Crop and window sizes come from
// val.crop.size (unset: 769 for windows, 513 for crops); labels are padded with 0 under
// `official`, 255 under `paper`.
EvalOptions eval_options(const EvalConfig& c, std::optional<EvalMode> mode = std::nullopt);

struct SaveOptions {
  std::string pred_dir;    // colourised predictions, <image file stem>.png
  std::string index_dir;   // single-channel class-index PNGs, <image file stem>.png
  bool label_ids = false;  // Cityscapes: index PNGs hold labelIds instead of trainIds
};

// Called after each image with (done, total, confusion matrix so far).
using ProgressFn = std::function<void(size_t, size_t, const ConfusionMatrix&)>;

// The entries one of several processes scores: those i with i % count == index.
struct Shard {
  int index = 0, count = 1;
};

// Every entry of `ds` (of the shard) through evaluate_image, accumulated into one confusion
// matrix; shards' matrices sum to the whole split's.
ConfusionMatrix evaluate_split(const Dataset& ds, const LogitsFn& f, const NetConfig& cfg, const EvalOptions& opt,
                               const SaveOptions& save, const ProgressFn& progress, Shard shard = {});
// Scores PRED_DIR/<image file stem>.png against each label as stored (no padding).
ConfusionMatrix score_saved(const Dataset& ds, const std::string& pred_dir, const ProgressFn& progress);

// An 8-bit single-channel index PNG of exactly width × height with values in [0, num_classes);
// anything else throws naming the file (and, for values, the pixel).
std::vector<int32_t> read_index_png(const std::string& path, int width, int height, int num_classes);
// Cityscapes trainId (0-18) -> labelId (the official benchmark's id); throws on other values.
uint8_t cityscapes_label_id(int train_id);

// "class  IoU" rows (percent) and the summary lines.
std::string format_scores(const Scores& s, const std::vector<std::string>& classes);
// {"miou", "iou" (per class, class order), "pixel_acc", "mean_acc", "classes"}, fractions in
// [0, 1], written atomically.
void write_scores_json(const std::string& path, const Scores& s, const std::vector<std::string>& classes);

// On a terminal a bar redrawn in place with the ETA; otherwise a line at every tenth of the split.
class Progress {
 public:
  Progress(std::FILE* out, bool terminal) : out_(out), terminal_(terminal) {}
  void update(size_t done, size_t total, const ConfusionMatrix& cm);

 private:
  std::FILE* out_;
  bool terminal_;
  size_t next_line_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace u2pl
