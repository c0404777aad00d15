// The training-curves SVG (u2pl/train/curves.h). Pixel coordinates are written with one decimal,
// which with the decimation keeps a long run's file to a few hundred kilobytes.
#include "u2pl/train/curves.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <sstream>
#include <utility>

#include "engine/file_io.h"

namespace u2pl {
namespace {

// Page layout in pixels: both panels share the plot's left and right edges; the legends sit to
// the right of the plots.
constexpr double kWidth = 960, kHeight = 730, kPlotL = 80, kPlotR = 780, kLegendX = 800;
constexpr double kTopY0 = 50, kTopY1 = 380, kValY0 = 460, kValY1 = 680;
// The third panel, drawn only when the log scores the pseudo-labels, and the page's height then.
constexpr double kPseudoY0 = 760, kPseudoY1 = 980, kHeightPseudo = 1040;
// The stats it draws (percent of the unlabeled crop pixels), with their legend names.
const std::pair<const char*, const char*> kPseudoStats[] = {
    {"reliable", "reliable share"},
    {"pl_acc", "right"},
    {"pl_acc_reliable", "reliable: right"},
    {"pl_acc_unreliable", "unreliable: right"},
    {"pl_unreliable_true_negative", "unreliable: own class a negative"}};
constexpr size_t kMaxPoints = 2000;  // per drawn series
const char* const kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

const char* colour(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }

struct Point {
  double x, y;
};

struct Series {
  std::string name;
  std::vector<Point> points;
};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// Data to pixels along one axis, linear or log10, with its tick values.
struct Axis {
  double lo = 0, hi = 1;  // the data range; for a log axis its log10
  double p0 = 0, p1 = 1;  // pixels of lo and hi
  bool log = false;
  double step = 1;  // tick spacing of a linear axis
  std::vector<double> ticks;

  double map(double v) const { return p0 + ((log ? std::log10(v) : v) - lo) / (hi - lo) * (p1 - p0); }
  std::string label(double v) const {
    if (log) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", v);
      return buf;
    }
    const bool kilo = std::max(std::abs(ticks.front()), std::abs(ticks.back())) >= 10000;
    const double s = kilo ? step / 1000 : step;
    const int decimals = std::max(0, int(-std::floor(std::log10(s) + 1e-9)));
    return v == 0 ? "0" : fixed(kilo ? v / 1000 : v, decimals) + (kilo ? "k" : "");
  }
};

// Ticks at multiples of 1, 2 or 5 × 10^k, about `target` of them, covering [lo, hi]; a zero-width
// range is widened first. `integer` keeps the step at 1 or more (iterations).
Axis linear_axis(double lo, double hi, double p0, double p1, int target, bool integer) {
  if (!(hi > lo)) {
    const double pad = std::max(std::abs(lo) * 0.1, integer ? 1.0 : 1e-3);
    lo -= pad, hi += pad;
  }
  const double raw = (hi - lo) / target, mag = std::pow(10, std::floor(std::log10(raw))), n = raw / mag;
  Axis a;
  a.step = (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
  if (integer) a.step = std::max(a.step, 1.0);
  a.lo = std::floor(lo / a.step) * a.step;
  a.hi = std::ceil(hi / a.step) * a.step;
  a.p0 = p0, a.p1 = p1;
  for (int i = 0;; ++i) {
    const double v = a.lo + i * a.step;
    if (v > a.hi + a.step * 1e-6) break;
    a.ticks.push_back(std::abs(v) < a.step * 1e-6 ? 0 : v);
  }
  return a;
}

// Decades covering [lo, hi] (both > 0), with 2 and 5 between when they span two decades or less.
Axis log_axis(double lo, double hi, double p0, double p1) {
  Axis a;
  a.log = true;
  a.lo = std::floor(std::log10(lo));
  a.hi = std::max(std::ceil(std::log10(hi)), a.lo + 1);
  a.p0 = p0, a.p1 = p1;
  for (int k = int(a.lo); k <= int(a.hi); ++k)
    for (double m : {1.0, 2.0, 5.0})
      if ((m == 1 || a.hi - a.lo <= 2) && std::log10(m) + k <= a.hi + 1e-9) a.ticks.push_back(m * std::pow(10, k));
  return a;
}

// At most kMaxPoints: the lowest and highest point of each of kMaxPoints / 2 buckets, in order.
std::vector<Point> decimate(const std::vector<Point>& p) {
  if (p.size() <= kMaxPoints) return p;
  std::vector<Point> out;
  const size_t buckets = kMaxPoints / 2;
  for (size_t b = 0; b < buckets; ++b) {
    const size_t begin = b * p.size() / buckets, end = (b + 1) * p.size() / buckets;
    size_t lo = begin, hi = begin;
    for (size_t i = begin; i < end; ++i) {
      if (p[i].y < p[lo].y) lo = i;
      if (p[i].y > p[hi].y) hi = i;
    }
    out.push_back(p[std::min(lo, hi)]);
    if (lo != hi) out.push_back(p[std::max(lo, hi)]);
  }
  return out;
}

// The mean over a window of max(1, n / 100) points centred on each point (shorter at the ends).
std::vector<Point> moving_average(const std::vector<Point>& p) {
  const int64_t n = int64_t(p.size()), w = std::max<int64_t>(1, n / 100);
  std::vector<double> sum(size_t(n) + 1, 0);
  for (int64_t i = 0; i < n; ++i) sum[size_t(i) + 1] = sum[size_t(i)] + p[size_t(i)].y;
  std::vector<Point> out(p.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t lo = std::max<int64_t>(0, i - w / 2), hi = std::min(n, i - w / 2 + w);
    out[size_t(i)] = {p[size_t(i)].x, (sum[size_t(hi)] - sum[size_t(lo)]) / double(hi - lo)};
  }
  return out;
}

// The series named in `records`, in order of first appearance, with their finite values.
template <class R, class F>
std::vector<Series> collect(const std::vector<R>& records, F each) {
  std::vector<Series> out;
  for (const R& r : records)
    each(r, [&](const std::string& name, double x, double y) {
      auto it = std::find_if(out.begin(), out.end(), [&](const Series& s) { return s.name == name; });
      if (it == out.end()) it = out.insert(out.end(), Series{name, {}});
      if (std::isfinite(y)) it->points.push_back({x, y});
    });
  return out;
}

void polyline(std::ostringstream& os, const std::vector<Point>& p, const Axis& x, const Axis& y, const char* cls,
              const char* stroke, double width, double opacity) {
  os << "<polyline class=\"" << cls << "\" fill=\"none\" stroke=\"" << stroke << "\" stroke-width=\"" << width
     << "\" stroke-opacity=\"" << opacity << "\" points=\"";
  for (size_t i = 0; i < p.size(); ++i)
    os << (i ? " " : "") << fixed(x.map(p[i].x), 1) << "," << fixed(y.map(p[i].y), 1);
  os << "\"/>\n";
}

void dot(std::ostringstream& os, const Point& p, const Axis& x, const Axis& y, const char* cls, const char* c,
         double r, bool ring) {
  os << "<circle class=\"" << cls << "\" cx=\"" << fixed(x.map(p.x), 1) << "\" cy=\"" << fixed(y.map(p.y), 1)
     << "\" r=\"" << r << "\" " << (ring ? "fill=\"none\" stroke-width=\"2\" stroke=\"" : "fill=\"") << c << "\"/>\n";
}

void text(std::ostringstream& os, double x, double y, const std::string& s, const char* anchor = "start",
          const char* extra = "") {
  os << "<text x=\"" << fixed(x, 1) << "\" y=\"" << fixed(y, 1) << "\" text-anchor=\"" << anchor << "\"" << extra
     << ">" << escape(s) << "</text>\n";
}

void empty_panel(std::ostringstream& os, double y0, double y1, const std::string& message) {
  os << "<rect x=\"" << kPlotL << "\" y=\"" << y0 << "\" width=\"" << kPlotR - kPlotL << "\" height=\"" << y1 - y0
     << "\" fill=\"none\" stroke=\"#999\"/>\n";
  text(os, (kPlotL + kPlotR) / 2, (y0 + y1) / 2, message, "middle", " fill=\"#666\"");
}

// Grid lines, tick labels, the border and the axis labels of one panel.
void frame(std::ostringstream& os, const Axis& x, const Axis& y, const std::string& ylabel) {
  const double y0 = y.p1, y1 = y.p0;  // pixel top and bottom
  os << "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n";
  for (double t : x.ticks)
    os << "<line x1=\"" << fixed(x.map(t), 1) << "\" y1=\"" << y0 << "\" x2=\"" << fixed(x.map(t), 1) << "\" y2=\""
       << y1 << "\"/>\n";
  for (double t : y.ticks)
    os << "<line x1=\"" << kPlotL << "\" y1=\"" << fixed(y.map(t), 1) << "\" x2=\"" << kPlotR << "\" y2=\""
       << fixed(y.map(t), 1) << "\"/>\n";
  os << "</g>\n<g font-size=\"11\" fill=\"#333\">\n";
  for (double t : x.ticks) text(os, x.map(t), y1 + 15, x.label(t), "middle");
  for (double t : y.ticks) text(os, kPlotL - 6, y.map(t), y.label(t), "end", " dy=\"0.32em\"");
  os << "</g>\n";
  os << "<rect x=\"" << kPlotL << "\" y=\"" << y0 << "\" width=\"" << kPlotR - kPlotL << "\" height=\"" << y1 - y0
     << "\" fill=\"none\" stroke=\"#999\"/>\n";
  text(os, (kPlotL + kPlotR) / 2, y1 + 32, "iteration", "middle");
  os << "<text transform=\"translate(22," << fixed((y0 + y1) / 2, 1) << ") rotate(-90)\" text-anchor=\"middle\">"
     << escape(ylabel) << "</text>\n";
}

// Each series raw (thin, faint) and as its moving mean (solid), with a legend from `legend_y`.
void draw_series(std::ostringstream& os, const std::vector<Series>& series, const std::vector<std::vector<Point>>& shown,
                 const Axis& x, const Axis& y, double legend_y) {
  for (size_t i = 0; i < series.size(); ++i) {
    if (shown[i].size() == 1) dot(os, shown[i][0], x, y, "raw", colour(i), 3, false);
    if (shown[i].size() > 1) polyline(os, decimate(shown[i]), x, y, "raw", colour(i), 0.8, 0.3);
  }
  for (size_t i = 0; i < series.size(); ++i)
    if (shown[i].size() > 1) polyline(os, decimate(moving_average(shown[i])), x, y, "avg", colour(i), 1.8, 1);
  for (size_t i = 0; i < series.size(); ++i) {
    const double ly = legend_y + 18 * double(i);
    os << "<line x1=\"" << kLegendX << "\" y1=\"" << ly << "\" x2=\"" << kLegendX + 24 << "\" y2=\"" << ly
       << "\" stroke=\"" << colour(i) << "\" stroke-width=\"2\"/>\n";
    text(os, kLegendX + 30, ly, series[i].name, "start", " dy=\"0.32em\"");
  }
  const double note_y = legend_y + 18 * double(series.size()) + 6;
  text(os, kLegendX, note_y, "faint: raw", "start", " font-size=\"10\" fill=\"#666\"");
  text(os, kLegendX, note_y + 13, "solid: moving mean (1%)", "start", " font-size=\"10\" fill=\"#666\"");
}

void loss_panel(std::ostringstream& os, const std::vector<Series>& terms, const Axis& x) {
  double lo = INFINITY, hi = -INFINITY, lo_pos = INFINITY;
  for (const Series& s : terms)
    for (const Point& p : s.points) {
      lo = std::min(lo, p.y), hi = std::max(hi, p.y);
      if (p.y > 0) lo_pos = std::min(lo_pos, p.y);
    }
  const bool log = lo >= 0 && std::isfinite(lo_pos) && hi / lo_pos >= 10;
  const Axis y = log ? log_axis(lo_pos, hi, kTopY1, kTopY0) : linear_axis(lo, hi, kTopY1, kTopY0, 6, false);
  frame(os, x, y, log ? "loss (log scale)" : "loss");
  // On a log axis zeros mean "term not active yet" and stay out of the averages too.
  std::vector<std::vector<Point>> shown;
  for (const Series& s : terms) {
    std::vector<Point>& p = shown.emplace_back();
    std::copy_if(s.points.begin(), s.points.end(), std::back_inserter(p),
                 [&](const Point& q) { return !log || q.y > 0; });
  }
  draw_series(os, terms, shown, x, y, kTopY0 + 10);
}

// The reliable share of the pseudo-labels per iteration past the warm start and, where scored
// (trainer.unsupervised.score_pseudo_labels), how many are right, in percent.
void pseudo_panel(std::ostringstream& os, const std::vector<Series>& stats, const Axis& x) {
  double lo = INFINITY, hi = -INFINITY;
  std::vector<std::vector<Point>> shown;
  for (const Series& s : stats) {
    shown.push_back(s.points);
    for (const Point& p : s.points) lo = std::min(lo, p.y), hi = std::max(hi, p.y);
  }
  const Axis y = linear_axis(lo, hi, kPseudoY1, kPseudoY0, 5, false);
  frame(os, x, y, "unlabeled pixels (%)");
  text(os, kLegendX, kPseudoY0 - 4, "pseudo-labels:", "start", " font-size=\"10\" fill=\"#666\"");
  draw_series(os, stats, shown, x, y, kPseudoY0 + 10);
}

void val_panel(std::ostringstream& os, const std::vector<Series>& models, const std::vector<ValRecord>& vals,
               const Axis& x) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : models)
    for (const Point& p : s.points) lo = std::min(lo, p.y), hi = std::max(hi, p.y);
  const Axis y = linear_axis(lo, hi, kValY1, kValY0, 5, false);
  frame(os, x, y, "val mIoU (%)");
  for (size_t i = 0; i < models.size(); ++i) {
    const Series& s = models[i];
    if (s.points.size() > 1) polyline(os, s.points, x, y, "val", colour(i), 1.5, 1);
    for (const Point& p : s.points) dot(os, p, x, y, "val", colour(i), 3, false);
    const ValRecord* best = nullptr;  // the model's best validation (the first of equal ones)
    for (const ValRecord& r : vals)
      if (r.model == s.name && std::isfinite(r.miou) && (!best || r.miou > best->miou)) best = &r;
    if (best) dot(os, {double(best->iter), 100 * best->miou}, x, y, "best", colour(i), 7, true);
    const double ly = kValY0 + 10 + 32 * double(i);
    os << "<circle cx=\"" << kLegendX + 12 << "\" cy=\"" << ly << "\" r=\"3\" fill=\"" << colour(i) << "\"/>\n";
    text(os, kLegendX + 30, ly, s.name, "start", " dy=\"0.32em\"");
    if (best)
      text(os, kLegendX + 30, ly + 14, "best " + fixed(100 * best->miou, 2) + " @ " + std::to_string(best->iter),
           "start", " dy=\"0.32em\" font-size=\"10\" fill=\"#666\"");
  }
  // What ckpt_best.safetensors holds: the last validation flagged best, of the model the selection
  // followed then (the student before the handover, the teacher after).
  const ValRecord* kept = nullptr;
  for (const ValRecord& r : vals)
    if (r.best && std::isfinite(r.miou)) kept = &r;
  if (kept) {
    const double ly = kValY0 + 10 + 32 * double(models.size());
    text(os, kLegendX, ly, "ckpt_best:", "start", " dy=\"0.32em\" font-size=\"10\" fill=\"#666\"");
    text(os, kLegendX + 30, ly + 14, kept->model + " " + fixed(100 * kept->miou, 2) + " @ " + std::to_string(kept->iter),
         "start", " dy=\"0.32em\" font-size=\"10\" fill=\"#666\"");
  }
}

}  // namespace

std::string curves_svg(const std::vector<IterRecord>& iters, const std::vector<ValRecord>& vals,
                       const std::string& title) {
  const std::vector<Series> terms = collect(iters, [](const IterRecord& r, auto add) {
    for (const auto& [name, v] : r.terms) add(name, double(r.iter), v);
  });
  const std::vector<Series> models =
      collect(vals, [](const ValRecord& r, auto add) { add(r.model, double(r.iter), 100 * r.miou); });
  const std::vector<Series> pseudo = collect(iters, [](const IterRecord& r, auto add) {
    for (const auto& [key, name] : kPseudoStats)
      for (const auto& [stat, v] : r.stats)
        if (stat == key) add(name, double(r.iter), 100 * v);
  });
  const auto has_points = [](const std::vector<Series>& v) {
    return std::any_of(v.begin(), v.end(), [](const Series& s) { return !s.points.empty(); });
  };
  double x_lo = INFINITY, x_hi = -INFINITY;
  for (const std::vector<Series>* group : {&terms, &models, &pseudo})
    for (const Series& s : *group)
      for (const Point& p : s.points) x_lo = std::min(x_lo, p.x), x_hi = std::max(x_hi, p.x);

  const bool scored = has_points(pseudo);
  const double height = scored ? kHeightPseudo : kHeight;
  std::ostringstream os;
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
     << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << height
     << "\" viewBox=\"0 0 " << kWidth << " " << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  text(os, kWidth / 2, 28, title, "middle", " font-size=\"16\"");
  if (!has_points(terms) && !has_points(models)) {
    empty_panel(os, kTopY0, kTopY1, "no training records yet");
    empty_panel(os, kValY0, kValY1, "no validation records yet");
  } else {
    const Axis top_x = linear_axis(x_lo, x_hi, kPlotL, kPlotR, 8, true);
    if (has_points(terms)) loss_panel(os, terms, top_x);
    else empty_panel(os, kTopY0, kTopY1, "no training records yet");
    if (has_points(models)) val_panel(os, models, vals, top_x);
    else empty_panel(os, kValY0, kValY1, "no validation records yet");
    if (scored) pseudo_panel(os, pseudo, top_x);
  }
  os << "</svg>\n";
  return os.str();
}

void write_curves_svg(const std::string& path, const std::vector<IterRecord>& iters,
                      const std::vector<ValRecord>& vals, const std::string& title) {
  write_file_atomic(path, curves_svg(iters, vals, title));
}

}  // namespace u2pl
