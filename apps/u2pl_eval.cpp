// u2pl_eval: mIoU of trained weights on the configured val split (SPEC §5: VOC centre crop,
// Cityscapes sliding windows, or whole / flip / multi-scale on request), with per-class table,
// JSON summary and saved predictions; or, with --score, the same scores for saved index PNGs.
// The logic lives in u2pl/eval/evaluate.h and u2pl/eval/eval_report.h; this main parses, builds,
// loops.
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "engine/device_memory.h"
#include "engine/log.h"
#include "u2pl/eval/eval_report.h"
#include "u2pl/net/net_config.h"
#include "u2pl/net/weights.h"

using namespace u2pl;

namespace {

const char* const kUsage =
    "usage: u2pl_eval --config CFG --weights W [--device cpu|cuda] [--mode center|sliding|whole]\n"
    "                 [--flip] [--scales 0.75,1,1.25] [--json FILE] [--save-pred DIR]\n"
    "                 [--save-index DIR [--labelids]]\n"
    "       u2pl_eval --config CFG --score PRED_DIR [--json FILE]\n"
    "  --config      a U2PL config.yaml; dataset.val is evaluated\n"
    "  --weights     engine weights (.safetensors, see weights/README.md)\n"
    "  --device      cuda when a GPU is present, else cpu\n"
    "  --mode        default: sliding for Cityscapes (window 769, stride 513), else center\n"
    "                (val.crop.size) when the config crops val, else whole\n"
    "  --flip        also average the mirrored image's logits\n"
    "  --scales      average the logits over these image scales\n"
    "  --json        write {miou, iou, pixel_acc, mean_acc, classes} (fractions) to FILE\n"
    "  --save-pred   colourised predictions, <image file stem>.png\n"
    "  --save-index  single-channel class-index PNGs, <image file stem>.png\n"
    "  --labelids    Cityscapes: write labelIds instead of trainIds into --save-index\n"
    "  --score       score PRED_DIR/<image file stem>.png (8-bit index PNGs) without a model\n";

struct Args {
  std::string config, weights, json, score;
  std::optional<Device> device;  // default_device() when not given
  std::optional<EvalMode> mode;
  bool flip = false;
  std::vector<float> scales{1.0f};
  SaveOptions save;
};

std::vector<float> parse_scales(const std::string& s) {
  std::vector<float> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    size_t used = 0;
    float v = 0;
    try {
      v = std::stof(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    U2PL_CHECK(used == item.size() && used > 0 && v > 0, "--scales: '" << item << "' is not a positive number");
    out.push_back(v);
  }
  U2PL_CHECK(!out.empty(), "--scales needs at least one scale");
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (ArgReader r(argc, argv, kUsage); r.next();) {
    const std::string& k = r.key();
    if (k == "--config") a.config = r.value();
    else if (k == "--weights") a.weights = r.value();
    else if (k == "--device") a.device = parse_device(r.value());
    else if (k == "--mode") a.mode = parse_eval_mode(r.value());
    else if (k == "--flip") a.flip = true;
    else if (k == "--scales") a.scales = parse_scales(r.value());
    else if (k == "--json") a.json = r.value();
    else if (k == "--save-pred") a.save.pred_dir = r.value();
    else if (k == "--save-index") a.save.index_dir = r.value();
    else if (k == "--labelids") a.save.label_ids = true;
    else if (k == "--score") a.score = r.value();
    else if (k == "-h" || k == "--help") { std::cout << kUsage; std::exit(0); }
    else U2PL_FAIL("unknown argument " << k << "\n" << kUsage);
  }
  U2PL_CHECK(!a.config.empty(), "--config is required\n" << kUsage);
  U2PL_CHECK(a.score.empty() != a.weights.empty(), "give either --weights or --score\n" << kUsage);
  U2PL_CHECK(!a.save.label_ids || !a.save.index_dir.empty(), "--labelids needs --save-index");
  if (!a.device && a.score.empty()) a.device = default_device();
  return a;
}

void report(const Scores& s, const std::vector<std::string>& classes, const std::string& json) {
  std::cout << format_scores(s, classes);
  if (!json.empty()) {
    write_scores_json(json, s, classes);
    std::cout << "scores written to " << json << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  try {
    const Args a = parse(argc, argv);
    std::vector<std::string> warnings;
    const EvalConfig ec = load_eval_config(a.config, !a.score.empty(), &warnings);
    const Dataset ds(ec.data.val_spec(), true);
    Progress bar(stdout, isatty(STDOUT_FILENO) != 0);
    const ProgressFn progress = [&bar](size_t done, size_t total, const ConfusionMatrix& cm) {
      bar.update(done, total, cm);
    };
    if (!a.score.empty()) {
      for (const auto& w : warnings) U2PL_LOG("warning: " << w);
      std::cout << "scoring " << ds.size() << " predictions in " << a.score << "\n";
      report(score(score_saved(ds, a.score, progress)), ds.class_names(), a.json);
      return 0;
    }
    const NetConfig cfg = load_net_config(a.config, &warnings);
    for (const auto& w : warnings) U2PL_LOG("warning: " << w);
    EvalOptions opt = eval_options(ec, a.mode);
    opt.flip = a.flip;
    opt.scales = a.scales;
    U2plNet net(cfg);
    net.allocate(*a.device, 0, /*trainable=*/false);
    const WeightReport r = load_weights(net.params(), a.weights);
    U2PL_LOG("weights: " << r.loaded << " tensors from " << r.source);
    if (r.scope == WeightScope::Backbone)
      U2PL_LOG("warning: " << a.weights << " holds only the backbone; the decoder is untrained");
    std::cout << "evaluating " << ds.size() << " images of " << ec.data.val.data_list << ": "
              << eval_mode_name(opt.mode);
    if (opt.mode == EvalMode::Center)
      std::cout << " " << opt.crop_w << "x" << opt.crop_h << " (labels padded with " << opt.label_pad << ")";
    if (opt.mode == EvalMode::Sliding)
      std::cout << " window " << opt.crop_w << "x" << opt.crop_h << ", stride "
                << (opt.stride_w ? opt.stride_w : default_stride(opt.crop_w)) << "x"
                << (opt.stride_h ? opt.stride_h : default_stride(opt.crop_h));
    if (opt.flip) std::cout << ", flip";
    if (opt.scales.size() > 1 || opt.scales[0] != 1.0f) {
      std::cout << ", scales";
      for (size_t i = 0; i < opt.scales.size(); ++i) std::cout << (i ? "," : " ") << opt.scales[i];
    }
    std::cout << "\n";
    Context ctx(*a.device);
    const ConfusionMatrix cm = evaluate_split(ds, network_logits(ctx, net), cfg, opt, a.save, progress);
    report(score(cm), ds.class_names(), a.json);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "u2pl_eval: " << e.what() << "\n";
    return 1;
  }
}
