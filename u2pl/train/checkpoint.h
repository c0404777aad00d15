// Training checkpoints (issue "U2PL training"): one safetensors file holding the student
// (`student.<key>`, parameters and BN buffers), the teacher (`teacher.<key>`), the SGD momentum
// (`optimizer.momentum`, the flat value arena), optionally the memory bank (`bank.<class>`, rows
// oldest first) and, as metadata, the iteration, best score, seed and resolved config. Written
// atomically (temporary file, then rename). u2pl_eval and u2pl_infer read such a file through
// load_weights (u2pl/net/weights.h), which picks `eval_model`. The RNG needs no state of its own:
// every draw of iteration i comes from Philox counters derived from (seed, i)
// (u2pl/train/trainer.cpp). Covered by tests/test_trainer.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "u2pl/losses/memory_bank.h"
#include "u2pl/net/model.h"

namespace u2pl {

struct CheckpointState {
  int64_t iter = 0;           // iterations completed: the next one to run
  double best_miou = -1;      // best validation mIoU so far (fraction); -1 before any validation
  int64_t best_iter = -1;     // the iteration count at which it was reached
  std::string eval_model;     // "teacher" | "student": the model validation scores
  uint64_t seed = 0;          // trainer.seed of the run
  std::string config_yaml;    // the resolved config (u2pl/train/train_config.h resolved_yaml)
};

// teacher and bank may be null (no teacher yet / banks not saved). momentum: the optimizer's
// flat momentum arena (any device).
void save_checkpoint(const std::string& path, const CheckpointState& st, const U2plNet& student,
                     const U2plNet* teacher, TensorView momentum, const MemoryBank* bank);

// The bytes of tensor data such a checkpoint holds at most (the bank full), without its header:
// what the run directory needs room for (Trainer's free-space warning).
int64_t checkpoint_data_bytes(const U2plNet& student, const U2plNet* teacher, TensorView momentum,
                              const MemoryBank* bank);

struct LoadedCheckpoint {
  CheckpointState state;
  bool had_bank = false;  // the file held memory-bank rows (restored into the bank given)
};

// Restores a checkpoint into allocated networks, the momentum arena and (when given and saved)
// the bank. Every mismatch (a network of another shape, a missing teacher, a momentum of another
// length, bank rows of another width or beyond a queue's capacity, a file that is not a training
// checkpoint) throws naming the file. The metadata, momentum and bank are checked before anything
// is copied, each network before its own copy; after a throw the caller must not train on.
LoadedCheckpoint load_checkpoint(const std::string& path, U2plNet& student, U2plNet* teacher,
                                 TensorView momentum, MemoryBank* bank);

}  // namespace u2pl
