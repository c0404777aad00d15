// Channel concat and split: CPU path and dispatch (layers/concat.h).
#include "layers/concat.h"

#include "engine/math.h"

namespace u2pl {

template <class T>
void channel_block_copy_cpu(int64_t N, int64_t c, int64_t HW, const T* src, int64_t src_c,
                            int64_t s0, T* dst, int64_t dst_c, int64_t d0, T beta) {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < N * c; ++k) {
    const int64_t n = k / c, ch = k % c;
    const T* s = src + (n * src_c + s0 + ch) * HW;
    T* d = dst + (n * dst_c + d0 + ch) * HW;
    for (int64_t i = 0; i < HW; ++i) d[i] = blend(s[i], d[i], beta);
  }
}

template void channel_block_copy_cpu<float>(int64_t, int64_t, int64_t, const float*, int64_t,
                                            int64_t, float*, int64_t, int64_t, float);
template void channel_block_copy_cpu<double>(int64_t, int64_t, int64_t, const double*, int64_t,
                                             int64_t, double*, int64_t, int64_t, double);

static void block_copy(Context& ctx, int64_t N, int64_t c, int64_t HW, const float* src,
                       int64_t src_c, int64_t s0, float* dst, int64_t dst_c, int64_t d0, float beta) {
  if (ctx.device() == Device::CUDA)
    return channel_block_copy_cuda(ctx, N, c, HW, src, src_c, s0, dst, dst_c, d0, beta);
  channel_block_copy_cpu<float>(N, c, HW, src, src_c, s0, dst, dst_c, d0, beta);
}

static void check_parts(const std::vector<TensorView>& xs, const TensorView& y, Device dev,
                        const char* op) {
  U2PL_CHECK(!xs.empty(), op << ": no parts");
  U2PL_CHECK(y.shape.ndim == 4, op << ": expected a 4-D tensor, got " << y.shape.str());
  check_device(y, dev, op);
  int64_t c = 0;
  for (const TensorView& x : xs) {
    U2PL_CHECK(x.shape.ndim == 4 && x.shape.n() == y.shape.n() && x.shape.h() == y.shape.h() &&
                   x.shape.w() == y.shape.w(),
               op << ": part " << x.shape.str() << " does not match " << y.shape.str()
                  << " outside the channel dimension");
    if (x.defined()) check_device(x, dev, op);
    c += x.shape.c();
  }
  U2PL_CHECK(c == y.shape.c(), op << ": parts have " << c << " channels in all, the whole has "
                                  << y.shape.c());
}

void concat_channels(Context& ctx, const std::vector<TensorView>& xs, TensorView y) {
  check_parts(xs, y, ctx.device(), "concat");
  const int64_t HW = y.shape.h() * y.shape.w();
  int64_t off = 0;
  for (const TensorView& x : xs) {
    U2PL_CHECK(x.defined(), "concat: undefined input part");
    block_copy(ctx, y.shape.n(), x.shape.c(), HW, x.data, x.shape.c(), 0, y.data, y.shape.c(), off, 0.f);
    off += x.shape.c();
  }
}

void split_channels(Context& ctx, TensorView dy, const std::vector<TensorView>& dxs, float beta) {
  check_parts(dxs, dy, ctx.device(), "split");
  const int64_t HW = dy.shape.h() * dy.shape.w();
  int64_t off = 0;
  for (const TensorView& dx : dxs) {
    if (dx.defined())
      block_copy(ctx, dy.shape.n(), dx.shape.c(), HW, dy.data, dy.shape.c(), off, dx.data,
                 dx.shape.c(), 0, beta);
    off += dx.shape.c();
  }
}

}  // namespace u2pl
