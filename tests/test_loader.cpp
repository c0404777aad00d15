// Tests of data/loader.h on small folder datasets written to /tmp: epoch orders (permutations,
// the labeled list repeated to the unlabeled length), batches equal to augment_train at the
// documented draw offsets, determinism across worker counts, validation batches, errors naming
// the file, skip_bad, and clean shutdown with a full window (also run under AddressSanitizer).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "data/loader.h"

using namespace u2pl;
namespace fs = std::filesystem;

namespace {

// A folder dataset (images/<id>.png, labels/<id>.png, classes.txt) removed at scope exit.
// Image i is (12 + i % 3)×10 when `varied`, 12×10 otherwise; labels lie in [0, 4).
struct TempSet {
  fs::path root;
  TempSet(const std::string& tag, int n, bool varied = false)
      : root(fs::temp_directory_path() / ("u2pl_test_loader_" + std::to_string(getpid()) + "_" + tag)) {
    fs::remove_all(root);
    fs::create_directories(root / "images");
    fs::create_directories(root / "labels");
    std::ofstream(root / "classes.txt") << "a\nb\nc\nd\n";
    std::ofstream list(root / "list.txt");
    for (int i = 0; i < n; ++i) {
      const int w = varied ? 12 + i % 3 : 12, h = 10;
      Image img{w, h, 3, std::vector<uint8_t>(size_t(w) * h * 3)};
      Image lab{w, h, 1, std::vector<uint8_t>(size_t(w) * h)};
      for (int p = 0; p < w * h; ++p) {
        for (int c = 0; c < 3; ++c) img.pixels[3 * p + c] = uint8_t((p * 5 + i * 40 + c * 60) % 256);
        lab.pixels[p] = uint8_t((p / 7 + i) % 4);
      }
      const std::string id = "img" + std::to_string(i);
      write_png(image_path(id), img);
      write_png((root / "labels" / (id + ".png")).string(), lab);
      list << id << "\n";
    }
  }
  ~TempSet() { fs::remove_all(root); }
  std::string image_path(const std::string& id) const { return (root / "images" / (id + ".png")).string(); }
  DatasetSpec spec(bool skip_bad = false) const {
    DatasetSpec s;
    s.kind = DatasetKind::Folder;
    s.data_root = root.string();
    s.data_list = (root / "list.txt").string();
    s.num_classes = 4;
    s.skip_bad = skip_bad;
    return s;
  }
  // Replaces an image by bytes no decoder reads (after the dataset has checked its header).
  void corrupt(const std::string& id) const { std::ofstream(image_path(id), std::ios::trunc) << "not an image"; }
};

AugmentSpec small_crop() {
  AugmentSpec a;
  a.crop_h = 8;
  a.crop_w = 9;
  return a;
}

LoaderSpec train_spec(LoaderOrder order, int batch, int workers, uint64_t seed = 5) {
  LoaderSpec s;
  s.order = order;
  s.batch_size = batch;
  s.workers = workers;
  s.seed = seed;
  return s;
}

// All batches of a loader with a fixed number of epochs.
std::vector<Batch> drain(Loader& l) {
  std::vector<Batch> out;
  while (std::optional<Batch> b = l.next()) out.push_back(std::move(*b));
  return out;
}

}  // namespace

TEST_CASE("loader: epoch orders are per-epoch permutations; the labeled list repeats evenly") {
  LoaderSpec s = train_spec(LoaderOrder::Shuffled, 1, 1);
  const std::vector<int64_t> e0 = epoch_order(s, 50, 0), e1 = epoch_order(s, 50, 1);
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) CHECK(sorted[i] == i);
  CHECK(e0 != e1);
  CHECK(e0 == epoch_order(s, 50, 0));
  CHECK(e0 != sorted);
  s.stream = 1;
  CHECK(epoch_order(s, 50, 0) != e0);

  s.order = LoaderOrder::Repeated;
  s.epoch_length = 23;  // 5 labeled entries repeated to 23: 4 or 5 times each, 3 of them 5 times
  std::set<std::vector<int64_t>> extra_sets;  // which 3 appear 5 times: a fresh draw each epoch
  for (int64_t e = 0; e < 6; ++e) {
    const std::vector<int64_t> r = epoch_order(s, 5, e);
    REQUIRE(r.size() == 23);
    std::map<int64_t, int> count;
    for (int64_t i : r) ++count[i];
    REQUIRE(count.size() == 5);
    std::vector<int64_t> fives;
    for (const auto& kv : count) {
      CHECK((kv.second == 4 || kv.second == 5));
      if (kv.second == 5) fives.push_back(kv.first);
    }
    CHECK(fives.size() == 3);
    extra_sets.insert(fives);
    CHECK(!std::is_sorted(r.begin(), r.end()));
  }
  CHECK(extra_sets.size() > 1);
  CHECK(epoch_order(s, 5, 0) != epoch_order(s, 5, 1));
  s.epoch_length = 3;  // more labeled entries than the epoch: each at most once
  std::vector<int64_t> few = epoch_order(s, 5, 0);
  std::sort(few.begin(), few.end());
  CHECK(std::unique(few.begin(), few.end()) == few.end());
  s.order = LoaderOrder::InOrder;
  CHECK(epoch_order(s, 4, 3) == std::vector<int64_t>{0, 1, 2, 3});
}

TEST_CASE("loader: batches follow the epoch order and equal augment_train at the documented offsets") {
  TempSet set("order", 7);
  const Dataset ds(set.spec(), true);
  const AugmentSpec aug = small_crop();
  LoaderSpec s = train_spec(LoaderOrder::Shuffled, 2, 2);
  s.stream = 3;
  s.first_epoch = 4;
  s.epochs = 2;
  Loader loader(ds, aug, s);
  CHECK(loader.batches_per_epoch() == 3);  // 7 / 2, the partial batch dropped
  const std::vector<Batch> batches = drain(loader);
  REQUIRE(batches.size() == 6);
  CHECK(!loader.next());
  for (const Batch& b : batches) {
    CHECK(b.images.shape() == Shape::nchw(2, 3, 8, 9));
    CHECK(b.labels.shape() == Shape({2, 8, 9}));
    const std::vector<int64_t> order = epoch_order(s, 7, b.epoch);
    for (int k = 0; k < 2; ++k) {
      const int64_t pos = b.index * 2 + k;
      CHECK(b.ids[k] == ds.sample(order[pos]).id);
      const TrainSample t = augment_train(ds.load(order[pos]), aug, s.seed,
                                          epoch_counter_base(3, b.epoch) + kAugmentRegion + pos * kAugmentCounters);
      CHECK(std::equal(t.image.begin(), t.image.end(), b.images.data() + k * 3 * 8 * 9));
      CHECK(std::equal(t.label.begin(), t.label.end(), b.labels.data() + k * 8 * 9));
    }
  }
  CHECK(batches[0].epoch == 4);
  CHECK(batches[5].epoch == 5);
  CHECK(batches[5].index == 2);

  // The labeled stream: 7 entries repeated to an epoch of 17 (the unlabeled length) in batches of 4.
  LoaderSpec r = train_spec(LoaderOrder::Repeated, 4, 3);
  r.epoch_length = 17;
  r.epochs = 1;
  Loader labeled(ds, aug, r);
  CHECK(labeled.batches_per_epoch() == 4);
  const std::vector<int64_t> order = epoch_order(r, 7, 0);
  const std::vector<Batch> lb = drain(labeled);
  REQUIRE(lb.size() == 4);
  for (int i = 0; i < 16; ++i) CHECK(lb[i / 4].ids[i % 4] == ds.sample(order[i]).id);

  // Without labels (the unlabeled stream) batches carry images only.
  const Dataset unl(set.spec(), false);
  Loader u(unl, aug, s);
  const std::optional<Batch> ub = u.next();
  REQUIRE(ub);
  CHECK(!ub->labels.view().defined());
  CHECK(ub->images.shape() == Shape::nchw(2, 3, 8, 9));
}

TEST_CASE("loader: the same seed gives identical batches with 1 and 3 workers") {
  TempSet set("determinism", 9);
  const Dataset ds(set.spec(), true);
  const AugmentSpec aug = small_crop();
  auto run = [&](int workers, int prefetch, uint64_t seed) {
    LoaderSpec s = train_spec(LoaderOrder::Repeated, 3, workers, seed);
    s.epoch_length = 12;
    s.epochs = 3;
    s.prefetch = prefetch;
    Loader l(ds, aug, s);
    return drain(l);
  };
  const std::vector<Batch> a = run(1, 1, 17), b = run(3, 0, 17), c = run(3, 2, 18);
  REQUIRE(a.size() == 12);
  REQUIRE(b.size() == 12);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].ids == b[i].ids);
    CHECK(a[i].images.to_host() == b[i].images.to_host());
    CHECK(a[i].labels.to_host() == b[i].labels.to_host());
    differs = differs || a[i].images.to_host() != c[i].images.to_host();
  }
  CHECK(differs);
}

TEST_CASE("loader: a resumed loader (first_epoch, first_batch) continues the batches of a whole run") {
  TempSet set("resume", 9);
  const Dataset ds(set.spec(), true);
  LoaderSpec s = train_spec(LoaderOrder::Repeated, 3, 2);
  s.epoch_length = 12;  // 4 batches per epoch
  s.epochs = 3;
  Loader whole_loader(ds, small_crop(), s);
  const std::vector<Batch> whole = drain(whole_loader);
  REQUIRE(whole.size() == 12);
  s.first_epoch = 1;
  s.first_batch = 2;
  s.epochs = 2;  // epochs 1 (from batch 2) and 2
  Loader resumed_loader(ds, small_crop(), s);
  const std::vector<Batch> resumed = drain(resumed_loader);
  REQUIRE(resumed.size() == 6);
  for (size_t i = 0; i < resumed.size(); ++i) {
    const Batch& w = whole[i + 6];
    CHECK(resumed[i].epoch == w.epoch);
    CHECK(resumed[i].index == w.index);
    CHECK(resumed[i].ids == w.ids);
    CHECK(resumed[i].images.to_host() == w.images.to_host());
  }
  s.first_batch = 4;
  CHECK_THROWS_WITH_AS(Loader(ds, small_crop(), s), doctest::Contains("first batch 4 outside the epoch's 4"), Error);
}

TEST_CASE("loader: validation batches keep the list order with a partial last batch") {
  TempSet set("val", 7, true);
  const Dataset ds(set.spec(), true);
  AugmentSpec aug = small_crop();
  LoaderSpec s = train_spec(LoaderOrder::InOrder, 3, 2);
  s.epochs = 1;
  Loader centred(ds, aug, s);
  CHECK(centred.batches_per_epoch() == 3);
  const std::vector<Batch> v = drain(centred);
  REQUIRE(v.size() == 3);
  CHECK(v[2].images.shape() == Shape::nchw(1, 3, 8, 9));
  for (int i = 0; i < 7; ++i) {
    CHECK(v[i / 3].ids[i % 3] == "img" + std::to_string(i));
    const ValSample want = prepare_val(ds.load(i), aug, ValCrop::Center);
    CHECK(std::equal(want.image.begin(), want.image.end(), v[i / 3].images.data() + (i % 3) * 3 * 8 * 9));
  }
  s.val_crop = ValCrop::None;
  s.batch_size = 1;
  Loader whole(ds, aug, s);
  const std::vector<Batch> w = drain(whole);
  REQUIRE(w.size() == 7);
  CHECK(w[1].images.shape() == Shape::nchw(1, 3, 10, 13));
  CHECK(w[1].labels.shape() == Shape({1, 10, 13}));
  s.batch_size = 2;
  Loader mixed(ds, aug, s);
  CHECK_THROWS_WITH_AS(mixed.next(), doctest::Contains("must share a size"), Error);
}

TEST_CASE("loader: an unreadable image reaches next() naming the file") {
  TempSet set("error", 6);
  const Dataset ds(set.spec(), true);
  set.corrupt("img3");
  LoaderSpec s = train_spec(LoaderOrder::InOrder, 2, 3);
  s.epochs = 1;
  Loader loader(ds, small_crop(), s);
  CHECK(loader.next()->ids == std::vector<std::string>{"img0", "img1"});
  CHECK_THROWS_WITH_AS(loader.next(), doctest::Contains(set.image_path("img3").c_str()), Error);
  CHECK_THROWS_WITH_AS(loader.next(), doctest::Contains("img3"), Error);  // and again
}

TEST_CASE("loader: skip_bad replaces an unreadable sample by the next one and counts it") {
  TempSet set("skip", 6);
  const Dataset ds(set.spec(true), true);
  set.corrupt("img3");
  LoaderSpec s = train_spec(LoaderOrder::InOrder, 2, 2);
  s.epochs = 2;
  Loader loader(ds, small_crop(), s);
  const std::vector<Batch> b = drain(loader);
  REQUIRE(b.size() == 6);
  CHECK(b[1].ids == std::vector<std::string>{"img2", "img4"});
  CHECK(b[4].ids == std::vector<std::string>{"img2", "img4"});
  CHECK(loader.skipped() == 1);

  LoaderSpec t = train_spec(LoaderOrder::Shuffled, 3, 2);
  Loader shuffled(ds, small_crop(), t);
  for (int i = 0; i < 6; ++i) {
    const std::optional<Batch> x = shuffled.next();
    REQUIRE(x);
    CHECK(std::count(x->ids.begin(), x->ids.end(), "img3") == 0);
  }
  CHECK(shuffled.skipped() == 1);
}

TEST_CASE("loader: destruction with a full window, mid-epoch or before any batch, does not hang") {
  TempSet set("shutdown", 8);
  const Dataset ds(set.spec(), true);
  LoaderSpec s = train_spec(LoaderOrder::Shuffled, 2, 3);
  s.prefetch = 2;  // fewer slots than workers: some workers wait for space
  {
    Loader loader(ds, small_crop(), s);
    REQUIRE(loader.next());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the window fills
  }
  { Loader untouched(ds, small_crop(), s); }
  s.prefetch = 0;
  for (int i = 0; i < 5; ++i) {
    Loader loader(ds, small_crop(), s);
    for (int k = 0; k < i; ++k) REQUIRE(loader.next());
  }
  s.workers = 0;
  CHECK_THROWS_WITH_AS(Loader(ds, small_crop(), s), doctest::Contains("workers"), Error);
}
