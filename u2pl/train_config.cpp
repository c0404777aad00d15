// Reads a whole U2PL config.yaml for training (see train_config.h): command-line overrides are set
// into the YAML tree before the strict parse, the preset fills the defaults, the file and the
// overrides win, and every resolved value is flattened to (dotted key, YAML value) pairs, which
// serve both the "differs from the preset" log and resolved_yaml. Tests: test_train_config.cpp.
#include "u2pl/train_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "data/yaml_section.h"
#include "engine/check.h"

namespace u2pl {
namespace {

using YAML::Node;
using Entries = std::vector<std::pair<std::string, Node>>;
constexpr double kInf = std::numeric_limits<double>::infinity();

const char* const kUnsupSwitches[] = {"scale_by_valid", "scale_mode", "label_pad", "teacher_copy_bn"};
const char* const kContraSwitches[] = {"anchor_rule", "prototype_low_valid", "negatives_label_mask",
                                       "queue_index_bug", "normalise_valid_classes"};

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

// Sets root[a][b]...[z] = value for key "a.b....z", creating the maps on the way.
void set_path(Node root, const std::string& key, const Node& value, const std::string& what) {
  Node n = root;
  size_t start = 0;
  for (size_t dot = key.find('.'); dot != std::string::npos; start = dot + 1, dot = key.find('.', start)) {
    const std::string part = key.substr(start, dot - start);
    const Node& cn = n;
    if (!cn[part].IsDefined() || cn[part].IsNull()) n[part] = Node(YAML::NodeType::Map);
    else if (!cn[part].IsMap()) throw Error(what + ": " + key.substr(0, dot) + " is not a map");
    Node next = n[part];
    n.reset(next);
  }
  n[key.substr(start)] = value;
}

std::string num(double v) {
  for (int p = 6;; ++p) {
    std::ostringstream os;
    os.precision(p);
    os << v;
    if (p >= 9 || float(std::strtod(os.str().c_str(), nullptr)) == float(v)) return os.str();
  }
}
Node yes(bool b) { return Node(b ? "True" : "False"); }
template <class T, size_t N>
Node seq(const std::array<T, N>& a) {
  Node n(YAML::NodeType::Sequence);
  n.SetStyle(YAML::EmitterStyle::Flow);
  for (const T& v : a) n.push_back(Node(num(v)));
  return n;
}
std::string text(const Node& v) {
  YAML::Emitter em;
  em << YAML::Flow << v;
  return em.c_str();
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

bool has_public_key(const Node& section, const char* const* ours, size_t n) {
  for (const auto& kv : section) {
    bool mine = false;
    for (size_t i = 0; i < n; ++i) mine = mine || kv.first.Scalar() == ours[i];
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
}

void read_unsup(const Section& tr, TrainConfig& c, std::vector<std::string>* log) {
  if (!tr.has("unsupervised")) return;
  const Section u = tr.child("unsupervised", {"TTA", "drop_percent", "apply_aug", "loss_weight", "scale_by_valid",
                                              "scale_mode", "label_pad", "teacher_copy_bn"});
  c.unsup.enabled = has_public_key(tr.at("unsupervised"), kUnsupSwitches, 4);
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
}

void read_contrastive(const Section& tr, TrainConfig& c, std::vector<std::string>* log) {
  if (!tr.has("contrastive")) return;
  const Section s = tr.child(
      "contrastive", {"negative_high_entropy", "low_rank", "high_rank", "current_class_threshold",
                      "current_class_negative_threshold", "unsupervised_entropy_ignore", "low_entropy_threshold",
                      "num_negatives", "num_queries", "temperature", "loss_weight", "binary", "anchor_ema",
                      "queue_size", "queue_size_background", "anchor_rule", "prototype_low_valid",
                      "negatives_label_mask", "queue_index_bug", "normalise_valid_classes"});
  auto& k = c.contrastive;
  k.enabled = has_public_key(tr.at("contrastive"), kContraSwitches, 5);
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
}

void read_trainer(const Section& top, TrainConfig& c, std::vector<std::string>* log) {
  top.need("trainer");
  const Section tr = top.child("trainer", {"epochs", "sup_only_epoch", "eval_on", "start_epochs", "optimizer",
                                           "lr_scheduler", "unsupervised", "contrastive", "preset", "device",
                                           "seed", "eval_interval"});
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
    const Section s = top.child("saver", {"snapshot_dir", "pretrain", "auto_resume", "run_dir"});
    s.get("snapshot_dir", c.snapshot_dir);
    get_any_string(s, "pretrain", c.pretrain);
    s.get("auto_resume", c.auto_resume);
    s.get("run_dir", c.run_dir);
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
  if (k.low_rank >= c.net.num_classes)
    s.fail_at("low_rank", std::to_string(k.low_rank) + " >= net.num_classes " + std::to_string(c.net.num_classes) +
                              " (no class could be a negative)");
  if (k.high_rank > c.net.num_classes) {
    if (log)
      log->push_back("trainer.contrastive.high_rank " + std::to_string(k.high_rank) + " clamped to net.num_classes " +
                     std::to_string(c.net.num_classes));
    c.contrastive.high_rank = c.net.num_classes;
  }
  if (c.contrastive.high_rank <= k.low_rank)
    s.fail_at("high_rank", "expected high_rank > low_rank " + std::to_string(k.low_rank));
}

void add_data_net(const TrainConfig& c, Entries& e) {
  const DataConfig& d = c.data;
  e.emplace_back("dataset.type", Node(d.type));
  auto paths = [&](const std::string& at, const std::string& root, const std::string& list, const CropConfig& crop) {
    e.emplace_back(at + ".data_root", Node(root));
    e.emplace_back(at + ".data_list", Node(list));
    if (crop.type == "none") return;
    e.emplace_back(at + ".crop.type", Node(crop.type));
    e.emplace_back(at + ".crop.size", seq(crop.size));
  };
  paths("dataset.train", d.train.data_root, d.train.data_list, d.train.crop);
  e.emplace_back("dataset.train.flip", yes(d.train.flip));
  e.emplace_back("dataset.train.rand_resize", seq(d.train.rand_resize));
  paths("dataset.val", d.val.data_root, d.val.data_list, d.val.crop);
  e.emplace_back("dataset.batch_size", Node(d.batch_size));
  if (d.n_sup > 0) e.emplace_back("dataset.n_sup", Node(d.n_sup));
  e.emplace_back("dataset.workers", Node(d.workers));
  e.emplace_back("dataset.mean", seq(d.mean));
  e.emplace_back("dataset.std", seq(d.std));
  e.emplace_back("dataset.ignore_label", Node(d.ignore_label));
  const NetConfig& n = c.net;
  e.emplace_back("net.num_classes", Node(n.num_classes));
  e.emplace_back("net.sync_bn", yes(n.sync_bn));
  e.emplace_back("net.ema_decay", Node(num(n.ema_decay)));
  e.emplace_back("net.encoder.type", Node("u2pl.models.resnet.resnet" + std::to_string(n.depth)));
  const std::string ek = "net.encoder.kwargs.";
  e.emplace_back(ek + "multi_grid", yes(n.multi_grid));
  e.emplace_back(ek + "zero_init_residual", yes(n.zero_init_residual));
  Node rs(YAML::NodeType::Sequence);
  for (bool b : n.replace_stride_with_dilation) rs.push_back(yes(b));
  e.emplace_back(ek + "replace_stride_with_dilation", rs);
  e.emplace_back(ek + "stem", Node(n.stem));
  e.emplace_back(ek + "width_divisor", Node(n.width_divisor));
  if (!n.weights.empty()) e.emplace_back(ek + "weights", Node(n.weights));
  e.emplace_back("net.decoder.type", Node("u2pl.models.decoder.dec_deeplabv3_plus"));
  e.emplace_back("net.decoder.kwargs.inner_planes", Node(n.inner_planes));
  Node dl(YAML::NodeType::Sequence);
  for (int v : n.dilations) dl.push_back(Node(v));
  e.emplace_back("net.decoder.kwargs.dilations", dl);
  e.emplace_back("net.decoder.kwargs.rep_head", yes(n.rep_head));
  if (!n.aux) return;
  e.emplace_back("net.aux_loss.aux_plane", Node(n.aux_plane));
  e.emplace_back("net.aux_loss.loss_weight", Node(num(n.aux_weight)));
}

// Every resolved value as (dotted key, YAML value), in the order resolved_yaml writes them.
Entries entries(const TrainConfig& c) {
  Entries e;
  add_data_net(c, e);
  const std::string t = "trainer.";
  e.emplace_back(t + "preset", Node(c.preset));
  e.emplace_back(t + "device", Node(c.device));
  e.emplace_back(t + "seed", Node(c.seed));
  e.emplace_back(t + "epochs", Node(c.epochs));
  e.emplace_back(t + "sup_only_epoch", Node(c.sup_only_epoch));
  e.emplace_back(t + "eval_on", yes(c.eval_on));
  e.emplace_back(t + "eval_interval", Node(c.eval_interval));
  e.emplace_back(t + "start_epochs", Node(c.start_epochs));
  e.emplace_back(t + "optimizer.type", Node("SGD"));
  e.emplace_back(t + "optimizer.kwargs.lr", Node(num(c.lr)));
  e.emplace_back(t + "optimizer.kwargs.momentum", Node(num(c.momentum)));
  e.emplace_back(t + "optimizer.kwargs.weight_decay", Node(num(c.weight_decay)));
  e.emplace_back(t + "lr_scheduler.mode", Node("poly"));
  e.emplace_back(t + "lr_scheduler.kwargs.power", Node(num(c.lr_power)));
  const std::string u = t + "unsupervised.", k = t + "contrastive.";
  if (c.unsup.enabled) {
    e.emplace_back(u + "drop_percent", Node(num(c.unsup.drop_percent)));
    e.emplace_back(u + "apply_aug", Node(c.unsup.apply_aug));
    e.emplace_back(u + "loss_weight", Node(num(c.unsup.loss_weight)));
  }
  const PresetSwitches& s = c.switches;
  e.emplace_back(u + "scale_by_valid", yes(s.scale_by_valid));
  e.emplace_back(u + "scale_mode", Node(s.scale_mode == AugmentSpec::ScaleMode::Uniform ? "uniform" : "two_halves"));
  e.emplace_back(u + "label_pad", Node(s.label_pad));
  e.emplace_back(u + "teacher_copy_bn", yes(s.teacher_copy_bn));
  const auto& q = c.contrastive;
  if (q.enabled) {
    e.emplace_back(k + "negative_high_entropy", yes(q.negative_high_entropy));
    e.emplace_back(k + "low_rank", Node(q.low_rank));
    e.emplace_back(k + "high_rank", Node(q.high_rank));
    e.emplace_back(k + "current_class_threshold", Node(num(q.current_class_threshold)));
    e.emplace_back(k + "current_class_negative_threshold", Node(num(q.current_class_negative_threshold)));
    e.emplace_back(k + "low_entropy_threshold", Node(num(q.low_entropy_threshold)));
    e.emplace_back(k + "num_negatives", Node(q.num_negatives));
    e.emplace_back(k + "num_queries", Node(q.num_queries));
    e.emplace_back(k + "temperature", Node(num(q.temperature)));
    e.emplace_back(k + "loss_weight", Node(num(q.loss_weight)));
    e.emplace_back(k + "binary", yes(q.binary));
    e.emplace_back(k + "anchor_ema", yes(q.anchor_ema));
    e.emplace_back(k + "queue_size", Node(q.queue_size));
    e.emplace_back(k + "queue_size_background", Node(q.queue_size_background));
  }
  e.emplace_back(k + "anchor_rule", Node(s.anchor_rule == LowMaskRule::Reliable ? "reliable" : "lowest_alpha"));
  e.emplace_back(k + "prototype_low_valid", yes(s.prototype_low_valid));
  e.emplace_back(k + "negatives_label_mask", yes(s.negatives_label_mask));
  e.emplace_back(k + "queue_index_bug", yes(s.queue_index_bug));
  e.emplace_back(k + "normalise_valid_classes", yes(s.normalise_valid_classes));
  e.emplace_back("saver.snapshot_dir", Node(c.snapshot_dir));
  e.emplace_back("saver.pretrain", Node(c.pretrain));
  e.emplace_back("saver.auto_resume", yes(c.auto_resume));
  if (!c.run_dir.empty()) e.emplace_back("saver.run_dir", Node(c.run_dir));
  e.emplace_back("criterion.type", Node(c.criterion));
  e.emplace_back("criterion.kwargs.use_weight", yes(c.use_weight));
  e.emplace_back("criterion.kwargs.thresh", Node(num(c.ohem_thresh)));
  e.emplace_back("criterion.kwargs.min_kept", Node(c.ohem_min_kept));
  return e;
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
  return p;
}

UnsupOptions TrainConfig::unsup_options(double percent) const { return UnsupOptions{percent, switches.scale_by_valid}; }

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides,
                              std::vector<std::string>* log) {
  Node root = load_yaml_file(path);
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
    set_path(root, ov.substr(0, eq), unmarked(value), what);
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
    preset.contrastive.high_rank = std::min(preset.contrastive.high_rank, c.net.num_classes);
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
  const Entries base = entries(preset), got = entries(c);
  for (const auto& [key, value] : got) {
    std::string was = "(absent)";
    for (const auto& b : base)
      if (b.first == key) was = text(b.second);
    if (text(value) == was) continue;
    bool cli = false;
    for (const std::string& k : keys) cli = cli || within(key, k);
    const bool no_preset = within(key, "dataset") || within(key, "net");
    log->push_back(key + " = " + text(value) + " (" + (cli ? "command line" : "file") + "; " +
                   (no_preset ? "file" : "preset " + c.preset) + ": " + was + ")");
  }
  return c;
}

std::string resolved_yaml(const TrainConfig& c) {
  Node root(YAML::NodeType::Map);
  for (const auto& [key, value] : entries(c)) set_path(root, key, value, "resolved_yaml");
  YAML::Emitter em;
  em << root;
  return std::string(em.c_str()) + "\n";
}

}  // namespace u2pl
