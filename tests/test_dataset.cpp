// The datasets (data/dataset.cpp) and the Cityscapes trainIds conversion (data/cityscapes.cpp) on
// small VOC, Cityscapes and folder trees written to /tmp: index and palette VOC labels, Cityscapes
// names, the folder layout, every open- and load-time error (each message checked for the file
// and the problem), skip_bad, the unlabeled list rule and write_jpeg.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "data/cityscapes.h"
#include "data/dataset.h"
#include "engine/check.h"
#include "tests/temp_dir.h"

using namespace u2pl;
namespace fs = std::filesystem;

namespace {

// A fresh folder per test, removed at scope exit.
struct TempDir : test::TempDir {
  explicit TempDir(const std::string& tag) : test::TempDir("dataset_" + tag) {}
};

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

Image rgb(int w, int h, int seed) {
  Image img{w, h, 3, std::vector<uint8_t>(size_t(w) * h * 3)};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((i * 7 + seed * 31) % 256);
  return img;
}

Image index_label(int w, int h, int classes, uint8_t ignore_at_0 = 255) {
  Image img{w, h, 1, std::vector<uint8_t>(size_t(w) * h)};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i % classes);
  img.pixels[0] = ignore_at_0;
  return img;
}

void put_png(const std::string& path, const Image& img) {
  fs::create_directories(fs::path(path).parent_path());
  write_png(path, img);
}
void put_jpeg(const std::string& path, const Image& img) {
  fs::create_directories(fs::path(path).parent_path());
  write_jpeg(path, img, 95);
}

// A PNG of any colour type and bit depth from its packed rows (stored zlib blocks), with an
// optional palette and tRNS chunk: the forms VOC's SegmentationClass files and other tools write.
uint32_t crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}
std::string be32(uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }
std::string png_bytes(uint32_t w, uint32_t h, int depth, int colour_type, const std::vector<std::string>& rows,
                      const std::vector<std::array<uint8_t, 3>>& pal = {}, const std::string& trns = "") {
  std::string raw, plte, z = "\x78\x01";
  for (const std::string& r : rows) raw += '\0' + r;
  REQUIRE(raw.size() < 65536);
  const uint16_t n = uint16_t(raw.size());
  z += std::string{'\x01', char(n & 0xff), char(n >> 8), char(~n & 0xff), char((~n >> 8) & 0xff)} + raw;
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  z += be32((b << 16) | a);
  for (const auto& c : pal) plte += std::string{char(c[0]), char(c[1]), char(c[2])};
  std::string out = "\x89PNG\r\n\x1a\n";
  auto chunk = [&](const std::string& type, const std::string& data) {
    out += be32(uint32_t(data.size())) + type + data + be32(crc32(type + data));
  };
  chunk("IHDR", be32(w) + be32(h) + std::string{char(depth), char(colour_type), 0, 0, 0});
  if (!pal.empty()) chunk("PLTE", plte);
  if (!trns.empty()) chunk("tRNS", trns);
  chunk("IDAT", z);
  chunk("IEND", "");
  return out;
}
void write_palette_png(const std::string& path, int w, int h, const std::vector<uint8_t>& idx,
                       const std::vector<std::array<uint8_t, 3>>& pal) {
  std::vector<std::string> rows;
  for (int y = 0; y < h; ++y) rows.emplace_back(idx.begin() + y * w, idx.begin() + (y + 1) * w);
  write_text(path, png_bytes(uint32_t(w), uint32_t(h), 8, 3, rows, pal));
}

// The message of the error that f throws ("" when none); each of `parts` must appear in it.
template <class F>
void check_error(F&& f, std::initializer_list<std::string> parts) {
  std::string msg;
  try {
    f();
  } catch (const Error& e) {
    msg = e.what();
  }
  REQUIRE_MESSAGE(!msg.empty(), "no error thrown; expected: " << *parts.begin());
  for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << p << "' not in: " << msg);
}

// A VOC tree with ids a, b, c (16x12 JPEGs) and index labels in SegmentationClassAug.
struct Voc {
  TempDir dir;
  std::string root, list;
  explicit Voc(const std::string& tag, const std::string& split_text = "a\nb\nc\n") : dir(tag), root(dir.path) {
    for (const char* id : {"a", "b", "c"}) {
      put_jpeg(root + "/JPEGImages/" + id + ".jpg", rgb(16, 12, id[0]));
      put_png(root + "/SegmentationClassAug/" + id + ".png", index_label(16, 12, 21));
    }
    list = root + "/train.txt";
    write_text(list, split_text);
  }
  DatasetSpec spec(bool skip_bad = false) const {
    DatasetSpec s;
    s.data_root = root;
    s.data_list = list;
    s.skip_bad = skip_bad;
    return s;
  }
};

}  // namespace

TEST_CASE("dataset: write_jpeg writes a JPEG that decodes to nearly the same pixels") {
  const TempDir dir("jpeg");
  const std::string p = dir.path + "/x.jpg";
  Image flat{8, 8, 3, std::vector<uint8_t>(8 * 8 * 3, 90)};
  write_jpeg(p, flat, 95);
  const Image back = read_image(p, 3);
  REQUIRE(back.width == 8);
  REQUIRE(back.height == 8);
  for (uint8_t v : back.pixels) CHECK(std::abs(int(v) - 90) <= 2);
  CHECK(probe_image(p).channels == 3);
  CHECK_THROWS_WITH_AS(write_jpeg(p, flat, 0), doctest::Contains("quality"), Error);
}

TEST_CASE("image decoding: every PNG colour type and depth as PIL's convert(\"RGB\") gives it") {
  const TempDir dir("png_forms");
  const std::string p = dir.path + "/x.png";
  const int w = 4, h = 3;
  auto rows = [&](int bytes_per_pixel, auto value) {  // value(x, y, k): byte k of pixel (x, y)
    std::vector<std::string> r(h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < bytes_per_pixel; ++k) r[size_t(y)] += char(value(x, y, k));
    return r;
  };
  auto expect_rgb = [&](auto rgb_of) {  // rgb_of(x, y, c)
    const Image img = read_image(p, 3);
    REQUIRE(img.width == w);
    REQUIRE(img.height == h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) CHECK(int(img.pixels[size_t((y * w + x) * 3 + c)]) == rgb_of(x, y, c));
  };
  // Palette with transparency: the palette's colours, no compositing; reported as RGBA.
  std::vector<std::array<uint8_t, 3>> pal;
  for (int i = 0; i < 5; ++i) pal.push_back({uint8_t(10 * i), uint8_t(20 * i), uint8_t(30 * i)});
  const std::string trns("\x00\x80", 2);
  write_text(p, png_bytes(w, h, 8, 3, rows(1, [](int x, int y, int) { return (x + y) % 5; }), pal, trns));
  expect_rgb([](int x, int y, int c) { return (x + y) % 5 * 10 * (c + 1); });
  CHECK(probe_image(p).channels == 4);
  const std::string four = p + ": expected a single-channel image, got 4 channels";
  CHECK_THROWS_WITH_AS(read_image(p, 1), doctest::Contains(four.c_str()), Error);
  // RGBA: alpha dropped, as PIL does, not blended.
  write_text(p, png_bytes(w, h, 8, 6, rows(4, [](int x, int y, int k) {
                            return k == 3 ? x * 80 : (x + 1) * (y + 2) * (k + 3);
                          })));
  expect_rgb([](int x, int y, int c) { return (x + 1) * (y + 2) * (c + 3); });
  CHECK(probe_image(p).channels == 4);
  // 16-bit grey: the high byte of each sample, grey replicated to RGB; read as one channel too.
  write_text(p, png_bytes(w, h, 16, 0, rows(2, [](int x, int y, int k) {
                            const int v = x * 4000 + y * 300 + 77;
                            return k == 0 ? v >> 8 : v & 0xff;
                          })));
  expect_rgb([](int x, int y, int) { return (x * 4000 + y * 300 + 77) >> 8; });
  CHECK(probe_image(p).bits16);
  CHECK(read_image(p, 1).pixels[5] == (1 * 4000 + 1 * 300 + 77) >> 8);
  // 4-bit grey (8 pixels from 4 bytes a row): 0..15 scaled to 0..255; grey + alpha: the grey.
  write_text(p, png_bytes(8, h, 4, 0, rows(1, [](int x, int y, int) {
                            return ((2 * x + 4 * y) % 16) << 4 | ((2 * x + 1 + 4 * y) % 16);
                          })));
  const Image g4 = read_image(p, 1);
  for (int i = 0; i < 8 * h; ++i) CHECK(int(g4.pixels[size_t(i)]) == (i % 8 + 4 * (i / 8)) % 16 * 17);
  write_text(p, png_bytes(w, h, 8, 4, rows(2, [](int x, int y, int k) { return k ? 9 : x * 50 + y; })));
  expect_rgb([](int x, int y, int) { return x * 50 + y; });
  CHECK(probe_image(p).channels == 2);
  // 16-bit RGB: the high bytes; RGB with a transparent colour (tRNS): the colours.
  write_text(p, png_bytes(w, h, 16, 2, rows(6, [](int x, int y, int k) { return k % 2 ? 255 : x * 60 + y * 7 + k; })));
  expect_rgb([](int x, int y, int c) { return x * 60 + y * 7 + 2 * c; });
  write_text(p, png_bytes(w, h, 8, 2, rows(3, [](int x, int y, int k) { return x * 30 + y * 9 + k; }), {},
                          std::string("\x00\x00\x00\x09\x00\x0a", 6)));
  expect_rgb([](int x, int y, int c) { return x * 30 + y * 9 + c; });
}

TEST_CASE("image decoding: a CMYK JPEG converts to RGB as PIL converts it") {
  // 16x8, written by libjpeg with its Adobe marker, so the values are stored inverted: (C, M, Y,
  // K) = (200, 100, 50, 220) on the left half, 255 everywhere on the right. PIL's
  // convert("RGB") of (55, 155, 205, 35): (173, 86, 43); of (0, 0, 0, 0): white.
  const std::string f = std::string(U2PL_FIXTURE_DIR) + "/cmyk_adobe.jpg";
  CHECK(probe_image(f).channels == 4);
  const Image img = read_image(f, 3);
  REQUIRE(img.width == 16);
  REQUIRE(img.height == 8);
  const int left[3] = {173, 86, 43};
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 16; ++x)
      for (int c = 0; c < 3; ++c)  // JPEG is lossy: within 3 levels
        CHECK(std::abs(int(img.pixels[size_t((y * 16 + x) * 3 + c)]) - (x < 8 ? left[c] : 255)) <= 3);
  CHECK_THROWS_WITH_AS(read_image(f, 1), doctest::Contains("expected a single-channel image, got 4"), Error);
}

TEST_CASE("image decoding: corrupt data, other formats and oversized headers are errors naming the file") {
  const TempDir dir("decode_errors");
  const std::string p = dir.path + "/x.png", j = dir.path + "/x.jpg";
  const std::vector<std::string> rows(3, std::string(4, '\x07'));
  std::string png = png_bytes(4, 3, 8, 0, rows);
  png[png.find("IDAT") + 4] = 0x79;  // the zlib header's check bits no longer hold
  write_text(p, png);
  CHECK_THROWS_WITH_AS(read_image(p, 1), doctest::Contains((p + ": cannot decode the PNG (").c_str()), Error);
  write_text(p, png_bytes(1u << 14, 1u << 14, 8, 0, rows));  // 2^28 pixels claimed by a tiny file
  CHECK_THROWS_WITH_AS(read_image(p, 1), doctest::Contains("16384x16384 is over the 134217728 pixels"), Error);
  write_text(p, "GIF89a and the rest");
  CHECK_THROWS_WITH_AS(read_image(p, 3), doctest::Contains((p + ": not a PNG or JPEG file").c_str()), Error);
  CHECK_THROWS_WITH_AS(probe_image(p), doctest::Contains((p + ": not a PNG or JPEG file").c_str()), Error);
  // A JPEG cut inside its scan: libjpeg would fill in grey with a warning; that is an error. Other
  // warnings are ignored, as PIL ignores them: bytes between the scan and its end marker.
  write_jpeg(j, rgb(32, 32, 5), 95);
  write_jpeg(dir.path + "/ok.jpg", rgb(32, 32, 5), 95);
  std::ifstream in(j, std::ios::binary);
  const std::string jpeg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_text(j, jpeg.substr(0, jpeg.size() * 2 / 3));
  CHECK_THROWS_WITH_AS(read_image(j, 3), doctest::Contains((j + ": cannot decode the JPEG (Premature end").c_str()),
                       Error);
  write_text(j, jpeg.substr(0, jpeg.size() - 2) + "junk" + jpeg.substr(jpeg.size() - 2));
  CHECK(read_image(j, 3).pixels == read_image(dir.path + "/ok.jpg", 3).pixels);
  // A colour JPEG is not one channel.
  write_jpeg(j, rgb(16, 8, 2), 95);
  CHECK_THROWS_WITH_AS(read_image(j, 1), doctest::Contains((j + ": expected a single-channel image, got 3").c_str()),
                       Error);
}

TEST_CASE("dataset: VOC with index labels (SegmentationClassAug), Windows line endings") {
  const Voc voc("voc_index", "a\r\nb\r\nc\r\n\r\n");
  const Dataset ds(voc.spec(), true);
  REQUIRE(ds.size() == 3);
  CHECK(ds.skipped() == 0);
  CHECK(ds.sample(1).id == "b");
  CHECK(ds.sample(1).image_path == voc.root + "/JPEGImages/b.jpg");
  CHECK(ds.sample(1).label_path == voc.root + "/SegmentationClassAug/b.png");
  const LoadedSample s = ds.load(2);
  CHECK(s.id == "c");
  CHECK(s.image.width == 16);
  CHECK(s.image.height == 12);
  CHECK(s.image.channels == 3);
  CHECK(s.label == index_label(16, 12, 21).pixels);
  const auto names = ds.class_names();
  REQUIRE(names.size() == 21);
  CHECK(names[0] == "background");
  CHECK(names[15] == "person");
  CHECK(names[20] == "tvmonitor");

  // Unlabeled use: the label path is kept where it exists, but load() returns no label.
  const Dataset unl(voc.spec(), false);
  CHECK(unl.sample(0).label_path == voc.root + "/SegmentationClassAug/a.png");
  CHECK(unl.load(0).label.empty());
  fs::remove_all(voc.root + "/SegmentationClassAug");
  const Dataset bare(voc.spec(), false);
  CHECK(bare.sample(0).label_path.empty());
}

TEST_CASE("dataset: VOC palette labels (SegmentationClass) map back through the VOC palette") {
  const TempDir dir("voc_palette");
  const std::string& root = dir.path;
  put_jpeg(root + "/JPEGImages/p.jpg", rgb(6, 4, 1));
  put_jpeg(root + "/JPEGImages/q.jpg", rgb(6, 4, 2));
  write_text(root + "/val.txt", "p\nq");  // no trailing newline
  // p: a real palette PNG with the VOC colours and the boundary colour as entry 255.
  auto pal = class_palette(21);
  pal.resize(256, {0, 0, 0});
  pal[255] = {224, 224, 192};
  const std::vector<uint8_t> want = {0, 1,  2,  15, 20, 255, 3,  4,  5,  6,  7,   8,
                                     9, 10, 11, 12, 13, 14,  16, 17, 18, 19, 255, 0};
  write_palette_png(root + "/SegmentationClass/p.png", 6, 4, want, pal);
  // q: the same picture as an RGB PNG.
  Image q{6, 4, 3, {}};
  for (uint8_t v : want)
    for (int c = 0; c < 3; ++c) q.pixels.push_back(pal[v][c]);
  put_png(root + "/SegmentationClass/q.png", q);
  DatasetSpec spec;
  spec.data_root = root;
  spec.data_list = root + "/val.txt";
  const Dataset ds(spec, true);
  REQUIRE(ds.size() == 2);
  CHECK(probe_image(ds.sample(0).label_path).channels == 3);  // a palette PNG without tRNS counts as RGB
  CHECK(ds.load(0).label == want);
  CHECK(ds.load(1).label == want);

  // A colour outside the palette: the file and the colour are named.
  q.pixels[3 * 1 + 1] = 77;  // pixel (1, 0), class 1 (128, 0, 0) → (128, 77, 0)
  put_png(root + "/SegmentationClass/q.png", q);
  check_error([&] { ds.load(1); }, {root + "/SegmentationClass/q.png", "colour (128, 77, 0) at (x=1, y=0)",
                                    "neither a VOC palette colour nor the boundary colour (224, 224, 192)"});

  // SegmentationClassAug wins when both folders exist.
  put_png(root + "/SegmentationClassAug/p.png", index_label(6, 4, 21));
  put_png(root + "/SegmentationClassAug/q.png", index_label(6, 4, 21));
  CHECK(Dataset(spec, true).sample(0).label_path == root + "/SegmentationClassAug/p.png");
}

TEST_CASE("dataset: Cityscapes names and labels, with labelIds converted to trainIds") {
  const TempDir dir("city");
  const std::string& root = dir.path;
  const std::string img = "leftImg8bit/train/ulm/ulm_000079_000019_leftImg8bit.png";
  const std::string ids = root + "/gtFine/train/ulm/ulm_000079_000019_gtFine_labelIds.png";
  const std::string train = root + "/gtFine/train/ulm/ulm_000079_000019_gtFine_labelTrainIds.png";
  put_png(root + "/" + img, rgb(8, 5, 3));
  Image lab{8, 5, 1, {}};
  for (int i = 0; i < 40; ++i) lab.pixels.push_back(uint8_t(i));  // labelIds 0..39
  put_png(ids, lab);
  write_text(root + "/train.txt", img + "\n");
  DatasetSpec spec;
  spec.kind = DatasetKind::Cityscapes;
  spec.num_classes = 19;
  spec.data_root = root;
  spec.data_list = root + "/train.txt";

  // Without trainIds files, the error says how to make them.
  check_error([&] { Dataset(spec, true); },
              {spec.data_list + ":1: ", "missing label " + train, "u2pl_cityscapes_trainids --root " + root});

  std::vector<size_t> seen;
  CHECK(convert_cityscapes_split(root, "train", false, [&](size_t done, size_t total, const std::string& f) {
          seen.push_back(done);
          CHECK(total == 1);
          CHECK(f == ids);
        }) == 1);
  CHECK(seen == std::vector<size_t>{1});
  CHECK(convert_cityscapes_split(root, "train", false, nullptr) == 0);  // kept
  CHECK(convert_cityscapes_split(root, "train", true, nullptr) == 1);   // rewritten
  const Dataset ds(spec, true);
  CHECK(ds.sample(0).id == img);
  CHECK(ds.sample(0).image_path == root + "/" + img);
  CHECK(ds.sample(0).label_path == train);
  const std::vector<uint8_t> got = ds.load(0).label;
  REQUIRE(got.size() == 40);
  const int mapped[19] = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};
  std::vector<uint8_t> want(40, 255);
  for (int t = 0; t < 19; ++t) want[mapped[t]] = uint8_t(t);
  CHECK(got == want);
  for (int t = 0; t < 19; ++t) CHECK(cityscapes_train_id(mapped[t]) == t);
  for (int id : {-1, 0, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255}) CHECK(cityscapes_train_id(id) == 255);
  const auto names = ds.class_names();
  REQUIRE(names.size() == 19);
  CHECK(names[0] == "road");
  CHECK(names[18] == "bicycle");

  // Entries that are not leftImg8bit paths, and conversion errors.
  write_text(root + "/bad.txt", img + "\ntrain/ulm/x.png\n");
  spec.data_list = root + "/bad.txt";
  check_error([&] { Dataset(spec, true); },
              {root + "/bad.txt:2: ", "expected a Cityscapes image path like", "got 'train/ulm/x.png'"});
  check_error([&] { find_cityscapes_label_ids(root, "val"); }, {root + "/gtFine/val: missing"});
  fs::create_directories(root + "/gtFine/test/bonn");
  check_error([&] { find_cityscapes_label_ids(root, "test"); }, {"gtFine/test: no <city>/*_gtFine_labelIds.png"});
  put_png(root + "/gtFine/test/bonn/b_gtFine_labelIds.png", rgb(4, 4, 0));
  check_error([&] { convert_cityscapes_split(root, "test", false, nullptr); },
              {root + "/gtFine/test/bonn/b_gtFine_labelIds.png", "expected an 8-bit single-channel", "3 channel"});
  check_error([&] { cityscapes_train_ids_path("x_gtFine_color.png"); }, {"x_gtFine_color.png", "_gtFine_labelIds.png"});
}

TEST_CASE("dataset: the folder layout (images/<id>.jpg|png, labels/<id>.png, classes.txt)") {
  const TempDir dir("folder");
  const std::string& root = dir.path;
  put_jpeg(root + "/images/one.jpg", rgb(5, 7, 1));
  put_png(root + "/images/two.png", rgb(5, 7, 2));
  put_png(root + "/labels/one.png", index_label(5, 7, 3));
  put_png(root + "/labels/two.png", index_label(5, 7, 3, 1));
  write_text(root + "/classes.txt", "sky\r\nroad\r\ncar\r\n");
  write_text(root + "/list.txt", "one\ntwo\n");
  DatasetSpec spec;
  spec.kind = DatasetKind::Folder;
  spec.num_classes = 3;
  spec.data_root = root;
  spec.data_list = root + "/list.txt";
  const Dataset ds(spec, true);
  REQUIRE(ds.size() == 2);
  CHECK(ds.sample(0).image_path == root + "/images/one.jpg");
  CHECK(ds.sample(1).image_path == root + "/images/two.png");
  CHECK(ds.load(1).image.pixels == rgb(5, 7, 2).pixels);
  CHECK(ds.load(1).label == index_label(5, 7, 3, 1).pixels);
  CHECK(ds.class_names() == std::vector<std::string>{"sky", "road", "car"});

  spec.num_classes = 4;
  check_error([&] { Dataset(spec, true); }, {root + "/classes.txt", "3 class names, but num_classes is 4"});
  spec.num_classes = 3;
  put_png(root + "/images/one.png", rgb(5, 7, 1));
  check_error([&] { Dataset(spec, true); }, {"list.txt:1: ", "both " + root + "/images/one.jpg and", "one.png"});
  fs::remove(root + "/images/one.png");
  put_png(root + "/labels/two.png", rgb(5, 7, 0));
  check_error([&] { Dataset(spec, true); },
              {"list.txt:2: ", root + "/labels/two.png", "single-channel index PNG, got 3"});
  write_text(root + "/classes.txt", "only\n");
  spec.num_classes = 1;
  check_error([&] { Dataset(spec, true); }, {"num_classes must be at least 2"});
  spec.num_classes = 2;
  check_error([&] { Dataset(spec, true); }, {root + "/classes.txt", "at least 2 classes are needed, got 1"});
  fs::remove(root + "/classes.txt");
  check_error([&] { Dataset(spec, true); }, {"expected " + root + "/classes.txt (one class name a line)"});
}

TEST_CASE("dataset: split and layout errors name the file, the line and what was expected") {
  const Voc voc("errors");
  DatasetSpec spec = voc.spec();
  auto open = [&](const std::string& text) {
    write_text(voc.list, text);
    return Dataset(spec, true);
  };
  check_error([&] { open("a\n\nb\n"); }, {voc.list + ":2: empty line between entries"});
  check_error([&] { open("a\nb\nc\nb\n"); }, {voc.list + ":4: duplicate entry 'b' (first at line 2)"});
  check_error([&] { open("\n \n"); }, {voc.list + ": empty split (no entries)"});
  check_error([&] { open("a\nzzz\n"); }, {voc.list + ":2: missing image " + voc.root + "/JPEGImages/zzz.jpg"});
  fs::remove(voc.root + "/SegmentationClassAug/b.png");
  check_error([&] { open("a\nb\n"); }, {voc.list + ":2: missing label " + voc.root + "/SegmentationClassAug/b.png"});
  spec.data_list = voc.root + "/nope.txt";
  check_error([&] { Dataset(spec, true); }, {voc.root + "/nope.txt: split file missing"});
  spec.data_list = voc.list;
  spec.num_classes = 19;  // the VOC layout with another class count and no classes.txt: generic names
  {
    write_text(voc.list, "a\n");
    const Dataset other(spec, true);
    REQUIRE(other.class_names().size() == 19);
    CHECK(other.class_names()[0] == "class_0");
    CHECK(other.class_names()[18] == "class_18");
    REQUIRE(other.warnings().size() == 1);
    CHECK(other.warnings()[0].find("num_classes is 19 (VOC has 21) and there is no classes.txt") != std::string::npos);
    CHECK(other.warnings()[0].find(voc.root + "/classes.txt") != std::string::npos);
  }
  spec.num_classes = 21;
  spec.ignore_label = 20;
  check_error([&] { Dataset(spec, true); }, {"ignore_label 20 must lie in [21, 255]"});
  spec.ignore_label = 255;
  fs::remove_all(voc.root + "/SegmentationClassAug");
  check_error(
      [&] { Dataset(spec, true); },
      {voc.root + ": no VOC label folder: expected " + voc.root + "/SegmentationClassAug/", "SegmentationClass/"});
  fs::remove_all(voc.root + "/JPEGImages");
  check_error([&] { Dataset(spec, false); },
              {voc.root + ": not a VOC2012 folder: expected " + voc.root + "/JPEGImages/"});
  spec.data_root = voc.root + "/missing";
  check_error([&] { Dataset(spec, false); }, {voc.root + "/missing: data_root is not a folder"});
}

TEST_CASE("dataset: corrupt, truncated and mismatched files are errors naming the file") {
  const Voc voc("bad_files");
  const std::string a = voc.root + "/JPEGImages/a.jpg", b_lab = voc.root + "/SegmentationClassAug/b.png";
  std::ifstream in(a, std::ios::binary);
  const std::string jpeg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_text(a, jpeg.substr(0, jpeg.size() * 2 / 3));
  check_error([&] { Dataset(voc.spec(), true); }, {voc.list + ":1: ", a + ": truncated JPEG"});
  write_text(a, "GIF? no: just text");
  check_error([&] { Dataset(voc.spec(), true); }, {voc.list + ":1: ", a + ": not a PNG or JPEG file"});
  put_jpeg(a, rgb(16, 12, 'a'));

  std::ifstream lin(b_lab, std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(lin)), std::istreambuf_iterator<char>());
  write_text(b_lab, png.substr(0, png.size() - 20));
  check_error([&] { Dataset(voc.spec(), true); }, {voc.list + ":2: ", b_lab + ": truncated PNG"});
  put_png(b_lab, index_label(15, 12, 21));
  check_error([&] { Dataset(voc.spec(), true); },
              {voc.list + ":2: ", b_lab + ": label is 15x12 but its image " + voc.root + "/JPEGImages/b.jpg is 16x12"});
  put_png(b_lab, index_label(16, 12, 21));

  // Decoding errors surface in load(): an out-of-range label value, a file broken after opening.
  const Dataset ds(voc.spec(), true);
  put_png(b_lab, index_label(16, 12, 21, 23));
  check_error([&] { ds.load(1); }, {b_lab + ": label value 23 at (x=0, y=0) is outside [0, 21)", "ignore label 255"});
  put_png(b_lab, index_label(16, 12, 21, 21));
  check_error([&] { ds.load(1); }, {"label value 21"});
  put_png(b_lab, index_label(16, 13, 21));
  check_error([&] { ds.load(1); }, {b_lab + ": label is 16x13 but its image", "is 16x12"});
  write_text(a, jpeg.substr(0, jpeg.size() / 2));
  check_error([&] { ds.load(0); }, {a});
}

TEST_CASE("dataset: skip_bad drops entries with missing or broken files and lists them") {
  const Voc voc("skip", "a\nb\nc\nd\n");
  write_text(voc.root + "/JPEGImages/b.jpg", "not an image");
  put_png(voc.root + "/SegmentationClassAug/c.png", index_label(3, 3, 21));
  check_error([&] { Dataset(voc.spec(false), true); }, {voc.list + ":2: "});
  const Dataset ds(voc.spec(true), true);
  REQUIRE(ds.size() == 1);
  CHECK(ds.sample(0).id == "a");
  CHECK(ds.skipped() == 3);
  REQUIRE(ds.warnings().size() == 3);
  CHECK(ds.warnings()[0].find(voc.list + ":2: " + voc.root + "/JPEGImages/b.jpg: not a PNG or JPEG file") == 0);
  CHECK(ds.warnings()[1].find(voc.list + ":3: ") == 0);
  CHECK(ds.warnings()[1].find("label is 3x3") != std::string::npos);
  CHECK(ds.warnings()[2].find(voc.list + ":4: missing image") == 0);
  CHECK(ds.warnings()[2].find("(entry skipped)") != std::string::npos);
  // Split-level problems are errors even with skip_bad, and so is a split with nothing left.
  write_text(voc.list, "a\n\nb\n");
  check_error([&] { Dataset(voc.spec(true), true); }, {":2: empty line"});
  write_text(voc.list, "b\nd\n");
  check_error([&] { Dataset(voc.spec(true), true); }, {voc.list + ": no usable entries (all 2 skipped)"});
}

TEST_CASE("dataset: the unlabeled list replaces the last labeled.txt") {
  CHECK(unlabeled_list_for("../data/splits/pascal/1464/labeled.txt") == "../data/splits/pascal/1464/unlabeled.txt");
  CHECK(unlabeled_list_for("labeled.txt/x/labeled.txt") == "labeled.txt/x/unlabeled.txt");
  CHECK(unlabeled_list_for("a/my_labeled.txt.bak") == "a/my_unlabeled.txt.bak");
  check_error([] { unlabeled_list_for("splits/val.txt"); }, {"splits/val.txt: ", "no 'labeled.txt'"});
  check_error([] { unlabeled_list_for("splits/unlabeled.txt"); }, {"names an unlabeled list"});
}
