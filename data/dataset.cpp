// Datasets (data/dataset.h): split entries resolved to image and label files in the VOC, Cityscapes
// and folder layouts as the public U2PL code builds them (u2pl/dataset/pascal_voc.py, cityscapes.py),
// checked when the split is opened (existence, headers, truncation, sizes), decoded and range-checked
// in load(). Covered by tests/test_dataset.cpp.
#include "data/dataset.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "data/splits.h"
#include "engine/check.h"

namespace fs = std::filesystem;

namespace u2pl {
namespace {

const char* const kVocNames[21] = {"background", "aeroplane", "bicycle",   "bird",   "boat",        "bottle",
                                   "bus",        "car",       "cat",       "chair",  "cow",         "diningtable",
                                   "dog",        "horse",     "motorbike", "person", "pottedplant", "sheep",
                                   "sofa",       "train",     "tvmonitor"};
const char* const kCityNames[19] = {
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky",  "person",   "rider",    "car",  "truck", "bus",  "train",         "motorcycle",   "bicycle"};
const std::array<uint8_t, 3> kVocBoundary{224, 224, 192};  // the VOC "void" outline colour
const std::string kCityImagePrefix = "leftImg8bit/", kCityImageSuffix = "_leftImg8bit.png";

// A problem with one entry's files: skip_bad drops the entry instead of failing.
class BadEntry : public Error {
 public:
  using Error::Error;
};

bool is_dir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool is_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}
std::string join(const std::string& a, const std::string& b) { return (fs::path(a) / b).string(); }
bool ends_with(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}
std::string size_str(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }
std::string at_str(size_t i, int w) { return "(x=" + std::to_string(i % w) + ", y=" + std::to_string(i / w) + ")"; }

// Where a split's entries live, checked once when the split is opened.
struct Layout {
  std::string label_dir;    // VOC / Folder; "" when the dataset has no labels (unlabeled use only)
  bool palette_ok = false;  // VOC: non-index labels map back through the VOC palette
};

void need_classes(const DatasetSpec& s, const char* what, int n) {
  if (s.num_classes != n)
    throw Error(s.data_root + ": a " + what + " dataset has " + std::to_string(n) + " classes, but num_classes is " +
                std::to_string(s.num_classes));
}

// classes.txt in the data root: one name a line, at least 2, as many as num_classes.
void read_class_names(const DatasetSpec& s, std::vector<std::string>& class_names) {
  const std::string names = join(s.data_root, "classes.txt");
  for (const auto& e : read_split(names, "class list")) class_names.push_back(e.text);
  if (class_names.size() < 2)
    throw Error(names + ": at least 2 classes are needed, got " + std::to_string(class_names.size()));
  if (static_cast<int>(class_names.size()) != s.num_classes)
    throw Error(names + ": " + std::to_string(class_names.size()) + " class names, but num_classes is " +
                std::to_string(s.num_classes));
}

Layout check_layout(const DatasetSpec& s, bool need_labels, std::vector<std::string>& class_names,
                    std::vector<std::string>& warnings) {
  if (!is_dir(s.data_root)) throw Error(s.data_root + ": data_root is not a folder (missing?)");
  Layout l;
  if (s.kind == DatasetKind::Voc) {
    if (!is_dir(join(s.data_root, "JPEGImages")))
      throw Error(s.data_root + ": not a VOC2012 folder: expected " + join(s.data_root, "JPEGImages/") +
                  " (and SegmentationClassAug/ or SegmentationClass/)");
    for (const char* d : {"SegmentationClassAug", "SegmentationClass"})
      if (l.label_dir.empty() && is_dir(join(s.data_root, d))) l.label_dir = join(s.data_root, d);
    if (need_labels && l.label_dir.empty())
      throw Error(s.data_root + ": no VOC label folder: expected " + join(s.data_root, "SegmentationClassAug/") +
                  " (index PNGs) or " + join(s.data_root, "SegmentationClass/") + " (palette PNGs)");
    l.palette_ok = true;
    // Custom data in the VOC layout (e.g. u2pl_synth's) names its classes in classes.txt; without
    // it, a class count other than VOC's 21 is taken as it is (as the public code does), with
    // generic names.
    if (is_file(join(s.data_root, "classes.txt"))) {
      read_class_names(s, class_names);
    } else if (s.num_classes != 21) {
      for (int c = 0; c < s.num_classes; ++c) class_names.push_back("class_" + std::to_string(c));
      warnings.push_back(s.data_root + ": num_classes is " + std::to_string(s.num_classes) +
                         " (VOC has 21) and there is no classes.txt: the classes are called class_0 ... class_" +
                         std::to_string(s.num_classes - 1) + " (name them, one a line, in " +
                         join(s.data_root, "classes.txt") + ")");
    }
  } else if (s.kind == DatasetKind::Cityscapes) {
    if (!is_dir(join(s.data_root, "leftImg8bit")))
      throw Error(s.data_root + ": not a Cityscapes folder: expected " + join(s.data_root, "leftImg8bit/") +
                  " (and gtFine/)");
    if (need_labels && !is_dir(join(s.data_root, "gtFine")))
      throw Error(s.data_root + ": no Cityscapes label folder: expected " + join(s.data_root, "gtFine/"));
    need_classes(s, "Cityscapes", 19);
  } else {
    for (const char* d : {"images", "labels"})
      if ((d[0] == 'i' || need_labels) && !is_dir(join(s.data_root, d)))
        throw Error(s.data_root + ": not a folder dataset: expected " + join(s.data_root, d) +
                    "/ (layout: images/<id>.jpg|png, labels/<id>.png, classes.txt)");
    if (is_dir(join(s.data_root, "labels"))) l.label_dir = join(s.data_root, "labels");
    const std::string names = join(s.data_root, "classes.txt");
    if (!is_file(names))
      throw Error(s.data_root + ": not a folder dataset: expected " + names + " (one class name a line)");
    read_class_names(s, class_names);
  }
  return l;
}

// The image and label paths of one split entry. Malformed entries throw Error; missing files
// throw BadEntry.
Sample resolve(const DatasetSpec& s, const Layout& l, const std::string& id) {
  Sample smp{id, "", ""};
  if (s.kind == DatasetKind::Voc) {
    smp.image_path = join(join(s.data_root, "JPEGImages"), id + ".jpg");
    if (!l.label_dir.empty()) smp.label_path = join(l.label_dir, id + ".png");
  } else if (s.kind == DatasetKind::Cityscapes) {
    if (id.compare(0, kCityImagePrefix.size(), kCityImagePrefix) != 0 || !ends_with(id, kCityImageSuffix))
      throw Error("expected a Cityscapes image path like " + kCityImagePrefix + "train/<city>/<name>" +
                  kCityImageSuffix + ", got '" + id + "'");
    // Public: "gtFine/" + line[12:-15] + "gtFine_labelTrainIds.png".
    const size_t cut = kCityImagePrefix.size(), keep = id.size() - cut - (kCityImageSuffix.size() - 1);
    smp.image_path = join(s.data_root, id);
    smp.label_path = join(s.data_root, "gtFine/" + id.substr(cut, keep) + "gtFine_labelTrainIds.png");
  } else {
    const std::string stem = join(join(s.data_root, "images"), id);
    const bool jpg = is_file(stem + ".jpg"), png = is_file(stem + ".png");
    if (jpg && png) throw Error("ambiguous image: both " + stem + ".jpg and " + stem + ".png exist");
    if (!jpg && !png) throw BadEntry("missing image " + stem + ".jpg (or .png)");
    smp.image_path = stem + (jpg ? ".jpg" : ".png");
    if (!l.label_dir.empty()) smp.label_path = join(l.label_dir, id + ".png");
  }
  return smp;
}

// Existence, headers and sizes of one entry's files (BadEntry on any problem).
void check_entry(const DatasetSpec& s, const Layout& l, bool need_labels, Sample& smp) {
  if (!is_file(smp.image_path)) throw BadEntry("missing image " + smp.image_path);
  ImageHeader ih, lh;
  try {
    ih = probe_image(smp.image_path);
  } catch (const Error& e) {
    throw BadEntry(e.what());
  }
  if (!need_labels) {
    if (!is_file(smp.label_path)) smp.label_path.clear();
    return;
  }
  if (!is_file(smp.label_path)) {
    std::string hint;
    const std::string train_ids = "_labelTrainIds.png";
    const std::string ids = s.kind == DatasetKind::Cityscapes
                                ? smp.label_path.substr(0, smp.label_path.size() - train_ids.size()) + "_labelIds.png"
                                : "";
    if (!ids.empty() && is_file(ids))
      hint = " (" + ids + " exists: make the trainIds files with u2pl_cityscapes_trainids --root " + s.data_root + ")";
    throw BadEntry("missing label " + smp.label_path + hint);
  }
  try {
    lh = probe_image(smp.label_path);
  } catch (const Error& e) {
    throw BadEntry(e.what());
  }
  if (lh.bits16) throw BadEntry(smp.label_path + ": a 16-bit PNG; labels must be 8-bit");
  if (lh.channels != 1 && !l.palette_ok)
    throw BadEntry(smp.label_path + ": expected a single-channel index PNG, got " + std::to_string(lh.channels) +
                   " channels");
  if (lh.width != ih.width || lh.height != ih.height)
    throw BadEntry(smp.label_path + ": label is " + size_str(lh.width, lh.height) + " but its image " + smp.image_path +
                   " is " + size_str(ih.width, ih.height));
}

// A palette / RGB VOC label mapped back to class indices; the boundary colour becomes `ignore`.
std::vector<uint8_t> unpalette_voc(const Image& rgb, const std::string& path, int ignore) {
  const auto pal = class_palette(21);
  std::vector<uint8_t> out(size_t(rgb.width) * rgb.height);
  for (size_t i = 0; i < out.size(); ++i) {
    const std::array<uint8_t, 3> c{rgb.pixels[3 * i], rgb.pixels[3 * i + 1], rgb.pixels[3 * i + 2]};
    const auto it = std::find(pal.begin(), pal.end(), c);
    if (it != pal.end()) {
      out[i] = static_cast<uint8_t>(it - pal.begin());
    } else if (c == kVocBoundary) {
      out[i] = static_cast<uint8_t>(ignore);
    } else {
      throw Error(path + ": colour (" + std::to_string(c[0]) + ", " + std::to_string(c[1]) + ", " +
                  std::to_string(c[2]) + ") at " + at_str(i, rgb.width) +
                  " is neither a VOC palette colour nor the boundary colour (224, 224, 192)");
    }
  }
  return out;
}

}  // namespace

ImageHeader probe_image(const std::string& path) {
  const ImageHeader h = read_image_header(path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(path + ": cannot open (missing or unreadable)");
  // The file's first bytes say its format; its last 4 KiB hold the end markers.
  unsigned char head[4] = {0, 0, 0, 0};
  std::vector<unsigned char> tail(4096);
  std::fseek(f, 0, SEEK_SET);
  const size_t nhead = std::fread(head, 1, 4, f);
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  const long ntail = std::min<long>(size, static_cast<long>(tail.size()));
  std::fseek(f, size - ntail, SEEK_SET);
  tail.resize(std::fread(tail.data(), 1, static_cast<size_t>(std::max<long>(ntail, 0)), f));
  std::fclose(f);
  auto find_last = [&](unsigned char a, unsigned char b) {
    for (size_t i = tail.size(); i-- > 1;)
      if (tail[i - 1] == a && tail[i] == b) return static_cast<long>(i - 1);
    return -1L;
  };
  if (nhead == 4 && head[0] == 0x89 && head[1] == 'P' && head[2] == 'N' && head[3] == 'G') {
    // The IEND chunk: type "IEND" then its 4-byte CRC.
    const std::string t(tail.begin(), tail.end());
    const size_t at = t.rfind("IEND");
    if (at == std::string::npos || at + 8 > t.size()) throw Error(path + ": truncated PNG (no IEND chunk at the end)");
  } else if (nhead >= 2 && head[0] == 0xFF && head[1] == 0xD8) {
    // FF D9 (end of image) after the last FF DA (start of scan): neither pair occurs inside
    // entropy-coded data, so a file cut inside its last scan has no FF D9 after that scan.
    if (find_last(0xFF, 0xD9) <= find_last(0xFF, 0xDA)) throw Error(path + ": truncated JPEG (no end-of-image marker)");
  }
  return h;
}

Dataset::Dataset(const DatasetSpec& spec, bool need_labels) : spec_(spec), need_labels_(need_labels) {
  if (spec_.num_classes < 2)
    throw Error(spec_.data_list + ": num_classes must be at least 2, got " + std::to_string(spec_.num_classes));
  if (spec_.ignore_label < spec_.num_classes || spec_.ignore_label > 255)
    throw Error(spec_.data_list + ": ignore_label " + std::to_string(spec_.ignore_label) + " must lie in [" +
                std::to_string(spec_.num_classes) + ", 255] (labels are 8-bit and classes are [0, " +
                std::to_string(spec_.num_classes) + "))");
  const std::vector<SplitEntry> entries = read_split(spec_.data_list);
  const Layout layout = check_layout(spec_, need_labels_, class_names_, warnings_);
  for (const SplitEntry& e : entries) {
    const std::string where = spec_.data_list + ":" + std::to_string(e.line) + ": ";
    try {
      Sample smp = resolve(spec_, layout, e.text);
      check_entry(spec_, layout, need_labels_, smp);
      samples_.push_back(std::move(smp));
    } catch (const BadEntry& b) {
      if (!spec_.skip_bad) throw Error(where + b.what());
      warnings_.push_back(where + b.what() + " (entry skipped)");
      ++skipped_;
    } catch (const Error& err) {
      throw Error(where + err.what());
    }
  }
  if (samples_.empty())
    throw Error(spec_.data_list + ": no usable entries (all " + std::to_string(entries.size()) + " skipped)");
}

LoadedSample Dataset::load(size_t i) const {
  const Sample& s = samples_.at(i);
  LoadedSample out{s.id, read_image(s.image_path, 3), {}};
  if (!need_labels_) return out;
  const ImageHeader h = probe_image(s.label_path);
  const bool index = h.channels == 1;
  if (!index && spec_.kind != DatasetKind::Voc)
    throw Error(s.label_path + ": expected a single-channel index PNG, got " + std::to_string(h.channels) +
                " channels");
  const Image label = read_image(s.label_path, index ? 1 : 3);
  if (label.width != out.image.width || label.height != out.image.height)
    throw Error(s.label_path + ": label is " + size_str(label.width, label.height) + " but its image " + s.image_path +
                " is " + size_str(out.image.width, out.image.height));
  if (!index) {
    out.label = unpalette_voc(label, s.label_path, spec_.ignore_label);
    return out;
  }
  for (size_t p = 0; p < label.pixels.size(); ++p) {
    const int v = label.pixels[p];
    if (v >= spec_.num_classes && v != spec_.ignore_label)
      throw Error(s.label_path + ": label value " + std::to_string(v) + " at " + at_str(p, label.width) +
                  " is outside [0, " + std::to_string(spec_.num_classes) + ") and not the ignore label " +
                  std::to_string(spec_.ignore_label));
  }
  out.label = label.pixels;
  return out;
}

std::vector<std::string> Dataset::class_names() const {
  if (spec_.kind == DatasetKind::Voc && class_names_.empty()) return {std::begin(kVocNames), std::end(kVocNames)};
  if (spec_.kind == DatasetKind::Cityscapes) return {std::begin(kCityNames), std::end(kCityNames)};
  return class_names_;
}

std::string unlabeled_list_for(const std::string& labeled_list) {
  const std::string from = "labeled.txt";
  const size_t at = labeled_list.rfind(from);
  if (at == std::string::npos)
    throw Error(labeled_list + ": cannot find the unlabeled list: the labeled data_list's name has no '" + from +
                "' to replace with 'unlabeled.txt'");
  if (at >= 2 && labeled_list.compare(at - 2, 2, "un") == 0)
    throw Error(labeled_list + ": data_list names an unlabeled list; it should name the labeled one (labeled.txt)");
  return labeled_list.substr(0, at) + "unlabeled.txt" + labeled_list.substr(at + from.size());
}

}  // namespace u2pl
