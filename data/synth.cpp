// Writing the synthetic set in the VOC layout the public U2PL code reads (SPEC §4): images,
// index labels, class names and nested labeled/unlabeled splits drawn from Philox.
// Covered by tests/test_synth.cpp.
#include "data/synth.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "engine/check.h"
#include "engine/file_io.h"
#include "engine/rng.h"

namespace fs = std::filesystem;

namespace u2pl {
namespace {

// Where the split permutations' stream starts: far past every image's (image n uses n·2^32).
constexpr uint64_t kSplitOffset = uint64_t(1) << 63;
constexpr int kMaxSplitDraws = 100;

void write_lines(const fs::path& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + '\n';
  write_file_atomic(path.string(), text);
}

std::vector<std::string> ids(int64_t first, int64_t count) {
  std::vector<std::string> v;
  for (int64_t i = first; i < first + count; ++i) v.push_back(synth_id(i));
  return v;
}

}  // namespace

std::string synth_id(int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "synth_%06lld", static_cast<long long>(index));
  return buf;
}

std::vector<std::string> synth_class_names(int classes) {
  static const char* const names[] = {"background", "disc",  "square",   "triangle", "ring",
                                      "cross",      "star",  "crescent", "ell"};
  U2PL_CHECK(classes >= 2 && classes <= 9, "synth: classes must be in [2, 9], got " << classes);
  return std::vector<std::string>(names, names + classes);
}

SynthSummary write_synth_dataset(const SynthSpec& spec, const std::string& dir,
                                 const std::function<void(int64_t, int64_t)>& progress) {
  U2PL_CHECK(spec.train >= 1 && spec.val >= 1, "synth: --train and --val must be positive");
  const std::vector<std::string> names = synth_class_names(spec.classes);  // checks the count
  std::vector<int> labeled = spec.labeled;
  std::sort(labeled.begin(), labeled.end());
  U2PL_CHECK(std::adjacent_find(labeled.begin(), labeled.end()) == labeled.end(), "synth: repeated labeled size");
  for (int n : labeled)
    U2PL_CHECK(n >= 1 && n <= spec.train, "synth: labeled size " << n << " outside [1, " << spec.train << "]");
  const fs::path root(dir), jpg = root / "JPEGImages", png = root / "SegmentationClassAug", splits = root / "splits";
  for (const auto& d : {jpg, png, splits}) fs::create_directories(d);

  const int K = spec.classes;
  SynthSummary sum;
  sum.train_pixels.assign(K, 0);
  sum.val_pixels.assign(K, 0);
  sum.val_images.assign(K, 0);
  const int64_t total = int64_t(spec.train) + spec.val;
  std::vector<uint32_t> present(spec.train, 0);  // per train image: bit c set when class c is visible
  for (int64_t i = 0; i < total; ++i) {
    const SynthSample s = synth_sample(spec, i);
    const std::string id = synth_id(i);
    write_jpeg((jpg / (id + ".jpg")).string(), s.image, spec.jpeg_quality);
    write_png((png / (id + ".png")).string(), s.label);
    const bool train = i < spec.train;
    std::vector<int64_t>& pixels = train ? sum.train_pixels : sum.val_pixels;
    uint32_t mask = 0;
    for (uint8_t l : s.label.pixels) {
      if (l == 255) {
        ++sum.ignore_pixels;
        continue;
      }
      ++pixels[l];
      mask |= 1u << l;
    }
    if (train) present[i] = mask;
    else
      for (int c = 0; c < K; ++c) sum.val_images[c] += (mask >> c) & 1;
    sum.images += 1;
    sum.objects += s.objects;
    sum.total_pixels += int64_t(s.label.pixels.size());
    if (progress) progress(i + 1, total);
  }

  write_lines(root / "classes.txt", names);
  const std::vector<std::string> train_ids = ids(0, spec.train);
  write_lines(splits / "train.txt", train_ids);
  write_lines(splits / "val.txt", ids(spec.train, spec.val));

  // Nested labeled splits: the first n of a random permutation of train, redrawn (at most
  // kMaxSplitDraws times) until the smallest one shows every class that train shows.
  uint32_t train_mask = 0;
  for (uint32_t m : present) train_mask |= m;
  Rng rng(spec.seed, kSplitOffset);
  std::vector<int> perm(spec.train);
  while (!labeled.empty() && !sum.smallest_covers && sum.split_draws < kMaxSplitDraws) {
    for (int i = 0; i < spec.train; ++i) perm[i] = i;
    for (int i = spec.train - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(uint32_t(i + 1))]);
    uint32_t m = 0;
    for (int i = 0; i < labeled.front(); ++i) m |= present[perm[i]];
    sum.split_draws += 1;
    sum.smallest_covers = m == train_mask;
  }
  for (int n : labeled) {
    std::vector<bool> is_labeled(spec.train, false);
    for (int i = 0; i < n; ++i) is_labeled[perm[i]] = true;
    std::vector<std::string> lab, unlab;
    for (int i = 0; i < spec.train; ++i) (is_labeled[i] ? lab : unlab).push_back(train_ids[i]);
    const fs::path d = splits / std::to_string(n);
    fs::create_directories(d);
    write_lines(d / "labeled.txt", lab);
    write_lines(d / "unlabeled.txt", unlab);
  }
  return sum;
}

}  // namespace u2pl
