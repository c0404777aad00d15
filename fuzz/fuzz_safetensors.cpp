// Fuzzes the safetensors reader (engine/safetensors.h) that weights, checkpoints and fixtures go
// through: any file either loads or throws u2pl::Error; a file that loads has byte ranges that
// match each tensor's dtype and shape exactly (products in 128 bits), and every typed read of a
// tensor either returns its element count or throws Error. Anything else (another exception, a
// sanitizer report, a leak) is a finding.
#include "engine/check.h"
#include "engine/safetensors.h"
#include "fuzz/fuzz_util.h"

namespace u2pl::fuzz {
namespace {

template <typename Read>
void try_read(Read read, int64_t numel, const std::string& what) {
  try {
    if (static_cast<int64_t>(read().size()) != numel) violated(what + ": a typed read's length");
  } catch (const Error&) {
  }
}

}  // namespace

bool safetensors(const uint8_t* data, size_t size) {
  const std::string path = write_input("in.safetensors", data, size);
  try {
    const SafeTensorsFile f(path);
    for (const auto& [key, value] : f.metadata())
      if (f.meta(key) != value) violated("metadata '" + key + "'");
    for (const auto& entry : f.entries()) {
      const std::string& name = entry.first;
      const StEntry& e = entry.second;
      unsigned __int128 bytes = dtype_size(e.dtype);
      for (const int64_t d : e.shape) {
        if (d < 0) violated(name + ": a negative dimension loaded");
        bytes *= static_cast<uint64_t>(d);
        if (bytes >> 64) bytes = ~static_cast<unsigned __int128>(0);  // saturate: stays a mismatch
      }
      if (e.begin > e.end || bytes != e.end - e.begin) violated(name + ": byte range vs dtype and shape");
      try_read([&] { return f.floats(name); }, e.numel(), name);
      try_read([&] { return f.doubles(name); }, e.numel(), name);
      try_read([&] { return f.ints(name); }, e.numel(), name);
      try_read([&] { return f.bytes(name); }, e.numel(), name);
      try {
        if (f.shape(name).numel() != e.numel()) violated(name + ": Shape vs entry");
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
    return false;
  }
  return true;
}

}  // namespace u2pl::fuzz

U2PL_FUZZ_TARGET(safetensors)
