// safetensors I/O: round trip, metadata, dtype checks, and every malformed-file error path
// (truncated, bad header length, bad JSON, offsets out of range, wrong byte counts).
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "engine/safetensors.h"

using namespace u2pl;

namespace {

std::string tmp_path(const char* name) { return std::string("/tmp/u2pl_test_") + name + ".safetensors"; }

void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>(n >> (8 * i)));
  f << header << data;
}

std::string error_of(const std::string& path) {
  try {
    SafeTensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("safetensors round trip with metadata and several dtypes") {
  const std::string p = tmp_path("roundtrip");
  SafeTensorsWriter w;
  const std::vector<float> a{1.5f, -2.f, 3.f, 4.f, 5.f, 6.f};
  const std::vector<int32_t> b{7, 255, -1};
  const std::vector<uint8_t> c{1, 0, 1, 1};
  w.add("a.weight", DType::F32, {2, 3}, a.data());
  w.add("labels", DType::I32, {3}, b.data());
  w.add("mask", DType::U8, {2, 2}, c.data());
  const float scalar = 0.25f;
  w.add("scalar", DType::F32, {}, &scalar);
  w.set_metadata("source", "test");
  w.write(p);
  SafeTensorsFile f(p);
  CHECK(f.floats("a.weight") == a);
  CHECK(f.shape("a.weight") == Shape{2, 3});
  // A 0-dimensional tensor (PyTorch's scalars) holds one element, and its Shape says so (found by
  // fuzz/fuzz_safetensors.cpp: an engine Shape of 0 dimensions holds none).
  CHECK(f.floats("scalar") == std::vector<float>{0.25f});
  CHECK(f.shape("scalar").numel() == 1);
  CHECK(f.ints("labels") == b);
  CHECK(f.bytes("mask") == c);
  CHECK(f.ints("mask") == std::vector<int32_t>{1, 0, 1, 1});
  CHECK(f.meta("source") == "test");
  CHECK(f.doubles("a.weight")[0] == 1.5);
  CHECK_THROWS_WITH_AS(f.floats("labels"), doctest::Contains("is I32, expected F32"), Error);
  CHECK_THROWS_WITH_AS(f.floats("missing"), doctest::Contains("no tensor named 'missing'"), Error);
  CHECK_THROWS_WITH_AS(f.meta("nope"), doctest::Contains("no key 'nope'"), Error);
  std::ifstream tmp(p + ".tmp");
  CHECK(!tmp.good());  // the temporary was renamed away
  std::remove(p.c_str());
}

TEST_CASE("safetensors refuses malformed files with the file name and the problem") {
  const std::string p = tmp_path("bad");
  CHECK(error_of("/nonexistent/x.safetensors").find("cannot open") != std::string::npos);
  { std::ofstream f(p, std::ios::binary); f << "abc"; }
  CHECK(error_of(p).find("at least 8") != std::string::npos);
  write_raw(p, "", "");
  CHECK(error_of(p).find("malformed JSON") != std::string::npos);
  {  // header length larger than the file
    std::ofstream f(p, std::ios::binary);
    uint64_t n = 1000;
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>(n >> (8 * i)));
    f << "{}";
  }
  CHECK(error_of(p).find("exceeds the file") != std::string::npos);
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", "1234");
  CHECK(error_of(p).find("outside the data section") != std::string::npos);
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", "12345678");
  CHECK(error_of(p).find("needs 12") != std::string::npos);
  write_raw(p, "{\"t\": {\"dtype\": \"Q7\", \"shape\": [1], \"data_offsets\": [0, 1]}}", "1");
  CHECK(error_of(p).find("unknown dtype 'Q7'") != std::string::npos);
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [1]}}", "");
  CHECK(error_of(p).find("lacks dtype, shape or data_offsets") != std::string::npos);
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 0]}}", "");
  CHECK(error_of(p).find("bad dimension") != std::string::npos);
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", "12345678");
  CHECK(error_of(p).find("outside the data section") != std::string::npos);
  // A shape whose product wraps around 64 bits (to 0 here) with no data (issue 15's example).
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 0]}}", "");
  CHECK(error_of(p).find("overflows 64 bits") != std::string::npos);
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [2305843009213693952, 2], \"data_offsets\": [0, 0]}}", "");
  CHECK(error_of(p).find("overflows 64 bits") != std::string::npos);  // the bytes wrap, not the elements
  write_raw(p, "{\"t\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4, 0], \"data_offsets\": [0, 0]}}",
            "");
  CHECK(SafeTensorsFile(p).entries().size() == 1);  // empty after all
  write_raw(p, "[1, 2]", "");
  CHECK(error_of(p).find("not a JSON object") != std::string::npos);
  write_raw(p, "{\"__metadata__\": {\"k\": 3}}", "");
  CHECK(error_of(p).find("not a string") != std::string::npos);
  std::remove(p.c_str());
}

TEST_CASE("safetensors writer refuses an unwritable path and leaves nothing behind") {
  SafeTensorsWriter w;
  const float v = 1.f;
  w.add("x", DType::F32, {1}, &v);
  CHECK_THROWS_WITH_AS(w.write("/nonexistent/dir/out.safetensors"),
                       doctest::Contains("cannot create the temporary file"), Error);
  CHECK_THROWS_AS(w.add("__metadata__", DType::F32, {1}, &v), Error);
}
