// The U2PL training loop (SPEC §3): student and EMA teacher, the warm start, CutMix on the
// unlabeled batch, the supervised, unsupervised and contrastive losses with the preset's switches,
// poly learning rate with the backbone / head groups, validation, the run directory (config.yaml,
// log.jsonl, curves.svg, ckpt_latest / ckpt_best, pictures/) and bit-exact resume. The baselines
// are configs: no trainer.unsupervised section is SupOnly; unsupervised without contrastive is MT
// (apply_aug none) or CutMix. Used by apps/u2pl_train.cpp. Covered by tests/test_trainer.cpp.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "data/augment.h"
#include "engine/comm.h"
#include "u2pl/net/model.h"
#include "u2pl/train/train_config.h"

namespace u2pl {

struct TrainRunOptions {
  std::string run_dir;          // where the run's files go (created; see the file comment)
  bool resume = false;          // continue from run_dir/ckpt_latest.safetensors
  Device device = Device::CPU;
  int64_t stop_after = -1;      // stop after this many iterations of this process, saving ckpt_latest (tests)
  bool terminal = false;        // a progress bar redrawn in place instead of periodic lines
  std::FILE* out = stderr;      // progress and messages
  int pictures = 4;             // val images drawn into pictures/ at each validation
  std::vector<std::string> config_log;  // lines from load_train_config, printed and kept in the log
  // The run's processes (null: world(), engine/comm.h). Each runs trainer.replicas / size of the
  // replicas; rank 0 alone prints and writes the run directory, which every process must see
  // (a resume reads the checkpoint on each).
  Comm* comm = nullptr;
};

struct TrainResult {
  int64_t iterations = 0;      // iterations completed (all processes of the run)
  int64_t total = 0;           // iterations of the whole schedule
  double best_miou = -1;       // best validation mIoU (fraction), -1 without validation
  int64_t best_iter = -1;
  double last_miou = -1;       // the last validation's mIoU
  std::string eval_model;      // the model validated last: teacher | student
  bool interrupted = false;    // stopped by a signal or stop_after before the end
  MemoryMode memory = MemoryMode::Keep;  // the student's memory mode (trainer.memory, resolved)
};

// The training augmentation of the config: dataset.train (scale, flip, crop) with the preset's
// scale mode and label padding.
AugmentSpec train_augment(const TrainConfig& cfg);

// What check_runnable decided: the memory mode to train in (trainer.memory, `auto` resolved to
// the fastest mode whose figure leaves a tenth of the device's free memory, or of the available
// RAM, free) and a log line naming it with every mode's figure.
struct RunPlan {
  MemoryMode memory = MemoryMode::Keep;
  std::string memory_line;
};

// The memory bank's storage: queue_size rows for each class but the background's
// queue_size_background, of `dim` floats.
size_t memory_bank_bytes(const TrainConfig& cfg, int64_t dim);

// Everything that makes a config unrunnable before any work starts (no fixed-size crop, a crop
// the network cannot take or the device cannot hold in the chosen memory mode, a semi-supervised
// term without unlabeled data, missing data or weights, replicas that do not split over the
// processes) throws naming the key or file. The memory figures are one process's, which runs
// trainer.replicas / processes replicas.
RunPlan check_runnable(const TrainConfig& cfg, Device dev, int processes = 1);

// Runs (or resumes) the schedule. A non-finite loss stops the run with an Error naming the
// iteration and the term; ckpt_latest then still holds the last good state.
TrainResult train(const TrainConfig& cfg, const TrainRunOptions& opt);

}  // namespace u2pl
