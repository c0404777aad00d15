// The folders are the architecture (STYLE 1, README "Layout"): every quoted #include in the
// libraries, apps, benchmarks, fuzz targets and tests names its folder, and the library folders include only
// from the folders below them (engine ← layers ← u2pl/net, u2pl/losses ← u2pl/eval ← u2pl/train;
// engine ← data ← u2pl/net, u2pl/eval). Reads the source tree the test binary was built from
// (U2PL_SOURCE_DIR).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

// The folders each folder may include from (itself included). Third-party headers use <...>.
const std::map<std::string, std::set<std::string>>& allowed_includes() {
  static const std::map<std::string, std::set<std::string>> rules = [] {
    std::map<std::string, std::set<std::string>> r;
    r["engine"] = {"engine"};
    r["layers"] = {"engine", "layers"};
    r["data"] = {"engine", "data"};
    r["u2pl/net"] = {"engine", "layers", "data", "u2pl/net"};
    r["u2pl/losses"] = {"engine", "layers", "u2pl/losses"};
    r["u2pl/eval"] = {"engine", "layers", "data", "u2pl/net", "u2pl/losses", "u2pl/eval"};
    r["u2pl/train"] = {"engine", "layers", "data", "u2pl/net", "u2pl/losses", "u2pl/eval", "u2pl/train"};
    const std::set<std::string> all = r["u2pl/train"];
    r["bench"] = all;
    r["bench"].insert("bench");
    r["apps"] = r["bench"];  // u2pl_bench is the benchmarks' main
    r["apps"].insert("apps");
    r["fuzz"] = all;  // the fuzz targets (fuzz/), which the unit suite also compiles
    r["fuzz"].insert("fuzz");
    r["tests"] = r["fuzz"];
    r["tests"].insert("tests");
    return r;
  }();
  return rules;
}

// The folder of `rel` (a path relative to the source root) that the rules know: "u2pl/net" for
// u2pl/net/model.h, "engine" for engine/cuda/launch.cuh; "" when no rule covers it.
std::string rule_folder(const std::string& rel) {
  std::string best;
  for (const auto& [folder, deps] : allowed_includes())
    if (rel.compare(0, folder.size() + 1, folder + "/") == 0 && folder.size() > best.size()) best = folder;
  return best;
}

bool is_source(const fs::path& p) {
  const std::string e = p.extension().string();
  return e == ".h" || e == ".cpp" || e == ".cu" || e == ".cuh";
}

struct Include {
  std::string file;  // relative to the source root
  int line;
  std::string target;
};

std::vector<Include> quoted_includes(const fs::path& root, const std::string& rel) {
  std::vector<Include> out;
  std::ifstream in(root / rel);
  std::string s;
  for (int n = 1; std::getline(in, s); ++n) {
    const std::string key = "#include \"";
    if (s.compare(0, key.size(), key) != 0) continue;
    const size_t end = s.find('"', key.size());
    if (end != std::string::npos) out.push_back({rel, n, s.substr(key.size(), end - key.size())});
  }
  return out;
}

}  // namespace

TEST_CASE("layout: includes name their folder and point one way") {
  const fs::path root = U2PL_SOURCE_DIR;
  REQUIRE(fs::is_directory(root / "u2pl"));
  // The four concerns of u2pl/ are folders; nothing of ours sits loose in u2pl/ itself.
  for (const char* sub : {"net", "losses", "eval", "train"}) CHECK(fs::is_directory(root / "u2pl" / sub));
  for (const auto& e : fs::directory_iterator(root / "u2pl"))
    CHECK_MESSAGE(e.is_directory(), "u2pl/ holds only its subfolders, found " << e.path().filename().string());

  int files = 0, includes = 0;
  for (const char* top : {"engine", "layers", "data", "u2pl", "apps", "bench", "fuzz", "tests"}) {
    for (const auto& e : fs::recursive_directory_iterator(root / top)) {
      if (!e.is_regular_file() || !is_source(e.path())) continue;
      const std::string rel = fs::relative(e.path(), root).generic_string();
      if (rel.compare(0, 15, "tests/fixtures/") == 0) continue;
      const std::string folder = rule_folder(rel);
      CHECK_MESSAGE(!folder.empty(), rel << " is in no folder of the layout");
      ++files;
      for (const Include& inc : quoted_includes(root, rel)) {
        ++includes;
        const std::string where = inc.file + ":" + std::to_string(inc.line) + " includes \"" + inc.target + "\"";
        const std::string dep = rule_folder(inc.target);
        CHECK_MESSAGE(fs::is_regular_file(root / inc.target), where << ": no such file under the source root");
        CHECK_MESSAGE(!dep.empty(), where << ": an include path must name its folder");
        if (dep.empty() || folder.empty()) continue;
        CHECK_MESSAGE(allowed_includes().at(folder).count(dep) == 1,
                      where << ": " << folder << "/ may not include from " << dep << "/ (dependencies point one way)");
      }
    }
  }
  CHECK(files > 150);  // the walk saw the tree, not an empty or moved folder
  CHECK(includes > 400);
}
