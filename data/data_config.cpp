// Reads the `dataset` section of a U2PL config.yaml with yaml-cpp, strictly (STYLE 18, SPEC §8):
// unknown or duplicate keys, wrong types and unsupported values are errors "<file>:<line>: <dotted
// key>: <message>", as in u2pl/net_config.cpp. The keys are those the public builders
// (u2pl/dataset/pascal_voc.py, cityscapes.py, build_transfrom) read. Covered by tests/test_data_config.cpp.
#include "data/data_config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <initializer_list>
#include <ios>
#include <set>
#include <sstream>
#include <utility>

#include "engine/check.h"

namespace u2pl {
namespace {

using YAML::Node;

struct TypeInfo {
  const char* name;
  DatasetKind kind;
  bool semi;
  int classes;  // fixed by the dataset; 0: any (folder)
};
const TypeInfo kTypes[] = {{"pascal_semi", DatasetKind::Voc, true, 21},
                           {"pascal", DatasetKind::Voc, false, 21},
                           {"cityscapes_semi", DatasetKind::Cityscapes, true, 19},
                           {"cityscapes", DatasetKind::Cityscapes, false, 19},
                           {"folder_semi", DatasetKind::Folder, true, 0},
                           {"folder", DatasetKind::Folder, false, 0}};

// "<file>:<line>: <key>: <msg>" (the line of `at`, when yaml-cpp knows it).
[[noreturn]] void fail(const std::string& file, const Node& at, const std::string& key, const std::string& msg) {
  std::ostringstream os;
  os << file;
  if (!at.Mark().is_null()) os << ":" << at.Mark().line + 1;
  os << ": ";
  if (!key.empty()) os << key << ": ";
  os << msg;
  throw Error(os.str());
}

// What a value is, for "expected X, got Y"; quoted scalars are strings, as in Python.
std::string describe(const Node& v) {
  if (v.IsNull()) return "nothing";
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a map";
  return (v.Tag() == "!" ? "the string '" : "'") + v.Scalar() + "'";
}

bool plain_scalar(const Node& v) { return v.IsScalar() && v.Tag() != "!"; }

double to_number(const std::string& file, const Node& v, const std::string& key) {
  double out = 0;
  if (!plain_scalar(v) || !YAML::convert<double>::decode(v, out) || !std::isfinite(out))
    fail(file, v, key, "expected a finite number, got " + describe(v));
  return out;
}

int to_int(const std::string& file, const Node& v, const std::string& key, int lo, int hi) {
  int out = 0;
  if (!plain_scalar(v) || !YAML::convert<int>::decode(v, out))
    fail(file, v, key, "expected an integer, got " + describe(v));
  if (out < lo || out > hi)
    fail(file, v, key,
         "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(out));
  return out;
}

// A map at a dotted key; known() makes it strict.
class Section {
 public:
  Section(const std::string& file, const Node& node, std::string key) : file_(file), node_(node), key_(std::move(key)) {
    if (!node_.IsMap()) fail(file_, node_, key_, "expected a map, got " + describe(node_));
  }
  void known(std::initializer_list<const char*> names) const {
    std::set<std::string> seen;
    for (const auto& kv : node_) {
      const std::string name = kv.first.Scalar();
      bool ok = false;
      std::string list;
      for (const char* k : names) {
        ok = ok || name == k;
        list += (list.empty() ? "" : ", ") + std::string(k);
      }
      if (!ok) fail(file_, kv.first, key_of(name), "unknown key (expected one of: " + list + ")");
      if (!seen.insert(name).second) fail(file_, kv.first, key_of(name), "duplicate key");
    }
  }
  std::string key_of(const std::string& name) const { return key_.empty() ? name : key_ + "." + name; }
  bool has(const char* name) const { return node_[name].IsDefined(); }
  Node at(const char* name) const { return node_[name]; }
  // At the value's line, or at the key's when the value is empty (yaml-cpp puts an empty value
  // at the next token, often on a later line).
  [[noreturn]] void fail_at(const char* name, const std::string& msg) const {
    if (!has(name)) fail(file_, node_, key_of(name), msg);
    for (const auto& kv : node_)
      if (at(name).IsNull() && kv.first.Scalar() == name) fail(file_, kv.first, key_of(name), msg);
    fail(file_, at(name), key_of(name), msg);
  }
  void need(const char* name) const {
    if (!has(name)) fail(file_, node_, key_of(name), "missing (required)");
  }
  Section child(const char* name, std::initializer_list<const char*> names) const {
    Section s(file_, at(name), key_of(name));
    s.known(names);
    return s;
  }
  void get(const char* name, int& out, int lo, int hi) const {
    if (has(name)) out = to_int(file_, at(name), key_of(name), lo, hi);
  }
  void get(const char* name, bool& out) const {
    if (has(name) && (!plain_scalar(at(name)) || !YAML::convert<bool>::decode(at(name), out)))
      fail_at(name, "expected a boolean (True or False), got " + describe(at(name)));
  }
  void get(const char* name, std::string& out) const {
    if (!has(name)) return;
    if (!at(name).IsScalar() || at(name).Scalar().empty())
      fail_at(name, "expected a non-empty string, got " + describe(at(name)));
    out = at(name).Scalar();
  }
  // The elements of a list of exactly n, each with its key "name[i]".
  std::vector<std::pair<Node, std::string>> list(const char* name, size_t n, const char* what) const {
    const Node v = at(name);
    if (!v.IsSequence() || v.size() != n)
      fail_at(name, "expected a list of " + std::to_string(n) + " " + what + ", got " +
                        (v.IsSequence() ? std::to_string(v.size()) + " items" : describe(v)));
    std::vector<std::pair<Node, std::string>> out;
    for (size_t i = 0; i < n; ++i) out.emplace_back(v[i], key_of(name) + "[" + std::to_string(i) + "]");
    return out;
  }
  void warn_unused(const char* name, std::vector<std::string>* warnings) const {
    if (!has(name) || !warnings) return;
    std::ostringstream os;
    os << file_;
    if (!at(name).Mark().is_null()) os << ":" << at(name).Mark().line + 1;
    os << ": " << key_of(name) << ": not used (the public U2PL code never reads it)";
    warnings->push_back(os.str());
  }
  const std::string& file() const { return file_; }

 private:
  const std::string& file_;
  Node node_;
  std::string key_;
};

// crop: {type: rand | center, size: [h, w]}; size is optional only for type none.
CropConfig read_crop(const Section& parent) {
  CropConfig c;
  if (!parent.has("crop")) return c;
  const Section s = parent.child("crop", {"type", "size"});
  s.need("type");
  s.get("type", c.type);
  if (c.type != "rand" && c.type != "center" && c.type != "none")
    s.fail_at("type", "expected rand, center or none, got '" + c.type + "'");
  if (c.type != "none") s.need("size");
  if (!s.has("size")) return c;
  const auto items = s.list("size", 2, "positive integers ([h, w])");
  for (size_t i = 0; i < 2; ++i) c.size[i] = to_int(s.file(), items[i].first, items[i].second, 1, 1 << 16);
  return c;
}

// data_root and data_list, both required.
void read_paths(const Section& s, std::string& root, std::string& list) {
  s.need("data_root");
  s.need("data_list");
  s.get("data_root", root);
  s.get("data_list", list);
}

void read_train(const Section& ds, DataConfig& c, std::vector<std::string>* warnings) {
  ds.need("train");
  const Section t = ds.child("train", {"data_root", "data_list", "flip", "GaussianBlur", "rand_resize", "crop"});
  read_paths(t, c.train.data_root, c.train.data_list);
  t.get("flip", c.train.flip);
  bool blur = false;
  t.get("GaussianBlur", blur);
  t.warn_unused("GaussianBlur", warnings);
  if (t.has("rand_resize")) {
    const auto items = t.list("rand_resize", 2, "numbers ([lo, hi])");
    const double lo = to_number(t.file(), items[0].first, items[0].second);
    const double hi = to_number(t.file(), items[1].first, items[1].second);
    if (!(lo > 0 && lo <= hi))
      t.fail_at("rand_resize",
                "expected 0 < lo <= hi, got [" + items[0].first.Scalar() + ", " + items[1].first.Scalar() + "]");
    c.train.rand_resize = {static_cast<float>(lo), static_cast<float>(hi)};
  }
  c.train.crop = read_crop(t);
}

void read_normalisation(const Section& ds, DataConfig& c) {
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

DatasetSpec make_spec(const DataConfig& c, const std::string& root, const std::string& list) {
  DatasetSpec s;
  s.kind = c.kind;
  s.data_root = root;
  s.data_list = list;
  s.num_classes = c.num_classes;
  s.ignore_label = c.ignore_label;
  return s;
}

}  // namespace

DatasetSpec DataConfig::train_spec() const { return make_spec(*this, train.data_root, train.data_list); }
DatasetSpec DataConfig::val_spec() const { return make_spec(*this, val.data_root, val.data_list); }

DataConfig parse_data_config(const Node& root, const std::string& file, std::vector<std::string>* warnings) {
  const Section top(file, root, "");
  top.known({"dataset", "trainer", "saver", "criterion", "net"});
  DataConfig c;
  // net.num_classes only; the rest of net belongs to the network reader.
  top.need("net");
  const Section net(file, top.at("net"), "net");
  net.need("num_classes");
  net.get("num_classes", c.num_classes, 2, 255);

  top.need("dataset");
  const Section ds = top.child("dataset", {"type", "train", "val", "batch_size", "n_sup", "noise_std", "workers",
                                           "mean", "std", "ignore_label"});
  ds.need("type");
  ds.get("type", c.type);
  const TypeInfo* info = nullptr;
  std::string names;
  for (const TypeInfo& t : kTypes) {
    if (c.type == t.name) info = &t;
    names += (names.empty() ? "" : ", ") + std::string(t.name);
  }
  if (!info) ds.fail_at("type", "unsupported dataset type '" + c.type + "' (expected one of: " + names + ")");
  c.kind = info->kind;
  c.semi = info->semi;
  if (info->classes && c.num_classes != info->classes)
    net.fail_at("num_classes", std::to_string(c.num_classes) + ", but dataset.type " + c.type + " has " +
                                   std::to_string(info->classes) + " classes");

  read_train(ds, c, warnings);
  ds.need("val");
  const Section val = ds.child("val", {"data_root", "data_list", "crop"});
  read_paths(val, c.val.data_root, c.val.data_list);
  c.val.crop = read_crop(val);

  ds.get("batch_size", c.batch_size, 1, 1 << 16);
  ds.get("n_sup", c.n_sup, 1, 1 << 30);
  ds.get("workers", c.workers, 0, 1024);
  if (ds.has("noise_std")) to_number(file, ds.at("noise_std"), ds.key_of("noise_std"));
  ds.warn_unused("noise_std", warnings);
  read_normalisation(ds, c);
  ds.get("ignore_label", c.ignore_label, 0, 255);
  if (c.ignore_label < c.num_classes)
    ds.fail_at("ignore_label", std::to_string(c.ignore_label) + " is a class index (net.num_classes is " +
                                   std::to_string(c.num_classes) + "); expected a value in [" +
                                   std::to_string(c.num_classes) + ", 255]");
  return c;
}

DataConfig load_data_config(const std::string& path, std::vector<std::string>* warnings) {
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
  return parse_data_config(root, path, warnings);
}

}  // namespace u2pl
