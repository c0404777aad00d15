// The layer benchmark (bench/layer_bench.h): the network's op list, the timing loop, the table and
// the JSON rows. Row names and merging rules are mirrored in bench/layers_torch.py; keep both in
// step so bench/compare.py can pair rows.
#include "bench/layer_bench.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "engine/rng.h"
#include "layers/batchnorm.h"
#include "layers/resize.h"

namespace u2pl::bench {

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::Conv: return "conv";
    case OpKind::BatchNorm: return "bn";
    case OpKind::Bilinear: return "bilinear";
    case OpKind::MaxPool: return "maxpool";
  }
  return "?";
}

namespace {

bool same_shape(const BenchOp& a, const BenchOp& b) {
  if (a.kind != b.kind || a.x != b.x || a.y != b.y) return false;
  const Conv2dSpec &p = a.conv, &q = b.conv;
  if (a.kind == OpKind::Conv)
    return p.kh == q.kh && p.kw == q.kw && p.stride == q.stride && p.pad == q.pad &&
           p.dilation == q.dilation && p.bias == q.bias;
  if (a.kind == OpKind::MaxPool)
    return a.pool.k == b.pool.k && a.pool.stride == b.pool.stride && a.pool.pad == b.pool.pad &&
           a.pool.ceil_mode == b.pool.ceil_mode;
  return true;
}

// Records ops in network order; a repeated shape bumps the count of its first row.
class OpList {
 public:
  // k x k conv, "same" padding (dilation) for 3x3, none for 1x1.
  Shape conv(const std::string& name, Shape x, int cout, int k, int stride, int dilation, bool bias) {
    BenchOp op;
    op.name = name;
    op.kind = OpKind::Conv;
    op.conv.cin = static_cast<int>(x.c());
    op.conv.cout = cout;
    op.conv.kh = op.conv.kw = k;
    op.conv.stride = stride;
    op.conv.dilation = dilation;
    op.conv.pad = k == 3 ? dilation : 0;
    op.conv.bias = bias;
    op.x = x;
    op.y = conv2d_out_shape(op.conv, x);
    return add(op);
  }
  Shape bn(const std::string& name, Shape x) { return add(make(name, OpKind::BatchNorm, x, x)); }
  Shape bilinear(const std::string& name, Shape x, int64_t oh, int64_t ow) {
    return add(make(name, OpKind::Bilinear, x, Shape::nchw(x.n(), x.c(), oh, ow)));
  }
  Shape maxpool(const std::string& name, Shape x) {
    const MaxPoolSpec stem{};  // 3x3, stride 2, pad 1, ceil_mode (SPEC §1.1)
    BenchOp op = make(name, OpKind::MaxPool, x, maxpool_out_shape(stem, x));
    op.pool = stem;
    return add(op);
  }
  const std::vector<BenchOp>& ops() const { return ops_; }

 private:
  static BenchOp make(const std::string& name, OpKind kind, Shape x, Shape y) {
    BenchOp op;
    op.name = name;
    op.kind = kind;
    op.x = x;
    op.y = y;
    return op;
  }
  Shape add(const BenchOp& op) {
    for (BenchOp& o : ops_)
      if (same_shape(o, op)) {
        ++o.count;
        return op.y;
      }
    ops_.push_back(op);
    return op.y;
  }
  std::vector<BenchOp> ops_;
};

// A Bottleneck stage (v1.5: the stride sits on conv2); dilations[b] is block b's conv2 dilation.
Shape bottleneck_layer(OpList& L, int index, Shape x, int planes, int stride,
                       const std::vector<int>& dilations) {
  for (size_t b = 0; b < dilations.size(); ++b) {
    const std::string p = "encoder.layer" + std::to_string(index) + "." + std::to_string(b) + ".";
    const int s = b == 0 ? stride : 1;
    Shape t = L.bn(p + "bn1", L.conv(p + "conv1", x, planes, 1, 1, 1, false));
    t = L.bn(p + "bn2", L.conv(p + "conv2", t, planes, 3, s, dilations[b], false));
    t = L.bn(p + "bn3", L.conv(p + "conv3", t, planes * 4, 1, 1, 1, false));
    if (b == 0 && (s != 1 || x.c() != planes * 4))
      L.bn(p + "downsample.1", L.conv(p + "downsample.0", x, planes * 4, 1, s, 1, false));
    x = t;
  }
  return x;
}

// classifier / representation: 3x3 512->256, 3x3 256->256, 1x1 256->cout, all with bias.
void seg_head(OpList& L, const std::string& name, Shape x, int cout) {
  Shape t = L.bn(name + ".1", L.conv(name + ".0", x, 256, 3, 1, 1, true));
  t = L.bn(name + ".5", L.conv(name + ".4", t, 256, 3, 1, 1, true));
  L.conv(name + ".8", t, cout, 1, 1, 1, true);
}

}  // namespace

std::vector<BenchOp> network_layer_ops(int crop, int batch) {
  // Train-mode BN on the ASPP pooled branch (1x1) needs more than one value per channel.
  U2PL_CHECK(crop > 0 && batch >= 2, "bench: need a positive crop and batch >= 2, got crop "
                                         << crop << ", batch " << batch);
  const int num_classes = 21;  // PASCAL VOC
  OpList L;
  Shape x = Shape::nchw(batch, 3, crop, crop);
  x = L.bn("encoder.conv1.1", L.conv("encoder.conv1.0", x, 64, 3, 2, 1, false));
  x = L.bn("encoder.conv1.4", L.conv("encoder.conv1.3", x, 64, 3, 1, 1, false));
  x = L.bn("encoder.bn1", L.conv("encoder.conv1.6", x, 128, 3, 1, 1, false));
  x = L.maxpool("encoder.maxpool", x);
  // Output stride 8 with multi-grid (SPEC §1.1): layer3 dilations 1, 2, 2, ...; layer4 4, 8, 16.
  const Shape f1 = bottleneck_layer(L, 1, x, 64, 1, {1, 1, 1});
  x = bottleneck_layer(L, 2, f1, 128, 2, {1, 1, 1, 1});
  std::vector<int> d3(23, 2);
  d3[0] = 1;
  x = bottleneck_layer(L, 3, x, 256, 1, d3);
  const Shape f4 = bottleneck_layer(L, 4, x, 512, 1, {4, 8, 16});

  const Shape pooled = Shape::nchw(batch, f4.c(), 1, 1);  // AdaptiveAvgPool2d(1)
  const Shape p = L.bn("decoder.aspp.conv1.2", L.conv("decoder.aspp.conv1.1", pooled, 256, 1, 1, 1, false));
  L.bilinear("decoder.aspp.conv1.up", p, f4.h(), f4.w());
  L.bn("decoder.aspp.conv2.1", L.conv("decoder.aspp.conv2.0", f4, 256, 1, 1, 1, false));
  const int dil[3] = {12, 24, 36};
  for (int i = 0; i < 3; ++i) {
    const std::string n = "decoder.aspp.conv" + std::to_string(i + 3);
    L.bn(n + ".1", L.conv(n + ".0", f4, 256, 3, 1, dil[i], false));
  }
  const Shape cat = Shape::nchw(batch, 5 * 256, f4.h(), f4.w());
  const Shape head = L.bn("decoder.head.1", L.conv("decoder.head.0", cat, 256, 3, 1, 1, false));
  L.bilinear("decoder.head.up", head, f1.h(), f1.w());
  L.bn("decoder.low_conv.1", L.conv("decoder.low_conv.0", f1, 256, 1, 1, 1, true));
  const Shape dec = Shape::nchw(batch, 512, f1.h(), f1.w());
  seg_head(L, "decoder.classifier", dec, num_classes);
  seg_head(L, "decoder.representation", dec, 256);
  L.bilinear("pred.up", Shape::nchw(batch, num_classes, f1.h(), f1.w()), crop, crop);
  return L.ops();
}

double conv_gflop(const BenchOp& op) {
  if (op.kind != OpKind::Conv) return 0;
  return 2.0 * op.y.n() * op.y.c() * op.y.h() * op.y.w() * op.x.c() * op.conv.kh * op.conv.kw / 1e9;
}

std::string shape_text(const BenchOp& op) {
  std::ostringstream os;
  os << op.x.n() << "x" << op.x.c() << "x" << op.x.h() << "x" << op.x.w();
  if (op.kind == OpKind::Conv)
    os << " k" << op.conv.kh << " s" << op.conv.stride << " p" << op.conv.pad << " d"
       << op.conv.dilation << (op.conv.bias ? " +b" : "");
  if (op.kind == OpKind::MaxPool)
    os << " k" << op.pool.k << " s" << op.pool.stride << " p" << op.pool.pad
       << (op.pool.ceil_mode ? " ceil" : "");
  if (op.kind != OpKind::BatchNorm) os << " -> " << op.y.c() << "x" << op.y.h() << "x" << op.y.w();
  return os.str();
}

namespace {

// Uniform in [-1, 1) from the engine's Philox stream, one offset range per tensor.
Tensor random_tensor(Shape s, Device dev, uint64_t stream) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  const uint64_t off = stream << 40;
  for (size_t i = 0; i < v.size(); ++i) v[i] = 2.0f * philox_uniform(2024, off, i) - 1.0f;
  return Tensor::from_host(s, v, dev);
}

double median_ms(Context& ctx, int repeat, const std::function<void()>& fn) {
  fn();  // warm-up: workspace growth, library plans, page faults
  ctx.synchronize();
  std::vector<double> ms;
  for (int r = 0; r < repeat; ++r) {
    ctx.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ctx.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const size_t m = ms.size() / 2;
  return ms.size() % 2 ? ms[m] : 0.5 * (ms[m - 1] + ms[m]);
}

}  // namespace

Timing time_op(Context& ctx, const BenchOp& op, int repeat) {
  const Device dev = ctx.device();
  const Tensor x = random_tensor(op.x, dev, 1), dy = random_tensor(op.y, dev, 2);
  const Tensor y(op.y, dev), dx(op.x, dev);
  ParamSet ps;
  std::function<void()> fwd, bwd;
  switch (op.kind) {
    case OpKind::Conv: {
      const Conv2d conv(ps, "conv", op.conv);
      ps.allocate(dev);
      ps.initialize(1);
      ps.zero_grad();
      fwd = [&] { conv.forward(ctx, x, y); };
      bwd = [&] { conv.backward(ctx, x, dy, dx, 0.f); };
      return {median_ms(ctx, repeat, fwd), median_ms(ctx, repeat, bwd)};
    }
    case OpKind::BatchNorm: {
      const BatchNorm2d bn(ps, "bn", static_cast<int>(op.x.c()));
      ps.allocate(dev);
      ps.initialize(1);
      ps.zero_grad();
      const Tensor saved(bn.saved_shape(), dev);
      const BatchNormMode train{};  // batch statistics, state kept for backward
      fwd = [&] { bn.forward(ctx, x, y, train, saved); };
      bwd = [&] { bn.backward(ctx, x, saved, true, dy, dx, 0.f); };
      return {median_ms(ctx, repeat, fwd), median_ms(ctx, repeat, bwd)};
    }
    case OpKind::Bilinear:
      fwd = [&] { bilinear_forward(ctx, x, y); };
      bwd = [&] { bilinear_backward(ctx, dy, dx, 0.f); };
      return {median_ms(ctx, repeat, fwd), median_ms(ctx, repeat, bwd)};
    case OpKind::MaxPool:
      fwd = [&] { maxpool_forward(ctx, op.pool, x, y); };
      bwd = [&] { maxpool_backward(ctx, op.pool, x, dy, dx, 0.f); };
      return {median_ms(ctx, repeat, fwd), median_ms(ctx, repeat, bwd)};
  }
  U2PL_FAIL("bench: unknown op kind");
}

void print_table(std::ostream& os, const std::vector<BenchRow>& rows) {
  size_t wn = 4, ws = 5;
  for (const BenchRow& r : rows) {
    wn = std::max(wn, r.op.name.size());
    ws = std::max(ws, shape_text(r.op).size());
  }
  os << std::left << std::setw(wn) << "name" << "  " << std::setw(8) << "kind" << "  "
     << std::setw(ws) << "shape" << std::right << std::setw(6) << "count" << std::setw(11)
     << "fwd ms" << std::setw(11) << "bwd ms" << std::setw(9) << "fwd GF/s" << std::setw(9)
     << "bwd GF/s" << std::setw(13) << "count*(f+b)" << "\n";
  double conv_f = 0, conv_b = 0, all_f = 0, all_b = 0;
  os << std::fixed;
  for (const BenchRow& r : rows) {
    const double gf = conv_gflop(r.op);
    os << std::left << std::setw(wn) << r.op.name << "  " << std::setw(8) << op_kind_name(r.op.kind)
       << "  " << std::setw(ws) << shape_text(r.op) << std::right << std::setw(6) << r.op.count
       << std::setprecision(3) << std::setw(11) << r.t.fwd_ms << std::setw(11) << r.t.bwd_ms
       << std::setprecision(1);
    if (gf > 0)  // backward computes dx and dw: twice the forward's FLOPs
      os << std::setw(9) << gf / (r.t.fwd_ms * 1e-3) << std::setw(9) << 2 * gf / (r.t.bwd_ms * 1e-3);
    else
      os << std::setw(9) << "-" << std::setw(9) << "-";
    os << std::setprecision(2) << std::setw(13) << r.op.count * (r.t.fwd_ms + r.t.bwd_ms) << "\n";
    all_f += r.op.count * r.t.fwd_ms;
    all_b += r.op.count * r.t.bwd_ms;
    if (r.op.kind == OpKind::Conv) {
      conv_f += r.op.count * r.t.fwd_ms;
      conv_b += r.op.count * r.t.bwd_ms;
    }
  }
  os << std::setprecision(1) << "total conv (count-weighted): fwd " << conv_f << " ms, bwd "
     << conv_b << " ms, fwd+bwd " << conv_f + conv_b << " ms\n"
     << "total all  (count-weighted): fwd " << all_f << " ms, bwd " << all_b << " ms, fwd+bwd "
     << all_f + all_b << " ms\n";
  os.unsetf(std::ios::floatfield);
}

nlohmann::json rows_json(const std::vector<BenchRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const BenchRow& r : rows) {
    const BenchOp& o = r.op;
    nlohmann::json j = {{"name", o.name}, {"kind", op_kind_name(o.kind)}, {"n", o.x.n()},
                        {"c", o.x.c()}, {"h", o.x.h()}, {"w", o.x.w()}};
    if (o.kind != OpKind::BatchNorm) {
      j["oh"] = o.y.h();
      j["ow"] = o.y.w();
    }
    if (o.kind == OpKind::Conv) {
      j["cout"] = o.y.c();
      j["k"] = o.conv.kh;
      j["stride"] = o.conv.stride;
      j["pad"] = o.conv.pad;
      j["dilation"] = o.conv.dilation;
      j["bias"] = o.conv.bias;
    }
    if (o.kind == OpKind::MaxPool) {
      j["k"] = o.pool.k;
      j["stride"] = o.pool.stride;
      j["pad"] = o.pool.pad;
      j["ceil_mode"] = o.pool.ceil_mode;
    }
    j["count"] = o.count;
    j["fwd_ms"] = r.t.fwd_ms;
    j["bwd_ms"] = r.t.bwd_ms;
    j["gflops_fwd"] = o.kind == OpKind::Conv ? nlohmann::json(conv_gflop(o) / (r.t.fwd_ms * 1e-3))
                                             : nlohmann::json(nullptr);
    out.push_back(j);
  }
  return out;
}

}  // namespace u2pl::bench
