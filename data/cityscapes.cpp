// Cityscapes labelIds → trainIds conversion (data/cityscapes.h), matching the trainId column of
// cityscapesScripts' labels.py (19 classes; every other id, including -1 and 255, to 255).
// Covered by tests/test_dataset.cpp.
#include "data/cityscapes.h"

#include <algorithm>
#include <array>
#include <filesystem>

#include "data/dataset.h"
#include "data/image_io.h"
#include "engine/check.h"

namespace fs = std::filesystem;

namespace u2pl {
namespace {

const std::string kIdsSuffix = "_gtFine_labelIds.png", kTrainSuffix = "_gtFine_labelTrainIds.png";

bool ends_with(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

// labelId → trainId for labelIds 0..33 (labels.py); the rest of the byte range is 255.
std::array<uint8_t, 256> make_table() {
  std::array<uint8_t, 256> t;
  t.fill(255);
  const int ids[19] = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};
  for (int train = 0; train < 19; ++train) t[ids[train]] = static_cast<uint8_t>(train);
  return t;
}

}  // namespace

uint8_t cityscapes_train_id(int label_id) {
  static const std::array<uint8_t, 256> table = make_table();
  return label_id >= 0 && label_id < 256 ? table[label_id] : 255;
}

std::vector<std::string> find_cityscapes_label_ids(const std::string& root, const std::string& split) {
  const fs::path dir = fs::path(root) / "gtFine" / split;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(dir.string() + ": missing (expected the Cityscapes folder gtFine/" + split + "/<city>/ with *" +
                kIdsSuffix + " files)");
  std::vector<std::string> files;
  for (const auto& city : fs::directory_iterator(dir)) {
    if (!city.is_directory()) continue;
    for (const auto& f : fs::directory_iterator(city.path()))
      if (f.is_regular_file() && ends_with(f.path().filename().string(), kIdsSuffix))
        files.push_back(f.path().string());
  }
  if (files.empty())
    throw Error(dir.string() + ": no <city>/*" + kIdsSuffix + " files (is this the gtFine folder of Cityscapes?)");
  std::sort(files.begin(), files.end());
  return files;
}

std::string cityscapes_train_ids_path(const std::string& label_ids_path) {
  if (!ends_with(label_ids_path, kIdsSuffix))
    throw Error(label_ids_path + ": not a Cityscapes labelIds file (expected a name ending in " + kIdsSuffix + ")");
  return label_ids_path.substr(0, label_ids_path.size() - kIdsSuffix.size()) + kTrainSuffix;
}

void convert_cityscapes_label(const std::string& label_ids_path, const std::string& train_ids_path) {
  const ImageHeader h = probe_image(label_ids_path);
  if (h.channels != 1 || h.bits16)
    throw Error(label_ids_path + ": expected an 8-bit single-channel labelIds PNG, got " + std::to_string(h.channels) +
                " channel(s)" + (h.bits16 ? ", 16-bit" : ""));
  Image img = read_image(label_ids_path, 1);
  for (uint8_t& v : img.pixels) v = cityscapes_train_id(v);
  write_png(train_ids_path, img);
}

size_t convert_cityscapes_split(const std::string& root, const std::string& split, bool overwrite,
                                const std::function<void(size_t, size_t, const std::string&)>& progress) {
  const std::vector<std::string> files = find_cityscapes_label_ids(root, split);
  size_t written = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string out = cityscapes_train_ids_path(files[i]);
    std::error_code ec;
    if (overwrite || !fs::exists(out, ec)) {
      convert_cityscapes_label(files[i], out);
      ++written;
    }
    if (progress) progress(i + 1, files.size(), files[i]);
  }
  return written;
}

}  // namespace u2pl
