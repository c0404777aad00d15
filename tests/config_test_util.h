// Shared by the config reader tests (test_net_config.cpp, test_data_config.cpp): where the public
// configs are, writing a YAML text to a temporary file, editing a base config; error_of comes from
// test_util.h.
#pragma once
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "engine/check.h"
#include "test_util.h"

namespace u2pl::test {

inline const std::string kPublicConfigs = U2PL_SOURCE_DIR "/../shared/public-configs/";

inline bool have_public_configs() {
  struct stat st {};
  return stat(kPublicConfigs.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

inline std::string yaml_path(const std::string& tag) { return "/tmp/u2pl_test_" + tag + ".yaml"; }

// Writes `text` to yaml_path(tag) and returns the path.
inline std::string write_yaml(const std::string& tag, const std::string& text) {
  const std::string path = yaml_path(tag);
  std::ofstream(path) << text;
  return path;
}

// `s` with the first `from` replaced by `to` (which must be there).
inline std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "'" << from << "' not in the test config");
  return s.replace(at, from.size(), to);
}

}  // namespace u2pl::test
