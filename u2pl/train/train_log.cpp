// The training JSONL log and the console progress (u2pl/train/train_log.h). Records are written and
// read with nlohmann's ordered_json, which keeps the terms in the order the trainer gave them and
// serialises NaN and infinities as null.
#include "u2pl/train/train_log.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "engine/check.h"
#include "engine/file_io.h"
#include "engine/log.h"

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace u2pl {
namespace {

const char* const kReserved[] = {"type", "iter", "epoch", "lr", "time", "it_s", "stats"};

bool reserved(const std::string& key) {
  return std::find(std::begin(kReserved), std::end(kReserved), key) != std::end(kReserved);
}

// A parsed line and where it came from, for error messages.
struct Line {
  const std::string& path;
  size_t number;
  const Json& j;

  [[noreturn]] void fail(const std::string& key, const char* expected) const {
    U2PL_FAIL(path << ":" << number << ": \"" << key << "\": " << expected);
  }
  const Json& at(const std::string& key) const {
    const auto it = j.find(key);
    if (it == j.end()) fail(key, "missing");
    return *it;
  }
  int64_t integer(const std::string& key) const {
    const Json& v = at(key);
    if (!v.is_number_integer()) fail(key, "expected an integer");
    return v.get<int64_t>();
  }
  double real(const std::string& key, const Json& v) const {
    if (v.is_null()) return std::numeric_limits<double>::quiet_NaN();
    if (!v.is_number()) fail(key, "expected a number or null");
    return v.get<double>();
  }
  double real(const std::string& key) const { return real(key, at(key)); }
  const Json& of_type(const std::string& key, bool (Json::*is)() const noexcept, const char* expected) const {
    const Json& v = at(key);
    if (!(v.*is)()) fail(key, expected);
    return v;
  }
};

IterRecord parse_iter(const Line& l) {
  IterRecord r;
  r.iter = l.integer("iter");
  r.epoch = int(l.integer("epoch"));
  r.lr = l.real("lr");
  r.time_s = l.real("time");
  r.it_s = l.real("it_s");
  for (const auto& [key, v] : l.j.items())
    if (!reserved(key)) r.terms.emplace_back(key, l.real(key, v));
  if (l.j.contains("stats"))
    for (const auto& [key, v] : l.of_type("stats", &Json::is_object, "expected an object").items())
      r.stats.emplace_back(key, l.real("stats." + key, v));
  return r;
}

ValRecord parse_val(const Line& l) {
  ValRecord r;
  r.iter = l.integer("iter");
  r.epoch = int(l.integer("epoch"));
  r.model = l.of_type("model", &Json::is_string, "expected a string").get<std::string>();
  r.miou = l.real("miou");
  for (const Json& v : l.of_type("iou", &Json::is_array, "expected an array")) r.iou.push_back(l.real("iou", v));
  for (const Json& v : l.of_type("classes", &Json::is_array, "expected an array")) {
    if (!v.is_string()) l.fail("classes", "expected an array of strings");
    r.classes.push_back(v.get<std::string>());
  }
  if (r.classes.size() != r.iou.size()) l.fail("classes", "expected one name per \"iou\" entry");
  r.pixel_acc = l.real("pixel_acc");
  r.mean_acc = l.real("mean_acc");
  r.best = l.of_type("best", &Json::is_boolean, "expected true or false").get<bool>();
  return r;
}

// Calls on_line(text of the line, iter record or null, val record or null) for each record of
// the file, in order.
template <class F>
void scan_log(const std::string& path, F on_line) {
  std::ifstream f(path, std::ios::binary);
  U2PL_CHECK(f, path << ": cannot open the training log");
  const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t number = 0;
  for (size_t begin = 0; begin < all.size();) {
    const size_t end = std::min(all.find('\n', begin), all.size());
    const std::string text = all.substr(begin, end - begin);
    const bool torn = end == all.size();  // no newline after the last line
    begin = end + 1;
    ++number;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json j;
    try {
      j = Json::parse(text);
    } catch (const Json::parse_error& e) {
      if (torn) {
        U2PL_LOG(path << ":" << number << ": skipping a torn last line (no newline, not valid JSON)");
        break;
      }
      U2PL_FAIL(path << ":" << number << ": not valid JSON (" << e.what() << ")");
    }
    const Line l{path, number, j};
    U2PL_CHECK(j.is_object(), path << ":" << number << ": expected a JSON object");
    const std::string type = j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
    if (type == "iter") {
      const IterRecord r = parse_iter(l);
      on_line(text, &r, nullptr);
    } else if (type == "val") {
      const ValRecord r = parse_val(l);
      on_line(text, nullptr, &r);
    } else {
      l.fail("type", "expected \"iter\" or \"val\"");
    }
  }
}

void check_names(const NamedValues& values, const char* what) {
  for (size_t i = 0; i < values.size(); ++i) {
    U2PL_CHECK(!reserved(values[i].first), what << " \"" << values[i].first << "\" is a record key");
    for (size_t k = 0; k < i; ++k)
      U2PL_CHECK(values[k].first != values[i].first, what << " \"" << values[i].first << "\" given twice");
  }
}

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds)) return "--:--:--";
  const long s = std::lround(std::max(0.0, seconds));
  std::ostringstream os;
  os << std::setfill('0') << std::setw(2) << s / 3600 << ":" << std::setw(2) << (s / 60) % 60 << ":"
     << std::setw(2) << s % 60;
  return os.str();
}

int terminal_width(std::FILE* out) {
  winsize ws{};
  return ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

}  // namespace

LogRecords read_log(const std::string& path) {
  LogRecords out;
  scan_log(path, [&](const std::string&, const IterRecord* it, const ValRecord* val) {
    if (it) out.iters.push_back(*it);
    if (val) out.vals.push_back(*val);
  });
  return out;
}

TrainLog::TrainLog(const std::string& path, std::optional<int64_t> resume_iter) : path_(path) {
  const bool fresh = resume_iter && *resume_iter <= 0;  // nothing to keep: the old log is not read
  if (resume_iter && !fresh && fs::exists(path)) {
    std::string kept;
    size_t n_kept = 0, n_dropped = 0;
    scan_log(path, [&](const std::string& text, const IterRecord* it, const ValRecord* val) {
      if (it ? it->iter < *resume_iter : val->iter <= *resume_iter) kept += text + "\n", ++n_kept;
      else ++n_dropped;
    });
    write_file_atomic(path, kept);
    U2PL_LOG(path << ": resuming at iteration " << *resume_iter << ": kept " << n_kept << " records, dropped "
                  << n_dropped);
  }
  f_ = std::make_unique<LineFile>(path, fresh, "log");
}

void TrainLog::write(const IterRecord& r) {
  check_names(r.terms, "loss term");
  check_names(r.stats, "stat");
  Json j = {{"type", "iter"}, {"iter", r.iter}, {"epoch", r.epoch}, {"lr", r.lr},
            {"time", r.time_s}, {"it_s", r.it_s}};
  for (const auto& [name, v] : r.terms) j[name] = v;
  Json stats = Json::object();
  for (const auto& [name, v] : r.stats) stats[name] = v;
  j["stats"] = stats;
  write_line(j.dump());
}

void TrainLog::write(const ValRecord& r) {
  U2PL_CHECK(r.iou.size() == r.classes.size(), r.classes.size() << " class names for " << r.iou.size() << " IoUs");
  const Json j = {{"type", "val"}, {"iter", r.iter}, {"epoch", r.epoch}, {"model", r.model},
                  {"miou", r.miou}, {"iou", r.iou}, {"classes", r.classes},
                  {"pixel_acc", r.pixel_acc}, {"mean_acc", r.mean_acc}, {"best", r.best}};
  write_line(j.dump());
}

void TrainLog::write_line(const std::string& line) {
  f_->append(line);
}

TrainProgress::TrainProgress(std::FILE* out, bool terminal, int64_t total_iters, int64_t first_iter, int epochs,
                             int64_t every)
    : out_(out),
      terminal_(terminal),
      total_(total_iters),
      first_(first_iter),
      epochs_(epochs),
      every_(every > 0 ? every : std::max<int64_t>(1, total_iters / 50)),
      width_(terminal ? terminal_width(out) : 0) {}

std::string TrainProgress::text(const IterRecord& r, bool bar) const {
  const int64_t done = r.iter + 1;
  std::ostringstream os;
  os << "epoch " << r.epoch + 1 << "/" << epochs_ << " it " << done << "/" << total_;
  if (bar) {
    const int cells = 20;
    const int filled = total_ > 0 ? int(std::clamp<int64_t>(cells * done / total_, 0, cells)) : cells;
    os << " [" << std::string(filled, '#') << std::string(cells - filled, '.') << "]";
  }
  const double eta = rate_ > 0 ? double(std::max<int64_t>(0, total_ - done)) / rate_
                               : std::numeric_limits<double>::quiet_NaN();
  char buf[64];
  std::snprintf(buf, sizeof buf, "  %.2f it/s  lr %.3g", rate_, r.lr);
  os << " ETA " << clock_text(eta) << buf;
  for (size_t i = 0; i < r.terms.size(); ++i) {
    std::snprintf(buf, sizeof buf, " %.4g", r.terms[i].second);
    os << (i ? " " : "  ") << r.terms[i].first << buf;
  }
  std::string s = os.str();
  if (bar && width_ > 1 && int(s.size()) >= width_) s.resize(size_t(width_ - 1));  // \r redraws one row only
  return s;
}

void TrainProgress::update(const IterRecord& r) {
  // The first record's own rate, because its time_s may include earlier runs; then the rate
  // between updates.
  const int64_t di = seen_ ? r.iter - last_iter_ : 1;
  const double dt = r.time_s - last_time_;
  const double sample = !seen_ ? r.it_s : di > 0 && dt > 0 ? double(di) / dt : 0;
  if (std::isfinite(sample) && sample > 0) {
    // An exponential average whose weight per iteration is 1/20, however often update is called.
    const double w = rate_ > 0 ? 1 - std::pow(1 - 1.0 / 20, double(di)) : 1;
    rate_ += w * (sample - rate_);
  }
  seen_ = true;
  last_iter_ = r.iter;
  last_time_ = r.time_s;
  const bool last = r.iter + 1 >= total_;
  if (terminal_) {
    const std::string s = text(r, true);
    const size_t pad = shown_.size() > s.size() ? shown_.size() - s.size() : 0;  // over the longer old line
    std::fprintf(out_, "\r%s%s", s.c_str(), std::string(pad, ' ').c_str());
    shown_ = s;
    if (last) {
      std::fputc('\n', out_);
      shown_.clear();
    }
  } else if (r.iter == first_ || (r.iter + 1) % every_ == 0 || last) {
    std::fprintf(out_, "%s\n", text(r, false).c_str());
  }
  std::fflush(out_);
}

void TrainProgress::message(const std::string& line) {
  if (terminal_ && !shown_.empty()) {
    const size_t pad = shown_.size() > line.size() ? shown_.size() - line.size() : 0;
    std::fprintf(out_, "\r%s%s\n%s", line.c_str(), std::string(pad, ' ').c_str(), shown_.c_str());
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

}  // namespace u2pl
