// Shared by the trainer tests of one process (test_trainer.cpp) and of two (test_mpi.cpp): the
// tiny synthetic set, quiet run options and a run that closes its output.
#pragma once
#include <cstdio>
#include <string>

#include "data/synth.h"
#include "engine/comm.h"
#include "u2pl/train/trainer.h"

namespace u2pl::test {

// 12 training images (4 labeled) and 4 val images of 40 px; batch 2 gives 4 iterations an epoch.
inline SynthSpec tiny_synth_spec(int classes = 4) {
  SynthSpec s;
  s.seed = 3;
  s.train = 12;
  s.val = 4;
  s.size = 40;
  s.classes = classes;
  s.labeled = {4};
  s.jpeg_quality = 95;
  return s;
}

// Options that print to a temporary file and draw one picture; `comm` null: this process alone.
inline TrainRunOptions quiet(const std::string& run_dir, int64_t stop_after = -1, bool resume = false,
                             Comm* comm = nullptr) {
  TrainRunOptions o;
  o.run_dir = run_dir;
  o.stop_after = stop_after;
  o.resume = resume;
  o.out = std::tmpfile();
  o.pictures = 1;
  o.comm = comm ? comm : &self_comm();
  return o;
}

inline TrainResult run(const TrainConfig& cfg, const TrainRunOptions& o) {
  const TrainResult r = train(cfg, o);
  std::fclose(o.out);
  return r;
}

}  // namespace u2pl::test
