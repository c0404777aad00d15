// One U2PL iteration (u2pl/train/train_step.h), in the order of SPEC §3: lr step → teacher eval
// forward on the unlabeled batch (pseudo-labels: argmax of the upsampled logits) → CutMix → student
// train forward on [labeled | mixed] → supervised loss → teacher train-statistics forward on the
// same batch → unsupervised loss (entropy filter) → contrastive masks and loss → backward → SGD →
// EMA. In the warm start only the labeled batch runs (the teacher's train-mode forward on it still
// moves its BN statistics); during epoch sup_only_epoch the teacher is the student (the public
// code aliases the parameters), from the next epoch on their EMA. Covered by
// tests/test_trainer.cpp and tests/test_train_e2e.cpp.
#include "u2pl/train/train_step.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/log.h"
#include "engine/nccl.h"
#include "engine/profile.h"
#include "layers/elementwise.h"
#include "layers/loss.h"
#include "layers/resize.h"
#include "layers/sgd.h"
#include "u2pl/losses/contrastive_scratch.h"
#include "u2pl/losses/semi_math.h"
#include "u2pl/losses/unsup_loss.h"
#include "u2pl/net/weights.h"
#include "u2pl/train/schedule.h"

namespace u2pl {

namespace {

constexpr uint64_t kStreamStudentDropout = 2, kStreamTeacherDropout = 3, kStreamCutmix = 4, kStreamContrastive = 5;
constexpr int kIterBits = 24;

uint64_t stream_base(uint64_t stream, int64_t it) { return (stream << 56) | (static_cast<uint64_t>(it) << kIterBits); }

// A device buffer reallocated only when its shape changes.
template <class T>
View<T> scratch(Owned<T>& t, Shape s, Device dev) {
  if (t.numel() == 0 || t.shape() != s || t.device() != dev) t = Owned<T>(s, dev);
  return t.view();
}

// One result slot per replica.
template <class T>
std::vector<DeviceSlot<T>> slots(int replicas, Device dev) {
  std::vector<DeviceSlot<T>> v;
  v.reserve(size_t(replicas));
  for (int r = 0; r < replicas; ++r) v.emplace_back(dev);
  return v;
}

// A host or device view on `dev`, through a scratch copy when it lives elsewhere.
template <class T>
View<T> on_device(View<T> v, Owned<T>& buf, Device dev) {
  if (v.device == dev) return v;
  const View<T> d = scratch(buf, v.shape, dev);
  copy_tensor(d, v);
  return d;
}

// Front-to-back use of memory lent by the student's train plan (ActPlan::idle): a teacher plan
// at its start (where U2plNet::forward places it), then loss buffers, 256-byte aligned. The
// student's plan reserves what a step puts there (step_idle_floor), so everything fits.
struct SpanUse {
  int64_t size = std::numeric_limits<int64_t>::max(), used = 0;  // floats
  // Where `floats` more go (floats from the start).
  int64_t take(int64_t floats) {
    const int64_t at = (used + 63) / 64 * 64;
    U2PL_CHECK(at + floats <= size, "train step: " << at + floats << " floats placed in " << size
                                                   << " of the student's idle memory (reserved too little)");
    used = at + floats;
    return at;
  }
  TensorView view(TensorView span, Shape s) { return TensorView(span.data + take(s.numel()), s, span.device); }
};

// What a step places in the student's idle memory (ActPlan::reserve_idle) for `labeled` images
// (this process's replicas', b a replica): before the student's forward (past the warm start), the teacher's
// Eval plan on as many unlabeled images and its upsampled logits; between the forward and the
// backward, the supervised loss's logits and gradient (SupLossBuffers::lend), then in the same
// memory the teacher's TrainStats plan and, past the warm start, the unsupervised loss's buffers.
IdleFloor step_idle_floor(const TrainConfig& cfg, const U2plNet& net, Shape labeled, int64_t b, bool semi) {
  const int64_t BR = labeled.n(), H = labeled.h(), W = labeled.w(), C = cfg.net.num_classes;
  const Shape crop{b, C, H, W}, image{semi ? 2 * BR : BR, 3, H, W};
  const bool teacher = cfg.unsup.enabled;
  const auto plan = [&](Shape s, NetMode m) { return int64_t(net.estimate_plan_bytes(s, m) / sizeof(float)); };
  SpanUse before, sup, rest;
  if (semi) {
    before.take(plan(labeled, NetMode::Eval));
    before.take(Shape{BR, C, H, W}.numel());
  }
  sup.take(crop.numel());
  sup.take(crop.numel());
  if (teacher) rest.take(plan(image, NetMode::TrainStats));
  if (semi)
    for (int k = 0; k < 3; ++k) rest.take(crop.numel());
  return {size_t(before.used) * sizeof(float), size_t(std::max(sup.used, rest.used)) * sizeof(float)};
}

// One replica's figures, as they cross between processes (plain data).
struct ReplicaFigures {
  double sup = 0, unsup = 0, thresh = 0, contra_low = 0, contra_high = 0, contra = 0;
  int64_t valid = 0, terms = 0;
  PseudoLabelCounts pseudo;
};

}  // namespace

PseudoLabelCounts& PseudoLabelCounts::operator+=(const PseudoLabelCounts& o) {
  pixels += o.pixels;
  correct += o.correct;
  reliable += o.reliable;
  reliable_correct += o.reliable_correct;
  unreliable_true_negative += o.unreliable_true_negative;
  return *this;
}

int64_t count_true_in_ranks(const int32_t* truth, const float* logits, const int32_t* filtered, int64_t n_images,
                            int64_t C, int64_t hw, int64_t low_rank, int64_t high_rank, int ignore_label) {
  int64_t n = 0;
  for (int64_t i = 0; i < n_images; ++i)
    for (int64_t p = 0; p < hw; ++p) {
      const int64_t k = i * hw + p;
      if (truth[k] == ignore_label || filtered[k] != 255) continue;
      const int64_t rank = prob_rank(logits + i * C * hw + p, C, hw, int64_t(truth[k]));
      n += rank >= low_rank && rank < high_rank;
    }
  return n;
}

PseudoLabelCounts count_pseudo_labels(const int32_t* truth, const int32_t* pseudo, const int32_t* filtered, int64_t n,
                                      int ignore_label) {
  PseudoLabelCounts c;
  for (int64_t i = 0; i < n; ++i) {
    if (truth[i] == ignore_label) continue;
    const bool right = pseudo[i] == truth[i], kept = filtered[i] != 255;
    c.pixels += 1;
    c.correct += right;
    c.reliable += kept;
    c.reliable_correct += kept && right;
  }
  return c;
}

StepMemory step_memory(const TrainConfig& cfg, const U2plNet& net, Shape batch, MemoryMode memory) {
  const bool semi = cfg.unsup.enabled, contra = semi && cfg.contrastive.enabled && cfg.contrastive.loss_weight > 0;
  const int64_t BR = batch.n(), b = cfg.data.batch_size, H = batch.h(), W = batch.w();
  const Shape both{semi ? 2 * BR : BR, 3, H, W};
  const U2plNet::OutputShapes out = net.output_shapes(both);
  const int64_t pixels = BR * H * W, small = BR * out.pred.h() * out.pred.w();
  StepMemory m;
  // The teacher's plans and the losses' large buffers are in the student's plan (step_idle_floor).
  m.activations = net.estimate_plan_bytes(both, NetMode::Train, memory, step_idle_floor(cfg, net, batch, b, semi));
  int64_t own = 2 * (2 * BR * 3 * H * W + pixels);  // the two upload slots' batches (labeled, unlabeled)
  own += b * H * W + out.pred.numel() + out.aux.numel();  // OHEM's labels, the gradients handed to backward
  if (semi) own += 2 * BR * 3 * H * W + 4 * pixels;  // the mixed batch; pseudo-labels, mixed labels, entropy, filtered
  if (contra) own += out.pred.numel() + out.rep.numel() + 3 * small;  // probabilities, rep gradient, labels, masks
  m.buffers = size_t(own) * sizeof(float);
  // The losses' CUDA scratch, per replica: OHEM's and the entropy percentile's sorts of the crop's
  // pixels (keys, sorted keys, CUB's second copy; u2pl/losses/unsup_loss.cu, layers/loss.cu), and
  // the contrastive loss's layout (u2pl/losses/contrastive_scratch.h).
  size_t losses = 12 * size_t(b * H * W) + (size_t(16) << 20);
  if (contra) {
    const ContrastiveParams p = cfg.contrastive_params();
    const int64_t P = 2 * b * out.rep.h() * out.rep.w(), Cc = p.num_classes, M = p.num_queries;
    const ContrastiveScratch s(Cc, P, out.rep.c(), M, p.num_negatives + 1, true, contrastive_cub_bound(Cc, P, M),
                               kContrastivePlanBound);
    losses = std::max(losses, s.bytes);
  }
  m.workspace = std::max(size_t(cfg.conv_workspace_mib) << 20, losses);
  return m;
}

uint64_t replica_key(uint64_t seed, int replica) {
  return replica == 0 ? seed : seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(replica));
}

PhiloxStepDraws::PhiloxStepDraws(uint64_t seed, int64_t it, int replicas)
    : it_(it),
      drop_s_(seed, stream_base(kStreamStudentDropout, it)),
      drop_t_(seed, stream_base(kStreamTeacherDropout, it)) {
  U2PL_CHECK(it >= 0 && it < (int64_t(1) << (56 - kIterBits)), "iteration " << it << " outside the Philox layout");
  U2PL_CHECK(replicas >= 1, "draws for " << replicas << " replicas");
  mix_.reserve(size_t(replicas));
  contra_.reserve(size_t(replicas));
  draws_.reserve(size_t(replicas));
  for (int r = 0; r < replicas; ++r) {
    mix_.emplace_back(replica_key(seed, r), stream_base(kStreamCutmix, it));
    contra_.emplace_back(replica_key(seed, r), stream_base(kStreamContrastive, it));
  }
  for (Rng& rng : contra_) draws_.emplace_back(rng);
}

std::optional<std::vector<Box>> PhiloxStepDraws::cutmix(int replica, int batch, int height, int width) {
  U2PL_CHECK(replica >= 0 && size_t(replica) < mix_.size(), "CutMix draws of replica " << replica << " of "
                                                                                    << mix_.size());
  Rng& mix = mix_[size_t(replica)];
  if (mix.uniform() >= 0.5f) return std::nullopt;
  return cutmix_boxes(mix, batch, height, width);
}

IndexSource& PhiloxStepDraws::contrastive(int replica) {
  U2PL_CHECK(replica >= 0 && size_t(replica) < draws_.size(), "contrastive draws of replica " << replica << " of "
                                                                                            << draws_.size());
  return draws_[size_t(replica)];
}

void PhiloxStepDraws::check_budget() const {
  std::vector<std::pair<const Rng*, uint64_t>> streams = {{&drop_s_, kStreamStudentDropout},
                                                          {&drop_t_, kStreamTeacherDropout}};
  for (const Rng& rng : mix_) streams.emplace_back(&rng, kStreamCutmix);
  for (const Rng& rng : contra_) streams.emplace_back(&rng, kStreamContrastive);
  for (const auto& [rng, stream] : streams)
    U2PL_CHECK(rng->offset() - stream_base(stream, it_) <= (uint64_t(1) << kIterBits),
               "iteration " << it_ << ": the draws of Philox stream " << stream << " overran their counter range");
}

int replicas_per_process(const TrainConfig& cfg, int processes) {
  U2PL_CHECK(processes >= 1 && cfg.replicas % processes == 0,
             cfg.file << ": trainer.replicas " << cfg.replicas << " does not split over " << processes
                      << " processes: each process runs the same number of replicas (choose a process count "
                         "that divides it, or set trainer.replicas to a multiple of "
                      << processes << ")");
  return cfg.replicas / processes;
}

TrainStep::TrainStep(const TrainConfig& cfg, Device dev, Comm& comm)
    : cfg_(cfg),
      dev_(dev),
      comm_(comm),
      local_(replicas_per_process(cfg, comm.size())),
      first_(comm.rank() * local_),
      student_(cfg.net),
      sup_out_(slots<SupLossResult>(local_, dev)),
      unsup_out_(slots<UnsupResult>(local_, dev)),
      masks_out_(slots<EntropyThresholds>(local_, dev)),
      contra_out_(slots<ContrastiveResult>(local_, dev)) {
  // CUDA tensors cross through NCCL (the current device must be this process's: use_process_device).
  if (dev == Device::CUDA && comm.size() > 1) nccl_ = std::make_unique<NcclComm>(comm);
  sync_ = ReplicaSync{comm.size() > 1 ? &comm : nullptr, local_, first_, cfg.replicas, nccl_.get()};
  student_.allocate(dev, cfg.seed, true);
  if (!cfg.net.weights.empty()) {
    const WeightReport r = load_weights(student_.params(), cfg.net.weights, WeightScope::Auto);
    U2PL_LOG("loaded " << r.loaded << " tensors from net.encoder.kwargs.weights " << cfg.net.weights << " ("
                       << r.source << ")");
  }
  if (!cfg.pretrain.empty()) {
    const WeightReport r = load_weights(student_.params(), cfg.pretrain, WeightScope::Model);
    U2PL_LOG("loaded " << r.loaded << " tensors from saver.pretrain " << cfg.pretrain << " (" << r.source << ")");
  }
  if (cfg.unsup.enabled) {
    teacher_ = std::make_unique<U2plNet>(cfg.net);
    teacher_->allocate(dev, cfg.seed + 1, false);
    if (!cfg.net.weights.empty()) load_weights(teacher_->params(), cfg.net.weights, WeightScope::Auto);
  }
  if (nccl_)
    reducer_ = std::make_unique<GradientReducer>(*nccl_, student_.params());
  else if (comm.size() > 1)
    reducer_ = std::make_unique<GradientReducer>(comm, student_.params());
  momentum_ = Tensor(Shape{student_.params().values().floats()}, dev);
  fill_zero(momentum_.view());
  const std::vector<int> g = student_.params().group_of_floats();
  groups_ = Mask::from_host(Shape{static_cast<int64_t>(g.size())}, std::vector<uint8_t>(g.begin(), g.end()), dev);
  // The public code gives the decoder and heads 10x the backbone's rate on VOC (and we on folder
  // data, usually trained from an ImageNet backbone too), 1x on Cityscapes.
  const bool times10 = cfg.data.kind != DatasetKind::Cityscapes;
  base_lrs_ = {cfg.lr, times10 ? 10 * cfg.lr : cfg.lr};

  sup_opt_.ohem = cfg.criterion == "ohem";
  sup_opt_.thresh = cfg.ohem_thresh;
  sup_opt_.min_kept = cfg.ohem_min_kept;
  sup_opt_.aux_weight = cfg.net.aux_weight;
  sup_opt_.ignore = cfg.data.ignore_label;

  if (teacher_ && cfg.contrastive.enabled && cfg.contrastive.loss_weight > 0) {
    cparams_ = cfg.contrastive_params();
    cparams_.check();
    const int id = student_.params().find("decoder.representation.8.weight");
    U2PL_CHECK(id >= 0, "the contrastive loss needs the representation head (net.decoder.kwargs.rep_head)");
    std::vector<int64_t> caps(static_cast<size_t>(cfg.net.num_classes), cfg.contrastive.queue_size);
    caps[0] = cfg.contrastive.queue_size_background;
    bank_ = std::make_unique<MemoryBank>(caps, student_.params().value(id).shape[0], dev);
    if (nccl_) staging_ = std::make_unique<MemoryBank>(caps, student_.params().value(id).shape[0], dev);
  }
}

void TrainStep::push_all_negatives(Context& ctx, const std::vector<ContrastiveInputs>& ins) {
  // This process's replicas' negatives, one message: per replica and class a row count, then the
  // rows, replica after replica and class after class.
  const int C = bank_->classes();
  const int64_t D = bank_->dim();
  std::vector<char> msg;
  for (const ContrastiveInputs& in : ins) {
    const std::vector<std::vector<float>> rows = contrastive_negatives(ctx, cparams_, in, staging_.get());
    for (int c = 0; c < C; ++c) {
      const int64_t n = int64_t(rows[size_t(c)].size()) / D;
      const char* p = reinterpret_cast<const char*>(&n);
      msg.insert(msg.end(), p, p + sizeof(n));
      const char* q = reinterpret_cast<const char*>(rows[size_t(c)].data());
      msg.insert(msg.end(), q, q + rows[size_t(c)].size() * sizeof(float));
    }
  }
  // Every process's, in rank order: the replicas in order, pushed as one process would push them.
  const std::vector<char> all = comm_.allgatherv(msg.data(), msg.size());
  struct Push {
    int c;
    int64_t at, n;  // rows [at, at + n) of `rows`
  };
  std::vector<Push> pushes;
  std::vector<float> rows;
  size_t at = 0;
  for (int r = 0; r < cfg_.replicas; ++r)
    for (int c = 0; c < C; ++c) {
      int64_t n = 0;
      U2PL_CHECK(at + sizeof(n) <= all.size(), "memory bank: the gathered negatives end early (replica " << r << ")");
      std::memcpy(&n, all.data() + at, sizeof(n));
      at += sizeof(n);
      const size_t bytes = size_t(n * D) * sizeof(float);
      U2PL_CHECK(n >= 0 && at + bytes <= all.size(), "memory bank: the gathered negatives end early (replica " << r
                                                                                                           << ")");
      pushes.push_back({c, int64_t(rows.size()) / D, n});
      rows.resize(rows.size() + size_t(n * D));
      std::memcpy(rows.data() + pushes.back().at * D, all.data() + at, bytes);
      at += bytes;
    }
  // One copy to the bank's device, then the pushes in order.
  const float* base = rows.data();
  if (dev_ == Device::CUDA && !rows.empty()) {
    const size_t bytes = rows.size() * sizeof(float);
    if (neg_rows_.bytes() < bytes) neg_rows_ = Buffer(dev_, bytes + bytes / 2);  // grows, as the counts vary
    copy_bytes(neg_rows_.data(), dev_, rows.data(), Device::CPU, bytes);
    base = neg_rows_.floats();
  }
  for (const Push& p : pushes) bank_->push(ctx, p.c, base + p.at * D, p.n);
}

double TrainStep::lr_at(int64_t it, int group) const {
  U2PL_CHECK(group >= 0 && group < lr_groups(), "learning-rate group " << group << " of " << lr_groups());
  return base_lrs_[size_t(group)] * poly_lr(1.0, it, total_iters(), cfg_.lr_power);
}

StepResult TrainStep::step(Context& ctx, TensorView img_l_in, LabelView lab_l_in, TensorView img_u_in, int64_t it,
                           int epoch, StepDraws& draws, const std::function<void()>& while_running,
                           LabelView truth_u) {
  StepResult o;
  const int R = local_;  // this process's replicas (all of them in one process)
  const int64_t BR = img_l_in.shape.n(), b = BR / R;  // this process's replicas' images; one replica's
  const int64_t H = img_l_in.shape.h(), W = img_l_in.shape.w(), C = cfg_.net.num_classes;
  U2PL_CHECK(BR == int64_t(R) * b && b > 0, "iteration " << it << ": a batch of " << BR << " images does not split into "
                                                         << R << " replicas (trainer.replicas)");
  // SyncBN over every replica while this step runs; the dropout scales of this process's images
  // are their share of the draws of all replicas' images.
  struct SyncScope {
    Context& ctx;
    const ReplicaSync* before;
    ~SyncScope() { ctx.set_replica_sync(before); }
  } sync_scope{ctx, ctx.replica_sync()};
  ctx.set_replica_sync(&sync_);
  o.semi = semi_phase(epoch);
  U2PL_CHECK(!o.semi || (img_u_in.defined() && img_u_in.shape == img_l_in.shape),
             "iteration " << it << ": the unlabeled batch must match the labeled one " << img_l_in.shape.str());
  student_.reserve_idle(Shape{o.semi ? 2 * BR : BR, 3, H, W},
                        step_idle_floor(cfg_, student_, img_l_in.shape, b, o.semi));

  std::vector<float> lrs;
  for (int g = 0; g < lr_groups(); ++g) lrs.push_back(static_cast<float>(lr_at(it, g)));

  PhaseMarks phase(ctx);  // what u2pl_bench step --profile reports
  phase.next("batch and handover copies");
  const TensorView img_l = on_device(img_l_in, img_l_, dev_);
  const LabelView lab_l = on_device(lab_l_in, lab_l_, dev_);
  student_.params().zero_grad();

  if (o.semi && epoch == cfg_.sup_only_epoch) {  // the handover epoch: the teacher is the student
    copy_tensor(teacher_->params().values().all(), student_.params().values().all());
    // paper: the BN running statistics too, once at the warm start's end; from there the
    // teacher's own train-mode forwards move them.
    if (cfg_.switches.teacher_copy_bn && it == int64_t(cfg_.sup_only_epoch) * iters_per_epoch_)
      copy_tensor(teacher_->params().buffers().all(), student_.params().buffers().all());
  }

  // The networks see every replica's images at once, replica after replica: [labeled | mixed
  // unlabeled] of replica 0, then of replica 1, ... (the labeled images alone in the warm start),
  // so BN statistics are over all replicas (SyncBN) and replica r's images are one slice (`per`
  // images from r·per); the losses run per replica on those slices.
  const int64_t per = o.semi ? 2 * b : b;
  for (Rng* rng : {draws.student_dropout(), draws.teacher_dropout()})
    if (rng) rng->set_images(first_ * per, int64_t(cfg_.replicas) * per);
  LabelView lab_mix, filtered;
  TensorView image = img_l;
  // The unlabeled images' labels, mixed as the pseudo-labels are (the score_pseudo_labels diagnostic).
  std::vector<int32_t> truth_mix;
  std::vector<PseudoLabelCounts> pseudo_counts;  // per replica, counted in the unsupervised loop
  if (o.semi && truth_u.defined()) {
    const Shape want{BR, H, W};
    U2PL_CHECK(truth_u.device == Device::CPU && truth_u.shape == want,
               "iteration " << it << ": the unlabeled images' labels must be a CPU view of shape " << want.str()
                            << ", got " << truth_u.shape.str());
    truth_mix.resize(size_t(BR * H * W));
  }
  if (o.semi) {
    const TensorView img_u = on_device(img_u_in, img_u_, dev_);
    // Pseudo-labels: argmax of the eval-mode teacher's logits, upsampled to the crop.
    phase.next("teacher eval forward");
    // In the student's memory, with the upsampled logits after it: the student's train forward
    // writes it only after the pseudo-labels are made.
    const TensorView before = student_.idle_train_memory(Shape{2 * BR, 3, H, W}, ActPlan::Idle::BeforeForward);
    SpanUse use{before.numel()};
    use.take(int64_t(teacher_->estimate_plan_bytes(img_u.shape, NetMode::Eval) / sizeof(float)));
    const NetOutputs te = teacher_->forward(ctx, img_u, NetMode::Eval, nullptr, before);
    phase.next("pseudo-labels");
    const TensorView up = use.view(before, Shape{BR, C, H, W});
    bilinear_forward(ctx, te.pred, up);
    const LabelView lab_u = scratch(lab_u_, Shape{BR, H, W}, dev_);
    argmax_channels(ctx, up, lab_u);
    phase.next("cutmix");
    image = scratch(img_all_, Shape{2 * BR, 3, H, W}, dev_);
    lab_mix = scratch(lab_mix_, Shape{BR, H, W}, dev_);
    for (int r = 0; r < R; ++r) {  // each replica mixes within its own images, with its own draws
      const TensorView u = img_u.batch_slice(r * b, b), mixed = image.batch_slice(r * per + b, b);
      const LabelView lu = lab_u.batch_slice(r * b, b), lm = lab_mix.batch_slice(r * b, b);
      copy_tensor(image.batch_slice(r * per, b), img_l.batch_slice(r * b, b));
      const std::optional<std::vector<Box>> boxes =
          cfg_.unsup.apply_aug == "cutmix" ? draws.cutmix(first_ + r, int(b), int(H), int(W)) : std::nullopt;
      if (boxes) {
        box_mix(ctx, *boxes, u, mixed);
        box_mix(ctx, *boxes, lu, lm);
      } else {
        copy_tensor(mixed, u);
        copy_tensor(lm, lu);
      }
      if (!truth_mix.empty()) {
        const int32_t* t = truth_u.data + r * b * H * W;
        int32_t* m = truth_mix.data() + r * b * H * W;
        if (boxes)
          box_mix_cpu(*boxes, b, 1, H, W, t, m);
        else
          std::copy(t, t + b * H * W, m);
      }
    }
  }

  phase.next("student forward");
  const NetOutputs out = student_.forward(ctx, image, NetMode::Train, draws.student_dropout());
  phase.next("supervised loss");
  const TensorView dpred = scratch(dpred_, out.pred.shape, dev_);
  TensorView daux;
  if (out.aux.defined()) {
    daux = scratch(daux_, out.aux.shape, dev_);
    fill_zero(daux);
  }
  // The gradient is the mean over replicas (as DDP averages), so each replica's terms enter at 1/R.
  // The losses' upsampled logits in the student's memory that only its backward uses.
  const float share = 1.f / float(cfg_.replicas);
  const TensorView idle =
      student_.idle_train_memory(image.shape, ActPlan::Idle::BetweenForwardAndBackward);
  {
    struct Lent {
      SupLossBuffers& buf;
      ~Lent() { buf.lend(TensorView()); }  // the memory is the teacher's next
    } lent{sup_buf_};
    sup_buf_.lend(idle);
    for (int r = 0; r < R; ++r)
      supervised_loss(ctx, out.pred.batch_slice(r * per, b),
                      out.aux.defined() ? out.aux.batch_slice(r * per, b) : TensorView(), lab_l.batch_slice(r * b, b),
                      sup_opt_, sup_buf_, share, dpred.batch_slice(r * per, b),
                      daux.defined() ? daux.batch_slice(r * per, b) : TensorView(), 0.f, sup_out_[size_t(r)].get());
  }

  TensorView drep;
  phase.next("teacher train-statistics forward");
  // In the same memory (the supervised loss is done with it), the unsupervised loss's buffers
  // after it: the teacher's outputs are read by the losses before the backward starts.
  SpanUse use{idle.numel()};
  if (teacher_) use.take(int64_t(teacher_->estimate_plan_bytes(image.shape, NetMode::TrainStats) / sizeof(float)));
  if (!o.semi) {
    if (teacher_) teacher_->forward(ctx, image, NetMode::TrainStats, draws.teacher_dropout(), idle);
  } else {
    const NetOutputs tt = teacher_->forward(ctx, image, NetMode::TrainStats, draws.teacher_dropout(), idle);
    phase.next("unsupervised loss");
    const Shape crop{b, C, H, W};
    const TensorView up_t = use.view(idle, crop), up_s = use.view(idle, crop), dup_s = use.view(idle, crop);
    const TensorView entropy = scratch(entropy_, Shape{BR, H, W}, dev_);
    filtered = scratch(filtered_, Shape{BR, H, W}, dev_);
    const UnsupOptions uo = cfg_.unsup_options(cfg_.unsup_percent_at(epoch));
    if (!truth_mix.empty()) pseudo_counts.resize(size_t(R));
    for (int r = 0; r < R; ++r) {
      bilinear_forward(ctx, tt.pred.batch_slice(r * per + b, b), up_t);
      bilinear_forward(ctx, out.pred.batch_slice(r * per + b, b), up_s);
      unsup_loss(ctx, up_s, lab_mix.batch_slice(r * b, b), up_t, uo, entropy.batch_slice(r * b, b),
                 filtered.batch_slice(r * b, b), cfg_.unsup.loss_weight * share, dup_s, 0.f,
                 unsup_out_[size_t(r)].get());
      if (!truth_mix.empty()) {  // one copy of the pseudo-labels and the filter for both counts
        const int32_t* truth = truth_mix.data() + r * b * H * W;
        const std::vector<int32_t> pseudo = to_host(lab_mix.batch_slice(r * b, b));
        const std::vector<int32_t> kept = to_host(filtered.batch_slice(r * b, b));
        PseudoLabelCounts& pc = pseudo_counts[size_t(r)];
        pc = count_pseudo_labels(truth, pseudo.data(), kept.data(), b * H * W, cfg_.data.ignore_label);
        if (bank_)
          pc.unreliable_true_negative = count_true_in_ranks(truth, to_host(up_t).data(), kept.data(), b, C, H * W,
                                                            cparams_.low_rank, cparams_.high_rank,
                                                            cfg_.data.ignore_label);
      }
      bilinear_backward(ctx, dup_s, dpred.batch_slice(r * per + b, b), 0.f);
    }

    if (bank_) {
      phase.next("contrastive loss and memory bank");
      const Shape fs{BR, out.rep.shape.h(), out.rep.shape.w()};
      const TensorView prob = scratch(prob_, tt.pred.shape, dev_);
      softmax_forward(ctx, tt.pred, prob);
      const LabelView ls = scratch(lab_l_small_, fs, dev_), us = scratch(lab_u_small_, fs, dev_);
      nearest_forward(ctx, lab_l, ls);
      nearest_forward(ctx, lab_mix, us);
      const MaskView low = scratch(low_, Shape{2 * BR, fs[1], fs[2]}, dev_);
      const MaskView high = scratch(high_, Shape{2 * BR, fs[1], fs[2]}, dev_);
      drep = scratch(drep_, out.rep.shape, dev_);
      std::vector<ContrastiveInputs> ins(static_cast<size_t>(R));
      for (int r = 0; r < R; ++r) {
        const LabelView ls_r = ls.batch_slice(r * b, b), us_r = us.batch_slice(r * b, b);
        const MaskView low_r = low.batch_slice(r * per, per), high_r = high.batch_slice(r * per, per);
        contrastive_masks(ctx, ls_r, entropy.batch_slice(r * b, b), lab_mix.batch_slice(r * b, b),
                          cfg_.contrastive_alpha_at(epoch), cfg_.switches.anchor_rule, low_r, high_r,
                          masks_out_[size_t(r)].get());
        ContrastiveInputs& in = ins[size_t(r)];
        in.rep = out.rep.batch_slice(r * per, per);
        in.rep_teacher = tt.rep.batch_slice(r * per, per);
        in.prob_l = prob.batch_slice(r * per, b);
        in.prob_u = prob.batch_slice(r * per + b, b);
        in.label_l = ls_r;
        in.label_u = us_r;
        in.low = low_r;
        in.high = high_r;
      }
      const float weight = float(cfg_.contrastive_weight()) * share;
      if (cfg_.replicas == 1) {
        contrastive_loss(ctx, cparams_, ins[0], *bank_, draws.contrastive(0), weight, drep, 0.f, contra_out_[0].get());
      } else {
        // The public code all-gathers every GPU's negatives into the bank before any GPU samples:
        // all replicas push, in replica order, then each forms its terms from the same bank.
        if (!cparams_.memory_bank) bank_->clear();
        if (comm_.size() == 1) {
          for (int r = 0; r < R; ++r)
            contrastive_loss(ctx, cparams_, ins[size_t(r)], *bank_, draws.contrastive(r), weight, TensorView(), 0.f,
                             nullptr, ContrastivePhase::PushOnly);
        } else {
          push_all_negatives(ctx, ins);
        }
        for (int r = 0; r < R; ++r)
          contrastive_loss(ctx, cparams_, ins[size_t(r)], *bank_, draws.contrastive(first_ + r), weight,
                           drep.batch_slice(r * per, per), 0.f, contra_out_[size_t(r)].get(),
                           ContrastivePhase::LossOnly);
      }
    }
  }

  phase.next("backward");
  // Over several processes the mean gradient is a sum (each replica's terms entered at 1/R), its
  // buckets summed while backward goes on.
  struct ListenerScope {
    Context& ctx;
    GradListener* before;
    ~ListenerScope() { ctx.set_grad_listener(before); }
  } listener_scope{ctx, ctx.grad_listener()};
  if (reducer_) {
    reducer_->begin(ctx);
    ctx.set_grad_listener(reducer_.get());
  }
  student_.backward(ctx, dpred, drep, daux);
  ctx.set_grad_listener(listener_scope.before);
  if (reducer_) {
    phase.next("gradient all-reduce (what backward did not hide)");
    reducer_->finish();
  }
  phase.next("sgd");
  sgd_step(ctx, SgdConfig{cfg_.momentum, cfg_.weight_decay}, student_.params().values().all(),
           student_.params().grads().all(), momentum_.view(), groups_.view(), lrs);

  phase.next("ema");
  if (o.semi) {
    if (epoch == cfg_.sup_only_epoch) {  // aliased in the public code: the teacher follows exactly
      copy_tensor(teacher_->params().values().all(), student_.params().values().all());
      o.ema = 0;
    } else {
      const float ema = ema_decay(it - int64_t(cfg_.sup_only_epoch) * iters_per_epoch_, cfg_.net.ema_decay);
      ema_update(ctx, teacher_->params().values().all(), student_.params().values().all(), ema);
      o.ema = ema;
    }
  }
  phase.stop();
  if (while_running) while_running();

  // The figures: each replica's (gathered from every process), then their mean in replica order
  // (the terms formed: their sum; the reliable share: over all replicas' unlabeled pixels).
  std::vector<ReplicaFigures> mine(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) {
    ReplicaFigures& f = mine[size_t(r)];
    const SupLossResult sr = sup_out_[size_t(r)].read(ctx);
    sr.check();
    f.sup = sr.loss;
    if (!o.semi) continue;
    const UnsupResult ur = unsup_out_[size_t(r)].read(ctx);
    ur.check();
    f.unsup = ur.loss;
    f.thresh = ur.thresh;
    f.valid = ur.valid;
    if (!pseudo_counts.empty()) f.pseudo = pseudo_counts[size_t(r)];
    if (bank_) {
      const EntropyThresholds th = masks_out_[size_t(r)].read(ctx);
      const ContrastiveResult cr = contra_out_[size_t(r)].read(ctx);
      cr.check();
      f.contra_low = th.low;
      f.contra_high = th.high;
      f.contra = cr.loss;
      f.terms = cr.terms;
    }
  }
  std::vector<ReplicaFigures> all(static_cast<size_t>(cfg_.replicas));
  comm_.allgather(mine.data(), mine.size() * sizeof(ReplicaFigures), all.data());
  const int Rall = cfg_.replicas;
  int64_t valid = 0;
  for (const ReplicaFigures& f : all) {
    o.sup += f.sup / Rall;
    o.unsup += f.unsup / Rall;
    o.thresh += f.thresh / Rall;
    o.contra_low += f.contra_low / Rall;
    o.contra_high += f.contra_high / Rall;
    o.contra += f.contra / Rall;
    o.contra_terms += int(f.terms);
    valid += f.valid;
    o.pseudo += f.pseudo;
  }
  if (o.semi) o.reliable = double(valid) / double(int64_t(Rall) * b * H * W);
  o.total = o.sup + cfg_.unsup.loss_weight * o.unsup + (bank_ ? cfg_.contrastive_weight() * o.contra : 0.0);
  const std::pair<const char*, double> terms[] = {{"sup", o.sup}, {"unsup", o.unsup}, {"contra", o.contra}};
  for (const auto& [name, v] : terms)
    U2PL_CHECK(std::isfinite(v), "iteration " << it << " (epoch " << epoch << "): the " << name << " loss is " << v);
  return o;
}

}  // namespace u2pl
