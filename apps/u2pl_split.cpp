// u2pl_split: draws a labeled / unlabeled partition of a full split list with the engine's Philox
// RNG (seeded, reproducible), written as DIR/labeled.txt and DIR/unlabeled.txt in the list's order.
// The logic lives in data/splits.h (tests/test_splits.cpp); this main parses and reports.
#include <csignal>
#include <iostream>
#include <string>

#include "data/splits.h"
#include "engine/check.h"

using namespace u2pl;

namespace {

const char* const kUsage =
    "usage: u2pl_split --list FULL.txt --labeled N --seed S --out DIR\n"
    "  --list     the full list (one id or image path a line, as the public U2PL split files)\n"
    "  --labeled  how many entries go to DIR/labeled.txt (1 .. the list's size); the rest go to\n"
    "             DIR/unlabeled.txt\n"
    "  --seed     the Philox seed (a non-negative integer); the same seed gives the same split\n"
    "  --out      the output folder (created when missing; existing files are replaced)\n";

[[noreturn]] void usage_error(const std::string& msg) { throw Error(msg + "\n" + kUsage); }

// The whole of `s` as a non-negative integer (no sign, no trailing characters).
unsigned long long parse_count(const std::string& opt, const std::string& s) {
  size_t used = 0;
  unsigned long long v = 0;
  try {
    if (!s.empty() && s[0] != '-' && s[0] != '+') v = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size()) usage_error(opt + " expects a non-negative integer, got '" + s + "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  try {
    std::string list, out, labeled, seed;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "-h" || k == "--help") {
        std::cout << kUsage;
        return 0;
      }
      if (k != "--list" && k != "--labeled" && k != "--seed" && k != "--out") usage_error("unknown argument " + k);
      if (i + 1 >= argc) usage_error(k + " needs a value");
      (k == "--list" ? list : k == "--labeled" ? labeled : k == "--seed" ? seed : out) = argv[++i];
    }
    if (list.empty() || labeled.empty() || seed.empty() || out.empty())
      usage_error("--list, --labeled, --seed and --out are required");
    const unsigned long long n = parse_count("--labeled", labeled);
    if (n < 1 || n > (1ull << 62))
      usage_error("--labeled must be at least 1 (and at most the list's size), got " + labeled);
    const SplitDraw d = make_split_files(list, static_cast<long long>(n), parse_count("--seed", seed), out);
    std::cout << out << "/labeled.txt: " << d.labeled.size() << " entries\n"
              << out << "/unlabeled.txt: " << d.unlabeled.size() << " entries\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "u2pl_split: " << e.what() << "\n";
    return 1;
  }
}
