// The contrastive loss on the CPU (u2pl/losses/contrastive.h): parameter checks, per-pixel roles
// (anchors, prototypes, negatives), queue pushes, the loop over classes with its sampling, and the
// InfoNCE / binary rows with the gradient through the cosine similarities to the anchors; the
// input checks and the dispatch to CUDA.
#include "u2pl/losses/contrastive.h"

#include <algorithm>
#include <utility>

#include "engine/log.h"
#include "layers/loss.h"
#include "u2pl/losses/semi_math.h"

namespace u2pl {

ContrastiveParams ContrastiveParams::paper(int num_classes) {
  ContrastiveParams p;
  p.num_classes = num_classes;
  return p;
}

ContrastiveParams ContrastiveParams::official(int num_classes) {
  ContrastiveParams p = paper(num_classes);
  p.num_queries = 256;
  p.num_negatives = 50;
  p.prototype_low_valid = p.negatives_label_mask = p.queue_index_bug = p.normalise_valid_classes = true;
  return p;
}

static void check_fields(const ContrastiveParams& p) {
  U2PL_CHECK(p.num_classes >= 1, "contrastive: num_classes must be positive, got " << p.num_classes);
  U2PL_CHECK(p.num_queries > 0 && p.num_negatives > 0,
             "contrastive: num_queries and num_negatives must be positive, got " << p.num_queries
                 << " and " << p.num_negatives);
  U2PL_CHECK(p.temperature > 0, "contrastive: temperature must be positive, got " << p.temperature);
  U2PL_CHECK(p.low_rank >= 0, "contrastive: low_rank must be non-negative, got " << p.low_rank);
}

std::vector<std::string> fit_ranks(int num_classes, int& low_rank, int& high_rank) {
  std::vector<std::string> changed;
  const std::string count = " net.num_classes " + std::to_string(num_classes);
  if (low_rank >= num_classes) {
    changed.push_back("low_rank " + std::to_string(low_rank) + " >=" + count + ": set to " +
                      std::to_string(num_classes - 1) +
                      " so that some classes rank below it and the contrastive loss forms terms");
    low_rank = num_classes - 1;
  }
  if (high_rank > num_classes) {
    changed.push_back("high_rank " + std::to_string(high_rank) + " clamped to" + count + " (ranks run from 0 to " +
                      std::to_string(num_classes - 1) + ")");
    high_rank = num_classes;
  }
  return changed;
}

ContrastiveParams ContrastiveParams::validated() const {
  check_fields(*this);
  ContrastiveParams p = *this;
  for (const std::string& line : fit_ranks(p.num_classes, p.low_rank, p.high_rank)) U2PL_LOG("contrastive: " << line);
  p.check();
  return p;
}

void ContrastiveParams::check() const {
  check_fields(*this);
  U2PL_CHECK(high_rank > low_rank && high_rank <= num_classes,
             "contrastive: need low_rank < high_rank <= num_classes, got " << low_rank << ", " << high_rank
                 << ", " << num_classes << " (validated() fits the ranks to the class count)");
}

namespace {

// Pixels are enumerated k = (image, row, column) over [labeled | unlabeled]; a (B, D, h, w) map
// holds channel d of pixel k at base(k) + d·hw.
struct PixelIndex {
  int64_t hw, dim;
  int64_t base(int64_t k) const { return (k / hw) * dim * hw + k % hw; }
};

struct Selection {
  std::vector<std::vector<int64_t>> anchors;  // per class: anchor pixels, in pixel order
  std::vector<std::vector<float>> prototype;  // per class: (D) mean teacher row (empty: none)
  std::vector<int64_t> low_valid;             // per class: low-valid pixel count
};

// Assigns every pixel its role for every class, then (unless LossOnly) pushes each class's
// negatives into `bank`, emptying the queues first when PushThenLoss runs without the memory bank,
// or, with `collect`, appends them there per class instead (bank null).
Selection select_and_push(const ContrastiveParams& p, const ContrastiveDims& d, const float* rep_t,
                          const float* prob_l, const float* prob_u, const int32_t* label_l,
                          const int32_t* label_u, const uint8_t* low, const uint8_t* high, MemoryBank* bank,
                          ContrastivePhase phase, std::vector<std::vector<float>>* collect = nullptr) {
  const int64_t C = p.num_classes, D = d.dim, HW = d.h * d.w, Pl = d.n_l * HW, P = (d.n_l + d.n_u) * HW;
  const PixelIndex px{HW, D};
  const ContrastRule rule{p.delta_p, p.delta_n, p.low_rank, p.high_rank, p.prototype_low_valid,
                          p.negatives_label_mask, p.prt, p.negative_source};
  const size_t Cs = size_t(C), Ds = size_t(D);
  Selection s;
  s.anchors.resize(Cs);
  s.prototype.resize(Cs);
  s.low_valid.assign(Cs, 0);
  std::vector<std::vector<int64_t>> negatives(Cs);
  std::vector<std::vector<double>> sum(Cs, std::vector<double>(Ds, 0.0));
  std::vector<int64_t> count(Cs, 0);
  for (int64_t k = 0; k < P; ++k) {
    const bool labeled = k < Pl;
    const int64_t j = labeled ? k : k - Pl;
    const float* pr = (labeled ? prob_l : prob_u) + (j / HW) * C * HW + j % HW;
    const int32_t y = (labeled ? label_l : label_u)[j];
    U2PL_CHECK(label_ok(y, int(C), kIgnoreLabel), "contrastive: " << (labeled ? "label " : "pseudo-label ") << y
                                                     << " at pixel " << j << " is outside [0, " << C
                                                     << ") and is not 255");
    for (int32_t c = 0; c < C; ++c) {
      const size_t cc = size_t(c);
      const PixelRole r = rule(labeled, y, low[k] != 0, high[k] != 0, pr[c * HW], prob_rank(pr, C, HW, c), c);
      s.low_valid[cc] += r.low_valid;
      if (r.anchor) s.anchors[cc].push_back(k);
      if (r.negative) negatives[cc].push_back(k);
      if (r.prototype) {
        for (int64_t e = 0; e < D; ++e) sum[cc][size_t(e)] += rep_t[px.base(k) + e * HW];
        ++count[cc];
      }
    }
  }
  std::vector<float> rows;
  // Without the memory bank only this batch's negatives are sampled.
  if (!p.memory_bank && phase == ContrastivePhase::PushThenLoss) bank->clear();
  if (collect) collect->assign(Cs, {});
  for (size_t c = 0; c < Cs; ++c) {
    if (count[c] > 0) {
      s.prototype[c].resize(Ds);
      for (size_t e = 0; e < Ds; ++e) s.prototype[c][e] = float(sum[c][e] / double(count[c]));
    }
    if (phase == ContrastivePhase::LossOnly) continue;
    std::vector<float>& out = collect ? (*collect)[c] : rows;
    out.resize(negatives[c].size() * Ds);
    for (size_t i = 0; i < negatives[c].size(); ++i)
      for (int64_t e = 0; e < D; ++e) out[i * Ds + size_t(e)] = rep_t[px.base(negatives[c][i]) + e * HW];
    if (bank) bank->push(int(c), out.data(), int64_t(negatives[c].size()));
  }
  return s;
}

// Cosine similarity of anchor a (norm na, squared norm na2) with b, and its gradient in a:
// b / (na·nb) − cos · a / na² (the clamped-norm branch has no a-term).
template <class T>
struct CosineRow {
  const T* a;
  int64_t dim;
  T na, na2;
  T cos(const float* b, T* nb) const {
    T dot = 0, b2 = 0;
    for (int64_t e = 0; e < dim; ++e) dot += a[e] * T(b[e]), b2 += T(b[e]) * T(b[e]);
    *nb = clamp_norm(b2);
    return dot / (na * *nb);
  }
  void add_grad(const float* b, T nb, T cos, T w, T* g) const {
    const T shrink = hd_sqrt(na2) > T(1e-8) ? cos / na2 : T(0);
    for (int64_t e = 0; e < dim; ++e) g[e] += w * (T(b[e]) / (na * nb) - shrink * a[e]);
  }
};

}  // namespace

template <class T>
ContrastiveResult contrastive_loss_cpu(const ContrastiveParams& p, const ContrastiveDims& d, const T* rep,
                                       const float* rep_teacher, const float* prob_l, const float* prob_u,
                                       const int32_t* label_l, const int32_t* label_u, const uint8_t* low,
                                       const uint8_t* high, MemoryBank& bank, IndexSource& draws, T dloss,
                                       T* drep, T beta, ContrastivePhase phase) {
  p.check();
  U2PL_CHECK(bank.classes() == p.num_classes && bank.dim() == d.dim,
             "contrastive: the memory bank holds " << bank.classes() << " queues of " << bank.dim()
                 << " floats, the loss needs " << p.num_classes << " of " << d.dim);
  const int64_t D = d.dim, HW = d.h * d.w, M = p.num_queries, N = p.num_negatives, K = N + 1;
  if (phase == ContrastivePhase::PushOnly) {
    select_and_push(p, d, rep_teacher, prob_l, prob_u, label_l, label_u, low, high, &bank, phase);
    return ContrastiveResult{};
  }
  draws.begin_step(p.num_classes, M, N);
  const PixelIndex px{HW, D};
  if (drep) {
    const int64_t n = (d.n_l + d.n_u) * D * HW;
    for (int64_t i = 0; i < n; ++i) drep[i] = blend(T(0), drep[i], beta);
  }
  const Selection s = select_and_push(p, d, rep_teacher, prob_l, prob_u, label_l, label_u, low, high, &bank, phase);

  // The loop list: classes with low-valid pixels (official) or with anchors (paper). Entry i
  // takes anchors and prototype of class i (official index bug) or list[i], negatives from
  // queue list[i], and forms a term unless either is empty.
  std::vector<int> list;
  for (int c = 0; c < p.num_classes; ++c)
    if (p.normalise_valid_classes ? s.low_valid[size_t(c)] > 0 : !s.anchors[size_t(c)].empty()) list.push_back(c);
  std::vector<std::pair<int, int>> terms;  // (anchor class, queue class)
  for (size_t i = 0; i < list.size(); ++i) {
    const int a = p.queue_index_bug ? int(i) : list[i], q = list[i];
    if (!s.anchors[size_t(a)].empty() && bank.size(q) > 0) terms.emplace_back(a, q);
  }
  ContrastiveResult r;
  r.normaliser = int(list.size());
  if (terms.empty() || (p.normalise_valid_classes && list.size() <= 1)) {
    U2PL_LOG("contrastive: no loss term this step (" << list.size() << " classes in the loop, "
                                                     << terms.size() << " with anchors and negatives)");
    draws.end_step();
    return r;
  }
  r.terms = int(terms.size());
  // InfoNCE: mean over M anchors per term, sum over terms / |list|. Binary: mean over all
  // M·N (anchor, negative) pairs formed.
  const double inv = p.binary ? 1.0 / (double(terms.size()) * double(M) * double(N))
                              : 1.0 / (double(list.size()) * double(M));
  const T tau = T(p.temperature), w = T(double(dloss) * inv);
  const size_t Ds = static_cast<size_t>(D), Ks = static_cast<size_t>(K);
  std::vector<T> a(Ds), g(Ds), sim(Ks), ds(Ks), nb(Ks);
  std::vector<const float*> rows(Ks);
  double loss = 0;
  for (const auto& [ac, qc] : terms) {
    const std::vector<int64_t>& cand = s.anchors[size_t(ac)];
    const std::vector<int64_t> ai = draws.draw(M, int64_t(cand.size()));
    const std::vector<int64_t> ni = draws.draw(M * N, bank.size(qc));
    const QueueView queue = bank.view(qc);
    for (int64_t m = 0; m < M; ++m) {
      const int64_t k = cand[size_t(ai[size_t(m)])];
      T a2 = 0;
      for (int64_t e = 0; e < D; ++e) a[size_t(e)] = rep[px.base(k) + e * HW], a2 += a[size_t(e)] * a[size_t(e)];
      const CosineRow<T> row{a.data(), D, clamp_norm(a2), a2};
      rows[0] = s.prototype[size_t(ac)].data();
      for (int64_t j = 0; j < N; ++j) rows[size_t(j + 1)] = queue.row(ni[size_t(m * N + j)]);
      for (int64_t j = 0; j < K; ++j) sim[size_t(j)] = row.cos(rows[size_t(j)], &nb[size_t(j)]);
      const T l = p.binary ? binary_row(sim.data(), K, tau, ds.data()) : info_nce_row(sim.data(), K, tau, ds.data());
      loss += double(l) * inv;
      if (!drep) continue;
      std::fill(g.begin(), g.end(), T(0));
      for (int64_t j = 0; j < K; ++j)
        row.add_grad(rows[size_t(j)], nb[size_t(j)], sim[size_t(j)], ds[size_t(j)], g.data());
      for (int64_t e = 0; e < D; ++e) drep[px.base(k) + e * HW] += w * g[size_t(e)];
    }
  }
  draws.end_step();
  r.loss = loss;
  return r;
}

template ContrastiveResult contrastive_loss_cpu<float>(const ContrastiveParams&, const ContrastiveDims&, const float*,
                                                       const float*, const float*, const float*, const int32_t*,
                                                       const int32_t*, const uint8_t*, const uint8_t*, MemoryBank&,
                                                       IndexSource&, float, float*, float, ContrastivePhase);
template ContrastiveResult contrastive_loss_cpu<double>(const ContrastiveParams&, const ContrastiveDims&, const double*,
                                                        const float*, const float*, const float*, const int32_t*,
                                                        const int32_t*, const uint8_t*, const uint8_t*, MemoryBank&,
                                                        IndexSource&, double, double*, double, ContrastivePhase);

void ContrastiveResult::check() const {
  U2PL_CHECK(bad_pixel < 0, "contrastive: label " << bad_label << " at pixel " << bad_pixel
                                                  << " of the batch [labeled | unlabeled] is not a class and is "
                                                     "not 255");
}

namespace {

// The shapes and devices of the inputs; their dimensions.
ContrastiveDims check_inputs(const Context& ctx, const ContrastiveParams& p, const ContrastiveInputs& in) {
  U2PL_CHECK(in.rep.shape.ndim == 4 && in.label_l.shape.ndim == 3 && in.label_u.shape.ndim == 3,
             "contrastive loss: expected (B, D, h, w) features and (n, h, w) labels, got " << in.rep.shape.str()
                 << ", " << in.label_l.shape.str() << ", " << in.label_u.shape.str());
  const ContrastiveDims d{in.label_l.shape[0], in.label_u.shape[0], in.rep.shape.c(), in.rep.shape.h(),
                          in.rep.shape.w()};
  const int64_t B = d.n_l + d.n_u, C = p.num_classes;
  check_shape(in.rep, Shape{B, d.dim, d.h, d.w}, "contrastive student features");
  check_shape(in.rep_teacher, in.rep.shape, "contrastive teacher features");
  check_shape(in.prob_l, Shape{d.n_l, C, d.h, d.w}, "contrastive labeled probabilities");
  check_shape(in.prob_u, Shape{d.n_u, C, d.h, d.w}, "contrastive unlabeled probabilities");
  check_shape(in.label_l, Shape{d.n_l, d.h, d.w}, "contrastive labels");
  check_shape(in.label_u, Shape{d.n_u, d.h, d.w}, "contrastive pseudo-labels");
  check_shape(in.low, Shape{B, d.h, d.w}, "contrastive low mask");
  check_shape(in.high, Shape{B, d.h, d.w}, "contrastive high mask");
  const Device dev = ctx.device();
  check_device(in.rep, dev, "contrastive student features");
  check_device(in.rep_teacher, dev, "contrastive teacher features");
  check_device(in.prob_l, dev, "contrastive labeled probabilities");
  check_device(in.prob_u, dev, "contrastive unlabeled probabilities");
  check_device(in.label_l, dev, "contrastive labels");
  check_device(in.label_u, dev, "contrastive pseudo-labels");
  check_device(in.low, dev, "contrastive low mask");
  check_device(in.high, dev, "contrastive high mask");
  return d;
}

}  // namespace

std::vector<std::vector<float>> contrastive_negatives(Context& ctx, const ContrastiveParams& p,
                                                      const ContrastiveInputs& in, MemoryBank* staging) {
  const ContrastiveDims d = check_inputs(ctx, p, in);
  p.check();
  std::vector<std::vector<float>> rows;
  if (ctx.device() == Device::CUDA) {
    U2PL_CHECK(staging && staging->device() == Device::CUDA && staging->classes() == p.num_classes &&
                   staging->dim() == d.dim,
               "contrastive negatives on CUDA: a CUDA staging bank of " << p.num_classes << " queues of " << d.dim
                                                                        << " floats is needed");
    staging->clear();
    contrastive_loss_cuda(ctx, p, in, *staging, PhiloxStep{}, 0.f, TensorView(), 0.f, nullptr,
                          ContrastivePhase::PushOnly);
    for (int c = 0; c < p.num_classes; ++c) rows.push_back(staging->contents(c));
    return rows;
  }
  select_and_push(p, d, in.rep_teacher.data, in.prob_l.data, in.prob_u.data, in.label_l.data, in.label_u.data,
                  in.low.data, in.high.data, nullptr, ContrastivePhase::PushOnly, &rows);
  return rows;
}

void contrastive_loss(Context& ctx, const ContrastiveParams& p, const ContrastiveInputs& in, MemoryBank& bank,
                      IndexSource& draws, float dloss, TensorView drep, float beta, ContrastiveResult* out,
                      ContrastivePhase phase) {
  const ContrastiveDims d = check_inputs(ctx, p, in);
  if (drep.defined()) check_shape(drep, in.rep.shape, "contrastive feature gradient");
  const Device dev = ctx.device();
  if (drep.defined()) check_device(drep, dev, "contrastive feature gradient");
  U2PL_CHECK(bank.device() == dev, "contrastive loss: the memory bank is on "
                                        << device_name(bank.device()) << ", the loss runs on " << device_name(dev));
  U2PL_CHECK(out != nullptr || phase == ContrastivePhase::PushOnly, "contrastive loss: no result slot");
  if (dev == Device::CPU) {
    const ContrastiveResult r = contrastive_loss_cpu<float>(
        p, d, in.rep.data, in.rep_teacher.data, in.prob_l.data, in.prob_u.data, in.label_l.data, in.label_u.data,
        in.low.data, in.high.data, bank, draws, dloss, drep.defined() ? drep.data : nullptr, beta, phase);
    if (out) *out = r;
    return;
  }
  p.check();
  U2PL_CHECK(bank.classes() == p.num_classes && bank.dim() == d.dim,
             "contrastive: the memory bank holds " << bank.classes() << " queues of " << bank.dim()
                 << " floats, the loss needs " << p.num_classes << " of " << d.dim);
  if (phase == ContrastivePhase::PushOnly) {
    contrastive_loss_cuda(ctx, p, in, bank, PhiloxStep{}, dloss, TensorView(), beta, out, phase);
    return;
  }
  auto* philox = dynamic_cast<PhiloxIndexSource*>(&draws);
  U2PL_CHECK(philox != nullptr, "contrastive loss: on CUDA the indices are drawn on the device from Philox; "
                                "replayed (or other) index sources are not yet on CUDA: use a PhiloxIndexSource");
  philox->begin_step(p.num_classes, p.num_queries, p.num_negatives);
  contrastive_loss_cuda(ctx, p, in, bank, philox->step(), dloss, drep, beta, out, phase);
  philox->end_step();
}

ContrastiveResult contrastive_loss(Context& ctx, const ContrastiveParams& p, const ContrastiveInputs& in,
                                   MemoryBank& bank, IndexSource& draws, float dloss, TensorView drep,
                                   float beta, ContrastivePhase phase) {
  const DeviceSlot<ContrastiveResult> slot(ctx.device());
  contrastive_loss(ctx, p, in, bank, draws, dloss, drep, beta, slot.get(), phase);
  const ContrastiveResult r = slot.read(ctx);
  r.check();
  if (ctx.device() == Device::CUDA && r.terms == 0)  // the CPU loss logs it itself
    U2PL_LOG("contrastive: no loss term this step (" << r.normaliser << " classes in the loop)");
  return r;
}

}  // namespace u2pl
