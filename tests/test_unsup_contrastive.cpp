// Unit tests of the U2PL losses (u2pl/losses/unsup_loss.h, contrastive.h, memory_bank.h,
// index_source.h): numpy percentiles by hand, entropy, the unsupervised loss with every pixel
// ignored, queue overflow, the contrastive edge cases (one class, empty queues, all reliable, all
// ignore), the rank clamp and the r_l error, the ablations (prt, negative source, memory bank),
// and the InfoNCE and binary (Appendix C) losses against a direct computation and finite
// differences in double.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "layers/loss.h"
#include "tests/gradcheck.h"
#include "u2pl/losses/contrastive.h"
#include "u2pl/losses/unsup_loss.h"

using namespace u2pl;

TEST_CASE("loss helpers: percentile matches numpy.percentile (linear) by hand") {
  // np.percentile([1, 2, 3, 4], 80) = 3.4; [0.5, 0.1, 0.9, 0.3] at 20 -> 0.1 + 0.6·0.2 = 0.22
  CHECK(percentile_linear({1, 2, 3, 4}, 80) == doctest::Approx(3.4));
  CHECK(percentile_linear({0.5f, 0.1f, 0.9f, 0.3f}, 20) == doctest::Approx(0.1 + 0.6 * (0.3 - 0.1)).epsilon(1e-7));
  CHECK(percentile_linear({3, 1, 2}, 0) == 1.0);
  CHECK(percentile_linear({3, 1, 2}, 100) == 3.0);
  CHECK(percentile_linear({5, 4, 3, 2, 1}, 25) == 2.0);  // rank exactly 1
  CHECK(percentile_linear({10, 20}, 50) == 15.0);
  CHECK(percentile_linear({7}, 37) == 7.0);
  CHECK(percentile_linear({2, 2, 2, 9}, 90) == doctest::Approx(2 + 0.7 * 7));  // rank 2.7
  CHECK_THROWS_AS(percentile_linear({}, 50), Error);
  CHECK_THROWS_AS(percentile_linear({1, 2}, 101), Error);
}

TEST_CASE("loss helpers: entropy of uniform and peaked softmax") {
  Context ctx(Device::CPU);
  // pixel 0: uniform over 4 classes -> log 4; pixel 1: one logit far above -> about 0
  Tensor x = Tensor::from_host(Shape{1, 4, 1, 2}, {0, 30, 0, 0, 0, 0, 0, 0}, Device::CPU);
  Tensor h(Shape{1, 1, 2}, Device::CPU);
  entropy_forward(ctx, x, h);
  CHECK(h.to_host()[0] == doctest::Approx(std::log(4.0)).epsilon(1e-6));
  CHECK(h.to_host()[1] == doctest::Approx(0).epsilon(1e-6));
}

TEST_CASE("unsupervised loss: all-ignore batch gives 0 and a zero gradient, never NaN") {
  Context ctx(Device::CPU);
  const Shape xs{2, 3, 2, 2}, ls{2, 2, 2};
  Tensor pred = Tensor::from_host(xs, test::random_floats(size_t(xs.numel()), 1), Device::CPU);
  Tensor teach = Tensor::from_host(xs, test::random_floats(size_t(xs.numel()), 2), Device::CPU);
  Labels target = Labels::from_host(ls, std::vector<int32_t>(8, kIgnoreLabel), Device::CPU);
  Labels filtered(ls, Device::CPU);
  Tensor ent(ls, Device::CPU), grad = Tensor::from_host(xs, std::vector<float>(size_t(xs.numel()), 7.f), Device::CPU);
  for (bool official : {false, true}) {
    UnsupOptions opt;
    opt.scale_by_valid = official;
    const UnsupResult r = unsup_loss(ctx, pred, target, teach, opt, ent, filtered, 1.f, grad, 0.f);
    CHECK(r.loss == 0.f);
    CHECK(r.valid == 0);
    for (float g : grad.to_host()) CHECK(g == 0.f);
  }
}

TEST_CASE("unsupervised loss: official weight B·H·W/N_valid times the mean CE, paper the mean") {
  Context ctx(Device::CPU);
  const Shape xs{1, 3, 2, 2}, ls{1, 2, 2};
  Tensor pred = Tensor::from_host(xs, test::random_floats(12, 3), Device::CPU);
  // entropies: pixel 3 is the only uniform (highest-entropy) one; pixel 2 is ignored already
  Tensor teach = Tensor::from_host(xs, {5, 0, 0, 0, 0, 6, 0, 0, 0, 0, 7, 0}, Device::CPU);
  Labels target = Labels::from_host(ls, {0, 1, kIgnoreLabel, 2}, Device::CPU), filtered(ls, Device::CPU);
  Tensor ent(ls, Device::CPU), grad(xs, Device::CPU);
  UnsupOptions opt;
  opt.percent = 90;  // over the 3 labelled pixels: rank 1.8, between the 2nd and the highest
  opt.scale_by_valid = true;
  const UnsupResult r = unsup_loss(ctx, pred, target, teach, opt, ent, filtered, 1.f, grad, 0.f);
  CHECK(filtered.to_host() == std::vector<int32_t>{0, 1, kIgnoreLabel, kIgnoreLabel});
  CHECK(r.valid == 2);
  CHECK(r.weight == doctest::Approx(2.0));
  Labels two = Labels::from_host(ls, {0, 1, kIgnoreLabel, kIgnoreLabel}, Device::CPU);
  const float mean = cross_entropy_forward(ctx, pred, two).loss;
  CHECK(r.loss == doctest::Approx(2 * mean));
  opt.scale_by_valid = false;
  CHECK(unsup_loss(ctx, pred, target, teach, opt, ent, filtered, 1.f, grad, 0.f).loss == doctest::Approx(mean));
}

TEST_CASE("loss memory bank: FIFO keeps the newest rows, wraps and overflows") {
  MemoryBank bank({3, 2}, 2);
  const std::vector<float> a{1, 1, 2, 2}, b{3, 3, 4, 4}, many{5, 5, 6, 6, 7, 7, 8, 8};
  bank.push(0, a.data(), 2);
  CHECK(bank.contents(0) == a);
  bank.push(0, b.data(), 2);  // 4 rows into 3: the oldest goes
  CHECK(bank.contents(0) == std::vector<float>{2, 2, 3, 3, 4, 4});
  bank.push(0, many.data(), 4);  // more than the capacity at once
  CHECK(bank.contents(0) == std::vector<float>{6, 6, 7, 7, 8, 8});
  bank.push(0, a.data(), 1);
  CHECK(bank.contents(0) == std::vector<float>{7, 7, 8, 8, 1, 1});
  CHECK(bank.view(0).row(0)[0] == 7.f);
  CHECK(bank.size(1) == 0);
  CHECK(bank.total_size() == 3);
  CHECK(bank.total_capacity() == 5);
  bank.push(1, nullptr, 0);
  CHECK(bank.contents(1).empty());
  bank.clear();
  CHECK(bank.size(0) == 0);
  CHECK_THROWS_AS(bank.push(2, a.data(), 1), Error);
  CHECK(parse_queue_sizes("50,40") == std::vector<int64_t>{50, 40});
  CHECK_THROWS_AS(parse_queue_sizes("50,x"), Error);
}

TEST_CASE("loss index sources: Philox stays in range and is reproducible; replay checks calls") {
  Rng r1(7), r2(7);
  PhiloxIndexSource s1(r1), s2(r2);
  const std::vector<int64_t> d = s1.draw(1000, 13);
  CHECK(d == s2.draw(1000, 13));
  for (int64_t v : d) CHECK((v >= 0 && v < 13));
  CHECK(s1.draw(5, 13) != d);
  ReplayIndexSource replay(std::vector<std::vector<int64_t>>{{1, 2}, {0}}, std::vector<int64_t>{3, 1});
  CHECK(replay.draw(2, 3) == std::vector<int64_t>{1, 2});
  CHECK_THROWS_AS(replay.draw(1, 2), Error);  // recorded bound 1
  ReplayIndexSource short_replay(std::vector<std::vector<int64_t>>{{4}});
  CHECK_THROWS_AS(short_replay.draw(1, 4), Error);  // index 4 outside [0, 4)
}

TEST_CASE("loss index sources: a Philox step lays the draws out by term and ends at a fixed offset") {
  Rng rng(3, 10);
  PhiloxIndexSource src(rng);
  src.begin_step(5, 6, 9);  // up to 5 terms of 6 anchor and 54 negative draws
  const PhiloxStep st = src.step();
  CHECK(st.base == 10);
  CHECK(st.anchor_counters == 2);
  CHECK(st.stride == 2 + 14);
  for (int64_t t = 0; t < 2; ++t) {  // two terms drawn in order land where the CUDA loss draws them
    const std::vector<int64_t> a = src.draw(6, 11), n = src.draw(54, 7);
    for (int64_t i = 0; i < 6; ++i) CHECK(a[size_t(i)] == philox_below(3, st.anchors(t), uint64_t(i), 11));
    for (int64_t i = 0; i < 54; ++i) CHECK(n[size_t(i)] == philox_below(3, st.negatives(t), uint64_t(i), 7));
  }
  src.end_step();
  CHECK(rng.offset() == 10 + 5 * 16);  // however many of the 5 terms drew
  CHECK_THROWS_AS(src.end_step(), Error);  // no step begun
  src.begin_step(1, 6, 9);
  src.draw(6, 3), src.draw(54, 3), src.draw(1, 3);  // one draw more than the step holds
  CHECK_THROWS_WITH_AS(src.end_step(), doctest::Contains("past the step's end"), Error);
}

TEST_CASE("loss memory bank: restore sets a queue, oldest first, on a CPU bank") {
  Context ctx(Device::CPU);
  MemoryBank bank({3, 2}, 2);
  const std::vector<float> rows{1, 1, 2, 2}, more{3, 3, 4, 4};
  bank.push(0, more.data(), 2);
  bank.restore(0, rows.data(), 2);
  CHECK(bank.contents(0) == rows);
  bank.push(ctx, 0, more.data(), 2);  // 4 rows into 3
  CHECK(bank.contents(0) == std::vector<float>{2, 2, 3, 3, 4, 4});
  CHECK_THROWS_AS(bank.restore(1, rows.data(), 3), Error);  // capacity 2
  CHECK(ring_push(3, 2, 3, 1).head == 0);  // full ring: the oldest (slot 2) drops
  CHECK(ring_push(3, 2, 3, 1).tail == 2);
}

TEST_CASE("contrastive loss params: the ranks fit the class count, as the config reader fits them") {
  CHECK(ContrastiveParams::paper(4).validated().high_rank == 4);
  CHECK_THROWS_WITH_AS(ContrastiveParams::paper(4).check(), doctest::Contains("high_rank"), Error);
  const ContrastiveParams three = ContrastiveParams::paper(3).validated();  // r_l 3 ≥ C
  CHECK(three.low_rank == 2);
  CHECK(three.high_rank == 3);
  ContrastiveParams p = ContrastiveParams::official(2);  // a 2-class custom set
  CHECK(p.validated().low_rank == 1);
  CHECK(p.validated().high_rank == 2);
  int low = 3, high = 20;
  const std::vector<std::string> said = fit_ranks(2, low, high);
  REQUIRE(said.size() == 2);
  CHECK(said[0].find("low_rank 3 >= net.num_classes 2: set to 1") == 0);
  CHECK(said[1].find("high_rank 20 clamped to net.num_classes 2") == 0);
  low = 1, high = 2;
  CHECK(fit_ranks(2, low, high).empty());
  p.low_rank = -1;
  CHECK_THROWS_WITH_AS(p.validated(), doctest::Contains("low_rank must be non-negative"), Error);
  p.low_rank = 1;
  p.temperature = 0;
  CHECK_THROWS_WITH_AS(p.validated(), doctest::Contains("temperature"), Error);
}

namespace {

// A small random batch at feature resolution with the queue contents before the step.
struct Batch {
  ContrastiveDims d;
  int C;
  std::vector<double> rep;
  std::vector<float> rep_t, prob_l, prob_u;
  std::vector<int32_t> label_l, label_u;
  std::vector<uint8_t> low, high;  // (B, h, w); labeled images: label ≠ 255
  std::vector<std::vector<float>> queue;

  int64_t capacity = 12;  // rows per queue

  Batch(int64_t nl, int64_t nu, int C_, uint64_t seed, int64_t queued = 4) : d{nl, nu, 5, 3, 4}, C(C_) {
    const int64_t HW = d.h * d.w, B = nl + nu, n = B * d.dim * HW;
    rep = test::random_vec(size_t(n), seed);
    rep_t = test::random_floats(size_t(n), seed + 1);
    for (auto [count, out] : {std::pair{nl, &prob_l}, std::pair{nu, &prob_u}}) {
      std::vector<float> logits = test::random_floats(size_t(count * C * HW), seed + 2 + uint64_t(count), -3, 3);
      out->resize(logits.size());
      softmax_forward_cpu<float>(Shape{count, C, d.h, d.w}, logits.data(), out->data());
    }
    for (int64_t k = 0; k < B * HW; ++k) {
      const uint32_t u = philox_u32(seed + 9, 0, uint64_t(k));
      const int32_t y = u % 10 == 0 ? kIgnoreLabel : int32_t((u >> 8) % uint32_t(C));
      (k < nl * HW ? label_l : label_u).push_back(y);
      const float r = philox_uniform(seed + 10, 0, uint64_t(k));
      low.push_back(k < nl * HW ? y != kIgnoreLabel : r < 0.6f);
      high.push_back(k < nl * HW ? y != kIgnoreLabel : r >= 0.5f);
    }
    for (int c = 0; c < C; ++c) queue.push_back(test::random_floats(size_t(queued * d.dim), seed + 20 + uint64_t(c)));
  }
  MemoryBank bank() const {
    MemoryBank b(std::vector<int64_t>(size_t(C), capacity), d.dim);
    for (int c = 0; c < C; ++c) b.push(c, queue[size_t(c)].data(), int64_t(queue[size_t(c)].size()) / d.dim);
    return b;
  }
  ContrastiveResult run(const ContrastiveParams& p, IndexSource& src, double* drep, MemoryBank* out = nullptr) const {
    MemoryBank b = bank();
    const ContrastiveResult r = contrastive_loss_cpu<double>(p, d, rep.data(), rep_t.data(), prob_l.data(),
                                                             prob_u.data(), label_l.data(), label_u.data(),
                                                             low.data(), high.data(), b, src, 1.0, drep, 0.0);
    if (out) *out = std::move(b);
    return r;
  }
};

// Philox draws, kept so a finite-difference pass can replay them.
class Recorder : public IndexSource {
 public:
  explicit Recorder(uint64_t seed) : rng_(seed), src_(rng_) {}
  std::vector<int64_t> draw(int64_t n, int64_t high) override {
    draws.push_back(src_.draw(n, high));
    return draws.back();
  }
  std::vector<std::vector<int64_t>> draws;

 private:
  Rng rng_;
  PhiloxIndexSource src_;
};

ContrastiveParams small(bool official, bool binary, int C) {
  ContrastiveParams p = official ? ContrastiveParams::official(C) : ContrastiveParams::paper(C);
  p.num_queries = 6;
  p.num_negatives = 5;
  p.low_rank = 1;  // 4 classes: negatives at ranks 1..3
  p.binary = binary;
  return p.validated();
}

double cosine(const double* a, const float* b, int64_t D) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t e = 0; e < D; ++e) ab += a[e] * b[e], aa += a[e] * a[e], bb += double(b[e]) * b[e];
  return ab / std::sqrt(aa * bb);
}

}  // namespace

TEST_CASE("contrastive loss gradients match finite differences (InfoNCE and binary, both presets)") {
  for (bool official : {false, true})
    for (bool binary : {false, true}) {
      INFO((official ? "official" : "paper") << (binary ? " binary" : " InfoNCE"));
      Batch b(2, 2, 4, 31 + 2 * official + binary);
      const ContrastiveParams p = small(official, binary, 4);
      Recorder rec(5);
      std::vector<double> drep(b.rep.size());
      const ContrastiveResult r = b.run(p, rec, drep.data());
      REQUIRE(r.terms > 0);
      auto loss = [&] {
        ReplayIndexSource replay(rec.draws);
        return b.run(p, replay, nullptr).loss;
      };
      CHECK(loss() == doctest::Approx(r.loss).epsilon(1e-12));
      test::check_gradient("contrastive drep", b.rep, drep, loss, nullptr, 200);
    }
}

TEST_CASE("contrastive loss equals a direct computation of Eq. 4 and Eq. A1 (paper)") {
  for (bool binary : {false, true}) {
    INFO((binary ? "binary" : "InfoNCE"));
    Batch b(1, 1, 4, 71);
    std::fill(b.high.begin(), b.high.end(), 0);  // no pushes: negatives come from the queues given
    const ContrastiveParams p = small(false, binary, 4);
    Recorder rec(8);
    const ContrastiveResult r = b.run(p, rec, nullptr);
    const int64_t D = b.d.dim, HW = b.d.h * b.d.w, M = p.num_queries, N = p.num_negatives;
    double total = 0;
    size_t call = 0;
    int with_anchors = 0;
    for (int c = 0; c < 4; ++c) {
      std::vector<std::vector<double>> anchors;
      std::vector<double> proto(static_cast<size_t>(D), 0.0);
      for (int64_t k = 0; k < 2 * HW; ++k) {
        const bool lab = k < HW;
        const float pc = (lab ? b.prob_l : b.prob_u)[size_t(c * HW + k % HW)];
        if ((lab ? b.label_l : b.label_u)[size_t(k % HW)] != c || !b.low[size_t(k)] || !(pc > p.delta_p)) continue;
        std::vector<double> z(static_cast<size_t>(D));
        for (int64_t e = 0; e < D; ++e) {
          z[size_t(e)] = b.rep[size_t((k / HW) * D * HW + e * HW + k % HW)];
          proto[size_t(e)] += b.rep_t[size_t((k / HW) * D * HW + e * HW + k % HW)];
        }
        anchors.push_back(z);
      }
      if (anchors.empty()) continue;
      ++with_anchors;
      std::vector<float> pf(static_cast<size_t>(D));
      for (int64_t e = 0; e < D; ++e) pf[size_t(e)] = float(proto[size_t(e)] / double(anchors.size()));
      const std::vector<int64_t>& ai = rec.draws.at(call++);
      const std::vector<int64_t>& ni = rec.draws.at(call++);
      for (int64_t m = 0; m < M; ++m) {
        const double* z = anchors[size_t(ai[size_t(m)])].data();
        const double sp = cosine(z, pf.data(), D) / p.temperature;
        double denom = std::exp(sp), pairs = 0;
        for (int64_t j = 0; j < N; ++j) {
          const double sn = cosine(z, b.queue[size_t(c)].data() + ni[size_t(m * N + j)] * D, D) / p.temperature;
          denom += std::exp(sn);
          pairs += -std::log(std::exp(sp) / (std::exp(sp) + std::exp(sn)));
        }
        total += binary ? pairs : -std::log(std::exp(sp) / denom);
      }
    }
    REQUIRE(with_anchors > 0);
    CHECK(call == rec.draws.size());
    const double want = binary ? total / (double(with_anchors) * double(M) * double(N))
                               : total / (double(with_anchors) * double(M));
    CHECK(r.loss == doctest::Approx(want).epsilon(1e-6));
  }
}

TEST_CASE("contrastive loss edge cases: one class, empty queues, all reliable, all ignore") {
  ReplayIndexSource none(std::vector<std::vector<int64_t>>{});  // any draw throws
  SUBCASE("one class present: official gives 0 (<= 1 valid class), paper one term") {
    Batch b(1, 1, 4, 91);
    std::fill(b.label_l.begin(), b.label_l.end(), 0);
    std::fill(b.label_u.begin(), b.label_u.end(), 0);
    std::fill(b.low.begin(), b.low.end(), 1);
    std::vector<double> drep(b.rep.size(), 3.0);
    const ContrastiveResult r = b.run(small(true, false, 4), none, drep.data());
    CHECK(r.loss == 0.0);
    CHECK(r.normaliser == 1);
    for (double g : drep) CHECK(g == 0.0);
    Recorder rec(3);
    const ContrastiveResult rp = b.run(small(false, false, 4), rec, drep.data());
    CHECK(rp.terms == 1);
    CHECK(rp.loss > 0);
  }
  SUBCASE("Philox: the step ends at the same offset with or without terms") {
    Batch b(1, 1, 4, 95);
    const ContrastiveParams p = small(false, false, 4);
    const uint64_t stride = (6 + 3) / 4 + (6 * 5 + 3) / 4;  // counters a term: ⌈M/4⌉ + ⌈M·N/4⌉
    Rng with(1), without(1);
    PhiloxIndexSource s1(with), s2(without);
    CHECK(b.run(p, s1, nullptr).terms > 0);
    std::fill(b.high.begin(), b.high.end(), 0);
    b.queue.assign(4, {});
    CHECK(b.run(p, s2, nullptr).terms == 0);
    CHECK(with.offset() == 4 * stride);  // C = 4 terms' worth
    CHECK(without.offset() == with.offset());
  }
  SUBCASE("empty queues and no negatives: no term, no draw, zero gradient") {
    Batch b(1, 1, 4, 92, 0);
    std::fill(b.high.begin(), b.high.end(), 0);
    for (bool official : {false, true}) {
      std::vector<double> drep(b.rep.size(), 3.0);
      MemoryBank after;
      const ContrastiveResult r = b.run(small(official, false, 4), none, drep.data(), &after);
      CHECK(r.loss == 0.0);
      CHECK(r.terms == 0);
      for (double g : drep) CHECK(g == 0.0);
      for (int c = 0; c < 4; ++c) CHECK(after.size(c) == 0);
    }
  }
  SUBCASE("every unlabeled pixel reliable: nothing is pushed") {
    Batch b(0, 2, 4, 93);
    std::fill(b.low.begin(), b.low.end(), 1);
    std::fill(b.high.begin(), b.high.end(), 0);
    for (bool official : {false, true}) {
      Recorder rec(4);
      MemoryBank after;
      const ContrastiveResult r = b.run(small(official, false, 4), rec, nullptr, &after);
      for (int c = 0; c < 4; ++c) CHECK(after.size(c) == 4);
      CHECK(std::isfinite(r.loss));
    }
  }
  SUBCASE("all-ignore images: masks from the crop are empty, the loss is 0, never NaN") {
    Context ctx(Device::CPU);
    Batch b(1, 1, 4, 94);
    std::fill(b.label_l.begin(), b.label_l.end(), kIgnoreLabel);
    std::fill(b.label_u.begin(), b.label_u.end(), kIgnoreLabel);
    Labels label_l = Labels::from_host(Shape{1, 3, 4}, b.label_l, Device::CPU);
    Labels crop_u = Labels::from_host(Shape{1, 6, 8}, std::vector<int32_t>(48, kIgnoreLabel), Device::CPU);
    Tensor ent = Tensor::from_host(Shape{1, 6, 8}, test::random_floats(48, 5, 0, 1), Device::CPU);
    Mask low(Shape{2, 3, 4}, Device::CPU), high(Shape{2, 3, 4}, Device::CPU);
    const EntropyThresholds t = contrastive_masks(ctx, label_l, ent, crop_u, 20, LowMaskRule::LowestAlpha, low, high);
    CHECK(t.count == 0);
    b.low = low.to_host();
    b.high = high.to_host();
    for (uint8_t v : b.low) CHECK(v == 0);
    for (uint8_t v : b.high) CHECK(v == 0);
    for (bool official : {false, true}) {
      std::vector<double> drep(b.rep.size(), 1.0);
      const ContrastiveResult r = b.run(small(official, true, 4), none, drep.data());
      CHECK(r.loss == 0.0);
      for (double g : drep) CHECK(g == 0.0);
    }
  }
}

namespace {

// The negatives of class c, pixel order, written out from SPEC §2.3 and the ablations (not
// through ContrastRule): Eq. 14-15 or the official label mask, rank conditions unless prt is off,
// unlabeled pixels from the chosen source.
std::vector<int64_t> expected_negatives(const Batch& b, const ContrastiveParams& p, int c) {
  const int64_t HW = b.d.h * b.d.w, Pl = b.d.n_l * HW, P = (b.d.n_l + b.d.n_u) * HW;
  std::vector<int64_t> out;
  for (int64_t k = 0; k < P; ++k) {
    const bool lab = k < Pl;
    const int64_t j = lab ? k : k - Pl;
    const std::vector<float>& prob = lab ? b.prob_l : b.prob_u;
    auto pr = [&](int cc) { return prob[size_t((j / HW) * b.C * HW + cc * HW + j % HW)]; };
    int64_t rank = 0;
    for (int cc = 0; cc < b.C; ++cc) rank += pr(cc) > pr(c) || (pr(cc) == pr(c) && cc < c);
    const int32_t y = (lab ? b.label_l : b.label_u)[size_t(j)];
    const bool high = b.high[size_t(k)] != 0, pseudo = y != kIgnoreLabel;
    const bool src = lab || p.negative_source == NegativeSource::Unreliable ? high
                     : p.negative_source == NegativeSource::Reliable        ? pseudo && !high
                                                                            : pseudo;
    const bool top = !p.prt || rank < p.low_rank, mid = !p.prt || (rank >= p.low_rank && rank < p.high_rank);
    const bool neg = p.negatives_label_mask ? !lab && pr(c) < p.delta_n && y == c && src && mid
                                            : src && (lab ? y != c && top : mid);
    if (neg) out.push_back(k);
  }
  return out;
}

// Teacher rows (n, D) of the pixels, as a queue holds them.
std::vector<float> teacher_rows(const Batch& b, const std::vector<int64_t>& pixels) {
  const int64_t HW = b.d.h * b.d.w, D = b.d.dim;
  std::vector<float> rows;
  for (int64_t k : pixels)
    for (int64_t e = 0; e < D; ++e) rows.push_back(b.rep_t[size_t((k / HW) * D * HW + e * HW + k % HW)]);
  return rows;
}

// O(c) at pixel k of the batch.
int64_t rank_at(const Batch& b, int64_t k, int c) {
  const int64_t HW = b.d.h * b.d.w, Pl = b.d.n_l * HW, j = k < Pl ? k : k - Pl;
  const std::vector<float>& prob = k < Pl ? b.prob_l : b.prob_u;
  return prob_rank(prob.data() + (j / HW) * b.C * HW + j % HW, b.C, HW, c);
}

}  // namespace

TEST_CASE("contrastive ablations: prt off takes negatives at any rank; negative_source picks the pixels") {
  Batch b(1, 2, 4, 101, 0);  // empty queues: after the step they hold exactly this batch's negatives
  b.capacity = 64;           // room for every pixel
  const int64_t Pl = b.d.h * b.d.w;
  for (bool official : {false, true})
    for (bool prt : {true, false})
      for (NegativeSource src : {NegativeSource::Unreliable, NegativeSource::Reliable, NegativeSource::All}) {
        INFO((official ? "official" : "paper") << (prt ? " prt" : " no prt") << " source " << int(src));
        ContrastiveParams p = small(official, false, 4);
        p.prt = prt;
        p.negative_source = src;
        Recorder rec(6);
        MemoryBank after;
        b.run(p, rec, nullptr, &after);
        size_t pushed = 0;
        bool low_ranked = false, reliable = false, unreliable = false;  // among the unlabeled negatives
        for (int c = 0; c < 4; ++c) {
          const std::vector<int64_t> want = expected_negatives(b, p, c);
          CHECK(after.contents(c) == teacher_rows(b, want));
          pushed += want.size();
          for (int64_t k : want) {
            if (k < Pl) continue;
            low_ranked = low_ranked || rank_at(b, k, c) < p.low_rank;
            (b.high[size_t(k)] ? unreliable : reliable) = true;
          }
        }
        CHECK(pushed > 0);
        CHECK(low_ranked == !prt);  // prt on: r_l ≤ O(c) always; off: some negative ranks above r_l
        CHECK(reliable == (src != NegativeSource::Unreliable));
        CHECK(unreliable == (src != NegativeSource::Reliable));
      }
}

TEST_CASE("contrastive ablations: memory_bank off samples this batch's negatives only") {
  for (bool official : {false, true}) {
    INFO(std::string(official ? "official" : "paper"));
    Batch old_rows(2, 2, 4, 111), no_rows(2, 2, 4, 111, 0);  // 4 rows queued per class, or none
    old_rows.capacity = no_rows.capacity = 128;              // nothing overflows
    ContrastiveParams off = small(official, false, 4), on = off;
    off.memory_bank = false;
    std::vector<double> g_off(old_rows.rep.size()), g_on(old_rows.rep.size()), g_old(old_rows.rep.size());
    Recorder r1(9), r2(9), r3(9);
    MemoryBank b_off, b_on;
    const ContrastiveResult off_r = old_rows.run(off, r1, g_off.data(), &b_off);
    const ContrastiveResult on_r = no_rows.run(on, r2, g_on.data(), &b_on);
    REQUIRE(off_r.terms > 0);
    // without the bank the old rows are gone: the step equals one that started from empty queues
    CHECK(off_r.loss == on_r.loss);
    CHECK(g_off == g_on);
    for (int c = 0; c < 4; ++c) CHECK(b_off.contents(c) == b_on.contents(c));
    // with the bank the old rows are sampled too
    CHECK(old_rows.run(on, r3, g_old.data()).loss != off_r.loss);
  }
}

TEST_CASE("contrastive phases: push, then loss, equals both at once; replicas push before either samples") {
  for (bool official : {false, true}) {
    INFO(std::string(official ? "official" : "paper"));
    const Batch a(2, 2, 4, 211), b(2, 2, 4, 212);
    const ContrastiveParams p = small(official, false, 4);
    auto run = [&](const Batch& x, MemoryBank& bank, IndexSource& src, std::vector<double>& g, ContrastivePhase ph) {
      return contrastive_loss_cpu<double>(p, x.d, x.rep.data(), x.rep_t.data(), x.prob_l.data(), x.prob_u.data(),
                                          x.label_l.data(), x.label_u.data(), x.low.data(), x.high.data(), bank, src,
                                          1.0, g.data(), 0.0, ph);
    };
    // One replica: the split is the same step.
    std::vector<double> g1(a.rep.size()), g2(a.rep.size()), g0(a.rep.size(), 7.0);
    Recorder r1(5), r2(5);
    MemoryBank both = a.bank(), split = a.bank();
    const ContrastiveResult whole = run(a, both, r1, g1, ContrastivePhase::PushThenLoss);
    const ContrastiveResult pushed = run(a, split, r2, g0, ContrastivePhase::PushOnly);
    CHECK(pushed.terms == 0);
    CHECK(r2.draws.empty());                            // a push draws nothing
    CHECK(g0 == std::vector<double>(a.rep.size(), 7.0));  // and leaves the gradient alone
    const ContrastiveResult terms = run(a, split, r2, g2, ContrastivePhase::LossOnly);
    REQUIRE(whole.terms > 0);
    CHECK(terms.loss == whole.loss);
    CHECK(terms.terms == whole.terms);
    CHECK(g2 == g1);
    for (int c = 0; c < 4; ++c) CHECK(split.contents(c) == both.contents(c));
    // Two replicas: both push (a, then b), then each samples the bank that holds both pushes.
    MemoryBank shared = a.bank(), only_a = a.bank();
    Recorder ra(6), rb(6), rc(6);
    std::vector<double> ga(a.rep.size()), gb(b.rep.size()), gc(a.rep.size());
    run(a, shared, ra, ga, ContrastivePhase::PushOnly);
    run(b, shared, rb, gb, ContrastivePhase::PushOnly);
    const ContrastiveResult a_shared = run(a, shared, ra, ga, ContrastivePhase::LossOnly);
    run(a, only_a, rc, gc, ContrastivePhase::PushOnly);
    const ContrastiveResult a_alone = run(a, only_a, rc, gc, ContrastivePhase::LossOnly);
    REQUIRE(a_alone.terms > 0);
    CHECK(a_shared.loss != a_alone.loss);  // replica b's negatives were in a's queues
    for (int c = 0; c < 4; ++c) {
      MemoryBank expect = a.bank();
      const std::vector<int64_t> na = expected_negatives(a, p, c), nb = expected_negatives(b, p, c);
      const std::vector<float> rows_a = teacher_rows(a, na), rows_b = teacher_rows(b, nb);
      expect.push(c, rows_a.data(), int64_t(na.size()));
      expect.push(c, rows_b.data(), int64_t(nb.size()));
      CHECK(shared.contents(c) == expect.contents(c));
    }
  }
}
