// Logging (engine/log.h).
#include "engine/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace u2pl {

bool log_enabled() {
  static const bool on = [] {
    const char* q = std::getenv("U2PL_QUIET");
    return !(q && q[0] && std::strcmp(q, "0") != 0);
  }();
  return on;
}

void log_line(const std::string& s) { std::fprintf(stderr, "[u2pl] %s\n", s.c_str()); }

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

}  // namespace u2pl
