// Per-pixel and per-row math of the U2PL losses, written once for the CPU loops and the CUDA
// kernels (STYLE 9): entropy of a softmax, a class's probability rank, numpy's percentile lerp,
// the cosine norm guard, the InfoNCE / binary rows with their gradients, and a pixel's role.
// Must match torch.softmax + log(p + 1e-10), torch.sort(descending), np.percentile('linear'),
// F.cosine_similarity and F.cross_entropy(target 0). Tests: test_unsup_contrastive.cpp,
// test_reference.cpp.
#pragma once
#include <cstdint>

#include "layers/loss.h"
#include "layers/loss_math.h"

namespace u2pl {

// H = −Σ_c p_c log(p_c + 1e-10) of p = softmax(x); x points at channel 0, channels `stride` apart.
template <class T>
U2PL_HD T pixel_entropy(const T* x, int64_t C, int64_t stride) {
  const PixelSoftmax<T> sm = pixel_softmax(x, C, stride);
  T h = 0;
  for (int64_t c = 0; c < C; ++c) {
    const T p = pixel_prob(x, stride, sm, int(c));
    h -= p * hd_log(p + T(1e-10));  // the public code's 1e-10 guard
  }
  return h;
}

// O(c): the 0-based position of class c when p is sorted descending, ties kept in class order
// (a stable sort): the classes with a larger p, plus the equal ones before c.
template <class T>
U2PL_HD int64_t prob_rank(const T* p, int64_t C, int64_t stride, int64_t c) {
  const T pc = p[c * stride];
  int64_t r = 0;
  for (int64_t k = 0; k < C; ++k) {
    const T pk = p[k * stride];
    r += (pk > pc || (pk == pc && k < c)) ? 1 : 0;
  }
  return r;
}

// numpy's _lerp (method 'linear'): a + (b − a)·t, evaluated from b's side when t ≥ 0.5.
U2PL_HD double numpy_lerp(double a, double b, double t) {
#if defined(__CUDA_ARCH__)
  // Explicit rounding: nvcc would contract into an FMA, and the CUDA percentile must equal the
  // CPU's (uncontracted) one bitwise.
  const double d = __dsub_rn(b, a);
  return t >= 0.5 ? __dsub_rn(b, __dmul_rn(d, __dsub_rn(1.0, t))) : __dadd_rn(a, __dmul_rn(d, t));
#else
  const double d = b - a;
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
#endif
}

U2PL_HD float hd_sqrt(float x) { return sqrtf(x); }
U2PL_HD double hd_sqrt(double x) { return sqrt(x); }

// F.cosine_similarity's norm guard: each norm is clamped to at least 1e-8.
template <class T>
U2PL_HD T clamp_norm(T sq) {
  const T n = hd_sqrt(sq);
  return n > T(1e-8) ? n : T(1e-8);
}

// Loss of one row of similarities s[0..K) (s[0] the positive) for CE with target 0 on s / tau:
// logsumexp(s / tau) − s[0] / tau. Writes dl/ds into ds.
template <class T>
U2PL_HD T info_nce_row(const T* s, int64_t K, T tau, T* ds) {
  T m = s[0];
  for (int64_t j = 1; j < K; ++j) m = s[j] > m ? s[j] : m;
  T sum = 0;
  for (int64_t j = 0; j < K; ++j) sum += hd_exp((s[j] - m) / tau);
  for (int64_t j = 0; j < K; ++j) ds[j] = (hd_exp((s[j] - m) / tau) / sum - T(j == 0)) / tau;
  return hd_log(sum) + (m - s[0]) / tau;
}

// Appendix C (Eq. A1): Σ_j −log(e^{s0/τ} / (e^{s0/τ} + e^{sj/τ})) = Σ_j softplus((sj − s0)/τ)
// over the N = K − 1 negatives of one anchor. Writes dl/ds into ds.
template <class T>
U2PL_HD T binary_row(const T* s, int64_t K, T tau, T* ds) {
  T loss = 0;
  ds[0] = 0;
  for (int64_t j = 1; j < K; ++j) {
    const T z = (s[j] - s[0]) / tau;
    // softplus(z) and sigmoid(z) without overflow for large |z|
    const T e = hd_exp(z > T(0) ? -z : z);
    loss += (z > T(0) ? z : T(0)) + hd_log(T(1) + e);
    const T sig = z > T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    ds[j] = sig / tau;
    ds[0] -= sig / tau;
  }
  return loss;
}

// Which unlabeled pixels may give negatives (the ablation of paper Tables 4 and 6): the
// unreliable ones, H ≥ γ_t (the high mask: the method), the reliable ones, H < γ_t (a pseudo-label
// and not in the high mask), or every pixel with a pseudo-label.
enum class NegativeSource : uint8_t { Unreliable, Reliable, All };

// What one pixel is to class c in the contrastive loss (SPEC §2.3). label: y or ŷ (255 none);
// low/high: the entropy masks (labeled pixels: label ≠ 255); pc = p(c); rank = O(c).
struct PixelRole {
  bool low_valid, anchor, prototype, negative;
};
struct ContrastRule {
  float delta_p, delta_n;
  int64_t low_rank, high_rank;
  bool prototype_low_valid, negatives_label_mask;  // the §7 switches of the official code
  bool prt;                                        // ablation: false drops the rank conditions
  NegativeSource negative_source;                  // ablation: which unlabeled pixels qualify

  U2PL_HD PixelRole operator()(bool labeled, int32_t label, bool low, bool high, float pc,
                               int64_t rank, int32_t c) const {
    PixelRole r;
    r.low_valid = label == c && low;
    r.anchor = r.low_valid && pc > delta_p;
    r.prototype = prototype_low_valid ? r.low_valid : r.anchor;
    // labeled pixels always take the high mask (label ≠ 255); unlabeled ones the chosen source
    const bool pseudo = label != kIgnoreLabel;
    const bool source = labeled || negative_source == NegativeSource::Unreliable ? high
                        : negative_source == NegativeSource::Reliable           ? pseudo && !high
                                                                                : pseudo;
    const bool top = !prt || rank < low_rank, mid = !prt || (rank >= low_rank && rank < high_rank);
    if (negatives_label_mask) {
      // public code: p(c) < δn on the high-valid mask (label == c), times "c in the top r_l and
      // label ≠ c" on labeled images (so never) or "r_l ≤ O(c) < r_h" on unlabeled ones
      const bool ranked = labeled ? (top && label != c) : mid;
      r.negative = pc < delta_n && label == c && source && ranked;
    } else {
      // Eq. 14 (labeled: y ≠ c, O(c) < r_l) and Eq. 15 (unlabeled: unreliable, r_l ≤ O(c) < r_h)
      r.negative = labeled ? (source && label != c && top) : (source && mid);
    }
    return r;
  }
};

}  // namespace u2pl
