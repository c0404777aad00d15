// The float32 oneDNN convolution of the CPU layer against the im2col + GEMM oracle (whose
// gradients test_layers_grad.cpp checks in double): forward, input gradient with beta 0 and 1,
// accumulated weight and bias gradients, over strides, dilations, odd sizes and 1x1 kernels.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "layers/conv2d.h"
#include "tests/gradcheck.h"

using namespace u2pl;

namespace {

void expect_close(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  REQUIRE(a.size() == b.size());
  size_t worst = 0;
  double err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(double(a[i]) - b[i]) / (1e-4 + 1e-4 * std::fabs(double(b[i])));
    if (e > err) err = e, worst = i;
  }
  INFO(what << ": worst at " << worst << ": " << a[worst] << " vs oracle " << b[worst]);
  CHECK(err <= 1.0);
}

// max_scratch > 0: the context's workspace after both passes stays within it.
void dnnl_case(const Conv2dSpec& s, Shape xs, size_t max_scratch = 0) {
  Context ctx(Device::CPU);
  ParamSet ps;
  Conv2d conv(ps, "c", s);
  ps.allocate(Device::CPU);
  ps.initialize(3);
  if (s.bias) copy_tensor(ps.value(conv.bias_id()), Tensor::from_host(Shape{s.cout}, test::random_floats(s.cout, 9), Device::CPU).view());
  const Shape ys = conv.out_shape(xs);
  Tensor x = Tensor::from_host(xs, test::random_floats(xs.numel(), 4), Device::CPU);
  Tensor dy = Tensor::from_host(ys, test::random_floats(ys.numel(), 5), Device::CPU);
  Tensor y(ys, Device::CPU);
  conv.forward(ctx, x, y);
  const auto w = to_host(ps.value(conv.weight_id()));
  const auto b = s.bias ? to_host(ps.value(conv.bias_id())) : std::vector<float>();
  std::vector<float> col(std::max<int64_t>(1, conv2d_col_floats(s, xs))), yr(ys.numel());
  conv2d_forward_cpu<float>(s, xs, x.data(), w.data(), s.bias ? b.data() : nullptr, yr.data(), col.data());
  expect_close(y.to_host(), yr, "forward");

  // Backward twice: dx with beta 0 then beta 1 (doubles it), dw/db accumulate across calls.
  Tensor dx(xs, Device::CPU);
  conv.backward(ctx, x, dy, dx, 0.f);
  conv.backward(ctx, x, dy, dx, 1.f);
  std::vector<float> dxr(xs.numel()), dwr(w.size(), 0.f), dbr(s.cout, 0.f);
  conv2d_backward_cpu<float>(s, xs, x.data(), w.data(), dy.data(), dxr.data(), 0.f, dwr.data(),
                             s.bias ? dbr.data() : nullptr, col.data());
  for (auto* v : {&dxr, &dwr, &dbr})
    for (float& e : *v) e *= 2;
  expect_close(dx.to_host(), dxr, "dx");
  expect_close(to_host(ps.grad(conv.weight_id())), dwr, "dw");
  if (s.bias) expect_close(to_host(ps.grad(conv.bias_id())), dbr, "db");
  if (max_scratch > 0) CHECK(ctx.workspace_bytes() <= max_scratch);
  // No input gradient requested: weights still accumulate.
  conv.backward(ctx, x, dy, TensorView(), 0.f);
  for (float& e : dwr) e *= 1.5f;
  expect_close(to_host(ps.grad(conv.weight_id())), dwr, "dw without dx");
}

}  // namespace

TEST_CASE("oneDNN convolution matches the im2col oracle") {
  SUBCASE("3x3 s1 bias") { dnnl_case({8, 16, 3, 3, 1, 1, 1, true}, Shape{2, 8, 9, 7}); }
  SUBCASE("3x3 s2") { dnnl_case({3, 8, 3, 3, 2, 1, 1, false}, Shape{2, 3, 11, 10}); }
  SUBCASE("3x3 dilation 2") { dnnl_case({16, 8, 3, 3, 1, 2, 2, false}, Shape{1, 16, 9, 9}); }
  SUBCASE("3x3 dilation 12 on a small map") { dnnl_case({8, 8, 3, 3, 1, 12, 12, false}, Shape{2, 8, 9, 9}); }
  SUBCASE("3x3 dilation 36 larger than the map") { dnnl_case({8, 4, 3, 3, 1, 36, 36, false}, Shape{1, 8, 9, 9}); }
  SUBCASE("1x1 bias") { dnnl_case({16, 32, 1, 1, 1, 0, 1, true}, Shape{2, 16, 5, 5}); }
  SUBCASE("1x1 stride 2 downsample") { dnnl_case({16, 32, 1, 1, 2, 0, 1, false}, Shape{2, 16, 9, 9}); }
  SUBCASE("stride 2 floor output") { dnnl_case({4, 4, 3, 3, 2, 0, 1, false}, Shape{1, 4, 8, 8}); }
  // oneDNN's gradients of an ASPP-sized dilated conv would take many images' columns as scratch
  // (the weights': about ten copies of the weights); the layer forms them by im2col and GEMM one
  // image at a time instead.
  SUBCASE("ASPP-sized dilation 12: gradients in little scratch") {
    dnnl_case({1024, 256, 3, 3, 1, 12, 12, true}, Shape{2, 1024, 17, 17}, size_t(32) << 20);
  }
}
