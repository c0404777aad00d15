// Split lists (data/splits.cpp) and u2pl_split: reading the public one-entry-a-line files (trailing
// newline, Windows line endings, each error with its line), the seeded labeled / unlabeled draw
// (sizes, order, determinism, rough uniformity, refusals) and the files u2pl_split writes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "data/splits.h"
#include "engine/check.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"

using namespace u2pl;
using u2pl::test::error_of;
namespace fs = std::filesystem;

namespace {

// A fresh folder per test, removed at scope exit.
struct TempDir : test::TempDir {
  explicit TempDir(const std::string& tag) : test::TempDir("splits_" + tag) {}
};

std::string write_list(const std::string& dir, const std::string& text) {
  const std::string p = dir + "/list.txt";
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::vector<std::string> texts(const std::vector<SplitEntry>& e) {
  std::vector<std::string> out;
  for (const auto& x : e) out.push_back(x.text);
  return out;
}

std::vector<std::string> numbered(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("2007_" + std::to_string(100000 + i));
  return out;
}

}  // namespace

TEST_CASE("split: files are read one entry a line, as the public U2PL split files") {
  const TempDir tmp("read");
  const std::string& dir = tmp.path;
  const std::vector<std::string> want = {"2007_000033", "2007_000042", "2007_000061"};
  for (const char* text :
       {"2007_000033\n2007_000042\n2007_000061\n", "2007_000033\n2007_000042\n2007_000061",
        "2007_000033\r\n2007_000042\r\n2007_000061\r\n", " 2007_000033\t\n2007_000042\n2007_000061\n\n\n"}) {
    CAPTURE(text);
    CHECK(texts(read_split(write_list(dir, text))) == want);
  }
  const auto e = read_split(write_list(dir, "x\ny\n"));
  CHECK(e[1].line == 2);
  CHECK(texts(read_split(write_list(dir, "leftImg8bit/train/ulm/ulm_000079_000019_leftImg8bit.png\n")))[0] ==
        "leftImg8bit/train/ulm/ulm_000079_000019_leftImg8bit.png");
}

TEST_CASE("split: a missing or empty file, blank lines between entries and duplicates are errors") {
  const TempDir tmp("errors");
  const std::string& dir = tmp.path;
  const std::string p = dir + "/list.txt";
  CHECK(error_of([&] { read_split(dir + "/none.txt"); }) == dir + "/none.txt: split file missing");
  CHECK(error_of([&] { read_split(dir); }) == dir + ": split file is not a regular file");
  CHECK(error_of([&] { read_split(write_list(dir, "")); }) == p + ": empty split (no entries)");
  CHECK(error_of([&] { read_split(write_list(dir, "\r\n  \n")); }) == p + ": empty split (no entries)");
  CHECK(error_of([&] { read_split(write_list(dir, "a\nb\n\nc\n")); }).find(p + ":3: empty line between entries") == 0);
  CHECK(error_of([&] { read_split(write_list(dir, "a\r\n\r\nb\r\n")); }).find(p + ":2: empty line") == 0);
  CHECK(error_of([&] { read_split(write_list(dir, "a\nb\nc\na\n")); }) ==
        p + ":4: duplicate entry 'a' (first at line 1)");
  CHECK(error_of([&] { read_split(write_list(dir, "a\nb\r\nb\n")); }) ==
        p + ":3: duplicate entry 'b' (first at line 2)");
  CHECK(error_of([&] { read_split(write_list(dir, ""), "class list"); }) == p + ": empty class list (no entries)");
}

TEST_CASE("split: draw_split takes n entries without replacement, in list order, reproducibly") {
  const std::vector<std::string> all = numbered(50);
  const SplitDraw d = draw_split(all, 12, 7);
  CHECK(d.labeled.size() == 12);
  CHECK(d.unlabeled.size() == 38);
  // Both halves keep the list's order, and together they are the list.
  CHECK(std::is_sorted(d.labeled.begin(), d.labeled.end()));
  CHECK(std::is_sorted(d.unlabeled.begin(), d.unlabeled.end()));
  std::vector<std::string> merged;
  std::merge(d.labeled.begin(), d.labeled.end(), d.unlabeled.begin(), d.unlabeled.end(), std::back_inserter(merged));
  CHECK(merged == all);
  // The same seed gives the same split; another seed another one.
  CHECK(draw_split(all, 12, 7).labeled == d.labeled);
  CHECK(draw_split(all, 12, 8).labeled != d.labeled);
  // n = size: everything is labeled.
  const SplitDraw full = draw_split(all, 50, 1);
  CHECK(full.labeled == all);
  CHECK(full.unlabeled.empty());

  // Each entry is drawn with probability n / size (3 / 10): 3000 draws, expected 900 each; the
  // band is about ±4.5 standard deviations (sd ≈ 25).
  const std::vector<std::string> ten = numbered(10);
  std::vector<int> count(10, 0);
  for (uint64_t seed = 0; seed < 3000; ++seed)
    for (const auto& x : draw_split(ten, 3, seed).labeled) ++count[std::find(ten.begin(), ten.end(), x) - ten.begin()];
  for (int c : count) CHECK((c > 785 && c < 1015));
}

TEST_CASE("split: draw_split refuses n outside [1, size] and duplicated entries") {
  const std::vector<std::string> all = numbered(5);
  CHECK(error_of([&] { draw_split(all, 0, 1); }) == "the labeled count must lie in [1, 5] (the list's size), got 0");
  CHECK(error_of([&] { draw_split(all, -3, 1); }).find("got -3") != std::string::npos);
  CHECK(error_of([&] { draw_split(all, 6, 1); }).find("got 6") != std::string::npos);
  CHECK(error_of([&] { draw_split({"a", "b", "a"}, 1, 1); }) == "duplicate entry 'a' (entries 1 and 3)");
}

TEST_CASE("split: make_split_files writes labeled.txt and unlabeled.txt the Dataset reads back") {
  const TempDir tmp("files");
  const std::string& dir = tmp.path;
  std::string text;
  for (const auto& x : numbered(20)) text += x + "\r\n";
  const std::string list = write_list(dir, text);
  const std::string out = dir + "/out/366";
  const SplitDraw d = make_split_files(list, 6, 42, out);
  CHECK(texts(read_split(out + "/labeled.txt")) == d.labeled);
  CHECK(texts(read_split(out + "/unlabeled.txt")) == d.unlabeled);
  CHECK(d.labeled == draw_split(numbered(20), 6, 42).labeled);
  std::ifstream f(out + "/labeled.txt", std::ios::binary);
  const std::string written((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(written.find('\r') == std::string::npos);
  CHECK(written.back() == '\n');
  CHECK_FALSE(fs::exists(out + "/labeled.txt.tmp"));
  CHECK(error_of([&] { make_split_files(list, 21, 1, out); }) == list +
                                                                     ": the labeled count must lie in [1, 20] "
                                                                     "(the list's size), got 21");
  CHECK(error_of([&] { make_split_files(write_list(dir, "a\n\nb\n"), 1, 1, out); }).find(":2: empty line") !=
        std::string::npos);
}

TEST_CASE("split: the u2pl_split app writes the split and refuses bad arguments") {
  const std::string app = U2PL_APPS_DIR "/u2pl_split";
  if (!fs::exists(app)) {
    MESSAGE("skipped: " << app << " is not built");
    return;
  }
  const TempDir tmp("app");
  const std::string& dir = tmp.path;
  std::string text;
  for (const auto& x : numbered(8)) text += x + "\n";
  const std::string list = write_list(dir, text);
  const std::string run = app + " --list " + list + " --seed 3 --out " + dir + "/s";
  CHECK(std::system((run + " --labeled 3 > " + dir + "/log 2>&1").c_str()) == 0);
  CHECK(texts(read_split(dir + "/s/labeled.txt")) == draw_split(numbered(8), 3, 3).labeled);
  for (const char* bad : {" --labeled 0", " --labeled -2", " --labeled 9", " --labeled 3x", " --labeled"}) {
    CAPTURE(bad);
    CHECK(std::system((run + bad + " > " + dir + "/log 2>&1").c_str()) != 0);
  }
}
