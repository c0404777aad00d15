// Test main: doctest, with the `cuda` suite excluded (and, under --cuda-only, exit code 77 so
// CTest reports "skipped") when no CUDA device is present; a CUDA error while looking for one
// (engine/device_memory.h's cuda_probe) fails a --cuda-only run and is printed otherwise. Under
// --cuda-only the CUDA environment is printed first. The `torch` suite is excluded unless
// tools/pytorch/check_full_r101.sh has set U2PL_FULL_R101, and the `reference` suite runs only
// under --reference-only (exit 77 when U2PL_REFERENCE_DIR is unset and ../shared/reference/u2pl
// is absent).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/comm.h"
#include "engine/device_memory.h"

namespace u2pl::test {
std::string reference_dir();  // tests/test_reference.cpp
}

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool cuda_only = false, reference_only = false, mpi_only = false;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cuda-only") == 0)
      cuda_only = true;
    else if (std::strcmp(argv[i], "--reference-only") == 0)
      reference_only = true;
    else if (std::strcmp(argv[i], "--mpi-only") == 0)
      mpi_only = true;
    else
      args.push_back(argv[i]);
  }
  const u2pl::CudaProbe probe = u2pl::cuda_probe();
  const bool gpu = probe.devices > 0;
  if (!probe.error.empty()) {
    std::fprintf(stderr, "cuda suite: %s\n", probe.error.c_str());
    if (cuda_only) return 1;
  }
  if (cuda_only && !gpu) {
    std::printf("cuda suite skipped: %s\n", probe.reason.c_str());
    return 77;
  }
  if (cuda_only) {
    try {
      std::printf("%s", u2pl::cuda_environment().c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cuda suite: %s\n", e.what());
      return 1;
    }
  }
  // With U2PL_REFERENCE_DIR set, a missing or empty directory fails inside the suite.
  if (reference_only && !std::getenv("U2PL_REFERENCE_DIR") &&
      !std::filesystem::is_directory(u2pl::test::reference_dir())) {
    std::printf("reference suite skipped: %s not found (set U2PL_REFERENCE_DIR)\n",
                u2pl::test::reference_dir().c_str());
    return 77;
  }
  // The mpi suite needs two processes of an mpirun launch (joined here, before any test).
  if (mpi_only && (!u2pl::launched_by_mpi() || u2pl::world().size() != 2)) {
    std::printf("mpi suite skipped: run it under mpirun -np 2\n");
    return 77;
  }
  doctest::Context ctx;
  ctx.applyCommandLine(static_cast<int>(args.size()), args.data());
  if (!gpu) ctx.addFilter("test-suite-exclude", "cuda");
  if (!std::getenv("U2PL_FULL_R101")) ctx.addFilter("test-suite-exclude", "torch");
  if (!reference_only) ctx.addFilter("test-suite-exclude", "reference");
  if (!mpi_only) ctx.addFilter("test-suite-exclude", "mpi");
  const int code = ctx.run();
  u2pl::finalize_world();
  return code;
}
