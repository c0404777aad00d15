// Loading and saving the engine's weights (safetensors, engine/safetensors.h) by state-dict key
// with exact dtype and shape checks: one error lists every missing, unexpected and mis-shaped
// tensor. A whole-model file fills every parameter and buffer; a backbone file fills `encoder.*`
// and leaves the rest as initialised. Covered by tests/test_weights.cpp.
#pragma once
#include <map>
#include <string>

#include "engine/params.h"
#include "engine/safetensors.h"

namespace u2pl {

enum class WeightScope {
  Auto,      // Model when the file holds any non-encoder tensor, else Backbone
  Model,     // every tensor of the ParamSet must be in the file, and nothing else
  Backbone,  // every `encoder.*` tensor of the ParamSet must be in the file; the file holds only encoder.*
};

struct WeightReport {
  WeightScope scope;     // the scope actually used (Auto resolved)
  int loaded = 0;        // tensors copied
  std::string source;    // the file's `source` metadata (what it was converted from), or the path
};

// The __metadata__ "format" of a training checkpoint (u2pl/train/checkpoint.h): its tensors are
// `student.*`, `teacher.*` and training state; "eval_model" names the model evaluation uses.
constexpr const char* kTrainCheckpointFormat = "u2pl-train-checkpoint";

// Copies tensors into `ps` (allocated, any device). Throws u2pl::Error naming the file and listing
// every missing, unexpected and mis-shaped (or non-F32) tensor; nothing is copied then. A training
// checkpoint loads its eval_model's tensors (the teacher once it exists, else the student).
WeightReport load_weights(ParamSet& ps, const std::string& path, WeightScope scope = WeightScope::Auto);

// The tensors `prefix` + key of an open file, every parameter and buffer of `ps` (Model scope).
WeightReport load_weights_prefixed(ParamSet& ps, const SafeTensorsFile& file, const std::string& prefix);

// Writes every parameter and buffer of `ps` as F32, atomically (temporary file, then rename).
// `meta` is stored as __metadata__; callers record there where the weights came from (`source`).
void save_weights(const ParamSet& ps, const std::string& path,
                  const std::map<std::string, std::string>& meta);

}  // namespace u2pl
