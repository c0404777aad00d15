// Engine: shapes, views, buffers, arenas, parameter sets, checks and the Philox RNG.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <functional>

#include "engine/nccl.h"
#include "engine/context.h"
#include "engine/device_memory.h"
#include "engine/params.h"
#include "engine/profile.h"
#include "engine/rng.h"
#include "engine/upload.h"

using namespace u2pl;

TEST_CASE("shape and views") {
  const Shape s{2, 3, 4, 5};
  CHECK(s.numel() == 120);
  CHECK(s.str() == "(2, 3, 4, 5)");
  Tensor t(s, Device::CPU);
  const TensorView b = t.view().batch_slice(1, 1);
  CHECK(b.data == t.data() + 60);
  CHECK(b.shape == Shape{1, 3, 4, 5});
  CHECK_THROWS_WITH_AS(t.view().batch_slice(1, 2), doctest::Contains("out of range"), Error);
  CHECK_THROWS_WITH_AS(t.view().reshaped(Shape{7}), doctest::Contains("cannot reshape"), Error);
  CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5}), Error);
  CHECK_THROWS_AS((Shape{-1}), Error);
}

TEST_CASE("checks carry file, line, expression and message") {
  try {
    const int got = 3;
    U2PL_CHECK(got == 4, "expected 4, got " << got);
    FAIL("no throw");
  } catch (const Error& e) {
    const std::string w = e.what();
    CHECK(w.find("test_engine.cpp:") != std::string::npos);
    CHECK(w.find("expected 4, got 3") != std::string::npos);
    CHECK(w.find("got == 4") != std::string::npos);
  }
}

TEST_CASE("buffers are move-only owners; tensors round-trip through the host") {
  Buffer a(Device::CPU, 100);
  void* p = a.data();
  Buffer b(std::move(a));
  CHECK(b.data() == p);
  CHECK(a.data() == nullptr);
  Tensor t = Tensor::from_host(Shape{3}, {1.f, 2.f, 3.f}, Device::CPU);
  CHECK(t.to_host() == std::vector<float>{1.f, 2.f, 3.f});
  CHECK_THROWS_WITH_AS(Tensor::from_host(Shape{2}, {1.f}, Device::CPU), doctest::Contains("1 values"), Error);
}

TEST_CASE("cuda entry points without a GPU say why") {
  CHECK(cuda_version_text(13000) == "13.0");
  CHECK(cuda_version_text(12040) == "12.4");
  const CudaProbe p = cuda_probe();
  // A CUDA error while looking for a device (a driver older than the runtime, say) is a failure
  // here, naming it: only "no driver" and "no device" mean no GPU.
  REQUIRE_MESSAGE(p.error.empty(), p.error);
  if (p.devices > 0) return;
  CHECK(!p.reason.empty());
  CHECK(cuda_device_count() == 0);
  CHECK(cuda_environment().find(cuda_built() ? p.reason : "built without CUDA") != std::string::npos);
  CHECK_THROWS_AS(Buffer(Device::CUDA, 16), Error);
  CHECK_THROWS_WITH_AS(Context(Device::CUDA), doctest::Contains(p.reason.c_str()), Error);
  if (!cuda_built()) CHECK_THROWS_WITH_AS(Context(Device::CUDA), doctest::Contains("built without CUDA"), Error);
  CHECK_THROWS_WITH_AS(parse_device("gpu"), doctest::Contains("expected 'cpu' or 'cuda'"), Error);
}

TEST_CASE("arena lays segments out aligned and refuses late adds") {
  Arena a("test");
  const int s0 = a.add(Shape{3});
  const int s1 = a.add(Shape{2, 2});
  CHECK_THROWS_AS(a.view(s0), Error);
  a.allocate(Device::CPU);
  CHECK(a.view(s1).data - a.view(s0).data == 64);
  CHECK(reinterpret_cast<uintptr_t>(a.view(s1).data) % 256 == 0);
  CHECK(a.floats() == 128);
  CHECK_THROWS_WITH_AS(a.add(Shape{1}), doctest::Contains("after allocate"), Error);
  CHECK_THROWS_AS(a.view(2), Error);
}

TEST_CASE("parameter set: names, gradients, buffers, groups, init") {
  ParamSet ps;
  const int w = ps.declare("conv.weight", Shape{8, 4, 3, 3}, Init::KaimingNormalFanOut, 0);
  const int b = ps.declare("conv.bias", Shape{8}, Init::Ones, 1);
  const int r = ps.declare_buffer("bn.running_var", Shape{8}, Init::Ones);
  CHECK_THROWS_WITH_AS(ps.declare("conv.bias", Shape{8}, Init::Zeros), doctest::Contains("declared twice"), Error);
  ps.allocate(Device::CPU);
  ps.initialize(7);
  CHECK(ps.find("conv.bias") == b);
  CHECK(ps.find("nope") == -1);
  CHECK_THROWS_WITH_AS(ps.grad(r), doctest::Contains("buffer"), Error);
  const auto g = ps.group_of_floats();
  CHECK(g[ps.value(b).data - ps.values().all().data] == 1);
  CHECK(g[0] == 0);
  // Kaiming fan-out: std = sqrt(2 / (8·9)) ≈ 0.1667 over 288 draws.
  const auto v = to_host(ps.value(w));
  double s2 = 0;
  for (float x : v) s2 += double(x) * x;
  CHECK(std::sqrt(s2 / v.size()) == doctest::Approx(std::sqrt(2.0 / 72)).epsilon(0.15));
  CHECK(to_host(ps.value(r))[3] == 1.f);
}

TEST_CASE("philox: known answer, counter independence, uniform range") {
  // Random123's published kat_vectors for philox4x32_10: counter 0, key 0.
  const Philox4 z = philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(z.v[0] == 0x6627e8d5u);
  CHECK(z.v[1] == 0xe169c58du);
  CHECK(z.v[2] == 0xbc57ac4cu);
  CHECK(z.v[3] == 0x9b00dbd8u);
  // and counter/key all ones.
  const Philox4 o = philox4x32_10(~0u, ~0u, ~0u, ~0u, ~0u, ~0u);
  CHECK(o.v[0] == 0x408f276du);
  CHECK(o.v[1] == 0x41c83b0eu);
  CHECK(o.v[2] == 0xa20bc7c6u);
  CHECK(o.v[3] == 0x6d5451fdu);
  // and the pi-digits vector.
  const Philox4 pi = philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(pi.v[0] == 0xd16cfe09u);
  CHECK(pi.v[1] == 0x94fdccebu);
  CHECK(pi.v[2] == 0x5001e420u);
  CHECK(pi.v[3] == 0x24126ea1u);
  double mean = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    const float u = philox_uniform(42, 5, i);
    REQUIRE(u >= 0.f);
    REQUIRE(u < 1.f);
    mean += u;
  }
  CHECK(mean / 10000 == doctest::Approx(0.5).epsilon(0.02));
  CHECK(philox_u32(1, 0, 4) == philox_u32(1, 1, 0));  // word 4 of offset 0 = word 0 of offset 1
  Rng r(3);
  const uint64_t a = r.reserve(10);
  CHECK(a == 0);
  CHECK(r.offset() == 3);
  for (int i = 0; i < 100; ++i) CHECK(r.below(7) < 7u);
}

TEST_CASE("uploader: a CPU context hands the host views through") {
  Context ctx(Device::CPU);
  Uploader up(ctx);
  const Tensor t = Tensor::from_host(Shape{2, 3}, {1, 2, 3, 4, 5, 6}, Device::CPU);
  const TensorView v = up.upload(t.view(), 1, 0);
  CHECK(v.data == t.data());
  CHECK(v.shape == t.shape());
  up.ready(1);
  up.done(1);
  CHECK_THROWS_WITH_AS(up.ready(2), doctest::Contains("slot 2 of 2"), Error);
  CHECK_THROWS_WITH_AS(Uploader(ctx, 0), doctest::Contains("at least one slot"), Error);
  const Tensor d(Shape{1}, Device::CPU);
  CHECK_THROWS_WITH_AS(up.upload(TensorView(d.data(), d.shape(), Device::CUDA), 0, 0),
                       doctest::Contains("upload source"), Error);
}

namespace {

// Runs two phases around `work` (one with a nested operation of 1e9 FLOPs) and returns the entries.
std::vector<Profiler::Entry> profile_twice(Context& ctx, const std::function<void()>& work) {
  Profiler p(ctx);
  CHECK(ctx.profiler() == &p);
  for (int it = 0; it < 2; ++it) {
    PhaseMarks phase(ctx);
    phase.next("first");
    work();
    phase.next("second");
    {
      const ProfileScope op(ctx, "operation", 1e9);
      work();
    }
    phase.stop();
    p.collect();
  }
  return p.entries();
}

}  // namespace

TEST_CASE("profiler: nested intervals, totals over collects, FLOPs, misuse") {
  Context ctx(Device::CPU);
  const std::vector<Profiler::Entry> e = profile_twice(ctx, [] {
    volatile double x = 0;
    for (int i = 0; i < 200000; ++i) x = x + 1e-9 * i;
  });
  CHECK(ctx.profiler() == nullptr);  // detached by the destructor
  REQUIRE(e.size() == 3);
  CHECK(e[0].name == "first");
  CHECK(e[1].name == "second");
  CHECK(e[2].name == "operation");
  CHECK(e[0].depth == 0);
  CHECK(e[2].depth == 1);
  for (const Profiler::Entry& x : e) CHECK(x.calls == 2);
  CHECK(e[2].flops == 2e9);
  CHECK(e[0].ms > 0);
  CHECK(e[1].ms >= e[2].ms);  // the phase contains the operation
  Profiler p(ctx);
  CHECK_THROWS_WITH_AS(Profiler{ctx}, doctest::Contains("already has one"), Error);
  CHECK_THROWS_WITH_AS(p.end(), doctest::Contains("end() without begin()"), Error);
  p.begin("open", 0);
  CHECK_THROWS_WITH_AS(p.collect(), doctest::Contains("inside an open interval"), Error);
  p.end();
}

TEST_SUITE("cuda") {
  TEST_CASE("profiler: CUDA events time what the stream runs") {
    Context ctx(Device::CUDA);
    Tensor a(Shape{1 << 24}, Device::CUDA), b(Shape{1 << 24}, Device::CUDA);
    const std::vector<Profiler::Entry> e = profile_twice(ctx, [&] { copy_tensor(b.view(), a.view()); });
    REQUIRE(e.size() == 3);
    CHECK(e[2].calls == 2);
    CHECK(e[1].ms >= e[2].ms);
    CHECK(e[0].ms > 0);
  }

  TEST_CASE("uploader: two slots of pinned, asynchronous copies, overwritten only after done") {
    Context ctx(Device::CUDA);
    Uploader up(ctx);
    std::vector<float> a(1 << 20), b(1 << 20), c(1 << 21);
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(i), b[i] = -float(i);
    for (size_t i = 0; i < c.size(); ++i) c[i] = 0.5f * float(i);
    const Tensor ha = Tensor::from_host(Shape{int64_t(a.size())}, a, Device::CPU);
    const Tensor hb = Tensor::from_host(Shape{int64_t(b.size())}, b, Device::CPU);
    const Tensor hc = Tensor::from_host(Shape{int64_t(c.size())}, c, Device::CPU);
    const TensorView da = up.upload(ha.view(), 0, 0);
    const TensorView db = up.upload(hb.view(), 1, 0);
    CHECK(da.device == Device::CUDA);
    CHECK(da.data != db.data);
    up.ready(0);
    up.ready(1);
    CHECK(to_host(da) == a);  // to_host synchronises on the legacy stream after the waits
    CHECK(to_host(db) == b);
    up.done(0);
    const TensorView dc = up.upload(hc.view(), 0, 0);  // a larger upload grows the slot
    up.ready(0);
    CHECK(to_host(dc) == c);
    CHECK(to_host(db) == b);
    up.done(0);
    up.done(1);
  }
}

TEST_CASE("nccl: each process of a node takes the device of its local rank") {
  CHECK(process_device(0, 4, 4) == 0);
  CHECK(process_device(3, 4, 8) == 3);
  CHECK(process_device(2, 4, 1) == 0);  // one device each, bound by the launcher
  CHECK_THROWS_WITH_AS(process_device(2, 4, 2), doctest::Contains("4 processes were started on a node with 2 CUDA"),
                       Error);
  CHECK_THROWS_WITH_AS(process_device(0, 2, 0), doctest::Contains("sees no CUDA device"), Error);
  use_process_device(self_comm());  // one process: nothing to choose (no device needed)
}

TEST_CASE("nccl: the search names every place it looked, and a library that is not NCCL") {
  const char* before = std::getenv("NCCL_LIBRARY");
  const std::string saved = before ? before : "";
  setenv("NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
  const NcclLibrary missing = find_nccl();
  REQUIRE_FALSE(missing.tried.empty());
  CHECK(missing.tried[0].rfind("/nonexistent/libnccl.so.2: ", 0) == 0);
  if (!missing.found) {  // no NCCL on this machine: the refusal lists the places
    CHECK(missing.error.find("/nonexistent/libnccl.so.2") != std::string::npos);
    CHECK(missing.error.find("libnccl.so.2:") != std::string::npos);
    CHECK(missing.error.find("NCCL_LIBRARY") != std::string::npos);
  } else {
    CHECK(missing.version > 0);
  }
  setenv("NCCL_LIBRARY", "libm.so.6", 1);  // a library, but not NCCL
  const NcclLibrary wrong = find_nccl();
  REQUIRE_FALSE(wrong.tried.empty());
  CHECK(wrong.tried[0] == "libm.so.6: does not export ncclGetVersion (not NCCL?)");
  if (before)
    setenv("NCCL_LIBRARY", saved.c_str(), 1);
  else
    unsetenv("NCCL_LIBRARY");
}
