// Element-wise math written once (STYLE 9): functor structs and inline functions marked U2PL_HD,
// called by the CPU loops and the CUDA kernels alike, and instantiated for double in the
// gradient checks. Each layer's tests cover the functors it uses.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/hd.h"

namespace u2pl {

// exp/log for float and double that resolve to the same library function on host and device.
U2PL_HD float hd_exp(float x) { return expf(x); }
U2PL_HD double hd_exp(double x) { return exp(x); }
U2PL_HD float hd_log(float x) { return logf(x); }
U2PL_HD double hd_log(double x) { return log(x); }

// The beta convention of every input gradient (STYLE 5): beta 0 overwrites (and never reads
// `old`, which may be uninitialised), otherwise accumulates beta * old.
template <class T>
U2PL_HD T blend(T v, T old, T beta) {
  return beta == T(0) ? v : v + beta * old;
}

template <class T>
U2PL_HD T bn_running_update(T running, T batch, T momentum) {
  return (T(1) - momentum) * running + momentum * batch;
}

// The count, mean and sum of squared deviations of a set of values (SyncBN: one replica's, per
// channel), and two sets merged into the statistics of their union (Chan, Golub and LeVeque's
// pairwise update); merged in replica order, the result does not depend on which process held
// which replica.
struct Moments {
  double count, mean, m2;
};
U2PL_HD Moments merge_moments(Moments a, Moments b) {
  const double total = a.count + b.count, d = b.mean - a.mean;
  return {total, a.mean + d * b.count / total, a.m2 + (b.m2 + d * d * a.count * b.count / total)};
}

template <class T>
struct BnApply {
  T mean, invstd, gamma, beta;
  U2PL_HD T operator()(T x) const { return (x - mean) * invstd * gamma + beta; }
};

// dx of y = gamma * (x - mean) * invstd + beta. Batch statistics: the gradient through the batch
// mean and biased variance, with mean_dy = Σdy / M and mean_dy_xhat = Σ dy·x̂ / M.
template <class T>
struct BnBackward {
  T mean, invstd, gamma, mean_dy, mean_dy_xhat;
  bool batch_stats;
  U2PL_HD T operator()(T x, T dy) const {
    if (!batch_stats) return dy * gamma * invstd;
    const T xhat = (x - mean) * invstd;
    return gamma * invstd * (dy - mean_dy - xhat * mean_dy_xhat);
  }
};

struct ReluForward {
  template <class T>
  U2PL_HD T operator()(T x) const { return x > T(0) ? x : T(0); }
};
// Uses the output, so it also serves the in-place forward.
struct ReluBackward {
  template <class T>
  U2PL_HD T operator()(T y, T dy) const { return y > T(0) ? dy : T(0); }
};

// Dropout2d keep-scale for channel draw u ∈ [0, 1): survivors (u ≥ p) are scaled by 1/(1 − p).
U2PL_HD float dropout_scale(float u, float p) { return u >= p ? 1.0f / (1.0f - p) : 0.0f; }

// align_corners=True source coordinate, PyTorch's float rule: scale = (in − 1) / (out − 1)
// (0 when out == 1), src = scale · dst; taps i0 = floor(src), i1 = min(i0 + 1, in − 1).
struct LinearTap {
  int64_t i0, i1;
  float l1;  // weight of i1; i0 gets 1 − l1
};
U2PL_HD float align_corners_scale(int64_t in, int64_t out) {
  return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
}
U2PL_HD LinearTap linear_tap(int64_t dst, float scale, int64_t in) {
  const float src = scale * static_cast<float>(dst);
  int64_t i0 = static_cast<int64_t>(src);  // src ≥ 0: truncation is floor
  if (i0 > in - 1) i0 = in - 1;
  const int64_t i1 = i0 < in - 1 ? i0 + 1 : i0;
  return {i0, i1, src - static_cast<float>(i0)};
}

// PyTorch nearest (SPEC, top): src = min(floor(float32(dst) · s), in − 1), s = in / out in float32.
U2PL_HD int64_t nearest_src(int64_t dst, int64_t in, int64_t out) {
  const float s = static_cast<float>(in) / static_cast<float>(out);
  const int64_t src = static_cast<int64_t>(floorf(static_cast<float>(dst) * s));
  return src < in - 1 ? src : in - 1;
}

// The EMA teacher (SPEC §3): t ← ema·t + (1 − ema)·s.
struct EmaUpdate {
  float ema;
  U2PL_HD float operator()(float t, float s) const {
#if defined(__CUDA_ARCH__)
    // Explicit rounding: nvcc would contract this into an FMA, and the CUDA test compares the
    // teacher bitwise with the CPU's (uncontracted) result.
    return __fadd_rn(__fmul_rn(ema, t), __fmul_rn(1.0f - ema, s));
#else
    return ema * t + (1.0f - ema) * s;
#endif
  }
};

// SGD with momentum and weight decay, PyTorch's torch.optim.SGD (dampening 0, no Nesterov):
// d = g + wd·p; buf = momentum·buf + d; p -= lr·buf (buf starts at 0, so step 1 gives buf = d).
struct SgdStep {
  float momentum, weight_decay;
  U2PL_HD void operator()(float& p, float g, float& buf, float lr) const {
    const float d = g + weight_decay * p;
    buf = momentum * buf + d;
    p -= lr * buf;
  }
};

}  // namespace u2pl
