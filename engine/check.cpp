// Error construction and the U2PL_SYNC_CHECKS switch (engine/check.h).
#include "engine/check.h"

#include <cstdlib>
#include <cstring>

namespace u2pl {

void throw_error(const char* file, int line, const char* expr, const std::string& msg) {
  const char* base = std::strrchr(file, '/');
  std::ostringstream os;
  os << (base ? base + 1 : file) << ":" << line << ": " << msg << " [check failed: " << expr << "]";
  throw Error(os.str());
}

bool sync_checks_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("U2PL_SYNC_CHECKS");
    return v && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }();
  return on;
}

}  // namespace u2pl
