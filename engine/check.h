// Checks that throw u2pl::Error carrying file:line, the failed expression and a message.
// Every error path of the engine goes through U2PL_CHECK; tests/test_engine.cpp covers them.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace u2pl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void throw_error(const char* file, int line, const char* expr, const std::string& msg);

// True when U2PL_SYNC_CHECKS=1: CUDA checks then synchronise so faults surface where they happen.
bool sync_checks_enabled();

}  // namespace u2pl

// U2PL_CHECK(cond, "expected " << a << ", got " << b);
#define U2PL_CHECK(cond, msg)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::ostringstream u2pl_check_os_;                                       \
      u2pl_check_os_ << msg;                                                   \
      ::u2pl::throw_error(__FILE__, __LINE__, #cond, u2pl_check_os_.str());    \
    }                                                                          \
  } while (0)

#define U2PL_FAIL(msg) U2PL_CHECK(false, msg)
