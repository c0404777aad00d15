// The contrastive loss's CUDA scratch (u2pl/losses/contrastive.cu): 256-byte aligned pieces of
// one Context::workspace() block. The memory figures (u2pl/train/train_step.h) lay it out the same
// way, with bounds for the pieces only the CUDA libraries know. Covered by the `cuda` suite
// (test_cuda_train.cpp: a step's workspace within its figure).
#pragma once
#include <cstdint>

#include "engine/workspace_plan.h"

namespace u2pl {

// The bound the figures use for the loss's plan record (contrastive.cu checks it).
constexpr size_t kContrastivePlanBound = size_t(16) << 10;

struct ContrastiveScratch {
  // C classes, P pixels (the batch at feature resolution), D feature channels, M queries a class,
  // K rows a query (the positive and the negatives); grad: the feature gradient too; cub: the CUB
  // passes' temporary storage; plan: the plan record's size.
  ContrastiveScratch(int64_t C, int64_t P, int64_t D, int64_t M, int64_t K, bool grad, size_t cub, size_t plan) {
    WorkspacePlan w;
    const size_t c = size_t(C), cp = size_t(C * P), items = size_t(C * M), p = size_t(P), d = size_t(D),
                 k = size_t(K);
    counts = w.add((4 * c + 1) * sizeof(uint64_t));
    sel = w.add(3 * sizeof(int64_t));
    acls = w.add(p * sizeof(int32_t));
    pcls = w.add(p * sizeof(int32_t));
    nflag = w.add(cp);
    alist = w.add(p * sizeof(int32_t));
    plist = w.add(p * sizeof(int32_t));
    nlist = w.add(cp * sizeof(int32_t));
    this->plan = w.add(plan);
    proto = w.add(c * d * sizeof(float));
    loss = w.add(items * sizeof(float));
    pix = w.add(4 * items * sizeof(int32_t));
    this->grad = w.add(grad ? items * d * sizeof(float) : 0);
    tmp = w.add(cub);
    z = w.add(items * d * sizeof(float));
    rows = w.add(items * k * d * sizeof(float));
    rowk = w.add(4 * items * k * sizeof(float));  // nb, dots, u, ds
    nz = w.add(3 * items * sizeof(float));
    zeros = w.add(k * d * sizeof(float));
    ptr = w.add(5 * items * sizeof(float*));
    bytes = w.bytes();
  }
  size_t counts, sel, acls, pcls, nflag, alist, plist, nlist, plan, proto, loss, pix, grad, tmp, z, rows, rowk, nz,
      zeros, ptr;
  size_t bytes;
};

// A bound on the CUB passes' temporary storage (selections over C·P flags, a sort of C·M pairs):
// their tile states take far less than a byte an item, the sort two copies of its pairs.
inline size_t contrastive_cub_bound(int64_t C, int64_t P, int64_t M) {
  return (size_t(16) << 20) + size_t(C * P) + 16 * size_t(C * M);
}

}  // namespace u2pl
