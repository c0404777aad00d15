// The resolved training config flattened to (dotted key, YAML value) pairs in the order of the
// public config tree: what the "differs from the preset" log compares and what resolved_yaml()
// writes. Internal to u2pl/train/train_config.cpp and u2pl/train/train_config_entries.cpp.
// Tests: test_train_config.cpp (the log lines and the resolved YAML round trip).
#pragma once
#include <yaml-cpp/yaml.h>

#include <string>
#include <utility>
#include <vector>

#include "u2pl/train/train_config.h"

namespace u2pl {

using ConfigEntries = std::vector<std::pair<std::string, YAML::Node>>;

// Every resolved value, in the order resolved_yaml writes them.
ConfigEntries config_entries(const TrainConfig& c);
// A value as one line of flow-style YAML ("[65, 65]", "True").
std::string yaml_text(const YAML::Node& v);
// Sets root[a][b]...[z] = value for key "a.b....z", creating the maps on the way; `what` names
// the source in errors.
void set_yaml_path(YAML::Node root, const std::string& key, const YAML::Node& value, const std::string& what);

}  // namespace u2pl
