// The command-line loop the apps share: each argument in turn, and the value that follows an
// option, with the usage text in the error when it is missing.
//   for (ArgReader r(argc, argv, kUsage); r.next();)
//     if (r.key() == "--out") out = r.value(); else ...
#pragma once
#include <string>

#include "engine/check.h"

namespace u2pl {

class ArgReader {
 public:
  ArgReader(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {}
  bool next() {
    if (++i_ >= argc_) return false;
    key_ = argv_[i_];
    return true;
  }
  const std::string& key() const { return key_; }
  // A config override, section.key=value: no leading "--" and an '='.
  bool is_override() const { return key_.rfind("--", 0) != 0 && key_.find('=') != std::string::npos; }
  // The argument after the current option (consumed).
  std::string value() {
    U2PL_CHECK(i_ + 1 < argc_, key_ << " needs a value\n" << usage_);
    return argv_[++i_];
  }

 private:
  int argc_;
  char** argv_;
  const char* usage_;
  int i_ = 0;
  std::string key_;
};

}  // namespace u2pl
