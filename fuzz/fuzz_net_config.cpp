// Fuzzes the net config reader (u2pl/net/net_config.h, as u2pl_eval and u2pl_infer read a config
// file): any file either loads or throws u2pl::Error, and a net config that loads declares a
// network (its parameter keys and shapes) without an error other than u2pl::Error. Anything else
// is a finding.
#include "engine/check.h"
#include "fuzz/fuzz_util.h"
#include "u2pl/net/model.h"
#include "u2pl/net/net_config.h"

namespace u2pl::fuzz {

bool net_config(const uint8_t* data, size_t size) {
  const std::string path = write_input("config.yaml", data, size);
  try {
    std::vector<std::string> warnings;
    const NetConfig c = load_net_config(path, &warnings);
    const U2plNet net(c);  // declares, allocates nothing
    if (net.params().decls().empty()) violated("a network without parameters");
  } catch (const Error&) {
    return false;
  }
  return true;
}

}  // namespace u2pl::fuzz

U2PL_FUZZ_TARGET(net_config)
