// Reads the `dataset` section (and net.num_classes) of a U2PL config.yaml strictly, through the
// shared layer data/yaml_section.h (STYLE 18, SPEC §8): unknown or duplicate keys, wrong types and
// unsupported values are errors "<file>:<line>: <dotted key>: <message>". The keys are those the public
// builders (u2pl/dataset/pascal_voc.py, cityscapes.py, build_transfrom) read. Covered by tests/test_data_config.cpp.
#include "data/data_config.h"

#include "data/yaml_section.h"

namespace u2pl {
namespace {

using YAML::Node;

struct TypeInfo {
  const char* name;
  DatasetKind kind;
  bool semi;
  int classes;  // fixed by the dataset; 0: any (folder; VOC layout, which the dataset reader
                // holds to 21 classes unless the root lists its own in classes.txt)
};
const TypeInfo kTypes[] = {{"pascal_semi", DatasetKind::Voc, true, 0},
                           {"pascal", DatasetKind::Voc, false, 0},
                           {"cityscapes_semi", DatasetKind::Cityscapes, true, 19},
                           {"cityscapes", DatasetKind::Cityscapes, false, 19},
                           {"folder_semi", DatasetKind::Folder, true, 0},
                           {"folder", DatasetKind::Folder, false, 0}};

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
  ds.get("mean", c.mean, false);
  ds.get("std", c.std, true);
  ds.get("ignore_label", c.ignore_label, 0, 255);
  if (c.ignore_label < c.num_classes)
    ds.fail_at("ignore_label", std::to_string(c.ignore_label) + " is a class index (net.num_classes is " +
                                   std::to_string(c.num_classes) + "); expected a value in [" +
                                   std::to_string(c.num_classes) + ", 255]");
  return c;
}

DataConfig load_data_config(const std::string& path, std::vector<std::string>* warnings) {
  return parse_data_config(load_yaml_file(path), path, warnings);
}

}  // namespace u2pl
