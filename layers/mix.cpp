// Box mixing: checks, CPU path and dispatch (layers/mix.h).
#include "layers/mix.h"

namespace u2pl {

template <class T>
void box_mix_cpu(const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W, const T* in, T* out) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < B * C; ++p) {
    const int64_t b = p / C, c = p % C, other = (b + 1) % B;
    const Box& bx = boxes[b];
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const bool inside = y >= bx.y0 && y < bx.y0 + bx.h && x >= bx.x0 && x < bx.x0 + bx.w;
        out[(p * H + y) * W + x] = in[((inside ? other * C + c : p) * H + y) * W + x];
      }
  }
}

template void box_mix_cpu<float>(const std::vector<Box>&, int64_t, int64_t, int64_t, int64_t, const float*, float*);
template void box_mix_cpu<int32_t>(const std::vector<Box>&, int64_t, int64_t, int64_t, int64_t, const int32_t*,
                                   int32_t*);

template <class T>
static void mix(Context& ctx, const std::vector<Box>& boxes, View<T> in, View<T> out, int ndim) {
  U2PL_CHECK(in.shape.ndim == ndim && in.shape == out.shape && in.data != out.data,
             "box mix: expected two distinct tensors of one " << ndim << "-D shape, got " << in.shape.str()
                                                              << " and " << out.shape.str());
  check_device(in, ctx.device(), "box mix input");
  check_device(out, ctx.device(), "box mix output");
  const int64_t B = in.shape[0], C = ndim == 4 ? in.shape[1] : 1, H = in.shape[ndim - 2], W = in.shape[ndim - 1];
  U2PL_CHECK(static_cast<int64_t>(boxes.size()) == B, "box mix: " << boxes.size() << " boxes for " << B << " images");
  for (const Box& b : boxes)
    U2PL_CHECK(b.x0 >= 0 && b.y0 >= 0 && b.w >= 0 && b.h >= 0 && b.x0 + b.w <= W && b.y0 + b.h <= H,
               "box mix: box (" << b.x0 << ", " << b.y0 << ", " << b.w << "x" << b.h << ") outside " << H << "x" << W);
  if (ctx.device() == Device::CUDA) return box_mix_cuda(ctx, boxes, B, C, H, W, in.data, out.data);
  box_mix_cpu<T>(boxes, B, C, H, W, in.data, out.data);
}

void box_mix(Context& ctx, const std::vector<Box>& boxes, TensorView in, TensorView out) { mix(ctx, boxes, in, out, 4); }
void box_mix(Context& ctx, const std::vector<Box>& boxes, LabelView in, LabelView out) { mix(ctx, boxes, in, out, 3); }

}  // namespace u2pl
