// Shared by the fuzz targets of fuzz/. Each target is a function bool u2pl::fuzz::<name>(data, size)
// that returns when the input was handled as it should be: true when it was read, false when it
// was refused with u2pl::Error. It throws PropertyViolated otherwise; any other exception or a
// sanitizer report is a finding too.
// Built with U2PL_LIBFUZZER (fuzz/CMakeLists.txt) a target file is a libFuzzer binary; the unit
// suite compiles the same functions and replays the seed corpus and every regression input
// (tests/test_fuzz_inputs.cpp). The readers under test take paths, as the apps call them, so each
// input is written to a file in a scratch folder of this process.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace u2pl::fuzz {

// A folder of its own for this process under $TMPDIR (or /tmp), removed when the process exits
// normally (a crashing run leaves it for the report). The name is never destroyed: the exit
// handler reads it after static destructors have run.
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    auto* d = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") + "/u2pl_fuzz." + std::to_string(getpid()));
    std::filesystem::create_directories(*d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return *dir;
}

// Writes `size` bytes to `name` in the scratch folder (made when missing); returns its path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::filesystem::path p = std::filesystem::path(scratch_dir()) / name;
  std::filesystem::create_directories(p.parent_path());
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(p.c_str());
    std::abort();  // the harness's own failure, never the code's under test
  }
  return p.string();
}
inline std::string write_input(const std::string& name, const std::string& bytes) {
  return write_input(name, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// The input cut at every NUL byte: part 0 before the first, and so on (a seed holds its parts
// joined by NULs; a part itself holds none).
inline std::vector<std::string> nul_parts(const uint8_t* data, size_t size) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      parts.emplace_back();
    } else {
      parts.back().push_back(static_cast<char>(data[i]));
    }
  }
  return parts;
}

// A property a target checks failed (an exception libFuzzer reports as a crash: it escapes).
class PropertyViolated : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};
[[noreturn]] inline void violated(const std::string& what) { throw PropertyViolated("property violated: " + what); }

}  // namespace u2pl::fuzz

// The libFuzzer entry point of a target file, in the fuzz build only (read or refused: both fine).
#ifdef U2PL_LIBFUZZER
#define U2PL_FUZZ_TARGET(fn)                                                  \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    u2pl::fuzz::fn(data, size);                                               \
    return 0;                                                                 \
  }
#else
#define U2PL_FUZZ_TARGET(fn)
#endif
