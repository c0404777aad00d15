// Reads a whole U2PL config.yaml for training (see train_config.h): command-line overrides are set
// into the YAML tree before the strict parse, the preset fills the defaults, the file and the
// overrides win, and the flattened values (u2pl/train/train_config_entries.h) of the result and of
// the preset give the "differs from the preset" log. Tests: test_train_config.cpp.
#include "u2pl/train/train_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <limits>

#include "data/yaml_section.h"
#include "engine/check.h"
#include "u2pl/train/train_config_entries.h"

namespace u2pl {
namespace {

using YAML::Node;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Our keys in the public sections: alone they do not turn the loss on.
const char* const kUnsupSwitches[] = {"scale_by_valid", "scale_mode", "label_pad", "teacher_copy_bn", "dpa",
                                      "score_pseudo_labels"};
const char* const kContraSwitches[] = {"anchor_rule", "prototype_low_valid", "negatives_label_mask", "queue_index_bug",
                                       "normalise_valid_classes", "memory_bank", "prt", "negative_source",
                                       "divide_by_replicas"};

// A copy without source marks, so that errors about it carry no line of the file.
Node unmarked(const Node& v) {
  if (v.IsScalar()) {
    Node s(v.Scalar());
    if (v.Tag() == "!") s.SetTag("!");
    return s;
  }
  Node out(v.IsSequence() ? YAML::NodeType::Sequence : v.IsMap() ? YAML::NodeType::Map : YAML::NodeType::Null);
  if (v.IsSequence())
    for (const Node& e : v) out.push_back(unmarked(e));
  if (v.IsMap())
    for (const auto& kv : v) out[kv.first.Scalar()] = unmarked(kv.second);
  return out;
}

// Optional string that may be empty (saver.pretrain: '').
void get_any_string(const Section& s, const char* name, std::string& out) {
  if (!s.has(name)) return;
  if (!s.at(name).IsScalar()) s.fail_at(name, "expected a string, got " + describe(s.at(name)));
  out = s.at(name).Scalar();
}

void get_choice(const Section& s, const char* name, std::string& out, std::initializer_list<const char*> allowed) {
  s.get(name, out);
  std::string names;
  for (const char* a : allowed) {
    if (out == a) return;
    names += (names.empty() ? "" : " | ") + std::string(a);
  }
  s.fail_at(name, "expected " + names + ", got '" + out + "'");
}

template <size_t N>
bool has_public_key(const Node& section, const char* const (&ours)[N]) {
  for (const auto& kv : section) {
    bool mine = false;
    for (const char* o : ours) mine = mine || kv.first.Scalar() == o;
    if (!mine) return true;
  }
  return false;
}

void apply_preset(TrainConfig& c) {
  const bool official = c.preset == "official";
  const bool city = c.data.kind == DatasetKind::Cityscapes;
  c.sup_only_epoch = city ? (official ? 0 : 20) : 1;
  const ContrastiveParams p = official ? ContrastiveParams::official(2) : ContrastiveParams::paper(2);
  c.contrastive.num_queries = p.num_queries;
  c.contrastive.num_negatives = p.num_negatives;
  c.contrastive.loss_weight = official ? 1.f : 0.1f;
  PresetSwitches& s = c.switches;
  s.scale_by_valid = official;
  s.scale_mode = official ? AugmentSpec::ScaleMode::TwoHalves : AugmentSpec::ScaleMode::Uniform;
  s.label_pad = official ? 0 : 255;
  s.teacher_copy_bn = !official;
  s.anchor_rule = official ? LowMaskRule::LowestAlpha : LowMaskRule::Reliable;
  s.prototype_low_valid = p.prototype_low_valid;
  s.negatives_label_mask = p.negatives_label_mask;
  s.queue_index_bug = p.queue_index_bug;
  s.normalise_valid_classes = p.normalise_valid_classes;
  s.divide_by_replicas = official;
}

void read_unsup(const Section& tr, TrainConfig& c, std::vector<std::string>* log) {
  if (!tr.has("unsupervised")) return;
  const Section u = tr.child("unsupervised", {"TTA", "drop_percent", "apply_aug", "loss_weight", "scale_by_valid",
                                              "scale_mode", "label_pad", "teacher_copy_bn", "dpa",
                                              "score_pseudo_labels"});
  c.unsup.enabled = has_public_key(tr.at("unsupervised"), kUnsupSwitches);
  bool tta = false;
  u.get("TTA", tta);
  u.warn_unused("TTA", log);
  u.get("drop_percent", c.unsup.drop_percent, 0, 100);
  if (u.has("apply_aug")) get_choice(u, "apply_aug", c.unsup.apply_aug, {"cutmix", "none"});
  u.get("loss_weight", c.unsup.loss_weight, 0, kInf);
  u.get("scale_by_valid", c.switches.scale_by_valid);
  if (u.has("scale_mode")) {
    std::string m;
    get_choice(u, "scale_mode", m, {"uniform", "two_halves"});
    c.switches.scale_mode = m == "uniform" ? AugmentSpec::ScaleMode::Uniform : AugmentSpec::ScaleMode::TwoHalves;
  }
  u.get("label_pad", c.switches.label_pad, 0, 255);
  u.get("teacher_copy_bn", c.switches.teacher_copy_bn);
  u.get("dpa", c.unsup.dpa);
  u.get("score_pseudo_labels", c.unsup.score_pseudo_labels);
}

void read_contrastive(const Section& tr, TrainConfig& c, std::vector<std::string>* log) {
  if (!tr.has("contrastive")) return;
  const Section s = tr.child(
      "contrastive", {"negative_high_entropy", "low_rank", "high_rank", "current_class_threshold",
                      "current_class_negative_threshold", "unsupervised_entropy_ignore", "low_entropy_threshold",
                      "num_negatives", "num_queries", "temperature", "loss_weight", "binary", "anchor_ema",
                      "queue_size", "queue_size_background", "anchor_rule", "prototype_low_valid",
                      "negatives_label_mask", "queue_index_bug", "normalise_valid_classes", "memory_bank", "prt",
                      "negative_source", "divide_by_replicas"});
  auto& k = c.contrastive;
  k.enabled = has_public_key(tr.at("contrastive"), kContraSwitches);
  s.get("negative_high_entropy", k.negative_high_entropy);
  s.get("low_rank", k.low_rank, 0);
  s.get("high_rank", k.high_rank, 1);
  s.get("current_class_threshold", k.current_class_threshold, 0, 1);
  s.get("current_class_negative_threshold", k.current_class_negative_threshold, 0, 1);
  if (s.has("unsupervised_entropy_ignore"))
    to_number(s.file(), s.at("unsupervised_entropy_ignore"), s.key_of("unsupervised_entropy_ignore"));
  s.warn_unused("unsupervised_entropy_ignore", log);
  s.get("low_entropy_threshold", k.low_entropy_threshold, 0, 100);
  s.get("num_negatives", k.num_negatives, 1);
  s.get("num_queries", k.num_queries, 1);
  s.get("temperature", k.temperature, 1e-12, kInf);
  s.get("loss_weight", k.loss_weight, 0, kInf);
  s.get("binary", k.binary);
  s.get("anchor_ema", k.anchor_ema);
  s.get("queue_size", k.queue_size, 1);
  s.get("queue_size_background", k.queue_size_background, 1);
  if (s.has("anchor_rule")) {
    std::string r;
    get_choice(s, "anchor_rule", r, {"reliable", "lowest_alpha"});
    c.switches.anchor_rule = r == "reliable" ? LowMaskRule::Reliable : LowMaskRule::LowestAlpha;
  }
  s.get("prototype_low_valid", c.switches.prototype_low_valid);
  s.get("negatives_label_mask", c.switches.negatives_label_mask);
  s.get("queue_index_bug", c.switches.queue_index_bug);
  s.get("normalise_valid_classes", c.switches.normalise_valid_classes);
  s.get("divide_by_replicas", c.switches.divide_by_replicas);
  s.get("memory_bank", k.memory_bank);
  s.get("prt", k.prt);
  if (s.has("negative_source")) {
    std::string n;
    get_choice(s, "negative_source", n, {"unreliable", "reliable", "all"});
    k.negative_source = n == "unreliable" ? NegativeSource::Unreliable
                        : n == "reliable" ? NegativeSource::Reliable
                                          : NegativeSource::All;
  }
}

void read_trainer(const Section& top, TrainConfig& c, std::vector<std::string>* log) {
  top.need("trainer");
  const Section tr = top.child("trainer", {"epochs", "sup_only_epoch", "eval_on", "start_epochs", "optimizer",
                                           "lr_scheduler", "unsupervised", "contrastive", "preset", "device",
                                           "seed", "eval_interval", "deterministic", "replicas", "memory",
                                           "conv_workspace_mib"});
  tr.need("epochs");
  tr.get("epochs", c.epochs, 1);
  tr.get("sup_only_epoch", c.sup_only_epoch, 0);
  tr.get("eval_on", c.eval_on);
  tr.get("start_epochs", c.start_epochs, 0);
  if (tr.has("device")) get_choice(tr, "device", c.device, {"cpu", "cuda", "auto"});
  int seed = 0;
  tr.get("seed", seed, 0);
  c.seed = uint64_t(seed);
  tr.get("eval_interval", c.eval_interval, 1);
  tr.get("deterministic", c.deterministic);
  tr.get("replicas", c.replicas, 1, 1024);
  c.replicas_given = tr.has("replicas");
  if (tr.has("memory")) get_choice(tr, "memory", c.memory, {"auto", "keep", "recompute_bn", "recompute_blocks"});
  tr.get("conv_workspace_mib", c.conv_workspace_mib, 0, 1 << 20);

  tr.need("optimizer");
  const Section opt = tr.child("optimizer", {"type", "kwargs"});
  opt.need("type");
  std::string type;
  get_choice(opt, "type", type, {"SGD"});
  opt.need("kwargs");
  const Section kw = opt.child("kwargs", {"lr", "momentum", "weight_decay"});
  kw.need("lr");
  kw.get("lr", c.lr, 0, kInf);
  kw.get("momentum", c.momentum, 0, 1);
  kw.get("weight_decay", c.weight_decay, 0, kInf);

  tr.need("lr_scheduler");
  const Section sch = tr.child("lr_scheduler", {"mode", "kwargs"});
  sch.need("mode");
  get_choice(sch, "mode", type, {"poly"});
  if (sch.has("kwargs")) sch.child("kwargs", {"power"}).get("power", c.lr_power, 0, kInf);

  read_unsup(tr, c, log);
  read_contrastive(tr, c, log);
}

void read_saver_criterion(const Section& top, TrainConfig& c) {
  if (top.has("saver")) {
    const Section s = top.child("saver", {"snapshot_dir", "pretrain", "auto_resume", "run_dir", "save_memory_bank"});
    s.get("snapshot_dir", c.snapshot_dir);
    get_any_string(s, "pretrain", c.pretrain);
    s.get("auto_resume", c.auto_resume);
    s.get("run_dir", c.run_dir);
    s.get("save_memory_bank", c.save_memory_bank);
  }
  if (top.has("criterion")) {
    const Section s = top.child("criterion", {"type", "kwargs"});
    if (s.has("type")) get_choice(s, "type", c.criterion, {"CELoss", "ohem"});
    if (!s.has("kwargs")) return;
    const Section kw = s.child("kwargs", {"use_weight", "thresh", "min_kept"});
    kw.get("use_weight", c.use_weight);
    kw.get("thresh", c.ohem_thresh, 0, 1);
    kw.get("min_kept", c.ohem_min_kept, 0);
  }
}

void validate(const Section& top, TrainConfig& c, std::vector<std::string>* log) {
  const auto& k = c.contrastive;
  if (!k.enabled) return;
  const Section tr(top.file(), top.at("trainer"), "trainer");
  const Section s(top.file(), tr.at("contrastive"), "trainer.contrastive");
  if (k.loss_weight > 0 && !c.net.rep_head)
    tr.fail_at("contrastive", "the contrastive loss needs the representation head, but "
                              "net.decoder.kwargs.rep_head is False (set it True or loss_weight 0)");
  // Few classes: adapt the ranks and say so (u2pl/losses/contrastive.h).
  for (const std::string& line : fit_ranks(c.net.num_classes, c.contrastive.low_rank, c.contrastive.high_rank))
    if (log) log->push_back("trainer.contrastive." + line);
  if (c.contrastive.high_rank <= c.contrastive.low_rank)
    s.fail_at("high_rank", "expected high_rank > low_rank " + std::to_string(c.contrastive.low_rank));
}

bool within(const std::string& key, const std::string& path) {
  return key == path || key.compare(0, path.size() + 1, path + ".") == 0;
}

}  // namespace

ContrastiveParams TrainConfig::contrastive_params() const {
  ContrastiveParams p = ContrastiveParams::paper(net.num_classes);
  p.num_queries = contrastive.num_queries;
  p.num_negatives = contrastive.num_negatives;
  p.temperature = contrastive.temperature;
  p.delta_p = contrastive.current_class_threshold;
  p.delta_n = contrastive.current_class_negative_threshold;
  p.low_rank = contrastive.low_rank;
  p.high_rank = contrastive.high_rank;
  p.prototype_low_valid = switches.prototype_low_valid;
  p.negatives_label_mask = switches.negatives_label_mask;
  p.queue_index_bug = switches.queue_index_bug;
  p.normalise_valid_classes = switches.normalise_valid_classes;
  p.binary = contrastive.binary;
  p.memory_bank = contrastive.memory_bank;
  p.prt = contrastive.prt;
  p.negative_source = contrastive.negative_source;
  return p;
}

UnsupOptions TrainConfig::unsup_options(double percent) const { return UnsupOptions{percent, switches.scale_by_valid}; }

double TrainConfig::contrastive_weight() const {
  return switches.divide_by_replicas ? double(contrastive.loss_weight) / replicas : double(contrastive.loss_weight);
}

double TrainConfig::alpha_at(double alpha0, int epoch) const {
  U2PL_CHECK(epoch >= 0 && epoch <= epochs, "alpha_t: epoch " << epoch << " outside [0, " << epochs << "]");
  // the public code: alpha0 * (1 - epoch / epochs), in float64
  return unsup.dpa ? alpha0 * (1.0 - double(epoch) / double(epochs)) : alpha0;
}

double TrainConfig::unsup_percent_at(int epoch) const {
  return 100.0 - alpha_at(100.0 - double(unsup.drop_percent), epoch);
}

double TrainConfig::contrastive_alpha_at(int epoch) const {
  return alpha_at(double(contrastive.low_entropy_threshold), epoch);
}

namespace {

TrainConfig load_from(Node root, const std::string& path, const std::vector<std::string>& overrides,
                      std::vector<std::string>* log) {
  const Node file_root = YAML::Clone(root);
  std::vector<std::string> keys;
  for (const std::string& ov : overrides) {
    const std::string what = "command line '" + ov + "'";
    const size_t eq = ov.find('=');
    if (eq == std::string::npos || eq == 0) throw Error(what + ": expected section.key=value");
    Node value;
    try {
      value = YAML::Load(ov.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw Error(what + ": malformed value: " + e.msg);
    }
    if (!root.IsMap()) throw Error(path + ": expected a map at the top");
    set_yaml_path(root, ov.substr(0, eq), unmarked(value), what);
    keys.push_back(ov.substr(0, eq));
  }
  TrainConfig c, preset;
  c.file = path;
  try {
    const Section top(path, root, "");
    c.data = parse_data_config(root, path, log);
    c.net = parse_net_config(root, path, log);
    top.need("trainer");
    const Section tr(path, top.at("trainer"), "trainer");
    if (tr.has("preset")) get_choice(tr, "preset", c.preset, {"paper", "official"});
    apply_preset(c);
    preset = c;
    read_trainer(top, c, log);
    read_saver_criterion(top, c);
    validate(top, c, log);
    preset.unsup.enabled = c.unsup.enabled;
    preset.contrastive.enabled = c.contrastive.enabled;
    fit_ranks(c.net.num_classes, preset.contrastive.low_rank, preset.contrastive.high_rank);
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (size_t i = 0; i < keys.size(); ++i)
      for (const char* after : {":", ".", "["})
        if (msg.find(": " + keys[i] + after) != std::string::npos)
          throw Error("command line '" + overrides[i] + "': " + msg);
    throw;
  }
  if (!log) return c;
  if (!keys.empty()) {  // dataset and net have no preset: their baseline is the file
    try {
      preset.data = parse_data_config(file_root, path);
      preset.net = parse_net_config(file_root, path);
    } catch (const Error&) {  // the file alone is invalid: compare with the resolved values
    }
  }
  const ConfigEntries base = config_entries(preset), got = config_entries(c);
  for (const auto& [key, value] : got) {
    std::string was = "(absent)";
    for (const auto& b : base)
      if (b.first == key) was = yaml_text(b.second);
    if (yaml_text(value) == was) continue;
    bool cli = false;
    for (const std::string& k : keys) cli = cli || within(key, k);
    const bool no_preset = within(key, "dataset") || within(key, "net");
    log->push_back(key + " = " + yaml_text(value) + " (" + (cli ? "command line" : "file") + "; " +
                   (no_preset ? "file" : "preset " + c.preset) + ": " + was + ")");
  }
  return c;
}

}  // namespace

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides,
                              std::vector<std::string>* log) {
  return load_from(load_yaml_file(path), path, overrides, log);
}

TrainConfig load_train_config_text(const std::string& text, const std::string& name,
                                   const std::vector<std::string>& overrides, std::vector<std::string>* log) {
  return load_from(load_yaml_text(text, name), name, overrides, log);
}

}  // namespace u2pl
