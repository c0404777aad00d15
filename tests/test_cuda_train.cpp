// The training iteration (u2pl/train_step.h) on CUDA against the same iterations on the CPU: the
// same initial weights, batches and Philox draws, six iterations through the warm start, the
// handover and the EMA. CutMix (no contrastive term) compares closely; U2PL compares loosely,
// since a float32 difference at an entropy threshold moves a pixel between the contrastive
// candidate lists and the draws then pick other rows. Part of the `cuda` suite.
#include <doctest/doctest.h>

#include <cmath>

#include "config_test_util.h"
#include "gradcheck.h"
#include "test_util.h"
#include "u2pl/train_step.h"

using namespace u2pl;
using namespace u2pl::test;

namespace {

TrainConfig cuda_config(const std::string& method) {
  std::string t = R"(dataset:
  type: pascal_semi
  train:
    data_root: /nonexistent
    data_list: /nonexistent/labeled.txt
    crop: {type: rand, size: [33, 33]}
  val:
    data_root: /nonexistent
    data_list: /nonexistent/val.txt
  batch_size: 2
trainer:
  epochs: 3
  sup_only_epoch: 1
  seed: 5
  optimizer: {type: SGD, kwargs: {lr: 0.01, momentum: 0.9, weight_decay: 0.0001}}
  lr_scheduler: {mode: poly, kwargs: {power: 0.9}}
  unsupervised: {drop_percent: 80, apply_aug: cutmix}
)";
  if (method == "u2pl")
    t += "  contrastive: {low_rank: 2, high_rank: 4, num_negatives: 8, num_queries: 4, queue_size: 40, "
         "queue_size_background: 60}\n";
  t += R"(net:
  num_classes: 4
  encoder:
    type: u2pl.models.resnet.resnet18
    kwargs: {multi_grid: False, replace_stride_with_dilation: [False, False, True], width_divisor: 16}
  decoder:
    type: u2pl.models.decoder.dec_deeplabv3_plus
    kwargs: {inner_planes: 16, dilations: [2, 4, 6]}
)";
  return load_train_config(u2pl::test::write_yaml("cuda_train_" + method, t), {}, nullptr);
}

void copy_state(U2plNet& dst, U2plNet& src) {
  copy_tensor(dst.params().values().all(), src.params().values().all());
  copy_tensor(dst.params().buffers().all(), src.params().buffers().all());
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("train step: CUDA iterations follow the CPU's (warm start, handover, EMA)") {
    for (const std::string method : {"cutmix", "u2pl"}) {
      INFO(method);
      const TrainConfig cfg = cuda_config(method);
      TrainStep cpu_step(cfg, Device::CPU), gpu_step(cfg, Device::CUDA);
      for (TrainStep* s : {&cpu_step, &gpu_step}) s->set_iters_per_epoch(2);
      copy_state(gpu_step.student(), cpu_step.student());
      copy_state(*gpu_step.teacher(), *cpu_step.teacher());
      Context cpu(Device::CPU), gpu(Device::CUDA, /*deterministic=*/true);
      const bool close = method == "cutmix";
      for (int64_t it = 0; it < 6; ++it) {
        INFO("iteration " << it);
        const Shape is{2, 3, 33, 33}, ls{2, 33, 33};
        const Tensor img_l =
            Tensor::from_host(is, random_floats(size_t(is.numel()), uint64_t(10 + it), -2.f, 2.f), Device::CPU);
        const Tensor img_u =
            Tensor::from_host(is, random_floats(size_t(is.numel()), uint64_t(40 + it), -2.f, 2.f), Device::CPU);
        std::vector<int32_t> lv(size_t(ls.numel()));
        for (size_t i = 0; i < lv.size(); ++i)  // blobs of 4 classes, a tenth ignored
          lv[i] = philox_uniform(uint64_t(70 + it), 1, i) < 0.1f ? 255 : int32_t((i / 97 + size_t(it)) % 4);
        const Labels lab = Labels::from_host(ls, lv, Device::CPU);
        const int epoch = int(it / 2);
        PhiloxStepDraws dc(cfg.seed, it), dg(cfg.seed, it);
        const StepResult rc = cpu_step.step(cpu, img_l, lab, img_u, it, epoch, dc);
        const StepResult rg = gpu_step.step(gpu, img_l, lab, img_u, it, epoch, dg);
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
  }
}
