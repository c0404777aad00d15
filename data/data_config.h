// The data part of a U2PL config.yaml: the public `dataset` section (type, train / val lists and
// augmentation keys, batch_size, n_sup, workers, normalisation, ignore_label) plus net.num_classes.
// Strict: unknown keys and wrong types are errors naming the file, line and dotted key; keys the
// public code never reads (noise_std, train.GaussianBlur) are warnings. Covered by
// tests/test_data_config.cpp.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace YAML {
class Node;
}

namespace u2pl {

struct CropConfig {
  std::string type = "none";      // rand | center | none (no `crop` key)
  std::array<int, 2> size{0, 0};  // [h, w]; 0 with type none
};

struct DataConfig {
  std::string type = "pascal_semi";  // pascal_semi | pascal | cityscapes_semi | cityscapes | folder_semi | folder
  DatasetKind kind = DatasetKind::Voc;
  bool semi = true;      // *_semi: the unlabeled list (unlabeled_list_for(train.data_list)) is used too
  int num_classes = 21;  // net.num_classes
  struct Train {
    std::string data_root, data_list;
    bool flip = false;
    std::array<float, 2> rand_resize{1.f, 1.f};  // scale range [lo, hi]; {1, 1} when the key is absent
    CropConfig crop;
  } train;
  struct Val {
    std::string data_root, data_list;
    CropConfig crop;
  } val;
  int batch_size = 1;  // per process (public default 1)
  int n_sup = 0;       // labeled images to draw from train.data_list; 0 when absent (all of it)
  int workers = 2;     // loader threads (public default 2)
  std::array<float, 3> mean{123.675f, 116.28f, 103.53f};  // RGB, 0-255
  std::array<float, 3> std{58.395f, 57.12f, 57.375f};
  int ignore_label = 255;

  DatasetSpec train_spec() const;  // labeled training list
  DatasetSpec val_spec() const;
};

// Reads the dataset section (and net.num_classes, required) of a parsed config; `file` names the
// source in errors. Warnings (known-unused keys) are appended to `warnings` when given.
DataConfig parse_data_config(const YAML::Node& root, const std::string& file,
                             std::vector<std::string>* warnings = nullptr);
DataConfig load_data_config(const std::string& path, std::vector<std::string>* warnings = nullptr);

}  // namespace u2pl
