// The contrastive loss on CUDA (u2pl/losses/contrastive.h) over the rules of
// u2pl/losses/semi_math.h, with no host round trip: the counts that decide shapes stay on the
// device and the scratch is sized for the most there can be. Roles -> CUB selects (pixel order) ->
// a one-thread plan -> pushes, prototypes -> one block per drawn anchor gathering its rows (the
// CPU's Philox indices) -> the similarities by batched cuBLAS GEMV -> loss rows -> the gradient by
// a second batched GEMV -> per-pixel gradient sums in the CPU's order. Fixed-order reductions,
// integer atomics only, and cuBLAS's run-to-run reproducibility. Tests: test_cuda_losses.cpp.
#include <thrust/iterator/counting_iterator.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include <algorithm>

#include "engine/cuda/launch.cuh"
#include "engine/profile.h"
#include "u2pl/losses/contrastive.h"
#include "u2pl/losses/contrastive_scratch.h"

namespace u2pl {
namespace {

using ull = unsigned long long;
constexpr int kMaxClasses = 255;  // label 255 is "none", so class indices stop below it

// Pixels k = (image, row, column) over [labeled | unlabeled]; a (B, D, h, w) map holds channel e
// of pixel k at base(k) + e·HW.
struct Geom {
  int64_t C, D, HW, Pl, P;  // classes, feature size, pixels an image, labeled pixels, all pixels
  __device__ int64_t base(int64_t k) const { return (k / HW) * D * HW + k % HW; }
};

// Role counts, (4, C): low-valid, anchor, prototype and negative pixels per class.
enum Role { kLowValid = 0, kAnchor = 1, kProto = 2, kNeg = 3 };

// What the one-thread plan decides, read by the later kernels.
struct Plan {
  int terms, listed;  // terms formed; classes in the loop list (the normaliser)
  double inv;         // 1 / (listed·M) InfoNCE, 1 / (terms·M·N) binary
  int32_t term_anchor[kMaxClasses], term_queue[kMaxClasses];  // per term: anchor class, queue class
  int64_t anchor_start[kMaxClasses], proto_start[kMaxClasses], neg_start[kMaxClasses];  // list offsets
  int64_t push_first[kMaxClasses], push_tail[kMaxClasses];  // ring_push of this step's negatives
  int64_t keep_start[kMaxClasses + 1];  // prefix sums of the rows each push keeps (count − first)
};
static_assert(sizeof(Plan) <= kContrastivePlanBound, "the memory figures' bound on the plan record");

// anchor_cls, proto_cls (P): the class a pixel is an anchor / prototype pixel of (at most one:
// both need label == c), −1 for none; neg_flag (C, P); counts (4, C) += the roles; *first_bad =
// min pixel whose label is outside [0, C) ∪ {255} (it takes no role).
__global__ void roles_kernel(Geom g, ContrastRule rule, const float* prob_l, const float* prob_u,
                             const int32_t* label_l, const int32_t* label_u, const uint8_t* low, const uint8_t* high,
                             int32_t* anchor_cls, int32_t* proto_cls, uint8_t* neg_flag, ull* counts,
                             ull* first_bad) {
  extern __shared__ unsigned int hist[];  // (4, C) this block's counts
  for (int64_t i = threadIdx.x; i < 4 * g.C; i += blockDim.x) hist[i] = 0;
  __syncthreads();
  ull bad = kNoPixel;
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const bool labeled = k < g.Pl;
    const int64_t j = labeled ? k : k - g.Pl;
    const float* pr = (labeled ? prob_l : prob_u) + (j / g.HW) * g.C * g.HW + j % g.HW;
    const int32_t y = (labeled ? label_l : label_u)[j];
    const bool ok = label_ok(y, int(g.C), kIgnoreLabel);
    if (!ok) bad = static_cast<ull>(k) < bad ? static_cast<ull>(k) : bad;
    int32_t a_cls = -1, p_cls = -1;
    for (int64_t c = 0; c < g.C; ++c) {
      PixelRole r{false, false, false, false};
      if (ok) r = rule(labeled, y, low[k] != 0, high[k] != 0, pr[c * g.HW], prob_rank(pr, g.C, g.HW, c), int32_t(c));
      if (r.low_valid) atomicAdd(&hist[kLowValid * g.C + c], 1u);
      if (r.anchor) {
        a_cls = int32_t(c);
        atomicAdd(&hist[kAnchor * g.C + c], 1u);
      }
      if (r.prototype) {
        p_cls = int32_t(c);
        atomicAdd(&hist[kProto * g.C + c], 1u);
      }
      if (r.negative) atomicAdd(&hist[kNeg * g.C + c], 1u);
      neg_flag[c * g.P + k] = r.negative;
    }
    anchor_cls[k] = a_cls;
    proto_cls[k] = p_cls;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < 4 * g.C; i += blockDim.x)
    if (hist[i]) atomicAdd(&counts[i], static_cast<ull>(hist[i]));
  if (bad != kNoPixel) atomicMin(first_bad, bad);
}

// Flat index f = c·P + k selected when pixel k belongs to class c in cls (P).
struct InClass {
  const int32_t* cls;
  int32_t P;
  __device__ bool operator()(int32_t f) const { return cls[f % P] == f / P; }
};

struct PlanArgs {
  int C;
  int64_t M, N;
  bool push;          // push this batch's negatives (not LossOnly)
  bool fresh_queues;  // push into emptied queues (PushThenLoss without the memory bank)
  bool queue_index_bug, normalise_valid_classes, binary;
};

// One thread: list offsets, this step's ring pushes (committed to the bank's heads and sizes, as
// the CPU pushes before sampling; from empty queues without the bank; none in LossOnly), the loop
// list and its terms, exactly as contrastive_loss_cpu decides them.
__global__ void plan_kernel(PlanArgs a, const ull* counts, DeviceQueues q, Plan* plan) {
  const int C = a.C;
  int64_t an = 0, pr = 0, ng = 0;
  plan->keep_start[0] = 0;
  for (int c = 0; c < C; ++c) {
    plan->anchor_start[c] = an;
    plan->proto_start[c] = pr;
    plan->neg_start[c] = ng;
    an += static_cast<int64_t>(counts[kAnchor * C + c]);
    pr += static_cast<int64_t>(counts[kProto * C + c]);
    ng += static_cast<int64_t>(counts[kNeg * C + c]);
    const int64_t n = a.push ? static_cast<int64_t>(counts[kNeg * C + c]) : 0;
    const RingPush r = ring_push(q.capacity[c], a.fresh_queues ? 0 : q.head[c], a.fresh_queues ? 0 : q.size[c], n);
    plan->push_first[c] = r.first;
    plan->push_tail[c] = r.tail;
    plan->keep_start[c + 1] = plan->keep_start[c] + n - r.first;
    q.head[c] = r.head;
    q.size[c] = r.size;
  }
  // The loop list: classes with low-valid pixels (official) or with anchors (paper); entry i takes
  // the anchors of class i (official index bug) or list[i] and the queue of list[i].
  int listed = 0, terms = 0;
  for (int c = 0; c < C; ++c) {
    if (!(a.normalise_valid_classes ? counts[kLowValid * C + c] > 0 : counts[kAnchor * C + c] > 0)) continue;
    const int ac = a.queue_index_bug ? listed : c;
    ++listed;
    if (counts[kAnchor * C + ac] > 0 && q.size[c] > 0) {
      plan->term_anchor[terms] = ac;
      plan->term_queue[terms] = c;
      ++terms;
    }
  }
  if (a.normalise_valid_classes && listed <= 1) terms = 0;
  plan->terms = terms;
  plan->listed = listed;
  plan->inv = terms == 0 ? 0.0
              : a.binary ? 1.0 / (double(terms) * double(a.M) * double(a.N))
                         : 1.0 / (double(listed) * double(a.M));
}

// neg_list (Σ negatives, class c's pixels k as c·P + k) -> the queues: only the rows ring_push
// keeps (the newest capacity of each class; the others would be overwritten within this push),
// one warp per kept row with the lanes over its D channels, so each queue row is written whole.
// Kept row i of class c is list entry neg_start[c] + push_first[c] + i and lands in slot
// (push_tail[c] + i) mod capacity.
__global__ void push_kernel(Geom g, DeviceQueues q, const int32_t* neg_list, const Plan* plan, const float* rep_t) {
  const int64_t kept = plan->keep_start[g.C];
  for (int64_t w = warp_start(); w < kept; w += warp_step()) {
    int c = 0;
    while (plan->keep_start[c + 1] <= w) ++c;  // few classes: a linear search
    const int64_t i = w - plan->keep_start[c];
    const int64_t k = neg_list[plan->neg_start[c] + plan->push_first[c] + i] - int64_t(c) * g.P;
    const float* src = rep_t + g.base(k);
    float* dst = q.data + (q.offset[c] + (plan->push_tail[c] + i) % q.capacity[c]) * g.D;
    for (int64_t e = lane_id(); e < g.D; e += 32) dst[e] = src[e * g.HW];
  }
}

// proto (C, D) = mean of rep_t over each class's prototype pixels, summed in double (a fixed-order
// block reduction); classes without any are left unwritten (no term reads them: a term's anchor
// class has anchors, and anchors are prototype pixels or a subset of them).
__global__ void prototype_kernel(Geom g, const ull* counts, const Plan* plan, const int32_t* proto_list,
                                 const float* rep_t, float* proto) {
  for (int64_t item = blockIdx.x; item < g.C * g.D; item += gridDim.x) {
    const int64_t c = item / g.D, e = item % g.D, n = static_cast<int64_t>(counts[kProto * g.C + c]);
    if (n == 0) continue;  // the same for the whole block
    const int64_t start = plan->proto_start[c];
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
      s += double(rep_t[g.base(proto_list[start + i] - c * g.P) + e * g.HW]);
    s = block_sum(s);
    if (threadIdx.x == 0) proto[item] = static_cast<float>(s / double(n));
  }
}

struct AnchorArgs {
  int64_t M, N;
  float tau;
  bool binary;
  PhiloxStep step;
};

// The operands of the two batched GEMVs, one per drawn anchor (t, m), t < C: item = t·M + m.
struct Operands {
  float* z;        // (items, D) the anchor's student feature
  float* rows;     // (items, K, D) the positive prototype, then the N queue rows
  float* nb;       // (items, K) clamped norms of the rows
  float* nz;       // (items, 2) the anchor's clamped norm and squared norm
  float* dots;     // (items, K) rows · z (cuBLAS), then the cosines
  float* u;        // (items, K) dl/ds_j / (|z|·|b_j|), the backward GEMV's vector
  float* cz;       // (items) Σ_j dl/ds_j·cos_j / |z|² (0 on the clamped branch)
  const float* zeros;  // K·D zeros: what items past the terms multiply
  const float** a_ptr;  // (items) each item's rows, or zeros
  const float** x_ptr;  // (items) each item's z, or zeros
  float** y_ptr;        // (items) each item's dots
  const float** u_ptr;  // (items) each item's u, or zeros
  float** g_ptr;        // (items) each item's gradient row
};

// One block per item. Past the terms formed it marks the item unused (pixel P: sorts last) and
// points the GEMVs at zeros. Otherwise: the anchor and its N queue rows from Philox (philox_below
// at the step's offsets: the CPU's indices), gathered with their norms (one warp a row, shuffle
// sums) for cuBLAS.
__global__ void gather_kernel(Geom g, AnchorArgs a, const Plan* plan, const ull* counts, DeviceQueues q,
                              const int32_t* anchor_list, const float* rep, const float* proto, Operands o,
                              float* grads, int32_t* anchor_pixel, int32_t* order) {
  extern __shared__ int64_t slots[];  // (K) queue slot of row j (j ≥ 1)
  __shared__ int64_t anchor_k;
  const int64_t K = a.N + 1, D = g.D;
  const int terms = plan->terms;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, warps = int(blockDim.x) / 32;
  for (int64_t item = blockIdx.x; item < g.C * a.M; item += gridDim.x) {
    const int64_t t = item / a.M, m = item % a.M;
    if (threadIdx.x == 0) {
      order[item] = int32_t(item);
      o.y_ptr[item] = o.dots + item * K;
      o.g_ptr[item] = grads ? grads + item * D : nullptr;
    }
    if (t >= terms) {  // the same for the whole block
      if (threadIdx.x == 0) {
        anchor_pixel[item] = int32_t(g.P);
        o.a_ptr[item] = o.x_ptr[item] = o.u_ptr[item] = o.zeros;
      }
      continue;
    }
    const int ac = plan->term_anchor[t], qc = plan->term_queue[t];
    const int64_t na = static_cast<int64_t>(counts[kAnchor * g.C + ac]), nq = q.size[qc];
    const int64_t head = q.head[qc], cap = q.capacity[qc];
    const float* queue = q.data + q.offset[qc] * D;
    float* z = o.z + item * D;
    float* rows = o.rows + item * K * D;
    if (threadIdx.x == 0) {
      const int64_t i = philox_below(a.step.seed, a.step.anchors(t), uint64_t(m), na);
      anchor_k = anchor_list[plan->anchor_start[ac] + i] - int64_t(ac) * g.P;
      anchor_pixel[item] = int32_t(anchor_k);
      o.a_ptr[item] = rows;
      o.x_ptr[item] = z;
      o.u_ptr[item] = o.u + item * K;
    }
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
      const uint64_t i = uint64_t(m * a.N + j - 1);  // negative j − 1 of anchor m
      slots[j] = j == 0 ? -1 : (head + philox_below(a.step.seed, a.step.negatives(t), i, nq)) % cap;
    }
    __syncthreads();
    const int64_t k = anchor_k;
    float part = 0;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) {
      const float v = rep[g.base(k) + e * g.HW];
      z[e] = v;
      part += v * v;
    }
    const float z2 = block_sum(part);
    if (threadIdx.x == 0) {
      o.nz[2 * item] = clamp_norm(z2);
      o.nz[2 * item + 1] = z2;
    }
    const float* pc = proto + int64_t(ac) * D;
    for (int64_t j = warp; j < K; j += warps) {
      const float* b = j == 0 ? pc : queue + slots[j] * D;
      float* out = rows + j * D;
      float b2 = 0;
      for (int64_t e = lane; e < D; e += 32) {
        const float v = b[e];
        out[e] = v;
        b2 += v * v;
      }
      for (int off = 16; off > 0; off >>= 1) b2 += __shfl_xor_sync(0xffffffffu, b2, off);
      if (lane == 0) o.nb[item * K + j] = clamp_norm(b2);
    }
    __syncthreads();  // the next item rewrites the slots
  }
}

// One thread an item, after dots = rows · z: the cosines, the loss row (the shared row functions)
// and what the backward GEMV and the scatter need: u_j = dl/ds_j / (|z|·|b_j|) and cz, so that
// dl/dz = rows^T u − cz·z.
__global__ void loss_rows_kernel(AnchorArgs a, const Plan* plan, Operands o, float* ds,
                                 float* losses) {
  const int64_t K = a.N + 1;
  const int64_t used = int64_t(plan->terms) * a.M;
  for (int64_t item = grid_start(); item < used; item += grid_step()) {
    const float nz = o.nz[2 * item], z2 = o.nz[2 * item + 1];
    float* sim = o.dots + item * K;
    const float* nb = o.nb + item * K;
    float* d = ds + item * K;
    for (int64_t j = 0; j < K; ++j) sim[j] = sim[j] / (nz * nb[j]);
    losses[item] = a.binary ? binary_row(sim, K, a.tau, d) : info_nce_row(sim, K, a.tau, d);
    const bool shrink = hd_sqrt(z2) > 1e-8f;  // F.cosine_similarity's clamped branch has no a-term
    float c = 0;
    for (int64_t j = 0; j < K; ++j) {
      o.u[item * K + j] = d[j] / (nz * nb[j]);
      c += d[j] * sim[j];
    }
    o.cz[item] = shrink ? c / z2 : 0.f;
  }
}

// One thread: loss = Σ over the items of the terms of double(loss row)·inv, in the CPU's order.
__global__ void finish_kernel(Geom g, int64_t M, const Plan* plan, const float* losses, const ull* first_bad,
                              const int32_t* label_l, const int32_t* label_u, ContrastiveResult* out) {
  ContrastiveResult r;
  const int64_t n = int64_t(plan->terms) * M;
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) loss += double(losses[i]) * plan->inv;
  r.loss = loss;
  r.terms = plan->terms;
  r.normaliser = plan->listed;
  if (*first_bad != kNoPixel) {
    const int64_t k = static_cast<int64_t>(*first_bad);
    r.bad_pixel = k;
    r.bad_label = k < g.Pl ? label_l[k] : label_u[k - g.Pl];
  }
  *out = r;
}

// drep (n) = beta·drep (blend with 0: beta 0 never reads it).
__global__ void scale_kernel(int64_t n, float* drep, float beta) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) drep[i] = blend(0.f, drep[i], beta);
}

// After the stable sort of the items by anchor pixel: at each pixel's first item, per channel,
// drep += w·(g − cz·z) over its items in item order (the CPU's order of additions), g = rows^T u
// from the backward GEMV; w = dloss·inv.
__global__ void scatter_kernel(Geom g, int64_t items, const int32_t* pixel, const int32_t* item_of, const float* grads,
                               Operands o, const Plan* plan, float dloss, float* drep) {
  const float w = static_cast<float>(double(dloss) * plan->inv);
  for (int64_t t = grid_start(); t < items * g.D; t += grid_step()) {
    const int64_t s = t / g.D, e = t % g.D;
    const int32_t k = pixel[s];
    if (k >= g.P || (s > 0 && pixel[s - 1] == k)) continue;  // unused, or not the pixel's first item
    float* out = drep + g.base(k) + e * g.HW;
    float v = *out;
    for (int64_t u = s; u < items && pixel[u] == k; ++u) {
      const int64_t it = item_of[u];
      v += w * (grads[it * g.D + e] - o.cz[it] * o.z[it * g.D + e]);
    }
    *out = v;
  }
}

}  // namespace

void contrastive_loss_cuda(Context& ctx, const ContrastiveParams& p, const ContrastiveInputs& in, MemoryBank& bank,
                           const PhiloxStep& step, float dloss, TensorView drep, float beta, ContrastiveResult* out,
                           ContrastivePhase phase) {
  const int64_t nl = in.label_l.shape[0], HW = in.rep.shape.h() * in.rep.shape.w();
  const Geom g{p.num_classes, in.rep.shape.c(), HW, nl * HW, in.rep.shape.n() * HW};
  const int64_t C = g.C, P = g.P, D = g.D, M = p.num_queries, N = p.num_negatives, K = N + 1;
  U2PL_CHECK(C <= kMaxClasses, "contrastive loss on CUDA: at most " << kMaxClasses << " classes, got " << C);
  U2PL_CHECK(C * P <= INT32_MAX && C * M <= INT32_MAX,
             "contrastive loss on CUDA: " << C << " classes × " << P << " pixels exceed the int32 lists");
  const size_t gather_shm = size_t(K) * sizeof(int64_t);
  constexpr size_t kStaticShm = 256;  // gather_kernel's own: anchor_k and the block reduction (64 B on sm_90)
  U2PL_CHECK(gather_shm + kStaticShm <= 48 * 1024,
             "contrastive loss on CUDA: " << N << " negatives a query are too many (at most "
                                          << (48 * 1024 - kStaticShm) / sizeof(int64_t) - 1 << ")");
  U2PL_CHECK(K * D <= INT32_MAX, "contrastive loss on CUDA: " << K << " rows of " << D
                                                              << " floats a query exceed cuBLAS's int32 sizes");
  for (int c = 0; c < C; ++c)  // philox_below draws below 2^32, as the CPU's PhiloxIndexSource
    U2PL_CHECK(bank.capacity(c) <= int64_t(UINT32_MAX), "contrastive loss on CUDA: queue " << c << " holds "
                                                                                           << bank.capacity(c)
                                                                                           << " rows, at most 2^32 - 1");
  cudaStream_t st = stream_of(ctx);
  const DeviceQueues q = bank.device_queues();
  const thrust::counting_iterator<int32_t> flat(0);
  const int64_t CP = C * P, items = C * M;

  // Scratch sizes: the CUB passes first (queries launch nothing).
  size_t sel_bytes = 0, b = 0;
  CUDA_CHECK(cub::DeviceSelect::If(nullptr, b, flat, static_cast<int32_t*>(nullptr), static_cast<int64_t*>(nullptr),
                                   CP, InClass{nullptr, int32_t(P)}));
  sel_bytes = std::max(sel_bytes, b);
  CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, b, flat, static_cast<const uint8_t*>(nullptr),
                                        static_cast<int32_t*>(nullptr), static_cast<int64_t*>(nullptr), CP));
  sel_bytes = std::max(sel_bytes, b);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, b, static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), items));
  const size_t sort_bytes = b;
  const size_t cub_bytes = std::max(sel_bytes, sort_bytes);
  U2PL_CHECK(cub_bytes <= contrastive_cub_bound(C, P, M), "contrastive loss on CUDA: CUB asks for "
                                                              << cub_bytes << " bytes of scratch, beyond the "
                                                              << contrastive_cub_bound(C, P, M)
                                                              << " the memory figures count");
  const ContrastiveScratch w(C, P, D, M, K, drep.defined(), cub_bytes, sizeof(Plan));
  char* ws = static_cast<char*>(ctx.workspace(w.bytes));
  auto* counts = reinterpret_cast<ull*>(ws + w.counts);  // (4, C) role counts, then the first bad pixel
  ull* first_bad = counts + 4 * C;
  auto* selected = reinterpret_cast<int64_t*>(ws + w.sel);  // anchors, prototype pixels, negatives
  auto* anchor_cls = reinterpret_cast<int32_t*>(ws + w.acls);
  auto* proto_cls = reinterpret_cast<int32_t*>(ws + w.pcls);
  auto* neg_flag = reinterpret_cast<uint8_t*>(ws + w.nflag);
  auto* anchor_list = reinterpret_cast<int32_t*>(ws + w.alist);
  auto* proto_list = reinterpret_cast<int32_t*>(ws + w.plist);
  auto* neg_list = reinterpret_cast<int32_t*>(ws + w.nlist);
  auto* plan = reinterpret_cast<Plan*>(ws + w.plan);
  auto* proto = reinterpret_cast<float*>(ws + w.proto);
  auto* losses = reinterpret_cast<float*>(ws + w.loss);
  auto* pixel = reinterpret_cast<int32_t*>(ws + w.pix);  // (4, items): pixel, item, both sorted by pixel
  int32_t *item_of = pixel + items, *pixel_sorted = pixel + 2 * items, *item_sorted = pixel + 3 * items;
  float* grads = drep.defined() ? reinterpret_cast<float*>(ws + w.grad) : nullptr;
  void* tmp = ws + w.tmp;
  Operands o;
  o.z = reinterpret_cast<float*>(ws + w.z);
  o.rows = reinterpret_cast<float*>(ws + w.rows);
  o.nb = reinterpret_cast<float*>(ws + w.rowk);
  o.dots = o.nb + items * K;
  o.u = o.dots + items * K;
  float* ds = o.u + items * K;
  o.nz = reinterpret_cast<float*>(ws + w.nz);
  o.cz = o.nz + 2 * items;
  auto* zeros = reinterpret_cast<float*>(ws + w.zeros);
  o.zeros = zeros;
  auto** ptrs = reinterpret_cast<float**>(ws + w.ptr);
  o.a_ptr = const_cast<const float**>(ptrs);
  o.x_ptr = const_cast<const float**>(ptrs + items);
  o.y_ptr = ptrs + 2 * items;
  o.u_ptr = const_cast<const float**>(ptrs + 3 * items);
  o.g_ptr = ptrs + 4 * items;

  CUDA_CHECK(cudaMemsetAsync(counts, 0, 4 * size_t(C) * sizeof(ull), st));
  CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof(ull), st));  // kNoPixel
  const ContrastRule rule{p.delta_p, p.delta_n, p.low_rank, p.high_rank, p.prototype_low_valid,
                          p.negatives_label_mask, p.prt, p.negative_source};
  roles_kernel<<<grid_for(ctx, P), kBlock, 4 * size_t(C) * sizeof(unsigned int), st>>>(
      g, rule, in.prob_l.data, in.prob_u.data, in.label_l.data, in.label_u.data, in.low.data, in.high.data, anchor_cls,
      proto_cls, neg_flag, counts, first_bad);
  CUDA_CHECK_LAUNCH();
  b = sel_bytes;
  CUDA_CHECK(cub::DeviceSelect::If(tmp, b, flat, anchor_list, selected, CP, InClass{anchor_cls, int32_t(P)}, st));
  b = sel_bytes;
  CUDA_CHECK(cub::DeviceSelect::If(tmp, b, flat, proto_list, selected + 1, CP, InClass{proto_cls, int32_t(P)}, st));
  b = sel_bytes;
  CUDA_CHECK(cub::DeviceSelect::Flagged(tmp, b, flat, static_cast<const uint8_t*>(neg_flag), neg_list, selected + 2,
                                        CP, st));
  CUDA_CHECK_LAUNCH();
  const PlanArgs pa{int(C),
                    M,
                    N,
                    phase != ContrastivePhase::LossOnly,
                    !p.memory_bank && phase == ContrastivePhase::PushThenLoss,
                    p.queue_index_bug,
                    p.normalise_valid_classes,
                    p.binary};
  plan_kernel<<<1, 1, 0, st>>>(pa, counts, q, plan);
  CUDA_CHECK_LAUNCH();
  if (phase != ContrastivePhase::LossOnly) {
    const ProfileScope prof(ctx, "memory bank push");
    push_kernel<<<grid_for(ctx, CP * 32), kBlock, 0, st>>>(g, q, neg_list, plan, in.rep_teacher.data);
    CUDA_CHECK_LAUNCH();
  }
  if (phase == ContrastivePhase::PushOnly) return;
  prototype_kernel<<<blocks_for(ctx, C * D), kBlock, 0, st>>>(g, counts, plan, proto_list, in.rep_teacher.data, proto);
  CUDA_CHECK_LAUNCH();
  const AnchorArgs aa{M, N, p.temperature, p.binary, step};
  CUDA_CHECK(cudaMemsetAsync(zeros, 0, size_t(K * D) * sizeof(float), st));
  gather_kernel<<<blocks_for(ctx, items), kBlock, gather_shm, st>>>(g, aa, plan, counts, q, anchor_list, in.rep.data,
                                                                     proto, o, grads, pixel, item_of);
  CUDA_CHECK_LAUNCH();
  // The similarities through cuBLAS: per item, dots (K) = rows (K, D) · z, i.e. the column-major
  // (D, K) matrix transposed; the items past the terms multiply zeros. cuBLAS is bitwise
  // reproducible on one GPU with one stream, which the context has.
  cublasHandle_t h = ctx.cuda().cublas;
  const float one = 1.f, zero = 0.f;
  const int di = int(D), ki = int(K), bi = int(items);
  CUBLAS_CHECK(cublasSgemvBatched(h, CUBLAS_OP_T, di, ki, &one, o.a_ptr, di, o.x_ptr, 1, &zero, o.y_ptr, 1, bi));
  loss_rows_kernel<<<grid_for(ctx, items), kBlock, 0, st>>>(aa, plan, o, ds, losses);
  CUDA_CHECK_LAUNCH();
  finish_kernel<<<1, 1, 0, st>>>(g, M, plan, losses, first_bad, in.label_l.data, in.label_u.data, out);
  CUDA_CHECK_LAUNCH();
  if (!drep.defined()) return;
  const int64_t n = drep.numel();
  scale_kernel<<<grid_for(ctx, n), kBlock, 0, st>>>(n, drep.data, beta);
  CUDA_CHECK_LAUNCH();
  // The gradient's GEMV: grads (D) = rows^T u per item, the column-major (D, K) matrix as it is.
  CUBLAS_CHECK(cublasSgemvBatched(h, CUBLAS_OP_N, di, ki, &one, o.a_ptr, di, o.u_ptr, 1, &zero, o.g_ptr, 1, bi));
  b = sort_bytes;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp, b, pixel, pixel_sorted, item_of, item_sorted, items, 0, 32, st));
  CUDA_CHECK_LAUNCH();
  scatter_kernel<<<grid_for(ctx, items * D), kBlock, 0, st>>>(g, items, pixel_sorted, item_sorted, grads, o, plan,
                                                              dloss, drep.data);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
