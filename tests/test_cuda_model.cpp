// Tier 3 for the whole network: U2plNet on CUDA against the same network on the CPU, from the
// small PyTorch dump's weights: eval, train and train-statistics forwards (the same dropout
// scales), BN running statistics, and every parameter gradient. Part of the `cuda` suite.
#include <doctest/doctest.h>

#include "tests/model_fixture.h"

using namespace u2pl;
using namespace u2pl::test;

TEST_SUITE("cuda") {
  TEST_CASE("network memory modes on CUDA: recompute_bn and recompute_blocks equal keep bit for bit") {
    const SafeTensorsFile f(std::string(U2PL_FIXTURE_DIR) + "/model_small.safetensors");
    const MemoryRun keep = run_memory_mode(f, MemoryMode::Keep, Device::CUDA);
    for (const MemoryMode m : {MemoryMode::RecomputeBn, MemoryMode::RecomputeBlocks}) {
      INFO(memory_mode_name(m));
      expect_same_as_keep(run_memory_mode(f, m, Device::CUDA), keep);
    }
  }

  TEST_CASE("network: CUDA matches CPU in every mode, forward and backward") {
    const SafeTensorsFile f(std::string(U2PL_FIXTURE_DIR) + "/model_small.safetensors");
    const NetConfig cfg = config_of(f);
    U2plNet cpu_net(cfg), gpu_net(cfg);
    cpu_net.allocate(Device::CPU, 1);
    gpu_net.allocate(Device::CUDA, 1);
    load_dump_weights(f, cpu_net);
    load_dump_weights(f, gpu_net);
    Context cpu(Device::CPU), gpu(Device::CUDA, /*deterministic=*/true);
    const Tensor x = tensor_of(f, "in.x");
    const Tensor xg = Tensor::from_host(x.shape(), x.to_host(), Device::CUDA);
    auto compare = [&](const NetOutputs& a, const NetOutputs& b, const char* what, Tol tol) {
      gpu.synchronize();
      INFO(what);
      check_close(std::string(what) + " pred", to_host(b.pred), to_host(a.pred), tol);
      check_close(std::string(what) + " rep", to_host(b.rep), to_host(a.rep), tol);
      check_close(std::string(what) + " aux", to_host(b.aux), to_host(a.aux), tol);
    };
    compare(cpu_net.forward(cpu, x, NetMode::Eval, nullptr), gpu_net.forward(gpu, xg, NetMode::Eval, nullptr), "eval",
            kForwardNormwise);

    // Train-statistics with the same Philox draws on both devices, then Train with the fixture's masks.
    Rng rc(9), rg(9);
    compare(cpu_net.forward(cpu, x, NetMode::TrainStats, &rc), gpu_net.forward(gpu, xg, NetMode::TrainStats, &rg),
            "train-statistics", kForwardNormwise);
    load_dump_dropout(f, cpu_net, x.shape());
    load_dump_dropout(f, gpu_net, x.shape());
    compare(cpu_net.forward(cpu, x, NetMode::Train, nullptr), gpu_net.forward(gpu, xg, NetMode::Train, nullptr), "train",
            kForwardNormwise);
    check_close("BN buffers", to_host(gpu_net.params().buffers().all()), to_host(cpu_net.params().buffers().all()),
                kForwardNormwise);

    auto on = [](const Tensor& t, Device d) { return Tensor::from_host(t.shape(), t.to_host(), d); };
    const Tensor wp = tensor_of(f, "loss.w_pred"), wr = tensor_of(f, "loss.w_rep"), wa = tensor_of(f, "loss.w_aux");
    cpu_net.params().zero_grad();
    gpu_net.params().zero_grad();
    cpu_net.backward(cpu, wp, wr, wa);
    const Tensor wpg = on(wp, Device::CUDA), wrg = on(wr, Device::CUDA), wag = on(wa, Device::CUDA);
    gpu_net.backward(gpu, wpg, wrg, wag);
    gpu.synchronize();
    for (const ParamDecl& d : cpu_net.params().decls()) {
      if (!d.trainable) continue;
      const int id = cpu_net.params().find(d.name);
      check_close("grad " + d.name, to_host(gpu_net.params().grad(id)), to_host(cpu_net.params().grad(id)),
                  kGradNormwise);
    }
  }
}
