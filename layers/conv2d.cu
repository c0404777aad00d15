// Conv2d on CUDA: cuDNN's convolution forward, backward-data and backward-filter, bias add and
// bias gradient as own kernels (the gradient a split fixed-order sum). The descriptors of each
// (spec, input shape, deterministic) and the algorithm, math type and workspace each direction
// chose on its first call (from the _v7 heuristics, skipping algorithms whose workspace does not
// fit in free memory) are kept in a process-wide cache, so later calls only launch. Deterministic
// contexts take the implicit-GEMM family only (no FFT, no Winograd: their float32 error exceeds
// the parity tolerances) with FMA math (no TF32). Must match torch.nn.Conv2d (groups = 1).
// Covered by tests/test_cuda_layers.cpp ("conv2d").
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/cuda/launch.cuh"
#include "engine/device_memory.h"
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

// The implicit-GEMM family (and plain GEMM) of each direction: what deterministic contexts may use.
bool gemm_family(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
}
bool gemm_family(cudnnConvolutionBwdDataAlgo_t a) { return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1; }
bool gemm_family(cudnnConvolutionBwdFilterAlgo_t a) { return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1; }

// Deterministic contexts take only deterministic implicit-GEMM algorithms without tensor-op math.
template <class Perf>
bool usable(const Perf& p, bool deterministic) {
  if (p.status != CUDNN_STATUS_SUCCESS) return false;
  if (!deterministic) return true;
  return p.determinism == CUDNN_DETERMINISTIC && gemm_family(p.algo) && p.mathType != CUDNN_TENSOR_OP_MATH &&
         p.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// What one direction chose on its first call.
struct Choice {
  bool chosen = false;
  int algo = 0;
  cudnnMathType_t math = CUDNN_FMA_MATH;
  size_t bytes = 0;
};

// The cached state of one convolution: its descriptors and each direction's choice. Contexts on
// several threads may share it: `m` guards the choices and the descriptor's math type from
// setting it to the launch.
struct ConvPlan {
  ConvPlan(const Context& ctx, const Conv2dSpec& s, Shape xs) : d(ctx, s, xs) {}
  ConvDescs d;
  Choice fwd, bwd_data, bwd_filter;
  std::mutex m;
};

struct PlanKey {
  int device;
  bool deterministic;
  Conv2dSpec s;
  Shape x;
  bool operator==(const PlanKey& o) const {
    return device == o.device && deterministic == o.deterministic && s.cin == o.s.cin && s.cout == o.s.cout &&
           s.kh == o.s.kh && s.kw == o.s.kw && s.stride == o.s.stride && s.pad == o.s.pad &&
           s.dilation == o.s.dilation && x == o.x;
  }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = size_t(k.device) * 2 + size_t(k.deterministic);
    for (int64_t v : {int64_t(k.s.cin), int64_t(k.s.cout), int64_t(k.s.kh), int64_t(k.s.kw), int64_t(k.s.stride),
                      int64_t(k.s.pad), int64_t(k.s.dilation), k.x.n(), k.x.c(), k.x.h(), k.x.w()})
      h = h * 1000003u ^ std::hash<int64_t>()(v);
    return h;
  }
};

// The plan of (spec, input shape) on ctx's device, built on first use. The cache is cleared when
// it outgrows kMaxPlans (whole-image evaluation meets a new shape per image size); plans in use
// stay alive through their shared_ptr.
std::shared_ptr<ConvPlan> conv_plan(const Context& ctx, const Conv2dSpec& s, Shape xs) {
  constexpr size_t kMaxPlans = 4096;
  static std::mutex m;
  static std::unordered_map<PlanKey, std::shared_ptr<ConvPlan>, PlanKeyHash> cache;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const PlanKey key{device, ctx.cuda().deterministic, s, xs};
  std::lock_guard<std::mutex> lock(m);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxPlans) cache.clear();
  auto plan = std::make_shared<ConvPlan>(ctx, s, xs);
  cache.emplace(key, plan);
  return plan;
}

// Whether a workspace of `bytes` can be had: within the context's cap, and the context's block
// already holds it, or growing the block (Context::workspace allocates up to bytes + 1/4 before
// freeing the old one) leaves 64 MiB free.
bool workspace_fits(const Context& ctx, size_t bytes) {
  if (bytes > ctx.workspace_cap()) return false;
  if (bytes <= ctx.workspace_bytes()) return true;
  size_t free_bytes = 0, total = 0;
  cuda_memory_info(&free_bytes, &total);
  const size_t margin = size_t(64) << 20;
  return bytes + bytes / 4 + margin <= free_bytes;
}

// Runs one direction. The first call walks the heuristics' ranked list (`perf`, from get_perf()):
// usable algorithms whose workspace (`query`) fits, moving on when one reports "not supported",
// and keeps the first that runs; later calls launch that choice directly while its workspace fits.
template <class Perf, class GetPerf, class Query, class Run>
void run_direction(Context& ctx, ConvPlan& plan, Choice& c, const char* what, GetPerf get_perf, Query query,
                   Run run) {
  ConvDescs& d = plan.d;
  const std::lock_guard<std::mutex> lock(plan.m);
  // A choice is kept while its workspace can still be had (another context, or less free memory
  // than at the first call, may need a cheaper algorithm).
  if (c.chosen && workspace_fits(ctx, c.bytes)) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.get(), c.math));
    CUDNN_CHECK(run(static_cast<decltype(Perf().algo)>(c.algo), c.bytes));
    return;
  }
  c.chosen = false;
  const std::vector<Perf> perf = get_perf();
  int too_big = 0;
  for (const Perf& p : perf) {
    if (!usable(p, d.deterministic)) continue;
    const cudnnMathType_t math = d.deterministic ? CUDNN_FMA_MATH : p.mathType;
    CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv.get(), math));
    size_t bytes = 0;
    cudnnStatus_t st = query(p.algo, &bytes);
    if (st == CUDNN_STATUS_SUCCESS && !workspace_fits(ctx, bytes)) {
      ++too_big;
      continue;
    }
    if (st == CUDNN_STATUS_SUCCESS) st = run(p.algo, bytes);
    if (st == CUDNN_STATUS_SUCCESS) {
      c = Choice{true, static_cast<int>(p.algo), math, bytes};
      return;
    }
    if (CUDNN_STATUS_CATEGORY(st) != CUDNN_STATUS_NOT_SUPPORTED) CUDNN_CHECK(st);
  }
  U2PL_FAIL(what << ": cuDNN offers no usable algorithm"
                 << (d.deterministic ? " (deterministic implicit GEMM, no TF32)" : "")
                 << (too_big ? "; " + std::to_string(too_big) + " were skipped for a workspace beyond free memory "
                                   "or the cap of " + std::to_string(ctx.workspace_cap() >> 20) +
                                   " MiB (trainer.conv_workspace_mib)"
                             : ""));
}

// y (N·cout planes of P) += b[cout].
__global__ void bias_add_kernel(int64_t planes, int64_t cout, int32_t P, const float* b, float* y) {
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float v = b[p % cout];
    float* yp = y + p * P;
    for (int32_t i = plane_start(); i < P; i += plane_step()) yp[i] += v;
  }
}

// Σ dy over a part of one output channel.
struct SumDy {
  const float* dy;
  __device__ void operator()(int64_t, int64_t k, double* acc) const { acc[0] += dy[k]; }
};

// db[co] += the channel's total, from the parts of SumDy.
__global__ void bias_grad_kernel(ChannelSplit s, const double* partial, float* db) {
  for (int64_t co = blockIdx.x; co < s.C; co += gridDim.x) {
    const double total = channel_total(s, partial, 0, co);
    if (threadIdx.x == 0) db[co] += static_cast<float>(total);
  }
}

}  // namespace

void conv2d_forward_cuda(Context& ctx, const Conv2dSpec& s, TensorView x, TensorView w,
                         TensorView b, TensorView y) {
  const std::shared_ptr<ConvPlan> plan = conv_plan(ctx, s, x.shape);
  ConvDescs& d = plan->d;
  cudnnHandle_t h = ctx.cuda().cudnn;
  const float one = 1.f, zero = 0.f;
  run_direction<cudnnConvolutionFwdAlgoPerf_t>(
      ctx, *plan, plan->fwd, "conv2d forward",
      [&] {
        int max = 0, got = 0;
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max));
        std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(max));
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(), max,
                                                           &got, perf.data()));
        perf.resize(static_cast<size_t>(got));
        return perf;
      },
      [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
        return cudnnGetConvolutionForwardWorkspaceSize(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(), algo,
                                                       bytes);
      },
      [&](cudnnConvolutionFwdAlgo_t algo, size_t bytes) {
        return cudnnConvolutionForward(h, &one, d.x.get(), x.data, d.w.get(), w.data, d.conv.get(), algo,
                                       ctx.workspace(bytes), bytes, &zero, d.y.get(), y.data);
      });
  if (!b.defined()) return;
  const int64_t planes = y.shape.n() * s.cout, P = y.shape.h() * y.shape.w();
  bias_add_kernel<<<plane_grid(ctx, planes, P), kBlock, 0, stream_of(ctx)>>>(planes, s.cout, int32_t(P), b.data,
                                                                             y.data);
  CUDA_CHECK_LAUNCH();
}

void conv2d_backward_cuda(Context& ctx, const Conv2dSpec& s, TensorView x, TensorView w,
                          TensorView dy, TensorView dx, float beta, TensorView dw, TensorView db) {
  const std::shared_ptr<ConvPlan> plan = conv_plan(ctx, s, x.shape);
  ConvDescs& d = plan->d;
  cudnnHandle_t h = ctx.cuda().cudnn;
  const float one = 1.f;
  if (db.defined() && dy.numel() > 0) {
    const ChannelSplit split = channel_split(ctx, dy.shape.n(), s.cout, dy.shape.h() * dy.shape.w());
    double* partial = static_cast<double*>(ctx.workspace(static_cast<size_t>(s.cout * split.parts()) * sizeof(double)));
    channel_partials_kernel<1><<<channel_partials_grid(split), kBlock, 0, stream_of(ctx)>>>(split, SumDy{dy.data},
                                                                                            partial);
    CUDA_CHECK_LAUNCH();
    bias_grad_kernel<<<blocks_for(ctx, s.cout), kBlock, 0, stream_of(ctx)>>>(split, partial, db.data);
    CUDA_CHECK_LAUNCH();
  }
  if (dx.defined()) {  // dx = beta·dx + dL/dx; cuDNN does not read dx when beta is 0
    run_direction<cudnnConvolutionBwdDataAlgoPerf_t>(
        ctx, *plan, plan->bwd_data, "conv2d backward data",
        [&] {
          int max = 0, got = 0;
          CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max));
          std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(max));
          CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(),
                                                                  max, &got, perf.data()));
          perf.resize(static_cast<size_t>(got));
          return perf;
        },
        [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
          return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), algo,
                                                              bytes);
        },
        [&](cudnnConvolutionBwdDataAlgo_t algo, size_t bytes) {
          return cudnnConvolutionBackwardData(h, &one, d.w.get(), w.data, d.y.get(), dy.data, d.conv.get(), algo,
                                              ctx.workspace(bytes), bytes, &beta, d.x.get(), dx.data);
        });
  }
  // dw += dL/dw (beta 1: parameter gradients accumulate).
  run_direction<cudnnConvolutionBwdFilterAlgoPerf_t>(
      ctx, *plan, plan->bwd_filter, "conv2d backward filter",
      [&] {
        int max = 0, got = 0;
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max));
        std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(max));
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
                                                                  max, &got, perf.data()));
        perf.resize(static_cast<size_t>(got));
        return perf;
      },
      [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), algo,
                                                              bytes);
      },
      [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t bytes) {
        return cudnnConvolutionBackwardFilter(h, &one, d.x.get(), x.data, d.y.get(), dy.data, d.conv.get(), algo,
                                              ctx.workspace(bytes), bytes, &one, d.w.get(), dw.data);
      });
}

}  // namespace u2pl
