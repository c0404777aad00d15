// The procedural set (data/synth.h, apps/u2pl_synth): seed determinism, the VOC layout and
// split files, label values and coverage, and a per-pixel nearest-colour-mean classifier that
// must stay well below perfect (colour alone does not solve the task; shapes are needed).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <unistd.h>

#include "data/dataset.h"
#include "data/synth.h"

namespace fs = std::filesystem;
using namespace u2pl;

namespace {

SynthSpec small_spec(uint64_t seed) {
  SynthSpec s;
  s.seed = seed;
  s.train = 40;
  s.val = 20;
  s.size = 64;
  return s;
}

// A fresh folder under /tmp, removed at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag)
      : path(fs::temp_directory_path() / ("u2pl_test_synth_" + std::to_string(getpid()) + "_" + tag)) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<std::string> lines(const fs::path& p) {
  REQUIRE_MESSAGE(fs::is_regular_file(p), p.string() << " missing");
  std::ifstream f(p);
  std::vector<std::string> v;
  for (std::string l; std::getline(f, l);) v.push_back(l);
  return v;
}

// Relative path → contents for every file under `root`.
std::map<std::string, std::string> tree(const fs::path& root) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) m[fs::relative(e.path(), root).string()] = slurp(e.path());
  return m;
}

}  // namespace

TEST_CASE("synth: the same seed gives byte-identical files, another seed different ones") {
  TempDir a("a"), b("b"), c("c");
  write_synth_dataset(small_spec(7), a.str());
  write_synth_dataset(small_spec(7), b.str());
  write_synth_dataset(small_spec(8), c.str());
  const auto ta = tree(a.path), tb = tree(b.path), tc = tree(c.path);
  CHECK(ta.size() == 2 * 60 + 1 + 2 + 2 * 3);  // images, labels, classes.txt, train/val, 3 splits
  CHECK(ta == tb);
  int differ = 0;
  for (const auto& [name, bytes] : ta)
    if (name.rfind("JPEGImages/", 0) == 0) differ += tc.at(name) != bytes;
  CHECK(differ == 60);
  // An image depends on (seed, index) only, not on how many images the set holds.
  SynthSpec big = small_spec(7);
  big.train = 400;
  CHECK(synth_sample(big, 5).image.pixels == synth_sample(small_spec(7), 5).image.pixels);
  CHECK(synth_sample(small_spec(7), 5).image.pixels != synth_sample(small_spec(7), 6).image.pixels);
}

TEST_CASE("synth: VOC layout, split files, label values and class coverage") {
  TempDir d("layout");
  const SynthSpec spec = small_spec(3);
  const SynthSummary sum = write_synth_dataset(spec, d.str());
  CHECK(lines(d.path / "classes.txt") == synth_class_names(spec.classes));
  const auto train = lines(d.path / "splits/train.txt"), val = lines(d.path / "splits/val.txt");
  REQUIRE(train.size() == 40);
  REQUIRE(val.size() == 20);
  CHECK(train.front() == "synth_000000");
  const std::set<std::string> train_set(train.begin(), train.end());
  CHECK(train_set.size() == 40);
  for (const auto& id : val) CHECK(train_set.count(id) == 0);
  // The dataset reader opens it as VOC-layout data with its own classes.txt.
  const Dataset voc(DatasetSpec{DatasetKind::Voc, d.str(), d.str() + "/splits/val.txt", spec.classes, 255, false}, true);
  CHECK(voc.size() == 20);
  CHECK(voc.class_names() == synth_class_names(spec.classes));
  CHECK(voc.load(0).label.size() == voc.load(0).image.pixels.size() / 3);

  std::set<std::string> previous;
  for (int n : {8, 16, 32}) {
    const fs::path dir = d.path / "splits" / std::to_string(n);
    const auto lab = lines(dir / "labeled.txt"), unlab = lines(dir / "unlabeled.txt");
    CHECK(lab.size() == size_t(n));
    CHECK(unlab.size() == size_t(40 - n));
    std::set<std::string> all(lab.begin(), lab.end());
    for (const auto& id : previous) CHECK_MESSAGE(all.count(id) == 1, "split " << n << " lacks " << id);
    previous = all;
    for (const auto& id : unlab) CHECK_MESSAGE(all.insert(id).second, id << " both labeled and unlabeled");
    CHECK(all == train_set);
  }
  CHECK(sum.smallest_covers);

  std::vector<int> val_images(spec.classes, 0);
  int64_t ignore = 0, pixels = 0, bad_values = 0;
  for (const auto* list : {&train, &val})
    for (const auto& id : *list) {
      const Image img = read_image((d.path / "JPEGImages" / (id + ".jpg")).string(), 3);
      const Image lab = read_image((d.path / "SegmentationClassAug" / (id + ".png")).string(), 1);
      REQUIRE(img.width == 64);
      REQUIRE(img.height == 64);
      REQUIRE(lab.width == img.width);
      REQUIRE(lab.height == img.height);
      std::set<int> seen;
      for (uint8_t l : lab.pixels) {
        if (l == 255) ++ignore;
        else if (l < spec.classes) seen.insert(l);
        else ++bad_values;
      }
      pixels += int64_t(lab.pixels.size());
      if (list == &val)
        for (int c : seen) ++val_images[c];
    }
  CHECK_MESSAGE(bad_values == 0, "label values outside [0, " << spec.classes << ") and 255");
  for (int c = 0; c < spec.classes; ++c) CHECK_MESSAGE(val_images[c] > 0, "class " << c << " absent from val");
  CHECK(val_images == sum.val_images);
  // The 255 band is the one pixel an outline crosses: present, but thin.
  const double band = double(ignore) / double(pixels);
  MESSAGE("boundary band: " << 100 * band << "% of pixels");
  CHECK(band > 0.005);
  CHECK(band < 0.08);

  SynthSpec bad = spec;
  bad.classes = 10;
  CHECK_THROWS(synth_sample(bad, 0));
  bad = spec;
  bad.labeled = {41};
  CHECK_THROWS(write_synth_dataset(bad, d.str()));
}

TEST_CASE("synth: per-pixel colour is not enough to classify objects") {
  TempDir d("colour");
  const SynthSpec spec = small_spec(11);
  write_synth_dataset(spec, d.str());
  const int K = spec.classes;
  auto load = [&](const std::string& id, Image* img, Image* lab) {
    *img = read_image((d.path / "JPEGImages" / (id + ".jpg")).string(), 3);
    *lab = read_image((d.path / "SegmentationClassAug" / (id + ".png")).string(), 1);
  };
  // Class colour means over the labeled pixels of the 8-image split (what a tiny labeled set shows).
  std::vector<std::array<double, 3>> mean(K, {0, 0, 0});
  std::vector<int64_t> count(K, 0);
  Image img, lab;
  for (const auto& id : lines(d.path / "splits/8/labeled.txt")) {
    load(id, &img, &lab);
    for (size_t p = 0; p < lab.pixels.size(); ++p) {
      const int l = lab.pixels[p];
      if (l == 255) continue;
      for (int c = 0; c < 3; ++c) mean[l][c] += img.pixels[3 * p + c];
      ++count[l];
    }
  }
  for (int k = 0; k < K; ++k) {
    REQUIRE_MESSAGE(count[k] > 0, "class " << k << " absent from the 8 labeled images");
    for (double& m : mean[k]) m /= double(count[k]);
  }
  auto nearest = [&](const uint8_t* rgb, int first) {
    int best = first;
    double best_d = 1e30;
    for (int k = first; k < K; ++k) {
      double dist = 0;
      for (int c = 0; c < 3; ++c) dist += (rgb[c] - mean[k][c]) * (rgb[c] - mean[k][c]);
      if (dist < best_d) best_d = dist, best = k;
    }
    return best;
  };
  // Val accuracy: over all pixels (K-way), over object pixels (K-way) and over object pixels
  // choosing among object classes only (how much colour alone separates the object classes).
  int64_t all = 0, all_ok = 0, fg = 0, fg_ok = 0, obj_ok = 0;
  for (const auto& id : lines(d.path / "splits/val.txt")) {
    load(id, &img, &lab);
    for (size_t p = 0; p < lab.pixels.size(); ++p) {
      const int l = lab.pixels[p];
      if (l == 255) continue;
      const int k = nearest(&img.pixels[3 * p], 0);
      ++all;
      all_ok += k == l;
      if (l == 0) continue;
      ++fg;
      fg_ok += k == l;
      obj_ok += nearest(&img.pixels[3 * p], 1) == l;
    }
  }
  const double acc_all = double(all_ok) / all, acc_fg = double(fg_ok) / fg, acc_obj = double(obj_ok) / fg;
  MESSAGE("nearest colour mean (fit on 8 labeled images): pixel accuracy " << acc_all << ", object pixels "
          << acc_fg << ", object pixels among object classes " << acc_obj << " (chance " << 1.0 / (K - 1) << ")");
  // Colour carries some signal (above chance) but far from all of it.
  CHECK(acc_obj > 0.3);
  CHECK(acc_obj < 0.8);
  CHECK(acc_fg < 0.9);
}
