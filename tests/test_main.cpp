// Test main: doctest, with the `cuda` suite excluded (and, under --cuda-only, exit code 77 so
// CTest reports "skipped") when no CUDA device is present, the `torch` suite excluded unless
// tools/pytorch/check_full_r101.sh has set U2PL_FULL_R101, and the `reference` suite run only under
// --reference-only (exit 77 when U2PL_REFERENCE_DIR is unset and ../shared/reference/u2pl absent).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/device_memory.h"

namespace u2pl::test {
std::string reference_dir();  // tests/test_reference.cpp
}

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool cuda_only = false, reference_only = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cuda-only") == 0)
      cuda_only = true;
    else if (std::strcmp(argv[i], "--reference-only") == 0)
      reference_only = true;
    else
      args.push_back(argv[i]);
  }
  const bool gpu = u2pl::cuda_device_count() > 0;
  if (cuda_only && !gpu) {
    std::printf("cuda suite skipped: %s\n",
                u2pl::cuda_built() ? "no CUDA device present" : "built without CUDA");
    return 77;
  }
  // With U2PL_REFERENCE_DIR set, a missing or empty directory fails inside the suite.
  if (reference_only && !std::getenv("U2PL_REFERENCE_DIR") &&
      !std::filesystem::is_directory(u2pl::test::reference_dir())) {
    std::printf("reference suite skipped: %s not found (set U2PL_REFERENCE_DIR)\n",
                u2pl::test::reference_dir().c_str());
    return 77;
  }
  doctest::Context ctx;
  ctx.applyCommandLine(static_cast<int>(args.size()), args.data());
  if (!gpu) ctx.addFilter("test-suite-exclude", "cuda");
  if (!std::getenv("U2PL_FULL_R101")) ctx.addFilter("test-suite-exclude", "torch");
  if (!reference_only) ctx.addFilter("test-suite-exclude", "reference");
  return ctx.run();
}
