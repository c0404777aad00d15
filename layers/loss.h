// Softmax over channels, the channel argmax, softmax cross-entropy with an ignore index (mean over valid pixels; 0
// with zero gradient when none is valid) and the OHEM label selection of SPEC §2.1, on CPU and
// CUDA. Must match F.softmax(dim=1), nn.CrossEntropyLoss(ignore_index=255) and the public code's
// ProbOhemCrossEntropy2d. Tests: test_layers_grad.cpp, test_fixtures.cpp, test_reference.cpp
// (ohem cases), test_cuda_parity.cpp.
#pragma once
#include "engine/context.h"

namespace u2pl {

constexpr int kIgnoreLabel = 255;

// y = softmax over C of x (N,C,H,W); dx = beta*dx + y ⊙ (dy − Σ_c y·dy).
void softmax_forward(Context& ctx, TensorView x, TensorView y);
void softmax_backward(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta);

// labels (N,H,W) = index of the largest of x (N,C,H,W) over C per pixel (the first wins ties,
// like torch.max): the teacher's pseudo-labels.
void argmax_channels(Context& ctx, TensorView x, LabelView labels);

struct CeResult {
  float loss = 0.f;    // mean over valid pixels (0 when none)
  int64_t valid = 0;   // pixels whose label is not `ignore`
};
// logits (N,C,H,W), labels (N,H,W) in [0, C) or `ignore`; any other label throws, naming it.
CeResult cross_entropy_forward(Context& ctx, TensorView logits, LabelView labels,
                               int ignore = kIgnoreLabel);
// dlogits = beta*dlogits + dloss · (softmax − onehot) / valid at valid pixels, 0 elsewhere
// (all zero when valid == 0).
void cross_entropy_backward(Context& ctx, TensorView logits, LabelView labels, float dloss,
                            TensorView dlogits, float beta, int ignore = kIgnoreLabel);

// OHEM (SPEC §2.1): writes `kept` (N,H,W) = labels where p_gt ≤ threshold, else ignore, with
// threshold = max(thresh, the min_kept-th smallest p_gt, ignored pixels counting as 1); all valid
// pixels are kept when min_kept > #valid (or min_kept ≤ 0). Cross-entropy on `kept` is the loss.
void ohem_select(Context& ctx, TensorView logits, LabelView labels, float thresh, int64_t min_kept,
                 LabelView kept, int ignore = kIgnoreLabel);

template <class T>
void softmax_forward_cpu(Shape xs, const T* x, T* y);
template <class T>
void softmax_backward_cpu(Shape xs, const T* y, const T* dy, T* dx, T beta);
template <class T>
CeResult cross_entropy_forward_cpu(Shape xs, const T* logits, const int32_t* labels, int ignore);
template <class T>
void cross_entropy_backward_cpu(Shape xs, const T* logits, const int32_t* labels, int ignore,
                                int64_t valid, T dloss, T* dlogits, T beta);

void argmax_channels_cuda(Context& ctx, TensorView x, LabelView labels);
void softmax_forward_cuda(Context& ctx, TensorView x, TensorView y);
void softmax_backward_cuda(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta);
CeResult cross_entropy_forward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore);
void cross_entropy_backward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore,
                                 float dloss, TensorView dlogits, float beta);
void ohem_select_cuda(Context& ctx, TensorView logits, LabelView labels, float thresh,
                      int64_t min_kept, LabelView kept, int ignore);

}  // namespace u2pl
