// Segmentation datasets: PASCAL VOC 2012 (+SBD SegmentationClassAug or palette SegmentationClass
// labels), Cityscapes (leftImg8bit / gtFine labelTrainIds) and a generic folder layout, read from
// split lists exactly as the public U2PL code reads them (SPEC §4). Entries are resolved and
// checked when the split is opened; decoding checks each file. Errors name the file and problem.
// Covered by tests/test_dataset.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/image_io.h"

namespace u2pl {

enum class DatasetKind { Voc, Cityscapes, Folder };

// The `dataset` section of a config, as far as reading data goes (augmentation: data/augment.h).
struct DatasetSpec {
  DatasetKind kind = DatasetKind::Voc;
  std::string data_root;  // VOC: the VOC2012 folder; Cityscapes: the folder holding leftImg8bit/, gtFine/
  std::string data_list;  // split file
  int num_classes = 21;
  int ignore_label = 255;
  bool skip_bad = false;  // skip unreadable entries with a warning (counted) instead of failing
};

struct Sample {
  std::string id;          // the split entry as written (VOC id, Cityscapes leftImg8bit path)
  std::string image_path;  // resolved
  std::string label_path;  // resolved; empty for unlabeled entries when labels are absent
};

// Reads the header of a PNG or JPEG (read_image_header) and checks that the file is complete (a PNG
// ends with its IEND chunk, a JPEG with its end-of-image marker). Errors name the file.
ImageHeader probe_image(const std::string& path);

struct LoadedSample {
  std::string id;
  Image image;                 // RGB
  std::vector<uint8_t> label;  // (H, W) class indices, ignore_label for void; empty when unlabeled
};

class Dataset {
 public:
  // Reads the split file and resolves every entry (missing files, empty or duplicated lines and a
  // wrong folder layout are errors naming the line). `need_labels`: labels must exist; without
  // it, label_path is set where a label file exists (unchecked) and load() leaves label empty.
  // Image and label headers are probed (probe_image) and their sizes compared; with skip_bad,
  // entries with missing, corrupt or mismatched files are dropped and listed in warnings().
  Dataset(const DatasetSpec& spec, bool need_labels);
  size_t size() const { return samples_.size(); }
  const Sample& sample(size_t i) const { return samples_.at(i); }
  const DatasetSpec& spec() const { return spec_; }
  // Decodes image and label; checks sizes agree and labels lie in [0, C) or are ignore_label
  // (VOC palette PNGs are mapped back to indices through the VOC palette).
  LoadedSample load(size_t i) const;
  std::vector<std::string> class_names() const;
  // Entries dropped under skip_bad; the messages: one per dropped entry (naming its line and
  // file), and one about generic class names (a VOC layout of another class count, no classes.txt).
  size_t skipped() const { return skipped_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  DatasetSpec spec_;
  bool need_labels_;
  std::vector<Sample> samples_;
  std::vector<std::string> class_names_;  // from classes.txt, or generic (VOC layout); empty: VOC's
  std::vector<std::string> warnings_;
  size_t skipped_ = 0;
};

// The unlabeled list beside a labeled one: `labeled.txt` replaced by `unlabeled.txt` (SPEC §4).
std::string unlabeled_list_for(const std::string& labeled_list);

}  // namespace u2pl
