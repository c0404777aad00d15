// CPU-only builds: every CUDA entry point of the U2PL losses and the memory bank throws "built
// without CUDA" (STYLE 3).
#include "u2pl/losses/contrastive.h"
#include "u2pl/losses/memory_bank.h"
#include "u2pl/losses/unsup_loss.h"

namespace u2pl {

[[noreturn]] static void no_cuda(const char* op) {
  U2PL_FAIL(op << " on cuda: this build of u2pl was built without CUDA (configure with nvcc on "
                  "PATH or -DU2PL_CUDA=ON)");
}

void entropy_forward_cuda(Context&, TensorView, TensorView) { no_cuda("entropy"); }
void masked_percentile_cuda(Context&, TensorView, LabelView, double, Percentile*) { no_cuda("percentile"); }
void unsup_loss_cuda(Context&, TensorView, LabelView, TensorView, const UnsupOptions&, TensorView, LabelView, float,
                     TensorView, float, UnsupResult*) {
  no_cuda("unsupervised loss");
}
void contrastive_masks_cuda(Context&, LabelView, TensorView, LabelView, double, LowMaskRule, MaskView, MaskView,
                            EntropyThresholds*) {
  no_cuda("contrastive masks");
}
void contrastive_loss_cuda(Context&, const ContrastiveParams&, const ContrastiveInputs&, MemoryBank&,
                           const PhiloxStep&, float, TensorView, float, ContrastiveResult*, ContrastivePhase) {
  no_cuda("contrastive loss");
}
void bank_push_cuda(Context&, const DeviceQueues&, int, const float*, int64_t) { no_cuda("memory bank push"); }

}  // namespace u2pl
