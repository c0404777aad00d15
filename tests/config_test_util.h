// Shared by the config reader and training tests: where the public configs are, writing a YAML
// text to a temporary file, editing a base config, the tiny training config; error_of comes from
// test_util.h.
#pragma once
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "engine/check.h"
#include "tests/test_util.h"

namespace u2pl::test {

inline const std::string kPublicConfigs = U2PL_SOURCE_DIR "/../shared/public-configs/";

inline bool have_public_configs() {
  struct stat st {};
  return stat(kPublicConfigs.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

inline std::string yaml_path(const std::string& tag) { return "/tmp/u2pl_test_" + tag + ".yaml"; }

// Writes `text` to yaml_path(tag) and returns the path.
inline std::string write_yaml(const std::string& tag, const std::string& text) {
  const std::string path = yaml_path(tag);
  std::ofstream(path) << text;
  return path;
}

// `s` with the first `from` replaced by `to` (which must be there).
inline std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "'" << from << "' not in the test config");
  return s.replace(at, from.size(), to);
}

// A training config of `method` (suponly | mt | cutmix | u2pl) for a ResNet-18 at width/16 on
// the u2pl_synth set in `data` with 4 labeled images (pascal_semi, crop 33, batch 2, 3 epochs of
// which 1 warm start, seed 7); the tests of the trainer run it, the CUDA step tests read it.
inline std::string tiny_train_config(const std::string& data, int classes, const std::string& method) {
  std::string t = R"(dataset:
  type: pascal_semi
  train:
    data_root: DATA
    data_list: DATA/splits/4/labeled.txt
    flip: True
    rand_resize: [0.75, 1.25]
    crop: {type: rand, size: [33, 33]}
  val:
    data_root: DATA
    data_list: DATA/splits/val.txt
  batch_size: 2
  workers: 2
trainer:
  epochs: 3
  sup_only_epoch: 1
  seed: 7
  optimizer: {type: SGD, kwargs: {lr: 0.01, momentum: 0.9, weight_decay: 0.0001}}
  lr_scheduler: {mode: poly, kwargs: {power: 0.9}}
METHOD
net:
  num_classes: CLASSES
  encoder:
    type: u2pl.models.resnet.resnet18
    kwargs: {multi_grid: False, replace_stride_with_dilation: [False, False, True], width_divisor: 16}
  decoder:
    type: u2pl.models.decoder.dec_deeplabv3_plus
    kwargs: {inner_planes: 16, dilations: [2, 4, 6]}
)";
  const std::string u2pl = R"(  unsupervised: {drop_percent: 80, apply_aug: cutmix}
  contrastive:
    low_rank: 2
    high_rank: 4
    num_negatives: 8
    num_queries: 4
    queue_size: 40
    queue_size_background: 60)";
  const std::string m = method == "u2pl"     ? u2pl
                        : method == "cutmix" ? "  unsupervised: {apply_aug: cutmix}"
                        : method == "mt"     ? "  unsupervised: {apply_aug: none}"
                                             : "";
  auto put = [&](const std::string& key, const std::string& v) {
    for (size_t at; (at = t.find(key)) != std::string::npos;) t.replace(at, key.size(), v);
  };
  put("METHOD", m);
  put("DATA", data);
  put("CLASSES", std::to_string(classes));
  return t;
}

}  // namespace u2pl::test
