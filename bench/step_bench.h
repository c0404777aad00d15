// The training-step benchmark behind `u2pl_bench step`: whole U2PL iterations of the real
// u2pl::TrainStep (teacher eval forward, pseudo-labels, CutMix, student forward + backward on
// [labeled | unlabeled], supervised + unsupervised + contrastive loss with the memory bank, SGD,
// EMA) on the VOC recipe under a preset, past the warm start, on synthetic in-memory batches; in
// ms, iterations/s and memory, beside bench/step_torch.py for the same iteration in PyTorch.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"

namespace u2pl::bench {

struct StepBenchOptions {
  Device device = Device::CPU;
  std::string preset = "paper";  // paper | official
  int depth = 101, output_stride = 8, width_divisor = 1, batch = 2, crop = 129, classes = 21, repeat = 3;
  int replicas = 1;      // trainer.replicas: `batch` labeled + `batch` unlabeled images each
  std::string memory = "auto";  // trainer.memory
  bool profile = false;  // time the phases and convolutions of the timed iterations (engine/profile.h)
};

// One warm-up iteration, then `repeat` timed ones; returns {preset, ms (median), iterations_per_s,
// peak_rss_bytes, arena_bytes{...}, last{loss terms of the last iteration}} and, with profile,
// profile[{name, depth, calls, ms_per_iteration, share, tflops}] (share of the timed iterations'
// total; tflops for the convolutions), also printed as a table on stderr.
nlohmann::json run_step_bench(const StepBenchOptions& o);

}  // namespace u2pl::bench
