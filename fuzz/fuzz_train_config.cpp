// Fuzzes the training config reader (u2pl/train/train_config.h) with its command-line overrides:
// the input is the YAML text, then each override ("section.key=value"), separated by NUL bytes.
// Any input either loads or throws u2pl::Error; a config that loads has a resolved form that loads
// again to the same resolved form (what a checkpoint stores and a resume reads back). Anything
// else is a finding.
#include "engine/check.h"
#include "fuzz/fuzz_util.h"
#include "u2pl/train/train_config.h"

namespace u2pl::fuzz {

bool train_config(const uint8_t* data, size_t size) {
  std::vector<std::string> parts = nul_parts(data, size);
  const std::string text = parts.front();
  parts.erase(parts.begin());
  std::string resolved;
  try {
    std::vector<std::string> log;
    resolved = resolved_yaml(load_train_config_text(text, "fuzz.yaml", parts, &log));
  } catch (const Error&) {
    return false;
  }
  try {
    const std::string again = resolved_yaml(load_train_config_text(resolved, "resolved.yaml", {}, nullptr));
    if (again != resolved) violated("the resolved config reads back differently:\n" + resolved + "\n---\n" + again);
  } catch (const Error& e) {
    violated(std::string("the resolved config does not load: ") + e.what() + "\n" + resolved);
  }
  return true;
}

}  // namespace u2pl::fuzz

U2PL_FUZZ_TARGET(train_config)
