// The `reference` suite: every *.safetensors case of the U2PL loss reference vectors
// (../shared/reference/u2pl/README.md: unsupervised, ohem and contrastive cases, official cases
// from the public PyTorch code) against the engine, with the README's tolerances. Prints one line
// per case, "reference <file>: ok" or "reference <file>: FAIL <what differed>".
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "engine/math.h"
#include "engine/safetensors.h"
#include "layers/loss.h"
#include "u2pl/losses/contrastive.h"
#include "u2pl/losses/unsup_loss.h"

using namespace u2pl;

namespace u2pl::test {
// U2PL_REFERENCE_DIR when set, else ../shared/reference/u2pl beside the repository (test_main.cpp
// uses it to report the suite as skipped when that is absent).
std::string reference_dir() {
  if (const char* env = std::getenv("U2PL_REFERENCE_DIR")) return env;
  return std::string(U2PL_SOURCE_DIR) + "/../shared/reference/u2pl";
}
}  // namespace u2pl::test

namespace {

constexpr double kNear = 1e-5;  // pixels this close to a threshold may land on either side

// What differed in one case, one clause per tensor.
class Diff {
 public:
  template <class G, class W>
  void close(const std::string& name, const std::vector<G>& got, const std::vector<W>& want, double abs,
             double rel) {
    if (got.size() != want.size()) return add(name + ": " + std::to_string(got.size()) + " entries, expected " +
                                              std::to_string(want.size()));
    size_t bad = 0, worst = 0;
    double excess = -INFINITY;
    for (size_t i = 0; i < got.size(); ++i) {
      const double err = std::fabs(double(got[i]) - double(want[i])), lim = abs + rel * std::fabs(double(want[i]));
      if (!(err <= lim)) ++bad;
      const double e = std::isnan(err) ? INFINITY : err - lim;
      if (e > excess) excess = e, worst = i;
    }
    if (bad == 0) return;
    std::ostringstream os;
    os.precision(9);
    os << name << ": " << bad << " of " << got.size() << " out of tolerance, worst [" << worst << "] got "
       << double(got[worst]) << " expected " << double(want[worst]);
    add(os.str());
  }
  // Exact agreement except where near[i] allows either value.
  template <class G, class W>
  void mask(const std::string& name, const std::vector<G>& got, const std::vector<W>& want,
            const std::vector<bool>& near) {
    if (got.size() != want.size()) return add(name + ": size differs");
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (int64_t(got[i]) != int64_t(want[i]) && !near[i] && bad++ == 0) first = i;
    if (bad)
      add(name + ": " + std::to_string(bad) + " entries differ, first [" + std::to_string(first) + "] got " +
          std::to_string(int64_t(got[first])) + " expected " + std::to_string(int64_t(want[first])));
  }
  void add(const std::string& s) { what_ += (what_.empty() ? "" : "; ") + s; }
  const std::string& what() const { return what_; }

 private:
  std::string what_;
};

template <class T>
View<T> view_of(std::vector<T>& v, Shape s) {
  return View<T>(v.data(), s, Device::CPU);
}

void run_unsupervised(const SafeTensorsFile& f, Diff& diff) {
  Context ctx(Device::CPU);
  std::vector<float> predict = f.floats("in.predict"), teacher = f.floats("in.teacher_logits");
  std::vector<int32_t> target = f.ints("in.target");
  const Shape xs = f.shape("in.predict"), ls = f.shape("in.target");
  std::vector<float> entropy(size_t(ls.numel())), grad(predict.size());
  std::vector<int32_t> filtered(target.size());
  UnsupOptions opt;
  opt.percent = std::stod(f.meta("percent"));
  opt.scale_by_valid = f.meta("mode") == "official";
  const UnsupResult r = unsup_loss(ctx, view_of(predict, xs), view_of(target, ls), view_of(teacher, xs), opt,
                                   view_of(entropy, ls), view_of(filtered, ls), 1.f, view_of(grad, xs), 0.f);
  const std::vector<float> want_h = f.floats("out.entropy");
  const double want_th = f.doubles("out.thresh")[0];
  std::vector<bool> near(want_h.size());
  for (size_t i = 0; i < near.size(); ++i) near[i] = std::fabs(double(want_h[i]) - want_th) <= kNear;
  diff.close("out.entropy", entropy, want_h, 1e-5, 0);
  diff.close("out.thresh", std::vector<double>{r.thresh}, f.doubles("out.thresh"), 1e-5, 0);
  diff.mask("out.target", filtered, f.ints("out.target"), near);
  diff.close("out.weight", std::vector<double>{r.weight}, f.doubles("out.weight"), 0, 1e-4);
  diff.close("out.loss", std::vector<float>{r.loss}, f.floats("out.loss"), 0, 1e-4);
  diff.close("out.grad_predict", grad, f.floats("out.grad_predict"), 1e-5, 1e-3);
}

void run_ohem(const SafeTensorsFile& f, Diff& diff) {
  Context ctx(Device::CPU);
  std::vector<float> logits = f.floats("in.logits");
  std::vector<int32_t> target = f.ints("in.target"), kept(target.size());
  const Shape xs = f.shape("in.logits"), ls = f.shape("in.target");
  std::vector<float> grad(logits.size());
  ohem_select(ctx, view_of(logits, xs), view_of(target, ls), std::stof(f.meta("thresh")),
              std::stoll(f.meta("min_kept")), view_of(kept, ls));
  const CeResult ce = cross_entropy_forward(ctx, view_of(logits, xs), view_of(kept, ls));
  cross_entropy_backward(ctx, view_of(logits, xs), view_of(kept, ls), 1.f, view_of(grad, xs), 0.f);
  diff.close("out.loss", std::vector<float>{ce.loss}, f.floats("out.loss"), 0, 1e-4);
  diff.close("out.grad_logits", grad, f.floats("out.grad_logits"), 1e-5, 1e-3);
}

// The masks of the file, as the loss takes them: (B, h, w) low and high, labeled first.
void file_masks(const SafeTensorsFile& f, bool official, std::vector<uint8_t>& low, std::vector<uint8_t>& high) {
  if (official) {
    low = f.bytes("in.low_mask");
    high = f.bytes("in.high_mask");
    return;
  }
  const std::vector<int32_t> label_l = f.ints("in.label_l");
  const std::vector<uint8_t> rel = f.bytes("in.reliable_u"), unrel = f.bytes("in.unreliable_u");
  low.clear();
  for (int32_t y : label_l) low.push_back(y != kIgnoreLabel);
  high = low;
  low.insert(low.end(), rel.begin(), rel.end());
  high.insert(high.end(), unrel.begin(), unrel.end());
}

// The mask computation on its own: crop-size entropies, percentiles and the downsampled masks.
void check_masks(const SafeTensorsFile& f, bool official, const std::vector<uint8_t>& low,
                 const std::vector<uint8_t>& high, Diff& diff) {
  Context ctx(Device::CPU);
  std::vector<float> logits = f.floats("in.crop.teacher_logits_u");
  const Shape xs = f.shape("in.crop.teacher_logits_u"), es{xs.n(), xs.h(), xs.w()};
  std::vector<float> entropy(size_t(es.numel()));
  entropy_forward(ctx, view_of(logits, xs), view_of(entropy, es));
  const std::vector<float> want_h = f.floats("out.crop.entropy_u");
  diff.close("out.crop.entropy_u", entropy, want_h, 1e-5, 0);
  std::vector<int32_t> label_l = f.ints("in.label_l"), crop_u;
  if (official) crop_u = f.ints("in.crop.label_u");
  const Shape fl = f.shape("in.label_l"), fs{fl[0] + xs.n(), fl[1], fl[2]};
  std::vector<uint8_t> got_lo(size_t(fs.numel())), got_hi(got_lo.size());
  const EntropyThresholds t =
      contrastive_masks(ctx, view_of(label_l, fl), view_of(entropy, es), official ? view_of(crop_u, es) : LabelView(),
                        std::stod(f.meta("alpha_t")), official ? LowMaskRule::LowestAlpha : LowMaskRule::Reliable,
                        view_of(got_lo, fs), view_of(got_hi, fs));
  const double want_lo = f.doubles(official ? "out.crop.low_thresh" : "out.crop.gamma")[0];
  const double want_hi = f.doubles(official ? "out.crop.high_thresh" : "out.crop.gamma")[0];
  diff.close(official ? "out.crop.low_thresh" : "out.crop.gamma", std::vector<double>{t.low},
             std::vector<double>{want_lo}, 1e-5, 0);
  if (official) diff.close("out.crop.high_thresh", std::vector<double>{t.high}, std::vector<double>{want_hi}, 1e-5, 0);
  // a feature pixel may differ where its nearest crop source lies within kNear of a threshold
  std::vector<bool> near_lo(got_lo.size(), false), near_hi(got_lo.size(), false);
  const int64_t h = fl[1], w = fl[2], HW = h * w, off = fl[0] * HW;
  for (int64_t k = off; k < fs.numel(); ++k) {
    const int64_t n = (k - off) / HW, y = (k % HW) / w, x = k % w;
    const double e = want_h[size_t((n * xs.h() + nearest_src(y, xs.h(), h)) * xs.w() + nearest_src(x, xs.w(), w))];
    near_lo[size_t(k)] = std::fabs(e - want_lo) <= kNear;
    near_hi[size_t(k)] = std::fabs(e - want_hi) <= kNear;
  }
  diff.mask(official ? "in.low_mask" : "reliable masks", got_lo, low, near_lo);
  diff.mask(official ? "in.high_mask" : "unreliable masks", got_hi, high, near_hi);
}

std::vector<int64_t> split_ints(const std::string& s) {
  return s.empty() ? std::vector<int64_t>{} : parse_queue_sizes(s);
}

void run_contrastive(const SafeTensorsFile& f, Diff& diff) {
  const bool official = f.meta("mode") == "official";
  const int C = std::stoi(f.meta("num_classes"));
  ContrastiveParams p = official ? ContrastiveParams::official(C) : ContrastiveParams::paper(C);
  p.num_queries = std::stoi(f.meta("num_queries"));
  p.num_negatives = std::stoi(f.meta("num_negatives"));
  p.temperature = std::stof(f.meta("temperature"));
  p.delta_p = std::stof(f.meta("delta_p"));
  p.low_rank = std::stoi(f.meta("low_rank"));
  p.high_rank = std::stoi(f.meta("high_rank"));
  p = p.validated();
  const int64_t D = std::stoll(f.meta("feat_dim"));
  MemoryBank bank(parse_queue_sizes(f.meta("queue_size")), D);
  for (int c = 0; c < C; ++c) {
    const std::string name = "in.bank." + std::to_string(c);
    bank.push(c, f.floats(name).data(), f.shape(name)[0]);
  }
  std::vector<std::vector<int64_t>> draws;
  std::vector<int64_t> highs;
  if (official) {
    const int n = std::stoi(f.meta("draws"));
    for (int i = 0; i < n; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "draw.%03d", i);
      const std::vector<int32_t> v = f.ints(name);
      draws.emplace_back(v.begin(), v.end());
    }
    highs = split_ints(f.meta("draw_highs"));
  } else {
    for (int c = 0; c < C; ++c)
      for (const char* kind : {"anchor", "negative"}) {
        const std::string name = std::string("draw.") + kind + "." + std::to_string(c);
        if (!f.has(name)) continue;
        const std::vector<int32_t> v = f.ints(name);
        draws.emplace_back(v.begin(), v.end());
      }
  }
  ReplayIndexSource replay(draws, highs);
  std::vector<float> rep = f.floats("in.rep"), rep_t = f.floats("in.rep_teacher"), prob_l = f.floats("in.prob_l"),
                     prob_u = f.floats("in.prob_u"), grad(rep.size());
  std::vector<int32_t> label_l = f.ints("in.label_l"), label_u = f.ints("in.label_u");
  std::vector<uint8_t> low, high;
  file_masks(f, official, low, high);
  const Shape rs = f.shape("in.rep"), ms{rs.n(), rs.h(), rs.w()};
  ContrastiveInputs in;
  in.rep = view_of(rep, rs);
  in.rep_teacher = view_of(rep_t, rs);
  in.prob_l = view_of(prob_l, f.shape("in.prob_l"));
  in.prob_u = view_of(prob_u, f.shape("in.prob_u"));
  in.label_l = view_of(label_l, f.shape("in.label_l"));
  in.label_u = view_of(label_u, f.shape("in.label_u"));
  in.low = view_of(low, ms);
  in.high = view_of(high, ms);
  Context ctx(Device::CPU);
  const ContrastiveResult r = contrastive_loss(ctx, p, in, bank, replay, 1.f, view_of(grad, rs), 0.f);
  if (replay.used() != replay.recorded())
    diff.add("draws: used " + std::to_string(replay.used()) + " of " + std::to_string(replay.recorded()));
  diff.close("out.loss", std::vector<double>{r.loss}, f.floats("out.loss"), 0, 1e-4);
  diff.close("out.grad_rep", grad, f.floats("out.grad_rep"), 1e-5, 1e-3);
  for (int c = 0; c < C; ++c) {
    const std::string name = "out.bank." + std::to_string(c);
    diff.close(name, bank.contents(c), f.floats(name), 0, 0);
  }
  check_masks(f, official, low, high, diff);
}

}  // namespace

TEST_SUITE("reference") {
  TEST_CASE("reference: U2PL loss vectors from the public code and the paper's equations") {
    namespace fs = std::filesystem;
    const std::string dir = test::reference_dir();
    REQUIRE_MESSAGE(fs::is_directory(dir), "reference directory " << dir << " does not exist");
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    REQUIRE_MESSAGE(!files.empty(), "reference directory " << dir << " holds no .safetensors file");
    int failed = 0;
    for (const fs::path& path : files) {
      Diff diff;
      try {
        const SafeTensorsFile f(path.string());
        const std::string kind = f.meta("kind");
        if (kind == "unsupervised") run_unsupervised(f, diff);
        else if (kind == "ohem") run_ohem(f, diff);
        else if (kind == "contrastive") run_contrastive(f, diff);
        else diff.add("unknown kind '" + kind + "'");
      } catch (const std::exception& e) {
        diff.add(std::string("error: ") + e.what());
      }
      const std::string name = path.filename().string();
      std::printf("reference %s: %s%s\n", name.c_str(), diff.what().empty() ? "ok" : "FAIL ", diff.what().c_str());
      std::fflush(stdout);
      CHECK_MESSAGE(diff.what().empty(), name << ": " << diff.what());
      failed += !diff.what().empty();
    }
    MESSAGE((files.size() - size_t(failed)) << " of " << files.size() << " reference cases ok");
  }
}
