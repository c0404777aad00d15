// safetensors reader and atomic writer (engine/safetensors.h).
#include "engine/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/file_io.h"

namespace u2pl {

namespace {
struct DTypeInfo {
  DType d;
  const char* name;
  size_t size;
};
const DTypeInfo kDTypes[] = {{DType::F32, "F32", 4}, {DType::F64, "F64", 8}, {DType::I32, "I32", 4},
                             {DType::I64, "I64", 8}, {DType::U8, "U8", 1},   {DType::F16, "F16", 2},
                             {DType::BF16, "BF16", 2}, {DType::I8, "I8", 1}, {DType::I16, "I16", 2},
                             {DType::BOOL, "BOOL", 1}};
// Headers larger than this are refused: real ones are a few hundred KB at most.
constexpr uint64_t kMaxHeader = 100u << 20;
}  // namespace

const char* dtype_name(DType d) {
  for (const auto& i : kDTypes)
    if (i.d == d) return i.name;
  return "?";
}

size_t dtype_size(DType d) {
  for (const auto& i : kDTypes)
    if (i.d == d) return i.size;
  return 0;
}

int64_t StEntry::numel() const {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  return n;
}

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  U2PL_CHECK(f.good(), path << ": cannot open (missing or unreadable)");
  const auto size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  U2PL_CHECK(size >= 8, path << ": not a safetensors file (" << size << " bytes, expected at least 8)");
  uint8_t len_bytes[8];
  f.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | len_bytes[i];  // little-endian
  U2PL_CHECK(hlen <= kMaxHeader && hlen <= size - 8,
             path << ": header length " << hlen << " exceeds the file (" << size
                  << " bytes): truncated or not a safetensors file");
  std::string header(hlen, '\0');
  f.read(header.data(), static_cast<std::streamsize>(hlen));
  U2PL_CHECK(f.good(), path << ": read error in the header");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const std::exception& e) {
    U2PL_FAIL(path << ": malformed JSON header: " << e.what());
  }
  U2PL_CHECK(j.is_object(), path << ": the header is not a JSON object");
  const uint64_t data_size = size - 8 - hlen;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      U2PL_CHECK(it->is_object(), path << ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        U2PL_CHECK(m->is_string(), path << ": metadata value '" << m.key() << "' is not a string");
        meta_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string& name = it.key();
    const auto& e = *it;
    U2PL_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
               path << ": tensor '" << name << "' lacks dtype, shape or data_offsets");
    StEntry en;
    const std::string dt = e["dtype"].is_string() ? e["dtype"].get<std::string>() : "";
    bool known = false;
    for (const auto& i : kDTypes)
      if (dt == i.name) en.dtype = i.d, known = true;
    U2PL_CHECK(known, path << ": tensor '" << name << "' has unknown dtype '" << dt << "'");
    U2PL_CHECK(e["shape"].is_array(), path << ": tensor '" << name << "' shape is not a list");
    for (const auto& v : e["shape"]) {
      U2PL_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0,
                 path << ": tensor '" << name << "' has a bad dimension");
      en.shape.push_back(v.get<int64_t>());
    }
    // The byte count without wrapping: a shape whose product overflows (e.g. [2^62, 4], which
    // wraps to 0) would otherwise pass the size check below with no data at all.
    uint64_t elems = 1, bytes = 0;
    bool overflow = false;
    for (const int64_t d : en.shape) overflow = __builtin_mul_overflow(elems, uint64_t(d), &elems) || overflow;
    if (std::find(en.shape.begin(), en.shape.end(), 0) != en.shape.end()) elems = 0, overflow = false;  // empty
    overflow = overflow || elems > uint64_t(INT64_MAX) ||
               __builtin_mul_overflow(elems, uint64_t(dtype_size(en.dtype)), &bytes);
    U2PL_CHECK(!overflow, path << ": tensor '" << name << "' has a shape whose size overflows 64 bits");
    const auto& off = e["data_offsets"];
    U2PL_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
               path << ": tensor '" << name << "' data_offsets must be two non-negative integers");
    en.begin = off[0].get<uint64_t>();
    en.end = off[1].get<uint64_t>();
    U2PL_CHECK(en.begin <= en.end && en.end <= data_size,
               path << ": tensor '" << name << "' bytes [" << en.begin << ", " << en.end
                    << ") lie outside the data section (" << data_size << " bytes): truncated file?");
    U2PL_CHECK(en.end - en.begin == bytes, path << ": tensor '" << name << "' has " << en.end - en.begin
                                                 << " bytes, its " << dt << " shape needs " << bytes);
    entries_[name] = en;
  }
  data_.resize(data_size);
  f.read(reinterpret_cast<char*>(data_.data()), static_cast<std::streamsize>(data_size));
  U2PL_CHECK(f.good() || data_size == 0, path << ": read error in the data section");
}

const StEntry& SafeTensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  U2PL_CHECK(it != entries_.end(), path_ << ": no tensor named '" << name << "'");
  return it->second;
}

template <class Dst, class Src>
static std::vector<Dst> widen(const uint8_t* p, int64_t n) {
  std::vector<Dst> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    Src v;
    std::memcpy(&v, p + i * sizeof(Src), sizeof(Src));
    out[i] = static_cast<Dst>(v);
  }
  return out;
}

std::vector<float> SafeTensorsFile::floats(const std::string& name) const {
  const StEntry& e = entry(name);
  U2PL_CHECK(e.dtype == DType::F32, path_ << ": tensor '" << name << "' is " << dtype_name(e.dtype)
                                          << ", expected F32");
  return widen<float, float>(data_.data() + e.begin, e.numel());
}

std::vector<double> SafeTensorsFile::doubles(const std::string& name) const {
  const StEntry& e = entry(name);
  if (e.dtype == DType::F32) return widen<double, float>(data_.data() + e.begin, e.numel());
  U2PL_CHECK(e.dtype == DType::F64, path_ << ": tensor '" << name << "' is " << dtype_name(e.dtype)
                                          << ", expected F64 or F32");
  return widen<double, double>(data_.data() + e.begin, e.numel());
}

std::vector<int32_t> SafeTensorsFile::ints(const std::string& name) const {
  const StEntry& e = entry(name);
  const uint8_t* p = data_.data() + e.begin;
  switch (e.dtype) {
    case DType::I32: return widen<int32_t, int32_t>(p, e.numel());
    case DType::I64: return widen<int32_t, int64_t>(p, e.numel());
    case DType::U8: return widen<int32_t, uint8_t>(p, e.numel());
    default: U2PL_FAIL(path_ << ": tensor '" << name << "' is " << dtype_name(e.dtype) << ", expected an integer type");
  }
}

std::vector<uint8_t> SafeTensorsFile::bytes(const std::string& name) const {
  const StEntry& e = entry(name);
  U2PL_CHECK(e.dtype == DType::U8, path_ << ": tensor '" << name << "' is " << dtype_name(e.dtype)
                                         << ", expected U8");
  return std::vector<uint8_t>(data_.begin() + e.begin, data_.begin() + e.end);
}

Shape SafeTensorsFile::shape(const std::string& name) const {
  const StEntry& e = entry(name);
  U2PL_CHECK(e.shape.size() <= 4, path_ << ": tensor '" << name << "' has " << e.shape.size()
                                        << " dimensions, at most 4 are supported");
  if (e.shape.empty()) return Shape{1};  // a scalar: one element (an engine Shape of 0 dimensions holds none)
  Shape s;
  for (int64_t v : e.shape) s.d[s.ndim++] = v;
  return s;
}

std::string SafeTensorsFile::meta(const std::string& key) const {
  auto it = meta_.find(key);
  U2PL_CHECK(it != meta_.end(), path_ << ": metadata has no key '" << key << "'");
  return it->second;
}

void SafeTensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            const void* data) {
  U2PL_CHECK(name != "__metadata__" && !name.empty(), "safetensors: invalid tensor name '" << name << "'");
  Item it{dtype, std::move(shape), {}};
  int64_t n = 1;
  for (int64_t v : it.shape) n *= v;
  it.bytes.resize(static_cast<size_t>(n) * dtype_size(dtype));
  if (!it.bytes.empty()) std::memcpy(it.bytes.data(), data, it.bytes.size());
  items_[name] = std::move(it);
}

void SafeTensorsWriter::add(const std::string& name, const TensorView& t) {
  const std::vector<float> host = to_host(t);
  add(name, DType::F32, std::vector<int64_t>(t.shape.d, t.shape.d + t.shape.ndim), host.data());
}

void SafeTensorsWriter::write(const std::string& path, const char* kind) const {
  nlohmann::json j = nlohmann::json::object();
  if (!meta_.empty()) j["__metadata__"] = meta_;
  size_t off = 0;
  for (const auto& [name, it] : items_) {  // std::map: sorted names, as the Python library writes
    j[name] = {{"dtype", dtype_name(it.dtype)}, {"shape", it.shape}, {"data_offsets", {off, off + it.bytes.size()}}};
    off += it.bytes.size();
  }
  std::string header = j.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // pad so the data section is 8-byte aligned
  uint8_t len[8];
  const uint64_t h = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(h >> (8 * i));
  std::vector<std::pair<const void*, size_t>> parts{{len, 8}, {header.data(), header.size()}};
  for (const auto& kv : items_) parts.emplace_back(kv.second.bytes.data(), kv.second.bytes.size());
  write_file_atomic(path, parts, kind);
}

}  // namespace u2pl
