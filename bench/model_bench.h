// The model benchmark behind `u2pl_bench model`: the U2PL network's eval forward, train
// forward + backward, and a U2PL-shaped step (teacher eval forward on B images, student forward
// + backward on 2B, teacher train-statistics forward on 2B), in ms, images/s and memory, beside
// bench/model_torch.py for the same network in PyTorch. `--plan-only` gives the memory the
// arena plan needs for a configuration without allocating it (e.g. the VOC recipe on a GPU).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "u2pl/net/model.h"

namespace u2pl::bench {

struct ModelBenchOptions {
  Device device = Device::CPU;
  int depth = 101, output_stride = 8, width_divisor = 1, batch = 2, crop = 129, repeat = 3;
  std::string mode = "train";  // eval | train | u2pl
  int device_memory_gib = 0;   // plan_memory: the mode `auto` picks on a device of this size (0: none)
};

NetConfig bench_net_config(const ModelBenchOptions& o);

// Runs one mode: a warm-up, then `repeat` timed runs; returns {mode, ms (median), images_per_s,
// peak_rss_bytes, arena_bytes{...}}.
nlohmann::json run_model_bench(const ModelBenchOptions& o);

// The memory the arenas and activation plans of a U2PL step need (student parameters,
// gradients, momentum; teacher parameters; BN buffers of both; student Train plan on 2B, teacher
// Eval plan on B and TrainStats plan on 2B; the memory bank of the public configs' queue sizes;
// the step's buffers; the CUDA context's scratch), without allocating; `modes`: the total
// in each memory mode (the teacher's plans in the student's idle memory); with
// device_memory_gib, `auto`: the mode trainer.memory auto picks on it.
nlohmann::json plan_memory(const ModelBenchOptions& o);

// This process's peak resident set size so far (getrusage).
size_t peak_rss_bytes();

}  // namespace u2pl::bench
