// The strict YAML layer shared by the config.yaml readers (data/data_config.cpp,
// u2pl/net/net_config.cpp): file loading, typed values and a checked map (Section), every error
// "<file>:<line>: <dotted key>: <message>" (STYLE 18, SPEC §8). Quoted scalars are strings, as in
// Python. Covered through the readers by tests/test_data_config.cpp and tests/test_net_config.cpp.
#pragma once
#include <yaml-cpp/yaml.h>

#include <array>
#include <climits>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace u2pl {

// The document in `path`; errors "<path>: cannot open ...", "<path>: cannot read ..." (e.g. a
// directory) and "<path>:<line>:<col>: malformed YAML: ...".
YAML::Node load_yaml_file(const std::string& path);
// The same for YAML text; errors name `name` where they would name the file.
YAML::Node load_yaml_text(const std::string& text, const std::string& name);

// Throws "<file>:<line>: <key>: <msg>" (the line of `at`, when yaml-cpp knows it; no key when empty).
[[noreturn]] void fail(const std::string& file, const YAML::Node& at, const std::string& key, const std::string& msg);

// What a value is, for "expected X, got Y": nothing, a list, a map, 'plain' or the string 'quoted'.
std::string describe(const YAML::Node& v);

// A scalar that is not quoted (a quoted "21" is a string, not a number).
bool plain_scalar(const YAML::Node& v);

// Typed values; `key` is the dotted key used in errors. to_int's range reads ">= lo" when hi is INT_MAX.
int to_int(const std::string& file, const YAML::Node& v, const std::string& key, int lo, int hi = INT_MAX);
bool to_bool(const std::string& file, const YAML::Node& v, const std::string& key);
double to_number(const std::string& file, const YAML::Node& v, const std::string& key);  // finite

// A map at a dotted key ("" for the document); known() makes it strict. Keeps a reference to `file`.
class Section {
 public:
  Section(const std::string& file, const YAML::Node& node, std::string key);

  // Every key is one of `names`, present once.
  void known(std::initializer_list<const char*> names) const;

  std::string key_of(const std::string& name) const { return key_.empty() ? name : key_ + "." + name; }
  bool has(const char* name) const { return node_[name].IsDefined(); }
  YAML::Node at(const char* name) const { return node_[name]; }
  // At the value's line, or at the key's when the value is empty (yaml-cpp puts an empty value at
  // the next token, often on a later line), or at the map's when the key is absent.
  [[noreturn]] void fail_at(const char* name, const std::string& msg) const;
  void need(const char* name) const;  // "missing (required)"
  Section child(const char* name, std::initializer_list<const char*> names) const;  // strict

  // Optional values: `out` keeps its default when the key is absent.
  void get(const char* name, int& out, int lo, int hi = INT_MAX) const;
  void get(const char* name, bool& out) const;
  void get(const char* name, float& out, double lo, double hi) const;  // hi may be infinity
  void get(const char* name, std::string& out) const;                  // non-empty
  void get(const char* name, std::array<float, 3>& out, bool positive) const;  // 3 numbers, each > 0 if positive
  // The elements of a list of exactly n, each with its key "name[i]"; `what` names the elements.
  std::vector<std::pair<YAML::Node, std::string>> list(const char* name, size_t n, const char* what) const;
  // A warning "<file>:<line>: <key>: not used (...)" when the key is present.
  void warn_unused(const char* name, std::vector<std::string>* warnings) const;
  const std::string& file() const { return file_; }

 private:
  const std::string& file_;
  YAML::Node node_;
  std::string key_;
};

}  // namespace u2pl
