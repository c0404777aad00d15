// Shared by the network parity tests: the NetConfig a PyTorch dump
// (tools/pytorch/gen_model_fixture.py) describes in its metadata, and loading its `weights.*`
// through the normal weight path.
#pragma once
#include <cstdio>
#include <sstream>

#include "tests/test_util.h"
#include "u2pl/net/model.h"
#include "u2pl/net/weights.h"

namespace u2pl::test {

inline std::vector<int> ints_of(const std::string& csv) {
  std::vector<int> v;
  std::stringstream ss(csv);
  for (std::string t; std::getline(ss, t, ',');) v.push_back(std::stoi(t));
  return v;
}

inline NetConfig config_of(const SafeTensorsFile& f) {
  NetConfig c;
  auto i = [&](const char* k) { return std::stoi(f.meta(k)); };
  c.depth = i("depth");
  c.stem = f.meta("stem");
  c.width_divisor = i("width_divisor");
  c.inner_planes = i("inner_planes");
  c.dilations = ints_of(f.meta("dilations"));
  c.num_classes = i("num_classes");
  c.rep_head = i("rep_head") != 0;
  c.aux = i("aux") != 0;
  c.multi_grid = i("multi_grid") != 0;
  c.replace_stride_with_dilation =
      i("output_stride") == 8 ? std::array<bool, 3>{false, true, true} : std::array<bool, 3>{false, false, true};
  return c;
}

// The dump stores `weights.<key>`; the engine reads engine files: write one, load it.
inline void load_dump_weights(const SafeTensorsFile& f, U2plNet& net) {
  SafeTensorsWriter w;
  for (const auto& [name, e] : f.entries()) {
    if (name.rfind("weights.", 0) != 0) continue;
    const std::vector<float> v = f.floats(name);
    w.add(name.substr(8), DType::F32, e.shape, v.data());
  }
  w.set_metadata("source", "torch dump " + f.path());
  const std::string tmp = "/tmp/u2pl_test_dump_weights.safetensors";
  w.write(tmp);
  const WeightReport r = load_weights(net.params(), tmp, WeightScope::Model);
  CHECK(r.loaded == static_cast<int>(net.params().decls().size()));
  std::remove(tmp.c_str());
}

// The dump's Dropout2d channel scales, written into the Train plan of `net` for inputs of `image`.
inline void load_dump_dropout(const SafeTensorsFile& f, U2plNet& net, Shape image) {
  for (const std::string& site : net.dropout_sites()) {
    std::vector<float> v = f.floats("dropout." + site);
    copy_tensor(net.dropout_scale(image, NetMode::Train, site), TensorView(v.data(), f.shape("dropout." + site), Device::CPU));
  }
}

inline Tensor tensor_of(const SafeTensorsFile& f, const std::string& name) {
  return Tensor::from_host(f.shape(name), f.floats(name), Device::CPU);
}

inline void expect_tensor(const SafeTensorsFile& f, const std::string& name, const TensorView& got, Tol tol) {
  CHECK_MESSAGE(got.shape == f.shape(name), name << ": shape " << got.shape.str() << ", expected " << f.shape(name).str());
  check_close(name, to_host(got), f.floats(name), tol);
}

// One train forward and backward of the dump's network in a memory mode on `dev`, as a U2PL step
// runs it: a teacher's eval forward in the student's memory before the forward, its
// train-statistics forward in the memory idle until the backward, that memory poisoned before
// each (nothing may read it before writing it). The outputs, BN buffers, every gradient, the Train
// plan's size, and the teacher's outputs with those of the same teacher in memory of its own.
struct MemoryRun {
  std::vector<float> pred, rep, aux, buffers, grads;
  size_t bytes = 0;
  std::vector<float> teacher_eval, teacher_stats, own_eval, own_stats;
};
inline MemoryRun run_memory_mode(const SafeTensorsFile& f, MemoryMode m, Device dev) {
  U2plNet net(config_of(f)), teacher(config_of(f)), own(config_of(f));
  net.allocate(dev, 1);
  teacher.allocate(dev, 1, false);
  own.allocate(dev, 1, false);
  for (U2plNet* n : {&net, &teacher, &own}) load_dump_weights(f, *n);
  net.set_memory_mode(m);
  const Tensor xc = tensor_of(f, "in.x");
  const Tensor x = Tensor::from_host(xc.shape(), xc.to_host(), dev);
  load_dump_dropout(f, net, x.shape());
  Context ctx(dev, /*deterministic=*/true);
  auto on_dev = [&](const char* name) {
    const Tensor t = tensor_of(f, name);
    return Tensor::from_host(t.shape(), t.to_host(), dev);
  };
  auto host_of = [&](TensorView v) {
    ctx.synchronize();
    return to_host(v);
  };
  MemoryRun r;
  using Idle = ActPlan::Idle;
  net.poison_idle(x.shape(), Idle::BeforeForward);
  r.teacher_eval = host_of(teacher.forward(ctx, x, NetMode::Eval, nullptr,
                                           net.idle_train_memory(x.shape(), Idle::BeforeForward)).pred);
  const NetOutputs tr = net.forward(ctx, x, NetMode::Train, nullptr);
  r.pred = host_of(tr.pred);
  expect_tensor(f, "train.pred", tr.pred, kForwardNormwise);  // the dropout scales survived the teacher
  r.rep = host_of(tr.rep);
  r.aux = host_of(tr.aux);
  net.poison_idle(x.shape(), Idle::BetweenForwardAndBackward);
  Rng rt(9), ro(9);
  r.teacher_stats = host_of(teacher.forward(ctx, x, NetMode::TrainStats, &rt,
                                            net.idle_train_memory(x.shape(), Idle::BetweenForwardAndBackward)).pred);
  net.params().zero_grad();
  const Tensor wp = on_dev("loss.w_pred"), wr = on_dev("loss.w_rep"), wa = on_dev("loss.w_aux");
  net.backward(ctx, wp, wr, wa);
  r.buffers = host_of(net.params().buffers().all());
  r.grads = host_of(net.params().grads().all());
  for (const ParamDecl& d : net.params().decls())  // against PyTorch, not only against another mode
    if (d.trainable) expect_tensor(f, "grad." + d.name, net.params().grad(net.params().find(d.name)), kGradNormwise);
  r.bytes = net.plan_bytes(x.shape(), NetMode::Train);
  r.own_eval = host_of(own.forward(ctx, x, NetMode::Eval, nullptr).pred);
  r.own_stats = host_of(own.forward(ctx, x, NetMode::TrainStats, &ro).pred);
  return r;
}

// A rebuilding mode's run against keep's: equal bit for bit, in a smaller plan; in both the
// teacher's outputs are those of memory of its own.
inline void expect_same_as_keep(const MemoryRun& rebuilt, const MemoryRun& keep) {
  CHECK(rebuilt.pred == keep.pred);
  CHECK(rebuilt.rep == keep.rep);
  CHECK(rebuilt.aux == keep.aux);
  CHECK(rebuilt.buffers == keep.buffers);
  CHECK(rebuilt.grads == keep.grads);
  CHECK(rebuilt.bytes < keep.bytes);
  for (const MemoryRun* r : {&rebuilt, &keep}) {
    CHECK(r->teacher_eval == r->own_eval);
    CHECK(r->teacher_stats == r->own_stats);
  }
}

}  // namespace u2pl::test
