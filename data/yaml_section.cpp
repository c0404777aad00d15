// The strict YAML layer of the config.yaml readers (see yaml_section.h); its messages are those that
// tests/test_data_config.cpp and tests/test_net_config.cpp expect from data/data_config.cpp and
// u2pl/net/net_config.cpp.
#include "data/yaml_section.h"

#include <cmath>
#include <fstream>
#include <ios>
#include <set>
#include <sstream>

#include "engine/check.h"

namespace u2pl {
namespace {

using YAML::Node;

const char kExpectedBool[] = "expected a boolean (True or False), got ";

bool decode_bool(const Node& v, bool& out) { return plain_scalar(v) && YAML::convert<bool>::decode(v, out); }

std::string join(std::initializer_list<const char*> names) {
  std::string out;
  for (const char* n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

Error malformed(const std::string& name, const YAML::Exception& e) {
  std::ostringstream os;
  os << name;
  if (!e.mark.is_null()) os << ":" << e.mark.line + 1 << ":" << e.mark.column + 1;
  os << ": malformed YAML: " << e.msg;
  return Error(os.str());
}

}  // namespace

Node load_yaml_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open (missing or unreadable)");
  try {
    return YAML::Load(f);
  } catch (const YAML::Exception& e) {
    throw malformed(path, e);
  } catch (const std::ios_base::failure& e) {  // e.g. a directory
    throw Error(path + ": cannot read (" + e.what() + ")");
  }
}

Node load_yaml_text(const std::string& text, const std::string& name) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw malformed(name, e);
  }
}

[[noreturn]] void fail(const std::string& file, const Node& at, const std::string& key, const std::string& msg) {
  std::ostringstream os;
  os << file;
  if (!at.Mark().is_null()) os << ":" << at.Mark().line + 1;
  os << ": ";
  if (!key.empty()) os << key << ": ";
  os << msg;
  throw Error(os.str());
}

std::string describe(const Node& v) {
  if (v.IsNull()) return "nothing";
  if (v.IsSequence()) return "a list";
  if (v.IsMap()) return "a map";
  return (v.Tag() == "!" ? "the string '" : "'") + v.Scalar() + "'";
}

bool plain_scalar(const Node& v) { return v.IsScalar() && v.Tag() != "!"; }

int to_int(const std::string& file, const Node& v, const std::string& key, int lo, int hi) {
  int out = 0;
  if (!plain_scalar(v) || !YAML::convert<int>::decode(v, out))
    fail(file, v, key, "expected an integer, got " + describe(v));
  if (out < lo || out > hi) {
    const std::string range =
        hi == INT_MAX ? ">= " + std::to_string(lo) : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    fail(file, v, key, "expected an integer " + range + ", got " + std::to_string(out));
  }
  return out;
}

bool to_bool(const std::string& file, const Node& v, const std::string& key) {
  bool out = false;
  if (!decode_bool(v, out)) fail(file, v, key, kExpectedBool + describe(v));
  return out;
}

double to_number(const std::string& file, const Node& v, const std::string& key) {
  double out = 0;
  if (!plain_scalar(v) || !YAML::convert<double>::decode(v, out) || !std::isfinite(out))
    fail(file, v, key, "expected a finite number, got " + describe(v));
  return out;
}

Section::Section(const std::string& file, const Node& node, std::string key)
    : file_(file), node_(node), key_(std::move(key)) {
  if (!node_.IsMap()) fail(file_, node_, key_, "expected a map, got " + describe(node_));
}

void Section::known(std::initializer_list<const char*> names) const {
  std::set<std::string> seen;
  for (const auto& kv : node_) {
    const std::string name = kv.first.Scalar();
    bool ok = false;
    for (const char* k : names) ok = ok || name == k;
    if (!ok) fail(file_, kv.first, key_of(name), "unknown key (expected one of: " + join(names) + ")");
    if (!seen.insert(name).second) fail(file_, kv.first, key_of(name), "duplicate key");
  }
}

void Section::fail_at(const char* name, const std::string& msg) const {
  if (!has(name)) fail(file_, node_, key_of(name), msg);
  if (at(name).IsNull())
    for (const auto& kv : node_)
      if (kv.first.Scalar() == name) fail(file_, kv.first, key_of(name), msg);
  fail(file_, at(name), key_of(name), msg);
}

void Section::need(const char* name) const {
  if (!has(name)) fail(file_, node_, key_of(name), "missing (required)");
}

Section Section::child(const char* name, std::initializer_list<const char*> names) const {
  Section s(file_, at(name), key_of(name));
  s.known(names);
  return s;
}

void Section::get(const char* name, int& out, int lo, int hi) const {
  if (has(name)) out = to_int(file_, at(name), key_of(name), lo, hi);
}

void Section::get(const char* name, bool& out) const {
  if (has(name) && !decode_bool(at(name), out)) fail_at(name, kExpectedBool + describe(at(name)));
}

void Section::get(const char* name, float& out, double lo, double hi) const {
  if (!has(name)) return;
  const double v = to_number(file_, at(name), key_of(name));
  if (v < lo || v > hi) {
    std::ostringstream os;
    os << "expected a number ";
    if (std::isinf(hi)) os << ">= " << lo;
    else os << "in [" << lo << ", " << hi << "]";
    os << ", got " << v;
    fail_at(name, os.str());
  }
  out = static_cast<float>(v);
}

void Section::get(const char* name, std::string& out) const {
  if (!has(name)) return;
  if (!at(name).IsScalar() || at(name).Scalar().empty())
    fail_at(name, "expected a non-empty string, got " + describe(at(name)));
  out = at(name).Scalar();
}

void Section::get(const char* name, std::array<float, 3>& out, bool positive) const {
  if (!has(name)) return;
  const auto items = list(name, 3, "numbers");
  for (size_t i = 0; i < 3; ++i) {
    const double v = to_number(file_, items[i].first, items[i].second);
    if (positive && !(v > 0)) fail(file_, items[i].first, items[i].second, "expected a number > 0");
    out[i] = static_cast<float>(v);
  }
}

std::vector<std::pair<Node, std::string>> Section::list(const char* name, size_t n, const char* what) const {
  const Node v = at(name);
  if (!v.IsSequence() || v.size() != n)
    fail_at(name, "expected a list of " + std::to_string(n) + " " + what + ", got " +
                      (v.IsSequence() ? std::to_string(v.size()) + " items" : describe(v)));
  std::vector<std::pair<Node, std::string>> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(v[i], key_of(name) + "[" + std::to_string(i) + "]");
  return out;
}

void Section::warn_unused(const char* name, std::vector<std::string>* warnings) const {
  if (!has(name) || !warnings) return;
  std::ostringstream os;
  os << file_;
  if (!at(name).Mark().is_null()) os << ":" << at(name).Mark().line + 1;
  os << ": " << key_of(name) << ": not used (the public U2PL code never reads it)";
  warnings->push_back(os.str());
}

}  // namespace u2pl
