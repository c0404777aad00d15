// CPU-only builds: every CUDA entry point of the layers throws "built without CUDA" (STYLE 3).
#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/elementwise.h"
#include "layers/loss.h"
#include "layers/mix.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "layers/sgd.h"

namespace u2pl {

[[noreturn]] static void no_cuda(const char* op) {
  U2PL_FAIL(op << " on cuda: this build of u2pl was built without CUDA (configure with nvcc on "
                  "PATH or -DU2PL_CUDA=ON)");
}

void conv2d_forward_cuda(Context&, const Conv2dSpec&, TensorView, TensorView, TensorView, TensorView) { no_cuda("conv2d"); }
void conv2d_backward_cuda(Context&, const Conv2dSpec&, TensorView, TensorView, TensorView, TensorView, float,
                          TensorView, TensorView) { no_cuda("conv2d backward"); }
void batchnorm_forward_cuda(Context&, TensorView, TensorView, TensorView, TensorView, TensorView, bool,
                            TensorView, TensorView, TensorView) { no_cuda("batchnorm"); }
void batchnorm_backward_cuda(Context&, TensorView, TensorView, TensorView, TensorView, bool, TensorView,
                             TensorView, float, TensorView, TensorView) { no_cuda("batchnorm backward"); }
void batchnorm_apply_cuda(Context&, TensorView, TensorView, TensorView, TensorView, TensorView) {
  no_cuda("batchnorm rebuild");
}
void batchnorm_forward_cuda_sync(Context&, const ReplicaSync&, TensorView, TensorView, TensorView, TensorView,
                                 TensorView, TensorView, TensorView, TensorView) { no_cuda("SyncBN"); }
void batchnorm_backward_cuda_sync(Context&, const ReplicaSync&, TensorView, TensorView, TensorView, TensorView,
                                  TensorView, TensorView, float, TensorView, TensorView) { no_cuda("SyncBN backward"); }
void relu_forward_cuda(Context&, TensorView, TensorView) { no_cuda("relu"); }
void relu_backward_cuda(Context&, TensorView, TensorView, TensorView, float) { no_cuda("relu backward"); }
void add_forward_cuda(Context&, TensorView, TensorView, TensorView) { no_cuda("add"); }
void accumulate_cuda(Context&, TensorView, TensorView, float) { no_cuda("accumulate"); }
void dropout2d_make_scale_cuda(Context&, float, uint64_t, uint64_t, uint64_t, TensorView) { no_cuda("dropout2d mask"); }
void channel_scale_cuda(Context&, TensorView, TensorView, TensorView, float) { no_cuda("dropout2d"); }
void ema_update_cuda(Context&, TensorView, TensorView, float) { no_cuda("ema update"); }
void maxpool_forward_cuda(Context&, const MaxPoolSpec&, TensorView, TensorView) { no_cuda("maxpool"); }
void maxpool_backward_cuda(Context&, const MaxPoolSpec&, TensorView, TensorView, TensorView, float) {
  no_cuda("maxpool backward");
}
void global_avgpool_forward_cuda(Context&, TensorView, TensorView) { no_cuda("global average pool"); }
void global_avgpool_backward_cuda(Context&, TensorView, TensorView, float) { no_cuda("global average pool backward"); }
void bilinear_forward_cuda(Context&, TensorView, TensorView) { no_cuda("bilinear resize"); }
void bilinear_backward_cuda(Context&, TensorView, TensorView, float) { no_cuda("bilinear resize backward"); }
void nearest_forward_cuda(Context&, int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*) {
  no_cuda("nearest resize");
}
void nearest_forward_cuda(Context&, int64_t, int64_t, int64_t, int64_t, int64_t, const int32_t*, int32_t*) {
  no_cuda("nearest resize");
}
void nearest_forward_cuda(Context&, int64_t, int64_t, int64_t, int64_t, int64_t, const uint8_t*, uint8_t*) {
  no_cuda("nearest resize");
}
void channel_block_copy_cuda(Context&, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*,
                             int64_t, int64_t, float) { no_cuda("concat"); }
void argmax_channels_cuda(Context&, TensorView, LabelView) { no_cuda("argmax"); }
void softmax_forward_cuda(Context&, TensorView, TensorView) { no_cuda("softmax"); }
void softmax_backward_cuda(Context&, TensorView, TensorView, TensorView, float) { no_cuda("softmax backward"); }
CeResult cross_entropy_forward_cuda(Context&, TensorView, LabelView, int) { no_cuda("cross-entropy"); }
void cross_entropy_forward_cuda(Context&, TensorView, LabelView, int, CeResult*) { no_cuda("cross-entropy"); }
void cross_entropy_heads_cuda(Context&, const CeResult*, const CeResult*, float, int, int, CeHeadsResult*) {
  no_cuda("cross-entropy heads");
}
void cross_entropy_backward_cuda(Context&, TensorView, LabelView, int, float, TensorView, float) {
  no_cuda("cross-entropy backward");
}
void ohem_select_cuda(Context&, TensorView, LabelView, float, int64_t, LabelView, int) { no_cuda("ohem"); }
void check_labels_cuda(Context&, LabelView, int, int) { no_cuda("ohem label check"); }
void box_mix_cuda(Context&, const std::vector<Box>&, int64_t, int64_t, int64_t, int64_t, const float*, float*) {
  no_cuda("box mix");
}
void box_mix_cuda(Context&, const std::vector<Box>&, int64_t, int64_t, int64_t, int64_t, const int32_t*, int32_t*) {
  no_cuda("box mix");
}
void sgd_step_cuda(Context&, const SgdConfig&, TensorView, TensorView, TensorView, MaskView, const LrTable&) {
  no_cuda("sgd");
}

}  // namespace u2pl
