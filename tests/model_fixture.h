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

// One train forward and backward of the dump's network in a memory mode on `dev`, the module
// scratch poisoned between them (backward must form again what it reads there): the outputs,
// BN buffers, every gradient, and the Train plan's size.
struct MemoryRun {
  std::vector<float> pred, rep, aux, buffers, grads;
  size_t bytes = 0;
};
inline MemoryRun run_memory_mode(const SafeTensorsFile& f, MemoryMode m, Device dev) {
  U2plNet net(config_of(f));
  net.allocate(dev, 1);
  load_dump_weights(f, net);
  net.set_memory_mode(m);
  const Tensor xc = tensor_of(f, "in.x");
  const Tensor x = Tensor::from_host(xc.shape(), xc.to_host(), dev);
  load_dump_dropout(f, net, x.shape());
  Context ctx(dev, /*deterministic=*/true);
  auto on_dev = [&](const char* name) {
    const Tensor t = tensor_of(f, name);
    return Tensor::from_host(t.shape(), t.to_host(), dev);
  };
  const NetOutputs tr = net.forward(ctx, x, NetMode::Train, nullptr);
  ctx.synchronize();
  MemoryRun r{to_host(tr.pred), to_host(tr.rep), to_host(tr.aux), {}, {}, 0};
  net.poison_scratch();
  net.params().zero_grad();
  const Tensor wp = on_dev("loss.w_pred"), wr = on_dev("loss.w_rep"), wa = on_dev("loss.w_aux");
  net.backward(ctx, wp, wr, wa);
  ctx.synchronize();
  r.buffers = to_host(net.params().buffers().all());
  r.grads = to_host(net.params().grads().all());
  r.bytes = net.plan_bytes(x.shape(), NetMode::Train);
  return r;
}

// A rebuilding mode's run against keep's: equal bit for bit, in a smaller plan.
inline void expect_same_as_keep(const MemoryRun& rebuilt, const MemoryRun& keep) {
  CHECK(rebuilt.pred == keep.pred);
  CHECK(rebuilt.rep == keep.rep);
  CHECK(rebuilt.aux == keep.aux);
  CHECK(rebuilt.buffers == keep.buffers);
  CHECK(rebuilt.grads == keep.grads);
  CHECK(rebuilt.bytes < keep.bytes);
}

}  // namespace u2pl::test
