// Reads the network part of a U2PL config.yaml (net, dataset.mean/std) with yaml-cpp, strictly:
// unknown or duplicate keys, wrong types and unsupported values are errors naming the file, the
// line and the dotted key (STYLE 18, SPEC §8). The keys are those that the public ModelBuilder
// (u2pl/models/model_helper.py), resnet*() and dec_deeplabv3_plus read, plus our encoder keys.
// Covered by tests/test_net_config.cpp.
#include "u2pl/net_config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <ios>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include "engine/check.h"

namespace u2pl {
namespace {

using YAML::Node;

const char kResnetType[] = "u2pl.models.resnet.resnet";  // + depth
const char kDecoderType[] = "u2pl.models.decoder.dec_deeplabv3_plus";

// "<file>:<line>: <key>: <msg>" (the line of `at`, when yaml-cpp knows it).
[[noreturn]] void fail(const std::string& file, const Node& at, const std::string& key,
                       const std::string& msg) {
  std::ostringstream os;
  os << file;
  if (!at.Mark().is_null()) os << ":" << at.Mark().line + 1;
  os << ": ";
  if (!key.empty()) os << key << ": ";
  os << msg;
  throw Error(os.str());
}

// What a value is, for "expected X, got Y". Quoted scalars are strings in YAML (and in Python),
// so "21" is not an integer even though yaml-cpp would convert it.
std::string describe(const Node& v) {
  if (v.IsNull()) return "nothing";
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a map";
  return (v.Tag() == "!" ? "the string '" : "'") + v.Scalar() + "'";
}

bool plain_scalar(const Node& v) { return v.IsScalar() && v.Tag() != "!"; }

std::string join(std::initializer_list<const char*> names) {
  std::string out;
  for (const char* n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// Typed values; `key` is the dotted key used in errors.
int to_int(const std::string& file, const Node& v, const std::string& key, int min) {
  int out = 0;
  if (!plain_scalar(v) || !YAML::convert<int>::decode(v, out))
    fail(file, v, key, "expected an integer, got " + describe(v));
  if (out < min)
    fail(file, v, key, "expected an integer >= " + std::to_string(min) + ", got " + std::to_string(out));
  return out;
}

bool to_bool(const std::string& file, const Node& v, const std::string& key) {
  bool out = false;
  if (!plain_scalar(v) || !YAML::convert<bool>::decode(v, out))
    fail(file, v, key, "expected a boolean (True or False), got " + describe(v));
  return out;
}

double to_number(const std::string& file, const Node& v, const std::string& key) {
  double out = 0;
  if (!plain_scalar(v) || !YAML::convert<double>::decode(v, out) || !std::isfinite(out))
    fail(file, v, key, "expected a finite number, got " + describe(v));
  return out;
}

// A map at a dotted key; known() makes it strict.
class Section {
 public:
  Section(const std::string& file, const Node& node, std::string key)
      : file_(file), node_(node), key_(std::move(key)) {
    if (!node_.IsMap()) fail(file_, node_, key_, "expected a map, got " + describe(node_));
  }

  // Every key is one of `names`, present once.
  void known(std::initializer_list<const char*> names) const {
    std::set<std::string> seen;
    for (const auto& kv : node_) {
      const std::string name = kv.first.Scalar();
      bool ok = false;
      for (const char* k : names) ok = ok || name == k;
      if (!ok) fail(file_, kv.first, key_of(name), "unknown key (expected one of: " + join(names) + ")");
      if (!seen.insert(name).second) fail(file_, kv.first, key_of(name), "duplicate key");
    }
  }

  std::string key_of(const std::string& name) const { return key_.empty() ? name : key_ + "." + name; }
  bool has(const char* name) const { return node_[name].IsDefined(); }
  Node at(const char* name) const { return node_[name]; }
  [[noreturn]] void fail_at(const char* name, const std::string& msg) const {
    fail(file_, has(name) ? at(name) : node_, key_of(name), msg);
  }
  void need(const char* name) const {
    if (!has(name)) fail(file_, node_, key_of(name), "missing (required)");
  }
  Section child(const char* name, std::initializer_list<const char*> known) const {
    Section s(file_, at(name), key_of(name));
    s.known(known);
    return s;
  }

  // Optional values: `out` keeps its default when the key is absent.
  void get(const char* name, int& out, int min) const {
    if (has(name)) out = to_int(file_, at(name), key_of(name), min);
  }
  void get(const char* name, bool& out) const {
    if (has(name)) out = to_bool(file_, at(name), key_of(name));
  }
  void get(const char* name, float& out, double lo, double hi) const {
    if (!has(name)) return;
    const double v = to_number(file_, at(name), key_of(name));
    if (v < lo || v > hi) {
      std::ostringstream os;
      os << "expected a number " ;
      if (std::isinf(hi)) os << ">= " << lo;
      else os << "in [" << lo << ", " << hi << "]";
      os << ", got " << v;
      fail_at(name, os.str());
    }
    out = static_cast<float>(v);
  }
  void get(const char* name, std::string& out) const {
    if (!has(name)) return;
    if (!at(name).IsScalar()) fail_at(name, "expected a string, got " + describe(at(name)));
    out = at(name).Scalar();
  }
  // The elements of a list of exactly n, each with its key "name[i]"; `what` names the elements.
  std::vector<std::pair<Node, std::string>> list(const char* name, size_t n, const char* what) const {
    const Node v = at(name);
    if (!v.IsSequence() || v.size() != n)
      fail_at(name, "expected a list of " + std::to_string(n) + " " + what + ", got " +
                        (v.IsSequence() ? std::to_string(v.size()) + " items" : describe(v)));
    std::vector<std::pair<Node, std::string>> out;
    for (size_t i = 0; i < n; ++i) out.emplace_back(v[i], key_of(name) + "[" + std::to_string(i) + "]");
    return out;
  }
  const std::string& file() const { return file_; }

 private:
  const std::string& file_;
  Node node_;
  std::string key_;
};

// dataset.mean / dataset.std: 3 numbers each (RGB, 0-255); std > 0. The rest of `dataset`
// belongs to the data reader.
void read_normalisation(const Section& ds, NetConfig& c) {
  for (const char* name : {"mean", "std"}) {
    if (!ds.has(name)) continue;
    const bool is_std = name[0] == 's';
    const auto items = ds.list(name, 3, "numbers");
    for (size_t i = 0; i < 3; ++i) {
      const double v = to_number(ds.file(), items[i].first, items[i].second);
      if (is_std && !(v > 0)) fail(ds.file(), items[i].first, items[i].second, "expected a number > 0");
      (is_std ? c.std : c.mean)[i] = static_cast<float>(v);
    }
  }
}

void read_encoder(const Section& net, NetConfig& c) {
  net.need("encoder");
  const Section enc = net.child("encoder", {"type", "kwargs"});
  enc.need("type");
  std::string type;
  enc.get("type", type);
  c.depth = 0;
  for (int d : {18, 34, 50, 101, 152})
    if (type == kResnetType + std::to_string(d)) c.depth = d;
  if (c.depth == 0)
    enc.fail_at("type", "unsupported encoder '" + type + "' (expected " + kResnetType +
                            "18, 34, 50, 101 or 152)");
  if (!enc.has("kwargs")) return;
  const Section kw = enc.child("kwargs", {"multi_grid", "zero_init_residual", "fpn",
                                          "replace_stride_with_dilation", "stem", "width_divisor",
                                          "weights"});
  kw.get("multi_grid", c.multi_grid);
  kw.get("zero_init_residual", c.zero_init_residual);
  // Public: with fpn the encoder returns all four layers; ours always does, so only its type matters.
  bool fpn = true;
  kw.get("fpn", fpn);
  if (kw.has("replace_stride_with_dilation")) {
    const auto items = kw.list("replace_stride_with_dilation", 3, "booleans");
    std::array<bool, 3> r{};
    for (size_t i = 0; i < 3; ++i) r[i] = to_bool(kw.file(), items[i].first, items[i].second);
    if (r[0] || !r[2])
      kw.fail_at("replace_stride_with_dilation",
                 "unsupported value (supported: [False, True, True] for output stride 8, "
                 "[False, False, True] for output stride 16)");
    c.replace_stride_with_dilation = r;
  }
  kw.get("stem", c.stem);
  if (c.stem != "deep" && c.stem != "standard")
    kw.fail_at("stem", "expected 'deep' or 'standard', got '" + c.stem + "'");
  kw.get("width_divisor", c.width_divisor, 1);
  if (64 % c.width_divisor != 0)
    kw.fail_at("width_divisor", "expected a divisor of 64 (the base width), got " +
                                    std::to_string(c.width_divisor));
  kw.get("weights", c.weights);
}

void read_decoder(const Section& net, NetConfig& c) {
  net.need("decoder");
  const Section dec = net.child("decoder", {"type", "kwargs"});
  dec.need("type");
  std::string type;
  dec.get("type", type);
  if (type != kDecoderType)
    dec.fail_at("type", "unsupported decoder '" + type + "' (expected " + kDecoderType + ")");
  if (!dec.has("kwargs")) return;
  const Section kw = dec.child("kwargs", {"inner_planes", "dilations", "rep_head"});
  kw.get("inner_planes", c.inner_planes, 1);
  if (kw.has("dilations")) {
    c.dilations.clear();
    for (const auto& item : kw.list("dilations", 3, "positive integers"))
      c.dilations.push_back(to_int(kw.file(), item.first, item.second, 1));
  }
  kw.get("rep_head", c.rep_head);
}

// Presence enables the aux head (public: `net_cfg.get("aux_loss", False)`); both keys are read
// by the public code unconditionally, so both are required.
void read_aux(const Section& net, NetConfig& c, std::vector<std::string>* warnings) {
  if (!net.has("aux_loss")) return;
  const Section aux = net.child("aux_loss", {"aux_plane", "loss_weight"});
  aux.need("aux_plane");
  aux.need("loss_weight");
  aux.get("aux_plane", c.aux_plane, 1);
  aux.get("loss_weight", c.aux_weight, 0.0, std::numeric_limits<double>::infinity());
  c.aux = true;
  // layer3 is 256 planes × expansion (4 for Bottleneck, 1 for BasicBlock) at base width 64.
  const int layer3 = (c.depth >= 50 ? 1024 : 256) / c.width_divisor;
  if (warnings && c.aux_plane != layer3) {
    std::ostringstream os;
    os << aux.file() << ":" << aux.at("aux_plane").Mark().line + 1 << ": " << aux.key_of("aux_plane")
       << ": " << c.aux_plane << " is not layer3's width for resnet" << c.depth << " / width_divisor "
       << c.width_divisor << "; the aux head uses " << layer3;
    warnings->push_back(os.str());
  }
}

}  // namespace

int NetConfig::output_stride() const {
  const auto& r = replace_stride_with_dilation;
  U2PL_CHECK(!r[0] && r[2], "replace_stride_with_dilation must be [False, True, True] (output stride 8) "
                            "or [False, False, True] (output stride 16)");
  return r[1] ? 8 : 16;
}

NetConfig parse_net_config(const Node& root, const std::string& file, std::vector<std::string>* warnings) {
  // trainer, saver, criterion and the rest of dataset belong to the training reader.
  const Section top(file, root, "");
  top.known({"dataset", "trainer", "saver", "criterion", "net"});
  NetConfig c;
  if (top.has("dataset")) read_normalisation(Section(file, top.at("dataset"), "dataset"), c);
  top.need("net");
  const Section net = top.child("net", {"num_classes", "sync_bn", "ema_decay", "encoder", "decoder", "aux_loss"});
  net.need("num_classes");
  net.get("num_classes", c.num_classes, 2);
  net.get("sync_bn", c.sync_bn);
  net.get("ema_decay", c.ema_decay, 0.0, 1.0);
  read_encoder(net, c);
  read_decoder(net, c);
  read_aux(net, c, warnings);
  return c;
}

NetConfig load_net_config(const std::string& path, std::vector<std::string>* warnings) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open (missing or unreadable)");
  Node root;
  try {
    root = YAML::Load(f);
  } catch (const YAML::Exception& e) {
    std::ostringstream os;
    os << path;
    if (!e.mark.is_null()) os << ":" << e.mark.line + 1 << ":" << e.mark.column + 1;
    os << ": malformed YAML: " << e.msg;
    throw Error(os.str());
  } catch (const std::ios_base::failure& e) {  // e.g. a directory
    throw Error(path + ": cannot read (" + e.what() + ")");
  }
  return parse_net_config(root, path, warnings);
}

}  // namespace u2pl
