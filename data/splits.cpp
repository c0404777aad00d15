// Split files (data/splits.h): the reader the Dataset uses for every split list, the atomic
// writer, and the seeded labeled / unlabeled draw behind u2pl_split.
// Covered by tests/test_splits.cpp.
#include "data/splits.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <unordered_map>

#include "engine/check.h"
#include "engine/file_io.h"
#include "engine/rng.h"

namespace fs = std::filesystem;

namespace u2pl {
namespace {

std::string strip(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

std::vector<SplitEntry> read_split(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path + ": " + what + " file missing");
  if (!fs::is_regular_file(path, ec)) throw Error(path + ": " + what + " file is not a regular file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open the " + what + " file (unreadable)");
  std::vector<SplitEntry> out;
  std::unordered_map<std::string, int> first_line;
  int blank = 0;  // the first blank line since the last entry
  std::string raw;
  for (int line = 1; std::getline(f, raw); ++line) {
    const std::string text = strip(raw);
    if (text.empty()) {
      if (!blank) blank = line;
      continue;
    }
    if (blank)
      throw Error(path + ":" + std::to_string(blank) + ": empty line between entries (a " + what +
                  " file has one entry a line, no blank lines)");
    const auto [it, fresh] = first_line.emplace(text, line);
    if (!fresh)
      throw Error(path + ":" + std::to_string(line) + ": duplicate entry '" + text + "' (first at line " +
                  std::to_string(it->second) + ")");
    out.push_back({text, line});
  }
  if (f.bad()) throw Error(path + ": read error");
  if (out.empty()) throw Error(path + ": empty " + what + " (no entries)");
  return out;
}

void write_split(const std::string& path, const std::vector<std::string>& entries) {
  std::string text;
  for (const auto& e : entries) text += e + '\n';
  write_file_atomic(path, text);
}

SplitDraw draw_split(const std::vector<std::string>& entries, long long n, uint64_t seed) {
  const size_t size = entries.size();
  if (n < 1 || static_cast<unsigned long long>(n) > size)
    throw Error("the labeled count must lie in [1, " + std::to_string(size) + "] (the list's size), got " +
                std::to_string(n));
  if (size > UINT32_MAX) throw Error("a split list of " + std::to_string(size) + " entries is too long");
  std::unordered_map<std::string, size_t> seen;
  for (size_t i = 0; i < size; ++i) {
    const auto [it, fresh] = seen.emplace(entries[i], i);
    if (!fresh)
      throw Error("duplicate entry '" + entries[i] + "' (entries " + std::to_string(it->second + 1) + " and " +
                  std::to_string(i + 1) + ")");
  }
  // Partial Fisher-Yates: position i takes a uniform pick from the not-yet-drawn tail.
  std::vector<size_t> order(size);
  std::iota(order.begin(), order.end(), size_t{0});
  Rng rng(seed);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i)
    std::swap(order[i], order[i + rng.below(static_cast<uint32_t>(size - i))]);
  std::vector<char> picked(size, 0);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) picked[order[i]] = 1;
  SplitDraw d;
  for (size_t i = 0; i < size; ++i) (picked[i] ? d.labeled : d.unlabeled).push_back(entries[i]);
  return d;
}

SplitDraw make_split_files(const std::string& list, long long n, uint64_t seed, const std::string& out_dir) {
  std::vector<std::string> entries;
  for (const auto& e : read_split(list)) entries.push_back(e.text);
  SplitDraw d;
  try {
    d = draw_split(entries, n, seed);
  } catch (const Error& e) {
    throw Error(list + ": " + e.what());
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir)) throw Error(out_dir + ": cannot create the output folder");
  write_split((fs::path(out_dir) / "labeled.txt").string(), d.labeled);
  write_split((fs::path(out_dir) / "unlabeled.txt").string(), d.unlabeled);
  return d;
}

}  // namespace u2pl
