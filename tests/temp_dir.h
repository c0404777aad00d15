// A fresh folder under the temporary directory for one test, removed at scope exit; the process
// id in its name keeps concurrent test runs apart.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

namespace u2pl::test {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag)
      : path((std::filesystem::temp_directory_path() / ("u2pl_test_" + tag + "_" + std::to_string(getpid()))).string()) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace u2pl::test
