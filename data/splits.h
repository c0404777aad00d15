// Split lists: reading the public U2PL split files (one entry a line, as the Dataset reads them)
// and drawing a labeled / unlabeled partition of a full list with the engine's Philox RNG, for
// u2pl_split. Errors name the file and line. Covered by tests/test_splits.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace u2pl {

struct SplitEntry {
  std::string text;  // the line, stripped of surrounding whitespace (and a Windows '\r')
  int line = 0;      // 1-based
};

// Reads a split file (or any one-entry-a-line list; `what` names it in errors: "split", "class
// list"). Blank lines at the end are tolerated; a missing or empty file, a blank line between
// entries and a duplicated entry (both lines named) are errors.
std::vector<SplitEntry> read_split(const std::string& path, const std::string& what = "split");

// Writes one entry a line, atomically (a temporary file renamed into place).
void write_split(const std::string& path, const std::vector<std::string>& entries);

struct SplitDraw {
  std::vector<std::string> labeled;    // n entries, in the order of the full list
  std::vector<std::string> unlabeled;  // the rest, in the order of the full list
};

// Draws n of the entries without replacement (a partial Fisher-Yates shuffle over Rng(seed));
// n must lie in [1, size] and the entries must be distinct.
SplitDraw draw_split(const std::vector<std::string>& entries, long long n, uint64_t seed);

// u2pl_split: reads `list`, draws n labeled entries and writes out_dir/labeled.txt and
// out_dir/unlabeled.txt (out_dir is created when missing).
SplitDraw make_split_files(const std::string& list, long long n, uint64_t seed, const std::string& out_dir);

}  // namespace u2pl
