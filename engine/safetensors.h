// The safetensors container (weights, checkpoints, fixtures): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then
// raw little-endian data. Reading validates every offset against the file before any access.
// Covered by tests/test_safetensors.cpp.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace u2pl {

enum class DType { F32, F64, I32, I64, U8, F16, BF16, I8, I16, BOOL };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

struct StEntry {
  DType dtype;
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;  // byte range within the data section
  int64_t numel() const;
};

class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(const std::string& path);  // reads and validates the whole file
  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return meta_; }
  const std::map<std::string, StEntry>& entries() const { return entries_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const StEntry& entry(const std::string& name) const;  // throws naming the file and tensor
  // Typed reads: exact dtype required; integer reads widen I32/I64/U8 into the requested type.
  std::vector<float> floats(const std::string& name) const;       // F32
  std::vector<double> doubles(const std::string& name) const;     // F64 (or F32, widened)
  std::vector<int32_t> ints(const std::string& name) const;       // I32, I64 or U8
  std::vector<uint8_t> bytes(const std::string& name) const;      // U8
  Shape shape(const std::string& name) const;                     // up to 4-D; a scalar as (1)
  std::string meta(const std::string& key) const;                 // throws when absent

 private:
  std::string path_;
  std::map<std::string, std::string> meta_;
  std::map<std::string, StEntry> entries_;
  std::vector<uint8_t> data_;
};

// Writes tensors (host memory) atomically (engine/file_io.h: to `path`.tmp, then renamed into place).
class SafeTensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data);
  void add(const std::string& name, const TensorView& t);  // F32, any device
  void set_metadata(const std::string& key, const std::string& value) { meta_[key] = value; }
  // `kind`: the write's name for the fault hook of engine/file_io.h ("checkpoint"), or none.
  void write(const std::string& path, const char* kind = nullptr) const;

 private:
  struct Item {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, Item> items_;
  std::map<std::string, std::string> meta_;
};

}  // namespace u2pl
