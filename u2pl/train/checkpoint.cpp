// Training checkpoints (u2pl/train/checkpoint.h): tensors under `student.`, `teacher.`,
// `optimizer.` and `bank.` prefixes plus string metadata, through engine/safetensors.h (atomic
// writes). Loading checks the whole file before the first copy. Covered by tests/test_trainer.cpp.
#include "u2pl/train/checkpoint.h"

#include <sstream>
#include <type_traits>
#include <vector>

#include "engine/safetensors.h"
#include "u2pl/net/weights.h"

namespace u2pl {

namespace {

void add_model(SafeTensorsWriter& w, const std::string& prefix, const U2plNet& net) {
  const ParamSet& ps = net.params();
  for (size_t i = 0; i < ps.decls().size(); ++i) w.add(prefix + ps.decls()[i].name, ps.value(static_cast<int>(i)));
}

// A metadata entry that must be a whole number (T integral) or a number.
template <class T>
T meta_number(const SafeTensorsFile& f, const std::string& key) {
  const std::string v = f.meta(key);
  std::istringstream in(v);
  T x{};
  in >> x;
  U2PL_CHECK(!v.empty() && in && in.eof(), f.path() << ": checkpoint metadata " << key << " = '" << v << "' is not "
                                                    << (std::is_integral<T>::value ? "an integer" : "a number"));
  return x;
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointState& st, const U2plNet& student,
                     const U2plNet* teacher, TensorView momentum, const MemoryBank* bank) {
  SafeTensorsWriter w;
  add_model(w, "student.", student);
  if (teacher) add_model(w, "teacher.", *teacher);
  w.add("optimizer.momentum", momentum);
  if (bank) {
    for (int c = 0; c < bank->classes(); ++c) {
      const std::vector<float> rows = bank->contents(c);
      w.add("bank." + std::to_string(c), DType::F32, {bank->size(c), bank->dim()}, rows.data());
    }
  }
  w.set_metadata("format", kTrainCheckpointFormat);
  w.set_metadata("eval_model", st.eval_model);
  w.set_metadata("iter", std::to_string(st.iter));
  char best[64];
  std::snprintf(best, sizeof(best), "%.17g", st.best_miou);
  w.set_metadata("best_miou", best);
  w.set_metadata("best_iter", std::to_string(st.best_iter));
  w.set_metadata("seed", std::to_string(st.seed));
  w.set_metadata("teacher", teacher ? "yes" : "no");
  w.set_metadata("bank", bank ? "yes" : "no");
  w.set_metadata("config", st.config_yaml);
  w.set_metadata("source", "u2pl_train");
  w.write(path, "checkpoint");
}

int64_t checkpoint_data_bytes(const U2plNet& student, const U2plNet* teacher, TensorView momentum,
                              const MemoryBank* bank) {
  auto floats = [](const U2plNet* n) {  // what add_model writes: each declared tensor, no arena padding
    int64_t k = 0;
    for (size_t i = 0; n && i < n->params().decls().size(); ++i) k += n->params().value(static_cast<int>(i)).numel();
    return k;
  };
  int64_t n = floats(&student) + floats(teacher) + momentum.numel();
  if (bank) n += bank->total_capacity() * bank->dim();
  return int64_t(sizeof(float)) * n;
}

LoadedCheckpoint load_checkpoint(const std::string& path, U2plNet& student, U2plNet* teacher,
                                 TensorView momentum, MemoryBank* bank) {
  const SafeTensorsFile f(path);
  const auto fmt = f.metadata().find("format");
  U2PL_CHECK(fmt != f.metadata().end() && fmt->second == kTrainCheckpointFormat,
             path << ": not a u2pl_train checkpoint (no format = " << kTrainCheckpointFormat << " metadata)");
  LoadedCheckpoint out;
  CheckpointState& st = out.state;
  st.iter = meta_number<int64_t>(f, "iter");
  st.best_iter = meta_number<int64_t>(f, "best_iter");
  st.best_miou = meta_number<double>(f, "best_miou");
  st.seed = meta_number<uint64_t>(f, "seed");
  st.eval_model = f.meta("eval_model");
  st.config_yaml = f.meta("config");
  U2PL_CHECK(st.iter >= 0, path << ": checkpoint iteration " << st.iter << " is negative");
  U2PL_CHECK(st.eval_model == "teacher" || st.eval_model == "student",
             path << ": checkpoint metadata eval_model = '" << st.eval_model << "' (expected teacher or student)");
  const bool has_teacher = f.meta("teacher") == "yes";
  U2PL_CHECK(has_teacher == (teacher != nullptr),
             path << ": the checkpoint " << (has_teacher ? "has" : "has no") << " teacher, but this run "
                  << (teacher ? "uses one" : "has none") << " (a different method config?)");
  U2PL_CHECK(f.has("optimizer.momentum") && f.entry("optimizer.momentum").numel() == momentum.numel() &&
                 f.entry("optimizer.momentum").dtype == DType::F32,
             path << ": optimizer.momentum missing or not " << momentum.numel() << " F32 values");
  out.had_bank = f.meta("bank") == "yes";
  std::vector<std::vector<float>> rows;
  if (bank && out.had_bank) {
    for (int c = 0; c < bank->classes(); ++c) {
      const std::string name = "bank." + std::to_string(c);
      U2PL_CHECK(f.has(name), path << ": memory bank queue " << name << " is missing");
      const StEntry& e = f.entry(name);
      U2PL_CHECK(e.shape.size() == 2 && e.shape[1] == bank->dim() && e.shape[0] <= bank->capacity(c),
                 path << ": " << name << " must be (at most " << bank->capacity(c) << ", " << bank->dim()
                      << ") rows");
      rows.push_back(f.floats(name));
    }
    U2PL_CHECK(!f.has("bank." + std::to_string(bank->classes())),
               path << ": the checkpoint's memory bank has more than " << bank->classes() << " classes");
  }
  // Everything checked but the networks (load_weights_prefixed checks each before copying).
  load_weights_prefixed(student.params(), f, "student.");
  if (teacher) load_weights_prefixed(teacher->params(), f, "teacher.");
  const std::vector<float> m = f.floats("optimizer.momentum");
  copy_tensor(momentum, TensorView(const_cast<float*>(m.data()), momentum.shape, Device::CPU));
  if (bank && out.had_bank)
    for (int c = 0; c < bank->classes(); ++c)
      bank->restore(c, rows[size_t(c)].data(), static_cast<int64_t>(rows[size_t(c)].size()) / bank->dim());
  return out;
}

}  // namespace u2pl
