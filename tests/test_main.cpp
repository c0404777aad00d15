// Test main: doctest, with the `cuda` suite excluded (and, under --cuda-only, exit code 77 so
// CTest reports "skipped") when no CUDA device is present, and the `torch` suite excluded unless
// tools/check_full_r101.sh has set U2PL_FULL_R101.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/device_memory.h"

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool cuda_only = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cuda-only") == 0)
      cuda_only = true;
    else
      args.push_back(argv[i]);
  }
  const bool gpu = u2pl::cuda_device_count() > 0;
  if (cuda_only && !gpu) {
    std::printf("cuda suite skipped: %s\n",
                u2pl::cuda_built() ? "no CUDA device present" : "built without CUDA");
    return 77;
  }
  doctest::Context ctx;
  ctx.applyCommandLine(static_cast<int>(args.size()), args.data());
  if (!gpu) ctx.addFilter("test-suite-exclude", "cuda");
  if (!std::getenv("U2PL_FULL_R101")) ctx.addFilter("test-suite-exclude", "torch");
  return ctx.run();
}
