// The training iteration (u2pl/train/train_step.h) on CUDA against the same iterations on the CPU:
// the same initial weights, batches and Philox draws, six iterations through the warm start, the
// handover and the EMA (one replica and two), and two at memcheck's size. CutMix (no contrastive
// term) compares closely; U2PL compares loosely, since a float32 difference at an entropy
// threshold moves a pixel between the contrastive candidate lists and the draws then pick other
// rows. Also: the memory modes against keep on CUDA (bit for bit), the workspace within its
// figure, the gradient buckets and the communicator through NCCL in one process. Part of the
// `cuda` suite.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "engine/nccl.h"
#include "layers/elementwise.h"
#include "tests/config_test_util.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"
#include "u2pl/train/train_step.h"

using namespace u2pl;
using namespace u2pl::test;

namespace {

// The trainer tests' config (no data is read: the batches are made here), seed 5.
TrainConfig cuda_config(const std::string& method, int replicas = 1) {
  const std::string t = tiny_train_config("/nonexistent", 4, method);
  return load_train_config(
      write_yaml("cuda_train_" + method, t),
      {"trainer.seed=5", "trainer.unsupervised.drop_percent=80", "trainer.replicas=" + std::to_string(replicas)},
      nullptr);
}


void copy_state(U2plNet& dst, U2plNet& src) {
  copy_tensor(dst.params().values().all(), src.params().values().all());
  copy_tensor(dst.params().buffers().all(), src.params().buffers().all());
}

// Iteration `it`'s batch of `images` labeled and unlabeled images at 33 px in host memory: random
// images, labels in blobs of 4 classes with a tenth ignored.
struct StepBatch {
  Tensor img_l, img_u;
  Labels lab;
};
StepBatch step_batch(int64_t it, int64_t images) {
  const Shape is{images, 3, 33, 33}, ls{images, 33, 33};
  const size_t n = size_t(is.numel());
  std::vector<int32_t> lv(size_t(ls.numel()));
  for (size_t i = 0; i < lv.size(); ++i)
    lv[i] = philox_uniform(uint64_t(70 + it), 1, i) < 0.1f ? 255 : int32_t((i / 97 + size_t(it)) % 4);
  return {Tensor::from_host(is, random_floats(n, uint64_t(10 + it), -2.f, 2.f), Device::CPU),
          Tensor::from_host(is, random_floats(n, uint64_t(40 + it), -2.f, 2.f), Device::CPU),
          Labels::from_host(ls, lv, Device::CPU)};
}

// `iterations` CUDA iterations of `method` against the CPU's from the same state, batches and
// draws, with `per_epoch` iterations an epoch (epoch 0 the warm start, epoch 1 the handover, then
// the EMA), `replicas` replicas of 2 + 2 images in the one process (SyncBN over them, each its
// own losses, the bank's pushes in replica order). CutMix (no contrastive term) compares closely;
// U2PL loosely (see the top).
void follow_cpu(const std::string& method, int64_t iterations, int64_t per_epoch, int replicas = 1) {
  INFO(method << ", " << replicas << " replicas");
  const TrainConfig cfg = cuda_config(method, replicas);
  TrainStep cpu_step(cfg, Device::CPU), gpu_step(cfg, Device::CUDA);
  for (TrainStep* s : {&cpu_step, &gpu_step}) s->set_iters_per_epoch(per_epoch);
  copy_state(gpu_step.student(), cpu_step.student());
  copy_state(*gpu_step.teacher(), *cpu_step.teacher());
  Context cpu(Device::CPU), gpu(Device::CUDA, /*deterministic=*/true);
  const bool close = method == "cutmix";
  for (int64_t it = 0; it < iterations; ++it) {
    INFO("iteration " << it);
    const StepBatch sb = step_batch(it, 2 * replicas);
    const int epoch = int(it / per_epoch);
    PhiloxStepDraws dc(cfg.seed, it, replicas), dg(cfg.seed, it, replicas);
    const StepResult rc = cpu_step.step(cpu, sb.img_l, sb.lab, sb.img_u, it, epoch, dc);
    const StepResult rg = gpu_step.step(gpu, sb.img_l, sb.lab, sb.img_u, it, epoch, dg);
    CHECK(rg.semi == rc.semi);
    CHECK(rg.ema == rc.ema);
    CHECK(rg.sup == doctest::Approx(rc.sup).epsilon(close ? 1e-3 : 2e-2));
    CHECK(rg.unsup == doctest::Approx(rc.unsup).epsilon(close ? 1e-3 : 2e-2));
    CHECK(rg.thresh == doctest::Approx(rc.thresh).epsilon(1e-3));
    CHECK(std::isfinite(rg.contra));
    if (!close && rc.semi) {
      CHECK(rg.contra_terms > 0);
      CHECK(rg.contra == doctest::Approx(rc.contra).epsilon(0.1));
    }
  }
  gpu.synchronize();
  const Tol tol{1e-5, close ? 1e-3 : 3e-2, true};
  check_close("student", to_host(gpu_step.student().params().values().all()),
              to_host(cpu_step.student().params().values().all()), tol);
  check_close("teacher", to_host(gpu_step.teacher()->params().values().all()),
              to_host(cpu_step.teacher()->params().values().all()), tol);
  check_close("momentum", to_host(gpu_step.momentum()), to_host(cpu_step.momentum()), tol);
  if (!close)
    for (int c = 0; c < 4; ++c) {
      INFO("queue " << c);
      CHECK(double(gpu_step.bank()->size(c)) == doctest::Approx(double(cpu_step.bank()->size(c))).epsilon(0.05));
    }
}

// The same steps in another memory mode on CUDA: bit for bit the keep mode's (same kernels).
void same_in_mode(MemoryMode m) {
  INFO(memory_mode_name(m));
  const TrainConfig cfg = cuda_config("u2pl");
  TrainStep keep(cfg, Device::CUDA), other(cfg, Device::CUDA);
  other.student().set_memory_mode(m);
  copy_state(other.student(), keep.student());
  copy_state(*other.teacher(), *keep.teacher());
  for (TrainStep* s : {&keep, &other}) s->set_iters_per_epoch(2);
  Context ctx(Device::CUDA, true);  // one context: the same convolution algorithms for both
  for (int64_t it = 0; it < 4; ++it) {
    const StepBatch sb = step_batch(it, 2);
    PhiloxStepDraws dk(cfg.seed, it), d_o(cfg.seed, it);
    const StepResult rk = keep.step(ctx, sb.img_l, sb.lab, sb.img_u, it, int(it / 2), dk);
    const StepResult ro = other.step(ctx, sb.img_l, sb.lab, sb.img_u, it, int(it / 2), d_o);
    CHECK(ro.total == rk.total);
  }
  CHECK(to_host(other.student().params().values().all()) == to_host(keep.student().params().values().all()));
  CHECK(to_host(other.teacher()->params().values().all()) == to_host(keep.teacher()->params().values().all()));
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("train step: CUDA iterations follow the CPU's (warm start, handover, EMA)") {
    for (const std::string method : {"cutmix", "u2pl"}) follow_cpu(method, 6, 2);
  }

  // Small enough for tools/gpu_check.sh's compute-sanitizer run: the warm start, then the
  // handover with every U2PL term and a memory-bank push.
  TEST_CASE("train step: two U2PL iterations on CUDA (warm start, handover)") { follow_cpu("u2pl", 2, 1); }

  // The context's scratch after U2PL iterations (convolutions within the cap, the losses' sorts and
  // contrastive rows) stays within the step's memory figure, at the default cap and a small one
  // (at this size the losses' fixed allowance dominates: the contrastive loss checks its own
  // CUB scratch against the figure's bound at every call).
  TEST_CASE("train step: the CUDA workspace stays within the memory figure's") {
    for (const int mib : {int(kDefaultWorkspaceCap >> 20), 16}) {
      INFO("trainer.conv_workspace_mib " << mib);
      TrainConfig cfg = cuda_config("u2pl");
      cfg.conv_workspace_mib = mib;
      TrainStep ts(cfg, Device::CUDA);
      ts.set_iters_per_epoch(1);
      Context ctx(Device::CUDA);
      ctx.set_workspace_cap(size_t(mib) << 20);
      for (int64_t it = 0; it < 2; ++it) {
        const StepBatch sb = step_batch(it, 2);
        PhiloxStepDraws d(cfg.seed, it);
        ts.step(ctx, sb.img_l, sb.lab, sb.img_u, it, int(it), d);
      }
      const StepMemory m = step_memory(cfg, ts.student(), Shape{2, 3, 33, 33}, MemoryMode::Keep);
      CHECK(ctx.workspace_bytes() > 0);
      CHECK(ctx.workspace_bytes() <= m.workspace);
    }
  }

  // The public 2-GPU recipe in one process: SyncBN's per-replica kernels, per-replica losses, the
  // bank's pushes of both replicas before either samples.
  TEST_CASE("train step: two replicas on one GPU follow the CPU's two replicas") {
    for (const std::string method : {"cutmix", "u2pl"}) follow_cpu(method, 4, 2, 2);
  }

  // The CUDA path of several processes, as far as one process goes: each bucket's NCCL sum queued
  // on the side stream after the kernels that wrote its gradients, the context's stream after all.
  TEST_CASE("gradient all-reduce on CUDA: buckets through NCCL on a side stream, one process") {
    const NcclLibrary& lib = nccl_library();
    if (!lib.found) {
      MESSAGE("NCCL not found on this machine: " << lib.error);
      return;
    }
    const TrainConfig cfg = cuda_config("u2pl");
    U2plNet net(cfg.net);
    net.allocate(Device::CUDA, 1, true);
    ParamSet& ps = net.params();
    const TensorView grads = ps.grads().all();
    const std::vector<float> g = random_floats(size_t(grads.numel()), 3, -1.f, 1.f);
    const Tensor source = Tensor::from_host(grads.shape, g, Device::CUDA);
    Context ctx(Device::CUDA, true);
    NcclComm nccl(self_comm());
    GradientReducer r(nccl, ps, 4096);  // small buckets: several of them
    REQUIRE(r.buckets() > 3);
    CHECK(error_of([&] { GradientReducer(self_comm(), ps); }).find("through NCCL") != std::string::npos);
    std::vector<int> ids;  // backward's order: the last parameters first
    for (size_t id = 0; id < ps.decls().size(); ++id)
      if (ps.decls()[id].trainable) ids.push_back(int(id));
    std::sort(ids.begin(), ids.end(), [&](int a, int b) { return ps.grad(a).data > ps.grad(b).data; });
    for (int step = 0; step < 2; ++step) {
      INFO("step " << step);
      ps.zero_grad();
      r.begin(ctx);
      for (const int id : ids) {  // each gradient written by a kernel on ctx's stream, then reported
        const TensorView dst = ps.grad(id);
        const TensorView src(source.data() + (dst.data - grads.data), dst.shape, Device::CUDA);
        accumulate(ctx, src, dst, 0.f);
        r.ready(dst);
      }
      r.finish();
      CHECK(r.started_early() == r.buckets());
      ctx.synchronize();
      for (const int id : ids) {  // a sum over one process (the arena's padding is no parameter's)
        const std::vector<float> got = to_host(ps.grad(id));
        const size_t at = size_t(ps.grad(id).data - grads.data);
        CHECK_MESSAGE(got == std::vector<float>(g.begin() + long(at), g.begin() + long(at + got.size())),
                      ps.decls()[size_t(id)].name);
      }
    }
  }

  // The rebuilding and replaying backward, the teacher and the losses in the student's idle memory.
  TEST_CASE("train step: every memory mode on CUDA equals keep bit for bit (warm start, handover, EMA)") {
    for (const MemoryMode m : {MemoryMode::RecomputeBn, MemoryMode::RecomputeBlocks}) same_in_mode(m);
  }

  TEST_CASE("nccl: a one-process communicator sums, gathers and broadcasts device memory") {
    const NcclLibrary& lib = nccl_library();
    if (!lib.found) {  // the refusal must say where it looked
      CHECK(lib.error.find("libnccl.so.2") != std::string::npos);
      MESSAGE("NCCL not found on this machine: " << lib.error);
      return;
    }
    MESSAGE("NCCL " << lib.version << " from " << lib.path);
    Context ctx(Device::CUDA, true);
    NcclComm c(self_comm());
    CHECK(c.size() == 1);
    CHECK(c.rank() == 0);
    const std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 7.f};
    Tensor a = Tensor::from_host(Shape{5}, v, Device::CUDA), all(Shape{5}, Device::CUDA);
    c.allreduce_sum(ctx, a.data(), 5);
    c.allgather(ctx, a.data(), 5, all.data());
    c.broadcast(ctx, all.data(), 5, 0);
    ctx.synchronize();
    CHECK(a.to_host() == v);
    CHECK(all.to_host() == v);
    const std::vector<double> d = {0.25, -1e300};
    std::vector<double> back(2);
    Buffer dd(Device::CUDA, 2 * sizeof(double));
    copy_bytes(dd.data(), Device::CUDA, d.data(), Device::CPU, 2 * sizeof(double));
    c.allreduce_sum(ctx, static_cast<double*>(dd.data()), 2);
    ctx.synchronize();
    copy_bytes(back.data(), Device::CPU, dd.data(), Device::CUDA, 2 * sizeof(double));
    CHECK(back == d);
  }
}
