// The data-config reader (data/data_config.cpp): the four public U2PL configs load with their
// values and the two known-unused keys as warnings; defaults for absent keys; every error path
// (unknown and duplicate keys at each level, wrong types, bad values, missing required keys,
// malformed YAML) names the file, the line and the dotted key.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "data/data_config.h"
#include "engine/check.h"
#include "tests/config_test_util.h"

using namespace u2pl;

namespace {

using test::have_public_configs;
using test::replace_once;
constexpr auto& replace = replace_once;
const std::string& kPublic = test::kPublicConfigs;

// A minimal valid config; tests insert or replace parts of it.
const std::string kBase =
    "dataset:\n"
    "  type: pascal_semi\n"
    "  train:\n"
    "    data_root: /data/VOC2012\n"
    "    data_list: /data/splits/labeled.txt\n"
    "  val:\n"
    "    data_root: /data/VOC2012\n"
    "    data_list: /data/splits/val.txt\n"
    "net:\n"
    "  num_classes: 21\n";

// Lines added to the dataset section (after type) or to dataset.train (after data_list).
std::string with_dataset(const std::string& lines) { return replace_once(kBase, "  train:\n", lines + "  train:\n"); }
std::string with_train(const std::string& lines) { return replace_once(kBase, "labeled.txt\n", "labeled.txt\n" + lines); }

std::string tmp_name(const std::string& name) { return test::yaml_path("data_config_" + name); }

DataConfig load_text(const std::string& name, const std::string& text, std::vector<std::string>* warnings = nullptr) {
  return load_data_config(test::write_yaml("data_config_" + name, text), warnings);
}

std::string error_of(const std::string& name, const std::string& text) {
  return test::error_of([&] { load_text(name, text); });
}

}  // namespace

TEST_CASE("data config: every public config loads with the expected values") {
  if (!have_public_configs()) {
    MESSAGE("skipped: " << kPublic << " is absent");
    return;
  }
  struct Case {
    const char* name;
    const char* type;
    DatasetKind kind;
    bool semi;
    int classes, crop, batch, n_sup;
    const char* root;
    const char* list;
  };
  const Case cases[] = {
      {"pascal_1464_ours", "pascal_semi", DatasetKind::Voc, true, 21, 513, 4, 1464, "../../../../data/VOC2012",
       "../../../../data/splits/pascal/1464/labeled.txt"},
      {"pascal_1464_suponly", "pascal", DatasetKind::Voc, false, 21, 513, 8, 1464, "../../../../data/VOC2012",
       "../../../../data/splits/pascal/1464/labeled.txt"},
      {"cityscapes_744_ours", "cityscapes_semi", DatasetKind::Cityscapes, true, 19, 769, 2, 744,
       "../../../../data/cityscapes", "../../../../data/splits/cityscapes/744/labeled.txt"},
      {"cityscapes_744_suponly", "cityscapes", DatasetKind::Cityscapes, false, 19, 769, 4, 744,
       "../../../../data/cityscapes", "../../../../data/splits/cityscapes/744/labeled.txt"},
  };
  for (const Case& k : cases) {
    CAPTURE(k.name);
    const std::string path = kPublic + k.name + ".yaml";
    std::vector<std::string> warnings;
    const DataConfig c = load_data_config(path, &warnings);
    CHECK(c.type == k.type);
    CHECK(c.kind == k.kind);
    CHECK(c.semi == k.semi);
    CHECK(c.num_classes == k.classes);
    CHECK(c.train.data_root == k.root);
    CHECK(c.train.data_list == k.list);
    CHECK(c.train.flip);
    CHECK(c.train.rand_resize == std::array<float, 2>{0.5f, 2.0f});
    CHECK(c.train.crop.type == "rand");
    CHECK(c.train.crop.size == std::array<int, 2>{k.crop, k.crop});
    CHECK(c.val.data_root == k.root);
    CHECK(c.val.crop.type == "center");
    CHECK(c.val.crop.size == std::array<int, 2>{k.crop, k.crop});
    CHECK(c.batch_size == k.batch);
    CHECK(c.n_sup == k.n_sup);
    CHECK(c.workers == 2);
    CHECK(c.mean[0] == doctest::Approx(123.675));
    CHECK(c.std[2] == doctest::Approx(57.375));
    CHECK(c.ignore_label == 255);
    // noise_std and train.GaussianBlur: warnings with their lines.
    REQUIRE(warnings.size() == 2);
    CHECK(warnings[0].find(path + ":7: dataset.train.GaussianBlur: not used") == 0);
    CHECK(warnings[1].find(path + ":21: dataset.noise_std: not used") == 0);
    const DatasetSpec t = c.train_spec(), v = c.val_spec();
    CHECK(t.kind == k.kind);
    CHECK(t.data_root == k.root);
    CHECK(t.data_list == c.train.data_list);
    CHECK(t.num_classes == k.classes);
    CHECK(t.ignore_label == 255);
    CHECK_FALSE(t.skip_bad);
    CHECK(v.data_list == c.val.data_list);
    CHECK(v.data_list.find("val.txt") != std::string::npos);
  }
}

TEST_CASE("data config: defaults for absent keys, folder types, no warnings without the unused keys") {
  std::vector<std::string> warnings;
  const DataConfig c = load_text("defaults", kBase, &warnings);
  CHECK(warnings.empty());
  CHECK(c.kind == DatasetKind::Voc);
  CHECK(c.semi);
  CHECK_FALSE(c.train.flip);
  CHECK(c.train.rand_resize == std::array<float, 2>{1, 1});
  CHECK(c.train.crop.type == "none");
  CHECK(c.val.crop.type == "none");
  CHECK(c.batch_size == 1);
  CHECK(c.n_sup == 0);
  CHECK(c.workers == 2);
  CHECK(c.ignore_label == 255);
  CHECK(c.val_spec().data_root == "/data/VOC2012");

  std::string folder = replace(replace(kBase, "pascal_semi", "folder"), "num_classes: 21", "num_classes: 5");
  folder = replace(folder, "    data_list: /data/splits/val.txt\n",
                   "    data_list: /data/splits/val.txt\n    crop:\n      type: none\n");
  const DataConfig f = load_text("folder", folder);
  CHECK(f.kind == DatasetKind::Folder);
  CHECK_FALSE(f.semi);
  CHECK(f.num_classes == 5);
  CHECK(f.train_spec().num_classes == 5);
  CHECK(f.val.crop.type == "none");
  const DataConfig s = load_text("folder_semi", replace(folder, "type: folder", "type: folder_semi"));
  CHECK(s.semi);
  const DataConfig n = load_text("norm", with_dataset("  mean: [1, 2, 3]\n  std: [4, 5, 6]\n  ignore_label: 21\n"));
  CHECK(n.mean == std::array<float, 3>{1, 2, 3});
  CHECK(n.std == std::array<float, 3>{4, 5, 6});
  CHECK(n.ignore_label == 21);
}

TEST_CASE("data config: unknown and duplicate keys are errors naming the dotted key, file and line") {
  struct Case {
    const char* name;
    std::string text;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"top", kBase + "extra: 1\n", "extra: unknown key"},
      {"dataset", with_dataset("  batchsize: 4\n"), "dataset.batchsize: unknown key (expected one of: type, train"},
      {"train", with_train("    rand_rotation: [-10.0, 10.0]\n"), "dataset.train.rand_rotation: unknown key"},
      {"crop", with_train("    crop:\n      type: rand\n      size: [4, 4]\n      pad: 0\n"),
       "dataset.train.crop.pad: unknown key"},
      {"duplicate", with_dataset("  batch_size: 2\n  batch_size: 4\n"), "dataset.batch_size: duplicate key"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string msg = error_of(c.name, c.text);
    CHECK_MESSAGE(msg.find(c.want) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(tmp_name(c.name) + ":") == 0, msg);
  }
  CHECK(error_of("val_key", replace(kBase, "val.txt\n", "val.txt\n    flip: True\n"))
            .find(".yaml:9: dataset.val.flip: unknown key (expected one of: data_root, data_list, crop)") !=
        std::string::npos);
  CHECK(error_of("line", with_train("    flop: True\n")).find(".yaml:6: dataset.train.flop") != std::string::npos);
}

TEST_CASE("data config: wrong types, bad values and missing keys say what was expected") {
  struct Case {
    const char* name;
    std::string text;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"type", replace(kBase, "pascal_semi", "ade20k"),
       "dataset.type: unsupported dataset type 'ade20k' (expected one of: pascal_semi, pascal, cityscapes_semi, "
       "cityscapes, folder_semi, folder)"},
      {"classes", replace(kBase, "pascal_semi", "cityscapes_semi"),
       "net.num_classes: 21, but dataset.type cityscapes_semi has 19 classes"},
      {"batch", with_dataset("  batch_size: abc\n"), "dataset.batch_size: expected an integer, got 'abc'"},
      {"batch0", with_dataset("  batch_size: 0\n"), "dataset.batch_size: expected an integer in [1, "},
      {"workers", with_dataset("  workers: -1\n"), "dataset.workers: expected an integer in [0, 1024], got -1"},
      {"n_sup", with_dataset("  n_sup: \"744\"\n"), "dataset.n_sup: expected an integer, got the string '744'"},
      {"flip", with_train("    flip: sometimes\n"), "dataset.train.flip: expected a boolean (True or False)"},
      {"blur", with_train("    GaussianBlur: 3\n"), "dataset.train.GaussianBlur: expected a boolean"},
      {"noise", with_dataset("  noise_std: high\n"), "dataset.noise_std: expected a finite number"},
      {"resize_n", with_train("    rand_resize: [0.5, 1.0, 2.0]\n"),
       "dataset.train.rand_resize: expected a list of 2 numbers ([lo, hi]), got 3 items"},
      {"resize_order", with_train("    rand_resize: [2.0, 0.5]\n"),
       "dataset.train.rand_resize: expected 0 < lo <= hi, got [2.0, 0.5]"},
      {"resize_item", with_train("    rand_resize: [x, 2.0]\n"),
       "dataset.train.rand_resize[0]: expected a finite number"},
      {"crop_type", with_train("    crop:\n      type: random\n      size: [4, 4]\n"),
       "dataset.train.crop.type: expected rand, center or none, got 'random'"},
      {"crop_size", with_train("    crop:\n      type: rand\n"), "dataset.train.crop.size: missing (required)"},
      {"crop_zero", with_train("    crop:\n      type: rand\n      size: [513, 0]\n"),
       "dataset.train.crop.size[1]: expected an integer in [1, 65536], got 0"},
      {"crop_map", with_train("    crop: 513\n"), "dataset.train.crop: expected a map, got '513'"},
      {"mean", with_dataset("  mean: [1, 2]\n"), "dataset.mean: expected a list of 3 numbers, got 2 items"},
      {"std", with_dataset("  std: [1, 0, 1]\n"), "dataset.std[1]: expected a number > 0"},
      {"ignore", with_dataset("  ignore_label: 3\n"),
       "dataset.ignore_label: 3 is a class index (net.num_classes is 21); expected a value in [21, 255]"},
      {"ignore_big", with_dataset("  ignore_label: 256\n"), "dataset.ignore_label: expected an integer in [0, 255]"},
      {"root_null", replace(kBase, "  val:\n    data_root: /data/VOC2012\n", "  val:\n    data_root:\n"),
       "dataset.val.data_root: expected a non-empty string, got nothing"},
      {"no_type", replace(kBase, "  type: pascal_semi\n", ""), "dataset.type: missing (required)"},
      {"no_train",
       replace(kBase, "  train:\n    data_root: /data/VOC2012\n    data_list: /data/splits/labeled.txt\n", ""),
       "dataset.train: missing (required)"},
      {"no_val", replace(kBase, "  val:\n    data_root: /data/VOC2012\n    data_list: /data/splits/val.txt\n", ""),
       "dataset.val: missing (required)"},
      {"no_list", replace(kBase, "    data_list: /data/splits/val.txt\n", ""),
       "dataset.val.data_list: missing (required)"},
      {"list_type", replace(kBase, "data_list: /data/splits/val.txt", "data_list: [a, b]"),
       "dataset.val.data_list: expected a non-empty string, got a list"},
      {"no_classes", replace(kBase, "  num_classes: 21\n", "  sync_bn: True\n"), "net.num_classes: missing (required)"},
      {"no_net", replace(kBase, "net:\n  num_classes: 21\n", ""), "net: missing (required)"},
      {"no_dataset", "net:\n  num_classes: 21\n", "dataset: missing (required)"},
      {"one_class", replace(kBase, "num_classes: 21", "num_classes: 1"),
       "net.num_classes: expected an integer in [2, 255]"},
      {"yaml", kBase + "  bad: [1, 2\n", "malformed YAML"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string msg = error_of(c.name, c.text);
    CHECK_MESSAGE(msg.find(c.want) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(tmp_name(c.name) + ":") == 0, msg);
  }
  // An empty value is reported at its key's line (7), not at the next token's.
  CHECK(error_of("root_null", replace(kBase, "  val:\n    data_root: /data/VOC2012\n", "  val:\n    data_root:\n"))
            .find(".yaml:7: dataset.val.data_root") != std::string::npos);
  CHECK(error_of("empty", "") == tmp_name("empty") + ": expected a map, got nothing");
  try {
    load_data_config("/tmp/u2pl_test_data_config_does_not_exist.yaml");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) ==
          "/tmp/u2pl_test_data_config_does_not_exist.yaml: cannot open (missing or unreadable)");
  }
}
