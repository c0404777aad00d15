// U2plNet (u2pl/net/model.h).
#include "u2pl/net/model.h"

#include "engine/log.h"

namespace u2pl {

RunMode run_mode(NetMode m) {
  switch (m) {
    case NetMode::Train: return {true, true, true};
    case NetMode::TrainStats: return {true, true, false};
    case NetMode::Eval: return {false, false, false};
  }
  return {};
}

U2plNet::U2plNet(const NetConfig& cfg)
    : cfg_(cfg),
      encoder_(ps_, cfg),
      decoder_(ps_, cfg, encoder_.layer1_channels(), encoder_.layer4_channels()) {
  U2PL_CHECK(cfg.num_classes >= 2, "network: num_classes must be at least 2, got " << cfg.num_classes);
  // The aux head reads layer3 whatever `aux_plane` says (it is 1024 only at full width).
  if (cfg.aux)
    aux_ = std::make_unique<Head>(ps_, "auxor.aux", encoder_.layer3_channels(), 256 / cfg.width_divisor,
                                  cfg.num_classes, 1, 1);
}

void U2plNet::allocate(Device dev, uint64_t seed, bool trainable) {
  dev_ = dev;
  trainable_ = trainable;
  ps_.allocate(dev, trainable);
  ps_.initialize(seed);
  if (cfg_.zero_init_residual)
    for (int id : encoder_.zero_init_bn_ids()) fill_zero(ps_.value(id));
  int64_t n = 0;
  for (const ParamDecl& d : ps_.decls())
    if (d.trainable) n += d.shape.numel();
  U2PL_LOG("network: ResNet-" << cfg_.depth << " (" << cfg_.stem << " stem, width /" << cfg_.width_divisor
           << ", OS" << cfg_.output_stride() << "), " << n << " parameters on " << device_name(dev)
           << "; arenas: parameters " << format_bytes(double(ps_.values().bytes())) << ", gradients "
           << (trainable ? format_bytes(double(ps_.grads().bytes())) : std::string("none")) << ", BN buffers "
           << format_bytes(double(ps_.buffers().bytes())));
}

const char* memory_mode_name(MemoryMode m) {
  return m == MemoryMode::Keep ? "keep" : m == MemoryMode::RecomputeBn ? "recompute_bn" : "recompute_blocks";
}

MemoryMode parse_memory_mode(const std::string& s, const std::string& what) {
  for (const MemoryMode m : kMemoryModes)
    if (s == memory_mode_name(m)) return m;
  U2PL_FAIL(what << ": unknown memory mode '" << s << "' (expected keep, recompute_bn or recompute_blocks)");
}

void U2plNet::set_memory_mode(MemoryMode m) {
  if (m == memory_) return;
  memory_ = m;
  drop_train_plans();  // those of the old mode
}

Buffer U2plNet::drop_train_plans() {
  Buffer largest;
  for (auto it = plans_.begin(); it != plans_.end();) {
    if (!it->second->act.backward()) {
      ++it;
      continue;
    }
    if (it->second.get() == last_train_) last_train_ = nullptr;
    Buffer b = it->second->act.release();
    if (b.bytes() > largest.bytes()) largest = std::move(b);
    it = plans_.erase(it);
  }
  return largest;
}

IdleFloor U2plNet::floor_for(Shape image) const {
  const auto it = floors_.find(image.str());
  return it == floors_.end() ? IdleFloor() : it->second;
}

void U2plNet::reserve_idle(Shape image, IdleFloor floor) {
  if (floor_for(image) == floor) return;
  floors_[image.str()] = floor;
  for (auto& [key, p] : plans_)  // made with the old floors (their saved state stays)
    if (p->act.backward() && key.rfind(image.str() + "/train/", 0) == 0)
      p->act.reserve_idle(floor.before_forward, floor.between);
}

std::unique_ptr<U2plNet::Plan> U2plNet::build_plan(Shape image, bool backward, MemoryMode memory,
                                                   IdleFloor floor) const {
  auto plan = std::make_unique<Plan>(backward, memory != MemoryMode::Keep, memory == MemoryMode::RecomputeBlocks);
  plan->enc = encoder_.plan(plan->act, image);
  const Shape x1 = encoder_.layer_out(plan->enc, 1).value.shape;
  const Shape x3 = encoder_.layer_out(plan->enc, 3).value.shape;
  const Shape x4 = encoder_.layer_out(plan->enc, 4).value.shape;
  plan->dec = decoder_.plan(plan->act, x1, x4);
  if (aux_) {
    plan->act.begin_module();
    plan->aux = aux_->plan(plan->act, x3);
  }
  if (backward) plan->act.reserve_idle(floor.before_forward, floor.between);
  return plan;
}

U2plNet::Plan& U2plNet::plan_for(Shape image, bool backward, TensorView memory) {
  U2PL_CHECK(ps_.allocated(), "network: forward before allocate()");
  const std::string key = image.str() + (backward ? std::string("/train/") + memory_mode_name(memory_) : "/no-backward");
  const auto fits = [&](const ActPlan& a) {
    return memory.defined() && size_t(memory.numel()) * sizeof(float) >= a.bytes();
  };
  auto it = plans_.find(key);
  if (it != plans_.end()) {
    Plan& p = *it->second;
    p.last_use = ++uses_;
    // Laid out in the memory given when it is large enough (its own block freed), else its own.
    // Its saved state (the dropout scales dropout_scale() set) goes along.
    if (fits(p.act)) {
      if (p.act.owns() || p.act.base() != memory.data) p.act.move_to(memory);
    } else if (!p.act.owns()) {
      p.act.move_to(TensorView());
    }
    return p;
  }
  // The evicted plans' memory, the largest block reused when it is large enough. One Train plan
  // at a time (a run's warm start and semi phase differ in shape).
  Buffer spare = backward ? drop_train_plans() : Buffer();
  if (plans_.size() >= kMaxPlans) {
    auto oldest = plans_.end();
    for (auto p = plans_.begin(); p != plans_.end(); ++p)
      if (p->second.get() != last_train_ && (oldest == plans_.end() || p->second->last_use < oldest->second->last_use))
        oldest = p;
    if (oldest != plans_.end()) {
      Buffer b = oldest->second->act.release();
      if (b.bytes() > spare.bytes()) spare = std::move(b);
      plans_.erase(oldest);
    }
  }
  std::unique_ptr<Plan> plan = build_plan(image, backward, memory_, floor_for(image));
  plan->last_use = ++uses_;
  const bool placed = fits(plan->act);
  if (placed)
    plan->act.place(memory);
  else  // a Train plan's shape stays for the run: no room to grow
    plan->act.allocate(dev_, std::move(spare), /*grow=*/!backward);
  U2PL_LOG("network: activation plan for " << key << ": " << format_bytes(double(plan->act.bytes()))
           << (backward ? " (kept for backward: " + format_bytes(double(plan->act.kept_bytes())) + ")" : "")
           << (placed ? ", in another plan's idle memory" : ""));
  return *plans_.emplace(key, std::move(plan)).first->second;
}

NetOutputs U2plNet::forward(Context& ctx, TensorView image, NetMode mode, Rng* rng, TensorView memory) {
  check_device(image, ctx.device(), "network input");
  U2PL_CHECK(ctx.device() == dev_, "network: parameters live on " << device_name(dev_) << ", context is "
                                                                  << device_name(ctx.device()));
  const RunMode m = run_mode(mode);
  U2PL_CHECK(trainable_ || !m.backward, "network: a Train forward on a network allocated without gradients");
  U2PL_CHECK(!m.backward || !memory.defined(), "network: a Train plan keeps its own memory");
  if (memory.defined()) check_device(memory, dev_, "network plan memory");
  Plan& p = plan_for(image.shape, m.backward, memory);
  encoder_.forward(ctx, p.act, p.enc, image, m);
  const TensorView x1 = p.act.view(encoder_.layer_out(p.enc, 1).value);
  const TensorView x3 = p.act.view(encoder_.layer_out(p.enc, 3).value);
  const TensorView x4 = p.act.view(encoder_.layer_out(p.enc, 4).value);
  decoder_.forward(ctx, p.act, p.dec, x1, x4, m, rng);
  NetOutputs out;
  out.pred = p.act.view(p.dec.cls.out);
  if (decoder_.has_rep()) out.rep = p.act.view(p.dec.rep.out);
  if (aux_) {
    aux_->forward(ctx, p.act, p.aux, x3, m, rng);
    out.aux = p.act.view(p.aux.out);
  }
  if (m.backward) {
    last_train_ = &p;
    last_image_ = image;
  }
  return out;
}

void U2plNet::backward(Context& ctx, TensorView dpred, TensorView drep, TensorView daux) {
  U2PL_CHECK(last_train_ != nullptr, "network: backward() without a Train forward before it");
  Plan& p = *last_train_;
  check_shape(dpred, p.dec.cls.out.shape, "network pred gradient");
  if (drep.defined()) {
    U2PL_CHECK(decoder_.has_rep(), "network: a rep gradient was given but the model has no rep head");
    check_shape(drep, p.dec.rep.out.shape, "network rep gradient");
  }
  if (daux.defined()) {
    U2PL_CHECK(aux_ != nullptr, "network: an aux gradient was given but the model has no aux head");
    check_shape(daux, p.aux.out.shape, "network aux gradient");
  }
  const OutSlot &l1 = encoder_.layer_out(p.enc, 1), &l3 = encoder_.layer_out(p.enc, 3),
                &l4 = encoder_.layer_out(p.enc, 4);
  decoder_.backward(ctx, p.act, p.dec, p.act.view(l1.value), p.act.view(l4.value), dpred, drep,
                    p.act.view(l1.grad), p.act.view(l4.grad));
  if (daux.defined()) aux_->backward(ctx, p.act, p.aux, p.act.view(l3.value), daux, p.act.view(l3.grad), 0.f);
  encoder_.backward(ctx, p.act, p.enc, last_image_, daux.defined());
}

U2plNet::OutputShapes U2plNet::output_shapes(Shape image) const {
  const std::unique_ptr<Plan> p = build_plan(image, false, memory_);
  OutputShapes o;
  o.pred = p->dec.cls.out.shape;
  if (decoder_.has_rep()) o.rep = p->dec.rep.out.shape;
  if (aux_) o.aux = p->aux.out.shape;
  return o;
}

TensorView U2plNet::idle_train_memory(Shape image, ActPlan::Idle when) {
  U2PL_CHECK(trainable_, "network: no Train plan on a network allocated without gradients");
  return plan_for(image, true).act.idle(when);
}

void U2plNet::poison_idle(Shape image, ActPlan::Idle when) { plan_for(image, true).act.poison(when); }

std::vector<std::string> U2plNet::dropout_sites() const {
  std::vector<std::string> s = decoder_.dropout_sites();
  if (aux_)
    for (const auto& x : aux_->dropout_sites()) s.push_back(x);
  return s;
}

TensorView U2plNet::dropout_scale(Shape image, NetMode mode, const std::string& site) {
  Plan& p = plan_for(image, run_mode(mode).backward);
  Slot s = decoder_.scale_slot(p.dec, site);
  if (!s.defined() && aux_) s = aux_->scale_slot(p.aux, site);
  U2PL_CHECK(s.defined(), "network: no dropout site named '" << site << "'");
  return p.act.view(s);
}

size_t U2plNet::plan_bytes(Shape image, NetMode mode) { return plan_for(image, run_mode(mode).backward).act.bytes(); }

size_t U2plNet::owned_plan_bytes() const {
  size_t n = 0;
  for (const auto& [key, p] : plans_) n += p->act.owned_bytes();
  return n;
}

size_t U2plNet::estimate_plan_bytes(Shape image, NetMode mode) const {
  return estimate_plan_bytes(image, mode, memory_, floor_for(image));
}

size_t U2plNet::estimate_plan_bytes(Shape image, NetMode mode, MemoryMode memory, IdleFloor floor) const {
  return build_plan(image, run_mode(mode).backward, memory, floor)->act.bytes();
}

}  // namespace u2pl
