// u2pl_cityscapes_trainids: writes gtFine/<split>/<city>/*_gtFine_labelTrainIds.png beside each
// *_gtFine_labelIds.png (the 19-class trainId mapping of cityscapesScripts), which the Cityscapes
// dataset reads. The logic lives in data/cityscapes.h (tests/test_dataset.cpp).
#include <csignal>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "data/cityscapes.h"
#include "engine/check.h"

using namespace u2pl;

namespace {

const char* const kUsage =
    "usage: u2pl_cityscapes_trainids --root CITYSCAPES [--split train,val] [--force]\n"
    "  --root   the folder holding gtFine/ (and leftImg8bit/)\n"
    "  --split  comma-separated gtFine splits to convert (default train,val)\n"
    "  --force  rewrite trainIds files that already exist (default: keep them)\n";

[[noreturn]] void usage_error(const std::string& msg) { throw Error(msg + "\n" + kUsage); }

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  try {
    std::string root, splits = "train,val";
    bool force = false;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "-h" || k == "--help") {
        std::cout << kUsage;
        return 0;
      }
      if (k == "--force") {
        force = true;
        continue;
      }
      if (k != "--root" && k != "--split") usage_error("unknown argument " + k);
      if (i + 1 >= argc) usage_error(k + " needs a value");
      (k == "--root" ? root : splits) = argv[++i];
    }
    if (root.empty()) usage_error("--root is required");
    std::stringstream ss(splits);
    for (std::string split; std::getline(ss, split, ',');) {
      if (split.empty()) usage_error("--split: empty split name in '" + splits + "'");
      size_t total = 0;
      const size_t written =
          convert_cityscapes_split(root, split, force, [&](size_t done, size_t n, const std::string& file) {
            total = n;
            if (done % 100 == 0 || done == n) std::cout << split << ": " << done << "/" << n << "  " << file << "\n";
          });
      std::cout << split << ": wrote " << written << " trainIds files";
      if (written < total) std::cout << ", kept " << total - written << " existing (--force rewrites them)";
      std::cout << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "u2pl_cityscapes_trainids: " << e.what() << "\n";
    return 1;
  }
}
