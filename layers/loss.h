// Softmax over channels, the channel argmax, softmax cross-entropy with an ignore index (mean over valid pixels; 0
// with zero gradient when none is valid) and the OHEM label selection of SPEC §2.1, on CPU and
// CUDA. Must match F.softmax(dim=1), nn.CrossEntropyLoss(ignore_index=255) and the public code's
// ProbOhemCrossEntropy2d. Tests: test_layers_grad.cpp, test_layers_fixtures.cpp, test_reference.cpp
// (ohem cases), test_cuda_layers.cpp.
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
  // Device variant on CUDA: the first pixel whose label is outside [0, C) ∪ {ignore}, −1 if none
  // (the CPU and the host-returning variant throw at once); check() throws their error.
  int64_t bad_pixel = -1;
  int32_t bad_label = 0;
  void check(int C, int ignore) const;
};
// logits (N,C,H,W), labels (N,H,W) in [0, C) or `ignore`; any other label throws, naming it.
// On CUDA the figures are read back (one synchronisation).
CeResult cross_entropy_forward(Context& ctx, TensorView logits, LabelView labels,
                               int ignore = kIgnoreLabel);
// The same into *out in ctx's device memory (host memory on CPU; not the workspace): on CUDA no
// host round trip, and a bad label is recorded in *out for check() instead of thrown.
void cross_entropy_forward(Context& ctx, TensorView logits, LabelView labels, CeResult* out,
                           int ignore = kIgnoreLabel);

// Two cross-entropy terms on the same labels, a main and an auxiliary head (the supervised
// loss's figures, u2pl/losses/sup_loss.h): loss = main + aux_weight · aux.
struct CeHeadsResult {
  float loss = 0;      // main + aux_weight · aux
  float main = 0, aux = 0;
  int64_t valid = 0;   // pixels the main term averaged over
  // The first bad label of the main term, else of the aux term (see CeResult), with the
  // classes and ignore index that check() names.
  int64_t bad_pixel = -1;
  int32_t bad_label = 0;
  int32_t classes = 0, ignore = kIgnoreLabel;
  void check() const;
};
// *out from *main and *aux (aux null: no aux term), all in ctx's device memory; C and ignore as
// the terms were computed with. On CUDA one queued thread, no host round trip.
void cross_entropy_heads(Context& ctx, const CeResult* main, const CeResult* aux, float aux_weight, int C,
                         int ignore, CeHeadsResult* out);
// dlogits = beta*dlogits + dloss · (softmax − onehot) / valid at valid pixels, 0 elsewhere
// (all zero when valid == 0).
void cross_entropy_backward(Context& ctx, TensorView logits, LabelView labels, float dloss,
                            TensorView dlogits, float beta, int ignore = kIgnoreLabel);

// OHEM (SPEC §2.1): writes `kept` (N,H,W) = labels where p_gt ≤ threshold, else ignore, with
// threshold = max(thresh, the min_kept-th smallest p_gt, ignored pixels counting as 1); all valid
// pixels are kept when min_kept > #valid (or min_kept ≤ 0). Cross-entropy on `kept` is the loss.
// Any other label throws, naming it (on CUDA after one synchronisation).
void ohem_select(Context& ctx, TensorView logits, LabelView labels, float thresh, int64_t min_kept,
                 LabelView kept, int ignore = kIgnoreLabel);
// The same without a host round trip on CUDA: a label outside [0, C) ∪ {ignore} is copied into
// `kept` unchanged instead of thrown, so the device cross_entropy_forward on `kept` records the
// same first bad pixel and label for check(). The CPU throws at once, as ohem_select does.
void ohem_select_deferred(Context& ctx, TensorView logits, LabelView labels, float thresh, int64_t min_kept,
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
void cross_entropy_forward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore, CeResult* out);
void cross_entropy_heads_cuda(Context& ctx, const CeResult* main, const CeResult* aux, float aux_weight, int C,
                              int ignore, CeHeadsResult* out);
void cross_entropy_backward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore,
                                 float dloss, TensorView dlogits, float beta);
// Queued only: bad labels pass into `kept` (ohem_select_deferred); check_labels_cuda throws on them.
void ohem_select_cuda(Context& ctx, TensorView logits, LabelView labels, float thresh,
                      int64_t min_kept, LabelView kept, int ignore);
void check_labels_cuda(Context& ctx, LabelView labels, int C, int ignore);

}  // namespace u2pl
