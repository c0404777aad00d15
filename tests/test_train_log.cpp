// The training log, curves and progress (u2pl/train/train_log.h, u2pl/train/curves.h): JSONL round
// trips with NaN as null, resume truncation, errors naming file and line, the SVG checked by a
// minimal XML reader (tags nest and match, attributes quoted, entities known) with its series
// counted, and the progress display's line cadence and in-place redraws captured with
// open_memstream.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "tests/temp_dir.h"
#include "tests/test_util.h"
#include "u2pl/train/curves.h"
#include "u2pl/train/train_log.h"

namespace fs = std::filesystem;
using namespace u2pl;
using u2pl::test::error_of;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

void check_same(const NamedValues& a, const NamedValues& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].first == b[i].first);
    CHECK_MESSAGE(same(a[i].second, b[i].second), a[i].first << ": " << a[i].second << " vs " << b[i].second);
  }
}

void check_same(const IterRecord& a, const IterRecord& b) {
  CHECK(a.iter == b.iter);
  CHECK(a.epoch == b.epoch);
  CHECK(same(a.lr, b.lr));
  CHECK(same(a.time_s, b.time_s));
  CHECK(same(a.it_s, b.it_s));
  check_same(a.terms, b.terms);
  check_same(a.stats, b.stats);
}

void check_same(const ValRecord& a, const ValRecord& b) {
  CHECK(a.iter == b.iter);
  CHECK(a.epoch == b.epoch);
  CHECK(a.model == b.model);
  CHECK(same(a.miou, b.miou));
  REQUIRE(a.iou.size() == b.iou.size());
  for (size_t i = 0; i < a.iou.size(); ++i) CHECK(same(a.iou[i], b.iou[i]));
  CHECK(a.classes == b.classes);
  CHECK(same(a.pixel_acc, b.pixel_acc));
  CHECK(same(a.mean_acc, b.mean_acc));
  CHECK(a.best == b.best);
}

IterRecord iter_record(int64_t it, double loss) {
  return {it,     int(it / 10), 0.01 * (1 - it / 1000.0), 0.5 * double(it + 1), 2.0,
          {{"loss", loss}, {"sup", 0.75 * loss}, {"unsup", 0.2 * loss}, {"contra", 0.05 * loss}},
          {{"alpha_t", 20}, {"ema", 0.99}, {"thresh", 0.7}, {"reliable", 0.8}, {"queue_fill", 0.5}}};
}

ValRecord val_record(int64_t it, const std::string& model, double miou, bool best) {
  return {it, int(it / 10), model, miou, {miou - 0.1, miou + 0.1}, {"background", "cat"}, 0.9, miou + 0.05, best};
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Empty when `s` is well-formed in the sense the tests need: one root <svg>, every tag closed in
// order, attribute values quoted, every '&' an XML entity; otherwise what is wrong and where.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> open;
  int roots = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      bool known = false;
      for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) known |= s.compare(i, std::strlen(e), e) == 0;
      if (!known) return "bad entity at " + std::to_string(i);
      continue;
    }
    if (s[i] != '<') continue;
    if (s.compare(i, 2, "<?") == 0) {
      i = s.find("?>", i);
      if (i == std::string::npos) return "unterminated <?";
      continue;
    }
    const bool closing = s.compare(i, 2, "</") == 0;
    size_t j = i + (closing ? 2 : 1);
    const size_t name_begin = j;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' || s[j] == ':')) ++j;
    const std::string name = s.substr(name_begin, j - name_begin);
    if (name.empty()) return "tag without a name at " + std::to_string(i);
    bool quoted = false;
    for (; j < s.size() && (quoted || s[j] != '>'); ++j) {
      if (s[j] == '"') quoted = !quoted;
      else if (!quoted && s[j] == '=' && (j + 1 >= s.size() || s[j + 1] != '"'))
        return "unquoted attribute in <" + name;
      else if (!quoted && s[j] == '<') return "'<' inside <" + name;
    }
    if (j >= s.size()) return "unterminated <" + name;
    if (closing) {
      if (open.empty() || open.back() != name)
        return "</" + name + "> closes " + (open.empty() ? "nothing" : open.back());
      open.pop_back();
    } else if (s[j - 1] != '/') {
      if (open.empty()) ++roots;
      if (open.empty() && name != "svg") return "root element <" + name + ">";
      open.push_back(name);
    }
    i = j;
  }
  if (!open.empty()) return "<" + open.back() + "> left open";
  return roots == 1 ? "" : std::to_string(roots) + " root elements";
}

// The number of points of the longest polyline.
size_t max_polyline_points(const std::string& svg) {
  size_t most = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) {
    const size_t begin = svg.find("points=\"", at) + 8, end = svg.find('"', begin);
    most = std::max(most, count(svg.substr(begin, end - begin), ","));
  }
  return most;
}

// Everything written to a FILE* opened with open_memstream.
struct Capture {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  ~Capture() {
    std::fclose(f);
    std::free(buf);
  }
  std::string text() {
    std::fflush(f);
    return std::string(buf, size);
  }
};

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_SUITE("train_log") {

TEST_CASE("train_log: JSONL round trip, non-finite values written as null and read as NaN") {
  test::TempDir dir("train_log_round_trip");
  const std::string path = dir.path + "/log.jsonl";
  IterRecord a = iter_record(0, 2.5);
  a.terms[3].second = kNaN;  // contra
  a.stats[2].second = std::numeric_limits<double>::infinity();
  a.lr = 1.0 / 3;  // needs every digit to come back equal
  const IterRecord b = iter_record(1, 2.25);
  ValRecord v = val_record(1, "teacher", 0.5, true);
  v.iou[1] = kNaN;  // a class absent from the split
  {
    TrainLog log(path);
    log.write(a);
    log.write(v);
    log.write(b);
  }
  const std::vector<std::string> lines = lines_of(slurp(path));
  REQUIRE(lines.size() == 3);
  for (const std::string& l : lines) {
    CHECK(nlohmann::json::accept(l));
    CHECK(l.find("nan") == std::string::npos);
    CHECK(l.find("inf") == std::string::npos);
  }
  const nlohmann::json first = nlohmann::json::parse(lines[0]);
  CHECK(first["type"] == "iter");
  CHECK(first["loss"] == 2.5);  // terms flat
  CHECK(first["contra"].is_null());
  CHECK(first["stats"]["thresh"].is_null());
  CHECK(first["time"] == 0.5);
  CHECK(nlohmann::json::parse(lines[1])["iou"][1].is_null());

  const LogRecords r = read_log(path);
  REQUIRE(r.iters.size() == 2);
  REQUIRE(r.vals.size() == 1);
  a.stats[2].second = kNaN;  // infinity reads back as NaN: JSON has one null
  check_same(r.iters[0], a);
  check_same(r.iters[1], b);
  check_same(r.vals[0], v);

  // Appending to an existing log keeps what was there.
  TrainLog(path).write(iter_record(2, 2));
  CHECK(read_log(path).iters.size() == 3);
}

TEST_CASE("train_log: resuming drops the iterations from the resume point on and the validations after it") {
  test::TempDir dir("train_log_resume");
  const std::string path = dir.path + "/log.jsonl";
  {
    TrainLog log(path);
    for (int64_t it = 0; it < 10; ++it) {
      log.write(iter_record(it, 3 - 0.1 * double(it)));
      if (it == 4 || it == 9) log.write(val_record(it + 1, "teacher", 0.4 + 0.01 * double(it), it == 9));
    }
  }
  const std::string before = slurp(path);
  {
    TrainLog log(path, 5);  // a checkpoint after 5 iterations (and the validation there)
    CHECK(before.compare(0, slurp(path).size(), slurp(path)) == 0);  // kept lines byte for byte
    CHECK(!fs::exists(path + ".tmp"));
    log.write(iter_record(5, 1));
  }
  const LogRecords r = read_log(path);
  REQUIRE(r.iters.size() == 6);
  for (int64_t it = 0; it < 6; ++it) CHECK(r.iters[size_t(it)].iter == it);
  REQUIRE(r.vals.size() == 1);
  CHECK(r.vals[0].iter == 5);

  // A fresh run (resume at 0) empties an old log; a missing log is simply created.
  TrainLog(path, 0).write(iter_record(0, 1));
  CHECK(read_log(path).iters.size() == 1);
  const std::string other = dir.path + "/new.jsonl";
  TrainLog(other, 7).write(iter_record(7, 1));
  CHECK(read_log(other).iters.size() == 1);
}

TEST_CASE("train_log: a corrupt line is an error naming the file and the line") {
  test::TempDir dir("train_log_corrupt");
  const std::string path = dir.path + "/log.jsonl";
  const auto write_log = [&](const std::string& second_line) {
    TrainLog(path, 0).write(iter_record(0, 1));  // a fresh log, without reading the corrupt one
    { std::ofstream(path, std::ios::app) << second_line << "\n"; }
    TrainLog(path).write(iter_record(2, 1));
  };
  write_log(R"({"type":"iter","iter":1,"epo)");
  for (const std::string& e : {error_of([&] { read_log(path); }), error_of([&] { TrainLog(path, 3); })}) {
    CHECK_MESSAGE(e.find(path + ":2: not valid JSON") != std::string::npos, e);
  }
  write_log(R"({"type":"iter","epoch":0,"lr":0,"time":0,"it_s":0})");
  CHECK_MESSAGE(error_of([&] { read_log(path); }).find(path + ":2: \"iter\": missing") != std::string::npos,
                error_of([&] { read_log(path); }));
  write_log(R"({"type":"iter","iter":1,"epoch":0,"lr":0,"time":0,"it_s":0,"loss":"high"})");
  CHECK(error_of([&] { read_log(path); }).find(path + ":2: \"loss\": expected a number or null") != std::string::npos);
  write_log(R"({"type":"train","iter":1})");
  CHECK(error_of([&] { read_log(path); }).find(path + ":2: \"type\"") != std::string::npos);
  write_log(R"({"type":"val","iter":1,"epoch":0,"model":"teacher","miou":0.5,"iou":[0.5],"classes":["a"],)"
            R"("pixel_acc":0.9,"mean_acc":0.6,"best":"yes"})");
  CHECK(error_of([&] { read_log(path); }).find(path + ":2: \"best\": expected true or false") != std::string::npos);
  const std::string missing = dir.path + "/missing.jsonl";
  CHECK(error_of([&] { read_log(missing); }).find(missing + ": cannot open") != std::string::npos);

  // A last line torn by a crash (no newline) is dropped, and a resume rewrites the log without it.
  TrainLog(path, 0).write(iter_record(0, 1));
  { std::ofstream(path, std::ios::app) << R"({"type":"iter","iter":1,"ep)"; }
  CHECK(read_log(path).iters.size() == 1);
  TrainLog(path, 1).write(iter_record(1, 1));
  CHECK(read_log(path).iters.size() == 2);
}

TEST_CASE("train_log: names that would collide with record keys are rejected") {
  test::TempDir dir("train_log_names");
  TrainLog log(dir.path + "/log.jsonl");
  IterRecord r = iter_record(0, 1);
  r.terms.push_back({"iter", 1});
  CHECK(error_of([&] { log.write(r); }).find("loss term \"iter\" is a record key") != std::string::npos);
  r = iter_record(0, 1);
  r.stats.push_back({"ema", 1});
  CHECK(error_of([&] { log.write(r); }).find("stat \"ema\" given twice") != std::string::npos);
  ValRecord v = val_record(0, "student", 0.5, false);
  v.classes.pop_back();
  CHECK_THROWS_AS(log.write(v), Error);
  CHECK(slurp(dir.path + "/log.jsonl").empty());
}

TEST_CASE("train_log: the curves SVG is well-formed, with legends, one line per series, bounded size") {
  std::vector<IterRecord> iters;
  for (int64_t it = 0; it < 5000; ++it) {
    IterRecord r = iter_record(it, 3 * std::exp(-double(it) / 1500) + 0.05 * double(it % 7));
    if (it < 1000) r.terms[2].second = r.terms[3].second = 0;  // the warm start: no unsup, contra
    if (it == 1234) r.terms[0].second = kNaN;
    iters.push_back(r);
  }
  std::vector<ValRecord> vals;
  for (int64_t it = 499; it < 5000; it += 500) {
    const double m = 0.3 + 0.04 * double(it / 500);
    vals.push_back(val_record(it, "teacher", m, it == 3999));
    vals.push_back(val_record(it, "student", m - 0.02, false));
  }
  vals[9].miou = kNaN;  // skipped
  const std::string svg = curves_svg(iters, vals, "voc <semi> & 1/8");
  CHECK_MESSAGE(xml_problem(svg).empty(), xml_problem(svg));
  CHECK(svg.find("voc &lt;semi&gt; &amp; 1/8") != std::string::npos);
  for (const char* name : {">loss<", ">sup<", ">unsup<", ">contra<", ">teacher<", ">student<"})
    CHECK_MESSAGE(svg.find(name) != std::string::npos, name);
  CHECK(count(svg, "<polyline class=\"raw\"") == 4 + 1);  // the loss terms and the reliable share
  CHECK(count(svg, "<polyline class=\"avg\"") == 4 + 1);
  CHECK(count(svg, "<polyline class=\"val\"") == 2);
  CHECK(count(svg, "<circle class=\"val\"") == vals.size() - 1);
  // Each model's own best validation, whether or not the checkpoint selection followed it; the
  // checkpoint's (the last flagged best) named apart.
  CHECK(count(svg, "<circle class=\"best\"") == 2);
  CHECK(svg.find("best 66.00 @ 4999") != std::string::npos);  // teacher
  CHECK(svg.find("best 64.00 @ 4999") != std::string::npos);  // student, never selected
  CHECK(svg.find(">ckpt_best:<") != std::string::npos);
  CHECK(svg.find(">teacher 58.00 @ 3999<") != std::string::npos);
  CHECK(svg.find("loss (log scale)") != std::string::npos);  // 0.05 .. 3.3: over a decade
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
  CHECK(max_polyline_points(svg) <= 2000);
  CHECK(svg.size() < 400000);
  CHECK(svg.find("http") == svg.find("http://www.w3.org/2000/svg"));  // no external references
}

TEST_CASE("train_log: the curves get a pseudo-label panel once the log has pseudo-labels") {
  std::vector<IterRecord> iters;
  for (int64_t it = 0; it < 300; ++it) {
    IterRecord r = iter_record(it, 1);
    r.stats.clear();  // the warm start
    if (it >= 100)    // past it; the last 100 also scored against the true labels
      r.stats = {{"reliable", 0.9}, {"ema", 0.99}};
    if (it >= 200)
      for (const char* k : {"pl_acc", "pl_acc_reliable", "pl_acc_unreliable", "pl_unreliable_true_negative"})
        r.stats.push_back({k, 0.5 + 0.001 * double(it % 50)});
    iters.push_back(r);
  }
  const std::string svg = curves_svg(iters, {}, "run");
  CHECK_MESSAGE(xml_problem(svg).empty(), xml_problem(svg));
  CHECK(svg.find("height=\"1040\"") != std::string::npos);
  CHECK(svg.find("unlabeled pixels (%)") != std::string::npos);
  for (const char* name : {">reliable share<", ">right<", ">reliable: right<", ">unreliable: right<",
                           ">unreliable: own class a negative<"})
    CHECK_MESSAGE(svg.find(name) != std::string::npos, name);
  CHECK(svg.find(">ema<") == std::string::npos);              // other stats stay out
  CHECK(count(svg, "<polyline class=\"raw\"") == 4 + 5);    // the loss terms, then the five shares
  CHECK(svg.find("height=\"730\"") == std::string::npos);
  // Without pseudo-labels (SupOnly, or the warm start alone) the page keeps its two panels.
  iters.resize(100);
  const std::string plain = curves_svg(iters, {}, "run");
  CHECK(plain.find("height=\"730\"") != std::string::npos);
  CHECK(plain.find("unlabeled pixels") == std::string::npos);
}

TEST_CASE("train_log: curves for no records, a single point, constant and negative values") {
  const std::string empty = curves_svg({}, {}, "run");
  CHECK_MESSAGE(xml_problem(empty).empty(), xml_problem(empty));
  CHECK(empty.find("no training records yet") != std::string::npos);
  CHECK(empty.find("no validation records yet") != std::string::npos);

  const std::string one = curves_svg({iter_record(0, 1)}, {val_record(0, "teacher", 0.5, true)}, "run");
  CHECK_MESSAGE(xml_problem(one).empty(), xml_problem(one));
  CHECK(count(one, "<polyline") == 0);
  CHECK(count(one, "<circle class=\"raw\"") == 4 + 1);
  CHECK(count(one, "<circle class=\"val\"") == 1);
  CHECK(count(one, "<circle class=\"best\"") == 1);
  CHECK(one.find("nan") == std::string::npos);

  std::vector<IterRecord> flat;
  for (int64_t it = 0; it < 50; ++it) flat.push_back(iter_record(it, 1));
  flat[0].terms[1].second = -0.5;  // a negative value: linear axis
  const std::string constant = curves_svg(flat, {}, "run");
  CHECK_MESSAGE(xml_problem(constant).empty(), xml_problem(constant));
  CHECK(constant.find("loss (log scale)") == std::string::npos);
  CHECK(constant.find("no validation records yet") != std::string::npos);
  CHECK(constant.find("nan") == std::string::npos);

  std::vector<IterRecord> same_value(3, iter_record(0, 1));  // zero range on both axes
  for (IterRecord& r : same_value) r.terms = {{"loss", 2}};
  const std::string degenerate = curves_svg(same_value, {}, "run");
  CHECK_MESSAGE(xml_problem(degenerate).empty(), xml_problem(degenerate));
  CHECK(degenerate.find("nan") == std::string::npos);

  std::vector<IterRecord> all_nan(3, iter_record(0, kNaN));
  const std::string nothing = curves_svg(all_nan, {}, "run");
  CHECK(nothing.find("no training records yet") != std::string::npos);
}

TEST_CASE("train_log: write_curves_svg replaces the file through a temporary") {
  test::TempDir dir("train_log_svg");
  const std::string path = dir.path + "/curves.svg";
  { std::ofstream(path) << "old"; }
  const std::vector<IterRecord> iters = {iter_record(0, 2), iter_record(1, 1)};
  write_curves_svg(path, iters, {}, "run");
  CHECK(slurp(path) == curves_svg(iters, {}, "run"));
  CHECK(!fs::exists(path + ".tmp"));
}

TEST_CASE("train_log: plain progress lines at first_iter, every `every` iterations and the last") {
  for (const auto& [first, every, want] :
       std::vector<std::tuple<int64_t, int64_t, std::vector<int64_t>>>{{0, 30, {1, 30, 60, 90, 100}},
                                                                       {50, 30, {51, 60, 90, 100}},
                                                                       {0, 0, {1, 2, 4, 98, 100}}}) {
    Capture out;
    TrainProgress p(out.f, false, 100, first, 10, every);
    for (int64_t it = first; it < 100; ++it) p.update(iter_record(it, 1));
    const std::vector<std::string> lines = lines_of(out.text());
    if (every == 0) {
      CHECK(lines.size() == 51);  // every 100 / 50 = 2, and the first
      CHECK(lines.front().find(" it 1/100 ") != std::string::npos);
      CHECK(lines[1].find(" it 2/100 ") != std::string::npos);
      CHECK(lines.back().find(" it 100/100 ") != std::string::npos);
      continue;
    }
    REQUIRE(lines.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i)
      CHECK_MESSAGE(lines[i].find(" it " + std::to_string(want[i]) + "/100 ") != std::string::npos, lines[i]);
    CHECK(lines[0].rfind("epoch " + std::to_string(first / 10 + 1) + "/10 ", 0) == 0);
  }
  // iter_record's clock runs at 2 it/s: 50 iterations left after the 50th is 25 s.
  Capture out;
  TrainProgress p(out.f, false, 100, 0, 10, 50);
  for (int64_t it = 0; it < 50; ++it) p.update(iter_record(it, 1));
  const std::vector<std::string> lines = lines_of(out.text());
  CHECK_MESSAGE(lines.back().find("ETA 00:00:25  2.00 it/s") != std::string::npos, lines.back());
  CHECK(lines.back().find("loss 1 sup 0.75 unsup 0.2 contra 0.05") != std::string::npos);
  CHECK(lines.back().find('[') == std::string::npos);  // no bar
}

TEST_CASE("train_log: terminal progress redraws one line; messages print above it") {
  Capture out;
  TrainProgress p(out.f, true, 4, 0, 2);
  p.update(iter_record(0, 1));
  p.update(iter_record(1, 1));
  p.message("validation: mIoU 50.00");
  p.update(iter_record(2, 1));
  p.update(iter_record(3, 1));
  const std::string s = out.text();
  CHECK(count(s, "\n") == 2);  // the message's and the last iteration's
  CHECK(s.back() == '\n');
  CHECK(count(s, "\r") == 5);  // four redraws and the message's
  const size_t msg = s.find("\rvalidation: mIoU 50.00");
  REQUIRE(msg != std::string::npos);
  const std::string after = s.substr(msg);
  CHECK(after.find("\nepoch 1/2 it 2/4 [##########..........] ETA ") != std::string::npos);  // redrawn
  CHECK(s.find("epoch 1/2 it 4/4 [####################] ETA 00:00:00") != std::string::npos);
  // The message is padded over the whole bar, so no bar text survives behind it.
  const size_t bar_begin = s.rfind('\r', msg - 1) + 1;  // the bar on screen before the message
  CHECK(s.find('\n', msg) - msg - 1 >= msg - bar_begin);
  // Without a bar on screen a message is just a line.
  Capture plain;
  TrainProgress q(plain.f, true, 4, 0, 2);
  q.message("starting");
  CHECK(plain.text() == "starting\n");
}

}  // TEST_SUITE("train_log")
