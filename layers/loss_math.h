// Per-pixel softmax and cross-entropy over a strided channel axis, shared by the CPU loops and
// the CUDA kernels (STYLE 9). `x` points at channel 0 of one pixel; channels are `stride` apart.
#pragma once
#include <cstdint>

#include "engine/math.h"
#include "layers/loss.h"

namespace u2pl {

template <class T>
struct PixelSoftmax {
  T max, sum;  // softmax_c = exp(x_c − max) / sum
};

template <class T>
U2PL_HD PixelSoftmax<T> pixel_softmax(const T* x, int64_t C, int64_t stride) {
  T m = x[0];
  for (int64_t c = 1; c < C; ++c) m = x[c * stride] > m ? x[c * stride] : m;
  T s = 0;
  for (int64_t c = 0; c < C; ++c) s += hd_exp(x[c * stride] - m);
  return {m, s};
}

// −log softmax_label = log Σ exp(x − max) + max − x_label.
template <class T>
U2PL_HD T pixel_ce(const T* x, int64_t stride, const PixelSoftmax<T>& sm, int label) {
  return hd_log(sm.sum) + sm.max - x[label * stride];
}

template <class T>
U2PL_HD T pixel_prob(const T* x, int64_t stride, const PixelSoftmax<T>& sm, int c) {
  return hd_exp(x[c * stride] - sm.max) / sm.sum;
}

// Index of the largest channel; the first wins ties.
template <class T>
U2PL_HD int pixel_argmax(const T* x, int64_t C, int64_t stride) {
  int best = 0;
  for (int64_t c = 1; c < C; ++c)
    if (x[c * stride] > x[best * stride]) best = int(c);
  return best;
}

U2PL_HD bool label_ok(int label, int C, int ignore) {
  return label == ignore || (label >= 0 && label < C);
}

// The figures of a main and an optional aux cross-entropy term (cross_entropy_heads), computed
// as the host-returning supervised loss does: loss = main, then += aux_weight · aux.
U2PL_HD CeHeadsResult ce_heads(const CeResult& main, const CeResult* aux, float aux_weight, int C, int ignore) {
  CeHeadsResult r;
  r.main = main.loss;
  r.valid = main.valid;
  r.loss = main.loss;
  r.bad_pixel = main.bad_pixel;
  r.bad_label = main.bad_label;
  if (aux) {
    r.aux = aux->loss;
#if defined(__CUDA_ARCH__)
    r.loss = __fadd_rn(r.loss, __fmul_rn(aux_weight, aux->loss));  // no FMA: the host does not contract
#else
    r.loss += aux_weight * aux->loss;
#endif
    if (r.bad_pixel < 0) {
      r.bad_pixel = aux->bad_pixel;
      r.bad_label = aux->bad_label;
    }
  }
  r.classes = C;
  r.ignore = ignore;
  return r;
}

}  // namespace u2pl
