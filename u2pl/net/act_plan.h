// Activation memory for one input shape and mode, planned once and reused every iteration
// (STYLE 7). With backward, every tensor backward reads gets its own segment; without it, a
// module's internals share one scratch region that the next module reuses, and module outputs
// alternate between two buffers unless a later module reads them ("tapped"). Gradients of module
// outputs alternate the same way (or are tapped); gradient temporaries are module-scoped scratch.
// A plan that rebuilds (the memory mode recompute_bn) keeps what is expensive (convolution
// outputs, BN statistics, dropout scales) and puts what is cheap to form again (BN, ReLU and
// dropout outputs: rebuilt() slots) in the module scratch, which the module's backward writes
// again, bit for bit, before it reads them.
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

// A module output and, with backward, the gradient buffer for it.
struct OutSlot {
  Slot value, grad;
};

class ActPlan {
 public:
  explicit ActPlan(bool backward, bool rebuild = false);
  bool backward() const { return backward_; }
  bool rebuild() const { return backward_ && rebuild_; }  // rebuilt() slots are module scratch

  void begin_module();  // scratch after this point may reuse the previous module's
  Slot internal(Shape s);                          // read by this module's backward
  Slot rebuilt(Shape s);  // read by backward, which can form it again (rebuild(): module scratch)
  OutSlot output(Shape s, bool tapped = false);    // read by the next (or, tapped, a later) module
  Slot grad_temp(Shape s);                         // backward scratch (module-scoped)
  Slot state(Shape s);                             // small saved state: BN statistics, dropout scales

  // Gives each region its memory: the same region of `spare` (buffers another plan released) when
  // that is on `dev` and large enough, else a new buffer, with a quarter more room when it replaces
  // a spare that was too small (so plans of varying shapes soon stop allocating). Zeroed either way.
  void allocate(Device dev, std::vector<Buffer> spare = {});
  // Hands the plan's buffers out (for the next plan's allocate); the plan is unusable afterwards.
  std::vector<Buffer> release();
  // Fills the module scratch with NaN (synchronously): after a forward nothing in it may be read
  // before it is written again (tests of the rebuilding modes).
  void poison_scratch();
  TensorView view(const Slot& s) const;
  size_t bytes() const;                            // everything allocated
  size_t kept_bytes() const;                       // what backward keeps (0 without backward)

 private:
  enum Region { kKept, kScratch, kPingA, kPingB, kGradPingA, kGradPingB, kGradTemp, kState, kRegions };
  Slot take(int region, Shape s);
  bool backward_, rebuild_;
  bool ping_ = false;
  int64_t cursor_[kRegions] = {};  // next free float in each region (scoped regions reset)
  int64_t size_[kRegions] = {};    // floats each region needs
  std::vector<Buffer> bufs_;
};

}  // namespace u2pl
