// Fuzzes the input of u2pl_cityscapes_trainids (data/cityscapes.h): a labelIds PNG converted to a
// trainIds PNG. Any file either converts or throws u2pl::Error; a file that converts gives a PNG
// of the same size whose every value is the trainId of the labelId below it. Anything else is a
// finding.
#include "data/cityscapes.h"
#include "data/image_io.h"
#include "engine/check.h"
#include "fuzz/fuzz_util.h"

namespace u2pl::fuzz {

bool cityscapes(const uint8_t* data, size_t size) {
  const std::string in = write_input("a_gtFine_labelIds.png", data, size);
  const std::string out = cityscapes_train_ids_path(in);
  try {
    convert_cityscapes_label(in, out);
  } catch (const Error&) {
    return false;
  }
  try {
    const Image ids = read_image(in, 1), train = read_image(out, 1);
    if (ids.width != train.width || ids.height != train.height) violated("a trainIds file of another size");
    for (size_t i = 0; i < ids.pixels.size(); ++i)
      if (train.pixels[i] != cityscapes_train_id(ids.pixels[i])) violated("a value that is not its trainId");
  } catch (const Error& e) {
    violated(std::string("a converted file that does not read back: ") + e.what());
  }
  return true;
}

}  // namespace u2pl::fuzz

U2PL_FUZZ_TARGET(cityscapes)
