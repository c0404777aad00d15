// The fuzz targets of fuzz/ (issue 15) in the unit suite: every file of a target's seed corpus
// (fuzz/corpus/<target>/) and of its regressions (fuzz/regressions/<target>/, the inputs fuzzing
// found, each fixed) goes through the target's function, which must return: a PropertyViolated,
// any other exception or, in the sanitizer build, a sanitizer report fails the test. A seed must
// also be read, not refused: a seed the readers stopped accepting would test nothing beyond
// their first check.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "fuzz/fuzz_util.h"

namespace u2pl::fuzz {
bool safetensors(const uint8_t*, size_t);
bool checkpoint(const uint8_t*, size_t);
bool train_config(const uint8_t*, size_t);
bool net_config(const uint8_t*, size_t);
bool image(const uint8_t*, size_t);
bool split(const uint8_t*, size_t);
bool cityscapes(const uint8_t*, size_t);
}  // namespace u2pl::fuzz

namespace fs = std::filesystem;

TEST_CASE("fuzz targets: the seed corpus and every regression input are handled") {
  const std::map<std::string, bool (*)(const uint8_t*, size_t)> targets = {
      {"safetensors", u2pl::fuzz::safetensors}, {"checkpoint", u2pl::fuzz::checkpoint},
      {"train_config", u2pl::fuzz::train_config}, {"net_config", u2pl::fuzz::net_config},
      {"image", u2pl::fuzz::image}, {"split", u2pl::fuzz::split}, {"cityscapes", u2pl::fuzz::cityscapes}};
  const fs::path root = fs::path(U2PL_SOURCE_DIR) / "fuzz";
  for (const auto& [name, target] : targets) {
    int seeds = 0;
    for (const char* kind : {"corpus", "regressions"}) {
      const fs::path dir = root / kind / name;
      if (!fs::is_directory(dir)) continue;
      for (const auto& f : fs::directory_iterator(dir)) {
        std::ifstream in(f.path(), std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        INFO(f.path().string());
        bool read = false;
        CHECK_NOTHROW(read = target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
        if (std::string(kind) == "corpus") {
          CHECK_MESSAGE(read, "a seed that the reader refuses");
          ++seeds;
        }
      }
    }
    CHECK_MESSAGE(seeds > 0, "fuzz/corpus/" << name << "/ holds no seed");
  }
}
