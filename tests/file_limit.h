// The file size limit (RLIMIT_FSIZE) lowered for a scope: a write failure a test can cause itself
// as root, which ignores file permissions (tests/test_file_io.cpp, tests/test_trainer.cpp).
#pragma once
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <csignal>

namespace u2pl::test {

// SIGXFSZ is ignored meanwhile, as u2pl_train does, so a write past the limit fails with EFBIG
// instead of ending the process.
struct FileSizeLimit {
  rlimit old{};
  void (*old_handler)(int);
  explicit FileSizeLimit(rlim_t bytes) : old_handler(std::signal(SIGXFSZ, SIG_IGN)) {
    getrlimit(RLIMIT_FSIZE, &old);
    rlimit l = old;
    l.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &l) == 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
};

}  // namespace u2pl::test
