// Fuzzes the split-list reader (data/splits.h), which reads every data_list, unlabeled list and
// classes.txt: any file either reads or throws u2pl::Error. A list that reads has no empty or
// duplicated entry, no surrounding whitespace and rising line numbers, and a labeled / unlabeled
// draw from it (n from the first byte) partitions it. Anything else is a finding.
#include <algorithm>
#include <cctype>
#include <set>

#include "data/splits.h"
#include "engine/check.h"
#include "fuzz/fuzz_util.h"

namespace u2pl::fuzz {

bool split(const uint8_t* data, size_t size) {
  const std::string path = write_input("split.txt", data, size);
  std::vector<SplitEntry> entries;
  try {
    entries = read_split(path);
  } catch (const Error&) {
    return false;
  }
  std::vector<std::string> texts;
  int last = 0;
  for (const SplitEntry& e : entries) {
    if (e.text.empty() || std::isspace(static_cast<unsigned char>(e.text.front())) ||
        std::isspace(static_cast<unsigned char>(e.text.back())))
      violated("an empty or unstripped entry '" + e.text + "'");
    if (e.line <= last) violated("line numbers that do not rise");
    last = e.line;
    texts.push_back(e.text);
  }
  if (std::set<std::string>(texts.begin(), texts.end()).size() != texts.size()) violated("a duplicated entry");
  const long long n = size ? 1 + data[0] % texts.size() : 1;
  try {
    const SplitDraw d = draw_split(texts, n, size);
    std::vector<std::string> all = d.labeled;
    all.insert(all.end(), d.unlabeled.begin(), d.unlabeled.end());
    std::sort(all.begin(), all.end());
    std::sort(texts.begin(), texts.end());
    if (static_cast<long long>(d.labeled.size()) != n || all != texts) violated("a draw that is no partition");
  } catch (const Error& e) {
    violated(std::string("a draw from a list that read: ") + e.what());
  }
  return true;
}

}  // namespace u2pl::fuzz

U2PL_FUZZ_TARGET(split)
