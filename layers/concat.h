// Channel concat and its adjoint, channel split, on CPU and CUDA. Must match torch.cat(dim=1).
// Tests: test_layers_grad.cpp, test_layers_fixtures.cpp, test_cuda_layers.cpp.
#pragma once
#include <vector>

#include "engine/context.h"

namespace u2pl {

// y (N, Σc_i, H, W) = [x_0 | x_1 | ...] along channels.
void concat_channels(Context& ctx, const std::vector<TensorView>& xs, TensorView y);
// The backward of concat: dx_i = beta*dx_i + the matching channel block of dy. Undefined
// (null) dx_i are skipped.
void split_channels(Context& ctx, TensorView dy, const std::vector<TensorView>& dxs, float beta);

// Copies a (N, c, H, W) block between tensors that differ only in channel count:
// dst[:, d0:d0+c] = beta*dst[:, d0:d0+c] + src[:, s0:s0+c].
template <class T>
void channel_block_copy_cpu(int64_t N, int64_t c, int64_t HW, const T* src, int64_t src_c,
                            int64_t s0, T* dst, int64_t dst_c, int64_t d0, T beta);
void channel_block_copy_cuda(Context& ctx, int64_t N, int64_t c, int64_t HW, const float* src,
                             int64_t src_c, int64_t s0, float* dst, int64_t dst_c, int64_t d0,
                             float beta);

}  // namespace u2pl
