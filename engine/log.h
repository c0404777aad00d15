// One-line log messages to stderr ("[u2pl] ..."), silenced by U2PL_QUIET=1 (tests set it).
#pragma once
#include <sstream>
#include <string>

namespace u2pl {
bool log_enabled();
void log_line(const std::string& s);
std::string format_bytes(double bytes);  // "1.23 GiB"
}  // namespace u2pl

#define U2PL_LOG(msg)                              \
  do {                                             \
    if (::u2pl::log_enabled()) {                   \
      std::ostringstream u2pl_log_os_;             \
      u2pl_log_os_ << msg;                         \
      ::u2pl::log_line(u2pl_log_os_.str());        \
    }                                              \
  } while (0)
