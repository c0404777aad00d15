// Conv2d on CUDA: cuDNN's convolution forward, backward-data and backward-filter (algorithms from
// the _v7 heuristics; deterministic ones and FMA math, no TF32, when the context asks), bias add
// and bias gradient as own kernels (the gradient a fixed-order block sum). Must match
// torch.nn.Conv2d (groups = 1). Covered by tests/test_cuda_layers.cpp ("conv2d").
#include <vector>

#include "engine/cuda/launch.cuh"
#include "layers/conv2d.h"

namespace u2pl {
namespace {

// A cuDNN descriptor owned for one scope.
template <class D, cudnnStatus_t (*Create)(D*), cudnnStatus_t (*Destroy)(D)>
class Desc {
 public:
  Desc() { CUDNN_CHECK(Create(&d_)); }
  ~Desc() { Destroy(d_); }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  D get() const { return d_; }

 private:
  D d_ = nullptr;
};
using TensorDesc = Desc<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Desc<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = Desc<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                      cudnnDestroyConvolutionDescriptor>;

void set_nchw(const TensorDesc& d, Shape s) {
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(d.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(s.n()),
                                         int(s.c()), int(s.h()), int(s.w())));
}

// The descriptors of one convolution: x (N,cin,H,W), w (cout,cin,kh,kw), y (N,cout,OH,OW).
struct ConvDescs {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  bool deterministic;

  ConvDescs(const Context& ctx, const Conv2dSpec& s, Shape xs) : deterministic(ctx.cuda().deterministic) {
    const Shape ys = conv2d_out_shape(s, xs);
    U2PL_CHECK(xs.numel() < (int64_t(1) << 31) && ys.numel() < (int64_t(1) << 31),
               "conv2d: tensors of 2^31 or more elements are not supported by cuDNN's legacy API, got "
                   << xs.str() << " -> " << ys.str());
    set_nchw(x, xs);
    set_nchw(y, ys);
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.cout, s.cin,
                                           s.kh, s.kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv.get(), s.pad, s.pad, s.stride, s.stride, s.dilation,
                                                s.dilation, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    // FMA math keeps fp32 convolutions off TF32 tensor cores (tests compare with the CPU oracle).
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), deterministic ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));
    int n = 0, c = 0, h = 0, wd = 0;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &n, &c, &h, &wd));
    U2PL_CHECK(Shape::nchw(n, c, h, wd) == ys, "conv2d: cuDNN computes output " << Shape::nchw(n, c, h, wd).str()
                                                   << ", the layer expects " << ys.str());
  }
};

// Deterministic contexts take only deterministic, non-tensor-op algorithms.
template <class Perf>
bool usable(const Perf& p, bool deterministic) {
  if (p.status != CUDNN_STATUS_SUCCESS) return false;
  if (!deterministic) return true;
  return p.determinism == CUDNN_DETERMINISTIC && p.mathType != CUDNN_TENSOR_OP_MATH &&
         p.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// Runs `run(algo)` (workspace query and launch; returns the cuDNN status) with the heuristics'
// usable algorithms in their ranked order, moving on only when one reports "not supported".
template <class Perf, class Run>
void run_ranked(ConvDescs& d, const std::vector<Perf>& perf, const char* what, Run run) {
  for (const Perf& p : perf) {
    if (!usable(p, d.deterministic)) continue;
    if (!d.deterministic) CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.get(), p.mathType));
    const cudnnStatus_t s = run(p.algo);
    if (s == CUDNN_STATUS_SUCCESS) return;
    if (CUDNN_STATUS_CATEGORY(s) != CUDNN_STATUS_NOT_SUPPORTED) CUDNN_CHECK(s);
  }
  U2PL_FAIL(what << ": cuDNN offers no usable algorithm"
                 << (d.deterministic ? " (deterministic, without TF32)" : ""));
}

// y (N, cout, P) += b[cout]; n = N·cout·P.
__global__ void bias_add_kernel(int64_t n, int64_t cout, int64_t P, const float* b, float* y) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) y[i] += b[(i / P) % cout];
}

// db[co] += Σ_{n,p} dy[n, co, p], one block per output channel, summed in double.
__global__ void bias_grad_kernel(int64_t N, int64_t cout, int64_t P, const float* dy, float* db) {
  for (int64_t co = blockIdx.x; co < cout; co += gridDim.x) {
    double acc = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = threadIdx.x; p < P; p += blockDim.x) acc += dy[(n * cout + co) * P + p];
    acc = block_sum(acc);
    if (threadIdx.x == 0) db[co] += static_cast<float>(acc);
  }
}

}  // namespace

void conv2d_forward_cuda(Context& ctx, const Conv2dSpec& s, TensorView x, TensorView w,
                         TensorView b, TensorView y) {
  ConvDescs d(ctx, s, x.shape);
  cudnnHandle_t h = ctx.cuda().cudnn;
  int max = 0, got = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(max));
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                     max, &got, perf.data()));
  perf.resize(static_cast<size_t>(got));
  const float one = 1.f, zero = 0.f;
  run_ranked(d, perf, "conv2d forward", [&](cudnnConvolutionFwdAlgo_t algo) {
    size_t bytes = 0;
    const cudnnStatus_t q = cudnnGetConvolutionForwardWorkspaceSize(h, d.x.get(), d.w.get(), d.conv.get(),
                                                                    d.y.get(), algo, &bytes);
    if (q != CUDNN_STATUS_SUCCESS) return q;
    return cudnnConvolutionForward(h, &one, d.x.get(), x.data, d.w.get(), w.data, d.conv.get(), algo,
                                   ctx.workspace(bytes), bytes, &zero, d.y.get(), y.data);
  });
  if (!b.defined()) return;
  const int64_t n = y.numel(), P = y.shape.h() * y.shape.w();
  bias_add_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, s.cout, P, b.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void conv2d_backward_cuda(Context& ctx, const Conv2dSpec& s, TensorView x, TensorView w,
                          TensorView dy, TensorView dx, float beta, TensorView dw, TensorView db) {
  ConvDescs d(ctx, s, x.shape);
  cudnnHandle_t h = ctx.cuda().cudnn;
  const float one = 1.f;
  if (db.defined()) {
    const int64_t P = dy.shape.h() * dy.shape.w();
    bias_grad_kernel<<<blocks_for(ctx, s.cout), kBlock, 0, stream_of(ctx)>>>(dy.shape.n(), s.cout, P,
                                                                             dy.data, db.data);
    CUDA_CHECK_LAUNCH();
  }
  if (dx.defined()) {  // dx = beta·dx + dL/dx; cuDNN does not read dx when beta is 0
    int max = 0, got = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(max));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w.get(), d.y.get(), d.conv.get(),
                                                            d.x.get(), max, &got, perf.data()));
    perf.resize(static_cast<size_t>(got));
    run_ranked(d, perf, "conv2d backward data", [&](cudnnConvolutionBwdDataAlgo_t algo) {
      size_t bytes = 0;
      const cudnnStatus_t q = cudnnGetConvolutionBackwardDataWorkspaceSize(
          h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), algo, &bytes);
      if (q != CUDNN_STATUS_SUCCESS) return q;
      return cudnnConvolutionBackwardData(h, &one, d.w.get(), w.data, d.y.get(), dy.data, d.conv.get(),
                                          algo, ctx.workspace(bytes), bytes, &beta, d.x.get(), dx.data);
    });
  }
  // dw += dL/dw (beta 1: parameter gradients accumulate).
  int max = 0, got = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(max));
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x.get(), d.y.get(), d.conv.get(),
                                                            d.w.get(), max, &got, perf.data()));
  perf.resize(static_cast<size_t>(got));
  run_ranked(d, perf, "conv2d backward filter", [&](cudnnConvolutionBwdFilterAlgo_t algo) {
    size_t bytes = 0;
    const cudnnStatus_t q = cudnnGetConvolutionBackwardFilterWorkspaceSize(
        h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), algo, &bytes);
    if (q != CUDNN_STATUS_SUCCESS) return q;
    return cudnnConvolutionBackwardFilter(h, &one, d.x.get(), x.data, d.y.get(), dy.data, d.conv.get(),
                                          algo, ctx.workspace(bytes), bytes, &one, d.w.get(), dw.data);
  });
}

}  // namespace u2pl
