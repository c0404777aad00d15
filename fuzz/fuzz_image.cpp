// Fuzzes image decoding with the dataset's checks (data/dataset.h): a one-entry split whose image
// and label files come from the input, opened (headers probed, sizes compared) and loaded (decoded,
// label values range-checked, VOC palette labels mapped back). Input: byte 0 picks the layout
// (bit 0: VOC, with palette labels allowed, else the folder layout; bit 1: the folder image as PNG,
// else JPEG; bit 2: no labels), bytes 1-4 the image's length (little-endian, cut to what is
// left), then the image file, then the label file. Any input either loads or throws u2pl::Error;
// what loads has an RGB image and one label a pixel, each a class or the ignore label. Anything
// else is a finding.
#include <filesystem>

#include "data/dataset.h"
#include "engine/check.h"
#include "fuzz/fuzz_util.h"

namespace fs = std::filesystem;

namespace u2pl::fuzz {

bool image(const uint8_t* data, size_t size) {
  if (size < 5) return false;
  const bool voc = data[0] & 1, png = data[0] & 2, labels = !(data[0] & 4);
  size_t n_image = size_t(data[1]) | size_t(data[2]) << 8 | size_t(data[3]) << 16 | size_t(data[4]) << 24;
  n_image = std::min(n_image, size - 5);
  const uint8_t* image = data + 5;
  const uint8_t* label = image + n_image;
  const size_t n_label = size - 5 - n_image;

  DatasetSpec spec;
  spec.kind = voc ? DatasetKind::Voc : DatasetKind::Folder;
  spec.data_root = scratch_dir() + (voc ? "/voc" : "/folder");
  spec.num_classes = voc ? 21 : 3;
  spec.data_list = write_input("list.txt", "a\n");
  std::error_code ec;
  if (voc) {
    write_input("voc/JPEGImages/a.jpg", image, n_image);
    write_input("voc/SegmentationClass/a.png", label, n_label);
  } else {
    write_input("folder/classes.txt", "sky\nroad\ncar\n");
    fs::remove(spec.data_root + (png ? "/images/a.jpg" : "/images/a.png"), ec);
    write_input(png ? "folder/images/a.png" : "folder/images/a.jpg", image, n_image);
    write_input("folder/labels/a.png", label, n_label);
  }
  try {
    const Dataset ds(spec, labels);
    const LoadedSample s = ds.load(0);
    const size_t pixels = size_t(s.image.width) * s.image.height;
    if (s.image.channels != 3 || s.image.pixels.size() != 3 * pixels) violated("an image that is not RGB");
    if (labels && s.label.size() != pixels) violated("a label map of another size than its image");
    if (!labels && !s.label.empty()) violated("a label loaded for an unlabeled dataset");
    for (const uint8_t v : s.label)
      if (v >= spec.num_classes && v != spec.ignore_label) violated("a label value out of range loaded");
  } catch (const Error&) {
    return false;
  }
  return true;
}

}  // namespace u2pl::fuzz

U2PL_FUZZ_TARGET(image)
