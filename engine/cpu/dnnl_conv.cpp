// oneDNN convolution (engine/cpu/dnnl_conv.h).
#include "engine/cpu/dnnl_conv.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "engine/check.h"
#include "engine/cpu/blas.h"

namespace u2pl::cpu {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

bool ConvDims::operator<(const ConvDims& o) const {
  auto t = [](const ConvDims& d) {
    return std::make_tuple(d.n, d.cin, d.h, d.w, d.cout, d.kh, d.kw, d.stride, d.pad, d.dilation, d.bias);
  };
  return t(*this) < t(o);
}

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

constexpr size_t kAlign = 64;
size_t aligned(size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

// A bump allocator over the caller's scratch block.
struct Carver {
  char* base;
  size_t used = 0;
  void* take(size_t bytes) {
    void* p = base + used;
    used += aligned(bytes);
    return p;
  }
};

// A user buffer in plain layout, moved to (or from) the layout a primitive wants.
struct Staged {
  memory::desc user, want;
  bool same() const { return user == want; }
  size_t bytes() const { return same() ? 0 : want.get_size(); }
};

struct ConvPlan {
  memory::desc x, w, y, b;  // plain layouts
  dnnl::convolution_forward::primitive_desc fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_w;
  dnnl::convolution_forward fwd_p;
  dnnl::convolution_backward_data bwd_data_p;
  dnnl::convolution_backward_weights bwd_w_p;
  size_t fwd_bytes = 0, bwd_bytes = 0;
  // The input or weight gradient by im2col and GEMM, one image at a time, where oneDNN's algorithm
  // needs more than kBackwardScratchCap of scratchpad (its gemm path for large dilations, the
  // ASPP's and layer4's at stride 8, holds many images' columns).
  bool gemm_data = false, gemm_weights = false;
};

constexpr size_t kBackwardScratchCap = size_t(32) << 20;

// 1x1, stride 1, no padding: the input is its own column matrix.
bool pointwise(const ConvDims& d) { return d.kh == 1 && d.kw == 1 && d.stride == 1 && d.pad == 0; }

ConvGeom geom_of(const ConvDims& d) {
  return {d.cin, d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.dilation, d.oh, d.ow};
}

dnnl::reorder make_reorder(const memory::desc& from, const memory::desc& to, float sum_beta) {
  dnnl::primitive_attr attr;
  if (sum_beta != 0.f) {
    dnnl::post_ops po;
    po.append_sum(sum_beta);
    attr.set_post_ops(po);
  }
  return dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), from, cpu_engine(), to, attr));
}

std::unique_ptr<ConvPlan> build_plan(const ConvDims& d) {
  auto p = std::make_unique<ConvPlan>();
  const memory::dims xd{d.n, d.cin, d.h, d.w}, wd{d.cout, d.cin, d.kh, d.kw}, yd{d.n, d.cout, d.oh, d.ow};
  p->x = memory::desc(xd, dt::f32, tag::nchw);
  p->w = memory::desc(wd, dt::f32, tag::oihw);
  p->y = memory::desc(yd, dt::f32, tag::nchw);
  p->b = memory::desc({d.cout}, dt::f32, tag::x);
  const memory::desc xa(xd, dt::f32, tag::any), wa(wd, dt::f32, tag::any), ya(yd, dt::f32, tag::any);
  const memory::dims strides{d.stride, d.stride}, dil{d.dilation - 1, d.dilation - 1};
  const memory::dims pl{d.pad, d.pad};
  // Right padding that reproduces PyTorch's floor output size.
  const memory::dims pr{(d.oh - 1) * d.stride + (d.kh - 1) * d.dilation + 1 - d.h - d.pad,
                        (d.ow - 1) * d.stride + (d.kw - 1) * d.dilation + 1 - d.w - d.pad};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto alg = dnnl::algorithm::convolution_direct;
  const auto fdesc = d.bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, xa, wa,
                                                              p->b, ya, strides, dil, pl, pr)
                            : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, xa, wa,
                                                              ya, strides, dil, pl, pr);
  p->fwd = dnnl::convolution_forward::primitive_desc(fdesc, attr, cpu_engine());
  p->bwd_data = dnnl::convolution_backward_data::primitive_desc(
      dnnl::convolution_backward_data::desc(alg, xa, wa, ya, strides, dil, pl, pr), attr, cpu_engine(), p->fwd);
  const auto wdesc = d.bias ? dnnl::convolution_backward_weights::desc(alg, xa, wa, p->b, ya, strides, dil, pl, pr)
                            : dnnl::convolution_backward_weights::desc(alg, xa, wa, ya, strides, dil, pl, pr);
  p->bwd_w = dnnl::convolution_backward_weights::primitive_desc(wdesc, attr, cpu_engine(), p->fwd);
  p->fwd_p = dnnl::convolution_forward(p->fwd);
  p->bwd_data_p = dnnl::convolution_backward_data(p->bwd_data);
  p->bwd_w_p = dnnl::convolution_backward_weights(p->bwd_w);
  auto staged = [](const memory::desc& u, const memory::desc& w) { return aligned(Staged{u, w}.bytes()); };
  p->fwd_bytes = staged(p->x, p->fwd.src_desc()) + staged(p->w, p->fwd.weights_desc()) +
                 staged(p->y, p->fwd.dst_desc()) + aligned(p->fwd.scratchpad_desc().get_size());
  size_t data = staged(p->y, p->bwd_data.diff_dst_desc()) + staged(p->w, p->bwd_data.weights_desc()) +
                aligned(p->bwd_data.diff_src_desc().get_size()) + aligned(p->bwd_data.scratchpad_desc().get_size());
  size_t wts = staged(p->x, p->bwd_w.src_desc()) + staged(p->y, p->bwd_w.diff_dst_desc()) +
               aligned(p->bwd_w.diff_weights_desc().get_size()) + aligned(d.cout * sizeof(float)) +
               aligned(p->bwd_w.scratchpad_desc().get_size());
  // The scratchpads alone decide (the layout copies are the batch's size whatever the algorithm);
  // 1x1 convolutions stay with oneDNN (their columns would be a copy of the input).
  const size_t columns = aligned(size_t(d.cin * d.kh * d.kw * d.oh * d.ow) * sizeof(float));  // one image's
  const bool may = !pointwise(d);
  if (may && p->bwd_data.scratchpad_desc().get_size() > kBackwardScratchCap && columns < data) {
    p->gemm_data = true;
    data = columns;
  }
  if (may && p->bwd_w.scratchpad_desc().get_size() > kBackwardScratchCap && columns < wts) {
    p->gemm_weights = true;
    wts = columns;
  }
  p->bwd_bytes = data > wts ? data : wts;
  return p;
}

ConvPlan& plan_for(const ConvDims& d) {
  static std::mutex mu;
  static std::map<ConvDims, std::unique_ptr<ConvPlan>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(d);
  if (it == cache.end()) {
    try {
      it = cache.emplace(d, build_plan(d)).first;
    } catch (const dnnl::error& e) {
      U2PL_FAIL("oneDNN could not build a convolution for input (" << d.n << ", " << d.cin << ", " << d.h
                << ", " << d.w << "), kernel " << d.kh << "x" << d.kw << ": " << e.what());
    }
  }
  return *it->second;
}

// Memory for a user buffer as the primitive wants it: the buffer itself, or a reordered copy.
memory stage_in(dnnl::stream& s, Carver& c, const memory::desc& user, const memory::desc& want, const float* p) {
  memory um(user, cpu_engine(), const_cast<float*>(p));
  if (user == want) return um;
  memory wm(want, cpu_engine(), c.take(want.get_size()));
  make_reorder(user, want, 0.f).execute(s, um, wm);
  return wm;
}

}  // namespace

size_t dnnl_conv_scratch_bytes(const ConvDims& d, bool backward) {
  const ConvPlan& p = plan_for(d);
  return backward ? p.bwd_bytes : p.fwd_bytes;
}

void dnnl_conv_forward(const ConvDims& d, const float* x, const float* w, const float* b, float* y, void* scratch) {
  ConvPlan& p = plan_for(d);
  dnnl::stream s(cpu_engine());
  Carver c{static_cast<char*>(scratch)};
  memory xm = stage_in(s, c, p.x, p.fwd.src_desc(), x);
  memory wm = stage_in(s, c, p.w, p.fwd.weights_desc(), w);
  memory yu(p.y, cpu_engine(), y);
  const bool direct = p.y == p.fwd.dst_desc();
  memory ym = direct ? yu : memory(p.fwd.dst_desc(), cpu_engine(), c.take(p.fwd.dst_desc().get_size()));
  memory sp(p.fwd.scratchpad_desc(), cpu_engine(), c.take(p.fwd.scratchpad_desc().get_size()));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, sp}};
  if (d.bias) args.insert({DNNL_ARG_BIAS, memory(p.b, cpu_engine(), const_cast<float*>(b))});
  p.fwd_p.execute(s, args);
  if (!direct) make_reorder(p.fwd.dst_desc(), p.y, 0.f).execute(s, ym, yu);
  s.wait();
}

void dnnl_conv_backward(const ConvDims& d, const float* x, const float* w, const float* dy, float* dx,
                        float beta, float* dw, float* db, void* scratch) {
  ConvPlan& p = plan_for(d);
  dnnl::stream s(cpu_engine());
  const ConvGeom g = geom_of(d);
  const int64_t K = d.cin * d.kh * d.kw, P = d.oh * d.ow, X = d.cin * d.h * d.w;
  auto* col = static_cast<float*>(scratch);
  if (dx && p.gemm_data) {  // dx = beta·dx + Σ col2im(wᵀ dy_n)
    for (int64_t n = 0; n < d.n; ++n) {
      float* dxn = dx + n * X;
      gemm<float>(true, false, K, P, d.cout, 1.f, w, dy + n * d.cout * P, 0.f, col);
      if (beta == 0.f)
        std::fill(dxn, dxn + X, 0.f);
      else if (beta != 1.f)
        for (int64_t i = 0; i < X; ++i) dxn[i] *= beta;
      col2im(g, col, dxn);
    }
  } else if (dx) {
    Carver c{static_cast<char*>(scratch)};
    memory dym = stage_in(s, c, p.y, p.bwd_data.diff_dst_desc(), dy);
    memory wm = stage_in(s, c, p.w, p.bwd_data.weights_desc(), w);
    memory dxu(p.x, cpu_engine(), dx);
    const bool direct = beta == 0.f && p.x == p.bwd_data.diff_src_desc();
    memory dxm = direct ? dxu : memory(p.bwd_data.diff_src_desc(), cpu_engine(), c.take(p.bwd_data.diff_src_desc().get_size()));
    memory sp(p.bwd_data.scratchpad_desc(), cpu_engine(), c.take(p.bwd_data.scratchpad_desc().get_size()));
    p.bwd_data_p.execute(s, {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm}, {DNNL_ARG_SCRATCHPAD, sp}});
    if (!direct) make_reorder(p.bwd_data.diff_src_desc(), p.x, beta).execute(s, dxm, dxu);
    s.wait();
  }
  if (p.gemm_weights) {  // dw += Σ_n dy_n · col(x_n)ᵀ, db += Σ_n Σ_p dy_n
    for (int64_t n = 0; n < d.n; ++n) {
      const float* dyn = dy + n * d.cout * P;
      im2col(g, x + n * X, col);
      gemm<float>(false, true, d.cout, K, P, 1.f, dyn, col, 1.f, dw);
      if (db)
        for (int64_t co = 0; co < d.cout; ++co) {
          float acc = 0;
          for (int64_t i = 0; i < P; ++i) acc += dyn[co * P + i];
          db[co] += acc;
        }
    }
    return;
  }
  Carver c{static_cast<char*>(scratch)};
  memory xm = stage_in(s, c, p.x, p.bwd_w.src_desc(), x);
  memory dym = stage_in(s, c, p.y, p.bwd_w.diff_dst_desc(), dy);
  memory dwm(p.bwd_w.diff_weights_desc(), cpu_engine(), c.take(p.bwd_w.diff_weights_desc().get_size()));
  memory sp(p.bwd_w.scratchpad_desc(), cpu_engine(), c.take(p.bwd_w.scratchpad_desc().get_size()));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dwm}, {DNNL_ARG_SCRATCHPAD, sp}};
  float* dbias = nullptr;
  if (d.bias) {
    dbias = static_cast<float*>(c.take(d.cout * sizeof(float)));
    args.insert({DNNL_ARG_DIFF_BIAS, memory(p.b, cpu_engine(), dbias)});
  }
  p.bwd_w_p.execute(s, args);
  memory dwu(p.w, cpu_engine(), dw);
  make_reorder(p.bwd_w.diff_weights_desc(), p.w, 1.f).execute(s, dwm, dwu);  // dw += grad
  s.wait();
  if (db)
    for (int64_t i = 0; i < d.cout; ++i) db[i] += dbias[i];
}

}  // namespace u2pl::cpu
