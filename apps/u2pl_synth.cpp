// u2pl_synth: writes a small procedural VOC-format segmentation set from a seed (the same seed
// gives the same files). The logic lives in data/synth.h; this main parses, runs and reports.
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

#include "apps/cli.h"
#include "data/synth.h"
#include "engine/check.h"

using namespace u2pl;

namespace {

const char* const kUsage =
    "usage: u2pl_synth --out DIR [--seed S] [--train N] [--val M] [--size S] [--classes K]\n"
    "                  [--labeled 8,16,32]\n"
    "  --out      output folder (JPEGImages/, SegmentationClassAug/, classes.txt, splits/)\n"
    "  --seed     Philox seed (default 0)\n"
    "  --train    training images (default 400); --val validation images (default 100)\n"
    "  --size     image side in pixels (default 96)\n"
    "  --classes  background + object classes, 2 to 9 (default 6)\n"
    "  --labeled  labeled-split sizes, nested subsets of train (default 8,16,32)\n";

// A non-negative decimal integer, whole string.
uint64_t to_u64(const std::string& k, const std::string& v) {
  const bool digits = !v.empty() && v.size() <= 19 && v.find_first_not_of("0123456789") == std::string::npos;
  U2PL_CHECK(digits, k << ": expected a non-negative integer, got '" << v << "'");
  return std::stoull(v);
}

int to_int(const std::string& k, const std::string& v) {
  const uint64_t x = to_u64(k, v);
  U2PL_CHECK(x <= 1000000000, k << ": " << v << " is too large");
  return static_cast<int>(x);
}

SynthSpec parse(int argc, char** argv, std::string* out) {
  SynthSpec s;
  for (ArgReader r(argc, argv, kUsage); r.next();) {
    const std::string& k = r.key();
    if (k == "--out") *out = r.value();
    else if (k == "--seed") s.seed = to_u64(k, r.value());
    else if (k == "--train") s.train = to_int(k, r.value());
    else if (k == "--val") s.val = to_int(k, r.value());
    else if (k == "--size") s.size = to_int(k, r.value());
    else if (k == "--classes") s.classes = to_int(k, r.value());
    else if (k == "--labeled") {
      s.labeled.clear();
      std::stringstream ss(r.value());
      for (std::string item; std::getline(ss, item, ',');) s.labeled.push_back(to_int(k, item));
    } else if (k == "-h" || k == "--help") { std::cout << kUsage; std::exit(0); }
    else U2PL_FAIL("unknown argument " << k << "\n" << kUsage);
  }
  U2PL_CHECK(!out->empty(), "--out is required\n" << kUsage);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  try {
    std::string out;
    const SynthSpec spec = parse(argc, argv, &out);
    std::printf("u2pl_synth: seed %llu, %d train + %d val images of %dx%d, %d classes -> %s\n",
                static_cast<unsigned long long>(spec.seed), spec.train, spec.val, spec.size, spec.size,
                spec.classes, out.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    const SynthSummary sum = write_synth_dataset(spec, out, [](int64_t done, int64_t total) {
      if (done % 50 == 0 || done == total) std::printf("  %lld / %lld images\n", (long long)done, (long long)total);
      std::fflush(stdout);
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto names = synth_class_names(spec.classes);
    std::printf("%lld images, %lld objects (%.2f per image), %.1f%% boundary (255) pixels, %.2f s\n",
                (long long)sum.images, (long long)sum.objects, double(sum.objects) / double(sum.images),
                100.0 * double(sum.ignore_pixels) / double(sum.total_pixels), secs);
    std::printf("%-12s %9s %9s %11s\n", "class", "train px%", "val px%", "val images");
    int64_t tr = 0, va = 0;
    for (int c = 0; c < spec.classes; ++c) tr += sum.train_pixels[c], va += sum.val_pixels[c];
    for (int c = 0; c < spec.classes; ++c)
      std::printf("%-12s %9.2f %9.2f %11d\n", names[c].c_str(), 100.0 * double(sum.train_pixels[c]) / double(tr),
                  100.0 * double(sum.val_pixels[c]) / double(va), sum.val_images[c]);
    for (int c = 1; c < spec.classes; ++c)
      if (sum.val_images[c] == 0) std::printf("warning: class %s does not appear in val\n", names[c].c_str());
    if (!spec.labeled.empty())
      std::printf("labeled splits drawn in %d permutation(s); the smallest %s every class seen in train\n",
                  sum.split_draws, sum.smallest_covers ? "shows" : "does NOT show");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "u2pl_synth: error: %s\n", e.what());
    return 1;
  }
}
