// Weight loading and saving by state-dict key (u2pl/net/weights.h, STYLE 19): every problem of a
// file (missing, unexpected, mis-shaped, non-F32 tensors) is collected before anything is copied,
// then reported in one u2pl::Error. Covered by tests/test_weights.cpp.
#include "u2pl/net/weights.h"

#include <map>
#include <sstream>
#include <vector>

#include "engine/safetensors.h"

namespace u2pl {

namespace {

// Listings longer than this print the first entries and a count of the rest.
constexpr size_t kListCap = 20;

bool is_encoder(const std::string& name) { return name.rfind("encoder.", 0) == 0; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

const char* scope_name(WeightScope s) {
  switch (s) {
    case WeightScope::Auto: return "auto";
    case WeightScope::Model: return "model";
    case WeightScope::Backbone: return "backbone";
  }
  return "?";
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << (s.size() == 1 ? ",)" : ")");
  return os.str();
}

bool same_shape(const std::vector<int64_t>& file, const Shape& decl) {
  if (static_cast<int>(file.size()) != decl.ndim) return false;
  for (int i = 0; i < decl.ndim; ++i)
    if (file[i] != decl[i]) return false;
  return true;
}

// One category of problems: "  missing (3): a, b, c" with at most kListCap names.
void list(std::ostringstream& os, const char* what, const std::vector<std::string>& items) {
  if (items.empty()) return;
  os << "\n  " << what << " (" << items.size() << "):";
  for (size_t i = 0; i < items.size() && i < kListCap; ++i) os << "\n    " << items[i];
  if (items.size() > kListCap) os << "\n    ... and " << items.size() - kListCap << " more";
}

// The model tensors of `file` are those named `prefix` + key; other tensors of a training
// checkpoint (the other model, optimizer state, memory banks) are not looked at.
WeightReport load_from(ParamSet& ps, const SafeTensorsFile& file, WeightScope scope, const std::string& prefix) {
  const std::string& path = file.path();
  U2PL_CHECK(ps.allocated(), path << ": load_weights into a parameter set that is not allocated");
  std::map<std::string, const StEntry*> entries;  // by model key
  for (const auto& [name, e] : file.entries())
    if (name.compare(0, prefix.size(), prefix) == 0) entries[name.substr(prefix.size())] = &e;
  if (scope == WeightScope::Auto) {
    scope = WeightScope::Backbone;
    for (const auto& kv : entries)
      if (!is_encoder(kv.first)) scope = WeightScope::Model;
  }
  const auto in_scope = [&](const std::string& name) {
    return scope == WeightScope::Model || is_encoder(name);
  };

  std::vector<std::string> missing, unexpected, misshaped, wrong_dtype;
  std::vector<int> to_copy;  // ParamSet ids to copy once the file has passed every check
  for (const ParamDecl& d : ps.decls())
    if (in_scope(d.name) && !entries.count(d.name)) missing.push_back(prefix + d.name);
  for (const auto& [name, e] : entries) {
    const int id = ps.find(name);
    if (id < 0 || !in_scope(name)) {
      std::string why;
      if (id >= 0)
        why = std::string("  (outside the ") + scope_name(scope) + " scope)";
      else if (ends_with(name, ".num_batches_tracked"))  // PyTorch's BN step counter: the converter drops it
        why = "  (a PyTorch BN counter: convert with weights/convert.py)";
      unexpected.push_back(prefix + name + why);
      continue;
    }
    const ParamDecl& d = ps.decls()[id];
    bool ok = true;
    if (!same_shape(e->shape, d.shape)) {
      misshaped.push_back(prefix + name + ": file " + shape_str(e->shape) + ", model " + d.shape.str());
      ok = false;
    }
    if (e->dtype != DType::F32) {
      wrong_dtype.push_back(prefix + name + ": " + dtype_name(e->dtype) + ", expected F32");
      ok = false;
    }
    if (ok) to_copy.push_back(id);
  }
  if (!missing.empty() || !unexpected.empty() || !misshaped.empty() || !wrong_dtype.empty()) {
    std::ostringstream os;
    os << path << ": cannot load weights (" << scope_name(scope) << " scope, " << entries.size()
       << " tensors" << (prefix.empty() ? "" : " under '" + prefix + "'") << " in the file, " << ps.decls().size()
       << " in the model); nothing was loaded";
    list(os, "missing from the file", missing);
    list(os, "unexpected in the file", unexpected);
    list(os, "mis-shaped", misshaped);
    list(os, "wrong dtype", wrong_dtype);
    U2PL_FAIL(os.str());
  }

  for (const int id : to_copy) {
    const std::string& name = ps.decls()[id].name;
    std::vector<float> host = file.floats(prefix + name);
    const TensorView dst = ps.value(id);
    copy_tensor(dst, TensorView(host.data(), dst.shape, Device::CPU));
  }
  WeightReport r;
  r.scope = scope;
  r.loaded = static_cast<int>(to_copy.size());
  const auto src = file.metadata().find("source");
  r.source = src != file.metadata().end() ? src->second : path;
  if (!prefix.empty()) r.source += " (" + prefix.substr(0, prefix.size() - 1) + ")";
  return r;
}

}  // namespace

WeightReport load_weights(ParamSet& ps, const std::string& path, WeightScope scope) {
  const SafeTensorsFile file(path);
  const auto& meta = file.metadata();
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kTrainCheckpointFormat) return load_from(ps, file, scope, "");
  const auto model = meta.find("eval_model");
  U2PL_CHECK(model != meta.end() && (model->second == "teacher" || model->second == "student"),
             path << ": a training checkpoint without a valid eval_model entry (teacher | student)");
  return load_from(ps, file, scope, model->second + ".");
}

WeightReport load_weights_prefixed(ParamSet& ps, const SafeTensorsFile& file, const std::string& prefix) {
  return load_from(ps, file, WeightScope::Model, prefix);
}

void save_weights(const ParamSet& ps, const std::string& path,
                  const std::map<std::string, std::string>& meta) {
  U2PL_CHECK(ps.allocated(), path << ": save_weights from a parameter set that is not allocated");
  SafeTensorsWriter w;
  for (size_t i = 0; i < ps.decls().size(); ++i) w.add(ps.decls()[i].name, ps.value(static_cast<int>(i)));
  for (const auto& [k, v] : meta) w.set_metadata(k, v);
  w.write(path);
}

}  // namespace u2pl
