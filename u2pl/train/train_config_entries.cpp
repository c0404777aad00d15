// Flattening the resolved training config (u2pl/train/train_config_entries.h) and resolved_yaml().
// Tests: test_train_config.cpp.
#include "u2pl/train/train_config_entries.h"

#include <cstdlib>
#include <sstream>

#include "engine/check.h"

namespace u2pl {

using YAML::Node;

void set_yaml_path(Node root, const std::string& key, const Node& value, const std::string& what) {
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

std::string yaml_text(const Node& v) {
  YAML::Emitter em;
  em << YAML::Flow << v;
  return em.c_str();
}

namespace {

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

void add_data_net(const TrainConfig& c, ConfigEntries& e) {
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

}  // namespace

ConfigEntries config_entries(const TrainConfig& c) {
  ConfigEntries e;
  add_data_net(c, e);
  const std::string t = "trainer.";
  e.emplace_back(t + "preset", Node(c.preset));
  e.emplace_back(t + "device", Node(c.device));
  e.emplace_back(t + "seed", Node(c.seed));
  e.emplace_back(t + "epochs", Node(c.epochs));
  e.emplace_back(t + "sup_only_epoch", Node(c.sup_only_epoch));
  e.emplace_back(t + "eval_on", yes(c.eval_on));
  e.emplace_back(t + "eval_interval", Node(c.eval_interval));
  e.emplace_back(t + "deterministic", yes(c.deterministic));
  e.emplace_back(t + "replicas", Node(c.replicas));
  e.emplace_back(t + "memory", Node(c.memory));
  e.emplace_back(t + "conv_workspace_mib", Node(c.conv_workspace_mib));
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
  e.emplace_back(u + "dpa", yes(c.unsup.dpa));
  e.emplace_back(u + "score_pseudo_labels", yes(c.unsup.score_pseudo_labels));
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
  e.emplace_back(k + "divide_by_replicas", yes(s.divide_by_replicas));
  e.emplace_back(k + "memory_bank", yes(q.memory_bank));
  e.emplace_back(k + "prt", yes(q.prt));
  const NegativeSource ns = q.negative_source;
  e.emplace_back(k + "negative_source", Node(ns == NegativeSource::Unreliable ? "unreliable"
                                             : ns == NegativeSource::Reliable ? "reliable"
                                                                              : "all"));
  e.emplace_back("saver.snapshot_dir", Node(c.snapshot_dir));
  e.emplace_back("saver.pretrain", Node(c.pretrain));
  e.emplace_back("saver.auto_resume", yes(c.auto_resume));
  if (!c.run_dir.empty()) e.emplace_back("saver.run_dir", Node(c.run_dir));
  e.emplace_back("saver.save_memory_bank", yes(c.save_memory_bank));
  e.emplace_back("criterion.type", Node(c.criterion));
  e.emplace_back("criterion.kwargs.use_weight", yes(c.use_weight));
  e.emplace_back("criterion.kwargs.thresh", Node(num(c.ohem_thresh)));
  e.emplace_back("criterion.kwargs.min_kept", Node(c.ohem_min_kept));
  return e;
}

std::string resolved_yaml(const TrainConfig& c) {
  Node root(YAML::NodeType::Map);
  for (const auto& [key, value] : config_entries(c)) set_yaml_path(root, key, value, "resolved_yaml");
  YAML::Emitter em;
  em << root;
  return std::string(em.c_str()) + "\n";
}

}  // namespace u2pl
