// The U2PL network: ResNet encoder, DeepLabv3+ decoder with the representation head, optional
// aux head; parameters, gradients and BN buffers in the ParamSet's flat arenas; activation plans
// cached per input shape and mode. Three forward modes (train, the teacher's train-statistics
// pass without backward, eval) and the hand-written backward of the whole network.
// Covered by tests/test_model.cpp (PyTorch parity) and tests/test_cuda_layers.cpp.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "u2pl/net/decoder.h"
#include "u2pl/net/resnet.h"

namespace u2pl {

enum class NetMode {
  Train,       // batch-statistics BN (running stats updated), dropout, state kept for backward
  TrainStats,  // the same without backward state: the teacher's second forward in U2PL
  Eval,        // running statistics, no dropout
};
RunMode run_mode(NetMode m);

// What a train forward keeps for backward (issue 13): everything; or only what is expensive to
// form (convolution outputs, BN statistics, dropout scales), backward rebuilding the BN, ReLU and
// dropout outputs it reads, bit for bit. The modes give the same numbers; they differ in memory
// and time.
// recompute_blocks: besides, every residual block keeps only its output and BN state, and backward
// replays the block's convolutions from its input (one forward of the encoder again).
enum class MemoryMode { Keep, RecomputeBn, RecomputeBlocks };
constexpr MemoryMode kMemoryModes[] = {MemoryMode::Keep, MemoryMode::RecomputeBn,
                                       MemoryMode::RecomputeBlocks};  // fastest first
const char* memory_mode_name(MemoryMode m);  // "keep", "recompute_bn", "recompute_blocks"
// trainer.memory auto: the fastest mode whose figure is at most this share of the free memory.
constexpr double kAutoMemoryShare = 0.9;
// Throws naming `what` (a config key, an option) and the choices.
MemoryMode parse_memory_mode(const std::string& s, const std::string& what);

// The idle memory a Train plan lends at least (U2plNet::reserve_idle), in bytes, by ActPlan::Idle.
struct IdleFloor {
  size_t before_forward = 0, between = 0;
  bool operator==(const IdleFloor& o) const { return before_forward == o.before_forward && between == o.between; }
};

struct NetOutputs {
  TensorView pred;  // (N, C, H/4, W/4) logits before upsampling
  TensorView rep;   // (N, 256/div, H/4, W/4), undefined without the rep head
  TensorView aux;   // (N, C, H/8, W/8) at OS8, undefined without the aux head
};

class U2plNet {
 public:
  explicit U2plNet(const NetConfig& cfg);  // declares every parameter under its public key
  // Allocates the arenas on `dev` and initialises them (SPEC §1.1: kaiming fan-out convs, BN
  // weight 1 / bias 0, zero_init_residual); prints the arena sizes.
  // trainable false: no gradient arena (inference and the EMA teacher), and no Train forward.
  void allocate(Device dev, uint64_t seed, bool trainable = true);
  const NetConfig& config() const { return cfg_; }
  ParamSet& params() { return ps_; }
  const ParamSet& params() const { return ps_; }

  // Runs the network on image (N, 3, H, W). Dropout scales are drawn from rng when dropout is
  // active; with rng null the scales already in the plan are used (tests set them through
  // dropout_scale()). Outputs are views into the plan, valid until the next forward. `memory`,
  // for an Eval or TrainStats forward: memory the plan is laid out in instead of its own (another
  // network's idle memory, idle_train_memory) when it is large enough; the outputs live there.
  NetOutputs forward(Context& ctx, TensorView image, NetMode mode, Rng* rng, TensorView memory = TensorView());
  // After a Train forward: accumulates every parameter gradient. drep/daux may be undefined (no
  // loss on that output). The image of that forward must still be alive.
  void backward(Context& ctx, TensorView dpred, TensorView drep, TensorView daux);
  // The shapes of pred, rep and aux for an input of `image` (rep and aux: ndim 0 when absent).
  struct OutputShapes {
    Shape pred, rep, aux;
  };
  OutputShapes output_shapes(Shape image) const;
  // The memory of the Train plan for `image` (made here if need be) that another plan may use
  // before its forward, or between its forward and its backward (u2pl/net/act_plan.h); the
  // teacher's forwards run there in a U2PL step.
  TensorView idle_train_memory(Shape image, ActPlan::Idle when);
  // Train plans for `image` lend at least this much idle memory (ActPlan::reserve_idle): what the
  // caller places there (a U2PL step: the teacher's plans and the losses' buffers). A plan made
  // before gets a larger block if it needs one, its saved state (dropout scales) kept.
  void reserve_idle(Shape image, IdleFloor floor);
  // Fills that memory with NaN: nothing may read it before writing it (tests).
  void poison_idle(Shape image, ActPlan::Idle when);

  // The plan's scales of a dropout site (tests set them, then forward with rng null). A plan laid
  // out in another network's memory gets memory of its own here, and keeps the scales when the
  // next forward lays it out in that memory again.
  TensorView dropout_scale(Shape image, NetMode mode, const std::string& site);
  std::vector<std::string> dropout_sites() const;
  size_t plan_bytes(Shape image, NetMode mode);  // activation memory of that plan
  // The memory this network's plans hold of their own (those laid out in another's count nothing).
  size_t owned_plan_bytes() const;
  // The same figure without allocating anything (sizes that do not fit this machine's memory):
  // under this network's memory mode and idle floors, or another mode and floor.
  size_t estimate_plan_bytes(Shape image, NetMode mode) const;
  size_t estimate_plan_bytes(Shape image, NetMode mode, MemoryMode memory, IdleFloor floor = {}) const;
  // The memory mode of Train plans (default keep); plans made under another are dropped.
  void set_memory_mode(MemoryMode m);
  MemoryMode memory_mode() const { return memory_; }

 private:
  struct Plan {
    Plan(bool backward, bool rebuild, bool replay) : act(backward, rebuild, replay) {}
    uint64_t last_use = 0;
    ActPlan act;
    ResNet::Bufs enc;
    Decoder::Bufs dec;
    Head::Bufs aux;
  };
  // Laid out, not allocated.
  std::unique_ptr<Plan> build_plan(Shape image, bool backward, MemoryMode memory, IdleFloor floor = {}) const;
  IdleFloor floor_for(Shape image) const;
  Plan& plan_for(Shape image, bool backward, TensorView memory = TensorView());
  Buffer drop_train_plans();  // frees every Train plan; returns the largest block they held

  NetConfig cfg_;
  ParamSet ps_;
  ResNet encoder_;
  Decoder decoder_;
  std::unique_ptr<Head> aux_;
  Device dev_ = Device::CPU;
  bool trainable_ = true;
  MemoryMode memory_ = MemoryMode::Keep;
  // Plans are cached per input shape and mode; beyond kMaxPlans the least recently used one is
  // dropped (evaluation on images of many sizes would otherwise keep one plan per size) and its
  // memory goes to the new plan, so evaluation stops allocating once its buffers have grown.
  static constexpr size_t kMaxPlans = 4;
  std::map<std::string, std::unique_ptr<Plan>> plans_;
  std::map<std::string, IdleFloor> floors_;  // reserve_idle(), by image shape
  uint64_t uses_ = 0;
  Plan* last_train_ = nullptr;
  TensorView last_image_;
};

}  // namespace u2pl
