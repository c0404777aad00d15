// Activation memory for one input shape and mode, planned once and reused every iteration
// (STYLE 7). With backward, every tensor backward reads gets its own segment; without it, a
// module's internals share one scratch region that the next module reuses, and module outputs
// alternate between two buffers unless a later module reads them ("tapped"). Gradients of module
// outputs alternate the same way (or are tapped); gradient temporaries are module-scoped scratch.
// A plan that rebuilds (the memory mode recompute_bn) keeps what is expensive (convolution
// outputs, BN statistics, dropout scales) and puts what is cheap to form again (BN, ReLU and
// dropout outputs: rebuilt() slots) in the module scratch, which the module's backward writes
// again, bit for bit, before it reads them; a plan that replays (recompute_blocks) puts the
// residual blocks' convolution outputs there too (replayed() slots).
// Covered by tests/test_model.cpp (memory figures and the parity of every mode).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/context.h"

namespace u2pl {

struct Slot {
  int region = -1;  // -1: none
  int64_t offset = 0;
  Shape shape;
  bool defined() const { return region >= 0; }
};

// The floats a slot of `s` takes (its size rounded up to 256-byte segments).
int64_t slot_floats(Shape s);
// The shape of most elements (the first of equals): what a slot tensors take in turns must hold.
Shape largest(const std::vector<Shape>& shapes);
// The memory of `s` from float `at` (a multiple of 64) seen as `shape`, within it: tensors that
// are never alive at once share it.
Slot alias(const Slot& s, Shape shape, int64_t at = 0);

// A module output and, with backward, the gradient buffer for it.
struct OutSlot {
  Slot value, grad;
};

class ActPlan {
 public:
  // replay (recompute_blocks): residual blocks keep only their output and BN state; backward
  // replays a block's convolutions from its input before its backward (implies rebuild).
  ActPlan(bool backward, bool rebuild = false, bool replay = false);
  bool backward() const { return backward_; }
  bool rebuild() const { return backward_ && (rebuild_ || replay_); }  // rebuilt() slots are module scratch
  bool replay() const { return backward_ && replay_; }

  void begin_module();  // scratch after this point may reuse the previous module's
  Slot internal(Shape s);                          // read by this module's backward
  Slot rebuilt(Shape s);  // read by backward, which can form it again (rebuild(): module scratch)
  Slot replayed(Shape s);  // a replayed block's convolution output (replay(): module scratch)
  // Read by the next (or, tapped, a later) module. A tapped output's gradient takes memory of its
  // own that only backward uses (written there before it is read).
  OutSlot output(Shape s, bool tapped = false);
  Slot result(Shape s);  // the network's result (pred, rep, aux): kept, no gradient slot
  // A module output that backward can form again (a residual block's, from its kept convolution
  // output and its input; or, replaying, with the blocks before it from a kept input): in
  // rebuild() plans at float `at` of one region such outputs share, each read only by the next
  // module in forward and formed again before that module's backward; else output().
  OutSlot rebuilt_output(Shape s, int64_t at = 0);
  Slot grad_temp(Shape s);                         // backward scratch (module-scoped)
  Slot state(Shape s);                             // small saved state: BN statistics, dropout scales

  // Gives the plan its memory, all regions in one block: `spare` (a block another plan released)
  // when it is on `dev` and large enough, else a new one, with a quarter more room when it
  // replaces a spare that was too small (so plans of varying shapes soon stop allocating).
  // Zeroed either way.
  // grow false: no quarter more room (a plan whose shape does not change).
  void allocate(Device dev, Buffer spare = Buffer(), bool grow = true);
  // Lays the plan out in memory it does not own (`block`, at least bytes() long, on the device
  // the plan's views are used on): another plan's idle memory. It may be placed again elsewhere.
  void place(TensorView block);
  bool owns() const { return laid_ && own_.data() != nullptr; }
  size_t owned_bytes() const { return owns() ? own_.bytes() : 0; }  // the block of its own
  const float* base() const { return base_; }  // where it is laid out
  // Hands the plan's own block out (for the next plan's allocate); the plan is unusable afterwards.
  Buffer release();
  // Lays the plan out again in `block` (undefined: a block of its own on the same device); when
  // it owned its block, its saved state (the dropout scales a test set) is copied along and that
  // block freed.
  void move_to(TensorView block);
  TensorView view(const Slot& s) const;
  size_t bytes() const;                            // everything the plan needs
  size_t kept_bytes() const;                       // what backward keeps (0 without backward)

  // The memory of a train plan (with backward) that holds nothing another plan may not use for a
  // while, so that plan can be placed there: before the forward, every region but the small saved
  // state (the forward writes everything before reading it); between the forward and the
  // backward, the rebuilt outputs, the module scratch and the gradient regions (backward writes
  // them before reading).
  enum class Idle { BeforeForward, BetweenForwardAndBackward };
  // The plan lends at least `before_forward` bytes of idle memory before its forward and `between`
  // between its forward and backward, its block growing at the end, so that what the caller
  // places there need not be allocated beside it. After allocate(), a block too small is replaced
  // (the saved state copied along).
  void reserve_idle(size_t before_forward, size_t between);
  TensorView idle(Idle when) const;  // after allocate() or place()
  // Fills that memory with NaN (synchronously): nothing may read it before writing it (tests).
  void poison(Idle when);

 private:
  // Layout order: the saved state first, the backward-only regions last (idle spans are contiguous).
  enum Region {
    kState, kKept, kPingA, kPingB, kOutRebuilt, kScratch, kGradPingA, kGradPingB, kGradTemp, kGradTapped, kRegions
  };
  Slot take(int region, Shape s);
  Slot shared(int region, Shape s);
  // at[r]: float offset of region r in the block, at[kRegions]: the end (after the reserved idle memory)
  void layout(int64_t* at) const;
  int64_t start(int region) const { return start_[region]; }  // after allocate() or place()
  bool backward_, rebuild_, replay_;
  bool ping_ = false;
  int64_t cursor_[kRegions] = {};  // next free float in each region (scoped regions reset)
  int64_t size_[kRegions] = {};    // floats each region needs
  int64_t start_[kRegions + 1] = {};
  int64_t idle_floor_[2] = {};     // reserve_idle(), floats, by Idle
  Buffer own_;                     // allocate(): the plan's block
  float* base_ = nullptr;          // the block in use (own_ or placed)
  bool laid_ = false;
  Device dev_ = Device::CPU;
};

}  // namespace u2pl
