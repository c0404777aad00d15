// Tier 3 (STYLE 14) for the U2PL losses: the CUDA paths of u2pl/losses/unsup_loss.h, memory_bank.h
// and contrastive.h against the CPU oracle in a deterministic CUDA context: entropy, percentiles
// (bitwise), the unsupervised loss and its gradient, the contrastive masks, memory-bank pushes,
// wrap-around and restore, and the contrastive loss with its gradient and the same Philox draws on
// both devices, in both presets, binary, and with the ablation switches. The `cuda` suite: skipped
// without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "engine/rng.h"
#include "layers/loss.h"
#include "tests/test_util.h"
#include "u2pl/losses/contrastive.h"
#include "u2pl/losses/unsup_loss.h"

using namespace u2pl;

namespace {

constexpr Device CPU = Device::CPU, GPU = Device::CUDA;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
using test::check_close;
using test::error_of;
using test::kExact;
using test::Tol;
using test::uniform;
constexpr Tol kFwd{1e-6, 1e-5};  // per-pixel math: device expf/logf against the host's
constexpr Tol kGrad{2e-5, 1e-4};  // gradients

// Labels in [0, C) with about `ignored` of them 255.
std::vector<int32_t> random_labels(int64_t n, int C, uint64_t seed, float ignored = 0.25f) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = philox_uniform(seed, 1, i) < ignored ? kIgnoreLabel : int32_t(philox_u32(seed, 0, i) % uint32_t(C));
  return v;
}

template <class T>
std::vector<T> host(const Context& ctx, const Owned<T>& t) {
  ctx.synchronize();
  return t.to_host();
}

// A gradient buffer for `beta`: beta 0 starts the CUDA one at NaN (it must never be read) and
// the CPU one at 0; otherwise both start from the same values.
struct GradPair {
  Tensor c, g;
  GradPair(Shape s, float beta, uint64_t seed) {
    const std::vector<float> v = beta == 0.f ? std::vector<float>(size_t(s.numel()), 0.f) : uniform(s.numel(), seed);
    c = Tensor::from_host(s, v, CPU);
    g = Tensor::from_host(s, beta == 0.f ? std::vector<float>(v.size(), kNaN) : v, GPU);
  }
};

// A batch for the contrastive loss at feature resolution, [labeled | unlabeled], on the host.
struct ContrastBatch {
  int64_t nl, nu, C, D, h, w;
  std::vector<float> rep, rep_t, prob_l, prob_u;
  std::vector<int32_t> label_l, label_u;
  std::vector<uint8_t> low, high;  // labeled images: label ≠ 255; unlabeled: random, overlapping

  ContrastBatch(int64_t nl_, int64_t nu_, int64_t C_, int64_t D_, int64_t h_, int64_t w_, uint64_t seed)
      : nl(nl_), nu(nu_), C(C_), D(D_), h(h_), w(w_) {
    const int64_t HW = h * w, B = nl + nu;
    rep = uniform(B * D * HW, seed);
    rep_t = uniform(B * D * HW, seed + 1);
    label_l = random_labels(nl * HW, int(C), seed + 3, 0.1f);
    label_u = random_labels(nu * HW, int(C), seed + 4, 0.1f);
    // probabilities peaked at the label (+4 on its logit), so that many pixels pass δp even among 21 classes
    for (auto [n, out, labels] : {std::tuple{nl, &prob_l, &label_l}, std::tuple{nu, &prob_u, &label_u}}) {
      std::vector<float> logits = uniform(n * C * HW, seed + 2 + uint64_t(n), -3.f, 3.f);
      for (int64_t k = 0; k < n * HW; ++k) {
        const int32_t y = (*labels)[size_t(k)];
        if (y != kIgnoreLabel) logits[size_t((k / HW) * C * HW + y * HW + k % HW)] += 4.f;
      }
      out->resize(logits.size());
      softmax_forward_cpu<float>(Shape{n, C, h, w}, logits.data(), out->data());
    }
    for (int64_t k = 0; k < B * HW; ++k) {
      const bool lab = k < nl * HW;
      const float r = philox_uniform(seed + 5, 0, uint64_t(k));
      low.push_back(lab ? label_l[size_t(k)] != kIgnoreLabel : r < 0.6f);
      high.push_back(lab ? label_l[size_t(k)] != kIgnoreLabel : r >= 0.5f);
    }
  }
  Shape rep_shape() const { return Shape{nl + nu, D, h, w}; }
};

// The batch's tensors on one device.
struct DeviceBatch {
  Tensor rep, rep_t, prob_l, prob_u;
  Labels label_l, label_u;
  Mask low, high;
  DeviceBatch(const ContrastBatch& b, Device dev)
      : rep(Tensor::from_host(b.rep_shape(), b.rep, dev)),
        rep_t(Tensor::from_host(b.rep_shape(), b.rep_t, dev)),
        prob_l(Tensor::from_host(Shape{b.nl, b.C, b.h, b.w}, b.prob_l, dev)),
        prob_u(Tensor::from_host(Shape{b.nu, b.C, b.h, b.w}, b.prob_u, dev)),
        label_l(Labels::from_host(Shape{b.nl, b.h, b.w}, b.label_l, dev)),
        label_u(Labels::from_host(Shape{b.nu, b.h, b.w}, b.label_u, dev)),
        low(Mask::from_host(Shape{b.nl + b.nu, b.h, b.w}, b.low, dev)),
        high(Mask::from_host(Shape{b.nl + b.nu, b.h, b.w}, b.high, dev)) {}
  ContrastiveInputs inputs() const {
    ContrastiveInputs in;
    in.rep = rep;
    in.rep_teacher = rep_t;
    in.prob_l = prob_l;
    in.prob_u = prob_u;
    in.label_l = label_l;
    in.label_u = label_u;
    in.low = low;
    in.high = high;
    return in;
  }
};

// A CPU and a CUDA bank with the same `queued` random rows per class.
struct BankPair {
  MemoryBank c, g;
  BankPair(int C, int64_t capacity, int64_t D, int64_t queued, uint64_t seed)
      : c(std::vector<int64_t>(size_t(C), capacity), D, CPU), g(std::vector<int64_t>(size_t(C), capacity), D, GPU) {
    for (int k = 0; k < C; ++k) {
      const std::vector<float> rows = uniform(queued * D, seed + uint64_t(k));
      c.restore(k, rows.data(), queued);
      g.restore(k, rows.data(), queued);
    }
  }
  void expect_same(const std::string& what) const {
    for (int k = 0; k < c.classes(); ++k) {
      INFO(what << ", queue " << k);
      CHECK(g.size(k) == c.size(k));
      CHECK(g.contents(k) == c.contents(k));
    }
  }
};

ContrastiveParams small_params(bool official, bool binary, int C) {
  ContrastiveParams p = official ? ContrastiveParams::official(C) : ContrastiveParams::paper(C);
  p.num_queries = 6;
  p.num_negatives = 9;
  p.low_rank = 1;  // few classes: negatives at ranks 1..C-1
  p.binary = binary;
  return p.validated();
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("u2pl losses on cuda: entropy") {
  Context cpu(CPU), gpu(GPU, true);
  for (const Shape s : {Shape{2, 5, 7, 9}, Shape{1, 21, 13, 11}, Shape{3, 2, 1, 1}}) {
    INFO("logits " << s.str());
    const std::vector<float> v = uniform(s.numel(), 1, -6.f, 6.f);
    const Tensor xc = Tensor::from_host(s, v, CPU), xg = Tensor::from_host(s, v, GPU);
    const Shape hs{s.n(), s.h(), s.w()};
    Tensor hc(hs, CPU), hg(hs, GPU);
    entropy_forward(cpu, xc, hc);
    entropy_forward(gpu, xg, hg);
    check_close("entropy", host(gpu, hg), hc.to_host(), kFwd);
  }
}

TEST_CASE("u2pl losses on cuda: percentiles equal numpy's on the CPU bitwise, ties and empty sets included") {
  Context cpu(CPU), gpu(GPU, true);
  const Shape s{2, 13, 11};
  std::vector<float> ties = uniform(s.numel(), 3, 0.f, 3.f);
  for (float& t : ties) t = std::floor(t * 4.f) / 4.f;  // twelve levels: many equal values
  for (const auto& [name, values] : {std::pair{"distinct", uniform(s.numel(), 2, 0.f, 3.f)}, std::pair{"ties", ties}}) {
    const Tensor ec = Tensor::from_host(s, values, CPU), eg = Tensor::from_host(s, values, GPU);
    for (const float ignored : {0.f, 0.25f, 1.f}) {
      const std::vector<int32_t> lv = random_labels(s.numel(), 4, 5, ignored);
      const Labels lc = Labels::from_host(s, lv, CPU), lg = Labels::from_host(s, lv, GPU);
      for (const bool masked : {true, false})
        for (const double q : {0.0, 20.0, 37.5, 80.0, 99.9, 100.0}) {
          INFO(name << ", ignored " << ignored << (masked ? "" : " (no labels)") << ", q " << q);
          const Percentile pc = masked_percentile(cpu, ec, masked ? lc.view() : LabelView(), q);
          const Percentile pg = masked_percentile(gpu, eg, masked ? lg.view() : LabelView(), q);
          CHECK(pg.count == pc.count);
          CHECK(pg.value == pc.value);
        }
    }
    // the device variant leaves the value in device memory
    const DeviceSlot<Percentile> slot(GPU);
    masked_percentile(gpu, eg, LabelView(), 80.0, slot.get());
    CHECK(slot.read(gpu).value == masked_percentile(ec, LabelView(), 80.0).value);
  }
}

TEST_CASE("u2pl losses on cuda: unsupervised loss, filtered labels and gradient, both presets") {
  Context cpu(CPU), gpu(GPU, true);
  const Shape xs{2, 5, 9, 7}, ls{2, 9, 7};
  const std::vector<float> pv = uniform(xs.numel(), 1, -3.f, 3.f), tv = uniform(xs.numel(), 2, -3.f, 3.f);
  const Tensor pc = Tensor::from_host(xs, pv, CPU), pg = Tensor::from_host(xs, pv, GPU);
  const Tensor tc = Tensor::from_host(xs, tv, CPU), tg = Tensor::from_host(xs, tv, GPU);
  for (const float ignored : {0.2f, 1.f}) {
    const std::vector<int32_t> lv = random_labels(ls.numel(), 5, 3, ignored);
    const Labels lc = Labels::from_host(ls, lv, CPU), lg = Labels::from_host(ls, lv, GPU);
    for (const bool official : {false, true})
      for (const double percent : {80.0, 100.0, 0.0})
        for (const float beta : {0.f, 0.5f, 1.f}) {
          INFO("ignored " << ignored << (official ? ", official" : ", paper") << ", percent " << percent << ", beta "
                          << beta);
          const UnsupOptions opt{percent, official};
          Tensor hc(ls, CPU), hg(ls, GPU);
          Labels fc(ls, CPU), fg(ls, GPU);
          GradPair d(xs, beta, 4);
          const UnsupResult rc = unsup_loss(cpu, pc, lc, tc, opt, hc, fc, 0.7f, d.c, beta);
          const UnsupResult rg = unsup_loss(gpu, pg, lg, tg, opt, hg, fg, 0.7f, d.g, beta);
          check_close("entropy", host(gpu, hg), hc.to_host(), kFwd);
          CHECK(rg.thresh == doctest::Approx(rc.thresh).epsilon(1e-6));
          CHECK(rg.valid == rc.valid);
          CHECK(rg.weight == rc.weight);
          CHECK(rg.loss == doctest::Approx(rc.loss).epsilon(1e-5));
          CHECK(rg.bad_pixel == -1);
          CHECK(host(gpu, fg) == fc.to_host());
          check_close("unsupervised gradient", host(gpu, d.g), d.c.to_host(), kGrad);
          // the device variant writes the same figures to device memory
          const DeviceSlot<UnsupResult> slot(GPU);
          unsup_loss(gpu, pg, lg, tg, opt, hg, fg, 0.7f, TensorView(), 0.f, slot.get());
          const UnsupResult rs = slot.read(gpu);
          CHECK(rs.loss == rg.loss);
          CHECK(rs.valid == rg.valid);
          CHECK(rs.thresh == rg.thresh);
        }
  }
  std::vector<int32_t> bad = random_labels(ls.numel(), 5, 3, 0.f);
  bad[5] = bad[20] = 7;  // at least one survives the filter at percent 100 (only the maximum drops)
  const Labels bc = Labels::from_host(ls, bad, CPU), bg = Labels::from_host(ls, bad, GPU);
  Tensor hc(ls, CPU), hg(ls, GPU);
  Labels fc(ls, CPU), fg(ls, GPU);
  const UnsupOptions opt{100.0, false};
  CHECK_THROWS_AS(unsup_loss(cpu, pc, bc, tc, opt, hc, fc, 1.f, TensorView(), 0.f), Error);
  CHECK_THROWS_WITH_AS(unsup_loss(gpu, pg, bg, tg, opt, hg, fg, 1.f, TensorView(), 0.f),
                       doctest::Contains("pseudo-label 7"), Error);
}

TEST_CASE("u2pl losses on cuda: contrastive masks, both rules, with and without crop labels") {
  Context cpu(CPU), gpu(GPU, true);
  const int64_t nl = 2, h = 4, w = 3, H = 13, W = 11;
  const std::vector<int32_t> llv = random_labels(nl * h * w, 5, 1);
  const Labels llc = Labels::from_host(Shape{nl, h, w}, llv, CPU), llg = Labels::from_host(Shape{nl, h, w}, llv, GPU);
  for (const int64_t nu : {int64_t(2), int64_t(0)}) {
    const Shape es{nu, H, W}, ms{nl + nu, h, w};
    const std::vector<float> ev = uniform(es.numel(), 2, 0.f, 2.f);
    const std::vector<int32_t> cv = random_labels(es.numel(), 5, 3);
    const Tensor ec = Tensor::from_host(es, ev, CPU), eg = Tensor::from_host(es, ev, GPU);
    const Labels cc = Labels::from_host(es, cv, CPU), cg = Labels::from_host(es, cv, GPU);
    for (const LowMaskRule rule : {LowMaskRule::Reliable, LowMaskRule::LowestAlpha})
      for (const bool crop : {true, false})
        for (const double alpha : {20.0, 0.0, 50.0}) {
          INFO("unlabeled " << nu << (rule == LowMaskRule::Reliable ? ", reliable" : ", lowest alpha")
                            << (crop ? ", crop labels" : "") << ", alpha " << alpha);
          Mask low_c(ms, CPU), high_c(ms, CPU), low_g(ms, GPU), high_g(ms, GPU);
          const EntropyThresholds tc =
              contrastive_masks(cpu, llc, ec, crop ? cc.view() : LabelView(), alpha, rule, low_c, high_c);
          const EntropyThresholds tg =
              contrastive_masks(gpu, llg, eg, crop ? cg.view() : LabelView(), alpha, rule, low_g, high_g);
          CHECK(tg.low == tc.low);  // the same entropies: bitwise equal thresholds and masks
          CHECK(tg.high == tc.high);
          CHECK(tg.count == tc.count);
          CHECK(host(gpu, low_g) == low_c.to_host());
          CHECK(host(gpu, high_g) == high_c.to_host());
        }
  }
}

TEST_CASE("u2pl losses on cuda: memory bank pushes, wrap-around, overflow, restore and clear") {
  Context gpu(GPU, true), cpu(CPU);
  const int64_t D = 3;
  MemoryBank c({5, 3}, D, CPU), g({5, 3}, D, GPU);
  struct Push {
    int cls;
    int64_t n;
  };
  uint64_t seed = 10;
  // into 5 and 3 rows: partial, wrapping, overflowing, empty and exactly-full pushes
  for (const Push& p :
       {Push{0, 3}, Push{0, 4}, Push{1, 7}, Push{0, 0}, Push{1, 2}, Push{0, 5}, Push{0, 6}, Push{1, 1}}) {
    INFO("push " << p.n << " rows into queue " << p.cls);
    const std::vector<float> rows = uniform(p.n * D, seed++);
    const Tensor rg = Tensor::from_host(Shape{p.n * D}, rows, GPU);
    c.push(cpu, p.cls, rows.data(), p.n);
    g.push(gpu, p.cls, rg.data(), p.n);
    gpu.synchronize();
    for (int k = 0; k < 2; ++k) {
      CHECK(g.size(k) == c.size(k));
      CHECK(g.contents(k) == c.contents(k));
    }
    CHECK(g.total_size() == c.size(0) + c.size(1));
  }
  const std::vector<float> saved = uniform(2 * D, 99);
  c.restore(1, saved.data(), 2);
  g.restore(1, saved.data(), 2);
  CHECK(g.contents(1) == saved);
  const std::vector<float> more = uniform(2 * D, 98);
  const Tensor mg = Tensor::from_host(Shape{2 * D}, more, GPU);
  c.push(1, more.data(), 2);
  g.push(gpu, 1, mg.data(), 2);
  CHECK(g.contents(1) == c.contents(1));  // 4 rows into 3: the oldest restored row goes
  CHECK_THROWS_AS(g.restore(0, saved.data(), 6), Error);  // above the capacity
  g.clear();
  CHECK(g.size(0) == 0);
  CHECK(g.contents(1).empty());
  CHECK_THROWS_AS(g.view(0), Error);
  CHECK_THROWS_AS(g.push(0, mg.data(), 1), Error);  // a CUDA bank pushes through a context
  CHECK_THROWS_AS(g.push(cpu, 0, more.data(), 1), Error);
}

TEST_CASE("u2pl losses on cuda: contrastive loss, gradient, pushes and Philox draws equal the CPU's") {
  Context cpu(CPU), gpu(GPU, true);
  struct Variant {
    const char* name;
    bool official, binary;
    void (*edit)(ContrastiveParams&);
  };
  const Variant variants[] = {
      {"paper", false, false, [](ContrastiveParams&) {}},
      {"official", true, false, [](ContrastiveParams&) {}},
      {"paper binary", false, true, [](ContrastiveParams&) {}},
      {"official binary", true, true, [](ContrastiveParams&) {}},
      {"paper, no memory bank", false, false, [](ContrastiveParams& p) { p.memory_bank = false; }},
      {"paper, no prt", false, false, [](ContrastiveParams& p) { p.prt = false; }},
      {"paper, reliable negatives", false, false,
       [](ContrastiveParams& p) { p.negative_source = NegativeSource::Reliable; }},
      {"paper, all negatives", false, false, [](ContrastiveParams& p) { p.negative_source = NegativeSource::All; }},
      {"official, no prt, all negatives", true, false,
       [](ContrastiveParams& p) {
         p.prt = false;
         p.negative_source = NegativeSource::All;
       }},
  };
  const ContrastBatch batch(2, 2, 5, 40, 6, 7, 21);  // D = 40: the warps' channel loop has a tail
  const DeviceBatch bc(batch, CPU), bg(batch, GPU);
  for (const Variant& v : variants) {
    INFO(v.name);
    ContrastiveParams p = small_params(v.official, v.binary, 5);
    v.edit(p);
    BankPair banks(5, 100, batch.D, 30, 50);  // the second step wraps the rings around
    Rng rc(7), rg(7);
    PhiloxIndexSource dc(rc), dg(rg);
    GradPair d(batch.rep_shape(), 0.f, 3);
    int formed = 0;
    for (int step = 0; step < 2; ++step) {
      INFO("step " << step);
      const float beta = float(step);  // the second step accumulates onto the first's gradient
      const ContrastiveResult r_c = contrastive_loss(cpu, p, bc.inputs(), banks.c, dc, 0.7f, d.c, beta);
      const ContrastiveResult r_g = contrastive_loss(gpu, p, bg.inputs(), banks.g, dg, 0.7f, d.g, beta);
      CHECK(r_g.terms == r_c.terms);
      CHECK(r_g.normaliser == r_c.normaliser);
      CHECK(r_g.loss == doctest::Approx(r_c.loss).epsilon(1e-5));  // other draws would differ by far more
      CHECK(rg.offset() == rc.offset());
      check_close("contrastive gradient", host(gpu, d.g), d.c.to_host(), kGrad);
      banks.expect_same("after the step");
      formed += r_c.terms;
    }
    CHECK(formed > 0);
  }
}

TEST_CASE("u2pl losses on cuda: two replicas push, then each forms its terms, as on the CPU") {
  Context cpu(CPU), gpu(GPU, true);
  const ContrastBatch a(2, 2, 5, 40, 6, 7, 31), b(2, 2, 5, 40, 6, 7, 32);
  const DeviceBatch ac(a, CPU), ag(a, GPU), bc(b, CPU), bg(b, GPU);
  for (const bool official : {false, true})
    for (const bool memory_bank : {true, false}) {
      INFO((official ? "official" : "paper") << (memory_bank ? "" : ", no memory bank"));
      ContrastiveParams p = small_params(official, false, 5);
      p.memory_bank = memory_bank;
      BankPair banks(5, 100, a.D, 30, 50);
      if (!memory_bank) {  // the step empties the bank once, before the first push
        banks.c.clear();
        banks.g.clear();
      }
      Rng rc(8), rg(8);
      PhiloxIndexSource dc(rc), dg(rg);
      GradPair d(a.rep_shape(), 0.f, 4);
      for (const DeviceBatch* x : {&ac, &bc})
        contrastive_loss(cpu, p, x->inputs(), banks.c, dc, 0.5f, TensorView(), 0.f, ContrastivePhase::PushOnly);
      for (const DeviceBatch* x : {&ag, &bg})
        contrastive_loss(gpu, p, x->inputs(), banks.g, dg, 0.5f, TensorView(), 0.f, ContrastivePhase::PushOnly);
      banks.expect_same("after both pushes");
      CHECK(rg.offset() == rc.offset());  // pushes draw nothing
      const ContrastiveResult r_c = contrastive_loss(cpu, p, ac.inputs(), banks.c, dc, 0.5f, d.c, 0.f,
                                                     ContrastivePhase::LossOnly);
      const ContrastiveResult r_g = contrastive_loss(gpu, p, ag.inputs(), banks.g, dg, 0.5f, d.g, 0.f,
                                                     ContrastivePhase::LossOnly);
      CHECK(r_g.terms == r_c.terms);
      CHECK(r_g.loss == doctest::Approx(r_c.loss).epsilon(1e-5));
      CHECK(rg.offset() == rc.offset());
      check_close("contrastive gradient", host(gpu, d.g), d.c.to_host(), kGrad);
      banks.expect_same("after the loss (no push)");
    }
}

// Several processes on CUDA: each process's replicas' negatives are read back through a staging
// bank and cross as host rows; a queue keeps its newest `capacity` rows only.
TEST_CASE("u2pl losses on cuda: a replica's negatives through a staging bank are the CPU's newest rows") {
  Context cpu(CPU), gpu(GPU, true);
  const ContrastBatch a(2, 2, 5, 40, 6, 7, 33);
  const DeviceBatch ac(a, CPU), ag(a, GPU);
  for (const bool official : {false, true}) {
    INFO((official ? "official" : "paper"));
    const ContrastiveParams p = small_params(official, false, 5);
    const std::vector<int64_t> caps = {4, 1000, 4, 1000, 4};
    MemoryBank staging(caps, a.D, GPU);
    const std::vector<float> old_rows = uniform(3 * a.D, 5);
    staging.restore(1, old_rows.data(), 3);  // emptied first: a previous replica's rows must not remain
    const std::vector<std::vector<float>> want = contrastive_negatives(cpu, p, ac.inputs());
    const std::vector<std::vector<float>> got = contrastive_negatives(gpu, p, ag.inputs(), &staging);
    REQUIRE(got.size() == want.size());
    int cut = 0, whole = 0;
    for (size_t c = 0; c < want.size(); ++c) {
      INFO("class " << c);
      const size_t keep = std::min(want[c].size(), size_t(caps[c] * a.D));
      (keep < want[c].size() ? cut : whole) += 1;
      CHECK(got[c] == std::vector<float>(want[c].end() - std::ptrdiff_t(keep), want[c].end()));
    }
    CHECK(cut > 0);
    CHECK(whole > 0);
  }
  const ContrastiveParams p = small_params(false, false, 5);
  CHECK(error_of([&] { contrastive_negatives(gpu, p, ag.inputs()); }).find("staging bank") != std::string::npos);
}

TEST_CASE("u2pl losses on cuda: contrastive loss at the paper's sizes, reproducible bitwise") {
  Context cpu(CPU), gpu(GPU, true);
  const ContrastBatch batch(2, 2, 21, 256, 11, 13, 31);
  const DeviceBatch bc(batch, CPU), bg(batch, GPU);
  for (const bool official : {false, true}) {
    INFO(std::string(official ? "official" : "paper"));
    const ContrastiveParams p = (official ? ContrastiveParams::official(21) : ContrastiveParams::paper(21)).validated();
    BankPair banks(21, 3000, batch.D, 200, 60);
    MemoryBank again(std::vector<int64_t>(21, 3000), batch.D, GPU);
    for (int k = 0; k < 21; ++k) {
      const std::vector<float> rows = banks.c.contents(k);
      again.restore(k, rows.data(), banks.c.size(k));
    }
    Rng rc(11), rg(11), ra(11);
    PhiloxIndexSource dc(rc), dg(rg), da(ra);
    GradPair d(batch.rep_shape(), 0.f, 4);
    Tensor da_grad(batch.rep_shape(), GPU);
    const ContrastiveResult r_c = contrastive_loss(cpu, p, bc.inputs(), banks.c, dc, 1.f, d.c, 0.f);
    const ContrastiveResult r_g = contrastive_loss(gpu, p, bg.inputs(), banks.g, dg, 1.f, d.g, 0.f);
    REQUIRE(r_c.terms > 0);
    CHECK(r_g.terms == r_c.terms);
    CHECK(r_g.normaliser == r_c.normaliser);
    CHECK(r_g.loss == doctest::Approx(r_c.loss).epsilon(1e-5));
    check_close("contrastive gradient", host(gpu, d.g), d.c.to_host(), kGrad);
    banks.expect_same("after the step");
    // the same step again on CUDA: the same figures and gradient, bit for bit
    const DeviceSlot<ContrastiveResult> slot(GPU);
    contrastive_loss(gpu, p, bg.inputs(), again, da, 1.f, da_grad, 0.f, slot.get());
    const ContrastiveResult r_a = slot.read(gpu);
    CHECK(r_a.loss == r_g.loss);
    CHECK(host(gpu, da_grad) == host(gpu, d.g));
  }
}

TEST_CASE("u2pl losses on cuda: contrastive edge cases and refusals") {
  Context cpu(CPU), gpu(GPU, true);
  ContrastBatch batch(1, 1, 4, 8, 3, 4, 41);
  const ContrastiveParams p = small_params(false, false, 4);
  SUBCASE("no negatives and empty queues: no term, a zero gradient, never NaN") {
    std::fill(batch.high.begin(), batch.high.end(), uint8_t(0));
    const DeviceBatch bg(batch, GPU);
    MemoryBank bank(std::vector<int64_t>(4, 10), batch.D, GPU);
    Rng r(1);
    PhiloxIndexSource draws(r);
    GradPair d(batch.rep_shape(), 0.f, 2);
    const ContrastiveResult res = contrastive_loss(gpu, p, bg.inputs(), bank, draws, 1.f, d.g, 0.f);
    CHECK(res.terms == 0);
    CHECK(res.loss == 0.0);
    for (float g : host(gpu, d.g)) CHECK(g == 0.f);
    for (int k = 0; k < 4; ++k) CHECK(bank.size(k) == 0);
  }
  SUBCASE("a bad label is reported as the CPU reports it") {
    batch.label_u[3] = 9;
    const DeviceBatch bc(batch, CPU), bg(batch, GPU);
    BankPair banks(4, 10, batch.D, 2, 5);
    Rng r1(1), r2(1);
    PhiloxIndexSource d1(r1), d2(r2);
    CHECK_THROWS_WITH_AS(contrastive_loss(cpu, p, bc.inputs(), banks.c, d1, 1.f, TensorView(), 0.f),
                         doctest::Contains("pseudo-label 9"), Error);
    CHECK_THROWS_WITH_AS(contrastive_loss(gpu, p, bg.inputs(), banks.g, d2, 1.f, TensorView(), 0.f),
                         doctest::Contains("label 9 at pixel 15"), Error);  // 12 labeled pixels first
  }
  SUBCASE("replayed draws and a bank on the other device are refused") {
    const DeviceBatch bg(batch, GPU);
    MemoryBank gbank(std::vector<int64_t>(4, 10), batch.D, GPU), cbank(std::vector<int64_t>(4, 10), batch.D, CPU);
    ReplayIndexSource replay(std::vector<std::vector<int64_t>>{});
    CHECK_THROWS_WITH_AS(contrastive_loss(gpu, p, bg.inputs(), gbank, replay, 1.f, TensorView(), 0.f),
                         doctest::Contains("PhiloxIndexSource"), Error);
    Rng r(1);
    PhiloxIndexSource draws(r);
    CHECK_THROWS_WITH_AS(contrastive_loss(gpu, p, bg.inputs(), cbank, draws, 1.f, TensorView(), 0.f),
                         doctest::Contains("memory bank is on cpu"), Error);
  }
}

}  // TEST_SUITE("cuda")
